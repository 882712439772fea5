"""Shared helpers for the BMS tests: free ports, plan folders, point maps, real loopback devices.

Devices are real protocol servers on 127.0.0.1 (a bacpypes3 application with commandable
objects, a pymodbus ModbusTcpServer with a SimDevice), never a protocol mock. The only
test hooks are on the device side: a BACnet device that stops answering after N writes,
and a Modbus device whose server can be shut down and restarted with its registers kept.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SITE = REPO / "configs" / "sites" / "sanjose_colo_2mw.yaml"

# San Jose: local-control values are the site's initial setpoints (18, 18, 10 degC).
RD = {"hall_a_supply_sp": 18.0, "hall_b_supply_sp": 18.0, "chw_sp": 10.0}
AV = {"hall_a_supply_sp": 1, "hall_b_supply_sp": 2, "chw_sp": 10}
VAR = {"hall_a_supply_sp": "supply_setpoint_c__hall_a", "hall_b_supply_sp": "supply_setpoint_c__hall_b",
       "chw_sp": "chw_setpoint_c"}
# Modbus layout: supply int16 x0.1 at 0/1, chw float32 (little word order) at 10-11, modes at 100/101/110.
HR = {"hall_a_supply_sp": 0, "hall_b_supply_sp": 1, "chw_sp": 10}
MODE = {"hall_a_supply_sp": 100, "hall_b_supply_sp": 101, "chw_sp": 110}
AUTO, REMOTE = 1, 0


@pytest.fixture(autouse=True)
def state_dir(tmp_path, monkeypatch):
    """Each test's own Coolshift state folder (rate limits, pending writes, locks), never the user's.

    Autouse in every module that imports it; subprocesses inherit it through the environment.
    """
    d = tmp_path / "state"
    monkeypatch.setenv("COOLSHIFT_STATE_DIR", str(d))
    return d


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def now_utc() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC")


def make_plan(folder: Path, values: dict[str, float], *, created_at: pd.Timestamp | None = None,
              start: pd.Timestamp | None = None, steps: int = 4, step_min: int = 15,
              in_envelope: list[bool] | None = None, site: str = "sanjose_colo_2mw", run_id: str = "test-run") -> Path:
    """A plan folder whose steps cover now; every step carries ``values`` (variable -> degC)."""
    folder.mkdir(parents=True, exist_ok=True)
    t0 = (now_utc().floor(f"{step_min}min") if start is None else start)
    idx = pd.date_range(t0, periods=steps, freq=f"{step_min}min")
    df = pd.DataFrame({"timestamp": [t.isoformat() for t in idx]})
    for k, v in values.items():
        df[k] = v
    if in_envelope is not None:
        df["in_envelope"] = in_envelope
    df.to_csv(folder / "plan.csv", index=False)
    created = now_utc() if created_at is None else created_at
    (folder / "summary.json").write_text(json.dumps({"run_id": run_id, "created_at": created.isoformat(),
                                                     "site": site}))
    return folder


def write_point_map(path: Path, protocol: str, port: int, *, timeout_s: float = 1.0, min_write_interval_s: float = 0,
                    max_plan_age_h: float = 26, restore_timeout_s: float = 15, coil_release: bool = False,
                    wide_limits: bool = False) -> Path:
    """A San Jose point map (3 setpoints) for a device on 127.0.0.1:port; audit log beside it."""
    points = []
    for name in ("hall_a_supply_sp", "hall_b_supply_sp", "chw_sp"):
        chw = name == "chw_sp"
        lo, hi = (7, 16) if chw else (18, 27)
        if wide_limits:  # engineering limits looser than the site's envelope, so the envelope binds
            lo, hi = lo - 5, hi + 10
        p = {"name": name, "variable": VAR[name], "min_value": lo, "max_value": hi, "max_change_per_write": 1.0}
        if protocol == "bacnet":
            p["bacnet"] = {"object": f"analog-value,{AV[name]}", "priority": 10}
        else:
            rel = {"coil": 50 + HR[name], "auto_value": 1, "remote_value": 0} if coil_release else \
                  {"holding": MODE[name], "auto_value": AUTO, "remote_value": REMOTE}
            p["modbus"] = ({"address": HR[name], "datatype": "float32", "word_order": "little", "release": rel} if chw
                           else {"address": HR[name], "datatype": "int16", "scale": 0.1, "release": rel})
        points.append(p)
    conn = ({"device_address": f"127.0.0.1:{port}", "local_address": "127.0.0.1/8:0", "timeout_s": timeout_s}
            if protocol == "bacnet" else {"host": "127.0.0.1", "port": port, "device_id": 1, "timeout_s": timeout_s})
    doc = {"name": f"test_{protocol}", "site": str(SITE), "protocol": protocol, "connection": conn,
           "audit_db": str(path.parent / "audit.sqlite"),
           "safety": {"max_plan_age_h": max_plan_age_h, "min_write_interval_s": min_write_interval_s,
                      "restore_timeout_s": restore_timeout_s},
           "points": points}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


# -- BACnet device ------------------------------------------------------------------------
class BacnetDevice:
    """A bacpypes3 device with commandable AVs; ``go_silent_after`` writes it stops answering."""

    def __init__(self, port: int, go_silent_after: int | None = None, silence_s: float = 0.0,
                 plain: tuple[str, ...] = ()):
        self.port, self.go_silent_after, self.silence_s = port, go_silent_after, silence_s
        self.plain = plain  # points served as non-commandable AnalogValueObject (no priority array)
        self.writes = 0
        self.dropped = 0
        self.silent_until = 0.0
        self.app = None
        self.objects = {}

    def start(self) -> "BacnetDevice":
        from bacpypes3.app import Application
        from bacpypes3.local.analog import AnalogValueObject, AnalogValueObjectCmd
        from bacpypes3.local.device import DeviceObject
        from bacpypes3.local.networkport import NetworkPortObject

        dev = self

        class FlakyApp(Application):
            def _silent(self) -> bool:
                return time.monotonic() < dev.silent_until

            async def do_WritePropertyRequest(self, apdu):  # noqa: N802 (bacpypes3 naming)
                if not self._silent() and dev.go_silent_after is not None and dev.writes >= dev.go_silent_after:
                    dev.silent_until = time.monotonic() + dev.silence_s
                    dev.go_silent_after = None
                if self._silent():
                    dev.dropped += 1
                    return None  # no answer, nothing applied
                dev.writes += 1
                return await super().do_WritePropertyRequest(apdu)

            async def do_ReadPropertyRequest(self, apdu):  # noqa: N802
                if self._silent():
                    dev.dropped += 1
                    return None
                return await super().do_ReadPropertyRequest(apdu)

        for name, inst in AV.items():
            if name in self.plain:
                self.objects[name] = AnalogValueObject(objectIdentifier=("analog-value", inst), objectName=name,
                                                       presentValue=RD[name])
            else:
                self.objects[name] = AnalogValueObjectCmd(objectIdentifier=("analog-value", inst), objectName=name,
                                                          presentValue=RD[name], relinquishDefault=RD[name])
        device = DeviceObject(objectIdentifier=("device", 4001), objectName="test-device", vendorIdentifier=999)
        port = NetworkPortObject(f"127.0.0.1/8:{self.port}", objectIdentifier=("network-port", 1),
                                 objectName="NetworkPort-1")
        self.app = FlakyApp.from_object_list([device, port, *self.objects.values()])
        return self

    def slot(self, name: str, priority: int) -> float | None:
        pv = self.objects[name].priorityArray[priority - 1]
        return None if pv._choice == "null" else float(getattr(pv, pv._choice))

    def set_slot(self, name: str, priority: int, value: float | None) -> None:
        from bacpypes3.basetypes import PriorityValue

        self.objects[name].priorityArray[priority - 1] = PriorityValue(null=()) if value is None else PriorityValue(real=value)

    def value(self, name: str) -> float:
        return float(self.objects[name].presentValue)

    def close(self) -> None:
        if self.app is not None:
            self.app.close()
            self.app = None


# -- Modbus device ------------------------------------------------------------------------
def _words(name: str, value: float) -> list[int]:
    from coolshift.bms.modbus import encode_registers
    from coolshift.bms.points import ModbusPoint

    mp = (ModbusPoint(address=HR[name], datatype="float32", word_order="little") if name == "chw_sp"
          else ModbusPoint(address=HR[name], datatype="int16", scale=0.1))
    return encode_registers(mp, value)


class ModbusDevice:
    """A pymodbus server whose holding registers live in ``store`` (so a restart keeps them).

    ``hang_on_write`` = N: the N-th write request (counting from 1) never gets an answer.
    """

    def __init__(self, port: int, hang_on_write: int | None = None):
        self.port = port
        self.store: dict[int, int] = {}
        for name in HR:
            for i, w in enumerate(_words(name, RD[name])):
                self.store[HR[name] + i] = w
            self.store[MODE[name]] = AUTO
        self.hang_on_write = hang_on_write
        self.write_requests = 0
        self.hung = asyncio.Event()
        self.server = None
        self.task = None

    async def action(self, fc, start, address, count, regs, set_values):
        for a, w in self.store.items():
            regs[a - start] = w
        if set_values is not None and fc in (6, 16):
            self.write_requests += 1
            if self.hang_on_write is not None and self.write_requests == self.hang_on_write:
                self.hung.set()
                await asyncio.sleep(3600)  # stops answering; cancelled when the server shuts down
            for i, w in enumerate(set_values):
                self.store[address + i] = int(w)
        return None

    async def start(self) -> "ModbusDevice":
        import logging

        from pymodbus.server import ModbusTcpServer
        from pymodbus.simulator import DataType, SimData, SimDevice

        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
        dev = SimDevice(id=1, simdata=[SimData(address=0, count=200, values=0, datatype=DataType.REGISTERS)],
                        action=self.action)
        self.server = ModbusTcpServer(dev, address=("127.0.0.1", self.port))
        self.task = asyncio.create_task(self.server.serve_forever())
        for _ in range(100):  # wait until it accepts connections
            try:
                _, w = await asyncio.open_connection("127.0.0.1", self.port)
                w.close()
                break
            except OSError:
                await asyncio.sleep(0.05)
        return self

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.shutdown()
            self.server = None
        if self.task is not None:
            self.task.cancel()
            self.task = None

    def value(self, name: str) -> float:
        from coolshift.bms.modbus import decode_registers
        from coolshift.bms.points import ModbusPoint

        mp = (ModbusPoint(address=HR[name], datatype="float32", word_order="little") if name == "chw_sp"
              else ModbusPoint(address=HR[name], datatype="int16", scale=0.1))
        return decode_registers(mp, [self.store[HR[name] + i] for i in range(mp.n_registers)])

    def mode(self, name: str) -> int:
        return self.store[MODE[name]]
