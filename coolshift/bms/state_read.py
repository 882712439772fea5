"""The site's measured state read from the BMS through the point map, for ``coolshift plan --from-bms``.

Read-only: only present values are read (never a write, a release or an audit record).
Each field of :class:`~coolshift.site_state.SiteState` comes from the point carrying its
variable:

- ``supply_setpoint_c__<zone>``, ``chw_setpoint_c``: the setpoint in force (the device's
  present value, whoever commands it: local control, an operator's priority or ours);
- ``active_servers__<pool>``: servers on (telemetry);
- ``backlog_units__<class>``: batch work waiting (units), due in ``backlog_due_h__<class>``
  hours (telemetry; without that point, the class's ``deadline_h``, the latest it can be due);
- ``inlet_temp_c__<zone>``: rack inlet temperature (recorded, not planned on).

What the map does not carry falls back to the config (initial setpoints, every server on,
no backlog) and is listed in :attr:`BmsState.from_config`, so the caller can warn and record it.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..config import ConfigError, SiteConfig, load_site
from ..schema import SEP
from ..site_state import SiteState, parse_state
from .adapters import open_adapter
from .device import DeviceError
from .points import Point, PointMap, PointMapError, load_point_map

__all__ = ["BmsState", "StateUnavailable", "state_points", "read_site_state", "read_site_state_sync"]

SUPPLY, CHW, ACTIVE = "supply_setpoint_c", "chw_setpoint_c", "active_servers"
BACKLOG, BACKLOG_DUE, INLET = "backlog_units", "backlog_due_h", "inlet_temp_c"


class StateUnavailable(RuntimeError):
    """The BMS could not be read (no answer, an error, a non-numeric value): nothing was planned."""


@dataclass(frozen=True)
class BmsState:
    """A state read from the BMS: the state (config values where the map has no point), what came
    from the config, which point gave each field, and lines an operator should read."""

    state: SiteState
    from_config: tuple[str, ...]
    points: dict[str, str]
    notes: tuple[str, ...] = ()


def state_points(pm: PointMap, site: SiteConfig, where: str) -> dict[str, Point]:
    """Field key (``supply_setpoint_c.hall_a``, ``backlog_due_h.batch``) -> the point that carries it.

    A state variable naming a zone, pool or class the site does not have is a
    PointMapError naming the map and point; other variables (power, weather) are ignored.
    """
    names = {SUPPLY: {z.name for z in site.zones}, INLET: {z.name for z in site.zones},
             ACTIVE: {p.name for p in site.server_pools},
             BACKLOG: {c.name for c in site.workload_classes if c.kind == "batch"}}
    names[BACKLOG_DUE] = names[BACKLOG]
    out = {}
    for p in pm.points:
        if p.variable == CHW:
            out[CHW] = p
            continue
        qty, sep, name = p.variable.partition(SEP)
        if not sep or qty not in names:
            continue
        if name not in names[qty]:
            kind = {SUPPLY: "zone", INLET: "zone", ACTIVE: "pool"}.get(qty, "batch class")
            raise PointMapError(f"{where}: point {p.name}: variable {p.variable} names {name!r}, not a {kind} of site "
                                f"{site.name} ({sorted(names[qty])})")
        out[f"{qty}.{name}"] = p
    return out


async def _read(pm: PointMap, points: dict[str, Point], where: str) -> dict[str, float]:
    """Every point's present value (the value in force), read once, nothing written."""
    values = {}
    try:
        async with open_adapter(pm) as adapter:
            for key, p in points.items():
                deadline = time.monotonic() + pm.connection.timeout_s * 3
                v = (await adapter.read_state(p, deadline)).value if p.writable else await adapter.read_value(p, deadline)
                if not math.isfinite(v):
                    raise StateUnavailable(f"{where}: point {p.name} ({p.variable}) reads {v}, not a finite number")
                values[key] = float(v)
    except DeviceError as exc:
        raise StateUnavailable(f"cannot read the measured state from the BMS ({where}): {exc}") from None
    return values


async def read_site_state(pm: PointMap, site: SiteConfig, where: str = "point map",
                          now: pd.Timestamp | None = None) -> BmsState:
    """Read the state from the BMS (read-only); fields without a point come from the config.

    ``measured_at`` is ``now`` (default: the clock when reading starts). Values are not yet
    checked against the site's ranges or the plan start: :meth:`SiteState.check` does that.
    """
    pts = state_points(pm, site, where)
    t = pd.Timestamp.now(tz="UTC") if now is None else now
    v = await _read(pm, pts, where)
    from_config, notes = [], []

    def pick(key: str, default: float) -> float:
        if key in v:
            return v[key]
        from_config.append(key)
        return default

    supply = {z.name: pick(f"{SUPPLY}.{z.name}", z.supply_setpoint_initial_c) for z in site.zones}
    chw = pick(CHW, site.cooling.chiller.chw_setpoint_initial_c)
    active = {p.name: pick(f"{ACTIVE}.{p.name}", float(p.servers)) for p in site.server_pools}
    backlog = {}
    for c in site.workload_classes:
        if c.kind != "batch":
            continue
        units = pick(f"{BACKLOG}.{c.name}", 0.0)
        due_key = f"{BACKLOG_DUE}.{c.name}"
        if due_key in v:
            due_h = v[due_key]
        else:
            due_h = float(c.deadline_h)
            if f"{BACKLOG}.{c.name}" in v and units > 0:
                notes.append(f"{where}: no {BACKLOG_DUE}{SEP}{c.name} point: the {units:g} units of {c.name} waiting "
                             f"are taken as due in the class's deadline_h ({due_h:g} h)")
        if units != 0 or due_key in v:
            backlog[c.name] = [{"due_at": (t + pd.Timedelta(hours=max(due_h, 0.0))).isoformat(), "units": units}]
    raw = {"measured_at": t.isoformat(), SUPPLY: supply, CHW: chw, ACTIVE: active, "backlog": backlog}
    inlet = {k.split(".", 1)[1]: x for k, x in v.items() if k.startswith(INLET + ".")}
    if inlet:
        raw[INLET] = inlet
    state = parse_state(raw, f"{where} (BMS reading)")
    return BmsState(state, tuple(from_config), {k: p.name for k, p in pts.items()}, tuple(notes))


def read_site_state_sync(map_path: str | Path, site: SiteConfig, now: pd.Timestamp | None = None) -> BmsState:
    """Load the point map, check it is this site's, and read the state (blocking; read-only).

    A map for another site is a ConfigError naming the map's ``site`` key; an unreadable
    BMS is :class:`StateUnavailable`.
    """
    map_path = Path(map_path)
    pm = load_point_map(map_path)
    map_site = load_site(pm.resolve(pm.site))
    if map_site.name != site.name:
        raise ConfigError(f"{map_path}: site: the point map is for site {map_site.name}, not {site.name}")
    return asyncio.run(read_site_state(pm, site, str(map_path), now))
