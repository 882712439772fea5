"""The twin's point map: the site's map, plus the telemetry and heartbeat a supervisor needs.

A site's map (``configs/bms/<site>_<protocol>.yaml``) may list only some telemetry. The
twin serves, in addition, every missing one of: inlet temperature per zone, cooling, IT
and facility power, outside dry-bulb and wet-bulb temperature, and its clock
(``sim_time_unix_h``), as read-only points at free addresses; and, if the map has no
``heartbeat``, a watchdog with a timeout of 1.5 planning steps (a supervisor writing
once per step keeps it fed with half a step of slack, and a silent one is handed back
within 1.5 steps, inside issue 18's bound of 2). ``coolshift twin --map-out`` writes the
result for the supervisor to use.

The twin's servers and batch queue (issue 19 item 4) add telemetry: ``active_servers__<pool>``
(servers running or booting), and per batch class ``queue_units__<class>`` (work waiting,
also as ``backlog_units__<class>``, the name ``plan --from-bms`` reads),
``batch_arrivals_units__<class>`` (units that arrived in the step just simulated) and
``backlog_due_h__<class>`` (hours from the end of that step to the oldest waiting work's
deadline). With ``queue_points`` each batch class also gets a writable
``release_units_per_h__<class>`` (0 .. the capacity of the class's pools, in units/h; the
local scheduler's value, work run as it arrives, when nobody commands it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from coolshift.bms.points import PointMap
from coolshift.config import SiteConfig
from coolshift.schema import col

from .plant import SIM_TIME

__all__ = ["DEFAULT_TIMEOUT_STEPS", "standard_telemetry", "lever_telemetry", "release_points", "class_capacity_units_per_h",
           "twin_point_map", "write_point_map"]

DEFAULT_TIMEOUT_STEPS = 1.5


def standard_telemetry(site: SiteConfig) -> list[tuple[str, str]]:
    """(variable, unit) of the telemetry every twin serves."""
    out = [(col("inlet_temp_c", z.name), "degC") for z in site.zones]
    # IT power per hall, as a site meters it at its PDUs or UPS outputs (the live loop's drift
    # gate evaluates the plant model at each zone's load)
    out += [(col("zone_it_power_kw", z.name), "kW") for z in site.zones]
    out += [("cooling_power_kw", "kW"), ("it_power_kw", "kW"), ("facility_power_kw", "kW"),
            ("outside_temp_c", "degC"), ("wetbulb_c", "degC"), (SIM_TIME, "h")]
    return out


def lever_telemetry(site: SiteConfig) -> list[tuple[str, str]]:
    """(variable, unit) of the servers' and batch queue's telemetry."""
    out = [(col("active_servers", p.name), "servers") for p in site.server_pools]
    for c in site.workload_classes:
        if c.kind == "batch":
            out += [(col("queue_units", c.name), "units"), (col("backlog_units", c.name), "units"),
                    (col("batch_arrivals_units", c.name), "units"), (col("backlog_due_h", c.name), "h")]
    return out


def class_capacity_units_per_h(site: SiteConfig, batch_class: str) -> float:
    """Work per hour every server of the pools eligible for ``batch_class`` can run."""
    return float(sum(p.servers * p.capacity_units_per_server for p in site.server_pools
                     if p.classes is None or batch_class in p.classes))


def release_points(site: SiteConfig) -> list[tuple[str, float]]:
    """(variable, upper limit in units/h) of the writable release-rate points, one per batch class."""
    return [(col("release_units_per_h", c.name), class_capacity_units_per_h(site, c.name))
            for c in site.workload_classes if c.kind == "batch"]


def twin_point_map(pm: PointMap, site: SiteConfig, port: int | None = None, add_heartbeat: bool = True,
                   queue_points: bool = False) -> PointMap:
    """``pm`` with the standard and lever telemetry and (``add_heartbeat``) a heartbeat added where
    missing, and (``queue_points``) the writable release-rate points, served on ``port``."""
    doc: dict[str, Any] = pm.model_dump(mode="json", exclude={"base_dir"})
    have = {p.variable for p in pm.points}
    missing = [(v, u) for v, u in standard_telemetry(site) + lever_telemetry(site) if v not in have]
    writable = [(v, cap) for v, cap in release_points(site) if v not in have] if queue_points else []
    if pm.protocol == "bacnet":
        used = {(p.bacnet.object_type, p.bacnet.instance) for p in pm.points}
        if pm.heartbeat is not None:
            used.add(("analog-value", int(pm.heartbeat.object.split(",")[1])))

        def free(kind: str) -> int:
            n = max([i for k, i in used if k == kind], default=0) + 1
            used.add((kind, n))
            return n

        for v, u in missing:
            doc["points"].append({"name": v, "variable": v, "unit": u, "writable": False,
                                  "bacnet": {"object": f"analog-input,{free('analog-input')}"}})
        for v, cap in writable:
            doc["points"].append({**_release_limits(v, cap), "bacnet": {"object": f"analog-value,{free('analog-value')}"}})
        if pm.heartbeat is None and add_heartbeat:
            doc["heartbeat"] = {"object": f"analog-value,{free('analog-value')}",
                                "timeout_s": DEFAULT_TIMEOUT_STEPS * site.step_h * 3600.0}
        if port is not None:
            doc["connection"]["device_address"] = f"127.0.0.1:{port}"
    else:
        top = 0
        for p in pm.points:
            mp = p.modbus
            top = max(top, mp.address + mp.n_registers, (mp.release.holding + 1) if mp.release else 0)
        if pm.heartbeat is not None:
            top = max(top, pm.heartbeat.holding + 1)
        for v, u in missing:  # float32: the clock needs more than an int16 carries
            doc["points"].append({"name": v, "variable": v, "unit": u, "writable": False,
                                  "modbus": {"address": top, "table": "input", "datatype": "float32"}})
            top += 2
        for v, cap in writable:  # float32 holding register and a mode register (1 auto, 0 remote)
            doc["points"].append({**_release_limits(v, cap),
                                  "modbus": {"address": top, "table": "holding", "datatype": "float32",
                                             "release": {"holding": top + 2, "auto_value": 1, "remote_value": 0}}})
            top += 3
        if pm.heartbeat is None and add_heartbeat:
            doc["heartbeat"] = {"holding": top, "timeout_s": DEFAULT_TIMEOUT_STEPS * site.step_h * 3600.0}
        if port is not None:
            doc["connection"]["port"] = port
    doc["base_dir"] = pm.base_dir
    return PointMap.model_validate(doc)


def _release_limits(variable: str, cap_units_per_h: float) -> dict[str, Any]:
    """A release-rate point's limits: 0 .. the class's capacity, any change within it in one write."""
    return {"name": variable, "variable": variable, "unit": "units/h", "writable": True, "min_value": 0.0,
            "max_value": cap_units_per_h, "max_change_per_write": cap_units_per_h}


def write_point_map(pm: PointMap, path: Path) -> Path:
    """Write ``pm`` as a point-map YAML usable from anywhere (site and audit paths made absolute)."""
    doc = pm.model_dump(mode="json", exclude={"base_dir"}, exclude_none=True)
    doc["site"] = str(pm.resolve(pm.site))
    doc["audit_db"] = str(pm.resolve(pm.audit_db))
    path = Path(path)
    path.write_text("# written by `coolshift twin --map-out`: the site's map plus the twin's telemetry and heartbeat\n"
                    + yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path
