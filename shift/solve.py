"""Solve a batch of jobs: the exact per-job optimum, or with a capacity limit the MILP/LP.

:func:`solve_runs` picks the method (independent optimum when the capacity does not bind,
:class:`~coolshift.shift.capacity.CapacitySolver` otherwise); :func:`schedule_jobs` is the
whole call from a job table to a :class:`~coolshift.shift.jobs.Schedule`.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from .capacity import CapacitySolver
from .jobs import (JobsError, Schedule, ShiftProblem, capacity_array, greedy_runs, independent_runs, make_schedule,
                   prepare, slot_load_kw)

__all__ = ["solve_runs", "schedule_jobs"]


def solve_runs(prob: ShiftProblem, decision: np.ndarray | None = None,
               capacity_kw: float | np.ndarray | None = None, mip_rel_gap: float = 1e-4,
               time_limit_s: float | None = None, cache: dict | None = None,
               start_runs: tuple | None = None):
    """The optimal runs ``(job, slot, hours, method, info)`` on ``decision`` intensity.

    Without ``capacity_kw`` the exact per-job optimum, vectorised. With it, the
    independent optimum is tried first (if it fits the capacity it is optimal);
    otherwise the MILP/LP of :mod:`coolshift.shift.capacity` with HiGHS (identical
    jobs merged into classes). A time limit that stops HiGHS with a feasible schedule
    returns it with ``info["time_limit_reached"]`` and ``info["mip_gap"]``; without one it
    raises :class:`SolverStopped`; an infeasible job set raises :class:`JobsError`
    naming the jobs and the window. Pass the same ``cache`` dict to repeated calls on one problem and capacity (e.g.
    noise seeds) to build that model once and change only its costs. ``start_runs``: a
    feasible per-job schedule on the same decision (``greedy_runs`` output) handed to HiGHS
    as its first incumbent; under a time limit it is computed here if not given.
    """
    decision = prob.actual if decision is None else np.asarray(decision, float)
    if decision.shape != prob.actual.shape:
        raise JobsError(f"decision intensity has {decision.shape[0]} slots, expected "
                        f"{prob.actual.shape[0]}")
    runs = independent_runs(prob, decision)
    if capacity_kw is None:
        return (*runs, "independent-exact", {})
    cap = capacity_array(prob, capacity_kw)
    too_big = np.flatnonzero(prob.power_kw > cap.max() + 1e-9)
    if len(too_big):
        i = too_big[0]
        raise JobsError(f"jobs: job_id {prob.jobs['job_id'].iat[i]!r} draws "
                        f"{prob.power_kw[i]} kW, more than the capacity {cap.max()} kW")
    if np.all(slot_load_kw(prob, *runs) <= cap + 1e-9):
        return (*runs, "independent-exact (capacity not binding)", {})
    cache = {} if cache is None else cache
    solver = cache.get("capacity_solver")
    if solver is None or solver.prob is not prob or not np.array_equal(solver.cap, cap):
        solver = cache["capacity_solver"] = CapacitySolver(prob, cap, mip_rel_gap, time_limit_s)
    # under a time limit, greedy's schedule (if it places every job) is HiGHS's first
    # incumbent, so a time-out returns at least that
    if start_runs is None and time_limit_s is not None:
        start_runs = greedy_runs(prob, cap, decision)
    job, slot, hours, info = solver.solve(decision, start_runs)
    over = slot_load_kw(prob, job, slot, hours) - cap
    info["max_over_capacity_kw"] = float(max(over.max(), 0.0))  # 0 up to solver tolerance
    return job, slot, hours, info.pop("method"), info


def schedule_jobs(jobs: pd.DataFrame | ShiftProblem, intensity: pd.Series | pd.DataFrame | None
                  = None, slot: str = "30min", interruptible: bool | None = None,
                  capacity_kw: float | np.ndarray | None = None,
                  decision: np.ndarray | None = None, mip_rel_gap: float = 1e-4,
                  time_limit_s: float | None = None) -> Schedule:
    """Schedule a batch of jobs to emit least; emissions counted on actual intensity.

    ``jobs`` is a job table (validated here) or a prepared :class:`ShiftProblem`;
    ``intensity`` a series or frame with ``gco2_per_kwh`` on a UTC index, resampled to
    ``slot``; ``interruptible`` the default for jobs without their own flag;
    ``decision`` the intensity per slot the choice is made on (a forecast; default the
    actuals, i.e. perfect foresight). See :func:`solve_runs`.
    """
    prob = jobs if isinstance(jobs, ShiftProblem) else prepare(jobs, intensity, slot,
                                                                 interruptible)
    t0 = time.perf_counter()
    job, slot_, hours, method, info = solve_runs(prob, decision, capacity_kw, mip_rel_gap,
                                                 time_limit_s)
    return make_schedule(prob, job, slot_, hours, method, time.perf_counter() - t0, info)
