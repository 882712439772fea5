"""Host power through DMTF Redfish: follow the plan's ``active_servers__<pool>`` each step.

Split in three:

- :func:`pool_targets` and :func:`host_actions` are pure: from the plan, the hosts' power
  state and whether they carry work, which hosts to power off (``GracefulShutdown``) and
  on (``On``). Only idle hosts are powered off and never below the pool's
  ``min_active_servers``; power-ons come in rounds of at most ``max_concurrent_power_on``.
- :class:`RedfishClient` talks to the service through sushy (OpenStack's Redfish client):
  the Systems collection, each system's ``PowerState``, ``ComputerSystem.Reset``, and
  chassis power (``Power`` / ``PowerSubsystem``) as telemetry where the service has it.
- :func:`enact` and :func:`release` act, with the BMS push's contract (docs/bms.md): a dry
  run unless ``apply``; each action recorded in the hash-chained audit log
  (:class:`coolshift.bms.audit.AuditLog`) as an ``intent`` before the request leaves and
  with its result after the host reads back at the wanted state; when an action fails
  no new one starts and every host powered off in the step is powered on again
  (``restore``); :func:`release` powers on every host Coolshift switched off
  (``relinquish``), found from the audit log, so it also recovers a killed run.

Audit records: ``point`` is the Redfish system id, ``old_value``/``new_value`` the power
state (1 on, 0 off), ``device`` the service (``redfish://host:port``).
"""

from __future__ import annotations

import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import pandas as pd

from coolshift.bms.audit import AuditLog, read_audit
from coolshift.bms.device import DeviceError
from coolshift.bms.plan import Plan, PlanError, current_step, read_plan
from coolshift.config import SiteConfig

from .inventory import Credentials, Inventory, RedfishSettings, looks_like_credential

__all__ = ["ACTIVE_PREFIX", "HostState", "HostAction", "PoolDecision", "HostPlan", "PoolLimits", "TaskResult",
           "StepReport", "ReleaseReport", "RedfishError", "RedfishClient", "read_host_plan", "pool_limits",
           "pool_targets", "servers_on", "plan_hosts", "host_actions", "enact", "release", "ours_off"]

ACTIVE_PREFIX = "active_servers__"
ON, OFF = "On", "Off"
# Redfish ComputerSystem.ResetType values (DMTF DSP0268, ResetType enumeration).
RESET_OFF, RESET_ON = "GracefulShutdown", "On"
# The LP plans server counts as continuous values; a host is on or off, so counts are rounded
# up (more hosts on is the safe side) after this tolerance for solver round-off.
COUNT_TOL = 1e-6


class RedfishError(DeviceError):
    """The Redfish service did not answer or refused a request (exit 1)."""


# ---------------------------------------------------------------------------- the plan
def read_host_plan(run_dir: str | Path, pools: Iterable[str]) -> Plan:
    """The plan's ``active_servers__<pool>`` columns for ``pools``; a plan that carries a
    credential-looking column (or summary key) is refused: credentials are env-only."""
    run_dir = Path(run_dir)
    csv_path, sj = run_dir / "plan.csv", run_dir / "summary.json"
    if csv_path.is_file():
        try:
            header = list(pd.read_csv(csv_path, nrows=0).columns)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise PlanError(f"{csv_path}: cannot parse CSV: {exc}") from None
        for c in header:
            if looks_like_credential(c):
                raise PlanError(f"{csv_path}: column {c!r} looks like a credential: a plan never carries "
                                "credentials (they come from the environment); the plan is refused")
        wanted = [f"{ACTIVE_PREFIX}{p}" for p in pools]
        if not any(c in header for c in wanted):
            raise PlanError(f"{csv_path}: no active_servers__<pool> column for the inventory's pools "
                            f"(expected one of {', '.join(wanted)}); nothing was done")
    if sj.is_file():
        import json

        try:
            doc = json.loads(sj.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            doc = None  # read_plan names the error
        if isinstance(doc, dict):
            for k in doc:
                if looks_like_credential(k):
                    raise PlanError(f"{sj}: key {k!r} looks like a credential: a plan never carries credentials "
                                    "(they come from the environment); the plan is refused")
    plan = read_plan(run_dir, tuple(f"{ACTIVE_PREFIX}{p}" for p in pools))
    for c in plan.frame.columns:
        if c.startswith(ACTIVE_PREFIX) and (plan.frame[c] < 0).any():
            row = int((plan.frame[c] < 0).to_numpy().argmax()) + 2
            raise PlanError(f"{csv_path}: row {row}, column {c}: a negative server count")
    return plan


# ---------------------------------------------------------------------------- pure planning
@dataclass(frozen=True)
class PoolLimits:
    """A pool's limits from the site config, and how many of its servers we control."""

    name: str
    servers: int
    min_active_servers: int
    boot_time_s: float
    controlled: int  # servers on our hosts
    servers_per_host: int = 1

    def hosts_for(self, servers: int) -> int:
        """Hosts that hold ``servers`` (rounded up to whole hosts: more on is the safe side)."""
        return -(-int(servers) // self.servers_per_host)


def pool_limits(site: SiteConfig, inventory: Inventory) -> dict[str, PoolLimits]:
    """Each inventory pool's limits; a host counts as ``servers_per_host`` servers (the last
    block of a pool as many as remain), so ``controlled`` is in servers."""
    out = {}
    for p in site.server_pools:
        hs = inventory.pools.get(p.name)
        if hs:
            k = inventory.per_host(p.name)
            out[p.name] = PoolLimits(p.name, p.servers, p.min_active_servers, p.boot_time_s,
                                     min(len(hs) * k, p.servers), k)
    return out


def _count(x: float) -> int:
    return max(0, math.ceil(float(x) - COUNT_TOL))


def pool_targets(plan: Plan, now: pd.Timestamp, limits: Mapping[str, PoolLimits], on_now: Mapping[str, int],
                 max_concurrent_power_on: int) -> tuple[dict[str, int], dict[str, str]]:
    """Hosts to have on now per pool (of the controlled ones), and why.

    The plan's count for the current step, rounded up; raised to a later step's count when
    that step is close enough that its power-ons must start now. The LP counts a server
    switched on as booting for ``boot_time_s`` at the start of the step it is switched on in
    (``pool_capacity`` in optimizer/constraints.py), so one round of power-ons belongs at the
    step's start; when the rise needs ``r`` rounds of ``max_concurrent_power_on``, the first
    starts ``(r - 1) * boot_time_s`` earlier so the last starts with the step. Servers not in
    the inventory count as on (not ours to switch); the floor counts only ours, so it holds
    even if the others are off.
    """
    idx = plan.frame.index
    start = current_step(plan, now)
    targets, why = {}, {}
    for name, lim in limits.items():
        col = f"{ACTIVE_PREFIX}{name}"
        if col not in plan.frame.columns or start is None:
            continue
        others = lim.servers - lim.controlled
        floor = min(lim.min_active_servers, lim.controlled)
        want = _count(plan.frame.at[start, col])
        reason = f"plan {want} at {start.strftime('%H:%M')}"
        for t in idx[idx > start]:
            need = _count(plan.frame.at[t, col])
            rise = need - others - on_now.get(name, 0)
            if need <= want or rise <= 0:
                continue
            rounds = math.ceil(lim.hosts_for(rise) / max_concurrent_power_on)
            lead_s = (rounds - 1) * lim.boot_time_s
            if (t - now).total_seconds() <= lead_s:
                want, reason = need, f"plan {need} at {t.strftime('%H:%M')}, {rounds} rounds of power-ons start now"
        ours = min(max(want - others, floor), lim.controlled)
        if others:
            reason += f"; {others} servers outside the inventory counted on"
        if ours == floor and want - others < floor:
            reason += f"; held at the minimum {lim.min_active_servers}"
        targets[name], why[name] = ours, reason
    return targets, why


@dataclass(frozen=True)
class HostState:
    host: str
    pool: str
    power: str  # the system's PowerState: On, Off, PoweringOn, PoweringOff, Paused, Unknown
    busy: bool


@dataclass(frozen=True)
class HostAction:
    host: str
    pool: str
    action: str  # "off" (GracefulShutdown) or "on"
    round: int  # power-ons: which round of max_concurrent_power_on; 0 for power-offs


@dataclass(frozen=True)
class PoolDecision:
    pool: str
    hosts: int
    on: int
    off: int
    other: int
    busy_on: int
    floor: int
    target: int
    to_off: int
    to_on: int
    note: str = ""


@dataclass(frozen=True)
class HostPlan:
    decisions: list[PoolDecision]
    actions: list[HostAction]


def servers_on(hosts: Sequence[HostState], limits: Mapping[str, PoolLimits]) -> dict[str, int]:
    """Servers on (or booting) per pool: hosts reading On or PoweringOn times ``servers_per_host``."""
    return {p: min(lim.servers_per_host * sum(1 for h in hosts if h.pool == p and h.power in (ON, "PoweringOn")),
                   lim.controlled) for p, lim in limits.items()}


def plan_hosts(hosts: Sequence[HostState], targets_servers: Mapping[str, int], limits: Mapping[str, PoolLimits],
               max_concurrent_power_on: int) -> HostPlan:
    """:func:`host_actions` for targets in servers: rounded up to whole hosts, the floor
    (``min_active_servers``, of the servers we control) too."""
    targets = {p: limits[p].hosts_for(t) for p, t in targets_servers.items()}
    floors = {p: limits[p].hosts_for(min(lim.min_active_servers, lim.controlled)) for p, lim in limits.items()}
    return host_actions(hosts, targets, floors, max_concurrent_power_on)


def host_actions(hosts: Sequence[HostState], targets: Mapping[str, int], floors: Mapping[str, int],
                 max_concurrent_power_on: int) -> HostPlan:
    """Which hosts to power off and on so each pool in ``targets`` has that many hosts on.

    Power-offs take only hosts that read ``On`` and carry no work, and never leave fewer
    than ``floors[pool]`` hosts reading ``On``; a host in transition (``PoweringOn``,
    ``PoweringOff``, anything else) is left alone and counted on while powering on.
    Power-ons take hosts that read ``Off``, in rounds of ``max_concurrent_power_on``.
    Hosts are taken in id order, so the same inputs give the same actions.
    """
    by_pool: dict[str, list[HostState]] = {}
    for h in hosts:
        by_pool.setdefault(h.pool, []).append(h)
    decisions, actions = [], []
    n_on_actions = 0
    for pool in sorted(targets):
        hs = sorted(by_pool.get(pool, []), key=lambda h: h.host)
        on = [h for h in hs if h.power == ON]
        off = [h for h in hs if h.power == OFF]
        booting = [h for h in hs if h.power == "PoweringOn"]
        other = len(hs) - len(on) - len(off)
        floor = min(int(floors.get(pool, 0)), len(hs))
        target = max(int(targets[pool]), floor)
        live = len(on) + len(booting)
        busy_on = sum(h.busy for h in on)
        to_off: list[HostState] = []
        to_on: list[HostState] = []
        note = ""
        if live > target:
            idle = [h for h in on if not h.busy]
            k = min(live - target, len(idle), max(len(on) - floor, 0))
            to_off = idle[len(idle) - k:] if k > 0 else []  # the highest ids first: the low ones stay the pool's core
            if k < live - target:
                note = (f"{live - target - k} more would go off but "
                        + ("they carry work" if len(idle) < live - target else "the pool minimum holds them"))
        elif live < target:
            to_on = off[: target - live]
            if len(to_on) < target - live:
                note = f"{target - live - len(to_on)} more wanted on but no host reads Off"
        for h in to_off:
            actions.append(HostAction(h.host, pool, "off", 0))
        for h in to_on:
            actions.append(HostAction(h.host, pool, "on", n_on_actions // max_concurrent_power_on))
            n_on_actions += 1
        decisions.append(PoolDecision(pool, len(hs), len(on), len(off), other, busy_on, floor, target,
                                      len(to_off), len(to_on), note))
    return HostPlan(decisions, actions)


# ---------------------------------------------------------------------------- the service
class RedfishClient:
    """The Redfish service through sushy: one sushy session per worker thread.

    Credentials come from :func:`.inventory.redfish_credentials` (the environment); a
    session token is sent as ``X-Auth-Token`` (DSP0266 section 13.3.4).
    """

    def __init__(self, settings: RedfishSettings, credentials: Credentials):
        self.settings = settings
        self._creds = credentials
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(max_workers=settings.max_parallel_requests, thread_name_prefix="redfish")
        self._reset_target: dict[str, str] = {}  # host -> its ComputerSystem.Reset target URI
        self.requests = 0

    def _root(self):
        root = getattr(self._local, "root", None)
        if root is None:
            import sushy
            from sushy import auth as sushy_auth

            c = self._creds
            if c.token:
                class _Token(sushy_auth.AuthBase):
                    def _do_authenticate(self_inner):
                        self_inner._connector.set_http_session_auth(c.token)

                    def can_refresh_session(self_inner):
                        return False

                a = _Token()
            else:
                a = sushy_auth.BasicAuth(c.user, c.password)
            try:
                root = sushy.Sushy(self.settings.url + "/redfish/v1/", auth=a, verify=self.settings.verify_tls,
                                   read_timeout=self.settings.timeout_s, connect_timeout=self.settings.timeout_s,
                                   server_side_retries=2, server_side_retries_delay=0.5)
            except Exception as exc:  # noqa: BLE001 - sushy and requests raise many types
                raise RedfishError(f"{self.settings.url}: Redfish service not usable: {_why(exc)}") from None
            self._local.root = root
        return root

    def _conn(self):
        """This thread's sushy Connector (auth, server-side retries, HTTP errors as exceptions)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            from sushy.connector import Connector

            conn = Connector(self.settings.url, verify=self.settings.verify_tls, server_side_retries=2,
                             server_side_retries_delay=0.5, default_request_timeout=self.settings.timeout_s,
                             connect_timeout=self.settings.timeout_s)
            if self._creds.token:
                conn.set_http_session_auth(self._creds.token)
            else:
                conn.set_http_basic_auth(self._creds.user, self._creds.password)
            self._local.conn = conn
        return conn

    def _call(self, what: str, fn: Callable):
        try:
            self.requests += 1
            return fn(self._root())
        except RedfishError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise RedfishError(f"{self.settings.url}: {what}: {_why(exc)}") from None

    def _get(self, what: str, path: str) -> dict:
        try:
            self.requests += 1
            doc = self._conn().get(path).json()
        except Exception as exc:  # noqa: BLE001 - sushy and requests raise many types
            raise RedfishError(f"{self.settings.url}: {what}: {_why(exc)}") from None
        if not isinstance(doc, dict):
            raise RedfishError(f"{self.settings.url}: {what}: not a Redfish resource")
        return doc

    def map(self, fn: Callable, items: Sequence) -> list:
        return list(self._pool.map(fn, items))

    def system_ids(self) -> list[str]:
        """Ids of the Systems collection's members (one request, through sushy's root service)."""
        paths = self._call("Systems collection", lambda r: r.get_system_collection().members_identities)
        return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in paths)

    def _system(self, host: str) -> dict:
        doc = self._get(f"system {host}", _path(host))
        target = ((doc.get("Actions") or {}).get("#ComputerSystem.Reset") or {}).get("target")
        if target:
            self._reset_target[host] = target
        return doc

    def system_names(self, ids: Sequence[str]) -> dict[str, str]:
        return dict(zip(ids, self.map(lambda i: str(self._system(i).get("Name", i)), ids)))

    def power_state(self, host: str) -> str:
        """The system's ``PowerState`` (DSP0268 ComputerSystem), ``Unknown`` when it has none."""
        return str(self._system(host).get("PowerState") or "Unknown")

    def power_states(self, hosts: Sequence[str]) -> dict[str, str]:
        return dict(zip(hosts, self.map(self.power_state, hosts)))

    def reset(self, host: str, reset_type: str) -> None:
        """POST ``ComputerSystem.Reset`` to the target the system resource advertises."""
        target = self._reset_target.get(host)
        if target is None:
            self._system(host)
            target = self._reset_target.get(host)
            if target is None:
                raise RedfishError(f"{self.settings.url}: system {host}: no #ComputerSystem.Reset action")
        try:
            self.requests += 1
            self._conn().post(target, data={"ResetType": reset_type})
        except Exception as exc:  # noqa: BLE001
            raise RedfishError(f"{self.settings.url}: system {host}: {reset_type}: {_why(exc)}") from None

    def chassis_power_w(self) -> tuple[float | None, int]:
        """Sum of ``PowerConsumedWatts`` over the chassis that report it (Power or
        PowerSubsystem/PowerSupplies), and how many did; (None, 0) when none does."""
        try:
            root = self._root()
            conn = root._conn  # sushy's connector: raw JSON of resources its classes do not model
            ids = root.get_chassis_collection().members_identities
        except Exception:  # noqa: BLE001 - telemetry is optional
            return None, 0
        total, n = 0.0, 0
        for cid in ids:
            try:
                doc = conn.get(cid).json()
                w = None
                if "Power" in doc:
                    pw = conn.get(doc["Power"]["@odata.id"]).json()
                    ctrl = pw.get("PowerControl") or []
                    if ctrl and ctrl[0].get("PowerConsumedWatts") is not None:
                        w = float(ctrl[0]["PowerConsumedWatts"])
                elif "PowerSubsystem" in doc:
                    ps = conn.get(doc["PowerSubsystem"]["@odata.id"]).json()
                    sup = conn.get(ps["PowerSupplies"]["@odata.id"]).json() if "PowerSupplies" in ps else {}
                    vals = []
                    for m in sup.get("Members", []):
                        d = conn.get(m["@odata.id"]).json()
                        v = (d.get("Metrics") or {}).get("InputPowerWatts") or d.get("PowerInputWatts")
                        if v is not None:
                            vals.append(float(v.get("Reading", v) if isinstance(v, dict) else v))
                    w = sum(vals) if vals else None
                if w is not None:
                    total, n = total + w, n + 1
            except Exception:  # noqa: BLE001
                continue
        return (total if n else None), n

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _path(host: str) -> str:
    return f"/redfish/v1/Systems/{host}"


def _why(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:300]}"


# ---------------------------------------------------------------------------- acting
@dataclass
class _Task:
    host: str
    pool: str
    want: str  # ON or OFF
    action: str  # audit action: write, restore, relinquish
    detail: str
    state: str = "todo"  # todo, waiting (requested), settling, watch, done, failed
    requested_at: float | None = None
    deadline: float = math.inf
    watch_until: float | None = None
    settle_until: float | None = None
    next_poll: float = 0.0
    polls: int = 0
    result: str = ""
    intent_id: int | None = None

    @property
    def value(self) -> float:
        return 1.0 if self.want == ON else 0.0


@dataclass(frozen=True)
class TaskResult:
    host: str
    pool: str
    want: str
    action: str
    ok: bool
    detail: str


@dataclass
class _Runner:
    """Runs power tasks: intents in order, requests in parallel, read-back by polling."""

    client: RedfishClient
    log: AuditLog | None
    settings: RedfishSettings
    max_on_seen: int = 0
    stop_on_failure: bool = True

    def run(self, tasks: list[_Task], deadline: float | None = None) -> bool:
        s = self.settings
        failed = False
        last_start = -math.inf
        while True:
            now = time.monotonic()
            if deadline is not None and now > deadline:
                for t in tasks:
                    if t.state not in ("done", "failed"):
                        self._finish(t, False, "timeout", "gave up: the command's time budget ran out")
                return False
            # 1. start what the caps allow
            batch: list[_Task] = []
            if not (failed and self.stop_on_failure):
                on_live = sum(1 for t in tasks if t.want == ON and t.state in ("waiting", "settling"))
                live = sum(1 for t in tasks if t.state in ("waiting", "settling"))
                for t in tasks:
                    if t.state != "todo":
                        continue
                    if s.action_interval_s and (batch or now - last_start < s.action_interval_s):
                        break
                    if len(batch) >= s.max_parallel_requests:
                        break
                    if t.want == ON:
                        if on_live >= s.max_concurrent_power_on:
                            continue
                        on_live += 1
                    live += 1
                    batch.append(t)
            if batch:
                for t in batch:  # intent first, committed before the request leaves
                    if self.log is not None:
                        t.intent_id = self.log.record(t.action, "intent", point=t.host, old_value=1.0 - t.value,
                                                      new_value=t.value, detail=t.detail)
                    t.requested_at = time.monotonic()
                    t.state, t.polls = "waiting", 0
                    t.next_poll = t.requested_at + s.poll_interval_s
                self.max_on_seen = max(self.max_on_seen, sum(1 for t in tasks if t.want == ON
                                                             and t.state in ("waiting", "settling")))
                errs = self.client.map(self._request, batch)
                last_start = time.monotonic()
                for t, err in zip(batch, errs):
                    if err is not None:
                        self._finish(t, False, "error", err)
                        failed = True
                    else:
                        t.deadline = t.requested_at + (s.power_on_timeout_s if t.want == ON else s.power_off_timeout_s)
            # 2. read back what is in flight
            now = time.monotonic()
            watch = [t for t in tasks if t.state in ("waiting", "watch") and now >= t.next_poll]
            # a bounded read-back per pass keeps the loop quick to start the next paced power-on;
            # power-ons first (each holds a slot), then the longest waiting
            watch = sorted(watch, key=lambda t: (t.want != ON, t.next_poll))[: 2 * s.max_parallel_requests]
            if watch:
                states = self.client.map(self._read, [t.host for t in watch])
                now = time.monotonic()
                for t, st in zip(watch, states):
                    # read back at poll_interval_s, backing off to 4x it (2x for power-ons, which
                    # hold a paced slot): a power change takes seconds to minutes, and every read
                    # is a request to a small BMC
                    t.polls += 1
                    t.next_poll = now + s.poll_interval_s * min(2.0 if t.want == ON else 4.0, 1.5 ** t.polls)
                    if isinstance(st, Exception):
                        if now > t.deadline:
                            self._finish(t, False, "error", str(st))
                            failed = True
                        continue
                    if t.state == "watch":  # ensure-on: a shutdown may still be pending
                        if st == OFF:
                            t.state = "todo"
                        elif st == ON and now >= (t.watch_until or 0):
                            self._finish(t, True, "ok", "on (no request needed)")
                        continue
                    if st == t.want:
                        if t.want == ON and s.power_on_settle_s > 0:
                            t.state, t.settle_until = "settling", now + s.power_on_settle_s
                        else:
                            self._finish(t, True, "ok", f"reads {st}")
                    elif now > t.deadline:
                        self._finish(t, False, "timeout", f"still {st} after "
                                     f"{(s.power_on_timeout_s if t.want == ON else s.power_off_timeout_s):g} s")
                        failed = True
            for t in tasks:
                if t.state == "settling" and time.monotonic() >= (t.settle_until or 0):
                    self._finish(t, True, "ok", f"reads On, settled {s.power_on_settle_s:g} s")
            open_ = [t for t in tasks if t.state not in ("done", "failed")]
            if not open_:
                return not failed
            if failed and self.stop_on_failure and all(t.state == "todo" for t in open_):
                return False
            startable = any(t.state == "todo" for t in open_) and not (failed and self.stop_on_failure)
            time.sleep(0.02 if startable and not s.action_interval_s else min(0.1, s.poll_interval_s))

    def _request(self, t: _Task) -> str | None:
        try:
            self.client.reset(t.host, RESET_ON if t.want == ON else RESET_OFF)
            return None
        except RedfishError as exc:
            return str(exc)

    def _read(self, host: str):
        try:
            return self.client.power_state(host)
        except RedfishError as exc:
            return exc

    def _finish(self, t: _Task, ok: bool, result: str, detail: str) -> None:
        t.state, t.result = ("done" if ok else "failed"), detail
        if self.log is not None:
            self.log.record(t.action, result, point=t.host, old_value=1.0 - t.value, new_value=t.value, detail=detail)
            if ok:
                self.log.settle(t.host)


@dataclass
class StepReport:
    step: pd.Timestamp | None
    run_id: str
    plan: HostPlan | None
    reasons: dict[str, str] = field(default_factory=dict)
    status: str = "dry_run"  # dry_run, refused, nothing, applied, rolled_back, rollback_failed
    messages: list[str] = field(default_factory=list)
    results: list[TaskResult] = field(default_factory=list)
    restored: list[TaskResult] = field(default_factory=list)
    chassis_power_w: float | None = None
    chassis_reporting: int = 0
    max_concurrent_power_on: int = 0
    enact_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status in ("dry_run", "nothing", "applied")


def read_hosts(client: RedfishClient, inventory: Inventory, busy: Callable[[str], bool]) -> list[HostState]:
    """Every inventory host's power state (in parallel) and whether it carries work."""
    pool_of = inventory.pool_of()
    hosts = inventory.hosts
    states = client.power_states(hosts)
    return [HostState(h, pool_of[h], states[h], bool(busy(h))) for h in hosts]


def _check_plan(plan: Plan, site: SiteConfig, now: pd.Timestamp, max_age_h: float) -> list[str]:
    why = []
    if plan.site != site.name:
        why.append(f"the plan is for site {plan.site!r}, the actuator map's site is {site.name!r}")
    age_h = (now - plan.created_at).total_seconds() / 3600.0
    if age_h > max_age_h:
        why.append(f"the plan is {age_h:.1f} h old; the actuator map allows {max_age_h:g} h (safety.max_plan_age_h)")
    if current_step(plan, now) is None:
        why.append(f"no step of the plan contains now ({now.isoformat(timespec='seconds')}; the plan covers "
                   f"{plan.frame.index[0].isoformat()} .. {(plan.frame.index[-1] + plan.step).isoformat()})")
    return why


def enact(client: RedfishClient, site: SiteConfig, inventory: Inventory, plan: Plan, log: AuditLog | None, *,
          busy: Callable[[str], bool], apply: bool = False, now: pd.Timestamp | None = None,
          max_plan_age_h: float = 26.0, telemetry: bool = True) -> StepReport:
    """Power hosts off and on for the plan's current step (a dry run unless ``apply``)."""
    if apply and log is None:
        raise ValueError("enact(apply=True) needs an audit log: every action is recorded before it happens")
    t0 = time.monotonic()
    s = client.settings
    now = pd.Timestamp.now(tz="UTC") if now is None else now
    rep = StepReport(step=current_step(plan, now), run_id=plan.run_id, plan=None)
    refusals = _check_plan(plan, site, now, max_plan_age_h)
    hosts = read_hosts(client, inventory, busy)
    if telemetry:
        rep.chassis_power_w, rep.chassis_reporting = client.chassis_power_w()
    limits = pool_limits(site, inventory)
    on_now = servers_on(hosts, limits)
    if not refusals:
        targets, rep.reasons = pool_targets(plan, now, limits, on_now, s.max_concurrent_power_on)
        rep.plan = plan_hosts(hosts, targets, limits, s.max_concurrent_power_on)
    if log is not None:
        counts = ", ".join(f"{p} {on_now[p]}/{limits[p].controlled} on" for p in limits)
        log.new_push(plan.run_id)
        log.bind_device(s.device)
        log.record("read", "ok", detail=f"power state of {len(hosts)} hosts: {counts}")
    if refusals:
        rep.status, rep.messages = "refused", refusals
        if log is not None:
            for m in refusals:
                log.record("refuse", "refused", detail=m)
        return rep
    actions = rep.plan.actions
    step_txt = rep.step.isoformat() if rep.step is not None else "-"
    if not apply:
        rep.status = "dry_run"
        if log is not None:
            log.record("push", "dry_run", detail=f"hosts step {step_txt}: {sum(a.action == 'off' for a in actions)} "
                                                 f"off, {sum(a.action == 'on' for a in actions)} on (not done)")
        rep.enact_s = time.monotonic() - t0
        return rep
    if not actions:
        rep.status = "nothing"
        if log is not None:
            log.record("push", "end", detail=f"hosts step {step_txt}: every pool at its target")
        rep.enact_s = time.monotonic() - t0
        return rep
    log.record("push", "start", detail=f"hosts step {step_txt}: {len(actions)} action(s)")
    tasks = [_Task(a.host, a.pool, ON if a.action == "on" else OFF, "write",
                   f"{RESET_ON if a.action == 'on' else RESET_OFF}; pool {a.pool}; step {step_txt}")
             for a in sorted(actions, key=lambda a: (a.action != "on", a.round, a.host))]
    # power-ons first: capacity comes before capacity goes, and the paced power-ons are the
    # long pole; power-offs fill the request slots the power-on cap leaves free
    runner = _Runner(client, log, s)
    ok = runner.run(tasks)
    rep.results = [TaskResult(t.host, t.pool, t.want, t.action, t.state == "done", t.result) for t in tasks
                   if t.state in ("done", "failed")]
    rep.max_concurrent_power_on = runner.max_on_seen
    if ok:
        rep.status = "applied"
        log.record("push", "end", detail=f"hosts step {step_txt}: {len(tasks)} action(s) done")
    else:
        # roll back: every host this step asked to power off is powered on again
        started = [t for t in tasks if t.want == OFF and t.state != "todo"]
        rep.messages = [f"{t.host}: {t.result}" for t in tasks if t.state == "failed"]
        back = _ensure_on(runner, [(t.host, t.pool, t.requested_at if t.state != "done" else None) for t in started],
                          "restore", f"roll-back of step {step_txt}")
        rep.restored = back
        rep.max_concurrent_power_on = max(rep.max_concurrent_power_on, runner.max_on_seen)
        bad = [r for r in back if not r.ok]
        rep.status = "rollback_failed" if bad else "rolled_back"
        rep.messages += [f"{r.host}: NOT powered back on: {r.detail} (check it at its BMC; `coolshift hosts-release` "
                         "retries)" for r in bad]
        log.record("push", "end", detail=f"hosts step {step_txt}: {rep.status}")
    rep.enact_s = time.monotonic() - t0
    return rep


def _ensure_on(runner: _Runner, hosts: Sequence[tuple[str, str, float | None]], action: str,
               why: str) -> list[TaskResult]:
    """Power each host on; one whose shutdown request may still be pending (its request time
    given, monotonic clock) is watched until ``power_off_timeout_s`` after it and powered on
    if it goes off."""
    s = runner.settings
    if not hosts:
        return []
    states = runner.client.map(runner._read, [h for h, _, _ in hosts])
    tasks = []
    for (h, pool, asked), st in zip(hosts, states):
        t = _Task(h, pool, ON, action, f"{RESET_ON}; {why}")
        if st == OFF or isinstance(st, Exception):
            t.state = "todo" if st == OFF else "watch"
            t.watch_until = time.monotonic() + s.power_off_timeout_s
        elif asked is not None and time.monotonic() < asked + s.power_off_timeout_s:
            t.state, t.watch_until = "watch", asked + s.power_off_timeout_s
        else:
            t.state = "watch"
            t.watch_until = 0.0  # reads on and nothing pending: done at the first read-back
        t.deadline = (t.watch_until or time.monotonic()) + s.power_on_timeout_s
        tasks.append(t)
    runner.stop_on_failure = False  # restoring: every host gets its chance
    budget = max(t.deadline for t in tasks) + s.poll_interval_s * 2
    runner.run(tasks, deadline=budget)
    return [TaskResult(t.host, t.pool, t.want, t.action, t.state == "done", t.result) for t in tasks]


def ours_off(audit_path: Path, device: str) -> dict[str, pd.Timestamp]:
    """Hosts on ``device`` that Coolshift asked to power off (confirmed or not) and has not
    since seen back on, from the audit log, with when it last asked."""
    if not Path(audit_path).is_file():
        return {}
    df = read_audit(audit_path)
    df = df[(df["device"] == device) & df["action"].isin(["write", "restore", "relinquish"]) & df["point"].notna()]
    out: dict[str, pd.Timestamp] = {}
    for r in df.itertuples(index=False):
        if r.new_value == 0.0 and r.result == "intent":
            out[r.point] = pd.Timestamp(r.time_utc)
        elif r.new_value == 1.0 and r.result == "ok":
            out.pop(r.point, None)
    return out


@dataclass
class ReleaseReport:
    results: list[TaskResult]
    max_concurrent_power_on: int

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)


def release(client: RedfishClient, log: AuditLog, pool_of: Mapping[str, str] | None = None) -> ReleaseReport:
    """Power on every host Coolshift switched off on this service (the operator's exit).

    A host whose shutdown was asked but never confirmed (a killed run) is watched until
    ``power_off_timeout_s`` after the request and powered on if it goes off.
    """
    s = client.settings
    log.bind_device(s.device)
    log.new_push()
    mine = ours_off(log.path, s.device)
    log.record("push", "start", detail=f"release: {len(mine)} host(s) switched off by Coolshift")
    now_wall, now_mono = pd.Timestamp.now(tz="UTC"), time.monotonic()
    hosts = [(h, (pool_of or {}).get(h, "-"), now_mono - (now_wall - t).total_seconds()) for h, t in sorted(mine.items())]
    runner = _Runner(client, log, s)
    res = _ensure_on(runner, hosts, "relinquish", "release")
    log.record("push", "end", detail=f"release: {sum(r.ok for r in res)}/{len(res)} host(s) on")
    return ReleaseReport(res, runner.max_on_seen)


def chunk_names(names: Sequence[str], n: int = 8) -> str:
    """``a, b, c and 12 more`` for a table cell."""
    names = list(names)
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")

