"""Levers for attributing savings: each lever alone beats the static baseline, all beat any one."""

from __future__ import annotations

import numpy as np
import pytest

from coolshift.optimizer import InitialState, PlanOptions, plan_site
from synthetic import linear_coefficients, synthetic_forecast, synthetic_site

LEVERS = ("cooling", "consolidation", "shifting", "offload")


def _opts(levers):
    return PlanOptions(levers=frozenset(levers), move_penalty_kg_per_c=0.0, deadline_prices=False)


def _plans(state_fn=None):
    site = synthetic_site(2, 6, horizon_h=6)
    fc = synthetic_forecast(site)
    co = linear_coefficients(site, fc.index, temp_c=fc["temp_c"].to_numpy())
    st = state_fn(site) if state_fn else None
    out = {levers: plan_site(site, co, fc, st, options=_opts(levers)) for levers in [(), *[(l,) for l in LEVERS], LEVERS]}
    return site, fc, out


@pytest.fixture(scope="module")
def plans():
    return _plans()


def _consolidated(site):
    """Servers at the redundancy floor (as a previous plan left them) and queued work due soon:
    switching servers back on costs boot time in the first step (the queue is 40 % of what
    the whole site serves in that step)."""
    s0 = InitialState.from_site(site)
    return InitialState(s0.supply_setpoint_c, s0.chw_setpoint_c,
                        {p.name: float(p.min_active_servers) for p in site.server_pools},
                        backlog_due={"batch": [(0.25, 0.1 * sum(p.servers * p.capacity_units_per_server
                                                                for p in site.server_pools))]})


@pytest.mark.parametrize("state", ["all_on", "consolidated"])
def test_each_lever_alone_beats_all_off_and_all_beat_each(plans, state):
    _, _, out = plans if state == "all_on" else _plans(_consolidated)
    kg = {k: p.totals["tco2"] * 1000 for k, p in out.items()}
    assert all(p.status == "optimal" and not p.fallback for p in out.values())
    for lever in LEVERS:
        assert kg[(lever,)] <= kg[()] * (1 + 1e-9), lever
        assert kg[LEVERS] <= kg[(lever,)] * (1 + 1e-9), lever
        assert kg[(lever,)] < kg[()] * 0.999, f"{lever} saves nothing on this site"  # each lever matters here
    assert kg[LEVERS] < min(kg[(lever,)] for lever in LEVERS) * 0.99


def test_all_levers_off_is_the_static_baseline(plans):
    from coolshift.actions import SimState
    from coolshift.baselines import static_actions

    site, fc, out = plans
    f = out[()].frame
    for z in site.zones:
        np.testing.assert_allclose(f[f"supply_setpoint_c__{z.name}"], z.supply_setpoint_initial_c, atol=1e-7)
    np.testing.assert_allclose(f["chw_setpoint_c"], site.cooling.chiller.chw_setpoint_initial_c, atol=1e-7)
    for p in site.server_pools:
        np.testing.assert_allclose(f[f"active_servers__{p.name}"], p.servers, atol=1e-7)
    assert f.filter(like="offload_units_per_h__").abs().to_numpy().max(initial=0.0) < 1e-9
    s0 = InitialState.from_site(site)
    batch = [c.name for c in site.workload_classes if c.kind == "batch"]
    state = SimState(inlet_c=np.full(len(site.zones), np.nan), supply_c=np.array(list(s0.supply_setpoint_c.values())),
                     chw_c=s0.chw_setpoint_c, active_servers=np.array([p.servers for p in site.server_pools], float),
                     queue_units=np.zeros(len(batch)))
    rel = static_actions(site, fc, state, len(fc), site.step_h).release_units_per_h
    for b, name in enumerate(batch):
        np.testing.assert_allclose(f[f"release_units_per_h__{name}"], rel[:, b], atol=1e-6)


def test_unknown_lever_is_named():
    site = synthetic_site(1, 2, horizon_h=2)
    fc = synthetic_forecast(site)
    co = linear_coefficients(site, fc.index, temp_c=fc["temp_c"].to_numpy())
    with pytest.raises(ValueError, match="unknown lever.*'chiller'"):
        plan_site(site, co, fc, options=PlanOptions(levers=frozenset({"chiller"})))
