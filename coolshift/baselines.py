"""The baseline rules: ``static``, ``best_practice`` and ``carbon_greedy`` as pure functions of (site, forecast, state).

The controllers that apply them step by step (and ``explore``) are :mod:`coolshift.control.policies`;
the optimiser's fallback plan is the ``best_practice`` rule. Setpoint rules come from
:mod:`coolshift.setpoints`.

Defined once here and in docs/simulator.md; never weaken them to flatter the optimiser.

- **static**: the conventional legacy controller. Supply air fixed at 18 degC (the bottom of
  the ASHRAE recommended range, where many legacy rooms run: Uptime Institute Global Data
  Center Survey 2019-2023, about half of operators supply 18-21 degC), chilled water fixed at
  the site's ``chw_setpoint_initial_c``, all servers on, batch run as soon as it arrives
  (first in, first out, as fast as capacity allows), no offload.
- **best_practice**: supply air raised toward the ASHRAE recommended 27 degC maximum inlet
  with a margin for the zone's air management (2 K full containment, 4 K partial, 6 K none:
  the gap between supply and hottest inlet that each achieves, ASHRAE TC 9.9 "Best Practices
  for Datacom Facility Energy Efficiency", 2nd ed. 2009 ch. 4), within the zone's setpoint
  limits and ramped at the allowed rate; chilled water at the warmest value that still
  delivers the lowest zone supply (supply - CRAH approach - 1 K); servers consolidated to the
  work they serve plus 20 % headroom, switched on one step ahead of need (boot time) and never
  below ``min_active_servers``; batch on arrival; no offload. Not carbon-aware.
- **carbon_greedy**: best_practice plus batch work shifted to the lowest-intensity steps before
  its deadline (Wiesner et al. 2021, "Let's Wait Awhile: how temporal workload shifting can
  reduce carbon emissions in the cloud", Middleware): earliest deadline first, each hour's
  arrivals placed in the cheapest free slots of its window using the forecast intensity.
- **explore**: a commissioning-style test for training data: best_practice with the supply
  setpoints, chilled-water setpoint and consolidation headroom stepped at random (seeded)
  every ``hold_h`` hours within the safe envelope, ramped at the allowed rate, and batch
  work held in some blocks and caught up after (within its deadline).

Rule baselines are causal in effect: they use each step's own demand (what a reactive
controller observes), so deciding a day at once with the actual data equals deciding step
by step. carbon_greedy uses the forecast intensity and demand up to its deadlines.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from coolshift.actions import Actions, SimState
from coolshift.config import SiteConfig
from coolshift.schema import CARBON_GCO2_PER_KWH, demand_col
from coolshift.setpoints import chw_for_supply_c, ramp_const, rate_per_step_c, safe_supply_max_c
from coolshift.site_arrays import SiteArrays
from coolshift.workload import allocate_groups, allocate_to_pools, lindley_queue, pool_groups

__all__ = [
    "STATIC_SUPPLY_C",
    "HEADROOM_FRAC",
    "site_arrays",
    "forecast_column",
    "forecast_length",
    "demand_matrix",
    "full_capacity",
    "run_on_arrival",
    "serve_load",
    "consolidate",
    "static_actions",
    "best_practice_actions",
    "carbon_greedy_actions",
]

STATIC_SUPPLY_C = 18.0  # legacy practice (see module docstring)
HEADROOM_FRAC = 0.2  # consolidation headroom above the work served (typical N+20 % practice)
BIG = 1e18


@dataclass(frozen=True)
class _PoolArrays:
    servers: np.ndarray
    per: np.ndarray  # capacity units/h per server
    lo: np.ndarray  # min_active_servers
    boot_s: np.ndarray
    cap_full: np.ndarray  # units/h with every server on


_CACHE: dict[int, tuple] = {}


def _cached(site: SiteConfig) -> tuple[SiteArrays, _PoolArrays]:
    hit = _CACHE.get(id(site))
    if hit is None or hit[0] is not site:
        if len(_CACHE) > 32:
            _CACHE.clear()
        a = SiteArrays.from_site(site)
        pa = _PoolArrays(a.servers, a.capacity_units_per_server, a.min_active_servers, a.boot_time_s,
                         a.capacity_units_per_h)
        hit = _CACHE[id(site)] = (site, a, pa)
    return hit[1], hit[2]


def site_arrays(site: SiteConfig) -> SiteArrays:
    return _cached(site)[0]


def _pools(site: SiteConfig) -> _PoolArrays:
    return _cached(site)[1]


def forecast_column(forecast, name: str, n: int) -> np.ndarray:
    """First ``n`` values of a forecast column; ``forecast`` is a frame or a dict of arrays."""
    if isinstance(forecast, pd.DataFrame):
        if name not in forecast.columns:
            raise ValueError(f"forecast frame: missing column {name!r}")
        return forecast[name].to_numpy(dtype=float)[:n]
    return np.asarray(forecast[name], dtype=float)[:n]


def forecast_length(forecast) -> int:
    return len(forecast) if isinstance(forecast, pd.DataFrame) else len(next(iter(forecast.values())))


def demand_matrix(site: SiteConfig, forecast, n: int) -> np.ndarray:
    return np.column_stack([forecast_column(forecast, demand_col(c.name), n) for c in site.workload_classes])


def full_capacity(site: SiteConfig, n: int) -> np.ndarray:
    cap = _pools(site).cap_full
    return np.broadcast_to(cap, (n, len(cap)))


def _groups(site: SiteConfig):
    """(group of each pool, eligibility classes x groups, classes each group serves, pools x groups one-hot)."""
    names = site_arrays(site)
    gop, elig_g, spec_g = pool_groups(names.eligible)
    onehot = np.zeros((len(gop), elig_g.shape[1]))
    onehot[np.arange(len(gop)), gop] = 1.0
    return gop, elig_g, spec_g, onehot


def _alloc_g(want_col: np.ndarray, free_g: np.ndarray, elig_row: np.ndarray, spec_g: np.ndarray) -> np.ndarray:
    """Serve one class on the free group capacity (in place); returns what was served."""
    served, used = allocate_groups(want_col[:, None], free_g, elig_row[None], spec_g)
    free_g *= 1.0 - used
    return served[:, 0]


def run_on_arrival(site: SiteConfig, names: SiteArrays, dem: np.ndarray, cap: np.ndarray, q0: np.ndarray, step_h: float):
    """Batch served as soon as capacity allows (FIFO per class, classes in config order).

    ``cap``: capacity per pool (steps x pools). Returns (release units/h per batch class,
    load per pool units/h of everything served). Works on pool groups (same eligibility).
    """
    gop, elig_g, spec_g, onehot = _groups(site)
    cap_g = np.asarray(cap, dtype=float) @ onehot
    free_g = cap_g.copy()
    n = dem.shape[0]
    for name in names.interactive:
        c = names.classes.index(name)
        _alloc_g(dem[:, c], free_g, elig_g[c], spec_g)
    rel = np.zeros((n, len(names.batch)))
    for b, name in enumerate(names.batch):
        c = names.classes.index(name)
        avail = (free_g * elig_g[c]).sum(axis=1)
        _, served = lindley_queue(q0[b], dem[:, c] * step_h, avail * step_h)
        rel[:, b] = served / step_h
        _alloc_g(rel[:, b], free_g, elig_g[c], spec_g)
    used = 1.0 - np.divide(free_g, cap_g, out=np.ones_like(free_g), where=cap_g > 0)
    return rel, cap * used[:, gop]


def serve_load(names: SiteArrays, dem: np.ndarray, rel: np.ndarray, cap: np.ndarray, site: SiteConfig | None = None) -> np.ndarray:
    want = np.zeros_like(dem)
    ii = [names.classes.index(c) for c in names.interactive]
    bi = [names.classes.index(c) for c in names.batch]
    want[:, ii] = dem[:, ii]
    want[:, bi] = rel
    order = ii + bi
    _, load = allocate_to_pools(want[:, order], cap, names.eligible[order])
    return load


def consolidate(site: SiteConfig, load: np.ndarray, headroom: float, prev_active: np.ndarray, step_h: float) -> np.ndarray:
    """Active servers per pool: the work each pool carries plus ``headroom``, whole servers,
    within [min_active_servers, servers].

    Servers switched on in a step give no capacity while they boot (``boot_time_s`` of the
    step), so a rise from N' to N servers' worth of need switches on
    ``(N - b N') / (1 - b)`` servers, ``b`` the booting share of the step; where that exceeds
    the pool, the servers are switched on one step earlier instead. ``prev_active`` are the
    servers on before the first step; pass one row more than needed to look one step ahead.
    """
    pa = _pools(site)
    per, lo, hi = pa.per, pa.lo, pa.servers
    need = np.clip(np.ceil(load * (1.0 + headroom) / per - 1e-9), lo, hi)
    bf = np.minimum(pa.boot_s / (step_h * 3600.0), 0.95)
    prev = np.vstack([np.asarray(prev_active, dtype=float)[None], need[:-1]])
    cover = np.ceil((need - bf * prev) / (1.0 - bf) - 1e-9)
    active = np.minimum(np.maximum(need, cover), hi)
    early = cover[1:] > hi  # cannot cover the boot in the step itself: boot a step ahead
    active[:-1] = np.where(early, np.maximum(active[:-1], need[1:]), active[:-1])
    return np.clip(active, lo, hi)


def static_actions(site: SiteConfig, forecast, state: SimState, n: int, step_h: float) -> Actions:
    """The static baseline for ``n`` steps (pure function of site, forecast frame and state)."""
    names = site_arrays(site)
    sp = np.array([min(max(STATIC_SUPPLY_C, z.supply_setpoint_min_c), z.supply_setpoint_max_c) for z in site.zones])
    supply = ramp_const(sp, state.supply_c, rate_per_step_c(site, step_h), n)
    chw = np.full(n, site.cooling.chiller.chw_setpoint_initial_c)
    dem = demand_matrix(site, forecast, n)
    cap = full_capacity(site, n)
    rel, _ = run_on_arrival(site, names, dem, cap, state.queue_units, step_h)
    return Actions(
        supply_c=supply, chw_c=chw, active_servers=np.broadcast_to(_pools(site).servers, (n, len(names.pools))).copy(),
        release_units_per_h=rel, offload_units_per_h=np.zeros((n, len(names.edges), len(names.offloadable))),
    )


def _best_practice_setpoints(site: SiteConfig, state: SimState, n: int, step_h: float):
    supply = ramp_const(safe_supply_max_c(site), state.supply_c, rate_per_step_c(site, step_h), n)
    return supply, chw_for_supply_c(site, supply)


def _consolidated(site, names, forecast, n, step_h, rel_fn, headroom, prev_active):
    """Release and pool loads (from ``rel_fn``) and consolidated servers for n steps (one step look-ahead)."""
    m = min(n + 1, forecast_length(forecast))
    dem = demand_matrix(site, forecast, m)
    cap = full_capacity(site, m)
    rel, load = rel_fn(dem, cap)
    active = consolidate(site, load, headroom, prev_active, step_h)
    return rel[:n], active[:n]


def best_practice_actions(
    site: SiteConfig, forecast, state: SimState, n: int, step_h: float, headroom: float = HEADROOM_FRAC
) -> Actions:
    """The best-practice baseline for ``n`` steps: a pure function of (site, forecast, state).

    ``forecast``: frame (or dict of column arrays) starting at the first step, with the
    ``<class>_units_per_h`` demand columns.

    The optimiser uses it as its fallback plan.
    """
    names = site_arrays(site)
    supply, chw = _best_practice_setpoints(site, state, n, step_h)
    rel, active = _consolidated(
        site, names, forecast, n, step_h,
        lambda dem, cap: run_on_arrival(site, names, dem, cap, state.queue_units, step_h), headroom,
        state.active_servers,
    )
    return Actions(supply_c=supply, chw_c=chw, active_servers=active, release_units_per_h=rel,
                   offload_units_per_h=np.zeros((n, len(names.edges), len(names.offloadable))))


def _greedy_release(
    site: SiteConfig, names: SiteArrays, dem: np.ndarray, cap: np.ndarray, gco2: np.ndarray,
    pending: list[tuple[np.ndarray, np.ndarray]], step_h: float, block: int,
) -> np.ndarray:
    """Let's-Wait-Awhile placement with capacity: jobs (pending work and each block's arrivals)
    are first placed as soon as possible, earliest deadline first; then each job in turn moves
    into the lowest-intensity free slots of its window (ties: earlier). Moving only into free
    capacity keeps every deadline that the as-soon-as-possible schedule meets. All batch
    classes share the capacity left by interactive work on batch-eligible pools.
    Returns release units/h (steps x batch)."""
    W = dem.shape[0]
    ii = [names.classes.index(c) for c in names.interactive]
    gop, elig_g, spec_g, onehot = _groups(site)
    free_g = np.asarray(cap, dtype=float) @ onehot
    for c in ii:
        _alloc_g(dem[:, c], free_g, elig_g[c], spec_g)
    bmask = elig_g[[names.classes.index(c) for c in names.batch]].any(axis=0)
    step_units = free_g[:, bmask].sum(axis=1) * step_h  # batch capacity per step [units]
    # slots are whole blocks (hours): servers are not cycled within the hour
    nb_ = (W + block - 1) // block
    bid = np.arange(W) // block
    slot_units = np.bincount(bid, weights=step_units, minlength=nb_)
    g_block = np.bincount(bid, weights=gco2, minlength=nb_) / np.bincount(bid, minlength=nb_)
    jobs = []  # (due block, start block, class, units)
    for b in range(len(names.batch)):
        due, units = pending[b]
        for d, u in zip(due, units):
            jobs.append(((int(d) + 1) // block - 1, 0, b, float(u)))
        c = names.classes.index(names.batch[b])
        dsteps = max(1, int(round(names.deadline_h[b] / step_h)))
        arr = np.bincount(bid, weights=dem[:, c] * step_h, minlength=nb_)
        for k in np.flatnonzero(arr > 0):
            # a block's arrivals can run from the next block on, and must finish by the last
            # whole block before the deadline of the block's first arrival
            jobs.append(((k * block + dsteps) // block - 1, k + 1, b, float(arr[k])))
    jobs = [j for j in jobs if j[1] < nb_]
    jobs.sort(key=lambda j: (j[0], j[1]))
    rank = np.lexsort((np.arange(nb_), g_block))  # by intensity, then time
    pos = np.empty(nb_, dtype=int)
    pos[rank] = np.arange(nb_)

    def fill(order: np.ndarray, units: float):
        f = slot_units[order]
        take = np.clip(units - (np.cumsum(f) - f), 0.0, f)
        slot_units[order] -= take
        return order, take

    # pass 1: as soon as possible (first in, first out): feasible whenever run-on-arrival is
    placed = [fill(np.arange(max(start, 0), nb_), units) for _, start, _, units in jobs]
    # pass 2: each job in turn moves to the cheapest free slots of its window; it can always
    # return to its own slots, so this never makes work later than pass 1
    for j, (due, start, b, units) in enumerate(jobs):
        old_i, old_t = placed[j]
        slot_units[old_i] += old_t
        end = min(due, nb_ - 1)
        got = float(old_t.sum())
        if end >= start and got > 0:
            win = np.arange(start, end + 1)
            in_win = float(old_t[old_i <= end].sum())  # what pass 1 managed before the deadline
            i1, t1 = fill(win[np.argsort(pos[win], kind="stable")], in_win)
            rest = got - float(t1.sum())
            i2, t2 = fill(np.arange(end + 1, nb_), rest) if rest > 1e-9 else (np.zeros(0, int), np.zeros(0))
            placed[j] = (np.concatenate([i1, i2]), np.concatenate([t1, t2]))
        else:
            placed[j] = fill(old_i, got)
    alloc_b = np.zeros((nb_, len(names.batch)))
    for (_, _, b, _), (i, t) in zip(jobs, placed):
        np.add.at(alloc_b[:, b], i, t)
    # spread each block's work over its steps in proportion to their free capacity
    tot = np.bincount(bid, weights=step_units, minlength=nb_)
    share = np.divide(step_units, tot[bid], out=np.zeros(W), where=tot[bid] > 0)
    alloc = alloc_b[bid] * share[:, None]
    return alloc / step_h


def carbon_greedy_actions(
    site: SiteConfig, forecast, state: SimState, n: int, step_h: float,
    pending: list[tuple[np.ndarray, np.ndarray]], step0: int = 0, headroom: float = HEADROOM_FRAC,
) -> Actions:
    """best_practice with batch placed by the Let's-Wait-Awhile rule (see :func:`_greedy_release`).

    ``pending[b]`` = (due step, units) of queued work (absolute steps; ``step0`` is this
    interval's first step). The plan looks ahead to the longest deadline.
    """
    names = site_arrays(site)
    supply, chw = _best_practice_setpoints(site, state, n, step_h)
    look = n + int(np.ceil(max(names.deadline_h, default=0.0) / step_h)) + 1
    W = min(look, forecast_length(forecast))
    dem = demand_matrix(site, forecast, W)
    cap = full_capacity(site, W)
    gco2 = forecast_column(forecast, CARBON_GCO2_PER_KWH, W)
    block = max(1, int(round(1.0 / step_h)))
    pend = [(d - step0, u) for d, u in pending]
    rel_all = _greedy_release(site, names, dem, cap, gco2, pend, step_h, block)
    m = min(n + 1, W)
    rel = rel_all[:m]
    load = serve_load(names, dem[:m], rel, cap[:m])
    active = consolidate(site, load, headroom, state.active_servers, step_h)[:n]
    return Actions(supply_c=supply, chw_c=chw, active_servers=active, release_units_per_h=rel[:n],
                   offload_units_per_h=np.zeros((n, len(names.edges), len(names.offloadable))))


