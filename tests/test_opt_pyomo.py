"""The Pyomo model is the LP HiGHS solves: the default numpy hand-over passes the same
matrix, entry by entry, as Pyomo's LinearStandardFormCompiler produces from the model."""

from __future__ import annotations

import numpy as np
import pytest

from coolshift.coefficients import CoolingPiece
from coolshift.optimizer import InitialState, Planner, PlanOptions
from coolshift.optimizer.pyomo_model import compile_model, direct
from synthetic import (
    linear_coefficients, synthetic_forecast, synthetic_site, tiny_forecast, tiny_site, zero_coefficients,
)

OPTS = PlanOptions(deadline_prices=False)


def _small(**kw):
    site = synthetic_site(2, 6, horizon_h=6, **kw)
    fc = synthetic_forecast(site)
    co = linear_coefficients(site, fc.index, temp_c=fc["temp_c"].to_numpy())
    return site, fc, co


def _piecewise():
    site, fc, co = _small()
    piece = CoolingPiece(const_kw=co.cooling_const_kw - 30.0, per_it_kw=co.cooling_per_it_kw * 1.4,
                         per_supply_c=co.cooling_per_supply_c, per_chw_c=co.cooling_per_chw_c)
    return site, fc, type(co)(**{**co.__dict__, "cooling_pieces": (piece,)})


def _market_tiny():
    site = tiny_site(classes=[{"name": "web", "kind": "interactive", "share": 0.5},
                              {"name": "batch", "kind": "batch", "share": 0.5, "deadline_h": 2, "offloadable": True,
                               "max_latency_ms": 100, "data_gb_per_unit": 0.1}],
                     edges=[{"name": "e1"}], horizon_h=3, accounting="market")
    fc = tiny_forecast(site, [400.0, 100.0, 300.0], web_units_per_h=2.0, batch_units_per_h=[3, 1, 0],
                       gco2_per_kwh__e1=[50.0, 500.0, 50.0], ppa_kw=[0.5, 1.0, 0.0])
    return site, fc, zero_coefficients(site, fc.index, cooling_const_kw=2.0, inlet_const_c=3.0)


CASES = {
    "synthetic": _small,
    "power_cap": lambda: _small(power_cap_kw=900.0),
    "piecewise_cooling": _piecewise,
    "market_edges": _market_tiny,
}


def _assert_same(compiled, lp):
    """The compiled Pyomo model, mapped back to the families' order, equals the numpy assembly."""
    got = compiled.in_lp_order(lp.n_cols, lp.n_rows)
    cost, clb, cub, rlb, rub, a, integ = lp.arrays()
    a = a.copy()
    a.eliminate_zeros()
    kc, kr = compiled.col_ids, compiled.row_ids
    np.testing.assert_array_equal(got[0][kc], cost[kc])
    np.testing.assert_array_equal(got[1][kc], clb[kc])
    np.testing.assert_array_equal(got[2][kc], cub[kc])
    np.testing.assert_array_equal(got[3][kr], rlb[kr])
    np.testing.assert_array_equal(got[4][kr], rub[kr])
    np.testing.assert_array_equal(got[6][kc], integ[kc])
    assert got[5].nnz == a.nnz and abs(got[5] - a).max() == 0.0  # same pattern, same values
    # what the compiler left out has no terms and no cost: HiGHS gets it as an empty row/column
    gone_c = np.setdiff1d(np.arange(lp.n_cols), kc)
    assert a[:, gone_c].nnz == 0 and not cost[gone_c].any()
    assert a[np.setdiff1d(np.arange(lp.n_rows), kr)].nnz == 0


@pytest.mark.parametrize("name", sorted(CASES))
def test_numpy_handover_is_the_compiled_pyomo_model(name):
    site, fc, co = CASES[name]()
    planner = Planner(site, co, fc, options=OPTS)
    plan = planner.solve()
    assert plan.status == "optimal"
    assert planner._pyomo is None  # the hot path created no Pyomo objects
    _assert_same(compile_model(planner.pyomo), planner.problem.lp)
    # and the compiled model, solved, reaches the plan's optimum
    via = Planner(site, co, fc, options=PlanOptions(deadline_prices=False, handover="pyomo"))
    plan_p = via.solve()
    assert via.compiled.col_ids.size <= via.problem.lp.n_cols
    assert plan_p.objective_kg == pytest.approx(plan.objective_kg, rel=1e-9, abs=1e-9)
    np.testing.assert_allclose(plan_p.frame["facility_power_kw"], plan.frame["facility_power_kw"], rtol=1e-6, atol=1e-6)


def test_integer_servers_reach_highs_as_integers_on_both_paths():
    site = tiny_site(classes=[{"name": "web", "kind": "interactive", "share": 1.0}])
    fc = tiny_forecast(site, [400.0, 400.0], web_units_per_h=2.5)
    co = zero_coefficients(site, fc.index)
    for handover in ("numpy", "pyomo"):
        plan = Planner(site, co, fc, options=PlanOptions(integer_servers=True, handover=handover)).solve()
        np.testing.assert_allclose(plan.frame["active_servers__pool"], 3.0, atol=1e-6)
    d = direct(Planner(site, co, fc, options=PlanOptions(integer_servers=True)).problem.lp)
    assert d.integer.sum() == 2  # one active-server column per step


def test_lazy_pyomo_model_follows_updates():
    """Read after an in-place re-solve, the Pyomo model is the updated LP; one read before the
    update is updated in place and equals it too."""
    site, fc, co = _small()
    fc2 = fc.copy()
    fc2["gco2_per_kwh"] = fc["gco2_per_kwh"].to_numpy()[::-1]
    st = InitialState.from_site(site)
    for read_before in (False, True):
        planner = Planner(site, co, fc, options=OPTS)
        planner.solve()
        if read_before:
            before = planner.pyomo
        info = planner.update(forecast=fc2, initial_state=st)
        assert not info["rebuilt"] and info["costs"] > 0
        if read_before:
            assert planner.pyomo is before
        _assert_same(compile_model(planner.pyomo), planner.problem.lp)


def test_bad_handover_option_is_named():
    site, fc, co = _small()
    with pytest.raises(ValueError, match="PlanOptions.handover"):
        Planner(site, co, fc, options=PlanOptions(handover="appsi"))


def test_interior_point_cold_solve_reaches_the_same_plan_and_resolves_warm():
    """HiGHS's HiPO interior point (with crossover) reaches the simplex optimum, leaves a basis
    for shadow prices, and a re-solve after a new intensity forecast still goes warm."""
    site, fc, co = _small()
    ref = Planner(site, co, fc, options=OPTS).solve()
    planner = Planner(site, co, fc, options=PlanOptions(deadline_prices=False, lp_solver="hipo"))
    plan = planner.solve()
    assert plan.objective_kg == pytest.approx(ref.objective_kg, rel=1e-7)
    assert len(plan.shadow_prices) == len(ref.shadow_prices)
    fc2 = fc.copy()
    fc2["gco2_per_kwh"] = fc["gco2_per_kwh"].to_numpy()[::-1]
    assert planner.update(forecast=fc2)["method"] == "primal"
    again = planner.solve()
    assert again.objective_kg == pytest.approx(Planner(site, co, fc2, options=OPTS).solve().objective_kg, rel=1e-7)
    with pytest.raises(ValueError, match="PlanOptions.lp_solver"):
        Planner(site, co, fc, options=PlanOptions(lp_solver="gurobi"))
