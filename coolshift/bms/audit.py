"""Append-only audit log of every BMS read and write (sqlite).

Every write is preceded by an ``intent`` record that is committed to disk before the
request leaves the process, so a crash or ``kill -9`` mid-push leaves a log that
says exactly which write may have reached the device. The database runs in WAL
mode with ``synchronous=FULL`` (a committed record survives a process kill and a
power cut: https://www.sqlite.org/pragma.html#pragma_synchronous), and triggers
reject any UPDATE or DELETE, so the table can only grow.
"""

from __future__ import annotations

import sqlite3
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

__all__ = ["AuditLog", "AuditRecord", "ACTIONS", "RESULTS"]

ACTIONS = ("read", "write", "verify", "restore", "relinquish", "refuse", "push", "run")
RESULTS = ("intent", "ok", "mismatch", "timeout", "error", "refused", "dry_run", "start", "end")

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
    detail TEXT
);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
"""


@dataclass(frozen=True)
class AuditRecord:
    action: str
    result: str
    point: str | None = None
    old_value: float | None = None
    new_value: float | None = None
    priority: int | None = None
    detail: str | None = None


class AuditLog:
    """One sqlite file; each :meth:`record` is its own committed transaction."""

    def __init__(self, path: str | Path, run_id: str | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.run_id = run_id
        self.push_id = uuid.uuid4().hex[:12]
        self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

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
        if action not in ACTIONS:
            raise ValueError(f"unknown audit action {action!r}")
        if result not in RESULTS:
            raise ValueError(f"unknown audit result {result!r}")
        now = datetime.now(timezone.utc).isoformat(timespec="microseconds")
        cur = self._db.execute(
            "INSERT INTO audit (time_utc, push_id, run_id, action, point, old_value, new_value,"
            " priority, result, detail) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (now, self.push_id, self.run_id, action, point, _f(old_value), _f(new_value), priority, result, detail),
        )
        return int(cur.lastrowid)

    def last_write_time(self, point: str) -> datetime | None:
        """When ``point`` was last written successfully (any push), for the rate limit."""
        row = self._db.execute(
            "SELECT time_utc FROM audit WHERE point=? AND action='write' AND result='ok'"
            " ORDER BY id DESC LIMIT 1",
            (point,),
        ).fetchone()
        return datetime.fromisoformat(row[0]) if row else None

    def frame(self) -> pd.DataFrame:
        return read_audit(self.path)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "AuditLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_audit(path: str | Path) -> pd.DataFrame:
    """The whole log as a frame (read-only connection)."""
    db = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True, timeout=30.0)
    try:
        return pd.read_sql_query("SELECT * FROM audit ORDER BY id", db)
    finally:
        db.close()


def _f(v: float | None) -> float | None:
    return None if v is None else float(v)
