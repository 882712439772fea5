"""Why is a plan infeasible? An elastic re-solve that names constraint families and steps.

Every row gets two penalised slacks; policy families (deadlines, demand, inlet limits,
ramps, power cap, edge capacity) cost 1 per unit of violation, physical definitions
(power balances, backlog bookkeeping) 1000, so the solver bends a policy before it
bends physics. Rows left with slack are the conflict, grouped by family, component
and step, and the message reads like "batch_deadline (batch) at steps 0-3".

The plant's limits (UPS, PDU, CRAH, chiller capacity) cost least to bend: when the plant
cannot carry the load, the diagnosis names the component, the worst step and the
shortfall ("chiller_capacity: 2,326 kW of heat to reject at 2022-07-15 14:00, the plant
carries 300 kW (chillers 300 kW usable)"), not a demand row the shortfall also touches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .highs import new_highs, pass_lp, run_highs
from .lp import LinearProgram

__all__ = ["Diagnosis", "diagnose"]

POLICY_FAMILIES = {
    "batch_deadline",
    "interactive_demand",
    "inlet_limit",
    "setpoint_ramp",
    "site_power_cap",
    "edge_capacity",
    "model_envelope",
}
PLANT_FAMILIES = {"ups_capacity", "pdu_capacity", "crah_capacity", "chiller_capacity"}
PHYSICS_WEIGHT = 1000.0
PLANT_WEIGHT = 0.1  # per kW: below a unit of demand (~0.3-0.5 kW of IT), so the plant is named first


@dataclass
class Diagnosis:
    """Violated families: rows of (family, component, first/last step, steps, violation)."""

    conflicts: pd.DataFrame
    solved: bool

    @property
    def families(self) -> list[str]:
        return list(dict.fromkeys(self.conflicts["family"])) if len(self.conflicts) else []

    def message(self) -> str:
        if not self.solved:
            return "infeasible; the elastic re-solve found no explanation (check bounds in the site config)"
        if not len(self.conflicts):
            return "infeasible, but no constraint needed relaxing (numerical trouble)"
        parts = []
        for r in self.conflicts.itertuples():
            if getattr(r, "needed_kw", None) is not None and np.isfinite(r.needed_kw):
                where = f" ({r.component})" if r.component else ""
                parts.append(
                    f"{r.family}{where}: {r.needed_kw:,.0f} kW of {r.quantity} at {pd.Timestamp(r.worst_time):%Y-%m-%d %H:%M}"
                    f" ({r.steps} step(s) short), the plant carries {r.carry_kw:,.0f} kW ({r.rated_kw:,.0f} kW usable rating)"
                )
                continue
            parts.append(
                f"{r.family}" + (f" ({r.component})" if r.component else "")
                + f" at steps {r.first_step}-{r.last_step} ({r.steps} step(s), {r.violation:.4g} short)"
            )
        return "infeasible: cannot satisfy " + "; ".join(parts)


def _plant_shortfall(fam, ub: np.ndarray, s: np.ndarray, j: int, steps) -> dict:
    """Worst step of a plant-limit row: what was needed there against what the plant carries (kW)."""
    per_step = ub.ndim == 1  # a site-wide family: meta arrays are per step; else per component
    ub = ub[:, None] if per_step else ub
    t = int(np.argmax(s[:, j]))

    def pick(v) -> float:
        a = np.asarray(v, float)
        a = a[:, None] if per_step and a.ndim == 1 else a
        return float(np.broadcast_to(a, ub.shape)[t, j])

    offset = pick(fam.meta.get("offset_kw", 0.0))
    carry = pick(fam.meta["carry_kw"]) if "carry_kw" in fam.meta else pick(fam.meta["rated_kw"])
    return {
        "worst_time": steps[t] if steps is not None else None,
        "needed_kw": float(ub[t, j] + s[t, j] + offset),
        "carry_kw": carry,
        "rated_kw": pick(fam.meta["rated_kw"]),
        "quantity": fam.meta.get("quantity", "load"),
    }


def diagnose(lp: LinearProgram, tol: float = 1e-6, arrays=None) -> Diagnosis:
    """Elastic re-solve of ``arrays`` (default: the LP's numpy assembly; the planner passes
    the compiled Pyomo model in the families' order), named by ``lp``'s families."""
    import highspy

    cost, clb, cub, rlb, rub, a, integ = arrays if arrays is not None else lp.arrays()
    m = lp.n_rows
    w = np.full(m, PHYSICS_WEIGHT)
    for name, fam in lp.cons.items():
        if name in POLICY_FAMILIES:
            w[fam.start : fam.stop] = 1.0
        elif name in PLANT_FAMILIES:
            w[fam.start : fam.stop] = PLANT_WEIGHT
    eye = sp.identity(m, format="csc")
    big = sp.hstack([a, eye, -eye], format="csc")
    h = new_highs()
    h.setOptionValue("output_flag", False)
    n = lp.n_cols
    pass_lp(h, np.concatenate([np.zeros(n), w, w]), np.concatenate([clb, np.zeros(2 * m)]),
            np.concatenate([cub, np.full(2 * m, np.inf)]), rlb, rub, big, what="the elastic LP")
    run_highs(h)
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return Diagnosis(pd.DataFrame(columns=["family", "component", "first_step", "last_step", "steps", "violation"]), False)
    x = np.asarray(h.getSolution().col_value)
    slack = x[n : n + m] + x[n + m :]
    rows = []
    for name, fam in lp.cons.items():
        s = slack[fam.start : fam.stop].reshape(fam.shape)
        if not (s > tol).any():
            continue
        steps = fam.coords["step"] if "step" in fam.coords else None
        if s.ndim == 1:
            s = s[:, None]
            comps = [""]
        else:
            comps = [str(c) for c in list(fam.coords.values())[1]]
        for j, comp in enumerate(comps):
            hit = np.flatnonzero(s[:, j] > tol)
            if hit.size:
                row = {
                    "family": name,
                    "component": comp,
                    "first_step": int(hit[0]),
                    "last_step": int(hit[-1]),
                    "first_time": steps[hit[0]] if steps is not None else None,
                    "steps": int(hit.size),
                    "violation": float(s[hit, j].sum()),
                }
                if "rated_kw" in fam.meta:
                    row.update(_plant_shortfall(fam, rub[fam.start : fam.stop].reshape(fam.shape), s, j, steps))
                rows.append(row)
    df = pd.DataFrame(rows)
    if len(df):
        df = df.sort_values("violation", ascending=False, kind="stable").reset_index(drop=True)
    return Diagnosis(df, True)
