"""The measured state of a site, where a plan starts from: setpoints in force, servers on, work waiting.

A state file (``coolshift plan --state FILE``, YAML or JSON) and a BMS reading
(``--from-bms MAP``, :mod:`coolshift.bms.state_read`) both become a :class:`SiteState`,
checked strictly against the site the way the site config is: unknown keys, zones,
pools or classes, values outside the site's ranges and a measurement too far from the
plan's start are :class:`~coolshift.config.ConfigError` naming the file and key. The
optimiser's ``InitialState`` is built from it by the use case (this module is in the base
layer and does not import the optimiser): :meth:`SiteState.backlog_due_h` turns each
chunk's due time into hours until due at the plan start.

Format (units in the keys)::

    measured_at: "2022-07-01T00:00:00+00:00"      # ISO 8601 with offset
    supply_setpoint_c: {hall_a: 21.0, hall_b: 19.5}  # every zone, degC
    chw_setpoint_c: 12.0                           # degC
    active_servers: {a_web: 1200, a_compute: 100}   # every pool, servers on
    backlog:                                       # work waiting per batch class (may be {})
      batch: [{due_at: "2022-07-01T02:00:00+00:00", units: 300.0}]
    inlet_temp_c: {hall_a: 24.1}                   # optional, degC (recorded, not planned on)
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import pandas as pd
import yaml
from pydantic import AllowInfNan, AwareDatetime, BaseModel, ConfigDict, Field, Strict, ValidationError

from coolshift.config import ConfigError, SiteConfig
from coolshift.textfiles import DataError, read_text

__all__ = ["BacklogChunk", "SiteState", "parse_state", "load_state_file", "as_utc", "STATE_MAX_AGE_H", "MAX_STATE_FILE_BYTES"]

# A state measured more than 6 h before the plan starts no longer describes the plant at
# its start (a night's backlog and setpoints move within hours); the nightly job reads the
# state shortly before midnight for a plan from 00:00.
STATE_MAX_AGE_H = 6.0
# A state file is a few hundred bytes per zone/pool; 1 MiB is far above any real site.
MAX_STATE_FILE_BYTES = 2**20

# A finite number; ints are numbers, booleans and strings are not.
Num = Annotated[float, Strict(), AllowInfNan(False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BacklogChunk(_Strict):
    """Work units (reference server-hours) waiting, due by ``due_at``."""

    due_at: AwareDatetime
    units: Num = Field(ge=0)


class SiteState(_Strict):
    """What the plant is doing at ``measured_at``; see the module docstring for the format."""

    measured_at: AwareDatetime
    supply_setpoint_c: dict[str, Num]
    chw_setpoint_c: Num
    active_servers: dict[str, Num]
    backlog: dict[str, list[BacklogChunk]]
    inlet_temp_c: dict[str, Num] | None = None

    def check(self, site: SiteConfig, start: pd.Timestamp, where: str, *, max_age_h: float = STATE_MAX_AGE_H,
              max_ahead_h: float | None = None, labels: dict[str, str] | None = None) -> None:
        """Raise ConfigError ``<where>: <key>: ...`` naming every value that does not fit the site or the start.

        ``max_age_h``: how long before ``start`` the state may have been measured;
        ``max_ahead_h`` (default one planning step): how long after. ``labels`` adds where
        a key came from (a BMS point name) to its message.
        """
        errors = self.problems(site, start, max_age_h=max_age_h, max_ahead_h=max_ahead_h)
        if errors:
            labels = labels or {}
            lines = [f"{key}{f' (point {labels[key]})' if key in labels else ''}: {msg}" for key, msg in errors]
            raise ConfigError(f"{where}: " + "\n  - ".join(lines))

    def problems(self, site: SiteConfig, start: pd.Timestamp, *, max_age_h: float = STATE_MAX_AGE_H,
                 max_ahead_h: float | None = None) -> list[tuple[str, str]]:
        """Every (key, message) that does not fit the site or the plan start, in key order."""
        out: list[tuple[str, str]] = []
        zones = {z.name: z for z in site.zones}
        pools = {p.name: p for p in site.server_pools}
        batch = {c.name for c in site.workload_classes if c.kind == "batch"}
        ahead_h = site.step_h if max_ahead_h is None else max_ahead_h
        t = as_utc(self.measured_at)
        lag_h = (start - t) / pd.Timedelta(hours=1)
        if lag_h > max_age_h:
            out.append(("measured_at", f"{t.isoformat()} is {lag_h:.3g} h before the plan start {start.isoformat()} "
                                       f"(stale: at most {max_age_h:g} h)"))
        elif -lag_h > ahead_h:
            out.append(("measured_at", f"{t.isoformat()} is {-lag_h:.3g} h after the plan start {start.isoformat()} "
                                       f"(at most {ahead_h:g} h)"))
        for z, v in self.supply_setpoint_c.items():
            if z not in zones:
                out.append((f"supply_setpoint_c.{z}", f"unknown zone (the site's zones: {sorted(zones)})"))
            elif not zones[z].supply_setpoint_min_c <= v <= zones[z].supply_setpoint_max_c:
                zc = zones[z]
                out.append((f"supply_setpoint_c.{z}", f"{v:g} degC outside the zone's range "
                                                      f"[{zc.supply_setpoint_min_c:g}, {zc.supply_setpoint_max_c:g}]"))
        for z in zones:
            if z not in self.supply_setpoint_c:
                out.append((f"supply_setpoint_c.{z}", "missing (every zone's supply setpoint is needed)"))
        ch = site.cooling.chiller
        if not ch.chw_setpoint_min_c <= self.chw_setpoint_c <= ch.chw_setpoint_max_c:
            out.append(("chw_setpoint_c", f"{self.chw_setpoint_c:g} degC outside the chiller's range "
                                          f"[{ch.chw_setpoint_min_c:g}, {ch.chw_setpoint_max_c:g}]"))
        for p, v in self.active_servers.items():
            if p not in pools:
                out.append((f"active_servers.{p}", f"unknown pool (the site's pools: {sorted(pools)})"))
            elif not 0 <= v <= pools[p].servers:
                out.append((f"active_servers.{p}", f"{v:g} outside [0, {pools[p].servers}] (servers installed)"))
        for p in pools:
            if p not in self.active_servers:
                out.append((f"active_servers.{p}", "missing (every pool's active servers are needed)"))
        for k, chunks in self.backlog.items():
            if k not in batch:
                out.append((f"backlog.{k}", f"not a batch class of the site (batch classes: {sorted(batch)})"))
        for z, v in (self.inlet_temp_c or {}).items():
            if z not in zones:
                out.append((f"inlet_temp_c.{z}", f"unknown zone (the site's zones: {sorted(zones)})"))
        return out

    def backlog_due_h(self, start: pd.Timestamp) -> tuple[dict[str, list[tuple[float, float]]], list[str]]:
        """Per batch class, (hours until due at ``start``, units) chunks ordered by due time, and warnings.

        A chunk already overdue at the start is due at once (0 h), with a warning: it must
        be served in the first step.
        """
        out: dict[str, list[tuple[float, float]]] = {}
        notes = []
        for k, chunks in self.backlog.items():
            rows = []
            for i, c in enumerate(chunks):
                h = (as_utc(c.due_at) - start) / pd.Timedelta(hours=1)
                if h < 0 and c.units > 0:
                    notes.append(f"backlog.{k}[{i}]: {c.units:g} units were due {-h:.3g} h before the plan start; "
                                 "planned as due in the first step")
                rows.append((max(0.0, float(h)), float(c.units)))
            out[k] = sorted(rows)
        return out, notes

    def record(self, start: pd.Timestamp) -> dict:
        """The values as summary.json records them (backlog with hours until due at ``start``)."""
        due, _ = self.backlog_due_h(start)
        return {
            "measured_at": pd.Timestamp(self.measured_at).isoformat(),
            "supply_setpoint_c": dict(self.supply_setpoint_c),
            "chw_setpoint_c": self.chw_setpoint_c,
            "active_servers": dict(self.active_servers),
            "backlog": {k: [{"due_at": pd.Timestamp(c.due_at).isoformat(), "units": c.units} for c in v]
                        for k, v in self.backlog.items()},
            "backlog_due_h": {k: [[h, u] for h, u in v] for k, v in due.items()},
            "inlet_temp_c": None if self.inlet_temp_c is None else dict(self.inlet_temp_c),
        }


class _NoDuplicates(yaml.SafeLoader):
    """YAML 1.1 safe loader that refuses duplicate keys (the last would silently win) and
    keeps timestamps as text (pydantic reads ISO 8601, offset included)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for k, _ in node.value:
            key = self.construct_object(k, deep=True)
            if isinstance(key, (str, int, float)) and key in seen:
                raise ConfigError(f"duplicate key {key!r} (line {k.start_mark.line + 1})")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_NoDuplicates.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in rs if tag != "tag:yaml.org,2002:timestamp"]
    for ch, rs in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _loc(loc: tuple) -> str:
    return ".".join(str(x) for x in loc) or "<root>"


def _message(e: dict) -> str:
    if e["type"] == "extra_forbidden":
        return "unknown key (check spelling)"
    if e["type"] == "missing":
        return "missing"
    if e["type"].startswith(("datetime", "timezone")):
        return f"{e['msg']}: write ISO 8601 with an offset, e.g. 2022-07-01T00:00:00+00:00"
    return e["msg"]


def parse_state(raw: object, where: str) -> SiteState:
    """A :class:`SiteState` from parsed YAML/JSON; ConfigError ``<where>: <key>: ...`` on the first bad key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping (measured_at, supply_setpoint_c, chw_setpoint_c, "
                          "active_servers, backlog) at the top level")
    try:
        return SiteState.model_validate(raw)
    except ValidationError as exc:
        errs = exc.errors()
        lines = [f"{where}: {_loc(errs[0]['loc'])}: {_message(errs[0])}"]
        lines += [f"  - {_loc(e['loc'])}: {_message(e)}" for e in errs[1:]]
        raise ConfigError("\n".join(lines)) from None


def load_state_file(path: str | Path) -> SiteState:
    """Read a state file (YAML or JSON) strictly; not yet checked against a site (:meth:`SiteState.check`)."""
    path = Path(path)
    try:
        text = read_text(path, max_bytes=MAX_STATE_FILE_BYTES)
    except DataError as exc:
        raise ConfigError(f"state file {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the state file ({exc.strerror or type(exc).__name__})") from None
    try:
        raw = yaml.load(text, Loader=_NoDuplicates)  # noqa: S506 - a SafeLoader subclass
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML or JSON{where}: {getattr(exc, 'problem', None) or exc}") from None
    if raw is None:
        raise ConfigError(f"{path}: the state file is empty")
    return parse_state(raw, str(path))


def as_utc(t: datetime | pd.Timestamp) -> pd.Timestamp:
    """A tz-aware time as a UTC Timestamp."""
    return pd.Timestamp(t).tz_convert("UTC")
