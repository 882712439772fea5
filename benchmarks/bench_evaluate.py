"""Closed-loop evaluation speed: how long a period takes per policy, against the simulator floor.

The floor is the simulator running the `static` rule over the same period in the same
run (no planning); Coolshift and the oracle add one LP per re-plan (every 4 h).
Policies run in parallel processes (``--workers``, default: cores); "total" is the wall time
of the whole evaluation, the figure the < 30 min target for a year of the large site is about.
Usage: python benchmarks/bench_evaluate.py [--site S] [--start D] [--end D] [--forecast perfect|model|noise5|noise10]
[--weather-forecast model|perfect]
[--workers N] [--no-reactive] [--no-support-envelope] [--no-warm-start] (needs a registered plant model: `coolshift train`, see README).
Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from coolshift.config import load_site  # noqa: E402
from coolshift.control.evaluation import default_weather_forecast, evaluate_policies  # noqa: E402
from coolshift.io import load_site_data  # noqa: E402
from coolshift.models.registry import load_plant_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--site", default=str(REPO / "configs/sites/philadelphia_multihall_20mw.yaml"))
    ap.add_argument("--start", default="2022-01-01")
    ap.add_argument("--end", default="2023-01-01")
    ap.add_argument("--forecast", default="model")
    ap.add_argument("--weather-forecast", default=None, help="model|perfect (default: as coolshift evaluate)")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--policies", default="static,best_practice,carbon_greedy,coolshift,oracle")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--no-reactive", action="store_true")
    ap.add_argument("--no-support-envelope", action="store_true", help="as `coolshift evaluate --no-support-envelope`")
    ap.add_argument("--no-warm-start", action="store_true", help="every re-plan a cold solve")
    a = ap.parse_args()
    site = load_site(a.site)
    t0 = time.perf_counter()
    data = load_site_data(site, a.start, a.end)
    history = None
    weather = a.weather_forecast or default_weather_forecast(a.forecast)
    if a.forecast == "model" or weather == "model":  # the forecasters train on what precedes the period, as evaluate does
        import pandas as pd

        from coolshift.io import DataError
        from coolshift.usecases.nightly import HISTORY_DAYS

        try:
            history = load_site_data(site, (data.index[0] - pd.Timedelta(days=HISTORY_DAYS)).isoformat(),
                                     data.index[0].isoformat())
        except DataError:
            history = None
    load_s = time.perf_counter() - t0
    model = load_plant_model(site, workdir=a.workdir)
    t1 = time.perf_counter()
    rec = evaluate_policies(site, data, a.policies.split(","), model, forecast_mode=a.forecast, history=history,
                            workers=a.workers, reactive=not a.no_reactive,
                            plan_options={"support_envelope": False} if a.no_support_envelope else None,
                            warm_start=not a.no_warm_start, weather_forecast=weather)
    total = time.perf_counter() - t1
    floor = rec["runtime_s"]["static"]
    print(f"{site.name}: {len(data):,} steps of {rec['step_minutes']} min, forecast {a.forecast}, weather "
          f"{rec['weather_forecast']}, data load {load_s:.1f} s, "
          f"{rec['workers']} worker process(es), code {rec['code_version']}, plan options {rec['plan_options'] or 'defaults'}, "
          f"warm-started re-plans {'on' if rec['warm_start'] else 'off'}")
    print(f"{'policy':<16}{'seconds':>10}{'CPU s':>10}{'x floor':>10}{'plans':>8}{'s/plan':>8}{'it/plan':>9}")
    rows = []
    for name, sec in rec["runtime_s"].items():
        pl = rec["planner"].get(name, {})
        cpu = rec["cpu_s"][name]
        it = pl.get("simplex_iterations", 0) / max(pl.get("plans", 0), 1)
        print(f"{name:<16}{sec:>10.1f}{cpu:>10.1f}{sec / floor:>10.1f}{pl.get('plans', 0):>8}{pl.get('mean_plan_s', 0):>8.3f}"
              f"{it:>9.0f}")
        rows.append({"policy": name, "seconds": sec, "cpu_s": cpu, "x_floor": sec / floor, "plans": pl.get("plans", 0),
                     "mean_plan_s": pl.get("mean_plan_s", 0.0), "simplex_iterations_per_plan": it})
    serial = sum(rec["runtime_s"].values())
    load = os.getloadavg()
    print(f"load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on {os.cpu_count()} cores "
          f"(other jobs share the cores: the CPU seconds are what the run itself needs)")
    print(f"with data and model loading {time.perf_counter() - t0:.1f} s")
    print(f"total {total:.1f} s ({total / 60:.1f} min; target for a year of the large site: < 30 min on 2 cores); "
          f"policies one after another would take {serial:.1f} s ({serial / max(total, 1e-9):.2f}x the wall time)")
    print(json.dumps({"site": site.name, "steps": len(data), "forecast": a.forecast, "weather_forecast": rec["weather_forecast"],
                      "workers": rec["workers"],
                      "total_s": total, "total_incl_load_s": time.perf_counter() - t0, "serial_s": serial, "floor_s": floor, "policies": rows, "loadavg": list(load),
                      "code_version": rec["code_version"], "plan_options": rec["plan_options"],
                      "warm_start": rec["warm_start"], "tco2_location": {k: v["tco2_location"] for k, v in rec["policies"].items()},
                      "oracle_share": rec["oracle_share"]}))


if __name__ == "__main__":
    main()
