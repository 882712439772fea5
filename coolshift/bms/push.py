"""Push one plan step to the BMS: read, check, diff (dry run), write, verify, roll back.

The order is fixed: the plan must carry at least one mapped point (else
:class:`~.plan.PlanError`, exit 2), the plan-level checks (site, freshness, current
step, envelope flag), then every mapped point is read and checked; if anything is
refused nothing is written. With ``apply`` each write is preceded by a committed audit
record, then read back; a mismatch, error or timeout stops the push and every point
written in it is put back: rewritten to its previous value at our priority, or
relinquished if we did not command it before. The writes confirmed before the failure
go first (newest first); the point whose write failed, whose state is unknown, goes
last. Each point gets its share of the restore budget and the whole roll-back ends
within ``safety.restore_timeout_s``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pandas as pd

from ..config import SiteConfig
from .audit import AuditLog
from .adapters import open_adapter
from .device import Adapter, DeviceError, DeviceTimeout, PointState, values_match
from .plan import Plan, PlanError, current_step, unmapped_message
from .points import Point, PointMap
from .safety import check_write, envelope_flag, plan_freshness
from .state import device_key

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
    "check_plan_maps",
]

# Roll-back pacing. The first retry comes after 0.2 s and the wait doubles up to 2 s
# (capped exponential back-off, as in AWS Architecture Blog, "Exponential Backoff And
# Jitter", 2015): a device that is restarting is caught within a fraction of a second,
# a dead one is not hammered. An attempt is not started with less than 0.05 s left
# (about 8 BACnet write+read round trips on loopback, docs/bms.md), and 0.25 s of the
# budget is kept for the last audit records (each an fsynced commit, about 7 ms;
# docs/bms.md "What the safety layer costs").
RETRY_FIRST_S, RETRY_MAX_S = 0.2, 2.0
MIN_ATTEMPT_S = 0.05
RESERVE_S = 0.25


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


def check_plan_maps(plan: Plan, pm: PointMap) -> None:
    """A plan none of whose setpoint columns is a mapped writable point is bad input.

    Pushed, it would find no target for any point and hand them all back to local control.
    """
    carried = {p.variable: p.name for p in pm.writable}
    if not any(c in carried for c in plan.setpoint_columns):
        raise PlanError(unmapped_message(f"{plan.path / 'plan.csv'}", plan.setpoint_columns, carried))


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
    return _holds(st, expect), st.detail, st


def _holds(st: PointState, expect: float | None) -> bool:
    """The point is as ``expect`` says: not commanded by us (None), or commanded at that value."""
    if expect is None:
        return st.commanded is None
    return values_match(st.commanded, expect) and values_match(st.value, expect)


async def _restore_one(adapter: Adapter, p: Point, prev: PointState, audit: AuditLog, share_end: float,
                       uncertain: bool) -> tuple[bool, int]:
    """Put one point back before ``share_end`` (monotonic); returns (restored, attempts).

    For the point whose write failed (``uncertain``) the device is read first: if the
    write never landed there is nothing to undo and nothing is written.
    """
    action = "relinquish" if prev.commanded is None else "restore"
    expect = None if prev.commanded is None else adapter.encoded(p, prev.commanded)
    prio = adapter.priority(p)
    attempt, wait, checked = 0, RETRY_FIRST_S, not uncertain
    while share_end - time.monotonic() >= MIN_ATTEMPT_S:
        attempt += 1
        try:
            if not checked:
                st = await adapter.read_state(p, deadline=share_end)
                checked = True
                if _holds(st, expect):
                    audit.record(action, "ok", p.name, old_value=st.value, new_value=expect, priority=prio,
                                 detail=f"roll back: already as before, the failed write did not land ({st.detail})")
                    audit.settle(p.name)
                    return True, attempt
            audit.record(action, "intent", p.name, new_value=expect, priority=prio, detail=f"roll back, attempt {attempt}")
            if prev.commanded is None:
                await adapter.release(p, deadline=share_end)
            else:
                await adapter.write(p, prev.commanded, deadline=share_end)
            st = await adapter.read_state(p, deadline=share_end)
            ok = _holds(st, expect)
            audit.record(action, "ok" if ok else "mismatch", p.name, old_value=st.value, new_value=expect,
                         priority=prio, detail=st.detail)
            if ok:
                audit.settle(p.name)
                return True, attempt
        except DeviceError as exc:
            audit.record(action, "timeout" if isinstance(exc, DeviceTimeout) else "error", p.name,
                         new_value=expect, priority=prio, detail=str(exc))
        pause = min(wait, share_end - time.monotonic() - MIN_ATTEMPT_S)
        if pause > 0:
            await asyncio.sleep(pause)
        wait = min(2 * wait, RETRY_MAX_S)
    return False, attempt


async def restore_points(
    adapter: Adapter, pm: PointMap, written: list[tuple[Point, PointState]], audit: AuditLog,
    uncertain: tuple[Point, PointState] | None = None,
) -> list[str]:
    """Put points back as they were within ``safety.restore_timeout_s``, never past it.

    ``written`` are the writes confirmed (read back) before the failure, restored newest
    first; ``uncertain`` is the point whose write failed, tried last. Each point gets an
    equal share of what is left of the budget when its turn comes, so a dead device cannot
    make one point use up the time of the others. Returns the points not restored.
    """
    budget = pm.safety.restore_timeout_s
    deadline = time.monotonic() + max(budget - RESERVE_S, min(budget, MIN_ATTEMPT_S))
    order = [(p, prev, False) for p, prev in reversed(written)]
    if uncertain is not None:
        order.append((*uncertain, True))
    failed = []
    for i, (p, prev, unsure) in enumerate(order):
        now = time.monotonic()
        share_end = now + max(0.0, deadline - now) / (len(order) - i)
        done, attempts = await _restore_one(adapter, p, prev, audit, share_end, unsure)
        if not done:
            failed.append(p.name)
            audit.record("relinquish" if prev.commanded is None else "restore", "timeout", p.name,
                         priority=adapter.priority(p),
                         detail=f"roll back gave up after {attempts} attempt(s): its share of the "
                                f"{budget:g} s restore budget ran out")
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
    confirmed: list[tuple[Point, PointState]] = []  # written and read back in this push
    step = f"step {diff.step.isoformat() if diff.step is not None else ''}"
    for d in todo:
        p, prev = d.point, d.state
        assert prev is not None
        releasing = d.target is None
        kind = "relinquish" if releasing else "write"
        audit.record(kind, "intent", p.name, old_value=prev.value, new_value=d.target, priority=adapter.priority(p),
                     detail=f"{step}: not in the plan" if releasing else step)
        failure = None  # from here on the point's state is uncertain until read back
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
            failed = await restore_points(adapter, pm, confirmed, audit, uncertain=(p, prev))
            names = [q.name for q, _ in confirmed] + [p.name]
            if failed:
                msgs.append(f"COULD NOT RESTORE {failed} within the {pm.safety.restore_timeout_s:g} s restore "
                            "budget: check these points at the BMS now (`coolshift release` hands them back)")
                return PushOutcome(diff, "rollback_failed", msgs, names)
            msgs.append(f"restored {names} to their previous values or local control")
            return PushOutcome(diff, "rolled_back", msgs, names)
        confirmed.append((p, prev))
        audit.settle(p.name)
    return PushOutcome(diff, "applied", [f"changed {len(confirmed)} point(s)"], [p.name for p, _ in confirmed])


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
            if ok:
                audit.settle(p.name)
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
    """Dry run (default) or apply the plan's current step; opens the adapter unless given one.

    Raises :class:`PlanError` (bad input, nothing read or written) when no setpoint
    column of the plan maps to a writable point.
    """
    check_plan_maps(plan, pm)
    now = utcnow() if now is None else now
    audit.bind_device(device_key(pm))
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
    audit.bind_device(device_key(pm))
    audit.new_push()
    audit.record("push", "start", detail="release all points")
    if adapter is not None:
        res = await release_points(adapter, pm.writable, audit)
    else:
        async with open_adapter(pm) as ad:
            res = await release_points(ad, pm.writable, audit)
    audit.record("push", "end", detail="released" if all(ok for _, ok, _ in res) else "release incomplete")
    return res
