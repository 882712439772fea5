"""Simulator speed: simulated steps per second, and how time grows with zones and pools.

Prints a table, then as the LAST line one JSON object with the same figures. Times are
CPU seconds of this process (``time.process_time``; the target is "on one core", and the
build machine is shared), with wall seconds beside them.

- ``large_example``: the Philadelphia 20 MW example site, one year at 5-minute steps
  (105,120 steps) on the bundled real data, best_practice policy (daily decisions).
- ``synthetic_Z_P``: synthetic sites with Z zones and P pools (the issue's target is
  20 zones / 200 pools in under 5 s for a year at 5-minute steps), on synthetic data.
- ``floor_numpy``: a floor measured in the same run: one pass of 20 elementwise numpy
  operations over a (steps x pools) array, the least any vectorised simulator must do.

Run: ``.venv/bin/python benchmarks/bench_simulator.py`` (add ``--quick`` for a 30-day run).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from coolshift.config import SiteConfig, load_site
from coolshift.simulations import simulate
from coolshift.control.policies import get_policy

ROOT = Path(__file__).resolve().parents[1]


def synthetic_site(n_zones: int, n_pools: int) -> SiteConfig:
    zones = [
        dict(name=f"z{i}", racks=200, design_it_load_kw=1500, containment=("full", "partial", "none")[i % 3],
             room_volume_m3=6000, crah=dict(count=10, rated_airflow_m3_s=14.0, rated_fan_power_kw=12.0))
        for i in range(n_zones)
    ]
    pools = [
        dict(name=f"p{j}", zone=f"z{j % n_zones}", servers=400, idle_w=110, peak_w=420, sleep_w=9,
             min_active_servers=40, classes=["web"] if j % 4 == 0 else None,
             power_curve_frac=[0.25, 0.37, 0.44, 0.50, 0.56, 0.62, 0.68, 0.75, 0.82, 0.90, 1.0] if j % 2 else None)
        for j in range(n_pools)
    ]
    it_kw = n_pools * 400 * 0.42
    return SiteConfig.model_validate(dict(
        name=f"synthetic_{n_zones}_{n_pools}", latitude_deg=40.0, longitude_deg=-75.0, grid_region="X",
        carbon={"path": "x.csv"}, weather={"path": "x.json"}, workload={"path": "x.csv"},
        planning={"step_minutes": 5},
        zones=zones, server_pools=pools,
        workload_classes=[dict(name="web", kind="interactive", share=0.5),
                          dict(name="batch", kind="batch", share=0.5, deadline_h=12)],
        cooling=dict(chiller=dict(rated_capacity_kw=it_kw * 1.3, rated_cop=6.2), pump_rated_kw=it_kw * 0.03,
                     tower_fan_rated_kw=it_kw * 0.015),
        electrical=dict(ups_rated_kw=it_kw * 1.2, lighting_other_kw=it_kw * 0.01),
    ))


def synthetic_data(site: SiteConfig, days: int, step_minutes: int = 5) -> pd.DataFrame:
    idx = pd.date_range("2022-01-01", periods=days * 24 * 60 // step_minutes, freq=f"{step_minutes}min", tz="UTC")
    h = idx.hour.to_numpy() + idx.minute.to_numpy() / 60
    doy = idx.day_of_year.to_numpy()
    rng = np.random.default_rng(1)
    temp = 12 - 10 * np.cos(2 * np.pi * (doy - 20) / 365) + 5 * np.sin(2 * np.pi * (h - 9) / 24)
    util = 0.55 + 0.15 * np.sin(2 * np.pi * (h - 8) / 24) + 0.03 * rng.standard_normal(len(idx))
    cap = site.capacity_units_per_h
    return pd.DataFrame({
        "gco2_per_kwh": 380 + 80 * np.sin(2 * np.pi * (h - 18) / 24),
        "temp_c": temp, "rh_pct": 60.0, "wetbulb_c": temp - 4, "cpu_util": util,
        "web_units_per_h": 0.5 * util * cap, "batch_units_per_h": 0.5 * util * cap,
    }, index=idx)


def floor_numpy(steps: int, pools: int) -> float:
    """CPU seconds of 20 elementwise ops over steps x pools, in daily chunks (as the engine works)."""
    x = np.random.default_rng(0).random((steps, pools))
    t = time.process_time()
    for k in range(0, steps, 288):
        y = x[k : k + 288]
        for _ in range(20):
            y = y * 1.0001 + 0.5
    return time.process_time() - t


def timed(site, data, policy="best_practice"):
    """(CPU seconds, wall seconds, result). CPU time is what "on one core" means on a shared
    machine; wall time is also reported."""
    w, c = time.perf_counter(), time.process_time()
    r = simulate(site, data, get_policy(policy))
    return time.process_time() - c, time.perf_counter() - w, r


def main() -> None:
    quick = "--quick" in sys.argv
    days = 30 if quick else 365
    rows = []
    site = load_site(ROOT / "configs/sites/philadelphia_multihall_20mw.yaml")
    from coolshift.io import load_site_data

    end = pd.Timestamp("2022-01-01", tz="UTC") + pd.Timedelta(days=days)
    data = load_site_data(site, "2022-01-01", end, step_minutes=5)
    s, wall, r = timed(site, data)
    rows.append(dict(case="large_example", zones=len(site.zones), pools=len(site.server_pools), steps=len(data),
                     seconds=s, wall_s=wall, steps_per_s=len(data) / s, pue=r.summary["pue"]))
    for z, p in ((2, 20), (5, 50), (10, 100), (20, 200)):
        st = synthetic_site(z, p)
        d = synthetic_data(st, days)
        s, wall, r = timed(st, d)
        rows.append(dict(case=f"synthetic_{z}_{p}", zones=z, pools=p, steps=len(d), seconds=s, wall_s=wall,
                         steps_per_s=len(d) / s, pue=r.summary["pue"]))
    floor = floor_numpy(days * 288, 200)
    big = rows[-1]
    out = {
        "days": days,
        "rows": rows,
        "floor_numpy_20ops_s": floor,
        "target_s": 5.0 * days / 365,
        "target_met_20z_200p": big["seconds"] < 5.0 * days / 365,
        "ratio_20z200p_to_floor": big["seconds"] / floor,
        "ratio_20z200p_to_2z20p": big["seconds"] / rows[1]["seconds"],
    }
    import os

    out["load_average_1min"] = os.getloadavg()[0]
    print(f"{'case':<18}{'zones':>6}{'pools':>6}{'steps':>9}{'CPU s':>8}{'wall s':>8}{'steps/CPU s':>12}{'PUE':>7}")
    for r_ in rows:
        print(f"{r_['case']:<18}{r_['zones']:>6}{r_['pools']:>6}{r_['steps']:>9}{r_['seconds']:>8.2f}{r_['wall_s']:>8.2f}"
              f"{r_['steps_per_s']:>12.0f}{r_['pue']:>7.3f}")
    print(f"load average {out['load_average_1min']:.1f}; "
          f"floor (20 numpy ops on steps x 200 pools, daily chunks): {floor:.3f} CPU s; 20z/200p is {out['ratio_20z200p_to_floor']:.1f}x "
          f"the floor and {out['ratio_20z200p_to_2z20p']:.2f}x the 2z/20p site; target {out['target_s']:.2f} s "
          f"{'met' if out['target_met_20z_200p'] else 'NOT met'}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
