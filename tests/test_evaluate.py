"""Closed-loop evaluation on the simulator: record keys, savings arithmetic, oracle as the bound."""

import numpy as np
import pytest

from coolshift.config import load_site
from coolshift.control.policies import get_policy
from coolshift.control.evaluation import evaluate_policies, savings_table
from coolshift.io import load_site_data
from coolshift.simulations.engine import simulate
from conftest import SMALL_SITE

SUMMARY_KEYS = {"it_kwh", "facility_kwh", "pue", "tco2_location", "tco2_market", "water_l", "sla_violations",
                "late_work_units", "thermal_violation_minutes"}


def test_oracle_bounds_every_policy_and_savings_add_up(small_site_model):
    site, model = small_site_model
    data = load_site_data(site, "2022-06-14", "2022-06-17")
    rec = evaluate_policies(site, data, ["static", "best_practice", "carbon_greedy", "coolshift", "oracle"], model,
                            forecast_mode="noise10", interval_h=4.0, seed=1)
    pol = rec["policies"]
    assert set(pol) == {"static", "best_practice", "carbon_greedy", "coolshift", "oracle"}
    for s in pol.values():
        assert SUMMARY_KEYS <= s.keys()
    # the oracle (actual future values, longer horizon) is the bound on every other policy
    oracle = pol["oracle"]["tco2_location"]
    for name, s in pol.items():
        assert oracle <= s["tco2_location"] * 1.002, (name, oracle, s["tco2_location"])
    # no policy may buy its saving with late work or hot servers
    for name in ("coolshift", "oracle"):
        assert pol[name]["late_work_units"] == 0 and pol[name]["thermal_violation_minutes"] == 0
        assert pol[name]["sla_violations"] == 0
        # every plan solved by simplex (warm-started after the first), and the count recorded
        assert rec["planner"][name]["simplex_iterations"] >= rec["planner"][name]["plans"] > 0
    st = pol["static"]["tco2_location"]
    for name, s in pol.items():
        assert rec["savings_vs_static_pct"][name] == pytest.approx(100 * (st - s["tco2_location"]) / st)
    share = (st - pol["coolshift"]["tco2_location"]) / (st - oracle)
    assert rec["oracle_share"] == pytest.approx(share)
    table = savings_table(rec)
    assert list(table.index) == list(pol) and np.isfinite(table["tCO2_location"]).all()


def test_unknown_policy_and_missing_model_are_clear_errors(small_site_model):
    site, _ = small_site_model
    data = load_site_data(site, "2022-06-14", "2022-06-15")
    with pytest.raises(ValueError, match="unknown policies"):
        evaluate_policies(site, data, ["static", "genius"])
    with pytest.raises(ValueError, match="trained plant model"):
        evaluate_policies(site, data, ["coolshift"])


def test_autoscaler_closes_the_sla_gap_of_an_under_forecast(small_site_model):
    """A plan made for 25 % less web demand than arrives: without the autoscaler the simulator
    leaves web demand unserved; with it none, at a carbon cost (servers woken late, booting)."""
    from coolshift.control.receding import RecedingHorizonPolicy

    site, model = small_site_model
    data = load_site_data(site, "2022-06-14", "2022-06-15")

    def under(obs, steps):
        fc = obs.forecast.iloc[:steps].copy()
        fc["web_units_per_h"] *= 0.75
        return fc

    out = {}
    for reactive in (False, True):
        pol = RecedingHorizonPolicy(site, model, forecast_provider=under, reactive=reactive)
        out[reactive] = (simulate(site, data, pol).summary, pol.woken_servers)
    assert out[False][0]["sla_violations"] > 0 and out[False][1] == 0
    assert out[True][0]["sla_violations"] == 0 and out[True][1] > 0
    assert out[True][0]["late_work_units"] == 0
    assert out[True][0]["tco2_location"] > out[False][0]["tco2_location"]


def test_interactive_forecast_above_full_capacity_is_capped_not_a_fallback():
    """A point forecast of interactive demand above what its pools can serve made plans
    infeasible (San Jose, January 2022); capped at full capacity, every other column kept."""
    from coolshift.control.receding import cap_interactive_demand
    from coolshift.schema import demand_col
    from coolshift.site_arrays import SiteArrays

    site = load_site(SMALL_SITE)
    fc = load_site_data(site, "2022-06-14", "2022-06-15")
    arrays = SiteArrays.from_site(site)
    inter = [k for k, c in enumerate(site.workload_classes) if c.kind == "interactive"]
    assert inter
    k = inter[0]
    col = demand_col(site.workload_classes[k].name)
    limit = sum(p.servers * p.capacity_units_per_server
                for p, ok in zip(site.server_pools, arrays.eligible[k]) if ok)
    assert cap_interactive_demand(site, fc) is fc  # nothing above capacity: the frame as given
    over = fc.copy()
    over.iloc[5:9, over.columns.get_loc(col)] = 1.7 * limit
    capped = cap_interactive_demand(site, over)
    np.testing.assert_allclose(capped[col].iloc[5:9], limit)
    np.testing.assert_array_equal(capped[col].iloc[:5], fc[col].iloc[:5])
    others = [c for c in fc.columns if c != col]
    assert capped[others].equals(over[others])
    assert (over[col].iloc[5:9] == 1.7 * limit).all()  # the input frame is not modified


def test_fallback_plans_are_listed_with_their_reason(small_site_model):
    """evaluation.json says which plans fell back and why, not only how many."""
    from coolshift.control.evaluation import run_policy

    site, model = small_site_model
    data = load_site_data(site, "2022-06-14", "2022-06-15")
    planner = run_policy("coolshift", site, data, model, plan_options={"time_limit_s": 0.0})["planner"]
    assert planner["plans"] == 6 and planner["fallback_plans"] == 6 == len(planner["fallbacks"])
    assert planner["fallbacks"][0]["start"] == data.index[0].isoformat()
    assert all("time limit" in f["reason"] for f in planner["fallbacks"])


def test_cost_beside_carbon_for_every_policy_from_the_tariff():
    """The bill of each policy from its simulated facility power, checked against the tariff's terms
    worked out here: (wholesale/1000 + 0.05 USD/kWh + 0.10 USD/kWh from 16 to 21 h local) x kWh, plus
    20 USD per kW of the month's peak (the San Jose example's tariff)."""
    import pandas as pd

    site = load_site(SMALL_SITE)
    data = load_site_data(site, "2022-06-14", "2022-06-15")
    rec = evaluate_policies(site, data, ["static", "best_practice"])
    t = site.tariff
    assert (t.energy_usd_per_kwh, t.time_of_use[0].usd_per_kwh, t.demand_charge_usd_per_kw_month) == (0.05, 0.10, 20.0)
    raw = pd.read_csv(site.resolve(t.prices.path))
    wholesale = pd.Series(raw["Price (USD/MWh)"].to_numpy(float),
                          index=pd.to_datetime(raw["Datetime (UTC)"], utc=True)).sort_index()
    for name in ("static", "best_practice"):
        ts = simulate(site, data, get_policy(name)).timeseries
        kw = ts["facility_power_kw"].to_numpy(float)
        hour = ts.index.tz_convert("America/Los_Angeles").hour
        price = wholesale.reindex(ts.index, method="ffill").to_numpy() / 1000.0 + 0.05 + np.where(
            (hour >= 16) & (hour < 21), 0.10, 0.0)
        want = float(np.sum(kw * price) * 0.25 + 20.0 * kw.max())
        assert rec["policies"][name]["cost_usd"] == pytest.approx(want, rel=1e-9)
    st = rec["policies"]["static"]["cost_usd"]
    assert rec["cost_savings_vs_static_pct"]["best_practice"] == pytest.approx(
        100 * (st - rec["policies"]["best_practice"]["cost_usd"]) / st)
    assert "cost_kUSD" in savings_table(rec).columns
