"""Closed-loop evaluation: every policy run on the simulator over the same period and data.

The plant is always the simulator (:mod:`coolshift.simulations`), never the learned
model. Policies: the simulator's baselines ``static``, ``best_practice`` and
``carbon_greedy`` (defined once there), ``coolshift`` (receding-horizon LP on forecasts)
and ``oracle`` (the same optimiser with the actual future values and a longer horizon:
what a planner with perfect foresight could save, given the same learned model).
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import pandas as pd

from coolshift.config import SiteConfig

__all__ = ["POLICIES", "FORECAST_MODES", "evaluate_policies", "savings_table"]

POLICIES = ("static", "best_practice", "carbon_greedy", "coolshift", "oracle")
# Coolshift with one lever on and the others as in the static baseline (to attribute savings).
LEVERS = ("cooling", "consolidation", "shifting", "offload")
LEVER_POLICIES = tuple(f"coolshift_{lever}" for lever in LEVERS)
FORECAST_MODES = ("perfect", "model", "noise5", "noise10")
# Oracle horizon: longer than any batch deadline of the example sites (24 h) so that it
# sees every hour a deferral could use.
ORACLE_HORIZON_H = 36.0


def _coolshift_policy(site, plant_model, data, forecast_mode, interval_h, horizon_h, seed, options=None, name="coolshift",
                      history=None):
    from coolshift.optimizer.data import PlanOptions
    from coolshift.optimizer.receding import ModelForecast, RecedingHorizonPolicy, noisy_forecast, observed_forecast

    sim_forecast = None
    provider = observed_forecast
    if forecast_mode == "model":
        provider = ModelForecast(data, history=history)
    elif forecast_mode in ("noise5", "noise10"):
        sim_forecast = noisy_forecast(data, 0.05 if forecast_mode == "noise5" else 0.10, seed=seed)
    elif forecast_mode != "perfect":
        raise ValueError(f"unknown forecast mode {forecast_mode!r}; choose from {FORECAST_MODES}")
    pol = RecedingHorizonPolicy(site, plant_model, interval_h=interval_h, horizon_h=horizon_h,
                                forecast_provider=provider, options=options or PlanOptions(), name=name)
    return pol, sim_forecast


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
) -> dict:
    """Run each policy over ``data``; return the evaluation record (see ``evaluation.json``)."""
    from coolshift.simulations.engine import simulate
    from coolshift.simulations.policies import get_policy

    unknown = [p for p in policies if p not in POLICIES + LEVER_POLICIES]
    if unknown:
        raise ValueError(f"unknown policies {unknown}; choose from {list(POLICIES)}")
    if any(p.startswith("coolshift") or p == "oracle" for p in policies) and plant_model is None:
        raise ValueError("the coolshift and oracle policies need a trained plant model (run `coolshift train`)")
    results, timings, plans = {}, {}, {}
    code_version = _code_version()  # at the start: the code that ran, not what HEAD is at the end
    for name in policies:
        cb = (lambda done, total, _n=name: progress(_n, done, total)) if progress else None
        t0 = time.perf_counter()
        sim_forecast = None
        if name == "coolshift":
            pol, sim_forecast = _coolshift_policy(site, plant_model, data, forecast_mode, interval_h, None, seed,
                                                  history=history)
        elif name in LEVER_POLICIES:
            from coolshift.optimizer.data import PlanOptions

            opts = PlanOptions(levers=frozenset({name.removeprefix("coolshift_")}))
            pol, sim_forecast = _coolshift_policy(site, plant_model, data, forecast_mode, interval_h, None, seed,
                                                  options=opts, name=name, history=history)
        elif name == "oracle":
            pol, _ = _coolshift_policy(site, plant_model, data, "perfect", interval_h, ORACLE_HORIZON_H, seed, name="oracle")
        else:
            pol = get_policy(name)
        res = simulate(site, data, pol, forecast=sim_forecast, progress=cb)
        timings[name] = time.perf_counter() - t0
        results[name] = res
        if keep_timeseries is not None:
            keep_timeseries[name] = res.timeseries
        if hasattr(pol, "plans"):
            fb = [p for p in pol.plans if p[2]]
            plans[name] = {"plans": len(pol.plans), "fallback_plans": len(fb),
                           "mean_plan_s": float(np.mean([p[3] or 0 for p in pol.plans])) if pol.plans else 0.0}
    rec = build_record(site, data, results, forecast_mode, interval_h, timings, plans, plant_model)
    rec["code_version"] = code_version
    return rec


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
            base = summaries[ref]["tco2_location"]
            rec[key] = {k: _pct_saving(base, s["tco2_location"]) for k, s in summaries.items()}
    if {"static", "coolshift", "oracle"} <= summaries.keys():
        base = summaries["static"]["tco2_location"]
        oracle_saving = base - summaries["oracle"]["tco2_location"]
        cs_saving = base - summaries["coolshift"]["tco2_location"]
        rec["oracle_share"] = float(cs_saving / oracle_saving) if oracle_saving > 0 else None
    return rec


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
    return pd.DataFrame(rows).set_index("policy")


def _code_version() -> str | None:
    """The git commit the evaluation ran on (figures in docs cite it), if run from a checkout."""
    import subprocess
    from pathlib import Path

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
