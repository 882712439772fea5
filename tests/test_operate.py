"""`coolshift operate` against the real site twin on 127.0.0.1 (Modbus TCP, pymodbus server).

The twin runs in its own thread and event loop; the loop (:func:`run_operate`) runs in the
test's, or in a separate process for `kill -9`. The plant model is the registry's stand-in
(hand-set coefficients, tests/conftest.py) or a copy of it with its cooling coefficients
scaled (a real model variant whose predictions are off), never a protocol mock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import multiprocessing
import os
import signal
import threading
import time

import pandas as pd
import pytest
import yaml

from conftest import _StandInModel
from coolshift.bms.audit import AuditLog
from coolshift.bms.points import load_point_map
from coolshift.config import load_site
from coolshift.control.live import LiveLimits
from coolshift.io import load_site_data
from coolshift.io.live import FileSource
from coolshift.twin import SiteTwin, twin_point_map
from coolshift.twin.thread import TwinThread
from coolshift.twin.points import write_point_map as write_twin_map
from coolshift.usecases.operate import OperateOptions, run_operate, status_path
from test_bms_kit import SITE, free_port, write_point_map
from test_bms_kit import state_dir  # noqa: F401 (autouse: a private COOLSHIFT_STATE_DIR per test)

pytestmark = pytest.mark.timeout(90)

START = "2022-06-01"
SPEED = 900.0  # a 15-min step every 1 s of wall time
SUPPLY_A = "supply_setpoint_c__hall_a"


@pytest.fixture(scope="module")
def site_data():
    site = load_site(SITE)
    return site, load_site_data(site, START, "2022-06-03")


def _twin(tmp_path, site, data, steps: int | None = None):
    """A Modbus twin of San Jose with the watchdog (1.5 steps) and its map for the supervisor."""
    port = free_port(__import__("socket").SOCK_STREAM)
    base = load_point_map(write_point_map(tmp_path / "site_map.yaml", "modbus", port, wide_limits=True,
                                          min_write_interval_s=0))
    pm = twin_point_map(base, site, port)
    twin = SiteTwin(pm, site, data if steps is None else data.iloc[:steps], SPEED, port)
    path = write_twin_map(pm, tmp_path / "twin_map.yaml")
    return twin, load_point_map(path)


def _operate(pm, site, data, model, steps, limits=None, intensity=None, stop=None, statuses=None):
    opts = OperateOptions(apply=True, steps=steps, interval_s=900.0 / SPEED,
                          limits=limits or LiveLimits(telemetry_max_age_s=1.5 * 900.0 / SPEED, horizon_h=6.0))
    with AuditLog(pm.resolve(pm.audit_db)) as audit:
        res = asyncio.run(run_operate(pm, site, data, model, audit, opts, intensity, log=lambda m: None,
                                      on_step=None if statuses is None else statuses.append, stop=stop))
        audit_frame = audit.frame()
    return res, audit_frame


def test_operate_applies_setpoints_the_twin_follows_then_hands_back(tmp_path, site_data, small_site_model):
    site, data = site_data
    model = small_site_model[1]
    twin, pm = _twin(tmp_path, site, data)
    statuses = []
    with TwinThread(twin):
        time.sleep(3 * 900.0 / SPEED)  # a few steps under local control first
        k0 = len(twin.history)
        inlet0 = twin.history[-1].telemetry["inlet_temp_c__hall_a"]
        res, audit = _operate(pm, site, data, model, steps=5, statuses=statuses)
        held_after = twin.server.held_by_supervisor()
        time.sleep(2 * 900.0 / SPEED)
    assert res.exit_code == 0, res.reason
    # every step ran; the plan's ramp takes >= 3 writes, then a step whose targets are in force writes nothing
    assert res.steps_written >= 3, statuses
    assert all(s["state"] == "running" for s in statuses[:-1]), [s["state"] for s in statuses]
    written = [s["plan"]["targets"] for s in statuses if s["state"] == "running"]
    commanded = [r.overrides for r in twin.history[k0:] if r.overrides]
    assert len(commanded) >= 3, [r.overrides for r in twin.history[k0:]]
    # what the twin ran under is what operate wrote (int16 x 0.1 on the wire)
    for over in commanded:
        assert any(all(abs(over[k] - t[k]) <= 0.051 for k in over) for t in written), (over, written)
    # the plan warms the supply air (18 degC local) and the rack inlets follow
    assert max(o[SUPPLY_A] for o in commanded) >= 19.0
    inlet_max = max(r.telemetry["inlet_temp_c__hall_a"] for r in twin.history[k0:])
    assert inlet_max > inlet0 + 0.5, (inlet0, inlet_max)
    # ended: every point handed back, status says so, loop latency recorded
    assert not any(held_after.values()), held_after
    doc = json.loads(status_path(site.name).read_text())
    assert doc["state"] == "stopped" and doc["steps_written"] == res.steps_written
    lat = [s["loop_latency_s"] for s in statuses if s.get("loop_latency_s") is not None]
    assert lat and all(x > 0 for x in lat), lat  # recorded every step (its size: benchmarks/bench_operate.py)
    drift = [s["drift"] for s in statuses if s.get("drift")]
    print(json.dumps({"loop_latency_s_max": round(max(lat), 3), "drift": drift[-1] if drift else None}))
    assert doc["retrain_model"] is False


def _child(map_path: str, state: str):
    """operate --apply until killed (the stand-in model), in a fresh process."""
    os.environ["COOLSHIFT_STATE_DIR"] = state
    pm = load_point_map(map_path)
    site = load_site(SITE)
    data = load_site_data(site, START, "2022-06-03")
    # the stand-in's hand-set coefficients are far from the twin: the drift gate is not the subject here
    _operate(pm, site, data, _StandInModel(), steps=None,
             limits=LiveLimits(telemetry_max_age_s=1.5 * 900.0 / SPEED, horizon_h=6.0, drift_steps=10**6))


def test_kill_9_of_operate_hands_every_point_back_within_2_steps(tmp_path, site_data, state_dir):
    site, data = site_data
    twin, pm = _twin(tmp_path, site, data)
    with TwinThread(twin):
        ctx = multiprocessing.get_context("spawn")
        proc = ctx.Process(target=_child, args=(str(tmp_path / "twin_map.yaml"), str(state_dir)), daemon=True)
        proc.start()
        try:
            t_end = time.monotonic() + 40
            while not all(twin.server.held_by_supervisor().values()):
                assert time.monotonic() < t_end and proc.is_alive(), "operate never commanded every point"
                time.sleep(0.01)
            time.sleep(3 * 900.0 / SPEED)  # commands held for 3 steps while heartbeats flow
            assert all(twin.server.held_by_supervisor().values())
            os.kill(proc.pid, signal.SIGKILL)
            proc.join(5)
            t_kill = twin.clock.site_s()
            t_end = time.monotonic() + 10
            while any(twin.server.held_by_supervisor().values()):
                assert time.monotonic() < t_end, "the watchdog never handed back"
                time.sleep(0.002)
            steps = (twin.clock.site_s() - t_kill) / twin.step_s
        finally:
            if proc.is_alive():
                proc.kill()
    print(json.dumps({"watchdog_release_steps": round(steps, 3)}))
    assert twin.watchdog.events, "the watchdog never acted"
    assert 0 < steps <= 2.0, steps


def test_stale_telemetry_when_the_twin_clock_stops_hands_back(tmp_path, site_data, small_site_model):
    site, data = site_data
    twin, pm = _twin(tmp_path, site, data, steps=8)  # the twin's data end: its clock stops, points still served
    statuses = []
    with TwinThread(twin):
        res, audit = _operate(pm, site, data, small_site_model[1], steps=12, statuses=statuses)
        held = twin.server.held_by_supervisor()
    assert any(s["state"] == "running" for s in statuses)  # it did command before the clock stopped
    stale = [s for s in statuses if s["state"] == "handed_back"]
    assert stale and stale[0]["reason"].startswith("telemetry stale"), statuses[-1]
    assert all(stale[0]["released"].values()), stale[0]
    assert not any(held.values()), held
    assert ((audit.action == "relinquish") & (audit.result == "ok")).sum() >= 3


class BiasedInlets:
    """A plant model whose rack-inlet predictions are ``bias_c`` warmer than the wrapped model's: they are off."""

    def __init__(self, model, bias_c: float):
        self.model, self.bias_c = model, bias_c

    def coefficients(self, site, frame):
        c = self.model.coefficients(site, frame)
        return dataclasses.replace(c, inlet_const_c=c.inlet_const_c + self.bias_c)


def test_drift_gate_trips_on_a_model_whose_predictions_are_off(tmp_path, site_data, small_site_model):
    site, data = site_data
    twin, pm = _twin(tmp_path, site, data)
    limits = LiveLimits(telemetry_max_age_s=1.5 * 900.0 / SPEED, horizon_h=6.0, drift_inlet_c=DRIFT_C,
                        drift_steps=2)
    statuses = []
    with TwinThread(twin):
        res, audit = _operate(pm, site, data, BiasedInlets(small_site_model[1], 3.0), steps=10, limits=limits,
                              statuses=statuses)
        held = twin.server.held_by_supervisor()
    assert res.exit_code == 3 and "retrain" in res.reason, res.reason
    doc = json.loads(status_path(site.name).read_text())
    assert doc["state"] == "handed_back" and doc["retrain_model"] is True, doc
    assert doc["drift"]["consecutive"] == 2 and doc["drift"]["inlet_error_c"] > DRIFT_C
    assert not any(held.values()), held
    assert audit.detail.str.contains("RETRAIN").any()
    assert res.steps < 10


DRIFT_C = 2.0  # the unbiased model misses by about 0.05 K (first test)


def test_stale_intensity_file_hands_back(tmp_path, site_data, small_site_model):
    site, data = site_data
    twin, pm = _twin(tmp_path, site, data)
    f = tmp_path / "intensity.csv"
    idx = data.index[:192]
    pd.DataFrame({"timestamp": idx.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
                  "gco2_per_kwh": data["gco2_per_kwh"].iloc[:192].to_numpy()}).to_csv(f, index=False)
    # the outside job last wrote the file a day before the site's clock: older than its 2 h limit
    old = (data.index[0] - pd.Timedelta(days=1)).timestamp()
    os.utime(f, (old, old))
    statuses = []
    with TwinThread(twin):
        res, audit = _operate(pm, site, data, small_site_model[1], steps=3, intensity=FileSource(f, max_age_s=7200),
                              statuses=statuses)
        held = twin.server.held_by_supervisor()
    assert statuses and all(s["state"] == "handed_back" for s in statuses[:-1]), statuses
    assert statuses[0]["reason"].startswith("intensity stale"), statuses[0]["reason"]
    assert res.steps_written == 0
    assert not ((audit.action == "write") & (audit.result == "ok")).any()
    assert not any(held.values())


def test_operate_drives_every_lever_on_the_twin_and_hands_them_back(tmp_path, site_data, small_site_model):
    """Setpoints and the batch release through Modbus, hosts through Redfish (the twin's emulator
    application), each step from one plan; at the end every point local and every host on."""
    from coolshift.actuators.inventory import load_actuator_map
    from coolshift.actuators.step import ActuatorStepper
    from coolshift.twin.hosts import TwinHosts, write_actuator_map, write_inventory, write_work
    from test_redfish import PASSWORD, USER

    site, data = site_data
    speed = 450.0  # a step every 2 s: room for the host power changes
    port, rport = free_port(__import__("socket").SOCK_STREAM), free_port(__import__("socket").SOCK_STREAM)
    base = load_point_map(write_point_map(tmp_path / "site_map.yaml", "modbus", port, wide_limits=True,
                                          min_write_interval_s=0))
    twin_pm = twin_point_map(base, site, port, queue_points=True)
    pm = load_point_map(write_twin_map(twin_pm, tmp_path / "twin_map.yaml"))
    hosts = TwinHosts(site, 50, speed)
    inv, work = tmp_path / "inv.yaml", tmp_path / "inv_work.csv"
    write_inventory(hosts, inv)
    write_work(hosts, work)
    am = load_actuator_map(write_actuator_map(tmp_path / "act.yaml", SITE, f"http://127.0.0.1:{rport}", inv, work, speed))
    twin = SiteTwin(twin_pm, site, data, speed, port, hosts=hosts, redfish_port=rport, redfish_auth=(USER, PASSWORD),
                    work_path=work)
    os.environ["COOLSHIFT_REDFISH_USER"], os.environ["COOLSHIFT_REDFISH_PASSWORD"] = USER, PASSWORD
    statuses = []
    opts = OperateOptions(apply=True, steps=8, interval_s=900.0 / speed,
                          limits=LiveLimits(telemetry_max_age_s=1.5 * 900.0 / speed, horizon_h=6.0))
    with TwinThread(twin):
        with AuditLog(am.audit_db) as act_log, ActuatorStepper(am, site, act_log, apply=True, log=lambda m: None) as st, \
                AuditLog(pm.resolve(pm.audit_db)) as audit:
            res = asyncio.run(run_operate(pm, site, data, small_site_model[1], audit, opts, None, log=lambda m: None,
                                          on_step=statuses.append, actuators=st))
        held = twin.server.held_by_supervisor()
        states = hosts.states()
    assert res.exit_code == 0, res.reason
    # hosts powered off to follow the plan, never one with work, never below a pool's minimum
    offs = [c for c in hosts.commands if c.reset_type == "GracefulShutdown"]
    assert offs and not any(c.busy for c in offs)
    mins = {p.name: p.min_active_servers for p in site.server_pools}
    for r in twin.history:
        for p, m in mins.items():
            assert r.telemetry[f"active_servers__{p}"] >= m, (r.k, p)
    acted = [s["actuators"] for s in statuses if s.get("actuators")]
    assert acted and all(a["ok"] for a in acted) and sum(a["hosts_off"] for a in acted) == len(offs)
    # the batch release was commanded through its point, as planned
    assert any("release_units_per_h__batch" in r.overrides for r in twin.history)
    # handed back: every point local, every host Coolshift switched off is on again
    assert not any(held.values()), held
    ours = {c.host for c in offs}
    assert all(states[h] == "On" for h in ours), {h: states[h] for h in ours if states[h] != "On"}
    assert statuses[-1]["released_actuators"]["ok"] is True


def _serve_twin(base_map, port, map_out, start=START):
    """`coolshift twin` as its own process (Modbus, speed 900) and wait until it serves."""
    import socket
    import subprocess
    import sys

    from pathlib import Path

    exe = Path(sys.executable).with_name("coolshift")  # the installed CLI beside the interpreter
    proc = subprocess.Popen([str(exe), "twin", "--site", str(SITE), "--protocol", "modbus",
                             "--speed", str(SPEED), "--start", start, "--days", "2", "--port", str(port),
                             "--bms", str(base_map), "--map-out", str(map_out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t_end = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < t_end, "the twin did not start"
            time.sleep(0.1)


def test_twin_killed_mid_run_then_back_every_point_released_when_it_returns(tmp_path, site_data, small_site_model):
    """The controller (the twin's process) dies under a commanding loop: the loop hands back (unconfirmed:
    nobody answers), keeps going, and releases every point as soon as the controller answers again."""
    site, data = site_data
    port = free_port(__import__("socket").SOCK_STREAM)
    base = write_point_map(tmp_path / "site_map.yaml", "modbus", port, wide_limits=True, min_write_interval_s=0)
    map_out = tmp_path / "twin_map.yaml"
    procs = [_serve_twin(base, port, map_out)]
    statuses: list = []
    result: dict = {}
    pm = load_point_map(map_out)

    def controller(loop, stop):
        """Kill the twin under the commanding loop, bring it back, then stop the loop."""
        try:
            t_end = time.monotonic() + 60
            while sum(s.get("steps_written", 0) > 0 and s["state"] == "running" for s in statuses) < 3:
                assert time.monotonic() < t_end, statuses[-1:] or "no step"
                time.sleep(0.05)
            procs[0].kill()  # kill -9 of the controller while the loop commands it
            procs[0].wait(10)
            t_end = time.monotonic() + 30
            while not any(s["state"] == "handed_back" for s in statuses):
                assert time.monotonic() < t_end, "the loop never noticed the controller had gone"
                time.sleep(0.05)
            n_down = len(statuses)
            procs.append(_serve_twin(base, port, map_out))  # the controller is back (a reboot: local control)
            t_end = time.monotonic() + 60
            while not any(s["state"] == "running" and s.get("steps_written") for s in statuses[n_down:]):
                assert time.monotonic() < t_end, statuses[-1:]
                time.sleep(0.05)
        except BaseException as exc:  # noqa: BLE001 - surfaced by the test
            result["error"] = exc
        finally:
            loop.call_soon_threadsafe(stop.set)

    async def go():
        stop = asyncio.Event()
        th = threading.Thread(target=controller, args=(asyncio.get_running_loop(), stop), daemon=True)
        th.start()
        opts = OperateOptions(apply=True, steps=None, interval_s=900.0 / SPEED,
                              limits=LiveLimits(telemetry_max_age_s=1.5 * 900.0 / SPEED, horizon_h=6.0))
        with AuditLog(pm.resolve(pm.audit_db)) as audit:
            result["res"] = await run_operate(pm, site, data, small_site_model[1], audit, opts, None,
                                              log=lambda m: None, on_step=statuses.append, stop=stop)
            result["audit"] = audit.frame()
        await asyncio.to_thread(th.join, 30)

    try:
        asyncio.run(go())
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(10)
    assert "error" not in result, result.get("error")
    res, audit = result["res"], result["audit"]
    assert res.exit_code == 0, res.reason
    # the hand-back while the controller was down could not be confirmed; once back it was redone, verified
    rel = audit[audit.action == "relinquish"]
    failed = rel[rel.result.isin(["error", "timeout"])]
    assert len(failed) > 0, rel[["point", "result", "detail"]]
    # once the controller answers again the hand-back is redone and confirmed for every point,
    # before anything is written again
    after = audit.loc[failed.index.max() + 1:]
    ok = after[(after.action == "relinquish") & (after.result == "ok")]
    names = {q.name for q in pm.writable}
    assert set(ok.point) >= names, after[["action", "result", "point"]].head(20)
    first_ok = {n: ok[ok.point == n].index.min() for n in names}
    writes = after[(after.action == "write") & (after.result == "ok")]
    assert len(writes) > 0  # it commanded again afterwards
    assert writes.index.min() > max(first_ok.values())


def test_operate_refuses_a_site_with_storage_it_cannot_read_the_charge_of(tmp_path):
    """The live loop reads no battery state of charge from the BMS, so a site with storage is
    refused (exit 2, naming the site file and key) before anything is read or written."""
    from typer.testing import CliRunner

    from conftest import REPO
    from coolshift.cli import app

    site = REPO / "configs" / "sites" / "sanjose_colo_2mw_battery.yaml"
    bms = REPO / "configs" / "bms" / "sanjose_colo_2mw_battery_modbus.yaml"
    res = CliRunner().invoke(app, ["operate", "--site", str(site), "--bms", str(bms), "--workdir", str(tmp_path)])
    assert res.exit_code == 2, res.output
    assert "sanjose_colo_2mw_battery.yaml: storage" in res.output and "state of charge" in res.output
    assert "Traceback" not in res.output
