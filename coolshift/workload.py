"""Workload: allocating work to server pools, batch queues, lateness. Work in units (see config).

Shared by the simulator (its physics of where work runs), the baseline rules
(:mod:`coolshift.baselines`) and the optimiser's pinned run-on-arrival queue: one account of
how work lands on pools and waits in queues, below all three.

Interactive work must be served in the step it arrives or it counts as an SLA violation.
Batch work waits in a first-in-first-out queue per class and must be served within its
class's ``deadline_h`` of arriving; what is served later is *late* (with how late).

All functions are vectorised over steps (axis 0) and classes or pools (axis 1); a run is
processed in chunks with the queue state carried from chunk to chunk.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["pool_groups", "allocate_groups", "allocate_to_pools", "lindley_queue", "lateness"]


def pool_groups(eligible, open_to=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group pools with the same eligibility and openness (they always end at the same utilisation).

    ``open_to``: how many classes each pool serves in the whole site (default: counted from
    ``eligible``; pass it when ``eligible`` holds only some of the classes). Returns (group
    index per pool, eligibility per group: classes x groups, classes each group is open to)."""
    eligible = np.asarray(eligible, dtype=bool)
    spec = eligible.sum(axis=0) if open_to is None else np.asarray(open_to)
    key = np.vstack([eligible.astype(np.int64), spec.astype(np.int64)[None]])
    return _pool_groups(key.tobytes(), key.shape)


@lru_cache(maxsize=64)
def _pool_groups(raw: bytes, shape: tuple):
    key = np.frombuffer(raw, dtype=np.int64).reshape(shape)
    uniq, inv = np.unique(key.T, axis=0, return_inverse=True)
    return inv.reshape(-1), uniq.T[:-1].astype(bool), uniq.T[-1]


@lru_cache(maxsize=64)
def _group_onehot(raw: bytes, shape: tuple) -> np.ndarray:
    gop, elig_g, _ = _pool_groups(raw, shape)
    onehot = np.zeros((shape[1], elig_g.shape[1]))
    onehot[np.arange(shape[1]), gop] = 1.0
    return onehot


def allocate_groups(want, cap_g, elig_g, spec_g=None) -> tuple[np.ndarray, np.ndarray]:
    """Serve each class's wanted work on its eligible pool groups, classes in column order.

    ``want`` (steps x classes) [units/h], ``cap_g`` (steps x groups) [units/h], ``elig_g``
    (classes x groups) bool, ``spec_g`` classes each group is open to (default from
    ``elig_g``). A class fills its most specialised eligible groups first (open to the fewest
    classes, so general pools stay free for the others), sharing within a tier in proportion
    to free capacity, so every pool of a group ends at the same utilisation.
    Returns (served steps x classes, used fraction of capacity steps x groups).
    """
    want = np.asarray(want, dtype=float)
    elig_g = np.asarray(elig_g, dtype=bool)
    spec_g = elig_g.sum(axis=0) if spec_g is None else np.asarray(spec_g, dtype=np.int64)
    cap_g = np.asarray(cap_g, dtype=float)
    free = cap_g.copy()
    served = np.zeros_like(want)
    for c, tiers in enumerate(_tiers(elig_g.tobytes(), elig_g.shape, spec_g.astype(np.int64).tobytes())):
        left = want[:, c].copy()
        for el in tiers:
            f = free[:, el]
            tot = f.sum(axis=1)
            s = np.minimum(left, tot)
            keep = 1.0 - np.divide(s, tot, out=np.zeros_like(s), where=tot > 0)
            free[:, el] = f * keep[:, None]
            left -= s
            served[:, c] += s
    used = 1.0 - np.divide(free, cap_g, out=np.ones_like(free), where=cap_g > 0)
    return served, np.clip(used, 0.0, 1.0)


@lru_cache(maxsize=64)
def _tiers(raw: bytes, shape: tuple, spec_raw: bytes) -> list[list[np.ndarray]]:
    """Per class, its eligible groups as index arrays, most specialised tier first."""
    elig_g = np.frombuffer(raw, dtype=bool).reshape(shape)
    spec = np.frombuffer(spec_raw, dtype=np.int64)
    return [[np.flatnonzero(elig_g[c] & (spec == t)) for t in np.unique(spec[elig_g[c]])] for c in range(shape[0])]


def allocate_to_pools(want, cap, eligible, open_to=None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`allocate_groups` on pools: returns (served steps x classes, load steps x pools [units/h]).

    Pass ``open_to`` (classes each pool serves, site-wide) when ``eligible`` holds a subset of
    the classes, so that specialised pools are still filled first."""
    cap = np.asarray(cap, dtype=float)
    eligible = np.asarray(eligible, dtype=bool)
    spec = eligible.sum(axis=0) if open_to is None else np.asarray(open_to)
    key = np.vstack([eligible.astype(np.int64), spec.astype(np.int64)[None]])
    raw = (key.tobytes(), key.shape)
    gop, elig_g, spec_g = _pool_groups(*raw)
    served, used = allocate_groups(want, cap @ _group_onehot(*raw), elig_g, spec_g)
    return served, cap * used[:, gop]


def lindley_queue(q0, arrivals, drain) -> tuple[np.ndarray, np.ndarray]:
    """FIFO queue ``q[t] = max(0, q[t-1] + arrivals[t] - drain[t])`` in closed form (units per step).

    Returns (queue after each step, work served each step); the unused part of ``drain``
    is ``drain - served``. Closed form: with ``S = q0 + cumsum(arrivals - drain)``,
    ``q = S - min(0, running min of S)`` (the Skorokhod reflection).
    """
    a = np.asarray(arrivals, dtype=float)
    d = np.asarray(drain, dtype=float)
    s = np.asarray(q0, dtype=float) + np.cumsum(a - d, axis=0)
    q = s - np.minimum(np.minimum.accumulate(s, axis=0), 0.0)
    prev = np.concatenate([np.asarray(q0, dtype=float)[None] * np.ones((1,) + a.shape[1:]), q[:-1]], axis=0)
    served = prev + a - q
    return q, served


def lateness(arrivals, served, deadline_steps: int, step_h: float, tol_units: float = 1e-6) -> dict:
    """Late work of one FIFO class over a whole run (1-D arrays of units per step).

    Work arriving in step ``k`` is due by the end of step ``k + deadline_steps - 1``. Work
    whose deadline falls after the run is not judged. Returns per-step ``late_units``
    (indexed by arrival step), ``late_units`` total, ``max_lateness_h`` and the
    late-unit-weighted ``mean_lateness_h`` (time from deadline until the arrival step's work
    was fully served, or until the run ended).
    """
    a = np.asarray(arrivals, dtype=float)
    s_cum = np.cumsum(np.asarray(served, dtype=float))
    a_cum = np.cumsum(a)
    n = len(a)
    k = np.arange(n)
    due = k + deadline_steps - 1
    judged = due < n
    a_prev = a_cum - a
    s_due = s_cum[np.minimum(due, n - 1)]
    late = np.where(judged, a_cum - np.clip(s_due, a_prev, a_cum), 0.0)
    late = np.where(late > tol_units, late, 0.0)
    done = np.searchsorted(s_cum, a_cum - tol_units, side="left")  # step where it was fully served
    done = np.minimum(done, n - 1)
    hours = np.where(late > 0, (done - due) * step_h, 0.0)
    tot = float(late.sum())
    return {
        "late_units_by_step": late,
        "late_units": tot,
        "max_lateness_h": float(hours.max()) if n else 0.0,
        "mean_lateness_h": float((hours * late).sum() / tot) if tot > 0 else 0.0,
    }
