"""Validation shared by every reader: timestamps, duplicates, gaps, plausible ranges.

Every reader funnels its raw frame through :func:`finalise`, so all formats fail the
same way: a :class:`DataError` naming the file, the column and the row (1-based line
number in the file, header included) of the first offending value.
"""

from __future__ import annotations

import csv
import difflib
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from coolshift.textfiles import MAX_FILE_BYTES, DataError, read_bytes, read_text  # noqa: F401 (re-exported)

# Plausible ranges: a value outside is an input error, not a fact about the grid.
# Carbon intensity: the dirtiest real grids (lignite) reach ~1,200 gCO2/kWh; 2,000 leaves
# room and still catches kg/g or lb/MWh unit mix-ups (IPCC AR5 WG3 Annex III, lignite ~1,050).
CARBON_RANGE_GCO2_PER_KWH = (0.0, 2000.0)
# Outside air: the recorded extremes are -89 and +57 degC; -60..60 covers every inhabited site.
TEMP_RANGE_C = (-60.0, 60.0)
RH_RANGE_PCT = (0.0, 100.0)
UTIL_RANGE_FRAC = (0.0, 1.0)


@dataclass(frozen=True)
class GapPolicy:
    """How missing values are handled, by the length of the run of missing steps.

    Up to ``max_interp_h`` hours: linear interpolation in time. Up to ``max_fill_h``
    hours: the values of the same hours one day earlier (one day later at the start of
    the series): seasonal-naive, which keeps the daily shape a long straight line would
    erase. Longer: an error naming where the gap starts and ends. Every fill is listed
    in ``frame.attrs['filled']``.
    """

    max_interp_h: float = 3.0
    max_fill_h: float = 3.0


def parse_timestamps(values: pd.Series, path, column: str, *, assume_utc: bool = False, row_offset: int = 2) -> pd.DatetimeIndex:
    """Parse ISO 8601 timestamps to UTC. Naive stamps are an error unless ``assume_utc``."""
    raw = values.astype("string")
    parsed = pd.to_datetime(raw, errors="coerce", utc=True, format="mixed")
    bad = parsed.isna() & raw.notna()
    bad |= raw.isna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(path, f"unparseable timestamp {cell(values.iloc[i])}", column, i + row_offset)
    if not assume_utc:
        has_offset = raw.str.contains(r"(?:Z|[+-]\d\d:?\d\d)$", regex=True)
        if not has_offset.all():
            i = int(np.flatnonzero(~has_offset.to_numpy())[0])
            raise DataError(
                path, f"timestamp {cell(values.iloc[i])} has no UTC offset (use ISO 8601 with an offset or Z)", column, i + row_offset
            )
    return pd.DatetimeIndex(parsed, name="timestamp")


def infer_step(index: pd.DatetimeIndex, path) -> pd.Timedelta:
    """The nominal step: the most common difference between consecutive stamps."""
    if len(index) < 2:
        raise DataError(path, "needs at least two timestamps")
    diffs = pd.Series(index[1:] - index[:-1])
    step = pd.Timedelta(diffs.mode().iloc[0])
    if step <= pd.Timedelta(0):
        raise DataError(path, "timestamps are not increasing")
    return step


def runs_of(mask: np.ndarray, min_len: int = 1) -> list[tuple[int, int]]:
    """Half-open [start, end) positions of the runs of True in ``mask`` at least ``min_len`` long."""
    m = np.asarray(mask, dtype=bool)
    edges = np.diff(np.concatenate([[0], m.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [(int(a), int(b)) for a, b in zip(starts, ends) if b - a >= min_len]


def check_range(frame: pd.DataFrame, column: str, bounds: tuple[float, float], path, unit: str, rows: np.ndarray | None = None) -> None:
    v = frame[column].to_numpy(dtype=float)
    lo, hi = bounds
    bad = (v < lo) | (v > hi)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        row = int(rows[i]) if rows is not None else None
        raise DataError(
            path, f"value {v[i]:g} {unit} at {frame.index[i].isoformat()} is outside the plausible range {lo:g}..{hi:g} {unit}"
            " (wrong units?)", column, row,
        )


def fill_gaps(frame: pd.DataFrame, step: pd.Timedelta, path, policy: GapPolicy) -> pd.DataFrame:
    """Put the frame on a regular grid and fill gaps by ``policy``; too-long gaps are errors."""
    full = pd.date_range(frame.index[0], frame.index[-1], freq=step, name="timestamp")
    out = frame.reindex(full)
    filled: list[dict] = []
    day = int(pd.Timedelta("1D") / step) if step <= pd.Timedelta("1D") else 0
    max_interp = int(pd.Timedelta(hours=policy.max_interp_h) / step)
    max_fill = max(int(pd.Timedelta(hours=policy.max_fill_h) / step), max_interp)
    for column in out.columns:
        values = out[column].to_numpy(dtype=float).copy()
        miss = np.isnan(values)
        if not miss.any():
            continue
        edges = np.diff(np.concatenate([[0], miss.astype(int), [0]]))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        interp = out[column].interpolate(method="time", limit_area="inside").to_numpy()
        for s, e in zip(starts, ends):
            n = int(e - s)
            if n <= max_interp:
                values[s:e] = interp[s:e]
                rule = "linear"
            elif n <= max_fill and day and n <= day:
                src = np.arange(s, e) - day if s - day >= 0 else np.arange(s, e) + day
                if src.max() >= len(values) or np.isnan(values[src]).any():
                    raise DataError(path, f"gap of {n * step} from {full[s].isoformat()} has no complete neighbouring day to fill from", column)
                values[s:e] = values[src]
                rule = "previous_day" if src[0] < s else "next_day"
            else:
                raise DataError(
                    path, f"gap of {n} steps ({n * step}) from {full[s].isoformat()} to {full[e - 1].isoformat()} exceeds "
                    f"the fill limit ({policy.max_fill_h:g} h; raise max_fill_gap_h in the data source to accept it)", column,
                )
            filled.append({"column": column, "start": full[s].isoformat(), "steps": n, "rule": rule})
        out[column] = values
    out.attrs["filled"] = filled
    out.attrs["step"] = step
    return out


def finalise(
    frame: pd.DataFrame,
    path,
    ranges: dict[str, tuple[tuple[float, float], str]],
    *,
    gap_policy: GapPolicy | None = None,
    rows: np.ndarray | None = None,
    step: pd.Timedelta | None = None,
) -> pd.DataFrame:
    """Sort, reject duplicates and implausible values, regularise and fill short gaps."""
    gap_policy = gap_policy or GapPolicy()
    rows = np.arange(len(frame)) + 2 if rows is None else np.asarray(rows)
    order = np.argsort(frame.index.to_numpy(), kind="stable")
    frame, rows = frame.iloc[order], rows[order]
    dup = frame.index.duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise DataError(path, f"duplicated timestamp {frame.index[i].isoformat()}", "timestamp", int(rows[i]))
    for column, (bounds, unit) in ranges.items():
        present = frame[column].notna().to_numpy()
        check_range(frame.loc[present], column, bounds, path, unit, rows[present])
    step = step or infer_step(frame.index, path)
    off_grid = ((frame.index - frame.index[0]) % step) != pd.Timedelta(0)
    if off_grid.any():
        # Mixed resolutions (e.g. 30-min data that turns 15-min): average onto the nominal step.
        frame = frame.resample(step, origin=frame.index[0]).mean()
    return fill_gaps(frame, step, path, gap_policy)


def cell(value, width: int = 40) -> str:
    """One offending cell for an error message, quoted and cut to ``width`` characters.

    Error messages quote at most the cell at fault, never a header or a whole line.
    """
    text = str(value)
    return repr(text if len(text) <= width else text[:width] + "...")


_PARSER_FIELDS = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def read_csv_text(path, **kw) -> pd.DataFrame:
    """A CSV data file as strings (empty cells NaN), via :func:`read_text`; errors never quote the file."""
    path = Path(path)
    text = read_text(path)
    if not text.strip():
        raise DataError(path, "empty file")
    header = next(csv.reader(io.StringIO(text.split("\n", 1)[0].rstrip("\r"))), [])
    names = [h.strip() for h in header]
    seen: dict[str, int] = {}
    for i, n in enumerate(names, 1):
        if n and n in seen:
            raise DataError(path, f"column {cell(n)} appears twice in the header (fields {seen[n]} and {i}): which one is meant?", row=1)
        seen.setdefault(n, i)
    try:
        return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_values=[""], **kw)
    except pd.errors.EmptyDataError:
        raise DataError(path, "empty file") from None
    except (pd.errors.ParserError, ValueError, csv.Error) as exc:
        m = _PARSER_FIELDS.search(str(exc))
        if m:
            raise DataError(path, f"line {m.group(2)} has {m.group(3)} fields, the header {m.group(1)}", row=int(m.group(2))) from None
        raise DataError(path, f"not a readable CSV file ({type(exc).__name__})") from None


def read_header(path) -> list[str]:
    """The stripped column names of a CSV file's first line (for format sniffing)."""
    text = read_text(path)
    if not text.strip():
        raise DataError(path, "empty file")
    first = text.split("\n", 1)[0].rstrip("\r")
    return [h.strip() for h in next(csv.reader(io.StringIO(first)), [])]


def unrecognised_header(path, what: str, header: list[str], expected: str) -> DataError:
    """The error for a file whose header matches no known format: it says how many fields the
    first line has, never what they are (the file may not be a data file at all)."""
    hint = ""
    if len(header) == 1 and any(sep in header[0] for sep in (";", "\t", "|")):
        hint = " (one field: is the file separated by ';', tab or '|' instead of ','?)"
    return DataError(path, f"unrecognised {what} file: its first line has {len(header)} field(s), none of the known "
                           f"column sets{hint}; expected {expected}", row=1)


def require_columns(columns, needed, path) -> None:
    """Every ``needed`` column present; the error names what is missing, and at most one header
    cell that closely resembles it (a likely typo), never the whole header."""
    columns = [str(c) for c in columns]
    missing = [c for c in needed if c not in columns]
    if missing:
        hints = []
        for m in missing:
            close = difflib.get_close_matches(m, columns, n=1, cutoff=0.75)
            if close:
                hints.append(f"{m!r} (the header has {cell(close[0])})")
        extra = f"; did you mean: {', '.join(hints)}" if hints else ""
        raise DataError(path, f"missing column(s) {missing} (the header has {len(columns)} column(s)){extra}", row=1)


def to_numeric(frame: pd.DataFrame, column: str, path, row_offset: int = 2) -> pd.Series:
    """Numbers, with empty cells as NaN (gaps); text that is not a number is an error."""
    raw = frame[column]
    num = pd.to_numeric(raw, errors="coerce")
    bad = num.isna() & raw.notna() & (raw.astype("string").str.strip() != "")
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(path, f"not a number: {cell(raw.iloc[i])}", column, i + row_offset)
    return num.astype(float)
