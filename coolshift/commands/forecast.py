"""`coolshift forecast evaluate`: score the carbon-intensity forecaster against baselines."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from coolshift.commands._common import EXIT_BAD_INPUT, cli_errors, console, err_console

forecast_app = typer.Typer(help="Carbon-intensity and workload forecasts.", no_args_is_help=True)


def _utc(value: str, what: str):
    import pandas as pd

    try:
        t = pd.Timestamp(value)
    except ValueError:
        err_console.print(f"[bold red]error:[/] {what}: {value!r} is not an ISO 8601 date")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


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
    "seasonal_naive": ...} plus the coverage of the 10-90 % band, and OUT/backtest.parquet.
    """
    import pandas as pd
    from rich.progress import Progress
    from rich.table import Table

    from coolshift.io import read_carbon, write_frame_atomic, write_json_atomic
    from coolshift.models.forecast import (
        CarbonIntensityForecaster, PersistenceForecaster, SeasonalNaiveForecaster, day_ahead_backtest,
        forecast_scores,
    )
    from coolshift.schema import CARBON_GCO2_PER_KWH as CI

    if not 0 <= issue_hour <= 23:
        err_console.print(f"[bold red]error:[/] --issue-hour must be 0..23, got {issue_hour}")
        raise typer.Exit(EXIT_BAD_INPUT)
    from coolshift.io import GapPolicy

    y = read_carbon(carbon, carbon_format, gap_policy=GapPolicy(max_interp_h=3.0, max_fill_h=max_fill_gap_h))[CI]
    t_end = _utc(train_end, "--train-end")
    train = y[y.index < t_end]
    if train.dropna().shape[0] < 24 * 21 or (y.index >= t_end).sum() < 48:
        err_console.print(
            f"[bold red]error:[/] {carbon}: --train-end {t_end:%Y-%m-%d} leaves {len(train)} steps before it and "
            f"{int((y.index >= t_end).sum())} after it (data span {y.index[0]} .. {y.index[-1]}); need >= 3 weeks "
            "before and 2 days after")
        raise typer.Exit(EXIT_BAD_INPUT)
    forecasters = {
        "model": CarbonIntensityForecaster(),
        "persistence": PersistenceForecaster(CI),
        "seasonal_naive": SeasonalNaiveForecaster(CI),
    }
    metrics: dict = {}
    frames = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("fit and backtest", total=2 * len(forecasters))
        for name, f in forecasters.items():
            f.fit(train)
            progress.advance(task)
            bt = day_ahead_backtest(f, y, t_end, issue_hour=issue_hour, horizon_h=horizon_h)
            progress.advance(task)
            s = forecast_scores(bt["actual"], bt[CI])
            s["coverage_q10_q90"] = float(((bt["actual"] >= bt[f"{CI}_q10"]) & (bt["actual"] <= bt[f"{CI}_q90"]))
                                          [bt["actual"].notna()].mean())
            metrics[name] = s
            frames.append(bt.assign(forecaster=name))
    if external is not None:
        from coolshift.io import read_carbon_forecast

        fc = read_carbon_forecast(external)
        metrics["external"] = score_issued_forecast(fc, y)
    m, p = metrics["model"]["mape_pct"], metrics["persistence"]["mape_pct"]
    metrics["model_vs_persistence_mape_reduction_pct"] = float((p - m) / p * 100.0)
    metrics["setup"] = {
        "carbon": str(carbon), "train_end": t_end.isoformat(), "issue_hour_utc": issue_hour,
        "horizon_h": horizon_h, "train_steps": int(train.notna().sum()),
        "test_steps": int(metrics["model"]["n"]), "ridge_alpha": forecasters["model"].alpha_,
    }
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "forecast_metrics.json", metrics)
    write_frame_atomic(out / "backtest.parquet", pd.concat(frames))

    t = Table(title=f"Day-ahead forecast of {carbon.name}, issued {issue_hour:02d}:00 UTC, after {t_end:%Y-%m-%d}")
    for c in ("forecaster", "MAPE %", "bias %", "q10-q90 coverage", "steps"):
        t.add_column(c)
    for name, s in metrics.items():
        if isinstance(s, dict) and "mape_pct" in s:
            t.add_row(name, f"{s['mape_pct']:.2f}", f"{s['bias_pct']:+.2f}",
                      f"{s['coverage_q10_q90']:.0%}" if "coverage_q10_q90" in s else "-", str(s["n"]))
    console.print(t)
    word = "beats" if m < p else "does NOT beat"
    console.print(f"model {word} persistence: MAPE {m:.2f} % vs {p:.2f} % "
                  f"({metrics['model_vs_persistence_mape_reduction_pct']:+.1f} % relative reduction)")
    console.print(f"wrote {out / 'forecast_metrics.json'}")


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
