"""`coolshift evaluate`: :func:`coolshift.usecases.evaluate.evaluate_site` from the command line.

Parses the options, calls the use case with a progress bar per policy and prints the
savings table and where the outputs went.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from coolshift.commands._common import (
    EXIT_BAD_INPUT, CarbonFmtOpt, CarbonOpt, EndOpt, SiteOpt, StartOpt, WeatherFmtOpt, WeatherOpt, WorkloadFmtOpt,
    WorkloadOpt, cli_errors, console, err_console,
)


def _print_result(res) -> None:
    """The savings table, the oracle's share, the run times and the files written."""
    rec, out = res.record, res.out
    console.print(res.table.round(3).to_string())
    console.print(f"coolshift planned on: intensity and demand '{rec['forecast']}', weather "
                  f"'{rec.get('weather_forecast', 'perfect')}'"
                  + (f" (issued values on {rec['planner']['coolshift']['issued_steps_share']:.0%} of planned steps)"
                     if "issued_steps_share" in rec.get("planner", {}).get("coolshift", {}) else "")
                  + (f" (issued weather on {rec['planner']['coolshift']['issued_weather_steps_share']:.0%} of planned "
                     "steps)" if "issued_weather_steps_share" in rec.get("planner", {}).get("coolshift", {}) else ""))
    cs = rec.get("planner", {}).get("coolshift", {})
    if cs.get("issued_steps_share") == 0.0 and "issued_forecast" in rec:
        iss = rec["issued_forecast"]
        console.print(f"[yellow]warning:[/] the issued forecasts ({iss['first_issue']} to {iss['last_issue']}) cover no "
                      "planned step of the period: Coolshift planned on its own forecasts only")
    if "oracle" in rec["policies"]:
        console.print("oracle: the same LP and learned plant model with perfect information (actual intensity, demand "
                      "and weather; 36 h horizon). Not a bound: its plans are optimal for the learned model, not "
                      "for the simulator's physics, so Coolshift can beat it on a short run.")
    if rec["oracle_share"] is not None:
        console.print(f"share of the perfect-information saving: {rec['oracle_share']:.1%}")
    console.print(f"wall time {rec['wall_s']:.1f} s on {rec['workers']} worker(s); per policy: "
                  + ", ".join(f"{k} {v:.0f} s" for k, v in rec["runtime_s"].items()))
    console.print(f"wrote {out / 'evaluation.json'}, {out / 'evaluation.csv'}, {out / 'report.html'}")


def register(app: typer.Typer) -> None:
    @app.command("evaluate")
    @cli_errors
    def evaluate(
        site: SiteOpt,
        out: Annotated[Path, typer.Option(help="output folder (evaluation.json, evaluation.csv, report.html)")],
        start: StartOpt = None,
        end: EndOpt = None,
        policies: Annotated[str, typer.Option(help="comma-separated: static,best_practice,carbon_greedy,coolshift,oracle; and coolshift_<lever> "
                          "(cooling, consolidation, shifting, offload: that lever alone) to attribute savings")] =
        "static,best_practice,carbon_greedy,coolshift,oracle",
        forecast: Annotated[str, typer.Option(help="what coolshift plans intensity and demand on: perfect|model|issued|"
                                                   "noise5|noise10 (issued: --issued forecasts where they cover the "
                                                   "plan, Coolshift's own beyond)")] = "model",
        weather_forecast: Annotated[Optional[str], typer.Option(
            "--weather-forecast", help="what coolshift plans the weather on: model (forecast from the past only), "
                                       "issued (--issued-weather where it covers the plan, model beyond) or perfect "
                                       "(the actual weather); default: model, perfect with --forecast perfect")] = None,
        issued_weather: Annotated[Optional[list[Path]], typer.Option(
            "--issued-weather", help="Open-Meteo forecast JSON for --weather-forecast issued: a Previous Runs API "
                                     "response (*_previous_dayN: an archive as issued) or a forecast (give "
                                     "--issued-weather-at); repeat for several files")] = None,
        issued_weather_at: Annotated[Optional[str], typer.Option(
            "--issued-weather-at", help="when a plain Open-Meteo forecast was downloaded (ISO 8601, UTC if no offset)")] = None,
        issued: Annotated[Optional[list[Path]], typer.Option(
            help="issued intensity forecasts for --forecast issued (WattTime request_time,forecast_time,<value> or "
                 "SGIP time,moer,f1..fN CSV; repeat for several files)")] = None,
        interval_h: Annotated[float, typer.Option("--interval-h", help="re-plan every N hours")] = 4.0,
        seed: Annotated[int, typer.Option(help="seed of the noise forecasts")] = 0,
        workers: Annotated[Optional[int], typer.Option(help="processes running policies in parallel (default: cores)")] = None,
        reactive: Annotated[bool, typer.Option(help="the LP policies wake servers within a plan interval when "
                                                    "observed demand does not fit (an autoscaler)")] = True,
        support_envelope: Annotated[Optional[bool], typer.Option(
            "--support-envelope/--no-support-envelope",
            help="keep plans inside the plant model's training support (soft rows; default: the optimiser's "
                 "default, on). Off solves ~3-4x faster on the large site")] = None,
        demand_headroom: Annotated[Optional[bool], typer.Option(
            "--demand-headroom/--no-demand-headroom",
            help="model forecast: plan demand at its 90th percentile instead of the point forecast (default: "
                 "off with --reactive, whose autoscaler covers demand above the forecast; on without it)")] = None,
        horizon_end: Annotated[Optional[str], typer.Option(
            help="batch work left at a plan's horizon end: soft (re-planned, penalised; the closed-loop default) "
                 "or hard (none; a plan that cannot clear its queue falls back to best practice)")] = None,
        warm_start: Annotated[bool, typer.Option(
            "--warm-start/--no-warm-start",
            help="start each re-plan from the previous plan's optimal basis moved by the interval (the same "
                 "optimum in fewer simplex iterations); off: every plan a cold solve")] = True,
        workdir: Annotated[Optional[Path], typer.Option(help="site working folder with mlflow.db (default ./.coolshift/<site>)")] = None,
        carbon: CarbonOpt = None, weather: WeatherOpt = None, workload: WorkloadOpt = None,
        carbon_format: CarbonFmtOpt = None, weather_format: WeatherFmtOpt = None, workload_format: WorkloadFmtOpt = None,
    ) -> None:
        """Run the baselines, Coolshift's receding-horizon plans and the oracle on the simulator."""
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        from coolshift.usecases.evaluate import EvaluateOptions, evaluate_site
        from coolshift.usecases.inputs import NoPlantModel

        opts = EvaluateOptions(
            site=site, out=out, start=start, end=end, policies=tuple(p.strip() for p in policies.split(",") if p.strip()),
            forecast=forecast, interval_h=interval_h, seed=seed, workers=workers, reactive=reactive,
            support_envelope=support_envelope, demand_headroom=demand_headroom, horizon_end=horizon_end,
            warm_start=warm_start, weather_forecast=weather_forecast, issued=tuple(issued or ()),
            issued_weather=tuple(issued_weather or ()), issued_weather_at=issued_weather_at, workdir=workdir, carbon=carbon, weather=weather, workload=workload,
            carbon_format=carbon_format, weather_format=weather_format, workload_format=workload_format)
        bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                       TimeElapsedColumn(), console=console, transient=False)
        tasks = {}

        def progress(name: str, done: int, total: int) -> None:
            if not tasks:
                bar.start()  # at the first policy: nothing is drawn while the inputs load
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=total)
            bar.update(tasks[name], completed=done, total=total)

        try:
            res = evaluate_site(opts, progress=progress)
        except NoPlantModel as exc:  # none registered, or one of another plant
            err_console.print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(EXIT_BAD_INPUT) from None
        finally:
            if tasks:
                bar.stop()
        _print_result(res)
