"""Jobs competing for capacity: a Pyomo MILP (contiguous jobs) / LP (interruptible jobs)
solved by HiGHS.

Variables (flat integer indices, one block per family):
- ``start[c]`` binary: candidate block ``c`` (a job and a start slot) is chosen;
- ``run[r]`` in [0, 1]: the fraction of slot ``s`` an interruptible job runs (``r`` a
  job-slot pair in its window).
Constraint families (one function each, PyPSA style): every contiguous job picks one
block; every interruptible job runs its duration; the load in every slot where the
capacity can bind stays under it. Objective: kgCO2 on the decision intensity.

Exact reductions before the build: slots whose largest possible load fits the capacity
get no row, jobs whose window touches no such row are fixed at their independent
optimum (nothing couples them to the rest), and the remaining jobs are split into groups
that share no binding slot, each solved as its own model. The model is built lean (GC paused,
``LinearExpression`` from coefficient lists, ``(lb, body, ub)`` tuples), compiled to a
sparse matrix by Pyomo's ``LinearStandardFormCompiler`` and passed to ``highspy`` in one
call (see shared notes: the default appsi hand-over adds rows one at a time).

Job classes: jobs with the same usable slots, duration, power and interruptibility are
interchangeable, so each class is one set of columns with an integer count (how many of
its jobs start a block there) or a summed fraction, bounded by the class size; the
schedule is split back into jobs deterministically (:func:`disaggregate`). This is exact:
same optimum as one column set per job. Groups above :data:`PYOMO_MAX_COLUMNS` columns
skip the Pyomo objects and pass the same numpy matrices to HiGHS (the two routes give
identical matrices, ``tests/test_shift_capacity.py``), which is what keeps 100,000 jobs
under 2 GB (``benchmarks/bench_shift.py``).

Solver outcomes: optimal; a time limit with a feasible incumbent (kept, flagged, with its
MIP gap); a time limit with none (:class:`SolverStopped`); infeasible (:class:`JobsError`
naming the jobs and the window where they cannot fit, :func:`diagnose_infeasible`).
"""

from __future__ import annotations

import gc
import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from coolshift.optimizer.highs import new_highs, run_highs as highs_run

from .jobs import (
    _KG_PER_G,
    JobsError,
    ShiftProblem,
    SolverStopped,
    _block_runs,
    block_costs,
    independent_runs,
)

_TOL_KW = 1e-9
# Largest group (columns) built through Pyomo objects; larger groups pass the same numpy
# matrices to HiGHS directly. Measured (100,000 jobs in 7,168 classes, 179,200 columns,
# before HiGHS solves): peak RSS 681 MB through Pyomo, 447 MB direct, i.e. ~1.3 kB more per
# column. 100,000 keeps the Pyomo part under ~150 MB and still covers every group of the
# 10,000-job benchmark (largest 20,560 columns at 300 kW).
PYOMO_MAX_COLUMNS = 100_000
# HiGHS MIP options that bound its memory (defaults: pool 10,000 cuts). Measured on the
# 100,000-job class model (179,200 integer columns, 120 s limit): HiGHS's own growth
# 2.1 GB with the defaults, 1.2 GB with a 500-cut pool, same optimum (the root cut loop
# and the sub-MIP heuristics hold most of it; the LP bound is within 0.001 %).
HIGHS_MIP_OPTIONS = {"mip_pool_soft_limit": 500}
# Largest number of distinct window ends per side searched by diagnose_infeasible
# (a table of starts x ends; 3,000 x 3,000 float64 = 72 MB).
_DIAG_MAX_ENDS = 3000


@contextmanager
def _gc_paused():
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def binding_slots(prob: ShiftProblem, cap: np.ndarray) -> np.ndarray:
    """Bool per slot: the sum of power of every job whose window covers it exceeds the
    capacity (otherwise no choice can overload it, and it needs no row)."""
    diff = np.zeros(len(prob.slots) + 1)
    np.add.at(diff, prob.first, prob.power_kw)
    np.add.at(diff, prob.stop, -prob.power_kw)
    return np.cumsum(diff)[:-1] > cap + _TOL_KW


def _candidates(prob: ShiftProblem, jobs: np.ndarray, decision: np.ndarray, cap: np.ndarray):
    """Block candidates of contiguous jobs: (job, start, cost kg); blocks that would
    exceed the capacity on their own are dropped."""
    if len(jobs) == 0:
        return np.array([], np.int64), np.array([], np.int64), np.array([])
    starts, cost = block_costs(prob, jobs, decision)
    ok = np.isfinite(cost)
    job = np.broadcast_to(jobs[:, None], starts.shape)[ok]
    start, cost = starts[ok], cost[ok] * prob.power_kw[job] * _KG_PER_G
    n = prob.n_slots[job]
    # min capacity over each block, from a sparse table over powers of two
    span_min = _range_min(cap, start, start + n)
    fits = prob.power_kw[job] <= span_min + _TOL_KW
    return job[fits], start[fits], cost[fits]


def _range_min(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """min(values[lo:hi]) per pair, vectorised with a sparse table (O(n log n) build)."""
    table = [values]
    k = 1
    while 2 * k <= len(values):
        prev = table[-1]
        table.append(np.minimum(prev[:-k], prev[k:]))
        k *= 2
    length = hi - lo
    level = np.floor(np.log2(np.maximum(length, 1))).astype(int)
    out = np.empty(len(lo))
    for lv in np.unique(level):
        sel = level == lv
        t = table[lv]
        out[sel] = np.minimum(t[lo[sel]], t[hi[sel] - (1 << lv)])
    return out


# ---------------------------------------------------------------------- job classes
@dataclass(frozen=True)
class JobClasses:
    """Interchangeable jobs of a group: ``rep`` the first job (input order) of each class,
    ``count`` its size, ``members`` the group's jobs sorted by class then input order,
    ``offset`` where each class starts in ``members``."""

    rep: np.ndarray
    count: np.ndarray
    members: np.ndarray
    offset: np.ndarray


def job_classes(prob: ShiftProblem, jobs: np.ndarray) -> JobClasses:
    """Group ``jobs`` (sorted indices) by what the model sees of them: first and stop
    slot, whole slots and remainder hours, power [kW] and interruptibility."""
    jobs = np.asarray(jobs)
    keys = (jobs, prob.interruptible[jobs], prob.power_kw[jobs], prob.rem_h[jobs],
            prob.n_full[jobs], prob.stop[jobs], prob.first[jobs])
    order = np.lexsort(keys)  # by first, stop, ..., then input order
    members = jobs[order]
    fields = [k[order] for k in keys[1:]]
    new = np.ones(len(members), bool)
    new[1:] = np.any([f[1:] != f[:-1] for f in fields], axis=0)
    offset = np.flatnonzero(new)
    count = np.diff(np.r_[offset, len(members)])
    rep = members[offset]
    by_rep = np.argsort(rep, kind="stable")  # classes in representative order
    rep, count = rep[by_rep], count[by_rep]
    rank = np.empty(len(by_rep), np.int64)
    rank[by_rep] = np.arange(len(by_rep))
    members = members[np.argsort(rank[np.cumsum(new) - 1], kind="stable")]
    return JobClasses(rep, count, members, np.r_[0, np.cumsum(count)[:-1]].astype(np.int64))


# ----------------------------------------------------------------- constraint families
@dataclass(frozen=True)
class Family:
    """One constraint family as data: ``lower <= A @ x <= upper`` (None = unbounded)."""

    name: str
    A: sp.csr_array
    lower: np.ndarray | None
    upper: np.ndarray | None


@dataclass(frozen=True)
class CapacityModel:
    """Columns (block candidates, then interruptible job-slot pairs), their cost [kg per
    job], upper bounds (the class size: 1 for a single job) and the constraint families;
    pure numpy, so it can go to Pyomo or straight to HiGHS."""

    cand_job: np.ndarray
    cand_start: np.ndarray
    run_job: np.ndarray
    run_slot: np.ndarray
    cost_kg: np.ndarray
    families: list[Family]
    col_upper: np.ndarray | None = None

    @property
    def n_int(self) -> int:
        return len(self.cand_job)

    @property
    def n_cols(self) -> int:
        return len(self.cand_job) + len(self.run_job)


def block_choice(cand_job: np.ndarray, jobs: np.ndarray, n_cols: int,
                 count: np.ndarray | None = None) -> Family:
    """Every contiguous job picks exactly one of its candidate blocks (a class of
    ``count`` jobs: its block counts add up to ``count``)."""
    row = np.searchsorted(jobs, cand_job)
    A = sp.csr_array((np.ones(len(cand_job)), (row, np.arange(len(cand_job)))),
                     shape=(len(jobs), n_cols))
    rhs = np.ones(len(jobs)) if count is None else np.asarray(count, float)
    return Family("block_choice", A, rhs, rhs)


def run_hours(prob: ShiftProblem, run_job: np.ndarray, jobs: np.ndarray, offset: int,
              n_cols: int, count: np.ndarray | None = None) -> Family:
    """Every interruptible job runs its duration: sum of slot fractions = duration/slot
    (a class: ``count`` x that)."""
    row = np.searchsorted(jobs, run_job)
    A = sp.csr_array((np.ones(len(run_job)), (row, offset + np.arange(len(run_job)))),
                     shape=(len(jobs), n_cols))
    need = prob.duration_h[jobs] / prob.slot_h
    if count is not None:
        need = need * count
    return Family("run_hours", A, need, need)


def capacity(prob: ShiftProblem, cap: np.ndarray, rows_slot: np.ndarray, cand_job, cand_start,
             run_job, run_slot) -> Family:
    """Load in each binding slot <= capacity [kW]: full power for every block touching
    the slot, power x fraction for interruptible runs."""
    row_of = np.full(len(prob.slots), -1)
    row_of[rows_slot] = np.arange(len(rows_slot))
    bj, bs, _ = _block_runs(prob, cand_job, cand_start)
    cand = np.repeat(np.arange(len(cand_job)), prob.n_slots[cand_job])
    keep = row_of[bs] >= 0
    nc = len(cand_job)
    r_keep = row_of[run_slot] >= 0
    rows = np.r_[row_of[bs][keep], row_of[run_slot][r_keep]]
    cols = np.r_[cand[keep], nc + np.flatnonzero(r_keep)]
    vals = np.r_[prob.power_kw[bj][keep], prob.power_kw[run_job][r_keep]]
    A = sp.csr_array((vals, (rows, cols)), shape=(len(rows_slot), nc + len(run_job)))
    A.sum_duplicates()
    A.sort_indices()
    return Family("capacity", A, None, cap[rows_slot])


def model_matrices(prob: ShiftProblem, decision: np.ndarray, cap: np.ndarray, jobs: np.ndarray,
                   rows_slot: np.ndarray, count: np.ndarray | None = None) -> CapacityModel:
    """Columns, costs and constraint families of the coupled ``jobs`` (sorted); with
    ``count``, each of ``jobs`` stands for a class of that many identical jobs."""
    count = np.ones(len(jobs), np.int64) if count is None else np.asarray(count)
    size = np.zeros(prob.n_jobs, np.int64)
    size[jobs] = count
    block = jobs[~prob.interruptible[jobs]]
    split = jobs[prob.interruptible[jobs]]
    cand_job, cand_start, cand_cost = _candidates(prob, block, decision, cap)
    missing = np.setdiff1d(block, cand_job)
    if len(missing):
        raise JobsError(f"jobs: job_id {prob.jobs['job_id'].iat[missing[0]]!r} has no block "
                        "in its window that fits under the capacity")
    width = prob.stop[split] - prob.first[split]
    run_job = np.repeat(split, width)
    run_slot = np.arange(width.sum()) - np.repeat(np.cumsum(width) - width, width) + \
        np.repeat(prob.first[split], width)
    run_cost = prob.power_kw[run_job] * prob.slot_h * decision[run_slot] * _KG_PER_G
    n_cols = len(cand_job) + len(run_job)
    fams = []
    if len(block):
        fams.append(block_choice(cand_job, block, n_cols, size[block]))
    if len(split):
        fams.append(run_hours(prob, run_job, split, len(cand_job), n_cols, size[split]))
    fams.append(capacity(prob, cap, rows_slot, cand_job, cand_start, run_job, run_slot))
    return CapacityModel(cand_job, cand_start, run_job, run_slot,
                         np.r_[cand_cost, run_cost], fams,
                         np.r_[size[cand_job], size[run_job]].astype(float))


# ------------------------------------------------------------------------ Pyomo model
def _rows(matrix: sp.csr_array, variables: list, lower, upper):
    """(lb, LinearExpression, ub) per row of a CSR matrix over ``variables``."""
    from pyomo.core.expr.numeric_expr import LinearExpression

    ptr, idx, val = matrix.indptr, matrix.indices, matrix.data
    out = []
    for r in range(matrix.shape[0]):
        a, b = ptr[r], ptr[r + 1]
        expr = LinearExpression(linear_coefs=val[a:b].tolist(),
                                linear_vars=[variables[k] for k in idx[a:b]], constant=0.0)
        out.append((None if lower is None else float(lower[r]), expr,
                    None if upper is None else float(upper[r])))
    return out


def build_model(cm: CapacityModel):
    """The Pyomo model: integer ``start`` (binary for a single job, a count for a class),
    fractional ``run``, one Constraint per family, objective kgCO2 on the decision
    intensity."""
    import pyomo.environ as pyo
    from pyomo.core.expr.numeric_expr import LinearExpression

    ub = np.ones(cm.n_cols) if cm.col_upper is None else cm.col_upper
    with _gc_paused():
        m = pyo.ConcreteModel(name="shift")
        m.start = pyo.Var(range(cm.n_int), domain=pyo.NonNegativeIntegers,
                          bounds=lambda _, i: (0, float(ub[i])))
        m.run = pyo.Var(range(cm.n_cols - cm.n_int),
                        bounds=lambda _, i: (0.0, float(ub[cm.n_int + i])))
        m._columns = list(m.start.values()) + list(m.run.values())
        for fam in cm.families:
            rows = _rows(fam.A, m._columns, fam.lower, fam.upper)
            con = pyo.Constraint(range(len(rows)))
            m.add_component(fam.name, con)
            for r, tpl in enumerate(rows):
                con[r] = tpl
        m.emissions_kg = pyo.Objective(
            expr=LinearExpression(linear_coefs=cm.cost_kg.tolist(), linear_vars=m._columns,
                                  constant=0.0), sense=pyo.minimize)
    return m


def standard_form(m):
    """Compile the Pyomo model to (A csc, cost, row_lower, row_upper) in our column order."""
    import highspy
    from pyomo.repn.plugins.standard_form import LinearStandardFormCompiler

    order = m._columns
    info = LinearStandardFormCompiler().write(m, mixed_form=True, column_order=order)
    if len(info.columns) != len(order) or any(a is not b for a, b in zip(info.columns, order)):
        raise RuntimeError("standard form changed the column order")  # guards the mapping
    sense = np.array([mult for _, mult in info.rows])
    rhs = np.asarray(info.rhs, float)
    inf = highspy.kHighsInf
    row_lo = np.where(sense == 1, -inf, rhs)   # mixed form: 0 '==', 1 '<=', -1 '>='
    row_hi = np.where(sense == -1, inf, rhs)
    return sp.csc_array(info.A), np.asarray(info.c.toarray()).ravel(), row_lo, row_hi


def matrices_direct(cm: CapacityModel):
    """The same (A csc, cost, row_lower, row_upper) straight from numpy, no Pyomo: the
    floor the Pyomo route is compared with in ``benchmarks/bench_shift.py``."""
    import highspy

    inf = highspy.kHighsInf
    A = sp.vstack([f.A for f in cm.families]).tocsc()
    lo = np.concatenate([f.lower if f.lower is not None else np.full(f.A.shape[0], -inf)
                         for f in cm.families])
    hi = np.concatenate([f.upper if f.upper is not None else np.full(f.A.shape[0], inf)
                         for f in cm.families])
    return A, cm.cost_kg, lo, hi


def load_highs(A, cost, row_lo, row_hi, n_int: int, mip_rel_gap: float = 1e-4,
               time_limit_s: float | None = None, col_upper: np.ndarray | None = None):
    """A ``highspy.Highs`` with the matrices passed in one call (not yet solved);
    columns in [0, ``col_upper``] (default 1)."""
    import highspy

    lp = highspy.HighsLp()
    n = len(cost)
    lp.num_col_, lp.num_row_ = n, A.shape[0]
    lp.col_cost_ = np.asarray(cost, float)
    lp.col_lower_ = np.zeros(n)
    lp.col_upper_ = np.ones(n) if col_upper is None else np.asarray(col_upper, float)
    lp.row_lower_, lp.row_upper_ = np.asarray(row_lo, float), np.asarray(row_hi, float)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = A.indptr
    lp.a_matrix_.index_ = A.indices
    lp.a_matrix_.value_ = A.data
    if n_int:
        lp.integrality_ = [highspy.HighsVarType.kInteger] * n_int + \
            [highspy.HighsVarType.kContinuous] * (n - n_int)
    h = new_highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("mip_rel_gap", float(mip_rel_gap))
    for key, value in HIGHS_MIP_OPTIONS.items():
        h.setOptionValue(key, value)
    if time_limit_s is not None:
        h.setOptionValue("time_limit", float(time_limit_s))
    h.passModel(lp)
    return h


def run_loaded(h, n_int: int, cost: np.ndarray | None = None,
               start: np.ndarray | None = None):
    """Solve a loaded model, after replacing its costs if given; (x, status, stats).

    New costs go in with ``changeColsCost`` and ``clearSolver`` drops the old basis, so
    HiGHS presolves afresh (shared notes: a kept basis skips presolve and was slower).
    ``start``: a feasible point handed to HiGHS as its first incumbent (``setSolution``),
    so a time limit still returns at least that. ``x`` is None unless HiGHS holds a
    feasible point; ``stats["time_limit"]`` says whether the time limit stopped it.
    """
    import highspy

    n = h.getNumCol()
    if cost is not None:
        h.changeColsCost(n, np.arange(n, dtype=np.int32), np.asarray(cost, float))
    h.clearSolver()
    if start is not None and n_int:
        sol = highspy.HighsSolution()
        sol.col_value = np.asarray(start, float).tolist()
        sol.value_valid = True
        h.setSolution(sol)
    t1 = time.perf_counter()
    highs_run(h)
    t_solve = time.perf_counter() - t1
    model_status = h.getModelStatus()
    status = h.modelStatusToString(model_status)
    info = h.getInfo()
    feasible = info.primal_solution_status == int(highspy.SolutionStatus.kSolutionStatusFeasible)
    optimal = model_status == highspy.HighsModelStatus.kOptimal
    x = np.asarray(h.getSolution().col_value, float) if feasible else None
    stats = {"highs_s": t_solve, "variables": n, "rows": h.getNumRow(),
             "integer_variables": n_int, "highs_status": status,
             "time_limit": model_status == highspy.HighsModelStatus.kTimeLimit,
             "infeasible": model_status in (highspy.HighsModelStatus.kInfeasible,
                                            highspy.HighsModelStatus.kUnboundedOrInfeasible),
             "objective_kg": float(info.objective_function_value) if feasible else np.nan}
    if n_int:
        stats["mip_gap"] = float(info.mip_gap)
        stats["bound_kg"] = float(info.mip_dual_bound)
    else:
        stats["bound_kg"] = stats["objective_kg"] if optimal else -np.inf
    return x, status, stats


def run_highs(A, cost, row_lo, row_hi, n_int: int, mip_rel_gap: float = 1e-4,
              time_limit_s: float | None = None):
    """Pass the matrices to HiGHS in one call and solve; returns (x, status, stats)."""
    return run_loaded(load_highs(A, cost, row_lo, row_hi, n_int, mip_rel_gap, time_limit_s),
                      n_int)


def column_costs(prob: ShiftProblem, cm: CapacityModel, decision: np.ndarray) -> np.ndarray:
    """kgCO2 of every column on ``decision`` [gCO2/kWh]: the objective for a new forecast
    without rebuilding the model."""
    csum = np.r_[0.0, np.cumsum(decision)]
    padded = np.r_[decision, 0.0]
    cj, cs = cm.cand_job, cm.cand_start
    nf = prob.n_full[cj]
    g_per_kw = prob.slot_h * (csum[cs + nf] - csum[cs]) + prob.rem_h[cj] * padded[cs + nf]
    cand = prob.power_kw[cj] * g_per_kw * _KG_PER_G
    run = prob.power_kw[cm.run_job] * prob.slot_h * decision[cm.run_slot] * _KG_PER_G
    return np.r_[cand, run]


def components(prob: ShiftProblem, binding: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Independent sub-problems: (jobs, binding slots) groups that share no binding slot.

    Two jobs are coupled only through a binding slot both windows contain. Binding
    slots form runs; a job links the runs its window touches; runs linked through any
    chain of jobs form one group. Solving groups separately is exact.
    """
    idx = np.flatnonzero(binding)
    if len(idx) == 0:
        return []
    run_of = np.cumsum(np.r_[True, np.diff(idx) > 1]) - 1      # run id per binding slot
    c = np.r_[0, np.cumsum(binding)]
    jobs = np.flatnonzero(c[prob.stop] - c[prob.first] > 0)
    lo = run_of[np.searchsorted(idx, prob.first[jobs])]
    hi = run_of[np.searchsorted(idx, prob.stop[jobs]) - 1]
    order = np.argsort(lo, kind="stable")
    reach = np.maximum.accumulate(hi[order])
    start_new = np.r_[True, lo[order][1:] > reach[:-1]]
    group_of_sorted = np.cumsum(start_new) - 1
    group = np.empty(len(jobs), np.int64)
    group[order] = group_of_sorted
    n_groups = int(group_of_sorted[-1]) + 1
    first_run = np.full(n_groups, np.iinfo(np.int64).max)
    last_run = np.zeros(n_groups, np.int64)
    np.minimum.at(first_run, group, lo)
    np.maximum.at(last_run, group, hi)
    out = []
    for g in range(n_groups):
        slots = idx[(run_of >= first_run[g]) & (run_of <= last_run[g])]
        out.append((np.sort(jobs[group == g]), slots))
    return out


def diagnose_infeasible(prob: ShiftProblem, jobs: np.ndarray, cap: np.ndarray) -> str:
    """Why ``jobs`` cannot all fit under ``cap`` [kW]: the slot window where the jobs
    that must run inside it need more capacity than it holds.

    Over every window [a release slot, a deadline slot) of the group, the jobs whose
    usable slots lie inside it need power x slots touched (contiguous: full power in each
    slot a block touches) or power x duration (interruptible) there; the window holds the
    sum of the capacity [kW] over its slots. The window with the largest shortfall is
    named with its jobs. Packing conflicts that no window's total shows (blocks that
    cannot interleave) fall back to naming the group.
    """
    jobs = np.asarray(jobs)
    need = prob.power_kw[jobs] * np.where(prob.interruptible[jobs],
                                          prob.duration_h[jobs] / prob.slot_h, prob.n_slots[jobs])
    starts = np.unique(prob.first[jobs])
    ends = np.unique(prob.stop[jobs])
    ids = prob.jobs["job_id"].to_numpy()
    group = (f"{len(jobs)} job(s), job_id {ids[jobs[0]]!r} .. {ids[jobs[-1]]!r}, between "
             f"{_stamp(prob, prob.first[jobs].min())} and {_stamp(prob, prob.stop[jobs].max())}")
    if len(starts) <= _DIAG_MAX_ENDS and len(ends) <= _DIAG_MAX_ENDS:
        # demand[i, k]: jobs with first >= starts[i] and stop <= ends[k] (2-D suffix/prefix sums)
        table = np.zeros((len(starts), len(ends)))
        np.add.at(table, (np.searchsorted(starts, prob.first[jobs]),
                          np.searchsorted(ends, prob.stop[jobs])), need)
        demand = np.cumsum(np.cumsum(table[::-1], axis=0)[::-1], axis=1)
        csum = np.r_[0.0, np.cumsum(cap)]
        room = csum[ends][None, :] - csum[starts][:, None]
        short = np.where(ends[None, :] > starts[:, None], demand - room, -np.inf)
        i, k = np.unravel_index(np.argmax(short), short.shape)
        if short[i, k] > 1e-6 * max(room[i, k], 1.0):
            a, b = starts[i], ends[k]
            inside = jobs[(prob.first[jobs] >= a) & (prob.stop[jobs] <= b)]
            names = ", ".join(repr(str(x)) for x in ids[inside[:8]])
            more = f" and {len(inside) - 8} more" if len(inside) > 8 else ""
            return (f"capacity: no schedule fits every job under the capacity: the "
                    f"{len(inside)} job(s) that must run between {_stamp(prob, a)} and "
                    f"{_stamp(prob, b)} (job_id {names}{more}) need "
                    f"{demand[i, k] * prob.slot_h:,.2f} kWh of capacity there, the capacity "
                    f"allows {room[i, k] * prob.slot_h:,.2f} kWh (a contiguous job counts its "
                    "full power in every slot it touches)")
    return (f"capacity: no schedule fits every job under the capacity in their windows "
            f"({group}); the total capacity of no single window is exceeded, so the "
            "contiguous blocks cannot be packed (try --interruptible, a larger capacity or "
            "wider windows)")


def _stamp(prob: ShiftProblem, slot: int) -> str:
    """Slot boundary ``slot`` (start of that slot; one past the end for the last)."""
    t = prob.slots[0] + pd.Timedelta(hours=float(slot) * prob.slot_h)
    return t.strftime("%Y-%m-%dT%H:%MZ")


def disaggregate(prob: ShiftProblem, cls: JobClasses, cm: CapacityModel, x: np.ndarray):
    """Per-job runs (job, slot, hours) from class counts ``x``, deterministic.

    Contiguous: each class's block counts are rounded (HiGHS integrality tolerance) and
    its jobs, in input order, take the starts in time order. Interruptible: with a whole
    number D of slot-lengths per job, the class's slot amounts are laid end to end and
    wrapped round its k jobs (job i takes units i, i + k, ...), so each job gets D and at
    most one slot-length per slot (McNaughton's wrap-around rule); otherwise every job
    runs amount/k of each slot (also at most 1, total D).
    """
    rank = np.searchsorted(cls.rep, np.r_[cm.cand_job, cm.run_job])
    nc = cm.n_int
    out = []
    if nc:
        rc = rank[:nc]
        n = np.floor(x[:nc] + 0.5).astype(np.int64)
        got = np.bincount(rc, weights=n, minlength=len(cls.rep)).astype(np.int64)
        used = np.unique(rc)  # classes with blocks, ascending
        for c in used[got[used] != cls.count[used]]:
            cols = np.flatnonzero(rc == c)  # rounding lost or added a job: fix the largest
            n[cols[np.argmax(x[cols])]] += cls.count[c] - got[c]
        order = np.lexsort((cm.cand_start, rc))   # by class, then start
        start = np.repeat(cm.cand_start[order], n[order])
        who = cls.members[np.repeat(cls.offset[used], cls.count[used]) + _ranks(cls.count[used])]
        out.append(_block_runs(prob, who, start))
    if cm.n_cols > nc:
        rr, slot, amt = rank[nc:], cm.run_slot, np.clip(x[nc:], 0.0, None)
        order = np.lexsort((slot, rr))
        rr, slot, amt = rr[order], slot[order], amt[order]
        k = cls.count[rr]
        d = prob.duration_h[cls.rep[rr]] / prob.slot_h
        whole = np.abs(d - np.round(d)) < 1e-9
        # wrap-around for classes with a whole number of slots per job
        first_of = np.r_[True, rr[1:] != rr[:-1]]
        csum = np.cumsum(amt)
        base = np.maximum.accumulate(np.where(first_of, csum - amt, 0.0))
        hi = np.round(csum - base, 9)
        lo = np.where(first_of, 0.0, np.r_[0.0, hi[:-1]])  # end of the slot before
        w = np.flatnonzero(whole & (amt > 1e-9))
        u0 = np.floor(lo[w]).astype(np.int64)
        cells = np.ceil(hi[w]).astype(np.int64) - u0
        src = np.repeat(w, cells)
        u = np.repeat(u0, cells) + _ranks(cells)
        part = np.minimum(hi[src], u + 1) - np.maximum(lo[src], u)
        job = cls.members[cls.offset[rr[src]] + u % k[src]]
        out.append((job, slot[src], part * prob.slot_h))
        # equal split for the others
        e = np.flatnonzero(~whole & (amt > 1e-9))
        src = np.repeat(e, k[e])
        job = cls.members[cls.offset[rr[src]] + _ranks(k[e])]
        out.append((job, slot[src], amt[src] / k[src] * prob.slot_h))
    if not out:
        return np.array([], np.int64), np.array([], np.int64), np.array([])
    job, slot, hours = (np.concatenate(z) for z in zip(*out))
    keep = hours > 1e-7 * prob.slot_h
    return job[keep], slot[keep], hours[keep]


def _ranks(n: np.ndarray) -> np.ndarray:
    """0 .. n[i]-1 for each i, concatenated."""
    n = np.asarray(n, np.int64)
    return np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)


def _start_point(prob: ShiftProblem, cls: JobClasses, cm: CapacityModel, runs) -> np.ndarray | None:
    """Class columns of a per-job feasible schedule (``greedy_runs``), or None if a job
    of the group is unplaced or uses a block that is no column."""
    job, slot, hours, unplaced = runs
    if unplaced[cls.members].any():
        return None
    in_group = np.zeros(prob.n_jobs, bool)
    in_group[cls.members] = True
    keep = in_group[job]
    job, slot, hours = job[keep], slot[keep], hours[keep]
    rep_of = np.empty(prob.n_jobs, np.int64)
    rep_of[cls.members] = np.repeat(cls.rep, cls.count)
    m = len(prob.slots) + 1
    x = np.zeros(cm.n_cols)
    blk = ~prob.interruptible[job]
    if blk.any():
        first = np.full(prob.n_jobs, m)
        np.minimum.at(first, job[blk], slot[blk])
        jj = np.flatnonzero(in_group & ~prob.interruptible & (first < m))
        keys = cm.cand_job * m + cm.cand_start
        want = rep_of[jj] * m + first[jj]
        pos = np.searchsorted(keys, want)
        if np.any(pos >= len(keys)) or np.any(keys[np.minimum(pos, len(keys) - 1)] != want):
            return None
        np.add.at(x, pos, 1.0)
    if (~blk).any():
        keys = cm.run_job * m + cm.run_slot
        want = rep_of[job[~blk]] * m + slot[~blk]
        pos = np.searchsorted(keys, want)
        if np.any(pos >= len(keys)) or np.any(keys[np.minimum(pos, len(keys) - 1)] != want):
            return None
        np.add.at(x, cm.n_int + pos, hours[~blk] / prob.slot_h)
    return x


class CapacitySolver:
    """The capacity problem of ``prob`` built once (per independent group, jobs merged
    into classes, compiled and loaded into HiGHS); :meth:`solve` takes a decision
    intensity and changes only the costs, so several forecasts (noise seeds) reuse one
    build."""

    def __init__(self, prob: ShiftProblem, cap: np.ndarray, mip_rel_gap: float = 1e-4,
                 time_limit_s: float | None = None, aggregate: bool = True):
        t0 = time.perf_counter()
        self.prob, self.cap = prob, cap
        binding = binding_slots(prob, cap)
        self.groups = []
        self.coupled = np.zeros(prob.n_jobs, bool)
        t_build = t_compile = 0.0
        classes = pyomo_groups = 0
        for jobs, rows_slot in components(prob, binding):
            t1 = time.perf_counter()
            cls = job_classes(prob, jobs) if aggregate else \
                JobClasses(jobs, np.ones(len(jobs), np.int64), jobs, np.arange(len(jobs)))
            cm = model_matrices(prob, prob.actual, cap, cls.rep, rows_slot, cls.count)
            if cm.n_cols <= PYOMO_MAX_COLUMNS:
                m = build_model(cm)
                t2 = time.perf_counter()
                A, cost, lo, hi = standard_form(m)
                del m
                pyomo_groups += 1
            else:
                t2 = time.perf_counter()
                A, cost, lo, hi = matrices_direct(cm)
            t3 = time.perf_counter()
            h = load_highs(A, cost, lo, hi, cm.n_int, mip_rel_gap, time_limit_s, cm.col_upper)
            del A, cost, lo, hi
            # keep the columns only: the matrices now live in HiGHS
            self.groups.append((jobs, cls, CapacityModel(cm.cand_job, cm.cand_start, cm.run_job,
                                                         cm.run_slot, cm.cost_kg[:0], []), h))
            self.coupled[jobs] = True
            classes += len(cls.rep)
            t_build += t2 - t1
            t_compile += t3 - t2
        self.time_limit_s, self.mip_rel_gap = time_limit_s, mip_rel_gap
        self.info = {"build_s": t_build, "compile_s": t_compile,
                     "setup_s": time.perf_counter() - t0, "groups": len(self.groups),
                     "pyomo_groups": pyomo_groups,
                     "largest_group_jobs": max((len(g[0]) for g in self.groups), default=0),
                     "coupled_jobs": int(self.coupled.sum()), "job_classes": classes,
                     "capacity_rows": int(binding.sum())}

    def solve(self, decision: np.ndarray, start_runs=None):
        """Runs on ``decision``: (job, slot, hours, info).

        ``start_runs``: a feasible per-job schedule (``greedy_runs`` output) handed to
        HiGHS as a first incumbent. Raises :class:`JobsError` (infeasible, with the jobs
        and window that cannot fit) or :class:`SolverStopped` (time limit with no
        feasible schedule, or another HiGHS stop). A group stopped by the time limit
        with an incumbent keeps it: ``info["time_limit_reached"]`` and ``mip_gap``
        (unless its gap is already within ``mip_rel_gap``: then it is optimal).
        """
        prob = self.prob
        parts = [independent_runs(prob, decision, ~self.coupled)]
        info = dict(self.info, highs_s=0.0, variables=0, rows=0, integer_variables=0)
        statuses, gaps = set(), []
        obj = bound = 0.0
        timed_out = 0
        for jobs, cls, cm, h in self.groups:
            costs = column_costs(prob, cm, decision)
            start = None if start_runs is None else _start_point(prob, cls, cm, start_runs)
            x, status, st = run_loaded(h, cm.n_int, costs, start)
            if st["infeasible"]:
                raise JobsError(diagnose_infeasible(prob, jobs, self.cap))
            if x is None:
                ids = prob.jobs["job_id"]
                what = (f"{len(jobs)} job(s), job_id {ids.iat[jobs[0]]!r} .. "
                        f"{ids.iat[jobs[-1]]!r}")
                if st["time_limit"]:
                    raise SolverStopped(
                        f"time limit: HiGHS found no feasible schedule within the time limit "
                        f"of {self.time_limit_s:g} s for {what}; it did not show that none "
                        "exists: give a larger --time-limit-s", time_limit=True)
                raise SolverStopped(f"HiGHS stopped ({status}) without a feasible schedule "
                                    f"for {what}", time_limit=False)
            # a time-out whose incumbent already meets the gap tolerance is optimal by
            # HiGHS's own criterion (it stopped before checking)
            timed_out += bool(st["time_limit"]) and not (st.get("mip_gap", np.inf) <=
                                                          self.mip_rel_gap)
            obj += st["objective_kg"]
            bound += st["bound_kg"]
            parts.append(disaggregate(prob, cls, cm, x))
            for k in ("highs_s", "variables", "rows", "integer_variables"):
                info[k] += st[k]
            statuses.add(status)
            if "mip_gap" in st:
                gaps.append(st["mip_gap"])
        job, slot, hours = (np.concatenate(x) for x in zip(*parts))
        info["highs_status"] = "/".join(sorted(statuses))
        if gaps:
            info["mip_gap"] = float(max(gaps))
        info["time_limit_reached"] = bool(timed_out)
        if timed_out:
            # gap of the coupled jobs' kgCO2 (decision intensity), all groups together
            gap = (obj - bound) / max(abs(obj), 1e-12)
            info["time_limit_groups"] = timed_out
            info["mip_gap"] = float(gap) if np.isfinite(gap) else None
        info["method"] = "milp" if info["integer_variables"] else "lp"
        return job, slot, hours, info


def solve_capacity(prob: ShiftProblem, decision: np.ndarray, cap: np.ndarray,
                   mip_rel_gap: float = 1e-4, time_limit_s: float | None = None,
                   aggregate: bool = True):
    """Optimal runs under a per-slot capacity [kW]: (job, slot, hours, info).

    Jobs touching no binding slot keep their independent optimum; the rest are solved
    per independent group (:func:`components`), identical jobs merged into classes
    (``aggregate``), each a MILP/LP with HiGHS (``time_limit_s`` applies per group).
    """
    return CapacitySolver(prob, cap, mip_rel_gap, time_limit_s, aggregate).solve(decision)
