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
from coolshift.optimizer.synthetic import linear_coefficients, synthetic_forecast, synthetic_site

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
