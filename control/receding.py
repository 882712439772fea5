"""Coolshift as a simulator policy: re-plan every few hours on forecasts, apply the plan.

The receding-horizon policy plugs into the simulator's ``Policy`` interface. At each
decision (every ``interval_h``, default 4 h) it builds the forecast for the next horizon
(24 h by default) from a *forecast provider*, asks the learned plant model for the
linear coefficients under that forecast, plans with the LP from the plant's observed
state (setpoints, active servers, batch queue with due times), and returns the plan's
first ``interval_h`` of actions. The plant is the simulator, never the learned model.

Storage (a site with ``storage:``): each plan starts from the state of charge the simulator
reached (``SimState.storage_soc_kwh``, never the plan's own), and the plan's
``charge_kw__<store>``/``discharge_kw__<store>`` for the interval go to the simulator as
``Actions.charge_kw``/``discharge_kw``, which its own storage physics carries out
(:mod:`coolshift.simulations.storage`). A fallback plan leaves the stores idle. With a cost or
weighted objective and a tariff, each plan pays the demand charge only on raising the month's
peak so far (``PlanOptions.peak_so_far_kw``), taken from the grid import the executed
intervals' plans gave.

Forecast providers (``forecast_provider(obs, horizon_steps) -> frame``):

- :func:`observed_forecast`: whatever the simulator passes as the forecast (actual
  data by default: the perfect-foresight *oracle*; or a noisy copy);
- :class:`ModelForecast`: Coolshift's own carbon-intensity forecaster, refitted on data
  strictly before the decision; edge-site intensities and demand the same way; weather
  by :class:`~coolshift.models.forecast.WeatherForecaster` (``weather=True``); issued
  intensity forecasts (:class:`IssuedForecasts`) over the steps they cover.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from coolshift.actions import Actions
from coolshift.config import SiteConfig
from coolshift.io.weather import wetbulb_stull_c
from coolshift.models.forecast import (CarbonIntensityForecaster, WeatherForecaster, WorkloadForecaster,
                                       forecast_quantile, issue_hours_with)
from coolshift.optimizer import InitialState, Planner, PlanOptions
from coolshift.schema import CARBON_GCO2_PER_KWH, RH_PCT, SEP, TEMP_C, WETBULB_C, demand_col
from coolshift.site_arrays import SiteArrays
from coolshift.tariffs import billing_months

from .replay import simulator_actions

__all__ = ["RecedingHorizonPolicy", "cap_interactive_demand", "storage_actions", "closed_loop_options", "observed_forecast", "ModelForecast",
           "initial_state_from_observation", "forecast_columns", "decision_hours_utc",
           "INTERACTIVE_PLAN_QUANTILE", "noisy_forecast", "autoscale_servers", "IssuedForecasts", "forecast_weather",
           "weather_columns"]

# Issued weather forecasts are used up to this old: Open-Meteo's previous-runs archive
# (coolshift.io.forecast_weather) holds runs made 1 to 7 days before each hour.
ISSUED_WEATHER_MAX_AGE = pd.Timedelta(days=8)
# Below this much history the forecasters fall back on persistence (same hour yesterday).
MIN_HISTORY_DAYS = 14.0
# With the autoscaler on (``RecedingHorizonPolicy(reactive=True)``), interactive demand is
# planned at this quantile of its forecast, not its mean. The costs are asymmetric: a
# server the plan holds on for demand that does not come idles for the rest of the
# interval (SPECpower: active idle ~25 % of peak), while demand above the plan costs the
# autoscaler one boot (~peak power for boot_time_s, Meisner et al. 2009) and the woken
# server then serves for as long as the demand lasts. A newsvendor ratio of boot cost to
# boot-plus-idle cost lies between 0.13 (a wake serving an hour) and 0.38 (one 15-min step)
# for the San Jose web pools. Measured in closed loop (San Jose, July 2022, tCO2; an
# exploratory script on code f4916fe): q10 267.51, q25 267.52, q30 267.56, q50 267.83,
# mean 268.02 (docs/evaluation.md, Current code).
INTERACTIVE_PLAN_QUANTILE = 0.25
# Demand is planned this much above its forecast (after the 90th percentile and the
# same-hour-yesterday floor): capacity held for forecast error, as operators keep N+x
# headroom (the best-practice baseline keeps 20 % above the work served).
DEMAND_MARGIN_FRAC = 0.05


def closed_loop_options(**kw) -> PlanOptions:
    """Plan options for a plan re-made every few hours: no deadline prices (each costs a
    re-solve per batch class, and a closed loop reads none), and batch work left at the
    horizon's end is re-planned next time rather than a reason to fall back."""
    return PlanOptions(**{"deadline_prices": False, "horizon_end": "soft", **kw})


def _forecastable(frame: pd.DataFrame) -> list[str]:

    return [c for c in frame.columns if c.startswith(CARBON_GCO2_PER_KWH) or c.endswith("_units_per_h")]


def _persistence(history: pd.DataFrame, column: str, index: pd.DatetimeIndex) -> np.ndarray:
    lag = pd.Timedelta("1D")
    src = history[column]
    vals = src.reindex(index - lag)
    while vals.isna().any() and len(src):  # horizons beyond a day: repeat the last observed day
        lag += pd.Timedelta("1D")
        vals = vals.fillna(pd.Series(src.reindex(index - lag).to_numpy(), index=vals.index))
        if lag > pd.Timedelta("7D"):
            break
    return vals.fillna(src.iloc[-1] if len(src) else np.nan).to_numpy()


def decision_hours_utc(start, interval_h: float) -> tuple[int, ...]:
    """UTC hours of day (floored) at which a loop starting at ``start`` re-plans every ``interval_h``.

    The forecasters are trained for exactly these issue hours (one ridge per issue hour
    and horizon; see :class:`coolshift.models.forecast.CarbonIntensityForecaster`).
    """
    t = pd.Timestamp(start)
    every_min = int(round(float(interval_h) * 60))
    if every_min <= 0:
        raise ValueError(f"re-plan interval must be positive, got {interval_h} h")
    first = t.hour * 60 + t.minute
    return tuple(sorted({((first + k * every_min) % 1440) // 60 for k in range(1440)}))


def forecast_columns(history: pd.DataFrame, horizon: pd.DataFrame, fitted: dict | None = None,
                     refit: pd.Timedelta | None = None,
                     hourly_history: pd.DataFrame | None = None, demand_headroom: bool = True,
                     issue_hours: tuple[int, ...] | None = None,
                     quantiles: dict[str, float] | None = None) -> tuple[pd.DataFrame, dict]:
    """Forecast the intensity and demand columns of ``horizon`` from ``history`` only.

    Coolshift's day-ahead forecasters (:mod:`coolshift.models.forecast`) once at least
    ``MIN_HISTORY_DAYS`` of history exist, persistence before. ``fitted`` caches models
    per column (refitted after ``refit``). ``hourly_history``: ``history`` already averaged
    per hour (a caller re-forecasting often keeps it; default: computed here). Returns the
    frame and which method each column used. ``demand_headroom``: demand planned at its 90th
    percentile, at least the same hour yesterday, plus ``DEMAND_MARGIN_FRAC`` (capacity held
    for forecast error); False: at its point forecast (an autoscaler covers the error).
    ``issue_hours``: the UTC hours at which forecasts will be issued, the ones the
    forecasters are trained for (default: this forecast's hour, with three more 6 h apart:
    :func:`~coolshift.models.forecast.issue_hours_with`). ``quantiles``: column ->
    quantile level to plan at instead of the point forecast (see
    :data:`INTERACTIVE_PLAN_QUANTILE`); ``demand_headroom`` takes precedence for demand.
    """

    fc = horizon.copy()
    issue = horizon.index[0]
    used = {}
    enough = len(history) and history.index[-1] - history.index[0] >= pd.Timedelta(days=MIN_HISTORY_DAYS)
    # Intensity data are hourly averages: forecast on the hour grid (4x fewer models than
    # at 15 min) and hold each hour's value over its steps.
    if hourly_history is not None:
        hourly_hist = hourly_history
    else:
        hourly_hist = history.resample("1h").mean() if len(history) else history
    h_index = pd.date_range(issue.floor("1h"), horizon.index[-1].floor("1h"), freq="1h")
    for c in _forecastable(horizon):
        if not enough:
            fc[c] = _persistence(history, c, horizon.index) if len(history) else horizon[c].iloc[0]
            used[c] = "persistence"
            continue
        cached = (fitted or {}).get(c)
        # a model fitted on little history is refitted once the history has doubled
        # (14 days of data at the first fit: refitted at 28, 56, then every ``refit``)
        due = None if refit is None or cached is None else min(refit, cached[0] - history.index[0])
        if cached is not None and (due is None or issue - cached[0] < due):
            model = cached[1]
        else:
            cls = CarbonIntensityForecaster if c.startswith("gco2") else WorkloadForecaster
            hours = tuple(issue_hours) if issue_hours is not None else issue_hours_with(issue.floor("1h").hour)
            model = cls(name=c, max_horizon_h=48.0, issue_hours=hours).fit(hourly_hist[c].dropna())
            if fitted is not None:
                fitted[c] = (issue, model)
        pred = model.predict_day_ahead(hourly_hist[c].dropna(), h_index[0], h_index)
        # Risk-aware: demand is planned at its 90th percentile (capacity for work that
        # may come), intensity at its point forecast (what carbon is expected).
        col_used = f"{c}_q90" if demand_headroom and c.endswith("_units_per_h") and f"{c}_q90" in pred.columns else c
        level = (quantiles or {}).get(c) if col_used == c else None
        point = pred[col_used] if level is None else forecast_quantile(pred, c, level)
        values = np.clip(point.reindex(horizon.index.floor("1h")).to_numpy(), 0.0, None)
        if c.endswith("_units_per_h") and demand_headroom:
            # never plan for less work than the same hour yesterday: an under-forecast of
            # demand costs SLA violations and late work, an over-forecast only idle servers
            values = np.maximum(values, _persistence(history, c, horizon.index)) * (1.0 + DEMAND_MARGIN_FRAC)
        fc[c] = values
        used[c] = type(model).__name__ + (" q90" if col_used != c else f" q{level:g}" if level is not None else "")
    return fc, used


def weather_columns(frame: pd.DataFrame) -> list[str]:
    """The dry-bulb and humidity columns forecast (the site's and any ``__<name>`` ones); wet-bulb follows from them."""
    return [c for c in frame.columns if c.split(SEP)[0] in (TEMP_C, RH_PCT)]


def forecast_weather(hourly_history: pd.DataFrame, horizon: pd.DataFrame, fitted: dict | None = None,
                     refit: pd.Timedelta | None = None) -> pd.DataFrame:
    """``horizon`` with its weather forecast from ``hourly_history`` (hourly means before the issue) only.

    Dry-bulb and humidity by :class:`~coolshift.models.forecast.WeatherForecaster` on the
    hour grid, interpolated to the horizon's steps; wet-bulb from them (Stull 2011, as the
    readers derive it). ``fitted`` caches the models per column, refitted after ``refit``.
    """
    fc = horizon.copy()
    issue = horizon.index[0]
    h_index = pd.date_range(issue.floor("1h"), horizon.index[-1].ceil("1h"), freq="1h")
    for c in weather_columns(horizon):
        hist = hourly_history[c].dropna() if c in hourly_history.columns else pd.Series(dtype=float)
        if len(hist[hist.index < h_index[0]]) < 3:  # nothing to forecast from: the value measured now, held
            fc[c] = horizon[c].iloc[0]
            continue
        cached = (fitted or {}).get(c)
        # as the intensity forecasters: a model fitted on little history is refitted once the
        # history has doubled (a year run with no earlier data starts from a few hours)
        due = None if refit is None or cached is None else min(refit, max(cached[0] - hist.index[0], pd.Timedelta("1h")))
        if cached is not None and (due is None or issue - cached[0] < due):
            model = cached[1]
        else:
            model = WeatherForecaster(name=c, max_horizon_h=48.0).fit(hist)
            if fitted is not None:
                fitted[c] = (issue, model)
        hist = hist[hist.index < h_index[0]]
        pred = model.predict_day_ahead(hist, h_index[0], h_index)[c]
        # an hourly mean of the steps [h, h + 1 h) stands for the middle of those steps
        step = horizon.index[1] - horizon.index[0] if len(horizon) > 1 else pd.Timedelta("1h")
        centre = (pd.Timedelta("1h") - min(step, pd.Timedelta("1h"))) / 2
        # the last observed hour anchors the steps before the first forecast hour's middle
        knots = pd.DatetimeIndex(hist.index[-1:].append(pred.index)) + centre
        fc[c] = np.interp(horizon.index.as_unit("ns").asi8.astype(float), knots.as_unit("ns").asi8.astype(float),
                          np.concatenate([hist.to_numpy()[-1:], pred.to_numpy()]))
        if c.split(SEP)[0] == RH_PCT:
            fc[c] = fc[c].clip(0.0, 100.0)
    for c in [c for c in horizon.columns if c.split(SEP)[0] == WETBULB_C]:
        suffix = c[len(WETBULB_C):]
        t, rh = TEMP_C + suffix, RH_PCT + suffix
        if t in fc.columns and rh in fc.columns:
            fc[c] = wetbulb_stull_c(fc[t].to_numpy(), fc[rh].to_numpy())
    return fc


class IssuedForecasts:
    """Forecasts as issued (``request_time``, ``forecast_time``, ``column``; e.g. intensity from
    :func:`coolshift.io.issued.read_issued_forecast`, weather from
    :func:`coolshift.io.forecast_weather.read_openmeteo_forecast`), looked up at each decision.

    At a decision at ``t``, each target interval takes the value of the latest forecast for
    it issued strictly before ``t`` and at most ``max_age`` before it; a value holds over
    its interval (``forecast_time`` plus the forecasts' own step). A plan step gets the
    mean of the values over it when they cover the whole step, else NaN (the caller's own
    forecast stays). ``steps_planned``/``steps_issued`` count the plan steps asked for and
    covered.
    """

    def __init__(self, issued: pd.DataFrame, column: str = CARBON_GCO2_PER_KWH, max_age: pd.Timedelta = pd.Timedelta("1h")):
        f = issued.dropna(subset=[column]).sort_values(["forecast_time", "request_time"])
        self.column = column
        self.max_age = pd.Timedelta(max_age)
        self._rt = pd.DatetimeIndex(f["request_time"]).as_unit("ns").asi8
        ft = pd.DatetimeIndex(f["forecast_time"]).as_unit("ns").asi8
        self._v = f[column].to_numpy(dtype=float)
        self._targets, self._first = np.unique(ft, return_index=True)
        self._last = np.append(self._first[1:], len(ft))
        d = np.diff(self._targets)
        self.step_ns = int(d.min()) if len(d) else 3_600 * 10**9
        self.steps_planned = 0
        self.steps_issued = 0

    def _value(self, g: int, t: int) -> float:
        """Target group ``g``'s latest value issued strictly before ``t`` (within max_age), or NaN."""
        rt = self._rt[self._first[g]:self._last[g]]
        k = int(np.searchsorted(rt, t, side="left")) - 1
        if k < 0 or t - rt[k] > self.max_age.value:
            return np.nan
        return float(self._v[self._first[g] + k])

    def values(self, index: pd.DatetimeIndex) -> np.ndarray:
        """Per step of ``index`` (a regular plan grid starting at the decision): the issued mean or NaN."""
        out = np.full(len(index), np.nan)
        self.steps_planned += len(index)
        if not len(index) or not len(self._targets):
            return out
        t = pd.DatetimeIndex(index).as_unit("ns").asi8
        step = int(t[1] - t[0]) if len(t) > 1 else self.step_ns
        g = min(step, self.step_ns)
        pts = t[:, None] + np.arange(max(step // g, 1))[None, :] * g  # sample points inside each plan step
        grp = np.searchsorted(self._targets, pts, side="right") - 1
        ok = (grp >= 0) & (pts < self._targets[np.clip(grp, 0, None)] + self.step_ns)
        vals = np.full(pts.shape, np.nan)
        cache: dict[int, float] = {}
        for pos in zip(*np.nonzero(ok)):
            k = int(grp[pos])
            if k not in cache:
                cache[k] = self._value(k, int(t[0]))
            vals[pos] = cache[k]
        full = np.isfinite(vals).all(axis=1)
        out[full] = vals[full].mean(axis=1)
        self.steps_issued += int(full.sum())
        return out


def observed_forecast(obs, horizon_steps: int) -> pd.DataFrame:
    """The simulator's forecast frame for the next ``horizon_steps`` (truncated at the run's end)."""
    return obs.forecast.iloc[:horizon_steps]


def initial_state_from_observation(site: SiteConfig, obs) -> InitialState:
    """The plant's observed state as the plan's starting point.

    Queued batch work per class is passed chunk by chunk with each chunk's own due time
    (``InitialState.backlog_due``), so the plan serves every chunk by its due step and no
    earlier than it needs to; work already overdue is due in the first step.
    """
    names = obs.names
    st = obs.state
    chunks = {}
    for b, c in enumerate(names.batch):
        due, units = obs.pending(b)  # per arrival chunk, oldest first: last step to serve it by, units
        if float(np.sum(units)) > 1e-9:
            # hours to the end of the due step, at least the first step
            hours = np.maximum((np.asarray(due, float) - obs.step + 1) * obs.step_h, obs.step_h)
            chunks[c] = [(float(h), float(u)) for h, u in zip(hours, units) if u > 1e-9]
    zones = {z.name: z for z in site.zones}
    soc = getattr(st, "storage_soc_kwh", None)
    return InitialState(
        supply_setpoint_c={z: float(np.clip(st.supply_c[i], zones[z].supply_setpoint_min_c, zones[z].supply_setpoint_max_c))
                           for i, z in enumerate(names.zones)},
        chw_setpoint_c=float(st.chw_c),
        active_servers={p: float(st.active_servers[i]) for i, p in enumerate(names.pools)},
        backlog_due=chunks,
        # the simulated state of charge (the config's initial one when the state has none)
        storage_soc_kwh={u.name: float(soc[k]) for k, u in enumerate(site.storage)} if soc is not None else {},
    )


def storage_actions(site: SiteConfig, frame: pd.DataFrame, n: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The plan's first ``n`` steps of ``charge_kw__<store>`` and ``discharge_kw__<store>`` as (n, stores)
    arrays [kW] for :class:`~coolshift.actions.Actions`; (None, None) without storage (idle). A plan
    without the columns (a fallback plan, ``use_storage=False``) leaves the stores idle (zeros)."""
    if not site.storage:
        return None, None

    def cols(prefix: str) -> np.ndarray:
        return np.column_stack([frame[c].to_numpy(float)[:n] if c in frame.columns else np.zeros(n)
                                for c in (f"{prefix}{SEP}{u.name}" for u in site.storage)])

    return np.clip(cols("charge_kw"), 0.0, None), np.clip(cols("discharge_kw"), 0.0, None)


def cap_interactive_demand(site: SiteConfig, forecast: pd.DataFrame) -> pd.DataFrame:
    """Forecast interactive demand clipped at what its eligible pools serve with every server on.

    Interactive work must be served in its own step (no queue), so a forecast above the
    pools' full capacity makes the plan infeasible (``interactive_demand``) and the policy
    fall back to the best-practice rule for the interval: San Jose 2022, 59 of 2,190 plans,
    all in 15 Jan - 13 Feb, where the point forecast of web demand overshot a peak. Demand
    that no capacity can serve is not a planning question; the autoscaler and the simulator
    meet what actually arrives. Edge capacity is not counted (latency may exclude it).
    """

    arrays = SiteArrays.from_site(site)
    cap = site.pools_frame()["capacity_units_per_h"].to_numpy(dtype=float)
    out = None
    for k, cls in enumerate(site.workload_classes):
        col = demand_col(cls.name)
        if cls.kind != "interactive" or col not in forecast.columns:
            continue
        limit = float(cap[arrays.eligible[k]].sum())
        if (forecast[col] > limit).any():
            out = forecast.copy() if out is None else out
            out[col] = forecast[col].clip(upper=limit)
    return forecast if out is None else out


def autoscale_servers(site: SiteConfig, active: np.ndarray, demand: np.ndarray, release: np.ndarray,
                      offload: np.ndarray, prev_active: np.ndarray, step_h: float) -> tuple[np.ndarray, np.ndarray]:
    """Wake servers within each step so that the step's observed demand fits: an autoscaler under the plan.

    The plan fixes active servers per pool for its whole interval from *forecast* demand;
    an orchestrator's autoscaler (e.g. Kubernetes' cluster autoscaler) adds capacity when the
    load that actually arrives does not fit. Per step, in order: the interactive demand
    observed in that step (less what the plan offloads), then the plan's batch release, are
    placed on the capacity of their eligible pools (specialised pools first); what does not
    fit wakes servers, first those the plan was about to switch off (still on: full capacity),
    then sleeping ones in the eligible pool with the least idle power per unit of capacity.
    A server woken in a step serves only after its ``boot_time_s`` (the share
    ``boot_time_s / step`` of that step is lost, as configured for the site). Servers are only
    added, never removed, so the plan's own capacity is kept.

    ``active`` (n, pools) whole servers from the plan; ``demand`` (n, classes) units/h in the
    config's class order; ``release`` (n, batch classes) units/h; ``offload`` (n, edges,
    offloadable classes) units/h; ``prev_active`` (pools,) servers on before the first step.
    Returns (active servers, servers woken per step and pool).
    """

    names = SiteArrays.from_site(site)
    pools = site.server_pools
    cps = np.array([p.capacity_units_per_server for p in pools], dtype=float)
    total = np.array([p.servers for p in pools], dtype=float)
    boot = np.minimum(np.array([p.boot_time_s for p in pools], dtype=float) / (step_h * 3600.0), 1.0)
    idle_per_unit = np.array([p.idle_w / p.capacity_units_per_server for p in pools], dtype=float)
    el = names.eligible  # (classes, pools)
    spec = el.sum(axis=0)  # classes each pool serves: specialised pools are used first
    local = np.array(demand, dtype=float)
    off_by_class = offload.sum(axis=1) if offload.size else np.zeros((len(local), len(names.offloadable)))
    for j, c in enumerate(names.offloadable):
        k = names.classes.index(c)
        if c in names.interactive:
            local[:, k] = np.maximum(local[:, k] - off_by_class[:, j], 0.0)
    for b, c in enumerate(names.batch):
        local[:, names.classes.index(c)] = release[:, b]
    order = [names.classes.index(c) for c in names.interactive] + [names.classes.index(c) for c in names.batch]
    out = np.array(active, dtype=float)
    woken = np.zeros_like(out)
    prev = np.asarray(prev_active, dtype=float).copy()
    for t in range(len(out)):
        a = out[t]
        free = (a - np.maximum(a - prev, 0.0) * boot) * cps
        for k in order:
            need = local[t, k]
            elig = np.flatnonzero(el[k])
            for p in elig[np.argsort(spec[elig], kind="stable")]:
                use = min(need, free[p])
                free[p] -= use
                need -= use
            while need > 1e-9:
                kept = np.where(el[k], np.maximum(prev - a, 0.0), 0.0)  # on now, switched off by the plan
                asleep = np.where(el[k], total - np.maximum(a, prev), 0.0)
                if kept.any():
                    p = int(np.argmax(kept > 0))
                    per, room = cps[p], kept[p]
                elif asleep.any():
                    cand = np.flatnonzero(asleep > 0)
                    p = int(cand[np.argmin(idle_per_unit[cand])])
                    per, room = cps[p] * (1.0 - boot[p]), asleep[p]
                else:
                    break  # every eligible server is on: the demand exceeds the site
                if per <= 0:
                    break
                k_srv = min(np.ceil(need / per - 1e-9), room)
                a[p] += k_srv
                woken[t, p] += k_srv
                need -= k_srv * per
        prev = a
    return out, woken


@dataclass
class RecedingHorizonPolicy:
    """Re-plan every ``interval_h`` hours over ``horizon_h`` with the LP; a simulator ``Policy``.

    ``reactive``: between re-plans, :func:`autoscale_servers` wakes servers when the demand
    observed in a step does not fit the plan's capacity (the step's own demand, which the
    simulator passes as observed, as the rule baselines use it). ``warm_start``: each plan
    starts from the previous plan's optimal basis moved by the interval
    (:mod:`coolshift.optimizer.warmstart`): the same optimum in fewer simplex iterations.
    """

    site: SiteConfig
    plant_model: object  # fitted LinearPlantModel (anything with .coefficients(site, frame) and .envelope_)
    interval_h: float = 4.0
    horizon_h: float | None = None
    forecast_provider: Callable = observed_forecast
    options: PlanOptions = field(default_factory=closed_loop_options)
    name: str = "coolshift"
    reactive: bool = True
    warm_start: bool = True
    plans: list = field(default_factory=list, repr=False)  # (timestamp, status, fallback, solve s, fallback reason)
    woken_servers: float = 0.0  # server-steps added by the autoscaler over the run
    simplex_iterations: int = 0  # over the run (HiGHS' count, cold and warm)
    peaks_kw: dict = field(default_factory=dict)  # billing month -> planned grid import peak of the executed intervals, kW
    # storage only: per plan (timestamp, state of charge it started from = the simulated one,
    # the plan's own state of charge at the end of the interval it hands the simulator) [kWh]
    storage_log: list = field(default_factory=list, repr=False)
    _basis: object = field(default=None, init=False, repr=False)

    def decide(self, obs):
    
        horizon_h = self.horizon_h or self.site.planning.horizon_h
        h_steps = max(int(round(horizon_h / obs.step_h)), obs.n_steps)
        fc = cap_interactive_demand(self.site, self.forecast_provider(obs, h_steps))
        coefs = self.plant_model.coefficients(self.site, fc)
        opts = self.options
        env = getattr(self.plant_model, "envelope_", None)
        if env is not None and opts.decision_envelope is None:
            opts = PlanOptions(**{**opts.__dict__, "decision_envelope": env})
        pays_peak = opts.objective != "carbon" and self.site.tariff is not None
        if pays_peak and self.peaks_kw:  # pay only on raising the month's peak so far
            opts = PlanOptions(**{**opts.__dict__, "peak_so_far_kw": {**(opts.peak_so_far_kw or {}), **self.peaks_kw}})
        init = initial_state_from_observation(self.site, obs)
        planner = Planner(self.site, coefs, fc, init, opts)
        if self.warm_start and self._basis is not None:
            planner.warm_start_from(self._basis)
        plan = planner.solve()
        self.simplex_iterations += int(plan.timings.get("simplex_iterations", 0))
        self._basis = planner.family_basis() if self.warm_start and not plan.fallback else None
        self.plans.append((obs.index[0], plan.status, plan.fallback, plan.timings.get("total_s"), plan.reason))
        acts = simulator_actions(self.site, plan)
        n = obs.n_steps
        if pays_peak:
            self._record_peaks(plan.frame.iloc[:n])
        if self.site.storage:
            ends = {u.name: float(plan.frame[f"soc_kwh{SEP}{u.name}"].iloc[n - 1])
                    for u in self.site.storage if f"soc_kwh{SEP}{u.name}" in plan.frame.columns}
            self.storage_log.append((obs.index[0], dict(init.storage_soc_kwh), ends))
        active = acts.active_servers[:n]
        if self.reactive:
            arrays = obs.forecast_arrays
            observed = np.column_stack([arrays[demand_col(c.name)][:n] for c in self.site.workload_classes])
            active, woken = autoscale_servers(self.site, active, observed, acts.release_units_per_h[:n],
                                              acts.offload_units_per_h[:n], obs.state.active_servers, obs.step_h)
            self.woken_servers += float(woken.sum())
        charge, discharge = storage_actions(self.site, plan.frame, n)
        return Actions(
            supply_c=acts.supply_c[:n], chw_c=acts.chw_c[:n], active_servers=active,
            release_units_per_h=acts.release_units_per_h[:n], offload_units_per_h=acts.offload_units_per_h[:n],
            charge_kw=charge, discharge_kw=discharge,
        )

    def _record_peaks(self, executed: pd.DataFrame) -> None:
        """The month's peak so far from the executed interval's planned grid import [kW]."""
        g = executed["grid_power_kw"] if "grid_power_kw" in executed else executed.get("facility_power_kw")
        if g is None or not len(g):
            return
        month, labels = billing_months(executed.index, self.site.tariff.timezone)
        for m, lab in enumerate(labels):
            sel = g.to_numpy(float)[month == m]
            if len(sel):
                self.peaks_kw[lab] = max(self.peaks_kw.get(lab, 0.0), float(sel.max()))


class ModelForecast:
    """Forecasts from Coolshift's own forecasters, trained only on data before each decision.

    ``intensity``: grid intensities (site and edges) and demand per class by
    :func:`forecast_columns`, refitted every ``refit_days`` on the history before the
    decision (False: as the simulator passes them, e.g. actual or noisy). ``weather``:
    dry-bulb, humidity and wet-bulb by :func:`forecast_weather` (False: as observed, i.e.
    perfect foresight of the weather). ``issued``: :class:`IssuedForecasts` of the site's
    intensity, used over the plan steps it covers, the own forecast beyond. ``issued_weather``:
    issued weather forecasts (``request_time``, ``forecast_time``, ``temp_c``, ``rh_pct``; e.g.
    :func:`coolshift.io.forecast_weather.read_openmeteo_forecast`), used the same way over the
    weather forecast (up to ``ISSUED_WEATHER_MAX_AGE`` old: a previous-runs archive is a day or more).
    """

    def __init__(self, actual: pd.DataFrame, refit_days: float = 30.0, history: pd.DataFrame | None = None,
                 demand_headroom: bool = True, issue_hours: tuple[int, ...] | None = None,
                 quantiles: dict[str, float] | None = None, intensity: bool = True, weather: bool = False,
                 issued: "IssuedForecasts | None" = None, issued_weather: pd.DataFrame | None = None):
        self.demand_headroom = demand_headroom
        self.intensity = intensity
        self.weather = weather
        self.issued = issued
        self.issued_weather = {c: IssuedForecasts(issued_weather, column=c, max_age=ISSUED_WEATHER_MAX_AGE)
                               for c in (TEMP_C, RH_PCT)} if issued_weather is not None else {}
        self.quantiles = dict(quantiles or {})  # column -> quantile level planned at (else the mean)
        # the loop's decision hours (:func:`decision_hours_utc`); None: every hour of the day
        self.issue_hours = tuple(range(24)) if issue_hours is None else tuple(issue_hours)
        # ``history``: observations before the evaluated period, so the forecasters start trained
        self.actual = actual if history is None or not len(history) else pd.concat([history[actual.columns], actual])
        # only the forecast columns, without the frame's metadata (``attrs``, which pandas
        # deep-copies on every operation: most of a forecast's time on a year of history)
        cols = (_forecastable(self.actual) if intensity else []) + (weather_columns(self.actual) if weather else [])
        self.actual = self.actual[cols].copy()
        self.actual.attrs = {}
        # hourly means computed once; a decision on the hour uses the hours before it
        self._hourly = self.actual.resample("1h").mean()
        self.refit = pd.Timedelta(days=refit_days)
        self._fitted: dict = {}
        self._fitted_weather: dict = {}

    def __call__(self, obs, horizon_steps: int) -> pd.DataFrame:
        horizon = obs.forecast.iloc[:horizon_steps]
        issue = horizon.index[0]
        history = self.actual.loc[: issue - pd.Timedelta("1ns")]
        on_hour = issue == issue.floor("1h")
        hourly = self._hourly.loc[: issue - pd.Timedelta("1h")] if on_hour else None
        fc = horizon
        if self.intensity:
            fc = forecast_columns(history[_forecastable(history)], horizon, self._fitted, self.refit,
                                  hourly_history=None if hourly is None else hourly[_forecastable(hourly)],
                                  demand_headroom=self.demand_headroom, issue_hours=self.issue_hours,
                                  quantiles=self.quantiles)[0]
        if self.weather:
            fc = forecast_weather(hourly if hourly is not None else history.resample("1h").mean(), fc,
                                  self._fitted_weather, self.refit)
        if self.issued_weather:
            fc = fc.copy() if fc is horizon else fc
            for c, src in self.issued_weather.items():
                v = src.values(fc.index) if c in fc.columns else np.array([])
                if np.isfinite(v).any():
                    fc[c] = np.where(np.isfinite(v), v, fc[c].to_numpy())
            if {TEMP_C, RH_PCT, WETBULB_C} <= set(fc.columns):
                fc[WETBULB_C] = wetbulb_stull_c(fc[TEMP_C].to_numpy(), fc[RH_PCT].to_numpy())
        if self.issued is not None and self.issued.column in fc.columns:
            v = self.issued.values(fc.index)
            if np.isfinite(v).any():
                fc = fc.copy() if fc is horizon else fc
                fc[self.issued.column] = np.where(np.isfinite(v), v, fc[self.issued.column].to_numpy())
        return fc


def noisy_forecast(actual: pd.DataFrame, sd_frac: float, seed: int = 0) -> pd.DataFrame:
    """Actuals plus Gaussian noise on every intensity column, sd = ``sd_frac`` x the column's mean.

    As in Let's Wait Awhile (Wiesner et al. 2021), who studied 5 % and 10 % error. Demand
    and weather stay as observed; intensities are kept non-negative.
    """

    rng = np.random.default_rng(seed)
    out = actual.copy()
    for c in [c for c in actual.columns if c.startswith(CARBON_GCO2_PER_KWH)]:
        v = actual[c].to_numpy(dtype=float)
        out[c] = np.clip(v + rng.normal(0.0, sd_frac * v.mean(), size=len(v)), 0.0, None)
    return out
