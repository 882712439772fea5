"""The fleet LP: where and when a fleet of sites runs its work, and its decomposition by site.

One block per site (PyPSA-style: one function per constraint family over the block's arrays):

- batch class c allowed at site s: ``r[c,s,t]`` work routed from the origin at hour t,
  ``x[c,s,t]`` work done, ``b[c,s,t]`` backlog. Routed work arrives after the transfer delay
  ``d``; the backlog at the end of hour t holds only work routed within the last ``D``
  (deadline) hours: ``b[t] <= sum(r[t-D+1 .. t-d])`` (FIFO makes this exact); everything is
  done by the end of the horizon. Moving data away from its origin costs
  ``gb_per_unit * transfer_kwh_per_gb`` kWh per unit (charged at the mean intensity of the
  two ends), the provider's USD/GB, and fits the link's throughput.
- interactive class i: ``y[i,s,t]`` served at s within the hour; s must be within the class's
  latency of the origin (``allowed`` already holds residency and latency).
- consolidation: ``n[s,t]`` active servers, ``sum work <= units_per_server * n``,
  ``min_active <= n <= servers``.
- energy: ``(idle_kw * n + kw_per_unit * work) * (1 + overhead[s,t])``, the planner's linear
  cooling-and-losses model (the simulator computes the plant instead).

Shared (coupling) constraints: ``sum_s r[c,s,t] = demand[c,t]`` and ``sum_s y[i,s,t] =
demand[i,t]``. Small fleets: the joint LP. Large fleets: Dantzig-Wolfe by site. The master
holds convex combinations of site plans; its duals on the coupling rows price work in each
hour, each site answers with its best plan at those prices (solved in parallel, on Dask
workers), and the Lagrangian bound ``sum_s min_s(c_s - lambda A_s) + lambda * demand`` certifies
the gap to the joint optimum at every iteration. Dual smoothing (Wentges 1997) steadies the
prices.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import scipy.sparse as sp

from .highs import new_highs

__all__ = [
    "FleetProblem", "SiteBlock", "FleetPlan", "DecompositionLog",
    "site_block", "site_blocks", "solve_joint", "solve_independent", "solve_decomposed",
    "price_block", "plan_metrics", "FleetInfeasible",
]

INF = np.inf


class FleetInfeasible(ValueError):
    """No plan meets every deadline, capacity and residency rule; the message says which site or class."""


@dataclass(frozen=True)
class FleetProblem:
    """Everything the fleet LP needs, as arrays (S sites, C classes, T hours).

    Units are in the names: intensities g/kWh, prices USD/MWh, powers kW, work in units
    (one unit = what one server at ``units_per_server`` 1.0 does in an hour).
    """

    sites: tuple[str, ...]
    classes: tuple[str, ...]
    kind: tuple[str, ...]                 # "batch" | "interactive" per class
    origin: np.ndarray                    # (C,) site index
    demand_units: np.ndarray              # (C, T)
    gb_per_unit: np.ndarray               # (C,)
    deadline_h: np.ndarray                # (C,) int (0 for interactive)
    allowed: np.ndarray                   # (C, S) bool: residency and latency
    ci_g_per_kwh: np.ndarray              # (S, T)
    price_usd_per_mwh: np.ndarray         # (S, T)
    overhead_frac: np.ndarray             # (S, T) cooling + losses per IT kW (planner's model)
    servers: np.ndarray                   # (S,)
    units_per_server: np.ndarray          # (S,)
    idle_kw: np.ndarray                   # (S,) per active server
    kw_per_unit: np.ndarray               # (S,) dynamic kW per unit of work
    min_active: np.ndarray                # (S,) servers always on
    delay_h: np.ndarray                   # (S, S) int, transfer delay origin -> site
    usd_per_gb: np.ndarray                # (S, S)
    link_gb_per_h: np.ndarray             # (S, S)
    transfer_kwh_per_gb: float = 0.06
    cost_weight: float = 0.0              # objective = kgCO2 + cost_weight * USD
    carbon_weight: float = 1.0

    @property
    def hours(self) -> int:
        return int(self.demand_units.shape[1])

    @property
    def n_sites(self) -> int:
        return len(self.sites)

    def restricted(self, site_idx: Sequence[int]) -> "FleetProblem":
        """The sub-fleet of the given sites; classes originating elsewhere are dropped."""
        idx = np.asarray(site_idx, dtype=int)
        keep = np.isin(self.origin, idx)
        remap = {int(s): i for i, s in enumerate(idx)}
        pick2 = np.ix_(idx, idx)
        return FleetProblem(
            sites=tuple(self.sites[i] for i in idx), classes=tuple(c for c, k in zip(self.classes, keep) if k),
            kind=tuple(c for c, k in zip(self.kind, keep) if k),
            origin=np.array([remap[int(o)] for o in self.origin[keep]], dtype=int),
            demand_units=self.demand_units[keep], gb_per_unit=self.gb_per_unit[keep], deadline_h=self.deadline_h[keep],
            allowed=self.allowed[keep][:, idx], ci_g_per_kwh=self.ci_g_per_kwh[idx], price_usd_per_mwh=self.price_usd_per_mwh[idx],
            overhead_frac=self.overhead_frac[idx], servers=self.servers[idx], units_per_server=self.units_per_server[idx],
            idle_kw=self.idle_kw[idx], kw_per_unit=self.kw_per_unit[idx], min_active=self.min_active[idx],
            delay_h=self.delay_h[pick2], usd_per_gb=self.usd_per_gb[pick2], link_gb_per_h=self.link_gb_per_h[pick2],
            transfer_kwh_per_gb=self.transfer_kwh_per_gb, cost_weight=self.cost_weight, carbon_weight=self.carbon_weight,
        )


@dataclass
class SiteBlock:
    """One site's LP: ``min c x`` s.t. ``row_lo <= A x <= row_hi``, ``col_lo <= x <= col_hi``.

    ``link_col``/``link_row``: the block's columns that enter the coupling rows (row index
    ``class * T + t``). ``meta`` gives each column's (family, class, hour); families: 0 r, 1 x,
    2 b, 3 y, 4 n. ``carbon_kg``/``cost_usd`` are the per-column accounting coefficients.
    """

    key: str
    site: int
    c: np.ndarray
    a: sp.csc_matrix
    row_lo: np.ndarray
    row_hi: np.ndarray
    col_lo: np.ndarray
    col_hi: np.ndarray
    link_col: np.ndarray
    link_row: np.ndarray
    meta: np.ndarray          # (n, 3) int: family, class, hour
    carbon_kg: np.ndarray
    cost_usd: np.ndarray
    transfer_kwh: np.ndarray
    energy_kwh: np.ndarray    # facility kWh per unit of the column (planner's model)


FAM_R, FAM_X, FAM_B, FAM_Y, FAM_N = range(5)


class _Cols:
    """Column allocator: families appended in blocks of T hours."""

    def __init__(self, t: int):
        self.t, self.n = t, 0
        self.meta: list[np.ndarray] = []

    def add(self, fam: int, cls: int) -> np.ndarray:
        idx = np.arange(self.n, self.n + self.t)
        self.meta.append(np.column_stack([np.full(self.t, fam), np.full(self.t, cls), np.arange(self.t)]))
        self.n += self.t
        return idx


class _Rows:
    """Row triplets, collected per constraint family."""

    def __init__(self):
        self.r: list[np.ndarray] = []
        self.c: list[np.ndarray] = []
        self.v: list[np.ndarray] = []
        self.lo: list[np.ndarray] = []
        self.hi: list[np.ndarray] = []
        self.m = 0

    def add(self, rows_local, cols, vals, n_rows: int, lo, hi) -> None:
        self.r.append(np.asarray(rows_local) + self.m)
        self.c.append(np.asarray(cols))
        self.v.append(np.asarray(vals, dtype=float))
        self.lo.append(np.broadcast_to(np.asarray(lo, dtype=float), (n_rows,)))
        self.hi.append(np.broadcast_to(np.asarray(hi, dtype=float), (n_rows,)))
        self.m += n_rows


# --- constraint families ---------------------------------------------------------------------

def _backlog_balance(rows: _Rows, r, x, b, delay: int, t_n: int) -> None:
    """b[t] - b[t-1] - r[t-delay] + x[t] = 0: routed work arrives after the transfer delay."""
    t = np.arange(t_n)
    ri, ci, vi = [t, t], [b, x], [np.ones(t_n), np.ones(t_n)]
    ri.append(t[1:]); ci.append(b[:-1]); vi.append(-np.ones(t_n - 1))
    if delay < t_n:
        ri.append(t[delay:]); ci.append(r[: t_n - delay]); vi.append(-np.ones(t_n - delay))
    rows.add(np.concatenate(ri), np.concatenate(ci), np.concatenate(vi), t_n, 0.0, 0.0)


def _deadline(rows: _Rows, r, b, delay: int, deadline: int, t_n: int) -> None:
    """b[t] <= sum(r[t-D+1 .. t-delay]): what waits at the end of hour t arrived within its deadline."""
    ri, ci, vi = [np.arange(t_n)], [b], [np.ones(t_n)]
    for k in range(delay, deadline):   # r[t-k] for k = delay .. D-1
        t = np.arange(k, t_n)
        ri.append(t); ci.append(r[t - k]); vi.append(-np.ones(t.size))
    rows.add(np.concatenate(ri), np.concatenate(ci), np.concatenate(vi), t_n, -INF, 0.0)


def _capacity(rows: _Rows, work_cols: list[np.ndarray], n, units_per_server: float, t_n: int) -> None:
    """sum of work done in hour t <= units_per_server * active servers."""
    t = np.arange(t_n)
    ri = [t] * len(work_cols) + [t]
    ci = list(work_cols) + [n]
    vi = [np.ones(t_n)] * len(work_cols) + [np.full(t_n, -units_per_server)]
    rows.add(np.concatenate(ri), np.concatenate(ci), np.concatenate(vi), t_n, -INF, 0.0)


def _link_throughput(rows: _Rows, routed: list[tuple[np.ndarray, float]], limit_gb_per_h: float, t_n: int) -> None:
    """GB sent from one origin to this site in an hour <= the link's throughput."""
    t = np.arange(t_n)
    rows.add(np.concatenate([t] * len(routed)), np.concatenate([c for c, _ in routed]),
             np.concatenate([np.full(t_n, g) for _, g in routed]), t_n, -INF, limit_gb_per_h)


def site_block(p: FleetProblem, s: int) -> SiteBlock:
    """The LP block of site ``s`` (its variables, its own constraints, its costs)."""
    t_n = p.hours
    cols, rows = _Cols(t_n), _Rows()
    energy = np.zeros(0)
    e_kwh = (1.0 + p.overhead_frac[s])                         # facility kWh per IT kWh
    kg_per_kwh = p.ci_g_per_kwh[s] / 1000.0
    usd_per_kwh = p.price_usd_per_mwh[s] / 1000.0
    parts_c, parts_carbon, parts_cost, parts_tx, parts_energy = [], [], [], [], []
    col_lo, col_hi, link_col, link_row = [], [], [], []
    work_cols: list[np.ndarray] = []
    routed_by_origin: dict[int, list[tuple[np.ndarray, float]]] = {}

    def costs(kwh, extra_kg=0.0, extra_usd=0.0, tx_kwh=0.0):
        kwh = np.broadcast_to(np.asarray(kwh, dtype=float), (t_n,))
        carbon = kwh * kg_per_kwh + extra_kg
        cost = kwh * usd_per_kwh + extra_usd
        parts_carbon.append(np.broadcast_to(carbon, (t_n,)))
        parts_cost.append(np.broadcast_to(cost, (t_n,)))
        parts_tx.append(np.broadcast_to(np.asarray(tx_kwh, dtype=float), (t_n,)))
        parts_energy.append(kwh)
        parts_c.append(p.carbon_weight * carbon + p.cost_weight * cost)

    def bounds(lo, hi):
        col_lo.append(np.broadcast_to(np.asarray(lo, dtype=float), (t_n,)))
        col_hi.append(np.broadcast_to(np.asarray(hi, dtype=float), (t_n,)))

    for c, kind in enumerate(p.kind):
        if not p.allowed[c, s]:
            continue
        o = int(p.origin[c])
        remote = o != s
        gb = float(p.gb_per_unit[c]) if remote else 0.0
        tx_kwh = gb * p.transfer_kwh_per_gb
        tx_kg = tx_kwh * 0.5 * (p.ci_g_per_kwh[o] + p.ci_g_per_kwh[s]) / 1000.0
        tx_usd = gb * float(p.usd_per_gb[o, s])
        if kind == "batch":
            d = int(p.delay_h[o, s]) if remote else 0
            dl = int(p.deadline_h[c])
            r = cols.add(FAM_R, c)
            costs(0.0, tx_kg, tx_usd, tx_kwh)
            hi = np.full(t_n, INF)
            if dl <= d:
                hi[:] = 0.0                      # cannot arrive before its deadline
            else:
                hi[max(t_n - d, 0):] = 0.0        # would arrive after the horizon
            bounds(0.0, hi)
            link_col.append(r); link_row.append(c * t_n + np.arange(t_n))
            x = cols.add(FAM_X, c)
            costs(p.kw_per_unit[s] * e_kwh)
            bounds(0.0, INF)
            b = cols.add(FAM_B, c)
            costs(0.0)
            bhi = np.full(t_n, INF); bhi[-1] = 0.0   # all done by the end of the horizon
            bounds(0.0, bhi)
            _backlog_balance(rows, r, x, b, d, t_n)
            _deadline(rows, r, b, d, dl, t_n)
            work_cols.append(x)
            if remote and gb > 0 and np.isfinite(p.link_gb_per_h[o, s]):
                routed_by_origin.setdefault(o, []).append((r, gb))
        else:
            y = cols.add(FAM_Y, c)
            costs(p.kw_per_unit[s] * e_kwh, tx_kg, tx_usd, tx_kwh)
            bounds(0.0, INF)
            link_col.append(y); link_row.append(c * t_n + np.arange(t_n))
            work_cols.append(y)
            if remote and gb > 0 and np.isfinite(p.link_gb_per_h[o, s]):
                routed_by_origin.setdefault(o, []).append((y, gb))
    n = cols.add(FAM_N, -1)
    costs(p.idle_kw[s] * e_kwh)
    bounds(float(p.min_active[s]), float(p.servers[s]))
    _capacity(rows, work_cols, n, float(p.units_per_server[s]), t_n)
    for o, routed in sorted(routed_by_origin.items()):
        _link_throughput(rows, routed, float(p.link_gb_per_h[o, s]), t_n)

    a = sp.csc_matrix((np.concatenate(rows.v), (np.concatenate(rows.r), np.concatenate(rows.c))), shape=(rows.m, cols.n))
    del energy
    return SiteBlock(
        key=f"{p.sites[s]}:{s}:{uuid.uuid4().hex[:12]}", site=s, c=np.concatenate(parts_c), a=a,
        row_lo=np.concatenate(rows.lo), row_hi=np.concatenate(rows.hi),
        col_lo=np.concatenate(col_lo), col_hi=np.concatenate(col_hi),
        link_col=np.concatenate(link_col) if link_col else np.zeros(0, dtype=int),
        link_row=np.concatenate(link_row) if link_row else np.zeros(0, dtype=int),
        meta=np.vstack(cols.meta), carbon_kg=np.concatenate(parts_carbon), cost_usd=np.concatenate(parts_cost),
        transfer_kwh=np.concatenate(parts_tx), energy_kwh=np.concatenate(parts_energy),
    )


def site_blocks(p: FleetProblem) -> list[SiteBlock]:
    return [site_block(p, s) for s in range(p.n_sites)]


# --- solving ---------------------------------------------------------------------------------

def _highs_lp(c, a: sp.csc_matrix, row_lo, row_hi, col_lo, col_hi):
    import highspy

    h = new_highs()
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = a.shape[1], a.shape[0]
    lp.col_cost_, lp.col_lower_, lp.col_upper_ = np.asarray(c, float), np.asarray(col_lo, float), np.asarray(col_hi, float)
    lp.row_lower_, lp.row_upper_ = np.asarray(row_lo, float), np.asarray(row_hi, float)
    a = a.tocsc()
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = a.indptr.astype(np.int32)
    lp.a_matrix_.index_ = a.indices.astype(np.int32)
    lp.a_matrix_.value_ = a.data.astype(float)
    h.setOptionValue("threads", 1)
    if h.passModel(lp) == highspy.HighsStatus.kError:
        raise RuntimeError("HiGHS rejected the fleet LP")
    return h


def _run(h, what: str):
    import highspy

    h.run()
    status = h.getModelStatus()
    if status != highspy.HighsModelStatus.kOptimal:
        raise FleetInfeasible(f"{what}: {h.modelStatusToString(status)}")
    sol = h.getSolution()
    return np.asarray(sol.col_value), np.asarray(sol.row_dual), float(h.getInfo().objective_function_value)


def _demand_vector(p: FleetProblem) -> np.ndarray:
    return p.demand_units.reshape(-1).astype(float)


@dataclass
class FleetPlan:
    """A fleet plan: per-block column values and what they add up to."""

    problem: FleetProblem
    blocks: list[SiteBlock]
    z: list[np.ndarray]
    objective: float
    method: str
    solve_s: float = 0.0
    lower_bound: float | None = None
    log: "DecompositionLog | None" = None

    @property
    def certified_gap(self) -> float | None:
        if self.lower_bound is None:
            return None
        return max(0.0, (self.objective - self.lower_bound) / max(abs(self.objective), 1e-12))

    def work_units(self) -> np.ndarray:
        """(S, T) work done at each site (batch done + interactive served)."""
        out = np.zeros((self.problem.n_sites, self.problem.hours))
        for blk, z in zip(self.blocks, self.z):
            m = np.isin(blk.meta[:, 0], (FAM_X, FAM_Y))
            np.add.at(out[blk.site], blk.meta[m, 2], z[m])
        return out

    def active_servers(self) -> np.ndarray:
        out = np.zeros((self.problem.n_sites, self.problem.hours))
        for blk, z in zip(self.blocks, self.z):
            m = blk.meta[:, 0] == FAM_N
            out[blk.site, blk.meta[m, 2]] = z[m]
        return out

    def routed(self) -> np.ndarray:
        """(C, S, T) work of each class sent to each site (batch routed, interactive served)."""
        p = self.problem
        out = np.zeros((len(p.classes), p.n_sites, p.hours))
        for blk, z in zip(self.blocks, self.z):
            m = np.isin(blk.meta[:, 0], (FAM_R, FAM_Y))
            np.add.at(out, (blk.meta[m, 1], blk.site, blk.meta[m, 2]), z[m])
        return out

    def done(self) -> np.ndarray:
        """(C, S, T) work of each class done at each site."""
        p = self.problem
        out = np.zeros((len(p.classes), p.n_sites, p.hours))
        for blk, z in zip(self.blocks, self.z):
            m = np.isin(blk.meta[:, 0], (FAM_X, FAM_Y))
            np.add.at(out, (blk.meta[m, 1], blk.site, blk.meta[m, 2]), z[m])
        return out

    def transfer_kwh(self) -> np.ndarray:
        """(S,) transfer energy of the work each site received [kWh]."""
        return np.array([float(blk.transfer_kwh @ z) for blk, z in zip(self.blocks, self.z)])


def solve_joint(p: FleetProblem, blocks: list[SiteBlock] | None = None) -> FleetPlan:
    """The whole fleet as one LP (blocks on the diagonal, the coupling rows below)."""
    t0 = time.perf_counter()
    blocks = blocks if blocks is not None else site_blocks(p)
    offs = np.cumsum([0] + [b.c.size for b in blocks])
    n_couple = len(p.classes) * p.hours
    coupling = sp.csc_matrix(
        (np.ones(sum(b.link_col.size for b in blocks)),
         (np.concatenate([b.link_row for b in blocks]), np.concatenate([b.link_col + o for b, o in zip(blocks, offs)]))),
        shape=(n_couple, offs[-1]))
    a = sp.vstack([sp.block_diag([b.a for b in blocks], format="csc"), coupling], format="csc")
    dem = _demand_vector(p)
    h = _highs_lp(np.concatenate([b.c for b in blocks]), a,
                  np.concatenate([b.row_lo for b in blocks] + [dem]), np.concatenate([b.row_hi for b in blocks] + [dem]),
                  np.concatenate([b.col_lo for b in blocks]), np.concatenate([b.col_hi for b in blocks]))
    x, _, obj = _run(h, "fleet LP (joint)")
    z = [x[offs[i]:offs[i + 1]] for i in range(len(blocks))]
    return FleetPlan(p, blocks, z, obj, "joint", time.perf_counter() - t0)


# Worker-side cache of loaded HiGHS models, so a site's LP is built once per worker process
# and only its linking costs change between iterations.
_MODELS: "OrderedDict[str, object]" = OrderedDict()
_MAX_MODELS = 256


def price_block(block: SiteBlock, lam_link: np.ndarray | None, fix_link: np.ndarray | None = None) -> tuple[float, float, np.ndarray]:
    """Solve a site's block at coupling prices ``lam_link`` (one per linking column).

    Returns (priced objective ``min (c - lam) z``, true cost ``c z``, z). ``fix_link`` instead
    pins the linking columns (the site planned alone with its own work).
    """
    import highspy

    if fix_link is not None:
        lo, hi = block.col_lo.copy(), block.col_hi.copy()
        lo[block.link_col], hi[block.link_col] = fix_link, fix_link
        h = _highs_lp(block.c, block.a, block.row_lo, block.row_hi, lo, hi)
        z, _, obj = _run(h, f"site {block.key.split(':')[0]} alone")
        return obj, obj, z
    h = _MODELS.get(block.key)
    if h is None:
        h = _highs_lp(block.c, block.a, block.row_lo, block.row_hi, block.col_lo, block.col_hi)
        _MODELS[block.key] = h
        while len(_MODELS) > _MAX_MODELS:
            _MODELS.popitem(last=False)
    cost = block.c[block.link_col] - lam_link
    idx = block.link_col.astype(np.int32)
    h.changeColsCost(idx.size, idx, cost.astype(float))
    z, _, obj = _run(h, f"site {block.key.split(':')[0]} pricing")
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:  # pragma: no cover - _run raised already
        raise FleetInfeasible(block.key)
    return obj, float(block.c @ z), z


def _serial_map(func: Callable, args: list[tuple]) -> list:
    return [func(*a) for a in args]


def _own_demand(p: FleetProblem, blk: SiteBlock) -> np.ndarray:
    """Linking-column values that keep each class's work at its origin (zero elsewhere)."""
    cls, t = blk.meta[blk.link_col, 1], blk.meta[blk.link_col, 2]
    own = p.origin[cls] == blk.site
    return np.where(own, p.demand_units[cls, t], 0.0)


def solve_independent(p: FleetProblem, blocks: list[SiteBlock] | None = None, map_fn: Callable = _serial_map) -> FleetPlan:
    """Each site planned alone with its own work (temporal shifting and consolidation, no moves)."""
    t0 = time.perf_counter()
    blocks = blocks if blocks is not None else site_blocks(p)
    for c, kind in enumerate(p.kind):
        if not p.allowed[c, p.origin[c]]:
            raise FleetInfeasible(f"class {p.classes[c]}: its residency rule excludes its own origin site, "
                                  "so it cannot be planned at home")
    try:
        res = map_fn(price_block, [(b, None, _own_demand(p, b)) for b in blocks])
    except FleetInfeasible as exc:
        raise FleetInfeasible(f"planned alone, {exc}: the site cannot do its own work within its deadlines and capacity") from None
    z = [r[2] for r in res]
    return FleetPlan(p, blocks, z, float(sum(r[1] for r in res)), "independent", time.perf_counter() - t0)


@dataclass
class DecompositionLog:
    """One row per iteration: bounds, gap, columns added, seconds in pricing and in the master."""

    rows: list[dict] = field(default_factory=list)


def _master(costs, cols_link, cols_site, n_sites, dem, big_m):
    """The restricted master LP: convex combinations of site plans plus penalised slacks."""
    n_cols = len(costs)
    n_couple = dem.size
    ri, ci, vi = [], [], []
    for k, (rows_k, vals_k) in enumerate(cols_link):
        ri.append(rows_k); ci.append(np.full(rows_k.size, k)); vi.append(vals_k)
        ri.append(np.array([n_couple + cols_site[k]])); ci.append(np.array([k])); vi.append(np.array([1.0]))
    slack = np.arange(n_couple)
    ri += [slack, slack]; ci += [n_cols + slack, n_cols + n_couple + slack]; vi += [np.ones(n_couple), -np.ones(n_couple)]
    a = sp.csc_matrix((np.concatenate(vi), (np.concatenate(ri), np.concatenate(ci))), shape=(n_couple + n_sites, n_cols + 2 * n_couple))
    c = np.concatenate([np.asarray(costs), np.full(2 * n_couple, big_m)])
    rhs = np.concatenate([dem, np.ones(n_sites)])
    h = _highs_lp(c, a, rhs, rhs, np.zeros(c.size), np.full(c.size, INF))
    x, duals, obj = _run(h, "fleet master LP")
    return x, duals, obj, float(x[n_cols:].sum())


def _routing_repair(p: FleetProblem, blocks: list[SiteBlock], zs: list[np.ndarray]) -> list[np.ndarray] | None:
    """Link-column values that meet every class-hour's demand exactly, scaled from the sites'
    priced answers ``zs``; demand nobody asked for goes to its origin."""
    t_n = p.hours
    asked = np.zeros((len(p.classes), p.n_sites, t_n))
    for blk, z in zip(blocks, zs):
        cls, t = blk.meta[blk.link_col, 1], blk.meta[blk.link_col, 2]
        asked[cls, blk.site, t] = np.maximum(z[blk.link_col], 0.0)
    total = asked.sum(axis=1)                                   # (C, T)
    share = np.where(total[:, None, :] > 1e-9, asked / np.maximum(total[:, None, :], 1e-12), 0.0)
    routed = share * p.demand_units[:, None, :]
    none = total <= 1e-9
    c_idx, t_idx = np.nonzero(none)
    routed[c_idx, p.origin[c_idx], t_idx] = p.demand_units[c_idx, t_idx]
    out = []
    for blk in blocks:
        cls, t = blk.meta[blk.link_col, 1], blk.meta[blk.link_col, 2]
        out.append(routed[cls, blk.site, t])
    return out


def solve_decomposed(p: FleetProblem, map_fn: Callable = _serial_map, gap_tol: float = 1e-3, max_iter: int = 30,
                     smoothing: float = 0.5, blocks: list[SiteBlock] | None = None, map_blocks: Callable | None = None,
                     initial: FleetPlan | None = None) -> FleetPlan:
    """Dantzig-Wolfe by site with a certified gap: stop when (UB - LB) / UB <= ``gap_tol``.

    ``map_fn(func, args)`` runs the site subproblems (serially by default; a Dask client's
    map in :mod:`coolshift.fleet.engine`). ``map_blocks`` lets the caller hand over blocks
    that already live on the workers (``args`` then carry those handles in place of blocks).
    """
    t0 = time.perf_counter()
    blocks = blocks if blocks is not None else site_blocks(p)
    handles = map_blocks(blocks) if map_blocks is not None else blocks
    dem = _demand_vector(p)
    n_s = len(blocks)
    big_m = 10.0 * max(float(np.abs(b.c).max()) if b.c.size else 0.0 for b in blocks) * max(1.0, p.hours) + 1.0
    costs, cols_link, cols_site, zs = [], [], [], []

    def add(s, cost, z):
        blk = blocks[s]
        vals = z[blk.link_col]
        nz = np.abs(vals) > 1e-12
        costs.append(cost); cols_link.append((blk.link_row[nz], vals[nz])); cols_site.append(s); zs.append(z)

    init = initial
    if init is None:
        try:
            init = solve_independent(p, blocks, map_fn=lambda f, a: map_fn(f, [(h, None, x[2]) for h, x in zip(handles, a)]))
        except FleetInfeasible:
            init = None
    if init is not None:
        for s, z in enumerate(init.z):
            add(s, float(blocks[s].c @ z), z)
    # Start the prices at each class's marginal cost of being served at home, now: the site's
    # energy per unit times its intensity (a dual estimate that needs no joint solve).
    o = p.origin
    lam0 = (p.carbon_weight * p.kw_per_unit[o, None] * (1 + p.overhead_frac[o]) * p.ci_g_per_kwh[o] / 1000.0
            + p.cost_weight * p.kw_per_unit[o, None] * (1 + p.overhead_frac[o]) * p.price_usd_per_mwh[o] / 1000.0).reshape(-1)
    res0 = map_fn(price_block, [(h, lam0[blk.link_row], None) for h, blk in zip(handles, blocks)])
    lam_best, lb_best = lam0, float(sum(r[0] for r in res0) + lam0 @ dem)
    for s, r in enumerate(res0):
        add(s, r[1], r[2])
    log = DecompositionLog()
    alpha = smoothing
    ub = INF
    for it in range(max_iter):
        tm = time.perf_counter()
        if costs:
            x, duals, ub_m, slack = _master(costs, cols_link, cols_site, n_s, dem, big_m)
            lam_m, mu = duals[: dem.size], duals[dem.size:]
        else:
            x, lam_m, mu, ub_m, slack = None, np.zeros(dem.size), np.full(n_s, -INF), INF, INF
        t_master = time.perf_counter() - tm
        ub = ub_m if slack < 1e-7 * max(1.0, dem.sum()) else INF
        lam = lam_m if lam_best is None else alpha * lam_best + (1 - alpha) * lam_m
        tp = time.perf_counter()
        res = map_fn(price_block, [(h, lam[blk.link_row], None) for h, blk in zip(handles, blocks)])
        t_price = time.perf_counter() - tp
        lb = float(sum(r[0] for r in res) + lam @ dem)
        if lb > lb_best:
            lb_best, lam_best = lb, lam.copy()
        added = 0
        for s, (v, cost, z) in enumerate(res):
            if not np.isfinite(mu[s]):
                add(s, cost, z)
                added += 1
                continue
            blk = blocks[s]
            rc = cost - float(lam_m[blk.link_row] @ z[blk.link_col]) - mu[s]
            if rc < -1e-9 * max(1.0, abs(cost)):
                add(s, cost, z)
                added += 1
        # Primal heuristic: share each class-hour's work among the sites in proportion to what
        # they asked for at these prices (the rest stays at the origin), let every site re-plan
        # with that routing fixed, and add the plans as columns: together they meet the demand.
        t_fix = time.perf_counter()
        heur = _routing_repair(p, blocks, [r[2] for r in res])
        if heur is not None:
            try:
                fixed = map_fn(price_block, [(h, None, v) for h, v in zip(handles, heur)])
            except FleetInfeasible:
                fixed = None
            if fixed is not None:
                for s, (_, cost, z) in enumerate(fixed):
                    add(s, cost, z)
                    added += 1
                ub_h = float(sum(r[1] for r in fixed))
                ub = min(ub, ub_h)
        t_price += time.perf_counter() - t_fix
        gap = (ub - lb_best) / max(abs(ub), 1e-12) if np.isfinite(ub) else INF
        log.rows.append({"iteration": it, "upper_bound": ub, "lower_bound": lb_best, "gap": gap, "columns_added": added,
                         "master_s": t_master, "pricing_s": t_price, "alpha": alpha})
        if gap <= gap_tol:
            break
        if added == 0:
            if alpha == 0.0:
                break
            alpha = 0.0       # mis-priced at the smoothed point: price at the master's duals next
        elif alpha == 0.0 and smoothing > 0:
            alpha = smoothing
    x, duals, ub, slack = _master(costs, cols_link, cols_site, n_s, dem, big_m)
    if slack > 1e-6 * max(1.0, dem.sum()):
        raise FleetInfeasible(f"no fleet plan serves all the work: {slack:.3g} units of demand are left unserved "
                              "(capacity, deadlines, latency or residency rules are too tight)")
    z = [np.zeros(b.c.size) for b in blocks]
    for k, s in enumerate(cols_site):
        if x[k] > 0:
            z[s] += x[k] * zs[k]
    plan = FleetPlan(p, blocks, z, ub, "decomposed", time.perf_counter() - t0, lower_bound=lb_best, log=log)
    return plan


def plan_metrics(plan: FleetPlan) -> dict:
    """The planner's own accounting of a plan (its linear model): tCO2, MWh, USD, transfers."""
    carbon = sum(float(b.carbon_kg @ z) for b, z in zip(plan.blocks, plan.z))
    cost = sum(float(b.cost_usd @ z) for b, z in zip(plan.blocks, plan.z))
    energy = sum(float(b.energy_kwh @ z) for b, z in zip(plan.blocks, plan.z))
    return {"tco2": carbon / 1000.0, "cost_usd": cost, "facility_mwh": energy / 1000.0,
            "transfer_mwh": float(plan.transfer_kwh().sum()) / 1000.0, "objective": plan.objective}
