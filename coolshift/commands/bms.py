"""BMS commands: push, release, run-plan, bms-sim, twin, bms-status, bms-audit.

``push`` is a dry run unless ``--apply``; ``release`` hands every point back to local
control; ``run-plan`` follows a plan and relinquishes on SIGTERM/SIGINT; ``bms-sim``
serves a site's points on 127.0.0.1 for demos and tests; ``twin`` serves the site twin
(the simulator with thermal state, on a clock N times real time, with the controller's watchdog).
"""

from __future__ import annotations

import asyncio
import functools
import signal
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer

from ._common import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_FALLBACK, console, control_loop_locks, err_console

EXIT_REFUSED = EXIT_FALLBACK  # a push the safety layer refused: nothing was written

PlanOpt = Annotated[Path, typer.Option("--plan", help="plan run folder (plan.csv + summary.json)")]
BmsOpt = Annotated[Path, typer.Option("--bms", help="BMS point map YAML (configs/bms/*.yaml)")]
AuditOpt = Annotated[Optional[Path], typer.Option("--audit", help="audit log sqlite (default: the point map's audit_db)")]
ApplyOpt = Annotated[bool, typer.Option("--apply", help="write to the BMS (default: dry run, nothing written)")]


def _errors(func: Callable) -> Callable:
    """Bad input -> one line and exit 2; an unreachable device -> exit 1; never a traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from coolshift.bms.audit import AuditError
        from coolshift.bms.device import DeviceError
        from coolshift.bms.plan import PlanError
        from coolshift.bms.points import PointMapError
        from coolshift.config import ConfigError

        try:
            return func(*args, **kwargs)
        except (ConfigError, PointMapError, PlanError, AuditError) as exc:
            err_console.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False)
            raise typer.Exit(EXIT_BAD_INPUT) from None
        except DeviceError as exc:
            err_console.print(f"[bold red]device error:[/] {exc}", markup=True, highlight=False)
            raise typer.Exit(EXIT_FAILURE) from None

    return wrapper


def _load(bms: Path, audit: Path | None):
    from coolshift.bms.audit import AuditLog
    from coolshift.bms.points import check_map_site, load_point_map
    from coolshift.config import load_site

    pm = load_point_map(bms)
    site = load_site(pm.resolve(pm.site))
    check_map_site(pm, site, bms)
    log = AuditLog(audit if audit is not None else pm.resolve(pm.audit_db))
    return pm, site, log


_ABBR = {"analog-value": "AV", "analog-output": "AO", "analog-input": "AI"}


def _address(pm, p) -> str:
    """Short device address: 'AV1@10' (object, priority), 'hr0 int16' (register, type)."""
    if pm.protocol == "bacnet":
        a = f"{_ABBR[p.bacnet.object_type]}{p.bacnet.instance}"
        return f"{a}@{p.bacnet.priority}" if p.writable else a
    mp = p.modbus
    return f"{'hr' if mp.table == 'holding' else 'ir'}{mp.address} {mp.datatype}"


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _print_diff(pm, out) -> None:
    from rich.table import Table

    d = out.diff
    title = f"plan {d.run_id}, step {d.step.isoformat() if d.step is not None else '(none)'}"
    t = Table(title=title, title_justify="left")
    for c in ("point", "address", "now", "ours", "target", "change", "action"):
        t.add_column(c, justify="right" if c in ("now", "ours", "target", "change") else "left")
    for pd_ in d.points:
        st = pd_.state
        change = "-" if st is None or pd_.target is None else f"{pd_.target - st.value:+.2f}"
        action = pd_.action
        style = {"write": "bold", "release": "bold", "refused": "red", "unchanged": "dim"}.get(action, "")
        t.add_row(pd_.point.name, _address(pm, pd_.point),
                  _fmt(None if st is None else st.value), _fmt(None if st is None else st.commanded),
                  _fmt(pd_.target), change, f"[{style}]{action}[/]" if style else action)
    console.print(t)


def push_cmd(plan: PlanOpt, bms: BmsOpt, apply: ApplyOpt = False, audit: AuditOpt = None) -> None:
    """Push the plan's current step to the BMS: dry run by default, --apply writes and verifies."""
    from coolshift.bms.plan import read_plan
    from coolshift.bms.push import push

    pm, site, log = _load(bms, audit)
    with control_loop_locks(pm, site.name, "push", apply), log:
        p = read_plan(plan, {q.variable: q.name for q in pm.writable})
        out = asyncio.run(push(pm, site, p, log, apply=apply))
    _print_diff(pm, out)
    from rich.markup import escape

    prefix = {"dry_run": "[red]would refuse:[/] ", "refused": "[red]refused:[/] ",
              "rolled_back": "[red]", "rollback_failed": "[bold red]"}.get(out.status)
    if prefix is not None:
        for m in out.messages:
            (console if out.ok else err_console).print(prefix + escape(m), markup=True, highlight=False)
    if out.status == "dry_run":
        n = len(out.diff.to_write)
        if out.diff.refused:
            console.print(f"dry run: this step would be REFUSED ({len(out.diff.reasons)} reason(s) above); nothing written")
            raise typer.Exit(EXIT_FAILURE if out.diff.unreadable else EXIT_REFUSED)
        console.print(f"dry run: {n} point(s) would be written; nothing written (add --apply to write)")
    elif out.status == "refused":
        raise typer.Exit(EXIT_FAILURE if out.diff.unreadable else EXIT_REFUSED)
    elif not out.ok:
        raise typer.Exit(EXIT_FAILURE)
    elif out.status == "applied":
        console.print(f"applied: {', '.join(out.written)} (each read back and verified); audit: {log.path}",
                      markup=False, highlight=False)


ReleaseBmsOpt = Annotated[Optional[Path], typer.Option("--bms", help="BMS point map YAML: its points are handed back")]
ReleaseActuatorsOpt = Annotated[Optional[Path], typer.Option(
    "--actuators", help="actuator map YAML: hosts powered on again (redfish:), Slurm holds lifted and nodes resumed (slurm:)")]
ReleaseAuditOpt = Annotated[Optional[Path], typer.Option(
    "--audit", help="the BMS part's audit log (default: the point map's audit_db); hosts and jobs use the actuator map's")]


def release_cmd(bms: ReleaseBmsOpt = None, actuators: ReleaseActuatorsOpt = None, audit: ReleaseAuditOpt = None) -> None:
    """Hand back everything Coolshift commands: BMS points to local control, hosts on, Slurm holds lifted.

    Every file and the credentials are checked before anything is handed back (exit 2);
    then each part is handed back even if an earlier one failed, and reported; exit 1 names
    the parts that could not be handed back.
    """
    from coolshift.bms.audit import AuditError
    from coolshift.bms.push import release
    from coolshift.config import ConfigError

    from .actuators import hand_back_hosts, setup
    from .slurm import hand_back_jobs

    if bms is None and actuators is None:
        raise ConfigError("options: give --bms MAP, --actuators MAP or both (what to hand back)")
    hosts = setup(actuators, None) if actuators is not None else None  # map, inventory, credentials
    smap = hosts[0].slurm if hosts is not None else None
    loaded = _load(bms, audit) if bms is not None else None
    parts: list[tuple[str, bool, str]] = []

    def part(name: str, fn: Callable[[], tuple[bool, str]]) -> None:
        console.print(f"-- {name}", markup=False, highlight=False)
        try:
            ok, summary = fn()
        except Exception as exc:  # noqa: BLE001 - one part failing must not stop the others; reported, exit 1
            from coolshift.actuators.slurm import SlurmError
            from coolshift.bms.device import DeviceError

            if not isinstance(exc, (DeviceError, SlurmError, AuditError, ConfigError, OSError)):
                raise
            ok, summary = False, f"{type(exc).__name__}: {exc}"
        parts.append((name, ok, summary))

    if loaded is not None:
        pm, _, log = loaded

        def bms_part() -> tuple[bool, str]:
            with log:
                res = asyncio.run(release(pm, log))
            for name, ok, detail in res:
                console.print(f"{'released' if ok else '[red]NOT RELEASED[/]'} {name}: {detail}", markup=True,
                              highlight=False)
            n = sum(ok for _, ok, _ in res)
            return n == len(res), f"{n} of {len(res)} point(s) back under local control; audit: {log.path}"

        part(f"BMS points ({bms})", bms_part)
    if hosts is not None:
        am, site, spec, _, client = hosts
        part(f"hosts ({am.redfish.device})", lambda: hand_back_hosts(am, site, spec, client))
    if smap is not None:
        part(f"jobs and nodes ({smap.device})", lambda: hand_back_jobs(smap))
    for name, ok, summary in parts:
        (console if ok else err_console).print(f"{'handed back' if ok else 'NOT HANDED BACK'}: {name}: {summary}",
                                               markup=False, highlight=False, soft_wrap=True)
    if not all(ok for _, ok, _ in parts):
        raise typer.Exit(EXIT_FAILURE)


RunActuatorsOpt = Annotated[Optional[Path], typer.Option(
    "--actuators", help="actuator map YAML: also power hosts (Redfish) and hold/release jobs (its slurm: section) each step")]


def run_plan_cmd(plan: PlanOpt, bms: BmsOpt, apply: ApplyOpt = False, audit: AuditOpt = None,
                 actuators: RunActuatorsOpt = None) -> None:
    """Follow a plan, writing each step when it starts; relinquish everything on exit or signal.

    With --actuators, each step's active_servers__<pool> (and release_units_per_h__<class> of
    the Slurm classes) are enacted beside the BMS points; hosts and jobs are handed back too.
    """
    import contextlib

    from coolshift.bms.plan import read_plan
    from coolshift.bms.runner import run_plan

    say = lambda m: console.print(m, markup=False, highlight=False)  # noqa: E731
    pm, site, log = _load(bms, audit)
    read_plan(plan, {q.variable: q.name for q in pm.writable})  # fail fast on a bad or unmapped plan
    with contextlib.ExitStack() as stack:
        stepper = None
        if actuators is not None:
            from coolshift.actuators.inventory import load_actuator_map
            from coolshift.actuators.redfish import read_host_plan
            from coolshift.actuators.step import ActuatorStepper
            from coolshift.bms.audit import AuditLog
            from coolshift.config import ConfigError, load_site

            from .actuators import actuator_locks

            am = load_actuator_map(actuators)
            am_site = load_site(am.site)
            if am_site.name != site.name:
                raise ConfigError(f"{actuators}: site: the actuator map is for another site than {bms} ({site.name})")
            stack.enter_context(actuator_locks(am, apply))
            act_log = stack.enter_context(AuditLog(am.audit_db))
            stepper = stack.enter_context(ActuatorStepper(am, am_site, act_log, apply=apply, log=say))
            read_host_plan(plan, sorted(stepper.inventory.pools))  # no credential-looking column; a server column
        if not apply:
            console.print("dry run: steps are checked and printed, nothing written (add --apply to write)")
        with control_loop_locks(pm, site.name, "run-plan", apply), log:
            res = asyncio.run(run_plan(pm, site, plan, log, apply=apply, log=say, actuators=stepper))
    for name, ok, detail in res.released:
        console.print(f"{'released' if ok else 'NOT RELEASED'} {name}: {detail}", markup=False, highlight=False)
    console.print(f"run-plan finished: {res.reason} ({res.steps_written} step(s) written)", markup=False)
    if res.exit_code:
        raise typer.Exit(res.exit_code)



def _serve_until_signal(run: Callable, port: int, announce: Callable[[], str]) -> None:
    """Run ``run(stop, ready)`` until SIGTERM/SIGINT; print ``announce()`` once it serves.

    A port that cannot be bound is one line and exit 1, not a traceback.
    """

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        ready = asyncio.Event()
        task = asyncio.create_task(run(stop, ready))
        waiter = asyncio.create_task(ready.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if task.done():
            task.result()
        console.print(announce(), markup=False, highlight=False)
        await task

    try:
        asyncio.run(main())
    except OSError as exc:
        err_console.print(f"[bold red]error:[/] cannot serve on 127.0.0.1:{port}: {exc}", markup=True)
        raise typer.Exit(EXIT_FAILURE) from None

def bms_sim_cmd(
    site: Annotated[Path, typer.Option("--site", help="site configuration YAML")],
    protocol: Annotated[str, typer.Option("--protocol", help="bacnet or modbus")] = "bacnet",
    port: Annotated[Optional[int], typer.Option("--port", help="UDP (BACnet) or TCP (Modbus) port on 127.0.0.1")] = None,
    bms: Annotated[Optional[Path], typer.Option("--bms", help="point map (default configs/bms/<site>_<protocol>.yaml)")] = None,
    load_frac: Annotated[float, typer.Option(help="work demanded, as a share of the site's capacity")] = 0.6,
    drybulb_c: Annotated[float, typer.Option(help="outside dry-bulb temperature [degC]")] = 20.0,
    wetbulb_c: Annotated[float, typer.Option(help="outside wet-bulb temperature [degC]")] = 14.0,
) -> None:
    """Serve the site's BMS points on 127.0.0.1, backed by the simulator (Ctrl-C to stop)."""
    from coolshift.bms.points import PointMapError, load_point_map
    from coolshift.bms.sim import SimConditions, serve
    from coolshift.config import load_site

    if protocol not in ("bacnet", "modbus"):
        raise PointMapError(f"--protocol must be bacnet or modbus, not {protocol!r}")
    s = load_site(site)
    path = bms if bms is not None else Path(site).resolve().parent.parent / "bms" / f"{s.name}_{protocol}.yaml"
    pm = load_point_map(path)
    if pm.protocol != protocol:
        raise PointMapError(f"{path}: point map is for {pm.protocol}, not {protocol}")
    if port is None:
        port = int(pm.connection.device_address.rsplit(":", 1)[1]) if protocol == "bacnet" else pm.connection.port
    if not 0 <= load_frac <= 1:
        raise PointMapError(f"--load-frac {load_frac} must be between 0 and 1")
    if not 0 < port < 65536:
        raise PointMapError(f"--port {port} is not a port number")
    cond = SimConditions(load_frac=load_frac, drybulb_c=drybulb_c, wetbulb_c=wetbulb_c)

    _serve_until_signal(lambda stop, ready: serve(pm, s, port, cond, stop, ready), port,
                        lambda: f"bms-sim: {s.name} over {protocol} on 127.0.0.1:{port} "
                                f"({len(pm.writable)} setpoints, {len(pm.points) - len(pm.writable)} telemetry points)")
    console.print("bms-sim stopped")


def twin_cmd(
    site: Annotated[Path, typer.Option("--site", help="site configuration YAML")],
    protocol: Annotated[str, typer.Option("--protocol", help="bacnet or modbus")] = "bacnet",
    speed: Annotated[float, typer.Option("--speed", help="site seconds per wall second (60: a 15-min step every 15 s)")] = 60.0,
    start: Annotated[Optional[str], typer.Option("--start", help="site time of the first step, ISO (default: the data's start)")] = None,
    days: Annotated[float, typer.Option("--days", help="days of site data to run")] = 7.0,
    port: Annotated[Optional[int], typer.Option("--port", help="UDP (BACnet) or TCP (Modbus) port on 127.0.0.1")] = None,
    bms: Annotated[Optional[Path], typer.Option("--bms", help="point map (default configs/bms/<site>_<protocol>.yaml)")] = None,
    map_out: Annotated[Optional[Path], typer.Option("--map-out", help="write the twin's point map (with its telemetry "
                                                                        "and heartbeat) here for the supervisor")] = None,
    redfish_port: Annotated[Optional[int], typer.Option(
        "--redfish-port", help="also serve the servers as Redfish systems on 127.0.0.1:PORT (one per block of servers)")] = None,
    servers_per_host: Annotated[Optional[int], typer.Option(
        "--servers-per-host", help="servers per Redfish system (default: a round number giving about 100 systems)")] = None,
    inventory_out: Annotated[Optional[Path], typer.Option(
        "--inventory-out", help="write the Redfish host inventory here, and the work file (host,busy) beside it "
                                "as <name>_work.csv, rewritten every step")] = None,
    actuators_out: Annotated[Optional[Path], typer.Option(
        "--actuators-out", help="write an actuator map for the twin's Redfish service here (needs --inventory-out)")] = None,
) -> None:
    """Serve the site twin on 127.0.0.1: the simulator with thermal state behind the site's BMS points (Ctrl-C to stop).

    With --redfish-port its servers are Redfish systems a supervisor powers off and on
    (coolshift hosts, run-plan --actuators); its batch queue is served as the writable
    release_units_per_h__<class> points and queue telemetry.
    """
    import os

    from coolshift.actuators.inventory import ENV_PASSWORD, ENV_USER
    from coolshift.config import ConfigError
    from coolshift.twin import load_twin
    from coolshift.twin.hosts import write_actuator_map, write_inventory, write_work
    from coolshift.twin.points import write_point_map

    if (inventory_out is not None or actuators_out is not None) and redfish_port is None:
        raise ConfigError("options: --inventory-out and --actuators-out need --redfish-port")
    if actuators_out is not None and inventory_out is None:
        raise ConfigError("options: --actuators-out needs --inventory-out (the map names the inventory and work file)")
    if servers_per_host is not None and redfish_port is None:
        raise ConfigError("options: --servers-per-host needs --redfish-port")
    user, password = os.environ.get(ENV_USER), os.environ.get(ENV_PASSWORD)
    auth = (user, password) if user and password else None
    work = inventory_out.with_name(inventory_out.stem + "_work.csv") if inventory_out is not None else None
    twin = load_twin(site, protocol, speed, start=start, days=days, port=port, bms=bms, redfish_port=redfish_port,
                     servers_per_host=servers_per_host, work_path=work, redfish_auth=auth)
    if map_out is not None:
        out_pm, hb0 = twin.pm, twin.pm.heartbeat
        if hb0 is not None and hb0.interval_s is None and speed > 1:
            # the watchdog times site seconds, a supervisor writes on its wall clock: a third of the
            # timeout in wall seconds keeps it fed at this speed (two lost writes still inside it)
            out_pm = out_pm.model_copy(update={"heartbeat": hb0.model_copy(update={"interval_s": hb0.timeout_s / 3 / speed})})
        if speed > 1 and out_pm.safety.min_write_interval_s > 0:
            # the map supervises the twin, whose clock runs `speed` times faster: the site's
            # write-rate limit (wall seconds on the site) scaled to the twin's wall seconds
            out_pm = out_pm.model_copy(update={"safety": out_pm.safety.model_copy(
                update={"min_write_interval_s": out_pm.safety.min_write_interval_s / speed})})
        write_point_map(out_pm, map_out)
    if inventory_out is not None:
        write_inventory(twin.hosts, inventory_out)
        write_work(twin.hosts, work)
    if actuators_out is not None:
        write_actuator_map(actuators_out, site, f"http://127.0.0.1:{redfish_port}", inventory_out, work, speed)
    hb = twin.pm.heartbeat

    def announce() -> str:
        text = (f"twin: {twin.site.name} over {protocol} on 127.0.0.1:{twin.port}, speed {speed:g} "
                f"(a {twin.step_s / 60:g}-min step every {twin.step_s / speed:.3g} s), from "
                f"{twin.data.index[0].isoformat()} for {len(twin.data)} steps; watchdog "
                f"{hb.timeout_s:g} s of site time" + (f"; point map {map_out}" if map_out else ""))
        if twin.hosts is not None:
            text += (f"\nredfish: {len(twin.hosts.hosts)} systems of {twin.hosts.servers_per_host} servers on "
                     f"http://127.0.0.1:{redfish_port} ({'basic auth from ' + ENV_USER if auth else 'no auth'})"
                     + (f"; inventory {inventory_out}, work file {work}" if inventory_out else "")
                     + (f"; actuator map {actuators_out}" if actuators_out else ""))
        return text

    _serve_until_signal(twin.run, twin.port, announce)
    console.print(f"twin stopped after {len(twin.history)} step(s)")


def bms_status_cmd(bms: BmsOpt, audit: AuditOpt = None) -> None:
    """Read every point (setpoints and telemetry) once and print it, and any unfinished change.

    A change whose intent was recorded but whose outcome never was (the process died,
    or a roll-back gave up) is listed as unfinished and the command exits 1.
    """
    from rich.table import Table

    from coolshift.bms.adapters import open_adapter
    from coolshift.bms.device import DeviceError
    from coolshift.bms.state import device_key

    pm, site, log = _load(bms, audit)
    log.bind_device(device_key(pm))

    async def read_all():
        rows = []
        async with open_adapter(pm) as ad:
            for p in pm.points:
                try:
                    st = await ad.read_state(p)
                    log.record("read", "ok", p.name, old_value=st.value, new_value=st.commanded,
                               priority=ad.priority(p), detail=st.detail)
                    rows.append((p, st, ""))
                except DeviceError as exc:
                    log.record("read", "error", p.name, detail=str(exc))
                    rows.append((p, None, str(exc)))
        return rows

    with log:
        log.new_push()
        pending = log.state.pending(log.device)
        rows = asyncio.run(read_all())
    t = Table(title=f"{pm.name}", title_justify="left")
    for c in ("point", "address", "value", "unit", "ours", "state"):
        t.add_column(c, justify="right" if c in ("value", "ours") else "left")
    for p, st, err in rows:
        t.add_row(p.name, _address(pm, p), _fmt(st.value if st else None), p.unit,
                  _fmt(st.commanded if st else None), st.detail if st else f"[red]{err}[/]")
    console.print(t)
    for q in pending:
        what = f"{q.action} to {_fmt(q.value)}" if q.value is not None else f"{q.action} to local control"
        err_console.print(f"UNFINISHED {q.point}: {what} started {q.since.isoformat(timespec='seconds')} "
                          f"(push {q.push_id}, audit {q.audit}) was never confirmed: the process stopped or the "
                          "device did not answer; check the point (`coolshift release` hands it back)",
                          markup=False, highlight=False)
    if any(err for _, _, err in rows) or pending:
        raise typer.Exit(EXIT_FAILURE)


def bms_audit_cmd(bms: BmsOpt, audit: AuditOpt = None,
                  tail: Annotated[int, typer.Option(help="last N records")] = 20,
                  action: Annotated[Optional[str], typer.Option(help="only this action: read, write, verify, "
                                                                     "restore, relinquish, refuse, push, run")] = None,
                  verify: Annotated[bool, typer.Option("--verify", help="check the hash chain: exit 0 when intact, "
                                                                       "1 naming the first broken or missing record")] = False,
                  ) -> None:
    """Print the last records of the BMS audit log, or verify its hash chain (--verify)."""
    from rich.markup import escape
    from rich.table import Table

    from coolshift.bms.audit import ACTIONS, AuditError, read_audit, verify_audit
    from coolshift.bms.points import PointMapError, load_point_map
    from coolshift.bms.state import DeviceState

    pm = load_point_map(bms)
    path = audit if audit is not None else pm.resolve(pm.audit_db)
    if not Path(path).is_file():
        raise PointMapError(f"{path}: no audit log yet")
    if tail < 1:
        raise PointMapError(f"--tail {tail}: give a positive number of records")
    if action is not None and action not in ACTIONS:
        raise PointMapError(f"--action {action!r}: not an audit action (one of {', '.join(ACTIONS)})")
    if verify:
        try:
            state = DeviceState()
        except OSError as exc:
            raise AuditError(str(exc)) from None
        try:
            v = verify_audit(path, state)
        finally:
            state.close()
        if v.ok:
            legacy = f"; records 1-{v.legacy} predate the chain and are covered from record {v.legacy + 1} on" \
                if v.legacy else ""
            console.print(f"audit log intact: {path}: {v.records} record(s), chain head {v.head}{legacy}",
                          markup=False, highlight=False)
            return
        for m in v.problems:
            err_console.print(f"[bold red]audit log BROKEN:[/] {escape(m)}", markup=True, highlight=False)
        err_console.print(f"{path}: verification failed ({v.records} record(s) read)", markup=False, highlight=False)
        raise typer.Exit(EXIT_FAILURE)
    df = read_audit(path)
    if action is not None:
        df = df[df.action == action]
    df = df.tail(tail)
    t = Table(title=str(path), title_justify="left")
    for c in ("id", "time", "action", "point", "old", "new", "prio", "result", "by", "detail"):
        t.add_column(c, no_wrap=c != "detail")

    def s(v) -> str:
        return "" if _missing(v) else str(v)

    def num(v) -> str:
        return _fmt(None if _missing(v) else float(v))

    for r in df.to_dict("records"):
        by = f"{s(r.get('os_user'))}@{s(r.get('host'))}" if not _missing(r.get("os_user")) else ""
        t.add_row(str(r["id"]), str(r["time_utc"])[11:19], s(r["action"]), s(r["point"]), num(r["old_value"]),
                  num(r["new_value"]), "" if _missing(r["priority"]) else str(int(r["priority"])), s(r["result"]),
                  by, escape(s(r["detail"])[:48]))
    console.print(t)


def _missing(v) -> bool:
    """None or NaN: how sqlite NULL reaches us through pandas (object column or float column)."""
    return v is None or (isinstance(v, float) and v != v)


def register(app: typer.Typer) -> None:
    app.command("push")(_errors(push_cmd))
    app.command("release")(_errors(release_cmd))
    app.command("run-plan")(_errors(run_plan_cmd))
    app.command("bms-sim")(_errors(bms_sim_cmd))
    app.command("twin")(_errors(twin_cmd))
    app.command("bms-status")(_errors(bms_status_cmd))
    app.command("bms-audit")(_errors(bms_audit_cmd))
