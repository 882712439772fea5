"""Atomic file writes: write to a temporary file in the same folder, fsync, rename.

A reader never sees a half-written plan, report or summary, and a crash leaves the
previous file intact.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import pandas as pd


def _atomic(path: Path, write: Callable[[Path], None]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    # mkstemp makes the file 0600; plans and reports are meant to be read by others
    # (a web server, the BMS team), so give them the usual 0644.
    os.chmod(tmp, 0o644)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: Path | str, text: str) -> Path:
    return _atomic(Path(path), lambda p: p.write_text(text, encoding="utf-8"))


def write_bytes_atomic(path: Path | str, data: bytes) -> Path:
    return _atomic(Path(path), lambda p: p.write_bytes(data))


def write_json_atomic(path: Path | str, obj: Any) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def write_frame_atomic(path: Path | str, frame: pd.DataFrame) -> Path:
    """CSV or parquet by suffix; the index (timestamps) is written as a column."""
    path = Path(path)
    if path.suffix == ".parquet":
        return _atomic(path, lambda p: frame.to_parquet(p))
    return _atomic(path, lambda p: frame.to_csv(p, date_format="%Y-%m-%dT%H:%M:%S%z"))


def _json_default(o: Any) -> Any:
    if hasattr(o, "isoformat"):
        return o.isoformat()
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
