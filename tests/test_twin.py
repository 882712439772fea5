"""The site twin on loopback: thermal lag, physics equal to simulate, speed, local control, the watchdog.

Real devices only (bacpypes3 / pymodbus servers on 127.0.0.1, high ports); the twin runs in
the test's event loop so its history and clock can be inspected, and the supervisor it
watches is a real `coolshift run-plan --apply` process, killed with SIGKILL.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time

import numpy as np
import pytest
import yaml

from coolshift.bms.adapters import open_adapter
from coolshift.bms.points import load_point_map
from coolshift.config import load_site
from coolshift.control.policies import BestPracticePolicy, FixedPolicy
from coolshift.io import load_site_data
from coolshift.setpoints import chw_for_supply_c
from coolshift.simulations.engine import simulate
from coolshift.twin import SiteTwin, twin_point_map
from coolshift.twin.plant import SIM_TIME
from test_bms_kit import SITE, free_port, make_plan, write_point_map
from test_bms_kit import state_dir  # noqa: F401 (autouse: a private COOLSHIFT_STATE_DIR per test)

pytestmark = pytest.mark.timeout(120)

CLI = [sys.executable, "-c", "from coolshift.cli import main; main()"]
SUPPLY_A, SUPPLY_B, CHW = "supply_setpoint_c__hall_a", "supply_setpoint_c__hall_b", "chw_setpoint_c"
START = "2022-06-01"


@pytest.fixture(scope="module")
def site_data():
    site = load_site(SITE)
    return site, load_site_data(site, START, "2022-06-02")


def _map(tmp_path, protocol: str, port: int, heartbeat: dict | None = None):
    """The kit's San Jose map (3 setpoints, wide engineering limits) with an optional heartbeat."""
    path = write_point_map(tmp_path / f"{protocol}.yaml", protocol, port, wide_limits=True, min_write_interval_s=0)
    if heartbeat is not None:
        doc = yaml.safe_load(path.read_text())
        doc["heartbeat"] = heartbeat
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


async def _until(cond, timeout: float = 30.0, what: str = "", period_s: float = 0.02) -> None:
    t_end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > t_end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(period_s)


def test_inlets_lag_a_setpoint_change_physics_equal_simulate_and_uncommanded_points_follow_best_practice(
        tmp_path, site_data):
    site, data = site_data
    port = free_port()
    pm_site = load_point_map(_map(tmp_path, "bacnet", port))
    speed = 3600.0  # 0.25 s per 15-min step
    # no watchdog here: a command without heartbeats must hold for this test
    twin = SiteTwin(twin_point_map(pm_site, site, port, add_heartbeat=False), site, data, speed, port)
    commanded = 21.0
    wire = {}

    async def main():
        stop, ready = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(twin.run(stop, ready))
        await asyncio.wait_for(ready.wait(), 30)
        async with open_adapter(pm_site) as ad:
            await _until(lambda: len(twin.history) >= 9, what="best practice to settle")
            await ad.write(pm_site.by_variable(SUPPLY_A), commanded)
            await _until(lambda: any(r.overrides for r in twin.history), what="the command to take effect")
            k1 = next(r.k for r in twin.history if r.overrides)
            await _until(lambda: len(twin.history) >= k1 + 8, what="8 steps under the command")
            for _ in range(5):  # read a consistent set between two ticks (the clock unchanged around it)
                tp = twin.pm
                t0 = await ad.read_value(tp.by_variable(SIM_TIME))
                vals = {v: await ad.read_value(tp.by_variable(v)) for v in
                        ("inlet_temp_c__hall_a", "facility_power_kw", "outside_temp_c", SUPPLY_B, CHW, SUPPLY_A)}
                if await ad.read_value(tp.by_variable(SIM_TIME)) == t0:
                    wire.update(vals, time=t0)
                    break
        stop.set()
        await task
        return k1

    k1 = asyncio.run(main())
    res = twin.plant.result()
    n = len(res.timeseries)
    hist = {r.k: r for r in twin.history}
    inlet = res.timeseries["inlet_temp_c__hall_a"].to_numpy()

    # the setpoint drops 4 K at step k1; the inlets follow through the room's lag, not in one jump
    assert res.actions.supply_c[k1, 0] == commanded and res.actions.supply_c[k1 - 1, 0] == 25.0
    total = inlet[-1] - inlet[k1 - 1]
    assert total == pytest.approx(-4.0, abs=0.3)
    first, second = (inlet[k1] - inlet[k1 - 1]) / total, (inlet[k1 + 1] - inlet[k1 - 1]) / total
    assert 0.3 < first < 0.95, (first, inlet[k1 - 2: k1 + 4])
    assert first < second <= 1.0 + 1e-9

    # the same actions through simulate give the same energy and carbon (float noise only)
    sim = simulate(site, data.iloc[:n], FixedPolicy(res.actions))
    for key in ("facility_kwh", "it_kwh", "cooling_kwh", "tco2_location", "tco2_market", "max_inlet_c"):
        assert res.summary[key] == pytest.approx(sim.summary[key], rel=1e-9, abs=1e-12), key
    # ... and the telemetry the twin showed each step is simulate's timeseries
    shown = [c for c in hist[0].telemetry if c in sim.timeseries.columns]
    assert {"inlet_temp_c__hall_b", "cooling_power_kw", "facility_power_kw", "wetbulb_c"} <= set(shown)
    for k, r in hist.items():
        for c in shown:
            assert r.telemetry[c] == pytest.approx(float(sim.timeseries[c].iloc[k]), rel=1e-9, abs=1e-9), (k, c)

    # over the wire (float32 REAL): the step whose end the clock shows
    kw = int(round((wire["time"] - hist[0].telemetry[SIM_TIME]) * 4))
    assert wire["facility_power_kw"] == pytest.approx(hist[kw].telemetry["facility_power_kw"], rel=1e-6)
    assert wire["inlet_temp_c__hall_a"] == pytest.approx(hist[kw].telemetry["inlet_temp_c__hall_a"], rel=1e-6)
    assert wire[SUPPLY_A] == commanded

    # uncommanded points follow the best-practice rule: everything before k1, hall_b and the
    # chilled-water reset (on the supply setpoints in force) after it
    bp = simulate(site, data.iloc[:n], BestPracticePolicy())
    np.testing.assert_allclose(res.actions.supply_c[:k1], bp.actions.supply_c[:k1])
    np.testing.assert_allclose(res.actions.chw_c[:k1], bp.actions.chw_c[:k1])
    np.testing.assert_allclose(res.actions.active_servers, bp.actions.active_servers)
    np.testing.assert_allclose(res.actions.supply_c[:, 1], bp.actions.supply_c[:, 1])
    np.testing.assert_allclose(res.actions.chw_c[k1:], chw_for_supply_c(site, res.actions.supply_c[k1:]))
    assert res.actions.chw_c[-1] < bp.actions.chw_c[-1]  # the reset follows the colder hall_a
    assert wire[SUPPLY_B] == pytest.approx(bp.actions.supply_c[kw, 1], abs=1e-5)
    assert wire[CHW] == pytest.approx(res.actions.chw_c[kw], abs=1e-5)

    # speed honoured: 3600 / 900 = 4 steps per wall second (loose bound: a shared CI host)
    walls = [r.wall_s for r in twin.history]
    rate = (len(walls) - 1) / (walls[-1] - walls[0])
    assert 3.0 < rate < 4.5, rate


def test_twin_command_serves_at_speed_and_writes_its_point_map(tmp_path):
    """`coolshift twin` (Modbus): the clock point advances at --speed; --map-out names every point."""
    port = free_port(socket.SOCK_STREAM)
    bms = _map(tmp_path, "modbus", port)
    doc = yaml.safe_load(bms.read_text())
    doc["safety"]["min_write_interval_s"] = 300  # the site's own rate limit (as configs/bms/)
    bms.write_text(yaml.safe_dump(doc, sort_keys=False))
    out = tmp_path / "twin_map.yaml"
    speed = 1800.0
    import subprocess

    proc = subprocess.Popen([*CLI, "twin", "--site", str(SITE), "--protocol", "modbus", "--speed", str(speed),
                             "--port", str(port), "--start", START, "--days", "1", "--bms", str(bms),
                             "--map-out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        line = proc.stdout.readline()
        assert b"twin: sanjose_colo_2mw over modbus" in line, line
        pm = load_point_map(out)
        assert pm.heartbeat is not None and pm.heartbeat.timeout_s == 1350.0
        # the site's write-rate limit, in the twin's wall seconds
        assert pm.safety.min_write_interval_s == pytest.approx(300 / speed)
        names = {p.variable for p in pm.points}
        assert {"facility_power_kw", "outside_temp_c", "wetbulb_c", SIM_TIME, "inlet_temp_c__hall_a"} <= names

        async def clock():
            async with open_adapter(pm) as ad:
                t0, w0 = await ad.read_value(pm.by_variable(SIM_TIME)), time.monotonic()
                await asyncio.sleep(3.0)
                t1, w1 = await ad.read_value(pm.by_variable(SIM_TIME)), time.monotonic()
                tele = {p.variable: await ad.read_value(p) for p in pm.points if not p.writable}
            return (t1 - t0) * 3600.0 / (w1 - w0), tele

        rate, tele = asyncio.run(clock())
        assert 0.6 * speed < rate < 1.4 * speed, rate  # site seconds per wall second
        assert 1000 < tele["facility_power_kw"] < 3000 and 10 < tele["inlet_temp_c__hall_a"] < 30
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.mark.parametrize("protocol", ["bacnet", "modbus"])
def test_kill_9_of_run_plan_hands_every_point_back_within_2_steps(tmp_path, site_data, protocol):
    """Heartbeats flowing: the commands hold; `kill -9` of run-plan: the twin's watchdog hands back."""
    site, data = site_data
    port = free_port(socket.SOCK_DGRAM if protocol == "bacnet" else socket.SOCK_STREAM)
    timeout_s = 1350.0  # site seconds: 1.5 steps
    hb = {"object": "analog-value,50"} if protocol == "bacnet" else {"holding": 120}
    # run-plan follows wall time: it feeds the heartbeat every 0.1 s (the twin's 1.5 steps last 0.75 s)
    bms = _map(tmp_path, protocol, port, heartbeat={**hb, "timeout_s": timeout_s, "interval_s": 0.1})
    pm = load_point_map(bms)
    speed = 1800.0
    twin = SiteTwin(twin_point_map(pm, site, port), site, data, speed, port)
    step_s = twin.step_s

    def held() -> dict[str, bool]:
        return twin.server.held_by_supervisor()

    async def main():
        stop, ready = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(twin.run(stop, ready))
        await asyncio.wait_for(ready.wait(), 30)
        await _until(lambda: len(twin.history) >= 9, what="best practice to settle")
        local = twin.history[-1].local
        target = {v: local[v] - 0.5 for v in (SUPPLY_A, SUPPLY_B, CHW)}
        plan = make_plan(tmp_path / "plan", target)
        proc = await asyncio.create_subprocess_exec(*CLI, "run-plan", "--plan", str(plan), "--bms", str(bms),
                                                    "--apply", stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.STDOUT)
        try:
            await _until(lambda: all(held().values()) or proc.returncode is not None, what="run-plan's writes")
            assert proc.returncode is None, (await proc.stdout.read()).decode()
            t_cmd = twin.clock.site_s()
            k_cmd = len(twin.history)
            while twin.clock.site_s() < t_cmd + 3 * timeout_s:  # three timeouts with heartbeats flowing
                assert all(held().values()), held()
                await asyncio.sleep(0.02)
            steps_held = [r for r in twin.history[k_cmd:]]
            assert len(steps_held) >= 4
            for r in steps_held:
                assert r.overrides == pytest.approx(target, abs=0.051), r.overrides
            assert twin.watchdog.events == []
            proc.kill()  # SIGKILL: run-plan cannot release anything
            await proc.wait()
            t_kill = twin.clock.site_s()
            await _until(lambda: not any(held().values()), timeout=10, what="the watchdog", period_s=0.005)
            t_back = twin.clock.site_s()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        # back under local control: the value in force is the local controller's again
        k_back = len(twin.history)
        await _until(lambda: len(twin.history) >= k_back + 2, what="two more steps")
        last = twin.history[-1]
        assert last.overrides == {}
        in_force = twin.server.setpoints()
        assert in_force == pytest.approx({v: last.local[v] for v in in_force}, abs=0.051)
        assert set(in_force) == {SUPPLY_A, SUPPLY_B, CHW}
        stop.set()
        await task
        return (t_back - t_kill) / step_s

    steps = asyncio.run(main())
    assert twin.watchdog.events, "the watchdog never acted"
    assert sorted(twin.watchdog.events[0][1]) == ["chw_sp", "hall_a_supply_sp", "hall_b_supply_sp"]
    assert 0 < steps <= 2.0, steps
    print(json.dumps({"protocol": protocol, "watchdog_release_steps": round(steps, 3),
                      "timeout_steps": timeout_s / step_s}))
