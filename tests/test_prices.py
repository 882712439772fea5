"""Electricity prices: the reader (canonical frame, errors naming file, column and row), the
tariff (time of use, demand charge) and the cost and weighted objectives on hand-checkable LPs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from coolshift.config import SiteConfig, Tariff
from coolshift.io.checks import DataError
from coolshift.io.prices import PRICE_USD_PER_MWH, read_prices, with_prices, write_prices
from coolshift.optimizer import PlanOptions, plan_site
from coolshift.tariffs import bill, energy_price_usd_per_kwh, time_of_use_usd_per_kwh
from synthetic import tiny_forecast, tiny_site, zero_coefficients

REPO = Path(__file__).resolve().parents[1]
CISO = REPO / "data/prices/electricity_prices_2022/US-CAL-CISO_electricity_prices_2022.csv"
SC_HEADER = "Datetime (UTC),Datetime (Local),Price (USD/MWh)\n"
WEB = [{"name": "web", "kind": "interactive", "share": 1.0}]


def test_bundled_caiso_prices_read_as_the_canonical_frame():
    f = read_prices(CISO)
    assert list(f.columns) == [PRICE_USD_PER_MWH] and len(f) == 8760
    assert str(f.index.tz) == "UTC" and f.index[0] == pd.Timestamp("2022-01-01", tz="UTC")
    # the file's first row: 2022-01-01 00:00 UTC, 75.141955 USD/MWh
    assert f[PRICE_USD_PER_MWH].iloc[0] == pytest.approx(75.141955)
    assert (f[PRICE_USD_PER_MWH] < 0).any()  # negative prices are real and kept


def test_canonical_round_trip(tmp_path):
    f = read_prices(CISO).iloc[:48]
    write_prices(f, tmp_path / "p.csv")
    g = read_prices(tmp_path / "p.csv")
    pd.testing.assert_frame_equal(f, g, check_freq=False)


@pytest.mark.parametrize("rows, column, row, words", [
    ("2022-01-01 00:00:00+00:00,x,10\n2022-01-01 01:00:00+00:00,x,abc\n", "Price (USD/MWh)", 3, "not a number"),
    ("2022-01-01 00:00:00+00:00,x,10\nyesterday,x,11\n", "Datetime (UTC)", 3, "unparseable timestamp"),
    ("2022-01-01 00:00:00+00:00,x,10\n2022-01-01 01:00:00+00:00,x,90000\n", "Price (USD/MWh)", 3, "plausible range"),
    ("2022-01-01 00:00:00+00:00,x,10\n2022-01-01 00:00:00+00:00,x,11\n", "timestamp", 3, "duplicated"),
])
def test_price_reader_errors_name_file_row_and_column(tmp_path, rows, column, row, words):
    p = tmp_path / "prices.csv"
    p.write_text(SC_HEADER + rows)
    with pytest.raises(DataError) as e:
        read_prices(p)
    msg = str(e.value)
    assert str(p) in msg and f"column {column!r}" in msg and f"row {row}" in msg and words in msg


def test_unknown_header_is_refused_without_echoing_it(tmp_path):
    p = tmp_path / "prices.csv"
    p.write_text("when,secret_cost\n2022-01-01,1\n")
    with pytest.raises(DataError, match="unrecognised price file") as e:
        read_prices(p)
    assert "secret_cost" not in str(e.value)


def test_time_of_use_and_demand_charge_by_hand():
    t = Tariff(timezone="America/Los_Angeles", energy_usd_per_kwh=0.02, demand_charge_usd_per_kw_month=10.0,
               time_of_use=[{"start_hour": 16, "end_hour": 21, "usd_per_kwh": 0.10},
                            {"start_hour": 22, "end_hour": 6, "usd_per_kwh": -0.01}])
    idx = pd.DatetimeIndex(["2022-07-01 00:00", "2022-07-01 06:00", "2022-07-01 12:00", "2022-07-31 23:00"], tz="UTC")
    # local PDT (UTC-7): 17:00 (peak), 23:00 (night), 05:00 (night), 16:00 (peak)
    np.testing.assert_allclose(time_of_use_usd_per_kwh(idx, t), [0.10, -0.01, -0.01, 0.10])
    price = energy_price_usd_per_kwh(idx, t, wholesale_usd_per_mwh=[50.0, 20.0, 30.0, 100.0])
    np.testing.assert_allclose(price, [0.17, 0.03, 0.04, 0.22])
    b = bill(idx, [100.0, 50.0, 80.0, 120.0], price, t, 1.0)
    assert b["energy_usd"] == pytest.approx(17 + 1.5 + 3.2 + 26.4)
    # billing months are local: the first step is 30 June 17:00 PDT, the others July
    assert b["peak_kw_by_month"] == {"2022-06": 100.0, "2022-07": 120.0}
    assert b["demand_usd"] == pytest.approx(10.0 * (100.0 + 120.0))


def _tariffed(site: SiteConfig, **tariff) -> SiteConfig:
    d = site.model_dump()
    d["tariff"] = tariff
    return SiteConfig.model_validate(d)


def test_cost_objective_follows_price_and_carbon_objective_follows_intensity():
    # 5 units of batch, either hour: cheap hour is the dirty one
    site = _tariffed(tiny_site(), energy_usd_per_kwh=0.0)
    fc = tiny_forecast(site, [500.0, 100.0], batch_units_per_h=[5.0, 0.0], price_usd_per_kwh=[0.05, 0.30])
    co = zero_coefficients(site, fc.index)
    carbon = plan_site(site, co, fc)
    cost = plan_site(site, co, fc, options=PlanOptions(objective="cost"))
    np.testing.assert_allclose(carbon.frame["served_units_per_h__pool__batch"], [0.0, 5.0], atol=1e-6)
    np.testing.assert_allclose(cost.frame["served_units_per_h__pool__batch"], [5.0, 0.0], atol=1e-6)
    # 1.5 kWh either way: 0.075 USD at 0.05, 0.45 USD at 0.30
    assert cost.totals["cost_usd"] == pytest.approx(0.075, rel=1e-6)
    assert carbon.totals["cost_usd"] == pytest.approx(0.45, rel=1e-6)
    # weighted: 0.375 USD more against 0.6 kg less -> the carbon plan above 625 USD/t, the cost plan below
    for price, hour in ((700.0, 1), (500.0, 0)):
        w = plan_site(site, co, fc, options=PlanOptions(objective="weighted", carbon_price_usd_per_tco2=price))
        assert w.frame["served_units_per_h__pool__batch"].iloc[hour] == pytest.approx(5.0, abs=1e-6)


def test_demand_charge_flattens_the_peak():
    # 4 units/h of batch over 2 h, all could run in the cheap hour; a 10 USD/kW-month demand charge
    # makes the peak cost more than the energy price difference, so the work is split evenly
    site = _tariffed(tiny_site(), demand_charge_usd_per_kw_month=10.0)
    fc = tiny_forecast(site, [300.0, 300.0], batch_units_per_h=[4.0, 0.0], price_usd_per_kwh=[0.10, 0.20])
    plan = plan_site(site, zero_coefficients(site, fc.index), fc, options=PlanOptions(objective="cost"))
    np.testing.assert_allclose(plan.frame["served_units_per_h__pool__batch"], [2.0, 2.0], atol=1e-6)
    # 0.6 kW each hour: energy 0.06 + 0.12, demand 10 x 0.6
    assert plan.totals["demand_usd"] == pytest.approx(6.0, rel=1e-6)
    assert plan.totals["cost_usd"] == pytest.approx(6.18, rel=1e-6)


def test_cost_objective_without_prices_is_refused():
    site = tiny_site()
    fc = tiny_forecast(site, [300.0, 300.0], batch_units_per_h=[4.0, 0.0])
    with pytest.raises(ValueError, match="needs energy prices"):
        plan_site(site, zero_coefficients(site, fc.index), fc, options=PlanOptions(objective="cost"))
    with pytest.raises(ValueError, match="internal carbon price"):
        plan_site(site, zero_coefficients(site, fc.index), tiny_forecast(site, [1, 1], batch_units_per_h=[1, 0],
                  price_usd_per_kwh=0.1), options=PlanOptions(objective="weighted"))


def test_site_prices_from_the_bundled_file_with_the_tariff():
    d = tiny_site().model_dump()
    d["tariff"] = {"prices": {"path": str(CISO)}, "energy_usd_per_kwh": 0.01}
    site = SiteConfig.model_validate(d)
    idx = pd.date_range("2022-01-01", periods=3, freq="30min", tz="UTC")
    out = with_prices(site, pd.DataFrame(index=idx))
    # 75.141955 USD/MWh holds for the first hour, then 65.87499
    np.testing.assert_allclose(out["price_usd_per_kwh"], [0.085141955, 0.085141955, 0.07587499])


def test_plan_command_objective_cost_is_cheaper_and_carbon_is_cleaner(registry, tmp_path):
    from typer.testing import CliRunner

    from coolshift.cli import app

    site = str(REPO / "configs/sites/sanjose_colo_2mw.yaml")
    out = {}
    for obj in ("carbon", "cost"):
        res = CliRunner().invoke(app, ["plan", "--site", site, "--start", "2022-07-01", "--out", str(tmp_path / obj),
                                       "--forecast", "perfect", "--no-mlflow", "--objective", obj])
        assert res.exit_code == 0, res.output
        out[obj] = json.loads((tmp_path / obj / "summary.json").read_text())
        frame = pd.read_csv(tmp_path / obj / "plan.csv", index_col="timestamp", parse_dates=True)
        # the bill is the frame's energy column plus 20 USD/kW on each local billing month's peak:
        # 00:00-07:00 UTC on 1 July is still 30 June in San Jose (PDT), so two months' peaks
        assert out[obj]["predicted"]["energy_usd"] == pytest.approx(frame["energy_cost_usd"].sum(), rel=1e-9)
        month = frame.index.tz_convert("America/Los_Angeles").month
        peaks = frame["facility_power_kw"].groupby(month).max()
        assert len(peaks) == 2
        assert out[obj]["predicted"]["demand_usd"] == pytest.approx(20.0 * peaks.sum(), rel=1e-9)
        assert out[obj]["objective"] == obj
    assert out["cost"]["predicted"]["cost_usd"] < out["carbon"]["predicted"]["cost_usd"]
    assert out["carbon"]["predicted"]["tco2"] < out["cost"]["predicted"]["tco2"]
    bad = CliRunner().invoke(app, ["plan", "--site", site, "--start", "2022-07-01", "--out", str(tmp_path / "x"),
                                   "--no-mlflow", "--objective", "money"])
    assert bad.exit_code == 2 and "--objective" in bad.output


def test_demand_charge_only_on_raising_the_months_peak_so_far():
    # serving w units on w servers draws 0.3 w kW. Without a peak so far the 10 USD/kW charge splits
    # the 4 units evenly (test_demand_charge_flattens_the_peak). With 1.0 kW already reached this
    # month, the cheap hour takes work up to 1.0 kW for free (3.333 units) and the rest stays in
    # the dear hour; with 1.2 kW reached, all 4 units (1.2 kW) go to the cheap hour
    site = _tariffed(tiny_site(), demand_charge_usd_per_kw_month=10.0)
    fc = tiny_forecast(site, [300.0, 300.0], batch_units_per_h=[4.0, 0.0], price_usd_per_kwh=[0.20, 0.10])
    co = zero_coefficients(site, fc.index)
    part = plan_site(site, co, fc, options=PlanOptions(objective="cost", peak_so_far_kw={"2022-01": 1.0}))
    np.testing.assert_allclose(part.frame["served_units_per_h__pool__batch"], [4.0 - 1.0 / 0.3, 1.0 / 0.3], atol=1e-6)
    cheap = plan_site(site, co, fc, options=PlanOptions(objective="cost", peak_so_far_kw={"2022-01": 1.2}))
    np.testing.assert_allclose(cheap.frame["served_units_per_h__pool__batch"], [0.0, 4.0], atol=1e-6)
