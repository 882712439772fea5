"""``coolshift operate``: the live loop. Re-plan every step from telemetry, write through the safety layer.

Dry run unless ``--apply``. Exit codes: 0 done (steps run or a signal; every point handed
back), 3 the drift gate tripped (model flagged for retraining), 2 bad input, 1 a device or
internal failure, 75 another control loop holds the site or device. See docs/live.md.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Annotated, Optional

import pandas as pd
import typer

from coolshift.bms.audit import AuditLog
from coolshift.bms.points import load_point_map
from coolshift.config import ConfigError, load_site
from coolshift.io import load_site_data
from coolshift.io.live import FileSource
from coolshift.locks import EXIT_LOCKED, RunLocked
from coolshift.usecases.inputs import NoPlantModel, default_period, registered_plant_model

from ._common import EXIT_BAD_INPUT, cli_errors, console, err_console, iso_time_option


def operate_cmd(
    site: Annotated[Path, typer.Option("--site", "-s", help="site configuration YAML")],
    bms: Annotated[Path, typer.Option("--bms", help="BMS point map (e.g. `coolshift twin --map-out`)")],
    apply: Annotated[bool, typer.Option("--apply", help="write to the BMS (default: plan and print, nothing written)")] = False,
    carbon_live: Annotated[Optional[Path], typer.Option("--carbon-live", help="live intensity file refreshed by an outside job (FileSource)")] = None,
    steps: Annotated[Optional[int], typer.Option("--steps", min=1, help="stop after this many steps (default: until Ctrl-C)")] = None,
    interval_s: Annotated[Optional[float], typer.Option("--interval-s", help="wall seconds per planning step (default: the site's step; a twin at speed N: step / N)")] = None,
    start: Annotated[Optional[str], typer.Option(help="first day of the site data the loop plans on (default: the carbon data's start)", callback=iso_time_option)] = None,
    days: Annotated[float, typer.Option(help="days of site data to load from --start")] = 8.0,
    telemetry_max_age_steps: Annotated[float, typer.Option(help="no new site step within this many steps: hand back")] = 1.5,
    intensity_max_age_s: Annotated[float, typer.Option(help="live intensity older than this (s) is never planned on")] = 7200.0,
    drift_cooling_frac: Annotated[float, typer.Option(help="drift gate: cooling power error limit (fraction)")] = 0.25,
    drift_inlet_c: Annotated[float, typer.Option(help="drift gate: inlet temperature error limit (K)")] = 2.0,
    drift_steps: Annotated[int, typer.Option(help="drift gate: steps in a row beyond a limit before handing back")] = 3,
    horizon_h: Annotated[float, typer.Option(help="planning horizon (h)")] = 24.0,
    workdir: Annotated[Optional[Path], typer.Option(help="site working folder with mlflow.db (default ./.coolshift/<site>, where `coolshift demo` and `train` register the plant model)")] = None,
    api: Annotated[Optional[str], typer.Option("--api", help="serve the REST API, web console and /metrics on HOST:PORT (loopback only; pause/resume/release need $COOLSHIFT_API_TOKEN)")] = None,
    actuators: Annotated[Optional[Path], typer.Option("--actuators", help="actuator map YAML: also power hosts (Redfish) and hold/release jobs (its slurm: section) each step")] = None,
) -> None:
    """Close the loop: every step read telemetry, re-plan from it, write the first step (heartbeat first)."""
    # the loop pulls in the optimiser and the forecasters (scikit-learn): imported when the
    # command runs, so that `coolshift --help` stays fast (as every command module does)
    from coolshift.control.live import LiveLimits
    from coolshift.usecases.operate import OperateOptions, run_operate, status_path

    pm = load_point_map(bms)
    s = load_site(site)
    if load_site(pm.resolve(pm.site)).name != s.name:
        raise ConfigError(f"{bms}: site: the point map is not for site {s.name}")
    if s.storage:
        raise ConfigError(f"{site}: storage: the live loop does not read a battery's state of charge from the BMS, "
                          "so it cannot plan one; plan the battery with `coolshift plan` and `run-plan`, or run "
                          "`operate` on a site file without storage")
    t0, _ = default_period(s, start, None)
    data = load_site_data(s, t0, t0 + pd.Timedelta(days=days))
    try:
        model = registered_plant_model(s, workdir)
    except NoPlantModel as exc:
        err_console.print(f"[bold red]error:[/] no plant model for {s.name}: {exc}", markup=True, highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    step_s = float(interval_s or s.step_h * 3600.0)
    limits = LiveLimits(telemetry_max_age_s=telemetry_max_age_steps * step_s, intensity_max_age_s=intensity_max_age_s,
                        drift_cooling_frac=drift_cooling_frac, drift_inlet_c=drift_inlet_c, drift_steps=drift_steps,
                        horizon_h=horizon_h)
    source = FileSource(carbon_live, max_age_s=intensity_max_age_s) if carbon_live is not None else None
    opts = OperateOptions(apply=apply, steps=steps, interval_s=interval_s, limits=limits)
    if not apply:
        console.print("dry run: plans every step and prints it, nothing written (add --apply to write)")
    console.print(f"status: {status_path(s.name)}", markup=False, highlight=False)
    say = lambda m: console.print(m, markup=False, highlight=False)  # noqa: E731
    from coolshift.services.api import api_running, create_app, parse_listen
    from coolshift.usecases.operate import LiveView, OperatorInbox

    listen = parse_listen(api) if api else None  # bad or non-loopback HOST:PORT: exit 2 before anything runs
    view, inbox = LiveView(), OperatorInbox()

    async def loop_and_api(audit, stepper):
        async with contextlib.AsyncExitStack() as astack:
            if listen is not None:  # bound before the loop starts: a port in use is exit 2, nothing commanded
                await astack.enter_async_context(api_running(create_app(view, inbox, audit, point_map=pm), *listen))
                say(f"console: http://{listen[0]}:{listen[1]}/ (API /api/..., metrics /metrics)")
            return await run_operate(pm, s, data, model, audit, opts, source, log=say, actuators=stepper,
                                     inbox=inbox, view=view)

    try:
        with contextlib.ExitStack() as stack:
            stepper = None
            if actuators is not None:
                from coolshift.actuators.inventory import load_actuator_map
                from coolshift.actuators.step import ActuatorStepper

                from .actuators import actuator_locks

                am = load_actuator_map(actuators)
                if load_site(am.site).name != s.name:
                    raise ConfigError(f"{actuators}: site: the actuator map is not for site {s.name}")
                stack.enter_context(actuator_locks(am, apply))
                act_log = stack.enter_context(AuditLog(am.audit_db))
                stepper = stack.enter_context(ActuatorStepper(am, s, act_log, apply=apply, log=say))
            audit = stack.enter_context(AuditLog(pm.resolve(pm.audit_db)))
            res = asyncio.run(loop_and_api(audit, stepper))
    except RunLocked as exc:
        err_console.print(f"[bold red]locked:[/] {exc}", markup=True, highlight=False)
        raise typer.Exit(EXIT_LOCKED) from None
    console.print(f"operate finished: {res.reason} ({res.steps} step(s), {res.steps_written} written; "
                  f"state {res.status.get('state')})", markup=False, highlight=False)
    if res.exit_code:
        raise typer.Exit(res.exit_code)


def register(app: typer.Typer) -> None:
    app.command("operate")(cli_errors(operate_cmd))
