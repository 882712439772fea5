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
"""

from __future__ import annotations

import gc
import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from coolshift.optimizer.shift import (
    _KG_PER_G,
    JobsError,
    ShiftProblem,
    _block_runs,
    block_costs,
    independent_runs,
)

_TOL_KW = 1e-9


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
    """Columns (block candidates, then interruptible job-slot pairs), their cost [kg],
    and the constraint families; pure numpy, so it can go to Pyomo or straight to HiGHS."""

    cand_job: np.ndarray
    cand_start: np.ndarray
    run_job: np.ndarray
    run_slot: np.ndarray
    cost_kg: np.ndarray
    families: list[Family]

    @property
    def n_int(self) -> int:
        return len(self.cand_job)

    @property
    def n_cols(self) -> int:
        return len(self.cand_job) + len(self.run_job)


def block_choice(cand_job: np.ndarray, jobs: np.ndarray, n_cols: int) -> Family:
    """Every contiguous job picks exactly one of its candidate blocks."""
    row = np.searchsorted(jobs, cand_job)
    A = sp.csr_array((np.ones(len(cand_job)), (row, np.arange(len(cand_job)))),
                     shape=(len(jobs), n_cols))
    ones = np.ones(len(jobs))
    return Family("block_choice", A, ones, ones)


def run_hours(prob: ShiftProblem, run_job: np.ndarray, jobs: np.ndarray, offset: int,
              n_cols: int) -> Family:
    """Every interruptible job runs its duration: sum of slot fractions = duration/slot."""
    row = np.searchsorted(jobs, run_job)
    A = sp.csr_array((np.ones(len(run_job)), (row, offset + np.arange(len(run_job)))),
                     shape=(len(jobs), n_cols))
    need = prob.duration_h[jobs] / prob.slot_h
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
                   rows_slot: np.ndarray) -> CapacityModel:
    """Columns, costs and constraint families of the coupled ``jobs``."""
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
        fams.append(block_choice(cand_job, block, n_cols))
    if len(split):
        fams.append(run_hours(prob, run_job, split, len(cand_job), n_cols))
    fams.append(capacity(prob, cap, rows_slot, cand_job, cand_start, run_job, run_slot))
    return CapacityModel(cand_job, cand_start, run_job, run_slot,
                         np.r_[cand_cost, run_cost], fams)


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
    """The Pyomo model: binary ``start``, fractional ``run``, one Constraint per family,
    objective kgCO2 on the decision intensity."""
    import pyomo.environ as pyo
    from pyomo.core.expr.numeric_expr import LinearExpression

    with _gc_paused():
        m = pyo.ConcreteModel(name="shift")
        m.start = pyo.Var(range(cm.n_int), domain=pyo.Binary)
        m.run = pyo.Var(range(cm.n_cols - cm.n_int), bounds=(0.0, 1.0))
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
               time_limit_s: float | None = None):
    """A ``highspy.Highs`` with the matrices passed in one call (not yet solved)."""
    import highspy

    lp = highspy.HighsLp()
    n = len(cost)
    lp.num_col_, lp.num_row_ = n, A.shape[0]
    lp.col_cost_ = np.asarray(cost, float)
    lp.col_lower_ = np.zeros(n)
    lp.col_upper_ = np.ones(n)
    lp.row_lower_, lp.row_upper_ = np.asarray(row_lo, float), np.asarray(row_hi, float)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = A.indptr
    lp.a_matrix_.index_ = A.indices
    lp.a_matrix_.value_ = A.data
    if n_int:
        lp.integrality_ = [highspy.HighsVarType.kInteger] * n_int + \
            [highspy.HighsVarType.kContinuous] * (n - n_int)
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("mip_rel_gap", float(mip_rel_gap))
    if time_limit_s is not None:
        h.setOptionValue("time_limit", float(time_limit_s))
    h.passModel(lp)
    return h


def run_loaded(h, n_int: int, cost: np.ndarray | None = None):
    """Solve a loaded model, after replacing its costs if given; (x, status, stats).

    New costs go in with ``changeColsCost`` and ``clearSolver`` drops the old basis, so
    HiGHS presolves afresh (shared notes: a kept basis skips presolve and was slower).
    """
    n = h.getNumCol()
    if cost is not None:
        h.changeColsCost(n, np.arange(n, dtype=np.int32), np.asarray(cost, float))
    h.clearSolver()
    t1 = time.perf_counter()
    h.run()
    t_solve = time.perf_counter() - t1
    status = h.modelStatusToString(h.getModelStatus())
    x = np.asarray(h.getSolution().col_value, float) if h.getInfo().primal_solution_status \
        else None
    stats = {"highs_s": t_solve, "variables": n, "rows": h.getNumRow(),
             "integer_variables": n_int, "highs_status": status}
    if n_int:
        stats["mip_gap"] = float(h.getInfo().mip_gap)
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


class CapacitySolver:
    """The capacity problem of ``prob`` built once (Pyomo, compiled, loaded into HiGHS per
    independent group); :meth:`solve` takes a decision intensity and changes only the
    costs, so several forecasts (noise seeds) reuse one build."""

    def __init__(self, prob: ShiftProblem, cap: np.ndarray, mip_rel_gap: float = 1e-4,
                 time_limit_s: float | None = None):
        t0 = time.perf_counter()
        self.prob, self.cap = prob, cap
        binding = binding_slots(prob, cap)
        self.groups = []
        self.coupled = np.zeros(prob.n_jobs, bool)
        t_build = t_compile = 0.0
        for jobs, rows_slot in components(prob, binding):
            t1 = time.perf_counter()
            cm = model_matrices(prob, prob.actual, cap, jobs, rows_slot)
            m = build_model(cm)
            t2 = time.perf_counter()
            A, cost, lo, hi = standard_form(m)
            t3 = time.perf_counter()
            self.groups.append((jobs, cm, load_highs(A, cost, lo, hi, cm.n_int, mip_rel_gap,
                                                     time_limit_s)))
            self.coupled[jobs] = True
            t_build += t2 - t1
            t_compile += t3 - t2
        self.info = {"build_s": t_build, "compile_s": t_compile,
                     "setup_s": time.perf_counter() - t0, "groups": len(self.groups),
                     "largest_group_jobs": max((len(g[0]) for g in self.groups), default=0),
                     "coupled_jobs": int(self.coupled.sum()),
                     "capacity_rows": int(binding.sum())}

    def solve(self, decision: np.ndarray):
        """Optimal runs on ``decision``: (job, slot, hours, info)."""
        prob = self.prob
        parts = [independent_runs(prob, decision, ~self.coupled)]
        info = dict(self.info, highs_s=0.0, variables=0, rows=0, integer_variables=0)
        statuses, gaps = set(), []
        for jobs, cm, h in self.groups:
            x, status, st = run_loaded(h, cm.n_int, column_costs(prob, cm, decision))
            if x is None:
                raise JobsError(
                    "capacity: no schedule fits every job under the capacity in its window "
                    f"(HiGHS: {status}; jobs {prob.jobs['job_id'].iat[jobs[0]]!r} .. "
                    f"{prob.jobs['job_id'].iat[jobs[-1]]!r})")
            nc = cm.n_int
            y, f = x[:nc], np.clip(x[nc:], 0.0, 1.0)
            cj, cs = cm.cand_job, cm.cand_start
            # the chosen block of each job: its largest start variable (1 at an integer optimum)
            order = np.lexsort((-y, cj))
            first = np.r_[True, cj[order][1:] != cj[order][:-1]] if nc else np.zeros(0, bool)
            pick = order[first]
            bj, bs, bh = _block_runs(prob, cj[pick], cs[pick])
            parts.append((np.r_[bj, cm.run_job], np.r_[bs, cm.run_slot],
                          np.r_[bh, f * prob.slot_h]))
            for k in ("highs_s", "variables", "rows", "integer_variables"):
                info[k] += st[k]
            statuses.add(status)
            if "mip_gap" in st:
                gaps.append(st["mip_gap"])
        job, slot, hours = (np.concatenate(x) for x in zip(*parts))
        info["highs_status"] = "/".join(sorted(statuses))
        if gaps:
            info["mip_gap"] = float(max(gaps))
        info["method"] = "milp" if info["integer_variables"] else "lp"
        return job, slot, hours, info


def solve_capacity(prob: ShiftProblem, decision: np.ndarray, cap: np.ndarray,
                   mip_rel_gap: float = 1e-4, time_limit_s: float | None = None):
    """Optimal runs under a per-slot capacity [kW]: (job, slot, hours, info).

    Jobs touching no binding slot keep their independent optimum; the rest are solved
    per independent group (:func:`components`), each a Pyomo MILP/LP with HiGHS
    (``time_limit_s`` applies per group).
    """
    return CapacitySolver(prob, cap, mip_rel_gap, time_limit_s).solve(decision)
