"""`coolshift evaluate`: closed-loop comparison of policies on the simulator."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from coolshift.commands._common import (
    EXIT_BAD_INPUT, CarbonFmtOpt, CarbonOpt, EndOpt, SiteOpt, StartOpt, WeatherFmtOpt, WeatherOpt, WorkloadFmtOpt,
    WorkloadOpt, cli_errors, console, err_console, load_inputs,
)


def evaluation_figures(results_ts: dict, rec: dict):
    """Bar chart of tCO2 per policy and cumulative carbon over the period."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs = []
    names = list(rec["policies"])
    fig, ax = plt.subplots(figsize=(8, 3.5))
    loc = [rec["policies"][n]["tco2_location"] for n in names]
    mkt = [rec["policies"][n]["tco2_market"] for n in names]
    x = range(len(names))
    ax.bar([i - 0.2 for i in x], loc, width=0.4, label="location-based")
    ax.bar([i + 0.2 for i in x], mkt, width=0.4, label="market-based")
    ax.set_xticks(list(x), names)
    ax.set_ylabel("tCO2")
    ax.legend()
    ax.set_title("Emissions per policy")
    figs.append((fig, "Scope 2 emissions per policy over the period"))
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for n, ts in results_ts.items():
        col = "kgco2_location" if "kgco2_location" in ts.columns else None
        if col:
            (ts[col].cumsum() / 1000).plot(ax=ax, label=n)
    ax.set_ylabel("cumulative tCO2 (location)")
    ax.legend()
    figs.append((fig, "Cumulative location-based emissions"))
    return figs


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
        forecast: Annotated[str, typer.Option(help="what coolshift plans on: perfect|model|noise5|noise10")] = "model",
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

        from coolshift.control.evaluation import FORECAST_MODES, LEVER_POLICIES, POLICIES, evaluate_policies, savings_table
        from coolshift.io.atomic import write_frame_atomic, write_json_atomic, write_text_atomic

        names = [p.strip() for p in policies.split(",") if p.strip()]
        bad = [p for p in names if p not in POLICIES + LEVER_POLICIES]
        if bad or forecast not in FORECAST_MODES:
            err_console.print(f"[bold red]error:[/] unknown policies {bad} or forecast {forecast!r}; policies: "
                              f"{', '.join(POLICIES)}; forecasts: {', '.join(FORECAST_MODES)}")
            raise typer.Exit(EXIT_BAD_INPUT)
        if horizon_end not in (None, "soft", "hard"):
            err_console.print(f"[bold red]error:[/] --horizon-end {horizon_end!r}: choose soft or hard")
            raise typer.Exit(EXIT_BAD_INPUT)
        if workers is not None and workers < 1:
            err_console.print(f"[bold red]error:[/] --workers must be at least 1, got {workers}")
            raise typer.Exit(EXIT_BAD_INPUT)
        import os

        n_workers = workers or os.cpu_count() or 1
        cfg, data = load_inputs(site, start, end, carbon, weather, workload, carbon_format, weather_format, workload_format)
        history = None
        if forecast == "model":
            # the forecasters train on what precedes the period, when the data have it
            import pandas as pd

            from coolshift.io import DataError
            from coolshift.nightly import HISTORY_DAYS

            h0 = data.index[0] - pd.Timedelta(days=HISTORY_DAYS)
            try:
                _, history = load_inputs(site, h0.isoformat(), data.index[0].isoformat(), carbon, weather, workload,
                                         carbon_format, weather_format, workload_format)
            except DataError:
                history = None
        model = None
        if any(n.startswith("coolshift") or n == "oracle" for n in names):
            from coolshift.models.registry import load_plant_model

            try:
                model = load_plant_model(cfg, workdir=workdir)
            except LookupError as exc:
                err_console.print(f"[bold red]error:[/] {exc}")
                raise typer.Exit(EXIT_BAD_INPUT) from None
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                      TimeElapsedColumn(), console=console, transient=False) as bar:
            tasks = {n: bar.add_task(n, total=len(data)) for n in names}

            def progress(name, done, total):
                bar.update(tasks[name], completed=done, total=total)

            results_ts = {}
            plan_options = {k: v for k, v in (("support_envelope", support_envelope), ("horizon_end", horizon_end))
                            if v is not None}
            rec = evaluate_policies(cfg, data, names, model, forecast, interval_h, seed, progress=progress,
                                    keep_timeseries=results_ts, history=history, workers=n_workers, reactive=reactive,
                                    plan_options=plan_options or None, demand_headroom=demand_headroom,
                                    warm_start=warm_start)
        table = savings_table(rec)
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / "evaluation.json", rec)
        write_frame_atomic(out / "evaluation.csv", table)
        from coolshift.reports.html import Section, html_figure, html_kv, html_paragraphs, html_table, render_page

        figs = evaluation_figures(results_ts, rec)
        sections = [
            Section("Summary", html_kv({
                "site": rec["site"], "period": f"{rec['start']} to {rec['end']}", "forecast": rec["forecast"],
                "re-plan interval h": rec["replan_interval_h"], "plant model": rec["plant_model"] or "-",
                "autoscaler": "on" if rec["reactive"] else "off", "workers": rec["workers"],
                "demand headroom (q90)": {True: "on", False: "off", None: "-"}[rec["demand_headroom"]],
                "interactive demand planned at": ("-" if rec.get("interactive_plan_quantile") is None
                                                  else f"q{100 * rec['interactive_plan_quantile']:g}"),
                "plan options": ", ".join(f"{k}={v}" for k, v in rec["plan_options"].items()) or "defaults",
                "warm-started re-plans": "on" if rec["warm_start"] else "off",
                "wall time s": f"{rec['wall_s']:.0f}",
                "oracle share": "-" if rec["oracle_share"] is None else f"{rec['oracle_share']:.1%}",
            })),
            Section("Policies", html_table(table, digits=2)),
            Section("Figures", "".join(html_figure(f, c) for f, c in figs)),
            Section("Method", html_paragraphs(
                "Every policy runs on the physics simulator (coolshift.simulations), which shares no equations "
                "with the learned model the optimiser plans with. Baselines are defined once in the simulator "
                "(docs/simulator.md). Coolshift re-plans every "
                f"{rec['replan_interval_h']:g} h over its planning horizon on the '{rec['forecast']}' forecast; the "
                "oracle uses the actual future values and a 36 h horizon. "
                + ("Between re-plans an autoscaler wakes servers when the demand observed in a step does not "
                   "fit the plan's capacity (boot time charged by the simulator). " if rec["reactive"] else "")
                + "Savings are location-based tCO2.")),
        ]
        write_text_atomic(out / "report.html", render_page(f"Closed-loop evaluation: {rec['site']}", sections))
        console.print(table.round(3).to_string())
        if rec["oracle_share"] is not None:
            console.print(f"oracle share: {rec['oracle_share']:.1%}")
        console.print(f"wall time {rec['wall_s']:.1f} s on {rec['workers']} worker(s); per policy: "
                      + ", ".join(f"{k} {v:.0f} s" for k, v in rec["runtime_s"].items()))
        console.print(f"wrote {out / 'evaluation.json'}, {out / 'evaluation.csv'}, {out / 'report.html'}")
