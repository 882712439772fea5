"""The best-practice rule plan: the safe fallback and the baseline that savings are measured against.

Rule (what a careful operator does without an optimiser):
- supply-air and chilled-water setpoints held where they are (the initial state);
- every job runs on arrival (no deferral, no offload); the initial batch backlog is
  spread evenly over the steps until it is due;
- servers consolidated to a target utilisation (default 80 %, a common headroom rule,
  e.g. The Green Grid WP#49 practice of sizing for peak plus headroom), never below the
  redundancy floor nor above the pool size;
- work of a class spread over the pools that may serve it in proportion to their capacity.

When the simulator engineer's ``coolshift.simulations.policies`` gains a best-practice
policy, this module should delegate to it so both sides share one rule.
"""

from __future__ import annotations

import numpy as np

from .data import ProblemData
from .plan import Actions, Plan, evaluate_actions, totals_of

__all__ = ["rule_actions", "fallback_plan", "TARGET_UTILISATION"]

TARGET_UTILISATION = 0.8


def rule_actions(d: ProblemData, target_utilisation: float = TARGET_UTILISATION) -> Actions:
    n, P, K, E = d.n, len(d.pools), len(d.classes), len(d.edges)
    demand = d.demand.copy()
    for k in np.flatnonzero(d.backlog0 > 0):
        due = min(int(d.backlog0_due_step[k]), n - 1) + 1
        demand[:due, k] += d.backlog0[k] / (due * d.step_h)
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
    return Actions(sp, chw, nact, work, np.zeros((n, E, K)), np.zeros((n, K)))


def fallback_plan(d: ProblemData, reason: str, status: str = "fallback", diagnosis=None) -> Plan:
    frame = evaluate_actions(d, rule_actions(d))
    return Plan(
        frame=frame,
        totals=totals_of(d, frame),
        status=status,
        fallback=True,
        reason=reason,
        diagnosis=diagnosis,
    )
