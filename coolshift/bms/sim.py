"""``coolshift bms-sim``: serve a site's BMS points on 127.0.0.1 for demos and tests.

Writable points behave like a real BMS: BACnet commandable objects with a priority
array whose relinquish-default is the site's initial setpoint (the "local control"
value); Modbus holding registers with a mode register that, set to auto, hands the
setpoint back to that local value. Read-only telemetry points (rack inlet
temperature per zone, cooling and IT power) come from the simulator
(:func:`coolshift.simulations.engine.simulate`) run at the setpoints in force, a fixed
load and a fixed outside condition until the room has settled, so a pushed setpoint
visibly changes the plant within about a second. It is the steady state of one
operating point, not a time simulation: the served telemetry jumps to the settled value.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import SiteConfig
from ..schema import SEP
from .modbus import decode_registers, encode_registers
from .points import Point, PointMap

__all__ = ["SimConditions", "local_default", "steady_telemetry", "BacnetSim", "ModbusSim", "serve"]


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


class BacnetSim:
    """A bacpypes3 device: commandable AV/AO objects for setpoints, AI objects for telemetry."""

    def __init__(self, pm: PointMap, site: SiteConfig, port: int, cond: SimConditions = SimConditions(),
                 device_instance: int = 1000):
        self.pm, self.site, self.port, self.cond = pm, site, port, cond
        self.device_instance = device_instance
        self.app = None
        self.objects: dict[str, Any] = {}
        self.telemetry = _Telemetry(site, cond)

    def start(self) -> None:
        from bacpypes3.local.analog import AnalogInputObject, AnalogOutputObject, AnalogValueObjectCmd

        from .bacnet import make_application

        kinds = {"analog-value": AnalogValueObjectCmd, "analog-output": AnalogOutputObject,
                 "analog-input": AnalogInputObject}
        for p in self.pm.points:
            assert p.bacnet is not None
            kw: dict[str, Any] = dict(objectIdentifier=(p.bacnet.object_type, p.bacnet.instance), objectName=p.name,
                                      presentValue=local_default(p, self.site),
                                      units="degreesCelsius" if p.unit == "degC" else "kilowatts")
            if p.bacnet.object_type != "analog-input":
                kw["relinquishDefault"] = local_default(p, self.site)
            self.objects[p.name] = kinds[p.bacnet.object_type](**kw)
        self.app = make_application(f"127.0.0.1/8:{self.port}", self.device_instance, f"bms-sim {self.site.name}",
                                    list(self.objects.values()))
        self.refresh()

    def setpoints(self) -> dict[str, float]:
        return {p.variable: float(self.objects[p.name].presentValue) for p in self.pm.points if p.writable}

    def _show(self, tele: dict[str, float]) -> None:
        for p in self.pm.points:
            if not p.writable and p.variable in tele:
                self.objects[p.name].presentValue = float(tele[p.variable])

    def refresh(self) -> None:
        """Recompute the telemetry for the setpoints in force now (blocking)."""
        self._show(self.telemetry.get(self.setpoints()))

    async def run(self, stop: asyncio.Event, refresh_s: float = 0.5, ready: asyncio.Event | None = None) -> None:
        """Serve until ``stop``; telemetry follows the setpoints within about ``refresh_s``."""
        self.start()
        if ready is not None:
            ready.set()
        try:
            while not stop.is_set():
                # the simulator runs in a worker thread so the device keeps answering
                self._show(await asyncio.to_thread(self.telemetry.get, self.setpoints()))
                try:
                    await asyncio.wait_for(stop.wait(), refresh_s)
                except (asyncio.TimeoutError, TimeoutError):
                    pass
        finally:
            self.close()

    def close(self) -> None:
        if self.app is not None:
            self.app.close()
            self.app = None


class ModbusSim:
    """A pymodbus server: setpoint registers, a mode register per setpoint, telemetry registers."""

    def __init__(self, pm: PointMap, site: SiteConfig, port: int, cond: SimConditions = SimConditions(),
                 device_id: int | None = None):
        for p in pm.points:
            assert p.modbus is not None
            if p.modbus.release is not None and p.modbus.release.coil is not None:
                raise ValueError(f"bms-sim serves register-mode release only; point {p.name} uses a coil")
        self.pm, self.site, self.port, self.cond = pm, site, port, cond
        self.device_id = device_id if device_id is not None else pm.connection.device_id  # type: ignore[union-attr]
        top = max(max(p.modbus.address + p.modbus.n_registers,  # type: ignore[union-attr]
                      (p.modbus.release.holding + 1) if p.modbus.release else 0) for p in pm.points)  # type: ignore[union-attr]
        self.n_registers = top + 1
        self.server = None
        self._ready = False
        self.telemetry = _Telemetry(site, cond)
        self._effective_now: dict[str, float] = {}
        self._tele: dict[str, float] = {}

    def _init_registers(self, regs: list[int]) -> None:
        for p in self.pm.points:
            mp = p.modbus
            assert mp is not None
            words = encode_registers(mp, local_default(p, self.site))
            regs[mp.address: mp.address + len(words)] = words
            if mp.release is not None:
                regs[mp.release.holding] = mp.release.auto_value & 0xFFFF  # type: ignore[index]
        self._ready = True

    def _effective(self, regs: list[int]) -> dict[str, float]:
        out = {}
        for p in self.pm.points:
            mp = p.modbus
            if not p.writable or mp is None or mp.release is None:
                continue
            remote = regs[mp.release.holding] == (mp.release.remote_value & 0xFFFF)  # type: ignore[index]
            out[p.variable] = decode_registers(mp, regs[mp.address: mp.address + mp.n_registers]) if remote \
                else local_default(p, self.site)
        return out

    async def action(self, fc: int, start: int, address: int, count: int, regs: list[int], set_values: Any) -> None:
        """Runs before pymodbus serves each request: local control, then fresh telemetry."""
        if start != 0:
            return None
        if not self._ready:
            self._init_registers(regs)
        if set_values is not None and fc in (6, 16):
            for i, w in enumerate(set_values):
                for p in self.pm.points:
                    rel = p.modbus.release if p.modbus else None
                    if rel is not None and rel.holding == address + i and w == (rel.auto_value & 0xFFFF):
                        # back to local control: the controller restores its own setpoint
                        mp = p.modbus
                        words = encode_registers(mp, local_default(p, self.site))  # type: ignore[arg-type]
                        regs[mp.address: mp.address + len(words)] = words  # type: ignore[union-attr]
        self._effective_now = self._effective(regs)
        for p in self.pm.points:  # the latest telemetry the simulator has produced
            if not p.writable and p.variable in self._tele:
                mp = p.modbus
                words = encode_registers(mp, float(self._tele[p.variable]))  # type: ignore[arg-type]
                regs[mp.address: mp.address + len(words)] = words  # type: ignore[union-attr]
        return None

    def _defaults(self) -> dict[str, float]:
        return {p.variable: local_default(p, self.site) for p in self.pm.points if p.writable}

    def make_server(self):
        from pymodbus.server import ModbusTcpServer
        from pymodbus.simulator import DataType, SimData, SimDevice

        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
        dev = SimDevice(id=self.device_id, simdata=[SimData(address=0, count=self.n_registers, values=0,
                                                            datatype=DataType.REGISTERS)], action=self.action)
        self.server = ModbusTcpServer(dev, address=("127.0.0.1", self.port))
        return self.server

    async def run(self, stop: asyncio.Event, refresh_s: float = 0.5, ready: asyncio.Event | None = None) -> None:
        """Serve until ``stop``; telemetry follows the setpoints within about ``refresh_s``."""
        self._tele = await asyncio.to_thread(self.telemetry.get, self._defaults())
        server = self.make_server()
        task = asyncio.create_task(server.serve_forever())
        for _ in range(200):  # until it accepts connections
            try:
                _, w = await asyncio.open_connection("127.0.0.1", self.port)
                w.close()
                break
            except OSError:
                if task.done():
                    task.result()
                await asyncio.sleep(0.05)
        if ready is not None:
            ready.set()
        try:
            while not stop.is_set():
                if self._effective_now:
                    self._tele = await asyncio.to_thread(self.telemetry.get, dict(self._effective_now))
                try:
                    await asyncio.wait_for(stop.wait(), refresh_s)
                except (asyncio.TimeoutError, TimeoutError):
                    pass
        finally:
            await server.shutdown()
            task.cancel()


async def serve(pm: PointMap, site: SiteConfig, port: int, cond: SimConditions, stop: asyncio.Event,
                ready: asyncio.Event | None = None) -> None:
    """Serve the point map's device until ``stop``; ``ready`` is set once it answers."""
    if pm.protocol == "bacnet":
        await BacnetSim(pm, site, port, cond).run(stop, ready=ready)
    else:
        await ModbusSim(pm, site, port, cond).run(stop, ready=ready)
