"""The twin's point map: the site's map, plus the telemetry and heartbeat a supervisor needs.

A site's map (``configs/bms/<site>_<protocol>.yaml``) may list only some telemetry. The
twin serves, in addition, every missing one of: inlet temperature per zone, cooling, IT
and facility power, outside dry-bulb and wet-bulb temperature, and its clock
(``sim_time_unix_h``), as read-only points at free addresses; and, if the map has no
``heartbeat``, a watchdog with a timeout of 1.5 planning steps (a supervisor writing
once per step keeps it fed with half a step of slack, and a silent one is handed back
within 1.5 steps, inside issue 18's bound of 2). ``coolshift twin --map-out`` writes the
result for the supervisor to use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from coolshift.bms.points import PointMap
from coolshift.config import SiteConfig
from coolshift.schema import col

from .plant import SIM_TIME

__all__ = ["DEFAULT_TIMEOUT_STEPS", "standard_telemetry", "twin_point_map", "write_point_map"]

DEFAULT_TIMEOUT_STEPS = 1.5


def standard_telemetry(site: SiteConfig) -> list[tuple[str, str]]:
    """(variable, unit) of the telemetry every twin serves."""
    out = [(col("inlet_temp_c", z.name), "degC") for z in site.zones]
    out += [("cooling_power_kw", "kW"), ("it_power_kw", "kW"), ("facility_power_kw", "kW"),
            ("outside_temp_c", "degC"), ("wetbulb_c", "degC"), (SIM_TIME, "h")]
    return out


def twin_point_map(pm: PointMap, site: SiteConfig, port: int | None = None, add_heartbeat: bool = True) -> PointMap:
    """``pm`` with the standard telemetry and (``add_heartbeat``) a heartbeat added where missing, served on ``port``."""
    doc: dict[str, Any] = pm.model_dump(mode="json", exclude={"base_dir"})
    have = {p.variable for p in pm.points}
    missing = [(v, u) for v, u in standard_telemetry(site) if v not in have]
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
        if pm.heartbeat is None and add_heartbeat:
            doc["heartbeat"] = {"holding": top, "timeout_s": DEFAULT_TIMEOUT_STEPS * site.step_h * 3600.0}
        if port is not None:
            doc["connection"]["port"] = port
    doc["base_dir"] = pm.base_dir
    return PointMap.model_validate(doc)


def write_point_map(pm: PointMap, path: Path) -> Path:
    """Write ``pm`` as a point-map YAML usable from anywhere (site and audit paths made absolute)."""
    doc = pm.model_dump(mode="json", exclude={"base_dir"}, exclude_none=True)
    doc["site"] = str(pm.resolve(pm.site))
    doc["audit_db"] = str(pm.resolve(pm.audit_db))
    path = Path(path)
    path.write_text("# written by `coolshift twin --map-out`: the site's map plus the twin's telemetry and heartbeat\n"
                    + yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path
