"""Zone decomposition (Dantzig-Wolfe): the decomposed plan is feasible for the whole LP
and within the stated gap of the monolithic optimum, with and without a binding power cap."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from coolshift.optimizer import Planner, PlanOptions
from coolshift.optimizer.build import build_lp
from coolshift.optimizer.data import prepare
from coolshift.optimizer.decompose import ZoneDecomposition, decompose_zones, use_decomposition
from synthetic import linear_coefficients, synthetic_forecast, synthetic_site

GAP = 5e-4  # the default stopping gap: 0.05 %, inside the 0.1 %


def _case(cap=None):
    site = synthetic_site(2, 6, horizon_h=6, power_cap_kw=cap)
    fc = synthetic_forecast(site)
    co = linear_coefficients(site, fc.index, temp_c=fc["temp_c"].to_numpy())
    return site, fc, co


def _feasible(lp, x, tol=1e-6):
    cost, clb, cub, rlb, rub, a, _ = lp.arrays()
    ax = a @ x
    scale = 1.0 + np.abs(ax)
    assert ((rlb - ax) / scale).max() <= tol and ((ax - rub) / scale).max() <= tol
    assert (clb - x).max() <= tol and (x - cub).max() <= tol
    return float(cost @ x + lp.offset)


# 360 kW binds: the monolithic plan without a cap peaks at 377 kW on this site
@pytest.mark.parametrize("cap", [None, 360.0])
def test_decomposed_plan_matches_the_monolithic_optimum(cap):
    site, fc, co = _case(cap)
    mono = Planner(site, co, fc, options=PlanOptions(deadline_prices=False, decompose="off")).solve()
    planner = Planner(site, co, fc, options=PlanOptions(deadline_prices=False, decompose="zones", decompose_gap=GAP))
    plan = planner.solve()
    res = planner.decomposition
    assert res is not None and res.status == "optimal" and planner.highs is None  # no monolithic solve
    assert plan.status == "optimal" and not plan.fallback
    # a feasible point of the whole LP whose cost is the plan's objective
    obj = _feasible(planner.problem.lp, planner.solution_x())
    assert obj == pytest.approx(plan.objective_kg, rel=1e-9)
    # the bounds bracket the true optimum and the gap closed to the requested share
    assert res.lower_bound <= mono.objective_kg * (1 + 1e-7) <= plan.objective_kg * (1 + 2e-7)
    assert res.gap <= GAP
    assert (plan.objective_kg - mono.objective_kg) / mono.objective_kg <= 1e-3
    if cap is not None:
        assert mono.frame["facility_power_kw"].max() == pytest.approx(cap, rel=1e-6)  # it binds
        assert plan.frame["facility_power_kw"].max() <= cap * (1 + 1e-6)
    # every class's demand is served: web in its step, batch within the horizon
    web = plan.frame.filter(regex=r"^(served|offload)_units_per_h__.*__web$").sum(axis=1)
    np.testing.assert_allclose(web, fc["web_units_per_h"], rtol=1e-6)
    batch = plan.frame.filter(regex=r"^(served|offload)_units_per_h__.*__batch$").sum(axis=1)
    assert batch.sum() == pytest.approx(fc["batch_units_per_h"].sum(), rel=1e-6)


@pytest.mark.parametrize("window", [None, 3])
def test_zone_and_time_window_blocks_bracket_the_optimum(window):
    """Whole-horizon zone blocks and (zone, 3-step window) blocks: both close the gap, the
    lower bound never exceeds the monolithic optimum, the plan is feasible."""
    site, fc, co = _case()
    mono = Planner(site, co, fc, options=PlanOptions(deadline_prices=False)).solve().objective_kg
    problem = build_lp(prepare(site, co, fc, None, PlanOptions()))
    res = decompose_zones(problem, gap=GAP, workers=1, window_steps=window)
    assert res.status == "optimal" and res.gap <= GAP
    assert res.lower_bound <= mono * (1 + 1e-7) <= res.objective * (1 + 2e-7)
    assert _feasible(problem.lp, res.x) == pytest.approx(res.objective, rel=1e-9)


def test_two_blocks_share_one_demand_row_by_hand():
    """min x0 + 2 x1 with x0, x1 in [0, 0.6] (one block each) and x0 + x1 = 1: x0 = 0.6, x1 = 0.4,
    objective 1.4; the demand row's dual is 2 (the dearer block is marginal)."""
    cost = np.array([1.0, 2.0])
    a = sp.csc_matrix(np.array([[1.0, 1.0]]))
    arrays = (cost, np.zeros(2), np.full(2, 0.6), np.array([1.0]), np.array([1.0]), a, np.zeros(2, bool))
    dw = ZoneDecomposition(arrays, np.array([0, 1]), workers=1)
    res = dw.solve(gap=1e-9, seeds=[(0, np.array([0.5])), (1, np.array([0.5]))])
    assert res.status == "optimal"
    np.testing.assert_allclose(res.x, [0.6, 0.4], atol=1e-9)
    assert res.objective == pytest.approx(1.4) and res.lower_bound == pytest.approx(1.4)
    assert res.row_dual[0] == pytest.approx(2.0)


def test_decompose_option_is_checked():
    site, fc, co = _case()
    assert not use_decomposition(Planner(site, co, fc).problem)  # off by default
    assert use_decomposition(Planner(site, co, fc, options=PlanOptions(decompose="zones")).problem)
    assert not use_decomposition(Planner(site, co, fc, options=PlanOptions(decompose="zones", integer_servers=True)).problem)
    with pytest.raises(ValueError, match="PlanOptions.decompose"):
        Planner(site, co, fc, options=PlanOptions(decompose="auto"))


# -- working-set LP (PlanOptions(decompose="sifting"), optimizer/sifting.py) ----------------

def _small(cap_frac=None):
    """The benchmark's small site (4 zones / 20 pools, 24 h at 15 min): large enough that the
    coarse guess is wrong in places, so the working set has to grow over several rounds."""
    site = synthetic_site(4, 20)
    fc = synthetic_forecast(site)
    co = linear_coefficients(site, fc.index, temp_c=fc["temp_c"].to_numpy())
    if cap_frac is not None:
        peak = Planner(site, co, fc, options=PlanOptions(deadline_prices=False)).solve().frame["facility_power_kw"].max()
        site = synthetic_site(4, 20, power_cap_kw=float(cap_frac * peak))
    return site, fc, co


# a cap at 97 % of the uncapped plan's peak facility power binds (checked below)
@pytest.mark.parametrize("cap_frac", [None, 0.97])
def test_sifting_plan_is_feasible_and_within_the_gap(cap_frac):
    site, fc, co = _small(cap_frac)
    mono = Planner(site, co, fc, options=PlanOptions(deadline_prices=False)).solve()
    planner = Planner(site, co, fc, options=PlanOptions(deadline_prices=False, decompose="sifting", decompose_gap=GAP))
    plan = planner.solve()
    res = planner.decomposition
    assert planner.highs is None and not plan.fallback  # planned without the monolithic LP
    assert res.rounds > 1 and res.fixed_columns > 0.2 * planner.problem.lp.n_cols  # it grew, and stayed restricted
    # a feasible point of the whole LP whose cost is the plan's objective
    assert _feasible(planner.problem.lp, planner.solution_x()) == pytest.approx(plan.objective_kg, rel=1e-9)
    # the Lagrangian bound is below the true optimum, the plan above it and within 0.1 %
    assert res.lower_bound <= mono.objective_kg * (1 + 1e-7) <= plan.objective_kg * (1 + 1e-7)
    assert (plan.objective_kg - mono.objective_kg) / mono.objective_kg <= 1e-3
    if res.status == "optimal":
        assert plan.status == "optimal" and res.gap <= GAP
    if cap_frac is not None:
        cap = site.planning.site_power_cap_kw
        assert mono.frame["facility_power_kw"].max() == pytest.approx(cap, rel=1e-6)  # it binds
        assert plan.frame["facility_power_kw"].max() <= cap * (1 + 1e-6)
    web = plan.frame.filter(regex=r"^(served|offload)_units_per_h__.*__web$").sum(axis=1)
    np.testing.assert_allclose(web, fc["web_units_per_h"], rtol=1e-6)


def test_sifting_recovers_from_an_infeasible_guess():
    """Every pool at its redundancy floor serving nothing cannot meet demand: the artificials
    carry the restricted LP, price the pool columns back in, and the optimum is reached."""
    from coolshift.optimizer.sifting import sift

    site, fc, co = _case()
    problem = build_lp(prepare(site, co, fc, None, PlanOptions()))
    mono = Planner(site, co, fc, options=PlanOptions(deadline_prices=False)).solve().objective_kg
    v, d = problem.vars, problem.data
    _, clb, cub, *_ = problem.lp.arrays()
    lb, ub = clb.copy(), cub.copy()
    for ids, val in ((v.nact, np.broadcast_to(d.min_active, v.nact.shape)), (v.up, 0.0), (v.work[v.work >= 0], 0.0)):
        lb[ids] = ub[ids] = val
    res = sift(problem, lb, ub, gap=GAP, workers=1)
    assert res.status in ("optimal", "stalled") and res.history[0][5] > 0  # round 1 needed artificials
    assert res.history[-1][5] == 0.0
    assert _feasible(problem.lp, res.x) == pytest.approx(res.objective, rel=1e-9)
    assert abs(res.objective - mono) / mono <= 1e-3 and res.lower_bound <= mono * (1 + 1e-7)


def test_coarse_inputs_average_but_keep_the_interactive_peak():
    from coolshift.optimizer.sifting import coarse_inputs

    site, fc, co = _case()
    cfc, cco = coarse_inputs(site, co, fc, 4)
    assert len(cfc) == len(fc) // 4 and (cfc.index[1] - cfc.index[0]) == 4 * (fc.index[1] - fc.index[0])
    first = fc.iloc[:4]
    assert cfc["web_units_per_h"].iloc[0] == pytest.approx(first["web_units_per_h"].max())  # interactive: the peak
    assert cfc["batch_units_per_h"].iloc[0] == pytest.approx(first["batch_units_per_h"].mean())  # batch: the mean
    assert cfc["gco2_per_kwh"].iloc[0] == pytest.approx(first["gco2_per_kwh"].mean())
    assert cco.cooling_per_it_kw.iloc[0].to_numpy() == pytest.approx(co.cooling_per_it_kw.iloc[:4].mean().to_numpy())
    assert cco.index.equals(cfc.index)


def test_coarse_pattern_fixes_only_at_bounds_and_consistent_boots():
    from coolshift.optimizer.sifting import coarse_inputs, coarse_pattern

    site, fc, co = _small()
    opts = PlanOptions()
    problem = build_lp(prepare(site, co, fc, None, opts))
    cfc, cco = coarse_inputs(site, co, fc, 4)
    coarse = build_lp(prepare(site, cco, cfc, None, opts))
    h = coarse.lp.to_highs()
    h.run()
    lb, ub = coarse_pattern(problem, coarse, np.asarray(h.getSolution().col_value), 4)
    _, clb, cub, *_ = problem.lp.arrays()
    fixed = (lb == ub) & (clb != cub)
    assert fixed.any() and ((lb[fixed] == clb[fixed]) | (ub[fixed] == cub[fixed])).all()  # at a bound of the LP
    v, d = problem.vars, problem.data
    nfix = fixed[v.nact]
    ufix = fixed[v.up]
    # a switch-on is fixed at 0 only where active servers are fixed and do not rise from the step before
    prev = np.vstack([d.n0[None, :], np.where(nfix, lb[v.nact], np.inf)[:-1]])
    assert (ufix <= (nfix & (lb[v.nact] <= prev + 1e-9))).all() and (lb[v.up][ufix] == 0).all()
    # only columns of pools are ever fixed
    pool_cols = np.concatenate([v.nact.ravel(), v.up.ravel(), v.work[v.work >= 0]])
    assert not np.delete(fixed, pool_cols).any()


def test_sifting_option_is_checked():
    from coolshift.optimizer.sifting import use_sifting

    site, fc, co = _case()
    assert not use_sifting(Planner(site, co, fc).problem)
    assert use_sifting(Planner(site, co, fc, options=PlanOptions(decompose="sifting")).problem)
    assert not use_sifting(Planner(site, co, fc, options=PlanOptions(decompose="sifting", integer_servers=True)).problem)


def test_stall_rule_projects_the_remaining_gain():
    """Gains shrinking by q per round leave about last * q / (1 - q) to gain (geometric tail)."""
    from coolshift.optimizer.sifting import _stalled

    assert _stalled([557.0, 115.6], 55.0)  # q = 0.21: ~30 kg left < 55
    assert not _stalled([1631.8, 557.0], 55.0)  # q = 0.34: ~288 kg left
    assert not _stalled([115.6], 55.0)  # one round says nothing about the rate
    assert not _stalled([10.0, 0.0], 55.0)  # one degenerate round (no gain) is not a stall
    assert _stalled([10.0, 0.0, 0.0], 55.0)  # two are
    assert not _stalled([100.0, 99.0], 55.0)  # q capped at 0.9: 891 kg left
