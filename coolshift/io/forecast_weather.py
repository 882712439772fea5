"""Issued weather forecasts in Open-Meteo's forecast JSON, as the long frame the loop looks up.

Returns ``request_time`` (when the forecast was issued, UTC), ``forecast_time`` (the hour
it is for, UTC), ``temp_c``, ``rh_pct`` and ``wetbulb_c`` (Stull 2011, as the readers derive
it), for :class:`coolshift.control.receding.IssuedForecasts`. Two shapes of response:

- the **Previous Runs API** (``hourly`` carries ``temperature_2m_previous_dayN`` and
  ``relative_humidity_2m_previous_dayN``, N = 1..7): the value at hour ``t`` for day N is
  the forecast made N x 24 h earlier (Open-Meteo: "Day 1 as a glimpse 24 hours back"), so
  it is taken as issued at ``t - N days``; the day-0 columns (the latest run, close to the
  measurement) are not a forecast made ahead and are left out. One file gives an archive
  of forecasts as issued over the whole period it spans.
- a plain **Forecast API** response (``temperature_2m``, ``relative_humidity_2m``): one
  forecast. Open-Meteo does not say when it was made, so ``issued_at`` must be given (the
  download time); the hours before it are dropped.

Local times are at the fixed ``utc_offset_seconds`` (UTC = time - offset), as in the
historical files (:func:`coolshift.io.weather.read_openmeteo`).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from coolshift.io.checks import RH_RANGE_PCT, TEMP_RANGE_C, DataError, cell
from coolshift.io.weather import openmeteo_document, wetbulb_stull_c
from coolshift.schema import RH_PCT, TEMP_C, WETBULB_C

__all__ = ["read_openmeteo_forecast"]

_PREV = re.compile(r"^temperature_2m_previous_day(\d+)$")


def _times(path: Path, doc: dict) -> pd.DatetimeIndex:
    offset = doc.get("utc_offset_seconds")
    if isinstance(offset, bool) or not isinstance(offset, (int, float)) or not np.isfinite(offset) or abs(offset) > 14 * 3600:
        raise DataError(path, f"'utc_offset_seconds' must be a number of seconds within +-14 h, not {cell(offset)}",
                        "utc_offset_seconds")
    hourly = doc.get("hourly")
    if not isinstance(hourly, dict) or not isinstance(hourly.get("time"), list):
        raise DataError(path, "missing 'hourly' block with a 'time' list")
    raw = pd.Series(hourly["time"], dtype=object)
    local = pd.to_datetime(raw.where(raw.map(lambda x: isinstance(x, str))), errors="coerce", format="ISO8601")
    if local.isna().any():
        i = int(np.flatnonzero(local.isna().to_numpy())[0])
        raise DataError(path, f"unparseable time {cell(hourly['time'][i])}", "hourly.time", i + 1)
    if local.dt.tz is not None:
        raise DataError(path, "hourly.time carries an offset; Open-Meteo times are local at utc_offset_seconds", "hourly.time")
    return pd.DatetimeIndex(local - pd.Timedelta(seconds=int(offset))).tz_localize("UTC")


def _values(path: Path, hourly: dict, key: str, n: int, bounds: tuple[float, float], unit: str) -> np.ndarray:
    v = hourly.get(key)
    if not isinstance(v, list) or len(v) != n:
        got = f"{len(v)} values" if isinstance(v, list) else "no list"
        raise DataError(path, f"hourly.{key}: {got} for {n} times", key)
    num = pd.to_numeric(pd.Series(v, dtype=object), errors="coerce")
    bad = num.isna() & pd.Series([x is not None for x in v])
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(path, f"not a number: {cell(v[i])}", key, i + 1)
    arr = num.to_numpy(dtype=float)
    lo, hi = bounds
    out = np.flatnonzero(np.isfinite(arr) & ((arr < lo) | (arr > hi)))
    if len(out):
        i = int(out[0])
        raise DataError(path, f"value {arr[i]:g} outside {lo:g}..{hi:g} {unit}", key, i + 1)
    return arr


def read_openmeteo_forecast(path, issued_at=None) -> pd.DataFrame:
    """Issued weather forecasts from one Open-Meteo response (see the module docstring)."""
    path = Path(path)
    doc = openmeteo_document(path)
    times = _times(path, doc)
    hourly = doc["hourly"]
    units = doc.get("hourly_units") if isinstance(doc.get("hourly_units"), dict) else {}
    for k, u in units.items():
        if k.startswith("temperature_2m") and u not in ("\u00b0C", "degC", "C"):
            raise DataError(path, f"temperature unit {cell(u, 12)}; request Celsius", k)
    days = sorted(int(m.group(1)) for k in hourly if (m := _PREV.match(k)))
    parts = []
    n = len(times)
    if days:
        for d in days:
            t = _values(path, hourly, f"temperature_2m_previous_day{d}", n, TEMP_RANGE_C, "degC")
            rh = _values(path, hourly, f"relative_humidity_2m_previous_day{d}", n, RH_RANGE_PCT, "%")
            parts.append(pd.DataFrame({"request_time": times - pd.Timedelta(days=d), "forecast_time": times,
                                       TEMP_C: t, RH_PCT: rh}))
    else:
        if issued_at is None:
            raise DataError(path, "a forecast response does not say when it was issued: give the download time "
                                  "(issued_at), or use the Previous Runs API's *_previous_dayN variables")
        issue = pd.Timestamp(issued_at)
        issue = issue.tz_localize("UTC") if issue.tzinfo is None else issue.tz_convert("UTC")
        t = _values(path, hourly, "temperature_2m", n, TEMP_RANGE_C, "degC")
        rh = _values(path, hourly, "relative_humidity_2m", n, RH_RANGE_PCT, "%")
        f = pd.DataFrame({"request_time": issue, "forecast_time": times, TEMP_C: t, RH_PCT: rh})
        parts.append(f[f["forecast_time"] >= issue])
    out = pd.concat(parts, ignore_index=True).dropna(subset=[TEMP_C, RH_PCT])
    out[WETBULB_C] = wetbulb_stull_c(out[TEMP_C].to_numpy(), out[RH_PCT].to_numpy())
    return out.sort_values(["forecast_time", "request_time"]).reset_index(drop=True)
