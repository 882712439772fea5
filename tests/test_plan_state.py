"""`coolshift plan --state FILE` and `--from-bms MAP`: the nightly plan starts from the measured state.

The plant-model registry is the ``registry`` stand-in (conftest.py); the BMS is a real
bacpypes3 device on 127.0.0.1 (test_bms_kit.BacnetDevice) run in a thread of its own, so
the command under test talks BACnet/IP to it exactly as it would to a site's controller.
"""

from __future__ import annotations

import asyncio
import json
import threading

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from coolshift.bms.bacnet import BacnetAdapter
from coolshift.bms.points import load_point_map
from coolshift.cli import app
from coolshift.config import load_site
from coolshift.optimizer import Planner, PlanOptions
from coolshift.usecases.inputs import load_inputs
from coolshift.usecases.nightly import NightlyOptions, measured_initial_state
from synthetic import linear_coefficients
from test_bms_kit import BacnetDevice, free_port, write_point_map
from test_bms_kit import state_dir  # noqa: F401 (autouse: a private COOLSHIFT_STATE_DIR per test)

pytestmark = pytest.mark.timeout(300)

SITE = "configs/sites/sanjose_colo_2mw.yaml"
START = pd.Timestamp("2022-07-01T00:00:00Z")
STEP_C = 1.0  # San Jose's supply_setpoint_max_step_c (both zones)


def state_doc(**over) -> dict:
    """A San Jose state at the plan start: setpoints away from the config's 18/18/10 degC."""
    doc = {
        "measured_at": "2022-06-30T23:45:00+00:00",
        "supply_setpoint_c": {"hall_a": 22.0, "hall_b": 21.0},
        "chw_setpoint_c": 13.0,
        "active_servers": {"a_web": 1200, "a_compute": 1000, "b_storage": 600, "b_compute": 1500},
        "backlog": {},
        "inlet_temp_c": {"hall_a": 24.5, "hall_b": 25.0},
    }
    doc.update(over)
    return doc


def write_state(path, doc, fmt="yaml"):
    path.write_text(json.dumps(doc) if fmt == "json" else yaml.safe_dump(doc, sort_keys=False))
    return path


def plan(tmp_path, *extra, name="p"):
    out = tmp_path / name
    res = CliRunner().invoke(app, ["plan", "--site", SITE, "--start", START.isoformat(), "--out", str(out),
                                   "--forecast", "perfect", "--no-mlflow", *extra])
    return res, out


def frame_of(out):
    return pd.read_csv(out / "plan.csv", index_col="timestamp", parse_dates=True)


def summary_of(out):
    return json.loads((out / "summary.json").read_text())


# -- the state file moves the plan --------------------------------------------------------
@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_state_setpoints_start_the_plan_and_its_ramp(registry, tmp_path, fmt):
    doc = state_doc()
    res, out = plan(tmp_path, "--state", str(write_state(tmp_path / f"state.{fmt}", doc, fmt)))
    assert res.exit_code == 0, res.output
    f, s = frame_of(out), summary_of(out)
    for z, v in doc["supply_setpoint_c"].items():
        sp = f[f"supply_setpoint_c__{z}"].to_numpy()
        assert abs(sp[0] - v) <= STEP_C + 1e-6  # the first step within one ramp step of what is in force
        assert np.abs(np.diff(np.r_[v, sp])).max() <= STEP_C + 1e-6
    # away from the config's 18 degC: the default plan's first step cannot reach where this one is
    res0, out0 = plan(tmp_path, name="p0")
    assert res0.exit_code == 0, res0.output
    f0 = frame_of(out0)
    assert abs(f0["supply_setpoint_c__hall_a"].iloc[0] - 18.0) <= STEP_C + 1e-6
    assert f["supply_setpoint_c__hall_a"].iloc[0] >= 21.0 - 1e-6 > f0["supply_setpoint_c__hall_a"].iloc[0] + 1e-6
    init = s["initial_state"]
    assert init["source"] == "state_file" and init["path"].endswith(f"state.{fmt}") and init["from_config"] == []
    assert pd.Timestamp(init["measured_at"]) == pd.Timestamp(doc["measured_at"])
    assert init["values"]["supply_setpoint_c"] == doc["supply_setpoint_c"]
    assert init["values"]["chw_setpoint_c"] == 13.0 and init["values"]["inlet_temp_c"] == doc["inlet_temp_c"]
    assert summary_of(out0)["initial_state"]["source"] == "config"


def test_lp_ramp_rows_start_from_the_measured_setpoints(tmp_path):
    """The LP itself: step 0's setpoint_ramp rows are [measured - step, measured + step], and n0 is the file's."""
    doc = state_doc(active_servers={"a_web": 1200, "a_compute": 0, "b_storage": 600, "b_compute": 700})
    path = write_state(tmp_path / "s.yaml", doc)
    site = load_site(SITE)
    init, rec = measured_initial_state(NightlyOptions(site=SITE, start=START.isoformat(), state_file=path), site, START)
    site, data = load_inputs(SITE, START, START + pd.Timedelta(hours=24))
    coefs = linear_coefficients(site, data.index, temp_c=data["temp_c"].to_numpy())
    p = Planner(site, coefs, data, init, PlanOptions())
    d, lp = p.problem.data, p.problem.lp
    np.testing.assert_allclose(d.sp0, [22.0, 21.0])
    assert d.chw0 == 13.0
    np.testing.assert_allclose(d.n0, [1200, 0, 600, 700])
    rows = lp.cons["setpoint_ramp"].ids()[0]
    _, _, _, row_lb, row_ub, _, _ = lp.arrays()
    np.testing.assert_allclose(row_lb[rows], [22.0 - STEP_C, 21.0 - STEP_C])
    np.testing.assert_allclose(row_ub[rows], [22.0 + STEP_C, 21.0 + STEP_C])


def test_active_servers_from_the_state_are_n0_and_waking_costs_boot_energy(registry, tmp_path):
    off = {"a_web": 1200, "a_compute": 0, "b_storage": 600, "b_compute": 150}  # compute pools (nearly) off
    res, out = plan(tmp_path, "--state", str(write_state(tmp_path / "s.yaml", state_doc(active_servers=off))))
    assert res.exit_code == 0, res.output
    f = frame_of(out)
    assert summary_of(out)["initial_state"]["values"]["active_servers"] == off
    # work demanded at 00:00 needs more than 1200*0.8 + 300 + 150 units/h: servers are woken in step 0
    woken = f["active_servers__a_compute"].iloc[0] + f["active_servers__b_compute"].iloc[0] - 150
    assert woken > 1
    assert f["boot_power_kw"].iloc[0] > 0
    res0, out0 = plan(tmp_path, name="p0")  # every server on (the config): nothing to wake in step 0
    assert res0.exit_code == 0, res0.output
    f0 = frame_of(out0)
    assert f0["boot_power_kw"].iloc[0] == pytest.approx(0.0, abs=1e-6)
    assert f["boot_power_kw"].iloc[0] > f0["boot_power_kw"].iloc[0] + 1.0


def test_a_backlog_chunk_due_in_2h_is_served_within_2h(registry, tmp_path):
    chunk = {"due_at": (START + pd.Timedelta(hours=2)).isoformat(), "units": 400.0}
    res, out = plan(tmp_path, "--state", str(write_state(tmp_path / "s.yaml", state_doc(backlog={"batch": [chunk]}))))
    assert res.exit_code == 0, res.output
    f, s = frame_of(out), summary_of(out)
    assert s["initial_state"]["values"]["backlog_due_h"] == {"batch": [[2.0, 400.0]]}
    step_h = 0.25
    served_2h = f["release_units_per_h__batch"].iloc[:8].sum() * step_h
    assert served_2h >= 400.0 - 1e-6
    # and in the LP: the chunk must be served by the end of step 7 (00:00 + 8 x 15 min = 02:00)
    init, _ = measured_initial_state(NightlyOptions(site=SITE, start=START.isoformat(), state_file=tmp_path / "s.yaml"),
                                     load_site(SITE), START)
    site, data = load_inputs(SITE, START, START + pd.Timedelta(hours=24))
    d = Planner(site, linear_coefficients(site, data.index, temp_c=data["temp_c"].to_numpy()), data, init,
                PlanOptions()).problem.data
    assert d.backlog0_chunks[d.classes.index("batch")] == [(7, 400.0)]


# -- bad state files: exit 2 naming file and key ------------------------------------------
BAD = {
    "unknown_pool": ({"active_servers": {"a_web": 1200, "a_compute": 1000, "b_storage": 600, "b_compute": 1500,
                                         "c_gpu": 8}}, "active_servers.c_gpu"),
    "setpoint_out_of_range": ({"supply_setpoint_c": {"hall_a": 31.0, "hall_b": 21.0}}, "supply_setpoint_c.hall_a"),
    "chw_out_of_range": ({"chw_setpoint_c": 3.0}, "chw_setpoint_c"),
    "too_many_servers": ({"active_servers": {"a_web": 5000, "a_compute": 1000, "b_storage": 600, "b_compute": 1500}},
                         "active_servers.a_web"),
    "negative_units": ({"backlog": {"batch": [{"due_at": "2022-07-01T02:00:00+00:00", "units": -5}]}},
                       "backlog.batch.0.units"),
    "not_batch": ({"backlog": {"web": [{"due_at": "2022-07-01T02:00:00+00:00", "units": 5}]}}, "backlog.web"),
    "stale": ({"measured_at": "2022-06-30T12:00:00+00:00"}, "measured_at"),
    "ahead": ({"measured_at": "2022-07-01T03:00:00+00:00"}, "measured_at"),
    "bad_timestamp": ({"measured_at": "2022-07-01 25:00"}, "measured_at"),
    "no_offset": ({"measured_at": "2022-07-01T00:00:00"}, "measured_at"),
    "unknown_key": ({"supply_setpoint_degc": {}}, "supply_setpoint_degc"),
    "missing_zone": ({"supply_setpoint_c": {"hall_a": 20.0}}, "supply_setpoint_c.hall_b"),
    "string_number": ({"chw_setpoint_c": "12"}, "chw_setpoint_c"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_state_files_exit_2_naming_file_and_key(registry, tmp_path, case):
    over, key = BAD[case]
    path = write_state(tmp_path / "state.yaml", state_doc(**over))
    res, out = plan(tmp_path, "--state", str(path))
    assert res.exit_code == 2, res.output
    text = " ".join(res.output.split())
    assert "state.yaml" in text and key in text, res.output
    assert "Traceback" not in res.output and not out.exists()
    if case == "stale":
        assert "stale" in text


def test_state_file_syntax_and_missing_file(registry, tmp_path):
    p = tmp_path / "dup.yaml"
    p.write_text("measured_at: '2022-07-01T00:00:00+00:00'\nchw_setpoint_c: 10\nchw_setpoint_c: 12\n")
    res, _ = plan(tmp_path, "--state", str(p))
    assert res.exit_code == 2 and "dup.yaml" in res.output and "duplicate key 'chw_setpoint_c'" in res.output
    (tmp_path / "broken.json").write_text('{"measured_at": ')
    res, _ = plan(tmp_path, "--state", str(tmp_path / "broken.json"))
    assert res.exit_code == 2 and "broken.json" in res.output and "Traceback" not in res.output
    res, _ = plan(tmp_path, "--state", str(tmp_path / "nope.yaml"))
    assert res.exit_code == 2 and "nope.yaml" in res.output and "Traceback" not in res.output


def test_state_and_from_bms_together_exit_2(registry, tmp_path):
    path = write_state(tmp_path / "s.yaml", state_doc())
    res, out = plan(tmp_path, "--state", str(path), "--from-bms", str(tmp_path / "map.yaml"))
    assert res.exit_code == 2 and "at most one of --state" in res.output and not out.exists()


def test_overdue_work_is_due_in_the_first_step_with_a_warning(registry, tmp_path):
    chunk = {"due_at": "2022-06-30T23:50:00+00:00", "units": 50.0}
    res, out = plan(tmp_path, "--state", str(write_state(tmp_path / "s.yaml", state_doc(backlog={"batch": [chunk]}))))
    assert res.exit_code == 0, res.output
    assert "due in the first step" in " ".join(res.output.split())
    assert frame_of(out)["release_units_per_h__batch"].iloc[0] * 0.25 >= 50.0 - 1e-6


# -- --from-bms against a real BACnet device -----------------------------------------------
TELEMETRY = {  # variable -> (analog-input instance, value served)
    "active_servers__a_compute": (20, 300.0),
    "active_servers__b_compute": (21, 900.0),
    "backlog_units__batch": (30, 250.0),
    "backlog_due_h__batch": (31, 3.0),
    "inlet_temp_c__hall_a": (40, 23.5),
}


class DeviceThread:
    """test_bms_kit.BacnetDevice (commandable setpoints) plus analog inputs, served from its own thread."""

    def __init__(self, port: int):
        self.port, self.dev, self.loop, self.stop = port, None, None, None
        self.ready = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self):
        from bacpypes3.local.analog import AnalogInputObject

        self.loop, self.stop = asyncio.get_running_loop(), asyncio.Event()
        self.dev = BacnetDevice(self.port).start()
        for var, (inst, value) in TELEMETRY.items():
            self.dev.app.add_object(AnalogInputObject(objectIdentifier=("analog-input", inst), objectName=var,
                                                      presentValue=value, units="noUnits"))
        self.ready.set()
        await self.stop.wait()
        self.dev.close()

    def __enter__(self):
        self.thread.start()
        assert self.ready.wait(20), "the BACnet device did not start"
        return self

    def __exit__(self, *exc):
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(20)


def bms_map(tmp_path, port, telemetry=True):
    path = write_point_map(tmp_path / "map.yaml", "bacnet", port)
    doc = yaml.safe_load(path.read_text())
    if telemetry:
        for var, (inst, _) in TELEMETRY.items():
            doc["points"].append({"name": var.replace("__", "_"), "variable": var, "unit": "-", "writable": False,
                                  "bacnet": {"object": f"analog-input,{inst}"}})
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def operator_write(map_path, point_name: str, value: float, priority: int = 8) -> None:
    """A real BACnet write at ``priority`` from another client (an operator's manual command)."""
    pm = load_point_map(map_path)
    point = next(p for p in pm.points if p.name == point_name)
    point = point.model_copy(update={"bacnet": point.bacnet.model_copy(update={"priority": priority})})

    async def go():
        async with BacnetAdapter(pm.connection) as ad:
            await ad.write(point, value)

    asyncio.run(go())


# the device's clock is today's, the bundled data 2022's: a replay widens the staleness window
REPLAY = ["--state-max-age-h", "1e6", "--state-max-ahead-h", "1e6"]


def test_from_bms_plans_from_the_setpoints_in_force_and_never_writes(registry, tmp_path):
    port = free_port()
    map_path = bms_map(tmp_path, port)
    with DeviceThread(port) as d:
        operator_write(map_path, "hall_a_supply_sp", 23.0)  # in force at priority 8, not ours (10)
        assert d.dev.value("hall_a_supply_sp") == pytest.approx(23.0)
        writes = d.dev.writes
        res, out = plan(tmp_path, "--from-bms", str(map_path), *REPLAY)
        assert res.exit_code == 0, res.output
        assert d.dev.writes == writes  # read-only: nothing written
        assert d.dev.slot("hall_a_supply_sp", 10) is None and d.dev.slot("hall_a_supply_sp", 8) == pytest.approx(23.0)
    assert not (tmp_path / "audit.sqlite").exists()  # no audit record, no write
    f, init = frame_of(out), summary_of(out)["initial_state"]
    assert abs(f["supply_setpoint_c__hall_a"].iloc[0] - 23.0) <= STEP_C + 1e-6
    assert abs(f["supply_setpoint_c__hall_b"].iloc[0] - 18.0) <= STEP_C + 1e-6
    v = init["values"]
    assert v["supply_setpoint_c"] == {"hall_a": pytest.approx(23.0), "hall_b": 18.0} and v["chw_setpoint_c"] == 10.0
    assert v["active_servers"] == {"a_web": 1200.0, "a_compute": 300.0, "b_storage": 600.0, "b_compute": 900.0}
    assert v["backlog_due_h"]["batch"][0][1] == 250.0 and v["inlet_temp_c"] == {"hall_a": 23.5}
    # the pools the map has no point for come from the config, said and recorded
    assert init["source"] == "bms+config" and init["from_config"] == ["active_servers.a_web", "active_servers.b_storage"]
    assert "active_servers.a_web" in " ".join(res.output.split())
    assert init["points"]["supply_setpoint_c.hall_a"] == "hall_a_supply_sp"
    assert pd.Timestamp(init["measured_at"]) > pd.Timestamp.now(tz="UTC") - pd.Timedelta(minutes=10)


def test_from_bms_setpoints_only_map_falls_back_and_the_staleness_check_holds(registry, tmp_path):
    port = free_port()
    map_path = bms_map(tmp_path, port, telemetry=False)
    with DeviceThread(port) as d:
        res, out = plan(tmp_path, "--from-bms", str(map_path), *REPLAY)
        assert res.exit_code == 0, res.output
        # read now, planned for 2022: without a wider window, the reading is refused naming the key
        stale, out2 = plan(tmp_path, "--from-bms", str(map_path), name="p2")
        assert d.dev.writes == 0
    assert stale.exit_code == 2 and "measured_at" in stale.output and not out2.exists()
    init = summary_of(out)["initial_state"]
    assert init["source"] == "bms+config"
    assert "backlog_units.batch" in init["from_config"] and "active_servers.a_compute" in init["from_config"]
    text = " ".join(res.output.split())
    assert "no point for" in text and "backlog_units.batch" in text


def test_from_bms_with_no_device_exits_1_saying_so(registry, tmp_path):
    map_path = write_point_map(tmp_path / "map.yaml", "bacnet", free_port(), timeout_s=0.3)
    res, out = plan(tmp_path, "--from-bms", str(map_path), *REPLAY)
    assert res.exit_code == 1, res.output
    assert "cannot read the measured state from the BMS" in " ".join(res.output.split())
    assert "Traceback" not in res.output and not out.exists()
