"""The fleet LP: where and when a fleet of sites runs its work, and its decomposition by site.

One block per site (PyPSA-style: one function per constraint family over the block's arrays):

- routing: each class's work in routing block k (``routing_block_h`` hours; 1 = hourly, 24 =
  daily) is shared among the sites its residency rule (and, for interactive work, its latency)
  allows: ``f[c,s,k] >= 0``. Work sent at hour t arrives after the transfer delay ``d``.
- batch class c at site s: ``x[c,s,t]`` work done, ``b[c,s,t]`` backlog; the backlog at the end
  of hour t holds only work sent within the last ``D`` (deadline) hours:
  ``b[t] <= sum(demand[tau] f[block(tau)], tau = t-D+1 .. t-d)`` (FIFO makes this exact);
  everything is done by the end of the horizon. Moving data away from its origin costs
  ``gb_per_unit * transfer_kwh_per_gb`` kWh per unit (charged at the mean intensity of the two
  ends), the provider's USD/GB, and must fit the link's throughput.
- interactive class i: served in the hour it arrives, ``demand[t] f[block(t)]`` at each site.
- consolidation: ``n[s,t]`` active servers, ``work <= units_per_server * n``,
  ``min_active <= n <= servers``.
- energy: ``(idle_kw * n + kw_per_unit * work) * (1 + overhead[s,t])``, the planner's linear
  cooling-and-losses model (the simulator computes the plant instead).

Shared (coupling) constraints: ``sum_s f[c,s,k] = 1``. Small fleets: the joint LP. Large fleets:
Dantzig-Wolfe by site. The master holds convex combinations of site plans; its duals on the
coupling rows price each class's work per block; each site answers with its best plan at those
prices (in parallel, on Dask workers; each solve is stateless, so any worker takes any site), a
routing-repair step turns the answers into a plan that meets the demand (an upper bound), and
the Lagrangian bound ``sum_s min_s(c_s - lambda A_s) + sum(lambda)`` certifies the gap to the
joint optimum at every iteration. Prices are smoothed towards the best bound's (Wentges 1997).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import scipy.sparse as sp

from .highs import new_highs, pass_lp, run_highs

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
    routing_block_h: int = 1              # routing shares are decided per block of this many hours
    fixed_kw: np.ndarray | None = None    # (S, T) facility kW drawn whatever the plan (planner's model); None = 0
    hinge_kw: np.ndarray | None = None    # (S,) IT kW above which the upper slope applies (inf = none)
    hinge_frac: np.ndarray | None = None  # (S, T) extra facility kW per IT kW above hinge_kw (>= 0: convex)

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
            routing_block_h=self.routing_block_h, fixed_kw=None if self.fixed_kw is None else self.fixed_kw[idx],
            hinge_kw=None if self.hinge_kw is None else self.hinge_kw[idx],
            hinge_frac=None if self.hinge_frac is None else self.hinge_frac[idx],
        )


@dataclass
class SiteBlock:
    """One site's LP: ``min c x`` s.t. ``row_lo <= A x <= row_hi``, ``col_lo <= x <= col_hi``.

    ``link_col``/``link_row``: the routing-share columns that enter the coupling rows (row
    ``class * K + block``). ``meta`` gives each column's (family, class, index): the index is the
    hour for x, b, n and the routing block for the shares r (batch) and y (interactive).
    ``carbon_kg``/``cost_usd``/``transfer_kwh``/``energy_kwh`` are per-column accounting
    coefficients (planner's model).
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
    meta: np.ndarray
    carbon_kg: np.ndarray
    cost_usd: np.ndarray
    transfer_kwh: np.ndarray
    energy_kwh: np.ndarray


FAM_R, FAM_X, FAM_B, FAM_Y, FAM_N, FAM_H = range(6)


class _Cols:
    """Column allocator: families appended in runs (T hours or K routing blocks)."""

    def __init__(self):
        self.n = 0
        self.meta: list[np.ndarray] = []

    def add(self, fam: int, cls: int, count: int) -> np.ndarray:
        idx = np.arange(self.n, self.n + count)
        self.meta.append(np.column_stack([np.full(count, fam), np.full(count, cls), np.arange(count)]))
        self.n += count
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


def n_blocks(p: FleetProblem) -> int:
    return -(-p.hours // p.routing_block_h)


# --- constraint families ---------------------------------------------------------------------
# Routed work is a share f[k] of the class's demand in routing block k: at hour t the site
# receives demand[t] * f[block(t)] (sent at t, arriving at t + delay; what would arrive after
# the horizon arrives in its last hour).

def _arrival_hour(t_n: int, delay: int) -> np.ndarray:
    return np.minimum(np.arange(t_n) + delay, t_n - 1)


def _backlog_balance(rows: _Rows, f, x, b, dem, blk, delay: int, t_n: int) -> None:
    """b[t] - b[t-1] + x[t] - arrivals[t] = 0: routed work arrives after the transfer delay."""
    t = np.arange(t_n)
    rows.add(np.concatenate([t, t, t[1:], _arrival_hour(t_n, delay)]),
             np.concatenate([b, x, b[:-1], f[blk]]),
             np.concatenate([np.ones(t_n), np.ones(t_n), -np.ones(t_n - 1), -dem]), t_n, 0.0, 0.0)


def _deadline(rows: _Rows, f, b, dem, blk, delay: int, deadline: int, t_n: int) -> None:
    """b[t] <= work sent in hours t-D+1 .. t-delay: what waits at the end of hour t is within its deadline."""
    ri, ci, vi = [np.arange(t_n)], [b], [np.ones(t_n)]
    for k in range(delay, deadline):   # sent at tau = t - k, k = delay .. D-1
        t = np.arange(k, t_n)
        ri.append(t); ci.append(f[blk[t - k]]); vi.append(-dem[t - k])
    rows.add(np.concatenate(ri), np.concatenate(ci), np.concatenate(vi), t_n, -INF, 0.0)


def _capacity(rows: _Rows, x_cols: list[np.ndarray], shares: list[tuple[np.ndarray, np.ndarray]], n, blk,
              units_per_server: float, t_n: int) -> None:
    """batch done + interactive served in hour t <= units_per_server * active servers."""
    t = np.arange(t_n)
    ri = [t] * (len(x_cols) + len(shares) + 1)
    ci = list(x_cols) + [g[blk] for g, _ in shares] + [n]
    vi = [np.ones(t_n)] * len(x_cols) + [dem for _, dem in shares] + [np.full(t_n, -units_per_server)]
    rows.add(np.concatenate(ri), np.concatenate(ci), np.concatenate(vi), t_n, -INF, 0.0)


def _link_throughput(rows: _Rows, routed: list[tuple[np.ndarray, np.ndarray]], blk, limit_gb_per_h: float, t_n: int) -> None:
    """GB sent from one origin to this site in an hour <= the link's throughput."""
    t = np.arange(t_n)
    rows.add(np.concatenate([t] * len(routed)), np.concatenate([f[blk] for f, _ in routed]),
             np.concatenate([gb_h for _, gb_h in routed]), t_n, -INF, limit_gb_per_h)


def _upper_load(rows: _Rows, x_cols: list[np.ndarray], shares: list[tuple[np.ndarray, np.ndarray]], n, h, blk,
                idle_kw: float, kw_per_unit: float, hinge_kw: float, t_n: int) -> None:
    """h[t] >= IT[t] - hinge_kw, IT = idle_kw n + kw_per_unit (batch done + interactive served):
    with a non-negative cost on h, h is the IT power above the hinge (the convex upper slope)."""
    t = np.arange(t_n)
    ri = [t] * (len(x_cols) + len(shares) + 2)
    ci = [h, n] + list(x_cols) + [g[blk] for g, _ in shares]
    vi = [np.ones(t_n), np.full(t_n, -idle_kw)] + [np.full(t_n, -kw_per_unit)] * len(x_cols) \
        + [-kw_per_unit * dem for _, dem in shares]
    rows.add(np.concatenate(ri), np.concatenate(ci), np.concatenate(vi), t_n, -hinge_kw, INF)


def _per_block(values: np.ndarray, blk: np.ndarray, k_n: int) -> np.ndarray:
    return np.bincount(blk, weights=values, minlength=k_n)


def site_block(p: FleetProblem, s: int) -> SiteBlock:
    """The LP block of site ``s`` (its variables, its own constraints, its costs)."""
    t_n, k_n = p.hours, n_blocks(p)
    blk = np.arange(t_n) // p.routing_block_h
    cols, rows = _Cols(), _Rows()
    e_kwh = 1.0 + p.overhead_frac[s]                          # facility kWh per IT kWh
    kg_per_kwh = p.ci_g_per_kwh[s] / 1000.0
    usd_per_kwh = p.price_usd_per_mwh[s] / 1000.0
    acc = {k: [] for k in ("c", "carbon", "cost", "tx", "energy", "lo", "hi")}
    link_col, link_row = [], []
    x_cols: list[np.ndarray] = []
    shares: list[tuple[np.ndarray, np.ndarray]] = []
    routed_by_origin: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}

    def account(n, energy_kwh=0.0, extra_kg=0.0, extra_usd=0.0, tx_kwh=0.0, kg=None, usd=None, lo=0.0, hi=INF):
        energy_kwh = np.broadcast_to(np.asarray(energy_kwh, dtype=float), (n,))
        carbon = (energy_kwh * kg if kg is not None else 0.0) + extra_kg
        cost = (energy_kwh * usd if usd is not None else 0.0) + extra_usd
        carbon, cost = np.broadcast_to(carbon, (n,)), np.broadcast_to(cost, (n,))
        acc["carbon"].append(carbon); acc["cost"].append(cost); acc["energy"].append(energy_kwh)
        acc["tx"].append(np.broadcast_to(np.asarray(tx_kwh, dtype=float), (n,)))
        acc["c"].append(p.carbon_weight * carbon + p.cost_weight * cost)
        acc["lo"].append(np.broadcast_to(np.asarray(lo, dtype=float), (n,)))
        acc["hi"].append(np.broadcast_to(np.asarray(hi, dtype=float), (n,)))

    for c, kind in enumerate(p.kind):
        if not p.allowed[c, s]:
            continue
        o = int(p.origin[c])
        remote = o != s
        dem = p.demand_units[c].astype(float)
        gb = float(p.gb_per_unit[c]) if remote else 0.0
        tx_kwh_h = dem * gb * p.transfer_kwh_per_gb                 # per hour at share 1
        tx_kg_h = tx_kwh_h * 0.5 * (p.ci_g_per_kwh[o] + p.ci_g_per_kwh[s]) / 1000.0
        tx_usd_h = dem * gb * float(p.usd_per_gb[o, s])
        if kind == "batch":
            d = int(p.delay_h[o, s]) if remote else 0
            dl = int(p.deadline_h[c])
            f = cols.add(FAM_R, c, k_n)
            account(k_n, extra_kg=_per_block(tx_kg_h, blk, k_n), extra_usd=_per_block(tx_usd_h, blk, k_n),
                    tx_kwh=_per_block(tx_kwh_h, blk, k_n), lo=0.0, hi=0.0 if dl <= d else 1.0)
            link_col.append(f); link_row.append(c * k_n + np.arange(k_n))
            x = cols.add(FAM_X, c, t_n)
            account(t_n, energy_kwh=p.kw_per_unit[s] * e_kwh, kg=kg_per_kwh, usd=usd_per_kwh)
            b = cols.add(FAM_B, c, t_n)
            bhi = np.full(t_n, INF); bhi[-1] = 0.0                  # all done by the end of the horizon
            account(t_n, hi=bhi)
            _backlog_balance(rows, f, x, b, dem, blk, d, t_n)
            _deadline(rows, f, b, dem, blk, d, dl, t_n)
            x_cols.append(x)
        else:
            f = cols.add(FAM_Y, c, k_n)
            energy = _per_block(dem * p.kw_per_unit[s] * e_kwh, blk, k_n)
            account(k_n, energy_kwh=energy,
                    extra_kg=_per_block(dem * p.kw_per_unit[s] * e_kwh * kg_per_kwh, blk, k_n) + _per_block(tx_kg_h, blk, k_n),
                    extra_usd=_per_block(dem * p.kw_per_unit[s] * e_kwh * usd_per_kwh, blk, k_n) + _per_block(tx_usd_h, blk, k_n),
                    tx_kwh=_per_block(tx_kwh_h, blk, k_n), lo=0.0, hi=1.0)
            link_col.append(f); link_row.append(c * k_n + np.arange(k_n))
            shares.append((f, dem))
        if remote and gb > 0 and np.isfinite(p.link_gb_per_h[o, s]):
            routed_by_origin.setdefault(o, []).append((f, dem * gb))
    n = cols.add(FAM_N, -1, t_n)
    account(t_n, energy_kwh=p.idle_kw[s] * e_kwh, kg=kg_per_kwh, usd=usd_per_kwh,
            lo=float(p.min_active[s]), hi=float(p.servers[s]))
    _capacity(rows, x_cols, shares, n, blk, float(p.units_per_server[s]), t_n)
    if p.hinge_kw is not None and np.isfinite(p.hinge_kw[s]) and np.any(p.hinge_frac[s] > 0):
        h = cols.add(FAM_H, -1, t_n)
        # bounded by the most IT power can exceed the hinge, so a negative price (cost objective)
        # cannot make the LP unbounded
        it_max = float(p.servers[s]) * (float(p.idle_kw[s]) + float(p.kw_per_unit[s]) * float(p.units_per_server[s]))
        account(t_n, energy_kwh=np.maximum(p.hinge_frac[s], 0.0), kg=kg_per_kwh, usd=usd_per_kwh,
                hi=max(it_max - float(p.hinge_kw[s]), 0.0))
        _upper_load(rows, x_cols, shares, n, h, blk, float(p.idle_kw[s]), float(p.kw_per_unit[s]), float(p.hinge_kw[s]), t_n)
    for o, routed in sorted(routed_by_origin.items()):
        _link_throughput(rows, routed, blk, float(p.link_gb_per_h[o, s]), t_n)

    a = sp.csc_matrix((np.concatenate(rows.v), (np.concatenate(rows.r), np.concatenate(rows.c))), shape=(rows.m, cols.n))
    a.sum_duplicates()
    return SiteBlock(
        key=f"{p.sites[s]}:{s}:{uuid.uuid4().hex[:12]}", site=s, c=np.concatenate(acc["c"]), a=a,
        row_lo=np.concatenate(rows.lo), row_hi=np.concatenate(rows.hi),
        col_lo=np.concatenate(acc["lo"]), col_hi=np.concatenate(acc["hi"]),
        link_col=np.concatenate(link_col) if link_col else np.zeros(0, dtype=int),
        link_row=np.concatenate(link_row) if link_row else np.zeros(0, dtype=int),
        meta=np.vstack(cols.meta), carbon_kg=np.concatenate(acc["carbon"]), cost_usd=np.concatenate(acc["cost"]),
        transfer_kwh=np.concatenate(acc["tx"]), energy_kwh=np.concatenate(acc["energy"]),
    )


def site_blocks(p: FleetProblem) -> list[SiteBlock]:
    return [site_block(p, s) for s in range(p.n_sites)]


# --- solving ---------------------------------------------------------------------------------

def _highs_lp(c, a: sp.csc_matrix, row_lo, row_hi, col_lo, col_hi):
    """A single-threaded HiGHS loaded with ``min c x``, ``row_lo <= A x <= row_hi``,
    ``col_lo <= x <= col_hi``."""
    h = new_highs()
    h.setOptionValue("threads", 1)
    return pass_lp(h, c, col_lo, col_hi, row_lo, row_hi, a, what="the fleet LP")


def _run(h, what: str):
    import highspy

    run_highs(h)
    status = h.getModelStatus()
    if status != highspy.HighsModelStatus.kOptimal:
        raise FleetInfeasible(f"{what}: {h.modelStatusToString(status)}")
    sol = h.getSolution()
    return np.asarray(sol.col_value), np.asarray(sol.row_dual), float(h.getInfo().objective_function_value)


def _demand_vector(p: FleetProblem) -> np.ndarray:
    """Right-hand side of the coupling rows: each class's shares in each block sum to 1."""
    return np.ones(len(p.classes) * n_blocks(p))


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

    def shares(self) -> np.ndarray:
        """(C, S, K) routing shares: the part of each class's work in each block sent to each site."""
        p = self.problem
        out = np.zeros((len(p.classes), p.n_sites, n_blocks(p)))
        for blk, z in zip(self.blocks, self.z):
            m = np.isin(blk.meta[:, 0], (FAM_R, FAM_Y))
            out[blk.meta[m, 1], blk.site, blk.meta[m, 2]] = z[m]
        return out

    def routed(self) -> np.ndarray:
        """(C, S, T) work of each class sent to each site (batch routed, interactive served)."""
        p = self.problem
        blk = np.arange(p.hours) // p.routing_block_h
        return self.shares()[:, :, blk] * p.demand_units[:, None, :]

    def done(self) -> np.ndarray:
        """(C, S, T) work of each class done at each site (interactive: served as it comes)."""
        p = self.problem
        out = self.routed()
        out[[c for c, k in enumerate(p.kind) if k == "batch"]] = 0.0
        for blk, z in zip(self.blocks, self.z):
            m = blk.meta[:, 0] == FAM_X
            out[blk.meta[m, 1], blk.site, blk.meta[m, 2]] = z[m]
        return out

    def work_units(self) -> np.ndarray:
        """(S, T) work done at each site (batch done + interactive served)."""
        return self.done().sum(axis=0)

    def active_servers(self) -> np.ndarray:
        out = np.zeros((self.problem.n_sites, self.problem.hours))
        for blk, z in zip(self.blocks, self.z):
            m = blk.meta[:, 0] == FAM_N
            out[blk.site, blk.meta[m, 2]] = z[m]
        return out

    def transfer_kwh(self) -> np.ndarray:
        """(S,) transfer energy of the work each site received [kWh]."""
        return np.array([float(blk.transfer_kwh @ z) for blk, z in zip(self.blocks, self.z)])


def solve_joint(p: FleetProblem, blocks: list[SiteBlock] | None = None) -> FleetPlan:
    """The whole fleet as one LP (blocks on the diagonal, the coupling rows below)."""
    t0 = time.perf_counter()
    blocks = blocks if blocks is not None else site_blocks(p)
    offs = np.cumsum([0] + [b.c.size for b in blocks])
    n_couple = len(p.classes) * n_blocks(p)
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


def price_block(block: SiteBlock, lam_link: np.ndarray | None, fix_link: np.ndarray | None = None) -> tuple[float, float, np.ndarray]:
    """Solve a site's block at coupling prices ``lam_link`` (one per linking column).

    Returns (priced objective ``min (c - lam) z``, true cost ``c z``, z). ``fix_link`` instead
    pins the linking columns at the given shares (the site's best plan for that routing).

    Stateless: every call loads a fresh HiGHS model, so the answer depends on the arguments
    only, not on which worker solved what before. The decomposition then runs the same
    iterations on any number of workers, any worker can take any site, and a lost worker's
    solve can be re-run elsewhere. These LPs of a few thousand columns solve from scratch in
    tens of ms (benchmarks/bench_fleet.py: 16 sites, 89 rounds of 32 solves in about 100 s on
    one worker).
    """
    name = block.key.split(":")[0]
    c, col_lo, col_hi = block.c, block.col_lo, block.col_hi
    if fix_link is not None:
        col_lo, col_hi = col_lo.astype(float), col_hi.astype(float)
        col_lo[block.link_col] = col_hi[block.link_col] = np.asarray(fix_link, dtype=float)
        h = _highs_lp(c, block.a, block.row_lo, block.row_hi, col_lo, col_hi)
        try:
            z, _, obj = _run(h, f"site {name} with its routing fixed")
        except FleetInfeasible:
            return INF, INF, None        # this routing overloads the site: no plan (the caller decides)
        return obj, obj, z
    priced = c.astype(float)
    if lam_link is not None:
        priced[block.link_col] -= lam_link
    h = _highs_lp(priced, block.a, block.row_lo, block.row_hi, col_lo, col_hi)
    z, _, obj = _run(h, f"site {name} pricing")
    return obj, float(c @ z), z


def _serial_map(func: Callable, args: list[tuple]) -> list:
    return [func(*a) for a in args]


def _own_demand(p: FleetProblem, blk: SiteBlock) -> np.ndarray:
    """Linking-column values that keep each class's work at its origin (zero elsewhere)."""
    cls = blk.meta[blk.link_col, 1]
    return np.where(p.origin[cls] == blk.site, 1.0, 0.0)


def solve_independent(p: FleetProblem, blocks: list[SiteBlock] | None = None, map_fn: Callable = _serial_map) -> FleetPlan:
    """Each site planned alone with its own work (temporal shifting and consolidation, no moves)."""
    t0 = time.perf_counter()
    blocks = blocks if blocks is not None else site_blocks(p)
    for c, kind in enumerate(p.kind):
        if not p.allowed[c, p.origin[c]]:
            raise FleetInfeasible(f"class {p.classes[c]}: its residency rule excludes its own origin site, "
                                  "so it cannot be planned at home")
    res = map_fn(price_block, [(b, None, _own_demand(p, b)) for b in blocks])
    for blk, r in zip(blocks, res):
        if r[2] is None:
            raise FleetInfeasible(f"planned alone, site {p.sites[blk.site]} cannot do its own work within its deadlines "
                                  "and capacity")
    z = [r[2] for r in res]
    return FleetPlan(p, blocks, z, float(sum(r[1] for r in res)), "independent", time.perf_counter() - t0)


@dataclass
class DecompositionLog:
    """One row per iteration: bounds, gap, columns added, seconds in pricing and in the master."""

    rows: list[dict] = field(default_factory=list)


class _Master:
    """The restricted master LP, kept loaded in HiGHS: new site plans are appended as columns
    and the LP is re-solved from the previous basis. Rows: the coupling rows (shares sum to one)
    then one convexity row per site; penalised slacks keep it feasible from the start."""

    def __init__(self, n_sites: int, dem: np.ndarray, big_m: float):
        import highspy

        self.n_couple, self.n_sites = dem.size, n_sites
        slack = np.arange(self.n_couple)
        a = sp.csc_matrix((np.concatenate([np.ones(self.n_couple), -np.ones(self.n_couple)]),
                           (np.concatenate([slack, slack]), np.arange(2 * self.n_couple))),
                          shape=(self.n_couple + n_sites, 2 * self.n_couple))
        rhs = np.concatenate([dem, np.ones(n_sites)])
        self.h = _highs_lp(np.full(2 * self.n_couple, big_m), a, rhs, rhs, np.zeros(2 * self.n_couple),
                           np.full(2 * self.n_couple, INF))
        self.n_cols = 0
        self._highspy = highspy

    def add(self, cost: float, rows: np.ndarray, vals: np.ndarray, site: int) -> None:
        idx = np.concatenate([rows, [self.n_couple + site]]).astype(np.int32)
        val = np.concatenate([vals, [1.0]]).astype(float)
        self.h.addCol(float(cost), 0.0, INF, idx.size, idx, val)
        self.n_cols += 1

    def solve(self):
        """(weights of the site plans, row duals, objective, total slack)."""
        x, duals, obj = _run(self.h, "fleet master LP")
        return x[2 * self.n_couple:], duals, obj, float(x[:2 * self.n_couple].sum())


def _routing_repair(p: FleetProblem, blocks: list[SiteBlock], zs: list[np.ndarray]) -> list[np.ndarray]:
    """Shares that sum to one in every class-block, scaled from what the sites asked for at
    the current prices ``zs``; a class-block nobody asked for stays at its origin."""
    k_n = n_blocks(p)
    asked = np.zeros((len(p.classes), p.n_sites, k_n))
    for blk, z in zip(blocks, zs):
        asked[blk.meta[blk.link_col, 1], blk.site, blk.meta[blk.link_col, 2]] = np.maximum(z[blk.link_col], 0.0)
    total = asked.sum(axis=1)
    share = np.where(total[:, None, :] > 1e-9, asked / np.maximum(total[:, None, :], 1e-12), 0.0)
    c_idx, k_idx = np.nonzero(total <= 1e-9)
    share[c_idx, p.origin[c_idx], k_idx] = 1.0
    return [share[blk.meta[blk.link_col, 1], blk.site, blk.meta[blk.link_col, 2]] for blk in blocks]


def _try_fixed(map_fn, handles, shares):
    """Every site's best plan for the given routing shares, or None if a site cannot carry it."""
    res = map_fn(price_block, [(h, None, v) for h, v in zip(handles, shares)])
    return None if any(r[2] is None for r in res) else res


def solve_decomposed(p: FleetProblem, map_fn: Callable = _serial_map, gap_tol: float = 5e-3, max_iter: int = 200,
                     smoothing: float = 0.8, blocks: list[SiteBlock] | None = None, map_blocks: Callable | None = None,
                     initial: FleetPlan | None = None, initial_scales: Sequence[float] = (1.0,), lam0_mode: str = "mean") -> FleetPlan:
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
    costs, cols_site, zs = [], [], []
    master = _Master(n_s, dem, big_m)

    def add(s, cost, z):
        blk = blocks[s]
        vals = z[blk.link_col]
        nz = np.abs(vals) > 1e-12
        master.add(cost, blk.link_row[nz], vals[nz], s)
        costs.append(cost); cols_site.append(s); zs.append(z)

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
    site_unit = (p.carbon_weight * p.ci_g_per_kwh / 1000.0 + p.cost_weight * p.price_usd_per_mwh / 1000.0) \
        * p.kw_per_unit[:, None] * (1 + p.overhead_frac)                      # (S, T) per unit of work
    home = site_unit[o]
    if lam0_mode == "cheapest":
        masked = np.where(p.allowed[:, :, None], site_unit[None, :, :], INF)
        home = masked.min(axis=1)
    elif lam0_mode == "mean":
        masked = np.where(p.allowed[:, :, None], site_unit[None, :, :], 0.0)
        home = masked.sum(axis=1) / np.maximum(p.allowed.sum(axis=1), 1)[:, None]
    unit = home * p.demand_units
    blk_h = np.arange(p.hours) // p.routing_block_h
    lam0 = np.stack([np.bincount(blk_h, weights=u, minlength=n_blocks(p)) for u in unit]).reshape(-1)
    # A first round at a spread of price levels around lam0 seeds the master with varied plans.
    lam_best, lb_best = lam0, -INF
    args = [(h, scale * lam0[blk.link_row], None) for scale in initial_scales for h, blk in zip(handles, blocks)]
    res0 = map_fn(price_block, args)
    for j, scale in enumerate(initial_scales):
        part = res0[j * n_s:(j + 1) * n_s]
        lb = float(sum(r[0] for r in part) + scale * lam0 @ dem)
        if lb > lb_best:
            lb_best, lam_best = lb, scale * lam0
        for s, r in enumerate(part):
            add(s, r[1], r[2])
        if len(initial_scales) > 1:
            fixed = _try_fixed(map_fn, handles, _routing_repair(p, blocks, [r[2] for r in part]))
            for s, r in enumerate(fixed or []):
                add(s, r[1], r[2])
    log = DecompositionLog()
    alpha = smoothing
    ub = INF
    for it in range(max_iter):
        tm = time.perf_counter()
        if costs:
            x, duals, ub_m, slack = master.solve()
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
        improved = lb > lb_best + 1e-9 * abs(lb_best)
        if improved:
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
        fixed = _try_fixed(map_fn, handles, _routing_repair(p, blocks, [r[2] for r in res]))
        if fixed is not None:
            for s, (_, cost, z) in enumerate(fixed):
                add(s, cost, z)
                added += 1
            ub = min(ub, float(sum(r[1] for r in fixed)))
        t_price += time.perf_counter() - t_fix
        gap = (ub - lb_best) / max(abs(ub), 1e-12) if np.isfinite(ub) else INF
        log.rows.append({"iteration": it, "upper_bound": ub, "lower_bound": lb_best, "gap": gap, "columns_added": added,
                         "master_s": t_master, "pricing_s": t_price, "alpha": alpha})
        if gap <= gap_tol:
            break
        if added == 0 and alpha == 0.0:
            break
        # Adaptive smoothing: a step that raised the bound earns the master's duals more trust
        # (less smoothing); a step that did not, less (Wentges 1997; Pessoa et al. 2018).
        if smoothing > 0:
            alpha = max(0.0, alpha - 0.1) if improved else min(smoothing, alpha + 0.1)
        if added == 0:
            alpha = 0.0       # mis-priced at the smoothed point: price at the master's duals next
    x, duals, ub, slack = master.solve()
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
    """The planner's own accounting of a plan (its linear model): tCO2, MWh, USD, transfers.
    The sites' fixed draw (``fixed_kw``, the same whatever the plan) is counted too."""
    p = plan.problem
    fixed = np.zeros_like(p.ci_g_per_kwh) if p.fixed_kw is None else p.fixed_kw          # kW for 1 h = kWh
    carbon = sum(float(b.carbon_kg @ z) for b, z in zip(plan.blocks, plan.z)) + float((fixed * p.ci_g_per_kwh).sum()) / 1000.0
    cost = sum(float(b.cost_usd @ z) for b, z in zip(plan.blocks, plan.z)) + float((fixed * p.price_usd_per_mwh).sum()) / 1000.0
    energy = sum(float(b.energy_kwh @ z) for b, z in zip(plan.blocks, plan.z)) + float(fixed.sum())
    return {"tco2": carbon / 1000.0, "cost_usd": cost, "facility_mwh": energy / 1000.0,
            "transfer_mwh": float(plan.transfer_kwh().sum()) / 1000.0, "objective": plan.objective}
