"""Pushes against real loopback devices: a bacpypes3 commandable device and a pymodbus server."""

from __future__ import annotations

import asyncio
import socket

import pandas as pd
import pytest

from coolshift.bms.audit import AuditLog, read_audit
from coolshift.bms.plan import read_plan
from coolshift.bms.points import load_point_map
from coolshift.bms.push import push, release
from coolshift.config import load_site
from test_bms_kit import (AUTO, REMOTE, RD, REPO, BacnetDevice, ModbusDevice, free_port, make_plan, now_utc,
                          write_point_map)
from test_bms_kit import state_dir  # noqa: F401 (autouse: a private COOLSHIFT_STATE_DIR per test)

pytestmark = pytest.mark.timeout(60)
REPO_BMS = REPO / "configs" / "bms"

SUPPLY_A, SUPPLY_B, CHW = "supply_setpoint_c__hall_a", "supply_setpoint_c__hall_b", "chw_setpoint_c"
GOOD = {SUPPLY_A: 19.0, SUPPLY_B: 18.5, CHW: 10.8}


def _setup(tmp_path, protocol, port, **kw):
    pm = load_point_map(write_point_map(tmp_path / "map.yaml", protocol, port, **kw))
    return pm, load_site(pm.resolve(pm.site)), AuditLog(pm.resolve(pm.audit_db))


# -- BACnet -------------------------------------------------------------------------------
def test_bacnet_apply_writes_at_priority_and_release_restores_relinquish_default(tmp_path):
    port = free_port()
    pm, site, log = _setup(tmp_path, "bacnet", port)
    plan = read_plan(make_plan(tmp_path / "plan", GOOD))

    async def main():
        dev = BacnetDevice(port).start()
        try:
            dry = await push(pm, site, plan, log, apply=False)
            assert dry.status == "dry_run" and [d.action for d in dry.diff.points] == ["write"] * 3
            assert dev.value("hall_a_supply_sp") == 18.0 and dev.slot("hall_a_supply_sp", 10) is None  # nothing written

            out = await push(pm, site, plan, log, apply=True)
            assert out.status == "applied", out.messages
            assert dev.slot("hall_a_supply_sp", 10) == pytest.approx(19.0)
            assert dev.slot("hall_b_supply_sp", 10) == pytest.approx(18.5)
            assert dev.slot("chw_sp", 10) == pytest.approx(10.8, abs=1e-5)
            assert dev.value("chw_sp") == pytest.approx(10.8, abs=1e-5)
            for name in RD:  # only our slot is used
                assert all(dev.slot(name, p) is None for p in range(1, 17) if p != 10)

            res = await release(pm, log)
            assert all(ok for _, ok, _ in res)
            for name, rd in RD.items():
                assert dev.slot(name, 10) is None
                assert dev.value(name) == pytest.approx(rd)  # back to relinquish-default
        finally:
            dev.close()

    asyncio.run(main())
    df = read_audit(log.path)
    writes = df[(df.action == "write")]
    # every write has an intent record committed before its result
    for point in RD:
        w = writes[writes.point == point]
        assert list(w.result) == ["intent", "ok"]
        assert w.iloc[0].id < w.iloc[1].id
    assert set(df[(df.action == "verify")].result) == {"ok"}
    assert (df[(df.action == "relinquish") & (df.result == "ok")].point.tolist()) == list(RD)
    assert set(df.run_id.dropna()) == {"test-run"}


def test_bacnet_operator_override_at_higher_priority_is_left_alone(tmp_path):
    port = free_port()
    pm, site, log = _setup(tmp_path, "bacnet", port)
    plan = read_plan(make_plan(tmp_path / "plan", GOOD))

    async def main():
        dev = BacnetDevice(port).start()
        try:
            dev.set_slot("hall_b_supply_sp", 8, 17.5)  # manual operator command
            out = await push(pm, site, plan, log, apply=True)
            assert out.status == "refused"
            assert any("priority 8" in m and "hall_b_supply_sp" in m for m in out.messages)
            assert dev.slot("hall_a_supply_sp", 10) is None and dev.slot("chw_sp", 10) is None  # nothing written
            assert dev.value("hall_b_supply_sp") == pytest.approx(17.5)
        finally:
            dev.close()

    asyncio.run(main())


@pytest.mark.parametrize(
    "case, plan_kw, values, expect",
    [
        ("out of envelope", {}, {SUPPLY_A: 19.0, SUPPLY_B: 18.5, CHW: 6.0}, "outside"),
        ("too large a step", {}, {SUPPLY_A: 20.5, SUPPLY_B: 18.5, CHW: 10.5}, "exceeds the maximum change per write of 1"),
        ("stale plan", {"created_at": pd.Timestamp("2026-01-01T00:00:00Z"), "start": None}, GOOD, "plan is stale"),
        ("model envelope flag", {"in_envelope": [False, False, False, False]}, GOOD, "outside its training envelope"),
        ("not the current step", {"start": pd.Timestamp("2020-01-01T00:00:00Z")}, GOOD, "no plan step covers now"),
        ("plan for another site", {"site": "philadelphia_multihall_20mw"}, GOOD, "is for site"),
    ],
)
def test_bacnet_refused_pushes_write_nothing(tmp_path, case, plan_kw, values, expect):
    port = free_port()
    pm, site, log = _setup(tmp_path, "bacnet", port)
    plan = read_plan(make_plan(tmp_path / "plan", values, **plan_kw))

    async def main():
        dev = BacnetDevice(port).start()
        try:
            out = await push(pm, site, plan, log, apply=True)
            assert out.status == "refused", case
            assert any(expect in m for m in out.messages), out.messages
            assert dev.writes == 0
            assert all(dev.slot(n, 10) is None for n in RD)
        finally:
            dev.close()

    asyncio.run(main())
    df = read_audit(log.path)
    assert (df.action == "refuse").sum() >= 1 and not ((df.action == "write")).any()


def test_bacnet_zone_envelope_binds_inside_the_point_limits(tmp_path):
    """Point limits 13-37 degC; hall_a is at 26.8 (ours): 27.5 is a 0.7 K step inside the point's
    limits but above the zone's ASHRAE inlet maximum of 27 degC, so it is refused."""
    port = free_port()
    pm, site, log = _setup(tmp_path, "bacnet", port, wide_limits=True)
    plan = read_plan(make_plan(tmp_path / "plan", {SUPPLY_A: 27.5, SUPPLY_B: 18.5, CHW: 10.5}))

    async def main():
        dev = BacnetDevice(port).start()
        dev.set_slot("hall_a_supply_sp", 10, 26.8)
        try:
            out = await push(pm, site, plan, log, apply=True)
            assert out.status == "refused"
            assert out.messages == ["hall_a_supply_sp: supply air 27.5 degC is outside zone hall_a's envelope "
                                    "16..27 degC (supply setpoint range, ASHRAE inlet max 27 degC)"]
            assert dev.slot("hall_a_supply_sp", 10) == pytest.approx(26.8) and dev.writes == 0
        finally:
            dev.close()

    asyncio.run(main())


def test_bacnet_point_the_plan_no_longer_carries_is_handed_back(tmp_path):
    port = free_port()
    pm, site, log = _setup(tmp_path, "bacnet", port)
    plan = read_plan(make_plan(tmp_path / "plan", {SUPPLY_A: 19.0, SUPPLY_B: 18.5}))  # no chilled water

    async def main():
        dev = BacnetDevice(port).start()
        dev.set_slot("chw_sp", 10, 11.0)  # commanded by an earlier plan
        try:
            out = await push(pm, site, plan, log, apply=True)
            assert out.status == "applied"
            assert [d.action for d in out.diff.points] == ["write", "write", "release"]
            assert dev.slot("chw_sp", 10) is None and dev.value("chw_sp") == pytest.approx(RD["chw_sp"])
            assert dev.slot("hall_a_supply_sp", 10) == pytest.approx(19.0)
        finally:
            dev.close()

    asyncio.run(main())
    df = read_audit(log.path)
    assert df[(df.action == "relinquish") & (df.point == "chw_sp")].result.tolist() == ["intent", "ok"]


def test_bacnet_object_without_priority_array_is_never_written(tmp_path):
    """A plain AnalogValueObject would take a priority write silently and could never be
    relinquished; the push must refuse it before writing anything."""
    port = free_port()
    pm, site, log = _setup(tmp_path, "bacnet", port)
    plan = read_plan(make_plan(tmp_path / "plan", GOOD))

    async def main():
        dev = BacnetDevice(port, plain=("chw_sp",)).start()
        try:
            out = await push(pm, site, plan, log, apply=True)
            assert out.status == "refused"
            assert any(m.startswith("chw_sp: cannot read the current value") for m in out.messages), out.messages
            assert dev.writes == 0 and dev.value("chw_sp") == RD["chw_sp"]
        finally:
            dev.close()

    asyncio.run(main())


def test_bacnet_rate_limit_refuses_a_second_write_too_soon(tmp_path):
    port = free_port()
    pm, site, log = _setup(tmp_path, "bacnet", port, min_write_interval_s=300)

    async def main():
        dev = BacnetDevice(port).start()
        try:
            first = await push(pm, site, read_plan(make_plan(tmp_path / "p1", GOOD)), log, apply=True)
            assert first.status == "applied"
            second = await push(pm, site, read_plan(make_plan(tmp_path / "p2", {**GOOD, SUPPLY_A: 19.5})), log,
                                apply=True)
            assert second.status == "refused"
            assert any("rate limit" in m and "hall_a_supply_sp" in m for m in second.messages)
            assert dev.slot("hall_a_supply_sp", 10) == pytest.approx(19.0)
        finally:
            dev.close()

    asyncio.run(main())


def test_bacnet_device_that_stops_answering_mid_push_is_rolled_back(tmp_path):
    """hall_a already commanded at 19.0 by us; the new push writes 19.5, then the device goes
    silent on the second write. hall_a must be restored to 19.0 at our priority, hall_b
    relinquished, chw never touched; the audit log must say so."""
    port = free_port()
    pm, site, log = _setup(tmp_path, "bacnet", port, timeout_s=0.7, restore_timeout_s=20)
    plan = read_plan(make_plan(tmp_path / "plan", {SUPPLY_A: 19.5, SUPPLY_B: 18.5, CHW: 10.5}))

    async def main():
        dev = BacnetDevice(port, go_silent_after=1, silence_s=1.5).start()
        dev.set_slot("hall_a_supply_sp", 10, 19.0)
        try:
            out = await push(pm, site, plan, log, apply=True)
            assert out.status == "rolled_back", out.messages
            assert out.written == ["hall_a_supply_sp", "hall_b_supply_sp"]
            assert dev.dropped >= 1
            assert dev.slot("hall_a_supply_sp", 10) == pytest.approx(19.0)  # previous value restored
            assert dev.value("hall_a_supply_sp") == pytest.approx(19.0)
            assert dev.slot("hall_b_supply_sp", 10) is None  # relinquished
            assert dev.value("hall_b_supply_sp") == pytest.approx(RD["hall_b_supply_sp"])
            assert dev.slot("chw_sp", 10) is None and dev.value("chw_sp") == pytest.approx(RD["chw_sp"])
        finally:
            dev.close()

    asyncio.run(main())
    df = read_audit(log.path)
    w = df[df.action == "write"]
    assert w[w.point == "hall_a_supply_sp"].result.tolist() == ["intent", "ok"]
    assert w[w.point == "hall_b_supply_sp"].result.tolist() == ["intent", "timeout"]
    assert "chw_sp" not in set(w.point)
    assert (df[(df.action == "restore") & (df.point == "hall_a_supply_sp")].result.iloc[-1]) == "ok"
    assert (df[(df.action == "relinquish") & (df.point == "hall_b_supply_sp")].result.iloc[-1]) == "ok"
    # the confirmed write (hall_a) was put back first, the failed one (hall_b) only after it
    assert df[(df.action == "restore") & (df.point == "hall_a_supply_sp") & (df.result == "ok")].id.max() < \
        df[(df.action == "relinquish") & (df.point == "hall_b_supply_sp")].id.min()


# -- Modbus -------------------------------------------------------------------------------
def test_modbus_apply_verify_release(tmp_path):
    port = free_port(socket.SOCK_STREAM)
    pm, site, log = _setup(tmp_path, "modbus", port)
    plan = read_plan(make_plan(tmp_path / "plan", {SUPPLY_A: 18.7, SUPPLY_B: 18.5, CHW: 10.8}))

    async def main():
        dev = await ModbusDevice(port).start()
        try:
            out = await push(pm, site, plan, log, apply=True)
            assert out.status == "applied", out.messages
            assert dev.store[0] == 187  # int16 tenths of a degree
            assert dev.value("hall_a_supply_sp") == pytest.approx(18.7)
            assert dev.value("chw_sp") == pytest.approx(10.8, abs=1e-5)
            # float32 low word first: 10.8 = 0x412CCCCD
            assert [dev.store[10], dev.store[11]] == [0xCCCD, 0x412C]
            assert all(dev.mode(n) == REMOTE for n in RD)
            res = await release(pm, log)
            assert all(ok for _, ok, _ in res)
            assert all(dev.mode(n) == AUTO for n in RD)
        finally:
            await dev.stop()

    asyncio.run(main())


def test_modbus_coil_release(tmp_path):
    port = free_port(socket.SOCK_STREAM)
    pm, site, log = _setup(tmp_path, "modbus", port, coil_release=True)
    plan = read_plan(make_plan(tmp_path / "plan", GOOD))

    async def main():
        from coolshift.bms.adapters import open_adapter

        dev = await ModbusDevice(port).start()
        try:
            out = await push(pm, site, plan, log, apply=True)
            assert out.status == "applied", out.messages
            async with open_adapter(pm) as ad:
                states = [await ad.read_state(p) for p in pm.writable]
                assert [s.commanded for s in states] == pytest.approx([19.0, 18.5, 10.8], abs=1e-5)
                res = await release(pm, log, adapter=ad)
                assert all(ok for _, ok, _ in res)
                assert [(await ad.read_state(p)).commanded for p in pm.writable] == [None, None, None]
        finally:
            await dev.stop()

    asyncio.run(main())


def test_modbus_device_that_stops_mid_push_leaves_points_previous_or_released(tmp_path):
    """The server hangs on the 3rd write request (hall_b's setpoint) and is then shut down for
    a second; the push must hand hall_a and hall_b back to local control once it returns."""
    port = free_port(socket.SOCK_STREAM)
    pm, site, log = _setup(tmp_path, "modbus", port, timeout_s=0.7, restore_timeout_s=20)
    plan = read_plan(make_plan(tmp_path / "plan", {SUPPLY_A: 18.7, SUPPLY_B: 18.5, CHW: 10.8}))

    async def main():
        dev = await ModbusDevice(port, hang_on_write=3).start()

        async def outage():
            await dev.hung.wait()
            await dev.stop()
            await asyncio.sleep(1.0)
            dev.hang_on_write = None
            await dev.start()

        chaos = asyncio.create_task(outage())
        try:
            out = await push(pm, site, plan, log, apply=True)
            await chaos
            assert out.status == "rolled_back", out.messages
            assert out.written == ["hall_a_supply_sp", "hall_b_supply_sp"]
            for name in RD:  # previous value, or handed back to local control
                assert dev.mode(name) == AUTO
            assert dev.value("hall_b_supply_sp") == pytest.approx(RD["hall_b_supply_sp"])
            assert dev.value("chw_sp") == pytest.approx(RD["chw_sp"])
        finally:
            chaos.cancel()
            await dev.stop()

    asyncio.run(main())
    df = read_audit(log.path)
    w = df[df.action == "write"]
    assert w[w.point == "hall_b_supply_sp"].result.tolist() == ["intent", "timeout"]
    rel = df[df.action == "relinquish"]
    assert rel[rel.result == "ok"].point.tolist() == ["hall_a_supply_sp", "hall_b_supply_sp"]  # confirmed first
    assert (rel.result.isin(["timeout", "error"])).any()  # it retried while the device was down


# -- run-plan in process ------------------------------------------------------------------
def _plan_steps(folder, rows, step_s, tail_s: float = 0.4):
    """A plan whose steps last ``step_s`` seconds, starting now, closed by a short repeat of
    the last row (the plan's step is its shortest interval, so it ends ``tail_s`` later)."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    t0 = now_utc()
    lines = ["timestamp," + ",".join(rows[0])]
    starts = [i * step_s for i in range(len(rows))] + [(len(rows) - 1) * step_s + tail_s]
    for t, r in zip(starts, rows + rows[-1:]):
        lines.append((t0 + pd.Timedelta(seconds=t)).isoformat() + "," + ",".join(str(v) for v in r.values()))
    (folder / "plan.csv").write_text("\n".join(lines) + "\n")
    (folder / "summary.json").write_text(json.dumps({"run_id": "steps", "created_at": now_utc().isoformat(),
                                                     "site": "sanjose_colo_2mw"}))
    return folder


def test_run_plan_writes_each_step_as_it_starts_then_relinquishes_at_the_end(tmp_path):
    from coolshift.bms.runner import run_plan

    port = free_port()
    pm, site, log = _setup(tmp_path, "bacnet", port)
    seen = []

    async def main():
        dev = BacnetDevice(port).start()
        # written last, so that set-up time on a loaded machine does not eat into the steps
        plan = _plan_steps(tmp_path / "plan", [{SUPPLY_A: 19.0, SUPPLY_B: 18.5, CHW: 10.5},
                                               {SUPPLY_A: 19.5, SUPPLY_B: 18.5, CHW: 11.0}], step_s=2.0)

        def note(msg):
            seen.append((msg, dev.slot("hall_a_supply_sp", 10)))

        try:
            res = await run_plan(pm, site, plan, log, apply=True, log=note)
            assert res.exit_code == 0 and res.reason.startswith("plan ended"), res
            assert res.steps_written == 2, seen
            assert all(dev.slot(n, 10) is None for n in RD)  # handed back at the end
        finally:
            dev.close()

    asyncio.run(main())
    assert [v for m, v in seen if "applied" in m] == [pytest.approx(19.0), pytest.approx(19.5)]
    df = read_audit(log.path)
    ok = df[(df.action == "write") & (df.result == "ok") & (df.point == "hall_a_supply_sp")]
    assert ok.new_value.tolist() == [19.0, 19.5]
    assert set(df[(df.action == "write") & (df.point == "hall_b_supply_sp")].result) == {"intent", "ok"}
    assert len(df[(df.action == "write") & (df.point == "hall_b_supply_sp")]) == 2  # unchanged in step 2


def test_run_plan_refuses_a_stale_plan_and_writes_nothing(tmp_path):
    from coolshift.bms.runner import run_plan

    port = free_port()
    pm, site, log = _setup(tmp_path, "bacnet", port, max_plan_age_h=1)
    plan = make_plan(tmp_path / "plan", GOOD, created_at=now_utc() - pd.Timedelta("2h"))

    async def main():
        dev = BacnetDevice(port).start()
        try:
            res = await run_plan(pm, site, plan, log, apply=True, log=lambda m: None)
            assert res.exit_code == 3 and "stale" in res.reason
            assert dev.writes == len(RD)  # only the relinquish writes (Null at our priority)
            assert all(dev.slot(n, 10) is None for n in RD)
        finally:
            dev.close()

    asyncio.run(main())
    df = read_audit(log.path)
    assert not ((df.action == "write")).any()
    assert df[df.action == "refuse"].detail.str.contains("plan is stale").any()


# -- bms-sim devices in process -------------------------------------------------------------
def test_bacnet_sim_serves_philadelphia_points_and_telemetry_follows_setpoints(tmp_path):
    from coolshift.bms.adapters import open_adapter
    from coolshift.bms.sim import BacnetSim, SimConditions

    port = free_port()
    pm = load_point_map(REPO_BMS / "philadelphia_multihall_20mw_bacnet.yaml",
                        environ={"COOLSHIFT_BMS_PORT": str(port), "COOLSHIFT_BMS_AUDIT": str(tmp_path / "a.sqlite")})
    site = load_site(pm.resolve(pm.site))
    log = AuditLog(tmp_path / "a.sqlite")
    values = {f"supply_setpoint_c__hall_{i}": 19.0 for i in range(1, 5)} | {CHW: 11.0}
    plan = read_plan(make_plan(tmp_path / "plan", values, site="philadelphia_multihall_20mw"))

    async def main():
        sim = BacnetSim(pm, site, port, SimConditions(load_frac=0.5))
        sim.start()
        try:
            async with open_adapter(pm) as ad:
                inlet = pm.by_variable("inlet_temp_c__hall_3")
                cool = pm.by_variable("cooling_power_kw")
                before = (await ad.read_value(inlet), await ad.read_value(cool))
                out = await push(pm, site, plan, log, apply=True, adapter=ad)
                assert out.status == "applied" and len(out.written) == 5
                sim.refresh()  # the served loop does this every 0.5 s
                after = (await ad.read_value(inlet), await ad.read_value(cool))
                assert after[0] - before[0] == pytest.approx(1.0, abs=1e-4)  # supply 18 -> 19 degC
                assert after[1] < before[1]  # chilled water 10 -> 11 degC: less chiller power
                await release(pm, log, adapter=ad)
                sim.refresh()
                assert await ad.read_value(inlet) == pytest.approx(before[0], abs=1e-4)
        finally:
            sim.close()

    asyncio.run(main())


def test_run_plan_without_apply_writes_nothing_at_all(tmp_path):
    from coolshift.bms.runner import run_plan

    port = free_port()
    pm, site, log = _setup(tmp_path, "bacnet", port)
    seen = []

    async def main():
        dev = BacnetDevice(port).start()
        plan = _plan_steps(tmp_path / "plan", [{SUPPLY_A: 19.0, SUPPLY_B: 18.5, CHW: 10.5},
                                               {SUPPLY_A: 19.5, SUPPLY_B: 18.5, CHW: 10.5}], step_s=1.5)
        try:
            res = await run_plan(pm, site, plan, log, apply=False, log=seen.append)
            assert res.exit_code == 0 and res.steps_written == 0 and res.released == []
            assert dev.writes == 0  # not even a relinquish
        finally:
            dev.close()

    asyncio.run(main())
    assert sum("dry_run" in m for m in seen) >= 2, seen


def test_bacnet_analog_output_object_write_and_relinquish(tmp_path):
    """Analog Output objects are always commandable in ASHRAE 135: the same priority-array path."""
    import yaml
    from bacpypes3.local.analog import AnalogOutputObject

    from coolshift.bms.bacnet import make_application
    from coolshift.bms.adapters import open_adapter

    port = free_port()
    path = write_point_map(tmp_path / "map.yaml", "bacnet", port)
    doc = yaml.safe_load(path.read_text())
    doc["points"] = [p for p in doc["points"] if p["name"] == "chw_sp"]
    doc["points"][0]["bacnet"] = {"object": "analog-output,3", "priority": 12}
    path.write_text(yaml.safe_dump(doc))
    pm, log = load_point_map(path), AuditLog(tmp_path / "audit.sqlite")
    site = load_site(pm.resolve(pm.site))
    plan = read_plan(make_plan(tmp_path / "plan", {CHW: 10.6}))

    async def main():
        ao = AnalogOutputObject(objectIdentifier=("analog-output", 3), objectName="chw", presentValue=10.0,
                                relinquishDefault=10.0)
        app = make_application(f"127.0.0.1/8:{port}", 4002, "ao-device", [ao])
        try:
            out = await push(pm, site, plan, log, apply=True)
            assert out.status == "applied", out.messages
            pv = ao.priorityArray[11]
            assert pv._choice == "real" and pv.real == pytest.approx(10.6, abs=1e-5)
            async with open_adapter(pm) as ad:
                assert (await ad.read_state(pm.points[0])).detail.startswith("p12=10.6")
                await release(pm, log, adapter=ad)
            assert ao.priorityArray[11]._choice == "null" and float(ao.presentValue) == 10.0
        finally:
            app.close()

    asyncio.run(main())
