"""`coolshift shift`: when should each job in a batch run to emit least?

Exit codes (the conventions of ``coolshift.commands._common``):

- 0: optimal schedule written (HiGHS optimal within ``mip_rel_gap``, or no solver needed);
- 2: bad input, including a job set that cannot fit under ``--capacity-kw`` (the message
  names the jobs and the window; nothing written);
- 3: ``--time-limit-s`` stopped HiGHS with a feasible schedule: written, flagged
  ``time_limit_reached`` in summary.json with its ``mip_gap`` (feasible, not proven
  optimal);
- 1: HiGHS stopped with no feasible schedule (the time limit, or another stop); the job
  set was not shown infeasible; nothing written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from coolshift.commands._common import (
    EXIT_BAD_INPUT,
    EXIT_FAILURE,
    EXIT_FALLBACK,
    cli_errors,
    console,
    err_console,
)

FORECASTS = ("perfect", "model", "noise5", "noise10")


def register(app: typer.Typer) -> None:
    app.command("shift", help="Schedule a batch of jobs (release, deadline, duration, power) "
                              "to the lowest-carbon slots; optionally under a capacity limit.")(shift)


@cli_errors
def shift(
    carbon: Annotated[Path, typer.Option("--carbon", help="Carbon-intensity file (any format "
                                         "coolshift.io.read_carbon reads).")],
    jobs: Annotated[Path, typer.Option("--jobs", help="Jobs CSV: job_id, release, deadline, "
                                       "duration_h, power_kw [, interruptible, baseline_start].")],
    out: Annotated[Path, typer.Option("--out", help="Output folder for schedule.csv and "
                                      "summary.json.")],
    carbon_format: Annotated[str, typer.Option("--carbon-format", help="auto, eia930, "
                                               "electricitymaps, watttime, lwa, canonical.")] = "auto",
    interruptible: Annotated[bool, typer.Option("--interruptible", help="Jobs without their own "
                                                "'interruptible' value may be split across slots.")] = False,
    capacity_kw: Annotated[Optional[float], typer.Option("--capacity-kw", help="Power limit shared "
                                                         "by all jobs [kW]; solved as a MILP/LP and "
                                                         "compared with greedy.")] = None,
    slot: Annotated[str, typer.Option("--slot", help="Slot length (pandas offset, e.g. 30min, 1h).")] = "30min",
    forecast: Annotated[str, typer.Option("--forecast", help="perfect | model | noise5 | noise10.")] = "perfect",
    seeds: Annotated[int, typer.Option("--seeds", help="Runs averaged for the noise modes.")] = 5,
    time_limit_s: Annotated[Optional[float], typer.Option("--time-limit-s", help="HiGHS time "
                                                          "limit per MILP/LP group [s]; when it "
                                                          "stops HiGHS the best schedule found is "
                                                          "written with its gap (exit 3), or none "
                                                          "was found (exit 1).")] = None,
) -> None:
    """Read jobs and intensity, decide, write schedule.csv and summary.json atomically."""
    import pandas as pd
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from coolshift.io import read_carbon, write_frame_atomic, write_json_atomic
    from coolshift.shift import JobsError, SolverStopped, prepare, read_jobs
    from coolshift.shift.forecast import run_forecast_mode

    if forecast not in FORECASTS:
        _fail(f"--forecast must be one of {', '.join(FORECASTS)}, got {forecast!r}")
    if seeds < 1:
        _fail("--seeds must be at least 1")
    if capacity_kw is not None and not (0 < capacity_kw < float("inf")):
        _fail("--capacity-kw must be positive and finite (kW)")
    if time_limit_s is not None and not (0 <= time_limit_s < float("inf")):
        _fail("--time-limit-s must be a finite number of seconds >= 0")
    try:
        step = pd.Timedelta(slot)
    except ValueError:
        _fail(f"--slot {slot!r} is not a duration such as 30min or 1h")
    if step <= pd.Timedelta(0) or pd.Timedelta("1D") % step != pd.Timedelta(0):
        _fail(f"--slot {slot!r} must be positive and divide a day")
    if out.exists() and not out.is_dir():
        _fail(f"--out {out} exists and is not a folder")
    try:
        intensity = read_carbon(carbon, carbon_format)
        table = read_jobs(jobs)
        prob = prepare(table, intensity, slot, interruptible, source=str(jobs))
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                      TimeElapsedColumn(), console=console, transient=True) as bar:
            task = bar.add_task(f"shift ({forecast})", total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            run = run_forecast_mode(prob, forecast, seeds=seeds, capacity_kw=capacity_kw,
                                    time_limit_s=time_limit_s, progress=progress)
    except JobsError as exc:
        _fail(str(exc))
    except SolverStopped as exc:
        err_console.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False)
        raise typer.Exit(EXIT_FAILURE) from None

    frames = []
    for k, sched in enumerate(run.schedules):
        t = sched.table.copy()
        if len(run.schedules) > 1:
            t.insert(0, "seed", k)
        frames.append(t)
    schedule = pd.concat(frames, ignore_index=True)
    summary = {**run.summary, "carbon": str(carbon), "jobs_file": str(jobs),
               "interruptible_default": interruptible}
    try:
        write_frame_atomic(out / "schedule.csv", _for_csv(schedule))
        if run.greedy:
            write_frame_atomic(out / "schedule_greedy.csv", _for_csv(run.greedy[0].table))
        write_json_atomic(out / "summary.json", summary)
    except OSError as exc:
        _fail(f"cannot write to {out}: {exc}")
    s = run.summary
    line = (f"{s['jobs']} jobs, {forecast}: {_kg(s['baseline_kgco2'])} -> {_kg(s['shifted_kgco2'])} "
            f"kgCO2 ({s['savings_pct']:.1f} % saved), {s['late_jobs']} late, solved in "
            f"{s['solve_time_s']:.2f} s ({s['method']})")
    console.print(line, highlight=False)
    if "greedy" in s:
        g = s["greedy"]
        console.print(f"greedy one-job-at-a-time: {_kg(g['shifted_kgco2'])} kgCO2 ({g['savings_pct']:.1f} % saved, "
                      f"{g['late_jobs']} jobs it could not place); optimum emits "
                      f"{s['optimal_vs_greedy_pct']:.2f} % less", highlight=False)
    console.print(f"wrote {out / 'schedule.csv'} and {out / 'summary.json'}", highlight=False)
    if s.get("time_limit_reached"):
        gap = s.get("mip_gap")
        gap_text = (f"MIP gap {100 * gap:.3g} % (the optimum emits at most that much less on the "
                    "decision intensity)" if gap is not None else
                    "gap unknown (HiGHS had no lower bound yet)")
        err_console.print(f"[bold yellow]time limit:[/] --time-limit-s {time_limit_s:g} s stopped "
                          f"HiGHS before it proved optimality; the schedule written is the best "
                          f"feasible one it found, {gap_text}", markup=True, highlight=False)
        raise typer.Exit(EXIT_FALLBACK)


def _kg(x: float) -> str:
    return f"{x:,.1f}" if abs(x) >= 100 else f"{x:.4g}"


def _for_csv(frame):
    """The job table with a plain integer index and ISO timestamps."""
    out = frame.copy()
    for c in ("release", "deadline", "start", "end"):
        out[c] = out[c].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    return out.set_index("job_id" if "seed" not in out.columns else "seed")


def _fail(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {message}", markup=True, highlight=False)
    raise typer.Exit(EXIT_BAD_INPUT)
