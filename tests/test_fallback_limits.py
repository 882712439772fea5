"""Fallback plans stay inside every configured limit, on random feasible and infeasible sites.

Hypothesis draws sites (setpoint ranges and steps, inlet limits that may be impossible,
initial setpoints, redundancy floors, chilled-water ranges) and loads; the planner's plan,
optimal or fallback, and the fallback rule plan itself are checked against the config.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coolshift.config import SiteConfig
from coolshift.optimizer import InitialState, Planner, PlanOptions
from coolshift.optimizer.constraints import batch_not_due_units
from coolshift.optimizer.data import prepare
from coolshift.optimizer.fallback import fallback_plan
from synthetic import linear_coefficients, synthetic_forecast, synthetic_site

ZONES, POOLS = 2, 4
BASE = synthetic_site(zones=ZONES, pools=POOLS, edges=0, horizon_h=4, step_minutes=15).model_dump()


@st.composite
def sites(draw):
    cfg = {k: v for k, v in BASE.items() if k != "base_dir"}
    cfg = SiteConfig.model_validate(cfg).model_dump()  # a deep copy
    for z in cfg["zones"]:
        lo = draw(st.floats(14.0, 21.0))
        hi = lo + draw(st.floats(0.0, 8.0))
        z["supply_setpoint_min_c"], z["supply_setpoint_max_c"] = lo, hi
        z["supply_setpoint_initial_c"] = draw(st.floats(lo, hi))
        z["supply_setpoint_max_step_c"] = draw(st.floats(0.1, 2.0))
        z["inlet_min_c"] = 10.0
        # from impossible (just above the lowest supply) to the ASHRAE A1 allowable maximum
        z["inlet_max_c"] = draw(st.floats(lo + 0.5, 32.0))
        z["containment"] = draw(st.sampled_from(["none", "partial", "full"]))
    for p in cfg["server_pools"]:
        p["min_active_servers"] = draw(st.integers(0, p["servers"]))
    ch = cfg["cooling"]["chiller"]
    ch["chw_setpoint_min_c"] = draw(st.floats(5.0, 9.0))
    ch["chw_setpoint_max_c"] = ch["chw_setpoint_min_c"] + draw(st.floats(0.0, 10.0))
    ch["chw_setpoint_initial_c"] = draw(st.floats(ch["chw_setpoint_min_c"], ch["chw_setpoint_max_c"]))
    return SiteConfig.model_validate(cfg), draw(st.floats(0.1, 0.9)), draw(st.integers(0, 1000))


def _assert_within_limits(site: SiteConfig, d, frame):
    for j, z in enumerate(site.zones):
        sp = frame[f"supply_setpoint_c__{z.name}"].to_numpy()
        assert (sp >= z.supply_setpoint_min_c - 1e-6).all() and (sp <= z.supply_setpoint_max_c + 1e-6).all(), z.name
        moves = np.abs(np.diff(np.concatenate([[z.supply_setpoint_initial_c], sp])))
        assert (moves <= z.supply_setpoint_max_step_c + 1e-6).all(), z.name
    ch = site.cooling.chiller
    chw = frame["chw_setpoint_c"].to_numpy()
    assert (chw >= ch.chw_setpoint_min_c - 1e-6).all() and (chw <= ch.chw_setpoint_max_c + 1e-6).all()
    for p in site.server_pools:
        n = frame[f"active_servers__{p.name}"].to_numpy()
        assert (n >= p.min_active_servers - 1e-6).all() and (n <= p.servers + 1e-6).all(), p.name
    kb = [k for k, c in enumerate(d.classes) if d.batch[k]]
    not_due = batch_not_due_units(d, clear_at_end=False)
    for j, k in enumerate(kb):  # no work past its deadline (the demand here always fits the site)
        assert (frame[f"backlog_units__{d.classes[k]}"].to_numpy() <= not_due[:, j] + 1e-6).all()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sites())
def test_fallback_rule_plan_is_within_every_configured_limit(drawn):
    site, load, seed = drawn
    fc = synthetic_forecast(site, seed=seed, load_frac=load)
    d = prepare(site, linear_coefficients(site, fc.index), fc, InitialState.from_site(site), PlanOptions())
    plan = fallback_plan(d, "test", site=site)
    assert plan.fallback
    _assert_within_limits(site, d, plan.frame)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sites())
def test_planner_plan_optimal_or_fallback_is_within_every_configured_limit(drawn):
    site, load, seed = drawn
    fc = synthetic_forecast(site, seed=seed, load_frac=load)
    planner = Planner(site, linear_coefficients(site, fc.index), fc, InitialState.from_site(site),
                      PlanOptions(deadline_prices=False))
    plan = planner.solve()
    assert plan.status == "optimal" or plan.fallback
    _assert_within_limits(site, planner.problem.data, plan.frame)


def test_an_impossible_inlet_limit_is_diagnosed_and_the_fallback_keeps_the_setpoint_floor():
    cfg = {k: v for k, v in BASE.items() if k != "base_dir"}
    cfg["zones"][1].update(inlet_max_c=18.5, supply_setpoint_min_c=18.0, containment="partial")
    site = SiteConfig.model_validate(cfg)
    fc = synthetic_forecast(site, seed=1, load_frac=0.5)
    planner = Planner(site, linear_coefficients(site, fc.index), fc, InitialState.from_site(site),
                      PlanOptions(deadline_prices=False))
    plan = planner.solve()
    assert plan.fallback and plan.status == "infeasible"
    assert "inlet_limit (z001)" in plan.reason
    # the rule wants 14.5 degC (inlet max - 4 K partial-containment margin): held at the 18 degC floor
    assert (plan.frame["supply_setpoint_c__z001"] >= 18.0 - 1e-9).all()
    _assert_within_limits(site, planner.problem.data, plan.frame)
