"""Loopback BMS devices: the controller's side of BACnet and Modbus, and ``coolshift bms-sim``.

:class:`BacnetPoints` and :class:`ModbusPoints` serve a point map on 127.0.0.1 the way a
real BMS does: BACnet commandable objects with a priority array whose relinquish-default
is the local controller's value; Modbus holding registers with a mode register that, set
to auto, puts the local controller's value back in force; telemetry points; and the map's
heartbeat point, watched by :class:`Watchdog` as a controller's program would. The site
twin (:mod:`coolshift.twin`) serves its physics through them.

``bms-sim`` (:class:`BacnetSim`, :class:`ModbusSim`) fills the telemetry from the simulator
(:func:`coolshift.simulations.engine.simulate`) run at the setpoints in force, a fixed load
and a fixed outside condition until the room has settled, so a pushed setpoint visibly
changes the plant within about a second. It is the steady state of one operating point,
not a time simulation: the served telemetry jumps to the settled value (the twin does not).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..config import SiteConfig
from ..schema import SEP
from .modbus import decode_registers, encode_registers
from .points import STORAGE_POWER_PREFIXES, Point, PointMap

__all__ = ["SimConditions", "local_default", "steady_telemetry", "BacnetPoints", "ModbusPoints", "Watchdog",
           "run_watchdog", "BacnetSim", "ModbusSim", "serve"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimConditions:
    """The fixed operating point the simulated plant runs at (a demo choice, not data).

    60 % of capacity keeps the plant well loaded, a little above the 10-50 % band in which
    servers spend most of their time (Barroso & Hoelzle, "The case for energy-proportional
    computing", IEEE Computer 2007); 20 degC dry-bulb / 14 degC wet-bulb is a
    mild day (about 50 % relative humidity, ASHRAE Fundamentals 2021 ch. 1 psychrometrics),
    so the water-side economiser is partly on and setpoints visibly change chiller power.
    """

    load_frac: float = 0.6  # work demanded, as a share of the site's capacity
    drybulb_c: float = 20.0
    wetbulb_c: float = 14.0


# Steps simulated at constant setpoints before reading the telemetry: the engine's room
# lag has a time constant of minutes (simulations.airside.room_time_constant_s), so two
# hours at the site's planning step reach steady state.
SETTLE_H = 2.0


def local_default(point: Point, site: SiteConfig) -> float:
    """The value the site's own control holds when nobody commands the point."""
    v = point.variable
    if v.startswith("supply_setpoint_c" + SEP):
        zone = v.split(SEP, 1)[1]
        for z in site.zones:
            if z.name == zone:
                return z.supply_setpoint_initial_c
    if v == "chw_setpoint_c":
        return site.cooling.chiller.chw_setpoint_initial_c
    if v.startswith(STORAGE_POWER_PREFIXES):
        return 0.0  # a battery under its own controller: idle (no power commanded)
    if point.min_value is not None and point.max_value is not None:
        return 0.5 * (point.min_value + point.max_value)
    return 0.0


class _HeldSetpoints:
    """A simulator policy that holds the BMS's setpoints (static baseline for everything else)."""

    name = "bms-sim"
    interval_h = None

    def __init__(self, supply_c: np.ndarray, chw_c: float):
        self.supply_c, self.chw_c = supply_c, chw_c

    def decide(self, obs):
        from coolshift.baselines import static_actions

        a = static_actions(obs.site, obs.forecast, obs.state, obs.n_steps, obs.step_h)
        a.supply_c[:] = self.supply_c
        a.chw_c[:] = self.chw_c
        return a


def steady_telemetry(site: SiteConfig, supply_c: dict[str, float], chw_c: float, cond: SimConditions) -> dict[str, float]:
    """Telemetry columns (schema names) after ``SETTLE_H`` hours at these setpoints.

    Runs the simulator (:func:`coolshift.simulations.engine.simulate`) on a constant
    operating point; setpoints outside the site's ranges are clipped first, as a
    controller would (the safety layer never writes them).
    """
    import pandas as pd

    from coolshift.schema import CARBON_GCO2_PER_KWH, DEMAND_SUFFIX, TEMP_C, WETBULB_C
    from coolshift.simulations.engine import required_columns, simulate

    sup = np.array([min(max(supply_c.get(z.name, z.supply_setpoint_initial_c), z.supply_setpoint_min_c),
                        z.supply_setpoint_max_c) for z in site.zones])
    ch = site.cooling.chiller
    chw = min(max(chw_c, ch.chw_setpoint_min_c), ch.chw_setpoint_max_c)
    n = max(2, int(round(SETTLE_H / site.step_h)))
    idx = pd.date_range("2026-01-01", periods=n, freq=f"{site.planning.step_minutes}min", tz="UTC")
    share = {c.name: c.share for c in site.workload_classes}
    data = {}
    for c in required_columns(site):
        if c.startswith(CARBON_GCO2_PER_KWH):
            data[c] = 300.0  # any value: carbon does not change the plant's physics
        elif c == TEMP_C:
            data[c] = cond.drybulb_c
        elif c == WETBULB_C:
            data[c] = cond.wetbulb_c
        elif c.endswith(DEMAND_SUFFIX):
            data[c] = cond.load_frac * site.capacity_units_per_h * share[c[: -len(DEMAND_SUFFIX)]]
    data["rh_pct"] = 50.0
    res = simulate(site, pd.DataFrame(data, index=idx), _HeldSetpoints(sup, chw))
    last = res.timeseries.iloc[-1]
    out = {k: float(v) for k, v in last.items() if isinstance(v, (int, float, np.floating, np.integer))}
    out["chw_setpoint_c"] = chw_c
    for z in site.zones:
        out[f"supply_setpoint_c{SEP}{z.name}"] = supply_c.get(z.name, z.supply_setpoint_initial_c)
    return out


class _Telemetry:
    """The simulator's telemetry per setpoint vector, cached (a run takes a few 100 ms)."""

    def __init__(self, site: SiteConfig, cond: SimConditions):
        self.site, self.cond = site, cond
        self._cache: dict[tuple, dict[str, float]] = {}

    def get(self, setpoints: dict[str, float]) -> dict[str, float]:
        key = tuple(sorted((k, round(v, 4)) for k, v in setpoints.items()))
        if key not in self._cache:
            supply, chw = _split(setpoints, self.site)
            if len(self._cache) > 256:
                self._cache.clear()
            self._cache[key] = steady_telemetry(self.site, supply, chw, self.cond)
        return self._cache[key]


def _split(setpoints: dict[str, float], site: SiteConfig) -> tuple[dict[str, float], float]:
    supply = {k.split(SEP, 1)[1]: v for k, v in setpoints.items() if k.startswith("supply_setpoint_c" + SEP)}
    return supply, setpoints.get("chw_setpoint_c", site.cooling.chiller.chw_setpoint_initial_c)


# BACnet engineering units (ASHRAE 135 BACnetEngineeringUnits) for the point map's units.
_BACNET_UNITS = {"degC": "degreesCelsius", "kW": "kilowatts", "h": "hours", "%": "percent"}


class BacnetPoints:
    """A bacpypes3 device serving a point map: the controller's side of BACnet.

    Setpoints are commandable AV/AO objects (16-slot priority array) whose
    relinquish-default is the local controller's value (:meth:`set_local`); telemetry
    points are AI objects (:meth:`show`); the map's heartbeat, if any, is a plain AV the
    supervisor writes. :meth:`hand_back` is what the controller's watchdog program does.
    """

    def __init__(self, pm: PointMap, site: SiteConfig, port: int, device_instance: int = 1000,
                 title: str | None = None):
        self.pm, self.site, self.port = pm, site, port
        self.device_instance = device_instance
        self.title = title or f"bms-sim {site.name}"
        self.app = None
        self.objects: dict[str, Any] = {}
        self.heartbeat_object = None

    def start(self) -> None:
        from bacpypes3.local.analog import (AnalogInputObject, AnalogOutputObject, AnalogValueObject,
                                            AnalogValueObjectCmd)

        from .bacnet import make_application

        kinds = {"analog-value": AnalogValueObjectCmd, "analog-output": AnalogOutputObject,
                 "analog-input": AnalogInputObject}
        for p in self.pm.points:
            assert p.bacnet is not None
            kw: dict[str, Any] = dict(objectIdentifier=(p.bacnet.object_type, p.bacnet.instance), objectName=p.name,
                                      presentValue=local_default(p, self.site),
                                      units=_BACNET_UNITS.get(p.unit, "noUnits"))
            if p.bacnet.object_type != "analog-input":
                kw["relinquishDefault"] = local_default(p, self.site)
            self.objects[p.name] = kinds[p.bacnet.object_type](**kw)
        extra = []
        hb = self.pm.heartbeat
        if hb is not None:
            # a plain AV: the supervisor writes its present-value, the local program reads it
            self.heartbeat_object = AnalogValueObject(objectIdentifier=("analog-value", int(hb.object.split(",")[1])),
                                                      objectName="heartbeat", presentValue=0.0, units="noUnits")
            extra.append(self.heartbeat_object)
        self.app = make_application(f"127.0.0.1/8:{self.port}", self.device_instance, self.title,
                                    [*self.objects.values(), *extra])

    def setpoints(self) -> dict[str, float]:
        """The value in force of every writable point (present-value)."""
        return {p.variable: float(self.objects[p.name].presentValue) for p in self.pm.points if p.writable}

    def overrides(self) -> dict[str, float]:
        """Writable points some priority slot commands (not the local controller), with the value in force."""
        out = {}
        for p in self.pm.writable:
            obj = self.objects[p.name]
            if any(pv._choice != "null" for pv in obj.priorityArray):
                out[p.variable] = float(obj.presentValue)
        return out

    def held_by_supervisor(self) -> dict[str, bool]:
        """Per writable point: is the supervisor's slot (the point's configured priority) occupied?"""
        return {p.variable: self.objects[p.name].priorityArray[p.bacnet.priority - 1]._choice != "null"
                for p in self.pm.writable}

    def set_local(self, values: dict[str, float]) -> None:
        """The local controller's setpoints: the relinquish-default of each point."""
        for p in self.pm.writable:
            if p.variable in values:
                obj = self.objects[p.name]
                obj.relinquishDefault = float(values[p.variable])
                obj.recalculating()  # present-value follows it when no slot is occupied

    def show(self, tele: dict[str, float]) -> None:
        for p in self.pm.points:
            if not p.writable and p.variable in tele:
                self.objects[p.name].presentValue = float(tele[p.variable])

    def heartbeat(self) -> float | None:
        return None if self.heartbeat_object is None else float(self.heartbeat_object.presentValue)

    def hand_back(self) -> list[str]:
        """Relinquish the supervisor's slot on every commandable point; the names that were held."""
        from bacpypes3.basetypes import PriorityValue

        out = []
        for p in self.pm.writable:
            arr = self.objects[p.name].priorityArray
            if arr[p.bacnet.priority - 1]._choice != "null":
                arr[p.bacnet.priority - 1] = PriorityValue(null=())  # recalculates present-value
                out.append(p.name)
        return out

    def close(self) -> None:
        if self.app is not None:
            self.app.close()
            self.app = None


class ModbusPoints:
    """A pymodbus server serving a point map: the controller's side of Modbus TCP.

    One register block holds the setpoint registers, a mode register per setpoint
    (``auto_value``: local control, the register shows the local controller's value),
    the telemetry registers and the map's heartbeat register, if any. The block is
    pymodbus's own storage, reached through the request hook (:meth:`action`); until the
    first request, values wait in ``_init``.
    """

    def __init__(self, pm: PointMap, site: SiteConfig, port: int, device_id: int | None = None):
        for p in pm.points:
            assert p.modbus is not None
            if p.modbus.release is not None and p.modbus.release.coil is not None:
                raise ValueError(f"bms-sim serves register-mode release only; point {p.name} uses a coil")
        self.pm, self.site, self.port = pm, site, port
        self.device_id = device_id if device_id is not None else pm.connection.device_id  # type: ignore[union-attr]
        used: dict[int, str] = {}
        for p in pm.points:
            mp = p.modbus
            for a in [*range(mp.address, mp.address + mp.n_registers),
                      *([mp.release.holding] if mp.release is not None else [])]:
                if a in used:  # one shared block: input and holding tables share addresses here
                    raise ValueError(f"register {a} of point {p.name} is also used by {used[a]}")
                used[a] = p.name
        if pm.heartbeat is not None:
            if pm.heartbeat.holding in used:
                raise ValueError(f"heartbeat register {pm.heartbeat.holding} is also used by {used[pm.heartbeat.holding]}")
            used[pm.heartbeat.holding] = "heartbeat"
        self.n_registers = max(used) + 1
        self.server = None
        self.task = None
        self._regs: list[int] | None = None
        self._init: dict[int, int] = {}
        self.local: dict[str, float] = {p.variable: local_default(p, site) for p in pm.writable}
        for p in pm.points:
            self._put(p.modbus.address, encode_registers(p.modbus, local_default(p, site)))
            if p.modbus.release is not None:
                self._init[p.modbus.release.holding] = p.modbus.release.auto_value & 0xFFFF

    def _put(self, address: int, words: list[int]) -> None:
        if self._regs is None:
            for i, w in enumerate(words):
                self._init[address + i] = w
        else:
            self._regs[address: address + len(words)] = words

    def _get(self, address: int, n: int = 1) -> list[int]:
        if self._regs is None:
            return [self._init.get(address + i, 0) for i in range(n)]
        return list(self._regs[address: address + n])

    def _remote(self, p: Point) -> bool:
        rel = p.modbus.release
        return self._get(rel.holding)[0] == (rel.remote_value & 0xFFFF)

    async def action(self, fc: int, start: int, address: int, count: int, regs: list[int], set_values: Any) -> None:
        """Runs before pymodbus serves each request: a mode set to auto restores the local value."""
        if start != 0:
            return None
        if self._regs is None:
            for a, w in self._init.items():
                regs[a] = w
            self._regs = regs
        if set_values is not None and fc in (6, 16):
            for i, w in enumerate(set_values):
                for p in self.pm.writable:
                    rel = p.modbus.release
                    if rel.holding == address + i and w == (rel.auto_value & 0xFFFF):
                        # back to local control: the controller restores its own setpoint
                        self._put(p.modbus.address, encode_registers(p.modbus, self.local[p.variable]))
        return None

    def setpoints(self) -> dict[str, float]:
        """The value in force of every writable point (the register when remote, else the local value)."""
        return {p.variable: decode_registers(p.modbus, self._get(p.modbus.address, p.modbus.n_registers))
                if self._remote(p) else self.local[p.variable] for p in self.pm.writable}

    def overrides(self) -> dict[str, float]:
        """Writable points in remote mode, with the commanded value."""
        return {p.variable: decode_registers(p.modbus, self._get(p.modbus.address, p.modbus.n_registers))
                for p in self.pm.writable if self._remote(p)}

    def held_by_supervisor(self) -> dict[str, bool]:
        return {p.variable: self._remote(p) for p in self.pm.writable}

    def set_local(self, values: dict[str, float]) -> None:
        """The local controller's setpoints; a point in automatic mode shows it in its register."""
        for p in self.pm.writable:
            if p.variable in values:
                self.local[p.variable] = float(values[p.variable])
                if not self._remote(p):
                    self._put(p.modbus.address, encode_registers(p.modbus, self.local[p.variable]))

    def show(self, tele: dict[str, float]) -> None:
        for p in self.pm.points:
            if not p.writable and p.variable in tele:
                self._put(p.modbus.address, encode_registers(p.modbus, float(tele[p.variable])))

    def heartbeat(self) -> float | None:
        hb = self.pm.heartbeat
        return None if hb is None else float(self._get(hb.holding)[0])

    def hand_back(self) -> list[str]:
        """Flip every mode register to automatic (the local value back in force); the names that were remote."""
        out = []
        for p in self.pm.writable:
            if self._remote(p):
                self._put(p.modbus.release.holding, [p.modbus.release.auto_value & 0xFFFF])
                self._put(p.modbus.address, encode_registers(p.modbus, self.local[p.variable]))
                out.append(p.name)
        return out

    def make_server(self):
        from pymodbus.server import ModbusTcpServer
        from pymodbus.simulator import DataType, SimData, SimDevice

        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
        dev = SimDevice(id=self.device_id, simdata=[SimData(address=0, count=self.n_registers, values=0,
                                                            datatype=DataType.REGISTERS)], action=self.action)
        self.server = ModbusTcpServer(dev, address=("127.0.0.1", self.port))
        return self.server

    async def start(self) -> None:
        """Serve, and return once the server accepts connections."""
        server = self.make_server()
        self.task = asyncio.create_task(server.serve_forever())
        for _ in range(200):
            try:
                _, w = await asyncio.open_connection("127.0.0.1", self.port)
                w.close()
                break
            except OSError:
                if self.task.done():
                    self.task.result()
                await asyncio.sleep(0.05)

    async def close(self) -> None:
        if self.server is not None:
            await self.server.shutdown()
            self.server = None
        if self.task is not None:
            self.task.cancel()
            self.task = None


class Watchdog:
    """The controller's watchdog, as a PLC implements it: a timer reset by every change of the heartbeat.

    ``scan()`` is one pass of the controller's program: when the heartbeat point has not
    changed for ``timeout_s`` (counted on ``clock``, seconds), every point the supervisor
    commands goes back to local control (:meth:`hand_back` of the server), and keeps
    going back on every scan until the heartbeat changes again. The timer starts when
    the controller does, so a command written without any heartbeat lasts ``timeout_s``.
    """

    def __init__(self, server: "BacnetPoints | ModbusPoints", timeout_s: float, clock: Callable[[], float]):
        self.server, self.timeout_s, self.clock = server, timeout_s, clock
        self.last_value = server.heartbeat()
        self.last_change_s = clock()
        self.events: list[tuple[float, list[str]]] = []  # (clock, points handed back)

    @property
    def silent(self) -> bool:
        return self.clock() - self.last_change_s > self.timeout_s

    def scan(self) -> list[str]:
        v = self.server.heartbeat()
        now = self.clock()
        if v != self.last_value:
            self.last_value, self.last_change_s = v, now
            return []
        if now - self.last_change_s > self.timeout_s:
            handed = self.server.hand_back()
            if handed:
                self.events.append((now, handed))
                log.warning("watchdog: heartbeat silent for %.0f s (timeout %.0f s): %s back to local control",
                            now - self.last_change_s, self.timeout_s, ", ".join(handed))
            return handed
        return []


# How often the controller's program scans the heartbeat [s of wall time]: PLC scan cycles are
# 10-100 ms (IEC 61131-3 cyclic tasks; 50 ms is a common default), far below any timeout.
SCAN_PERIOD_S = 0.05


async def run_watchdog(wd: Watchdog, stop: asyncio.Event, period_s: float = SCAN_PERIOD_S) -> None:
    """Scan ``wd`` every ``period_s`` until ``stop``."""
    while not stop.is_set():
        wd.scan()
        try:
            await asyncio.wait_for(stop.wait(), period_s)
        except (asyncio.TimeoutError, TimeoutError):
            pass



async def _refresh_until(sim, stop: asyncio.Event, refresh_s: float) -> None:
    """Show the telemetry for the setpoints in force every ``refresh_s`` until ``stop``; the
    simulator runs in a worker thread so the device keeps answering meanwhile."""
    while not stop.is_set():
        sim.show(await asyncio.to_thread(sim.telemetry.get, sim.setpoints()))
        try:
            await asyncio.wait_for(stop.wait(), refresh_s)
        except (asyncio.TimeoutError, TimeoutError):
            pass

class BacnetSim(BacnetPoints):
    """``bms-sim`` over BACnet: the points of :class:`BacnetPoints`, telemetry from :func:`steady_telemetry`."""

    def __init__(self, pm: PointMap, site: SiteConfig, port: int, cond: SimConditions = SimConditions(),
                 device_instance: int = 1000):
        super().__init__(pm, site, port, device_instance, f"bms-sim {site.name}")
        self.cond = cond
        self.telemetry = _Telemetry(site, cond)

    def start(self) -> None:
        super().start()
        self.refresh()

    def refresh(self) -> None:
        """Recompute the telemetry for the setpoints in force now (blocking)."""
        self.show(self.telemetry.get(self.setpoints()))

    async def run(self, stop: asyncio.Event, refresh_s: float = 0.5, ready: asyncio.Event | None = None) -> None:
        """Serve until ``stop``; telemetry follows the setpoints within about ``refresh_s``."""
        self.start()
        watch = _start_watchdog(self, stop)
        if ready is not None:
            ready.set()
        try:
            await _refresh_until(self, stop, refresh_s)
        finally:
            if watch is not None:
                watch.cancel()
            self.close()


class ModbusSim(ModbusPoints):
    """``bms-sim`` over Modbus TCP: the registers of :class:`ModbusPoints`, telemetry from :func:`steady_telemetry`."""

    def __init__(self, pm: PointMap, site: SiteConfig, port: int, cond: SimConditions = SimConditions(),
                 device_id: int | None = None):
        super().__init__(pm, site, port, device_id)
        self.cond = cond
        self.telemetry = _Telemetry(site, cond)

    async def run(self, stop: asyncio.Event, refresh_s: float = 0.5, ready: asyncio.Event | None = None) -> None:
        """Serve until ``stop``; telemetry follows the setpoints within about ``refresh_s``."""
        self.show(await asyncio.to_thread(self.telemetry.get, self.setpoints()))
        await self.start()
        watch = _start_watchdog(self, stop)
        if ready is not None:
            ready.set()
        try:
            await _refresh_until(self, stop, refresh_s)
        finally:
            if watch is not None:
                watch.cancel()
            await self.close()


def _start_watchdog(server: "BacnetPoints | ModbusPoints", stop: asyncio.Event) -> asyncio.Task | None:
    """The map's watchdog on the wall clock (``bms-sim`` runs in real time), or None without a heartbeat."""
    hb = server.pm.heartbeat
    if hb is None:
        return None
    return asyncio.create_task(run_watchdog(Watchdog(server, hb.timeout_s, time.monotonic), stop))


async def serve(pm: PointMap, site: SiteConfig, port: int, cond: SimConditions, stop: asyncio.Event,
                ready: asyncio.Event | None = None) -> None:
    """Serve the point map's device until ``stop``; ``ready`` is set once it answers."""
    if pm.protocol == "bacnet":
        await BacnetSim(pm, site, port, cond).run(stop, ready=ready)
    else:
        await ModbusSim(pm, site, port, cond).run(stop, ready=ready)
