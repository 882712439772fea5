"""Weather readers (EPW, Open-Meteo JSON, canonical CSV) and derived wet-bulb temperature.

Canonical frame: UTC ``timestamp`` index, ``temp_c`` (dry-bulb, degC), ``rh_pct``
(relative humidity, %) and ``wetbulb_c`` (degC, derived).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from coolshift.io.checks import (
    RH_RANGE_PCT,
    TEMP_RANGE_C,
    DataError,
    GapPolicy,
    finalise,
    parse_timestamps,
    require_columns,
    to_numeric,
)
from coolshift.schema import RH_PCT, TEMP_C, WETBULB_C

__all__ = ["wetbulb_stull_c", "read_epw", "read_openmeteo", "read_canonical_weather", "read_weather", "WEATHER_FORMATS"]

_RANGES = {TEMP_C: (TEMP_RANGE_C, "degC"), RH_PCT: (RH_RANGE_PCT, "%")}


def wetbulb_stull_c(temp_c, rh_pct):
    """Wet-bulb temperature [degC] from dry-bulb [degC] and relative humidity [%].

    Stull, R. (2011) "Wet-bulb temperature from relative humidity and air temperature",
    J. Appl. Meteor. Climatol. 50, 2267-2269: within about 1 degC for RH 5-99 % and
    -20..50 degC at sea-level pressure. RH is clipped to 5-99 % (the fit's range).
    """
    t = np.asarray(temp_c, dtype=float)
    rh = np.clip(np.asarray(rh_pct, dtype=float), 5.0, 99.0)
    tw = (
        t * np.arctan(0.151977 * np.sqrt(rh + 8.313659))
        + np.arctan(t + rh)
        - np.arctan(rh - 1.676331)
        + 0.00391838 * rh**1.5 * np.arctan(0.023101 * rh)
        - 4.686035
    )
    return np.minimum(tw, t)


def _with_wetbulb(frame: pd.DataFrame) -> pd.DataFrame:
    frame[WETBULB_C] = wetbulb_stull_c(frame[TEMP_C].to_numpy(), frame[RH_PCT].to_numpy())
    return frame


def read_openmeteo(path, gap_policy: GapPolicy | None = None) -> pd.DataFrame:
    """Open-Meteo historical-API JSON (hourly ``temperature_2m``, ``relative_humidity_2m``).

    ``hourly.time`` is local time at the *fixed* offset ``utc_offset_seconds`` (the
    offset at download time, no DST): UTC = time - offset.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except json.JSONDecodeError as exc:
        raise DataError(path, f"not valid JSON: {exc}") from None
    if "utc_offset_seconds" not in doc:
        raise DataError(path, "missing 'utc_offset_seconds': cannot convert local times to UTC")
    hourly = doc.get("hourly")
    if not isinstance(hourly, dict):
        raise DataError(path, "missing 'hourly' block")
    require_columns(hourly.keys(), ["time", "temperature_2m", "relative_humidity_2m"], path)
    n = len(hourly["time"])
    for key in ("temperature_2m", "relative_humidity_2m"):
        if len(hourly[key]) != n:
            raise DataError(path, f"hourly.{key} has {len(hourly[key])} values for {n} times", key)
    units = doc.get("hourly_units", {})
    if units.get("temperature_2m", "\u00b0C") not in ("\u00b0C", "degC", "C"):
        raise DataError(path, f"temperature unit {units['temperature_2m']!r}; request Celsius", "temperature_2m")
    local = pd.to_datetime(pd.Series(hourly["time"]), errors="coerce", format="ISO8601")
    if local.isna().any():
        i = int(np.flatnonzero(local.isna().to_numpy())[0])
        raise DataError(path, f"unparseable time {hourly['time'][i]!r}", "hourly.time", i + 1)
    idx = pd.DatetimeIndex(local - pd.Timedelta(seconds=int(doc["utc_offset_seconds"]))).tz_localize("UTC")
    raw = pd.DataFrame({"temperature_2m": hourly["temperature_2m"], "relative_humidity_2m": hourly["relative_humidity_2m"]})
    frame = pd.DataFrame(
        {TEMP_C: to_numeric(raw, "temperature_2m", path, 1).to_numpy(), RH_PCT: to_numeric(raw, "relative_humidity_2m", path, 1).to_numpy()},
        index=idx.rename("timestamp"),
    )
    # "row" for JSON is the 1-based position in the hourly arrays.
    return _with_wetbulb(finalise(frame, path, _RANGES, gap_policy=gap_policy, rows=np.arange(n) + 1))


def read_epw(path, year: int | None = None, gap_policy: GapPolicy | None = None) -> pd.DataFrame:
    """EnergyPlus weather file via ``pvlib.iotools.read_epw``.

    EPW rows are hour-ending in local standard time; TMY files mix years by month, so
    ``year`` (default: the first row's year) coerces them onto one calendar year. A
    typical year has no 29 February: in a leap year that day is filled from the 28th
    (the default gap policy allows one day, reported in ``attrs['filled']``).
    """
    import pvlib

    path = Path(path)
    try:
        data, meta = pvlib.iotools.read_epw(str(path), coerce_year=year)
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except Exception as exc:  # pvlib raises plain ValueError/IndexError on malformed files
        raise DataError(path, f"not a readable EPW file: {exc}") from None
    if year is None:
        data, meta = pvlib.iotools.read_epw(str(path), coerce_year=int(data["year"].iloc[0]))
    frame = pd.DataFrame({TEMP_C: data["temp_air"].to_numpy(dtype=float), RH_PCT: data["relative_humidity"].to_numpy(dtype=float)},
                         index=data.index.tz_convert("UTC").rename("timestamp"))
    frame.attrs["location"] = {"city": meta.get("city"), "latitude": meta.get("latitude"), "longitude": meta.get("longitude")}
    # EPW marks missing dry-bulb as 99.9 and RH as 999 (EnergyPlus Auxiliary Programs, EPW format).
    frame = frame.mask((frame[TEMP_C] >= 99.9) | (frame[RH_PCT] >= 999))
    gap_policy = gap_policy or GapPolicy(max_fill_h=24.0)
    return _with_wetbulb(finalise(frame, path, _RANGES, gap_policy=gap_policy, rows=np.arange(len(frame)) + 9))


def read_canonical_weather(path, gap_policy: GapPolicy | None = None) -> pd.DataFrame:
    """Coolshift's plain format: ``timestamp,temp_c,rh_pct``."""
    path = Path(path)
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    if "temp_f" in df.columns or "temp_k" in df.columns:
        raise DataError(path, "wrong unit: the canonical column is temp_c (degrees Celsius)")
    require_columns(df.columns, ["timestamp", TEMP_C, RH_PCT], path)
    idx = parse_timestamps(df["timestamp"], path, "timestamp")
    frame = pd.DataFrame({TEMP_C: to_numeric(df, TEMP_C, path).to_numpy(), RH_PCT: to_numeric(df, RH_PCT, path).to_numpy()}, index=idx)
    return _with_wetbulb(finalise(frame, path, _RANGES, gap_policy=gap_policy))


WEATHER_FORMATS = {"openmeteo": read_openmeteo, "epw": read_epw, "canonical": read_canonical_weather}


def sniff_weather_format(path) -> str:
    path = Path(path)
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as fh:
            head = fh.read(512)
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    if head.lstrip().startswith("{"):
        return "openmeteo"
    if head.startswith("LOCATION,"):
        return "epw"
    first = head.splitlines()[0] if head else ""
    if "timestamp" in first and TEMP_C in first:
        return "canonical"
    raise DataError(path, f"unrecognised weather file (header {first[:80]!r}); expected EPW, Open-Meteo JSON or timestamp,temp_c,rh_pct")


def read_weather(path, format: str = "auto", gap_policy: GapPolicy | None = None, year: int | None = None) -> pd.DataFrame:
    path = Path(path)
    fmt = sniff_weather_format(path) if format == "auto" else format
    if fmt not in WEATHER_FORMATS:
        raise DataError(path, f"unknown weather format {fmt!r}; choose from {sorted(WEATHER_FORMATS)} or auto")
    frame = read_epw(path, year=year, gap_policy=gap_policy) if fmt == "epw" else WEATHER_FORMATS[fmt](path, gap_policy=gap_policy)
    frame.attrs.update({"source": str(path), "format": fmt})
    return frame
