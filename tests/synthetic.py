"""Synthetic sites, coefficients and forecasts: test fixtures, also used by benchmarks (labelled synthetic).

Nothing here is a real site: the shapes (zones, pools, classes) are what the
benchmark sizes ask for; the numbers are plausible (SPECpower-class servers, a
COP ~5 plant) so the LP has realistic conditioning.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from coolshift.config import SiteConfig
from coolshift.coefficients import PlantCoefficients

__all__ = ["synthetic_site", "linear_coefficients", "synthetic_forecast", "tiny_site", "zero_coefficients", "tiny_forecast",
           "split_pools"]

_DUMMY = {"path": "synthetic.csv", "format": "canonical"}


def synthetic_site(
    zones: int = 4,
    pools: int = 20,
    edges: int = 1,
    step_minutes: int = 15,
    horizon_h: int = 24,
    seed: int = 0,
    power_cap_kw: float | None = None,
    **planning,
) -> SiteConfig:
    """A synthetic site: ``pools`` spread over ``zones``; web/batch/analytics classes; edges."""
    rng = np.random.default_rng(seed)
    zl = [
        {
            "name": f"z{z:03d}",
            "racks": 50,
            "design_it_load_kw": 400.0,
            "room_volume_m3": 2000.0,
            "crah": {"count": 4, "rated_airflow_m3_s": 10.0, "rated_fan_power_kw": 8.0},
        }
        for z in range(zones)
    ]
    pl = []
    for p in range(pools):
        idle = float(rng.uniform(80, 130))
        pl.append(
            {
                "name": f"p{p:04d}",
                "zone": f"z{p % zones:03d}",
                "servers": int(rng.integers(200, 600)),
                "idle_w": idle,
                "peak_w": float(idle * rng.uniform(3.0, 4.0)),
                "sleep_w": 8.0,
                "capacity_units_per_server": float(rng.uniform(0.7, 1.2)),
                "min_active_servers": int(rng.integers(10, 60)),
                "classes": ["web", "batch"] if p % 2 == 0 else ["batch", "analytics"],
            }
        )
    # size each zone for its pools: design IT load = the pools' peak power + 10 %
    for z in zl:
        peak_kw = sum(p["servers"] * p["peak_w"] for p in pl if p["zone"] == z["name"]) / 1000.0
        z["design_it_load_kw"] = max(1.1 * peak_kw, 1.0)
        z["racks"] = max(1, int(round(z["design_it_load_kw"] / 8.0)))
    el = [
        {
            "name": f"edge{e}",
            "grid_region": "SYN",
            "carbon": _DUMMY,
            "capacity_units_per_h": 200.0,
            "static_kw": 20.0,
            "kw_per_unit_per_h": 0.4,
            "pue": 1.4,
            "latency_ms": 40.0,
            "network_kwh_per_gb": 0.06,
        }
        for e in range(edges)
    ]
    return SiteConfig.model_validate(
        {
            "name": f"synthetic_{zones}z_{pools}p",
            "latitude_deg": 0.0,
            "longitude_deg": 0.0,
            "grid_region": "SYN",
            "carbon": _DUMMY,
            "weather": _DUMMY,
            "workload": _DUMMY,
            "planning": {"step_minutes": step_minutes, "horizon_h": horizon_h, "site_power_cap_kw": power_cap_kw, **planning},
            "zones": zl,
            "server_pools": pl,
            "workload_classes": [
                {"name": "web", "kind": "interactive", "share": 0.5},
                {"name": "batch", "kind": "batch", "share": 0.3, "deadline_h": 6, "offloadable": True,
                 "max_latency_ms": 200, "data_gb_per_unit": 0.5},
                {"name": "analytics", "kind": "batch", "share": 0.2, "deadline_h": 12},
            ],
            "cooling": {"chiller": {"rated_capacity_kw": 5000.0, "rated_cop": 6.0}, "pump_rated_kw": 50.0},
            "electrical": {"ups_rated_kw": 5000.0},
            "edge_sites": el,
        }
    )


def linear_coefficients(
    site: SiteConfig,
    index: pd.DatetimeIndex,
    cooling_per_it: float = 0.2,
    cooling_per_supply_c: float = -0.004,
    cooling_per_chw_c: float = -2.0,
    cooling_const_kw: float | None = None,
    inlet_const_c: float = 2.0,
    inlet_per_supply_c: float = 1.0,
    inlet_per_it_kw: float | None = None,
    it_fan_kw_per_c: float = 0.5,
    facility_const_kw: float = 10.0,
    facility_per_it_kw: float = 1.03,
    temp_c: np.ndarray | None = None,
) -> PlantCoefficients:
    """Hand-set plant coefficients (constant per step, or cooling rising with ``temp_c``).

    ``cooling_per_supply_c`` is per kW of zone design load per degC (scaled by each zone's
    design IT load); ``inlet_per_it_kw`` defaults to 4 degC at the zone's design load.
    """
    zones = [z.name for z in site.zones]
    n = len(index)
    design = np.array([z.design_it_load_kw for z in site.zones])
    if cooling_const_kw is None:  # keeps cooling positive across the setpoint ranges
        cooling_const_kw = 0.02 * design.sum() - cooling_per_supply_c * design.sum() * 27.0 - cooling_per_chw_c * 18.0
    cpi = np.full(n, cooling_per_it)
    if temp_c is not None:  # warmer outside air, less economiser: cooling per IT kW rises
        cpi = cooling_per_it * (1.0 + 0.02 * (np.asarray(temp_c) - 15.0))
    frame = lambda v: pd.DataFrame(np.broadcast_to(v, (n, len(zones))).copy(), index=index, columns=zones)  # noqa: E731
    ipi = 4.0 / design if inlet_per_it_kw is None else np.full(len(zones), inlet_per_it_kw)
    return PlantCoefficients(
        cooling_const_kw=pd.Series(cooling_const_kw, index=index),
        cooling_per_it_kw=frame(cpi[:, None]),
        cooling_per_supply_c=frame(cooling_per_supply_c * design),
        cooling_per_chw_c=pd.Series(cooling_per_chw_c, index=index),
        inlet_const_c=frame(inlet_const_c),
        inlet_per_supply_c=frame(inlet_per_supply_c),
        inlet_per_it_kw=frame(ipi),
        it_fan_kw_per_c=frame(it_fan_kw_per_c * design / 1000.0),
        facility_const_kw=pd.Series(facility_const_kw, index=index),
        facility_per_it_kw=pd.Series(facility_per_it_kw, index=index),
        model_version="synthetic",
    )


def synthetic_forecast(site: SiteConfig, start="2022-07-01", seed: int = 0, load_frac: float = 0.5) -> pd.DataFrame:
    """Diurnal intensity and demand over the site's horizon, columns as ``load_site_data``."""
    rng = np.random.default_rng(seed)
    n = int(site.planning.horizon_h * 60 / site.planning.step_minutes)
    idx = pd.date_range(pd.Timestamp(start, tz="UTC"), periods=n, freq=f"{site.planning.step_minutes}min", name="timestamp")
    h = idx.hour.to_numpy() + idx.minute.to_numpy() / 60.0
    gco2 = 300 + 120 * np.cos(2 * np.pi * (h - 2) / 24) + rng.normal(0, 10, n)
    util = np.clip(load_frac * (1 + 0.3 * np.sin(2 * np.pi * (h - 9) / 24)) + rng.normal(0, 0.02, n), 0.05, 0.95)
    cap = site.capacity_units_per_h
    out = {"gco2_per_kwh": gco2, "temp_c": 15 + 8 * np.sin(2 * np.pi * (h - 9) / 24), "cpu_util": util}
    for e in site.edge_sites:
        out[f"gco2_per_kwh__{e.name}"] = 150 + 80 * np.cos(2 * np.pi * (h - 14) / 24)
    for c in site.workload_classes:
        out[f"{c.name}_units_per_h"] = util * cap * c.share
    return pd.DataFrame(out, index=idx)


def tiny_site(
    classes: list[dict] | None = None,
    servers: int = 10,
    min_active_servers: int = 0,
    idle_w: float = 100.0,
    peak_w: float = 300.0,
    edges: list[dict] | None = None,
    step_minutes: int = 60,
    horizon_h: int = 2,
    inlet_max_c: float = 27.0,
    **planning,
) -> SiteConfig:
    """One zone, one pool (linear power curve, no sleep power, instant boot): hand-checkable LPs."""
    classes = classes or [{"name": "batch", "kind": "batch", "share": 1.0, "deadline_h": horizon_h}]
    el = [
        {"grid_region": "SYN", "carbon": _DUMMY, "capacity_units_per_h": 1000.0, "static_kw": 0.0,
         "kw_per_unit_per_h": 0.2, "pue": 1.5, "latency_ms": 30.0, "network_kwh_per_gb": 0.1, **e}
        for e in (edges or [])
    ]
    return SiteConfig.model_validate(
        {
            "name": "tiny",
            "latitude_deg": 0.0,
            "longitude_deg": 0.0,
            "grid_region": "SYN",
            "carbon": _DUMMY,
            "weather": _DUMMY,
            "workload": _DUMMY,
            "planning": {"step_minutes": step_minutes, "horizon_h": horizon_h, **planning},
            "zones": [
                {"name": "hall", "racks": 1, "design_it_load_kw": 10.0, "room_volume_m3": 100.0,
                 "inlet_max_c": inlet_max_c, "supply_setpoint_max_step_c": 20.0,
                 "crah": {"count": 1, "rated_airflow_m3_s": 1.0, "rated_fan_power_kw": 1.0}}
            ],
            "server_pools": [
                {"name": "pool", "zone": "hall", "servers": servers, "idle_w": idle_w, "peak_w": peak_w,
                 "sleep_w": 0.0, "capacity_units_per_server": 1.0, "min_active_servers": min_active_servers,
                 "boot_time_s": 0.0}
            ],
            "workload_classes": classes,
            "cooling": {"chiller": {"rated_capacity_kw": 100.0, "rated_cop": 6.0}, "pump_rated_kw": 1.0},
            "electrical": {"ups_rated_kw": 100.0},
            "edge_sites": el,
        }
    )


def zero_coefficients(site: SiteConfig, index: pd.DatetimeIndex, **nonzero) -> PlantCoefficients:
    """Coefficients where facility power = IT power unless a term is given (scalars, per step)."""
    zones = [z.name for z in site.zones]
    n = len(index)
    vals = {
        "cooling_const_kw": 0.0, "cooling_per_it_kw": 0.0, "cooling_per_supply_c": 0.0, "cooling_per_chw_c": 0.0,
        "inlet_const_c": 0.0, "inlet_per_supply_c": 1.0, "inlet_per_it_kw": 0.0, "it_fan_kw_per_c": 0.0,
        "facility_const_kw": 0.0, "facility_per_it_kw": 1.0,
    }
    vals.update(nonzero)
    series = {"cooling_const_kw", "cooling_per_chw_c", "facility_const_kw", "facility_per_it_kw"}
    kw = {}
    for k, v in vals.items():
        if k in series:
            kw[k] = pd.Series(np.broadcast_to(np.asarray(v, float), n).copy(), index=index)
        else:
            kw[k] = pd.DataFrame(np.broadcast_to(np.asarray(v, float).reshape(-1, 1) if np.ndim(v) else v, (n, len(zones))).copy(), index=index, columns=zones)
    return PlantCoefficients(**kw, model_version="hand")


def tiny_forecast(site: SiteConfig, gco2, start="2022-01-01", **columns) -> pd.DataFrame:
    """A forecast frame for ``tiny_site``: intensity per step plus any demand/edge columns."""
    idx = pd.date_range(pd.Timestamp(start, tz="UTC"), periods=len(gco2), freq=f"{site.planning.step_minutes}min", name="timestamp")
    cols = {"gco2_per_kwh": np.asarray(gco2, float), "temp_c": np.full(len(gco2), 20.0)}
    cols.update({k: np.broadcast_to(np.asarray(v, float), len(gco2)).copy() for k, v in columns.items()})
    return pd.DataFrame(cols, index=idx)


def split_pools(site: SiteConfig, k: int = 2) -> SiteConfig:
    """The same site with every pool split into ``k`` identical pools (servers and redundancy
    floor divided as evenly as whole servers allow): the LP is ``k`` times wider in pools and,
    since identical servers are interchangeable, has the same optimum (up to the rounding of
    ``min_active_servers``). Measures what aggregating identical servers into pools saves."""
    data = site.model_dump()
    pools = []
    for p in data["server_pools"]:
        for i in range(k):
            q = dict(p)
            q["name"] = f"{p['name']}_{i}"
            q["servers"] = p["servers"] // k + (1 if i < p["servers"] % k else 0)
            q["min_active_servers"] = p["min_active_servers"] // k + (1 if i < p["min_active_servers"] % k else 0)
            pools.append(q)
    data["server_pools"] = pools
    return SiteConfig.model_validate(data)
