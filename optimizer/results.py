"""From a solved LP to results: the decisions, the shadow prices, the plan.

Shared by the monolithic solve (:mod:`.solve`) and the large-site solvers
(:mod:`.decompose`, :mod:`.sifting`), which all end in the same :class:`~.plan.Plan`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .build import PlanningLP
from .plan import Decisions, Plan, evaluate_actions, totals_of

__all__ = ["DUAL_TOL", "actions_from_solution", "shadow_prices", "plan_from_solution"]

DUAL_TOL = 1e-9


def _take(x: np.ndarray, ids: np.ndarray) -> np.ndarray:
    return np.where(ids >= 0, x[np.maximum(ids, 0)], 0.0)


def actions_from_solution(p: PlanningLP, x: np.ndarray) -> Decisions:
    """Decisions from a solution vector, clipped to their bounds (HiGHS meets them only to
    its feasibility tolerance, ~1e-7: a release of -1e-10 units/h must not reach a plant)."""
    v, d = p.vars, p.data
    return Decisions(
        sp=np.clip(x[v.sp], d.sp_min, d.sp_max),
        chw=np.clip(x[v.chw], d.chw_min, d.chw_max),
        nact=np.clip(x[v.nact], d.min_active, d.servers),
        work=np.maximum(_take(x, v.work), 0.0),
        off=np.maximum(_take(x, v.off), 0.0),
        backlog=np.maximum(_take(x, v.backlog), 0.0),
        charge=None if v.charge is None else np.clip(x[v.charge], 0.0, d.storage.charge_kw),
        discharge=None if v.discharge is None else np.clip(x[v.discharge], 0.0, d.storage.discharge_kw),
    )


def shadow_prices(p: PlanningLP, row_dual: np.ndarray, col_dual: np.ndarray, x: np.ndarray) -> pd.DataFrame:
    """Duals of binding families in operator units (change of the plan's kgCO2 per unit of policy).

    - inlet_limit: kgCO2 per +1 degC of the zone's binding inlet limit (every step);
    - batch_deadline: added by :meth:`Planner.deadline_values` (a warm re-solve, see there);
    - redundancy: kgCO2 per extra server of ``min_active_servers`` in the pool;
    - site_power_cap: kgCO2 per +1 kW of cap; edge_capacity: per +1 unit/h of edge capacity;
    - setpoint_ramp: kgCO2 per +1 degC per step of allowed setpoint ramp;
    - ups_capacity, pdu_capacity, crah_capacity, chiller_capacity: kgCO2 per +1 kW of the
      usable rating (binding only when the plant limits the plan);
    - storage_energy, storage_charge_power, storage_discharge_power: objective per +1 kWh of
      storage capacity and per +1 kW of charge/discharge power (storage only).
    """
    lp, d, v = p.lp, p.data, p.vars
    rows = []

    def add(family, comp, value, unit, binding):
        if binding:
            rows.append({"family": family, "component": comp, "value": float(value), "unit": unit, "binding_steps": int(binding)})

    def fam_duals(name):
        f = lp.cons.get(name)
        return None if f is None else row_dual[f.start : f.stop].reshape(f.shape)

    y = fam_duals("inlet_limit")
    if y is not None:
        for z, name in enumerate(d.zones):
            add("inlet_limit", name, y[:, z].sum(), "kgCO2 per degC of inlet limit", (np.abs(y[:, z]) > DUAL_TOL).sum())
    rc = col_dual[v.nact]
    at_floor = (np.abs(x[v.nact] - d.min_active) < 1e-6) & (d.min_active > 0)
    for pi, name in enumerate(d.pools):
        m = at_floor[:, pi] & (np.abs(rc[:, pi]) > DUAL_TOL)
        add("redundancy", name, rc[m, pi].sum(), "kgCO2 per server of redundancy", m.sum())
    y = fam_duals("site_power_cap")
    if y is not None:
        add("site_power_cap", "", y.sum(), "kgCO2 per kW of site power cap", (np.abs(y) > DUAL_TOL).sum())
    y = fam_duals("edge_capacity")
    if y is not None:
        for e, name in enumerate(lp.cons["edge_capacity"].coords["edge"]):
            add("edge_capacity", name, y[:, e].sum(), "kgCO2 per unit/h of edge capacity", (np.abs(y[:, e]) > DUAL_TOL).sum())
    y = fam_duals("setpoint_ramp")
    if y is not None:
        for z, name in enumerate(d.zones):
            add("setpoint_ramp", name, -np.abs(y[:, z]).sum(), "kgCO2 per degC/step of ramp limit", (np.abs(y[:, z]) > DUAL_TOL).sum())
    # the plant's limits: kgCO2 per kW of usable rating (a binding one says what more plant is worth)
    y = fam_duals("ups_capacity")
    if y is not None:
        add("ups_capacity", "", y.sum(), "kgCO2 per kW of usable UPS rating", (np.abs(y) > DUAL_TOL).sum())
    for fam in ("pdu_capacity", "crah_capacity"):
        y = fam_duals(fam)
        if y is not None:
            for z, name in enumerate(lp.cons[fam].coords["zone"]):
                add(fam, name, y[:, z].sum(), f"kgCO2 per kW of usable {fam.split('_')[0].upper()} rating",
                    (np.abs(y[:, z]) > DUAL_TOL).sum())
    y = fam_duals("chiller_capacity")
    if y is not None:  # the row's bound is chillers / (1 - economiser share): d bound / d rating = 1 / (1 - share)
        share = d.free_share if d.free_share is not None else np.zeros(d.n)
        add("chiller_capacity", "", (y / np.maximum(1.0 - share, 1e-3)).sum(), "kgCO2 per kW of usable chiller rating",
            (np.abs(y) > DUAL_TOL).sum())
    st = d.storage
    if st is not None and v.soc is not None:
        # a column bound's dual is its reduced cost: objective change per kWh (kW) of limit;
        # one more kWh of nameplate energy raises soc_max by soc_max_frac and soc_min by
        # soc_min_frac (where the UPS reserve does not set soc_min)
        rc_soc = col_dual[v.soc]
        socx = x[v.soc]
        at_hi = np.abs(socx - st.soc_max_kwh) < 1e-6
        at_lo = (np.abs(socx - st.soc_min_kwh) < 1e-6) & (st.reserve_kwh < st.soc_min_kwh - 1e-9)
        for s_, name in enumerate(st.names):
            val = (np.where(at_hi[:, s_], rc_soc[:, s_], 0.0).sum() * st.soc_max_frac[s_]
                   + np.where(at_lo[:, s_], rc_soc[:, s_], 0.0).sum() * st.soc_min_frac[s_])
            add("storage_energy", name, val, "objective (kgCO2-eq) per kWh of storage capacity",
                int((at_hi[:, s_] | at_lo[:, s_]).sum()))
            for fam, ids, lim in (("charge_power", v.charge, st.charge_kw), ("discharge_power", v.discharge, st.discharge_kw)):
                at = np.abs(x[ids[:, s_]] - lim[s_]) < 1e-6
                add(f"storage_{fam}", name, np.where(at, col_dual[ids[:, s_]], 0.0).sum(),
                    f"objective (kgCO2-eq) per kW of {fam.replace('_', ' ')}", int(at.sum()))
    return pd.DataFrame(rows, columns=["family", "component", "value", "unit", "binding_steps"])


def plan_from_solution(planner, res, status: str, **timings):
    """The :class:`~.plan.Plan` of a solution found without the monolithic LP (``res``: x,
    objective, row and column duals, timings), as the planner's own plan; ``timings`` are
    recorded beside the solve time."""
    p, x = planner.problem, res.x
    frame = evaluate_actions(p.data, actions_from_solution(p, x))
    try:
        sh = shadow_prices(p, res.row_dual, res.col_dual, x)
    except Exception:  # noqa: BLE001 - prices are informative, the plan stands without them
        sh = pd.DataFrame(columns=["family", "component", "value", "unit", "binding_steps"])
    total = res.timings["total_s"]
    planner.timings.update(solve_s=total, total_s=planner.timings.get("build_s", 0.0) + total, **timings)
    planner._x = x
    return Plan(frame=frame, totals=totals_of(p.data, frame), shadow_prices=sh, status=status,
                objective_kg=float(res.objective), timings=dict(planner.timings))
