"""Battery charge/discharge setpoints through the BMS, against real loopback devices.

The example maps configs/bms/sanjose_colo_2mw_battery_{bacnet,modbus}.yaml (San Jose with its
assumed 2 MWh / 1 MW battery) served by coolshift.bms.sim's BacnetPoints (a bacpypes3 device
with commandable objects) and ModbusPoints (a pymodbus server with mode registers) on
127.0.0.1, never a protocol mock. Local control of a battery power point is 0 kW (idle).
"""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from coolshift.bms.audit import AuditLog, read_audit
from coolshift.bms.plan import read_plan
from coolshift.bms.points import PointMapError, check_map_site, load_point_map
from coolshift.bms.push import push, release
from coolshift.bms.sim import BacnetPoints, ModbusPoints
from coolshift.config import load_site
from test_bms_cli import CLI, _until
from test_bms_kit import REPO, free_port, make_plan
from test_bms_kit import state_dir  # noqa: F401 (autouse: a private COOLSHIFT_STATE_DIR per test)

pytestmark = pytest.mark.timeout(120)

CHARGE, DISCHARGE = "charge_kw__battery", "discharge_kw__battery"
SETPOINTS = {"supply_setpoint_c__hall_a": 19.0, "supply_setpoint_c__hall_b": 18.5, "chw_setpoint_c": 10.8}
SITE_NAME = "sanjose_colo_2mw_battery"
POWER_KW = 1000.0  # the battery's charge_kw / discharge_kw in configs/sites/sanjose_colo_2mw_battery.yaml


def VARS(pm) -> dict[str, str]:  # noqa: N802 - what push/run-plan read from plan.csv: the map's writable variables
    return {p.variable: p.name for p in pm.writable}


def _map(tmp_path, protocol: str, port: int):
    path = REPO / "configs" / "bms" / f"sanjose_colo_2mw_battery_{protocol}.yaml"
    env = {**os.environ, "COOLSHIFT_BMS_PORT": str(port), "COOLSHIFT_BMS_AUDIT": str(tmp_path / "audit.sqlite")}
    pm = load_point_map(path, environ=env)
    site = load_site(pm.resolve(pm.site))
    check_map_site(pm, site, path)
    return path, env, pm, site, AuditLog(pm.resolve(pm.audit_db))


@pytest.mark.parametrize("protocol", ["bacnet", "modbus"])
def test_push_writes_the_plans_battery_power_and_release_hands_it_back_at_0_kw(tmp_path, protocol):
    port = free_port() if protocol == "bacnet" else free_port(__import__("socket").SOCK_STREAM)
    _, _, pm, site, log = _map(tmp_path, protocol, port)
    plan = read_plan(make_plan(tmp_path / "plan", {**SETPOINTS, CHARGE: 640.0, DISCHARGE: 0.0}, site=SITE_NAME), VARS(pm))

    async def main():
        dev = BacnetPoints(pm, site, port) if protocol == "bacnet" else ModbusPoints(pm, site, port)
        if protocol == "bacnet":
            dev.start()
        else:
            await dev.start()
        try:
            assert dev.setpoints()[CHARGE] == 0.0 and dev.setpoints()[DISCHARGE] == 0.0  # local control: idle
            out = await push(pm, site, plan, log, apply=True)
            assert out.status == "applied", out.messages
            sp = dev.setpoints()
            assert sp[CHARGE] == pytest.approx(640.0, abs=1e-3) and sp[DISCHARGE] == pytest.approx(0.0, abs=1e-6)
            assert 0.0 <= sp[CHARGE] <= POWER_KW
            held = dev.held_by_supervisor()
            assert held[CHARGE] and held[DISCHARGE]  # Coolshift commands both (0 kW discharge is a command too)
            res = await release(pm, log)
            assert all(ok for _, ok, _ in res), res
            assert not any(dev.held_by_supervisor().values())
            assert dev.setpoints()[CHARGE] == 0.0 and dev.setpoints()[DISCHARGE] == 0.0  # back to local: idle
        finally:
            if protocol == "bacnet":
                dev.close()
            else:
                await dev.close()

    asyncio.run(main())
    df = read_audit(log.path)
    w = df[(df.action == "write") & (df.result == "ok") & (df.point == "battery_charge_sp")]
    assert w.new_value.tolist() == [640.0]
    assert set(df[(df.action == "relinquish") & (df.result == "ok")].point) >= {"battery_charge_sp",
                                                                               "battery_discharge_sp"}


@pytest.mark.parametrize("value, limit", [(1200.0, "outside the point's limits 0..1000 kW"), (-5.0, "0..1000 kW")])
def test_battery_power_beyond_its_limits_is_refused_and_nothing_written(tmp_path, value, limit):
    port = free_port()
    _, _, pm, site, log = _map(tmp_path, "bacnet", port)
    plan = read_plan(make_plan(tmp_path / "plan", {**SETPOINTS, CHARGE: 0.0, DISCHARGE: value}, site=SITE_NAME), VARS(pm))

    async def main():
        dev = BacnetPoints(pm, site, port)
        dev.start()
        try:
            out = await push(pm, site, plan, log, apply=True)
            assert out.status == "refused"
            assert any("battery_discharge_sp" in m and limit in m for m in out.messages), out.messages
            assert not any(dev.held_by_supervisor().values())  # nothing written, not even the valid points
            assert dev.setpoints()[DISCHARGE] == 0.0
        finally:
            dev.close()

    asyncio.run(main())


def test_run_plan_writes_battery_power_each_step_and_relinquishes_on_sigterm(tmp_path):
    """`coolshift run-plan --apply` on the example BACnet map: the step's 750 kW discharge reaches the
    device at priority 10; on SIGTERM every point is relinquished and the battery is back at 0 kW."""
    port = free_port()
    path, env, pm, site, _ = _map(tmp_path, "bacnet", port)
    plan = make_plan(tmp_path / "plan", {**SETPOINTS, CHARGE: 0.0, DISCHARGE: 750.0}, site=SITE_NAME)

    async def main():
        dev = BacnetPoints(pm, site, port)
        dev.start()
        try:
            proc = await asyncio.create_subprocess_exec(
                *CLI, "run-plan", "--plan", str(plan), "--bms", str(path), "--apply", env=env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            await _until(lambda: dev.held_by_supervisor()[DISCHARGE], what="run-plan's first step")
            assert dev.setpoints()[DISCHARGE] == pytest.approx(750.0, abs=1e-3)
            assert dev.setpoints()[CHARGE] == pytest.approx(0.0, abs=1e-6)
            assert dev.objects["battery_discharge_sp"].priorityArray[9]._choice != "null"  # priority 10
            proc.send_signal(signal.SIGTERM)
            out, _ = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode == 0, out.decode()
            assert not any(dev.held_by_supervisor().values())
            assert dev.setpoints()[DISCHARGE] == 0.0 and dev.setpoints()[CHARGE] == 0.0
        finally:
            dev.close()

    asyncio.run(main())
    df = read_audit(tmp_path / "audit.sqlite")
    assert {"battery_charge_sp", "battery_discharge_sp"} <= set(df[(df.action == "relinquish") & (df.result == "ok")].point)


def test_a_map_whose_battery_limits_exceed_the_store_exits_2_naming_file_and_point(tmp_path):
    src = (REPO / "configs" / "bms" / "sanjose_colo_2mw_battery_bacnet.yaml").read_text()
    bad = tmp_path / "map.yaml"
    bad.write_text(src.replace("site: ../sites/", f"site: {REPO}/configs/sites/")
                   .replace("variable: discharge_kw__battery, unit: kW, min_value: 0, max_value: 1000",
                            "variable: discharge_kw__battery, unit: kW, min_value: 0, max_value: 1500"))
    pm = load_point_map(bad, environ={})
    with pytest.raises(PointMapError, match=r"map.yaml: points.4 \(battery_discharge_sp\): .*0..1000 kW"):
        check_map_site(pm, load_site(pm.resolve(pm.site)), bad)
    plan = make_plan(tmp_path / "plan", {**SETPOINTS, CHARGE: 0.0, DISCHARGE: 10.0}, site=SITE_NAME)
    import subprocess

    r = subprocess.run([*CLI, "push", "--plan", str(plan), "--bms", str(bad)], capture_output=True, text=True,
                       timeout=60, env={**os.environ, "COOLSHIFT_BMS_AUDIT": str(tmp_path / "a.sqlite")})
    assert r.returncode == 2, r.stdout + r.stderr
    assert "points.4 (battery_discharge_sp)" in r.stderr and "Traceback" not in r.stderr
