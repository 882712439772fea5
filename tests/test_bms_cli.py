"""The BMS commands as an operator runs them: run-plan killed by SIGTERM / SIGKILL, bms-sim sessions."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time

import pytest

from coolshift.bms.audit import read_audit
from test_bms_kit import REPO, RD, SITE, BacnetDevice, free_port, make_plan, write_point_map
from test_bms_kit import state_dir  # noqa: F401 (autouse: a private COOLSHIFT_STATE_DIR per test)

pytestmark = pytest.mark.timeout(120)

CLI = [sys.executable, "-c", "from coolshift.cli import main; main()"]
GOOD = {"supply_setpoint_c__hall_a": 19.0, "supply_setpoint_c__hall_b": 18.5, "chw_setpoint_c": 10.8}


async def _until(cond, timeout: float = 45.0, what: str = "") -> None:
    t_end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > t_end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def _audit_rows(path) -> list[tuple]:
    if not path.exists():
        return []
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            return db.execute("SELECT action, point, result FROM audit ORDER BY id").fetchall()
        finally:
            db.close()
    except sqlite3.OperationalError:
        return []


def test_run_plan_relinquishes_every_point_on_sigterm(tmp_path):
    port = free_port()
    bms = write_point_map(tmp_path / "map.yaml", "bacnet", port, timeout_s=5)
    plan = make_plan(tmp_path / "plan", GOOD)

    async def main():
        dev = BacnetDevice(port).start()
        try:
            proc = await asyncio.create_subprocess_exec(
                *CLI, "run-plan", "--plan", str(plan), "--bms", str(bms), "--apply",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            await _until(lambda: all(dev.slot(n, 10) is not None for n in RD), what="run-plan's first step")
            assert dev.slot("hall_b_supply_sp", 10) == pytest.approx(18.5)
            proc.send_signal(signal.SIGTERM)
            out, _ = await asyncio.wait_for(proc.communicate(), 60)
            text = out.decode()
            assert proc.returncode == 0, text
            assert "stopped by SIGTERM" in text
            for name, rd in RD.items():
                assert dev.slot(name, 10) is None, name
                assert dev.value(name) == pytest.approx(rd)
        finally:
            dev.close()

    asyncio.run(main())
    df = read_audit(tmp_path / "audit.sqlite")
    assert df[(df.action == "relinquish") & (df.result == "ok")].point.tolist() == list(RD)
    assert df.iloc[-1].action == "run" and "SIGTERM" in df.iloc[-1].detail


def test_audit_log_survives_sigkill_mid_push_and_release_recovers(tmp_path):
    """The device stops answering on the second write; run-plan is killed -9 while waiting.
    The log must hold hall_a's completed write and hall_b's intent (and be intact); then
    `coolshift release`, the operator's exit, hands everything back."""
    port = free_port()
    bms = write_point_map(tmp_path / "map.yaml", "bacnet", port, timeout_s=20)
    plan = make_plan(tmp_path / "plan", GOOD)
    audit = tmp_path / "audit.sqlite"

    async def main():
        dev = BacnetDevice(port, go_silent_after=1, silence_s=300).start()
        try:
            proc = await asyncio.create_subprocess_exec(
                *CLI, "run-plan", "--plan", str(plan), "--bms", str(bms), "--apply",
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
            await _until(lambda: ("write", "hall_b_supply_sp", "intent") in _audit_rows(audit),
                         what="the intent record for the second write")
            await asyncio.sleep(0.2)
            proc.kill()
            await proc.wait()
            assert proc.returncode == -signal.SIGKILL
            assert dev.slot("hall_a_supply_sp", 10) == pytest.approx(19.0)  # left behind by the killed process

            db = sqlite3.connect(audit)
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            db.close()
            rows = _audit_rows(audit)
            writes = [(p, r) for a, p, r in rows if a == "write"]
            assert writes == [("hall_a_supply_sp", "intent"), ("hall_a_supply_sp", "ok"),
                              ("hall_b_supply_sp", "intent")]
            assert ("verify", "hall_a_supply_sp", "ok") in rows

            dev.silent_until = 0.0  # the device answers again
            code, text = await asyncio.to_thread(_cli, "release", "--bms", str(bms))
            assert code == 0, text
            for name, rd in RD.items():
                assert dev.slot(name, 10) is None and dev.value(name) == pytest.approx(rd)
        finally:
            dev.close()

    asyncio.run(main())


def _cli(*args: str, env: dict | None = None) -> tuple[int, str]:
    """The CLI in-process (no interpreter start-up), as typer's test runner runs it."""
    from typer.testing import CliRunner

    from coolshift.cli import app

    r = CliRunner().invoke(app, list(args), env={**(env or {}), "COLUMNS": "160"})
    return r.exit_code, r.output


def _settled(read, done, timeout: float = 30.0):
    """Poll ``read()`` until ``done(value)``: the simulator updates telemetry within about a second."""
    t_end = time.monotonic() + timeout
    while True:
        v = read()
        if done(v) or time.monotonic() > t_end:
            return v
        time.sleep(0.2)


def test_bms_sim_session_dry_run_apply_release_changes_telemetry(tmp_path):
    """`coolshift bms-sim` (Modbus) with the shipped point map, reached through environment overrides."""
    port = free_port(socket.SOCK_STREAM)
    bms = REPO / "configs" / "bms" / "sanjose_colo_2mw_modbus.yaml"
    env = {"COOLSHIFT_BMS_PORT": str(port), "COOLSHIFT_BMS_AUDIT": str(tmp_path / "audit.sqlite")}
    plan = make_plan(tmp_path / "plan", GOOD)

    async def read_all() -> dict[str, float]:
        from coolshift.bms.adapters import open_adapter
        from coolshift.bms.points import load_point_map

        pm = load_point_map(bms, environ={**os.environ, **env})
        async with open_adapter(pm) as ad:
            return {p.variable: await ad.read_value(p) for p in pm.points}

    def status() -> dict[str, float]:
        return asyncio.run(read_all())

    sim = subprocess.Popen([*CLI, "bms-sim", "--site", str(SITE), "--protocol", "modbus", "--port", str(port)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        line = sim.stdout.readline()
        assert b"bms-sim: sanjose_colo_2mw over modbus" in line, line
        before = status()
        assert before["supply_setpoint_c__hall_a"] == pytest.approx(18.0)

        code, text = _cli("push", "--plan", str(plan), "--bms", str(bms), env=env)
        assert code == 0 and "dry run: 3 point(s) would be written" in text, text
        assert status() == before

        code, text = _cli("push", "--plan", str(plan), "--bms", str(bms), "--apply", env=env)
        assert code == 0 and "applied" in text, text
        # the three writes can reach the simulator's telemetry in different updates: wait for
        # the inlets and the cooling power both (a failure still shows after the timeout)
        after = _settled(status, lambda s: s["inlet_temp_c__hall_a"] != before["inlet_temp_c__hall_a"]
                         and s["cooling_power_kw"] != before["cooling_power_kw"])
        assert after["supply_setpoint_c__hall_a"] == pytest.approx(19.0)
        # the simulator's telemetry follows: hall_a inlets warm by the 1 K supply change
        # (0.1 K register resolution), and a warmer chilled-water setpoint saves chiller power
        assert after["inlet_temp_c__hall_a"] - before["inlet_temp_c__hall_a"] == pytest.approx(1.0, abs=0.11)
        assert after["cooling_power_kw"] < before["cooling_power_kw"]

        code, text = _cli("release", "--bms", str(bms), env=env)
        assert code == 0 and text.count("released") == 3, text
        assert _settled(status, lambda s: s == pytest.approx(before)) == pytest.approx(before)
    finally:
        sim.send_signal(signal.SIGTERM)
        sim.wait(30)
    assert sim.returncode == 0


def test_bad_input_exits_2_without_traceback(tmp_path):
    bms = write_point_map(tmp_path / "map.yaml", "bacnet", 47808)
    (tmp_path / "plan").mkdir()
    code, text = _cli("push", "--plan", str(tmp_path / "plan"), "--bms", str(bms))
    assert code == 2 and "plan.csv: missing" in text and "Traceback" not in text
    code, text = _cli("release", "--bms", str(tmp_path / "nope.yaml"))
    assert code == 2 and "nope.yaml: file not found" in text and "Traceback" not in text


def test_push_to_a_device_that_does_not_answer_exits_1_after_one_timeout(tmp_path):
    bms = write_point_map(tmp_path / "map.yaml", "bacnet", free_port(), timeout_s=1.0)  # nothing listens
    plan = make_plan(tmp_path / "plan", GOOD)
    t = time.monotonic()
    code, text = _cli("push", "--plan", str(plan), "--bms", str(bms), "--apply")
    elapsed = time.monotonic() - t
    assert code == 1, text
    assert "no answer from 127.0.0.1" in text and text.count("not read: the device did not answer") == 2
    assert elapsed < 10  # one 1 s timeout, not one per point
    df = read_audit(tmp_path / "audit.sqlite")
    assert df[df.action == "read"].result.tolist() == ["timeout"] and not (df.action == "write").any()
