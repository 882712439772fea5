"""`coolshift operate`: the live loop's I/O. Read the BMS, decide (:mod:`coolshift.control.live`), write safely.

Per planning step: read every mapped point (setpoints in force, telemetry, the clock
point ``sim_time_unix_h`` when the map has one), check telemetry and intensity freshness,
run the drift gate on the last step, re-plan, write the heartbeat, then push the first
step through the safety layer (:func:`coolshift.bms.push.push` with ``apply``: checked,
written, read back, rolled back on failure, audited). Anything wrong hands every point
back (:func:`~coolshift.bms.push.release`). A status JSON is written atomically every step
(``$COOLSHIFT_STATE_DIR/operate/<site>/status.json``; docs/live.md "Run it live").

Clocks. Site time is the clock point's value when the map has one (the twin), else the
wall clock floored to the planning step. The safety layer runs on the wall clock (rate
limit, plan age): the step written is stamped with the wall time of the write.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from coolshift.actuators.step import ActuatorStepper
from coolshift.bms.adapters import open_adapter
from coolshift.bms.audit import AuditLog
from coolshift.bms.device import DeviceError
from coolshift.bms.heartbeat import write_heartbeat
from coolshift.bms.plan import Plan
from coolshift.bms.points import PointMap
from coolshift.bms.push import push, release_points, utcnow
from coolshift.bms.safety import max_change
from coolshift.bms.state import device_key
from coolshift.config import SiteConfig
from coolshift.control.live import (FACILITY_KW, LiveController, LiveLimits, Telemetry, cooling_saving_kw,
                                    model_at_measured)
from coolshift.io.live import LiveSource, StaleIntensity, fresh_forecast
from coolshift.locks import control_locks, hold_locks, state_dir
from coolshift.schema import CARBON_GCO2_PER_KWH

__all__ = ["OperateOptions", "OperateResult", "OperatorInbox", "LiveView", "status_path", "run_operate", "SIM_TIME"]

SIM_TIME = "sim_time_unix_h"
_EPOCH = pd.Timestamp("1970-01-01", tz="UTC")


@dataclass(frozen=True)
class OperateOptions:
    """What ``coolshift operate`` was asked. ``interval_s``: wall seconds per planning step
    (default the site's step; against a twin at speed N, step / N); ``steps``: stop after
    this many steps (None: until a signal)."""

    apply: bool = False
    steps: int | None = None
    interval_s: float | None = None
    limits: LiveLimits = field(default_factory=LiveLimits)


OPERATOR_ACTIONS = ("pause", "resume", "release")


class OperatorInbox:
    """Operator requests to the running loop (the API in the same process): pause, resume, release.

    ``pause``: stop writing and hand every point back; the loop goes on planning and
    reporting. ``release``: the same, now, for everything Coolshift commands. ``resume``:
    write again from the next step. Each request names who asked; the loop audits it.
    """

    def __init__(self) -> None:
        self._pending: list[tuple[str, str]] = []
        self.wake = asyncio.Event()

    def request(self, action: str, who: str) -> None:
        if action not in OPERATOR_ACTIONS:
            raise ValueError(f"unknown operator action {action!r} (one of {', '.join(OPERATOR_ACTIONS)})")
        self._pending.append((action, who))
        self.wake.set()

    def take(self) -> list[tuple[str, str]]:
        out, self._pending = self._pending, []
        self.wake.clear()
        return out


@dataclass
class LiveView:
    """What the loop shows while it runs: the status (as status.json) and the recent steps.

    ``history``: per step ``site_time``, ``state``, ``targets`` (written or planned),
    ``measured`` (telemetry), ``predicted`` (the plant model for the step) and carbon.
    """

    status: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    max_history: int = 672  # a week of 15-min steps

    def add(self, row: dict) -> None:
        self.history.append(row)
        del self.history[:-self.max_history]


@dataclass
class OperateResult:
    exit_code: int
    reason: str
    steps: int = 0
    steps_written: int = 0
    status: dict = field(default_factory=dict)


def status_path(site_name: str) -> Path:
    """``$COOLSHIFT_STATE_DIR/operate/<site>/status.json`` (the state folder of the locks)."""
    return state_dir() / "operate" / site_name / "status.json"


def _write_atomic(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".status-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


async def _read_telemetry(adapter, pm: PointMap, step: pd.Timedelta) -> Telemetry:
    """Every mapped point once (writables: the value in force); site time from the clock point or the wall."""
    values, commanded = {}, {}
    for p in pm.points:
        if p.writable:
            st = await adapter.read_state(p)
            values[p.variable], commanded[p.name] = float(st.value), st.commanded is not None
        else:
            values[p.variable] = float(await adapter.read_value(p))
    if SIM_TIME in values:
        site_time = (_EPOCH + pd.Timedelta(hours=values[SIM_TIME])).round("1s")
    else:
        site_time = utcnow().floor(step)
    return Telemetry(site_time, values, commanded)


def _one_step_plan(site: SiteConfig, targets: dict[str, float], interval_s: float, run_id: str, where: Path) -> Plan:
    """The step to write as a plan the safety layer checks: one row covering the wall-clock now."""
    now = utcnow()
    frame = pd.DataFrame({k: [v] for k, v in targets.items()},
                         index=pd.DatetimeIndex([now - pd.Timedelta(seconds=0.001)], name="timestamp"))
    frame["in_envelope"] = True
    return Plan(run_id=run_id, created_at=now, site=site.name, frame=frame,
                step=pd.Timedelta(seconds=max(interval_s, 1.0)), path=where)


async def run_operate(pm: PointMap, site: SiteConfig, data: pd.DataFrame, plant_model, audit: AuditLog,
                      opts: OperateOptions, intensity: LiveSource | None = None,
                      log: Callable[[str], None] = print, stop: asyncio.Event | None = None,
                      on_step: Callable[[dict], None] | None = None, inbox: OperatorInbox | None = None,
                      view: LiveView | None = None, actuators: ActuatorStepper | None = None) -> OperateResult:
    """Run the loop until ``opts.steps``, a signal or ``stop``; every point commanded is handed back at the end.

    Takes the control locks (site and device) when ``opts.apply`` for the whole run
    (:class:`coolshift.locks.RunLocked` if another loop holds them).
    """
    locks = hold_locks(control_locks(site.name, pm.protocol, pm.connection), "operate") if opts.apply else None
    if locks is not None:
        locks.__enter__()
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    why: list[str] = []

    def on_signal(name: str) -> None:
        why.append(f"stopped by {name}")
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig.name)
    try:
        return await _run(pm, site, data, plant_model, audit, opts, intensity, log, stop, why, on_step,
                          inbox or OperatorInbox(), view if view is not None else LiveView(), actuators)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if locks is not None:
            locks.__exit__(None, None, None)


async def _run(pm, site, data, model, audit, opts, intensity, log, stop, why, on_step, inbox, view,
               actuators) -> OperateResult:
    step = pd.Timedelta(hours=site.step_h)
    act_columns = set(actuators.columns()) if actuators is not None else set()
    interval_s = float(opts.interval_s or site.step_h * 3600.0)
    lim = opts.limits
    ctl = LiveController(site, model, data, lim, {p.variable: max_change(p, site) for p in pm.writable},
                         point_limits={p.variable: (p.min_value, p.max_value) for p in pm.writable
                                       if p.min_value is not None and p.max_value is not None})
    audit.bind_device(device_key(pm))
    run_id = audit.new_push()
    audit.record("run", "start", detail=f"operate apply={opts.apply} interval_s={interval_s:g}")
    spath = status_path(site.name)
    res = OperateResult(0, "")
    status = {"site": site.name, "point_map": pm.name, "apply": opts.apply, "state": "running", "reason": None,
              "site_time": None, "steps": 0, "steps_written": 0, "telemetry": {}, "points": {}, "refusals": [],
              "kgco2_so_far": 0.0, "kgco2_saved_so_far": 0.0, "loop_latency_s": None, "drift": None, "retrain_model": False,
              "updated_at": None, "pid": os.getpid(), "paused_by": None}
    view.status = status
    commanding = False
    paused: str | None = None  # who paused the loop (an operator through the API)
    last_site_time = None
    last_fresh_wall = time.monotonic()

    release_pending = False  # a hand-back the device did not confirm (it was down): retried when it answers

    async def release_now(adapter) -> bool:
        nonlocal release_pending
        try:
            rel = await release_points(adapter, pm.writable, audit)
            status["released"] = {n: ok for n, ok, _ in rel}
            status["points_commanded"] = {**status.get("points_commanded", {}), **{n: False for n, ok, _ in rel if ok}}
            release_pending = not all(ok for _, ok, _ in rel)
        except DeviceError as exc:
            status["released"] = {"error": str(exc)}
            release_pending = True
        return not release_pending

    async def hand_back(adapter, reason: str, state: str = "handed_back") -> None:
        nonlocal commanding
        status["state"], status["reason"] = state, reason
        if opts.apply:
            audit.record("run", "refused" if state == "handed_back" else "end", detail=f"hand back: {reason}")
            await release_now(adapter)
            if actuators is not None and actuators.apply:  # hosts on, holds lifted
                lines = await asyncio.to_thread(actuators.release)
                status["released_actuators"] = {"ok": actuators.released_ok, "lines": lines[-20:]}
        commanding = False
        log(f"{state}: {reason}")

    hb_every_s = (max(0.05, min(pm.heartbeat.write_interval_s, interval_s / 4.0))
                  if pm.heartbeat is not None else None)

    last_beat = [0.0]  # time.monotonic() of the last heartbeat written

    async def beat(adapter) -> None:
        try:
            await write_heartbeat(adapter, pm)
            last_beat[0] = time.monotonic()
        except DeviceError as exc:
            audit.record("run", "error", detail=f"heartbeat not written: {exc}")

    async def keepalive(adapter, aw):
        """Await ``aw`` (a solve, a host step) writing the heartbeat meanwhile while we command:
        a long step must not look like a dead supervisor to the controller's watchdog."""
        task = asyncio.ensure_future(aw)
        if not (opts.apply and commanding and hb_every_s is not None):
            return await task
        while True:
            done, _ = await asyncio.wait({task}, timeout=max(0.01, hb_every_s - (time.monotonic() - last_beat[0])))
            if done:
                return task.result()
            await beat(adapter)

    async def handle_inbox(adapter) -> None:
        """Operator requests, in the order they came; each audited with who asked."""
        nonlocal paused
        for action, who in inbox.take():
            audit.record("operator", "ok", detail=f"{action} requested by {who}")
            log(f"operator: {action} by {who}")
            if action == "resume":
                paused = None
                status["paused_by"] = None
                if status["state"] == "paused":
                    status["state"], status["reason"] = "running", None
            else:
                paused = who
                status["paused_by"] = who
                await hand_back(adapter, f"{action} by {who}", state="paused")
            publish()

    def publish() -> None:
        status["updated_at"] = utcnow().isoformat()
        status["steps"], status["steps_written"] = res.steps, res.steps_written
        _write_atomic(spath, status)
        if on_step is not None:
            on_step(dict(status))

    async with open_adapter(pm) as adapter:
        try:
            while not stop.is_set() and (opts.steps is None or res.steps < opts.steps):
                await handle_inbox(adapter)
                # wait for the next step of site time (the clock point advancing), or give up on stale telemetry
                tele, problem = None, None
                t_wait = time.monotonic()
                while not stop.is_set():
                    try:
                        tele = await _read_telemetry(adapter, pm, step)
                        if actuators is not None and (last_site_time is None or tele.site_time > last_site_time):
                            tele.values.update(await keepalive(adapter, asyncio.to_thread(actuators.read)))
                    except DeviceError as exc:
                        problem = f"telemetry missing: {exc}"
                        tele = None
                    if tele is not None and (last_site_time is None or tele.site_time > last_site_time):
                        last_fresh_wall = time.monotonic()
                        break
                    age_s = time.monotonic() - last_fresh_wall
                    if age_s > lim.telemetry_max_age_s:
                        problem = problem or (f"telemetry stale: the site clock has not advanced for {age_s:.2f} s "
                                              f"(limit {lim.telemetry_max_age_s:g} s)")
                        tele = None
                        break
                    try:  # an operator's request wakes the wait
                        await asyncio.wait_for(inbox.wake.wait(), min(0.02, interval_s / 20)
                                               if SIM_TIME in {p.variable for p in pm.points} else min(1.0, interval_s / 20))
                    except (asyncio.TimeoutError, TimeoutError):
                        pass
                    await handle_inbox(adapter)
                    if opts.apply and commanding and hb_every_s is not None and \
                            time.monotonic() - last_beat[0] >= hb_every_s:  # waiting for the site's next step
                        await beat(adapter)
                if stop.is_set():
                    break
                t0 = time.monotonic()
                res.steps += 1
                status.pop("actuators", None)  # this step's host/Slurm outcome only
                if tele is None:
                    await hand_back(adapter, problem)
                    last_fresh_wall = time.monotonic()  # pause a further age before reporting again
                    publish()
                    continue
                last_site_time = tele.site_time
                if release_pending and opts.apply:  # the device answers again: finish the hand-back first
                    ok = await release_now(adapter)
                    audit.record("run", "end" if ok else "error",
                                 detail=f"hand back after the device returned: {'done' if ok else 'still not confirmed'}")
                    log(f"device back: every point {'released' if ok else 'NOT yet released'}")
                status["site_time"] = tele.site_time.isoformat()
                status["telemetry"] = tele.values
                status["points"] = {p.name: tele.values[p.variable] for p in pm.writable}
                status["points_commanded"] = dict(tele.commanded)  # as read: Coolshift's command in force
                # the drift gate: the plant model at the step's measured load and setpoints against the measurement
                chk = ctl.gate.check(model_at_measured(site, model, tele, data), tele.values)
                if chk is not None:
                    status["drift"] = {"cooling_error_frac": chk.cooling_error_frac, "inlet_error_c": chk.inlet_error_c,
                                       "over": chk.over, "consecutive": chk.consecutive,
                                       "limit_steps": lim.drift_steps}
                    if chk.tripped:
                        status["retrain_model"] = True
                        msg = (f"drift gate: the plant model missed cooling power by {chk.cooling_error_frac:.0%} and "
                               f"inlets by {chk.inlet_error_c:.2f} K for {chk.consecutive} steps in a row (limits "
                               f"{lim.drift_cooling_frac:.0%}, {lim.drift_inlet_c:g} K): retrain the model")
                        audit.record("run", "refused", detail=f"RETRAIN: {msg}")
                        await hand_back(adapter, msg)
                        res.exit_code, res.reason = 3, msg
                        publish()
                        break
                # intensity: never planned on when older than its limit
                live_fc = None
                if intensity is not None:
                    try:
                        snap = fresh_forecast(intensity, tele.site_time, lim.intensity_max_age_s)
                        live_fc = snap.forecast
                        status["intensity"] = {"source": intensity.name, "issued_at": snap.issued_at.isoformat(),
                                               "age_s": snap.age_s(tele.site_time)}
                    except StaleIntensity as exc:
                        await hand_back(adapter, f"intensity stale: {exc}")
                        publish()
                        continue
                gco2 = (float(live_fc[CARBON_GCO2_PER_KWH].iloc[0]) if live_fc is not None and len(live_fc)
                        else float(data[CARBON_GCO2_PER_KWH].asof(tele.site_time)))
                if FACILITY_KW in tele.values:
                    status["kgco2_so_far"] += tele.values[FACILITY_KW] * site.step_h * gco2 / 1000.0
                saved_kw = cooling_saving_kw(site, model, tele, data)
                if saved_kw is not None:  # the cooling side, estimated by the plant model
                    status["kgco2_saved_so_far"] += saved_kw * site.step_h * gco2 / 1000.0
                if tele.site_time > data.index[-1]:
                    res.reason = f"the site data ends at {data.index[-1].isoformat()}: nothing to plan on"
                    break
                sp = await keepalive(adapter, asyncio.to_thread(ctl.plan, tele, live_fc))
                status["plan"] = {"status": sp.status, "fallback": sp.fallback, "planned": sp.planned,
                                  "targets": sp.targets, "levers": sp.levers, "predicted": sp.predicted,
                                  "solve_s": sp.solve_s}
                status["backlog_units"] = sp.backlog_units
                if opts.apply and paused is None:
                    if pm.heartbeat is not None:
                        await beat(adapter)
                    writable = {p.variable for p in pm.writable}
                    wanted = {**sp.levers, **sp.targets}  # levers mapped as points (the twin's batch release) too
                    plan = _one_step_plan(site, {k: v for k, v in wanted.items() if k in writable}, interval_s,
                                          f"{run_id}-{res.steps}", spath.parent)
                    out = await push(pm, site, plan, audit, apply=True, adapter=adapter)
                    if out.status in ("applied", "nothing_to_do"):
                        res.steps_written += out.status == "applied"
                        commanding = True
                        status["state"], status["reason"] = "running", None
                    elif out.status == "refused":
                        status["refusals_total"] = status.get("refusals_total", 0) + 1
                        status["refusals"] = (status["refusals"] + [{"site_time": tele.site_time.isoformat(),
                                                                     "reasons": out.messages}])[-20:]
                        await hand_back(adapter, "refused by the safety layer: " + "; ".join(out.messages))
                    else:
                        await hand_back(adapter, "push failed: " + "; ".join(out.messages))
                    if actuators is not None and commanding:
                        act = await keepalive(adapter, asyncio.to_thread(
                            actuators.step, tele.site_time, {k: v for k, v in sp.levers.items() if k in act_columns}))
                        status["actuators"] = {"ok": act.ok, "messages": act.messages[-10:], "status": act.status,
                                               "hosts_off": act.hosts_off, "hosts_on": act.hosts_on,
                                               "slurm_actions": act.slurm_actions}
                        if not act.ok:
                            await hand_back(adapter, "actuator step failed (rolled back): " + "; ".join(act.messages))
                status["loop_latency_s"] = time.monotonic() - t0
                view.add({"site_time": tele.site_time.isoformat(), "state": status["state"],
                          "targets": dict(sp.targets), "planned": dict(sp.planned),
                          "measured": dict(tele.values), "predicted": dict(sp.predicted),
                          "gco2_per_kwh": gco2, "kgco2_so_far": status["kgco2_so_far"],
                          "loop_latency_s": status["loop_latency_s"]})
                log(f"{tele.site_time.isoformat()}: {status['state']} targets "
                    + ", ".join(f"{k}={v:.2f}" for k, v in sp.targets.items())
                    + f" ({status['loop_latency_s']:.3f} s)")
                publish()
            if not res.reason:
                res.reason = why[0] if why else f"{res.steps} step(s) done"
        except Exception as exc:  # an internal error still hands back below
            audit.record("run", "error", detail=repr(exc))
            res.exit_code, res.reason = 1, f"internal error: {exc!r}"
        finally:
            if opts.apply and (commanding or status["state"] == "running"):
                await hand_back(adapter, res.reason or "stopped", state="stopped")
            elif status["state"] == "running":
                status["state"], status["reason"] = "stopped", res.reason
            audit.record("run", "end", detail=res.reason)
            publish()
    res.status = status
    return res
