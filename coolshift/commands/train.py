"""`coolshift train`: :func:`coolshift.usecases.train.train_plant_model` from the command line.

Parses the options, calls the use case with a status line for its stages and prints the
held-out errors against their targets and what the registry did.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Callable, Iterator, Optional

import typer

from coolshift.commands._common import cli_errors, console


@contextlib.contextmanager
def _status() -> Iterator[Callable[[str], None]]:
    """A transient status line naming the use case's current stage (shown from its first stage on)."""
    status = console.status("")
    try:
        def stage(text: str) -> None:
            status.update(text)
            status.start()  # no-op once started

        yield stage
    finally:
        status.stop()


def _print_result(res) -> None:
    """The held-out errors per model against the targets, the envelope and the registry's decisions."""
    from rich.table import Table

    from coolshift.usecases.train import METRIC_KEYS, TARGETS

    s = res.summary
    t = Table(title=f"{s['site']}: held-out errors ({s['split']}; {s['test_rows']:,} rows)")
    t.add_column("model")
    labels = {"cooling_power_mape_pct": "cooling MAPE %", "facility_power_mape_pct": "facility MAPE %",
              "inlet_temp_mae_c": "inlet MAE degC", "pue_mae": "PUE MAE"}
    for k in METRIC_KEYS:
        target = TARGETS[k]
        t.add_column(labels[k] + (f" (<= {target:g})" if target else ""))
    for name, m in res.metrics.items():
        cells = []
        for k in METRIC_KEYS:
            target = TARGETS[k]
            mark = "" if target is None else (" [green]ok[/]" if m[k] <= target else " [red]miss[/]")
            cells.append(f"{m[k]:.4g}{mark}")
        t.add_row(name, *cells)
    console.print(t)
    console.print(f"linear cooling response: {s['linear_cooling_pieces']} convex piece(s)")
    if s["test_rows_outside_envelope"]:
        console.print(f"{s['test_rows_outside_envelope']} test rows lie outside the linear model's training envelope")
    for name, r in s["registry"].items():
        state = "alias production set" if r["production"] else "production alias unchanged"
        console.print(f"{r['name']} version {r['version']}: {state} ({r['reason']})")
    console.print(f"wrote {res.metrics_path}")


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
    from coolshift.usecases.train import TrainOptions, train_plant_model

    opts = TrainOptions(site=site, telemetry=telemetry, out=out, test_from=test_from, test_telemetry=test_telemetry,
                        workdir=workdir, register=register)
    with _status() as stage:  # bad input is a DataError: cli_errors prints it and exits 2
        res = train_plant_model(opts, progress=stage)
    _print_result(res)


def register(app: typer.Typer) -> None:
    app.command("train")(cli_errors(train))
