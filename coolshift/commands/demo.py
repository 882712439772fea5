"""`coolshift demo`: the nightly chain on the bundled example site with bundled real data.

1. validate the site and its year of real data (EIA-930 CAISO 2022, Open-Meteo San Jose);
2. commissioning telemetry: the simulator runs the `explore` policy over the bundled year
   (stands in for the operator's metered telemetry) - skipped when a model is registered;
3. `coolshift train`: fit, evaluate and register the learned plant model in MLflow;
4. `coolshift plan --for <date>`: forecast, optimise, write the run folder and report.

The bundled data are for 2022, so the demo plans a day of 2022 (``--date``), with
forecasts trained only on the data before it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from coolshift.commands._common import cli_errors, console, load_inputs

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SITE = REPO_ROOT / "configs" / "sites" / "sanjose_colo_2mw.yaml"


def _run(args: list[str]) -> None:
    exe = Path(sys.executable).with_name("coolshift")
    cmd = [str(exe) if exe.exists() else "coolshift", *args]
    console.print(f"[bold]$ coolshift {' '.join(args)}[/]", highlight=False)
    rc = subprocess.run(cmd, env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}).returncode
    if rc not in (0, 3):
        raise typer.Exit(rc)


def register(app: typer.Typer) -> None:
    @app.command("demo")
    @cli_errors
    def demo(
        site: Annotated[Path, typer.Option(help="site configuration")] = DEFAULT_SITE,
        date: Annotated[str, typer.Option(help="day to plan (within the bundled data)")] = "2022-07-15",
        out: Annotated[Path, typer.Option(help="working folder for telemetry, models and runs")] = Path(".coolshift"),
        retrain: Annotated[bool, typer.Option(help="train even when a model is registered")] = False,
    ) -> None:
        """Run the nightly plan on the bundled example site and print where the report is."""
        from coolshift.commands.data import data_table, fills_note, site_tables

        cfg, data = load_inputs(site, None, None)
        for t in site_tables(cfg):
            console.print(t)
        console.print(data_table(data))
        console.print(fills_note(data), highlight=False)

        workdir = (out / cfg.name).resolve()
        have_model = False
        if not retrain:
            from coolshift.models.registry import load_plant_model

            try:
                load_plant_model(cfg, workdir=workdir)
                have_model = True
                console.print(f"using the registered plant model in {workdir}")
            except LookupError:
                pass
        if not have_model:
            sim_dir = out / "demo" / "commissioning"
            tel = sim_dir / "telemetry.csv"
            _run(["simulate", "--site", str(site), "--policy", "explore", "--start", "2022-01-01", "--end", "2023-01-01",
                  "--out", str(sim_dir), "--telemetry-out", str(tel)])
            _run(["train", "--site", str(site), "--telemetry", str(tel), "--out", str(out / "demo" / "train"),
                  "--workdir", str(workdir)])
        runs = out / "runs"
        _run(["plan", "--site", str(site), "--for", date, "--runs", str(runs), "--workdir", str(workdir)])
        report = (runs / cfg.name / date / "report.html").resolve()
        console.print(f"\n[bold green]Nightly plan written.[/] Report: {report}")
