"""Jobs competing for capacity: the Pyomo/HiGHS MILP/LP against hand optima, brute force
and the greedy one-job-at-a-time heuristic."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from coolshift.shift import (
    JobsError,
    greedy_schedule,
    prepare,
    schedule_jobs,
    slot_load_kw,
    validate_jobs,
)
from coolshift.shift.capacity import binding_slots, components

T0 = pd.Timestamp("2024-01-01T00:00Z")


def profile(values):
    return pd.Series(np.asarray(values, float),
                     index=pd.date_range(T0, periods=len(values), freq="30min"))


def jobs_frame(rows):
    return validate_jobs(pd.DataFrame([{
        "job_id": r[0], "release": (T0 + pd.Timedelta(minutes=30 * r[1])).isoformat(),
        "deadline": (T0 + pd.Timedelta(minutes=30 * r[2])).isoformat(),
        "duration_h": r[3], "power_kw": r[4]} for r in rows]))


def loads(s, prob):
    """kW per slot of a schedule under the capacity rule."""
    idx = {t: i for i, t in enumerate(prob.slots)}
    jobs = {j: i for i, j in enumerate(prob.jobs["job_id"])}
    job = s.runs["job_id"].map(jobs).to_numpy()
    slot = s.runs["slot_start"].map(idx).to_numpy()
    return slot_load_kw(prob, job, slot, s.runs["run_h"].to_numpy())


def test_capacity_forces_one_job_out_of_the_cleanest_slot_and_greedy_picks_wrong():
    # slots 300, 100, 200 g/kWh; a 4 kW and an 8 kW half-hour job; capacity 10 kW.
    # Optimum: 8 kW in the 100 slot, 4 kW in the 200 slot: 0.5 x (800 + 800) g = 0.8 kg.
    # Greedy (input order): 4 kW takes the 100 slot, 8 kW the 200 slot: 0.2 + 0.8 = 1.0 kg.
    intensity = profile([300, 100, 200])
    jobs = jobs_frame([("small", 0, 3, 0.5, 4.0), ("big", 0, 3, 0.5, 8.0)])
    free = schedule_jobs(jobs, intensity)
    assert free.summary()["shifted_kgco2"] == pytest.approx(0.6)  # both in the 100 slot
    opt = schedule_jobs(jobs, intensity, capacity_kw=10.0)
    assert opt.method == "milp"
    assert opt.summary()["shifted_kgco2"] == pytest.approx(0.8)
    assert opt.summary()["max_over_capacity_kw"] == pytest.approx(0.0, abs=1e-9)
    t = opt.table.set_index("job_id")
    assert t.loc["big", "start"] == T0 + pd.Timedelta("30min")
    assert t.loc["small", "start"] == T0 + pd.Timedelta("60min")
    greedy = greedy_schedule(prepare(jobs, intensity), 10.0)
    assert greedy.summary()["shifted_kgco2"] == pytest.approx(1.0)
    assert greedy.summary()["late_jobs"] == 0
    assert opt.summary()["late_jobs"] == 0


def test_interruptible_jobs_share_slots_by_fraction_in_the_lp():
    # Two 1 h jobs at 5 kW over slots 100, 200, 300, 400 with 7.5 kW: the LP fills the
    # cleanest slots to 7.5 kW: 7.5 x 0.5 x (100 + 200) + 5 x 0.5 x 300 = 1875 g.
    # Contiguous jobs cannot overlap (10 kW > 7.5): slots 0-1 and 2-3 = 2500 g.
    intensity = profile([100, 200, 300, 400])
    rows = [("a", 0, 4, 1.0, 5.0), ("b", 0, 4, 1.0, 5.0)]
    lp = schedule_jobs(jobs_frame(rows), intensity, capacity_kw=7.5, interruptible=True)
    assert lp.method == "lp"
    assert lp.summary()["shifted_kgco2"] == pytest.approx(1.875, rel=1e-6)
    assert lp.table["run_h"].tolist() == pytest.approx([1.0, 1.0])
    prob = prepare(jobs_frame(rows), intensity, interruptible=True)
    assert loads(lp, prob).max() <= 7.5 + 1e-6
    milp = schedule_jobs(jobs_frame(rows), intensity, capacity_kw=7.5)
    assert milp.summary()["shifted_kgco2"] == pytest.approx(2.5)


def test_capacity_that_does_not_bind_keeps_the_independent_optimum():
    intensity = profile([300, 100, 200])
    jobs = jobs_frame([("a", 0, 3, 0.5, 4.0), ("b", 0, 3, 0.5, 8.0)])
    s = schedule_jobs(jobs, intensity, capacity_kw=12.0)
    assert s.method.startswith("independent-exact")
    assert s.summary()["shifted_kgco2"] == pytest.approx(0.6)


def test_infeasible_capacity_and_oversized_job_are_clear_errors():
    intensity = profile([300, 100, 200])
    jobs = jobs_frame([("a", 0, 1, 0.5, 4.0), ("b", 0, 1, 0.5, 8.0)])  # both need slot 0
    with pytest.raises(JobsError, match="no schedule fits every job under the capacity"):
        schedule_jobs(jobs, intensity, capacity_kw=10.0)
    with pytest.raises(JobsError, match=r"job_id 'b' draws 8.0 kW, more than the capacity 5.0"):
        schedule_jobs(jobs, intensity, capacity_kw=5.0)


def test_binding_rows_only_where_windows_can_overload():
    intensity = profile([1, 2, 3, 4, 5, 6])
    jobs = jobs_frame([("a", 0, 3, 0.5, 6.0), ("b", 1, 4, 0.5, 6.0), ("c", 5, 6, 0.5, 6.0)])
    prob = prepare(jobs, intensity)
    assert binding_slots(prob, np.full(6, 10.0)).tolist() == [False, True, True, False, False,
                                                             False]


@pytest.mark.parametrize("seed", range(6))
def test_milp_matches_brute_force_and_never_loses_to_greedy(seed):
    rng = np.random.default_rng(seed)
    n_slots = 10
    intensity = profile(rng.uniform(50, 400, n_slots))
    rows = []
    for i in range(4):
        d = float(rng.choice([0.5, 1.0, 1.5]))
        need = int(np.ceil(d / 0.5))
        a = int(rng.integers(0, n_slots - need))
        b = int(min(n_slots, a + need + rng.integers(0, 4)))
        rows.append((f"j{i}", a, b, d, float(rng.integers(2, 9))))
    cap = 12.0
    jobs = jobs_frame(rows)
    prob = prepare(jobs, intensity)
    x = intensity.to_numpy()
    best = np.inf
    options = [range(a, b - int(np.ceil(d / 0.5)) + 1) for _, a, b, d, _ in rows]
    for starts in itertools.product(*options):
        load = np.zeros(n_slots)
        g = 0.0
        for (_, _, _, d, p), s in zip(rows, starts):
            n = int(np.ceil(d / 0.5))
            load[s:s + n] += p
            g += p * sum(min(0.5, d - 0.5 * k) * x[s + k] for k in range(n))
        if load.max() <= cap:
            best = min(best, g / 1000)
    if not np.isfinite(best):
        with pytest.raises(JobsError):
            schedule_jobs(jobs, intensity, capacity_kw=cap)
        return
    opt = schedule_jobs(jobs, intensity, capacity_kw=cap)
    assert opt.summary()["shifted_kgco2"] == pytest.approx(best, rel=1e-6)
    assert loads(opt, prob).max() <= cap + 1e-9
    assert opt.summary()["late_jobs"] == 0
    greedy = greedy_schedule(prob, cap)
    if greedy.summary()["late_jobs"] == 0:
        assert greedy.summary()["shifted_kgco2"] >= best - 1e-9
        assert loads(greedy, prob).max() <= cap + 1e-9


def test_per_slot_capacity_array_and_mixed_interruptible_jobs():
    # capacity 0 in the cleanest slot pushes everyone out of it
    intensity = profile([100, 10, 200, 300])
    jobs = validate_jobs(pd.DataFrame([
        {"job_id": "blk", "release": T0.isoformat(), "deadline": (T0 + pd.Timedelta("2h")).isoformat(),
         "duration_h": 0.5, "power_kw": 2.0, "interruptible": "false"},
        {"job_id": "spl", "release": T0.isoformat(), "deadline": (T0 + pd.Timedelta("2h")).isoformat(),
         "duration_h": 1.0, "power_kw": 2.0, "interruptible": "true"},
    ]))
    cap = np.array([3.0, 0.0, 3.0, 3.0])
    s = schedule_jobs(jobs, intensity, capacity_kw=cap)
    prob = prepare(jobs, intensity)
    assert loads(s, prob)[1] == pytest.approx(0.0)
    # enumerate the block's start; the split job then fills the cleanest room left
    # (room per slot = capacity left / its 2 kW, at most the whole slot)
    best = np.inf
    for blk in (0, 2, 3):
        room = cap.copy()
        room[blk] -= 2.0
        frac = np.clip(room / 2.0, 0, 1)
        need, g = 2.0, 2.0 * 0.5 * intensity.iloc[blk]
        for k in np.argsort(intensity.to_numpy()):
            f = min(frac[k], need)
            g += 2.0 * 0.5 * f * intensity.iloc[k]
            need -= f
        if need < 1e-9:
            best = min(best, g / 1000)
    assert s.summary()["shifted_kgco2"] == pytest.approx(best, rel=1e-6)


def test_pyomo_standard_form_equals_the_numpy_matrices():
    from coolshift.shift import capacity as sm

    intensity = profile([300, 100, 200, 50])
    jobs = validate_jobs(pd.DataFrame([
        {"job_id": "a", "release": T0.isoformat(), "deadline": (T0 + pd.Timedelta("2h")).isoformat(),
         "duration_h": 1.0, "power_kw": 4.0, "interruptible": "false"},
        {"job_id": "b", "release": T0.isoformat(), "deadline": (T0 + pd.Timedelta("2h")).isoformat(),
         "duration_h": 0.75, "power_kw": 6.0, "interruptible": "true"},
    ]))
    prob = prepare(jobs, intensity)
    cap = np.full(4, 8.0)
    binding = sm.binding_slots(prob, cap)
    cm = sm.model_matrices(prob, prob.actual, cap, np.arange(2), np.flatnonzero(binding))
    A, c, lo, hi = sm.standard_form(sm.build_model(cm))
    A2, c2, lo2, hi2 = sm.matrices_direct(cm)
    assert (A != A2).nnz == 0
    assert np.allclose(c, c2) and np.array_equal(lo, lo2) and np.array_equal(hi, hi2)
    # 3 block candidates + 4 run slots; rows: 1 choice, 1 hours, 4 capacity
    assert A.shape == (6, 7)


def test_jobs_sharing_no_binding_slot_are_solved_as_separate_groups():
    intensity = profile([1, 2, 3, 4, 5, 6, 7, 8])
    # a, b overlap on slots 1-2 (12 kW > 10); c, d on slots 5-6; e's window is slot 4 only
    jobs = jobs_frame([("a", 0, 3, 0.5, 6.0), ("b", 1, 4, 0.5, 6.0), ("e", 4, 5, 0.5, 6.0),
                       ("c", 5, 7, 0.5, 6.0), ("d", 5, 8, 0.5, 6.0)])
    prob = prepare(jobs, intensity)
    groups = components(prob, binding_slots(prob, np.full(8, 10.0)))
    assert [g[0].tolist() for g in groups] == [[0, 1], [3, 4]]
    assert [g[1].tolist() for g in groups] == [[1, 2], [5, 6]]
    s = schedule_jobs(jobs, intensity, capacity_kw=10.0)
    assert s.info["groups"] == 2 and s.info["coupled_jobs"] == 4
    # a -> slot 0 (1), b -> slot 1 (2), e -> slot 4 (5), c -> 5 (6), d -> 6 (7): x 6 kW x 0.5 h
    assert s.summary()["shifted_kgco2"] == pytest.approx(6 * 0.5 * (1 + 2 + 5 + 6 + 7) / 1000)


def test_one_built_model_solves_new_forecasts_like_a_fresh_build():
    from coolshift.shift import solve_runs
    from coolshift.shift.capacity import CapacitySolver, solve_capacity

    rng = np.random.default_rng(3)
    intensity = profile(rng.uniform(50, 400, 24))
    rows = [(f"j{i}", int(a), int(a) + 6, float(d), float(p)) for i, (a, d, p) in
            enumerate(zip(rng.integers(0, 18, 12), rng.choice([0.5, 1.0, 1.5], 12),
                          rng.integers(2, 9, 12)))]
    prob = prepare(jobs_frame(rows), intensity, interruptible=None)
    cap = np.full(24, 12.0)
    solver = CapacitySolver(prob, cap)
    for seed in range(3):
        dec = prob.actual + np.random.default_rng(seed).normal(0, 40, 24)
        j1, s1, h1, i1 = solver.solve(dec)
        j2, s2, h2, i2 = solve_capacity(prob, dec, cap)
        kg = lambda j, s, h: float((prob.power_kw[j] * h * dec[s]).sum())  # noqa: E731
        assert kg(j1, s1, h1) == pytest.approx(kg(j2, s2, h2), rel=1e-6)
        assert slot_load_kw(prob, j1, s1, h1).max() <= 12.0 + 1e-9
    cache = {}
    solve_runs(prob, prob.actual, cap, cache=cache)
    built = cache.get("capacity_solver")
    assert built is not None  # the capacity binds here, so a model was built
    solve_runs(prob, prob.actual * 1.1, cap, cache=cache)
    assert cache.get("capacity_solver") is built
