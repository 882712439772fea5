"""Constraint families, one function each, over whole steps x component arrays.

Each function adds one named family to the LP; the names are what duals and
infeasibility diagnoses report. Equations (t = step, z = zone, p = pool, k = class,
e = edge site, dt = step length in h, coefficients from :class:`PlantCoefficients`):

- ``interactive_demand``: sum_p work[t,p,k] + sum_e off[t,e,k] = demand[t,k]
- ``batch_balance``: backlog[t,k] = backlog[t-1,k] + dt*(arrivals[t,k] - served[t,k])
- ``batch_deadline``: backlog[t,k] <= work arrived (or queued) but not yet due (0 at the horizon end)
- ``pool_capacity``: sum_k work[t,p,k] <= cap_p * (active[t,p] - boot_frac_p * switched_on[t,p])
- ``server_boot``: switched_on[t,p] >= active[t,p] - active[t-1,p]
- ``it_power``: pool_it_kw >= N*sleep + active*(a_s*peak - sleep) + b_s*peak*work/cap per segment s
- ``inlet_limit``: inlet_min <= inlet_const + inlet_per_supply*sp + inlet_per_it*zone_it <= inlet_max
- ``fan_power``: fan[t,z] >= it_fan_kw_per_c * (inlet[t,z] - threshold)
- ``facility_power``: facility = const + facility_per_it*(IT + fans) + cooling(IT, sp, chw)
- ``cooling_pieces`` (piecewise-linear cooling only): cooling >= each affine piece, and the
  facility row uses the cooling variable
- ``cooling_floor``: cooling(IT, sp, chw) >= 0 (the main piece)
- ``model_support_it`` / ``model_support_chw``: total IT and chilled water within the
  learned model's training range at the step's weather; ``model_support_share_lo/_hi``:
  each zone's share of total IT within the training range (all soft, penalised slack)
- ``setpoint_ramp``: |sp[t,z] - sp[t-1,z]| <= max step (from the initial setpoint at t=0);
  0 on steps whose forecast lies outside the learned model's envelope (the setpoint holds)
- ``envelope_hold``: chw[t] = chw[t-1] on those steps
- ``setpoint_move_*``/``chw_move_*``: move magnitudes for the move penalty
- ``edge_capacity``: sum_k off[t,e,k] <= edge capacity
- ``site_power_cap``: facility[t] <= cap
- ``ups_capacity``: (1 + pdu_loss) * IT[t] <= usable UPS rating (IT = pool power + server fans)
- ``pdu_capacity``: zone IT[t,z] <= the zone's PDU rating (rated zones only)
- ``crah_capacity``: air_share * zone IT[t,z] <= what the usable CRAH units carry
- ``chiller_capacity``: heat_per_it * IT[t] + heat_fixed <= usable chillers / (1 - economiser share[t])
- ``ppa_match``: unmatched[t] >= grid[t] - ppa[t] (market-based accounting)
- ``storage_balance`` (storage only): soc[t,s] = (1 - r_s dt) soc[t-1,s] + dt (eta_c charge[t,s]
  - discharge[t,s] / eta_d), soc within [max(soc_min, UPS reserve), soc_max] by column bounds
- ``storage_end``: soc[end,s] >= soc at the start (the plan never borrows from the next day)
- ``grid_balance``: grid[t] = facility[t] + sum_s charge[t,s] - sum_s discharge[t,s] (grid >= 0)
- ``monthly_peak`` (demand charge): peak[month(t)] >= grid[t]
- ``carbon_cap`` (epsilon constraint, pareto): the plan's kgCO2 <= cap

Where there is no storage, "grid" is facility power itself (no extra column).
"""

from __future__ import annotations

import numpy as np

from .data import ProblemData, boot_extra_kw_per_server
from .lp import INF, LinearProgram
from .variables import Vars

__all__ = ["add_constraints", "batch_not_due_units"]


def _prev(ids: np.ndarray) -> np.ndarray:
    """Ids of the previous step (-1 at step 0)."""
    out = np.empty_like(ids)
    out[0] = -1
    out[1:] = ids[:-1]
    return out


def _zone_sum_ids(ids_np: np.ndarray, d: ProblemData) -> np.ndarray:
    """(n, P) pool ids gathered to (n, Z, maxPz) per zone, -1 padded."""
    zp = d.zone_pools
    g = ids_np[:, np.maximum(zp, 0)]
    return np.where(zp[None] >= 0, g, -1)


def interactive_demand(lp: LinearProgram, d: ProblemData, v: Vars) -> None:
    ki = np.flatnonzero(~d.batch)
    if not ki.size:
        return
    lp.add_cons(
        "interactive_demand",
        {"step": d.index, "class": [d.classes[k] for k in ki]},
        [(1.0, v.work[:, :, ki].transpose(0, 2, 1)), (1.0, v.off[:, :, ki].transpose(0, 2, 1))],
        lb=d.demand[:, ki],
        ub=d.demand[:, ki],
    )


def batch_not_due_units(d: ProblemData, extra_steps: int = 0, clear_at_end: bool = True) -> np.ndarray:
    """(n, Kb) work arrived by the end of each step but not yet due (units).

    Work arriving in step a is due by the end of step a + D - 1 (D = deadline in steps);
    each chunk of the initial backlog is due by the end of its own due step (so the
    backlog bound is the cumulative queue not yet due); nothing may be left at
    the end of the horizon unless ``clear_at_end`` is False (then the last step's bound is
    the work not yet due, as on every other step).
    """
    kb = np.flatnonzero(d.batch)
    arrived = np.cumsum(d.demand[:, kb] * d.step_h, axis=0)
    out = np.empty_like(arrived)
    for j, k in enumerate(kb):
        D = int(d.deadline_steps[k]) + int(extra_steps)
        due = np.zeros(d.n)
        if d.n >= D:
            due[D - 1 :] = arrived[: d.n - D + 1, j]
        b0_due = np.zeros(d.n)
        for due_step, units in d.backlog0_chunks[k]:  # each queued chunk by its own due time
            b0_due += units * (np.arange(d.n) >= due_step)
        out[:, j] = arrived[:, j] + d.backlog0[k] - due - b0_due
    if clear_at_end:
        out[-1] = 0.0
    return np.maximum(out, 0.0)


def batch_balance(lp: LinearProgram, d: ProblemData, v: Vars) -> None:
    kb = np.flatnonzero(d.batch)
    if not kb.size:
        return
    coords = {"step": d.index, "class": [d.classes[k] for k in kb]}
    b = v.backlog[:, kb]
    rhs = d.demand[:, kb] * d.step_h
    rhs[0] += d.backlog0[kb]
    lp.add_cons(
        "batch_balance",
        coords,
        [
            (1.0, b),
            (-1.0, _prev(b)),
            (d.step_h, v.work[:, :, kb].transpose(0, 2, 1)),
            (d.step_h, v.off[:, :, kb].transpose(0, 2, 1)),
        ],
        lb=rhs,
        ub=rhs,
    )
    arrivals = d.demand[:, kb]
    soft_end = d.options.horizon_end == "soft" and d.backlog_fixed is None
    ub = batch_not_due_units(d, clear_at_end=not soft_end)
    lb = -INF
    if d.backlog_fixed is not None:  # shifting off: the queue follows the run-on-arrival rule
        lb = ub = d.backlog_fixed[:, kb]
    lp.add_cons(
        "batch_deadline", coords, [(1.0, b)], lb=lb, ub=ub, arrivals_units_per_h=arrivals,
        deadline_steps=d.deadline_steps[kb],
    )
    if soft_end:
        # what is left at the end (still within its deadline) costs a penalty per unit
        cls = {"class": coords["class"]}
        s = lp.add_vars("batch_left_at_end_units", cls, lb=0.0)
        lp.add_cost(d.options.horizon_end_penalty_kg_per_unit, s)
        lp.add_cons("batch_horizon_end", cls, [(1.0, b[-1]), (-1.0, s)], ub=0.0)


def pool_capacity(lp: LinearProgram, d: ProblemData, v: Vars) -> None:
    cap = d.cap_per_server
    lp.add_cons(
        "pool_capacity",
        {"step": d.index, "pool": d.pools},
        [(1.0, v.work), (-cap, v.nact), (cap * d.boot_frac, v.up)],
        ub=0.0,
    )


def server_boot(lp: LinearProgram, d: ProblemData, v: Vars) -> None:
    lb = np.zeros((d.n, len(d.pools)))
    lb[0] = -d.n0
    lp.add_cons(
        "server_boot",
        {"step": d.index, "pool": d.pools},
        [(1.0, v.up), (-1.0, v.nact), (1.0, _prev(v.nact))],
        lb=lb,
    )


def it_power(lp: LinearProgram, d: ProblemData, v: Vars) -> None:
    sp_, a_, b_, lab = [], [], [], []
    for p, segs in enumerate(d.segments):
        for s, (a, b) in enumerate(segs):
            sp_.append(p), a_.append(a), b_.append(b), lab.append(f"{d.pools[p]}#{s}")
    sp_, a_, b_ = np.array(sp_), np.array(a_), np.array(b_)
    peak, sleep = d.peak_w[sp_], d.sleep_w[sp_]
    single = np.array([len(d.segments[p]) == 1 for p in sp_])
    base = d.servers[sp_] * sleep / 1000.0
    lp.add_cons(
        "it_power",
        {"step": d.index, "pool_segment": lab},
        [
            (1.0, v.pit[:, sp_]),
            (-(a_ * peak - sleep) / 1000.0, v.nact[:, sp_]),
            ((-b_ * peak / 1000.0 / d.cap_per_server[sp_])[:, None], v.work[:, sp_, :]),
            # a server switched on draws about peak while it boots, not its idle draw
            (-boot_extra_kw_per_server(d)[sp_], v.up[:, sp_]),
        ],
        lb=base,
        ub=np.where(single, base, INF),
    )


def inlet_limit(lp: LinearProgram, d: ProblemData, v: Vars) -> None:
    lp.add_cons(
        "inlet_limit",
        {"step": d.index, "zone": d.zones},
        [(d.inlet_it[:, :, None], _zone_sum_ids(v.pit, d)), (d.inlet_sp, v.sp)],
        lb=d.inlet_min - d.inlet_const,
        ub=d.inlet_max - d.inlet_const,
    )


def fan_power(lp: LinearProgram, d: ProblemData, v: Vars) -> None:
    k = d.fan_k
    lp.add_cons(
        "fan_power",
        {"step": d.index, "zone": d.zones},
        [(1.0, v.fan), ((-k * d.inlet_it)[:, :, None], _zone_sum_ids(v.pit, d)), (-k * d.inlet_sp, v.sp)],
        lb=k * (d.inlet_const - d.fan_thr),
    )


def facility_power(lp: LinearProgram, d: ProblemData, v: Vars) -> None:
    """facility = const + per_it (IT + fans) + cooling; the affine cooling is substituted
    unless cooling is piecewise linear (then the ``cooling_power_kw`` variable stands in)."""
    if v.cool is not None:
        rhs = d.fac_const
        lp.add_cons(
            "facility_power",
            {"step": d.index},
            [(1.0, v.fac), (-d.fac_it[:, None], v.pit), (-d.fac_it[:, None], v.fan), (-1.0, v.cool)],
            lb=rhs,
            ub=rhs,
        )
        return
    per_pool = d.fac_it[:, None] + d.cool_it[:, d.pool_zone]
    rhs = d.fac_const + d.cool_const
    lp.add_cons(
        "facility_power",
        {"step": d.index},
        [
            (1.0, v.fac),
            (-per_pool, v.pit),
            (-d.fac_it[:, None], v.fan),
            (-d.cool_sp, v.sp),
            (-d.cool_chw, v.chw),
        ],
        lb=rhs,
        ub=rhs,
    )


def cooling_pieces(lp: LinearProgram, d: ProblemData, v: Vars) -> None:
    """cooling >= each affine piece (the main one and every extra): the LP's cooling is their
    maximum, exactly, because minimising carbon pushes it down onto the largest piece."""
    if v.cool is None:
        return
    pieces = [(d.cool_const, d.cool_it, d.cool_sp, d.cool_chw), *d.cool_pieces]
    P = len(pieces)
    const = np.stack([p[0] for p in pieces], axis=1)  # (n, P)
    it = np.stack([p[1][:, d.pool_zone] for p in pieces], axis=1)  # (n, P, pools)
    spc = np.stack([p[2] for p in pieces], axis=1)  # (n, P, Z)
    chw = np.stack([p[3] for p in pieces], axis=1)  # (n, P)
    lp.add_cons(
        "cooling_pieces",
        {"step": d.index, "piece": ["main", *[f"piece{k}" for k in range(1, P)]]},
        [
            (1.0, v.cool[:, None]),
            (-it, np.broadcast_to(v.pit[:, None, :], it.shape)),
            (-spc, np.broadcast_to(v.sp[:, None, :], spc.shape)),
            (-chw, np.broadcast_to(v.chw[:, None], chw.shape)),
        ],
        lb=const,
    )


def cooling_floor(lp: LinearProgram, d: ProblemData, v: Vars) -> None:
    """Predicted cooling power >= 0: a linear model must not be steered to a corner where it
    predicts negative power (physically impossible, and an artefact the LP would exploit)."""
    lp.add_cons(
        "cooling_floor",
        {"step": d.index},
        [(d.cool_it[:, d.pool_zone], v.pit), (d.cool_sp, v.sp), (d.cool_chw, v.chw)],
        lb=-d.cool_const,
    )


def model_envelope(lp: LinearProgram, d: ProblemData, v: Vars) -> None:
    """Zone IT power inside the range the learned model was trained on (when given): outside
    it the linear model extrapolates, and the LP would exploit exactly that error."""
    if d.zone_it_lo is None:
        return
    lp.add_cons(
        "model_envelope",
        {"step": d.index, "zone": d.zones},
        [(1.0, _zone_sum_ids(v.pit, d))],
        lb=np.broadcast_to(d.zone_it_lo, (d.n, len(d.zones))),
        ub=np.broadcast_to(d.zone_it_hi, (d.n, len(d.zones))),
    )


def model_support(lp: LinearProgram, d: ProblemData, v: Vars) -> None:
    """Total IT power and chilled water inside what the learned model was trained on at each
    step's weather (``PlantCoefficients.support``): there its error was measured; outside,
    in corners no telemetry holds, the linear model extrapolates and the LP would exploit the
    error. Soft: slack beyond the range costs ``support_penalty_kg_per_kwh`` per kWh of IT
    and ``support_penalty_kg_per_c`` per degC of chilled water and step, far above any
    saving, so the plan leaves the support only where nothing else is feasible."""
    if d.support is None:
        return
    o, step = d.options, {"step": d.index}
    for name, lo, hi, col, coef, pen in (
        ("model_support_it", d.support[:, 0], d.support[:, 1], v.pit, 1.0, o.support_penalty_kg_per_kwh * d.step_h),
        ("model_support_chw", d.support[:, 2], d.support[:, 3], v.chw, 1.0, o.support_penalty_kg_per_c),
    ):
        if not (np.isfinite(lo).any() or np.isfinite(hi).any()):
            continue
        s = lp.add_vars(f"{name}_slack", {**step, "side": ["below", "above"]}, lb=0.0)
        lp.add_cost(pen, s)
        lp.add_cons(name, step, [(coef, col), (1.0, s[:, 0]), (-1.0, s[:, 1])], lb=lo, ub=hi)
    if d.support_share is not None:
        # share_lo * IT_total <= IT_zone <= share_hi * IT_total, soft like the rows above
        zc = {**step, "zone": d.zones}
        zit = _zone_sum_ids(v.pit, d)
        allp = np.broadcast_to(v.pit[:, None, :], (d.n, len(d.zones), len(d.pools)))
        pen = o.support_penalty_kg_per_kwh * d.step_h
        for j, (name, sgn) in enumerate((("model_support_share_lo", 1.0), ("model_support_share_hi", -1.0))):
            s = lp.add_vars(f"{name}_slack", zc, lb=0.0)
            lp.add_cost(pen, s)
            share = d.support_share[:, :, j]
            lp.add_cons(name, zc, [(sgn, zit), (-sgn * share[:, :, None], allp), (1.0, s)], lb=0.0)


def setpoint_ramp(lp: LinearProgram, d: ProblemData, v: Vars) -> None:
    """Ramp limit; where the forecast is outside the model's training data the setpoint holds."""
    step = np.where(d.in_envelope[:, None], d.sp_step[None, :], 0.0)
    lb, ub = -step, step.copy()
    lb[0] += d.sp0
    ub[0] += d.sp0
    lp.add_cons("setpoint_ramp", {"step": d.index, "zone": d.zones}, [(1.0, v.sp), (-1.0, _prev(v.sp))], lb=lb, ub=ub)


def chw_supply_gap(lp: LinearProgram, d: ProblemData, v: Vars) -> None:
    """Chilled water at least ``chw_gap_c`` below every zone's supply-air setpoint (coil approach + margin)."""
    if d.chw_gap_c <= 0:
        return
    chw = np.repeat(v.chw[:, None], len(d.zones), axis=1)
    lp.add_cons("chw_supply_gap", {"step": d.index, "zone": d.zones}, [(1.0, chw), (-1.0, v.sp)],
                ub=np.full((d.n, len(d.zones)), -d.chw_gap_c))


def envelope_hold(lp: LinearProgram, d: ProblemData, v: Vars) -> None:
    """Chilled-water setpoint holds on steps outside the learned model's envelope."""
    out = np.flatnonzero(~d.in_envelope)
    if not out.size:
        return
    rhs = np.where(out == 0, d.chw0, 0.0)
    lp.add_cons("envelope_hold", {"step": d.index[out]}, [(1.0, v.chw[out]), (-1.0, _prev(v.chw)[out])], lb=rhs, ub=rhs)


def setpoint_moves(lp: LinearProgram, d: ProblemData, v: Vars) -> None:
    if v.dsp is None:
        return
    c = {"step": d.index, "zone": d.zones}
    r0 = np.zeros((d.n, len(d.zones)))
    r0[0] = d.sp0
    lp.add_cons("setpoint_move_up", c, [(1.0, v.dsp), (-1.0, v.sp), (1.0, _prev(v.sp))], lb=-r0)
    lp.add_cons("setpoint_move_down", c, [(1.0, v.dsp), (1.0, v.sp), (-1.0, _prev(v.sp))], lb=r0)
    c0 = np.zeros(d.n)
    c0[0] = d.chw0
    lp.add_cons("chw_move_up", {"step": d.index}, [(1.0, v.dchw), (-1.0, v.chw), (1.0, _prev(v.chw))], lb=-c0)
    lp.add_cons("chw_move_down", {"step": d.index}, [(1.0, v.dchw), (1.0, v.chw), (-1.0, _prev(v.chw))], lb=c0)


def edge_capacity(lp: LinearProgram, d: ProblemData, v: Vars) -> None:
    if not (len(d.edges) and d.offload_ok.any()):
        return
    lp.add_cons("edge_capacity", {"step": d.index, "edge": d.edges}, [(1.0, v.off)], ub=d.edge_capacity)


def site_power_cap(lp: LinearProgram, d: ProblemData, v: Vars) -> None:
    """Grid import within the connection's cap (facility power where there is no storage)."""
    if d.power_cap_kw is None:
        return
    lp.add_cons("site_power_cap", {"step": d.index}, [(1.0, v.imports)], ub=d.power_cap_kw)


def _zone_it_terms(d: ProblemData, v: Vars, coef=1.0) -> list:
    """Terms of zone IT power (pools plus server fans), rows (n, Z)."""
    return [(coef, _zone_sum_ids(v.pit, d)), (coef, v.fan)]


def ups_capacity(lp: LinearProgram, d: ProblemData, v: Vars) -> None:
    """UPS output (IT plus PDU losses) within the usable rating (redundant modules excluded)."""
    pl = d.plant
    lp.add_cons("ups_capacity", {"step": d.index}, [(1.0 + pl.pdu_loss_frac, v.pit), (1.0 + pl.pdu_loss_frac, v.fan)],
                ub=pl.ups_kw, rated_kw=pl.ups_kw, quantity="UPS output")


def pdu_capacity(lp: LinearProgram, d: ProblemData, v: Vars) -> None:
    """Zone IT within its PDU rating, for zones that give one."""
    rated = np.isfinite(d.plant.pdu_kw)
    if not rated.any():
        return
    zi = np.flatnonzero(rated)
    zs = _zone_sum_ids(v.pit, d)[:, zi]
    lp.add_cons("pdu_capacity", {"step": d.index, "zone": [d.zones[z] for z in zi]}, [(1.0, zs), (1.0, v.fan[:, zi])],
                ub=d.plant.pdu_kw[zi], rated_kw=d.plant.pdu_kw[zi], quantity="zone IT load")


def crah_capacity(lp: LinearProgram, d: ProblemData, v: Vars) -> None:
    """Air-side IT heat of each zone within what its usable CRAH units carry."""
    pl = d.plant
    lp.add_cons("crah_capacity", {"step": d.index, "zone": d.zones}, _zone_it_terms(d, v, pl.air_share),
                ub=pl.crah_kw, rated_kw=pl.crah_kw, quantity="air-side heat")


def chiller_capacity(lp: LinearProgram, d: ProblemData, v: Vars) -> None:
    """Heat to reject within the usable chillers plus the economiser's share at the step's weather.

    heat = heat_per_it * IT + heat_fixed; the chillers carry (1 - share) of it, so
    heat <= chillers / (1 - share). Capped at 1e3 x the chillers where the economiser
    carries (almost) everything, to keep the row finite.
    """
    pl = d.plant
    share = d.free_share if d.free_share is not None else np.zeros(d.n)
    carry = pl.chiller_kw / np.maximum(1.0 - share, 1e-3)
    lp.add_cons("chiller_capacity", {"step": d.index}, [(pl.heat_per_it_kw, v.pit), (pl.heat_per_it_kw, v.fan)],
                ub=carry - pl.heat_fixed_kw, rated_kw=pl.chiller_kw, offset_kw=pl.heat_fixed_kw,
                carry_kw=carry, quantity="heat to reject")


def ppa_match(lp: LinearProgram, d: ProblemData, v: Vars) -> None:
    if v.unmatched is None:
        return
    lp.add_cons("ppa_match", {"step": d.index}, [(1.0, v.unmatched), (-1.0, v.imports)], lb=-d.ppa_kw)


def storage_balance(lp: LinearProgram, d: ProblemData, v: Vars) -> None:
    """State of charge carried step to step with charging/discharging losses and self-discharge."""
    st = d.storage
    if st is None:
        return
    keep = 1.0 - st.self_discharge_per_h * d.step_h  # (S,) share kept over one step
    rhs = np.zeros((d.n, len(st.names)))
    rhs[0] = keep * st.soc0_kwh
    lp.add_cons(
        "storage_balance", {"step": d.index, "storage": st.names},
        [(1.0, v.soc), (-keep, _prev(v.soc)), (-d.step_h * st.eta_charge, v.charge),
         (d.step_h / st.eta_discharge, v.discharge)],
        lb=rhs, ub=rhs,
    )
    lp.add_cons("storage_end", {"storage": st.names}, [(1.0, v.soc[-1])], lb=st.soc0_kwh)


def grid_balance(lp: LinearProgram, d: ProblemData, v: Vars) -> None:
    """Grid import = facility + charging - discharging (no export: grid >= 0 by its bound)."""
    if v.grid is None:
        return
    lp.add_cons("grid_balance", {"step": d.index},
                [(1.0, v.grid), (-1.0, v.fac), (-1.0, v.charge), (1.0, v.discharge)], lb=0.0, ub=0.0)


def monthly_peak(lp: LinearProgram, d: ProblemData, v: Vars) -> None:
    """Each billing month's peak import is at least every step's import (the demand charge's base)."""
    if v.peak is None:
        return
    lp.add_cons("monthly_peak", {"step": d.index}, [(1.0, v.peak[d.month]), (-1.0, v.imports)], lb=0.0)


def carbon_terms(d: ProblemData, v: Vars) -> list:
    """(coef, ids) terms of the plan's kgCO2 over the horizon (site, edges, storage degradation)."""
    dt = d.step_h
    if d.accounting == "location":
        terms = [(dt * d.gco2 / 1000.0, v.imports)]
    else:
        terms = [(dt * d.residual_gco2 / 1000.0, v.unmatched)]
    if len(d.edges):
        per_unit = (
            d.edge_kwh_per_unit[None, :, None] * d.edge_gco2[:, :, None]
            + d.data_gb_per_unit[None, None, :] * d.network_kwh_per_gb[None, :, None] * d.gco2[:, None, None]
        ) * dt / 1000.0
        terms.append((per_unit, v.off))
    if d.storage is not None:
        terms.append((np.broadcast_to(dt * d.storage.degradation_kg_per_kwh, v.discharge.shape), v.discharge))
    return terms


def carbon_cap(lp: LinearProgram, d: ProblemData, v: Vars) -> None:
    """Epsilon constraint of the cost-carbon frontier: the plan emits at most ``carbon_cap_kg``."""
    cap = d.options.carbon_cap_kg
    if cap is None:
        return
    terms = [(np.broadcast_to(np.asarray(c, float), np.shape(ids)).ravel(), np.asarray(ids).ravel())
             for c, ids in carbon_terms(d, v)]
    lp.add_cons("carbon_cap", {"total": ["kgco2"]}, [(c[None, :], i[None, :]) for c, i in terms], ub=cap)


FAMILIES = (
    interactive_demand,
    batch_balance,
    pool_capacity,
    server_boot,
    it_power,
    inlet_limit,
    fan_power,
    facility_power,
    cooling_pieces,
    cooling_floor,
    model_envelope,
    model_support,
    setpoint_ramp,
    chw_supply_gap,
    envelope_hold,
    setpoint_moves,
    edge_capacity,
    site_power_cap,
    ups_capacity,
    pdu_capacity,
    crah_capacity,
    chiller_capacity,
    ppa_match,
    storage_balance,
    grid_balance,
    monthly_peak,
    carbon_cap,
)


def add_constraints(lp: LinearProgram, d: ProblemData, v: Vars) -> None:
    for fn in FAMILIES:
        fn(lp, d, v)
