"""The best-practice rule plan: the safe fallback and the baseline savings are measured against.

The rule is the ``best_practice`` baseline (:func:`coolshift.baselines.best_practice_actions`:
supply air raised toward the ASHRAE limit with a containment margin and ramped, chilled
water following, servers consolidated with 20 % headroom above the redundancy floor, batch
on arrival, no offload), the same rule the simulator's ``best_practice`` controller applies,
so the optimiser's baseline and the evaluation's are one rule. Its releases are spread over
the pools with the shared allocator (:mod:`coolshift.workload`), class by class (telling it
what each pool serves site-wide, so specialised pools still fill first), and scored with the
same learned model as the optimised plan (:func:`evaluate_actions`).

Without a site config (hand-built problems), :func:`rule_actions` applies a minimal local
rule (setpoints held, 80 % target utilisation, work on arrival).

Whatever the rule, :func:`within_limits` holds the fallback to every configured limit
before it is handed out: supply setpoints inside the zone's range and moved at most the
zone's step per planning step (from where the plant is), chilled water inside its range,
active servers whole and within [redundancy floor, servers], and no fewer than the work
placed on them needs. A fallback is what runs when the plan could not be trusted: it must
never be the thing that breaks a limit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from coolshift.actions import SimState
from coolshift.baselines import best_practice_actions as rule_best_practice
from coolshift.setpoints import chw_envelope_c, rate_per_step_c, supply_envelope_c
from coolshift.workload import allocate_to_pools, lindley_queue

from .data import ProblemData
from .plan import Decisions, Plan, evaluate_actions, totals_of

__all__ = ["rule_actions", "best_practice_actions", "baseline_actions", "fallback_plan", "within_limits",
           "TARGET_UTILISATION"]

TARGET_UTILISATION = 0.8


def rule_actions(d: ProblemData, target_utilisation: float = TARGET_UTILISATION) -> Decisions:
    n, P, K, E = d.n, len(d.pools), len(d.classes), len(d.edges)
    demand = d.demand.copy()
    for k in np.flatnonzero(d.backlog0 > 0):
        for due_step, units in d.backlog0_chunks[k]:  # each queued chunk spread up to its due step
            due = min(int(due_step), n - 1) + 1
            demand[:due, k] += units / (due * d.step_h)
    cap = d.servers * d.cap_per_server  # (P,) units/h at full load
    share = d.serves * cap[:, None]
    share = share / np.maximum(share.sum(axis=0, keepdims=True), 1e-12)  # (P, K)
    work = demand[:, None, :] * share[None, :, :]  # (n, P, K)
    wsum = work.sum(axis=2)
    over = wsum > cap[None, :]  # more than the pool can serve: clamp (reported as unserved)
    if over.any():
        work *= np.where(over, cap[None, :] / np.maximum(wsum, 1e-12), 1.0)[:, :, None]
        wsum = work.sum(axis=2)
    nact = np.clip(wsum / (d.cap_per_server * target_utilisation), d.min_active, d.servers)
    sp = np.broadcast_to(d.sp0, (n, len(d.zones))).copy()
    chw = np.full(n, d.chw0)
    return Decisions(sp, chw, nact, work, np.zeros((n, E, K)), np.zeros((n, K)))


def best_practice_actions(site, d: ProblemData) -> Decisions:
    """The best-practice baseline rule for this horizon, as optimiser :class:`Decisions`."""
    n, K = d.n, len(d.classes)
    kb = np.flatnonzero(d.batch)
    state = SimState(
        inlet_c=np.full(len(d.zones), np.nan),
        supply_c=d.sp0.copy(),
        chw_c=float(d.chw0),
        active_servers=d.n0.copy(),
        queue_units=d.backlog0[kb].copy(),
    )
    forecast = pd.DataFrame({f"{c}_units_per_h": d.demand[:, k] for k, c in enumerate(d.classes)}, index=d.index)
    forecast["gco2_per_kwh"] = d.gco2
    a = rule_best_practice(site, forecast, state, n, d.step_h)
    want = d.demand.copy()
    want[:, kb] = a.release_units_per_h
    cap = np.broadcast_to(d.servers * d.cap_per_server, (n, len(d.pools))).copy()
    work = np.zeros((n, len(d.pools), K))
    order = list(np.flatnonzero(~d.batch)) + list(kb)
    for k in order:  # interactive first, then batch (as the simulator serves them)
        # open_to: what each pool serves site-wide, so specialised pools are still filled first
        _, load = allocate_to_pools(want[:, [k]], cap, d.serves[:, [k]].T, open_to=d.serves.sum(axis=1))
        work[:, :, k] = load
        cap = np.maximum(cap - load, 0.0)
    backlog = np.zeros((n, K))
    if kb.size:
        q, _ = lindley_queue(d.backlog0[kb], d.demand[:, kb] * d.step_h, a.release_units_per_h * d.step_h)
        backlog[:, kb] = q
    return Decisions(np.asarray(a.supply_c, float), np.asarray(a.chw_c, float), np.asarray(a.active_servers, float),
                   work, np.zeros((n, len(d.edges), K)), backlog)


def baseline_actions(site, d: ProblemData) -> tuple[Decisions, str]:
    """(actions, rule name): the best-practice baseline rule for this horizon."""
    return best_practice_actions(site, d), "baselines.best_practice"


def _ramped(target: np.ndarray, start: np.ndarray, step: np.ndarray) -> np.ndarray:
    """(n, Z) path from ``start`` toward ``target`` moving at most ``step`` per row."""
    out = np.empty_like(target)
    x = np.asarray(start, float).copy()
    for t in range(target.shape[0]):
        x = np.clip(target[t], x - step, x + step)
        out[t] = x
    return out


def within_limits(d: ProblemData, acts: Decisions, site=None) -> Decisions:
    """``acts`` held to the configured limits (the site's, else the problem's own bounds).

    Setpoints: clipped to the range, then ramped from the initial setpoint at the allowed step
    (a plant outside its range is walked back into it, not jumped). Servers: whole, within
    [floor, servers], and at least what the work on each pool needs at full load. Work and
    backlog are left as the rule placed them.
    """
    if site is not None:  # the safe envelope of coolshift.setpoints, as the plan's bounds
        lo, hi = (np.array(v, float) for v in zip(*(supply_envelope_c(z) for z in site.zones)))
        hi = np.maximum(hi, lo)  # an inlet limit below the setpoint floor: the floor holds
        step = rate_per_step_c(site, d.step_h)
        chw_lo, chw_hi = chw_envelope_c(site)
        chw_hi = max(chw_hi, chw_lo)
    else:
        lo, hi, step, chw_lo, chw_hi = d.sp_min, d.sp_max, d.sp_step, d.chw_min, d.chw_max
    sp = _ramped(np.clip(np.asarray(acts.sp, float), lo, hi), d.sp0, step)
    chw = np.clip(np.asarray(acts.chw, float), chw_lo, chw_hi)
    need = np.ceil(acts.work.sum(axis=2) / d.cap_per_server[None, :] - 1e-9)
    nact = np.clip(np.maximum(np.ceil(np.asarray(acts.nact, float) - 1e-9), need), d.min_active, d.servers)
    return Decisions(sp, chw, nact, acts.work, acts.off, acts.backlog)


def fallback_plan(d: ProblemData, reason: str, status: str = "fallback", diagnosis=None, site=None) -> Plan:
    acts, rule = baseline_actions(site, d) if site is not None else (rule_actions(d), "optimizer.rule_actions")
    acts = within_limits(d, acts, site)
    frame = evaluate_actions(d, acts)
    reason = f"{reason}; fallback: {rule}"
    return Plan(
        frame=frame,
        totals=totals_of(d, frame),
        status=status,
        fallback=True,
        reason=reason,
        diagnosis=diagnosis,
    )
