"""Physics of the simulator: the issue's "done when" checks, on real and synthetic inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import LARGE_SITE, SMALL_SITE
from coolshift.config import load_site
from coolshift.io import load_site_data
from coolshift.simulations import initial_state, simulate
from coolshift.actions import Actions
from coolshift.control.policies import get_policy
from coolshift.site_arrays import SiteArrays
from coolshift.simulations import airside, plant, servers
from coolshift.control.policies import FixedPolicy


@pytest.fixture(scope="module")
def sj():
    return load_site(SMALL_SITE)


def synthetic(site, hours=48, step_minutes=15, temp=20.0, util=0.6, gco2=300.0, rh=50.0):
    idx = pd.date_range("2022-06-01", periods=hours * 60 // step_minutes, freq=f"{step_minutes}min", tz="UTC")
    n = len(idx)
    t = np.broadcast_to(np.asarray(temp, dtype=float), (n,)).copy()
    cap = site.capacity_units_per_h
    d = {"gco2_per_kwh": np.broadcast_to(gco2, (n,)).astype(float), "temp_c": t, "rh_pct": np.full(n, rh),
         "wetbulb_c": t - 5.0, "cpu_util": np.full(n, util)}
    for e in site.edge_sites:
        d[f"gco2_per_kwh__{e.name}"] = np.full(n, 100.0)
    for c in site.workload_classes:
        d[f"{c.name}_units_per_h"] = np.full(n, util * cap * c.share)
    return pd.DataFrame(d, index=idx)


def fixed_actions(site, n, supply, chw, active_frac=1.0, release=None):
    names = SiteArrays.from_site(site)
    act = np.array([max(p.min_active_servers, round(p.servers * active_frac)) for p in site.server_pools], dtype=float)
    rel = np.zeros((n, len(names.batch))) if release is None else release
    return Actions(np.full((n, len(names.zones)), supply, dtype=float), np.full(n, chw, dtype=float),
                   np.broadcast_to(act, (n, len(act))).copy(), rel, np.zeros((n, len(names.edges), len(names.offloadable))))


def test_energy_and_heat_balance_close_every_step_on_real_week():
    for path in (SMALL_SITE, LARGE_SITE):
        site = load_site(path)
        data = load_site_data(site, "2022-08-01", "2022-08-08")
        for pol in ("static", "carbon_greedy", "explore"):
            ts = simulate(site, data, get_policy(pol)).timeseries
            parts = ts.it_power_kw + ts.cooling_power_kw + ts.ups_loss_kw + ts.pdu_loss_kw + ts.other_kw
            np.testing.assert_allclose(ts.facility_power_kw, parts, rtol=1e-12)
            cool = ts.chiller_kw + ts.crah_fan_kw + ts.pump_kw + ts.tower_fan_kw
            np.testing.assert_allclose(ts.cooling_power_kw, cool, rtol=1e-12)
            # heat removed (free + chiller duty) + unmet = heat generated indoors
            np.testing.assert_allclose(ts.free_cooling_kw + ts.chiller_duty_kw + ts.unmet_cooling_kw, ts.heat_load_kw, rtol=1e-9)
            heat = ts.it_power_kw + ts.crah_fan_kw + ts.pdu_loss_kw + ts.ups_loss_kw + ts.other_kw
            np.testing.assert_allclose(ts.heat_load_kw, heat, rtol=1e-9)
            zone_it = ts.filter(like="zone_it_power_kw__").sum(axis=1)
            np.testing.assert_allclose(zone_it, ts.it_power_kw, rtol=1e-9)
            assert (ts.pue > 1.0).all()


@pytest.mark.parametrize("path", [SMALL_SITE, LARGE_SITE], ids=["sanjose", "philadelphia"])
def test_pue_in_published_band_over_a_year_of_real_weather(path):
    """Uptime Institute 2023 survey: average PUE 1.58; real facilities 1.1-1.8."""
    site = load_site(path)
    data = load_site_data(site, "2022-01-01", "2023-01-01", step_minutes=60)
    pues = {}
    for pol in ("static", "best_practice"):
        s = simulate(site, data, get_policy(pol)).summary
        assert 1.1 <= s["pue"] <= 1.8, (pol, s["pue"])
        assert s["thermal_violation_minutes"] == 0 and s["sla_violations"] == 0 and s["late_work_units"] == 0
        pues[pol] = s["pue"]
    assert pues["best_practice"] < pues["static"]


def test_cooling_rises_with_outside_temperature_when_economiser_off(sj):
    site = sj.model_copy(update={"cooling": sj.cooling.model_copy(update={"economiser": sj.cooling.economiser.model_copy(update={"type": "none"})})})
    temps = np.linspace(5.0, 40.0, 36)
    data = synthetic(site, hours=36 * 24, step_minutes=60)  # one step per temperature, held a day
    data["temp_c"] = np.repeat(temps, 24)
    data["wetbulb_c"] = data["temp_c"] - 5.0
    n = len(data)
    ts = simulate(site, data, FixedPolicy(fixed_actions(site, n, 20.0, 10.0))).timeseries
    daily = ts.resample("1D").mean()
    assert (daily.economiser_frac == 0).all()
    # strictly rising once the tower leaves its minimum condenser-water temperature
    hot = daily[daily.wetbulb_c + plant.TOWER_APPROACH_K > plant.CONDENSER_WATER_MIN_C + 0.5]
    assert len(hot) > 20
    assert (np.diff(hot.chiller_kw) > 0).all() and (np.diff(hot.cooling_power_kw) > 0).all()
    assert daily.cooling_power_kw.iloc[-1] > 1.3 * daily.cooling_power_kw.iloc[0]


def test_raising_supply_setpoint_lowers_chiller_and_raises_server_fans(sj):
    site = sj.model_copy(update={"cooling": sj.cooling.model_copy(update={"economiser": sj.cooling.economiser.model_copy(update={"type": "none"})})})
    data = synthetic(site, hours=24, temp=30.0)
    n = len(data)
    out = {}
    approach = site.cooling.crah_supply_approach_c
    for sp in (18.0, 22.0, 26.0):
        st = initial_state(site)
        st.supply_c[:] = sp
        st.inlet_c[:] = sp
        pol = FixedPolicy(fixed_actions(site, n, sp, min(sp - approach - 1.0, site.cooling.chiller.chw_setpoint_max_c)))
        out[sp] = simulate(site, data, pol, state=st).summary
    # warmer supply lets the chilled water run warmer (better COP) until chw hits its maximum
    assert out[18.0]["chiller_kwh"] > 1.05 * out[22.0]["chiller_kwh"]
    assert out[18.0]["chiller_kwh"] > 1.05 * out[26.0]["chiller_kwh"]
    assert out[26.0]["server_fan_kwh"] > out[22.0]["server_fan_kwh"] >= out[18.0]["server_fan_kwh"]
    assert out[26.0]["server_fan_kwh"] > 0


def test_hot_week_static_undersized_plant_violates_thermal_limits(sj):
    data = load_site_data(sj, "2022-09-03", "2022-09-10")  # California heat wave, 2022-09-05..09
    assert data.temp_c.max() > 38
    ok = simulate(sj, data, get_policy("static")).summary
    assert ok["thermal_violation_minutes"] == 0
    small = sj.cooling.chiller.model_copy(update={"rated_capacity_kw": 500.0})
    site = sj.model_copy(update={"cooling": sj.cooling.model_copy(update={"chiller": small})})
    r = simulate(site, data, get_policy("static"))
    s = r.summary
    assert s["unmet_cooling_kwh"] > 0
    assert s["thermal_violation_minutes"] > 60
    ts = r.timeseries
    hot = ts.unmet_cooling_kw > 0
    # violations happen when the plant cannot keep up, and supply air runs above its setpoint there
    assert (ts.loc[hot, "supply_temp_c__hall_a"] > ts.loc[hot, "supply_setpoint_c__hall_a"]).all()
    assert (ts.loc[ts.thermal_violation_zones > 0, "unmet_cooling_kw"] > 0).mean() > 0.9


def test_server_power_curve_fan_rise_and_boot():
    curve = servers.linear_curve_frac(100.0, 400.0)
    assert servers.power_curve_w(0.0, curve, 400.0) == pytest.approx(100.0)
    assert servers.power_curve_w(1.0, curve, 400.0) == pytest.approx(400.0)
    assert servers.power_curve_w(0.55, curve, 400.0) == pytest.approx(265.0)
    spec = [0.25, 0.37, 0.44, 0.50, 0.56, 0.62, 0.68, 0.75, 0.82, 0.90, 1.0]
    assert servers.power_curve_w(0.15, spec, 480.0) == pytest.approx(480 * 0.405)
    with pytest.raises(ValueError):
        servers.power_curve_w(1.2, spec, 480.0)
    f = servers.fan_leakage_frac(np.array([20.0, 25.0, 30.0, 35.0]))
    assert f[0] == f[1] == 0 and 0 < f[2] < f[3] and 0.04 <= f[3] <= 0.20  # ASHRAE TC 9.9 band at 35 degC
    assert servers.boot_power_w(10, 400.0, 100.0, 180.0, 900.0) == pytest.approx(10 * 300 * 0.2)


def test_rc_lag_is_the_exact_first_order_response():
    tau, dt = 600.0, 300.0
    target = np.column_stack([np.full(12, 30.0), np.linspace(20, 25, 12)])
    x, last = airside.rc_lag(target, np.array([20.0, 20.0]), dt, np.array([tau, 2 * tau]))
    ref = np.empty_like(target)
    prev = np.array([20.0, 20.0])
    a = np.exp(-dt / np.array([tau, 2 * tau]))
    for k in range(12):
        prev = a * prev + (1 - a) * target[k]
        ref[k] = prev
    np.testing.assert_allclose(x, ref, rtol=1e-12)
    np.testing.assert_allclose(last, ref[-1])
    # after one time constant a step has covered 1 - 1/e of the way
    assert (x[1, 0] - 20) / 10 == pytest.approx(1 - np.exp(-1), rel=1e-9)


def test_recirculation_and_fans_respond_to_density_and_airflow():
    r_low = airside.recirculation_rise_c(400.0, 100.0, 100, "partial")
    r_high = airside.recirculation_rise_c(1200.0, 100.0, 100, "partial")
    assert r_high > r_low > 0
    v_srv = airside.server_airflow_m3_s(1200.0)
    starved = airside.recirculation_rise_c(1200.0, 0.5 * v_srv, 100, "partial")
    assert starved > r_high + 0.4 * airside.SERVER_DELTA_T_K
    assert airside.recirculation_rise_c(800.0, 100.0, 100, "full") < airside.recirculation_rise_c(800.0, 100.0, 100, "none")
    assert airside.crah_fan_kw(48.0, 8, 12.0, 11.0) == pytest.approx(88.0 * 0.5**3)


def test_chiller_cop_and_economiser_modes():
    eta = plant.carnot_fraction(6.1, 6.7, 29.4, "water_cooled")
    assert plant.chiller_cop(6.7, 29.4, eta, "water_cooled") == pytest.approx(6.1)
    cops = plant.chiller_cop(np.array([7.0, 10.0, 14.0]), 29.4, eta, "water_cooled")
    assert np.all(np.diff(cops) > 0)
    assert plant.chiller_cop(10.0, 20.0, eta, "water_cooled") > plant.chiller_cop(10.0, 30.0, eta, "water_cooled")
    # EnergyPlus EIR-f(PLR) is 1 at full load
    assert plant.eir_fplr(1.0) == pytest.approx(1.0)
    full = plant.economiser_fraction("waterside", 4.0, 12.0, 20.0, 6.0, 10.0)
    part = plant.economiser_fraction("waterside", 4.0, 12.0, 20.0, 10.0, 15.0)
    off = plant.economiser_fraction("waterside", 4.0, 12.0, 20.0, 16.0, 25.0)
    assert full == 1.0 and 0 < part < 1 and off == 0.0
    assert plant.evaporative_water_l(1.0) == pytest.approx(3600 / 2430 * 0.85 * 1.25)
