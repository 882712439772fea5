"""Period accounting of coolshift.reports.carbon on hand-computed cases."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coolshift.reports import carbon as C

G = [100.0, 300.0]  # gCO2/kWh in hour 1 and hour 2


def test_footprint_hourly_vs_average_factor():
    # 12 kWh at 100 g + 4 kWh at 300 g = 1.2 + 1.2 = 2.4 kg; average factor 200 g -> 16 x 0.2 = 3.2 kg
    f = C.footprint([12.0, 4.0], G, [1.0, 1.0])
    assert f["kgco2_hourly_factors"] == pytest.approx(2.4)
    assert f["average_factor_gco2_per_kwh"] == pytest.approx(200.0)
    assert f["kgco2_average_factor"] == pytest.approx(3.2)
    assert f["difference_kg"] == pytest.approx(-0.8)
    assert f["difference_pct"] == pytest.approx(-25.0)
    assert f["weighted_factor_gco2_per_kwh"] == pytest.approx(150.0)


def test_average_factor_is_time_weighted():
    # 100 g for 3 h, 300 g for 1 h -> 150 g
    assert C.average_factor_gco2_per_kwh([100.0, 300.0], [3.0, 1.0]) == pytest.approx(150.0)


def test_reduction_split_hand_case():
    # baseline 10 + 10 kWh -> 1 + 3 = 4 kg (f_base 200 g); post 12 + 4 kWh -> 1.2 + 1.2 = 2.4 kg (f_post 150 g)
    r = C.reduction_split([10.0, 10.0], [12.0, 4.0], G)
    assert (r.baseline_kg, r.post_kg, r.total_kg) == pytest.approx((4.0, 2.4, 1.6))
    assert r.efficiency_kg == pytest.approx(0.8)  # (20 - 16) kWh x 0.200 kg/kWh
    assert r.timing_kg == pytest.approx(0.8)  # 16 kWh x (0.200 - 0.150) kg/kWh
    assert r.total_pct == pytest.approx(40.0)


def test_reduction_pure_timing_and_pure_efficiency():
    shifted = C.reduction_split([10.0, 10.0], [20.0, 0.0], G)  # same energy, all in the clean hour
    assert shifted.efficiency_kg == pytest.approx(0.0)
    assert shifted.timing_kg == pytest.approx(2.0)
    scaled = C.reduction_split([10.0, 10.0], [5.0, 5.0], G)  # half the energy, same shape
    assert scaled.timing_kg == pytest.approx(0.0, abs=1e-12)
    assert scaled.efficiency_kg == pytest.approx(2.0)


def test_reduction_needs_same_steps():
    with pytest.raises(ValueError, match="same steps"):
        C.reduction_split([1.0, 2.0], [1.0], G)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1e4), st.floats(0, 1e4), st.floats(0, 1500)), min_size=1, max_size=30))
def test_reduction_parts_add_up(rows):
    eb, ep, g = map(np.array, zip(*rows))
    r = C.reduction_split(eb, ep, g)
    assert r.efficiency_kg + r.timing_kg == pytest.approx(r.total_kg, abs=1e-6)
    assert r.total_kg == pytest.approx(float((eb * g).sum() - (ep * g).sum()) / 1000.0, abs=1e-6)


def test_scope2_market_period_and_hourly_with_residual_mix():
    # 10 + 10 kWh; PPA 15 kWh in hour 1 only; residual mix 400 g
    s = C.scope2([10.0, 10.0], G, [15.0, 0.0], residual_mix_gco2_per_kwh=400.0)
    assert s["location_kgco2"] == pytest.approx(4.0)
    assert s["ppa_claimed_kwh"] == pytest.approx(15.0)
    assert s["market_kgco2"] == pytest.approx(2.0)  # 5 kWh unmatched x 0.4
    assert s["market_hourly_kgco2"] == pytest.approx(4.0)  # hour 2: 10 kWh x 0.4; hour-1 surplus not banked
    assert s["renewable_share"] == pytest.approx(0.75)
    assert s["renewable_share_hourly"] == pytest.approx(0.5)


def test_scope2_falls_back_to_grid_average_without_residual_mix():
    s = C.scope2([10.0, 10.0], G, [15.0, 0.0])
    assert s["market_kgco2"] == pytest.approx(2.5 * 0.1 + 2.5 * 0.3)  # pro-rata 25 % unmatched
    assert s["market_hourly_kgco2"] == pytest.approx(3.0)
    assert "fallback" in s["residual_factor_source"]


def test_scope2_ppa_larger_than_load_claims_only_the_load():
    s = C.scope2([10.0, 10.0], G, [50.0, 50.0], residual_mix_gco2_per_kwh=400.0)
    assert s["market_kgco2"] == 0.0 and s["ppa_surplus_kwh"] == pytest.approx(80.0)
    assert s["renewable_share"] == pytest.approx(1.0)


def test_offsets_round_up_to_whole_credits():
    assert C.offsets_needed_t(2500.0) == 3
    assert C.offsets_needed_t(3000.0) == 3
    assert C.offsets_needed_t(3000.0000001) == 3
    assert C.offsets_needed_t(0.0) == 0
    st_ = C.neutrality_statement(2500.0, 1600.0, "")
    assert st_["offset_standard"] == "not stated" and st_["offsets_needed_tco2e"] == 3
    assert "not stated" in st_["statement"] and "1.6 tCO2" in st_["statement"]
    assert C.neutrality_statement(10.0, None, "Gold Standard")["offset_standard"] == "Gold Standard"


def _frame(n=48, step="30min"):
    idx = pd.date_range("2022-01-31T12:00Z", periods=n, freq=step, name="timestamp")
    return pd.DataFrame({
        "it_power_kw": np.full(n, 100.0), "facility_power_kw": np.full(n, 150.0),
        "gco2_per_kwh": np.where(np.arange(n) < n // 2, 100.0, 300.0),
        "water_l": np.full(n, 10.0), "ppa_kw": np.full(n, 30.0),
    }, index=idx)


def test_account_steps_and_monthly_table():
    steps = C.account_steps(_frame())
    assert steps["step_h"].eq(0.5).all()
    assert steps["facility_kwh"].sum() == pytest.approx(150 * 24)
    m = C.monthly_table(steps, residual_mix_gco2_per_kwh=None)
    assert list(m.index) == ["2022-01", "2022-02"]  # 12 h in each month
    assert m.loc["2022-01", "pue"] == pytest.approx(1.5)
    assert m.loc["2022-01", "wue_l_per_kwh"] == pytest.approx(10 * 48 / 2 / (100 * 12))
    assert m.loc["2022-01", "tco2_location"] == pytest.approx(150 * 12 * 0.1 / 1000)
    assert m.loc["2022-02", "renewable_share_pct"] == pytest.approx(20.0)


def test_step_hours_rejects_unsorted():
    idx = pd.DatetimeIndex(["2022-01-01T01:00Z", "2022-01-01T00:00Z"])
    with pytest.raises(ValueError, match="increasing"):
        C.step_hours(idx)


def test_estimated_hours_counts_each_step_once():
    idx = pd.date_range("2022-01-01T00:00Z", periods=10, freq="h")
    filled = [{"column": "a", "start": idx[2].isoformat(), "steps": 3, "rule": "linear"},
              {"column": "b", "start": idx[3].isoformat(), "steps": 3, "rule": "linear"}]
    q = C.estimated_hours(idx, filled)
    assert q["estimated_steps"] == 4 and q["estimated_hours"] == 4.0 and q["estimated_pct"] == pytest.approx(40.0)
    assert C.estimated_hours(idx, filled, columns=["a"])["estimated_steps"] == 3


def test_market_matching_per_reporting_year():
    # year 1: 10 kWh used, 20 kWh PPA (10 surplus); year 2: 10 kWh used, no PPA; residual mix 400 g
    e, ppa, g = [10.0, 10.0], [20.0, 0.0], [100.0, 100.0]
    whole = C.scope2(e, g, ppa, 400.0)
    by_year = C.scope2(e, g, ppa, 400.0, periods=[2022, 2023])
    assert whole["market_kgco2"] == 0.0  # surplus of one year cannot cover the next ...
    assert by_year["market_kgco2"] == pytest.approx(4.0)  # ... so per-year matching leaves year 2 uncovered
    assert by_year["ppa_surplus_kwh"] == pytest.approx(10.0) and by_year["renewable_share"] == pytest.approx(0.5)


def test_monthly_market_adds_up_to_the_period():
    f = _frame(n=24 * 2 * 40, step="30min")  # 40 days over two months, PPA 20 % of load
    f["ppa_kw"] = np.where(np.arange(len(f)) < len(f) // 4, 100.0, 0.0)  # supply only early in the period
    steps = C.account_steps(f, residual_mix_gco2_per_kwh=500.0)
    m = C.monthly_table(steps)
    total = C.scope2(steps["facility_kwh"], steps["gco2_per_kwh"], steps["ppa_kwh"], 500.0, periods=steps.index.year)
    assert m["tco2_market"].sum() == pytest.approx(total["market_kgco2"] / 1000.0)
    assert (m["renewable_share_pct"] > 0).all()  # the year's claim is spread over its months


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1e4), st.floats(0, 1e4), st.floats(0, 1500)), min_size=1, max_size=30),
       st.floats(0, 1500))
def test_period_matching_claims_at_least_hourly_matching(rows, rmix):
    e, ppa, g = map(np.array, zip(*rows))
    s = C.scope2(e, g, ppa, rmix)
    assert s["ppa_claimed_kwh"] >= s["ppa_hourly_matched_kwh"] - 1e-6
    assert s["market_kgco2"] <= s["market_hourly_kgco2"] + 1e-6  # with one residual factor, fewer kWh -> fewer kg
    if rmix <= g.min():  # a residual mix no dirtier than any hour cannot exceed location-based
        assert s["market_kgco2"] <= s["location_kgco2"] + 1e-6
