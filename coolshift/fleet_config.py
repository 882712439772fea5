"""A fleet of sites: the sites in their grid regions, the network between them, where each
workload class originates and where its data may go (data residency).

Strict like the site file (:mod:`coolshift.config`): unknown keys, duplicate keys, YAML
booleans where numbers belong and non-finite numbers are errors naming file, key and line.
Cross-references (a workload's origin, a residency region, a latency pair, a provider region
missing from the transfer-cost matrix) are checked here too, naming the key.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from coolshift.config import ConfigError, DataSource, _read_site_yaml, _Strict, validate_yaml_model

__all__ = [
    "TRANSFER_KWH_PER_GB", "FIBRE_KM_PER_MS", "ROUTE_FACTOR",
    "FleetCoolingModel", "FleetPlant", "FleetSite", "FleetNetwork", "LatencyPair", "FleetWorkload",
    "FleetConfig", "load_fleet", "great_circle_km",
]

# Energy of moving data between regions: 0.06 kWh/GB (Aslan, Mayers, Koomey, France 2017,
# "Electricity intensity of internet data transmission", J. Ind. Ecol. 22(4), doi:10.1111/jiec.12630,
# the 2015 figure), the value SustainCluster uses.
TRANSFER_KWH_PER_GB = 0.06
# Light in silica fibre travels at c / 1.468 (group index of SMF-28 at 1550 nm, Corning datasheet):
# 204 km per ms; one-way propagation delay = route length / 204 km/ms.
FIBRE_KM_PER_MS = 204.0
# Fibre routes are longer than the great circle: Singla et al., "The Internet at the speed of
# light", HotNets 2014, measured median fibre-path inflation of ~1.5-2x over the geodesic
# between city pairs; 1.5 is the optimistic end (a provider backbone).
ROUTE_FACTOR = 1.5
EARTH_RADIUS_KM = 6371.0  # IUGG mean Earth radius


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine distance [km] between two points given in degrees."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


class FleetCoolingModel(_Strict):
    """The planner's linear cooling-and-losses model: overhead kW per IT kW.

    ``source: learned`` (default): each site's own model, fitted to commissioning telemetry of
    its plant over its weather file (:mod:`coolshift.fleet.commissioning`,
    :class:`coolshift.models.overhead.SiteOverheadModel`): a marginal overhead and a fixed draw,
    both following wet-bulb and dry-bulb. ``source: ramp``: the ramp below, set by hand.

    Ramp: ``overhead = free_frac`` below ``free_below_wetbulb_c`` (economiser), ``mech_frac`` above
    ``mech_above_wetbulb_c`` (chillers carry all), linear in between. Defaults: ASHRAE 90.4-2019
    Table 6.5 gives maximum annualised mechanical load components of about 0.17-0.30 kW per IT kW
    across climate zones (the hot end here 0.30) and electrical loss components of ~0.05-0.10
    (UPS and distribution); a full economiser leaves fans and pumps, ~0.08 with losses.
    The simulator used for evaluation does not use this model (it computes the plant).
    """

    source: Literal["learned", "ramp"] = "learned"
    free_frac: float = Field(0.08, ge=0, le=2)
    mech_frac: float = Field(0.30, ge=0, le=2)
    free_below_wetbulb_c: float = 8.0
    mech_above_wetbulb_c: float = 20.0

    @model_validator(mode="after")
    def _order(self) -> "FleetCoolingModel":
        if not self.free_below_wetbulb_c < self.mech_above_wetbulb_c:
            raise ValueError("cooling_model: free_below_wetbulb_c must be below mech_above_wetbulb_c")
        if self.mech_frac < self.free_frac:
            raise ValueError("cooling_model: mech_frac must not be below free_frac")
        return self


class FleetPlant(_Strict):
    """Each site's cooling plant for the physics evaluation (scaled from the design IT load).

    Defaults follow the example site ``configs/sites/sanjose_colo_2mw.yaml`` scaled per kW of
    design IT load: water-cooled chillers rated at COP 6.1 (ASHRAE 90.1-2019 Table 6.8.1-3 path A),
    chiller capacity 1.4 x design IT (2,800 kW for 2,000 kW), pumps 0.044 kW and tower fans
    0.0225 kW per design IT kW (ASHRAE 90.1-2019 App. G baselines: 88 and 45 kW for 2,000 kW),
    CRAH units of 12 m3/s and 11 kW each (Vertiv Liebert PCW class), 16 per 2,000 kW.
    """

    chiller_type: Literal["water_cooled", "air_cooled"] = "water_cooled"
    rated_cop: float = Field(6.1, gt=1, le=15)
    chw_setpoint_c: float = Field(12.0, ge=5, le=20)
    economiser: Literal["none", "waterside", "airside"] = "waterside"
    economiser_approach_c: float = Field(4.0, ge=0, le=15)
    supply_air_c: float = Field(22.0, ge=15, le=27)
    chiller_capacity_per_it_kw: float = Field(1.4, gt=0)
    pump_kw_per_it_kw: float = Field(0.044, ge=0)
    tower_fan_kw_per_it_kw: float = Field(0.0225, ge=0)
    crah_units_per_mw: float = Field(8.0, gt=0)
    crah_rated_airflow_m3_s: float = Field(12.0, gt=0)
    crah_rated_fan_kw: float = Field(11.0, gt=0)
    electrical_loss_frac: float = Field(0.05, ge=0, le=0.3, description="UPS + PDU losses per IT kW (ASHRAE 90.4 ELC range)")


class FleetSite(_Strict):
    """One data centre: its grid region, data, servers and cooling."""

    name: str = Field(min_length=1, max_length=64)
    region: str = Field(min_length=1, description="grid region / zone (e.g. US-CAL-CISO); residency rules name these")
    cloud_region: str = Field(min_length=1, description="provider region in the transfer-cost matrix (e.g. us-west-1)")
    latitude_deg: float = Field(ge=-90, le=90)
    longitude_deg: float = Field(ge=-180, le=180)
    carbon: DataSource
    weather: DataSource
    price: DataSource | None = None
    servers: int = Field(ge=1)
    capacity_units_per_server: float = Field(1.0, gt=0, description="work units one server does in an hour at 100 %")
    idle_w: float = Field(gt=0)
    peak_w: float = Field(gt=0)
    # 11-point SPECpower curve (fraction of peak at 0, 10, .. 100 % load); default linear.
    power_curve_frac: list[float] | None = Field(None, min_length=11, max_length=11)
    min_active_frac: float = Field(0.1, ge=0, le=1, description="servers that stay on (storage, control plane)")
    cooling_model: FleetCoolingModel = FleetCoolingModel()
    plant: FleetPlant = FleetPlant()

    @model_validator(mode="after")
    def _power(self) -> "FleetSite":
        if self.idle_w >= self.peak_w:
            raise ValueError(f"site {self.name}: idle_w must be below peak_w")
        if self.power_curve_frac is not None:
            c = self.power_curve_frac
            if any(b < a for a, b in zip(c, c[1:])) or not c[0] > 0 or abs(c[-1] - 1.0) > 1e-6:
                raise ValueError(f"site {self.name}: power_curve_frac must rise from a positive idle value to 1.0")
        return self

    @property
    def design_it_kw(self) -> float:
        return self.servers * self.peak_w / 1000.0


class LatencyPair(_Strict):
    """A measured round-trip time between two sites (overrides the distance estimate)."""

    a: str
    b: str
    rtt_ms: float = Field(gt=0)


class FleetNetwork(_Strict):
    """The network between the sites: transfer energy, provider transfer prices, latency, throughput."""

    transfer_kwh_per_gb: float = Field(TRANSFER_KWH_PER_GB, ge=0)
    transfer_cost: DataSource | None = Field(None, description="provider matrix of USD/GB (row = from, column = to)")
    throughput_gbps: float = Field(10.0, gt=0, description="per site pair, each direction (a provisioned inter-region link)")
    route_factor: float = Field(ROUTE_FACTOR, ge=1)
    latency: list[LatencyPair] = []


class FleetWorkload(_Strict):
    """A workload class: where it originates, how much, how urgent, where it may run.

    ``units_per_h`` is the mean demand; ``trace`` (optional, a CPU-utilisation trace such as the
    SustainDC hourly files) shapes it over time, normalised to mean 1 over the period and shifted
    by ``trace_shift_h`` (the origin's UTC offset, so each origin sees its own working day).
    """

    name: str = Field(min_length=1, max_length=64)
    kind: Literal["batch", "interactive"]
    origin: str
    units_per_h: float = Field(gt=0)
    trace: DataSource | None = None
    trace_shift_h: int = Field(0, ge=-24, le=24)
    gb_per_unit: float = Field(0.0, ge=0, description="data moved with one unit of work when it runs away from its origin")
    job_gb: float = Field(1.0, ge=0, description="size of a typical job's data (serialisation delay)")
    deadline_h: int | None = Field(None, ge=1, le=168)
    max_latency_ms: float | None = Field(None, gt=0, description="interactive: round trip origin to serving site")
    allowed_regions: list[str] | None = Field(None, description="data residency: the grid regions it may run in (None = any)")

    @model_validator(mode="after")
    def _kind(self) -> "FleetWorkload":
        if self.kind == "batch" and self.deadline_h is None:
            raise ValueError(f"workload {self.name}: a batch class needs deadline_h")
        if self.kind == "interactive" and self.max_latency_ms is None:
            raise ValueError(f"workload {self.name}: an interactive class needs max_latency_ms")
        return self


class FleetConfig(_Strict):
    """The fleet file: sites, network, workloads and the planning period."""

    name: str
    description: str = ""
    start: str = Field(description="period start, ISO 8601 UTC")
    hours: int = Field(168, ge=2, le=24 * 31)
    objective: Literal["carbon", "cost"] = "carbon"
    # Routing shares are set per block of this many hours (the sites schedule hourly within
    # it). Daily shares (24) cost the example fleets ~0.1 % against hourly routing and let the
    # decomposition by site converge (docs/fleet.md).
    routing_block_h: int = Field(24, ge=1, le=168)
    sites: list[FleetSite] = Field(min_length=1)
    network: FleetNetwork = FleetNetwork()
    workloads: list[FleetWorkload] = Field(min_length=1)
    base_dir: Path

    @model_validator(mode="after")
    def _references(self) -> "FleetConfig":
        names = [s.name for s in self.sites]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"sites: duplicate site name(s) {dup}")
        wnames = [w.name for w in self.workloads]
        dup = sorted({n for n in wnames if wnames.count(n) > 1})
        if dup:
            raise ValueError(f"workloads: duplicate workload name(s) {dup}")
        regions = {s.region for s in self.sites}
        for i, w in enumerate(self.workloads):
            if w.origin not in names:
                raise ValueError(f"workloads.{i}.origin: {w.origin!r} is not a site (sites: {names})")
            for r in w.allowed_regions or []:
                if r not in regions:
                    raise ValueError(f"workloads.{i}.allowed_regions: {r!r} is no site's region (regions: {sorted(regions)})")
        for i, p in enumerate(self.network.latency):
            for end in (p.a, p.b):
                if end not in names:
                    raise ValueError(f"network.latency.{i}: {end!r} is not a site")
        return self

    def site(self, name: str) -> FleetSite:
        return next(s for s in self.sites if s.name == name)

    def resolve(self, rel: str) -> Path:
        p = Path(rel)
        return p if p.is_absolute() else (self.base_dir / p)


def load_fleet(path: str | Path) -> FleetConfig:
    """Read and validate a fleet YAML (strictly, as :func:`coolshift.config.load_site`)."""
    path = Path(path)
    raw, lines, bools = _read_site_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping (key: value lines) at the top level")
    return validate_yaml_model(FleetConfig, raw, path, lines, bools, what="fleet configuration")
