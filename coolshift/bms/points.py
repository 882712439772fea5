"""Point map: which plan variable goes to which BMS object or register, with limits.

A point map is a YAML file (``configs/bms/*.yaml``) read into strict pydantic
models: unknown keys are errors, and only the points listed here can ever be
written. Connection details (addresses, ports) come from this file or from the
environment (``${VAR}`` or ``${VAR:-default}`` in the ``connection`` block), never
from a plan.

Priorities follow ASHRAE 135 (BACnet) clause 19.2: 1-2 are manual life safety,
5 critical equipment control, 8 manual operator; the default here is 10, below the
operator's 8, so an operator's manual command always wins over Coolshift.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "PointMapError",
    "BacnetConnection",
    "ModbusConnection",
    "BacnetPoint",
    "ModbusRelease",
    "ModbusPoint",
    "Point",
    "Safety",
    "Heartbeat",
    "PointMap",
    "load_point_map",
    "expand_env",
    "STORAGE_POWER_PREFIXES",
    "storage_power_target",
    "check_map_site",
]

# ASHRAE 135-2020 clause 19.2.1.1: priorities 1 and 2 are "Manual-Life Safety" and
# "Automatic-Life Safety"; an optimiser must never write there.
LIFE_SAFETY_PRIORITIES = (1, 2)
# Default write priority: below 8 ("Manual Operator"), so operators override us.
DEFAULT_PRIORITY = 10


# Plan columns of storage power [kW]: charging (grid side) and discharging (site side) per store.
STORAGE_POWER_PREFIXES = ("charge_kw__", "discharge_kw__")


def storage_power_target(variable: str) -> tuple[str, str] | None:
    """(store name, ``"charge_kw"`` or ``"discharge_kw"``: the store's limit that bounds it) for a
    battery power variable; None for any other variable."""
    for prefix in STORAGE_POWER_PREFIXES:
        if variable.startswith(prefix):
            return variable[len(prefix):], prefix.removesuffix("__")
    return None


class PointMapError(ValueError):
    """A point map that cannot be used; the message names the file and key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(text: str, environ: dict[str, str] | None = None) -> str:
    """Replace ``${VAR}`` / ``${VAR:-default}`` from the environment; unknown VAR is an error."""
    env = os.environ if environ is None else environ

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise PointMapError(f"environment variable {name} is not set and has no default")

    return _ENV.sub(sub, text)


class BacnetConnection(_Strict):
    """How to reach a BACnet/IP device: its address and our own bind address."""

    device_address: str = Field(description="host:port of the device, e.g. 127.0.0.1:47808")
    local_address: str = Field("127.0.0.1/8:0", description="our bind address CIDR:port (0 = any free port)")
    local_device_instance: int = Field(599999, ge=0, lt=4194303)
    timeout_s: float = Field(5.0, gt=0, description="per request")


class ModbusConnection(_Strict):
    host: str
    port: int = Field(ge=1, le=65535)
    device_id: int = Field(1, ge=0, le=247)
    timeout_s: float = Field(5.0, gt=0, description="per request")


class BacnetPoint(_Strict):
    """An Analog Value/Output (writable) or Analog Input (telemetry) object."""

    object: str = Field(description="object identifier, e.g. 'analog-value,1'")
    priority: int = Field(DEFAULT_PRIORITY, ge=1, le=16)

    @field_validator("object")
    @classmethod
    def _obj(cls, v: str) -> str:
        kind, _, inst = v.partition(",")
        if kind not in ("analog-value", "analog-output", "analog-input") or not inst.strip().isdigit():
            raise ValueError("object must be 'analog-value,N', 'analog-output,N' or 'analog-input,N'")
        return f"{kind},{int(inst)}"

    @field_validator("priority")
    @classmethod
    def _prio(cls, v: int) -> int:
        if v in LIFE_SAFETY_PRIORITIES:
            raise ValueError(f"priority {v} is reserved for life safety (ASHRAE 135 clause 19.2); use 3-16")
        return v

    @property
    def object_type(self) -> str:
        return self.object.split(",")[0]

    @property
    def instance(self) -> int:
        return int(self.object.split(",")[1])


class ModbusRelease(_Strict):
    """How a Modbus point is handed back to the device's automatic/local control.

    Either a coil or a holding register holds the mode: ``auto_value`` means local
    control, ``remote_value`` means the setpoint register is commanded by us.
    """

    coil: int | None = Field(None, ge=0, le=65535, description="mode coil address")
    holding: int | None = Field(None, ge=0, le=65535, description="mode holding-register address")
    auto_value: int = 1
    remote_value: int = 0

    @model_validator(mode="after")
    def _one(self) -> "ModbusRelease":
        if (self.coil is None) == (self.holding is None):
            raise ValueError("give exactly one of coil or holding (the mode register)")
        if self.auto_value == self.remote_value:
            raise ValueError("auto_value and remote_value must differ")
        if self.coil is not None and {self.auto_value, self.remote_value} != {0, 1}:
            raise ValueError("a coil's auto_value/remote_value are 0 and 1")
        return self


class ModbusPoint(_Strict):
    """A holding register (writable) or input register (telemetry); value = raw * scale + offset."""

    address: int = Field(ge=0, le=65535, description="first register")
    table: Literal["holding", "input"] = "holding"
    datatype: Literal["int16", "uint16", "float32"] = "int16"
    word_order: Literal["big", "little"] = "big"
    scale: float = 1.0
    offset: float = 0.0
    release: ModbusRelease | None = None

    @field_validator("scale")
    @classmethod
    def _scale(cls, v: float) -> float:
        if v == 0:
            raise ValueError("scale must not be 0")
        return v

    @property
    def n_registers(self) -> int:
        return 2 if self.datatype == "float32" else 1


class Point(_Strict):
    """One BMS point.

    ``variable`` is the plan column it carries (``supply_setpoint_c__hall_a``,
    ``chw_setpoint_c``) or, for read-only telemetry, the telemetry column
    (``inlet_temp_c__hall_a``, ``cooling_power_kw``). Limits are engineering limits
    of this point, in the point's unit; the zone's ASHRAE envelope is checked too.
    """

    name: str
    variable: str
    unit: str = "degC"
    writable: bool = True
    zone: str | None = None
    min_value: float | None = None
    max_value: float | None = None
    max_change_per_write: float | None = Field(None, gt=0)
    bacnet: BacnetPoint | None = None
    modbus: ModbusPoint | None = None

    @model_validator(mode="after")
    def _check(self) -> "Point":
        if self.writable:
            if self.min_value is None or self.max_value is None or self.max_change_per_write is None:
                raise ValueError(
                    f"point {self.name}: a writable point needs min_value, max_value and max_change_per_write"
                )
            if not self.min_value < self.max_value:
                raise ValueError(f"point {self.name}: min_value must be below max_value")
            if self.bacnet is not None and self.bacnet.object_type == "analog-input":
                raise ValueError(f"point {self.name}: an analog-input cannot be written")
            if self.modbus is not None and self.modbus.table == "input":
                raise ValueError(f"point {self.name}: an input register cannot be written")
            if self.modbus is not None and self.modbus.release is None:
                raise ValueError(
                    f"point {self.name}: a writable Modbus point needs 'release' (the coil or register "
                    "that hands it back to local control)"
                )
        return self


class Safety(_Strict):
    """Site-wide safety settings for pushes.

    Defaults: a day-ahead plan (24 h horizon, ``Planning.horizon_h``) stays usable for its
    whole horizon plus 2 h of slack; one write per point per 5 min allows every 15-min
    planning step (``Planning.step_minutes``) and stops a loop from hammering the BMS;
    30 s of restore retries outlasts a typical BACnet APDU timeout with retries
    (ASHRAE 135 Device object: APDU_Timeout typically 3 s with 3 retries, 9 s in all;
    bacpypes3 uses 3 s).
    """

    max_plan_age_h: float = Field(26.0, gt=0, description="refuse plans created longer ago than this")
    min_write_interval_s: float = Field(
        300.0, ge=0, description="rate limit: least time between two writes to one point"
    )
    restore_timeout_s: float = Field(30.0, gt=0, description="how long to keep retrying a restore")
    verify_settle_s: float = Field(0.0, ge=0, description="wait before reading a write back")


class Heartbeat(_Strict):
    """The controller's watchdog: a point the supervisor changes at least every ``timeout_s``.

    Modbus: a ``holding`` register (uint16) whose silence longer than ``timeout_s`` makes the
    controller flip every mode register to automatic. BACnet: an analog-value ``object``
    that the controller's local program watches; on silence it relinquishes the
    supervisor's priority slot of every commandable point. The supervisor writes an
    incrementing counter every ``interval_s`` (default a third of the timeout, so two lost
    writes in a row still keep control). See docs/bms.md, "Watchdog".
    """

    holding: int | None = Field(None, ge=0, le=65535, description="Modbus heartbeat holding-register address")
    object: str | None = Field(None, description="BACnet heartbeat object, 'analog-value,N'")
    priority: int = Field(DEFAULT_PRIORITY, ge=3, le=16, description="BACnet write priority of the heartbeat")
    timeout_s: float = Field(gt=0, description="silence after which the controller takes local control back")
    interval_s: float | None = Field(None, gt=0, description="how often the supervisor writes it (default timeout/3)")

    @field_validator("object")
    @classmethod
    def _obj(cls, v: str | None) -> str | None:
        if v is None:
            return v
        kind, _, inst = v.partition(",")
        if kind != "analog-value" or not inst.strip().isdigit():
            raise ValueError("heartbeat object must be 'analog-value,N'")
        return f"{kind},{int(inst)}"

    @model_validator(mode="after")
    def _check(self) -> "Heartbeat":
        if (self.holding is None) == (self.object is None):
            raise ValueError("give exactly one of holding (Modbus register) or object (BACnet)")
        if self.interval_s is not None and self.interval_s >= self.timeout_s:
            raise ValueError("interval_s must be shorter than timeout_s")
        return self

    @property
    def write_interval_s(self) -> float:
        return self.interval_s if self.interval_s is not None else self.timeout_s / 3.0


class PointMap(_Strict):
    name: str
    site: str = Field(description="site config YAML, relative to this file (zone envelopes)")
    protocol: Literal["bacnet", "modbus"]
    connection: BacnetConnection | ModbusConnection
    audit_db: str = Field("bms_audit.sqlite", description="sqlite audit log, relative to this file")
    safety: Safety = Safety()
    points: list[Point] = Field(min_length=1)
    heartbeat: Heartbeat | None = None
    base_dir: Path = Field(default=Path("."), exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _connection_type(cls, data: object) -> object:
        # Validate the connection block against the protocol's model, so errors name its keys.
        if isinstance(data, dict) and isinstance(data.get("connection"), dict):
            kind = {"bacnet": BacnetConnection, "modbus": ModbusConnection}.get(data.get("protocol"))
            if kind is not None:
                data = {**data, "connection": kind.model_validate(data["connection"])}
        return data

    @model_validator(mode="after")
    def _cross(self) -> "PointMap":
        names = [p.name for p in self.points]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate point names: {dup}")
        variables = [p.variable for p in self.points]
        dup = sorted({v for v in variables if variables.count(v) > 1})
        if dup:
            raise ValueError(f"two points carry the same variable: {dup}")
        want = BacnetConnection if self.protocol == "bacnet" else ModbusConnection
        if not isinstance(self.connection, want):
            raise ValueError(f"connection does not match protocol {self.protocol}")
        for p in self.points:
            if getattr(p, self.protocol) is None:
                raise ValueError(f"point {p.name}: no '{self.protocol}' address")
        hb = self.heartbeat
        if hb is not None:
            if self.protocol == "modbus":
                if hb.holding is None:
                    raise ValueError("heartbeat: a Modbus map names a 'holding' register")
                for p in self.points:
                    mp = p.modbus
                    used = set(range(mp.address, mp.address + mp.n_registers)) if mp.table == "holding" else set()
                    if mp.release is not None and mp.release.holding is not None:
                        used.add(mp.release.holding)
                    if hb.holding in used:
                        raise ValueError(f"heartbeat: register {hb.holding} is already used by point {p.name}")
            else:
                if hb.object is None:
                    raise ValueError("heartbeat: a BACnet map names an 'object' (analog-value,N)")
                for p in self.points:
                    if p.bacnet.object == hb.object:
                        raise ValueError(f"heartbeat: object {hb.object} is already point {p.name}")
        return self

    def resolve(self, path: str | Path) -> Path:
        p = Path(path)
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    @property
    def writable(self) -> list[Point]:
        return [p for p in self.points if p.writable]

    def by_variable(self, variable: str) -> Point:
        for p in self.points:
            if p.variable == variable:
                return p
        raise KeyError(variable)


def _fmt(path: Path, err: ValidationError, prefix: tuple = ()) -> str:
    lines = [f"{path}: invalid BMS point map ({err.error_count()} error(s))"]
    for e in err.errors():
        loc = ".".join(str(x) for x in (*prefix, *e["loc"])) or "<root>"
        msg = "unknown key (check spelling)" if e["type"] == "extra_forbidden" else e["msg"]
        lines.append(f"  - {loc}: {msg}")
    return "\n".join(lines)


def load_point_map(path: str | Path, environ: dict[str, str] | None = None) -> PointMap:
    """Read and validate a point map; ``${VAR}`` in the connection block come from the environment."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PointMapError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        raise PointMapError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise PointMapError(f"{path}: expected a mapping at the top level")
    conn = raw.get("connection")
    if isinstance(conn, dict):
        try:
            raw["connection"] = {
                k: expand_env(v, environ) if isinstance(v, str) else v for k, v in conn.items()
            }
        except PointMapError as exc:
            raise PointMapError(f"{path}: connection: {exc}") from None
    if isinstance(raw.get("audit_db"), str):
        try:
            raw["audit_db"] = expand_env(raw["audit_db"], environ)
        except PointMapError as exc:
            raise PointMapError(f"{path}: audit_db: {exc}") from None
    kind = {"bacnet": BacnetConnection, "modbus": ModbusConnection}.get(raw.get("protocol"))
    if kind is not None and isinstance(raw.get("connection"), dict):
        try:
            raw["connection"] = kind.model_validate(raw["connection"])
        except ValidationError as exc:
            raise PointMapError(_fmt(path, exc, ("connection",))) from None
    raw["base_dir"] = path.parent.resolve()
    try:
        return PointMap.model_validate(raw)
    except ValidationError as exc:
        raise PointMapError(_fmt(path, exc)) from None


def check_map_site(pm: PointMap, site, path: str | Path | None = None) -> None:
    """Cross-checks of a point map against its site config (raise :class:`PointMapError` naming the
    file and point): a battery power point (``charge_kw__<store>``/``discharge_kw__<store>``) names a
    store of the site, its unit is kW and its limits lie within 0 .. the store's power."""
    where = f"{path or pm.base_dir / pm.name}"
    stores = {u.name: u for u in getattr(site, "storage", [])}
    for k, p in enumerate(pm.points):
        target = storage_power_target(p.variable)
        if target is None:
            continue
        name, key = target
        at = f"{where}: points.{k} ({p.name})"
        if name not in stores:
            raise PointMapError(f"{at}: variable {p.variable}: {name!r} is not a store of site {site.name} "
                                f"(storage: {sorted(stores)})")
        if p.unit != "kW":
            raise PointMapError(f"{at}: unit {p.unit!r}: battery power points are in kW")
        cap = float(getattr(stores[name], key))
        if p.writable and (p.min_value < 0 or p.max_value > cap + 1e-9):
            raise PointMapError(f"{at}: min_value/max_value {p.min_value:g}..{p.max_value:g} kW must lie within "
                                f"0..{cap:g} kW (storage {name} {key} in the site config)")
