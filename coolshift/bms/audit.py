"""Append-only, tamper-evident audit log of every BMS read and write (sqlite).

Every write is preceded by an ``intent`` record that is committed to disk before the
request leaves the process, so a crash or ``kill -9`` mid-push leaves a log that
says exactly which write may have reached the device. The database runs in WAL
mode with ``synchronous=FULL`` (a committed record survives a process kill and a
power cut: https://www.sqlite.org/pragma.html#pragma_synchronous), and triggers
reject any UPDATE or DELETE, so the table can only grow.

Triggers can be dropped, so each record also carries ``hash`` = SHA-256 of its
canonical form (every column, id included, as sorted-key JSON) together with the
previous record's hash (``prev_hash``; the first record chains to 64 zeros). An
edited, forged, deleted or moved record breaks the chain at that record, which
:func:`verify_audit` names. The last id and hash are also kept in the per-user state
file (:mod:`.state`), so records deleted from the end of the log are noticed too.
Each record names the OS user and host that wrote it.

Logs written before the chain existed are migrated when a command next writes to
them: the new columns are added, the old records keep ``hash`` NULL and are chained
in the verifier's computation, and the first new record links to that computation,
so from then on the old records are protected as they stood at migration.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import math
import os
import socket
import sqlite3
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from .state import DeviceState

__all__ = ["AuditLog", "AuditError", "AuditRecord", "ACTIONS", "RESULTS", "GENESIS", "Verification",
           "read_audit", "verify_audit", "record_hash", "os_user", "host_name"]

ACTIONS = ("read", "write", "verify", "restore", "relinquish", "refuse", "push", "run", "operator")
RESULTS = ("intent", "ok", "mismatch", "timeout", "error", "refused", "dry_run", "start", "end")
# Actions that change a point on the device: their intent marks the point pending in the state file.
CHANGES = ("write", "restore", "relinquish")
GENESIS = "0" * 64  # what the first record chains to
TRIGGERS = ("audit_no_update", "audit_no_delete")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time_utc TEXT NOT NULL,
    push_id TEXT NOT NULL,
    run_id TEXT,
    action TEXT NOT NULL,
    point TEXT,
    old_value REAL,
    new_value REAL,
    priority INTEGER,
    result TEXT NOT NULL,
    detail TEXT,
    device TEXT,
    os_user TEXT,
    host TEXT,
    prev_hash TEXT,
    hash TEXT
);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
"""
# Columns added by the hash chain (2026-11), in the order ALTER TABLE appends them to an older log.
_NEW_COLUMNS = ("device", "os_user", "host", "prev_hash", "hash")
# Every column that enters a record's hash (prev_hash is the chain value, see record_hash).
HASHED = ("id", "time_utc", "push_id", "run_id", "action", "point", "old_value", "new_value", "priority",
          "result", "detail", "device", "os_user", "host")


class AuditError(ValueError):
    """An audit log (or the state directory) that cannot be used; the message names the file."""


@dataclass(frozen=True)
class AuditRecord:
    action: str
    result: str
    point: str | None = None
    old_value: float | None = None
    new_value: float | None = None
    priority: int | None = None
    detail: str | None = None


def os_user() -> str:
    """The OS account running the command (``getpass``; the numeric uid when it has no name)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


def host_name() -> str:
    return socket.gethostname() or "unknown"


def _canon_value(v: Any) -> Any:
    if isinstance(v, float):
        return repr(v)  # exact and stable: json's float text is not guaranteed across versions
    return v


def record_hash(row: dict[str, Any], prev_hash: str) -> str:
    """SHA-256 of the record's columns (id included) and the previous record's hash."""
    doc = {k: _canon_value(row.get(k)) for k in HASHED}
    doc["prev_hash"] = prev_hash
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _connect_rw(path: Path) -> sqlite3.Connection:
    try:
        db = sqlite3.connect(path, isolation_level=None, timeout=30.0)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(_SCHEMA)
    except sqlite3.DatabaseError as exc:
        raise AuditError(f"{path}: not a usable sqlite audit log ({exc})") from None
    return db


def _columns(db: sqlite3.Connection) -> list[str]:
    return [r[1] for r in db.execute("PRAGMA table_info(audit)")]


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    """Add the chain's columns to a log written before them (old records keep NULL hashes)."""
    cols = _columns(db)
    missing = [c for c in _NEW_COLUMNS if c not in cols]
    if not missing:
        return
    for c in missing:
        try:
            db.execute(f"ALTER TABLE audit ADD COLUMN {c} TEXT")
        except sqlite3.OperationalError as exc:
            if "duplicate column" not in str(exc):  # another process migrated it first
                raise AuditError(f"{path}: cannot add column {c} to an older audit log: {exc}") from None


def _rows(db: sqlite3.Connection, where: str = "", args: tuple = ()) -> list[dict[str, Any]]:
    cur = db.execute(f"SELECT * FROM audit {where} ORDER BY id", args)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def _chain_of(rows: list[dict[str, Any]]) -> str:
    """The chain value after ``rows`` (stored hashes are not trusted: recomputed)."""
    prev = GENESIS
    for r in rows:
        prev = record_hash(r, prev)
    return prev


class AuditLog:
    """One sqlite file; each :meth:`record` is its own committed transaction.

    ``device`` (see :func:`.state.device_key`) ties records and the rate limit to the
    device; :meth:`bind_device` sets it once a point map is known.
    """

    def __init__(self, path: str | Path, run_id: str | None = None, device: str | None = None,
                 state: DeviceState | None = None):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AuditError(f"{self.path}: cannot create its folder: {exc}") from None
        if self.path.exists() and not self.path.is_file():
            raise AuditError(f"{self.path}: not a file (expected an sqlite audit log)")
        self.run_id = run_id
        self.device = device
        self.push_id = uuid.uuid4().hex[:12]
        self.user, self.host = os_user(), host_name()
        self._key = str(self.path.resolve())
        try:
            self.state = state if state is not None else DeviceState()
        except (OSError, sqlite3.DatabaseError) as exc:
            raise AuditError(str(exc)) from None
        self._db = _connect_rw(self.path)
        _migrate(self._db, self.path)

    def bind_device(self, device: str) -> None:
        """Records, pending changes and the rate limit from now on belong to ``device``."""
        self.device = device

    def new_push(self, run_id: str | None = None) -> str:
        """Start a new push: a fresh id groups its records."""
        self.push_id = uuid.uuid4().hex[:12]
        if run_id is not None:
            self.run_id = run_id
        return self.push_id

    def record(
        self,
        action: str,
        result: str,
        point: str | None = None,
        old_value: float | None = None,
        new_value: float | None = None,
        priority: int | None = None,
        detail: str | None = None,
    ) -> int:
        """Append one record, chained to the last; an intent to change a point also marks it pending."""
        if action not in ACTIONS:
            raise ValueError(f"unknown audit action {action!r}")
        if result not in RESULTS:
            raise ValueError(f"unknown audit result {result!r}")
        if result == "intent" and action in CHANGES and self.device is not None and point is not None:
            # before the audit record, so a crash between the two errs on the side of "pending"
            self.state.begin(self.device, point, action, _f(new_value), is_write=action == "write",
                             audit=self._key, push_id=self.push_id)
        row: dict[str, Any] = {
            "time_utc": datetime.now(timezone.utc).isoformat(timespec="microseconds"),
            "push_id": self.push_id, "run_id": self.run_id, "action": action, "point": point,
            "old_value": _f(old_value), "new_value": _f(new_value),
            "priority": None if priority is None else int(priority), "result": result,
            "detail": None if detail is None else str(detail),
            "device": self.device, "os_user": self.user, "host": self.host,
        }
        db = self._db
        db.execute("BEGIN IMMEDIATE")  # the write lock: nobody appends between our read and insert
        try:
            last = db.execute("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
            if last is None:
                prev = GENESIS
            elif last[1] is not None:
                prev = str(last[1])
            else:  # the first record after migrating an older log: chain its records as they stand
                prev = _chain_of(_rows(db))
            seq = db.execute("SELECT seq FROM sqlite_sequence WHERE name='audit'").fetchone()
            row["id"] = max(int(seq[0]) if seq else 0, int(last[0]) if last else 0) + 1
            row["prev_hash"] = prev
            row["hash"] = record_hash(row, prev)
            cols = list(row)
            db.execute(f"INSERT INTO audit ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                       [row[c] for c in cols])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self.state.set_head(self._key, row["id"], row["hash"])
        return int(row["id"])

    def settle(self, point: str) -> None:
        """``point`` was read back after a change: nothing of ours is in flight for it."""
        if self.device is not None:
            self.state.settle(self.device, point)

    def last_write_time(self, point: str) -> datetime | None:
        """When ``point`` was last *attempted* (write intent), on this device, for the rate limit.

        The later of the device's state file (any audit file) and this log; an intent
        counts whatever its result, since a write that timed out (or whose process died)
        may still have reached the device.
        """
        times = []
        if self.device is not None:
            t = self.state.last_write(self.device, point)
            if t is not None:
                times.append(t)
        q = "SELECT time_utc FROM audit WHERE point=? AND action='write' AND result='intent'"
        args: tuple = (point,)
        if self.device is not None:
            q += " AND (device=? OR device IS NULL)"
            args += (self.device,)
        row = self._db.execute(q + " ORDER BY id DESC LIMIT 1", args).fetchone()
        if row:
            times.append(datetime.fromisoformat(row[0]))
        return max(times) if times else None

    def frame(self) -> pd.DataFrame:
        return read_audit(self.path)

    def close(self) -> None:
        self._db.close()
        self.state.close()

    def __enter__(self) -> "AuditLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _connect_ro(path: str | Path) -> sqlite3.Connection:
    p = Path(path)
    if not p.is_file():
        raise AuditError(f"{p}: no audit log there")
    try:
        db = sqlite3.connect(f"file:{p}?mode=ro", uri=True, timeout=30.0)
        if "audit" not in {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}:
            db.close()
            raise AuditError(f"{p}: an sqlite file without an 'audit' table (not a Coolshift audit log)")
    except sqlite3.DatabaseError as exc:
        raise AuditError(f"{p}: not an sqlite audit log ({exc})") from None
    return db


def read_audit(path: str | Path) -> pd.DataFrame:
    """The whole log as a frame (read-only connection)."""
    db = _connect_ro(path)
    try:
        return pd.read_sql_query("SELECT * FROM audit ORDER BY id", db)
    finally:
        db.close()


@dataclass
class Verification:
    """What :func:`verify_audit` found; ``ok`` when ``problems`` is empty."""

    path: Path
    records: int = 0
    legacy: int = 0  # records from before the chain, covered only through the first chained record
    head: str | None = None
    problems: list[str] = field(default_factory=list)
    first_broken: int | None = None  # id of the first broken or missing record

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_audit(path: str | Path, state: DeviceState | None = None) -> Verification:
    """Walk the chain in id order and name the first missing, edited, forged or moved record.

    Also checks the append-only triggers are still there, that no record was cut from
    the end (sqlite's AUTOINCREMENT counter, and the head kept in the state file when
    ``state`` is given).
    """
    v = Verification(Path(path))
    db = _connect_ro(path)
    try:
        cols = _columns(db)
        rows = _rows(db)
        triggers = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='trigger'")}
        seq_row = db.execute("SELECT seq FROM sqlite_sequence WHERE name='audit'").fetchone()
    except sqlite3.DatabaseError as exc:
        raise AuditError(f"{v.path}: cannot read the audit log ({exc})") from None
    finally:
        db.close()
    v.records = len(rows)
    if "hash" not in cols:
        v.legacy = len(rows)
        v.problems.append(
            f"{v.path}: written by an older Coolshift without a hash chain: nothing can be verified "
            "(the next command that writes to this log adds the chain and protects these records from then on)"
        )
        return v

    def broken(rid: int, msg: str) -> None:
        if v.first_broken is None:
            v.first_broken = rid
            v.problems.append(msg)

    prev, expected, chained, by_id = GENESIS, 1, False, {}
    for r in rows:
        rid = int(r["id"])
        if rid != expected:
            gap = "deleted" if rid == expected + 1 else f"records {expected}-{rid - 1} deleted"
            broken(expected, f"record {expected} is missing: {gap} (the log jumps from "
                             f"{expected - 1 if expected > 1 else 'its start'} to {rid})")
            break
        h = record_hash(r, prev)
        if r["hash"] is None:
            if chained:
                broken(rid, f"record {rid} has no hash although record {rid - 1} has: inserted or edited "
                            "outside Coolshift")
                break
            v.legacy += 1
        else:
            chained = True
            if r["prev_hash"] != prev:
                broken(rid, f"record {rid} does not chain to record {rid - 1}: one of them was edited "
                            "(its hash recomputed), or records were reordered or replaced")
                break
            if r["hash"] != h:
                broken(rid, f"record {rid} does not match its hash: edited or forged")
                break
        by_id[rid] = h
        prev, expected = h, rid + 1
    last = int(rows[-1]["id"]) if rows else 0
    if v.first_broken is None:
        v.head = prev if rows else None
        seq = int(seq_row[0]) if seq_row else 0
        if seq > last:
            broken(last + 1, f"record {last + 1} is missing: records {last + 1}-{seq} were deleted from the end "
                             f"(sqlite's counter is at {seq})")
        head = state.head(str(v.path.resolve())) if state is not None else None
        if v.first_broken is None and head is not None:
            if head.last_id > last:
                broken(last + 1, f"record {last + 1} is missing: this machine wrote up to record {head.last_id} "
                                 f"(state file), the log ends at {last}")
            elif by_id.get(head.last_id) != head.last_hash:
                broken(head.last_id, f"record {head.last_id} differs from the hash recorded in the state file "
                                     "when it was written: the log was rewritten")
        if rows and not chained:
            v.problems.append(f"{v.path}: {len(rows)} record(s) from before the hash chain and none after: "
                              "nothing is protected yet")
    missing = [t for t in TRIGGERS if t not in triggers]
    if missing:
        v.problems.append(f"append-only trigger(s) {', '.join(missing)} were removed: the log can be edited")
    return v


def _f(v: float | None) -> float | None:
    if v is None:
        return None
    x = float(v)
    return None if math.isnan(x) else x  # sqlite stores NaN as NULL; hash what is stored
