"""Site configuration: pydantic v2 models loaded from YAML.

Strict by design: unknown keys are errors, every quantity carries its unit in the
field name (``_kw``, ``_w``, ``_c``, ``_m3_s``, ``_gco2_per_kwh`` ...), and a bad file
gets an error that names the file and the key path. Component tables
(:meth:`SiteConfig.zones_frame`, :meth:`SiteConfig.pools_frame`, ...) give the
simulator and the optimiser the same PyPSA-style pandas view of the site.

Defaults cite their source; example sites live in ``configs/sites/``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from coolshift.reporting_config import Reporting  # the reporting: block (targets, Scope 1, EU, PAS 2060, lifecycle, ISO)
from coolshift.textfiles import DataError, read_text

__all__ = [
    "ConfigError",
    "DataSource",
    "Zone",
    "CrahUnits",
    "ServerPool",
    "WorkloadClass",
    "Chiller",
    "Economiser",
    "CoolingPlant",
    "LiquidCooling",
    "Electrical",
    "EdgeSite",
    "Renewables",
    "Reporting",
    "StorageUnit",
    "TimeOfUse",
    "Tariff",
    "Planning",
    "SiteConfig",
    "load_site",
]

# ASHRAE TC 9.9, "Thermal Guidelines for Data Processing Environments", 5th ed. (2021):
# recommended server inlet envelope 18-27 degC; class A1 allowable 15-32 degC.
ASHRAE_RECOMMENDED_MIN_C = 18.0
ASHRAE_RECOMMENDED_MAX_C = 27.0
ASHRAE_A1_ALLOWABLE_MIN_C = 15.0
ASHRAE_A1_ALLOWABLE_MAX_C = 32.0


class ConfigError(ValueError):
    """A site configuration that cannot be used; the message names file and key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class DataSource(_Strict):
    """A time-series file and how to read it.

    ``path`` is relative to the config file. ``format`` is ``auto`` (sniffed from
    the header) or a named reader from :mod:`coolshift.io`. ``start`` anchors traces
    that carry no timestamps (ISO 8601 with offset).
    """

    path: str
    format: str = "auto"
    column: str | None = None  # e.g. Electricity Maps "direct" or "lca"
    start: str | None = None
    scale: float = Field(1.0, gt=0, description="multiplier applied to the values (e.g. a trace's utilisation)")
    max_interp_gap_h: float = Field(3.0, ge=0, description="gaps up to this long are interpolated linearly")
    max_fill_gap_h: float = Field(3.0, ge=0, description="longer gaps up to this are filled from the previous day")
    repeat: bool = Field(False, description="tile a short trace to cover the requested period (stated in outputs)")


class CrahUnits(_Strict):
    """Computer-room air handlers serving a zone (fan power follows the cube law)."""

    count: int = Field(ge=1)
    rated_airflow_m3_s: float = Field(gt=0, description="per unit, at full fan speed")
    rated_fan_power_kw: float = Field(gt=0, description="per unit, at rated airflow")
    min_airflow_frac: float = Field(0.3, ge=0, le=1, description="EC fan minimum speed fraction")
    redundant_units: int = Field(0, ge=0, description="units held in reserve (1 for N+1): the plan never counts on them")
    rated_cooling_kw: float | None = Field(
        None, gt=0, description="per unit, sensible cooling at rated airflow (datasheet); default from airflow"
    )

    @model_validator(mode="after")
    def _redundancy(self) -> "CrahUnits":
        if self.redundant_units >= self.count:
            raise ValueError("crah: redundant_units must be fewer than count")
        return self


class Zone(_Strict):
    """A white-space hall with its racks, CRAH units and ASHRAE inlet limits."""

    name: str
    racks: int = Field(ge=1)
    design_it_load_kw: float = Field(gt=0)
    inlet_min_c: float = ASHRAE_RECOMMENDED_MIN_C
    inlet_max_c: float = ASHRAE_RECOMMENDED_MAX_C
    supply_setpoint_min_c: float = 16.0
    supply_setpoint_max_c: float = 27.0
    supply_setpoint_initial_c: float = 18.0
    supply_setpoint_max_step_c: float = Field(1.0, gt=0, description="largest change per planning step")
    containment: Literal["none", "partial", "full"] = "partial"
    room_volume_m3: float = Field(gt=0)
    pdu_rated_kw: float | None = Field(None, gt=0, description="rating of the zone's PDUs/busways (IT load they may carry)")
    crah: CrahUnits

    @model_validator(mode="after")
    def _limits(self) -> "Zone":
        if not self.inlet_min_c < self.inlet_max_c:
            raise ValueError(f"zone {self.name}: inlet_min_c must be below inlet_max_c")
        if self.inlet_max_c > ASHRAE_A1_ALLOWABLE_MAX_C:
            raise ValueError(
                f"zone {self.name}: inlet_max_c {self.inlet_max_c} is above the ASHRAE A1 allowable "
                f"maximum {ASHRAE_A1_ALLOWABLE_MAX_C} degC"
            )
        if not self.supply_setpoint_min_c <= self.supply_setpoint_initial_c <= self.supply_setpoint_max_c:
            raise ValueError(f"zone {self.name}: supply_setpoint_initial_c outside its min/max")
        return self


class ServerPool(_Strict):
    """Identical servers in one zone, aggregated (one row of the pools table).

    Capacity is in *work units*: one unit is one server-hour of work at full
    utilisation of the reference server, so ``capacity_units_per_server`` is in
    units per hour per server at 100 % load (1.0 for the reference server).
    """

    name: str
    zone: str
    servers: int = Field(ge=1)
    idle_w: float = Field(gt=0, description="per server, at 0 % load (SPECpower active idle)")
    peak_w: float = Field(gt=0, description="per server, at 100 % load")
    power_curve_frac: list[float] | None = Field(
        None,
        description="optional 11-point SPECpower curve: power at 0,10..100 % load as a fraction of peak_w",
    )
    sleep_w: float = Field(0.0, ge=0, description="per server when off/asleep (BMC standby)")
    capacity_units_per_server: float = Field(1.0, gt=0)
    min_active_servers: int = Field(0, ge=0, description="redundancy floor")
    boot_time_s: float = Field(180.0, ge=0)
    classes: list[str] | None = Field(None, description="workload classes it may serve (default all)")

    @model_validator(mode="after")
    def _check(self) -> "ServerPool":
        if self.peak_w <= self.idle_w:
            raise ValueError(f"pool {self.name}: peak_w must exceed idle_w")
        if self.min_active_servers > self.servers:
            raise ValueError(f"pool {self.name}: min_active_servers exceeds servers")
        if self.power_curve_frac is not None:
            c = self.power_curve_frac
            if len(c) != 11 or any(b < a for a, b in zip(c, c[1:])) or abs(c[-1] - 1.0) > 1e-6:
                raise ValueError(
                    f"pool {self.name}: power_curve_frac needs 11 non-decreasing fractions ending at 1.0"
                )
        return self


class WorkloadClass(_Strict):
    """A class of work: interactive (served in its step) or batch (shiftable to a deadline)."""

    name: str
    kind: Literal["interactive", "batch"]
    share: float = Field(ge=0, le=1, description="fraction of the site's demand trace")
    deadline_h: float | None = Field(None, gt=0, description="batch only: hours from arrival")
    offloadable: bool = False
    max_latency_ms: float | None = Field(None, gt=0)
    data_gb_per_unit: float = Field(0.0, ge=0, description="data moved per work unit when offloaded")

    @model_validator(mode="after")
    def _check(self) -> "WorkloadClass":
        if self.kind == "batch" and self.deadline_h is None:
            raise ValueError(f"workload class {self.name}: batch work needs deadline_h")
        if self.kind == "interactive" and self.deadline_h is not None:
            raise ValueError(f"workload class {self.name}: interactive work takes no deadline_h")
        return self


class Chiller(_Strict):
    """Chiller plant (all chillers aggregated)."""

    type: Literal["water_cooled", "air_cooled"] = "water_cooled"
    rated_capacity_kw: float = Field(gt=0, description="total thermal capacity of the plant (all units)")
    units: int = Field(1, ge=1, description="chillers sharing rated_capacity_kw equally")
    redundant_units: int = Field(0, ge=0, description="chillers held in reserve (1 for N+1): the plan never counts on them")
    rated_cop: float = Field(gt=0, description="at rated chilled-water and condenser conditions")
    rated_chw_supply_c: float = 6.7  # AHRI 550/590 standard rating: 44 degF leaving chilled water
    rated_condenser_c: float = 29.4  # AHRI 550/590: 85 degF entering condenser water (water-cooled)
    chw_setpoint_min_c: float = 7.0
    chw_setpoint_max_c: float = 18.0
    chw_setpoint_initial_c: float = 10.0

    @model_validator(mode="after")
    def _redundancy(self) -> "Chiller":
        if self.redundant_units >= self.units:
            raise ValueError("chiller: redundant_units must be fewer than units")
        return self


class Economiser(_Strict):
    """Free cooling: water-side (tower + plate HX) or air-side."""

    type: Literal["none", "waterside", "airside"] = "waterside"
    approach_c: float = Field(4.0, ge=0, description="HX / tower approach to wet-bulb (waterside) or dry-bulb")


class LiquidCooling(_Strict):
    """Direct-to-chip liquid cooling: a share of the IT heat carried by a warm-water loop.

    ASHRAE TC 9.9, "Liquid Cooling Guidelines for Datacom Equipment Centers" (2nd ed. 2014)
    and "Water-Cooled Servers" (2019) name facility-water classes by their highest supply
    temperature: W17, W27, W32, W40, W45 [degC]; W32 is served without chillers in most
    climates. Default share 0: an air-cooled site, unchanged.
    """

    it_heat_share_frac: float = Field(0.0, ge=0, le=0.9, description="share of IT heat removed by cold plates (hybrid cold-plate servers capture 0.6-0.8: ASHRAE TC 9.9 Water-Cooled Servers 2019)")
    supply_max_c: float = Field(32.0, ge=10, le=45, description="facility water supply limit, ASHRAE W-class (W32 = 32 degC)")


class CoolingPlant(_Strict):
    chiller: Chiller
    economiser: Economiser = Economiser()
    liquid: LiquidCooling = LiquidCooling()
    pump_rated_kw: float = Field(ge=0, description="chilled + condenser water pumps at design flow")
    tower_fan_rated_kw: float = Field(0.0, ge=0, description="cooling-tower fans at design (0 if air-cooled)")
    crah_supply_approach_c: float = Field(
        3.0, ge=0, description="CRAH coil: supply air minus chilled-water supply temperature"
    )


class Electrical(_Strict):
    """UPS/PDU losses and fixed loads.

    ``ups_efficiency_points`` maps load fraction to efficiency (piecewise linear).
    """

    ups_rated_kw: float = Field(gt=0, description="total output rating of the UPS system (all modules)")
    ups_modules: int = Field(1, ge=1, description="UPS modules sharing ups_rated_kw equally")
    ups_redundant_modules: int = Field(
        0, ge=0, description="modules held in reserve (1 for N+1, half of them for 2N): the plan never counts on them"
    )
    ups_efficiency_points: list[tuple[float, float]] = Field(
        # Double-conversion UPS efficiency curve, typical of vendor datasheets
        # (e.g. Eaton 93PM, Vertiv Liebert EXL S1: ~95-96.5 % from 25 % to 100 % load).
        default=[(0.1, 0.88), (0.25, 0.94), (0.5, 0.955), (0.75, 0.96), (1.0, 0.955)]
    )
    pdu_loss_frac: float = Field(0.015, ge=0, le=0.2, description="PDU/transformer loss, share of IT power")
    lighting_other_kw: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _redundancy(self) -> "Electrical":
        if self.ups_redundant_modules >= self.ups_modules:
            raise ValueError("electrical: ups_redundant_modules must be fewer than ups_modules")
        return self


class EdgeSite(_Strict):
    """An edge site that can take offloadable work (static + proportional power, as in LEAF)."""

    name: str
    grid_region: str
    carbon: DataSource
    capacity_units_per_h: float = Field(gt=0)
    static_kw: float = Field(ge=0)
    kw_per_unit_per_h: float = Field(gt=0, description="incremental IT power per work unit per hour")
    pue: float = Field(ge=1.0)
    latency_ms: float = Field(ge=0)
    network_kwh_per_gb: float = Field(ge=0, description="transfer energy per GB moved")


class Renewables(_Strict):
    """Contracted renewable supply (PPA) for market-based Scope 2 accounting."""

    ppa_mwh_per_year: float = Field(0.0, ge=0)
    profile: Literal["flat", "solar", "wind"] = "flat"
    profile_path: str | None = None
    residual_mix_gco2_per_kwh: float | None = Field(
        None, ge=0, description="factor for unmatched energy (GHG Protocol Scope 2 residual mix)"
    )


class StorageUnit(_Strict):
    """An electricity store behind the site's meter (a battery, or the UPS batteries).

    Round-trip efficiency is split equally between charging and discharging (sqrt each),
    as PyPSA's ``StorageUnit`` efficiencies; self-discharge is a share of the stored energy
    per hour. A ``ups`` keeps ``ride_through_min`` minutes at the site's design IT load
    (sum of the zones' ``design_it_load_kw``) that the plan never uses. Degradation is
    charged per kWh discharged (throughput) in money and embodied carbon.
    """

    name: str
    kind: Literal["battery", "ups"] = "battery"
    energy_kwh: float = Field(gt=0, description="usable nameplate energy")
    charge_kw: float = Field(gt=0, description="largest charging power (grid side)")
    discharge_kw: float = Field(gt=0, description="largest discharging power (site side)")
    # Li-ion (LFP) systems: 85-90 % AC round trip (NREL ATB 2023, utility-scale battery storage)
    round_trip_efficiency: float = Field(0.88, gt=0, le=1)
    soc_min_frac: float = Field(0.1, ge=0, lt=1)
    soc_max_frac: float = Field(0.9, gt=0, le=1)
    soc_initial_frac: float = Field(0.5, ge=0, le=1)
    # Li-ion self-discharge ~2-3 %/month (Battery University BU-802b): ~3e-5 per hour
    self_discharge_per_h: float = Field(3e-5, ge=0, lt=0.1)
    ride_through_min: float = Field(0.0, ge=0, description="ups only: minutes at design IT load never used")
    # Degradation per kWh discharged: NREL ATB 2023 LFP ~ 300 USD/kWh over ~4,000 cycles at
    # 80 % depth ~ 0.09 USD/kWh; embodied ~ 75 kgCO2e/kWh of cells (IVL 2019, Emilsson &
    # Dahllof) over the same throughput ~ 0.02 kgCO2e/kWh.
    degradation_usd_per_kwh: float = Field(0.09, ge=0)
    degradation_kgco2_per_kwh: float = Field(0.02, ge=0)
    embodied_kgco2_per_kwh_capacity: float = Field(75.0, ge=0, description="manufacture, per kWh of capacity (what-ifs)")
    capex_usd_per_kwh: float = Field(300.0, ge=0, description="installed cost per kWh of capacity (what-ifs)")
    lifetime_years: float = Field(12.0, gt=0)

    @model_validator(mode="after")
    def _soc_range(self) -> "StorageUnit":
        if not self.soc_min_frac < self.soc_max_frac:
            raise ValueError(f"storage {self.name}: soc_min_frac must be below soc_max_frac")
        if not self.soc_min_frac <= self.soc_initial_frac <= self.soc_max_frac:
            raise ValueError(f"storage {self.name}: soc_initial_frac must lie within [soc_min_frac, soc_max_frac]")
        if self.kind == "battery" and self.ride_through_min:
            raise ValueError(f"storage {self.name}: ride_through_min is for kind 'ups' only")
        return self


class TimeOfUse(_Strict):
    """An energy price adder for local hours ``[start_hour, end_hour)`` (end may wrap past midnight)."""

    start_hour: int = Field(ge=0, le=23)
    end_hour: int = Field(ge=1, le=24)
    usd_per_kwh: float
    weekdays_only: bool = False


class Tariff(_Strict):
    """What the site pays for grid electricity: energy (wholesale series and/or time of use,
    plus a flat adder) and a demand charge on each month's peak import."""

    prices: DataSource | None = Field(None, description="hourly wholesale prices, USD/MWh (coolshift.io.prices)")
    timezone: str = Field("UTC", description="local time of the time-of-use hours (IANA name)")
    energy_usd_per_kwh: float = Field(0.0, description="flat adder: network charges, taxes")
    time_of_use: list[TimeOfUse] = []
    demand_charge_usd_per_kw_month: float = Field(0.0, ge=0)
    carbon_price_usd_per_tco2: float = Field(0.0, ge=0, description="internal carbon price (weighted objective)")


class Planning(_Strict):
    step_minutes: int = Field(15, description="planning step")
    horizon_h: int = Field(24, ge=1)
    accounting: Literal["location", "market"] = "location"
    site_power_cap_kw: float | None = Field(None, gt=0)

    @field_validator("step_minutes")
    @classmethod
    def _step(cls, v: int) -> int:
        if v <= 0 or 60 % v != 0 and v % 60 != 0:
            raise ValueError("step_minutes must divide an hour (5, 10, 15, 30, 60) or be whole hours")
        return v


class SiteConfig(_Strict):
    name: str
    description: str = ""
    latitude_deg: float = Field(ge=-90, le=90)
    longitude_deg: float = Field(ge=-180, le=180)
    grid_region: str
    carbon: DataSource
    weather: DataSource
    workload: DataSource
    planning: Planning = Planning()
    zones: list[Zone] = Field(min_length=1)
    server_pools: list[ServerPool] = Field(min_length=1)
    workload_classes: list[WorkloadClass] = Field(min_length=1)
    cooling: CoolingPlant
    electrical: Electrical
    edge_sites: list[EdgeSite] = []
    renewables: Renewables | None = None
    reporting: Reporting = Reporting()
    storage: list[StorageUnit] = []
    tariff: Tariff | None = None
    # Where the config was read from; relative data paths resolve against it.
    base_dir: Path = Field(default=Path("."), exclude=True)

    @model_validator(mode="after")
    def _cross_check(self) -> "SiteConfig":
        for label, items in (
            ("zone", self.zones),
            ("server pool", self.server_pools),
            ("workload class", self.workload_classes),
            ("edge site", self.edge_sites),
            ("storage", self.storage),
        ):
            names = [i.name for i in items]
            dup = {n for n in names if names.count(n) > 1}
            if dup:
                raise ValueError(f"duplicate {label} names: {sorted(dup)}")
        zones = {z.name for z in self.zones}
        classes = {c.name for c in self.workload_classes}
        for p in self.server_pools:
            if p.zone not in zones:
                raise ValueError(f"server pool {p.name}: unknown zone {p.zone!r} (zones: {sorted(zones)})")
            for c in p.classes or []:
                if c not in classes:
                    raise ValueError(f"server pool {p.name}: unknown workload class {c!r}")
        total = sum(c.share for c in self.workload_classes)
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"workload_classes shares sum to {total:.4f}, not 1")
        design_kw = sum(z.design_it_load_kw for z in self.zones)
        for u in self.storage:  # the UPS reserve must fit within the usable state-of-charge range
            if u.ride_through_min * design_kw / 60.0 > u.soc_max_frac * u.energy_kwh:
                raise ValueError(f"storage {u.name}: ride_through_min {u.ride_through_min:g} min at the design IT load "
                                 f"({design_kw:g} kW) needs more than soc_max_frac x energy_kwh")
        return self

    # -- resolved paths and component tables -------------------------------------------
    def resolve(self, path: str | Path) -> Path:
        p = Path(path)
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    @property
    def step_h(self) -> float:
        return self.planning.step_minutes / 60.0

    def zones_frame(self) -> pd.DataFrame:
        rows = []
        for z in self.zones:
            d = z.model_dump(exclude={"crah"})
            d.update({f"crah_{k}": v for k, v in z.crah.model_dump().items()})
            rows.append(d)
        return pd.DataFrame(rows).set_index("name")

    def pools_frame(self) -> pd.DataFrame:
        df = pd.DataFrame([p.model_dump() for p in self.server_pools]).set_index("name")
        df["capacity_units_per_h"] = df["servers"] * df["capacity_units_per_server"]
        return df

    def classes_frame(self) -> pd.DataFrame:
        return pd.DataFrame([c.model_dump() for c in self.workload_classes]).set_index("name")

    def edges_frame(self) -> pd.DataFrame:
        cols = list(EdgeSite.model_fields)
        rows = [e.model_dump(exclude={"carbon"}) for e in self.edge_sites]
        return pd.DataFrame(rows, columns=[c for c in cols if c != "carbon"]).set_index("name")

    @property
    def capacity_units_per_h(self) -> float:
        """Site capacity: every server at full load, in work units per hour."""
        return float(sum(p.servers * p.capacity_units_per_server for p in self.server_pools))

    @property
    def design_it_load_kw(self) -> float:
        return float(sum(z.design_it_load_kw for z in self.zones))

    def plant_spec(self) -> dict:
        """What the plant physically is (zones, pools, cooling, electrical), the basis of
        :meth:`plant_fingerprint`. Left out, because a learned model does not depend on them:
        operating limits (inlet and setpoint ranges, ramp limits, initial setpoints,
        redundancy floors), which classes a pool serves, units held in reserve, PDU ratings."""
        zone_ops = {"inlet_min_c", "inlet_max_c", "supply_setpoint_min_c", "supply_setpoint_max_c",
                    "supply_setpoint_initial_c", "supply_setpoint_max_step_c", "pdu_rated_kw"}
        zones = []
        for z in self.zones:
            d = z.model_dump(mode="json", exclude=zone_ops)
            d["crah"].pop("redundant_units", None)
            zones.append(d)
        cooling = self.cooling.model_dump(mode="json")
        for k in ("chw_setpoint_min_c", "chw_setpoint_max_c", "chw_setpoint_initial_c", "redundant_units"):
            cooling["chiller"].pop(k, None)
        electrical = self.electrical.model_dump(mode="json", exclude={"ups_redundant_modules"})
        pools = [p.model_dump(mode="json", exclude={"min_active_servers", "classes"}) for p in self.server_pools]
        return {"zones": zones, "server_pools": pools, "cooling": cooling, "electrical": electrical}

    def plant_fingerprint(self) -> str:
        """SHA-256 (16 hex digits) of :meth:`plant_spec`: equal for the same plant, whatever
        the site is called or where its data live."""
        blob = json.dumps(self.plant_spec(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _format_validation_error(path: Path, err: ValidationError, lines: dict | None = None) -> str:
    """One line per pydantic error: key path, line in the file where known, and the problem
    (pydantic's message, which never quotes the input value)."""
    lines = lines or {}
    out = [f"{path}: invalid site configuration ({err.error_count()} error(s))"]
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "<root>"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check spelling; keys carry units, e.g. _kw, _c)"
        line = next((lines[tuple(e["loc"][:j])] for j in range(len(e["loc"]), 0, -1) if tuple(e["loc"][:j]) in lines), None)
        out.append(f"  - {loc}" + (f" (line {line})" if line else "") + f": {msg}")
    return "\n".join(out)


# --- strict YAML loading ------------------------------------------------------------------------
# PyYAML reads YAML 1.1: a repeated key silently keeps the last value, `.inf`/`.nan` are floats,
# yes/no/on/off are booleans (which pydantic turns into 1/0 where a number belongs), 010 is
# octal 8 and 1:30 is base-60 90. A site file is refused for each, naming the key and line.
# A site file is a few KB: 4 MiB and 200,000 nodes with aliases expanded bound a data file or
# an alias bomb given as --site.
MAX_SITE_YAML_BYTES = 4 * 2**20
MAX_SITE_YAML_NODES = 200_000
_YAML_TAG = "tag:yaml.org,2002:"


def _dotted(keys: tuple) -> str:
    return ".".join(str(k) for k in keys) if keys else "the top level"


def _yaml_syntax_error(path: Path, exc: Exception, text: str) -> "ConfigError":
    """A YAML syntax error as line, column and the parser's problem. PyYAML's own message
    prints the offending line of the file, which is not repeated here."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or type(exc).__name__
    if mark is not None:
        where = f"line {mark.line + 1}, column {mark.column + 1}"
    elif getattr(exc, "position", None) is not None:  # ReaderError: a character YAML does not allow
        where = f"line {text.count(chr(10), 0, exc.position) + 1}"
        ch = exc.character
        problem = f"character #x{ch if isinstance(ch, int) else ord(ch):04x} is not allowed in YAML"
    else:
        where = "an unknown position"
    context = getattr(exc, "context", None)
    return ConfigError(f"{path}: not valid YAML at {where}: {str(problem)[:120]}" + (f" ({str(context)[:80]})" if context else ""))


def _expanded_size(node, memo: dict) -> int:
    """Nodes in the tree once aliases are expanded (what validation would walk)."""
    key = id(node)
    if key not in memo:
        memo[key] = 1  # a recursive alias counts once
        if isinstance(node, yaml.MappingNode):
            memo[key] = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            memo[key] = 1 + sum(_expanded_size(v, memo) for v in node.value)
    return memo[key]


def _check_yaml_nodes(path: Path, root) -> tuple[dict, dict]:
    """Refuse duplicate keys, non-finite floats and YAML 1.1 octal/base-60 numbers in the node tree.

    Returns the line of every key path ``{("zones", 0, "racks"): 23}`` and the key paths of
    boolean scalars ``{path: (text, line)}``, checked against the validated site later.
    """
    import math
    import re

    lines: dict[tuple, int] = {}
    bools: dict[tuple, tuple[str, int]] = {}
    seen: set[int] = set()
    stack = [(root, ())]
    while stack:
        node, keys = stack.pop()
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
            if id(node) in seen:  # an alias: checked where its anchor is
                continue
            seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for k, v in node.value:
                if k.tag == _YAML_TAG + "merge":
                    stack.append((v, keys))
                    continue
                line = k.start_mark.line + 1
                if not isinstance(k, yaml.ScalarNode):
                    raise ConfigError(f"{path}: line {line}: a key in {_dotted(keys)} must be a plain name")
                name = k.value
                if name in first:
                    raise ConfigError(f"{path}: duplicate key {name[:40]!r} in {_dotted(keys)} at line {line} (first at line "
                                      f"{first[name]}): YAML would silently keep the last one; remove one")
                first[name] = line
                lines[keys + (name,)] = line
                stack.append((v, keys + (name,)))
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                lines.setdefault(keys + (i,), v.start_mark.line + 1)
                stack.append((v, keys + (i,)))
        elif isinstance(node, yaml.ScalarNode):
            line, text = node.start_mark.line + 1, node.value
            plain = text.replace("_", "").lower().lstrip("+-")
            if node.tag == _YAML_TAG + "float" and (plain in (".inf", ".nan") or (":" not in plain and not math.isfinite(float(plain)))):
                raise ConfigError(f"{path}: {_dotted(keys)} (line {line}): {text[:20]!r} is not a finite number")
            if node.tag in (_YAML_TAG + "int", _YAML_TAG + "float") and (":" in text or re.fullmatch(r"[-+]?0[0-7_]+", text)):
                raise ConfigError(f"{path}: {_dotted(keys)} (line {line}): {text[:20]!r} is a YAML 1.1 "
                                  f"{'base-60' if ':' in text else 'octal'} number, not what it looks like; write it plainly or quote it")
            if node.tag == _YAML_TAG + "bool":
                bools[keys] = (text, line)
    return lines, bools


_MISSING = object()


def _admits_bool(keys: tuple) -> bool | None:
    """Whether the site schema takes a boolean at a key path (None where the path is unknown)."""
    import types
    import typing

    ann: object = SiteConfig
    for k in keys:
        while typing.get_origin(ann) in (typing.Union, types.UnionType):
            inner = [a for a in typing.get_args(ann) if a is not type(None)]
            if len(inner) != 1:
                return None
            ann = inner[0]
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            if not isinstance(k, str) or k not in ann.model_fields:
                return None
            ann = ann.model_fields[k].annotation
        elif typing.get_origin(ann) in (list, tuple) and isinstance(k, int):
            args = [a for a in typing.get_args(ann) if a is not Ellipsis]
            if not args:
                return None
            ann = args[0] if typing.get_origin(ann) is list or len(args) == 1 else (args[k] if k < len(args) else None)
        else:
            return None
    leaves = typing.get_args(ann) if typing.get_origin(ann) in (typing.Union, types.UnionType) else (ann,)
    if any(a is bool or a is typing.Any for a in leaves):
        return True
    return False if all(a in (int, float, type(None)) for a in leaves) else None


def _value_at(obj, keys: tuple):
    """The validated value at a key path (model field, list index, dict key), or _MISSING."""
    for k in keys:
        if isinstance(obj, BaseModel):
            obj = getattr(obj, k, _MISSING) if isinstance(k, str) and k in type(obj).model_fields else _MISSING
        elif isinstance(obj, (list, tuple)) and isinstance(k, int) and 0 <= k < len(obj):
            obj = obj[k]
        elif isinstance(obj, dict) and k in obj:
            obj = obj[k]
        else:
            return _MISSING
        if obj is _MISSING:
            return _MISSING
    return obj


def _non_finite(obj, keys: tuple = ()):
    """Key paths of every float in the validated site that is inf or nan."""
    import math

    if isinstance(obj, BaseModel):
        for name in type(obj).model_fields:
            yield from _non_finite(getattr(obj, name), keys + (name,))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _non_finite(v, keys + (i,))
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _non_finite(v, keys + (k,))
    elif isinstance(obj, float) and not math.isfinite(obj):
        yield keys


def _read_site_yaml(path: Path) -> tuple[object, dict, dict]:
    """The parsed YAML of a site file, strictly: its lines per key path and boolean scalars.

    Only a regular UTF-8/UTF-16 text file is read (a FIFO, directory or binary file is a
    ConfigError naming the file); syntax errors name line and column.
    """
    try:
        text = read_text(path, max_bytes=MAX_SITE_YAML_BYTES)
    except DataError as exc:
        raise ConfigError(str(exc)) from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise _yaml_syntax_error(path, exc, text) from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a site configuration") from None
    if root is None:
        raise ConfigError(f"{path}: the file is empty; expected a site configuration mapping")
    try:
        size = _expanded_size(root, {})
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a site configuration") from None
    if size > MAX_SITE_YAML_NODES:
        raise ConfigError(f"{path}: {size:,} values once aliases are expanded (limit {MAX_SITE_YAML_NODES:,}): not a site configuration")
    lines, bools = _check_yaml_nodes(path, root)
    loader = yaml.SafeLoader("")
    try:
        raw = loader.construct_document(root)
    except yaml.YAMLError as exc:
        raise _yaml_syntax_error(path, exc, text) from None
    except (ValueError, TypeError, OverflowError) as exc:  # e.g. a timestamp that is not a date
        raise ConfigError(f"{path}: a value cannot be read ({type(exc).__name__})") from None
    finally:
        loader.dispose()
    return raw, lines, bools


def load_site(path: str | Path, **overrides: object) -> SiteConfig:
    """Read and validate a site YAML; ``overrides`` replace top-level keys (e.g. ``carbon``).

    Strict beyond pydantic: duplicate keys, ``.inf``/``.nan``, YAML 1.1 booleans where a
    number belongs (``yes`` would be 1) and octal/base-60 numbers are errors naming the key
    path and line.
    """
    path = Path(path)
    raw, lines, bools = _read_site_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping (key: value lines) at the top level")
    for keys, (text, line) in sorted(bools.items(), key=lambda kv: kv[1][1]):
        if _admits_bool(keys) is False:
            raise ConfigError(f"{path}: {_dotted(keys)} (line {line}): {text[:10]!r} is a YAML boolean where a number "
                              "belongs (it would be read as 1 or 0); write the number")
    raw.update({k: v for k, v in overrides.items() if v is not None})
    return validate_yaml_model(SiteConfig, raw, path, lines, bools)


def validate_yaml_model(model_cls, raw: dict, path: Path, lines: dict, bools: dict, what: str = "site configuration"):
    """``raw`` (from :func:`_read_site_yaml`) validated as ``model_cls``, with ``base_dir`` the file's folder.

    Pydantic's errors, a YAML boolean where a number belongs and a non-finite number are
    ConfigErrors naming the file, the key path and the line.
    """
    raw["base_dir"] = path.parent.resolve()
    try:
        obj = model_cls.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(path, exc, lines).replace("site configuration", what)) from None
    for keys, (text, line) in sorted(bools.items(), key=lambda kv: kv[1][1]):
        value = _value_at(obj, keys)
        if value is not _MISSING and not isinstance(value, bool):
            raise ConfigError(f"{path}: {_dotted(keys)} (line {line}): {text[:10]!r} is a YAML boolean where a number "
                              "belongs (it would be read as 1 or 0); write the number")
    for keys in _non_finite(obj):
        where = f" (line {lines[keys]})" if keys in lines else ""
        raise ConfigError(f"{path}: {_dotted(keys)}{where}: not a finite number (inf or nan)")
    return obj
