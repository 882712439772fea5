"""SustainCluster's rule-based baselines, as that project defines them
(HewlettPackard/sustain-cluster, ``utils/task_assignment_strategies.py``), re-implemented:

- ``round_robin``: tasks go to the sites in turn, whatever their load;
- ``most_available``: to the site with the most free capacity among those that can take the
  task now (none can: the task waits and is offered again next hour);
- ``least_pending``: to the site with the fewest queued tasks;
- ``lowest_carbon`` / ``lowest_price``: to the site with the lowest intensity / price now among
  those that can take the task now (none can: it waits).

Coolshift adds what SustainCluster leaves out: a class is offered only the sites its residency
rule allows, moved work arrives after the transfer delay, interactive work is served at its
origin (the rules only route batch tasks). Sites run queued work first-come first-served up to
capacity, with as many servers on as the work needs (the same consolidation the LP has), so the
comparison isolates where and when work runs.
"""

from __future__ import annotations

import numpy as np

from coolshift.optimizer.fleet import FleetProblem

__all__ = ["RULES", "dispatch"]

RULES = ("round_robin", "most_available", "least_pending", "lowest_carbon", "lowest_price")


def dispatch(p: FleetProblem, rule: str, tasks_per_class_h: int = 10) -> dict:
    """Simulate a rule hour by hour. Each class's hourly batch arrival is split into
    ``tasks_per_class_h`` equal tasks. Returns (S, T) work done and active servers, (C, S, T) work
    routed, transfer kWh per site, and the work still waiting at the end (units)."""
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; choose from {RULES}")
    s_n, t_n = p.n_sites, p.hours
    cap = p.servers * p.units_per_server
    work = np.zeros((s_n, t_n))
    routed = np.zeros((len(p.classes), s_n, t_n))
    tx_kwh = np.zeros(s_n)
    queues: list[list[list]] = [[] for _ in range(s_n)]    # per site: [class, units, ready_h]
    waiting: list[list] = []                                 # tasks no site could take yet: [class, units]
    rr = 0
    late = 0.0
    for t in range(t_n):
        interactive = np.zeros(s_n)
        for c, kind in enumerate(p.kind):
            if kind == "interactive":
                interactive[p.origin[c]] += p.demand_units[c, t]
                routed[c, p.origin[c], t] += p.demand_units[c, t]
        free = cap - interactive - np.array([sum(q[1] for q in qs if q[2] <= t) for qs in queues])
        new = [[c, p.demand_units[c, t] / tasks_per_class_h] for c, k in enumerate(p.kind) if k == "batch"
               for _ in range(tasks_per_class_h) if p.demand_units[c, t] > 0]
        still = []
        for c, units in waiting + new:
            sites = np.flatnonzero(p.allowed[c])
            can = sites[free[sites] >= units - 1e-9]
            if rule == "round_robin":
                s = sites[rr % sites.size]
                rr += 1
            elif rule == "least_pending":
                s = sites[np.argmin([len(queues[j]) for j in sites])]
            elif can.size == 0:
                still.append([c, units])
                continue
            elif rule == "most_available":
                s = can[np.argmax(free[can])]
            elif rule == "lowest_carbon":
                s = can[np.argmin(p.ci_g_per_kwh[can, t])]
            else:
                s = can[np.argmin(p.price_usd_per_mwh[can, t])]
            o = int(p.origin[c])
            d = int(p.delay_h[o, s]) if s != o else 0
            queues[s].append([c, units, t + d])
            free[s] -= units
            routed[c, s, t] += units
            if s != o:
                tx_kwh[s] += units * p.gb_per_unit[c] * p.transfer_kwh_per_gb
        waiting = still
        for s in range(s_n):
            room = cap[s] - interactive[s]
            done = 0.0
            for q in queues[s]:
                if q[2] > t or room - done <= 1e-12:
                    continue
                take = min(q[1], room - done)
                q[1] -= take
                done += take
            queues[s] = [q for q in queues[s] if q[1] > 1e-9]
            work[s, t] = interactive[s] + done
    late = sum(q[1] for qs in queues for q in qs) + sum(w[1] for w in waiting)
    servers = np.clip(work / p.units_per_server[:, None], p.min_active[:, None], p.servers[:, None])
    return {"work_units": work, "active_servers": servers, "routed": routed, "transfer_kwh": tx_kwh, "unfinished_units": late}
