"""Read a plan run folder (``plan.csv`` + ``summary.json``) for pushing to the BMS.

The contract with the optimiser: ``plan.csv`` has a ``timestamp`` column (ISO 8601
with a UTC offset, one row per planning step), ``supply_setpoint_c__<zone>`` and/or
``chw_setpoint_c`` in degC, and optionally a boolean ``in_envelope`` (False where the
learned model was outside its training envelope). ``summary.json`` has at least
``run_id``, ``created_at`` (ISO UTC) and ``site``. Anything else is ignored.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

__all__ = ["PlanError", "Plan", "read_plan", "current_step", "unmapped_message", "SETPOINT_PREFIXES"]

SETPOINT_PREFIXES = ("supply_setpoint_c__", "chw_setpoint_c")
_TRUE = {"true", "1", "yes", "t"}
_FALSE = {"false", "0", "no", "f"}


class PlanError(ValueError):
    """A plan folder that cannot be pushed; the message names file, column and row."""


@dataclass(frozen=True)
class Plan:
    run_id: str
    created_at: pd.Timestamp
    site: str
    frame: pd.DataFrame  # UTC DatetimeIndex 'timestamp'; setpoint columns float; in_envelope bool
    step: pd.Timedelta
    path: Path

    @property
    def setpoint_columns(self) -> list[str]:
        return [c for c in self.frame.columns if c != "in_envelope"]


def _utc(value: object, where: str) -> pd.Timestamp:
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise PlanError(f"{where}: not an ISO 8601 time: {value!r} ({exc})") from None
    if ts.tzinfo is None:
        raise PlanError(f"{where}: {value!r} has no UTC offset (write e.g. 2026-11-23T00:00:00+00:00)")
    return ts.tz_convert("UTC")


def _bool(v: object, where: str) -> bool:
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise PlanError(f"{where}: in_envelope must be true/false, got {v!r}")


def unmapped_message(where: str, columns: list[str], variables: dict[str, str] | list[str] | tuple[str, ...]) -> str:
    """Why a plan whose setpoint columns match no mapped point is refused, naming both sides.

    Pushing such a plan would find no target for any point and hand every point back to
    local control: it is almost always a plan for another site or zone naming.
    """
    mapped = (", ".join(f"{v} ({n})" for v, n in sorted(variables.items())) if isinstance(variables, dict)
              else ", ".join(sorted(variables)))
    shown = [c if len(c) <= 60 else c[:57] + "..." for c in columns[:12]]  # header cells only, bounded
    more = f" and {len(columns) - 12} more" if len(columns) > 12 else ""
    return (f"{where}: no setpoint column matches a point in the point map: the plan has "
            f"{', '.join(shown)}{more}; the map's writable points carry {mapped}. Nothing was written "
            "(check the plan is for this site and the point map's 'variable' names)")


def read_plan(run_dir: str | Path, variables: tuple[str, ...] | list[str] | dict[str, str] = ()) -> Plan:
    """Validate and load a plan run folder; errors name the file, column and row.

    Reads the setpoint columns of the contract plus any other ``variables`` present
    (a point map may carry, say, ``crah_fan_min_frac__hall_a``), all as finite numbers.
    ``variables`` are the point map's writable variables (or variable -> point name): when
    given, at least one setpoint column must be among them (see :func:`unmapped_message`).
    """
    run_dir = Path(run_dir)
    csv, sj = run_dir / "plan.csv", run_dir / "summary.json"
    if not run_dir.is_dir():
        raise PlanError(f"{run_dir}: plan run folder not found")
    for f in (csv, sj):
        if not f.is_file():
            raise PlanError(f"{f}: missing (a plan run folder holds plan.csv and summary.json)")
    try:
        summary = json.loads(sj.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise PlanError(f"{sj}: not valid JSON: {exc}") from None
    if not isinstance(summary, dict):
        raise PlanError(f"{sj}: expected a JSON object")
    for key in ("run_id", "created_at", "site"):
        if key not in summary:
            raise PlanError(f"{sj}: missing key {key!r}")
    created = _utc(summary["created_at"], f"{sj}: created_at")

    try:
        raw = pd.read_csv(csv, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise PlanError(f"{csv}: cannot parse CSV: {exc}") from None
    if "timestamp" not in raw.columns:
        raise PlanError(f"{csv}: no 'timestamp' column (columns: {list(raw.columns)})")
    if raw.empty:
        raise PlanError(f"{csv}: no rows")
    cols = [c for c in raw.columns
            if c == "chw_setpoint_c" or c.startswith("supply_setpoint_c__") or (c in variables and c != "in_envelope")]
    if not cols:
        raise PlanError(
            f"{csv}: no setpoint columns (expected supply_setpoint_c__<zone> and/or chw_setpoint_c"
            + (f", or one of {sorted(variables)})" if variables else ")")
        )
    if variables and not any(c in variables for c in cols):
        raise PlanError(unmapped_message(str(csv), cols, variables if isinstance(variables, dict) else list(variables)))
    index = [_utc(v, f"{csv}: row {i + 2}, column timestamp") for i, v in enumerate(raw["timestamp"])]
    out = pd.DataFrame(index=pd.DatetimeIndex(index, name="timestamp"))
    for c in cols:
        vals = []
        for i, v in enumerate(raw[c]):
            try:
                x = float(v)
            except ValueError:
                raise PlanError(f"{csv}: row {i + 2}, column {c}: not a number: {v!r}") from None
            if not math.isfinite(x):
                raise PlanError(f"{csv}: row {i + 2}, column {c}: {v!r} is not a finite number")
            vals.append(x)
        out[c] = vals
    if "in_envelope" in raw.columns:
        out["in_envelope"] = [_bool(v, f"{csv}: row {i + 2}, column in_envelope") for i, v in enumerate(raw["in_envelope"])]
    if not out.index.is_monotonic_increasing or out.index.has_duplicates:
        bad = next(i for i in range(1, len(out)) if out.index[i] <= out.index[i - 1])
        raise PlanError(f"{csv}: row {bad + 2}: timestamps must strictly increase")
    if len(out) > 1:
        step = pd.Timedelta(out.index.to_series().diff().min())
    elif "step_minutes" in summary:
        step = pd.Timedelta(minutes=float(summary["step_minutes"]))
    else:
        raise PlanError(f"{csv}: a one-row plan needs 'step_minutes' in {sj.name}")
    return Plan(
        run_id=str(summary["run_id"]), created_at=created, site=str(summary["site"]),
        frame=out, step=step, path=run_dir,
    )


def current_step(plan: Plan, now: pd.Timestamp) -> pd.Timestamp | None:
    """Start of the step that contains ``now`` ([start, start + step)), or None."""
    idx = plan.frame.index
    pos = idx.searchsorted(now, side="right") - 1
    if pos < 0:
        return None
    start = idx[pos]
    end = idx[pos + 1] if pos + 1 < len(idx) else start + plan.step
    return start if now < end else None
