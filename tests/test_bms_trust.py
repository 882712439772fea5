"""Issue 17 part 7 against real loopback devices: audit chain and verify, who ran it, roll-back
order and budget, unfinished writes, the device-keyed rate limit, plans that map to no point."""

from __future__ import annotations

import asyncio
import signal
import socket
import sqlite3
import sys
import time

import pandas as pd
import pytest

from coolshift.bms.audit import AuditLog, read_audit, verify_audit
from coolshift.bms.plan import PlanError, read_plan
from coolshift.bms.points import load_point_map
from coolshift.bms.push import push
from coolshift.bms.state import DeviceState, device_key
from coolshift.config import load_site
from test_bms_cli import _audit_rows
from test_bms_kit import (AUTO, RD, BacnetDevice, ModbusDevice, free_port, make_plan, write_point_map)
from test_bms_kit import state_dir  # noqa: F401 (autouse: a private COOLSHIFT_STATE_DIR per test)

pytestmark = pytest.mark.timeout(120)

CLI = [sys.executable, "-c", "from coolshift.cli import main; main()"]
SUPPLY_A, SUPPLY_B, CHW = "supply_setpoint_c__hall_a", "supply_setpoint_c__hall_b", "chw_setpoint_c"
GOOD = {SUPPLY_A: 19.0, SUPPLY_B: 18.5, CHW: 10.8}
ROLLBACK = ("restore", "relinquish")


def _cli(*args: str, env: dict | None = None) -> tuple[int, str]:
    """The CLI in-process, stdout and stderr together."""
    from typer.testing import CliRunner

    from coolshift.cli import app

    r = CliRunner().invoke(app, list(args), env={**(env or {}), "COLUMNS": "200"})
    return r.exit_code, r.output


def _setup(tmp_path, protocol, port, **kw):
    pm = load_point_map(write_point_map(tmp_path / "map.yaml", protocol, port, **kw))
    return pm, load_site(pm.resolve(pm.site)), AuditLog(pm.resolve(pm.audit_db))


def _t(s: str) -> pd.Timestamp:
    return pd.Timestamp(s)


# -- bms-audit on a Modbus log; user and host ----------------------------------------------
def test_bms_audit_prints_a_modbus_log_and_records_user_and_host(tmp_path, monkeypatch):
    """Modbus has no priorities: every record's priority is NULL, which made bms-audit raise."""
    monkeypatch.setenv("LOGNAME", "op-alice")  # getpass.getuser() reads LOGNAME first
    port = free_port(socket.SOCK_STREAM)
    bms = write_point_map(tmp_path / "map.yaml", "modbus", port)
    pm, site, log = _setup(tmp_path, "modbus", port)

    async def main():
        dev = await ModbusDevice(port).start()
        try:
            out = await push(pm, site, read_plan(make_plan(tmp_path / "plan", {**GOOD, SUPPLY_A: 18.7})), log,
                             apply=True)
            assert out.status == "applied", out.messages
        finally:
            await dev.stop()

    asyncio.run(main())
    log.close()
    df = read_audit(log.path)
    assert df.priority.isna().all() and (df.action == "write").any()
    assert set(df.os_user) == {"op-alice"} and set(df.host) == {socket.gethostname()}
    assert set(df.device) == {f"modbus://127.0.0.1:{port}/1"}

    code, text = _cli("bms-audit", "--bms", str(bms), "--tail", "50")
    assert code == 0, text
    assert "Traceback" not in text and "hall_a_supply_sp" in text and "18.70" in text
    assert f"op-alice@{socket.gethostname()}" in text
    code, text = _cli("bms-audit", "--bms", str(bms), "--action", "write")
    assert code == 0 and "verify" not in text.split("\n", 2)[-1], text
    code, text = _cli("bms-audit", "--bms", str(bms), "--action", "erase")
    assert code == 2 and "--action 'erase'" in text, text


# -- tamper evidence ----------------------------------------------------------------------
def _bacnet_log(tmp_path) -> tuple:
    """A real log: a BACnet push applied and released (about 25 records)."""
    from coolshift.bms.push import release

    port = free_port()
    bms = write_point_map(tmp_path / "map.yaml", "bacnet", port)
    pm, site, log = _setup(tmp_path, "bacnet", port)

    async def main():
        dev = BacnetDevice(port).start()
        try:
            assert (await push(pm, site, read_plan(make_plan(tmp_path / "plan", GOOD)), log, apply=True)).status \
                == "applied"
            assert all(ok for _, ok, _ in await release(pm, log))
        finally:
            dev.close()

    asyncio.run(main())
    log.close()
    return bms, log.path


def _tamper(path, *sql: str) -> None:
    db = sqlite3.connect(path)
    db.executescript("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;" + ";".join(sql))
    db.close()


def _copy(src, dst):
    """The log with its WAL folded in (a plain copy of the main file could miss records)."""
    a, b = sqlite3.connect(src), sqlite3.connect(dst)
    a.backup(b)
    a.close()
    b.close()
    return dst


def test_bms_audit_verify_passes_an_intact_log_and_names_deleted_and_forged_records(tmp_path):
    bms, path = _bacnet_log(tmp_path)
    n = len(read_audit(path))
    assert n > 15

    code, text = _cli("bms-audit", "--bms", str(bms), "--verify")
    assert code == 0 and f"audit log intact: {path}: {n} record(s)" in text, text

    # deleted: record 7 removed (triggers dropped first, as anyone with the file can)
    deleted = _copy(path, tmp_path / "deleted.sqlite")
    _tamper(deleted, "DELETE FROM audit WHERE id=7")
    code, text = _cli("bms-audit", "--bms", str(bms), "--audit", str(deleted), "--verify")
    assert code == 1, text
    assert "record 7 is missing" in text and "jumps from 6 to 8" in text
    assert "append-only trigger(s) audit_no_update, audit_no_delete were removed" in text

    # forged: a write's value edited in place
    wid = int(read_audit(path).query("action == 'write' and result == 'ok'").id.iloc[1])
    forged = _copy(path, tmp_path / "forged.sqlite")
    _tamper(forged, f"UPDATE audit SET new_value=new_value+3 WHERE id={wid}")
    code, text = _cli("bms-audit", "--bms", str(bms), "--audit", str(forged), "--verify")
    assert code == 1 and f"record {wid} does not match its hash: edited or forged" in text, text

    # forged with its own hash recomputed: the next record no longer chains to it
    from coolshift.bms.audit import record_hash

    rows = read_audit(path).to_dict("records")
    r = {k: (None if isinstance(v, float) and v != v else v) for k, v in rows[wid - 1].items()}
    r["detail"] = "nothing to see"
    r["priority"] = int(r["priority"])
    h = record_hash(r, r["prev_hash"])
    rehashed = _copy(path, tmp_path / "rehashed.sqlite")
    _tamper(rehashed, f"UPDATE audit SET detail='nothing to see', hash='{h}' WHERE id={wid}")
    v = verify_audit(rehashed)
    assert not v.ok and v.first_broken == wid + 1
    assert f"record {wid + 1} does not chain to record {wid}" in v.problems[0]

    # reordered: two records swap their ids
    swapped = _copy(path, tmp_path / "swapped.sqlite")
    _tamper(swapped, "UPDATE audit SET id=-1 WHERE id=4", "UPDATE audit SET id=4 WHERE id=5",
            "UPDATE audit SET id=5 WHERE id=-1")
    v = verify_audit(swapped)
    assert not v.ok and v.first_broken == 4

    # cut from the end: sqlite's counter and this machine's state file both remember the last id
    cut = _copy(path, tmp_path / "cut.sqlite")
    _tamper(cut, f"DELETE FROM audit WHERE id>{n - 2}")
    v = verify_audit(cut)
    assert not v.ok and v.first_broken == n - 1 and f"record {n - 1} is missing" in v.problems[0]


def test_verify_uses_the_state_file_head_when_the_counter_was_reset_too(tmp_path):
    bms, path = _bacnet_log(tmp_path)
    n = len(read_audit(path))
    _tamper(path, f"DELETE FROM audit WHERE id>{n - 3}", f"UPDATE sqlite_sequence SET seq={n - 3} WHERE name='audit'",
            "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'x'); END",
            "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'x'); END")
    assert verify_audit(path).ok  # the file alone looks intact ...
    code, text = _cli("bms-audit", "--bms", str(bms), "--verify")
    assert code == 1 and f"this machine wrote up to record {n}" in text, text  # ... the state file does not


def test_older_log_without_the_chain_is_migrated_and_then_protected(tmp_path):
    old = tmp_path / "old.sqlite"
    db = sqlite3.connect(old)
    db.executescript("""
        CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, time_utc TEXT NOT NULL, push_id TEXT NOT NULL,
            run_id TEXT, action TEXT NOT NULL, point TEXT, old_value REAL, new_value REAL, priority INTEGER,
            result TEXT NOT NULL, detail TEXT);
        CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'append-only'); END;
        CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'append-only'); END;
        INSERT INTO audit (time_utc, push_id, action, point, new_value, priority, result)
            VALUES ('2026-01-01T00:00:00+00:00', 'p1', 'write', 'chw_sp', 11.0, NULL, 'intent'),
                   ('2026-01-01T00:00:01+00:00', 'p1', 'write', 'chw_sp', 11.0, NULL, 'ok');
    """)
    db.close()
    v = verify_audit(old)
    assert not v.ok and "without a hash chain" in v.problems[0]
    assert read_audit(old).result.tolist() == ["intent", "ok"]  # still readable

    with AuditLog(old) as log:  # migrated on open; the first new record chains the old ones
        log.record("read", "ok", "chw_sp", old_value=11.0)
    v = verify_audit(old)
    assert v.ok and v.records == 3 and v.legacy == 2, v.problems
    _tamper(old, "UPDATE audit SET new_value=15 WHERE id=2")
    v = verify_audit(old)
    assert not v.ok and v.first_broken == 3


def test_a_file_that_is_not_an_audit_log_is_exit_2(tmp_path):
    bms = write_point_map(tmp_path / "map.yaml", "bacnet", 47808)
    bad = tmp_path / "notes.sqlite"
    bad.write_text("secret line one\nsecret line two\n")
    for args in (["bms-audit", "--verify"], ["bms-audit"], ["release"]):
        code, text = _cli(*args, "--bms", str(bms), "--audit", str(bad))
        assert code == 2 and "notes.sqlite" in text and "Traceback" not in text, (args, text)
        assert "secret" not in text


# -- roll-back order and budget -----------------------------------------------------------
async def _kill_mid_push(protocol, tmp_path, comes_back: bool, budget: float):
    """Push three points; the device dies on hall_b's write (the second point), for good or
    for about a second. hall_a was commanded at 19.0 by us before (BACnet) or in local control
    (Modbus). Returns the outcome, the audit frame and the wall time of the push."""
    port = free_port(socket.SOCK_STREAM if protocol == "modbus" else socket.SOCK_DGRAM)
    pm, site, log = _setup(tmp_path, protocol, port, timeout_s=0.7, restore_timeout_s=budget)
    plan = read_plan(make_plan(tmp_path / "plan", {SUPPLY_A: 19.5 if protocol == "bacnet" else 18.7,
                                                   SUPPLY_B: 18.5, CHW: 10.5}))
    chaos = None
    if protocol == "bacnet":
        dev = BacnetDevice(port, go_silent_after=1, silence_s=1.0 if comes_back else 3600).start()
        dev.set_slot("hall_a_supply_sp", 10, 19.0)
    else:
        dev = await ModbusDevice(port, hang_on_write=3).start()  # writes: hall_a reg, hall_a mode, hall_b reg

        async def outage():
            await dev.hung.wait()
            await dev.stop()  # killed
            if comes_back:
                await asyncio.sleep(1.0)
                dev.hang_on_write = None
                await dev.start()

        chaos = asyncio.create_task(outage())
    t = time.monotonic()
    try:
        out = await push(pm, site, plan, log, apply=True)
        wall = time.monotonic() - t
        if chaos is not None:
            await chaos
        state = {n: (dev.slot(n, 10), dev.value(n)) if protocol == "bacnet" else (dev.mode(n), dev.value(n))
                 for n in RD}
    finally:
        if chaos is not None:
            chaos.cancel()
        if protocol == "bacnet":
            dev.close()
        else:
            await dev.stop()
    log.close()
    return out, read_audit(log.path), wall, state


@pytest.mark.parametrize("protocol", ["bacnet", "modbus"])
def test_device_killed_mid_push_confirmed_point_first_each_its_share_within_budget(tmp_path, protocol):
    budget = 4.0
    out, df, wall, _ = asyncio.run(_kill_mid_push(protocol, tmp_path, comes_back=False, budget=budget))
    assert out.status == "rollback_failed", out.messages
    assert out.written == ["hall_a_supply_sp", "hall_b_supply_sp"]
    assert "COULD NOT RESTORE ['hall_a_supply_sp', 'hall_b_supply_sp']" in out.messages[-1]

    fail = df[(df.point == "hall_b_supply_sp") & (df.action == "write") & df.result.isin(["timeout", "error"])]
    assert len(fail) == 1
    t0 = _t(fail.time_utc.iloc[0])
    rb = df[df.action.isin(ROLLBACK) & (df.id > fail.id.iloc[0])]
    a, b = rb[rb.point == "hall_a_supply_sp"], rb[rb.point == "hall_b_supply_sp"]
    assert rb.point.iloc[0] == "hall_a_supply_sp"  # the write that was confirmed comes first
    assert a.id.max() < b.id.min()  # the failed point only after it
    assert set(rb.point) == {"hall_a_supply_sp", "hall_b_supply_sp"} and "chw_sp" not in set(df.point[df.action == "write"])
    # hall_a had half of the budget, not all of it; the whole roll-back stayed within the budget
    assert (_t(a.time_utc.max()) - t0).total_seconds() <= budget * 0.6  # its share: (4 - 0.25 reserve) / 2 s
    assert (_t(b.time_utc.min()) - t0).total_seconds() >= budget / 2 - 0.4
    assert (_t(rb.time_utc.max()) - t0).total_seconds() <= budget
    assert wall <= 0.7 * 1.5 + budget + 1.0
    # retries back off: a dead device is not hammered (149 attempts in 30 s before)
    assert (a.result == "intent").sum() <= 6 and (b.result == "intent").sum() <= 6
    assert rb.detail.str.contains("share of the 4 s restore budget ran out").sum() == 2


@pytest.mark.parametrize("protocol", ["bacnet", "modbus"])
def test_device_back_after_a_second_confirmed_point_restored_before_the_failed_one(tmp_path, protocol):
    budget = 6.0
    out, df, wall, state = asyncio.run(_kill_mid_push(protocol, tmp_path, comes_back=True, budget=budget))
    assert out.status == "rolled_back", out.messages
    fail = df[(df.point == "hall_b_supply_sp") & (df.action == "write") & df.result.isin(["timeout", "error"])]
    rb = df[df.action.isin(ROLLBACK) & (df.id > fail.id.iloc[0])]
    ok_a = rb[(rb.point == "hall_a_supply_sp") & (rb.result == "ok")]
    assert len(ok_a) == 1 and ok_a.id.iloc[0] < rb[rb.point == "hall_b_supply_sp"].id.min()
    assert rb[rb.point == "hall_b_supply_sp"].result.iloc[-1] == "ok"
    assert (_t(rb.time_utc.max()) - _t(fail.time_utc.iloc[0])).total_seconds() <= budget
    if protocol == "bacnet":
        assert state["hall_a_supply_sp"] == (pytest.approx(19.0), pytest.approx(19.0))  # previous value, ours
        assert state["hall_b_supply_sp"] == (None, pytest.approx(RD["hall_b_supply_sp"]))
    else:
        assert all(state[n][0] == AUTO for n in RD)  # handed back to local control
    assert state["chw_sp"][1] == pytest.approx(RD["chw_sp"])


# -- unfinished writes: rate limit and bms-status ------------------------------------------
def test_intent_without_result_counts_for_the_rate_limit_and_shows_in_bms_status(tmp_path):
    """run-plan is killed -9 while hall_b's write is in flight: the log holds its intent and no
    result. A push soon after is refused for hall_b by the rate limit, and bms-status lists it
    as unfinished (exit 1) until `coolshift release` hands it back."""
    port = free_port()
    bms = write_point_map(tmp_path / "map.yaml", "bacnet", port, timeout_s=20, min_write_interval_s=300)
    plan = make_plan(tmp_path / "plan", GOOD)
    audit = tmp_path / "audit.sqlite"

    def rows():
        return _audit_rows(audit)

    async def main():
        dev = BacnetDevice(port, go_silent_after=1, silence_s=300).start()
        try:
            proc = await asyncio.create_subprocess_exec(
                *CLI, "run-plan", "--plan", str(plan), "--bms", str(bms), "--apply",
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
            t_end = time.monotonic() + 45
            while ("write", "hall_b_supply_sp", "intent") not in rows():
                assert time.monotonic() < t_end, "no intent record for hall_b"
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            writes = [(p, r) for a, p, r in rows() if a == "write"]
            assert writes[-1] == ("hall_b_supply_sp", "intent")  # intent, no result
            dev.silent_until = 0.0

            code, text = await asyncio.to_thread(_cli, "bms-status", "--bms", str(bms))
            assert code == 1, text
            assert "UNFINISHED hall_b_supply_sp: write to 18.50" in text
            assert "UNFINISHED hall_a" not in text and "UNFINISHED chw" not in text

            code, text = await asyncio.to_thread(_cli, "push", "--plan", str(plan), "--bms", str(bms), "--apply")
            assert code == 3, text
            assert "hall_b_supply_sp: last written" in text and "rate limit" in text
            assert "chw_sp: last written" not in text  # never attempted: not limited
            assert dev.slot("hall_b_supply_sp", 10) is None

            code, text = await asyncio.to_thread(_cli, "release", "--bms", str(bms))
            assert code == 0, text
            code, text = await asyncio.to_thread(_cli, "bms-status", "--bms", str(bms))
            assert code == 0 and "UNFINISHED" not in text, text
        finally:
            dev.close()

    asyncio.run(main())


def test_pending_state_is_set_before_the_write_and_cleared_by_the_read_back(tmp_path):
    pm = load_point_map(write_point_map(tmp_path / "map.yaml", "modbus", 5999))
    key = device_key(pm)
    with AuditLog(tmp_path / "a.sqlite", device=key) as log:
        log.record("write", "intent", "chw_sp", old_value=10, new_value=11)
        assert [(p.point, p.action, p.value) for p in log.state.pending(key)] == [("chw_sp", "write", 11.0)]
        first = log.last_write_time("chw_sp")
        assert first is not None
        log.settle("chw_sp")
        assert log.state.pending(key) == [] and log.last_write_time("chw_sp") == first
        log.record("read", "ok", "hall_a_supply_sp")  # reads change nothing
        assert log.state.pending(key) == [] and log.last_write_time("hall_a_supply_sp") is None


# -- the rate limit belongs to the device --------------------------------------------------
def test_a_new_audit_file_does_not_reset_the_rate_limit(tmp_path):
    port, other = free_port(), free_port()
    bms = write_point_map(tmp_path / "map.yaml", "bacnet", port, min_write_interval_s=300)
    p1 = make_plan(tmp_path / "p1", GOOD)
    p2 = make_plan(tmp_path / "p2", {**GOOD, SUPPLY_A: 19.5})

    async def main():
        dev, dev2 = BacnetDevice(port).start(), BacnetDevice(other).start()
        try:
            code, text = await asyncio.to_thread(_cli, "push", "--plan", str(p1), "--bms", str(bms), "--apply",
                                                 "--audit", str(tmp_path / "first.sqlite"))
            assert code == 0, text
            code, text = await asyncio.to_thread(_cli, "push", "--plan", str(p2), "--bms", str(bms), "--apply",
                                                 "--audit", str(tmp_path / "fresh.sqlite"))
            assert code == 3 and "hall_a_supply_sp: last written" in text and "rate limit" in text, text
            assert dev.slot("hall_a_supply_sp", 10) == pytest.approx(19.0)
            # a second point map for the same device, in another folder, with its own audit log
            (tmp_path / "elsewhere").mkdir()
            bms2 = write_point_map(tmp_path / "elsewhere" / "map.yaml", "bacnet", port, min_write_interval_s=300)
            code, text = await asyncio.to_thread(_cli, "push", "--plan", str(p2), "--bms", str(bms2), "--apply")
            assert code == 3 and "rate limit" in text, text
            # another device is not limited by this one's writes
            bms3 = write_point_map(tmp_path / "elsewhere" / "map3.yaml", "bacnet", other, min_write_interval_s=300)
            code, text = await asyncio.to_thread(_cli, "push", "--plan", str(p1), "--bms", str(bms3), "--apply",
                                                 "--audit", str(tmp_path / "fresh.sqlite"))
            assert code == 0, text
            assert dev2.slot("hall_a_supply_sp", 10) == pytest.approx(19.0)
        finally:
            dev.close()
            dev2.close()

    asyncio.run(main())
    st = DeviceState()
    assert st.last_write(f"bacnet://127.0.0.1:{port}", "hall_a_supply_sp") is not None
    st.close()


# -- plans that map to no point -----------------------------------------------------------
def test_plan_whose_columns_match_no_mapped_point_is_exit_2_and_writes_nothing(tmp_path):
    port = free_port()
    bms = write_point_map(tmp_path / "map.yaml", "bacnet", port)
    plan = make_plan(tmp_path / "plan", {"supply_setpoint_c__hallA": 19.0, "supply_setpoint_c__hallB": 18.5})

    async def main():
        dev = BacnetDevice(port).start()
        dev.set_slot("chw_sp", 10, 10.5)  # commanded by an earlier plan: must not be handed back silently
        try:
            for cmd in (["push", "--apply"], ["push"], ["run-plan", "--apply"]):
                code, text = await asyncio.to_thread(_cli, cmd[0], "--plan", str(plan), "--bms", str(bms), *cmd[1:])
                flat = " ".join(text.split())  # the console wraps long lines
                assert code == 2, (cmd, text)
                assert "no setpoint column matches a point in the point map" in flat
                assert "the plan has supply_setpoint_c__hallA, supply_setpoint_c__hallB" in flat
                assert "supply_setpoint_c__hall_a (hall_a_supply_sp)" in flat and "chw_setpoint_c (chw_sp)" in flat
                assert "Traceback" not in text
            assert dev.writes == 0 and dev.slot("chw_sp", 10) == pytest.approx(10.5)
        finally:
            dev.close()

    asyncio.run(main())
    pm = load_point_map(bms)
    p = read_plan(plan)  # read without the map, the API push refuses it too
    with AuditLog(tmp_path / "api.sqlite") as log, pytest.raises(PlanError, match="hall_a_supply_sp"):
        asyncio.run(push(pm, load_site(pm.resolve(pm.site)), p, log, apply=True))
    assert read_audit(tmp_path / "api.sqlite").empty
