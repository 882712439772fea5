"""Pre-write checks: pure functions that return a refusal reason, or None when a write is safe.

Modelled on published autonomous-cooling deployments (Gao & Evans, "DeepMind AI
reduces Google data centre cooling bill by 40%", 2016; Lazic et al., "Data center
cooling using model-predictive control", NeurIPS 2018): actions are bounded, each
change is small, the local control system verifies and can take over at any time.
Every check names the point, the value and the limit it broke.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from ..config import SiteConfig
from ..schema import SEP
from ..setpoints import chw_envelope_c, supply_envelope_c
from .points import Point, Safety, storage_power_target

__all__ = [
    "point_limits",
    "zone_envelope",
    "work_limits",
    "storage_limits",
    "change_per_write",
    "rate_limit",
    "plan_freshness",
    "envelope_flag",
    "check_write",
    "zone_of",
]


def zone_of(point: Point) -> str | None:
    """The zone a point serves: its ``zone`` field or the ``__<zone>`` suffix of its variable."""
    if point.zone:
        return point.zone
    return point.variable.split(SEP, 1)[1] if SEP in point.variable else None


def point_limits(point: Point, value: float) -> str | None:
    assert point.min_value is not None and point.max_value is not None
    if not point.min_value <= value <= point.max_value:
        return (
            f"{point.name}: {value:g} {point.unit} is outside the point's limits "
            f"{point.min_value:g}..{point.max_value:g} {point.unit}"
        )
    return None


def zone_envelope(point: Point, value: float, site: SiteConfig) -> str | None:
    """Setpoints that cannot keep the zone's rack inlets inside its ASHRAE envelope are refused.

    The envelope is :mod:`coolshift.setpoints`' (the same the optimiser plans within): supply
    air within the zone's supply-setpoint range and not above its inlet maximum (inlets are
    never colder than the supply air; ASHRAE TC 9.9 recommended 18-27 degC, per zone in the
    site config); chilled water within the chiller's range, and cold enough that the CRAH
    coil (supply >= chw + approach) can still hold every zone's inlet maximum.
    """
    v = point.variable
    if v.startswith("supply_setpoint_c" + SEP):
        zname = zone_of(point)
        zones = {z.name: z for z in site.zones}
        if zname not in zones:
            return f"{point.name}: zone {zname!r} is not in site {site.name} (zones: {sorted(zones)})"
        z = zones[zname]
        lo, hi = supply_envelope_c(z)
        if not lo <= value <= hi:
            return (
                f"{point.name}: supply air {value:g} degC is outside zone {z.name}'s envelope "
                f"{lo:g}..{hi:g} degC (supply setpoint range, ASHRAE inlet max {z.inlet_max_c:g} degC)"
            )
    elif v == "chw_setpoint_c":
        lo, hi = chw_envelope_c(site)
        if not lo <= value <= hi:
            approach = site.cooling.crah_supply_approach_c
            return (
                f"{point.name}: chilled water {value:g} degC is outside {lo:g}..{hi:g} degC "
                f"(chiller range; CRAH approach {approach:g} degC below the lowest zone inlet max)"
            )
    return None


def work_limits(point: Point, value: float, site: SiteConfig) -> str | None:
    """A batch release rate (``release_units_per_h__<class>``) names a batch class of the site and
    stays within 0 .. what every server of the class's pools can run (units/h). No step limit
    beyond that: releasing work is not a thermal change (the setpoints keep theirs)."""
    prefix = "release_units_per_h" + SEP
    if not point.variable.startswith(prefix):
        return None
    cls = point.variable[len(prefix):]
    kinds = {c.name: c.kind for c in site.workload_classes}
    if kinds.get(cls) != "batch":
        return f"{point.name}: {cls!r} is not a batch workload class of site {site.name}"
    cap = sum(p.servers * p.capacity_units_per_server for p in site.server_pools if p.classes is None or cls in p.classes)
    if not 0.0 <= value <= cap + 1e-9:
        return (f"{point.name}: {value:g} units/h is outside 0..{cap:g} units/h (every server of the pools that "
                f"run class {cls})")
    return None


def storage_limits(point: Point, value: float, site: SiteConfig) -> str | None:
    """A battery power setpoint (``charge_kw__<store>``, ``discharge_kw__<store>``) names a store of the
    site and stays within 0 .. that store's ``charge_kw``/``discharge_kw`` (kW; the point's own
    limits are checked beside it by :func:`point_limits`)."""
    target = storage_power_target(point.variable)
    if target is None:
        return None
    name, key = target
    stores = {u.name: u for u in site.storage}
    if name not in stores:
        return f"{point.name}: {name!r} is not a store of site {site.name} (storage: {sorted(stores)})"
    cap = float(getattr(stores[name], key))
    if not 0.0 <= value <= cap + 1e-9:
        return f"{point.name}: {value:g} kW is outside 0..{cap:g} kW (storage {name} {key} in site {site.name})"
    return None


def max_change(point: Point, site: SiteConfig | None = None) -> float:
    """Largest change per write: the point's, and for supply air also the zone's per-step limit."""
    assert point.max_change_per_write is not None
    lim = point.max_change_per_write
    if site is not None and point.variable.startswith("supply_setpoint_c" + SEP):
        zones = {z.name: z for z in site.zones}
        z = zones.get(zone_of(point) or "")
        if z is not None:
            lim = min(lim, z.supply_setpoint_max_step_c)
    return lim


def change_per_write(point: Point, current: float, value: float, site: SiteConfig | None = None) -> str | None:
    lim = max_change(point, site)
    if abs(value - current) > lim + 1e-9:
        return (
            f"{point.name}: change {current:g} -> {value:g} {point.unit} ({value - current:+g}) exceeds "
            f"the maximum change per write of {lim:g} {point.unit}"
        )
    return None


def rate_limit(point: Point, last_write: datetime | None, now: datetime, min_interval_s: float) -> str | None:
    if last_write is None:
        return None
    age_s = (pd.Timestamp(now) - pd.Timestamp(last_write)).total_seconds()
    if age_s < min_interval_s:
        return (
            f"{point.name}: last written {age_s:.0f} s ago; the rate limit allows one write per "
            f"{min_interval_s:g} s"
        )
    return None


def plan_freshness(created_at: pd.Timestamp, now: pd.Timestamp, max_age_h: float) -> str | None:
    age_h = (now - created_at).total_seconds() / 3600.0
    if age_h > max_age_h:
        return f"plan is stale: created {created_at.isoformat()}, {age_h:.1f} h ago (maximum {max_age_h:g} h)"
    if age_h < -0.1:  # a plan from the future: clocks disagree
        return f"plan created_at {created_at.isoformat()} is in the future (check the clocks)"
    return None


def envelope_flag(row: pd.Series, step: pd.Timestamp) -> str | None:
    if "in_envelope" in row.index and not bool(row["in_envelope"]):
        return (
            f"step {step.isoformat()}: the learned model flagged these conditions as outside its "
            "training envelope; the step is not written"
        )
    return None


def check_write(
    point: Point,
    value: float,
    current: float,
    site: SiteConfig,
    safety: Safety,
    last_write: datetime | None,
    now: datetime,
) -> list[str]:
    """All reasons to refuse writing ``value`` to ``point`` (empty: safe to write)."""
    reasons = [
        point_limits(point, value),
        zone_envelope(point, value, site),
        work_limits(point, value, site),
        storage_limits(point, value, site),
        change_per_write(point, current, value, site),
        rate_limit(point, last_write, now, safety.min_write_interval_s),
    ]
    return [r for r in reasons if r]
