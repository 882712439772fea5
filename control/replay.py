"""Hand a plan to the simulator: the plan's decisions as simulator actions, and a replay.

The simulator judges with its own physics (no equations shared with the learned model),
so replaying a plan and comparing its measured carbon with the plan's predicted carbon
checks the whole chain: learned coefficients, LP and plan extraction.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from coolshift.actions import Actions
from coolshift.config import SiteConfig
from coolshift.control.policies import FixedPolicy
from coolshift.optimizer import InitialState, Planner, PlanOptions
from coolshift.optimizer.plan import Plan
from coolshift.simulations.engine import simulate
from coolshift.site_arrays import SiteArrays

__all__ = ["simulator_actions", "replay_plan", "replay_day", "carbon_weighted_error_pct"]


def simulator_actions(site: SiteConfig, plan: Plan):
    """The plan's setpoints, active servers, batch releases and offloads as simulator ``Actions``.

    Continuous active-server counts are rounded up to whole servers (never fewer than planned).
    """
    frame = plan.frame.copy()
    cols = [c for c in frame.columns if c.startswith("active_servers__")]
    frame[cols] = np.ceil(frame[cols].to_numpy() - 1e-6)
    return Actions.from_frame(frame, SiteArrays.from_site(site))


def replay_plan(site: SiteConfig, data: pd.DataFrame, plan: Plan, state=None):
    """Run the simulator over ``data`` (the plan's steps) following ``plan``; returns its ``SimResult``."""

    data = data.loc[plan.frame.index]
    return simulate(site, data, FixedPolicy(simulator_actions(site, plan), name="plan"), state=state)


def replay_day(site: SiteConfig, model, data: pd.DataFrame, day, options=None) -> dict:
    """Plan one day with ``model``'s coefficients (``data`` as a perfect forecast), let the
    simulator follow the plan, and compare.

    Returns the plan, the simulator's result, the plan's and the simulator's tCO2
    (location-based, site + edge sites + network) and, per step, the grid intensity with
    the learned model's facility power at the *replayed* decisions and the measured one:
    the model's own error at the operating points the optimiser chose.
    """

    d0 = pd.Timestamp(day)
    d0 = d0.tz_localize("UTC") if d0.tzinfo is None else d0
    today = data.loc[d0: d0 + pd.Timedelta("1D") - pd.Timedelta("1ns")]
    if today.empty:
        raise ValueError(f"replay_day: no data on {d0.date()} (data {data.index[0]} .. {data.index[-1]})")
    opts = options or PlanOptions(decision_envelope=getattr(model, "envelope_", None))
    plan = Planner(site, model.coefficients(site, today), today, InitialState.from_site(site), opts).solve()
    rep = replay_plan(site, today, plan)
    ts = rep.timeseries
    steps = pd.DataFrame({"gco2_per_kwh": ts["gco2_per_kwh"],
                          "model_facility_kw": model.predict(ts)["facility_power_kw"],
                          "measured_facility_kw": ts["facility_power_kw"]})
    return {"plan": plan, "result": rep, "predicted_tco2": float(plan.totals["tco2"]),
            "measured_tco2": float(rep.summary["tco2_location"]), "steps": steps}


def carbon_weighted_error_pct(steps: pd.DataFrame, absolute: bool = True) -> float:
    """Facility-power error of the model over ``steps`` (from :func:`replay_day`), weighted by
    grid intensity [%]: ``sum g |p - a| / sum g a`` (``absolute``), else the signed sum, i.e.
    the error of the steps' carbon. The absolute form bounds the error of a day's carbon."""
    g = steps["gco2_per_kwh"].to_numpy(float)
    p = steps["model_facility_kw"].to_numpy(float)
    a = steps["measured_facility_kw"].to_numpy(float)
    e = p - a
    return float(100.0 * np.sum(g * (np.abs(e) if absolute else e)) / np.sum(g * a))
