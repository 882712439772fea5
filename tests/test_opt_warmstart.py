"""Warm-started re-plans: the previous basis moved by timestamp, the same optimum in fewer iterations."""

import numpy as np
import pandas as pd
import pytest

from coolshift.io import load_site_data
from coolshift.optimizer.lp import LinearProgram
from coolshift.control.receding import RecedingHorizonPolicy, closed_loop_options
from coolshift.optimizer.solve import Planner
from coolshift.optimizer.state import InitialState
from coolshift.optimizer.warmstart import LOWER, UPPER, ZERO, family_basis, shift_basis
from coolshift.simulations.engine import simulate


def _lp(start: str, n: int) -> LinearProgram:
    lp = LinearProgram()
    steps = pd.date_range(start, periods=n, freq="1h", tz="UTC")
    lp.add_vars("x", {"step": steps, "pool": pd.Index(["a", "b"])}, lb=0.0)
    lp.add_vars("free", {"step": steps}, lb=-np.inf)
    lp.add_vars("end", {"class": pd.Index(["batch"])})
    return lp


def test_shift_basis_maps_by_timestamp_and_repeats_the_day_for_the_new_tail():
    old = _lp("2022-06-01 00:00", 30)
    status = np.arange(old.n_cols) % 3  # LOWER, BASIC, UPPER in turn
    basis = family_basis(old, status, np.zeros(0, dtype=int))
    new = _lp("2022-06-01 04:00", 30)  # moved by 4 steps: steps 26-29 are past the old horizon
    cols, rows = shift_basis(basis, new)
    ox = status[old.vars["x"].start : old.vars["x"].stop].reshape(30, 2)
    nx = cols[new.vars["x"].start : new.vars["x"].stop].reshape(30, 2)
    np.testing.assert_array_equal(nx[:26], ox[4:])  # same time, same status
    np.testing.assert_array_equal(nx[26:], ox[6:10])  # 2022-06-02 06:00.. takes 2022-06-01 06:00..
    assert cols[new.vars["end"].start] == status[old.vars["end"].start]  # no time axis: copied
    # steps with no counterpart (not even a day earlier): columns at their lower bound, or zero when free
    cols2, _ = shift_basis(basis, _lp("2022-06-05 00:00", 30))
    assert set(cols2[:60].tolist()) == {LOWER}
    assert set(cols2[60:90].tolist()) == {ZERO}


def test_shift_basis_leaves_families_whose_other_coordinates_changed():
    old = _lp("2022-06-01", 24)
    basis = family_basis(old, np.full(old.n_cols, UPPER), np.zeros(0, dtype=int))
    new = LinearProgram()
    new.add_vars("x", {"step": pd.date_range("2022-06-01 01:00", periods=24, freq="1h", tz="UTC"),
                       "pool": pd.Index(["a", "b", "c"])})
    cols, rows = shift_basis(basis, new)
    assert (cols == LOWER).all() and rows.size == 0


@pytest.fixture(scope="module")
def small(small_site_model):
    site, model = small_site_model
    return site, model, load_site_data(site, "2022-06-14", "2022-06-17")


def test_warm_started_replan_reaches_the_cold_optimum_in_fewer_iterations(small):
    site, model, data = small
    opts = closed_loop_options(decision_envelope=model.envelope_)
    steps = int(24 / site.step_h)
    first = data.iloc[:steps]
    p0 = Planner(site, model.coefficients(site, first), first, InitialState.from_site(site), opts)
    assert not p0.solve().fallback
    basis = p0.family_basis()
    assert basis is not None
    shift = int(4 / site.step_h)
    nxt = data.iloc[shift : shift + steps]
    state = InitialState.from_site(site)
    co = model.coefficients(site, nxt)
    cold = Planner(site, co, nxt, state, opts).solve()
    warm_planner = Planner(site, co, nxt, state, opts)
    warm_planner.warm_start_from(basis)
    warm = warm_planner.solve()
    assert warm.timings["warm_start"] and not cold.timings["warm_start"]
    assert warm.objective_kg == pytest.approx(cold.objective_kg, rel=1e-7)
    assert warm.timings["simplex_iterations"] < 0.6 * cold.timings["simplex_iterations"]


def test_a_start_basis_that_fits_badly_still_gives_the_optimum(small):
    """A basis from a plan days away (and half as long) is only a poor start, never a wrong plan."""
    site, model, data = small
    opts = closed_loop_options(decision_envelope=model.envelope_)
    fc = data.iloc[: int(12 / site.step_h)]
    co = model.coefficients(site, fc)
    p = Planner(site, co, fc, InitialState.from_site(site), opts)
    p.solve()
    odd = p.family_basis()
    later = data.iloc[-int(12 / site.step_h):]
    co2 = model.coefficients(site, later)
    cold = Planner(site, co2, later, InitialState.from_site(site), opts).solve()
    w = Planner(site, co2, later, InitialState.from_site(site), opts)
    w.warm_start_from(odd)
    assert w.solve().objective_kg == pytest.approx(cold.objective_kg, rel=1e-7)


def test_receding_policy_with_warm_starts_simulates_the_same_carbon(small):
    site, model, data = small
    out = {}
    for warm in (True, False):
        pol = RecedingHorizonPolicy(site, model, interval_h=4.0, warm_start=warm,
                                    options=closed_loop_options())
        res = simulate(site, data, pol)
        out[warm] = (res.summary, pol)
    (sw, pw), (sc, pc) = out[True], out[False]
    assert len(pw.plans) == len(pc.plans) == 18 and not any(p[2] for p in pw.plans)
    # degenerate LPs have more than one optimal vertex: the plans may differ, the carbon hardly
    assert sw["tco2_location"] == pytest.approx(sc["tco2_location"], rel=2e-3)
    assert sw["late_work_units"] == 0 and sw["thermal_violation_minutes"] == 0
    assert pw.simplex_iterations < 0.7 * pc.simplex_iterations
