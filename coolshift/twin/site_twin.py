"""The site twin: :class:`TwinPlant` behind the site's BMS points, on a clock ``speed`` times real time.

Every ``900 / speed`` wall seconds (one 15-min planning step of site time) the twin latches
the setpoints in force (points some supervisor commands: BACnet priority slots, Modbus
remote mode), lets the local controller decide the rest, simulates the step, and shows
the step's telemetry and the local controller's setpoints (relinquish-default, or the
register of a point in automatic mode). Its clock point then reads the end of the step,
so a write the supervisor makes after reading it applies from that time on.

The map's watchdog (:class:`coolshift.bms.sim.Watchdog`) times the heartbeat in site
seconds, as the real site's controller would time it in its own (real) seconds: at
``speed`` N a 1350 s timeout lasts 1350 / N wall seconds, so the same point map gives the
same hand-back, in steps, on the twin at any speed and on the site.

With ``hosts`` (:class:`.hosts.TwinHosts`) and a ``redfish_port``, the twin also serves its
servers as Redfish systems on 127.0.0.1 (:class:`.hosts.RedfishService`): the plant runs
the servers their power states say once a supervisor has commanded one (else the local
rule's count), the work file (``work_path``) says after each step which hosts carry
work, and the watchdog's hand-back also returns the servers to local control.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from coolshift.bms.points import PointMap, PointMapError, load_point_map
from coolshift.bms.sim import BacnetPoints, ModbusPoints, Watchdog, run_watchdog
from coolshift.config import SiteConfig, load_site
from coolshift.io import load_site_data
from coolshift.usecases.inputs import default_period

from .clock import TwinClock
from .hosts import RedfishService, TwinHosts, write_work
from .plant import TwinPlant, active_variable
from .points import twin_point_map

__all__ = ["StepRecord", "SiteTwin", "load_twin", "default_map_path"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepRecord:
    """One simulated step: when (wall, site), what a supervisor commanded, what ran."""

    k: int
    wall_s: float  # time.monotonic() when it was simulated
    site_time: pd.Timestamp  # start of the step
    overrides: dict[str, float]
    local: dict[str, float]
    telemetry: dict[str, float] = field(repr=False)


class SiteTwin:
    """The twin of one site over one protocol; :meth:`run` serves it until ``stop``."""

    def __init__(self, pm: PointMap, site: SiteConfig, data: pd.DataFrame, speed: float, port: int,
                 device_instance: int = 1000, hosts: TwinHosts | None = None, redfish_port: int | None = None,
                 redfish_auth: tuple[str, str] | None = None, work_path: Path | None = None):
        if not speed > 0:
            raise ValueError(f"speed {speed} must be positive")
        self.pm, self.site, self.data, self.speed, self.port = pm, site, data, float(speed), port
        self.hosts, self.redfish_port, self.redfish_auth, self.work_path = hosts, redfish_port, redfish_auth, work_path
        self.redfish: RedfishService | None = None
        self.plant = TwinPlant(site, data)
        title = f"twin {site.name}"
        self.server = (BacnetPoints(pm, site, port, device_instance, title) if pm.protocol == "bacnet"
                       else ModbusPoints(pm, site, port))
        self.clock: TwinClock | None = None
        self.watchdog: Watchdog | None = None
        self.history: list[StepRecord] = []

    @property
    def step_s(self) -> float:
        return self.plant.step_s

    def tick(self) -> StepRecord:
        """Simulate the next step under the setpoints in force now and show its result."""
        k = self.plant.t
        overrides = self.server.overrides()
        hosts = self.hosts
        commanded = hosts.active_servers() if hosts is not None and hosts.remote else None
        if commanded is not None:
            overrides = {**overrides, **{active_variable(p): v for p, v in commanded.items()}}
        local, tele = self.plant.step(overrides, commanded)
        if hosts is not None:
            ran = {p: tele[active_variable(p)] for p in hosts.pools}
            if hosts.remote:  # the site's scheduler switches on what work due now needs
                hosts.ensure_servers(ran)
            else:
                hosts.apply_local(ran)
            hosts.set_busy({p: tele.get(f"busy_servers__{p}", ran[p]) for p in hosts.pools})
            if self.work_path is not None:
                write_work(hosts, self.work_path)
        self.server.set_local(local)
        self.server.show(tele)
        rec = StepRecord(k=k, wall_s=time.monotonic(), site_time=self.data.index[k], overrides=overrides,
                         local=local, telemetry=tele)
        self.history.append(rec)
        return rec

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None,
                  on_step: Callable[[StepRecord], None] | None = None) -> None:
        """Serve and advance one step every ``step_s / speed`` wall seconds until ``stop`` or the data's end."""
        if isinstance(self.server, BacnetPoints):
            self.server.start()
        self.server.show(self.plant.initial_telemetry())
        if isinstance(self.server, ModbusPoints):
            await self.server.start()
        watch = None
        if self.hosts is not None and self.redfish_port is not None:
            self.redfish = RedfishService(self.hosts, self.redfish_port, self.redfish_auth)
            try:
                self.redfish.start()
            except BaseException:
                if isinstance(self.server, BacnetPoints):
                    self.server.close()
                else:
                    await self.server.close()
                raise
        try:
            rec = self.tick()  # step 0 before the clock starts: its first run imports scipy (about 1 s)
            self.clock = TwinClock(start=self.data.index[0], step_s=self.step_s, speed=self.speed)
            if self.pm.heartbeat is not None:
                self.watchdog = Watchdog(_Controller(self.server, self.hosts), self.pm.heartbeat.timeout_s,
                                         self.clock.site_s)
                watch = asyncio.create_task(run_watchdog(self.watchdog, stop))
            if on_step is not None:
                on_step(rec)
            if ready is not None:
                ready.set()
            k = 1
            while not stop.is_set():
                # a late step (the host too slow for the speed) is caught up without sleeping
                wait_s = self.clock.wall_of_step(k) - time.monotonic()
                if wait_s > 0:
                    try:
                        await asyncio.wait_for(stop.wait(), wait_s)
                    except (asyncio.TimeoutError, TimeoutError):
                        pass
                if stop.is_set():
                    break
                if self.plant.done:
                    log.warning("twin: the site data ends at %s; the clock stops", self.data.index[-1])
                    await stop.wait()
                    break
                rec = self.tick()
                if on_step is not None:
                    on_step(rec)
                k += 1
        finally:
            if watch is not None:
                watch.cancel()
            if self.redfish is not None:
                self.redfish.close()
            if isinstance(self.server, BacnetPoints):
                self.server.close()
            else:
                await self.server.close()


class _Controller:
    """What the watchdog hands back: the BMS points and, when the twin has them, its servers."""

    def __init__(self, server: BacnetPoints | ModbusPoints, hosts: TwinHosts | None):
        self.server, self.hosts = server, hosts

    def heartbeat(self) -> float | None:
        return self.server.heartbeat()

    def hand_back(self) -> list[str]:
        out = self.server.hand_back()
        if self.hosts is not None and self.hosts.hand_back():
            out.append("servers")
        return out


def default_map_path(site_path: Path, site: SiteConfig, protocol: str) -> Path:
    """configs/bms/<site>_<protocol>.yaml beside the site's configs/sites folder (as ``bms-sim``)."""
    return Path(site_path).resolve().parent.parent / "bms" / f"{site.name}_{protocol}.yaml"


def load_twin(site_path: Path, protocol: str, speed: float, start=None, days: float = 7.0, port: int | None = None,
              bms: Path | None = None, redfish_port: int | None = None, servers_per_host: int | None = None,
              work_path: Path | None = None, redfish_auth: tuple[str, str] | None = None) -> SiteTwin:
    """A twin of the site: its point map extended (:func:`twin_point_map`, with the release-rate
    points), its data for ``days`` from ``start``; with ``redfish_port``, its servers as Redfish
    systems of ``servers_per_host`` servers (default :func:`.hosts.auto_servers_per_host`).

    ``start`` defaults to the start of the site's carbon data; ``port`` to the map's.
    """
    if protocol not in ("bacnet", "modbus"):
        raise PointMapError(f"--protocol must be bacnet or modbus, not {protocol!r}")
    if not speed > 0:
        raise PointMapError(f"--speed {speed} must be positive")
    if not days > 0:
        raise PointMapError(f"--days {days} must be positive")
    site = load_site(site_path)
    path = bms if bms is not None else default_map_path(site_path, site, protocol)
    pm = load_point_map(path)
    if pm.protocol != protocol:
        raise PointMapError(f"{path}: point map is for {pm.protocol}, not {protocol}")
    if port is None:
        port = int(pm.connection.device_address.rsplit(":", 1)[1]) if protocol == "bacnet" else pm.connection.port
    if not 0 < port < 65536:
        raise PointMapError(f"--port {port} is not a port number")
    if redfish_port is not None and not (0 < redfish_port < 65536 and redfish_port != port):
        raise PointMapError(f"--redfish-port {redfish_port} is not a port number other than --port")
    if servers_per_host is not None and servers_per_host < 1:
        raise PointMapError(f"--servers-per-host {servers_per_host} must be at least 1")
    t0, t1 = default_period(site, start, None)
    t1 = t0 + pd.Timedelta(days=days)
    data = load_site_data(site, t0, t1)
    hosts = None
    if redfish_port is not None:
        import importlib.util

        from .hosts import auto_servers_per_host

        if importlib.util.find_spec("sushy_tools") is None:
            raise PointMapError("--redfish-port: the Redfish service needs sushy-tools (pip install sushy-tools)")

        hosts = TwinHosts(site, servers_per_host or auto_servers_per_host(site), speed)
    return SiteTwin(twin_point_map(pm, site, port, queue_points=True), site, data, speed, port, hosts=hosts,
                    redfish_port=redfish_port, redfish_auth=redfish_auth, work_path=work_path)
