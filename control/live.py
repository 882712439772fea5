"""The live loop's decisions, free of I/O: state from telemetry, forecasts, re-plan, drift gate.

``coolshift operate`` (:mod:`coolshift.usecases.operate`) reads the site's telemetry through
the BMS and calls :class:`LiveController` once per planning step; this module decides and
never touches a device, so it is tested and reused without one. Per step:

1. :func:`state_from_telemetry`: the plan's starting state from what the points show
   (setpoints in force; active servers where a point carries them, else every server on;
   no batch backlog: the twin and the site maps carry no work ledger yet);
2. :func:`live_forecast`: the horizon's inputs. Grid intensity from the live source's
   snapshot (held per interval, the site's data beyond its end); demand and weather are
   the site's own data on the site-time index (a first version: no live weather or
   demand feed yet);
3. :meth:`LiveController.plan`: the receding-horizon LP from that state with the plant
   model, warm-started from the previous basis; the first step's setpoints, moved towards
   the plan by at most each point's change per write (the safety layer refuses more);
4. :class:`DriftGate`: the plant model's prediction for the step just run (cooling power,
   inlet temperatures) against what was measured; beyond the limit for K steps in a row the
   loop hands back to local control and flags the model for retraining.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from coolshift.config import SiteConfig
from coolshift.optimizer import InitialState, Planner, PlanOptions
from coolshift.schema import CARBON_GCO2_PER_KWH, col

from .receding import cap_interactive_demand, closed_loop_options

__all__ = ["LiveLimits", "Telemetry", "StepPlan", "DriftCheck", "DriftGate", "LiveController",
           "state_from_telemetry", "live_forecast", "COOLING_KW", "FACILITY_KW"]

COOLING_KW, FACILITY_KW, IT_KW = "cooling_power_kw", "facility_power_kw", "it_power_kw"


@dataclass(frozen=True)
class LiveLimits:
    """When the loop stops commanding. Units in the names; ages in wall seconds.

    Defaults: telemetry older than 1.5 steps (the watchdog's own timeout) is stale; the
    drift gate trips after 3 steps in a row with cooling power off by more than 25 % or
    an inlet off by more than 2 K (a linear model's error on the operating points it was
    trained on is a few percent and a few tenths of a kelvin, docs/models.md).
    """

    telemetry_max_age_s: float = 1350.0
    intensity_max_age_s: float = 7200.0
    drift_cooling_frac: float = 0.25
    drift_inlet_c: float = 2.0
    drift_steps: int = 3
    horizon_h: float = 24.0


@dataclass(frozen=True)
class Telemetry:
    """One reading of the site: ``values`` by variable (setpoints in force and telemetry), at ``site_time``."""

    site_time: pd.Timestamp
    values: dict[str, float]


@dataclass(frozen=True)
class StepPlan:
    """What the loop writes for one step and what the model predicts it will measure."""

    site_time: pd.Timestamp
    targets: dict[str, float]  # variable -> value to write (ramped towards the plan)
    planned: dict[str, float]  # variable -> the plan's first-step value
    predicted: dict[str, float]  # cooling_power_kw, inlet_temp_c__<zone>
    status: str
    fallback: bool
    solve_s: float


def state_from_telemetry(site: SiteConfig, tele: Telemetry) -> tuple[InitialState, list[str]]:
    """The plan's starting state from the points, and what came from the config instead."""
    v = tele.values
    from_config = []

    def pick(key: str, default: float) -> float:
        if key in v and np.isfinite(v[key]):
            return float(v[key])
        from_config.append(key)
        return float(default)

    supply = {}
    for z in site.zones:
        x = pick(col("supply_setpoint_c", z.name), z.supply_setpoint_initial_c)
        supply[z.name] = float(np.clip(x, z.supply_setpoint_min_c, z.supply_setpoint_max_c))
    ch = site.cooling.chiller
    chw = float(np.clip(pick("chw_setpoint_c", ch.chw_setpoint_initial_c), ch.chw_setpoint_min_c, ch.chw_setpoint_max_c))
    active = {p.name: float(np.clip(pick(col("active_servers", p.name), p.servers), 0, p.servers))
              for p in site.server_pools}
    return InitialState(supply_setpoint_c=supply, chw_setpoint_c=chw, active_servers=active), from_config


def live_forecast(data: pd.DataFrame, site_time: pd.Timestamp, horizon_steps: int,
                  intensity: pd.DataFrame | None) -> pd.DataFrame:
    """The horizon's inputs from ``site_time``: the site's data, grid intensity from the live snapshot.

    ``intensity``: the snapshot's forecast (canonical ``gco2_per_kwh``, UTC index), held
    per interval onto the planning grid; steps beyond it keep the site data's intensity.
    Raises ValueError when the site data does not cover ``site_time``.
    """
    pos = data.index.searchsorted(site_time)
    if pos >= len(data) or data.index[pos] != site_time:
        raise ValueError(f"the site data has no step at {site_time.isoformat()} "
                         f"(they run {data.index[0].isoformat()} to {data.index[-1].isoformat()})")
    fc = data.iloc[pos:pos + horizon_steps].copy()
    if intensity is not None and len(intensity):
        live = intensity[CARBON_GCO2_PER_KWH].sort_index()
        held = live.reindex(fc.index, method="ffill")
        held[fc.index > live.index[-1] + (live.index.to_series().diff().median() if len(live) > 1
                                          else pd.Timedelta(hours=1))] = np.nan
        fc[CARBON_GCO2_PER_KWH] = held.fillna(fc[CARBON_GCO2_PER_KWH]).to_numpy()
    return fc


@dataclass(frozen=True)
class DriftCheck:
    """One comparison of the model's prediction with the measurement of the same step."""

    cooling_error_frac: float
    inlet_error_c: float
    over: bool
    consecutive: int
    tripped: bool


@dataclass
class DriftGate:
    """Trips after ``steps`` comparisons in a row beyond ``cooling_frac`` or ``inlet_c``."""

    cooling_frac: float
    inlet_c: float
    steps: int
    consecutive: int = 0
    history: list[DriftCheck] = field(default_factory=list)

    def check(self, predicted: dict[str, float], measured: dict[str, float]) -> DriftCheck | None:
        """Compare the variables both carry; None when there is nothing to compare."""
        cool = np.nan
        if COOLING_KW in predicted and COOLING_KW in measured:
            cool = abs(predicted[COOLING_KW] - measured[COOLING_KW]) / max(abs(measured[COOLING_KW]), 1.0)
        inlets = [abs(predicted[k] - measured[k]) for k in predicted if k.startswith("inlet_temp_c") and k in measured]
        inlet = max(inlets) if inlets else np.nan
        if np.isnan(cool) and np.isnan(inlet):
            return None
        over = bool((not np.isnan(cool) and cool > self.cooling_frac) or (not np.isnan(inlet) and inlet > self.inlet_c))
        self.consecutive = self.consecutive + 1 if over else 0
        out = DriftCheck(float(cool), float(inlet), over, self.consecutive, self.consecutive >= self.steps)
        self.history.append(out)
        return out


class LiveController:
    """Re-plans the receding horizon from the measured state every step, warm-started."""

    def __init__(self, site: SiteConfig, plant_model, data: pd.DataFrame, limits: LiveLimits,
                 max_change: dict[str, float], options: PlanOptions | None = None):
        self.site, self.model, self.data, self.limits = site, plant_model, data, limits
        self.max_change = dict(max_change)  # variable -> largest change per write (the point's and the zone's)
        self.options = options or closed_loop_options()
        env = getattr(plant_model, "envelope_", None)
        if env is not None and self.options.decision_envelope is None:
            self.options = PlanOptions(**{**self.options.__dict__, "decision_envelope": env})
        self.gate = DriftGate(limits.drift_cooling_frac, limits.drift_inlet_c, limits.drift_steps)
        self._basis = None
        self.horizon_steps = max(1, int(round(limits.horizon_h / site.step_h)))

    def plan(self, tele: Telemetry, intensity: pd.DataFrame | None) -> StepPlan:
        """The step's setpoints from the measured state; the plan's first step, ramp-limited."""
        state, _ = state_from_telemetry(self.site, tele)
        fc = cap_interactive_demand(self.site, live_forecast(self.data, tele.site_time, self.horizon_steps, intensity))
        planner = Planner(self.site, self.model.coefficients(self.site, fc), fc, state, self.options)
        if self._basis is not None:
            planner.warm_start_from(self._basis)
        plan = planner.solve()
        self._basis = planner.family_basis() if not plan.fallback else None
        first = plan.frame.iloc[0]
        planned = {c: float(first[c]) for c in plan.setpoints.columns}
        targets = {}
        for var, want in planned.items():
            now = tele.values.get(var)
            lim = self.max_change.get(var)
            if now is None or lim is None:
                targets[var] = want
            else:  # towards the plan by at most one write's change: the safety layer refuses more
                targets[var] = float(now + np.clip(want - now, -lim, lim))
        predicted = {c: float(first[c]) for c in plan.frame.columns
                     if c == COOLING_KW or c.startswith("inlet_temp_c")}
        return StepPlan(tele.site_time, targets, planned, predicted, plan.status, plan.fallback,
                        float(plan.timings.get("total_s") or 0.0))
