"""Push one plan step to the BMS: read, check, diff (dry run), write, verify, roll back.

The order is fixed: the plan-level checks (site, freshness, current step, envelope
flag), then every mapped point is read and checked; if anything is refused nothing
is written. With ``apply`` each write is preceded by a committed audit record, then
read back; a mismatch, error or timeout stops the push and every point written in
it (including the one that failed, whose state is unknown) is put back: rewritten to
its previous value at our priority, or relinquished if we did not command it before.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pandas as pd

from ..config import SiteConfig
from .audit import AuditLog
from .device import Adapter, DeviceError, DeviceTimeout, PointState, open_adapter, values_match
from .plan import Plan, current_step
from .points import Point, PointMap
from .safety import check_write, envelope_flag, plan_freshness

__all__ = [
    "PointDiff",
    "StepDiff",
    "PushOutcome",
    "plan_checks",
    "read_diff",
    "apply_diff",
    "restore_points",
    "release_points",
    "push",
    "release",
    "utcnow",
]


def utcnow() -> pd.Timestamp:
    return pd.Timestamp(datetime.now(timezone.utc))


@dataclass
class PointDiff:
    """One mapped point in one step: what it is, what the plan wants, and whether we may."""

    point: Point
    target: float | None
    state: PointState | None = None
    reasons: list[str] = field(default_factory=list)

    @property
    def action(self) -> str:
        if self.reasons:
            return "refused"
        if self.target is None:
            # a point we still command from an earlier plan goes back to local control
            if self.state is not None and self.state.commanded is not None:
                return "release"
            return "not in plan"
        if self.reasons:
            return "refused"
        if self.state is not None and values_match(self.state.commanded, self.target_encoded):
            return "unchanged"
        return "write"

    target_encoded: float | None = None
    unreadable: bool = False  # the device did not give us its current state


@dataclass
class StepDiff:
    step: pd.Timestamp | None
    run_id: str
    plan_reasons: list[str]
    points: list[PointDiff]

    @property
    def reasons(self) -> list[str]:
        return self.plan_reasons + [r for p in self.points for r in p.reasons]

    @property
    def refused(self) -> bool:
        return bool(self.reasons)

    @property
    def unreadable(self) -> bool:
        """Some point could not be read: a device problem rather than a plan problem."""
        return any(p.unreadable for p in self.points)

    @property
    def to_write(self) -> list[PointDiff]:
        """Points this push changes: writes, and releases of points the plan no longer carries."""
        return [p for p in self.points if p.action in ("write", "release")]


@dataclass
class PushOutcome:
    """``status``: dry_run, refused, applied, nothing_to_do, rolled_back, rollback_failed."""

    diff: StepDiff
    status: str
    messages: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status in ("dry_run", "applied", "nothing_to_do")


def _site_matches(plan_site: str, site: SiteConfig) -> bool:
    from pathlib import PurePath

    return plan_site == site.name or PurePath(plan_site).stem == site.name


def plan_checks(plan: Plan, pm: PointMap, site: SiteConfig, now: pd.Timestamp) -> tuple[pd.Timestamp | None, list[str]]:
    """Plan-level refusals: wrong site, stale, no step covering now, envelope flag."""
    reasons = []
    if not _site_matches(plan.site, site):
        reasons.append(f"plan {plan.run_id} is for site {plan.site!r}, the point map {pm.name} is for {site.name!r}")
    stale = plan_freshness(plan.created_at, now, pm.safety.max_plan_age_h)
    if stale:
        reasons.append(stale)
    step = current_step(plan, now)
    if step is None:
        first, last = plan.frame.index[0], plan.frame.index[-1] + plan.step
        reasons.append(
            f"no plan step covers now ({now.isoformat(timespec='seconds')}); the plan runs "
            f"{first.isoformat()} to {last.isoformat()}: only the current step may be written"
        )
    else:
        flag = envelope_flag(plan.frame.loc[step], step)
        if flag:
            reasons.append(flag)
    return step, reasons


async def read_diff(
    adapter: Adapter, pm: PointMap, site: SiteConfig, plan: Plan, now: pd.Timestamp, audit: AuditLog
) -> StepDiff:
    """Read every writable point and check the current step's target for it."""
    step, plan_reasons = plan_checks(plan, pm, site, now)
    row = plan.frame.loc[step] if step is not None else None
    diffs = []
    silent = None  # after one timeout, do not wait again for every other point
    for p in pm.writable:
        target = None if row is None or p.variable not in row.index else float(row[p.variable])
        d = PointDiff(point=p, target=target)
        if silent is not None:
            d.reasons.append(f"{p.name}: not read: the device did not answer for {silent}")
            d.unreadable = True
            diffs.append(d)
            continue
        try:
            d.state = await adapter.read_state(p)
            audit.record("read", "ok", p.name, old_value=d.state.value, new_value=d.state.commanded,
                         priority=adapter.priority(p), detail=d.state.detail)
        except DeviceError as exc:
            audit.record("read", "timeout" if isinstance(exc, DeviceTimeout) else "error", p.name, detail=str(exc))
            d.reasons.append(f"{p.name}: cannot read the current value: {exc}")
            d.unreadable = True
            if isinstance(exc, DeviceTimeout):
                silent = p.name
            diffs.append(d)
            continue
        if target is not None and d.state.overridden_by is not None:
            d.reasons.append(
                f"{p.name}: held at priority {d.state.overridden_by}, above ours "
                f"({adapter.priority(p)}): an operator or another program has control"
            )
        elif target is not None:
            try:
                d.target_encoded = adapter.encoded(p, target)
            except (ValueError, DeviceError) as exc:
                d.reasons.append(f"{p.name}: {target:g} cannot be encoded: {exc}")
                diffs.append(d)
                continue
            if not values_match(d.state.commanded, d.target_encoded):
                d.reasons += check_write(
                    p, target, d.state.value, site, pm.safety, audit.last_write_time(p.name), now.to_pydatetime()
                )
        diffs.append(d)
    return StepDiff(step=step, run_id=plan.run_id, plan_reasons=plan_reasons, points=diffs)


async def _verify(adapter: Adapter, p: Point, expect: float | None) -> tuple[bool, str, PointState | None]:
    """Read back; ``expect`` None means: we must no longer command the point."""
    st = await adapter.read_state(p)
    if expect is None:
        return st.commanded is None, st.detail, st
    ok = values_match(st.commanded, expect) and values_match(st.value, expect)
    return ok, st.detail, st


async def restore_points(
    adapter: Adapter, pm: PointMap, written: list[tuple[Point, PointState]], audit: AuditLog
) -> list[str]:
    """Put points back as they were (newest first), retrying until ``restore_timeout_s``.

    Returns the points that could not be restored (empty: all restored).
    """
    failed = []
    deadline = time.monotonic() + pm.safety.restore_timeout_s
    for p, prev in reversed(written):
        action = "relinquish" if prev.commanded is None else "restore"
        expect = None if prev.commanded is None else adapter.encoded(p, prev.commanded)
        done = False
        attempt = 0
        while not done:
            attempt += 1
            audit.record(action, "intent", p.name, new_value=expect, priority=adapter.priority(p),
                         detail=f"roll back, attempt {attempt}")
            try:
                if prev.commanded is None:
                    await adapter.release(p)
                else:
                    await adapter.write(p, prev.commanded)
                ok, detail, st = await _verify(adapter, p, expect)
                audit.record(action, "ok" if ok else "mismatch", p.name,
                             old_value=None if st is None else st.value, new_value=expect,
                             priority=adapter.priority(p), detail=detail)
                done = ok
            except DeviceError as exc:
                audit.record(action, "timeout" if isinstance(exc, DeviceTimeout) else "error", p.name,
                             new_value=expect, priority=adapter.priority(p), detail=str(exc))
            if not done:
                if time.monotonic() >= deadline:
                    failed.append(p.name)
                    break
                await asyncio.sleep(0.2)
    return failed


async def apply_diff(adapter: Adapter, pm: PointMap, diff: StepDiff, audit: AuditLog) -> PushOutcome:
    """Write, verify, and on the first failure roll back everything written in this push."""
    if diff.refused:
        for r in diff.reasons:
            audit.record("refuse", "refused", detail=r)
        return PushOutcome(diff, "refused", messages=diff.reasons)
    todo = diff.to_write
    if not todo:
        return PushOutcome(diff, "nothing_to_do", messages=["every point already holds the plan's value"])
    written: list[tuple[Point, PointState]] = []
    step = f"step {diff.step.isoformat() if diff.step is not None else ''}"
    for d in todo:
        p, prev = d.point, d.state
        assert prev is not None
        releasing = d.target is None
        kind = "relinquish" if releasing else "write"
        audit.record(kind, "intent", p.name, old_value=prev.value, new_value=d.target, priority=adapter.priority(p),
                     detail=f"{step}: not in the plan" if releasing else step)
        written.append((p, prev))  # from here on its state is uncertain
        failure = None
        try:
            if releasing:
                await adapter.release(p)
            else:
                await adapter.write(p, d.target)  # type: ignore[arg-type]
            audit.record(kind, "ok", p.name, old_value=prev.value, new_value=d.target, priority=adapter.priority(p))
            if pm.safety.verify_settle_s:
                await asyncio.sleep(pm.safety.verify_settle_s)
            ok, detail, st = await _verify(adapter, p, None if releasing else d.target_encoded)
            audit.record("verify", "ok" if ok else "mismatch", p.name,
                         old_value=None if st is None else st.value, new_value=d.target,
                         priority=adapter.priority(p), detail=detail)
            if not ok:
                want = "local control" if releasing else f"{d.target:g}"
                failure = f"{p.name}: read back {st.value if st else '?'} ({detail}), expected {want}"
        except DeviceError as exc:
            audit.record(kind, "timeout" if isinstance(exc, DeviceTimeout) else "error", p.name,
                         old_value=prev.value, new_value=d.target, priority=adapter.priority(p), detail=str(exc))
            failure = str(exc)
        if failure:
            msgs = [f"push stopped: {failure}"]
            failed = await restore_points(adapter, pm, written, audit)
            names = [q.name for q, _ in written]
            if failed:
                msgs.append(f"COULD NOT RESTORE {failed}: check these points at the BMS now")
                return PushOutcome(diff, "rollback_failed", msgs, names)
            msgs.append(f"restored {names} to their previous values or local control")
            return PushOutcome(diff, "rolled_back", msgs, names)
    return PushOutcome(diff, "applied", [f"changed {len(written)} point(s)"], [p.name for p, _ in written])


async def release_points(adapter: Adapter, points: list[Point], audit: AuditLog) -> list[tuple[str, bool, str]]:
    """Hand every point back to local control (relinquish at our priority / auto mode), verified."""
    results = []
    for p in points:
        audit.record("relinquish", "intent", p.name, priority=adapter.priority(p), detail="release")
        try:
            await adapter.release(p)
            ok, detail, st = await _verify(adapter, p, None)
            audit.record("relinquish", "ok" if ok else "mismatch", p.name,
                         old_value=None if st is None else st.value, priority=adapter.priority(p), detail=detail)
            results.append((p.name, ok, detail if ok else f"still commanded after release ({detail})"))
        except DeviceError as exc:
            audit.record("relinquish", "timeout" if isinstance(exc, DeviceTimeout) else "error", p.name,
                         priority=adapter.priority(p), detail=str(exc))
            results.append((p.name, False, str(exc)))
    return results


async def push(
    pm: PointMap, site: SiteConfig, plan: Plan, audit: AuditLog, apply: bool = False,
    now: pd.Timestamp | None = None, adapter: Adapter | None = None,
) -> PushOutcome:
    """Dry run (default) or apply the plan's current step; opens the adapter unless given one."""
    now = utcnow() if now is None else now
    audit.new_push(plan.run_id)
    audit.record("push", "start", detail=f"plan {plan.path} step at {now.isoformat()} apply={apply}")

    async def go(ad: Adapter) -> PushOutcome:
        diff = await read_diff(ad, pm, site, plan, now, audit)
        if not apply:
            return PushOutcome(diff, "dry_run", messages=diff.reasons)
        return await apply_diff(ad, pm, diff, audit)

    try:
        if adapter is not None:
            out = await go(adapter)
        else:
            async with open_adapter(pm) as ad:
                out = await go(ad)
    except DeviceError as exc:
        audit.record("push", "error", detail=str(exc))
        raise
    audit.record("push", "end", detail=out.status)
    return out


async def release(pm: PointMap, audit: AuditLog, adapter: Adapter | None = None) -> list[tuple[str, bool, str]]:
    audit.new_push()
    audit.record("push", "start", detail="release all points")
    if adapter is not None:
        res = await release_points(adapter, pm.writable, audit)
    else:
        async with open_adapter(pm) as ad:
            res = await release_points(ad, pm.writable, audit)
    audit.record("push", "end", detail="released" if all(ok for _, ok, _ in res) else "release incomplete")
    return res
