"""Actuator commands: ``hosts`` (follow the plan's server counts through Redfish) and
``hosts-release`` (power on every host Coolshift switched off).

``hosts`` is a dry run unless ``--apply``, like ``push``. Exit codes as the BMS commands:
0 done, 2 bad input (map, inventory, work file, plan, credentials; the message names the
file and key), 3 refused (stale plan, another site, no current step: nothing done), 1 the
service failed (a rolled-back step, an unreachable service, a host not powered back on).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer

from ._common import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_FALLBACK, cli_locks, console, err_console

EXIT_REFUSED = EXIT_FALLBACK

PlanOpt = Annotated[Path, typer.Option("--plan", help="plan run folder (plan.csv with active_servers__<pool> + summary.json)")]
MapOpt = Annotated[Path, typer.Option("--actuators", help="actuator map YAML (Redfish service, host inventory, work file)")]
ApplyOpt = Annotated[bool, typer.Option("--apply", help="power hosts off and on (default: dry run, nothing done)")]
AuditOpt = Annotated[Optional[Path], typer.Option("--audit", help="audit log sqlite (default: the map's audit_db)")]


def _errors(func: Callable) -> Callable:
    """Bad input -> one line and exit 2; a failing service -> exit 1; never a traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from rich.markup import escape

        from coolshift.bms.audit import AuditError
        from coolshift.bms.device import DeviceError
        from coolshift.bms.plan import PlanError
        from coolshift.config import ConfigError

        try:
            return func(*args, **kwargs)
        except (ConfigError, PlanError, AuditError) as exc:
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True, highlight=False)
            raise typer.Exit(EXIT_BAD_INPUT) from None
        except DeviceError as exc:
            err_console.print(f"[bold red]service error:[/] {escape(str(exc))}", markup=True, highlight=False)
            raise typer.Exit(EXIT_FAILURE) from None

    return wrapper


def setup(actuators: Path, plan_dir: Path | None):
    """Map, site, inventory spec, plan (when given) and a client with the environment's credentials;
    bad input raises ConfigError/PlanError before any request is sent."""
    from coolshift.actuators.inventory import load_actuator_map, load_inventory_spec, redfish_credentials
    from coolshift.actuators.redfish import RedfishClient, read_host_plan
    from coolshift.config import load_site

    am = load_actuator_map(actuators)
    site = load_site(am.site)
    spec = load_inventory_spec(am.redfish.inventory, site)
    plan = read_host_plan(plan_dir, sorted(set(spec.hosts) | set(spec.discover))) if plan_dir is not None else None
    client = RedfishClient(am.redfish, redfish_credentials())
    return am, site, spec, plan, client


def _lock(am, apply: bool):
    import contextlib

    from coolshift.locks import LockSpec, lock_path

    if not apply:
        return contextlib.nullcontext([])
    key = am.redfish.device
    return cli_locks([LockSpec(lock_path("actuator-redfish", key), f"coolshift hosts on Redfish service {key}")], "hosts")


def actuator_locks(am, apply: bool):
    """The locks a command acting through the actuator map holds: the Redfish service's and, with a
    ``slurm:`` section, the cluster's (exit 75 when another run holds one); none for a dry run."""
    import contextlib

    from coolshift.locks import LockSpec, lock_path

    if not apply:
        return contextlib.nullcontext([])
    specs = [LockSpec(lock_path("actuator-redfish", am.redfish.device), f"coolshift on Redfish service {am.redfish.device}")]
    if am.slurm is not None:
        specs.append(LockSpec(lock_path("actuator-slurm", am.slurm.device), f"coolshift on Slurm cluster {am.slurm.device}"))
    return cli_locks(specs, "run-plan")


def hosts_cmd(plan: PlanOpt, actuators: MapOpt, apply: ApplyOpt = False, audit: AuditOpt = None) -> None:
    """Power hosts off and on to follow the plan's active servers per pool: dry run by default."""
    from rich.markup import escape
    from rich.table import Table

    from coolshift.actuators.inventory import load_work, resolve_inventory
    from coolshift.actuators.redfish import chunk_names, enact
    from coolshift.bms.audit import AuditLog

    am, site, spec, p, client = setup(actuators, plan)
    try:
        ids = client.system_ids()
        systems = client.system_names(ids) if spec.needs_discovery else {i: i for i in ids}
        inv = resolve_inventory(spec, site, systems)
        busy_map = load_work(am.redfish.work, inv)
        with _lock(am, apply), AuditLog(audit if audit is not None else am.audit_db, run_id=p.run_id,
                                        device=am.redfish.device) as log:
            rep = enact(client, site, inv, p, log, busy=lambda h: busy_map.get(h, True), apply=apply,
                        max_plan_age_h=am.max_plan_age_h)
    finally:
        client.close()
    title = f"plan {rep.run_id}, step {rep.step.isoformat() if rep.step is not None else '(none)'}, {am.redfish.url}"
    if rep.plan is not None:
        t = Table(title=title, title_justify="left")
        for c in ("pool", "hosts", "on", "off", "other", "busy", "min", "target", "power off", "power on"):
            t.add_column(c, justify="left" if c == "pool" else "right", no_wrap=True)
        for d in rep.plan.decisions:
            t.add_row(d.pool, str(d.hosts), str(d.on), str(d.off), str(d.other), str(d.busy_on), str(d.floor),
                      str(d.target), str(d.to_off), str(d.to_on))
        console.print(t)
        for d in rep.plan.decisions:
            why = rep.reasons.get(d.pool, "") + (f"; {d.note}" if d.note else "")
            console.print(f"{d.pool}: target {d.target}: {why}", markup=False, highlight=False)
        for kind, label in (("off", "power off (GracefulShutdown)"), ("on", "power on (On)")):
            for d in rep.plan.decisions:
                hs = [a.host for a in rep.plan.actions if a.pool == d.pool and a.action == kind]
                if hs:
                    console.print(f"{label} {d.pool}: {chunk_names(hs)}", markup=False, highlight=False)
    if rep.chassis_power_w is not None:
        console.print(f"chassis power: {rep.chassis_power_w:.0f} W ({rep.chassis_reporting} chassis report it)",
                      markup=False)
    else:
        console.print("chassis power: not provided by the service (no Power or PowerSubsystem readings)", markup=False)
    if rep.status == "refused":
        for m in rep.messages:
            err_console.print(f"[red]refused:[/] {escape(m)}", markup=True, highlight=False)
        raise typer.Exit(EXIT_REFUSED)
    n_off = sum(a.action == "off" for a in rep.plan.actions)
    n_on = len(rep.plan.actions) - n_off
    if rep.status == "dry_run":
        console.print(f"dry run: {n_off} host(s) would be powered off, {n_on} on; nothing done (add --apply to act)",
                      markup=False)
        return
    if rep.status == "nothing":
        console.print("nothing to do: every pool is at its target", markup=False)
        return
    if rep.status == "applied":
        console.print(f"applied: {n_off} host(s) powered off, {n_on} on (each read back), at most "
                      f"{rep.max_concurrent_power_on} power-on(s) at once, {rep.enact_s:.1f} s; audit: {log.path}",
                      markup=False, highlight=False)
        return
    for m in rep.messages:
        err_console.print(f"[red]failed:[/] {escape(m)}", markup=True, highlight=False)
    back = sum(r.ok for r in rep.restored)
    err_console.print(f"[bold red]{rep.status}:[/] the step stopped; {back}/{len(rep.restored)} host(s) it powered off "
                      f"are on again; audit: {escape(str(log.path))}", markup=True, highlight=False)
    raise typer.Exit(EXIT_FAILURE)


def hand_back_hosts(am, site, spec, client, audit: Path | None = None) -> tuple[bool, str]:
    """Power on every host Coolshift switched off on the map's Redfish service, printing each;
    returns (all on again, a one-line summary). An unreachable service raises (DeviceError)."""
    from coolshift.actuators.inventory import resolve_inventory
    from coolshift.actuators.redfish import release
    from coolshift.bms.audit import AuditLog

    try:
        inv = resolve_inventory(spec, site, None)
        with _lock(am, True), AuditLog(audit if audit is not None else am.audit_db, device=am.redfish.device) as log:
            rep = release(client, log, inv.pool_of())
    finally:
        client.close()
    if not rep.results:
        console.print("nothing to release: no host is switched off by Coolshift on this service", markup=False)
    for r in rep.results:
        console.print(f"{'on' if r.ok else 'NOT ON'} {r.host} ({r.pool}): {r.detail}", markup=False, highlight=False)
    return rep.ok, f"released {sum(r.ok for r in rep.results)}/{len(rep.results)} host(s); audit: {log.path}"


def hosts_release_cmd(actuators: MapOpt, audit: AuditOpt = None) -> None:
    """Power on every host Coolshift switched off on this Redfish service (the operator's exit)."""
    am, site, spec, _, client = setup(actuators, None)
    ok, summary = hand_back_hosts(am, site, spec, client, audit)
    console.print(summary, markup=False, highlight=False)
    if not ok:
        raise typer.Exit(EXIT_FAILURE)


def register(app: typer.Typer) -> None:
    app.command("hosts")(_errors(hosts_cmd))
    app.command("hosts-release")(_errors(hosts_release_cmd))
