"""One step of the actuators (ActuatorStepper) and `coolshift run-plan --actuators` (issue 19 item 4).

Against the real sushy-tools emulator (``emulator_factory`` of tests/test_redfish.py: fake
driver, power changes applied 0-2 s after the request) and a real BMS device
(tests/test_bms_kit.py's Modbus TCP device in process; `coolshift bms-sim` for the CLI), all on
127.0.0.1. The kill test runs `coolshift run-plan` as the real CLI in a subprocess and sends it SIGKILL.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from coolshift.actuators.inventory import load_actuator_map
from coolshift.actuators.redfish import ours_off
from coolshift.actuators.step import ActuatorStepper
from coolshift.bms.audit import AuditLog, verify_audit
from coolshift.bms.points import load_point_map
from coolshift.bms.runner import run_plan
from coolshift.config import ConfigError, load_site
from test_bms_kit import SITE, ModbusDevice, write_point_map
from test_redfish import COOLSHIFT, audit_rows, cli, emulator_factory, free_port, host_ids, make_map, make_site  # noqa: F401
from test_redfish import env  # noqa: F401 (autouse: own state folder, Redfish credentials in the environment, no proxy)

pytestmark = pytest.mark.timeout(150)

SUPPLY = {"supply_setpoint_c__hall_a": 18.5, "supply_setpoint_c__hall_b": 18.5, "chw_setpoint_c": 10.0}  # bms-sim: 18/18/10


def short_plan(folder: Path, counts: list[float], step_s: float, start_in_s: float = 0.0) -> Path:
    """A plan whose steps last ``step_s`` seconds from ``start_in_s`` from now: setpoints and ``active_servers__a_web``."""
    folder.mkdir(parents=True, exist_ok=True)
    t0 = pd.Timestamp.now(tz="UTC").floor("s") + pd.Timedelta(seconds=start_in_s - 1)
    idx = [t0 + pd.Timedelta(seconds=i * step_s) for i in range(len(counts))]
    df = pd.DataFrame({"timestamp": [t.isoformat() for t in idx], **{k: v for k, v in SUPPLY.items()},
                       "active_servers__a_web": counts})
    df.to_csv(folder / "plan.csv", index=False)
    (folder / "summary.json").write_text(json.dumps({"run_id": folder.name, "site": "sanjose_colo_2mw",
                                                     "created_at": pd.Timestamp.now(tz="UTC").isoformat()}))
    return folder


class BmsSim:
    """`coolshift bms-sim` over Modbus TCP on 127.0.0.1 for the test's point map."""

    def __init__(self, tmp: Path, site: Path):
        self.port = free_port()
        self.map = write_point_map(tmp / "bms.yaml", "modbus", self.port)
        self.log = open(tmp / "bms-sim.log", "w")
        self.proc = subprocess.Popen([str(COOLSHIFT), "bms-sim", "--site", str(site), "--protocol", "modbus",
                                      "--port", str(self.port), "--bms", str(self.map)],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        import socket

        t_end = time.monotonic() + 120.0   # the CLI's imports take seconds, longer on a loaded machine
        while time.monotonic() < t_end:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"bms-sim did not start: {(tmp / 'bms-sim.log').read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.log.close()


@pytest.fixture
def bms_sim(tmp_path):
    sims = []

    def make(site: Path) -> BmsSim:
        s = BmsSim(tmp_path, site)
        sims.append(s)
        return s

    yield make
    for s in sims:
        s.stop()


def test_stepper_reads_steps_and_releases_hosts(tmp_path, emulator_factory):
    web = host_ids("a_web", 6)
    em = emulator_factory({h: "On" for h in web})
    make_site(tmp_path, {"a_web": (6, 2)})
    busy = {h: h == "a-web-005" for h in web}  # one host carries work
    am = load_actuator_map(make_map(tmp_path, em, {"a_web": web}, busy))
    site = load_site(am.site)
    now = pd.Timestamp.now(tz="UTC")
    with AuditLog(am.audit_db) as audit:
        with ActuatorStepper(am, site, audit, apply=False) as dry:
            assert dry.columns() == ["active_servers__a_web"]
            assert dry.read()["active_servers__a_web"] == 6.0
            out = dry.step(now, {"active_servers__a_web": 0})
            assert out.ok and out.status == {"hosts": "dry_run"} and out.actions == 0
            assert "4 would go off" in out.messages[0]  # 6 on, floor 2, one busy: 4 idle go
            assert set(em.powers(web).values()) == {"On"}
            with pytest.raises(ConfigError, match="active_servers__a_web"):
                dry.step(now, {"active_servers__a_web": -1})
        with ActuatorStepper(am, site, audit, apply=True) as st:
            out = st.step(now, {"active_servers__a_web": 0, "active_servers__not_ours": 3})
            assert out.ok and out.hosts_off == 4 and out.actions == 4, out
            powers = em.powers(web)
            assert [h for h in web if powers[h] == "On"] == ["a-web-000", "a-web-005"]  # the floor's lowest id + the busy one
            assert st.read()["active_servers__a_web"] == 2.0
            out = st.step(now, {"active_servers__a_web": 3})
            assert out.ok and out.hosts_on == 1 and st.read()["active_servers__a_web"] == 3.0
            lines = st.release()
            assert st.released_ok and len(lines) == 3 and all(line.endswith(": on") for line in lines), lines
    assert set(em.powers(web).values()) == {"On"}
    assert ours_off(am.audit_db, am.redfish.device) == {}
    assert verify_audit(am.audit_db).ok


def test_run_plan_drives_hosts_each_step_and_hands_them_back(tmp_path, emulator_factory):
    """run_plan (the loop `coolshift run-plan` runs) with an ActuatorStepper, in process, against a
    Modbus device (tests/test_bms_kit.py) and the emulator: 1, 4, then 2 of 4 hosts on, then all on again."""
    web = host_ids("a_web", 4)
    em = emulator_factory({h: "On" for h in web})
    site_path = make_site(tmp_path, {"a_web": (4, 1)})
    am = load_actuator_map(make_map(tmp_path, em, {"a_web": web}, {h: False for h in web}))
    port = free_port()
    pm = load_point_map(write_point_map(tmp_path / "bms.yaml", "modbus", port))
    plan = short_plan(tmp_path / "run", [1, 4, 2], step_s=4.0, start_in_s=1.0)
    lines: list[str] = []

    async def main():
        dev = await ModbusDevice(port).start()
        try:
            with AuditLog(pm.resolve(pm.audit_db)) as log, AuditLog(am.audit_db) as act_log, \
                    ActuatorStepper(am, load_site(site_path), act_log, apply=True, log=lines.append) as st:
                return await run_plan(pm, load_site(SITE), plan, log, apply=True, log=lines.append, actuators=st)
        finally:
            await dev.stop()

    res = asyncio.run(main())
    out = "\n".join(lines)
    print(out)
    assert res.exit_code == 0 and res.reason.startswith("plan ended"), (res, out)
    assert out.count("actuators ok") == 3, out
    assert "hosts: 3 off, 0 on" in out and "hosts: 0 off, 3 on" in out and "hosts: 2 off, 0 on" in out, out
    assert set(em.powers(web).values()) == {"On"}  # handed back at the end
    assert sorted((n, ok, d) for n, ok, d in res.released if n.startswith("host")) == [
        ("host a-web-002 (a_web)", True, "on"), ("host a-web-003 (a_web)", True, "on")]
    df = audit_rows(am.audit_db)
    hosts = df[df["device"] == am.redfish.device]
    writes = hosts[(hosts["action"] == "write") & (hosts["result"] == "ok")]
    assert list(writes["new_value"]) == [0.0] * 3 + [1.0] * 3 + [0.0] * 2
    back = hosts[(hosts["action"] == "relinquish") & (hosts["result"] == "ok")]
    assert sorted(back["point"]) == ["a-web-002", "a-web-003"]  # the step-3 hosts: the highest ids go off first
    assert verify_audit(am.audit_db).ok
    # the BMS points were written and went back too (the same log, their own device)
    bms = df[~df["device"].fillna("").str.startswith("redfish")]
    assert (bms["action"] == "relinquish").sum() >= 3 and (bms["action"] == "write").sum() >= 3


def test_run_plan_killed_mid_step_leaves_a_known_state_that_release_restores(tmp_path, emulator_factory, bms_sim):
    web = host_ids("a_web", 8)
    em = emulator_factory({h: "On" for h in web}, max_delay_s=3)
    site = make_site(tmp_path, {"a_web": (8, 1)})
    amap = make_map(tmp_path, em, {"a_web": web}, {h: False for h in web}, max_parallel_requests=1,
                    action_interval_s=0.4, power_off_timeout_s=6)
    sim = bms_sim(site)
    plan = short_plan(tmp_path / "run", [1, 1], step_s=60.0)
    audit = tmp_path / "audit.sqlite"  # the map's audit_db (the BMS map's too)
    proc = subprocess.Popen([str(COOLSHIFT), "run-plan", "--plan", str(plan), "--bms", str(sim.map),
                             "--actuators", str(amap), "--apply"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=os.environ.copy())
    killed = None
    t_end = time.monotonic() + 60
    while time.monotonic() < t_end and proc.poll() is None:
        if audit.is_file():
            try:
                db = sqlite3.connect(f"file:{audit}?mode=ro", uri=True)
                n = db.execute("SELECT COUNT(*) FROM audit WHERE action='write' AND result='intent' "
                               "AND new_value=0").fetchone()[0]
                db.close()
            except sqlite3.OperationalError:
                n = 0
            if n >= 2:  # mid-step: power-offs asked, the step not finished
                proc.send_signal(signal.SIGKILL)
                killed = n
                break
        time.sleep(0.02)
    proc.wait(10)
    assert killed is not None, proc.stdout.read().decode()[-3000:]
    # the known state: the log names every host asked off (confirmed or not), and is intact
    am = load_actuator_map(amap)
    asked = ours_off(audit, am.redfish.device)
    assert 2 <= len(asked) < 7, asked
    assert verify_audit(audit).ok
    code, out = cli("release", "--bms", sim.map, "--actuators", amap)
    assert code == 0, out
    assert f"released {len(asked)}/{len(asked)} host(s)" in out, out
    assert set(em.powers(web).values()) == {"On"}
    time.sleep(3.5)  # longer than the emulator's delay: no shutdown still pending
    assert set(em.powers(web).values()) == {"On"}
    assert ours_off(audit, am.redfish.device) == {}
    assert verify_audit(audit).ok
