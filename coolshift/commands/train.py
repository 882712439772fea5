"""`coolshift train`: fit the plant models on telemetry, score them on a later block, track in MLflow."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from coolshift.commands._common import EXIT_BAD_INPUT, cli_errors, console, err_console

# Held-out targets from issue 4 (DeepMind's published PUE model reached 0.004).
TARGETS = {"cooling_power_mape_pct": 5.0, "facility_power_mape_pct": None, "inlet_temp_mae_c": 0.5, "pue_mae": 0.01}
METRIC_KEYS = ("cooling_power_mape_pct", "facility_power_mape_pct", "inlet_temp_mae_c", "pue_mae")


def _plots(out: Path, test, preds: dict, zones: list[str]) -> list[Path]:
    """Predicted-vs-measured scatter and residual time series, one PNG each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from coolshift.schema import col

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, (c, label) in zip(axes, (("cooling_power_kw", "cooling power [kW]"),
                                      ("facility_power_kw", "facility power [kW]"),
                                      (col("inlet_temp_c", zones[0]), f"inlet {zones[0]} [degC]"))):
        for name, p in preds.items():
            ax.scatter(test[c], p[c], s=2, alpha=0.3, label=name)
        lo, hi = float(test[c].min()), float(test[c].max())
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        ax.set_xlabel(f"measured {label}")
        ax.set_ylabel("predicted")
        ax.legend(markerscale=5)
    fig.tight_layout()
    paths.append(out / "predicted_vs_measured.png")
    fig.savefig(paths[-1], dpi=90)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(12, 4))
    for name, p in preds.items():
        r = (p["cooling_power_kw"] - test["cooling_power_kw"]).resample("1D").mean()
        ax.plot(r.index, r.to_numpy(), label=name)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_ylabel("cooling power error, daily mean [kW]")
    ax.legend()
    fig.tight_layout()
    paths.append(out / "cooling_residual_daily.png")
    fig.savefig(paths[-1], dpi=90)
    plt.close(fig)
    return paths


def train(
    site: Annotated[Path, typer.Option("--site", "-s", help="site configuration YAML")],
    telemetry: Annotated[Path, typer.Option("--telemetry", help="facility telemetry CSV (schema: coolshift/schema.py)")],
    out: Annotated[Path, typer.Option("--out", help="folder for metrics.json, plots and the summary")],
    test_from: Annotated[Optional[str], typer.Option(
        "--test-from", help="train before this date (minus a 1-day gap), test from it; default: the last quarter")] = None,
    test_telemetry: Annotated[Optional[Path], typer.Option(
        "--test-telemetry", help="score on this other telemetry file (another year or weather) instead of a split")] = None,
    workdir: Annotated[Optional[Path], typer.Option(
        "--workdir", help="site working folder holding mlflow.db (default $COOLSHIFT_WORKDIR/<site> or ./.coolshift/<site>)")] = None,
    register: Annotated[bool, typer.Option("--register/--no-register", help="log and register in MLflow")] = True,
) -> None:
    """Train the linear plant model and its nonlinear reference; report held-out errors; register in MLflow.

    Writes OUT/metrics.json: {"linear": {...}, "reference": {...}} with cooling_power_mape_pct,
    facility_power_mape_pct, inlet_temp_mae_c and pue_mae on the test block, and
    OUT/train_summary.json (periods, sizes, registry decisions).
    """
    import time

    import pandas as pd
    from rich.table import Table

    from coolshift.config import load_site
    from coolshift.io import read_telemetry, write_json_atomic
    from coolshift.models.thermal import LinearPlantModel, ReferencePlantModel, plant_metrics, time_block_split

    cfg = load_site(site)
    zones = [z.name for z in cfg.zones]
    frame = read_telemetry(telemetry, zones=zones)
    if test_telemetry is not None:
        if test_from is not None:
            err_console.print("[bold red]error:[/] give --test-from or --test-telemetry, not both")
            raise typer.Exit(EXIT_BAD_INPUT)
        train_df, test_df = frame, read_telemetry(test_telemetry, zones=zones)
        split = f"train {telemetry.name}, test {test_telemetry.name}"
    else:
        if test_from is None:
            span = frame.index[-1] - frame.index[0]
            t0 = (frame.index[0] + 0.75 * span).normalize()
        else:
            try:
                t0 = pd.Timestamp(test_from)
            except ValueError:
                err_console.print(f"[bold red]error:[/] --test-from {test_from!r} is not an ISO 8601 date")
                raise typer.Exit(EXIT_BAD_INPUT) from None
            t0 = t0.tz_localize("UTC") if t0.tzinfo is None else t0.tz_convert("UTC")
        try:
            train_df, test_df = time_block_split(frame, t0, gap="1D")
        except ValueError as exc:
            err_console.print(f"[bold red]error:[/] {telemetry}: {exc}")
            raise typer.Exit(EXIT_BAD_INPUT) from None
        split = f"time block: train before {t0 - pd.Timedelta('1D'):%Y-%m-%d}, test from {t0:%Y-%m-%d}"

    models = {"linear": LinearPlantModel(), "reference": ReferencePlantModel()}
    metrics, preds, timing = {}, {}, {}
    with console.status("fitting the linear model and the gradient-boosting reference ...") as status:
        for name, m in models.items():
            status.update(f"fitting {name} on {len(train_df):,} rows ...")
            t = time.perf_counter()
            try:
                m.fit(train_df, cfg)
            except ValueError as exc:
                err_console.print(f"[bold red]error:[/] {telemetry}: {exc}")
                raise typer.Exit(EXIT_BAD_INPUT) from None
            timing[name] = time.perf_counter() - t
            preds[name] = m.predict(test_df)
            metrics[name] = plant_metrics(test_df, preds[name], zones)
    envelope = models["linear"].in_envelope(test_df)

    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "metrics.json", {k: {m: v[m] for m in METRIC_KEYS} for k, v in metrics.items()})
    plots = _plots(out / "plots", test_df, preds, zones)

    summary = {
        "site": cfg.name, "telemetry": str(telemetry), "split": split,
        "train_period": [train_df.index[0].isoformat(), train_df.index[-1].isoformat()],
        "test_period": [test_df.index[0].isoformat(), test_df.index[-1].isoformat()],
        "train_rows": len(train_df), "test_rows": len(test_df),
        "test_rows_outside_envelope": int((~envelope).sum()),
        "fit_seconds": timing, "metrics": metrics, "targets": TARGETS, "registry": {},
        "linear_cooling_pieces": int(models["linear"].n_cooling_pieces_),
    }
    if register:
        from coolshift.models import registry

        wd = workdir if workdir is not None else registry.site_workdir(cfg)
        with console.status("logging to MLflow ..."):
            mlflow = registry.configure(wd)
            for name, m in models.items():
                with mlflow.start_run(run_name=f"{cfg.name}-{name}"):
                    mlflow.log_params({"site": cfg.name, "kind": name, "split": split,
                                       "train_rows": len(train_df), "test_rows": len(test_df),
                                       **{f"hp_{k}": v for k, v in m.get_params().items()}})
                    mlflow.log_metrics({k: v for k, v in metrics[name].items()})
                    for p in plots:
                        mlflow.log_artifact(str(p), artifact_path="plots")
                    mlflow.log_artifact(str(out / "metrics.json"))
                    mv = registry.log_plant_model(m, cfg, name, test_df.iloc[:200], metrics[name])
                    ok, why = registry.promote_if_better(cfg, name, mv.version, metrics[name])
                summary["registry"][name] = {"name": mv.name, "version": mv.version, "production": ok, "reason": why}
        summary["tracking_uri"] = mlflow.get_tracking_uri()
    write_json_atomic(out / "train_summary.json", summary)

    t = Table(title=f"{cfg.name}: held-out errors ({split}; {len(test_df):,} rows)")
    t.add_column("model")
    labels = {"cooling_power_mape_pct": "cooling MAPE %", "facility_power_mape_pct": "facility MAPE %",
              "inlet_temp_mae_c": "inlet MAE degC", "pue_mae": "PUE MAE"}
    for k in METRIC_KEYS:
        target = TARGETS[k]
        t.add_column(labels[k] + (f" (<= {target:g})" if target else ""))
    for name, m in metrics.items():
        cells = []
        for k in METRIC_KEYS:
            target = TARGETS[k]
            mark = "" if target is None else (" [green]ok[/]" if m[k] <= target else " [red]miss[/]")
            cells.append(f"{m[k]:.4g}{mark}")
        t.add_row(name, *cells)
    console.print(t)
    console.print(f"linear cooling response: {models['linear'].n_cooling_pieces_} convex piece(s)")
    if (~envelope).any():
        console.print(f"{int((~envelope).sum())} test rows lie outside the linear model's training envelope")
    for name, r in summary["registry"].items():
        state = "alias production set" if r["production"] else "production alias unchanged"
        console.print(f"{r['name']} version {r['version']}: {state} ({r['reason']})")
    console.print(f"wrote {out / 'metrics.json'}")


def register(app: typer.Typer) -> None:
    app.command("train")(cli_errors(train))
