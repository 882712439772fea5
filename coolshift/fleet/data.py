"""Load a fleet's data and build the arrays of :class:`coolshift.optimizer.fleet.FleetProblem`.

I/O lives here (readers from :mod:`coolshift.io`, a reader for the SustainCluster price files
and for the provider transfer-cost matrices); the numbers are computed by small pure functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from coolshift.config import ConfigError, DataSource
from coolshift.fleet.commissioning import learn_site_overhead
from coolshift.fleet_config import FIBRE_KM_PER_MS, FleetConfig, FleetCoolingModel, great_circle_km
from coolshift.io.carbon import read_carbon
from coolshift.io.checks import DataError, parse_timestamps, read_csv_text, require_columns, to_numeric
from coolshift.io.site_data import gap_policy_for, to_step
from coolshift.io.weather import read_weather
from coolshift.io.workload import read_workload
from coolshift.optimizer.fleet import FleetProblem
from coolshift.schema import CARBON_GCO2_PER_KWH, CPU_UTIL, TEMP_C, WETBULB_C

__all__ = ["FleetData", "load_fleet_data", "overhead_frac", "planner_overhead", "PlannerOverhead", "rtt_ms", "transfer_delay_h", "read_price", "read_cost_matrix",
           "build_problem"]

PRICE_TIME, PRICE_COL = "Datetime (UTC)", "Price (USD/MWh)"
PRICE_RANGE_USD_PER_MWH = (-1000.0, 20000.0)  # beyond the price caps of the markets in the data (e.g. ERCOT 5,000 $/MWh in 2022)


def overhead_frac(wetbulb_c, model: FleetCoolingModel) -> np.ndarray:
    """Planner's cooling-and-losses overhead per IT kW at the given wet-bulb [degC] (linear ramp)."""
    w = np.asarray(wetbulb_c, dtype=float)
    ramp = np.clip((w - model.free_below_wetbulb_c) / (model.mech_above_wetbulb_c - model.free_below_wetbulb_c), 0.0, 1.0)
    return model.free_frac + (model.mech_frac - model.free_frac) * ramp


def rtt_ms(distance_km: float, route_factor: float) -> float:
    """Round-trip propagation time [ms] over a fibre route ``route_factor`` x the great circle."""
    return 2.0 * distance_km * route_factor / FIBRE_KM_PER_MS


def transfer_delay_h(rtt: float, job_gb: float, throughput_gbps: float) -> int:
    """Hours before moved work can start: propagation (half the RTT) plus serialisation of a
    job's data at the link's throughput (SustainCluster's transfer-delay model), rounded up
    to the planning step (so at least one hour for any remote site)."""
    seconds = rtt / 2000.0 + job_gb * 8.0 / throughput_gbps
    return max(1, math.ceil(seconds / 3600.0))


def read_price(path) -> pd.DataFrame:
    """SustainCluster's standardised price CSV -> ``usd_per_mwh`` on a UTC index."""
    path = Path(path)
    frame = read_csv_text(path)
    require_columns(frame.columns, [PRICE_TIME, PRICE_COL], path)
    idx = parse_timestamps(frame[PRICE_TIME], path, PRICE_TIME, assume_utc=True)
    vals = to_numeric(frame, PRICE_COL, path)
    bad = np.flatnonzero(~np.isfinite(vals.to_numpy()) | (vals.to_numpy() < PRICE_RANGE_USD_PER_MWH[0])
                         | (vals.to_numpy() > PRICE_RANGE_USD_PER_MWH[1]))
    if bad.size:
        raise DataError(path, f"price outside {PRICE_RANGE_USD_PER_MWH} USD/MWh or missing", column=PRICE_COL, row=int(bad[0]) + 2)
    out = pd.DataFrame({"usd_per_mwh": vals.to_numpy()}, index=pd.DatetimeIndex(idx, name="timestamp"))
    out.attrs.update({"source": str(path), "step": pd.Timedelta("1h")})
    return out


def read_cost_matrix(path) -> pd.DataFrame:
    """A provider's inter-region transfer price matrix [USD/GB], row = from, column = to."""
    path = Path(path)
    frame = read_csv_text(path, index_col=0)
    for col in frame.columns:
        frame[col] = to_numeric(frame, col, path)
    if (frame.to_numpy() < 0).any() or not np.isfinite(frame.to_numpy()).all():
        raise DataError(path, "transfer prices must be finite and non-negative USD/GB")
    return frame


def _hourly(frame: pd.DataFrame, column: str, start: pd.Timestamp, hours: int, how: str, path) -> np.ndarray:
    end = start + pd.Timedelta(hours=hours)
    if frame.attrs.get("step") is None and len(frame.index) > 1:
        frame.attrs["step"] = frame.index[1] - frame.index[0]
    out = to_step(frame[[column]], pd.Timedelta("1h"), how, start, end, path=path)[column].to_numpy(dtype=float)
    if not np.isfinite(out).all():
        raise DataError(path, f"missing values inside the fleet period {start.isoformat()} + {hours} h", column=column)
    return out


@dataclass
class FleetData:
    """The fleet's time series on the planning grid (S sites x T hours) and per-class demand."""

    index: pd.DatetimeIndex
    ci_g_per_kwh: np.ndarray
    price_usd_per_mwh: np.ndarray
    temp_c: np.ndarray
    wetbulb_c: np.ndarray
    demand_units: np.ndarray     # (C, T)
    weather_file: tuple = ()     # per site (temp_c, wetbulb_c) over its whole weather file: commissioning hours


def _source(fleet: FleetConfig, src: DataSource) -> Path:
    return fleet.resolve(src.path)


def load_fleet_data(fleet: FleetConfig) -> FleetData:
    """Read every site's carbon, weather and price, and every class's demand, for the period."""
    start = pd.Timestamp(fleet.start)
    start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")
    t_n = fleet.hours
    index = pd.date_range(start, periods=t_n, freq="h", name="timestamp")
    ci, price, temp, wb, whole = [], [], [], [], []
    for site in fleet.sites:
        p = _source(fleet, site.carbon)
        c = read_carbon(p, format=site.carbon.format, column=site.carbon.column, scale=site.carbon.scale,
                        gap_policy=gap_policy_for(site.carbon))
        ci.append(_hourly(c, CARBON_GCO2_PER_KWH, start, t_n, "hold", p))
        p = _source(fleet, site.weather)
        w = read_weather(p, format=site.weather.format, latitude_deg=site.latitude_deg, gap_policy=gap_policy_for(site.weather))
        temp.append(_hourly(w, TEMP_C, start, t_n, "interpolate", p))
        wb.append(_hourly(w, WETBULB_C, start, t_n, "interpolate", p))
        whole.append((w[TEMP_C].to_numpy(dtype=float), w[WETBULB_C].to_numpy(dtype=float)))
        if site.price is not None:
            p = _source(fleet, site.price)
            price.append(_hourly(read_price(p), "usd_per_mwh", start, t_n, "hold", p))
        else:
            price.append(np.zeros(t_n))
    demand = []
    for w in fleet.workloads:
        if w.trace is None:
            demand.append(np.full(t_n, w.units_per_h))
            continue
        p = _source(fleet, w.trace)
        tr = read_workload(p, format=w.trace.format, start=w.trace.start, gap_policy=gap_policy_for(w.trace))
        util = tr[CPU_UTIL]
        # the origin's local day: the value at UTC hour t is the trace's at local hour t + shift
        shifted = pd.DataFrame({CPU_UTIL: util.to_numpy()}, index=util.index - pd.Timedelta(hours=w.trace_shift_h))
        shifted.attrs["step"] = tr.attrs.get("step") or (util.index[1] - util.index[0])
        shape = _hourly(shifted, CPU_UTIL, start, t_n, "hold", p) * w.trace.scale
        if shape.mean() <= 0:
            raise DataError(p, "the trace is zero over the fleet period", column=CPU_UTIL)
        demand.append(w.units_per_h * shape / shape.mean())
    return FleetData(index, np.array(ci), np.array(price), np.array(temp), np.array(wb), np.array(demand), tuple(whole))


@dataclass(frozen=True)
class PlannerOverhead:
    """Each site's planner model on the planning grid: marginal overhead (S, T) [kW per IT kW],
    fixed draw (S, T) [kW], upper-load hinge (S,) [IT kW, inf = none] and its slope (S, T)."""

    frac: np.ndarray
    fixed_kw: np.ndarray
    hinge_kw: np.ndarray
    hinge_frac: np.ndarray


def planner_overhead(fleet: FleetConfig, data: FleetData) -> PlannerOverhead:
    """Learned from each site's commissioning telemetry (``cooling_model.source: learned``) or
    the hand-set wet-bulb ramp (``ramp``, no fixed draw, no hinge)."""
    z = np.zeros_like(data.temp_c)
    out = PlannerOverhead(z.copy(), z.copy(), np.full(len(fleet.sites), np.inf), z.copy())
    for s, site in enumerate(fleet.sites):
        if site.cooling_model.source == "ramp" or not data.weather_file:
            out.frac[s] = overhead_frac(data.wetbulb_c[s], site.cooling_model)
            continue
        model = learn_site_overhead(site, *data.weather_file[s], seed=s)
        out.frac[s] = model.overhead_frac(data.wetbulb_c[s], data.temp_c[s])
        out.fixed_kw[s] = model.fixed_kw(data.wetbulb_c[s], data.temp_c[s])
        out.hinge_kw[s] = model.hinge_kw_
        out.hinge_frac[s] = model.hinge_frac(data.wetbulb_c[s])
    return out


def build_problem(fleet: FleetConfig, data: FleetData) -> FleetProblem:
    """The LP's arrays from the fleet file and its data (residency, latency, delays, transfer prices)."""
    names = [s.name for s in fleet.sites]
    s_n = len(names)
    net = fleet.network
    rtt = np.zeros((s_n, s_n))
    for i, a in enumerate(fleet.sites):
        for j, b in enumerate(fleet.sites):
            if i != j:
                rtt[i, j] = rtt_ms(great_circle_km(a.latitude_deg, a.longitude_deg, b.latitude_deg, b.longitude_deg), net.route_factor)
    for pair in net.latency:
        i, j = names.index(pair.a), names.index(pair.b)
        rtt[i, j] = rtt[j, i] = pair.rtt_ms
    usd = np.zeros((s_n, s_n))
    if net.transfer_cost is not None:
        path = fleet.resolve(net.transfer_cost.path)
        m = read_cost_matrix(path)
        for i, a in enumerate(fleet.sites):
            for j, b in enumerate(fleet.sites):
                if i == j:
                    continue
                if a.cloud_region not in m.index or b.cloud_region not in m.columns:
                    missing = a.cloud_region if a.cloud_region not in m.index else b.cloud_region
                    k = i if missing == a.cloud_region else j
                    raise ConfigError(f"sites.{k}.cloud_region: {missing!r} is not a region of {path.name} "
                                      f"(regions: {', '.join(m.columns[:8])}, ...)")
                usd[i, j] = float(m.loc[a.cloud_region, b.cloud_region])
    c_n = len(fleet.workloads)
    origin = np.array([names.index(w.origin) for w in fleet.workloads], dtype=int)
    allowed = np.zeros((c_n, s_n), dtype=bool)
    delay = np.zeros((s_n, s_n), dtype=int)
    job_gb = max((w.job_gb for w in fleet.workloads), default=1.0)
    for i in range(s_n):
        for j in range(s_n):
            if i != j:
                delay[i, j] = transfer_delay_h(rtt[i, j], job_gb, net.throughput_gbps)
    for c, w in enumerate(fleet.workloads):
        for s, site in enumerate(fleet.sites):
            ok = w.allowed_regions is None or site.region in w.allowed_regions
            if w.kind == "interactive":
                ok = ok and rtt[origin[c], s] <= w.max_latency_ms
            allowed[c, s] = ok
    ov = planner_overhead(fleet, data)
    link = np.full((s_n, s_n), net.throughput_gbps * 3600.0 / 8.0)
    return FleetProblem(
        sites=tuple(names), classes=tuple(w.name for w in fleet.workloads), kind=tuple(w.kind for w in fleet.workloads),
        origin=origin, demand_units=data.demand_units, gb_per_unit=np.array([w.gb_per_unit for w in fleet.workloads]),
        deadline_h=np.array([w.deadline_h or 0 for w in fleet.workloads], dtype=int), allowed=allowed,
        ci_g_per_kwh=data.ci_g_per_kwh, price_usd_per_mwh=data.price_usd_per_mwh, overhead_frac=ov.frac,
        servers=np.array([s.servers for s in fleet.sites], dtype=float),
        units_per_server=np.array([s.capacity_units_per_server for s in fleet.sites]),
        idle_kw=np.array([s.idle_w / 1000.0 for s in fleet.sites]),
        kw_per_unit=np.array([(s.peak_w - s.idle_w) / 1000.0 / s.capacity_units_per_server for s in fleet.sites]),
        min_active=np.array([math.ceil(s.min_active_frac * s.servers) for s in fleet.sites], dtype=float),
        delay_h=delay, usd_per_gb=usd, link_gb_per_h=link, transfer_kwh_per_gb=net.transfer_kwh_per_gb,
        cost_weight=1.0 if fleet.objective == "cost" else 0.0, carbon_weight=0.0 if fleet.objective == "cost" else 1.0,
        routing_block_h=fleet.routing_block_h, fixed_kw=ov.fixed_kw, hinge_kw=ov.hinge_kw, hinge_frac=ov.hinge_frac,
    )
