"""The one command-line interface, ``coolshift``.

Each command group lives in its own module under :mod:`coolshift.commands` and
registers itself with ``register(app)``; heavy libraries are imported inside the
commands so that ``coolshift --help`` stays fast.
"""

from __future__ import annotations

import importlib
import os

import typer

# An operator's tool does not phone home (MLflow usage telemetry is on by default).
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

app = typer.Typer(
    name="coolshift",
    help="Carbon-aware optimiser for data centres: plan, simulate, evaluate, push to the BMS.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Command modules, in the order they appear in --help.
COMMAND_MODULES = (
    "data", "simulate", "train", "forecast", "plan", "evaluate", "report",
    "whatif", "shift", "fleet", "bms", "operate", "actuators", "slurm", "demo", "pareto", "storage",
)

for _name in COMMAND_MODULES:
    try:
        _mod = importlib.import_module(f"coolshift.commands.{_name}")
    except ModuleNotFoundError as exc:  # a command group not built yet
        if exc.name != f"coolshift.commands.{_name}":
            raise
        continue
    _mod.register(app)


def main() -> None:
    app()
