"""Storage behind the meter: the LP's state of charge, losses and reserve, checked by hand and
against the simulator's independent storage physics (simulations/storage.py).

Tiny site (tests/synthetic.py): facility power = IT power; serving w units/h of web on
n servers draws 0.1 n + 0.2 w kW, so 2 units/h on 2 servers draw 0.6 kW and 8 units/h 2.4 kW.
A round trip of 0.81 is 0.9 each way.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from coolshift.config import SiteConfig
from coolshift.optimizer import InitialState, PlanOptions, plan_site
from coolshift.optimizer.fallback import baseline_actions
from coolshift.optimizer.plan import evaluate_actions
from coolshift.optimizer import prepare
from coolshift.simulations.storage import reserve_kwh, run_storage
from synthetic import tiny_forecast, tiny_site, zero_coefficients

NO_MOVES = PlanOptions(move_penalty_kg_per_c=0.0)
WEB = [{"name": "web", "kind": "interactive", "share": 1.0}]


def with_storage(site: SiteConfig, **unit) -> SiteConfig:
    d = site.model_dump()
    d["storage"] = [{"name": "bat", "energy_kwh": 10.0, "charge_kw": 1.0, "discharge_kw": 1.0,
                     "round_trip_efficiency": 0.81, "soc_min_frac": 0.0, "soc_max_frac": 1.0, "soc_initial_frac": 0.0,
                     "self_discharge_per_h": 0.0, "degradation_usd_per_kwh": 0.0, "degradation_kgco2_per_kwh": 0.0,
                     **unit}]
    return SiteConfig.model_validate(d)


def _plan(site, gco2, web, options=NO_MOVES, **cols):
    fc = tiny_forecast(site, gco2, web_units_per_h=web, **cols)
    return plan_site(site, zero_coefficients(site, fc.index), fc, options=options), fc


def test_battery_moves_energy_from_the_clean_hour_with_its_losses():
    site = with_storage(tiny_site(classes=WEB, horizon_h=2))
    plan, _ = _plan(site, [100.0, 500.0], 2.0)
    f = plan.frame
    # step 1 (500 g) is served from the battery: 0.6 kW delivered needs 0.6 / 0.9 = 0.667 kWh stored,
    # charged at 100 g in step 0: 0.667 / 0.9 = 0.7407 kW from the grid
    np.testing.assert_allclose(f["discharge_kw__bat"], [0.0, 0.6], atol=1e-7)
    np.testing.assert_allclose(f["charge_kw__bat"], [0.6 / 0.81, 0.0], atol=1e-7)
    np.testing.assert_allclose(f["soc_kwh__bat"], [0.6 / 0.9, 0.0], atol=1e-7)
    np.testing.assert_allclose(f["grid_power_kw"], [0.6 + 0.6 / 0.81, 0.0], atol=1e-7)
    assert plan.totals["tco2"] * 1000 == pytest.approx((0.6 + 0.6 / 0.81) * 0.1, rel=1e-6)
    # without the battery the same site emits 0.6 x (0.1 + 0.5) kg
    plain, _ = _plan(site, [100.0, 500.0], 2.0, PlanOptions(move_penalty_kg_per_c=0.0, use_storage=False))
    assert plain.totals["tco2"] * 1000 == pytest.approx(0.36, rel=1e-6)
    assert "soc_kwh__bat" not in plain.frame.columns


def test_round_trip_too_lossy_for_the_spread_is_not_used():
    # 200 vs 240 g/kWh: a kWh delivered costs 200 / 0.81 = 247 g > 240 g: the battery stays idle
    site = with_storage(tiny_site(classes=WEB, horizon_h=2))
    plan, _ = _plan(site, [200.0, 240.0], 2.0)
    np.testing.assert_allclose(plan.frame["charge_kw__bat"], 0.0, atol=1e-9)
    np.testing.assert_allclose(plan.frame["discharge_kw__bat"], 0.0, atol=1e-9)


def test_ups_ride_through_reserve_is_never_used():
    # UPS 3 kWh starting at 1.5 kWh; 6 min at the zone's 10 kW design load = 1 kWh delivered,
    # 1 / 0.9 = 1.111 kWh stored: only 1.5 - 1.111 = 0.389 kWh may be used, delivering 0.35 kWh
    site = with_storage(tiny_site(classes=WEB, horizon_h=2), kind="ups", energy_kwh=3.0, charge_kw=5.0,
                        discharge_kw=5.0, soc_initial_frac=0.5, ride_through_min=6.0)
    plan, fc = _plan(site, [500.0, 100.0], 8.0)
    f = plan.frame
    res = 1.0 / 0.9
    assert reserve_kwh(6.0, 10.0, 0.81) == pytest.approx(res)
    np.testing.assert_allclose(f["discharge_kw__bat"], [(1.5 - res) * 0.9, 0.0], atol=1e-7)
    np.testing.assert_allclose(f["soc_kwh__bat"], [res, 1.5], atol=1e-7)  # back to where it started
    assert (f["soc_kwh__bat"] >= res - 1e-9).all()
    # carbon: (2.4 - 0.35) x 0.5 + (2.4 + 0.389 / 0.9) x 0.1 kg
    assert plan.totals["tco2"] * 1000 == pytest.approx(2.05 * 0.5 + (2.4 + (1.5 - res) / 0.9) * 0.1, rel=1e-6)
    # the simulator's BMS asked for far more than the reserve allows still stops at the reserve
    sim = run_storage(site, f["facility_power_kw"], discharge_kw=pd.DataFrame({"bat": [5.0, 5.0]}, index=fc.index))
    assert (sim.soc_kwh["bat"] >= res - 1e-9).all()
    assert sim.soc_kwh["bat"].iloc[0] == pytest.approx(res)


def test_config_refuses_a_reserve_beyond_the_battery():
    with pytest.raises(ValueError, match="ride_through_min"):
        with_storage(tiny_site(classes=WEB), kind="ups", energy_kwh=1.0, ride_through_min=60.0)
    with pytest.raises(ValueError, match="ride_through_min is for kind 'ups'"):
        with_storage(tiny_site(classes=WEB), ride_through_min=1.0)


@settings(max_examples=15, deadline=None)
@given(
    gco2=st.lists(st.floats(50.0, 800.0), min_size=6, max_size=6),
    rte=st.floats(0.6, 1.0),
    self_dis=st.floats(0.0, 0.02),
    soc0=st.floats(0.2, 0.8),
)
def test_plan_and_simulator_agree_on_state_of_charge_and_losses(gco2, rte, self_dis, soc0):
    site = with_storage(tiny_site(classes=WEB, horizon_h=6), round_trip_efficiency=rte, self_discharge_per_h=self_dis,
                        soc_min_frac=0.1, soc_max_frac=0.9, soc_initial_frac=soc0, energy_kwh=2.0)
    plan, fc = _plan(site, gco2, 2.0)
    f = plan.frame
    lo, hi = 0.2, 1.8
    assert ((f["soc_kwh__bat"] >= lo - 1e-7) & (f["soc_kwh__bat"] <= hi + 1e-7)).all()
    assert f["soc_kwh__bat"].iloc[-1] >= 2.0 * soc0 - 1e-7  # never ends emptier than it started
    sim = run_storage(site, f["facility_power_kw"], charge_kw=f[["charge_kw__bat"]].set_axis(["bat"], axis=1),
                      discharge_kw=f[["discharge_kw__bat"]].set_axis(["bat"], axis=1))
    # the simulator, booking each flow on its own, follows the plan's schedule without clipping
    np.testing.assert_allclose(sim.charge_kw["bat"], f["charge_kw__bat"], atol=1e-6)
    np.testing.assert_allclose(sim.discharge_kw["bat"], f["discharge_kw__bat"], atol=1e-6)
    np.testing.assert_allclose(sim.soc_kwh["bat"], f["soc_kwh__bat"], atol=1e-6)
    np.testing.assert_allclose(sim.grid_kw, f["grid_power_kw"], atol=1e-6)
    # energy balance: grid in - facility = stored change + every loss
    into = (sim.grid_kw - f["facility_power_kw"]).sum()
    assert into == pytest.approx(sim.soc_kwh["bat"].iloc[-1] - 2.0 * soc0 + sim.losses_kwh, abs=1e-6)
    # the same losses the plan counts: the grid energy beyond facility minus the stored change
    plan_loss = (f["grid_power_kw"] - f["facility_power_kw"]).sum() - (f["soc_kwh__bat"].iloc[-1] - 2.0 * soc0)
    assert plan_loss == pytest.approx(sim.losses_kwh, abs=1e-6)


def test_baseline_leaves_storage_idle():
    site = with_storage(tiny_site(classes=WEB, horizon_h=2), soc_initial_frac=0.5)
    fc = tiny_forecast(site, [100.0, 500.0], web_units_per_h=2.0)
    d = prepare(site, zero_coefficients(site, fc.index), fc)
    acts, _ = baseline_actions(site, d)
    frame = evaluate_actions(d, acts)
    np.testing.assert_allclose(frame["charge_kw__bat"], 0.0)
    np.testing.assert_allclose(frame["discharge_kw__bat"], 0.0)
    np.testing.assert_allclose(frame["grid_power_kw"], frame["facility_power_kw"])


def test_initial_state_of_charge_from_the_measured_state():
    site = with_storage(tiny_site(classes=WEB, horizon_h=2))
    fc = tiny_forecast(site, [500.0, 100.0], web_units_per_h=2.0)
    init = InitialState.from_site(site)
    init = InitialState(init.supply_setpoint_c, init.chw_setpoint_c, init.active_servers, storage_soc_kwh={"bat": 5.0})
    plan = plan_site(site, zero_coefficients(site, fc.index), fc, init, NO_MOVES)
    # 5 kWh stored: step 0 (500 g) runs on the battery (0.6 kW), step 1 recharges 0.6/0.81 kW
    np.testing.assert_allclose(plan.frame["discharge_kw__bat"], [0.6, 0.0], atol=1e-7)
    np.testing.assert_allclose(plan.frame["soc_kwh__bat"], [5.0 - 0.6 / 0.9, 5.0], atol=1e-7)


def test_shadow_price_of_storage_energy_and_power():
    # 1 kWh battery, full power 10 kW: energy binds. Each more kWh stored costs 1/0.9 kWh charged
    # at 100 g and delivers 0.9 kWh at 500 g: 0.9 x 0.5 - 0.1 / 0.9 = 0.3389 kg saved
    site = with_storage(tiny_site(classes=WEB, horizon_h=2), energy_kwh=1.0, charge_kw=10.0, discharge_kw=10.0)
    plan, _ = _plan(site, [100.0, 500.0], 8.0)
    sh = plan.shadow_prices.set_index("family")
    assert sh.loc["storage_energy", "value"] == pytest.approx(-(0.9 * 0.5 - 0.1 / 0.9), rel=1e-5)
    # 10 kWh battery, 0.5 kW discharge: discharge power binds. One more kW delivered at 500 g costs
    # 1/0.81 kWh charged at 100 g: 0.5 - 0.1 / 0.81 = 0.3765 kg per kW (1 h)
    site = with_storage(tiny_site(classes=WEB, horizon_h=2), discharge_kw=0.5, charge_kw=10.0)
    plan, _ = _plan(site, [100.0, 500.0], 8.0)
    sh = plan.shadow_prices.set_index("family")
    assert sh.loc["storage_discharge_power", "value"] == pytest.approx(-(0.5 - 0.1 / 0.81), rel=1e-5)
