"""Workload readers: cluster CPU traces -> ``cpu_util`` (fraction 0-1 of capacity).

Traces without timestamps are anchored by the caller (``start``, ISO 8601 with an
offset) at the trace's own step. :func:`demand_per_class` turns utilisation into work
units per hour per workload class, by the shares the site config sets.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from coolshift.io.checks import (
    UTIL_RANGE_FRAC,
    DataError,
    GapPolicy,
    finalise,
    cell,
    parse_timestamps,
    read_csv_text,
    read_header,
    require_columns,
    to_numeric,
    unrecognised_header,
)
from coolshift.schema import CPU_UTIL, demand_col

__all__ = ["read_workload", "demand_per_class", "reanchor_by_week", "WORKLOAD_FORMATS"]

_RANGES = {CPU_UTIL: (UTIL_RANGE_FRAC, "fraction")}

# name: (value column, divisor to a 0-1 fraction, step of the un-timestamped trace)
_TRACE_LAYOUTS = {
    "sustaindc_hourly": ("cpu_load", 1.0, pd.Timedelta("1h")),
    "alibaba2018_5min": ("cpu_util_percent", 100.0, pd.Timedelta("5min")),
    "google2019_5min": ("avg_cpu", 1.0, pd.Timedelta("5min")),
}


def _anchor(path, start: str | pd.Timestamp | None, n: int, step: pd.Timedelta) -> pd.DatetimeIndex:
    if start is None:
        raise DataError(path, "this trace has no timestamps: give a start time (data source 'start', ISO 8601 with offset)")
    try:
        t0 = pd.Timestamp(start)
    except (ValueError, TypeError, OverflowError):
        raise DataError(path, f"start {cell(start)} is not an ISO 8601 time (e.g. 2022-01-01T00:00:00Z)") from None
    if t0 is pd.NaT or t0.tzinfo is None:
        raise DataError(path, f"start {cell(start)} needs a UTC offset or Z")
    return pd.date_range(t0.tz_convert("UTC"), periods=n, freq=step, name="timestamp")


def _read_trace(path: Path, fmt: str, start, gap_policy) -> pd.DataFrame:
    column, divisor, step = _TRACE_LAYOUTS[fmt]
    df = read_csv_text(path)
    require_columns(df.columns, [column], path)
    raw = to_numeric(df, column, path)
    if divisor != 1.0 and len(raw.dropna()) >= 3 and raw.max() <= 1.0:
        # A cluster busy under 1 % of its CPU for the whole trace does not exist: a 0-1 fraction in a percent column.
        raise DataError(path, f"every value is within 0-1 (max {raw.max():g}) in a percent column: a 0-1 fraction? "
                              "(the column is read as percent)", column)
    values = raw / divisor
    if "timestamp" in df.columns:
        idx = parse_timestamps(df["timestamp"], path, "timestamp")
    else:
        idx = _anchor(path, start, len(df), step)
    frame = pd.DataFrame({CPU_UTIL: values.to_numpy()}, index=idx)
    return finalise(frame, path, _RANGES, gap_policy=gap_policy, step=step if "timestamp" not in df.columns else None)


def read_canonical_workload(path, start=None, gap_policy: GapPolicy | None = None) -> pd.DataFrame:
    """Coolshift's plain format: ``timestamp,cpu_util`` (fraction 0-1 of site capacity)."""
    path = Path(path)
    df = read_csv_text(path)
    if "cpu_util_pct" in df.columns or "cpu_util_percent" in df.columns and "timestamp" in df.columns:
        raise DataError(path, "wrong unit: the canonical column cpu_util is a fraction 0-1, not percent")
    require_columns(df.columns, ["timestamp", CPU_UTIL], path)
    idx = parse_timestamps(df["timestamp"], path, "timestamp")
    frame = pd.DataFrame({CPU_UTIL: to_numeric(df, CPU_UTIL, path).to_numpy()}, index=idx)
    return finalise(frame, path, _RANGES, gap_policy=gap_policy)


WORKLOAD_FORMATS = ("sustaindc_hourly", "alibaba2018_5min", "google2019_5min", "canonical")


def sniff_workload_format(path) -> str:
    path = Path(path)
    header = read_header(path)
    if "timestamp" in header and CPU_UTIL in header:
        return "canonical"
    for name, (column, _, _) in _TRACE_LAYOUTS.items():
        if column in header:
            return name
    raise unrecognised_header(path, "workload", header, f"one of {list(WORKLOAD_FORMATS)} (canonical: timestamp,cpu_util)")


def read_workload(path, format: str = "auto", start=None, gap_policy: GapPolicy | None = None) -> pd.DataFrame:
    """Read a CPU-utilisation trace into ``cpu_util`` (0-1) on a UTC index."""
    path = Path(path)
    fmt = sniff_workload_format(path) if format == "auto" else format
    if fmt == "canonical":
        frame = read_canonical_workload(path, gap_policy=gap_policy)
    elif fmt in _TRACE_LAYOUTS:
        frame = _read_trace(path, fmt, start, gap_policy)
    else:
        raise DataError(path, f"unknown workload format {fmt!r}; choose from {list(WORKLOAD_FORMATS)} or auto")
    frame.attrs.update({"source": str(path), "format": fmt})
    return frame


def tile_to_cover(frame: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """Repeat a short trace end-to-end to cover [start, end): a labelled synthetic extension."""
    step = frame.attrs.get("step") or (frame.index[1] - frame.index[0])
    idx = pd.date_range(start, end, freq=step, inclusive="left", name="timestamp")
    reps = np.resize(frame[CPU_UTIL].to_numpy(), len(idx))
    out = pd.DataFrame({CPU_UTIL: reps}, index=idx)
    out.attrs.update(frame.attrs)
    out.attrs["tiled"] = True
    return out


WEEK = pd.Timedelta("7D")


def reanchor_by_week(frame: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """A trace on [start, end), each stamp outside it taken from the trace at the same weekday and hour.

    Work follows the week (office hours, weekends, nightly batch), not the calendar year,
    so a trace recorded in one year drives another: a stamp ``t`` outside the trace reads
    the trace at ``t0 + ((t - t0) mod W)``, ``W`` the trace's length in whole weeks
    (52 for a year: the same weekday and hour, within 1-2 days of the same date of the
    year in the year after). Stamps the trace covers keep their own values. A trace
    shorter than one week has no weekly pattern to keep: a DataError (tile it with the data
    source's ``repeat: true``). ``attrs['reanchored']`` says what was done.
    """
    src = frame.attrs.get("source")
    step = frame.attrs.get("step") or (frame.index[1] - frame.index[0])
    t0 = frame.index[0]
    t_end = frame.index[-1] + step
    if start >= t0 and end <= t_end:
        return frame
    cycle = ((t_end - t0) // WEEK) * WEEK
    if cycle < WEEK:
        raise DataError(src, f"the workload trace covers {(t_end - t0) / pd.Timedelta('1D'):g} days "
                             f"({t0.isoformat()} to {t_end.isoformat()}), less than a week, and not the requested "
                             f"{start.isoformat()} to {end.isoformat()}: set `repeat: true` on the data source to tile it")
    first = t0 + ((start - t0) // step) * step  # on the trace's own grid
    idx = pd.date_range(first, end, freq=step, inclusive="left", name=frame.index.name or "timestamp")
    outside = (idx < t0) | (idx >= t_end)
    src_t = idx.where(~outside, t0 + ((idx - t0) % cycle))
    out = frame.reindex(src_t).ffill().bfill()
    out.index = idx
    out.attrs.update(frame.attrs)
    out.attrs["reanchored"] = {
        "trace_start": t0.isoformat(), "trace_end": t_end.isoformat(), "cycle_weeks": int(cycle / WEEK),
        "steps_reanchored": int(outside.sum()), "steps": len(idx),
    }
    return out


def demand_per_class(cpu_util: pd.Series, site) -> pd.DataFrame:
    """Work demand [units/h] per workload class: utilisation x site capacity x class share."""
    cap = site.capacity_units_per_h
    return pd.DataFrame({demand_col(c.name): cpu_util.to_numpy() * cap * c.share for c in site.workload_classes}, index=cpu_util.index)
