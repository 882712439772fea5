"""The live loop on the site twin against the offline closed loop: `operate --apply` for a week.

What runs (all on 127.0.0.1): the San Jose twin (`coolshift.twin`: the physics simulator with
thermal state behind the site's Modbus point map, its servers as a Redfish service, its batch
queue as points, at ``--speed`` x real time) and the live loop (`coolshift.usecases.operate.
run_operate`, the code behind `coolshift operate --apply --actuators`) writing setpoints and
the batch release through the safety layer and powering hosts through Redfish. The same week
then runs through `coolshift evaluate`'s closed loop (`evaluate_policies`) with the same
forecast mode (``perfect``: the site's own data, as the live loop plans on it) and the same
re-plan interval (every step). Both are judged by the same physics.

Figures:
- ``live_tco2`` / ``offline_tco2``: location-based tCO2 of the week, live on the twin and
  offline; ``gap_pp``: live minus offline saving against best practice (percentage points);
- ``unsafe_writes``: commands outside a point's limits, a change per write above the point's
  limit, a host powered off with work on it, or a pool below its minimum;
- ``thermal_violation_minutes``: the twin's summary (inlets above the zone's limit);
- ``loop_latency_p95_s``: telemetry read to verified write (BMS and hosts), per site; the
  large site (Philadelphia) runs ``--large-steps`` steps for it;
- ``watchdog_release_steps``: steps of site time from ``kill -9`` of a live loop to every point
  and every server back under local control (the twin's watchdog);
- ``drift_handbacks``: hand-backs by the drift gate over the week.

The plant model is fitted here, as `coolshift train` fits it, on simulated commissioning
telemetry (the ``explore`` policy) of the 60 days before the week.

Usage: python benchmarks/bench_operate.py [--days 7] [--speed 600] [--start 2022-07-11]
Prints a table, then one JSON line. Targets: |gap_pp| <= 1, unsafe_writes 0, no thermal
violations, watchdog_release_steps <= 2, loop_latency_p95_s <= 10 on the large site.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from coolshift.actuators.inventory import load_actuator_map  # noqa: E402
from coolshift.actuators.step import ActuatorStepper  # noqa: E402
from coolshift.bms.audit import AuditLog  # noqa: E402
from coolshift.bms.points import load_point_map  # noqa: E402
from coolshift.bms.safety import max_change  # noqa: E402
from coolshift.config import load_site  # noqa: E402
from coolshift.control.evaluation import evaluate_policies  # noqa: E402
from coolshift.control.live import LiveLimits  # noqa: E402
from coolshift.control.policies import get_policy  # noqa: E402
from coolshift.io import load_site_data  # noqa: E402
from coolshift.models.thermal import LinearPlantModel  # noqa: E402
from coolshift.simulations.engine import simulate  # noqa: E402
from coolshift.simulations.telemetry import to_telemetry  # noqa: E402
from coolshift.twin import SiteTwin, twin_point_map  # noqa: E402
from coolshift.twin.hosts import TwinHosts, auto_servers_per_host, write_actuator_map, write_inventory, write_work  # noqa: E402
from coolshift.twin.points import write_point_map  # noqa: E402
from coolshift.twin.thread import TwinThread  # noqa: E402
from coolshift.usecases.operate import OperateOptions, run_operate  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SJ = REPO / "configs/sites/sanjose_colo_2mw.yaml"
PHL = REPO / "configs/sites/philadelphia_multihall_20mw.yaml"
USER, PASSWORD = "bench", "bench-password"  # the twin's Redfish service and the loop, this run only


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fit_model(site, start: pd.Timestamp, days: float = 60.0) -> LinearPlantModel:
    """The plant model from simulated commissioning telemetry of the ``days`` before ``start``."""
    train = load_site_data(site, (start - pd.Timedelta(days=days)).isoformat(), start.isoformat())
    res = simulate(site, train, get_policy("explore"))
    tel = to_telemetry(res.timeseries, [z.name for z in site.zones], [p.name for p in site.server_pools])
    return LinearPlantModel().fit(tel, site)


def bench_map(site_path: Path, protocol: str, port: int, speed: float, folder: Path) -> Path:
    """The site's own point map on ``port``, its write-rate limit scaled to the twin's clock."""
    src = site_path.resolve().parent.parent / "bms" / f"{load_site(site_path).name}_{protocol}.yaml"
    doc = yaml.safe_load(src.read_text())
    doc["site"] = str(site_path.resolve())
    doc["audit_db"] = str(folder / f"{protocol}_audit.sqlite")
    doc["connection"]["port"] = port
    doc["safety"]["min_write_interval_s"] = float(doc["safety"]["min_write_interval_s"]) / speed
    out = folder / f"{protocol}_map.yaml"
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def within_point_limits(site, pm):
    """The site config with its setpoint ranges narrowed to the point map's engineering limits."""
    lim = {p.variable: (p.min_value, p.max_value) for p in pm.writable}
    zones = []
    for z in site.zones:
        lo, hi = lim.get(f"supply_setpoint_c__{z.name}", (None, None))
        zones.append(z.model_copy(update={
            "supply_setpoint_min_c": max(z.supply_setpoint_min_c, lo) if lo is not None else z.supply_setpoint_min_c,
            "supply_setpoint_max_c": min(z.supply_setpoint_max_c, hi) if hi is not None else z.supply_setpoint_max_c}))
    ch = site.cooling.chiller
    lo, hi = lim.get("chw_setpoint_c", (None, None))
    ch = ch.model_copy(update={"chw_setpoint_min_c": max(ch.chw_setpoint_min_c, lo) if lo is not None else ch.chw_setpoint_min_c,
                               "chw_setpoint_max_c": min(ch.chw_setpoint_max_c, hi) if hi is not None else ch.chw_setpoint_max_c})
    cooling = site.cooling.model_copy(update={"chiller": ch})
    return site.model_copy(update={"zones": zones, "cooling": cooling})


def build_twin(site_path: Path, data: pd.DataFrame, speed: float, folder: Path):
    """Twin (Modbus + Redfish + queue points), the loop's point map and actuator map."""
    site = load_site(site_path)
    port, rport = free_port(), free_port()
    base = load_point_map(bench_map(site_path, "modbus", port, speed, folder))
    twin_pm = twin_point_map(base, site, port, queue_points=True)
    pm = load_point_map(write_point_map(twin_pm, folder / "twin_map.yaml"))
    hosts = TwinHosts(site, auto_servers_per_host(site), speed)
    inv, work = folder / "inventory.yaml", folder / "inventory_work.csv"
    write_inventory(hosts, inv)
    write_work(hosts, work)
    amap = write_actuator_map(folder / "actuators.yaml", site_path, f"http://127.0.0.1:{rport}", inv, work, speed)
    twin = SiteTwin(twin_pm, site, data, speed, port, hosts=hosts, redfish_port=rport, redfish_auth=(USER, PASSWORD),
                    work_path=work)
    return site, twin, pm, load_actuator_map(amap)


def run_live(site_path: Path, data: pd.DataFrame, model, speed: float, steps: int, folder: Path,
             drift_cooling_frac: float = LiveLimits.drift_cooling_frac) -> dict:
    """operate --apply --actuators against the twin for ``steps`` steps."""
    os.environ["COOLSHIFT_REDFISH_USER"], os.environ["COOLSHIFT_REDFISH_PASSWORD"] = USER, PASSWORD
    site, twin, pm, am = build_twin(site_path, data, speed, folder)
    statuses: list[dict] = []
    interval = 900.0 / speed * site.step_h / 0.25
    opts = OperateOptions(apply=True, steps=steps, interval_s=interval,
                          limits=LiveLimits(telemetry_max_age_s=3.0 * interval, horizon_h=24.0,
                                            drift_cooling_frac=drift_cooling_frac))
    t0 = time.perf_counter()
    with TwinThread(twin):
        with AuditLog(am.audit_db) as act_log, ActuatorStepper(am, site, act_log, apply=True, log=lambda m: None) as st, \
                AuditLog(pm.resolve(pm.audit_db)) as audit:
            res = asyncio.run(run_operate(pm, site, data, model, audit, opts, None, log=lambda m: None,
                                          on_step=statuses.append, actuators=st))
    wall = time.perf_counter() - t0
    # unsafe: a command outside its point's limits or above its change per write; a busy host
    # powered off; a pool below its minimum
    unsafe = 0
    writable = {p.variable: p for p in pm.writable}
    prev: dict[str, float] = {}
    for r in twin.history:
        for var, v in r.overrides.items():
            p = writable.get(var)
            if p is None:
                continue
            if (p.min_value is not None and v < p.min_value - 1e-6) or (p.max_value is not None and v > p.max_value + 1e-6):
                unsafe += 1
            lim = max_change(p, site)
            if var in prev and lim is not None and abs(v - prev[var]) > lim + 0.051:  # int16 x 0.1 on the wire
                unsafe += 1
            prev[var] = v
    hosts = twin.hosts
    unsafe += sum(1 for c in hosts.commands if c.reset_type == "GracefulShutdown" and c.busy)
    mins = {p.name: p.min_active_servers for p in site.server_pools}
    unsafe += sum(1 for r in twin.history for p, m in mins.items()
                  if r.telemetry.get(f"active_servers__{p}", m) < m - 1e-6)
    summary = twin.plant.result().summary
    lat = [s["loop_latency_s"] for s in statuses if s.get("loop_latency_s") is not None and s["state"] != "stopped"]
    return {"site": site.name, "steps": res.steps, "steps_written": res.steps_written, "exit": res.exit_code,
            "reason": res.reason, "tco2": float(summary["tco2_location"]),
            "twin_steps": len(twin.history), "unsafe_writes": unsafe,
            "thermal_violation_minutes": float(summary["thermal_violation_minutes"]),
            "latency_p95_s": float(np.percentile(lat, 95)) if lat else float("nan"),
            "latency_max_s": float(max(lat)) if lat else float("nan"),
            "drift_handbacks": sum(1 for a, b in zip([{}] + statuses, statuses)  # each trip once
                                   if str(b.get("reason") or "").startswith("drift gate")
                                   and b.get("reason") != a.get("reason")),
            "drift_max_cooling_frac": max((s["drift"]["cooling_error_frac"] for s in statuses if s.get("drift")),
                                          default=float("nan")),
            "handbacks": sum(1 for s in statuses if s["state"] == "handed_back"),
            "hosts_off": sum(1 for c in hosts.commands if c.reset_type == "GracefulShutdown"),
            "wall_s": wall, "index": twin.plant.result().timeseries.index}


def _child(map_path: str, amap_path: str, site_path: str, start: str, state: str, speed: float) -> None:
    """A live loop until killed (in a fresh process); the stand-in plan needs no trained model."""
    os.environ["COOLSHIFT_STATE_DIR"] = state
    os.environ["COOLSHIFT_REDFISH_USER"], os.environ["COOLSHIFT_REDFISH_PASSWORD"] = USER, PASSWORD
    site = load_site(site_path)
    data = load_site_data(site, start, (pd.Timestamp(start) + pd.Timedelta(days=2)).isoformat())
    model = fit_model(site, pd.Timestamp(start, tz="UTC"), days=14)
    pm, am = load_point_map(map_path), load_actuator_map(amap_path)
    interval = 900.0 / speed
    opts = OperateOptions(apply=True, steps=None, interval_s=interval,
                          limits=LiveLimits(telemetry_max_age_s=3.0 * interval, horizon_h=12.0, drift_steps=10**6))
    with AuditLog(am.audit_db) as act_log, ActuatorStepper(am, site, act_log, apply=True, log=lambda m: None) as st, \
            AuditLog(pm.resolve(pm.audit_db)) as audit:
        asyncio.run(run_operate(pm, site, data, model, audit, opts, None, log=lambda m: None, actuators=st))


def watchdog_steps(site_path: Path, start: str, speed: float, folder: Path) -> float:
    """Steps of site time from kill -9 of a commanding loop to every point and server local again."""
    site = load_site(site_path)
    data = load_site_data(site, start, (pd.Timestamp(start) + pd.Timedelta(days=2)).isoformat())
    site, twin, pm, am = build_twin(site_path, data, speed, folder)
    with TwinThread(twin):
        ctx = multiprocessing.get_context("spawn")
        proc = ctx.Process(target=_child, args=(str(folder / "twin_map.yaml"), str(folder / "actuators.yaml"),
                                                str(site_path), start, os.environ["COOLSHIFT_STATE_DIR"], speed),
                           daemon=True)
        proc.start()
        try:
            t_end = time.monotonic() + 300
            while not (any(twin.server.held_by_supervisor().values()) and twin.hosts.remote):
                if time.monotonic() > t_end or not proc.is_alive():
                    raise RuntimeError(f"the live loop never commanded points and servers (alive {proc.is_alive()}, "
                                       f"points {twin.server.held_by_supervisor()}, hosts remote {twin.hosts.remote})")
                time.sleep(0.01)
            time.sleep(3 * 900.0 / speed)  # commands held for three steps while heartbeats flow
            os.kill(proc.pid, signal.SIGKILL)
            proc.join(5)
            t_kill = twin.clock.site_s()
            t_end = time.monotonic() + 60
            while any(twin.server.held_by_supervisor().values()) or twin.hosts.remote:
                if time.monotonic() > t_end:
                    raise RuntimeError("the watchdog never handed back")
                time.sleep(0.002)
            return (twin.clock.site_s() - t_kill) / twin.step_s
        finally:
            if proc.is_alive():
                proc.kill()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--start", default="2022-07-11")
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--speed", type=float, default=300.0, help="twin speed (x real time) for the week")
    ap.add_argument("--large-steps", type=int, default=24, help="steps of the large site (latency)")
    ap.add_argument("--large-speed", type=float, default=100.0)
    ap.add_argument("--drift-cooling-frac", type=float, default=LiveLimits.drift_cooling_frac,
                    help="the drift gate's cooling-power limit (operate's default 0.25)")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_operate_"))
    os.environ["COOLSHIFT_STATE_DIR"] = str(tmp / "state")
    start = pd.Timestamp(a.start, tz="UTC")
    site = load_site(SJ)
    t0 = time.perf_counter()
    model = fit_model(site, start)
    fit_s = time.perf_counter() - t0
    data = load_site_data(site, start.isoformat(), (start + pd.Timedelta(days=a.days)).isoformat())
    steps = len(data) - 1  # the twin's first step runs before the loop's first read
    print(f"San Jose: {len(data)} steps from {data.index[0]}, twin at {a.speed:g} x; model fitted in {fit_s:.0f} s",
          file=sys.stderr)
    (tmp / "sj").mkdir()
    live = run_live(SJ, data, model, a.speed, steps, tmp / "sj", a.drift_cooling_frac)
    print(f"live: {live['tco2']:.2f} tCO2 in {live['wall_s']:.0f} s wall ({live['reason']})", file=sys.stderr)
    t1 = time.perf_counter()
    # best practice is the site's own local control (the twin's, unrestricted); the offline
    # Coolshift plans inside the same engineering limits as the live one (the BMS map's setpoint
    # ranges: San Jose's chilled-water point stops at 16 degC, the chiller at 18)
    site_off = within_point_limits(site, load_point_map(bench_map(SJ, "modbus", free_port(), a.speed, tmp)))
    week = data.loc[live["index"]]
    kw = dict(plant_model=model, forecast_mode="perfect", weather_forecast="perfect", interval_h=site.step_h)
    tco2 = {"best_practice": float(evaluate_policies(site, week, ["best_practice"], **kw)
                                   ["policies"]["best_practice"]["tco2_location"]),
            "coolshift": float(evaluate_policies(site_off, week, ["coolshift"], **kw)
                               ["policies"]["coolshift"]["tco2_location"])}
    off_s = time.perf_counter() - t1
    bp = tco2["best_practice"]
    live_pct = 100.0 * (bp - live["tco2"]) / bp
    off_pct = 100.0 * (bp - tco2["coolshift"]) / bp
    (tmp / "wd").mkdir()
    wd = watchdog_steps(SJ, a.start, a.speed, tmp / "wd")
    phl = load_site(PHL)
    model_l = fit_model(phl, start, days=30)
    data_l = load_site_data(phl, start.isoformat(), (start + pd.Timedelta(days=2)).isoformat()).iloc[:a.large_steps + 2]
    (tmp / "phl").mkdir()
    large = run_live(PHL, data_l, model_l, a.large_speed, a.large_steps, tmp / "phl")

    rows = [("San Jose week, live (twin)", f"{live['tco2']:.2f} tCO2", f"{live_pct:.2f} % vs best practice"),
            ("San Jose week, offline (evaluate)", f"{tco2['coolshift']:.2f} tCO2", f"{off_pct:.2f} % vs best practice"),
            ("San Jose week, best practice", f"{bp:.2f} tCO2", ""),
            ("steps run / written", f"{live['steps']} / {live['steps_written']}", f"exit {live['exit']}: {live['reason']}"),
            ("hosts powered off (total)", str(live["hosts_off"]), ""),
            ("unsafe writes", str(live["unsafe_writes"]), f"large site {large['unsafe_writes']}"),
            ("thermal violation minutes", f"{live['thermal_violation_minutes']:g}", f"large site {large['thermal_violation_minutes']:g}"),
            ("loop latency p95 / max (s)", f"{live['latency_p95_s']:.2f} / {live['latency_max_s']:.2f}", "San Jose"),
            ("loop latency p95 / max (s)", f"{large['latency_p95_s']:.2f} / {large['latency_max_s']:.2f}", f"Philadelphia, {large['steps']} steps"),
            ("drift hand-backs / all hand-backs", f"{live['drift_handbacks']} / {live['handbacks']}",
             f"largest cooling error {live['drift_max_cooling_frac']:.1%}"),
            ("watchdog release after kill -9 (steps)", f"{wd:.2f}", "target <= 2"),
            ("wall: live week / offline", f"{live['wall_s']:.0f} s / {off_s:.0f} s", "")]
    w = max(len(r[0]) for r in rows)
    print(f"{'':{w}}  value  note")
    for name, v, note in rows:
        print(f"{name:{w}}  {v}  {note}")
    out = {"site_days": round(len(live["index"]) * site.step_h / 24.0, 3), "live_tco2": round(live["tco2"], 3),
           "offline_tco2": round(tco2["coolshift"], 3), "best_practice_tco2": round(bp, 3),
           "gap_pp": round(live_pct - off_pct, 3), "unsafe_writes": live["unsafe_writes"] + large["unsafe_writes"],
           "thermal_violation_minutes": live["thermal_violation_minutes"] + large["thermal_violation_minutes"],
           "loop_latency_p95_s": {live["site"]: round(live["latency_p95_s"], 3), large["site"]: round(large["latency_p95_s"], 3)},
           "watchdog_release_steps": round(wd, 3), "drift_handbacks": live["drift_handbacks"] + large["drift_handbacks"],
           "drift_cooling_frac": a.drift_cooling_frac, "drift_max_cooling_frac": round(live["drift_max_cooling_frac"], 3)}
    out["targets_met"] = bool(abs(out["gap_pp"]) <= 1.0 and out["unsafe_writes"] == 0
                              and out["thermal_violation_minutes"] == 0 and out["watchdog_release_steps"] <= 2
                              and large["latency_p95_s"] <= 10.0)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
