"""Run folders for scheduled jobs: dated, replaced atomically, guarded by a lock.

The nightly plan is run from cron or a systemd timer. Re-running it for the same date
must replace that date's run as a whole (never a mix of old and new files), and two
runs must never write at once. A run is assembled in a hidden staging folder beside its
final place and swapped in with renames; the previous run is kept until the swap is done.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

__all__ = ["RunLocked", "run_lock", "staged_run_dir"]


class RunLocked(RuntimeError):
    """Another run holds the lock."""


@contextlib.contextmanager
def run_lock(root: Path, name: str = "coolshift") -> Iterator[Path]:
    """An exclusive, non-blocking lock file in ``root``; released on exit or process death."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    path = root / f".{name}.lock"
    fh = open(path, "a+")
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                fh.seek(0)
                holder = fh.read().strip() or "unknown"
                raise RunLocked(f"another Coolshift run holds {path} (pid {holder})") from None
            raise
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        yield path
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        fh.close()


@contextlib.contextmanager
def staged_run_dir(final: Path) -> Iterator[Path]:
    """Yield a staging folder; on success it replaces ``final`` atomically, on error it is removed."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{final.name}.staging-", dir=final.parent))
    os.chmod(stage, 0o755)  # mkdtemp makes it 0700; runs are read by others (BMS push, web)
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{os.getpid()}"
        os.replace(final, old)
    os.replace(stage, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
