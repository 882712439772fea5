"""Run folders for scheduled jobs: dated, replaced atomically, guarded by a lock.

The nightly plan is run from cron or a systemd timer. Re-running it for the same date
must replace that date's run as a whole (never a mix of old and new files), and two
runs must never write at once. A run is assembled in a hidden staging folder beside its
final place and swapped in with renames; the previous run is kept until the swap is done.
Staging folders carry their creator's pid and host, so a run killed half-way is cleaned
at the next start (:func:`clean_stale_staging`) without touching a live run's staging.
The whole-run locks themselves are in :mod:`coolshift.locks`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Iterator

from coolshift.locks import LockSpec, RunLocked, hold_locks, pid_alive

__all__ = ["RunLocked", "run_lock", "output_lock", "staged_run_dir", "clean_stale_staging"]


def output_lock(root: Path, name: str = "coolshift") -> LockSpec:
    """The lock file ``<root>/.<name>.lock`` beside the run folders it guards."""
    return LockSpec(Path(root) / f".{name}.lock", f"coolshift {name} writing into {root}")


@contextlib.contextmanager
def run_lock(root: Path, name: str = "coolshift") -> Iterator[Path]:
    """An exclusive, non-blocking lock file in ``root``; released on exit or process death."""
    spec = output_lock(root, name)
    with hold_locks([spec], name):
        yield spec.path


def _tag() -> str:
    """``<pid>@<host>``: who made a staging folder (host names hold no '/' or '@')."""
    return f"{os.getpid()}@{socket.gethostname()}"


# .<name>.staging-<8 random>-<pid>@<host>, .<name>.old-<pid>@<host>; and the older forms
# .<name>.staging-<8 random>, .<name>.old-<pid> (no host: only cleaned for our own name).
_STAGING = re.compile(r"^\.(?P<name>.+)\.staging-[A-Za-z0-9_]{8}(?:-(?P<pid>\d+)@(?P<host>[^@/]+))?$")
_OLD = re.compile(r"^\.(?P<name>.+)\.old-(?P<pid>\d+)(?:@(?P<host>[^@/]+))?$")


@contextlib.contextmanager
def staged_run_dir(final: Path) -> Iterator[Path]:
    """Yield a staging folder; on success it replaces ``final`` atomically, on error it is removed."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{final.name}.staging-", suffix=f"-{_tag()}", dir=final.parent))
    os.chmod(stage, 0o755)  # mkdtemp makes it 0700; runs are read by others (BMS push, web)
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{_tag()}"
        os.replace(final, old)
    os.replace(stage, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def clean_stale_staging(final: Path) -> list[str]:
    """Remove what killed runs left beside their run folders; return one line per action.

    Call while holding the lock for ``final``: every staging or set-aside folder of
    ``final`` is then stale. Those of other run folders in the same parent are removed
    only when their creator (pid on this host) is dead. A previous run set aside by a
    run killed between its two renames is put back when its run folder is missing.
    """
    final = Path(final)
    parent = final.parent
    if not parent.is_dir():
        return []
    host = socket.gethostname()
    done: list[str] = []

    def stale(m: re.Match) -> bool:
        if m.group("name") == final.name:
            return True  # ours: the lock guarantees nobody else uses it
        if m.group("pid") is None or m.group("host") != host:
            return False  # another host's, or no owner recorded: not ours to judge
        return not pid_alive(int(m.group("pid")))

    olds: dict[str, list[Path]] = {}
    for p in sorted(parent.iterdir()):
        if not p.name.startswith(".") or not p.is_dir() or p.is_symlink():
            continue
        m = _STAGING.match(p.name)
        if m and stale(m):
            shutil.rmtree(p, ignore_errors=True)
            done.append(f"removed the staging folder {p} left by a run that did not finish")
            continue
        m = _OLD.match(p.name)
        if m and stale(m):
            olds.setdefault(m.group("name"), []).append(p)
    for name, paths in olds.items():
        paths.sort(key=lambda q: q.stat().st_mtime, reverse=True)
        target = parent / name
        if not target.exists():
            os.replace(paths[0], target)
            done.append(f"restored {target} from {paths[0].name}: a run was killed while replacing it")
            paths = paths[1:]
        for q in paths:
            shutil.rmtree(q, ignore_errors=True)
            done.append(f"removed {q}, a previous run set aside by a run that did not finish")
    return done
