"""Savings of job-level shifting on the Let's Wait Awhile 2020 intensity (DE, GB, FR).

Scenario (after Wiesner et al., "Let's Wait Awhile", Middleware '21,
doi:10.1145/3464298.3493399, their nightly-job scenario): one 30-minute job a day in
2020, nominally at 01:00 UTC, that may run up to 8 hours either side (release 17:00 the
day before, deadline 09:30). Baseline: every job at 01:00 (``baseline_start``). Power
1 kW (savings in % do not depend on it). Slots of 30 minutes. Decided under each
forecast mode; emissions counted on the actual intensity.

The LWA files carry no licence, so they are read from ``--data`` (default the shared
data folder) and never copied. Prints a markdown table, the equivalent ``coolshift
shift`` commands, and as its last line one JSON object with the figures.

    .venv/bin/python benchmarks/shift_lwa_table.py [--data DIR] [--seeds 10] [--jobs-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

from coolshift.io import read_carbon, write_frame_atomic
from coolshift.models.forecast import PersistenceForecaster
from coolshift.shift import make_schedule, prepare, validate_jobs
from coolshift.shift.forecast import FORECAST_MODES, _rolling, model_decisions, run_forecast_mode

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / \
    "carbon_intensity" / "lets_wait_awhile_entsoe_2020"
REGIONS = {"DE": "ger_ci.csv", "GB": "gb_ci.csv", "FR": "fr_ci.csv"}
FLEX_H = 8.0        # hours either side of the nominal start (LWA nightly scenario)
DURATION_H = 0.5    # one 30-minute job
NOMINAL = "01:00"   # nominal start, UTC


def nightly_jobs(year: int = 2020, flex_h: float = FLEX_H, duration_h: float = DURATION_H,
                 power_kw: float = 1.0) -> pd.DataFrame:
    """One job per day of ``year``: nominal start 01:00 UTC, window +-flex_h."""
    days = pd.date_range(f"{year}-01-01", f"{year}-12-31", freq="D", tz="UTC")
    nominal = days + pd.Timedelta(NOMINAL + ":00")
    flex = pd.Timedelta(hours=flex_h)
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    return pd.DataFrame({
        "job_id": days.strftime("%Y-%m-%d"),
        "release": (nominal - flex).strftime(fmt),
        "deadline": (nominal + flex + pd.Timedelta(hours=duration_h)).strftime(fmt),
        "duration_h": duration_h,
        "power_kw": power_kw,
        "baseline_start": nominal.strftime(fmt),
    })


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--jobs-dir", type=Path, default=None,
                    help="also write the jobs CSV here (for the equivalent CLI calls)")
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        print(f"skipped: LWA data not found at {args.data}")
        print(json.dumps({"skipped": True}))
        return 0
    raw = nightly_jobs()
    jobs = validate_jobs(raw, source="nightly jobs")
    if args.jobs_dir:
        write_frame_atomic(args.jobs_dir / "jobs_lwa_2020.csv", raw.set_index("job_id"))
    results: dict[str, dict] = {}
    for region, name in REGIONS.items():
        intensity = read_carbon(args.data / name, "lwa")
        prob = prepare(jobs, intensity, "30min")
        results[region] = {}
        for mode in FORECAST_MODES:
            t0 = time.perf_counter()
            run = run_forecast_mode(prob, mode, seeds=args.seeds)
            s = run.summary
            results[region][mode] = {
                "savings_pct": round(s["savings_pct"], 2),
                "baseline_kgco2": round(s["baseline_kgco2"], 3),
                "shifted_kgco2": round(s["shifted_kgco2"], 3),
                "late_jobs": s["late_jobs"],
                "seconds": round(time.perf_counter() - t0, 1),
                **({"savings_pct_min": round(s["savings_pct_min"], 2),
                    "savings_pct_max": round(s["savings_pct_max"], 2)} if "savings_pct_min" in s else {}),
                **({"forecast_wape_pct": round(s["forecast_wape_pct"], 1),
                    "forecast_fallback_jobs": s["forecast_fallback_jobs"]} if mode == "model" else {}),
            }
            print(f"{region} {mode}: {results[region][mode]}", file=sys.stderr)
        # reference: the naive day-ahead forecast (same slot on the latest observed day)
        decisions, st = model_decisions(prob, PersistenceForecaster, refit_every="100000D")
        job, slot, hours, _, _ = _rolling(prob, decisions, None, False)
        s = make_schedule(prob, job, slot, hours, "persistence", 0.0).summary()
        results[region]["persistence_reference"] = {
            "savings_pct": round(s["savings_pct"], 2), "late_jobs": s["late_jobs"],
            "forecast_wape_pct": round(st["forecast_wape_pct"], 1)}
    print("| region | baseline gCO2/kWh at 01:00 | " + " | ".join(f"{m} saved %" for m in FORECAST_MODES)
          + " | model forecast WAPE % | persistence forecast (reference) saved % / WAPE % |")
    print("|---|---:|" + "---:|" * len(FORECAST_MODES) + "---:|---:|")
    for region, r in results.items():
        base_g = r["perfect"]["baseline_kgco2"] * 1000 / (len(jobs) * DURATION_H)  # 1 kW jobs
        cells = []
        for m in FORECAST_MODES:
            c = f"{r[m]['savings_pct']:.1f}"
            if "savings_pct_min" in r[m]:
                c += f" ({r[m]['savings_pct_min']:.1f}-{r[m]['savings_pct_max']:.1f})"
            cells.append(c)
        ref = r["persistence_reference"]
        print(f"| {region} | {base_g:.0f} | " + " | ".join(cells) + f" | {r['model']['forecast_wape_pct']:.1f} | "
              f"{ref['savings_pct']:.1f} / {ref['forecast_wape_pct']:.1f} |")
    print(f"\n{len(jobs)} jobs per region, late jobs: "
          f"{max(v['late_jobs'] for r in results.values() for v in r.values())}; noise modes: mean "
          f"(min-max) over {args.seeds} seeds")
    print("\nEquivalent CLI calls (jobs file written with --jobs-dir):")
    for region, name in REGIONS.items():
        print(f"  coolshift shift --carbon {args.data / name} --carbon-format lwa "
              f"--jobs JOBS_DIR/jobs_lwa_2020.csv --out out/{region.lower()}_MODE --forecast MODE "
              f"--seeds {args.seeds}")
    print(json.dumps({"jobs_per_region": len(jobs), "seeds": args.seeds, "results": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
