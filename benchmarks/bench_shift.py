"""Job-level shifting at scale: 10,000 jobs over a year of 30-minute slots.

Intensity: the bundled EIA-930 CISO 2022 file (hourly, held over both 30-min slots of each
hour: 17,520 slots). Jobs (seeded): release uniform over the year, duration 0.5-4 h,
slack 2-24 h beyond the duration, power 1-50 kW.

Measured in one run (figures and ratios, then one JSON line):
- independent (no capacity), contiguous and interruptible: the vectorised exact
  optimum, against the floor of a per-job Python loop computing the same optimum;
- several forecasts (noise seeds) on one capacity model: built once, costs changed;
- with a capacity limit: the Pyomo MILP (contiguous) and LP (interruptible) solved by
  HiGHS, split into Pyomo build, Pyomo compile and HiGHS time; the Pyomo part against
  the floor of building the same matrices in numpy (what highspy would take directly);
  and the optimum against the greedy heuristic (emissions, jobs it could not place);
- 100,000 jobs with a capacity limit through the real command (``coolshift shift
  --capacity-kw``, in a child process): wall time and peak RSS (``ru_maxrss`` of the
  child), against the 2 GB floor of issue 17 (PASS/FAIL). The jobs come in batches:
  released on a 6-hour grid over four weeks (July 2022), duration 0.5/1/2/4 h, slack
  4/8/12/24 h, power 1/5/10/25 kW, so at most 7,168 distinct jobs (the job classes the
  model merges). Capacity 4,000 kW (mean load ~2,860 kW).

    .venv/bin/python benchmarks/bench_shift.py [--jobs 10000] [--capacity-kw 400] [--time-limit-s 120]
        [--big-jobs 100000] [--big-capacity-kw 4000] [--big-time-limit-s 120] [--skip-small]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from coolshift.io import read_carbon
from coolshift.shift import (
    greedy_runs,
    make_schedule,
    prepare,
    solve_runs,
    validate_jobs,
)
from coolshift.shift import capacity as sm

CARBON = Path(__file__).resolve().parents[1] / "data" / "carbon_intensity" / "eia930_2022" / \
    "CISO_2022_hourly.csv"
RSS_FLOOR_MB = 2048.0  # issue 17: 100,000 jobs with a capacity limit in under 2 GB


def make_jobs(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp("2022-01-01", tz="UTC")
    slots = 17520 - 2 * 30  # keep every window inside the year
    release = t0 + pd.to_timedelta(rng.integers(0, slots, n) * 30, unit="min")
    duration = rng.choice([0.5, 1.0, 1.5, 2.0, 3.0, 4.0], n)
    slack = rng.choice([2.0, 4.0, 8.0, 12.0, 24.0], n)
    return validate_jobs(pd.DataFrame({
        "job_id": [f"j{i}" for i in range(n)], "release": release,
        "deadline": release + pd.to_timedelta(duration + slack, unit="h"),
        "duration_h": duration, "power_kw": rng.uniform(1, 50, n).round(1)}), source="bench jobs")


def make_batch_jobs(n: int, seed: int = 0) -> pd.DataFrame:
    """Jobs submitted in batches: release on a 6-hour grid over 2022-07-01 .. 07-29, a few
    durations, slacks and node powers (at most 112 x 4 x 4 x 4 = 7,168 distinct jobs)."""
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp("2022-07-01", tz="UTC")
    release = t0 + pd.to_timedelta(rng.integers(0, 28 * 4, n) * 6, unit="h")
    duration = rng.choice([0.5, 1.0, 2.0, 4.0], n)
    slack = rng.choice([4.0, 8.0, 12.0, 24.0], n)
    return pd.DataFrame({
        "job_id": [f"b{i}" for i in range(n)],
        "release": release.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "deadline": (release + pd.to_timedelta(duration + slack, unit="h")).strftime(
            "%Y-%m-%dT%H:%M:%SZ"),
        "duration_h": duration, "power_kw": rng.choice([1.0, 5.0, 10.0, 25.0], n)})


def big_run(n: int, capacity_kw: float, time_limit_s: float) -> dict:
    """``coolshift shift`` on ``n`` batch jobs in a child process: exit code, wall time,
    the child's peak RSS [MB] and its summary.json."""
    exe = Path(sys.executable).with_name("coolshift")
    with tempfile.TemporaryDirectory(prefix="bench_shift_") as tmp:
        jobs = Path(tmp) / "jobs.csv"
        make_batch_jobs(n).to_csv(jobs, index=False)
        out = Path(tmp) / "out"
        cmd = [str(exe), "shift", "--carbon", str(CARBON), "--jobs", str(jobs), "--out", str(out),
               "--capacity-kw", f"{capacity_kw:g}", "--time-limit-s", f"{time_limit_s:g}"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        # ru_maxrss of the children: kB on Linux; the largest child is this one
        rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
        summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() \
            else {}
    return {"exit_code": proc.returncode, "s": wall, "peak_rss_mb": rss_mb, "summary": summary,
            "stderr_tail": proc.stderr.strip().splitlines()[-3:]}


def loop_floor(prob) -> float:
    """Per-job Python loop over each window (the obvious implementation); returns kg."""
    x = prob.actual
    total = 0.0
    for j in range(prob.n_jobs):
        a, b = prob.first[j], prob.stop[j]
        w = np.r_[np.full(prob.n_full[j], prob.slot_h), [prob.rem_h[j]] if prob.rem_h[j] else []]
        if prob.interruptible[j]:
            best = float(np.sort(x[a:b])[: len(w)] @ w)
        else:
            best = min(float(x[t:t + len(w)] @ w) for t in range(a, b - len(w) + 1))
        total += prob.power_kw[j] * best / 1000
    return total


def timed(f, *a, **k):
    t0 = time.perf_counter()
    out = f(*a, **k)
    return out, time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--capacity-kw", type=float, default=400.0)
    ap.add_argument("--time-limit-s", type=float, default=120.0)
    ap.add_argument("--big-jobs", type=int, default=100_000)
    ap.add_argument("--big-capacity-kw", type=float, default=4000.0)
    ap.add_argument("--big-time-limit-s", type=float, default=120.0)
    ap.add_argument("--skip-small", action="store_true", help="only the 100,000-job run")
    args = ap.parse_args(argv)
    # first, before this process grows: the child's peak RSS is read from RUSAGE_CHILDREN
    big = big_run(args.big_jobs, args.big_capacity_kw, args.big_time_limit_s)
    bs = big["summary"]
    ok = big["exit_code"] in (0, 3) and big["peak_rss_mb"] < RSS_FLOOR_MB
    big_fig = {"jobs_100k": args.big_jobs, "jobs_100k_capacity_kw": args.big_capacity_kw,
               "jobs_100k_time_limit_s": args.big_time_limit_s,
               "jobs_100k_s": big["s"], "jobs_100k_peak_rss_mb": big["peak_rss_mb"],
               "jobs_100k_rss_floor_mb": RSS_FLOOR_MB, "jobs_100k_pass": ok,
               "jobs_100k_exit_code": big["exit_code"],
               "jobs_100k_job_classes": bs.get("job_classes"),
               "jobs_100k_variables": bs.get("variables"),
               "jobs_100k_pyomo_groups": bs.get("pyomo_groups"),
               "jobs_100k_highs_s": bs.get("highs_s"), "jobs_100k_highs_status": bs.get("highs_status"),
               "jobs_100k_time_limit_reached": bs.get("time_limit_reached", False),
               "jobs_100k_mip_gap": bs.get("mip_gap"), "jobs_100k_late_jobs": bs.get("late_jobs"),
               "jobs_100k_savings_pct": bs.get("savings_pct"),
               "jobs_100k_greedy_unplaced_jobs": bs.get("greedy", {}).get("unplaced_jobs"),
               "jobs_100k_optimal_vs_greedy_pct": bs.get("optimal_vs_greedy_pct")}
    big_line = (f"{args.big_jobs:,} batch jobs, capacity {args.big_capacity_kw:g} kW, time limit "
                f"{args.big_time_limit_s:g} s (coolshift shift, child process): exit {big['exit_code']}, "
                f"{big['s']:.1f} s, peak RSS {big['peak_rss_mb']:,.0f} MB vs floor {RSS_FLOOR_MB:,.0f} MB: "
                f"{'PASS' if ok else 'FAIL'}")
    big_note = (f"  {bs.get('job_classes')} job classes, {bs.get('variables')} columns "
                f"({bs.get('pyomo_groups')} group(s) through Pyomo); HiGHS {bs.get('highs_s', 0):.1f} s "
                f"{bs.get('highs_status')}"
                + (f", gap {bs['mip_gap']:.3%}" if bs.get("mip_gap") is not None else "")
                + f"; {bs.get('savings_pct', float('nan')):.2f} % saved, {bs.get('late_jobs')} late; greedy "
                f"left {bs.get('greedy', {}).get('unplaced_jobs')} unplaced" if bs else
                "  no summary: " + " | ".join(big["stderr_tail"]))
    if args.skip_small:
        print(big_line)
        print(big_note)
        print(json.dumps(big_fig, default=float))
        return 0 if ok else 1
    import pyomo.environ  # noqa: F401  (import once, outside the timings)

    intensity = read_carbon(CARBON)
    jobs = make_jobs(args.jobs)
    prob, t_prep = timed(prepare, jobs, intensity, "30min")
    fig: dict = {"jobs": args.jobs, "slots": len(prob.slots), "prepare_s": t_prep}
    rows = []

    for label, flag in (("contiguous", False), ("interruptible", True)):
        p = prepare(jobs.assign(interruptible=flag), intensity, "30min")
        (job, slot, hours, method, _), t = timed(solve_runs, p)
        s = make_schedule(p, job, slot, hours, method, t).summary()
        floor_kg, t_loop = timed(loop_floor, p)
        assert abs(floor_kg - s["shifted_kgco2"]) <= 1e-6 * floor_kg, (floor_kg, s["shifted_kgco2"])
        fig[f"independent_{label}"] = {"solve_s": t, "jobs_per_s": args.jobs / t,
                                       "loop_floor_s": t_loop, "speedup_vs_loop": t_loop / t,
                                       "savings_pct": s["savings_pct"]}
        rows.append((f"independent {label}", t, args.jobs / t, f"loop {t_loop:.2f} s, x{t_loop / t:,.0f}",
                     f"{s['savings_pct']:.2f} % saved"))

    cap = args.capacity_kw
    for label, flag in (("contiguous", False), ("interruptible", True)):
        p = prepare(jobs.assign(interruptible=flag), intensity, "30min")
        capa = np.full(len(p.slots), cap)
        # the product path: independent check, exact reductions, Pyomo build, compile, HiGHS
        (job, slot, hours, method, info), t_total = timed(solve_runs, p, None, cap, 1e-4,
                                                          args.time_limit_s)
        opt = make_schedule(p, job, slot, hours, method, t_total, info).summary()
        # floor for the Pyomo overhead: the same matrices from numpy, ready for highspy
        t0 = time.perf_counter()
        for group_jobs, group_rows in sm.components(p, sm.binding_slots(p, capa)):
            sm.matrices_direct(sm.model_matrices(p, p.actual, capa, group_jobs, group_rows))
        t_numpy = time.perf_counter() - t0
        (gj, gs, gh, un), t_greedy = timed(greedy_runs, p, cap)
        g = make_schedule(p, gj, gs, gh, "greedy", t_greedy, None, un).summary()
        t_build, t_compile = info.get("build_s", 0.0), info.get("compile_s", 0.0)
        status, gap = info.get("highs_status", "not needed"), info.get("mip_gap")
        pyomo_s = t_build + t_compile
        fig[f"capacity_{label}"] = {
            "capacity_kw": cap, "method": method, "coupled_jobs": info.get("coupled_jobs", 0),
            "groups": info.get("groups", 0), "largest_group_jobs": info.get("largest_group_jobs", 0),
            "capacity_rows": info.get("capacity_rows", 0), "variables": info.get("variables", 0),
            "rows": info.get("rows", 0), "integer_variables": info.get("integer_variables", 0),
            "pyomo_build_s": t_build, "pyomo_compile_s": t_compile,
            "highs_s": info.get("highs_s", 0.0), "highs_status": status, "mip_gap": gap,
            "numpy_matrices_s": t_numpy,
            "pyomo_overhead_vs_numpy": (t_build + t_compile) / max(t_numpy, 1e-9),
            "total_s": t_total, "jobs_per_s": args.jobs / t_total,
            "shifted_kgco2": opt["shifted_kgco2"], "savings_pct": opt["savings_pct"],
            "late_jobs": opt["late_jobs"],
            "greedy_s": t_greedy, "greedy_kgco2": g["shifted_kgco2"], "greedy_savings_pct": g["savings_pct"],
            "greedy_unplaced_jobs": int(un.sum()),
            "optimal_vs_greedy_pct": 100 * (g["shifted_kgco2"] - opt["shifted_kgco2"]) / g["shifted_kgco2"],
        }
        f = fig[f"capacity_{label}"]
        rows.append((f"capacity {cap:g} kW {label}", t_total, args.jobs / t_total,
                     f"{info.get('coupled_jobs', 0)} coupled jobs in {info.get('groups', 0)} groups "
                     f"(largest {info.get('largest_group_jobs', 0)}); Pyomo build {t_build:.1f} + compile {t_compile:.1f} s vs numpy {t_numpy:.2f} s; "
                     f"HiGHS {info.get('highs_s', 0.0):.1f} s {status}"
                     + (f" gap {gap:.3%}" if gap is not None else ""),
                     f"{opt['savings_pct']:.2f} % saved; greedy {g['savings_pct']:.2f} % "
                     f"({int(un.sum())} unplaced), optimum {f['optimal_vs_greedy_pct']:.2f} % less"))

    # several forecasts on one capacity model (noise seeds): build once, change costs
    from coolshift.shift.forecast import noisy_decision

    p = prepare(jobs.assign(interruptible=True), intensity, "30min")
    solver, t_setup = timed(sm.CapacitySolver, p, np.full(len(p.slots), cap), 1e-4, args.time_limit_s)
    seed_s = [timed(solver.solve, noisy_decision(p.actual, 0.10, k))[1] for k in range(3)]
    fig["capacity_interruptible_3_seeds"] = {"setup_s": t_setup, "solve_s_per_seed": float(np.mean(seed_s)),
                                             "rebuild_each_s": t_setup + float(np.mean(seed_s))}
    rows.append((f"capacity {cap:g} kW interruptible, noise10 x3", t_setup + sum(seed_s),
                 3 * args.jobs / (t_setup + sum(seed_s)),
                 f"build once {t_setup:.1f} s, then {np.mean(seed_s):.1f} s per seed (costs changed in HiGHS)",
                 "reuse across seeds"))

    print(f"{args.jobs:,} jobs over {len(prob.slots):,} slots of 30 min (CISO 2022); prepare {t_prep:.2f} s")
    print(f"{'case':34s} {'seconds':>9s} {'jobs/s':>10s}  notes")
    for name, t, rate, note, result in rows:
        print(f"{name:34s} {t:9.2f} {rate:10,.0f}  {note}; {result}")
    print(big_line)
    print(big_note)
    fig.update(big_fig)
    print(json.dumps(fig, default=float))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
