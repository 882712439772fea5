"""The live loop's decisions, free of I/O: state from telemetry, forecasts, re-plan, drift gate.

``coolshift operate`` (:mod:`coolshift.usecases.operate`) reads the site's telemetry through
the BMS and calls :class:`LiveController` once per planning step; this module decides and
never touches a device, so it is tested and reused without one. Per step:

1. :func:`state_from_telemetry`: the plan's starting state from what the points show
   (setpoints in force; active servers where a point or the host service carries them,
   else every server on) and the batch backlog from the :class:`WorkLedger` (work that
   arrived, minus what the queue shows served, oldest first, each chunk with its due time);
2. :func:`live_forecast`: the horizon's inputs. Grid intensity from the live source's
   snapshot (held per interval, the site's data beyond its end); demand from the site's
   data; outside temperature and wet-bulb from the site's data corrected by what the
   site measures now, the correction fading over :data:`WEATHER_BIAS_DECAY_H`
   (:func:`weather_bias_corrected`);
3. :meth:`LiveController.plan`: the receding-horizon LP from that state with the plant
   model, warm-started from the previous basis; the first step's setpoints, moved towards
   the plan by at most each point's change per write (the safety layer refuses more),
   and its other levers (``levers``: active servers per pool, batch release per class);
4. :class:`DriftGate`: the plant model's prediction for the step just run (cooling power,
   inlet temperatures) against what was measured; beyond the limit for K steps in a row the
   loop hands back to local control and flags the model for retraining.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from coolshift.config import SiteConfig
from coolshift.optimizer import InitialState, Planner, PlanOptions
from coolshift.schema import CARBON_GCO2_PER_KWH, RH_PCT, TEMP_C, WETBULB_C, col, demand_col
from coolshift.setpoints import chw_for_supply_c, safe_supply_max_c

from .receding import cap_interactive_demand, closed_loop_options
from .replay import simulator_actions

__all__ = ["LiveLimits", "Telemetry", "StepPlan", "DriftCheck", "DriftGate", "LiveController", "WorkLedger",
           "state_from_telemetry", "live_forecast", "weather_bias_corrected", "cooling_saving_kw", "model_at_measured",
           "COOLING_KW", "FACILITY_KW", "WEATHER_BIAS_DECAY_H"]

COOLING_KW, FACILITY_KW, IT_KW = "cooling_power_kw", "facility_power_kw", "it_power_kw"
# Telemetry the twin (and a site's map) may carry for the work ledger and the servers.
QUEUE, ARRIVALS, ACTIVE, RELEASE = "queue_units", "batch_arrivals_units", "active_servers", "release_units_per_h"
# Outside-air measured minus forecast fades with this e-folding time [h]. Persistence of
# the temperature forecast error decorrelates over a few hours (forecast errors of
# surface temperature are autocorrelated over ~6 h; Wilks, Statistical Methods in the
# Atmospheric Sciences, 4th ed., ch. 9, AR(1) fits of hourly error series).
WEATHER_BIAS_DECAY_H = 6.0
# The drift gate's cooling error is taken against at least this share of the IT load:
# mechanical cooling is 10-40 % of IT power in air-cooled halls (Uptime Institute 2023
# survey, annual PUE 1.58 of which cooling is the largest part), so 10 % is the low end
# of a normal hall and a free-cooling hour's small chiller power does not inflate the error.
COOLING_ERROR_FLOOR_FRAC = 0.10


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
    commanded: dict[str, bool] = field(default_factory=dict)  # point name -> Coolshift's command in force


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
    levers: dict[str, float] = field(default_factory=dict)  # active_servers__<pool>, release_units_per_h__<class>
    backlog_units: dict[str, float] = field(default_factory=dict)  # the ledger's queued work per class


class WorkLedger:
    """Queued batch work per class as chunks with due times, kept from what the site shows.

    Each step, work that arrived during the step just measured (``batch_arrivals_units__<c>``
    telemetry, else the class's demand in the site data) joins the ledger due
    ``deadline_h`` after it arrived (the end of the step ``deadline_h / step_h - 1`` steps
    later, as the simulator counts it). The queue the site shows (``queue_units__<c>``) then
    says how much is left: the difference was served, oldest first (a scheduler serves the
    earliest deadline first). Work the queue holds beyond the ledger (at start-up, or
    missed) is taken as due at once: the safe side.
    """

    def __init__(self, site: SiteConfig):
        self.step = pd.Timedelta(hours=site.step_h)
        self.deadline = {c.name: pd.Timedelta(hours=c.deadline_h) for c in site.workload_classes if c.kind == "batch"}
        self.chunks: dict[str, list[list]] = {c: [] for c in self.deadline}  # [due end-of-step time, units]
        self.unknown_units: dict[str, float] = {c: 0.0 for c in self.deadline}

    def update(self, site_time: pd.Timestamp, values: dict[str, float], data: pd.DataFrame | None = None) -> None:
        """``site_time``: the end of the step just measured (the telemetry's time)."""
        for c, q in self.chunks.items():
            arr = values.get(col(ARRIVALS, c))
            if arr is None and data is not None and demand_col(c) in data.columns:
                prev = site_time - self.step
                arr = float(data[demand_col(c)].asof(prev)) * self.step / pd.Timedelta(hours=1)
            if arr is not None and np.isfinite(arr) and arr > 1e-9:
                q.append([site_time - self.step + self.deadline[c], float(arr)])
            shown = values.get(col(QUEUE, c))
            if shown is None or not np.isfinite(shown):
                continue
            held = sum(u for _, u in q)
            served = held - max(float(shown), 0.0)
            while served > 1e-9 and q:
                take = min(served, q[0][1])
                q[0][1] -= take
                served -= take
                if q[0][1] <= 1e-9:
                    q.pop(0)
            if served < -1e-9:  # the site holds work the ledger never saw
                q.insert(0, [site_time + self.step, -served])
                self.unknown_units[c] += -served

    def backlog_due(self, site_time: pd.Timestamp, step_h: float) -> dict[str, list[tuple[float, float]]]:
        """Per class: (hours until due, at least one step; units), oldest first (``InitialState.backlog_due``)."""
        out = {}
        for c, q in self.chunks.items():
            rows = [(max((due - site_time) / pd.Timedelta(hours=1), step_h), float(u)) for due, u in q if u > 1e-9]
            if rows:
                out[c] = rows
        return out

    def units(self) -> dict[str, float]:
        return {c: float(sum(u for _, u in q)) for c, q in self.chunks.items()}


def weather_bias_corrected(forecast: pd.DataFrame, measured: dict[str, float],
                           decay_h: float = WEATHER_BIAS_DECAY_H) -> pd.DataFrame:
    """The forecast's outside temperature and wet-bulb shifted by (measured now - forecast now), fading.

    ``measured``: telemetry with ``outside_temp_c`` / ``wetbulb_c``. The correction at
    ``t`` hours ahead is ``bias * exp(-t / decay_h)``; a reading missing leaves its column.
    """
    out = forecast.copy()
    t_h = ((out.index - out.index[0]) / pd.Timedelta(hours=1)).to_numpy(float)
    for key, column in (("outside_temp_c", TEMP_C), ("wetbulb_c", WETBULB_C)):
        m = measured.get(key)
        if m is None or not np.isfinite(m) or column not in out.columns:
            continue
        bias = float(m) - float(out[column].iloc[0])
        out[column] = out[column].to_numpy(float) + bias * np.exp(-t_h / decay_h)
    if TEMP_C in out.columns and WETBULB_C in out.columns:  # wet-bulb never above dry-bulb
        out[WETBULB_C] = np.minimum(out[WETBULB_C], out[TEMP_C])
    return out


def _model_row(site: SiteConfig, tele: Telemetry, data: pd.DataFrame | None = None) -> dict[str, float] | None:
    """The plant model's inputs from telemetry: zone IT power, setpoints in force, outside air
    (humidity from the site's weather data when the BMS has no outside-humidity sensor)."""
    v = dict(tele.values)
    zones = [z.name for z in site.zones]
    zone_it = [col("zone_it_power_kw", z) for z in zones]
    if any(k not in v for k in zone_it) and IT_KW in v:
        # a BMS that meters only the total: split it by the zones' installed server peak power
        peak = {z: sum(p.servers * p.peak_w for p in site.server_pools if p.zone == z) for z in zones}
        total = sum(peak.values()) or 1.0
        for z, k in zip(zones, zone_it):
            v.setdefault(k, float(v[IT_KW]) * peak[z] / total)
    need = zone_it + [col("supply_setpoint_c", z) for z in zones] + ["chw_setpoint_c"]
    if any(k not in v for k in need) or "outside_temp_c" not in v:
        return None
    row = {k: float(v[k]) for k in need}
    row[TEMP_C] = float(v["outside_temp_c"])
    if "wetbulb_c" in v:
        row[WETBULB_C] = float(v["wetbulb_c"])
    if "outside_rh_pct" in v:
        row[RH_PCT] = float(v["outside_rh_pct"])
    elif data is not None and RH_PCT in data.columns:
        row[RH_PCT] = float(data[RH_PCT].asof(tele.site_time))
    return row


def _predict(site: SiteConfig, model, rows: list[dict[str, float]], at: pd.Timestamp) -> pd.DataFrame | None:
    """The model's linear coefficients (its one interface to the optimiser) evaluated at ``rows``."""
    frame = pd.DataFrame(rows, index=pd.DatetimeIndex([at] * len(rows)))
    zones = [z.name for z in site.zones]
    try:
        pc = model.coefficients(site, frame)
        it = pd.DataFrame(frame[[col("zone_it_power_kw", z) for z in zones]].to_numpy(float), index=frame.index,
                          columns=zones)
        sp = pd.DataFrame(frame[[col("supply_setpoint_c", z) for z in zones]].to_numpy(float), index=frame.index,
                          columns=zones)
        return pc.predict(it, sp, frame["chw_setpoint_c"].astype(float))
    except (KeyError, ValueError):
        return None


def model_at_measured(site: SiteConfig, model, tele: Telemetry, data: pd.DataFrame | None = None) -> dict[str, float]:
    """What the plant model predicts for the step just measured, at its measured IT load, the
    setpoints that were in force and the outside air: cooling power and inlet temperatures.
    The drift gate compares it with the measurement (the model's error, not the plan's)."""
    row = _model_row(site, tele, data)
    out = _predict(site, model, [row], tele.site_time) if row is not None else None
    if out is None:
        return {}
    return {c: float(out[c].iloc[0]) for c in out.columns if c == COOLING_KW or c.startswith("inlet_temp_c")}


def cooling_saving_kw(site: SiteConfig, model, tele: Telemetry, data: pd.DataFrame | None = None) -> float | None:
    """Facility power the plant model predicts at the local rule's setpoints minus at those in
    force, both at the measured IT load and outside air [kW]: an estimate of the cooling-side
    saving of one step (the model's own bias cancels in the difference; consolidation and
    deferral change the IT load itself and are not in it). None when telemetry lacks a column."""
    row = _model_row(site, tele, data)
    if row is None:
        return None
    local = dict(row)
    supply = safe_supply_max_c(site)
    for i, z in enumerate(site.zones):
        local[col("supply_setpoint_c", z.name)] = float(supply[i])
    local["chw_setpoint_c"] = float(chw_for_supply_c(site, supply[None, :])[0])
    out = _predict(site, model, [row, local], tele.site_time)
    if out is None:
        return None
    pred = out[FACILITY_KW].to_numpy(float)
    return float(pred[1] - pred[0])


def state_from_telemetry(site: SiteConfig, tele: Telemetry,
                         backlog_due: dict[str, list[tuple[float, float]]] | None = None) -> tuple[InitialState, list[str]]:
    """The plan's starting state from the points (and the work ledger), and what came from the config instead."""
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
    return InitialState(supply_setpoint_c=supply, chw_setpoint_c=chw, active_servers=active,
                        backlog_due=dict(backlog_due or {})), from_config


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
            # relative to the cooling measured, but never to less than COOLING_ERROR_FLOOR_FRAC of
            # the IT load: with the economiser carrying most of the heat the chillers' power is
            # small, and a few kW of error are no sign of a model gone wrong
            floor = COOLING_ERROR_FLOOR_FRAC * abs(float(measured.get(IT_KW, 0.0)))
            cool = abs(predicted[COOLING_KW] - measured[COOLING_KW]) / max(abs(measured[COOLING_KW]), floor, 1.0)
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
                 max_change: dict[str, float], options: PlanOptions | None = None,
                 point_limits: dict[str, tuple[float, float]] | None = None):
        self.site, self.model, self.data, self.limits = site, plant_model, data, limits
        self.max_change = dict(max_change)  # variable -> largest change per write (the point's and the zone's)
        # variable -> the point's engineering limits (the map's min_value..max_value): the plan
        # stays inside them, as the safety layer refuses anything outside
        self.point_limits = {k: (float(lo), float(hi)) for k, (lo, hi) in (point_limits or {}).items()}
        self.options = options or closed_loop_options()
        env = getattr(plant_model, "envelope_", None)
        if env is not None and self.options.decision_envelope is None:
            self.options = PlanOptions(**{**self.options.__dict__, "decision_envelope": env})
        self.gate = DriftGate(limits.drift_cooling_frac, limits.drift_inlet_c, limits.drift_steps)
        self.ledger = WorkLedger(site)
        self._basis = None
        self.horizon_steps = max(1, int(round(limits.horizon_h / site.step_h)))

    def plan(self, tele: Telemetry, intensity: pd.DataFrame | None) -> StepPlan:
        """The step's setpoints and levers from the measured state; the plan's first step, ramp-limited.

        Call once per step with the step's telemetry: the work ledger is updated from it.
        """
        self.ledger.update(tele.site_time, tele.values, self.data)
        state, _ = state_from_telemetry(self.site, tele, self.ledger.backlog_due(tele.site_time, self.site.step_h))
        fc = live_forecast(self.data, tele.site_time, self.horizon_steps, intensity)
        fc = cap_interactive_demand(self.site, weather_bias_corrected(fc, tele.values))
        coefs = self.model.coefficients(self.site, fc)
        if self.point_limits:
            env = dict(coefs.decision_envelope if coefs.decision_envelope is not None
                       else self.options.decision_envelope or {})
            for var, (lo, hi) in self.point_limits.items():
                a, b = env.get(var, (-np.inf, np.inf))
                env[var] = (max(a, lo), min(b, hi))
            coefs = dataclasses.replace(coefs, decision_envelope=env)
        planner = Planner(self.site, coefs, fc, state, self.options)
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
            lo, hi = self.point_limits.get(var, (-np.inf, np.inf))
            if now is not None and lim is not None:  # one write moves at most lim: the safety layer refuses more
                lo, hi = max(lo, now - lim), min(hi, now + lim)
            if lo > hi + 1e-9:
                # local control holds the point beyond its limits, further than one write can
                # bring back: left to local control this step (nothing written to it)
                continue
            targets[var] = float(np.clip(want, lo, hi))
        predicted = {c: float(first[c]) for c in plan.frame.columns
                     if c == COOLING_KW or c.startswith("inlet_temp_c")}
        acts = simulator_actions(self.site, plan)  # whole servers (rounded up), releases per class
        levers = {col(ACTIVE, p.name): float(acts.active_servers[0, i]) for i, p in enumerate(self.site.server_pools)}
        batch = [c.name for c in self.site.workload_classes if c.kind == "batch"]
        levers.update({col(RELEASE, c): float(acts.release_units_per_h[0, b]) for b, c in enumerate(batch)})
        return StepPlan(tele.site_time, targets, planned, predicted, plan.status, plan.fallback,
                        float(plan.timings.get("total_s") or 0.0), levers, self.ledger.units())
