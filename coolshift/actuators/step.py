"""One step of every lever outside the BMS: host power through Redfish, jobs and nodes through Slurm.

:class:`ActuatorStepper` is what ``coolshift run-plan --actuators`` and the live loop call
once per planning step with that step's targets (``active_servers__<pool>``, and for the
Slurm classes ``release_units_per_h__<class>``). Each target set is enacted as a one-step
plan through the same code as ``coolshift hosts`` and ``coolshift jobs``
(:func:`coolshift.actuators.redfish.enact`, :class:`coolshift.actuators.slurm.SlurmActuator`),
with their contract: a dry run unless ``apply``; every action in the hash-chained audit log
before it happens; a failed step rolled back (hosts it powered off are on again, jobs it
held released), so a failure leaves a known state; :meth:`ActuatorStepper.release` hands
everything back as ``coolshift release --actuators`` does (it reads the same audit logs, so
a killed run is recovered by either).

Synchronous (the live loop calls it through ``asyncio.to_thread``): every call opens its own
audit-log connections in the calling thread (sqlite connections are bound to their thread).
The work file (``redfish.work``: which hosts carry work) is re-read at every step.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import pandas as pd

from coolshift.bms.audit import AuditLog
from coolshift.bms.plan import Plan
from coolshift.config import ConfigError, SiteConfig

from .inventory import (ActuatorMap, Inventory, load_inventory_spec, load_work, redfish_credentials,
                        resolve_inventory)
from .redfish import (ACTIVE_PREFIX, RedfishClient, RedfishError, enact, pool_limits, read_hosts, release,
                      servers_on)
from .slurm import SlurmActuator, SlurmError

__all__ = ["RELEASE_PREFIX", "StepOutcome", "ActuatorStepper"]

RELEASE_PREFIX = "release_units_per_h__"


@dataclass
class StepOutcome:
    """What one step did: ``ok`` False when a part failed (it was rolled back: see ``messages``)."""

    ok: bool
    messages: list[str] = field(default_factory=list)
    actions: int = 0  # power changes, holds, releases and node changes done (0 in a dry run)
    hosts_off: int = 0
    hosts_on: int = 0
    slurm_actions: int = 0
    status: dict[str, str] = field(default_factory=dict)  # part -> enact status (applied, dry_run, nothing, ...)


class ActuatorStepper:
    """The actuator map's Redfish service (and Slurm cluster, if the map has one), one step at a time.

    A context manager: entering resolves the host inventory against the service (bad input
    raises :class:`coolshift.config.ConfigError` before anything is done); leaving closes
    the connections (it does not hand back: call :meth:`release`).

    ``audit``: the log whose file the host actions go to (pass the actuator map's
    ``audit_db`` so ``coolshift release --actuators`` finds them); Slurm actions go to the
    Slurm section's ``audit_db`` (by default the same file).
    """

    def __init__(self, amap: ActuatorMap, site: SiteConfig, audit: AuditLog, *, apply: bool,
                 log: Callable[[str], None] = print):
        self.amap, self.site, self.apply, self.say = amap, site, bool(apply), log
        self.audit_path = Path(audit.path)
        self.client: RedfishClient | None = None
        self.inventory: Inventory | None = None
        self._smap = None
        self.steps = 0
        self.released_ok: bool | None = None  # after release(): everything handed back

    # -- lifecycle
    def __enter__(self) -> "ActuatorStepper":
        try:
            self.open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        am, site = self.amap, self.site
        spec = load_inventory_spec(am.redfish.inventory, site)
        self.client = RedfishClient(am.redfish, redfish_credentials())
        ids = self.client.system_ids()
        systems = self.client.system_names(ids) if spec.needs_discovery else {i: i for i in ids}
        self.inventory = resolve_inventory(spec, site, systems)
        if am.slurm is not None:
            self._smap = dataclasses.replace(am.slurm, site=site.name)
            with self._slurm() as sl:
                sl.check_cluster()

    @contextlib.contextmanager
    def _rf_log(self):
        """The host actions' audit log, opened in this thread for one call."""
        with AuditLog(self.audit_path, device=self.amap.redfish.device) as log:
            yield log

    @contextlib.contextmanager
    def _slurm(self):
        """The Slurm actuator with its audit log, opened in this thread for one call."""
        with AuditLog(Path(self._smap.audit_db), device=self._smap.device) as log:
            yield SlurmActuator(self._smap, log)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def columns(self) -> list[str]:
        """The plan columns this stepper acts on: ``active_servers__<pool>`` of the inventory's
        pools (and the Slurm section's), ``release_units_per_h__<class>`` of the Slurm classes."""
        assert self.inventory is not None, "use ActuatorStepper as a context manager"
        pools = set(self.inventory.pools)
        classes: set[str] = set()
        if self._smap is not None:
            pools |= {p.name for p in self._smap.pools}
            classes = {c.name for c in self._smap.classes}
        return [f"{ACTIVE_PREFIX}{p}" for p in sorted(pools)] + [f"{RELEASE_PREFIX}{c}" for c in sorted(classes)]

    # -- reading
    def _busy(self) -> Mapping[str, bool]:
        return load_work(self.amap.redfish.work, self.inventory)

    def read(self) -> dict[str, float]:
        """``active_servers__<pool>`` from the hosts' power states (On or PoweringOn, times
        ``servers_per_host``, plus the pool's servers outside the inventory, counted on), and
        ``host_power_kw`` when the service reports chassis power."""
        assert self.client is not None and self.inventory is not None, "use ActuatorStepper as a context manager"
        hosts = read_hosts(self.client, self.inventory, lambda h: True)
        limits = pool_limits(self.site, self.inventory)
        on = servers_on(hosts, limits)
        out = {f"{ACTIVE_PREFIX}{p}": float(on[p] + lim.servers - lim.controlled) for p, lim in limits.items()}
        w, n = self.client.chassis_power_w()
        if w is not None:
            out["host_power_kw"] = w / 1000.0
        return out

    # -- acting
    def _plan(self, now: pd.Timestamp, targets: Mapping[str, float]) -> Plan:
        frame = pd.DataFrame({k: [float(v)] for k, v in targets.items()},
                             index=pd.DatetimeIndex([now], name="timestamp"))
        return Plan(run_id=f"step-{now.strftime('%Y%m%dT%H%M%S')}", created_at=now, site=self.site.name, frame=frame,
                    step=pd.Timedelta(hours=self.site.step_h), path=Path("<live step>"))

    def step(self, now: pd.Timestamp, targets: dict[str, float]) -> StepOutcome:
        """Enact this step's targets: hosts first (capacity), then Slurm holds/releases and nodes.

        A part that fails is rolled back by its own code and reported; the other part still
        runs (each leaves a known state on its own). Targets for pools not in the inventory
        or classes not in the Slurm map are ignored.
        """
        assert self.client is not None and self.inventory is not None, "use ActuatorStepper as a context manager"
        now = pd.Timestamp(now)
        now = now.tz_localize("UTC") if now.tzinfo is None else now.tz_convert("UTC")
        self.steps += 1
        bad = [k for k, v in targets.items() if not pd.notna(v) or float(v) < 0]
        if bad:
            raise ConfigError(f"targets: {bad[0]}: {targets[bad[0]]!r} is not a count or rate >= 0")
        out = StepOutcome(ok=True)
        host_targets = {k: v for k, v in targets.items()
                        if k.startswith(ACTIVE_PREFIX) and k[len(ACTIVE_PREFIX):] in self.inventory.pools}
        if host_targets:
            try:
                busy = self._busy()
                with self._rf_log() as log:
                    rep = enact(self.client, self.site, self.inventory, self._plan(now, host_targets), log,
                                busy=lambda h: busy.get(h, True), apply=self.apply, now=now,
                                max_plan_age_h=self.amap.max_plan_age_h, telemetry=False)
                out.status["hosts"] = rep.status
                acts = rep.plan.actions if rep.plan is not None else []
                if rep.status == "applied":
                    out.hosts_off = sum(r.ok and r.want == "Off" for r in rep.results)
                    out.hosts_on = sum(r.ok and r.want == "On" for r in rep.results)
                    out.actions += out.hosts_off + out.hosts_on
                    out.messages.append(f"hosts: {out.hosts_off} off, {out.hosts_on} on")
                elif rep.status == "dry_run":
                    out.messages.append(f"hosts: {sum(a.action == 'off' for a in acts)} would go off, "
                                        f"{sum(a.action == 'on' for a in acts)} on (dry run)")
                elif rep.status == "nothing":
                    out.messages.append("hosts: at target (" + ", ".join(
                        f"{d.pool} {d.target} host(s) on" + (f"; {d.note}" if d.note else "") for d in rep.plan.decisions) + ")")
                else:
                    out.ok = False
                    out.messages += [f"hosts: {rep.status}: {m}" for m in rep.messages] or [f"hosts: {rep.status}"]
            except (RedfishError, ConfigError) as exc:
                out.ok = False
                out.status["hosts"] = "error"
                out.messages.append(f"hosts: {exc}")
        if self._smap is not None:
            smap = self._smap
            names = {f"{RELEASE_PREFIX}{c.name}" for c in smap.classes} | {f"{ACTIVE_PREFIX}{p.name}" for p in smap.pools}
            sl_targets = {k: v for k, v in targets.items() if k in names}
            if sl_targets:
                try:
                    with self._slurm() as sl:
                        self._slurm_step(sl, now, sl_targets, out)
                except SlurmError as exc:
                    out.ok = False
                    out.status["slurm"] = "error"
                    out.messages.append(f"slurm: {exc}")
        return out

    def _slurm_step(self, sl: SlurmActuator, now: pd.Timestamp, sl_targets: dict[str, float], out: StepOutcome) -> None:
        """Holds/releases and node power for this step's Slurm targets, recorded in ``out``."""
        # only the classes and pools this step has targets for (a job or node of another is left alone)
        sub = dataclasses.replace(
            sl.smap, classes=tuple(c for c in sl.smap.classes if f"{RELEASE_PREFIX}{c.name}" in sl_targets),
            pools=tuple(p for p in sl.smap.pools if f"{ACTIVE_PREFIX}{p.name}" in sl_targets))
        dec = SlurmActuator(sub, sl.log, sl.cli).decide(self._plan(now, sl_targets), now)
        if not self.apply:
            out.status["slurm"] = "dry_run"
            out.messages.append(f"slurm: {len(dec.actions)} action(s) (dry run)")
        elif not dec.actions:
            out.status["slurm"] = "nothing"
        else:
            res = sl.enact(dec)
            out.slurm_actions = len(res.done)
            out.actions += len(res.done)
            if res.failed is None:
                out.status["slurm"] = "applied"
                out.messages.append(f"slurm: {len(res.done)} action(s)")
            else:
                out.ok = False
                out.status["slurm"] = "rolled_back" if not res.rollback_failed else "rollback_failed"
                out.messages.append(f"slurm: {res.failed[0].kind} {res.failed[0].target} failed: "
                                    f"{res.failed[1]}; {len(res.rolled_back)} action(s) undone")

    def release(self) -> list[str]:
        """Hand back: every host Coolshift switched off on the service powered on, every Slurm
        hold lifted and node resumed; one line per thing handed back (or not)."""
        assert self.client is not None and self.inventory is not None, "use ActuatorStepper as a context manager"
        lines: list[str] = []
        ok = True
        try:
            with self._rf_log() as log:
                rep = release(self.client, log, self.inventory.pool_of())
            lines += [f"host {r.host} ({r.pool}): {'on' if r.ok else 'NOT ON: ' + r.detail}" for r in rep.results]
            ok = ok and rep.ok
        except RedfishError as exc:
            lines.append(f"hosts NOT handed back: {exc}")
            ok = False
        if self._smap is not None:
            try:
                with self._slurm() as sl:
                    out = sl.release_all()
                lines += [f"{'job' if a.kind == 'release' else 'node'} {a.target}: handed back" for a in out.done]
                lines += [f"{a.point}: NOT handed back: {why}" for a, why in out.rollback_failed]
                ok = ok and not out.rollback_failed
            except SlurmError as exc:
                lines.append(f"jobs and nodes NOT handed back: {exc}")
                ok = False
        self.released_ok = ok
        return lines
