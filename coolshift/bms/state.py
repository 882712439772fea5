"""Per-device state that must outlive any one audit file: rate limit, unfinished writes, log heads.

The rate limit belongs to the device (host, port, device id), not to whichever audit
file a command was pointed at, so the last write attempt per point is kept here, in a
small sqlite file in a per-user state directory: ``$COOLSHIFT_STATE_DIR``, else
``$XDG_STATE_HOME/coolshift``, else ``~/.local/state/coolshift`` (XDG Base Directory
Specification 0.8, ``XDG_STATE_HOME`` "for state data that should persist between
(application) restarts"). Every change is one committed transaction (WAL,
``synchronous=FULL``), so a ``kill -9`` leaves either the old or the new row.

A write attempt is recorded here *before* the request leaves the process and cleared
only once the point's state has been read back, so a process that died mid-write
leaves a ``pending`` row: it still counts for the rate limit and ``bms-status`` shows
it as unfinished. The file also keeps the last record id and hash of every audit log
written on this machine, an anchor that lets ``bms-audit --verify`` notice records
deleted from the end of a log.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from coolshift.locks import device_key as _device_key
from coolshift.locks import state_dir as _state_dir

if TYPE_CHECKING:
    from .points import PointMap

__all__ = ["STATE_DIR_ENV", "state_dir", "device_key", "DeviceState", "Pending", "AuditHead"]

STATE_DIR_ENV = "COOLSHIFT_STATE_DIR"  # read by coolshift.locks.state_dir
STATE_FILE = "bms_state.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS point_state (
    device TEXT NOT NULL,
    point TEXT NOT NULL,
    last_write_utc TEXT,
    pending_action TEXT,
    pending_value REAL,
    pending_since TEXT,
    pending_audit TEXT,
    pending_push TEXT,
    PRIMARY KEY (device, point)
);
CREATE TABLE IF NOT EXISTS audit_head (
    path TEXT PRIMARY KEY,
    last_id INTEGER NOT NULL,
    last_hash TEXT NOT NULL,
    updated_utc TEXT NOT NULL
);
"""


def state_dir(environ: dict[str, str] | None = None) -> Path:
    """Where per-user Coolshift state lives: the same folder as the run locks (:mod:`coolshift.locks`)."""
    return _state_dir(environ)


def device_key(pm: "PointMap") -> str:
    """The device a point map talks to (``modbus://127.0.0.1:5020/1``, ``bacnet://127.0.0.1:47808``).

    The same key the control-loop locks use (:func:`coolshift.locks.device_key`), so the
    rate limit and the locks agree on what one device is.
    """
    return _device_key(pm.protocol, pm.connection)


@dataclass(frozen=True)
class Pending:
    """A change to a point that was started and whose outcome was never confirmed."""

    device: str
    point: str
    action: str
    value: float | None
    since: datetime
    audit: str | None
    push_id: str | None


@dataclass(frozen=True)
class AuditHead:
    last_id: int
    last_hash: str


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


class DeviceState:
    """The state file; each method is its own transaction."""

    def __init__(self, directory: str | Path | None = None):
        d = state_dir() if directory is None else Path(directory)
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OSError(f"cannot create the Coolshift state directory {d} (set {STATE_DIR_ENV}): {exc}") from None
        self.path = d / STATE_FILE
        self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def begin(self, device: str, point: str, action: str, value: float | None, is_write: bool,
              audit: str | None = None, push_id: str | None = None) -> None:
        """A change to ``point`` is about to leave the process (a write also starts the rate limit)."""
        now = _now()
        self._db.execute(
            "INSERT INTO point_state (device, point, last_write_utc, pending_action, pending_value, pending_since,"
            " pending_audit, pending_push) VALUES (?,?,?,?,?,?,?,?)"
            " ON CONFLICT(device, point) DO UPDATE SET"
            " last_write_utc=COALESCE(excluded.last_write_utc, point_state.last_write_utc),"
            " pending_action=excluded.pending_action, pending_value=excluded.pending_value,"
            " pending_since=excluded.pending_since, pending_audit=excluded.pending_audit,"
            " pending_push=excluded.pending_push",
            (device, point, now if is_write else None, action, value, now, audit, push_id),
        )

    def settle(self, device: str, point: str) -> None:
        """The point's state was read back: nothing is in flight for it any more."""
        self._db.execute(
            "UPDATE point_state SET pending_action=NULL, pending_value=NULL, pending_since=NULL,"
            " pending_audit=NULL, pending_push=NULL WHERE device=? AND point=?",
            (device, point),
        )

    def last_write(self, device: str, point: str) -> datetime | None:
        row = self._db.execute(
            "SELECT last_write_utc FROM point_state WHERE device=? AND point=?", (device, point)
        ).fetchone()
        return datetime.fromisoformat(row[0]) if row and row[0] else None

    def pending(self, device: str) -> list[Pending]:
        rows = self._db.execute(
            "SELECT device, point, pending_action, pending_value, pending_since, pending_audit, pending_push"
            " FROM point_state WHERE device=? AND pending_action IS NOT NULL ORDER BY pending_since",
            (device,),
        ).fetchall()
        return [Pending(r[0], r[1], r[2], r[3], datetime.fromisoformat(r[4]), r[5], r[6]) for r in rows]

    def set_head(self, audit_path: str, last_id: int, last_hash: str) -> None:
        self._db.execute(
            "INSERT INTO audit_head (path, last_id, last_hash, updated_utc) VALUES (?,?,?,?)"
            " ON CONFLICT(path) DO UPDATE SET last_id=excluded.last_id, last_hash=excluded.last_hash,"
            " updated_utc=excluded.updated_utc WHERE excluded.last_id >= audit_head.last_id",
            (audit_path, last_id, last_hash, _now()),
        )

    def head(self, audit_path: str) -> AuditHead | None:
        row = self._db.execute("SELECT last_id, last_hash FROM audit_head WHERE path=?", (audit_path,)).fetchone()
        return AuditHead(int(row[0]), str(row[1])) if row else None

    def close(self) -> None:
        self._db.close()
