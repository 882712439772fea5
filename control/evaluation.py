"""Closed-loop evaluation: every policy run on the simulator over the same period and data.

The plant is always the simulator (:mod:`coolshift.simulations`), never the learned
model. Policies: the baselines ``static``, ``best_practice`` and ``carbon_greedy`` (the
rules of :mod:`coolshift.baselines`, applied by :mod:`.policies`), ``coolshift``
(receding-horizon LP on forecasts) and ``oracle``: the same LP, learned plant model and
re-plan interval with perfect information (the actual future intensity, demand and weather)
and a 36 h horizon. The oracle is not a bound: its plans are optimal for the learned model,
not for the simulator's physics, so on a short run Coolshift can come out ahead of it.

Storage (a site with ``storage:``): the LP policies plan the stores and the simulator carries
out each interval's charge/discharge with its own storage physics, re-planning from the
simulated state of charge (:mod:`coolshift.control.receding`). The baselines (static, best
practice, carbon greedy) never use storage: the battery stays idle at its initial state of
charge, less self-discharge. Every policy's carbon and bill count grid import (facility +
charge - discharge); savings count the battery's wear too (``storage_wear_tco2``: embodied
kgCO2 per kWh discharged, as the LP does), and the bill its wear in USD.
"""

from __future__ import annotations

import dataclasses
import subprocess
import time
import uuid
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from coolshift.config import SiteConfig
from coolshift.io import DataError
from coolshift.io.prices import PRICE_USD_PER_KWH, with_prices
from coolshift.tariffs import bill
from coolshift.control.policies import get_policy
from coolshift.control.receding import (INTERACTIVE_PLAN_QUANTILE, ModelForecast, RecedingHorizonPolicy,
                                        IssuedForecasts, closed_loop_options, decision_hours_utc, noisy_forecast,
                                        observed_forecast)
from coolshift.optimizer import PlanOptions
from coolshift.schema import demand_col
from coolshift.simulations.engine import simulate

__all__ = ["POLICIES", "FORECAST_MODES", "policy_tco2", "WEATHER_FORECAST_MODES", "default_weather_forecast", "evaluate_policies",
           "savings_table"]

POLICIES = ("static", "best_practice", "carbon_greedy", "coolshift", "oracle")
# Coolshift with one lever on and the others as in the static baseline (to attribute savings).
LEVERS = ("cooling", "consolidation", "shifting", "offload")
LEVER_POLICIES = tuple(f"coolshift_{lever}" for lever in LEVERS)
# What the LP policies plan intensity and demand on: the actual values, Coolshift's own
# forecasters, issued intensity forecasts where they cover the plan (own beyond), or the
# actual intensity with Gaussian noise.
FORECAST_MODES = ("perfect", "model", "issued", "noise5", "noise10")
# What they plan the weather on: WeatherForecaster (fitted on the past only), issued weather
# forecasts where they cover the plan (the WeatherForecaster beyond), or the actual weather.
WEATHER_FORECAST_MODES = ("model", "issued", "perfect")


def default_weather_forecast(forecast_mode: str) -> str:
    """Forecast weather unless everything is perfect: ``perfect`` plans on perfect information."""
    return "perfect" if forecast_mode == "perfect" else "model"

# Oracle horizon: longer than any batch deadline of the example sites (24 h) so that it
# sees every hour a deferral could use.
ORACLE_HORIZON_H = 36.0


def _coolshift_policy(site, plant_model, data, forecast_mode, interval_h, horizon_h, seed, options=None, name="coolshift",
                      history=None, reactive=True, plan_options=None, demand_headroom=True, warm_start=True,
                      weather_forecast="perfect", issued=None, issued_weather=None):
    sim_forecast = None
    provider = observed_forecast
    if weather_forecast not in WEATHER_FORECAST_MODES:
        raise ValueError(f"unknown weather forecast {weather_forecast!r}; choose from {WEATHER_FORECAST_MODES}")
    weather = weather_forecast in ("model", "issued")
    if weather_forecast == "issued" and issued_weather is None:
        raise ValueError("weather forecast 'issued' needs issued weather forecasts")
    wx = dict(weather=weather, issued_weather=issued_weather if weather_forecast == "issued" else None)
    if forecast_mode in ("model", "issued"):
        if forecast_mode == "issued" and issued is None:
            raise ValueError("forecast 'issued' needs issued intensity forecasts")
        level = _interactive_plan_quantile(forecast_mode, reactive, demand_headroom)
        levels = {} if level is None else {demand_col(c.name): level for c in site.workload_classes
                                           if c.kind == "interactive"}
        provider = ModelForecast(data, history=history, demand_headroom=demand_headroom,
                                 issue_hours=decision_hours_utc(data.index[0], interval_h), quantiles=levels,
                                 issued=IssuedForecasts(issued) if forecast_mode == "issued" else None, **wx)
    elif forecast_mode in ("noise5", "noise10", "perfect"):
        if forecast_mode != "perfect":
            sim_forecast = noisy_forecast(data, 0.05 if forecast_mode == "noise5" else 0.10, seed=seed)
        if weather:  # intensity and demand as the simulator passes them, the weather forecast
            provider = ModelForecast(data, history=history, intensity=False, **wx)
    else:
        raise ValueError(f"unknown forecast mode {forecast_mode!r}; choose from {FORECAST_MODES}")
    opts = options or closed_loop_options()
    if plan_options:
        opts = dataclasses.replace(opts, **plan_options)
    pol = RecedingHorizonPolicy(site, plant_model, interval_h=interval_h, horizon_h=horizon_h,
                                forecast_provider=provider, options=opts, name=name, reactive=reactive,
                                warm_start=warm_start)
    return pol, sim_forecast


# Relative cost of a policy's run (LP policies first when run in parallel: the longest jobs
# start first so the cheap baselines fill the gaps).
def _cost_rank(name: str) -> int:
    return 0 if name == "oracle" else 1 if name.startswith("coolshift") else 2


def _interactive_plan_quantile(forecast_mode: str, reactive: bool, demand_headroom: bool) -> float | None:
    """The quantile interactive demand is planned at: model forecasts with the autoscaler
    covering demand above the plan (:data:`~coolshift.control.receding.INTERACTIVE_PLAN_QUANTILE`);
    None otherwise (the point forecast, or q90 with headroom)."""

    own = forecast_mode in ("model", "issued")
    return INTERACTIVE_PLAN_QUANTILE if own and reactive and not demand_headroom else None


def _headroom(demand_headroom: bool | None, reactive: bool) -> bool:
    """Plan demand at its q90 unless the autoscaler covers demand above the point forecast."""
    return (not reactive) if demand_headroom is None else demand_headroom


# Fallback plans listed by start and reason in the record (the count is always complete).
MAX_FALLBACKS_LISTED = 50


def run_policy(name: str, site: SiteConfig, data: pd.DataFrame, plant_model=None, forecast_mode: str = "perfect",
               interval_h: float = 4.0, seed: int = 0, history: pd.DataFrame | None = None,
               reactive: bool = True, progress: Callable[[int, int], None] | None = None,
               plan_options: dict | None = None, demand_headroom: bool | None = None,
               warm_start: bool = True, weather_forecast: str | None = None,
               issued: pd.DataFrame | None = None, issued_weather: pd.DataFrame | None = None) -> dict:
    """Run one policy on the simulator: ``{"result": SimResult, "seconds": s, "planner": {...} | None}``.

    ``weather_forecast``: what the Coolshift policies plan the weather on (None:
    :func:`default_weather_forecast`); the oracle always plans on the actual weather.
    ``issued``: issued intensity forecasts (long frame) for ``forecast_mode="issued"``;
    ``issued_weather``: issued weather forecasts for ``weather_forecast="issued"``.

    ``warm_start``: LP policies start each re-plan from the previous plan's basis
    (:mod:`coolshift.optimizer.warmstart`; off: every plan a cold solve).

    ``demand_headroom`` (model forecast only): plan demand at its 90th percentile rather than
    the point forecast; None = on without the autoscaler, off with it (the autoscaler covers
    demand above the forecast within the interval).
    """
    demand_headroom = _headroom(demand_headroom, reactive)
    weather_forecast = weather_forecast or default_weather_forecast(forecast_mode)
    own = dict(weather_forecast=weather_forecast, issued=issued, issued_weather=issued_weather)

    t0, c0 = time.perf_counter(), time.process_time()
    sim_forecast = None
    if name == "coolshift":
        pol, sim_forecast = _coolshift_policy(site, plant_model, data, forecast_mode, interval_h, None, seed,
                                              history=history, reactive=reactive, plan_options=plan_options,
                                              demand_headroom=demand_headroom, warm_start=warm_start, **own)
    elif name in LEVER_POLICIES:

        opts = closed_loop_options(levers=frozenset({name.removeprefix("coolshift_")}))
        pol, sim_forecast = _coolshift_policy(site, plant_model, data, forecast_mode, interval_h, None, seed,
                                              options=opts, name=name, history=history, reactive=reactive,
                                              plan_options=plan_options, demand_headroom=demand_headroom,
                                              warm_start=warm_start, **own)
    elif name == "oracle":
        pol, _ = _coolshift_policy(site, plant_model, data, "perfect", interval_h, ORACLE_HORIZON_H, seed, name="oracle",
                                   reactive=reactive, plan_options=plan_options, warm_start=warm_start)
    else:
        pol = get_policy(name)
    res = simulate(site, data, pol, forecast=sim_forecast, progress=progress)
    planner = None
    if hasattr(pol, "plans"):
        fb = [p for p in pol.plans if p[2]]
        planner = {"plans": len(pol.plans), "fallback_plans": len(fb),
                   "mean_plan_s": float(np.mean([p[3] or 0 for p in pol.plans])) if pol.plans else 0.0,
                   "autoscaled_server_steps": float(getattr(pol, "woken_servers", 0.0)),
                   "simplex_iterations": int(getattr(pol, "simplex_iterations", 0)),
                   "fallbacks": [{"start": p[0].isoformat(), "reason": p[4]} for p in fb[:MAX_FALLBACKS_LISTED]]}
        src = getattr(getattr(pol, "forecast_provider", None), "issued", None)
        if src is not None:  # how much of the planned intensity came from the issued forecasts
            planner["issued_steps"] = src.steps_issued
            planner["issued_steps_share"] = src.steps_issued / src.steps_planned if src.steps_planned else 0.0
        wsrc = getattr(getattr(pol, "forecast_provider", None), "issued_weather", None) or {}
        if "temp_c" in wsrc:  # how much of the planned weather came from issued forecasts
            w = wsrc["temp_c"]
            planner["issued_weather_steps_share"] = w.steps_issued / w.steps_planned if w.steps_planned else 0.0
    return {"result": res, "seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0,
            "planner": planner}


def _run_policy_task(name, shared, kwargs, progress_key):
    """Dask task: :func:`run_policy` with its progress published to a ``distributed.Variable``."""
    from distributed import Variable

    var = Variable(progress_key) if progress_key else None
    last = [0.0]

    def progress(done, total):
        now = time.monotonic()
        if var is not None and (now - last[0] > 1.0 or done == total):
            last[0] = now
            var.set([done, total])

    return run_policy(name, shared["site"], shared["data"], shared["plant_model"], history=shared["history"],
                      issued=shared.get("issued"), issued_weather=shared.get("issued_weather"), progress=progress,
                      **kwargs)


def _run_parallel(policies, workers, shared, kwargs, progress) -> dict:
    """Each policy in its own task on a ``LocalCluster`` of ``workers`` single-threaded processes."""
    from distributed import Client, LocalCluster, Variable

    run = uuid.uuid4().hex[:8]
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        shared_f = client.scatter([shared], broadcast=True, hash=False)[0]
        futures, keys = {}, {}
        for name in sorted(policies, key=_cost_rank):  # longest first
            keys[name] = f"evaluate-progress-{name}-{run}" if progress else None
            if keys[name]:  # set before the task starts: a get never waits (nor logs a timeout)
                Variable(keys[name], client=client).set([0, len(shared["data"])])
            futures[name] = client.submit(_run_policy_task, name, shared_f, kwargs, keys[name], pure=False,
                                          key=f"evaluate-{name}-{run}", priority=-_cost_rank(name))
        while not all(f.done() for f in futures.values()):
            time.sleep(2.0)  # progress every 2 s: a poll costs the client ~7 % of a core at 0.5 s
            if progress:
                for name, f in futures.items():
                    if f.done():
                        continue
                    done, total = Variable(keys[name], client=client).get()
                    progress(name, done, total)
        out = {name: f.result() for name, f in futures.items()}  # re-raises a policy's error here
        if progress:
            for name, r in out.items():
                progress(name, len(shared["data"]), len(shared["data"]))
    return out


def evaluate_policies(
    site: SiteConfig,
    data: pd.DataFrame,
    policies: list[str],
    plant_model=None,
    forecast_mode: str = "perfect",
    interval_h: float = 4.0,
    seed: int = 0,
    progress: Callable[[str, int, int], None] | None = None,
    keep_timeseries: dict | None = None,
    history: pd.DataFrame | None = None,
    workers: int = 1,
    reactive: bool = True,
    plan_options: dict | None = None,
    demand_headroom: bool | None = None,
    warm_start: bool = True,
    weather_forecast: str | None = None,
    issued: pd.DataFrame | None = None,
    issued_weather: pd.DataFrame | None = None,
) -> dict:
    """Run each policy over ``data``; return the evaluation record (see ``evaluation.json``).

    ``workers`` > 1 runs the policies as separate processes (a dask ``LocalCluster``); the
    record is the same as in one process, only ``runtime_s`` differs. ``reactive``: the LP
    policies wake servers within a plan interval when observed demand does not fit
    (:func:`coolshift.control.receding.autoscale_servers`). ``plan_options``: fields of
    :class:`coolshift.optimizer.data.PlanOptions` set for every LP policy (Coolshift, its
    levers and the oracle alike), e.g. ``{"support_envelope": False}``. ``demand_headroom``:
    see :func:`run_policy` (None: off when ``reactive``). ``warm_start``, ``weather_forecast``
    and ``issued``: see :func:`run_policy`.
    """
    weather_forecast = weather_forecast or default_weather_forecast(forecast_mode)
    if forecast_mode not in FORECAST_MODES:
        raise ValueError(f"unknown forecast mode {forecast_mode!r}; choose from {FORECAST_MODES}")
    if weather_forecast not in WEATHER_FORECAST_MODES:
        raise ValueError(f"unknown weather forecast {weather_forecast!r}; choose from {WEATHER_FORECAST_MODES}")
    if forecast_mode == "issued" and issued is None:
        raise ValueError("forecast 'issued' needs issued intensity forecasts")
    if weather_forecast == "issued" and issued_weather is None:
        raise ValueError("weather forecast 'issued' needs issued weather forecasts")
    demand_headroom = _headroom(demand_headroom, reactive)
    unknown = [p for p in policies if p not in POLICIES + LEVER_POLICIES]
    if unknown:
        raise ValueError(f"unknown policies {unknown}; choose from {list(POLICIES)}")
    if any(p.startswith("coolshift") or p == "oracle" for p in policies) and plant_model is None:
        raise ValueError("the coolshift and oracle policies need a trained plant model (run `coolshift train`)")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    code_version = _code_version()  # at the start: the code that ran, not what HEAD is at the end
    if plan_options:
        known = {f.name for f in dataclasses.fields(PlanOptions)}
        bad = sorted(set(plan_options) - known)
        if bad:
            raise ValueError(f"plan_options: unknown PlanOptions field(s) {bad}")
    kwargs = dict(forecast_mode=forecast_mode, interval_h=interval_h, seed=seed, reactive=reactive,
                  plan_options=plan_options or None, demand_headroom=demand_headroom, warm_start=warm_start,
                  weather_forecast=weather_forecast)
    t0 = time.perf_counter()
    if workers > 1 and len(policies) > 1:
        shared = {"site": site, "data": data, "plant_model": plant_model, "history": history, "issued": issued,
                  "issued_weather": issued_weather}
        runs = _run_parallel(policies, min(workers, len(policies)), shared, kwargs, progress)
    else:
        runs = {}
        for name in policies:
            cb = (lambda done, total, _n=name: progress(_n, done, total)) if progress else None
            runs[name] = run_policy(name, site, data, plant_model, history=history, progress=cb, issued=issued,
                                    issued_weather=issued_weather, **kwargs)
    wall = time.perf_counter() - t0
    results = {n: runs[n]["result"] for n in policies}
    timings = {n: runs[n]["seconds"] for n in policies}
    cpu = {n: runs[n]["cpu_seconds"] for n in policies}
    plans = {n: runs[n]["planner"] for n in policies if runs[n]["planner"] is not None}
    if keep_timeseries is not None:
        for n in policies:
            keep_timeseries[n] = results[n].timeseries
    rec = build_record(site, data, results, forecast_mode, interval_h, timings, plans, plant_model)
    rec["code_version"] = code_version
    rec["wall_s"] = wall
    # CPU seconds per policy (this process's CPU): on a shared machine the wall time depends on
    # the other load; the CPU seconds say what the run costs on dedicated cores
    rec["cpu_s"] = cpu
    rec["workers"] = workers if workers > 1 and len(policies) > 1 else 1
    rec["reactive"] = reactive
    rec["plan_options"] = dict(plan_options or {})
    rec["demand_headroom"] = demand_headroom if forecast_mode in ("model", "issued") else None
    # what the Coolshift policies planned the weather on; the oracle always on the actual weather
    rec["weather_forecast"] = weather_forecast
    rec["oracle_information"] = ("perfect: actual intensity, demand and weather; the same LP and learned plant "
                                 f"model, {ORACLE_HORIZON_H:g} h horizon")
    rec["interactive_plan_quantile"] = _interactive_plan_quantile(forecast_mode, reactive, demand_headroom)
    rec["warm_start"] = warm_start
    return rec


def policy_tco2(summary: dict) -> float:
    """What savings compare [tCO2]: location-based carbon of grid import plus storage wear (0 without storage)."""
    return float(summary["tco2_location"] + summary.get("storage_wear_tco2", 0.0))


def _pct_saving(base: float, value: float) -> float:
    return float(100.0 * (base - value) / base) if base else float("nan")


def build_record(site, data, results: dict, forecast_mode, interval_h, timings, plans, plant_model) -> dict:
    summaries = {k: _jsonable(r.summary) for k, r in results.items()}
    rec = {
        "site": site.name,
        "start": data.index[0].isoformat(),
        "end": (data.index[-1] + (data.index[1] - data.index[0])).isoformat(),
        "step_minutes": int((data.index[1] - data.index[0]).total_seconds() // 60),
        "forecast": forecast_mode,
        "replan_interval_h": interval_h,
        "plant_model": getattr(plant_model, "model_version_", None) if plant_model is not None else None,
        "code_version": _code_version(),
        "policies": summaries,
        "savings_vs_static_pct": {},
        "savings_vs_best_practice_pct": {},
        "oracle_share": None,
        "runtime_s": timings,
        "planner": plans,
    }
    for ref, key in (("static", "savings_vs_static_pct"), ("best_practice", "savings_vs_best_practice_pct")):
        if ref in summaries:
            base = policy_tco2(summaries[ref])
            rec[key] = {k: _pct_saving(base, policy_tco2(s)) for k, s in summaries.items()}
    costs, why = policy_costs(site, results)
    rec["cost_note"] = why
    for k, c in costs.items():
        summaries[k].update(c)
    if costs and "static" in costs:
        base = costs["static"]["cost_usd"]
        rec["cost_savings_vs_static_pct"] = {k: _pct_saving(base, c["cost_usd"]) for k, c in costs.items()}
    if {"static", "coolshift", "oracle"} <= summaries.keys():
        base = policy_tco2(summaries["static"])
        oracle_saving = base - policy_tco2(summaries["oracle"])
        cs_saving = base - policy_tco2(summaries["coolshift"])
        rec["oracle_share"] = float(cs_saving / oracle_saving) if oracle_saving > 0 else None
    return rec


def policy_costs(site: SiteConfig, results: dict) -> tuple[dict, str | None]:
    """Each policy's electricity bill under the site's tariff (energy and demand charges, USD)
    from its simulated grid import (facility + storage charge - discharge), plus storage wear
    (``storage_usd``); ({}, why) when the site has no tariff or its prices do not cover the period."""
    if site.tariff is None:
        return {}, "the site has no tariff: no cost"
    out = {}
    for name, r in results.items():
        ts = r.timeseries
        try:
            price = with_prices(site, pd.DataFrame(index=ts.index))[PRICE_USD_PER_KWH].to_numpy(float)
        except DataError as exc:
            return {}, f"no cost: {exc}"
        step_h = (ts.index[1] - ts.index[0]) / pd.Timedelta(hours=1) if len(ts.index) > 1 else site.step_h
        b = bill(ts.index, ts["grid_power_kw"].to_numpy(float), price, site.tariff, step_h)
        wear = float(r.summary.get("storage_wear_usd", 0.0))
        out[name] = {"cost_usd": b["cost_usd"] + wear, "energy_cost_usd": b["energy_usd"],
                     "demand_charge_usd": b["demand_usd"], "storage_usd": wear}
    return out, None


def savings_table(rec: dict) -> pd.DataFrame:
    """One row per policy: energy, carbon, PUE, WUE, violations and savings."""
    rows = []
    for name, s in rec["policies"].items():
        rows.append({
            "policy": name,
            "facility_MWh": s["facility_kwh"] / 1000.0,
            "tCO2_location": s["tco2_location"],
            "tCO2_market": s["tco2_market"],
            "PUE": s["pue"],
            "WUE_L_per_kWh": s.get("wue_l_per_kwh"),
            "SLA_violations": s["sla_violations"],
            "late_work_units": s["late_work_units"],
            "thermal_violation_min": s["thermal_violation_minutes"],
            "saving_vs_static_pct": rec["savings_vs_static_pct"].get(name),
            "saving_vs_best_practice_pct": rec["savings_vs_best_practice_pct"].get(name),
        })
        if "storage_discharged_kwh" in s:  # the site's storage: what each policy did with it
            rows[-1]["grid_MWh"] = s["grid_kwh"] / 1000.0
            rows[-1]["storage_discharged_MWh"] = s["storage_discharged_kwh"] / 1000.0
            rows[-1]["storage_wear_tCO2"] = s["storage_wear_tco2"]
            rows[-1]["soc_min_kWh"] = s["storage_soc_min_kwh"]
            rows[-1]["soc_max_kWh"] = s["storage_soc_max_kwh"]
        if "cost_usd" in s:  # the site's tariff: the bill beside the carbon
            rows[-1]["cost_kUSD"] = s["cost_usd"] / 1000.0
            rows[-1]["cost_saving_vs_static_pct"] = rec.get("cost_savings_vs_static_pct", {}).get(name)
    return pd.DataFrame(rows).set_index("policy")


def _code_version() -> str | None:
    """The git commit the evaluation ran on (figures in docs cite it), if run from a checkout."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _jsonable(d):
    if isinstance(d, dict):
        return {k: _jsonable(v) for k, v in d.items()}
    if isinstance(d, (list, tuple)):
        return [_jsonable(v) for v in d]
    if isinstance(d, (np.floating, np.integer)):
        return d.item()
    if isinstance(d, pd.Timestamp):
        return d.isoformat()
    return d
