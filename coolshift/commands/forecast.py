"""`coolshift forecast evaluate`: score the carbon-intensity forecaster against baselines."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from coolshift.commands._common import EXIT_BAD_INPUT, cli_errors, console, err_console
from coolshift.usecases.inputs import utc_time

forecast_app = typer.Typer(help="Carbon-intensity and workload forecasts.", no_args_is_help=True)


@forecast_app.command("evaluate")
@cli_errors
def evaluate(
    carbon: Annotated[Path, typer.Option("--carbon", help="carbon-intensity file (any format read_carbon knows)")],
    train_end: Annotated[str, typer.Option("--train-end", help="train on data before this date, score after it")],
    out: Annotated[Path, typer.Option("--out", help="folder for forecast_metrics.json and the backtest")],
    carbon_format: Annotated[str, typer.Option("--carbon-format", help="force a reader")] = "auto",
    issue_hour: Annotated[int, typer.Option(help="UTC hour at which each day-ahead forecast is issued")] = 0,
    horizon_h: Annotated[float, typer.Option(help="hours forecast from each issue time")] = 24.0,
    external: Annotated[Optional[Path], typer.Option(
        "--external", help="an issued forecast file (WattTime style: request_time, forecast_time, value) to score too")] = None,
    max_fill_gap_h: Annotated[float, typer.Option(
        help="gaps up to this many hours are filled from the day before (longer ones are an error)")] = 24.0,
) -> None:
    """Train on data before --train-end, issue one forecast a day after it, score MAPE and bias.

    Writes OUT/forecast_metrics.json: {"model": {"mape_pct", "bias_pct"}, "persistence": ...,
    "seasonal_naive": ...} plus the coverage of the 10-90 % band, and OUT/forecast_backtest.parquet.
    """
    from coolshift.io import GapPolicy, read_carbon
    from coolshift.models.forecast import CarbonIntensityForecaster, issue_hours_with
    from coolshift.schema import CARBON_GCO2_PER_KWH as CI

    y = read_carbon(carbon, carbon_format, gap_policy=GapPolicy(max_interp_h=3.0, max_fill_h=max_fill_gap_h))[CI]
    ext = None
    if external is not None:
        from coolshift.io import read_carbon_forecast

        ext = score_issued_forecast(read_carbon_forecast(external), y)
    # trained for the hour its forecasts are issued at (one ridge per issue hour and horizon),
    # and three more 6 h apart: as many rows as before to choose the ridge penalty by
    model = CarbonIntensityForecaster(issue_hours=issue_hours_with(issue_hour))
    _evaluate(y, CI, model, carbon, train_end, issue_hour, horizon_h, out,
              "forecast_metrics.json", ext)


@forecast_app.command("evaluate-workload")
@cli_errors
def evaluate_workload(
    workload: Annotated[Path, typer.Option("--workload", help="CPU-utilisation trace (any format read_workload knows)")],
    train_end: Annotated[str, typer.Option("--train-end", help="train on data before this date, score after it")],
    out: Annotated[Path, typer.Option("--out", help="folder for workload_forecast_metrics.json")],
    workload_format: Annotated[str, typer.Option("--workload-format", help="force a reader")] = "auto",
    start: Annotated[Optional[str], typer.Option(help="anchor for traces without timestamps (ISO 8601)")] = None,
    issue_hour: Annotated[int, typer.Option(help="UTC hour at which each day-ahead forecast is issued")] = 0,
    horizon_h: Annotated[float, typer.Option(help="hours forecast from each issue time")] = 24.0,
) -> None:
    """The same evaluation for a workload trace (cpu_util): model vs persistence vs seasonal naive.

    Writes OUT/workload_forecast_metrics.json with the same keys as forecast_metrics.json.
    Per-class demand is a fixed share of this trace, so one forecast serves every class.
    """
    from coolshift.io import read_workload
    from coolshift.models.forecast import WorkloadForecaster, issue_hours_with
    from coolshift.schema import CPU_UTIL

    y = read_workload(workload, workload_format, start=start)[CPU_UTIL]
    model = WorkloadForecaster(issue_hours=issue_hours_with(issue_hour))
    _evaluate(y, CPU_UTIL, model, workload, train_end, issue_hour, horizon_h, out,
              "workload_forecast_metrics.json", None)


def _evaluate(y, name, model, source: Path, train_end: str, issue_hour: int, horizon_h: float, out: Path,
              json_name: str, external: dict | None) -> None:
    """Fit model and baselines before train_end, backtest day-ahead after it, write and print the scores."""
    import pandas as pd
    from rich.progress import Progress
    from rich.table import Table

    from coolshift.io import write_frame_atomic, write_json_atomic
    from coolshift.models.forecast import (
        PersistenceForecaster, SeasonalNaiveForecaster, day_ahead_backtest, forecast_scores,
    )

    if not 0 <= issue_hour <= 23:
        err_console.print(f"[bold red]error:[/] --issue-hour must be 0..23, got {issue_hour}")
        raise typer.Exit(EXIT_BAD_INPUT)
    t_end = utc_time(train_end, "--train-end")  # a bad date: DataError naming the option (exit 2)
    train = y[y.index < t_end].dropna()
    after = y[y.index >= t_end].dropna()
    if len(train) < 2 or train.index[-1] - train.index[0] < pd.Timedelta(days=21) or len(after) < 2 \
            or after.index[-1] - after.index[0] < pd.Timedelta(hours=24):
        err_console.print(
            f"[bold red]error:[/] {source}: --train-end {t_end:%Y-%m-%d %H:%M} leaves {len(train)} steps before it and "
            f"{len(after)} after it (data span {y.index[0]} .. {y.index[-1]}); need >= 3 weeks "
            "before and a day after")
        raise typer.Exit(EXIT_BAD_INPUT)
    forecasters = {
        "model": model,
        "persistence": PersistenceForecaster(name),
        "seasonal_naive": SeasonalNaiveForecaster(name),
    }
    metrics: dict = {}
    frames = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("fit and backtest", total=2 * len(forecasters))
        for key, f in forecasters.items():
            f.fit(y[y.index < t_end])
            progress.advance(task)
            bt = day_ahead_backtest(f, y, t_end, issue_hour=issue_hour, horizon_h=horizon_h)
            progress.advance(task)
            sc = forecast_scores(bt["actual"], bt[name])
            sc["coverage_q10_q90"] = float(((bt["actual"] >= bt[f"{name}_q10"]) & (bt["actual"] <= bt[f"{name}_q90"]))
                                           [bt["actual"].notna()].mean())
            metrics[key] = sc
            frames.append(bt.assign(forecaster=key))
    if external is not None:
        metrics["external"] = external
    m, p = metrics["model"]["mape_pct"], metrics["persistence"]["mape_pct"]
    metrics["model_vs_persistence_mape_reduction_pct"] = float((p - m) / p * 100.0)
    metrics["setup"] = {
        "source": str(source), "train_end": t_end.isoformat(), "issue_hour_utc": issue_hour,
        "horizon_h": horizon_h, "train_steps": int(len(train)), "test_steps": int(metrics["model"]["n"]),
        "ridge_alpha": getattr(model, "alpha_", None),
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / json_name, metrics)
    write_frame_atomic(out / json_name.replace("_metrics.json", "_backtest.parquet"), pd.concat(frames))

    t = Table(title=f"Day-ahead forecast of {source.name}, issued {issue_hour:02d}:00 UTC, after {t_end:%Y-%m-%d}")
    for c in ("forecaster", "MAPE %", "bias %", "median APE %", "q10-q90 coverage", "steps"):
        t.add_column(c)
    for key, sc in metrics.items():
        if isinstance(sc, dict) and "mape_pct" in sc:
            t.add_row(key, f"{sc['mape_pct']:.2f}", f"{sc['bias_pct']:+.2f}", f"{sc['median_ape_pct']:.2f}",
                      f"{sc['coverage_q10_q90']:.0%}" if "coverage_q10_q90" in sc else "-", str(sc["n"]))
    console.print(t)
    word = "beats" if m < p else "does NOT beat"
    console.print(f"model {word} persistence: MAPE {m:.2f} % vs {p:.2f} % "
                  f"({metrics['model_vs_persistence_mape_reduction_pct']:+.1f} % relative reduction)")
    console.print(f"wrote {out / json_name}")


def score_issued_forecast(forecast, actual):
    """Score an external issued forecast (long frame: request_time, forecast_time, gco2_per_kwh).

    Its persistence counterpart is the last actual value before each request time, at the
    same horizons, so the two numbers are comparable.
    """
    import numpy as np
    import pandas as pd

    from coolshift.models.forecast import forecast_scores
    from coolshift.schema import CARBON_GCO2_PER_KWH as CI

    a = actual.dropna().sort_index()
    obs = a.reindex(pd.DatetimeIndex(forecast["forecast_time"]), method="ffill", tolerance=pd.Timedelta("1h"))
    pos = np.searchsorted(a.index.values, pd.DatetimeIndex(forecast["request_time"]).values, side="left") - 1
    last = np.where(pos >= 0, a.to_numpy()[np.clip(pos, 0, None)], np.nan)
    if np.isfinite(obs.to_numpy()).sum() == 0:
        raise ValueError("the external forecast does not overlap the actual series in time")
    s = forecast_scores(obs.to_numpy(), forecast[CI].to_numpy())
    s["persistence_same_horizons"] = forecast_scores(obs.to_numpy(), last)
    h = (forecast["forecast_time"] - forecast["request_time"]).dt.total_seconds() / 3600.0
    s["horizon_h_range"] = [float(h.min()), float(h.max())]
    return s


def register(app: typer.Typer) -> None:
    app.add_typer(forecast_app, name="forecast")
