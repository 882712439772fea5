"""Objective: kgCO2 over the horizon, plus optional tariff and setpoint-move terms.

- site (location-based): dt * gco2[t]/1000 * facility_kw[t]
- site (market-based, GHG Protocol Scope 2): dt * residual[t]/1000 * max(0, facility - PPA)
- edge sites: dt * off[t,e,k] * (kW per unit/h x PUE) * gco2_e[t]/1000, where kW per unit/h
  is the proportional power plus the static power's share per unit at full capacity (the
  simulator charges the static power whenever the edge carries our work; a per-unit share
  is the LP's convex bound on that fixed charge, exact at full edge load)
- network: dt * off * GB per unit * kWh per GB * gco2_site[t]/1000 (charged to the sending grid)
- tariff (optional): weight * price[t] * dt * facility_kw[t]
- setpoint moves: penalty (kg per degC) * |move|, small, to stop chatter between equal optima
"""

from __future__ import annotations

import numpy as np

from .data import ProblemData
from .lp import LinearProgram
from .variables import Vars

__all__ = ["set_objective", "EPS_KG_PER_KWH"]

# Tiny cost per facility kWh so no power floats up where carbon is free (matched by PPA).
EPS_KG_PER_KWH = 1e-6


def set_objective(lp: LinearProgram, d: ProblemData, v: Vars) -> None:
    dt = d.step_h
    fac_cost = np.full(d.n, EPS_KG_PER_KWH * dt)
    if d.accounting == "location":
        fac_cost += dt * d.gco2 / 1000.0
    else:
        lp.add_cost(dt * d.residual_gco2 / 1000.0, v.unmatched)
    if d.options.tariff_weight_kg_per_currency:
        fac_cost += d.options.tariff_weight_kg_per_currency * d.price_per_kwh * dt
    lp.add_cost(fac_cost, v.fac)
    if len(d.edges):
        per_unit = (
            d.edge_kwh_per_unit[None, :, None] * d.edge_gco2[:, :, None]
            + d.data_gb_per_unit[None, None, :] * d.network_kwh_per_gb[None, :, None] * d.gco2[:, None, None]
        ) * dt / 1000.0
        lp.add_cost(per_unit, v.off)
    if v.dsp is not None:
        lp.add_cost(d.options.move_penalty_kg_per_c, v.dsp)
        lp.add_cost(d.options.move_penalty_kg_per_c, v.dchw)
