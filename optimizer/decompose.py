"""Dantzig-Wolfe decomposition of the planning LP by zone, for large sites.

Why: HiGHS's time on the monolithic LP grows super-linearly with the pool count (here
20 pools 0.2 s, 200 pools ~6 s, 1000 pools 65-355 s), while the LP is block-angular:
each zone's setpoints, fans and pools (active servers, boots, IT power, work served)
meet only their own rows (pool capacity, boot, IT power, inlet, fan, ramp, moves), and
the zones interact only through a few *linking* rows per step: each class's demand
and batch balance (any eligible pool in any zone may serve it), the facility power
row (and with it a site power cap), the cooling floor, and the chilled-water setpoint
(one per site) kept below every zone's supply setpoint.

Method (Dantzig & Wolfe 1960; column generation as in Desrosiers & Luebbecke,
"A primer in column generation", 2005): a *restricted master* LP holds the site-wide
columns (chilled water, backlog, offload, facility power ...), the linking rows, one
convexity row per zone and, per zone, convex weights over the zone plans generated so
far. Its duals price each zone's *sub-problem* (the zone's own rows, costs minus the
linking rows' duals), solved by its own persistent HiGHS model (only the costs change
between rounds, so primal simplex continues from the last basis). A zone plan with a
negative reduced cost becomes a new master column. Every round gives

- an upper bound: the master's objective, a feasible plan of the full LP (each zone's
  plan is a convex combination of points of its own polytope and the linking rows hold),
- a lower bound: the Lagrangian value at the duals priced (every zone at its optimum
  for those prices, the site-wide columns at their best bound),

and the loop stops when (upper - lower) / upper <= ``gap`` (default 0.05 %), so the plan
is *provably* within that share of the monolithic optimum. Until the zone plans can
meet every linking row, penalised artificial columns keep the master feasible (their
cost ``big_m`` is far above any price in the LP). Dual prices are smoothed between the
best-bound duals and the master's (Wentges 1997, alpha 0.5; a round that finds no
improving column falls back to the master's duals), which cuts the zig-zag of plain
column generation.

Zones are priced by a small thread pool: HiGHS releases the GIL while it runs.

Blocks: whole zones, or (zone, time-window) pairs (:func:`window_blocks`; the planner uses
8-step windows). Measured (benchmarks/bench_optimizer.py, docs/optimizer.md): exact and
certified; with whole-zone blocks the master stalls on degenerate vertices for hundreds of
rounds, with windows it converges (56 rounds on the 4-zone / 20-pool site) but each round
prices every block and re-solves a growing master, so it stays far slower than HiGHS on
the monolithic LP: ``PlanOptions.decompose`` is "off" by default.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .highs import new_highs, pass_lp, run_highs
from .results import plan_from_solution

__all__ = ["DWResult", "ZoneDecomposition", "zone_blocks", "window_blocks", "decompose_zones", "use_decomposition"]

# Windows of this many steps cut each zone's block in time (2 h at 15 min): measured to close
# the gap in 56 rounds on the 4-zone / 20-pool site where whole-horizon zone blocks stall.
WINDOW_STEPS = 8

_TOL = 1e-7  # HiGHS's default primal/dual feasibility tolerance: smaller duals count as 0


def use_decomposition(problem) -> bool:
    """Whether ``PlanOptions.decompose`` asks for the zone decomposition on this LP (never for
    integer servers: column generation here is for the LP)."""
    d = problem.data
    return d.options.decompose == "zones" and not d.options.integer_servers and len(d.zones) >= 2


def zone_blocks(problem) -> tuple[np.ndarray, np.ndarray]:
    """(block of each column: its zone, or -1 for site-wide columns; finite upper bounds
    for pricing, which no optimal plan exceeds).

    Pool IT power is at most every server at peak (the envelope's lines are below the
    curve, which ends at peak); fan power at most its slope times (inlet limit -
    threshold); a setpoint move at most the setpoint range. Without them a zone priced
    with early (poor) duals could be unbounded.
    """
    lp, v, d = problem.lp, problem.vars, problem.data
    _, _, cub, *_ = lp.arrays()
    blk = np.full(lp.n_cols, -1, np.int64)
    ub = cub.copy()
    n = d.n
    zone_of = np.broadcast_to(np.arange(len(d.zones)), (n, len(d.zones)))
    pool_zone = np.broadcast_to(d.pool_zone, (n, len(d.pools)))
    blk[v.sp.ravel()] = zone_of.ravel()
    blk[v.fan.ravel()] = zone_of.ravel()
    for ids in (v.nact, v.up, v.pit):
        blk[ids.ravel()] = pool_zone.ravel()
    w = v.work
    m = w >= 0
    blk[w[m]] = np.broadcast_to(d.pool_zone[None, :, None], w.shape)[m]
    pit_max = d.servers * np.maximum(d.peak_w, d.sleep_w) / 1000.0  # kW, all servers at peak
    ub[v.pit.ravel()] = np.minimum(ub[v.pit.ravel()], np.broadcast_to(1.01 * pit_max + 1.0, (n, len(d.pools))).ravel())
    fan_max = np.maximum(d.fan_k * (d.inlet_max[None, :] - d.fan_thr), 0.0)  # kW
    ub[v.fan.ravel()] = np.minimum(ub[v.fan.ravel()], (1.01 * fan_max + 1.0).ravel())
    if v.dsp is not None:
        blk[v.dsp.ravel()] = zone_of.ravel()
        rng = np.broadcast_to(d.sp_max - d.sp_min, (n, len(d.zones)))
        ub[v.dsp.ravel()] = np.minimum(ub[v.dsp.ravel()], (rng + 1.0).ravel())
    return blk, ub


@dataclass
class DWResult:
    """The decomposed solve: a full solution in the families' order and its certificate."""

    x: np.ndarray
    objective: float  # the plan's objective (upper bound)
    lower_bound: float
    gap: float  # (objective - lower_bound) / |objective|
    status: str  # "optimal" (within the gap), "time_limit", "iteration_limit", "infeasible"
    iterations: int
    columns: int  # zone plans generated
    row_dual: np.ndarray
    col_dual: np.ndarray
    timings: dict = field(default_factory=dict)
    history: list = field(default_factory=list)  # (round, seconds, upper, lower)


def _highs(threads: int | None = None):
    """A quiet HiGHS model for a master, sub-problem or restricted LP.

    ``threads`` stays at HiGHS's default (0) unless given. HiGHS keeps one task scheduler per
    calling thread, sized by the first ``run()`` in that thread, and a later ``run()`` whose
    ``threads`` option is positive and different fails (``HighsStatus.kError``, model status
    "Not Set"); 0 uses the scheduler the thread already has. This used to set 1, which failed
    whenever a model with the default had run first in the same thread (the monolithic
    planner does) and the default was not 1: on a 2-core machine highspy 1.15.1 sizes the
    default at 1 thread and 1.16.0 at 2, hence "status error" only under 1.16
    (docs/optimizer.md, HiGHS versions).
    """
    import highspy

    h = new_highs()
    h.setOptionValue("output_flag", False)
    if threads is not None:
        h.setOptionValue("threads", int(threads))
    return h


class _Zone:
    """One block's pricing problem, kept loaded in its own HiGHS model."""

    def __init__(self, b, cols, rows, a_csr, link_csc_cols, cost, lb, ub, rlb, rub):
        self.b = b
        self.cols = cols
        self.rows = rows
        self.cost = cost[cols]
        self.L = link_csc_cols  # linking rows x this block's columns (CSC)
        sub = a_csr[rows][:, cols].tocsc()
        self.sub, self.lb, self.ub, self.rlb, self.rub = sub, lb[cols], ub[cols], rlb[rows], rub[rows]
        self.h = _highs()
        pass_lp(self.h, self.cost, self.lb, self.ub, self.rlb, self.rub, sub, what="a decomposition sub-problem")
        self.warm = False
        self.points: list[np.ndarray] = []  # zone plans generated (columns of the master)

    def price(self, y_link: np.ndarray, time_limit: float):
        """Solve min (c - L' y) x over the zone's polytope; (value, x, row duals, col duals)."""
        import highspy

        h = self.h
        c = self.cost - self.L.T @ y_link
        h.changeColsCost(c.size, np.arange(c.size, dtype=np.int32), c)
        h.setOptionValue("time_limit", max(time_limit, 1e-3))
        if self.warm:
            h.setOptionValue("solver", "simplex")
            h.setOptionValue("simplex_strategy", 4)  # primal: the old basis stays primal feasible
        run_highs(h)
        st = h.getModelStatus()
        if st != highspy.HighsModelStatus.kOptimal:
            if self.warm:  # retry cold once (a warm basis can stall on a degenerate LP)
                h.clearSolver()
                h.setOptionValue("solver", "choose")
                h.setOptionValue("simplex_strategy", 1)
                run_highs(h)
                st = h.getModelStatus()
            if st != highspy.HighsModelStatus.kOptimal:
                raise _SubproblemError(self.b, h.modelStatusToString(st))
        self.warm = True
        sol = h.getSolution()
        x = np.asarray(sol.col_value)
        return float(c @ x), x, np.asarray(sol.row_dual), np.asarray(sol.col_dual)


    def seed(self, y_link: np.ndarray, extra: sp.csr_matrix, elb: np.ndarray, eub: np.ndarray):
        """A zone plan priced at ``y_link`` with extra rows (e.g. a share of the demand); None if infeasible."""
        import highspy

        h = _highs()
        c = self.cost - self.L.T @ y_link
        a = sp.vstack([self.sub, extra], format="csc")
        pass_lp(h, c, self.lb, self.ub, np.concatenate([self.rlb, elb]), np.concatenate([self.rub, eub]), a,
                what="a decomposition sub-problem")
        run_highs(h)
        if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            return None
        return np.asarray(h.getSolution().col_value)


class _SubproblemError(RuntimeError):
    def __init__(self, b, status):
        super().__init__(f"zone sub-problem {b}: HiGHS status {status}")
        self.status = status


class ZoneDecomposition:
    """Dantzig-Wolfe over column blocks of one LP (arrays as ``LinearProgram.arrays()``)."""

    def __init__(self, arrays, blocks: np.ndarray, price_ub: np.ndarray | None = None, workers: int = 2,
                 big_m: float | None = None) -> None:
        t0 = time.perf_counter()
        cost, clb, cub, rlb, rub, a, _ = arrays
        self.cost, self.clb, self.cub, self.rlb, self.rub = cost, clb, cub, rlb, rub
        n_rows, n_cols = a.shape
        self.n_rows, self.n_cols = n_rows, n_cols
        blocks = np.asarray(blocks, np.int64)
        self.blocks = blocks
        # rows whose columns all lie in one block belong to it; every other row links
        coo = a.tocoo()
        rb = blocks[coo.col]
        rmin = np.full(n_rows, np.iinfo(np.int64).max)
        rmax = np.full(n_rows, -2)
        np.minimum.at(rmin, coo.row, rb)
        np.maximum.at(rmax, coo.row, rb)
        row_block = np.where((rmin == rmax) & (rmin >= 0), rmin, -1)
        self.link = np.flatnonzero(row_block < 0)
        self.master_cols = np.flatnonzero(blocks < 0)
        a_csr = a.tocsr()
        a_link = a_csr[self.link].tocsc()
        self.a_link = a_link
        ub = cub if price_ub is None else np.minimum(cub, price_ub)
        self.zones = []
        for b in np.unique(blocks[blocks >= 0]):
            cols = np.flatnonzero(blocks == b)
            rows = np.flatnonzero(row_block == b)
            self.zones.append(_Zone(int(b), cols, rows, a_csr, a_link[:, cols], cost, clb, ub, rlb, rub))
        # big M: far above any cost per unit of a linking row's activity
        scale = max(float(np.abs(cost).max()), 1e-6)
        self.big_m = big_m if big_m is not None else 1e4 * scale
        self.workers = max(1, int(workers))
        self.setup_s = time.perf_counter() - t0

    # -- restricted master ----------------------------------------------------------
    def _master(self):
        """Linking rows + one convexity row per zone; site-wide columns and artificials."""
        nl, nb = self.link.size, len(self.zones)
        am = self.a_link[:, self.master_cols]
        eye = sp.identity(nl, format="csc")
        a = sp.hstack([am, eye, -eye], format="csc")
        a = sp.vstack([a, sp.csc_matrix((nb, a.shape[1]))], format="csc")
        cost = np.concatenate([self.cost[self.master_cols], np.full(2 * nl, self.big_m)])
        lb = np.concatenate([self.clb[self.master_cols], np.zeros(2 * nl)])
        ub = np.concatenate([self.cub[self.master_cols], np.full(2 * nl, np.inf)])
        rlb = np.concatenate([self.rlb[self.link], np.ones(nb)])
        rub = np.concatenate([self.rub[self.link], np.ones(nb)])
        h = _highs()
        pass_lp(h, cost, lb, ub, rlb, rub, a, what="the decomposition master")
        self.n_art = 2 * nl
        self.art = np.arange(self.master_cols.size, self.master_cols.size + 2 * nl)
        return h

    def _add_columns(self, h, new: list) -> None:
        """Add zone plans (zone index, x) as master columns: cost c x, linking activity L x, convexity 1."""
        nl = self.link.size
        starts, idx, vals, costs = [], [], [], []
        pos = 0
        for zi, x in new:
            z = self.zones[zi]
            act = z.L @ x
            nz = np.flatnonzero(np.abs(act) > 1e-12)
            starts.append(pos)
            idx.append(nz)
            vals.append(act[nz])
            idx.append(np.array([nl + zi]))
            vals.append(np.array([1.0]))
            pos += nz.size + 1
            costs.append(float(z.cost @ x))
            z.points.append(x)
            self.owner.append((zi, len(z.points) - 1))
        k = len(new)
        h.addCols(k, np.array(costs), np.zeros(k), np.full(k, np.inf), pos, np.array(starts, np.int32),
                  np.concatenate(idx).astype(np.int32), np.concatenate(vals))

    def _lagrangian(self, y: np.ndarray, values: list[float]) -> float:
        """Lower bound at linking duals ``y`` given each zone's optimal priced value."""
        rl, ru = self.rlb[self.link], self.rub[self.link]
        yy = np.where(np.abs(y) < _TOL, 0.0, y)
        if ((yy > 0) & ~np.isfinite(rl)).any() or ((yy < 0) & ~np.isfinite(ru)).any():
            return -np.inf
        lb = float(np.where(yy > 0, yy * np.where(np.isfinite(rl), rl, 0.0), 0.0).sum()
                   + np.where(yy < 0, yy * np.where(np.isfinite(ru), ru, 0.0), 0.0).sum())
        mc = self.master_cols
        rc = self.cost[mc] - self.a_link[:, mc].T @ yy
        rc = np.where(np.abs(rc) < _TOL, 0.0, rc)
        lo, hi = self.clb[mc], self.cub[mc]
        if ((rc > 0) & ~np.isfinite(lo)).any() or ((rc < 0) & ~np.isfinite(hi)).any():
            return -np.inf
        lb += float(np.where(rc > 0, rc * np.where(np.isfinite(lo), lo, 0.0), 0.0).sum()
                    + np.where(rc < 0, rc * np.where(np.isfinite(hi), hi, 0.0), 0.0).sum())
        return lb + float(sum(values))

    def _pool(self):
        """A thread pool kept for repeated pricing (None with one worker)."""
        if self.workers <= 1:
            return None
        if getattr(self, "_executor", None) is None:
            self._executor = ThreadPoolExecutor(self.workers)
        return self._executor

    def close(self) -> None:
        if getattr(self, "_executor", None) is not None:
            self._executor.shutdown()
            self._executor = None

    def _price_all(self, pool, y, deadline):
        left = max(deadline - time.perf_counter(), 1e-3)
        if pool is None:
            return [z.price(y, left) for z in self.zones]
        return list(pool.map(lambda z: z.price(y, left), self.zones))

    def solve(self, gap: float = 5e-4, max_rounds: int = 500, time_limit_s: float = 600.0,
              alpha: float = 0.5, y0: np.ndarray | None = None, seeds: list | None = None,
              log=None) -> DWResult:
        """Column generation until the bound gap closes; ``seeds`` are initial zone plans
        ``(zone index, x)`` (e.g. each zone serving its share of the demand) and ``y0`` the
        linking duals the first round prices at."""
        import highspy

        t0 = time.perf_counter()
        deadline = t0 + time_limit_s
        self.owner: list = []
        h = self._master()
        nl, nb = self.link.size, len(self.zones)
        best_lb, ub_val = -np.inf, np.inf
        history = []
        status = "iteration_limit"
        pool = ThreadPoolExecutor(self.workers) if self.workers > 1 else None
        t_price = t_master = 0.0
        y_master = np.zeros(nl)
        sigma = np.zeros(nb)
        rounds = 0
        last = None
        if seeds:
            self._add_columns(h, list(seeds))
        y_center = None
        try:
            # the first round prices at y0 (zero: each zone at its own costs)
            y_price, a_now = (np.zeros(nl) if y0 is None else np.asarray(y0, float)), 0.0
            for rounds in range(1, max_rounds + 1):
                tp = time.perf_counter()
                try:
                    res = self._price_all(pool, y_price, deadline)
                except _SubproblemError as exc:
                    status = "time_limit" if "time limit" in exc.status.lower() else "error"
                    break
                t_price += time.perf_counter() - tp
                last = res
                lag = self._lagrangian(y_price, [r[0] for r in res])
                if lag > best_lb:
                    best_lb, y_center = lag, y_price
                # a zone plan improves the master if its reduced cost under the master's duals is negative
                new = []
                for zi, (z, r) in enumerate(zip(self.zones, res)):
                    x = r[1]
                    rc = float(z.cost @ x - (z.L @ x) @ y_master) - sigma[zi]
                    if rounds == 1 or rc < -_TOL * max(1.0, abs(ub_val) if np.isfinite(ub_val) else 1.0):
                        new.append((zi, x))
                if not new and a_now > 0:  # mis-priced with smoothing: price at the master's duals
                    y_price, a_now = y_master, 0.0
                    continue
                tm = time.perf_counter()
                if new:
                    self._add_columns(h, new)
                if rounds > 1:
                    h.setOptionValue("solver", "simplex")
                    h.setOptionValue("simplex_strategy", 4)
                h.setOptionValue("time_limit", max(deadline - time.perf_counter(), 1e-3))
                run_highs(h)
                t_master += time.perf_counter() - tm
                if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
                    status = "time_limit" if h.getModelStatus() == highspy.HighsModelStatus.kTimeLimit else "error"
                    break
                sol = h.getSolution()
                xm = np.asarray(sol.col_value)
                duals = np.asarray(sol.row_dual)
                y_master, sigma = duals[:nl], duals[nl:]
                art = float(xm[self.art].sum())
                obj = float(h.getInfo().objective_function_value)
                if art <= 1e-6 * max(1.0, float(np.abs(self.rlb[self.link][np.isfinite(self.rlb[self.link])]).max(initial=1.0))):
                    ub_val = min(ub_val, obj)
                elapsed = time.perf_counter() - t0
                history.append((rounds, elapsed, ub_val, best_lb))
                if log is not None:
                    log(rounds, elapsed, ub_val, best_lb, len(self.owner))
                g = (ub_val - best_lb) / max(abs(ub_val), 1e-9) if np.isfinite(ub_val) and np.isfinite(best_lb) else np.inf
                if g <= gap:
                    status = "optimal"
                    break
                if time.perf_counter() > deadline:
                    status = "time_limit"
                    break
                a_now = alpha if y_center is not None and np.isfinite(best_lb) else 0.0
                y_price = a_now * y_center + (1.0 - a_now) * y_master if a_now else y_master
        finally:
            if pool is not None:
                pool.shutdown()
        if not np.isfinite(ub_val):
            status = "infeasible" if status == "iteration_limit" else status
        # the plan: site-wide columns from the master, each zone the convex combination of its plans
        x = np.zeros(self.n_cols)
        row_dual = np.zeros(self.n_rows)
        col_dual = np.zeros(self.n_cols)
        if h.getModelStatus() == highspy.HighsModelStatus.kOptimal:
            sol = h.getSolution()
            xm = np.asarray(sol.col_value)
            mc = self.master_cols
            x[mc] = xm[: mc.size]
            col_dual[mc] = np.asarray(sol.col_dual)[: mc.size]
            lam = xm[mc.size + self.n_art:]
            for (zi, k), weight in zip(self.owner, lam):
                if weight > 0:
                    z = self.zones[zi]
                    x[z.cols] += weight * z.points[k]
            row_dual[self.link] = np.asarray(sol.row_dual)[:nl]
        if last is not None:  # zone rows: the last pricing's duals (exact at convergence)
            for z, r in zip(self.zones, last):
                row_dual[z.rows] = r[2]
                col_dual[z.cols] = r[3]
        g = (ub_val - best_lb) / max(abs(ub_val), 1e-9) if np.isfinite(ub_val) and np.isfinite(best_lb) else np.inf
        return DWResult(
            x=x, objective=ub_val, lower_bound=best_lb, gap=g, status=status, iterations=rounds,
            columns=len(self.owner), row_dual=row_dual, col_dual=col_dual,
            timings={"setup_s": self.setup_s, "price_s": t_price, "master_s": t_master,
                     "solve_s": time.perf_counter() - t0},
            history=history,
        )


def share_seeds(problem, dw: ZoneDecomposition, y0: np.ndarray, scales=(1.0,)) -> list:
    """Initial zone plans that meet the linking rows together: each zone serves its share
    (by capacity of the pools eligible for the class) of every class's work in every step,
    batch work on arrival (or on the pinned queue when shifting is off), nothing offloaded.
    With them the master is feasible from the first round (no phase of artificials)."""
    v, d = problem.vars, problem.data
    n, K = d.n, len(d.classes)
    cap = d.cap_per_server * d.servers  # units/h per pool at full load
    served = d.demand.copy()  # site-wide work served per step and class
    kb = np.flatnonzero(d.batch)
    if kb.size:
        path = np.zeros((n, kb.size)) if d.backlog_fixed is None else d.backlog_fixed[:, kb]
        prev = np.vstack([d.backlog0[kb][None, :], path[:-1]])
        served[:, kb] = d.demand[:, kb] + (prev - path) / d.step_h
    seeds = []
    for zi, z in enumerate(dw.zones):
        local = np.full(problem.lp.n_cols, -1, np.int64)
        local[z.cols] = np.arange(z.cols.size)
        rows, cols, lo = [], [], []
        r = 0
        for k in range(K):
            elig = d.serves[:, k]
            total = cap[elig].sum()
            mine = np.flatnonzero(elig & (d.pool_zone == z.b))
            if total <= 0 or not mine.size:
                continue
            share = cap[mine].sum() / total
            for t in range(n):
                ids = local[v.work[t, mine, k]]
                rows.extend([r] * ids.size)
                cols.extend(ids.tolist())
                lo.append(share * served[t, k])
                r += 1
        extra = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(r, z.cols.size))
        lo = np.maximum(np.array(lo), 0.0)
        for f in scales:
            x = z.seed(y0, extra, f * lo, f * lo)
            if x is not None:
                seeds.append((zi, x))
    return seeds


def facility_prices(problem, dw: ZoneDecomposition) -> np.ndarray:
    """Linking duals to start from: the facility rows priced at the facility column's cost
    (its dual when no cap binds), every other linking row at 0."""
    lp, v = problem.lp, problem.vars
    y0 = np.zeros(dw.link.size)
    fam = lp.cons["facility_power"]
    rows = np.arange(fam.start, fam.stop)
    pos = np.searchsorted(dw.link, rows)
    ok = (pos < dw.link.size) & (dw.link[np.minimum(pos, dw.link.size - 1)] == rows)
    y0[pos[ok]] = lp.arrays()[0][v.fac][ok]
    return y0


def window_blocks(problem, blocks: np.ndarray, window_steps: int) -> np.ndarray:
    """Zone blocks cut further into windows of ``window_steps`` steps: (zone, window) blocks.

    The rows that tie consecutive steps inside a zone (server boots, setpoint ramps and
    moves) become linking rows at the window edges, but each master column then covers only
    a few hours, so the master can combine zone plans step by step instead of one weight
    per whole-horizon plan: on the 4-zone / 20-pool site column generation closed the gap in
    35 (4-step windows) to 102 (16-step) rounds against no convergence in 500 without.
    """
    lp = problem.lp
    step = np.zeros(lp.n_cols, np.int64)
    for fam in lp.vars.values():  # every variable family is steps-first
        if fam.size:
            step[fam.start:fam.stop] = np.repeat(np.arange(fam.shape[0]), fam.size // fam.shape[0])
    n_win = -(-problem.data.n // window_steps)
    return np.where(blocks >= 0, blocks * n_win + step // window_steps, -1)


def decompose_zones(problem, gap: float | None = None, workers: int | None = None,
                    time_limit_s: float | None = None, window_steps: int | None = None, **kw) -> DWResult:
    """Solve a :class:`~.build.PlanningLP` by zone decomposition (see the module docstring);
    with ``window_steps`` by (zone, time-window) blocks (:func:`window_blocks`)."""
    o = problem.data.options
    t0 = time.perf_counter()
    limit = o.time_limit_s if time_limit_s is None else time_limit_s
    workers = o.decompose_workers if workers is None else workers
    blocks, ub = zone_blocks(problem)
    arrays = problem.lp.arrays()
    zdw = ZoneDecomposition(arrays, blocks, ub, workers=workers)
    y0 = facility_prices(problem, zdw)
    ts = time.perf_counter()
    seeds = share_seeds(problem, zdw, y0, kw.pop("scales", (1.0,)))
    seed_s = time.perf_counter() - ts
    dw = zdw
    if window_steps:
        # the zones' share plans cut into windows: consistent at the window edges, so the
        # master is feasible from the first round
        dw = ZoneDecomposition(arrays, window_blocks(problem, blocks, window_steps), ub, workers=workers)
        full = np.zeros(problem.lp.n_cols)
        for zi, x in seeds:
            full[zdw.zones[zi].cols] = x
        seeds = [(wi, full[w.cols].copy()) for wi, w in enumerate(dw.zones)]
        y0 = facility_prices(problem, dw)
    res = dw.solve(gap=o.decompose_gap if gap is None else gap, y0=y0, seeds=seeds,
                   time_limit_s=limit - (time.perf_counter() - t0), **kw)
    res.objective += problem.lp.offset
    res.lower_bound += problem.lp.offset
    res.timings.update(seed_s=seed_s, setup_s=res.timings["setup_s"] + (time.perf_counter() - t0) - res.timings["solve_s"] - seed_s,
                       total_s=time.perf_counter() - t0)
    return res


def solve_planner(planner):
    """A :class:`~.solve.Planner`'s plan by zone decomposition, or None when it did not close
    the gap (the caller then solves the monolithic LP). Shadow prices come from the master's
    linking duals and the zones' last pricing duals; deadline values (warm re-solves of the
    monolithic model) are not computed."""
    res = decompose_zones(planner.problem, window_steps=WINDOW_STEPS)
    planner.decomposition = res
    if res.status != "optimal":
        return None
    return plan_from_solution(planner, res, "optimal", decompose_rounds=res.iterations, decompose_gap=res.gap,
                              decompose_lower_bound=res.lower_bound)
