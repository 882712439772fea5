"""Objective: kgCO2 over the horizon, plus optional tariff and setpoint-move terms.

- site (location-based): dt * gco2[t]/1000 * facility_kw[t]
- site (market-based, GHG Protocol Scope 2): dt * residual[t]/1000 * max(0, facility - PPA)
- edge sites: dt * off[t,e,k] * (kW per unit/h x PUE) * gco2_e[t]/1000, where kW per unit/h
  is the proportional power plus the static power's share per unit at full capacity (the
  simulator charges the static power whenever the edge carries our work; a per-unit share
  is the LP's convex bound on that fixed charge, exact at full edge load)
- network: dt * off * GB per unit * kWh per GB * gco2_site[t]/1000 (charged to the sending grid)
- tariff (optional): weight * price[t] * dt * facility_kw[t]
- objectives (``PlanOptions.objective``): carbon_weight x the carbon terms + money_weight x
  USD (energy at price[t] on grid import, the demand charge on each month's peak, storage
  degradation per kWh discharged), from :func:`.data.objective_weights`
- storage: grid import = facility + charge - discharge carries the grid terms; embodied
  degradation kgCO2 per kWh discharged
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
    """carbon_weight x kgCO2 + money_weight x USD (+ small penalties), on grid import.

    With the default carbon objective and no storage this is the objective as it always
    was (kgCO2 on facility power, the legacy tariff weight on ``price_per_kwh``).
    """
    dt = d.step_h
    wc, wm = d.carbon_weight, d.money_weight_kg_per_usd
    imp = v.imports
    fac_cost = np.full(d.n, EPS_KG_PER_KWH * dt)
    if d.accounting == "location":
        fac_cost += wc * dt * d.gco2 / 1000.0
    else:
        lp.add_cost(wc * dt * d.residual_gco2 / 1000.0, v.unmatched)
    if wm:
        fac_cost += wm * d.price_per_kwh * dt
    lp.add_cost(fac_cost, imp)
    if len(d.edges):
        per_unit = (
            d.edge_kwh_per_unit[None, :, None] * d.edge_gco2[:, :, None]
            + d.data_gb_per_unit[None, None, :] * d.network_kwh_per_gb[None, :, None] * d.gco2[:, None, None]
        ) * dt / 1000.0
        cost = wc * per_unit
        if wm and d.options.objective != "carbon":  # edge energy billed at the site's price (docs/storage.md)
            kwh = (d.edge_kwh_per_unit[None, :, None]
                   + d.data_gb_per_unit[None, None, :] * d.network_kwh_per_gb[None, :, None]) * dt
            cost = cost + wm * kwh * d.price_per_kwh[:, None, None]
        lp.add_cost(cost, v.off)
    st = d.storage
    if st is not None:  # degradation per kWh discharged
        lp.add_cost(dt * (wc * st.degradation_kg_per_kwh + wm * st.degradation_usd_per_kwh), v.discharge)
    if v.peak is not None:
        lp.add_cost(wm * d.tariff.demand_charge_usd_per_kw_month, v.peak)
    if v.dsp is not None:
        lp.add_cost(d.options.move_penalty_kg_per_c, v.dsp)
        lp.add_cost(d.options.move_penalty_kg_per_c, v.dchw)
