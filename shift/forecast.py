"""Deciding on a forecast, judging on the actuals: the forecast modes of ``coolshift shift``.

- ``perfect``: decide on the actual intensities (an upper bound on what shifting saves).
- ``model``: decide on Coolshift's own day-ahead forecaster
  (:class:`coolshift.models.forecast.CarbonIntensityForecaster`). Each job is decided at
  its release (rounded down to the slot), on a forecast issued then from observations
  before it; the forecaster (trained for horizons up to the latest deadline) is refitted
  every ``refit_every`` (default 14 days) on the ``train_window`` (default 56 days)
  before the refit time, so it is trained only on data before each decision. Jobs with
  the same issue time are decided together; with a capacity limit, later decisions see
  the capacity earlier ones committed (a rolling commitment, as in operation).
- ``noise5`` / ``noise10``: actuals plus Gaussian noise with standard deviation 5 % /
  10 % of the mean actual intensity over the series, one draw per slot, averaged over
  ``seeds`` seeded runs (seed k uses ``numpy.random.default_rng(base_seed + k)``).

Emissions are always counted on the actual intensities.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

import numpy as np
import pandas as pd

from coolshift.models.forecast import CarbonIntensityForecaster, PersistenceForecaster

from .jobs import ShiftProblem, Schedule, capacity_array, greedy_runs, make_schedule, slot_load_kw
from .solve import solve_runs

FORECAST_MODES = ("perfect", "model", "noise5", "noise10")
# Standard deviation of the decision noise, as a fraction of the mean intensity (issue 9).
NOISE_SD_FRACTION = {"noise5": 0.05, "noise10": 0.10}


def noisy_decision(actual: np.ndarray, sd_fraction: float, seed: int) -> np.ndarray:
    """Actual intensity [gCO2/kWh] plus N(0, (sd_fraction x mean actual)^2) per slot."""
    rng = np.random.default_rng(seed)
    return actual + rng.normal(0.0, sd_fraction * float(np.mean(actual)), size=actual.shape)


def subset(prob: ShiftProblem, jobs: np.ndarray) -> ShiftProblem:
    """The problem restricted to job indices ``jobs`` (same slots)."""
    return ShiftProblem(slots=prob.slots, slot_h=prob.slot_h, actual=prob.actual,
                        jobs=prob.jobs.iloc[jobs].reset_index(drop=True),
                        power_kw=prob.power_kw[jobs], duration_h=prob.duration_h[jobs],
                        first=prob.first[jobs], stop=prob.stop[jobs],
                        baseline=prob.baseline[jobs], n_full=prob.n_full[jobs],
                        rem_h=prob.rem_h[jobs], interruptible=prob.interruptible[jobs])


# ----------------------------------------------------------------------- model forecasts
@dataclass(frozen=True)
class Decision:
    """Jobs decided together at ``issue`` on ``intensity`` (per slot; only their
    windows are filled, the rest is 0 and never read)."""

    issue: pd.Timestamp
    jobs: np.ndarray
    intensity: np.ndarray


def model_decisions(prob: ShiftProblem, make_forecaster: Callable[[], Any] | None = None,
                    refit_every: str = "14D", train_window: str | None = "56D",
                    progress: Callable[[int, int], None] | None = None) -> tuple[list, dict]:
    """Day-ahead forecasts at each job's release, from a forecaster trained before it.

    Returns the decisions in issue order and stats (fits, seconds, forecast MAPE over
    the job windows, decisions that fell back to persistence because too little
    history preceded them to fit the model).
    """
    slot = pd.Timedelta(hours=prob.slot_h)
    history = pd.Series(prob.actual, index=prob.slots, name="gco2_per_kwh")
    issue_slot = prob.first.copy()  # release rounded up; the issue is the slot before or at it
    release_ns = prob.jobs["release"].dt.as_unit("ns").array.asi8
    floor_ns = prob.slots.asi8[np.minimum(issue_slot, len(prob.slots) - 1)]
    issue_ns = np.where(floor_ns > release_ns, floor_ns - slot.value, floor_ns)
    issues = np.unique(issue_ns)
    if make_forecaster is None:
        # train only the horizons the decisions need: issue to the latest deadline
        ends_ns = prob.slots.asi8[prob.stop - 1] + slot.value
        horizon_h = float(np.max(ends_ns - issue_ns)) / 3.6e12
        make_forecaster = partial(CarbonIntensityForecaster,
                                  max_horizon_h=float(np.ceil(horizon_h + prob.slot_h)))
    refit = pd.Timedelta(refit_every)
    window = pd.Timedelta(train_window) if train_window else None
    model, fitted_at, fits, fallback, t_fit = None, None, 0, 0, 0.0
    out, err_num, err_den = [], 0.0, 0.0
    for k, ins in enumerate(issues):
        issue = pd.Timestamp(ins, tz="UTC")
        if fitted_at is None or issue - fitted_at >= refit:
            train = history[history.index < issue]
            if window is not None:
                train = train[train.index >= issue - window]
            t0 = time.perf_counter()
            try:
                model = make_forecaster().fit(train)
                fitted_at = issue
                fits += 1
            except ValueError:
                model, fitted_at = None, None  # too little history: persistence this time
            t_fit += time.perf_counter() - t0
        jobs = np.flatnonzero(issue_ns == ins)
        lo, hi = int(prob.first[jobs].min()), int(prob.stop[jobs].max())
        index = prob.slots[lo:hi]
        forecaster = model
        if forecaster is None:
            forecaster = PersistenceForecaster().fit(history[history.index < issue])
            fallback += len(jobs)
        pred = forecaster.predict_day_ahead(history, issue, index)["gco2_per_kwh"].to_numpy()
        if not np.all(np.isfinite(pred)):  # horizon beyond what the model covers
            pred = np.where(np.isfinite(pred), pred, np.nanmean(pred))
        dec = np.zeros_like(prob.actual)
        dec[lo:hi] = pred
        err_num += float(np.abs(pred - prob.actual[lo:hi]).sum())
        err_den += float(np.abs(prob.actual[lo:hi]).sum())
        out.append(Decision(issue, jobs, dec))
        if progress:
            progress(k + 1, len(issues))
    stats = {"forecast_fits": fits, "forecast_fit_s": t_fit,
             "forecast_wape_pct": 100.0 * err_num / err_den if err_den else float("nan"),
             "forecast_refit_every": refit_every, "forecast_train_window": train_window,
             "forecast_fallback_jobs": fallback}
    return out, stats


def _rolling(prob: ShiftProblem, decisions: list[Decision], capacity_kw, greedy: bool,
             mip_rel_gap: float = 1e-4, time_limit_s: float | None = None,
             stats: dict | None = None):
    """Solve each decision group in issue order; with a capacity, later groups get what
    earlier groups left. Returns runs in global job indices; ``stats`` receives
    ``time_limit_reached`` and the largest ``mip_gap`` if a time limit stopped a solve."""
    cap = None if capacity_kw is None else capacity_array(prob, capacity_kw)
    parts, unplaced, methods = [], np.zeros(prob.n_jobs, bool), set()
    stops = stats if stats is not None else {}
    for d in decisions:
        sub = subset(prob, d.jobs)
        if greedy:
            j, s, h, un = greedy_runs(sub, cap, d.intensity)
            unplaced[d.jobs[un]] = True
            methods.add("greedy")
        else:
            j, s, h, method, info = solve_runs(sub, d.intensity, cap, mip_rel_gap, time_limit_s)
            methods.add(method)
            if info.get("time_limit_reached"):
                stops["time_limit_reached"] = True
                gap = info.get("mip_gap")
                prev = stops.get("mip_gap", 0.0)
                stops["mip_gap"] = None if gap is None or prev is None else max(prev, gap)
        if cap is not None:
            cap = np.maximum(cap - slot_load_kw(sub, j, s, h), 0.0)
        parts.append((d.jobs[j], s, h))
    job, slot, hours = (np.concatenate(x) for x in zip(*parts))
    return job, slot, hours, unplaced, "+".join(sorted(methods))


# ------------------------------------------------------------------------------ driver
@dataclass(frozen=True)
class ShiftRun:
    """The schedules of one forecast mode (one per seed) and their summary."""

    schedules: list[Schedule]
    greedy: list[Schedule]
    summary: dict[str, Any]


def _mean_summary(schedules: list[Schedule]) -> dict[str, Any]:
    sums = [s.summary() for s in schedules]
    first = dict(sums[0])
    for key in ("shifted_kgco2", "savings_pct", "solve_time_s"):
        first[key] = float(np.mean([s[key] for s in sums]))
    first["late_jobs"] = int(max(s["late_jobs"] for s in sums))
    if any(s.get("time_limit_reached") for s in sums):  # a stop in any seed flags the run
        gaps = [s.get("mip_gap") for s in sums if s.get("time_limit_reached")]
        first["time_limit_reached"] = True
        first["mip_gap"] = None if any(g is None for g in gaps) else float(max(gaps))
    if len(sums) > 1:
        first["savings_pct_min"] = float(min(s["savings_pct"] for s in sums))
        first["savings_pct_max"] = float(max(s["savings_pct"] for s in sums))
    return first


def run_forecast_mode(prob: ShiftProblem, forecast: str = "perfect", seeds: int = 1,
                      capacity_kw: float | None = None, compare_greedy: bool = True,
                      base_seed: int = 0, mip_rel_gap: float = 1e-4,
                      time_limit_s: float | None = None, model_options: dict | None = None,
                      progress: Callable[[int, int], None] | None = None) -> ShiftRun:
    """Decide under ``forecast``; emissions on actuals; with a capacity, also greedy."""
    if forecast not in FORECAST_MODES:
        raise ValueError(f"forecast must be one of {FORECAST_MODES}, got {forecast!r}")
    if seeds < 1:
        raise ValueError("seeds must be >= 1")
    want_greedy = compare_greedy and capacity_kw is not None
    extra: dict[str, Any] = {}
    opt, grd = [], []
    if forecast == "model":
        t0 = time.perf_counter()
        decisions, extra = model_decisions(prob, progress=progress, **(model_options or {}))
        t1 = time.perf_counter()
        stops: dict[str, Any] = {}
        job, slot, hours, _, method = _rolling(prob, decisions, capacity_kw, False, mip_rel_gap,
                                               time_limit_s, stops)
        opt.append(make_schedule(prob, job, slot, hours, method, time.perf_counter() - t1,
                                 stops))
        extra["forecast_s"] = t1 - t0
        if want_greedy:
            t2 = time.perf_counter()
            job, slot, hours, un, _ = _rolling(prob, decisions, capacity_kw, True)
            grd.append(make_schedule(prob, job, slot, hours, "greedy", time.perf_counter() - t2,
                                     {"unplaced_jobs": int(un.sum())}, un))
    else:
        runs = 1 if forecast == "perfect" else seeds
        cache: dict = {}  # one capacity model for all seeds; only its costs change
        for k in range(runs):
            dec = prob.actual if forecast == "perfect" else noisy_decision(
                prob.actual, NOISE_SD_FRACTION[forecast], base_seed + k)
            greedy = None
            if want_greedy:  # first, so a time-limited solve can start from it
                t1 = time.perf_counter()
                greedy = greedy_runs(prob, capacity_kw, dec)
                job, slot, hours, un = greedy
                grd.append(make_schedule(prob, job, slot, hours, "greedy",
                                         time.perf_counter() - t1,
                                         {"unplaced_jobs": int(un.sum())}, un))
            t0 = time.perf_counter()
            job, slot, hours, method, info = solve_runs(prob, dec, capacity_kw, mip_rel_gap,
                                                        time_limit_s, cache, greedy)
            opt.append(make_schedule(prob, job, slot, hours, method, time.perf_counter() - t0,
                                     info))
            if progress:
                progress(k + 1, runs)
    summary = _mean_summary(opt)
    summary.update({"forecast": forecast, "seeds": len(opt), "capacity_kw": capacity_kw,
                    "slot": f"{prob.slot_h * 60:g}min", **extra})
    if grd:
        g = _mean_summary(grd)
        summary["greedy"] = {k: g[k] for k in ("shifted_kgco2", "savings_pct", "late_jobs",
                                               "solve_time_s", "unplaced_jobs") if k in g}
        summary["optimal_vs_greedy_pct"] = (
            100.0 * (g["shifted_kgco2"] - summary["shifted_kgco2"]) / g["shifted_kgco2"]
            if g["shifted_kgco2"] > 0 else 0.0)
    return ShiftRun(opt, grd, summary)
