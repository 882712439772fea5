"""Working-set LP (sifting) for large sites: the monolithic LP restricted to the columns a
coarse-step plan says matter, widened until a zone-pricing bound certifies the plan.

Why: HiGHS's time on the planning LP grows super-linearly with the pool count, yet in an
optimal plan nearly every pool sits at a bound in nearly every step (at its redundancy
floor or all servers on, nothing switched on, one of its two classes not served): on the
200-pool benchmark site 99 % of active-server columns, 99 % of switch-on columns and about
half of the work columns. Fixed at those values the LP shrinks to the columns that really
trade off, and HiGHS solves it 16 times faster (measured with the optimal pattern; see
docs/optimizer.md, Speed).

Method (sifting / working-set LP, as in Bixby et al. 1992, "Very large-scale linear
programming: a case study in combining interior point and simplex methods", with the
pricing done block-wise as in Dantzig-Wolfe):

1. **Guess**: the same LP at a coarser step (``factor`` x the planning step, inputs
   averaged, interactive demand at its peak so the guess has the servers each fine step
   needs) is solved; where its plan has a pool at its floor or at all servers, or a
   (pool, class) pair serving nothing, the fine steps it covers fix that column at that
   bound. Switch-on columns are fixed at 0 where the fixed active servers do not rise.
   Every other column (setpoints, fans, chilled water, backlog, offload, facility power,
   pool IT power, and the pool columns the guess left between bounds) stays free.
2. **Restricted LP**: the full LP with those columns fixed (HiGHS's presolve removes them
   and the rows they empty). If the guess makes it infeasible, artificial columns on the
   rows a wrong guess can leave short (demand, batch balance, inlet limits, cooling floor,
   power cap) find those rows, their pool-steps are freed, and it is solved again without
   artificials (left on, their big-M duals price tens of thousands of columns back in).
   Its optimum is a feasible plan of the full LP: an upper bound.
3. **Bound**: each zone (its setpoint, fans and pools, and the rows only they meet) is
   priced at the restricted LP's duals of the linking rows (class demand, batch balance,
   facility power, cooling floor, chilled water vs supply air, power cap), by
   :class:`~.decompose.ZoneDecomposition`'s persistent zone models: the Lagrangian lower
   bound on the full LP's optimum.
4. Fixed columns whose reduced cost at those duals beats ``PRICE_TOL`` are freed and the
   restricted LP is solved again (cold with presolve; warm from its basis for a few).
5. **Stop** when (upper - lower) / upper <= ``gap`` (default 0.05 %: the plan is provably
   within that share of the monolithic optimum, status "optimal"), when nothing prices out
   (exact), or when the plan's shrinking gains per round project less than ``STALL`` of it
   still to gain (status "stalled": a heuristic, the certified gap reported as it is).

If the restricted LP fails or runs out of time, the caller solves the monolithic LP.
Measured in docs/optimizer.md (Speed, Large sites): 0.385 x the direct-highspy time on the
1000-pool site, 0.012 % above the optimum, the bound certifying 0.19 %.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .build import build_lp
from .data import prepare
from .decompose import ZoneDecomposition, _highs, zone_blocks
from .results import plan_from_solution
from .highs import pass_lp, run_highs

__all__ = ["SiftResult", "coarse_inputs", "coarse_pattern", "sift", "solve_sifting", "solve_planner", "use_sifting"]

# Rows a wrong guess can make infeasible (every other row keeps a free column that can absorb
# the fixed ones: pool IT power, fans, facility power, switch-ons where active servers rise).
ELASTIC_FAMILIES = ("interactive_demand", "batch_balance", "inlet_limit", "cooling_floor", "model_envelope",
                    "site_power_cap")

# The guess: the LP at 4x the planning step (1 h at 15 min).
COARSE_FACTOR = 4

# A fixed column is freed when its reduced cost beats this (kgCO2 per unit of the column;
# the LP's costs are 0.01-0.1 kg per kW-step): on the 200-pool site 1e-3 took 7.1 s to a
# certified 0.04 % against 10.6-12.2 s with 1e-7 or 1e-4, which free thousands of columns
# that only degenerate duals price out. Once nothing beats it, HiGHS's 1e-7 is used.
PRICE_TOL = 1e-3

MAX_REPAIRS = 3  # infeasible guesses repaired by freeing the short rows' pool-steps, then artificials stay on

# Stop when the plan's shrinking gains per round project less than this share of it still to
# gain (:func:`_stalled`): on sites past ~500 pools the zone-pricing bound lags the plan (30
# zones / 500 pools: the plan 0.011 % above the optimum after 4 rounds, the bound still 0.12 %
# below it), so waiting for the certificate costs more than the monolithic solve.
STALL = 1e-4

# Freed columns per round above which the next restricted solve starts cold (with presolve)
# rather than from the last basis (HiGHS skips presolve when it starts from a basis).
WARM_MAX_FREED = 50

_BOUND_TOL = 1e-6  # a coarse value this close (relative to the pool size) to a bound is at it


def use_sifting(problem) -> bool:
    """Whether ``PlanOptions.decompose`` asks for the working-set LP (never for integer servers)."""
    d = problem.data
    return d.options.decompose == "sifting" and not d.options.integer_servers and len(d.zones) >= 2


@dataclass
class SiftResult:
    """The restricted solve: a full solution in the families' order and its certificate."""

    x: np.ndarray
    objective: float  # the plan's objective (upper bound), kgCO2 with the LP's offset
    lower_bound: float
    gap: float  # (objective - lower_bound) / |objective|
    status: str  # "optimal" (within the gap), "time_limit", "failed"
    rounds: int
    fixed_columns: int  # columns still fixed at the end
    row_dual: np.ndarray
    col_dual: np.ndarray
    timings: dict = field(default_factory=dict)
    history: list = field(default_factory=list)  # (round, seconds, upper, lower, freed, artificial)


# -- the guess: a coarse-step LP ----------------------------------------------------------

def _resample(obj, rule: str):
    if isinstance(obj, pd.Series) and obj.dtype == bool:
        return obj.resample(rule).min().astype(bool)  # in the envelope only if every fine step is
    if isinstance(obj, (pd.Series, pd.DataFrame)):
        return obj.resample(rule).mean()
    return obj


def coarse_inputs(site, coefficients, forecast: pd.DataFrame, factor: int):
    """Forecast and coefficients at ``factor`` x the step: means over the fine steps, except
    interactive demand at its peak (a guess sized for the mean leaves fine steps short of
    servers) and the model envelope (inside only if every fine step is)."""
    step = forecast.index[1] - forecast.index[0]
    rule = pd.Timedelta(step * factor)
    origin = forecast.index[0]
    fc = forecast.resample(rule, origin=origin).mean()
    for c in site.workload_classes:
        col = f"{c.name}_units_per_h"
        if c.kind != "batch" and col in forecast.columns:
            fc[col] = forecast[col].resample(rule, origin=origin).max()
    kw = {}
    for f in dataclasses.fields(coefficients):
        v = getattr(coefficients, f.name)
        if f.name == "cooling_pieces":
            v = tuple(dataclasses.replace(p, **{g.name: _resample(getattr(p, g.name), rule) for g in dataclasses.fields(p)})
                      for p in v)
        elif isinstance(v, (pd.Series, pd.DataFrame)):
            v = v.resample(rule, origin=origin).min().astype(bool) if (isinstance(v, pd.Series) and v.dtype == bool) \
                else v.resample(rule, origin=origin).mean()
        kw[f.name] = v
    return fc, type(coefficients)(**kw)


def coarse_pattern(problem, coarse, xc: np.ndarray, factor: int):
    """(lb, ub) of the restricted LP: the fine columns fixed where the coarse plan ``xc`` (of
    the ``coarse`` PlanningLP) sits at a bound over the fine steps it covers."""
    lp, v, d = problem.lp, problem.vars, problem.data
    vc, dc = coarse.vars, coarse.data
    _, clb, cub, *_ = lp.arrays()
    lb, ub = clb.copy(), cub.copy()
    hmap = np.minimum(np.arange(d.n) // factor, dc.n - 1)
    tol = _BOUND_TOL * np.maximum(1.0, dc.servers)
    nact = xc[vc.nact]
    status = np.where(np.abs(nact - dc.min_active) <= tol, 0, np.where(np.abs(nact - dc.servers) <= tol, 2, 1))[hmap]
    fixed_n = status != 1
    val_n = np.where(status == 0, d.min_active, d.servers)
    ids = v.nact[fixed_n]
    lb[ids] = ub[ids] = val_n[fixed_n]
    wc = np.where(vc.work >= 0, xc[np.maximum(vc.work, 0)], 0.0)[hmap]
    zero = (wc <= 1e-7) & (v.work >= 0)
    ids = v.work[zero]
    lb[ids] = ub[ids] = 0.0
    # switch-ons: 0 where the fixed active servers do not rise from the step before
    prev_val = np.vstack([d.n0[None, :], np.where(fixed_n, val_n, np.inf)[:-1]])
    prev_fixed = np.vstack([np.ones((1, len(d.pools)), bool), fixed_n[:-1]])
    up0 = fixed_n & prev_fixed & (val_n <= prev_val + 1e-9)
    ids = v.up[up0]
    lb[ids] = ub[ids] = 0.0
    return lb, ub


def _stalled(gains: list, small: float) -> bool:
    """Whether the plan's improvements per round (``gains``, kg) project less than ``small``
    still to gain: the last two shrink geometrically (ratio q, capped at 0.9), so what is left
    is about last * q / (1 - q). Two rounds in a row without gain (degenerate rounds) also
    count as stalled; one does not."""
    if len(gains) >= 2 and gains[-1] <= 0 and gains[-2] <= 0:
        return True
    if len(gains) < 2 or gains[-1] <= 0 or gains[-2] <= 0:
        return False
    q = min(gains[-1] / gains[-2], 0.9)
    return gains[-1] * q / (1.0 - q) < small


def _pool_steps(problem, cols: np.ndarray) -> np.ndarray:
    """Columns of the (step, pool) pairs that ``cols`` touch: active servers, switch-ons at
    that step and the next, and work of every class (freeing one alone rarely helps: servers
    cannot rise without a switch-on, nor serve without active servers)."""
    v = problem.vars
    n, P = v.nact.shape
    hit = np.zeros((n, P), bool)
    for ids in (v.nact, v.up):
        m = np.isin(ids, cols)
        hit |= m
    w = np.isin(v.work, cols) & (v.work >= 0)
    hit |= w.any(axis=2)
    nxt = np.vstack([np.zeros((1, P), bool), hit[:-1]])
    out = [v.nact[hit], v.up[hit | nxt], v.work[hit][v.work[hit] >= 0]]
    return np.concatenate(out)


def _elastic(lp, rlb: np.ndarray, rub: np.ndarray) -> sp.csc_matrix:
    """Artificial columns (+1 on rows with a finite lower bound, -1 on rows with a finite
    upper bound) for the rows of ``ELASTIC_FAMILIES``."""
    rows = [np.arange(f.start, f.stop) for name, f in lp.cons.items() if name in ELASTIC_FAMILIES]
    rows = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    pos, neg = rows[np.isfinite(rlb[rows])], rows[np.isfinite(rub[rows])]
    r = np.concatenate([pos, neg])
    vals = np.concatenate([np.ones(pos.size), -np.ones(neg.size)])
    return sp.csc_matrix((vals, (r, np.arange(r.size))), shape=(lp.n_rows, r.size))


# -- the loop ------------------------------------------------------------------------------

def sift(problem, lb: np.ndarray, ub: np.ndarray, gap: float = 5e-4, time_limit_s: float = 600.0,
         workers: int = 2, max_rounds: int = 30, tol: float = PRICE_TOL, stall: float = STALL,
         rule: str = "rc", log=None) -> SiftResult:
    """Solve ``problem``'s LP by a working set: columns with ``lb == ub`` (where the LP's own
    bounds differ) start fixed; see the module docstring for the rounds, the certificate and
    the stopping rules.

    ``tol``: reduced cost a fixed column must beat to be freed (HiGHS's 1e-7 once nothing
    beats it); ``rule``: free by reduced cost ("rc"), by the zones' priced plans moving off
    the fixed value ("zone"), or either ("or"); ``stall``: stop when a round improves the
    plan by less than this share (status "stalled", the certified gap reported as it is).
    """
    import highspy


    if rule not in ("rc", "zone", "or"):
        raise ValueError(f"sift: rule {rule!r}; choose 'rc', 'zone' or 'or'")
    t0 = time.perf_counter()
    deadline = t0 + time_limit_s
    lp = problem.lp
    cost, clb, cub, rlb, rub, a, _ = lp.arrays()
    n = lp.n_cols
    lb, ub = lb.copy(), ub.copy()
    fixed = (lb == ub) & (clb != cub)
    at_lower = fixed & (lb == clb)
    at_upper = fixed & (ub == cub) & ~at_lower
    art = _elastic(lp, rlb, rub)
    na = art.shape[1]
    big_m = 1e4 * max(float(np.abs(cost).max()), 1e-6)  # far above any cost per unit of a row
    h = _highs()
    # artificials start switched off (upper bound 0): a basic artificial at zero prices its row
    # at big M and spoils the bound; they are switched on only while the restricted LP is
    # infeasible, and off again once a round no longer uses them
    pass_lp(h, np.concatenate([cost, np.full(na, big_m)]), np.concatenate([lb, np.zeros(na)]),
            np.concatenate([ub, np.zeros(na)]), rlb, rub, sp.hstack([a, art], format="csc"), what="the sifting LP")
    art_ids = np.arange(n, n + na, dtype=np.int32)
    art_on = switched = False
    art_rows = art.tocoo().row[np.argsort(art.tocoo().col)]  # the row of each artificial
    a_csr = a.tocsr()
    repairs = 0
    blocks, price_ub = zone_blocks(problem)
    zdw = None
    a_t = a.T.tocsr()
    t_solve = t_price = 0.0
    best_lb, ub_val, prev_ub = -np.inf, np.inf, np.inf
    history = []
    gains = []  # the plan's improvement per round (kgCO2)
    status, x, y, rc = "failed", None, None, None
    freed = 0
    rounds = 0
    for rounds in range(1, max_rounds + 1):
        left = deadline - time.perf_counter()
        if left <= 0:
            status = "time_limit"
            break
        h.setOptionValue("time_limit", left)
        ts = time.perf_counter()
        if rounds > 1 and freed <= WARM_MAX_FREED and not switched:
            h.setOptionValue("solver", "simplex")
            h.setOptionValue("simplex_strategy", 4)  # primal: the old basis stays primal feasible
        else:
            if rounds > 1:
                h.clearSolver()
            h.setOptionValue("solver", "choose")
            h.setOptionValue("simplex_strategy", 1)
        run_highs(h)
        t_solve += time.perf_counter() - ts
        switched = False
        ms = h.getModelStatus()
        infeasible = ms in (highspy.HighsModelStatus.kInfeasible, highspy.HighsModelStatus.kUnboundedOrInfeasible)
        if infeasible and not art_on and na and repairs >= MAX_REPAIRS:
            art_on = switched = True  # still infeasible: artificials carry it until priced out
            h.changeColsBounds(na, art_ids, np.zeros(na), np.full(na, np.inf))
            continue
        if infeasible and not art_on and na:
            # a wrong guess: find the rows it leaves short (artificials on), free the fixed
            # columns of those rows with their pool-steps, and solve again without artificials
            repairs += 1
            h.changeColsBounds(na, art_ids, np.zeros(na), np.full(na, np.inf))
            h.clearSolver()
            run_highs(h)
            t_solve += time.perf_counter() - ts
            if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
                status = "failed"
                break
            short = art_rows[np.asarray(h.getSolution().col_value)[n:] > 1e-7]
            h.changeColsBounds(na, art_ids, np.zeros(na), np.zeros(na))
            switched = True
            cols = np.unique(a_csr[short].indices)
            idx = np.flatnonzero(np.isin(np.arange(n), _pool_steps(problem, cols)) & (at_lower | at_upper))
            history.append((rounds, time.perf_counter() - t0, np.inf, -np.inf, int(idx.size), float(short.size)))
            if log is not None:
                log(rounds, time.perf_counter() - t0, np.inf, best_lb, int(idx.size), float(short.size))
            lb[idx], ub[idx] = clb[idx], cub[idx]
            at_lower[idx] = at_upper[idx] = False
            h.changeColsBounds(idx.size, idx.astype(np.int32), clb[idx], cub[idx])
            continue
        if ms != highspy.HighsModelStatus.kOptimal:
            status = "time_limit" if ms == highspy.HighsModelStatus.kTimeLimit else "failed"
            break
        sol = h.getSolution()
        xs = np.asarray(sol.col_value)
        y = np.asarray(sol.row_dual)
        artificial = float(xs[n:].sum())
        x = np.clip(xs[:n], lb, ub)
        rc = cost - a_t @ y
        lower, priced = -np.inf, None
        if artificial <= 1e-7:
            prev_ub, ub_val = ub_val, float(cost @ x) + lp.offset
            tp = time.perf_counter()
            if zdw is None:
                zdw = ZoneDecomposition((cost, clb, cub, rlb, rub, a, None), blocks, price_ub, workers=workers)
            y_link = y[zdw.link]
            try:
                priced = zdw._price_all(zdw._pool(), y_link, deadline)
            except Exception:  # noqa: BLE001 - a zone that fails to price gives no bound this round
                priced = None
            t_price += time.perf_counter() - tp
            if priced is not None:
                lower = zdw._lagrangian(y_link, [r[0] for r in priced]) + lp.offset
                best_lb = max(best_lb, lower)
        g = (ub_val - best_lb) / max(abs(ub_val), 1e-9) if np.isfinite(ub_val) and np.isfinite(best_lb) else np.inf
        viol = (at_lower & (rc < -tol)) | (at_upper & (rc > tol))
        if not viol.any() and tol > 1e-7:  # nothing beats the threshold: price at HiGHS's tolerance
            tol = 1e-7
            viol = (at_lower & (rc < -tol)) | (at_upper & (rc > tol))
        if rule != "rc" and priced is not None:
            xp = lb.copy()
            for z, r in zip(zdw.zones, priced):
                xp[z.cols] = r[1]
            dev = (at_lower | at_upper) & (np.abs(xp - lb) > 1e-6 * (1.0 + np.abs(lb)))
            viol = dev if rule == "zone" else viol | dev
        freed = int(viol.sum())
        history.append((rounds, time.perf_counter() - t0, ub_val if artificial <= 1e-7 else np.inf, lower, freed, artificial))
        if log is not None:
            log(rounds, time.perf_counter() - t0, ub_val, best_lb, freed, artificial)
        if g <= gap:
            status = "optimal"
            break
        if not freed and artificial <= 1e-7:  # nothing prices out: the restricted optimum is the full one
            status, best_lb = "optimal", ub_val
            break
        if artificial <= 1e-7 and np.isfinite(prev_ub):
            gains.append(prev_ub - ub_val)
            if _stalled(gains, stall * abs(ub_val)):
                status = "stalled"
                break
        if art_on and artificial <= 1e-7:
            art_on = switched = True  # feasible again: switch them off (a cold re-solve)
            h.changeColsBounds(na, art_ids, np.zeros(na), np.zeros(na))
        idx = np.flatnonzero(viol)
        lb[idx], ub[idx] = clb[idx], cub[idx]
        at_lower[idx] = at_upper[idx] = False
        h.changeColsBounds(idx.size, idx.astype(np.int32), clb[idx], cub[idx])
    else:
        status = "iteration_limit"
    if zdw is not None:
        zdw.close()
    g = (ub_val - best_lb) / max(abs(ub_val), 1e-9) if np.isfinite(ub_val) and np.isfinite(best_lb) else np.inf
    return SiftResult(
        x=x if x is not None else np.zeros(n), objective=ub_val, lower_bound=best_lb, gap=g, status=status,
        rounds=rounds, fixed_columns=int((at_lower | at_upper).sum()),
        row_dual=y if y is not None else np.zeros(lp.n_rows), col_dual=rc if rc is not None else np.zeros(n),
        timings={"restricted_s": t_solve, "price_s": t_price, "sift_s": time.perf_counter() - t0},
        history=history,
    )


def solve_sifting(problem, site, coefficients, forecast, initial_state, factor: int = COARSE_FACTOR,
                  gap: float | None = None, time_limit_s: float | None = None, log=None, **kw) -> SiftResult:
    """The coarse guess, then :func:`sift` (see the module docstring)."""

    o = problem.data.options
    t0 = time.perf_counter()
    limit = o.time_limit_s if time_limit_s is None else time_limit_s
    import highspy

    h = coarse = None
    if len(forecast) >= 2 * factor:  # a horizon of a few steps has nothing to coarsen
        fc, co = coarse_inputs(site, coefficients, forecast, factor)
        coarse = build_lp(prepare(site, co, fc, initial_state, o))
        h = coarse.lp.to_highs()
        h.setOptionValue("time_limit", float(limit))
        run_highs(h)
    if h is None or h.getModelStatus() != highspy.HighsModelStatus.kOptimal:  # no guess: every column free
        _, clb, cub, *_ = problem.lp.arrays()
        lb, ub = clb.copy(), cub.copy()
    else:
        lb, ub = coarse_pattern(problem, coarse, np.asarray(h.getSolution().col_value), factor)
    coarse_s = time.perf_counter() - t0
    res = sift(problem, lb, ub, gap=o.decompose_gap if gap is None else gap,
               time_limit_s=limit - coarse_s, workers=o.decompose_workers, log=log, **kw)
    res.timings.update(coarse_s=coarse_s, coarse_columns=coarse.lp.n_cols if coarse is not None else 0,
                       total_s=time.perf_counter() - t0)
    return res


ACCEPTED = ("optimal", "stalled", "iteration_limit")


def solve_planner(planner):
    """A :class:`~.solve.Planner`'s plan by the working-set LP, or None when the restricted LP
    failed or ran out of time (the caller then solves the monolithic LP).

    The plan is a feasible point of the whole LP. Its status is "optimal" when the zone-pricing
    bound certifies it within ``PlanOptions.decompose_gap``, else "feasible" (the working set
    stopped improving); ``plan.timings["sift_gap"]`` is the certified gap either way. Shadow
    prices come from the restricted LP's duals; deadline values (warm re-solves of the
    monolithic model) are not computed."""

    p = planner.problem
    res = solve_sifting(p, planner.site, planner.coefficients, planner.forecast, planner.initial_state)
    planner.decomposition = res
    if res.status not in ACCEPTED or not np.isfinite(res.objective):
        return None
    return plan_from_solution(planner, res, "optimal" if res.status == "optimal" else "feasible",
                              sift_rounds=res.rounds, sift_gap=res.gap, sift_lower_bound=res.lower_bound)
