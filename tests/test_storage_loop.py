"""Storage inside the closed loop: the receding-horizon plan commands the battery, the
simulator's own storage physics carries it out and its state of charge is what the next
plan starts from; grid import, carbon and the bill of every policy count the battery.

Hand-checkable case (tests/synthetic.py ``tiny_site``, one web class at 4 units/h, hourly
steps): the plan's model says facility = IT power (``zero_coefficients``); the simulator has
its own plant (cooling, UPS and PDU losses), here 1.944 kW. Intensity alternates 4 h at
100 gCO2/kWh and 4 h at 500. Battery 10 kWh, 2 kW each way, round trip 0.81 (0.9 each way),
state of charge 10-90 % (1..9 kWh), starting at 5 kWh, no self-discharge or wear: storing
1 kWh at 100 g and delivering 0.81 kWh at 500 g saves 405 - 100 = 305 g, so the plan fills
the battery in the clean hours and empties it in the dirty ones.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from coolshift.actions import ActionError, Actions
from coolshift.config import SiteConfig
from coolshift.control.evaluation import evaluate_policies, savings_table
from coolshift.control.receding import RecedingHorizonPolicy, initial_state_from_observation
from coolshift.simulations.engine import Stepper, simulate
from coolshift.control.policies import get_policy
from synthetic import tiny_site, zero_coefficients

WEB = [{"name": "web", "kind": "interactive", "share": 1.0}]
BATTERY = {"name": "bat", "energy_kwh": 10.0, "charge_kw": 2.0, "discharge_kw": 2.0, "round_trip_efficiency": 0.81,
           "soc_min_frac": 0.1, "soc_max_frac": 0.9, "soc_initial_frac": 0.5, "self_discharge_per_h": 0.0,
           "degradation_usd_per_kwh": 0.0, "degradation_kgco2_per_kwh": 0.0}
ETA = 0.9  # sqrt(0.81), each way
FLOOR, CEIL, SOC0 = 1.0, 9.0, 5.0  # kWh


class HandModel:
    """A plant model whose coefficients say facility = IT power (+ ``facility_const_kw``)."""

    def __init__(self, facility_const_kw: float = 0.0):
        self.const = facility_const_kw

    def coefficients(self, site, frame):
        return zero_coefficients(site, frame.index, facility_const_kw=self.const)


def _site(**unit) -> SiteConfig:
    base = tiny_site(classes=WEB, horizon_h=8)
    d = base.model_dump()
    d["storage"] = [{**BATTERY, **unit}]
    return SiteConfig.model_validate(d)


def _data(n: int = 24) -> pd.DataFrame:
    idx = pd.date_range("2022-01-01", periods=n, freq="60min", tz="UTC", name="timestamp")
    g = np.where((np.arange(n) // 4) % 2 == 0, 100.0, 500.0)
    return pd.DataFrame({"gco2_per_kwh": g, "temp_c": 20.0, "wetbulb_c": 14.0, "rh_pct": 50.0,
                         "web_units_per_h": 4.0}, index=idx)


def _run(site, policies, model=None):
    ts: dict = {}
    rec = evaluate_policies(site, _data(), policies, model or HandModel(), forecast_mode="perfect", interval_h=4.0,
                            keep_timeseries=ts)
    return rec, ts


def test_closed_loop_battery_lowers_carbon_by_what_it_moved_within_its_limits():
    with_bat, ts = _run(_site(), ["static", "coolshift"])
    without, ts0 = _run(tiny_site(classes=WEB, horizon_h=8), ["static", "coolshift"])
    t, t0 = ts["coolshift"], ts0["coolshift"]
    fac, grid = t["facility_power_kw"].to_numpy(), t["grid_power_kw"].to_numpy()
    ch, dis, soc = (t[f"{k}__bat"].to_numpy() for k in ("charge_kw", "discharge_kw", "soc_kwh"))
    # grid import = facility + charge - discharge, every step
    np.testing.assert_allclose(grid, fac + ch - dis, atol=1e-6)
    # the simulator's own balance: 0.9 of what is drawn is stored, 1/0.9 of what is delivered leaves
    prev = np.concatenate([[SOC0], soc[:-1]])
    np.testing.assert_allclose(soc, prev + ETA * ch - dis / ETA, atol=1e-9)
    assert soc.min() >= FLOOR - 1e-9 and soc.max() <= CEIL + 1e-9
    s = with_bat["policies"]["coolshift"]
    assert s["storage_below_floor_kwh"] == 0.0 and s["storage_above_ceiling_kwh"] == 0.0
    # hand check: the first (clean) interval fills the battery to its ceiling, (9 - 5) / 0.9 kWh drawn
    assert ch[:4].sum() == pytest.approx((CEIL - SOC0) / ETA, abs=1e-6)
    assert soc[3] == pytest.approx(CEIL, abs=1e-6)
    g = t["gco2_per_kwh"].to_numpy()
    assert dis[g == 500.0][:8].min() > 0.1 and ch[g == 500.0].max() < 1e-9  # delivers in dirty hours, never charges there
    # the same plant otherwise: the carbon difference is exactly the battery's grid exchange
    np.testing.assert_allclose(fac, t0["facility_power_kw"].to_numpy(), rtol=1e-9)
    moved_t = float((g * (ch - dis)).sum()) / 1e6  # hourly steps: kW x 1 h x g/kWh -> tCO2
    tco2, tco2_0 = s["tco2_location"], without["policies"]["coolshift"]["tco2_location"]
    assert tco2 - tco2_0 == pytest.approx(moved_t, abs=1e-12)
    assert tco2 < tco2_0 - 2e-3  # more than 2 kg below on this day (9.6 kWh delivered at 500 g)
    assert with_bat["savings_vs_static_pct"]["coolshift"] > without["savings_vs_static_pct"]["coolshift"] + 5.0
    table = savings_table(with_bat)
    assert table.loc["coolshift", "storage_discharged_MWh"] == pytest.approx(dis.sum() / 1000.0)


def test_baselines_leave_the_battery_idle_at_its_initial_charge():
    rec, ts = _run(_site(), ["static", "best_practice", "carbon_greedy"])
    for name, t in ts.items():
        assert (t["charge_kw__bat"] == 0).all() and (t["discharge_kw__bat"] == 0).all(), name
        np.testing.assert_allclose(t["soc_kwh__bat"], SOC0)
        np.testing.assert_allclose(t["grid_power_kw"], t["facility_power_kw"])
        assert rec["policies"][name]["storage_discharged_kwh"] == 0.0


def test_each_plan_starts_from_the_simulated_state_of_charge_not_its_own():
    """The plan believes the facility draws 1 kW more than the simulator's plant does, so it asks
    for discharge the no-export rule clips: the simulated state of charge ends above the plan's,
    and the next plan starts from the simulated one."""
    site = _site()
    pol = RecedingHorizonPolicy(site, HandModel(facility_const_kw=1.0), interval_h=4.0)
    res = simulate(site, _data(), pol)
    soc = res.timeseries["soc_kwh__bat"]
    assert res.summary["storage_command_clipped_kwh"] > 0.1
    differ = 0
    for k, (at, start, planned_end) in enumerate(pol.storage_log):
        sim_before = SOC0 if k == 0 else float(soc[soc.index < at].iloc[-1])
        assert start["bat"] == pytest.approx(sim_before, abs=1e-9)
        if k + 1 < len(pol.storage_log):
            nxt = pol.storage_log[k + 1][1]["bat"]
            differ += abs(nxt - planned_end["bat"]) > 1e-3
    assert differ >= 1  # at least one re-plan where the plan's own end state was wrong and not used
    assert soc.min() >= FLOOR - 1e-9 and soc.max() <= CEIL + 1e-9


def test_ups_reserve_is_never_used_in_the_loop():
    """A UPS string: 6 min at the design IT load (10 kW) is 1 kWh delivered, 1/0.9 kWh stored, never used."""
    site = _site(kind="ups", soc_min_frac=0.0, soc_initial_frac=0.3, ride_through_min=6.0)
    reserve = 6.0 / 60.0 * 10.0 / ETA
    rec, ts = _run(site, ["coolshift"], HandModel(facility_const_kw=1.0))
    soc = ts["coolshift"]["soc_kwh__bat"]
    assert soc.min() >= reserve - 1e-9
    assert rec["policies"]["coolshift"]["storage_below_floor_kwh"] == 0.0
    assert rec["policies"]["coolshift"]["storage_discharged_kwh"] > 1.0  # it was used, above the reserve
    # commanded to empty it (1 kW for 4 h from 3 kWh), the simulator stops at the reserve
    st = Stepper(site, _data())
    a = get_policy("static").decide(st.observation(4))
    st.step(Actions(a.supply_c, a.chw_c, a.active_servers, a.release_units_per_h, a.offload_units_per_h,
                    discharge_kw=np.full((4, 1), 1.0)))
    soc = st.result().timeseries["soc_kwh__bat"].to_numpy()
    np.testing.assert_allclose(soc, [3.0 - 1.0 / ETA, reserve, reserve, reserve], atol=1e-9)


def test_initial_state_from_observation_carries_the_measured_state_of_charge():
    site = _site()
    st = Stepper(site, _data())
    st.step(get_policy("static").decide(st.observation(2)))
    st.state.storage_soc_kwh = np.array([7.25])
    init = initial_state_from_observation(site, st.observation(4))
    assert init.storage_soc_kwh == {"bat": 7.25}


def test_bad_storage_commands_are_refused_naming_store_and_step():
    site = _site()
    st = Stepper(site, _data())
    a = get_policy("static").decide(st.observation(2))
    bad = Actions(a.supply_c, a.chw_c, a.active_servers, a.release_units_per_h, a.offload_units_per_h,
                  charge_kw=np.array([[0.5], [-1.0]]))
    with pytest.raises(ActionError, match=r"negative power -1 kW for store bat at step 1"):
        st.step(bad)
    with pytest.raises(ActionError, match=r"charge_kw: shape \(2,\), expected \(2, 1\)"):
        st.step(Actions(a.supply_c, a.chw_c, a.active_servers, a.release_units_per_h, a.offload_units_per_h,
                        charge_kw=np.array([0.5, 1.0])))
    # a command beyond the store's power is carried out as far as the limit allows, recorded
    st.step(Actions(a.supply_c, a.chw_c, a.active_servers, a.release_units_per_h, a.offload_units_per_h,
                    charge_kw=np.array([[5.0], [5.0]])))
    r = st.result()
    np.testing.assert_allclose(r.timeseries["charge_kw__bat"], [2.0, 2.0])
    np.testing.assert_allclose(r.timeseries["soc_kwh__bat"], [SOC0 + 1.8, SOC0 + 3.6])
    assert r.summary["storage_command_clipped_kwh"] == pytest.approx(6.0)


def test_evaluation_report_plots_the_simulated_state_of_charge_of_the_policies_that_used_it():
    from coolshift.usecases.evaluate import storage_figures

    _, ts = _run(_site(), ["static", "coolshift"])
    figs = storage_figures(ts)
    assert [c for _, c in figs] == ["Storage state of charge and grid import"]
    soc_ax, grid_ax = figs[0][0].axes
    lines = {ln.get_label(): ln for ln in soc_ax.get_lines()}
    assert list(lines) == ["coolshift: bat"]                  # static left the battery idle: not drawn
    np.testing.assert_allclose(lines["coolshift: bat"].get_ydata(), ts["coolshift"]["soc_kwh__bat"].to_numpy())
    grid = {ln.get_label(): ln.get_ydata() for ln in grid_ax.get_lines()}
    np.testing.assert_allclose(grid["grid import"], ts["coolshift"]["grid_power_kw"].to_numpy())
    _, ts0 = _run(tiny_site(classes=WEB, horizon_h=8), ["static", "coolshift"])
    assert storage_figures(ts0) == []
