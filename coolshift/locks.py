"""Whole-run locks: one `plan` per site, one control loop per site and per BMS device.

A long-running command takes its locks at its very start, before it loads data, trains or
connects, and holds them until it ends; a second run finds them held and exits 75
(EX_TEMPFAIL, "try again later") naming the lock and its holder. The locks are ``flock``
locks on files, so the kernel releases them when the holder dies, however it dies. Each
lock file holds one JSON line describing its holder (pid, host, user, start time, command),
written when the lock is taken and cleared when it is released: a line still present when
the next run takes the lock was left by a run that died, and is reported as recovered.

Where the locks live
  ``$COOLSHIFT_STATE_DIR/locks`` when that variable is set, else
  ``$XDG_STATE_HOME/coolshift/locks``, else ``~/.local/state/coolshift/locks``. A lock is
  named after what it protects (the site name, the BMS device's host, port and device id),
  never after an output folder alone: two `plan` runs for one site with different ``--out``
  folders, or two `run-plan` with different point maps or audit logs for one device, still
  meet on the same lock. Every account and service that runs Coolshift for a site must see
  the same state folder: set ``COOLSHIFT_STATE_DIR`` in the systemd unit, the crontab and
  the operator's shell alike (a root cron job and an operator have different home folders).
  The state folder must be on a local file system (``flock`` is not reliable over NFS).

Future long-running loops (a planned ``coolshift operate``) take the same control locks
with :func:`control_locks` and :func:`cli_locks`, so they exclude `run-plan` and each other.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import getpass
import hashlib
import json
import os
import re
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

__all__ = [
    "EXIT_LOCKED", "Holder", "LockSpec", "Acquired", "RunLocked", "state_dir", "lock_path", "site_lock",
    "device_key", "control_locks", "hold_locks",  "pid_alive",
]

EXIT_LOCKED = 75  # EX_TEMPFAIL (sysexits.h): another run holds the lock; cron/systemd may retry later


def state_dir(environ: dict[str, str] | None = None) -> Path:
    """The folder for Coolshift's machine state (locks): $COOLSHIFT_STATE_DIR, else the XDG state home."""
    env = os.environ if environ is None else environ
    if env.get("COOLSHIFT_STATE_DIR"):
        return Path(env["COOLSHIFT_STATE_DIR"]).expanduser()
    xdg = env.get("XDG_STATE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "state"
    return base / "coolshift"


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _safe(key: str) -> str:
    """A file-name form of ``key``; a short hash is added when characters had to be replaced."""
    s = _SAFE.sub("_", key).strip("._") or "_"
    if s != key:
        s = f"{s[:80]}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"
    return s


def lock_path(kind: str, key: str, root: Path | None = None) -> Path:
    """``<state>/locks/<kind>-<key>.lock``."""
    return (state_dir() if root is None else Path(root)) / "locks" / f"{kind}-{_safe(key)}.lock"


@dataclass(frozen=True)
class LockSpec:
    """One lock to take: its file and what it protects, in words for the messages."""

    path: Path
    what: str


@dataclass
class Holder:
    """Who holds (or held) a lock: written into the lock file when it is taken."""

    pid: int
    host: str
    started_at: str
    user: str = ""
    command: str = ""
    what: str = ""
    argv: list[str] = field(default_factory=list)
    started_epoch: float = 0.0

    @classmethod
    def me(cls, command: str, what: str) -> "Holder":
        try:
            user = getpass.getuser()
        except Exception:  # noqa: BLE001 - no passwd entry in some containers
            user = str(os.getuid())
        now = time.time()
        return cls(pid=os.getpid(), host=socket.gethostname(), user=user, command=command, what=what,
                   argv=[Path(sys.argv[0]).name, *sys.argv[1:]][:40],
                   started_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)), started_epoch=now)

    @classmethod
    def parse(cls, text: str) -> "Holder | None":
        """The holder in a lock file's first line, or None (empty: released; unreadable: unknown)."""
        line = text.split("\n", 1)[0].strip()
        if not line:
            return None
        try:
            d = json.loads(line)
            return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})
        except (ValueError, TypeError, KeyError):
            if line.isdigit():  # the older format: the pid alone
                return cls(pid=int(line), host="", started_at="")
            return cls(pid=0, host="", started_at="", command="(unreadable holder line)")

    def describe(self) -> str:
        if not self.pid:
            return "an unknown holder"
        parts = [f"pid {self.pid}"]
        if self.host:
            parts.append(f"on host {self.host}")
        if self.user:
            parts.append(f"user {self.user}")
        if self.started_at:
            parts.append(f"since {self.started_at}")
        if self.command:
            parts.append(f"(coolshift {self.command})")
        return " ".join(parts)

    def on_this_host(self) -> bool:
        return self.host == socket.gethostname()


def pid_alive(pid: int, started_epoch: float = 0.0) -> bool:
    """Is ``pid`` a live process on this host, and (when known) the one started at ``started_epoch``?

    A pid may be reused after its process died: on Linux a process that started more than
    a few seconds after ``started_epoch`` is another one.
    """
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] == "Z":  # a zombie: dead, waiting for its parent
            return False
        if started_epoch:
            ticks = os.sysconf("SC_CLK_TCK")
            btime = next(float(ln.split()[1]) for ln in Path("/proc/stat").read_text().splitlines()
                         if ln.startswith("btime "))
            started = btime + int(fields[19]) / ticks
            if started > started_epoch + 5.0:
                return False
    except (OSError, IndexError, ValueError, StopIteration):
        pass  # no /proc: trust kill(0)
    return True


class RunLocked(RuntimeError):
    """Another run holds the lock (exit 75)."""

    def __init__(self, path: Path, what: str, holder: Holder | None):
        self.path, self.what, self.holder = Path(path), what, holder
        who = holder.describe() if holder is not None else "a holder that has not written its details yet"
        msg = f"{what} is already running: the lock {path} is held by {who}"
        if holder is not None and holder.pid and holder.on_this_host() and not pid_alive(holder.pid, holder.started_epoch):
            msg += (f"; pid {holder.pid} is gone, so a process it started still has the lock open "
                    f"(find it with `fuser {path}`)")
        super().__init__(msg + "; try again when it has finished")


@dataclass
class Acquired:
    """A lock taken; ``recovered`` is the holder a dead run left in the file (None if it was released)."""

    spec: LockSpec
    holder: Holder
    recovered: Holder | None
    fd: int = -1

    @property
    def path(self) -> Path:
        return self.spec.path

    def recovered_message(self) -> str | None:
        if self.recovered is None:
            return None
        return (f"recovered the lock {self.path}: it was left by {self.recovered.describe()}, "
                f"which ended without releasing it (killed or crashed)")


def _read(fd: int) -> str:
    data = os.pread(fd, 64 * 1024, 0)
    return data.decode("utf-8", "replace")


def _write(fd: int, text: str) -> None:
    """Replace the file's content without an empty moment: write, then cut the old tail."""
    data = text.encode()
    os.pwrite(fd, data, 0)
    os.ftruncate(fd, len(data))
    with contextlib.suppress(OSError):
        os.fsync(fd)


def _acquire(spec: LockSpec, command: str) -> Acquired:
    spec.path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(spec.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        text = _read(fd)
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            raise RunLocked(spec.path, spec.what, Holder.parse(text)) from None
        raise
    try:
        left = Holder.parse(_read(fd))
        me = Holder.me(command, spec.what)
        _write(fd, json.dumps(asdict(me)) + "\n")
    except BaseException:
        os.close(fd)
        raise
    return Acquired(spec, me, left, fd)


def _release(a: Acquired) -> None:
    if a.fd < 0:
        return
    with contextlib.suppress(OSError):
        os.ftruncate(a.fd, 0)  # released cleanly: nothing for the next run to recover
    with contextlib.suppress(OSError):
        fcntl.flock(a.fd, fcntl.LOCK_UN)
    os.close(a.fd)
    a.fd = -1


@contextlib.contextmanager
def hold_locks(specs: Sequence[LockSpec], command: str) -> Iterator[list[Acquired]]:
    """Take every lock in order (non-blocking) and hold them all until the block ends.

    Raises :class:`RunLocked` for the first one held elsewhere, after releasing those
    already taken. The file descriptors are close-on-exec, but a child made by ``fork``
    alone keeps them (and the lock) open while it lives.
    """
    taken: list[Acquired] = []
    try:
        for s in specs:
            taken.append(_acquire(s, command))
        yield taken
    finally:
        for a in reversed(taken):
            _release(a)


def site_lock(kind: str, site_name: str, root: Path | None = None) -> LockSpec:
    """The lock for one kind of run (``plan``, ``control``) of one site, in the state folder."""
    return LockSpec(lock_path(f"{kind}-site", site_name, root), f"coolshift {kind} for site {site_name}")


def device_key(protocol: str, connection) -> str:
    """The BMS device a point map talks to: protocol, host, port and device id.

    ``localhost`` is taken as 127.0.0.1; other host names are compared as written
    (lower case), so spell one device's address the same way in every point map.
    """
    if hasattr(connection, "device_address"):  # BACnet/IP: host:port
        host, _, port = str(connection.device_address).rpartition(":")
        dev = getattr(connection, "device_instance", None)
    else:  # Modbus TCP
        host, port = str(connection.host), str(connection.port)
        dev = getattr(connection, "device_id", None)
    host = host.strip("[]").strip().lower()
    if host in ("localhost", "localhost.localdomain"):
        host = "127.0.0.1"
    return f"{protocol}://{host}:{port}" + (f"/{dev}" if dev is not None else "")


def control_locks(site_name: str, protocol: str, connection, root: Path | None = None) -> list[LockSpec]:
    """The locks of a loop that writes setpoints: one per site, one per BMS device.

    ``run-plan`` takes these; so must any other loop that controls a site (``operate``).
    """
    key = device_key(protocol, connection)
    return [site_lock("control", site_name, root),
            LockSpec(lock_path("control-device", key, root), f"a coolshift control loop on BMS device {key}")]
