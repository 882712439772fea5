"""Engine, interface and policies: action checks, queues, lateness, interval independence, edge offload."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import LARGE_SITE, SMALL_SITE
from coolshift.config import load_site
from coolshift.io import load_site_data
from coolshift.simulations import simulate
from coolshift.actions import ActionError, Actions
from coolshift.control.policies import get_policy
from coolshift.site_arrays import SiteArrays
from coolshift.baselines import best_practice_actions
from coolshift.control.policies import BestPracticePolicy, CarbonGreedyPolicy, FixedPolicy
from coolshift.workload import allocate_to_pools, lateness, lindley_queue
from test_sim_physics import fixed_actions, synthetic


@pytest.fixture(scope="module")
def sj():
    return load_site(SMALL_SITE)


@pytest.fixture(scope="module")
def phl():
    return load_site(LARGE_SITE)


def test_out_of_bounds_actions_raise_with_the_limit_named(sj):
    data = synthetic(sj, hours=4)
    n = len(data)
    a = fixed_actions(sj, n, 18.0, 10.0)
    a.supply_c[2, 1] = 30.0
    with pytest.raises(ActionError, match=r"zone hall_b.*step 2.*supply_setpoint_min_c/max_c"):
        simulate(sj, data, FixedPolicy(a))
    a = fixed_actions(sj, n, 18.0, 10.0)
    a.active_servers[0, 0] = sj.server_pools[0].servers + 1
    with pytest.raises(ActionError, match="a_web"):
        simulate(sj, data, FixedPolicy(a))
    a = fixed_actions(sj, n, 18.0, 10.0)
    a.active_servers[0, 0] = 10.5
    with pytest.raises(ActionError, match="whole number"):
        simulate(sj, data, FixedPolicy(a))
    a = fixed_actions(sj, n, 18.0, 3.0)
    with pytest.raises(ActionError, match="chilled-water"):
        simulate(sj, data, FixedPolicy(a))
    a = fixed_actions(sj, n, 18.0, 10.0)
    a.release_units_per_h[1, 0] = -1
    with pytest.raises(ActionError, match="negative"):
        simulate(sj, data, FixedPolicy(a))
    bad = Actions(a.supply_c[:, :1], a.chw_c, a.active_servers, a.release_units_per_h, a.offload_units_per_h)
    with pytest.raises(ActionError, match="shape"):
        simulate(sj, data, FixedPolicy(bad))


def test_soft_limits_are_recorded_not_hidden(sj):
    data = synthetic(sj, hours=6)
    n = len(data)
    a = fixed_actions(sj, n, 18.0, 10.0)
    a.active_servers[:, 2] = 100  # b_storage below its min_active_servers of 600
    a.supply_c[4:, 0] = 24.0  # a 6 K jump, rate limit is 1 K per 15 min
    a.supply_c[:, 1] = 16.0  # a 2 K drop from the initial 18 degC at step 0
    a.chw_c[:] = 14.0  # 16 < 14 + 3 K coil approach: the coil cannot deliver it
    s = simulate(sj, data, FixedPolicy(a)).summary
    assert s["redundancy_violation_minutes"] == n * 15
    assert s["setpoint_rate_violations"] == 2
    assert s["supply_below_chw_minutes"] == n * 15
    r = simulate(sj, data, FixedPolicy(a))
    assert (r.timeseries["supply_temp_c__hall_b"] >= 17.0 - 1e-9).all()  # physics, not the setpoint


def test_release_beyond_capacity_is_recorded_and_work_stays_queued(sj):
    data = synthetic(sj, hours=6)
    n = len(data)
    a = fixed_actions(sj, n, 18.0, 10.0, active_frac=0.0)  # only the redundancy floors on
    a.release_units_per_h[:] = 1e5
    r = simulate(sj, data, FixedPolicy(a))
    s = r.summary
    assert s["batch_capacity_shortfall_units"] > 0
    ts = r.timeseries
    # what the floor servers could not run is still in the queue, none is lost
    arrived = ts["arrived_units__batch"].sum()
    served = ts["served_units_per_h__batch"].sum() * 0.25
    assert arrived == pytest.approx(served + ts["queue_units__batch"].iloc[-1])
    assert s["sla_violations"] > 0 or s["unserved_interactive_units"] == 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 50), st.floats(0, 50)), min_size=1, max_size=40), st.floats(0, 30))
def test_lindley_closed_form_matches_the_recursion(steps, q0):
    a = np.array([s[0] for s in steps])
    d = np.array([s[1] for s in steps])
    q, served = lindley_queue(q0, a, d)
    prev = q0
    for k in range(len(a)):
        want = max(0.0, prev + a[k] - d[k])
        assert q[k] == pytest.approx(want, abs=1e-7)
        assert served[k] == pytest.approx(prev + a[k] - want, abs=1e-7)
        assert -1e-9 <= served[k] <= d[k] + 1e-7
        prev = want


def test_lateness_by_hand():
    # 10 units arrive in step 0 and 4 in step 1, deadline 2 steps; 3 served per step (FIFO)
    arr = np.array([10.0, 4.0, 0, 0, 0, 0])
    served = np.array([3.0, 3.0, 3.0, 3.0, 2.0, 0.0])
    r = lateness(arr, served, deadline_steps=2, step_h=0.25)
    # step-0 work due by end of step 1: 6 served, 4 late, finished in step 3 (2 steps late)
    # step-1 work due by end of step 2: cumulative 9 < 14, all 4 late, finished in step 4
    np.testing.assert_allclose(r["late_units_by_step"], [4.0, 4.0, 0, 0, 0, 0])
    assert r["late_units"] == 8.0
    assert r["max_lateness_h"] == pytest.approx(0.5)
    assert r["mean_lateness_h"] == pytest.approx(0.5)


def test_allocation_fills_specialised_pools_first_and_conserves_work():
    elig = np.array([[True, True, True], [False, True, True]])  # web anywhere, batch not on pool 0
    cap = np.array([[100.0, 200.0, 300.0]])
    served, load = allocate_to_pools(np.array([[150.0, 400.0]]), cap, elig)
    assert load[0, 0] == pytest.approx(100.0)  # web filled its own pool first
    np.testing.assert_allclose(served, [[150.0, 400.0]])
    np.testing.assert_allclose(load.sum(), 550.0)
    assert (load <= cap + 1e-9).all()
    served, load = allocate_to_pools(np.array([[700.0, 400.0]]), cap, elig)
    np.testing.assert_allclose(served, [[600.0, 0.0]])


def test_decision_interval_does_not_change_a_causal_rule(sj):
    data = load_site_data(sj, "2022-03-01", "2022-03-04")
    daily = simulate(sj, data, BestPracticePolicy(interval_h=24.0)).timeseries
    hourly = simulate(sj, data, BestPracticePolicy(interval_h=1.0)).timeseries
    whole = simulate(sj, data, BestPracticePolicy(interval_h=None)).timeseries
    for other in (hourly, whole):
        np.testing.assert_allclose(other.facility_power_kw, daily.facility_power_kw, rtol=1e-9)
        np.testing.assert_allclose(other.filter(like="inlet_temp_c__"), daily.filter(like="inlet_temp_c__"), rtol=1e-9)


def test_carbon_greedy_cuts_location_carbon_without_late_work(sj):
    data = load_site_data(sj, "2022-04-01", "2022-04-15")
    bp = simulate(sj, data, get_policy("best_practice")).summary
    cg = simulate(sj, data, get_policy("carbon_greedy")).summary
    assert cg["late_work_units"] == 0 and cg["sla_violations"] == 0 and cg["batch_capacity_shortfall_units"] == 0
    assert cg["tco2_location"] < 0.99 * bp["tco2_location"]
    # same work served (up to what is queued at the end)
    assert cg["backlog_end_units"] < 0.02 * data["batch_units_per_h"].sum() * 0.25


def test_baselines_keep_their_definitions(sj):
    data = load_site_data(sj, "2022-05-01", "2022-05-03")
    ts = simulate(sj, data, get_policy("static")).timeseries
    assert (ts.filter(like="supply_setpoint_c__") == 18.0).all().all()
    assert (ts.chw_setpoint_c == sj.cooling.chiller.chw_setpoint_initial_c).all()
    assert (ts.filter(like="active_servers__").to_numpy() == [p.servers for p in sj.server_pools]).all()
    # batch runs on arrival: it waits only at peaks when the batch-capable pools are full
    assert (ts["queue_units__batch"] < 1e-6).mean() > 0.85
    cg = simulate(sj, data, get_policy("carbon_greedy")).timeseries
    assert (ts["served_units_per_h__batch"].cumsum() >= cg["served_units_per_h__batch"].cumsum() - 1e-6).all()
    bp = simulate(sj, data, get_policy("best_practice")).timeseries
    last = bp.iloc[-1]
    assert last["supply_setpoint_c__hall_a"] == 25.0 and last["supply_setpoint_c__hall_b"] == 23.0  # 27 - margin
    assert (bp.filter(like="inlet_temp_c__").max() <= 27.0).all()
    act = bp.filter(like="active_servers__").to_numpy()
    assert (act >= [p.min_active_servers for p in sj.server_pools]).all()
    assert act.sum(axis=1).mean() < 0.95 * sum(p.servers for p in sj.server_pools)
    np.testing.assert_allclose(bp["served_units_per_h__batch"], ts["served_units_per_h__batch"], rtol=1e-6, atol=1e-6)


def test_best_practice_rule_is_a_pure_function(sj):
    from coolshift.simulations import initial_state

    data = synthetic(sj, hours=2)
    st = initial_state(sj)
    a1 = best_practice_actions(sj, data, st, len(data), 0.25)
    a2 = best_practice_actions(sj, data, st, len(data), 0.25)
    for f in ("supply_c", "chw_c", "active_servers", "release_units_per_h"):
        np.testing.assert_array_equal(getattr(a1, f), getattr(a2, f))
    np.testing.assert_array_equal(st.supply_c, initial_state(sj).supply_c)  # state untouched
    names = SiteArrays.from_site(sj)
    frame = a1.to_frame(data.index, names)
    back = Actions.from_frame(frame, names)
    np.testing.assert_array_equal(back.active_servers, a1.active_servers)


class OffloadPolicy:
    """Best practice plus a fixed offload of batch work to the cleanest edge site."""

    name = "offload"
    interval_h = 24.0

    def decide(self, obs):
        a = best_practice_actions(obs.site, obs.forecast_arrays, obs.state, obs.n_steps, obs.step_h)
        off = np.minimum(300.0, a.release_units_per_h[:, 0])  # batch work moved to portland_edge
        a.release_units_per_h[:, 0] -= off
        a.offload_units_per_h[:, 0, 0] = off
        return a


def test_edge_offload_counts_edge_energy_at_its_own_grid(phl):
    data = load_site_data(phl, "2022-05-01", "2022-05-03")
    base = simulate(phl, data, get_policy("best_practice")).summary
    r = simulate(phl, data, OffloadPolicy())
    s = r.summary
    off = r.actions.offload_units_per_h[:, 0, 0]
    assert off.mean() > 250
    assert s["offloaded_units"] == pytest.approx(off.sum() * 0.25, rel=1e-6)
    e = phl.edge_sites[0]
    edge_kwh = ((e.static_kw * (off > 0) + e.kw_per_unit_per_h * off) * e.pue * 0.25).sum()
    assert s["edge_kwh"] == pytest.approx(edge_kwh, rel=1e-6)
    assert s["network_kwh"] == pytest.approx(off.sum() * 0.5 * e.network_kwh_per_gb * 0.25, rel=1e-6)
    ts = r.timeseries
    kg = (ts["edge_facility_kw__portland_edge"] * 0.25 * data["gco2_per_kwh__portland_edge"]).sum() / 1000
    kg += (ts["network_kw"] * 0.25 * data["gco2_per_kwh"]).sum() / 1000
    assert s["tco2_edge"] == pytest.approx(kg / 1000, rel=1e-9)
    assert s["it_kwh"] < base["it_kwh"] and s["late_work_units"] == 0


def test_offload_beyond_latency_or_capacity_raises(phl):
    data = synthetic(phl, hours=2)

    class Bad(OffloadPolicy):
        def decide(self, obs):
            a = super().decide(obs)
            a.offload_units_per_h[:, 0, 0] = 2000.0
            return a

    with pytest.raises(ActionError, match="capacity_units_per_h"):
        simulate(phl, data, Bad())
    tight = phl.model_copy(update={"workload_classes": [
        c.model_copy(update={"max_latency_ms": 50.0}) if c.name == "batch" else c for c in phl.workload_classes]})
    with pytest.raises(ActionError, match="latency"):
        simulate(tight, data, OffloadPolicy())


def test_forecast_hook_changes_what_the_policy_sees_not_the_physics(sj):
    data = load_site_data(sj, "2022-04-01", "2022-04-05")
    flat = data.copy()
    flat["gco2_per_kwh"] = flat["gco2_per_kwh"].mean()
    actual = simulate(sj, data, CarbonGreedyPolicy()).summary
    blind = simulate(sj, data, CarbonGreedyPolicy(), forecast=flat).summary
    assert blind["tco2_location"] > actual["tco2_location"]
    assert blind["late_work_units"] == 0


def test_bad_data_named(sj):
    data = synthetic(sj, hours=2).drop(columns=["wetbulb_c"])
    with pytest.raises(ValueError, match="wetbulb_c"):
        simulate(sj, data, get_policy("static"))
    data = synthetic(sj, hours=2)
    data.iloc[3, data.columns.get_loc("temp_c")] = np.nan
    with pytest.raises(ValueError, match=r"temp_c.*2022-06-01 00:45"):
        simulate(sj, data, get_policy("static"))
