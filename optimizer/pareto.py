"""The cost-carbon frontier of one horizon by the epsilon-constraint method.

Two anchor plans: least carbon (``objective="carbon"``) and least cost (``"cost"``, carbon
only breaking ties). Between their carbon totals, ``points - 2`` evenly spaced caps
``kgCO2 <= eps`` (the ``carbon_cap`` row) each give the least-cost plan under that cap.
Every point is an optimum of its LP, so the frontier is monotone: a looser cap can only
lower the least cost (Haimes, Lasdon & Wismer 1971, "On a bicriterion formulation of the
problems of integrated system identification and system optimization", IEEE SMC-1(3)).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from coolshift.config import SiteConfig
from coolshift.coefficients import PlantCoefficients

from .data import PlanOptions
from .solve import Planner
from .state import InitialState

__all__ = ["frontier", "FRONTIER_COLUMNS"]

FRONTIER_COLUMNS = ["point", "kind", "carbon_cap_kg", "kgco2", "cost_usd", "energy_usd", "demand_usd", "storage_usd",
                    "facility_kwh", "grid_kwh", "status"]
# A cap this much above the least-carbon plan's own total keeps the anchor feasible to the
# solver's tolerances (HiGHS primal feasibility 1e-7, relative here on a total of kg).
_CAP_SLACK = 1e-7


def _row(point: int, kind: str, cap, plan) -> dict:
    t = plan.totals
    return {"point": point, "kind": kind, "carbon_cap_kg": cap, "kgco2": t["tco2"] * 1000.0,
            "cost_usd": t.get("cost_usd", np.nan), "energy_usd": t.get("energy_usd", np.nan),
            "demand_usd": t.get("demand_usd", np.nan), "storage_usd": t.get("storage_usd", 0.0),
            "facility_kwh": t["facility_kwh"], "grid_kwh": t.get("grid_kwh", t["facility_kwh"]),
            "status": "fallback" if plan.fallback else plan.status}


def frontier(site: SiteConfig, coefficients: PlantCoefficients, forecast: pd.DataFrame,
             initial_state: InitialState | None = None, points: int = 5,
             options: PlanOptions | None = None) -> tuple[pd.DataFrame, list]:
    """(frontier table, plans) with ``points`` >= 2 rows from least carbon to least cost.

    The forecast needs a ``price_usd_per_kwh`` column (:func:`coolshift.io.prices.with_prices`).
    A fallback anchor (no optimal plan) is an error: a frontier of rule plans means nothing.
    """
    if points < 2:
        raise ValueError(f"--points must be at least 2 (the two anchors), not {points}")
    base = replace(options or PlanOptions(), deadline_prices=False, carbon_cap_kg=None)

    def solve(**kw):
        return Planner(site, coefficients, forecast, initial_state, replace(base, **kw)).solve()

    low = solve(objective="carbon")
    cheap = solve(objective="cost")
    for name, p in (("least-carbon", low), ("least-cost", cheap)):
        if p.fallback:
            raise ValueError(f"the {name} plan is not optimal ({p.reason}); no frontier")
    c_lo, c_hi = low.totals["tco2"] * 1000.0, cheap.totals["tco2"] * 1000.0
    rows, plans = [], []
    # point 0 is the cheapest plan at the least carbon (the carbon plan may pay more for the same kg)
    caps = np.linspace(c_lo, c_hi, points)[:-1] if c_hi > c_lo else np.array([c_lo])
    for i, eps in enumerate(caps):
        cap = float(eps) * (1.0 + _CAP_SLACK) + _CAP_SLACK
        p = solve(objective="cost", carbon_cap_kg=cap)
        if p.fallback:
            raise ValueError(f"the plan capped at {cap:.1f} kgCO2 is not optimal ({p.reason})")
        rows.append(_row(i, "least carbon" if i == 0 else "capped", cap, p))
        plans.append(p)
    rows.append(_row(len(rows), "least cost", None, cheap))
    plans.append(cheap)
    return pd.DataFrame(rows, columns=FRONTIER_COLUMNS), plans
