"""Batch work and nodes through Slurm: hold and release pending jobs, power idle nodes down and up.

The plan's batch lever (``release_units_per_h__<class>``, how much deferrable work to start
in each step) and its consolidation lever (``active_servers__<pool>``) enacted on a Slurm
cluster through its own command-line tools (``squeue``/``sinfo`` with ``--json``, else
``scontrol -o``; ``scontrol hold|release|update``), each run as a subprocess with a timeout.

Three parts, so the decisions can be tested without a cluster:

- :func:`load_slurm_map` reads the Slurm map (YAML): which ``slurm.conf`` (hence which
  controller and which MUNGE socket) and which tools, which partitions carry each workload
  class and each server pool. Hosts and credentials come from the map (``${VAR:-default}``
  from the environment), never from a plan.
- :func:`plan_actions` is pure: from the plan's current step, the queue and the nodes it
  decides which pending jobs to hold or release and which nodes to power down or up.
  Deadlines beat the plan: a job that would miss its deadline if held one more step is
  released whatever the plan says.
- :class:`SlurmActuator` enacts the decisions with the BMS push's contract: every action
  logged (intent, then result) in the hash-chained audit log of :mod:`coolshift.bms.audit`
  before it happens, read back after; a failure rolls the step back (jobs it held are
  released, nodes it powered down are powered up) and :meth:`SlurmActuator.release_all`
  hands everything back (every hold Coolshift placed lifted, every node it powered down
  resumed), also after a ``kill -9``, from the audit log.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping

import pandas as pd
import yaml

from coolshift.bms.audit import AuditLog, read_audit
from coolshift.bms.plan import Plan, PlanError, current_step, read_plan
from coolshift.bms.points import PointMapError, expand_env
from coolshift.config import ConfigError

__all__ = ["SlurmMapError", "SlurmError", "SlurmMap", "ClassSpec", "PoolSpec", "Job", "Node", "Action",
           "StepDecision", "load_slurm_map", "slurm_map_from_section", "SECTION_KEYS", "read_slurm_plan", "plan_actions", "job_class", "job_deadline",
           "SlurmCli", "SlurmActuator", "HELD_REASONS", "REASON_PREFIX", "parse_scontrol_records"]

HELD_REASONS = ("JobHeldUser", "JobHeldAdmin")
REASON_PREFIX = "coolshift"  # node Reason we set when powering a node down: marks it as ours
_TAG = re.compile(r"(?:^|[\s,;])coolshift(?:$|[\s,;:=])", re.I)  # a job submitted for Coolshift to schedule
_KV = re.compile(r"(?:^|[\s,;])(class|deadline)=(\S+)", re.I)


class SlurmMapError(ConfigError):
    """A Slurm map or plan that cannot be used; the message names the file and the key."""


class SlurmError(RuntimeError):
    """A Slurm tool that failed, timed out or answered something unreadable (exit 1)."""


# ---------------------------------------------------------------- the map
@dataclass(frozen=True)
class ClassSpec:
    """A workload class of the plan and the Slurm partitions whose jobs belong to it."""

    name: str
    partitions: tuple[str, ...]
    units_per_cpu_hour: float = 1.0  # plan units one CPU-hour of a job stands for
    default_deadline_h: float = 24.0  # deadline = submit time + this, when the job names none
    default_runtime_min: float = 60.0  # a job without a time limit is taken to run this long


@dataclass(frozen=True)
class PoolSpec:
    """A server pool of the plan and the Slurm partitions whose nodes serve it."""

    name: str
    partitions: tuple[str, ...]
    servers_per_node: float = 1.0  # plan servers one Slurm node stands for
    min_nodes: int = 1  # never fewer nodes up (powered, not drained by us) than this


@dataclass(frozen=True)
class SlurmMap:
    """What the Slurm actuator may touch and how to reach it (``coolshift jobs --slurm MAP``)."""

    name: str
    path: Path
    cluster: str
    conf: Path
    bin_dir: Path | None
    timeout_s: float
    audit_db: Path
    classes: tuple[ClassSpec, ...]
    pools: tuple[PoolSpec, ...]
    site: str | None = None
    max_plan_age_h: float = 26.0
    deadline_margin_min: float = 5.0
    resume_lead_min: float = 0.0  # power nodes up this long before the plan needs them (boot time)
    release_wait_s: float = 60.0  # jobs-release waits this long for a node still powering down

    @property
    def device(self) -> str:
        """The audit log's device key for this cluster."""
        return f"slurm://{self.cluster}"

    @property
    def plan_columns(self) -> tuple[str, ...]:
        return tuple([f"release_units_per_h__{c.name}" for c in self.classes]
                     + [f"active_servers__{p.name}" for p in self.pools])


_TOP = {"name", "site", "audit_db", "slurm", "classes", "pools", "max_plan_age_h", "deadline_margin_min",
        "resume_lead_min", "release_wait_s"}
_SLURM = {"cluster", "conf", "bin_dir", "timeout_s"}
_CLASS = {"partitions", "units_per_cpu_hour", "default_deadline_h", "default_runtime_min"}
_POOL = {"partitions", "servers_per_node", "min_nodes"}


def _num(raw: Mapping, key: str, where: str, default: float, minimum: float = 0.0, integer: bool = False) -> float:
    v = raw.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)) or float(v) < minimum:
        raise SlurmMapError(f"{where}.{key}: expected a number >= {minimum}, got {v!r}")
    if integer and float(v) != int(v):
        raise SlurmMapError(f"{where}.{key}: expected a whole number, got {v!r}")
    return int(v) if integer else float(v)


def _unknown(raw: Mapping, allowed: set[str], where: str) -> None:
    extra = sorted(set(raw) - allowed)
    if extra:
        raise SlurmMapError(f"{where}: unknown key(s) {', '.join(map(str, extra))} (allowed: {', '.join(sorted(allowed))})")


def _partitions(raw: Mapping, where: str) -> tuple[str, ...]:
    v = raw.get("partitions")
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not v or not all(isinstance(x, str) and x.strip() for x in v):
        raise SlurmMapError(f"{where}.partitions: expected a list of Slurm partition names, got {v!r}")
    return tuple(x.strip() for x in v)


def _env(text: str, where: str, environ: Mapping[str, str] | None) -> str:
    try:
        return expand_env(text, dict(environ) if environ is not None else None)
    except PointMapError as exc:
        raise SlurmMapError(f"{where}: {exc}") from None


def load_slurm_map(path: str | Path, environ: Mapping[str, str] | None = None) -> SlurmMap:
    """Read and validate a Slurm map; every error names the file and the key (exit 2).

    ``slurm.conf``, ``slurm.bin_dir`` and ``audit_db`` may use ``${VAR:-default}``; relative
    paths are relative to the map's folder.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SlurmMapError(f"{path}: file not found") from None
    except (OSError, UnicodeError) as exc:
        raise SlurmMapError(f"{path}: cannot read it ({exc})") from None
    except yaml.YAMLError as exc:
        raise SlurmMapError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise SlurmMapError(f"{path}: expected a mapping at the top level")
    _unknown(raw, _TOP, str(path))
    s = raw.get("slurm")
    if not isinstance(s, dict):
        raise SlurmMapError(f"{path}: slurm: expected a mapping with cluster and conf")
    _unknown(s, _SLURM, f"{path}: slurm")
    name = str(raw.get("name", path.stem))
    audit = raw.get("audit_db", f"../../runs/actuators/{name}_slurm_audit.sqlite")
    site = raw.get("site")
    return _build(path, raw, s, "", name=name, site=None if site is None else str(site), audit=audit,
                  max_plan_age_h=_num(raw, "max_plan_age_h", str(path), 26.0, minimum=0.0), environ=environ)


# The ``slurm:`` section of an actuator map (docs/actuators.md): the Slurm map's fields in one
# mapping; name, site and the plan age come from the actuator map, audit_db defaults to its own.
SECTION_KEYS = _SLURM | {"classes", "pools", "audit_db", "deadline_margin_min", "resume_lead_min", "release_wait_s"}


def slurm_map_from_section(path: Path, section: object, *, name: str, audit_db: Path, max_plan_age_h: float,
                           environ: Mapping[str, str] | None = None) -> SlurmMap:
    """The Slurm map of an actuator map's ``slurm:`` section (errors name ``slurm.<key>``)."""
    path = Path(path)
    if not isinstance(section, dict):
        raise SlurmMapError(f"{path}: slurm: expected a mapping with cluster, conf and classes")
    _unknown(section, SECTION_KEYS, f"{path}: slurm")
    return _build(path, section, section, "slurm.", name=name, site=None, audit=section.get("audit_db", str(audit_db)),
                  max_plan_age_h=max_plan_age_h, environ=environ)


def _build(path: Path, raw: Mapping, s: Mapping, sec: str, *, name: str, site: str | None, audit: object,
           max_plan_age_h: float, environ: Mapping[str, str] | None) -> SlurmMap:
    """Validate the fields: ``raw`` holds classes, pools and timings, ``s`` the connection; ``sec``
    prefixes the keys that live in ``raw`` (``""`` for a Slurm map, ``"slurm."`` for a section)."""
    base = path.parent.resolve()

    def rel(p: str) -> Path:
        q = Path(p).expanduser()
        return q if q.is_absolute() else (base / q)

    cluster = s.get("cluster")
    if not isinstance(cluster, str) or not cluster.strip():
        raise SlurmMapError(f"{path}: slurm.cluster: expected the cluster's ClusterName")
    conf = s.get("conf", "${SLURM_CONF:-/etc/slurm/slurm.conf}")
    if not isinstance(conf, str):
        raise SlurmMapError(f"{path}: slurm.conf: expected a path to slurm.conf")
    conf_p = rel(_env(conf, f"{path}: slurm.conf", environ))
    bin_dir = s.get("bin_dir")
    if bin_dir is not None and not isinstance(bin_dir, str):
        raise SlurmMapError(f"{path}: slurm.bin_dir: expected a folder holding squeue, sinfo and scontrol")
    bin_p = rel(_env(bin_dir, f"{path}: slurm.bin_dir", environ)) if bin_dir else None
    timeout = _num(s, "timeout_s", f"{path}: slurm", 15.0, minimum=0.5)
    if not isinstance(audit, str):
        raise SlurmMapError(f"{path}: {sec}audit_db: expected a path")
    audit_p = rel(_env(audit, f"{path}: {sec}audit_db", environ))

    classes = []
    craw = raw.get("classes")
    if not isinstance(craw, dict) or not craw:
        raise SlurmMapError(f"{path}: {sec}classes: expected a mapping of workload class -> {{partitions: [...]}}")
    for cname, c in craw.items():
        where = f"{path}: {sec}classes.{cname}"
        if not isinstance(c, dict):
            raise SlurmMapError(f"{where}: expected a mapping")
        _unknown(c, _CLASS, where)
        classes.append(ClassSpec(str(cname), _partitions(c, where),
                                 _num(c, "units_per_cpu_hour", where, 1.0, minimum=1e-9),
                                 _num(c, "default_deadline_h", where, 24.0, minimum=0.0),
                                 _num(c, "default_runtime_min", where, 60.0, minimum=0.0)))
    seen: dict[str, str] = {}
    for c in classes:
        for p in c.partitions:
            if p in seen:
                raise SlurmMapError(f"{path}: {sec}classes.{c.name}.partitions: {p!r} already belongs to class {seen[p]}")
            seen[p] = c.name
    pools = []
    praw = raw.get("pools", {}) or {}
    if not isinstance(praw, dict):
        raise SlurmMapError(f"{path}: {sec}pools: expected a mapping of server pool -> {{partitions: [...]}}")
    for pname, p in praw.items():
        where = f"{path}: {sec}pools.{pname}"
        if not isinstance(p, dict):
            raise SlurmMapError(f"{where}: expected a mapping")
        _unknown(p, _POOL, where)
        pools.append(PoolSpec(str(pname), _partitions(p, where), _num(p, "servers_per_node", where, 1.0, minimum=1e-9),
                              _num(p, "min_nodes", where, 1, minimum=0, integer=True)))
    if not conf_p.is_file():
        raise SlurmMapError(f"{path}: slurm.conf: {conf_p} not found (the cluster's slurm.conf: it names the "
                            "controller and the MUNGE socket)")
    where = f"{path}: slurm" if sec else str(path)
    return SlurmMap(
        name=name, path=path, cluster=cluster.strip(), conf=conf_p, bin_dir=bin_p,
        timeout_s=timeout, audit_db=audit_p, classes=tuple(classes), pools=tuple(pools), site=site,
        max_plan_age_h=max_plan_age_h,
        deadline_margin_min=_num(raw, "deadline_margin_min", where, 5.0),
        resume_lead_min=_num(raw, "resume_lead_min", where, 0.0),
        release_wait_s=_num(raw, "release_wait_s", where, 60.0),
    )


def read_slurm_plan(run_dir: str | Path, smap: SlurmMap) -> Plan:
    """The plan's batch-release and active-server columns the map names (exit 2 if one is missing).

    Only these numeric columns are read: nothing else in the plan folder (no host, no
    configuration file, no credential) reaches the Slurm tools.
    """
    csv = Path(run_dir) / "plan.csv"
    try:
        header = pd.read_csv(csv, nrows=0).columns if csv.is_file() else []
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise SlurmMapError(f"{csv}: cannot parse CSV: {exc}") from None
    missing = [c for c in smap.plan_columns if len(header) and c not in header]
    if missing:
        raise SlurmMapError(f"{csv}: no column {', '.join(missing)} (the Slurm map {smap.path} names classes "
                            f"{', '.join(c.name for c in smap.classes)} and pools "
                            f"{', '.join(p.name for p in smap.pools) or '(none)'}; plan columns: "
                            f"{', '.join(c for c in header if c.startswith(('release_units', 'active_servers'))) or 'none'})")
    try:
        plan = read_plan(run_dir, variables=smap.plan_columns)
    except PlanError as exc:
        raise SlurmMapError(str(exc)) from None
    for c in smap.plan_columns:
        if (plan.frame[c] < 0).any():
            row = int((plan.frame[c].to_numpy() < 0).argmax()) + 2
            raise SlurmMapError(f"{csv}: row {row}, column {c}: negative")
    return plan


# ---------------------------------------------------------------- queue and node state
def _epoch(v: object) -> pd.Timestamp | None:
    v = _plain(v)
    if v is None or v == 0:
        return None
    return pd.Timestamp(int(v), unit="s", tz="UTC")


def _plain(v: object) -> object:
    """A Slurm JSON number (plain, or ``{set, infinite, number}`` in newer data parsers)."""
    if isinstance(v, dict):
        if not v.get("set", True) or v.get("infinite"):
            return None
        return v.get("number")
    return v


@dataclass(frozen=True)
class Job:
    """A job in the queue, as far as the planner needs it."""

    job_id: int
    partition: str
    state: str  # PENDING, RUNNING, ...
    reason: str = ""
    priority: int = 1
    comment: str = ""
    deadline: pd.Timestamp | None = None  # Slurm's --deadline
    submit: pd.Timestamp | None = None
    time_limit_min: float | None = None  # None: unlimited
    cpus: int = 1
    nodes: int = 1
    name: str = ""

    @property
    def pending(self) -> bool:
        return self.state == "PENDING"

    @property
    def held(self) -> bool:
        return self.pending and (self.reason in HELD_REASONS or self.priority == 0)

    @property
    def tagged(self) -> bool:
        """Submitted for Coolshift to schedule (``--comment "coolshift ..."``)."""
        return bool(_TAG.search(self.comment))


@dataclass(frozen=True)
class Node:
    name: str
    state: str  # idle, allocated, mixed, down, ...
    flags: frozenset[str] = frozenset()
    reason: str = ""
    partitions: tuple[str, ...] = ()
    alloc_cpus: int = 0

    @property
    def ours(self) -> bool:
        return self.reason.lower().startswith(REASON_PREFIX)

    @property
    def powering_up(self) -> bool:
        """A power-up requested (``POWER_UP``) or under way (``POWERING_UP``)."""
        return bool(self.flags & {"POWER_UP", "POWERING_UP"})

    @property
    def powered_down(self) -> bool:
        """Off, going off, or asked to go off, and not on its way back up."""
        return bool(self.flags & {"POWERED_DOWN", "POWERING_DOWN", "POWER_DOWN"}) and not self.powering_up

    @property
    def drained(self) -> bool:
        return bool(self.flags & {"DRAIN", "DRAINING", "DRAINED"}) or self.state.startswith("drain")

    @property
    def busy(self) -> bool:
        return self.alloc_cpus > 0 or self.state in ("allocated", "mixed", "completing")

    @property
    def up(self) -> bool:
        """Powered (or powering up) and not drained by us: counts as an active server."""
        return not self.powered_down and not (self.drained and self.ours)

    @property
    def idle(self) -> bool:
        """Free to power down: idle, responding, nothing on it, nobody's drain or power change."""
        return (self.state == "idle" and not self.busy and not self.drained and not self.powered_down
                and not self.powering_up
                and not (self.flags & {"NOT_RESPONDING", "COMPLETING", "RESERVED", "MAINTENANCE", "REBOOT_REQUESTED"}))


def job_class(job: Job, smap: SlurmMap) -> ClassSpec | None:
    """The job's workload class: ``class=<name>`` in its comment, else its partition's class."""
    m = {k.lower(): v for k, v in _KV.findall(job.comment)}
    if "class" in m:
        for c in smap.classes:
            if c.name == m["class"]:
                return c
    for c in smap.classes:
        if job.partition in c.partitions or any(p in c.partitions for p in job.partition.split(",")):
            return c
    return None


def job_deadline(job: Job, cls: ClassSpec, now: pd.Timestamp) -> pd.Timestamp:
    """Slurm's ``--deadline``, else ``deadline=<ISO time>`` in the comment, else submit + the class's default."""
    if job.deadline is not None:
        return job.deadline
    m = {k.lower(): v for k, v in _KV.findall(job.comment)}
    if "deadline" in m:
        try:
            t = pd.Timestamp(m["deadline"])
            return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
        except (ValueError, TypeError):
            pass  # an unreadable comment deadline: the class default applies
    return (job.submit or now) + pd.Timedelta(hours=cls.default_deadline_h)


def _runtime_h(job: Job, cls: ClassSpec) -> float:
    return (job.time_limit_min if job.time_limit_min is not None else cls.default_runtime_min) / 60.0


def job_units(job: Job, cls: ClassSpec) -> float:
    """Plan units of a job: CPUs x run time (its time limit) x the class's units per CPU-hour."""
    return job.cpus * _runtime_h(job, cls) * cls.units_per_cpu_hour


# ---------------------------------------------------------------- pure planning
@dataclass(frozen=True)
class Action:
    """One Slurm change: ``hold``/``release`` a job, ``power_down``/``power_up``/``resume`` a node."""

    kind: str
    target: str  # job id or node name
    why: str
    units: float = 0.0  # a job's plan units (see job_units)
    cls: str = ""  # a job's workload class

    @property
    def point(self) -> str:
        return f"{'job' if self.kind in ('hold', 'release') else 'node'}/{self.target}"

    @property
    def takes_control(self) -> bool:
        return self.kind in ("hold", "power_down")


@dataclass
class StepDecision:
    step: pd.Timestamp
    actions: list[Action] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def plan_actions(plan_frame: pd.DataFrame, step: pd.Timestamp, step_len: pd.Timedelta, now: pd.Timestamp,
                 jobs: Iterable[Job], nodes: Iterable[Node], smap: SlurmMap,
                 released_units: Mapping[str, float] | None = None,
                 our_holds: Iterable[int] = ()) -> StepDecision:
    """Decide this step's holds, releases and node power changes (pure: no I/O).

    Jobs: a pending job of a mapped class is Coolshift's to schedule if it is not held, or
    held by Coolshift (``our_holds``, from the audit log) or submitted held with
    ``coolshift`` in its comment. Each step the class's budget is ``release_units_per_h``
    x the step length, less what was already released in this step (``released_units``).
    First every job that would miss its deadline if held one more step is released
    (deadline - run time - margin before the next step): deadlines beat the plan. Then the
    others in deadline order while budget remains (the job that crosses the budget still
    goes, so large jobs are not starved). The rest are held.

    Nodes: per pool, the target is the plan's ``active_servers`` (the largest over the
    next ``resume_lead_min``) / ``servers_per_node``, rounded up, never below ``min_nodes``
    nor below the busy nodes plus the nodes the released and waiting jobs ask for. Extra
    idle nodes are powered down (highest names first); missing ones are resumed (nodes
    we drained first, then powered-down ones).
    """
    jobs, nodes = list(jobs), list(nodes)
    released_units = dict(released_units or {})
    ours = set(int(j) for j in our_holds)
    dec = StepDecision(step)
    step_end = step + step_len
    margin = pd.Timedelta(minutes=smap.deadline_margin_min)
    frame = plan_frame
    row = frame.loc[step]
    releasing: list[Job] = []
    for cls in smap.classes:
        col = f"release_units_per_h__{cls.name}"
        budget = float(row[col]) * step_len / pd.Timedelta(hours=1) - released_units.get(cls.name, 0.0)
        mine = [j for j in jobs if j.pending and job_class(j, smap) is cls
                and (not j.held or j.job_id in ours or j.tagged)]
        others = [j for j in jobs if j.held and job_class(j, smap) is cls and j not in mine]
        if others:
            dec.notes.append(f"{cls.name}: {len(others)} job(s) held by someone else, left alone: "
                             + ", ".join(str(j.job_id) for j in others[:10]))

        def latest_start(j: Job) -> pd.Timestamp:
            return job_deadline(j, cls, now) - pd.Timedelta(hours=_runtime_h(j, cls)) - margin

        order = sorted(mine, key=lambda j: (job_deadline(j, cls, now), j.job_id))
        go: list[tuple[Job, str]] = []
        for j in order:
            if latest_start(j) < step_end:
                go.append((j, f"deadline {job_deadline(j, cls, now):%Y-%m-%dT%H:%M}Z: must start before "
                              f"{latest_start(j):%H:%M:%S}Z (deadlines beat the plan)"))
        forced = {j.job_id for j, _ in go}
        budget -= sum(job_units(j, cls) for j, _ in go)
        for j in order:
            if j.job_id in forced:
                continue
            if budget > 1e-9:
                go.append((j, f"plan releases {float(row[col]):g} units/h of {cls.name}; "
                              f"{max(budget, 0):.3g} units left in this step"))
                budget -= job_units(j, cls)
        go_ids = {j.job_id for j, _ in go}
        for j, why in go:
            releasing.append(j)
            if j.held:
                dec.actions.append(Action("release", str(j.job_id), why, job_units(j, cls), cls.name))
        for j in order:
            if j.job_id not in go_ids and not j.held:
                dec.actions.append(Action("hold", str(j.job_id),
                                          f"the plan's {cls.name} budget for this step is used; deadline "
                                          f"{job_deadline(j, cls, now):%Y-%m-%dT%H:%M}Z allows waiting",
                                          job_units(j, cls), cls.name))
    lead_end = now + pd.Timedelta(minutes=smap.resume_lead_min)
    ahead = frame[(frame.index >= step) & (frame.index <= max(lead_end, step))]
    for pool in smap.pools:
        col = f"active_servers__{pool.name}"
        members = sorted((n for n in nodes if set(n.partitions) & set(pool.partitions)), key=lambda n: n.name)
        if not members:
            dec.notes.append(f"pool {pool.name}: no node in partitions {', '.join(pool.partitions)}")
            continue
        want = math.ceil(float(ahead[col].max()) / pool.servers_per_node - 1e-9)
        busy = sum(1 for n in members if n.busy)
        holding = {a.target for a in dec.actions if a.kind == "hold"}
        waiting = [j for j in jobs if j.pending and not j.held and str(j.job_id) not in holding
                   and j.partition in pool.partitions]
        demand = busy + sum(j.nodes for j in waiting) + sum(j.nodes for j in releasing if j.held
                                                               and j.partition in pool.partitions)
        target = min(len(members), max(want, pool.min_nodes, demand))
        up = [n for n in members if n.up]
        dec.notes.append(f"pool {pool.name}: plan {float(row[col]):g} servers -> {want} node(s); busy {busy}, "
                         f"wanted by jobs {demand}, min {pool.min_nodes}: target {target}, up {len(up)} of {len(members)}")
        if len(up) > target:
            idle = [n for n in reversed(up) if n.idle]
            for n in idle[: len(up) - target]:
                dec.actions.append(Action("power_down", n.name, f"pool {pool.name}: {len(up)} up, target {target}"))
        elif len(up) < target:
            short = target - len(up)
            drained = [n for n in members if n.ours and n.drained and not n.powered_down]
            down = [n for n in members if n.powered_down and "POWERING_DOWN" not in n.flags]
            for n in (drained + [d for d in down if d not in drained])[:short]:
                kind = "power_up" if n.powered_down else "resume"
                dec.actions.append(Action(kind, n.name, f"pool {pool.name}: {len(up)} up, target {target}"))
    return dec


# ---------------------------------------------------------------- the Slurm tools
def parse_scontrol_records(text: str) -> list[dict[str, str]]:
    """``scontrol -o show job|node`` output: one record per line, ``Key=Value`` pairs.

    A value runs to the next `` Key=`` so values with spaces (Reason, Comment) survive.
    """
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        parts = re.split(r" (?=[A-Z][A-Za-z0-9_:/]*=)", line)
        rec: dict[str, str] = {}
        for p in parts:
            k, _, v = p.partition("=")
            rec[k] = v
        out.append(rec)
    return out


def _ts_text(v: str | None) -> pd.Timestamp | None:
    if not v or v in ("N/A", "None", "Unknown", "(null)"):
        return None
    try:
        return pd.Timestamp(v).tz_localize("UTC")  # scontrol prints the controller's local time; UTC here
    except (ValueError, TypeError):
        return None


def _limit_text(v: str | None) -> float | None:
    """Slurm's time limit text ``[days-]hours:minutes:seconds`` (or ``UNLIMITED``) in minutes."""
    if not v or v in ("UNLIMITED", "Partition_Limit", "NONE"):
        return None
    days, _, hms = v.rpartition("-")
    parts = [int(x) for x in hms.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    return int(days or 0) * 1440 + parts[0] * 60 + parts[1] + parts[2] / 60.0


class SlurmCli:
    """squeue, sinfo and scontrol as subprocesses with the map's ``slurm.conf`` and a timeout."""

    def __init__(self, smap: SlurmMap, runner: Callable[..., subprocess.CompletedProcess] = subprocess.run):
        self.smap = smap
        self._run = runner
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
        self.env["SLURM_CONF"] = str(smap.conf)  # the map's cluster, whatever the caller's environment says
        self._json: bool | None = None

    def tool(self, name: str) -> str:
        if self.smap.bin_dir is not None:
            p = self.smap.bin_dir / name
            if not p.is_file():
                raise SlurmMapError(f"{self.smap.path}: slurm.bin_dir: no {name} in {self.smap.bin_dir}")
            return str(p)
        found = shutil.which(name)
        if found is None:
            raise SlurmError(f"{name} not found on PATH (install slurm-client, or set slurm.bin_dir in {self.smap.path})")
        return found

    def run(self, name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [self.tool(name), *args]
        try:
            cp = self._run(cmd, capture_output=True, text=True, timeout=self.smap.timeout_s, env=self.env)
        except subprocess.TimeoutExpired:
            raise SlurmError(f"{' '.join(cmd[-len(args) - 1:])}: no answer within {self.smap.timeout_s:g} s") from None
        except OSError as exc:
            raise SlurmError(f"{cmd[0]}: cannot run it ({exc})") from None
        if check and cp.returncode != 0:
            msg = (cp.stderr or cp.stdout).strip().splitlines()
            raise SlurmError(f"{name} {' '.join(args)}: exit {cp.returncode}: {msg[-1] if msg else 'no message'}")
        return cp

    def _json_ok(self) -> bool:
        if self._json is None:
            cp = self.run("sinfo", "--json", check=False)
            self._json = cp.returncode == 0 and cp.stdout.lstrip().startswith("{")
        return self._json

    def _load(self, cp: subprocess.CompletedProcess, what: str) -> dict:
        try:
            doc = json.loads(cp.stdout)
        except json.JSONDecodeError as exc:
            raise SlurmError(f"{what} --json: not JSON ({exc})") from None
        errs = [e for e in doc.get("errors", []) if e]
        if errs:
            raise SlurmError(f"{what} --json: {errs[0]}")
        return doc

    def cluster_name(self) -> str:
        cp = self.run("scontrol", "show", "config")
        for line in cp.stdout.splitlines():
            k, _, v = line.partition("=")
            if k.strip() == "ClusterName":
                return v.strip()
        raise SlurmError("scontrol show config: no ClusterName")

    def jobs(self) -> list[Job]:
        """Pending and running jobs (completed ones are not the planner's business)."""
        if self._json_ok():
            doc = self._load(self.run("squeue", "--json"), "squeue")
            out = []
            for j in doc.get("jobs", []):
                st = j.get("job_state")
                st = st[0] if isinstance(st, list) and st else st
                out.append(Job(
                    job_id=int(j["job_id"]), partition=str(j.get("partition") or ""), state=str(st or ""),
                    reason=str(j.get("state_reason") or ""), priority=int(_plain(j.get("priority")) or 0),
                    comment=str(j.get("comment") or ""), deadline=_epoch(j.get("deadline")),
                    submit=_epoch(j.get("submit_time")),
                    time_limit_min=None if _plain(j.get("time_limit")) is None else float(_plain(j.get("time_limit"))),
                    cpus=int(_plain(j.get("cpus")) or 1), nodes=int(_plain(j.get("node_count")) or 1),
                    name=str(j.get("name") or "")))
            return [j for j in out if j.state in ("PENDING", "RUNNING", "CONFIGURING", "SUSPENDED")]
        cp = self.run("scontrol", "-o", "show", "job", check=False)
        if cp.returncode != 0 and "No jobs" in (cp.stdout + cp.stderr):
            return []
        if cp.returncode != 0:
            raise SlurmError(f"scontrol -o show job: exit {cp.returncode}: {cp.stderr.strip()}")
        out = []
        for r in parse_scontrol_records(cp.stdout):
            if "JobId" not in r:
                continue
            out.append(Job(
                job_id=int(r["JobId"]), partition=r.get("Partition", ""), state=r.get("JobState", ""),
                reason=r.get("Reason", "").removeprefix("None"), priority=int(r.get("Priority", "1") or 1),
                comment=r.get("Comment", "").replace("(null)", ""), deadline=_ts_text(r.get("Deadline")),
                submit=_ts_text(r.get("SubmitTime")), time_limit_min=_limit_text(r.get("TimeLimit")),
                cpus=int(r.get("NumCPUs", "1").split("-")[0] or 1), nodes=int(r.get("NumNodes", "1").split("-")[0] or 1),
                name=r.get("JobName", "")))
        return [j for j in out if j.state in ("PENDING", "RUNNING", "CONFIGURING", "SUSPENDED")]

    def nodes(self) -> list[Node]:
        if self._json_ok():
            doc = self._load(self.run("sinfo", "--json"), "sinfo")
            out = []
            for n in doc.get("nodes", []):
                st = n.get("state")
                st = st[0] if isinstance(st, list) and st else st
                flags = set(n.get("state_flags") or [])
                if isinstance(n.get("state"), list):
                    flags |= set(n["state"][1:])
                out.append(Node(name=str(n["name"]), state=str(st or "").lower(), flags=frozenset(flags),
                                reason=str(n.get("reason") or ""), partitions=tuple(n.get("partitions") or ()),
                                alloc_cpus=int(_plain(n.get("alloc_cpus")) or 0)))
            return out
        cp = self.run("scontrol", "-o", "show", "node")
        out = []
        for r in parse_scontrol_records(cp.stdout):
            if "NodeName" not in r:
                continue
            parts = r.get("State", "").split("+")
            out.append(Node(name=r["NodeName"], state=parts[0].rstrip("*").lower(), flags=frozenset(parts[1:]),
                            reason=r.get("Reason", "").replace("(null)", "").split(" [")[0],
                            partitions=tuple(x for x in r.get("Partitions", "").split(",") if x),
                            alloc_cpus=int(r.get("CPUAlloc", "0") or 0)))
        return out

    def act(self, a: Action) -> None:
        """Send one action (raises :class:`SlurmError` when scontrol refuses it)."""
        if a.kind == "hold":
            self.run("scontrol", "hold", a.target)
        elif a.kind == "release":
            self.run("scontrol", "release", a.target)
        elif a.kind == "power_down":
            # ASAP: drained first, so nothing is scheduled on it meanwhile and running work is never killed
            self.run("scontrol", "update", f"NodeName={a.target}", "State=POWER_DOWN_ASAP",
                     f"Reason={REASON_PREFIX}: {a.why}"[:200])
        elif a.kind == "resume":
            self.run("scontrol", "update", f"NodeName={a.target}", "State=RESUME")
        elif a.kind == "power_up":
            self.run("scontrol", "update", f"NodeName={a.target}", "State=RESUME", check=False)  # lift our drain
            self.run("scontrol", "update", f"NodeName={a.target}", "State=POWER_UP")
        else:
            raise ValueError(f"unknown Slurm action {a.kind!r}")


# ---------------------------------------------------------------- enacting, with the push's contract
_AUDIT_ACTION = {"hold": "write", "power_down": "write", "release": "relinquish", "power_up": "relinquish",
                 "resume": "relinquish"}


@dataclass
class Outcome:
    done: list[Action] = field(default_factory=list)
    skipped: list[tuple[Action, str]] = field(default_factory=list)
    failed: tuple[Action, str] | None = None
    rolled_back: list[Action] = field(default_factory=list)
    rollback_failed: list[tuple[Action, str]] = field(default_factory=list)


class SlurmActuator:
    """Reads the cluster, enacts a :class:`StepDecision`, rolls back and releases, all audited."""

    def __init__(self, smap: SlurmMap, log: AuditLog, cli: SlurmCli | None = None):
        self.smap, self.log = smap, log
        self.cli = cli or SlurmCli(smap)
        log.bind_device(smap.device)

    def check_cluster(self) -> None:
        """Refuse a map whose ``slurm.cluster`` is not the cluster its ``slurm.conf`` reaches."""
        name = self.cli.cluster_name()
        if name != self.smap.cluster:
            raise SlurmMapError(f"{self.smap.path}: slurm.cluster: the map says {self.smap.cluster!r} but "
                                f"{self.smap.conf} reaches cluster {name!r}")

    def decide(self, plan: Plan, now: pd.Timestamp) -> StepDecision:
        """This step's actions for the cluster as it is now (the plan must cover ``now``)."""
        step = current_step(plan, now)
        if step is None:
            raise ValueError("the plan has no step containing now")
        pos = plan.frame.index.get_loc(step)
        step_len = (plan.frame.index[pos + 1] - step) if pos + 1 < len(plan.frame) else plan.step
        return plan_actions(plan.frame, step, step_len, now, self.cli.jobs(), self.cli.nodes(), self.smap,
                            released_units=self.released_units(step), our_holds=self.our_holds())

    # --- what we did before, from the audit log -------------------------------------------
    def _history(self) -> pd.DataFrame:
        f = read_audit(self.log.path)
        return f[f["device"] == self.smap.device] if len(f) else f

    def our_holds(self) -> set[int]:
        """Jobs whose last hold/release intent in the log is a hold: held by us (or in flight)."""
        f = self._history()
        if f.empty:
            return set()
        f = f[(f["result"] == "intent") & f["point"].fillna("").str.startswith("job/")]
        last = f.groupby("point")["action"].last()
        return {int(p.split("/", 1)[1]) for p, a in last.items() if a == "write"}

    def our_nodes(self) -> set[str]:
        """Nodes whose last power intent in the log is a power-down."""
        f = self._history()
        if f.empty:
            return set()
        f = f[(f["result"] == "intent") & f["point"].fillna("").str.startswith("node/")]
        last = f.groupby("point")["action"].last()
        return {p.split("/", 1)[1] for p, a in last.items() if a == "write"}

    def released_units(self, step: pd.Timestamp) -> dict[str, float]:
        """Units per class already released by the plan in ``step`` (a second run in one step)."""
        f = self._history()
        out: dict[str, float] = {}
        if f.empty:
            return out
        tag = f"step {step.isoformat()}"
        f = f[(f["action"] == "relinquish") & (f["result"] == "ok") & f["point"].fillna("").str.startswith("job/")
              & f["detail"].fillna("").str.contains(tag, regex=False)]
        for d, units in zip(f["detail"], f["new_value"]):
            m = re.search(r"class ([^;\s]+)", d)
            if m and units == units:
                out[m.group(1)] = out.get(m.group(1), 0.0) + float(units)
        return out

    # --- one action, audited and read back -------------------------------------------------
    def _verify(self, a: Action) -> str | None:
        """None if the cluster shows the action took effect, else what it shows."""
        if a.kind in ("hold", "release"):
            j = next((j for j in self.cli.jobs() if str(j.job_id) == a.target), None)
            if j is None:
                return None if a.kind == "release" else "the job left the queue"
            if a.kind == "hold":
                return None if j.held else f"job {a.target} is {j.state} ({j.reason or 'no reason'}), not held"
            return None if not j.held else f"job {a.target} is still held ({j.reason})"
        n = next((n for n in self.cli.nodes() if n.name == a.target), None)
        if n is None:
            return f"node {a.target} is not in sinfo"
        if a.kind == "power_down":
            return None if (n.powered_down or n.drained) else f"node {a.target} is {n.state} {sorted(n.flags)}"
        if a.kind == "power_up":
            return None if not n.powered_down else f"node {a.target} is {n.state} {sorted(n.flags)}"
        return None if not (n.drained and n.ours) else f"node {a.target} is still drained ({n.reason})"

    def _do(self, a: Action, detail: str, audit_action: str | None = None) -> str | None:
        """Intent, send, read back, result; returns None on success, else why it failed."""
        act = audit_action or _AUDIT_ACTION[a.kind]
        self.log.record(act, "intent", point=a.point, new_value=a.units or None, detail=f"{a.kind}: {detail}")
        try:
            self.cli.act(a)
            bad = self._verify(a)
        except SlurmError as exc:
            self.log.record(act, "error", point=a.point, new_value=a.units or None, detail=f"{a.kind}: {exc}")
            return str(exc)
        if bad is not None:
            self.log.record(act, "mismatch", point=a.point, new_value=a.units or None, detail=f"{a.kind}: {bad}")
            return bad
        self.log.record(act, "ok", point=a.point, new_value=a.units or None, detail=f"{a.kind}: {detail}")
        self.log.settle(a.point)
        return None

    def enact(self, dec: StepDecision) -> Outcome:
        """Apply the decision in order; on the first failure undo what this step did and stop.

        A hold refused because the job started meanwhile is not a failure (skipped: the
        work runs, which is the safe side).
        """
        out = Outcome()
        for a in dec.actions:
            detail = f"step {dec.step.isoformat()}; class {a.cls or '-'}; {a.why}"
            err = self._do(a, detail)
            if err is None:
                out.done.append(a)
                continue
            if a.kind == "hold":
                j = next((j for j in self.cli.jobs() if str(j.job_id) == a.target), None)
                if j is None or not j.pending:
                    out.skipped.append((a, f"job {a.target} started or left the queue before the hold"))
                    self.log.settle(a.point)
                    continue
            out.failed = (a, err)
            self._rollback(out, a)
            break
        return out

    def _rollback(self, out: Outcome, failed: Action) -> None:
        """Undo what this step did, newest first, then the failed action itself (state unknown)."""
        todo = [*reversed([a for a in out.done if a.takes_control]), *([failed] if failed.takes_control else [])]
        for a in todo:
            back = Action("release" if a.kind == "hold" else "power_up", a.target, "roll-back after a failed step")
            err = self._undo(back)
            if err is None:
                out.rolled_back.append(back)
            else:
                out.rollback_failed.append((back, err))

    def _undo(self, a: Action) -> str | None:
        """Hand a job or node back, waiting for a node still powering down; audited as ``restore``."""
        if a.kind == "power_up":
            n = self._wait_node(a.target)
            if n is None:
                return f"node {a.target} is not in sinfo"
            if not n.powered_down:
                if not (n.drained and n.ours):
                    self.log.record("restore", "ok", point=a.point, detail=f"{a.kind}: nothing to undo "
                                    f"({n.state}, {'powering up' if 'POWERING_UP' in n.flags else 'up'})")
                    self.log.settle(a.point)
                    return None
                a = Action("resume", a.target, a.why)
        elif a.kind == "release":
            j = next((j for j in self.cli.jobs() if str(j.job_id) == a.target), None)
            if j is None or not j.held:
                self.log.record("restore", "ok", point=a.point, detail=f"{a.kind}: nothing to undo ("
                                + ("left the queue" if j is None else f"{j.state}, not held") + ")")
                self.log.settle(a.point)
                return None
        return self._do(a, a.why, audit_action="restore")

    def _wait_node(self, name: str) -> Node | None:
        """The node once it is no longer powering down (POWER_UP is refused meanwhile)."""
        deadline = time.monotonic() + self.smap.release_wait_s
        while True:
            n = next((n for n in self.cli.nodes() if n.name == name), None)
            if n is None or "POWERING_DOWN" not in n.flags or time.monotonic() > deadline:
                return n
            time.sleep(0.5)

    def release_all(self) -> Outcome:
        """Hand everything back: lift every hold Coolshift placed, power up and resume its nodes.

        "Coolshift's" is read from the audit log (the last intent per job and node) and from
        the cluster (jobs of a mapped class held with ``coolshift`` in the comment, nodes
        whose Reason starts with ``coolshift``), so it also works after a ``kill -9``.
        """
        out = Outcome()
        held_jobs = self.our_holds()
        for j in self.cli.jobs():
            if j.held and (j.job_id in held_jobs or (j.tagged and job_class(j, self.smap) is not None)):
                held_jobs.add(j.job_id)
        for jid in sorted(held_jobs):
            a = Action("release", str(jid), "coolshift jobs-release: every hold lifted")
            err = self._undo(a)
            (out.done.append(a) if err is None else out.rollback_failed.append((a, err)))
        names = self.our_nodes() | {n.name for n in self.cli.nodes() if n.ours}
        for name in sorted(names):
            a = Action("power_up", name, "coolshift jobs-release: every node resumed")
            err = self._undo(a)
            (out.done.append(a) if err is None else out.rollback_failed.append((a, err)))
        return out
