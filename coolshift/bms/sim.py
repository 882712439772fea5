"""``coolshift bms-sim``: serve a site's BMS points on 127.0.0.1 for demos and tests.

Writable points behave like a real BMS: BACnet commandable objects with a priority
array whose relinquish-default is the site's initial setpoint (the "local control"
value); Modbus holding registers with a mode register that, set to auto, hands the
setpoint back to that local value. Read-only telemetry points (rack inlet
temperature per zone, cooling and IT power) are recomputed from the setpoints in
force with the simulator's own physics (:mod:`coolshift.simulations`: recirculation,
CRAH fan, chiller, economiser, pump and tower functions) at a fixed IT load and
outside condition, so a pushed setpoint visibly changes the plant. It is a
steady-state view at one operating point, not a time simulation.
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
    """The fixed operating point the simulated plant runs at."""

    it_load_frac: float = 0.6  # share of each zone's design IT load
    drybulb_c: float = 20.0
    wetbulb_c: float = 14.0


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


def steady_telemetry(site: SiteConfig, supply_c: dict[str, float], chw_c: float, cond: SimConditions) -> dict[str, float]:
    """Telemetry columns (schema names) at the given setpoints, from the simulator's functions."""
    from coolshift.simulations import airside, plant

    out: dict[str, float] = {}
    ch = site.cooling.chiller
    approach = site.cooling.crah_supply_approach_c
    it_total = fans = 0.0
    for z in site.zones:
        it_kw = cond.it_load_frac * z.design_it_load_kw
        v_srv = airside.server_airflow_m3_s(it_kw)
        v = airside.crah_airflow_m3_s(v_srv, z.containment, z.crah.count * z.crah.rated_airflow_m3_s,
                                      z.crah.min_airflow_frac)
        # the coil cannot supply air colder than the chilled water plus its approach
        supply = max(supply_c.get(z.name, z.supply_setpoint_initial_c), chw_c + approach)
        rise = float(airside.recirculation_rise_c(it_kw, v, z.racks, z.containment))
        out[f"inlet_temp_c{SEP}{z.name}"] = supply + rise
        out[f"zone_it_power_kw{SEP}{z.name}"] = it_kw
        fans += float(airside.crah_fan_kw(v, z.crah.count, z.crah.rated_airflow_m3_s, z.crah.rated_fan_power_kw))
        it_total += it_kw
    load_kw = it_total + fans  # heat to remove: IT plus CRAH fan heat
    mean_supply = float(np.mean([max(supply_c.get(z.name, z.supply_setpoint_initial_c), chw_c + approach)
                                 for z in site.zones]))
    free = float(plant.economiser_fraction(site.cooling.economiser.type, site.cooling.economiser.approach_c,
                                           chw_c, mean_supply, cond.wetbulb_c, cond.drybulb_c))
    cond_c = plant.condenser_water_c(cond.wetbulb_c, cond.drybulb_c, ch.type)
    eta = plant.carnot_fraction(ch.rated_cop, ch.rated_chw_supply_c, ch.rated_condenser_c, ch.type)
    cop = plant.chiller_cop(chw_c, cond_c, eta, ch.type)
    chiller_kw = float(plant.chiller_power_kw(min(load_kw * (1 - free), ch.rated_capacity_kw), ch.rated_capacity_kw, cop))
    pumps = float(plant.pump_kw(load_kw, site.cooling.pump_rated_kw, ch.rated_capacity_kw))
    tower = float(plant.tower_fan_kw(load_kw + chiller_kw, site.cooling.tower_fan_rated_kw,
                                     ch.rated_capacity_kw * (1 + 1 / ch.rated_cop)))
    out["it_power_kw"] = it_total
    out["cooling_power_kw"] = chiller_kw + fans + pumps + tower
    out["chw_setpoint_c"] = chw_c
    for z in site.zones:
        out[f"supply_setpoint_c{SEP}{z.name}"] = supply_c.get(z.name, z.supply_setpoint_initial_c)
    return out


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

    def refresh(self) -> None:
        supply, chw = _split(self.setpoints(), self.site)
        tele = steady_telemetry(self.site, supply, chw, self.cond)
        for p in self.pm.points:
            if not p.writable and p.variable in tele:
                self.objects[p.name].presentValue = float(tele[p.variable])

    async def run(self, stop: asyncio.Event, refresh_s: float = 0.5) -> None:
        self.start()
        try:
            while not stop.is_set():
                self.refresh()
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
        supply, chw = _split(self._effective(regs), self.site)
        tele = steady_telemetry(self.site, supply, chw, self.cond)
        for p in self.pm.points:
            if not p.writable and p.variable in tele:
                mp = p.modbus
                words = encode_registers(mp, float(tele[p.variable]))  # type: ignore[arg-type]
                regs[mp.address: mp.address + len(words)] = words  # type: ignore[union-attr]
        return None

    def make_server(self):
        from pymodbus.server import ModbusTcpServer
        from pymodbus.simulator import DataType, SimData, SimDevice

        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
        dev = SimDevice(id=self.device_id, simdata=[SimData(address=0, count=self.n_registers, values=0,
                                                            datatype=DataType.REGISTERS)], action=self.action)
        self.server = ModbusTcpServer(dev, address=("127.0.0.1", self.port))
        return self.server

    async def run(self, stop: asyncio.Event) -> None:
        server = self.make_server()
        task = asyncio.create_task(server.serve_forever())
        try:
            await stop.wait()
        finally:
            await server.shutdown()
            task.cancel()


async def serve(pm: PointMap, site: SiteConfig, port: int, cond: SimConditions, stop: asyncio.Event) -> None:
    if pm.protocol == "bacnet":
        await BacnetSim(pm, site, port, cond).run(stop)
    else:
        await ModbusSim(pm, site, port, cond).run(stop)
