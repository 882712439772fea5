"""Solver behaviour: re-solves equal fresh solves, fallbacks, Pyomo view, input errors, power curves."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from coolshift.optimizer import InitialState, Planner, PlanOptions, evaluate_actions, plan_site, power_curve_error
from coolshift.optimizer.data import power_curve_segments, prepare
from coolshift.optimizer.results import actions_from_solution
from synthetic import (
    linear_coefficients, synthetic_forecast, synthetic_site, tiny_forecast, tiny_site, zero_coefficients,
)

OPTS = PlanOptions(deadline_prices=False)


@pytest.fixture(scope="module")
def small():
    site = synthetic_site(2, 6, horizon_h=6)
    fc = synthetic_forecast(site)
    co = linear_coefficients(site, fc.index, temp_c=fc["temp_c"].to_numpy())
    return site, fc, co


def _state(site, seed):
    rng = np.random.default_rng(seed)
    s = InitialState.from_site(site)
    return InitialState(
        {z: v + float(rng.uniform(0, 2)) for z, v in s.supply_setpoint_c.items()},
        s.chw_setpoint_c + 1.0,
        {p: float(np.floor(v * rng.uniform(0.2, 0.9))) for p, v in s.active_servers.items()},
        {"batch": 40.0},
        {"batch": 2.0},
    )


@pytest.mark.parametrize("change", ["intensity", "intensity+state", "forecast+state", "state"])
def test_resolve_of_loaded_model_equals_fresh_solve(small, change):
    site, fc, co = small
    warm = PlanOptions(deadline_prices=False, warm_bound_share=0.2)  # small site: state moves ~5 % of bounds
    planner = Planner(site, co, fc, options=warm)
    first = planner.solve()
    new = synthetic_forecast(site, seed=5)
    fc2 = fc.copy()
    if change.startswith("intensity"):
        cols = [c for c in fc.columns if c.startswith("gco2_per_kwh")]
        fc2[cols] = new[cols]
    elif change.startswith("forecast"):
        fc2 = new
    st = _state(site, 1) if change.endswith("state") else None
    info = planner.update(forecast=fc2, initial_state=st)
    assert not info["rebuilt"]
    assert info["method"] == {"intensity": "primal", "intensity+state": "primal+dual", "state": "dual"}.get(
        change, info["method"]
    )
    again = planner.solve()
    fresh = Planner(site, co, fc2, st, options=OPTS).solve()
    assert again.status == fresh.status == "optimal"
    assert again.objective_kg == pytest.approx(fresh.objective_kg, rel=1e-7)
    assert again.objective_kg != pytest.approx(first.objective_kg, rel=1e-6)  # the change mattered


def test_plan_objective_equals_its_evaluated_carbon(small):
    site, fc, co = small
    planner = Planner(site, co, fc, options=PlanOptions(move_penalty_kg_per_c=0.0, deadline_prices=False))
    plan = planner.solve()
    # the objective is kgCO2 plus a 1e-6 kg/kWh tie-breaker on facility energy
    expected = plan.frame["kgco2"].sum() + 1e-6 * plan.totals["facility_kwh"]
    assert plan.objective_kg == pytest.approx(expected, rel=1e-7)
    # predicted inlet temperatures respect the zone limits, servers their floors
    assert plan.frame.filter(like="inlet_temp_c__").to_numpy().max() <= 27.0 + 1e-6
    floors = np.array([p.min_active_servers for p in site.server_pools])
    assert (plan.active_servers.to_numpy() >= floors - 1e-6).all()
    # work served + offloaded meets interactive demand in every step
    web = plan.frame.filter(regex=r"^(served|offload)_units_per_h__.*__web$").sum(axis=1)
    np.testing.assert_allclose(web, fc["web_units_per_h"], rtol=1e-7)


def test_market_accounting_counts_only_unmatched_energy():
    site = tiny_site(classes=[{"name": "web", "kind": "interactive", "share": 1.0}], accounting="market")
    # 5 units/h -> 5 servers -> 1.5 kW; PPA 1.0 kW then 2.0 kW: unmatched 0.5 kW then 0
    fc = tiny_forecast(site, [400.0, 400.0], web_units_per_h=5.0, ppa_kw=[1.0, 2.0])
    plan = plan_site(site, zero_coefficients(site, fc.index), fc)
    np.testing.assert_allclose(plan.frame["site_kgco2"], [0.5 * 400 / 1000, 0.0], atol=1e-9)
    loc = plan_site(site, zero_coefficients(site, fc.index), fc, options=PlanOptions(accounting="location"))
    np.testing.assert_allclose(loc.frame["site_kgco2"], [1.5 * 0.4, 1.5 * 0.4], rtol=1e-7)


def test_time_limit_returns_the_flagged_rule_plan(small):
    site, fc, co = small
    plan = plan_site(site, co, fc, options=PlanOptions(time_limit_s=0.0, deadline_prices=False))
    assert plan.fallback and plan.status == "time_limit"
    assert "time limit" in plan.reason and "best_practice" in plan.reason
    assert len(plan.frame) == len(fc) and plan.frame["facility_power_kw"].gt(0).all()


def test_integer_servers_gives_whole_servers():
    site = tiny_site(classes=[{"name": "web", "kind": "interactive", "share": 1.0}])
    fc = tiny_forecast(site, [400.0, 400.0], web_units_per_h=2.5)
    plan = plan_site(site, zero_coefficients(site, fc.index), fc, options=PlanOptions(integer_servers=True))
    np.testing.assert_allclose(plan.frame["active_servers__pool"], 3.0, atol=1e-6)  # 2.5 units -> 3 servers
    cont = plan_site(site, zero_coefficients(site, fc.index), fc)
    np.testing.assert_allclose(cont.frame["active_servers__pool"], 2.5, atol=1e-6)


def test_pyomo_model_is_what_highs_solves():
    """The Planner solves its Pyomo model: appsi on that model, the compiled matrix and the
    numpy assembly passed straight to highspy all reach the same optimum."""
    pyo = pytest.importorskip("pyomo.environ")
    site = tiny_site(classes=[{"name": "web", "kind": "interactive", "share": 0.6},
                              {"name": "batch", "kind": "batch", "share": 0.4, "deadline_h": 3}], horizon_h=4)
    fc = tiny_forecast(site, [400.0, 300.0, 100.0, 200.0], web_units_per_h=3.0, batch_units_per_h=[4, 2, 0, 0])
    co = zero_coefficients(site, fc.index, inlet_const_c=3.0, cooling_const_kw=30.0, cooling_per_supply_c=-1.0)
    planner = Planner(site, co, fc)
    plan = planner.solve()
    assert plan.status == "optimal"
    m = planner.pyomo.model
    assert hasattr(m, "batch_deadline") and hasattr(m, "active_servers")  # one component per family
    res = pyo.SolverFactory("appsi_highs").solve(m)
    assert str(res.solver.termination_condition) == "optimal"
    assert pyo.value(m.obj) == pytest.approx(plan.objective_kg, rel=1e-7)
    direct = planner.problem.lp.to_highs()
    direct.run()
    assert direct.getInfo().objective_function_value == pytest.approx(plan.objective_kg, rel=1e-7)


def _same_lp(compiled, lp):
    got = compiled.in_lp_order(lp.n_cols, lp.n_rows)
    want = lp.arrays()
    a_w = want[5].copy()
    a_w.eliminate_zeros()
    kept_c, kept_r = compiled.col_ids, compiled.row_ids
    for g, w in zip(got[:5], want[:5]):
        idx = kept_c if g.size == lp.n_cols else kept_r
        np.testing.assert_allclose(g[idx], w[idx])
    assert abs(got[5] - a_w).max() < 1e-12
    # what the compiler left out has no terms at all
    assert a_w[:, np.setdiff1d(np.arange(lp.n_cols), kept_c)].nnz == 0
    assert a_w[np.setdiff1d(np.arange(lp.n_rows), kept_r)].nnz == 0


@pytest.mark.parametrize("change", ["intensity+state", "coefficients"])
def test_pyomo_model_stays_the_record_after_a_resolve(small, change):
    """After an in-place update the Pyomo model, compiled afresh, is the new LP exactly."""
    from coolshift.optimizer.pyomo_model import compile_model

    site, fc, co = small
    planner = Planner(site, co, fc, options=OPTS)
    planner.solve()
    _same_lp(planner.compiled, planner.problem.lp)
    if change == "coefficients":
        f = co.cooling_per_it_kw.copy()
        f.iloc[:1] *= 1.5
        info = planner.update(coefficients=type(co)(**{**co.__dict__, "cooling_per_it_kw": f}))
        assert info["coefficients"] > 0
    else:
        fc2 = fc.copy()
        fc2["gco2_per_kwh"] = fc["gco2_per_kwh"].to_numpy()[::-1]
        info = planner.update(forecast=fc2, initial_state=_state(site, 2))
        assert info["costs"] > 0 and info["row_bounds"] > 0
    assert not info["rebuilt"]
    _same_lp(compile_model(planner.pyomo), planner.problem.lp)


def test_bad_inputs_name_the_problem(small):
    site, fc, co = small
    with pytest.raises(ValueError, match="missing column 'web_units_per_h'"):
        plan_site(site, co, fc.drop(columns="web_units_per_h"))
    bad = fc.copy()
    bad.iloc[3, bad.columns.get_loc("gco2_per_kwh")] = np.nan
    with pytest.raises(ValueError, match=r"'gco2_per_kwh' has a missing.*" + str(fc.index[3].year)):
        plan_site(site, co, bad)
    with pytest.raises(ValueError, match="coefficients cover"):
        plan_site(site, co, fc.iloc[:-1])
    bad_co = type(co)(**{**co.__dict__, "cooling_const_kw": co.cooling_const_kw.where(co.index != co.index[2])})
    with pytest.raises(ValueError, match=r"cooling_const_kw is missing/non-finite at step " + str(co.index[2])[:10]):
        plan_site(site, bad_co, fc)
    with pytest.raises(ValueError, match="unknown zone 'nowhere'"):
        plan_site(site, co, fc, InitialState({"nowhere": 20.0}, 10.0, {}))


def test_power_curve_envelope():
    curve = [0.25, 0.37, 0.44, 0.50, 0.56, 0.62, 0.68, 0.75, 0.82, 0.90, 1.0]
    segs = power_curve_segments(120.0, 480.0, curve)
    u = np.linspace(0, 1, 11)
    env = np.max([a + b * u for a, b in segs], axis=0)
    assert (env <= np.array(curve) + 1e-12).all()  # never above the measured curve
    np.testing.assert_allclose(env[[0, 8, 9, 10]], np.array(curve)[[0, 8, 9, 10]])  # hull vertices exact
    # the envelope runs 0 -> 80 % load at slope (0.82 - 0.25) / 0.8 = 0.7125; worst gap at
    # 10 % load: 0.37 - (0.25 + 0.1 x 0.7125) = 0.04875 of peak
    assert power_curve_error(curve) == pytest.approx(0.04875, abs=1e-12)
    # the linear form reproduces idle and peak
    (a, b), = power_curve_segments(100.0, 300.0)
    assert (a * 300, (a + b) * 300) == pytest.approx((100.0, 300.0))


def test_actions_from_solution_round_trip(small):
    site, fc, co = small
    planner = Planner(site, co, fc, options=OPTS)
    plan = planner.solve()
    x = planner.solution_x()
    again = evaluate_actions(planner.problem.data, actions_from_solution(planner.problem, x))
    pd.testing.assert_frame_equal(again, plan.frame)
    d = prepare(site, co, fc)
    assert d.n == len(fc) and d.step_h == 0.25


def test_power_cap_below_the_redundancy_floor_is_diagnosed():
    # 4 servers must stay on (0.4 kW idle) and serve 2 units (0.4 kW): 0.8 kW > a 0.5 kW cap
    site = tiny_site(classes=[{"name": "web", "kind": "interactive", "share": 1.0}], min_active_servers=4,
                     site_power_cap_kw=0.5)
    fc = tiny_forecast(site, [400.0, 400.0], web_units_per_h=2.0)
    plan = plan_site(site, zero_coefficients(site, fc.index), fc)
    assert plan.fallback and plan.status == "infeasible"
    # the cheapest way out is 0.3 kW over the cap in each step (not 2 units/h of unserved web work)
    assert plan.diagnosis.families == ["site_power_cap"]
    assert plan.diagnosis.conflicts["violation"].sum() == pytest.approx(2 * 0.3, rel=1e-6)
    assert "site_power_cap at steps 0-1" in plan.reason


def test_local_rule_plan_serves_demand_within_bounds(small):
    from coolshift.optimizer.fallback import rule_actions

    site, fc, co = small
    d = prepare(site, co, fc)
    a = rule_actions(d)
    np.testing.assert_allclose(a.work.sum(axis=1), d.demand, rtol=1e-9)  # work on arrival, all of it
    assert (a.nact >= d.min_active - 1e-9).all() and (a.nact <= d.servers + 1e-9).all()
    frame = evaluate_actions(d, a)
    assert (frame["facility_power_kw"] > frame["it_power_kw"]).all()


@pytest.mark.parametrize("scale_steps", [1, None])
def test_resolve_after_new_coefficients_equals_fresh_solve(small, scale_steps):
    """A new weather forecast changes the learned coefficients: a few (changeCoeff) or all (passModel)."""
    site, fc, co = small
    planner = Planner(site, co, fc, options=OPTS)
    planner.solve()
    f = co.cooling_per_it_kw.copy()
    rows = slice(0, scale_steps) if scale_steps else slice(None)
    f.iloc[rows] = f.iloc[rows] * 1.5
    co2 = type(co)(**{**co.__dict__, "cooling_per_it_kw": f})
    info = planner.update(coefficients=co2)
    assert info["rebuilt"] == (scale_steps is None)
    assert info["method"] == "cold"
    again = planner.solve()
    fresh = Planner(site, co2, fc, options=OPTS).solve()
    assert again.objective_kg == pytest.approx(fresh.objective_kg, rel=1e-7)


def test_rule_plan_fills_specialised_pools_first():
    """The best-practice fallback spreads work like the simulator: a pool that serves only
    batch takes the batch work before a pool that also serves web."""
    from coolshift.config import SiteConfig
    from coolshift.optimizer.fallback import best_practice_actions

    base = tiny_site(classes=[{"name": "web", "kind": "interactive", "share": 0.5},
                              {"name": "batch", "kind": "batch", "share": 0.5, "deadline_h": 2}])
    raw = base.model_dump(exclude_none=True)
    pool = raw["server_pools"][0]
    raw["server_pools"] = [{**pool, "name": "general", "classes": ["web", "batch"]},
                           {**pool, "name": "batchonly", "classes": ["batch"]}]
    site = SiteConfig.model_validate(raw)
    fc = tiny_forecast(site, [300.0, 300.0], web_units_per_h=2.0, batch_units_per_h=3.0)
    d = prepare(site, zero_coefficients(site, fc.index), fc)
    a = best_practice_actions(site, d)
    g, b = d.pools.index("general"), d.pools.index("batchonly")
    kb = d.classes.index("batch")
    assert a.work[:, :, kb].sum(axis=1) == pytest.approx([3.0, 3.0])
    np.testing.assert_allclose(a.work[:, b, kb], 3.0, atol=1e-9)
    np.testing.assert_allclose(a.work[:, g, kb], 0.0, atol=1e-9)


def test_resolve_when_cooling_becomes_piecewise_equals_fresh_solve(small):
    """New coefficients that add a cooling piece change the LP's structure: a new Pyomo model is
    compiled and passed, and the re-solve equals a fresh plan."""
    from coolshift.coefficients import CoolingPiece

    site, fc, co = small
    planner = Planner(site, co, fc, options=OPTS)
    first = planner.solve()
    # a piece 50 kW above the main one: the same decisions are optimal, each step 50 kW more
    piece = CoolingPiece(const_kw=co.cooling_const_kw + 50.0, per_it_kw=co.cooling_per_it_kw,
                         per_supply_c=co.cooling_per_supply_c, per_chw_c=co.cooling_per_chw_c)
    co2 = type(co)(**{**co.__dict__, "cooling_pieces": (piece,)})
    info = planner.update(coefficients=co2)
    assert info["rebuilt"] and hasattr(planner.pyomo.model, "cooling_pieces")
    again = planner.solve()
    fresh = Planner(site, co2, fc, options=OPTS).solve()
    assert again.status == fresh.status == "optimal"
    assert again.objective_kg == pytest.approx(fresh.objective_kg, rel=1e-7)
    dt = 0.25
    extra = 50.0 * dt * (fc["gco2_per_kwh"].to_numpy() / 1000.0 + 1e-6).sum()
    assert again.objective_kg - first.objective_kg == pytest.approx(extra, rel=1e-5)
    np.testing.assert_allclose(again.frame["cooling_power_kw"] - first.frame["cooling_power_kw"], 50.0, atol=1e-4)


def test_a_new_highs_prints_nothing_to_stdout():
    """highspy 1.16 prints a banner on the first construction in a process, to the C-level
    stdout; a command's output (and a benchmark's JSON last line) must not carry it."""
    import subprocess
    import sys

    code = ("from coolshift.optimizer.highs import new_highs; import numpy as np; "
            "h = new_highs(); h.addVar(0.0, 1.0); h.changeColCost(0, 1.0); h.run(); print('done')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "done\n"


def test_one_process_solves_with_different_thread_counts():
    """HiGHS sizes one thread scheduler per process at its first run; a later run with another
    ``threads`` failed before solving ("Not Set"): the fleet (1 thread) after a decomposed plan (2)."""
    from coolshift.optimizer.highs import new_highs, run_highs

    def solve(threads: int) -> tuple[str, float]:
        h = new_highs()
        h.setOptionValue("threads", threads)
        h.addVar(0.0, 10.0)
        h.changeColCost(0, -1.0)
        run_highs(h)
        return h.modelStatusToString(h.getModelStatus()), h.getInfo().objective_function_value

    assert [solve(t) for t in (2, 1, 2)] == [("Optimal", -10.0)] * 3
