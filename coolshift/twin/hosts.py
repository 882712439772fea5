"""The twin's servers as Redfish systems: one system per block of ``servers_per_host`` servers.

A site of thousands of servers behind one Redfish system each would cost a request per
server per step; a real site's power domains (a chassis, a rack PDU outlet group) switch
blocks of servers together, so the twin serves one ComputerSystem per block of a pool
(``servers_per_host`` per pool, declared in the inventory the twin writes) and the actuator
counts a host as that many servers.

:class:`TwinHosts` holds the power state of every host and is the single truth the plant
reads each step:

- Local control (nobody has commanded a host since the start or the last hand-back): the
  site's own consolidation (the ``best_practice`` rule) sets the states directly, lowest
  ids on first, and the plant runs exactly the rule's count.
- A supervisor's ``ComputerSystem.Reset`` through the Redfish service (:class:`RedfishService`,
  the sushy-tools emulator's Flask application in a thread with a driver that reads and
  writes :class:`TwinHosts`) puts the site's servers under remote control: the plant then
  runs the servers of the hosts that read ``On``, ``PoweringOn`` (booting, as the LP counts
  a server switched on) or ``PoweringOff`` (still shutting down), never fewer than the
  pool's minimum. A power-on takes the pool's ``boot_time_s`` of site time, a graceful
  shutdown ``SHUTDOWN_S``.
- :meth:`hand_back` (the controller's watchdog, when the supervisor's heartbeat stops)
  returns the servers to local control.

Work: after each step the twin marks the lowest-id live hosts of each pool busy, as many
as the step's busy servers need (:meth:`set_busy`), and writes them to the work file the
actuator reads (``host,busy``); a host with work is never one the actuator powers off.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

from coolshift.config import SiteConfig

__all__ = ["SHUTDOWN_S", "TwinHost", "TwinHosts", "RedfishService", "auto_servers_per_host", "host_blocks",
           "write_inventory", "write_work", "write_actuator_map"]

log = logging.getLogger(__name__)

# Longest a graceful shutdown takes [s]: systemd stops each unit within DefaultTimeoutStopSec,
# 90 s by default (systemd-system.conf(5)), before it kills it and powers off.
SHUTDOWN_S = 90.0
ON, OFF, BOOTING, STOPPING = "On", "Off", "PoweringOn", "PoweringOff"
# Block sizes offered by the automatic choice: round numbers, so counts stay readable.
_NICE = (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000)


def auto_servers_per_host(site: SiteConfig, target_hosts: int = 100) -> int:
    """The round block size that gives the site closest to ``target_hosts`` Redfish systems
    (San Jose, 4,300 servers: 50 -> 86 systems)."""
    total = sum(p.servers for p in site.server_pools)

    def hosts(n: int) -> int:
        return sum(math.ceil(p.servers / n) for p in site.server_pools)

    return min(_NICE, key=lambda n: (abs(math.log(max(hosts(n), 1) / target_hosts)), n)) if total else 1


@dataclass(frozen=True)
class TwinHost:
    id: str
    pool: str
    servers: int  # servers in this block (the last block of a pool may be smaller)


def host_blocks(site: SiteConfig, servers_per_host: int) -> list[TwinHost]:
    """Blocks of ``servers_per_host`` servers per pool, ids ``<pool>-<nnn>``."""
    if servers_per_host < 1:
        raise ValueError(f"servers_per_host {servers_per_host} must be at least 1")
    out = []
    for p in site.server_pools:
        n = math.ceil(p.servers / servers_per_host)
        for i in range(n):
            out.append(TwinHost(f"{p.name}-{i:03d}", p.name, min(servers_per_host, p.servers - i * servers_per_host)))
    return out


@dataclass
class _Power:
    state: str = ON
    until: float = 0.0  # wall time a transition completes
    busy: bool = False


@dataclass(frozen=True)
class Command:
    wall_s: float
    host: str
    reset_type: str
    busy: bool  # the host carried work when the command arrived
    state_before: str


class TwinHosts:
    """Power states of the twin's hosts, shared by the Redfish service (a thread) and the plant."""

    def __init__(self, site: SiteConfig, servers_per_host: int, speed: float,
                 clock: Callable[[], float] = time.monotonic):
        self.site, self.servers_per_host, self.speed, self.clock = site, int(servers_per_host), float(speed), clock
        self.hosts = host_blocks(site, self.servers_per_host)
        self.by_id = {h.id: h for h in self.hosts}
        self.pools = [p.name for p in site.server_pools]
        self._boot_s = {p.name: p.boot_time_s for p in site.server_pools}
        self._min = {p.name: p.min_active_servers for p in site.server_pools}
        self._servers = {p.name: p.servers for p in site.server_pools}
        self._power = {h.id: _Power() for h in self.hosts}
        self._lock = threading.RLock()
        self.remote = False
        self.commands: list[Command] = []
        self.hand_backs: list[float] = []

    # -- the Redfish side (any thread)
    def power_state(self, host: str) -> str:
        with self._lock:
            return self._settle(host).state

    def reset(self, host: str, reset_type: str) -> None:
        """A supervisor's ``ComputerSystem.Reset``: the site's servers are under remote control from now."""
        with self._lock:
            pw = self._settle(host)
            self.commands.append(Command(self.clock(), host, reset_type, pw.busy, pw.state))
            self.remote = True
            if reset_type in ("On", "ForceOn"):
                if pw.state in (OFF, STOPPING):
                    pw.state, pw.until = BOOTING, self.clock() + self._boot_s[self.by_id[host].pool] / self.speed
            elif reset_type in ("GracefulShutdown", "ForceOff"):
                if pw.state in (ON, BOOTING):
                    delay = SHUTDOWN_S if reset_type == "GracefulShutdown" else 0.0
                    pw.state, pw.until = STOPPING, self.clock() + delay / self.speed
            else:
                raise ValueError(f"reset type {reset_type} is not supported by the twin")

    def _settle(self, host: str) -> _Power:
        pw = self._power[host]
        if pw.state in (BOOTING, STOPPING) and self.clock() >= pw.until:
            pw.state = ON if pw.state == BOOTING else OFF
            if pw.state == OFF:
                pw.busy = False
        return pw

    # -- the plant's side
    def states(self) -> dict[str, str]:
        with self._lock:
            return {h.id: self._settle(h.id).state for h in self.hosts}

    def active_servers(self) -> dict[str, float]:
        """Per pool, the servers of hosts that run or boot (On, PoweringOn, PoweringOff), raised to the pool's minimum."""
        st = self.states()
        out = {p: 0.0 for p in self.pools}
        for h in self.hosts:
            if st[h.id] != OFF:
                out[h.pool] += h.servers
        return {p: float(min(max(v, self._min[p]), self._servers[p])) for p, v in out.items()}

    def apply_local(self, active: dict[str, float]) -> None:
        """Local control: the site's own consolidation sets the states at once (lowest ids on)."""
        with self._lock:
            if self.remote:
                return
            for p in self.pools:
                n_on = math.ceil(float(active.get(p, self._servers[p])) / self.servers_per_host - 1e-9)
                for i, h in enumerate([h for h in self.hosts if h.pool == p]):
                    pw = self._power[h.id]
                    pw.state, pw.until = (ON if i < n_on else OFF), 0.0
                    if pw.state == OFF:
                        pw.busy = False

    def ensure_servers(self, active: dict[str, float]) -> list[str]:
        """The site's scheduler powers hosts on (lowest ids first) where a pool runs more servers
        than its live hosts hold (work due now); the hosts switched on."""
        out = []
        with self._lock:
            st = {h.id: self._settle(h.id).state for h in self.hosts}
            for p in self.pools:
                hs = [h for h in self.hosts if h.pool == p]
                live = sum(h.servers for h in hs if st[h.id] != OFF)
                for h in hs:
                    if live >= active.get(p, 0.0) - 1e-9:
                        break
                    if st[h.id] == OFF:
                        self._power[h.id].state = ON
                        live += h.servers
                        out.append(h.id)
        return out

    def set_busy(self, busy_servers: dict[str, float]) -> None:
        """Work runs on the lowest-id live hosts of each pool, as many as ``busy_servers`` need."""
        with self._lock:
            for p in self.pools:
                left = float(busy_servers.get(p, 0.0))
                for h in self.hosts:
                    if h.pool != p:
                        continue
                    pw = self._settle(h.id)
                    pw.busy = pw.state != OFF and left > 1e-9
                    if pw.busy:
                        left -= h.servers

    def busy(self) -> dict[str, bool]:
        with self._lock:
            return {h.id: self._power[h.id].busy for h in self.hosts}

    def hand_back(self) -> bool:
        """Back to local control (the watchdog's hand-back); True if a supervisor had control."""
        with self._lock:
            was, self.remote = self.remote, False
            if was:
                self.hand_backs.append(self.clock())
            return was


def _atomic_write(path: Path, text: str) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_work(hosts: TwinHosts, path: Path) -> None:
    """The work file the actuator reads (``host,busy``), written atomically."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["host", "busy"])
    for h, b in hosts.busy().items():
        w.writerow([h, "true" if b else "false"])
    _atomic_write(path, buf.getvalue())


def write_inventory(hosts: TwinHosts, path: Path) -> Path:
    """The host inventory of the twin's Redfish service: each pool's systems and ``servers_per_host``."""
    pools: dict[str, dict] = {}
    for h in hosts.hosts:
        pools.setdefault(h.pool, {"servers_per_host": hosts.servers_per_host, "hosts": []})["hosts"].append(h.id)
    _atomic_write(path, "# written by `coolshift twin --inventory-out`: one Redfish system per block of "
                        f"{hosts.servers_per_host} servers\n" + yaml.safe_dump({"pools": pools}, sort_keys=False))
    return Path(path)


def write_actuator_map(path: Path, site_path: Path, url: str, inventory: Path, work: Path, speed: float,
                       audit_db: Path | None = None) -> Path:
    """An actuator map for the twin's Redfish service (timeouts and polling scaled to ``speed``)."""
    boot_s = 600.0  # generous wall budget for a power change: boot and shutdown take site minutes / speed
    doc = {"name": "twin", "site": str(Path(site_path).resolve()),
           "audit_db": str(Path(audit_db).resolve() if audit_db else Path(path).resolve().parent / "actuators_audit.sqlite"),
           "redfish": {"url": url, "inventory": str(Path(inventory).resolve()), "work": str(Path(work).resolve()),
                       "timeout_s": 10, "poll_interval_s": round(max(0.05, min(1.0, 5.0 / speed)), 3),
                       "power_on_timeout_s": max(10.0, boot_s / speed * 4), "power_off_timeout_s": max(10.0, SHUTDOWN_S / speed * 4),
                       "max_concurrent_power_on": 20}}
    _atomic_write(path, "# written by `coolshift twin --actuators-out`: the twin's Redfish service; credentials "
                        "from the environment\n" + yaml.safe_dump(doc, sort_keys=False))
    return Path(path)


class RedfishService:
    """The sushy-tools emulator's Flask application on 127.0.0.1:``port``, in a thread, its
    systems backed by :class:`TwinHosts`. One per process (the emulator's application is a
    module global). HTTP basic auth from ``auth`` (user, password) when given."""

    def __init__(self, hosts: TwinHosts, port: int, auth: tuple[str, str] | None = None):
        self.hosts, self.port, self.auth = hosts, int(port), auth
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = None
        self._thread: threading.Thread | None = None
        self._dir: tempfile.TemporaryDirectory | None = None

    def start(self) -> None:
        from sushy_tools import error as sushy_error
        from sushy_tools.emulator import main as emu
        from sushy_tools.emulator.resources.systems.base import AbstractSystemsDriver
        from sushy_tools.emulator.resources.systems.fakedriver import FakeDriver
        from werkzeug.serving import make_server

        twin = self.hosts

        class _TwinDriver(FakeDriver):  # the fake driver's resources, power from the twin
            _config: dict = {}

            def __init__(self):
                AbstractSystemsDriver.__init__(self)
                self._systems = {h.id: {"uuid": h.id, "name": h.id, "power_state": ON, "nics": []}
                                 for h in twin.hosts}
                self._by_name = {}

            def _get(self, identity):
                try:
                    return self._systems[identity]
                except KeyError:
                    raise sushy_error.NotFound(f"system {identity} was not found") from None

            def _update(self, system, **changes):
                (self._get(system) if isinstance(system, str) else system).update(changes)

            def get_power_state(self, identity):
                self._get(identity)
                return twin.power_state(identity)

            def set_power_state(self, identity, state):
                self._get(identity)
                try:
                    twin.reset(identity, state)
                except ValueError as exc:
                    raise sushy_error.NotSupportedError(str(exc)) from None

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        app = emu.app
        extra = {"SUSHY_EMULATOR_FAKE_DRIVER": True}
        if self.auth is not None:
            import bcrypt

            self._dir = tempfile.TemporaryDirectory(prefix="coolshift-twin-redfish-")
            auth_file = Path(self._dir.name) / "htpasswd"
            # bcrypt cost 4 (its minimum): the emulator checks the password on every request
            user, password = self.auth
            auth_file.write_text(f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()}\n")
            extra["SUSHY_EMULATOR_AUTH_FILE"] = str(auth_file)
        app.configure(extra_config=extra)
        if self.auth is not None and isinstance(app.wsgi_app, emu.RedfishAuthMiddleware):  # an earlier start's
            app.wsgi_app.auth_file = extra["SUSHY_EMULATOR_AUTH_FILE"]
        app._cache = {}  # the emulator memoises its drivers on the application: ours replaces them
        app._cache[emu.Application.systems.fget.__wrapped__] = {(frozenset(), frozenset()): _TwinDriver()}
        import socket

        with socket.socket() as probe:  # werkzeug exits the process on a busy port: ask first
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", self.port))
            except OSError as exc:
                raise OSError(f"the Redfish service's port 127.0.0.1:{self.port}: {exc.strerror or exc}") from None
        try:
            self._server = make_server("127.0.0.1", self.port, app, threaded=True)
        except (OSError, SystemExit) as exc:
            raise OSError(f"the Redfish service's port 127.0.0.1:{self.port}: {exc}") from None
        self._thread = threading.Thread(target=self._server.serve_forever, name="twin-redfish", daemon=True)
        self._thread.start()

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None
