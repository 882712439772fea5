"""Slurm commands: ``jobs`` (hold/release batch jobs and power nodes to follow a plan) and ``jobs-release``.

The BMS push's contract: ``jobs`` is a dry run unless ``--apply``; every action is in the
hash-chained audit log before it happens; a failed step is rolled back; ``jobs-release``
lifts every hold Coolshift placed and powers up every node it powered down. The cluster is
named by a Slurm map (``--slurm``) or by the ``slurm:`` section of an actuator map
(``--actuators``, the same file ``coolshift hosts`` reads).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer

from coolshift.locks import LockSpec, lock_path

from ._common import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_FALLBACK, cli_locks, console, err_console

EXIT_REFUSED = EXIT_FALLBACK  # stale plan, another site, no step for now: nothing done

PlanOpt = Annotated[Path, typer.Option("--plan", help="plan run folder (plan.csv + summary.json)")]
SlurmOpt = Annotated[Optional[Path], typer.Option("--slurm", help="Slurm map YAML (cluster, slurm.conf, classes, pools)")]
ActuatorsOpt = Annotated[Optional[Path], typer.Option(
    "--actuators", help="actuator map YAML whose slurm: section names the cluster (instead of --slurm)")]
AuditOpt = Annotated[Optional[Path], typer.Option("--audit", help="audit log sqlite (default: the map's audit_db)")]
ApplyOpt = Annotated[bool, typer.Option("--apply", help="act on the cluster (default: dry run, nothing changed)")]


def _say(text: str, err: bool = False) -> None:
    (err_console if err else console).print(text, markup=False, highlight=False, soft_wrap=True)


def _errors(func: Callable) -> Callable:
    """Bad input -> one line and exit 2; a Slurm tool that fails -> exit 1; never a traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from coolshift.actuators.slurm import SlurmError
        from coolshift.bms.audit import AuditError
        from coolshift.config import ConfigError

        try:
            return func(*args, **kwargs)
        except (ConfigError, AuditError) as exc:
            _say(f"error: {exc}", err=True)
            raise typer.Exit(EXIT_BAD_INPUT) from None
        except SlurmError as exc:
            _say(f"slurm error: {exc}", err=True)
            raise typer.Exit(EXIT_FAILURE) from None

    return wrapper


def load_slurm(slurm: Path | None, actuators: Path | None):
    """The Slurm map from ``--slurm`` or from an actuator map's ``slurm:`` section (exactly one)."""
    import dataclasses

    from coolshift.actuators.inventory import load_actuator_map
    from coolshift.actuators.slurm import SlurmMapError, load_slurm_map
    from coolshift.config import load_site

    if (slurm is None) == (actuators is None):
        raise SlurmMapError("options: give the cluster with exactly one of --slurm MAP or --actuators MAP")
    if slurm is not None:
        return load_slurm_map(slurm)
    am = load_actuator_map(actuators)
    if am.slurm is None:
        raise SlurmMapError(f"{actuators}: slurm: missing (this actuator map names no Slurm cluster)")
    return dataclasses.replace(am.slurm, site=load_site(am.site).name)


def hand_back_jobs(smap, audit: Path | None = None) -> tuple[bool, str]:
    """Lift every hold Coolshift placed and resume every node it powered down, printing each;
    returns (all handed back, a one-line summary). A cluster that does not answer raises SlurmError."""
    from coolshift.actuators.slurm import SlurmActuator
    from coolshift.bms.audit import AuditLog

    log = AuditLog(audit if audit is not None else smap.audit_db, device=smap.device)
    try:
        act = SlurmActuator(smap, log)
        act.check_cluster()
        log.record("run", "start", detail="coolshift jobs-release")
        out = act.release_all()
        for a in out.done:
            _say(f"{'released job' if a.kind == 'release' else 'resumed node'} {a.target}")
        for a, why in out.rollback_failed:
            _say(f"FAILED to hand back {a.point}: {why}", err=True)
        if not out.done and not out.rollback_failed:
            _say("nothing to hand back: no hold or node of Coolshift's on the cluster")
        log.record("run", "end", detail=f"jobs-release: {len(out.done)} handed back, {len(out.rollback_failed)} failed")
    finally:
        log.close()
    jobs = sum(a.kind == "release" for a in out.done)
    return not out.rollback_failed, (f"{jobs} hold(s) lifted, {len(out.done) - jobs} node(s) resumed, "
                                     f"{len(out.rollback_failed)} failed; audit: {log.path}")


def _table(title: str, actions) -> None:
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    for c in ("action", "target", "class", "units", "why"):
        t.add_column(c, overflow="fold")
    for a in actions:
        t.add_row(a.kind, a.target, a.cls or "-", f"{a.units:.3g}" if a.units else "-", a.why)
    console.print(t)


def register(app: typer.Typer) -> None:
    @app.command("jobs")
    @_errors
    def jobs(plan: PlanOpt, slurm: SlurmOpt = None, actuators: ActuatorsOpt = None, apply: ApplyOpt = False,
             audit: AuditOpt = None) -> None:
        """Hold and release pending batch jobs and power nodes down/up to follow the plan's current step.

        A dry run unless --apply. A job of a mapped class is released when the plan's
        release_units_per_h__<class> leaves budget in this step, or whatever the plan says
        when holding it one more step would miss its deadline; idle nodes are powered down
        (Slurm power saving) to the plan's active_servers__<pool>, and powered up again.
        """
        import pandas as pd

        from coolshift.actuators.slurm import SlurmActuator, read_slurm_plan
        from coolshift.bms.audit import AuditLog
        from coolshift.bms.plan import current_step

        smap = load_slurm(slurm, actuators)
        p = read_slurm_plan(plan, smap)
        now = pd.Timestamp.now(tz="UTC")
        refusals = []
        if smap.site is not None and p.site != smap.site:
            refusals.append(f"the plan is for site {p.site!r}, the Slurm map {smap.path} for {smap.site!r}")
        age_h = (now - p.created_at) / pd.Timedelta(hours=1)
        if age_h > smap.max_plan_age_h:
            refusals.append(f"the plan was made {age_h:.1f} h ago (max_plan_age_h {smap.max_plan_age_h:g})")
        if current_step(p, now) is None:
            refusals.append(f"no step of the plan contains now ({now:%Y-%m-%dT%H:%M:%S}Z; the plan covers "
                            f"{p.frame.index[0]:%Y-%m-%dT%H:%M}Z to {p.frame.index[-1] + p.step:%Y-%m-%dT%H:%M}Z)")
        if refusals:
            for r in refusals:
                _say(f"refused: {r}", err=True)
            _say("nothing changed (`coolshift jobs-release` hands every job and node back)", err=True)
            raise typer.Exit(EXIT_REFUSED)
        log = AuditLog(audit if audit is not None else smap.audit_db, run_id=p.run_id, device=smap.device)
        try:
            act = SlurmActuator(smap, log)
            act.check_cluster()
            dec = act.decide(p, now)
            _table(f"plan {p.run_id}, step {dec.step.isoformat()}, cluster {smap.cluster}", dec.actions)
            for n in dec.notes:
                _say(n)
            if not apply:
                _say(f"dry run: {len(dec.actions)} action(s) would be taken; nothing changed (add --apply to act)")
                return
            # one `jobs --apply` per cluster at a time (exit 75 otherwise), as `hosts` per Redfish service
            with cli_locks([LockSpec(lock_path("actuator-slurm", smap.device),
                                     f"coolshift jobs on Slurm cluster {smap.device}")], "jobs"):
                log.record("run", "start", detail=f"coolshift jobs: step {dec.step.isoformat()}, "
                                                    f"{len(dec.actions)} action(s)")
                out = act.enact(dec)
            for a in out.done:
                _say(f"{a.kind} {a.target}: done")
            for a, why in out.skipped:
                _say(f"{a.kind} {a.target}: skipped: {why}")
            if out.failed is not None:
                a, why = out.failed
                _say(f"FAILED {a.kind} {a.target}: {why}", err=True)
                for b in out.rolled_back:
                    _say(f"rolled back: {b.kind} {b.target}", err=True)
                for b, e in out.rollback_failed:
                    _say(f"ROLL-BACK FAILED: {b.kind} {b.target}: {e} (run `coolshift jobs-release`)", err=True)
                log.record("run", "end", detail=f"failed at {a.kind} {a.target}; rolled back {len(out.rolled_back)}")
                raise typer.Exit(EXIT_FAILURE)
            log.record("run", "end", detail=f"{len(out.done)} done, {len(out.skipped)} skipped")
            _say(f"applied: {len(out.done)} action(s), {len(out.skipped)} skipped; audit: {log.path}")
        finally:
            log.close()

    @app.command("jobs-release")
    @_errors
    def jobs_release(slurm: SlurmOpt = None, actuators: ActuatorsOpt = None, audit: AuditOpt = None) -> None:
        """The operator's exit: lift every hold Coolshift placed and power up every node it powered down."""
        ok, _ = hand_back_jobs(load_slurm(slurm, actuators), audit)
        if not ok:
            raise typer.Exit(EXIT_FAILURE)
