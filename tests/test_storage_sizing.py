"""Battery sizing what-if (coolshift.whatif.battery): savings by size and paybacks by hand, and the command."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from coolshift.cli import app
from coolshift.config import SiteConfig
from coolshift.optimizer import PlanOptions
from coolshift.whatif.battery import battery_site, size_batteries
from synthetic import tiny_forecast, tiny_site, zero_coefficients

WEB = [{"name": "web", "kind": "interactive", "share": 1.0}]


def _site(demand_charge: float = 0.0) -> SiteConfig:
    d = tiny_site(classes=WEB, horizon_h=2).model_dump()
    d["tariff"] = {"energy_usd_per_kwh": 0.0, "demand_charge_usd_per_kw_month": demand_charge}
    d["storage"] = [{"name": "bat", "energy_kwh": 1.0, "charge_kw": 1.0, "discharge_kw": 1.0,
                     "round_trip_efficiency": 0.81, "soc_min_frac": 0.0, "soc_max_frac": 1.0, "soc_initial_frac": 0.0,
                     "self_discharge_per_h": 0.0, "degradation_usd_per_kwh": 0.0, "degradation_kgco2_per_kwh": 0.0,
                     "embodied_kgco2_per_kwh_capacity": 100.0, "capex_usd_per_kwh": 300.0}]
    return SiteConfig.model_validate(d)


def test_sizing_by_hand():
    site = _site()
    # two days of [100 g / 0.10 USD, 500 g / 0.30 USD] hours; 2.4 kW of web load every hour
    fc = tiny_forecast(site, [100.0, 500.0] * 2, web_units_per_h=8.0, price_usd_per_kwh=[0.10, 0.30] * 2)
    coefs = lambda s, f: zero_coefficients(s, f.index)  # noqa: E731
    table = size_batteries(site, coefs, fc, [0.5, 1.0], c_rate=1.0,
                           options=PlanOptions(move_penalty_kg_per_c=0.0, deadline_prices=False)).set_index("energy_kwh")
    assert list(table.index) == [0.0, 0.5, 1.0]
    # at 1C the charging power binds first: E kWh drawn at 100 g (0.9 E stored) delivers 0.81 E kWh
    # at 500 g: saves 0.81 x 0.5 - 0.1 = 0.305 kg and 0.81 x 0.30 - 0.10 = 0.143 USD per kWh of E a day
    per_day_kg, per_day_usd = 0.81 * 0.5 - 0.1, 0.81 * 0.30 - 0.10
    for e in (0.5, 1.0):
        r = table.loc[e]
        assert r["saved_tco2"] * 1000 == pytest.approx(2 * e * per_day_kg, rel=1e-6)
        assert r["saved_usd"] == pytest.approx(2 * e * per_day_usd, rel=1e-6)
        assert r["embodied_tco2"] == pytest.approx(e * 0.1)
        # 4 h of period: per month (730 h) 182.5 x the saving; payback = embodied / monthly saving
        assert r["carbon_payback_months"] == pytest.approx(e * 100.0 / (2 * e * per_day_kg * 730.0 / 4.0), rel=1e-6)
        assert r["payback_years"] == pytest.approx(e * 300.0 / (2 * e * per_day_usd * 8760.0 / 4.0), rel=1e-6)
        assert r["power_kw"] == pytest.approx(e)
    assert table.loc[0.0, "saved_tco2"] == 0.0 and pd.isna(table.loc[0.0, "payback_years"])


def test_demand_charge_saving_is_annualised_per_billing_month():
    # the carbon plans charge 1 kW in the clean hour: the 2.4 kW peak becomes 3.4 kW, which costs
    # 10 USD/kW for the period's one billing month (January), i.e. 12 x 10 USD a year, not 2190 x
    site = _site(demand_charge=10.0)
    fc = tiny_forecast(site, [100.0, 500.0] * 2, web_units_per_h=8.0, price_usd_per_kwh=[0.10, 0.30] * 2)
    table = size_batteries(site, lambda s, f: zero_coefficients(s, f.index), fc, [1.0], c_rate=1.0,
                           options=PlanOptions(move_penalty_kg_per_c=0.0, deadline_prices=False)).set_index("energy_kwh")
    energy_per_year = 2 * (0.81 * 0.30 - 0.10) * 8760.0 / 4.0
    assert table.loc[1.0, "saved_usd_per_year"] == pytest.approx(energy_per_year - 12 * 10.0, rel=1e-6)
    assert table.loc[1.0, "saved_usd"] == pytest.approx(2 * (0.81 * 0.30 - 0.10) - 10.0, rel=1e-6)


def test_battery_site_sizes_power_by_c_rate():
    b = battery_site(_site(), 2000.0, 0.25)
    assert b.storage[0].energy_kwh == 2000.0 and b.storage[0].charge_kw == 500.0
    assert battery_site(_site(), 0.0, 0.5).storage == []


def test_battery_command_on_san_jose(registry, tmp_path):
    out = tmp_path / "b"
    res = CliRunner().invoke(app, ["battery", "--site", "configs/sites/sanjose_colo_2mw.yaml", "--start", "2022-07-01",
                                   "--days", "1", "--sizes-kwh", "1000", "--out", str(out)])
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "sizing.json").read_text())
    assert [r["energy_kwh"] for r in doc["rows"]] == [0.0, 1000.0]
    assert doc["rows"][1]["embodied_tco2"] == pytest.approx(75.0)  # 1,000 kWh x 75 kgCO2e/kWh (config default)
    bad = CliRunner().invoke(app, ["battery", "--site", "configs/sites/sanjose_colo_2mw.yaml", "--start", "2022-07-01",
                                   "--sizes-kwh", "big"])
    assert bad.exit_code == 2 and "--sizes-kwh" in bad.output
