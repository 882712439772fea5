"""Pure parts of coolshift.bms: point maps, plan reading, safety checks, encodings, audit log."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest
import yaml

from coolshift.bms.audit import AuditLog, read_audit
from coolshift.bms.modbus import decode_registers, encode_registers
from coolshift.bms.plan import PlanError, current_step, read_plan
from coolshift.bms.points import ModbusPoint, Point, PointMapError, check_map_site, expand_env, load_point_map
from coolshift.bms.safety import change_per_write, plan_freshness, rate_limit, zone_envelope
from coolshift.config import load_site
from test_bms_kit import REPO, SITE, make_plan, write_point_map
from test_bms_kit import state_dir  # noqa: F401 (autouse: a private COOLSHIFT_STATE_DIR per test)

SJ = load_site(SITE)


def _pt(variable: str, lo: float = 0, hi: float = 40, step: float = 5, zone: str | None = None) -> Point:
    return Point(name="p", variable=variable, zone=zone, min_value=lo, max_value=hi, max_change_per_write=step,
                 bacnet={"object": "analog-value,1"})


# -- point maps ---------------------------------------------------------------------------
def test_example_point_maps_load_and_cover_every_zone():
    for f in sorted((REPO / "configs" / "bms").glob("*.yaml")):
        pm = load_point_map(f)
        site = load_site(pm.resolve(pm.site))
        carried = {p.variable for p in pm.writable}
        stores = {f"{k}__{u.name}" for u in site.storage for k in ("charge_kw", "discharge_kw")}  # battery power
        assert carried == {f"supply_setpoint_c__{z.name}" for z in site.zones} | {"chw_setpoint_c"} | stores, f
        check_map_site(pm, site, f)
        assert {f"inlet_temp_c__{z.name}" for z in site.zones} <= {p.variable for p in pm.points if not p.writable}
        if pm.protocol == "bacnet":
            assert all(3 <= p.bacnet.priority <= 16 for p in pm.writable)


def _map_doc(tmp_path, **change):
    path = write_point_map(tmp_path / "m.yaml", "bacnet", 47808)
    doc = yaml.safe_load(path.read_text())
    for k, v in change.items():
        if k == "point0":
            doc["points"][0].update(v)
        else:
            doc[k] = v
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize("change, message", [
    ({"point0": {"bacnet": {"object": "analog-value,1", "priority": 1}}}, "reserved for life safety"),
    ({"point0": {"bacnet": {"object": "analog-input,1"}}}, "analog-input cannot be written"),
    ({"point0": {"max_change_per_write": None}}, "needs min_value, max_value and max_change_per_write"),
    ({"point0": {"colour": "red"}}, "unknown key"),
    ({"protocol": "modbus"}, "connection.host: Field required"),
    ({"protocol": "modbus", "connection": {"host": "127.0.0.1", "port": 5020}}, "point hall_a_supply_sp: no 'modbus' address"),
])
def test_bad_point_maps_are_refused_with_the_key(tmp_path, change, message):
    with pytest.raises(PointMapError) as e:
        load_point_map(_map_doc(tmp_path, **change))
    assert message in str(e.value) and "m.yaml" in str(e.value)


def test_modbus_writable_point_needs_a_release():
    with pytest.raises(ValueError, match="needs 'release'"):
        Point(name="x", variable="chw_setpoint_c", min_value=7, max_value=16, max_change_per_write=1,
              modbus={"address": 0})


def test_connection_comes_from_environment_not_plan():
    assert expand_env("${H:-127.0.0.1}:${P}", {"P": "5020"}) == "127.0.0.1:5020"
    with pytest.raises(PointMapError, match="Q is not set"):
        expand_env("${Q}", {})
    pm = load_point_map(REPO / "configs/bms/sanjose_colo_2mw_modbus.yaml",
                        environ={"COOLSHIFT_BMS_PORT": "15020", "COOLSHIFT_BMS_HOST": "127.0.0.2"})
    assert (pm.connection.host, pm.connection.port) == ("127.0.0.2", 15020)


# -- plans --------------------------------------------------------------------------------
def test_read_plan_and_current_step(tmp_path):
    t0 = pd.Timestamp("2026-11-23T00:00:00Z")
    p = read_plan(make_plan(tmp_path, {"supply_setpoint_c__hall_a": 19.0}, start=t0, steps=3,
                            in_envelope=[True, False, True]))
    assert p.step == pd.Timedelta("15min") and p.setpoint_columns == ["supply_setpoint_c__hall_a"]
    assert p.frame["in_envelope"].tolist() == [True, False, True]
    assert current_step(p, t0 + pd.Timedelta("20min")) == t0 + pd.Timedelta("15min")
    assert current_step(p, t0 + pd.Timedelta("44min59s")) == t0 + pd.Timedelta("30min")
    assert current_step(p, t0 + pd.Timedelta("45min")) is None
    assert current_step(p, t0 - pd.Timedelta("1s")) is None


@pytest.mark.parametrize("csv, message", [
    ("timestamp,chw_setpoint_c\n2026-11-23T00:00:00,10\n", "no UTC offset"),
    ("time,chw_setpoint_c\n2026-11-23T00:00:00Z,10\n", "no 'timestamp' column"),
    ("timestamp,fan\n2026-11-23T00:00:00Z,10\n", "no setpoint columns"),
    ("timestamp,chw_setpoint_c\n2026-11-23T00:00:00Z,10\n2026-11-23T00:15:00Z,warm\n", "row 3, column chw_setpoint_c"),
    ("timestamp,chw_setpoint_c\n2026-11-23T00:15:00Z,10\n2026-11-23T00:00:00Z,10\n", "row 3: timestamps must strictly increase"),
    ("timestamp,chw_setpoint_c,in_envelope\n2026-11-23T00:00:00Z,10,maybe\n2026-11-23T00:15:00Z,10,1\n", "in_envelope must be"),
    ("timestamp,chw_setpoint_c\n2026-11-23T00:00:00Z,nan\n", "not a finite"),
])
def test_bad_plans_name_file_row_and_column(tmp_path, csv, message):
    make_plan(tmp_path, {"chw_setpoint_c": 10.0})
    (tmp_path / "plan.csv").write_text(csv)
    with pytest.raises(PlanError) as e:
        read_plan(tmp_path)
    assert message in str(e.value) and "plan.csv" in str(e.value)


def test_plan_summary_needs_run_id_created_at_site(tmp_path):
    make_plan(tmp_path, {"chw_setpoint_c": 10.0})
    (tmp_path / "summary.json").write_text('{"run_id": "x", "site": "s"}')
    with pytest.raises(PlanError, match="summary.json: missing key 'created_at'"):
        read_plan(tmp_path)


# -- safety checks ------------------------------------------------------------------------
def test_zone_envelope_uses_site_limits_not_just_point_limits():
    hall_a = SJ.zones[0]
    p = _pt("supply_setpoint_c__hall_a", lo=10, hi=35)
    assert zone_envelope(p, hall_a.inlet_max_c, SJ) is None
    msg = zone_envelope(p, hall_a.inlet_max_c + 0.5, SJ)
    assert msg and "hall_a" in msg and f"{hall_a.inlet_max_c:g}" in msg
    assert zone_envelope(p, hall_a.supply_setpoint_min_c - 0.1, SJ)
    # chilled water: coil approach 3 K below the lowest zone inlet max (27) -> 24, chiller max 18 binds
    chw = _pt("chw_setpoint_c", lo=0, hi=40)
    assert zone_envelope(chw, SJ.cooling.chiller.chw_setpoint_max_c, SJ) is None
    assert "chilled water 18.5" in zone_envelope(chw, 18.5, SJ)
    assert zone_envelope(_pt("supply_setpoint_c__hall_z"), 20, SJ).startswith("p: zone 'hall_z' is not in site")


def test_change_per_write_takes_the_tighter_of_point_and_zone_limit():
    loose = _pt("supply_setpoint_c__hall_a", step=5)  # the site allows 1 K per step
    assert change_per_write(loose, 18.0, 19.0, SJ) is None
    assert "maximum change per write of 1" in change_per_write(loose, 18.0, 19.2, SJ)
    tight = _pt("chw_setpoint_c", step=0.5)
    assert change_per_write(tight, 10.0, 9.5, SJ) is None
    assert "-0.6" in change_per_write(tight, 10.0, 9.4, SJ)


def test_freshness_and_rate_limit():
    now = pd.Timestamp("2026-11-23T12:00:00Z")
    assert plan_freshness(now - pd.Timedelta("25h"), now, 26) is None
    assert "27.0 h ago" in plan_freshness(now - pd.Timedelta("27h"), now, 26)
    assert "in the future" in plan_freshness(now + pd.Timedelta("1h"), now, 26)
    p = _pt("chw_setpoint_c")
    t = datetime(2026, 11, 23, 12, tzinfo=timezone.utc)
    assert rate_limit(p, None, t, 300) is None
    assert rate_limit(p, t - timedelta(seconds=301), t, 300) is None
    assert "120 s ago" in rate_limit(p, t - timedelta(seconds=120), t, 300)


# -- Modbus encodings ---------------------------------------------------------------------
def test_modbus_register_encodings():
    i16 = ModbusPoint(address=0, datatype="int16", scale=0.1)
    assert encode_registers(i16, 18.7) == [187]
    assert encode_registers(i16, -1.5) == [0xFFF1]  # two's complement
    assert decode_registers(i16, [0xFFF1]) == pytest.approx(-1.5)
    with pytest.raises(ValueError, match="outside int16"):
        encode_registers(i16, 3300.0)
    u16 = ModbusPoint(address=0, datatype="uint16", scale=0.5, offset=-40)
    assert encode_registers(u16, 10.0) == [100] and decode_registers(u16, [100]) == 10.0
    big = ModbusPoint(address=0, datatype="float32", word_order="big")
    little = ModbusPoint(address=0, datatype="float32", word_order="little")
    assert encode_registers(big, 10.8) == [0x412C, 0xCCCD]  # IEEE 754 single 0x412CCCCD
    assert encode_registers(little, 10.8) == [0xCCCD, 0x412C]
    assert decode_registers(little, [0xCCCD, 0x412C]) == pytest.approx(10.8, abs=1e-6)


# -- audit log ----------------------------------------------------------------------------
def test_audit_log_is_append_only_and_durable(tmp_path):
    path = tmp_path / "a.sqlite"
    with AuditLog(path, run_id="r1") as log:
        log.record("write", "intent", "chw_sp", old_value=10, new_value=11, priority=10)
        log.record("write", "ok", "chw_sp", old_value=10, new_value=11, priority=10)
        assert log.last_write_time("chw_sp") is not None and log.last_write_time("other") is None
        with pytest.raises(ValueError):
            log.record("erase", "ok")
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    for stmt in ("UPDATE audit SET new_value=99", "DELETE FROM audit"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            db.execute(stmt)
    db.close()
    df = read_audit(path)
    assert df.result.tolist() == ["intent", "ok"] and df.new_value.tolist() == [11.0, 11.0]
    assert set(df.run_id) == {"r1"}


def test_reads_a_plan_written_the_way_the_optimiser_writes_it(tmp_path):
    """coolshift plan writes plan.csv with write_frame_atomic (index 'timestamp', +0000 offsets)
    plus columns the BMS does not carry (active servers, ...), and in_envelope as True/False."""
    from coolshift.io.atomic import write_frame_atomic, write_json_atomic

    idx = pd.date_range("2026-11-23T00:00:00Z", periods=3, freq="15min", name="timestamp")
    frame = pd.DataFrame({"supply_setpoint_c__hall_a": [18.0, 18.5, 19.0], "chw_setpoint_c": [10.0, 10.5, 11.0],
                          "active_servers__a_web": [240, 300, 310], "in_envelope": [True, True, False]}, index=idx)
    write_frame_atomic(tmp_path / "plan.csv", frame)
    write_json_atomic(tmp_path / "summary.json", {"run_id": "plan-x", "created_at": pd.Timestamp.now(tz="UTC"),
                                                  "site": "sanjose_colo_2mw", "step_minutes": 15})
    assert "+0000" in (tmp_path / "plan.csv").read_text().splitlines()[1]
    p = read_plan(tmp_path)
    assert p.setpoint_columns == ["supply_setpoint_c__hall_a", "chw_setpoint_c"]
    assert p.frame.index.equals(idx.rename("timestamp"))
    assert p.frame.loc[idx[1], "chw_setpoint_c"] == 10.5
    assert p.frame["in_envelope"].tolist() == [True, True, False]


def test_plan_carries_other_mapped_variables_when_asked(tmp_path):
    make_plan(tmp_path, {"chw_setpoint_c": 10.0, "crah_fan_min_frac__hall_a": 0.4, "note": 1.0})
    assert "crah_fan_min_frac__hall_a" not in read_plan(tmp_path).frame.columns
    p = read_plan(tmp_path, ["crah_fan_min_frac__hall_a"])
    assert p.setpoint_columns == ["chw_setpoint_c", "crah_fan_min_frac__hall_a"]
    assert (p.frame["crah_fan_min_frac__hall_a"] == 0.4).all()
