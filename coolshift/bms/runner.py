"""Follow a plan through the day: write each step's setpoints when the step starts.

The plan folder is re-read at every step (the optimiser may replace it atomically),
so a stale plan is noticed. On SIGTERM, SIGINT, an internal error, the end of the
plan or a stale plan, every point is relinquished to local control before exit.
A step refused by the safety layer (for instance flagged outside the learned
model's envelope) is not written, and the points go back to local control until
a step passes the checks again. With ``--apply`` and a ``heartbeat`` in the point map,
the controller's watchdog point is written at every step and at least every
``heartbeat.write_interval_s``, so a killed run hands the plant back by itself.

With ``actuators`` (:class:`coolshift.actuators.step.ActuatorStepper`), each step's
``active_servers__<pool>`` (and, for the Slurm classes, ``release_units_per_h__<class>``)
are enacted beside the BMS points, in a worker thread; a failed actuator step (rolled back
by the actuator) ends the run like a failed push, and hosts and jobs are handed back with
the points on every exit.
"""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd


from ..config import SiteConfig
from .audit import AuditLog
from .adapters import open_adapter
from .device import DeviceError
from .heartbeat import write_heartbeat
from .plan import PlanError, read_plan
from .points import PointMap
from .push import push, release_points, utcnow
from .state import device_key

__all__ = ["RunResult", "run_plan"]


@dataclass
class RunResult:
    exit_code: int
    reason: str
    steps_written: int = 0
    released: list[tuple[str, bool, str]] = field(default_factory=list)


async def run_plan(
    pm: PointMap,
    site: SiteConfig,
    plan_dir: Path,
    audit: AuditLog,
    apply: bool = True,
    log: Callable[[str], None] = print,
    max_sleep_s: float = 60.0,
    actuators: Any = None,
) -> RunResult:
    """Run until the plan ends or a signal arrives; always relinquish when we wrote.

    Sleeps until the next step starts (at most ``max_sleep_s``, so a replaced plan
    folder is noticed), pushing each step once, in full or not at all.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    stop_reason: list[str] = []

    def on_signal(name: str) -> None:
        stop_reason.append(name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig.name)

    try:
        return await _run(pm, site, plan_dir, audit, apply, log, max_sleep_s, stop, stop_reason, actuators)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def _heartbeat(adapter, pm: PointMap, audit: AuditLog, log: Callable[[str], None]) -> None:
    """Feed the controller's watchdog; a failed write is logged, not fatal (the watchdog then hands back)."""
    try:
        await write_heartbeat(adapter, pm)
    except DeviceError as exc:
        audit.record("run", "error", detail=f"heartbeat not written: {exc}")
        log(f"heartbeat not written: {exc}")


def actuator_targets(plan_dir: Path, columns: list[str], step: pd.Timestamp) -> dict[str, float]:
    """The plan's actuator columns (``active_servers__<pool>``, ``release_units_per_h__<class>``) at ``step``."""
    plan = read_plan(plan_dir, columns)
    row = plan.frame.loc[step]
    return {c: float(row[c]) for c in columns if c in plan.frame.columns}


async def _run(pm, site, plan_dir, audit, apply, log, max_sleep_s, stop, stop_reason, actuators=None) -> RunResult:
    audit.bind_device(device_key(pm))
    audit.new_push()
    audit.record("run", "start", detail=f"run-plan {plan_dir} apply={apply}")
    result = RunResult(exit_code=0, reason="")
    last_step = None
    async with open_adapter(pm) as adapter:
        try:
            while not stop.is_set():
                now = utcnow()
                try:  # a plan none of whose columns is a mapped point is refused here too
                    plan = read_plan(plan_dir, {p.variable: p.name for p in pm.writable})
                except PlanError as exc:
                    result.exit_code, result.reason = 2, f"cannot read the plan: {exc}"
                    break
                end = plan.frame.index[-1] + plan.step
                if now >= end:
                    result.reason = f"plan ended at {end.isoformat()}"
                    break
                start = plan.frame.index[0]
                step = plan.frame.index[plan.frame.index.searchsorted(now, side="right") - 1] if now >= start else None
                if apply and pm.heartbeat is not None:
                    # before any write, so a controller whose watchdog has tripped takes the step
                    await _heartbeat(adapter, pm, audit, log)
                if step is not None and step != last_step:
                    out = await push(pm, site, plan, audit, apply=apply, now=now, adapter=adapter)
                    last_step = step
                    if out.status in ("applied", "nothing_to_do", "dry_run"):
                        result.steps_written += out.status == "applied"
                        log(f"{step.isoformat()}: {out.status} ({', '.join(out.written) or 'no writes'})")
                    elif out.status == "refused":
                        log(f"{step.isoformat()}: refused: " + "; ".join(out.messages))
                        stale = [m for m in out.messages if m.startswith("plan is stale")]
                        if stale:  # it only gets staler: stop
                            result.exit_code, result.reason = 3, stale[0]
                            break
                        if apply:  # not written: hand the points back to local control
                            await release_points(adapter, pm.writable, audit)
                    else:
                        result.exit_code, result.reason = 1, "; ".join(out.messages)
                        break
                    if actuators is not None:
                        targets = actuator_targets(plan_dir, actuators.columns(), step)
                        if targets:
                            act = await asyncio.to_thread(actuators.step, now, targets)
                            log(f"{step.isoformat()}: actuators {'ok' if act.ok else 'FAILED'}: "
                                + ("; ".join(act.messages) or "nothing to do"))
                            if not act.ok:
                                result.exit_code, result.reason = 1, "actuator step failed: " + "; ".join(act.messages)
                                break
                nxt = plan.frame.index[plan.frame.index.searchsorted(now, side="right")] if now < plan.frame.index[-1] else end
                wait_s = max(0.05, min((nxt - utcnow()).total_seconds(), max_sleep_s))
                if apply and pm.heartbeat is not None:  # wake up to keep the controller's watchdog fed
                    wait_s = min(wait_s, pm.heartbeat.write_interval_s)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=wait_s)
                except (asyncio.TimeoutError, TimeoutError):
                    pass
            if stop_reason:
                result.reason = f"stopped by {stop_reason[0]}"
        except DeviceError as exc:
            result.exit_code, result.reason = 1, f"device error: {exc}"
        except Exception as exc:  # internal error: still relinquish below
            audit.record("run", "error", detail=repr(exc))
            result.exit_code, result.reason = 1, f"internal error: {exc!r}"
        finally:
            if apply:
                log("relinquishing all points to local control")
                result.released = await release_points(adapter, pm.writable, audit)
                if not all(ok for _, ok, _ in result.released):
                    result.exit_code = result.exit_code or 1
                if actuators is not None:
                    log("handing hosts and jobs back")
                    try:
                        lines = await asyncio.to_thread(actuators.release)
                        ok = bool(actuators.released_ok)
                    except Exception as exc:  # noqa: BLE001 - reported, exit 1; `coolshift release` retries
                        lines, ok = [f"actuators NOT handed back: {exc}"], False
                    for line in lines:  # "host a-web-002 (a_web): on" -> (name, ok, detail)
                        name, _, detail = line.rpartition(": ")
                        result.released.append((name or line, ok and "NOT" not in detail, detail))
                    if not ok:
                        result.exit_code = result.exit_code or 1
            audit.record("run", "end", detail=result.reason)
    return result
