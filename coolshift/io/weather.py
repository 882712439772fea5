"""Weather readers (EPW, Open-Meteo JSON, canonical CSV) and derived wet-bulb temperature.

Canonical frame: UTC ``timestamp`` index, ``temp_c`` (dry-bulb, degC), ``rh_pct``
(relative humidity, %) and ``wetbulb_c`` (degC, derived).
"""

from __future__ import annotations

import io
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
    cell,
    parse_timestamps,
    read_csv_text,
    read_text,
    require_columns,
    runs_of,
    to_numeric,
)
from coolshift.schema import RH_PCT, TEMP_C, WETBULB_C

__all__ = ["wetbulb_stull_c", "read_epw", "read_openmeteo", "read_canonical_weather", "read_weather", "WEATHER_FORMATS",
           "temperature_bounds_c", "check_weather_units"]

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


# --- plausibility by latitude and season -----------------------------------------------------
# An envelope, not a climatology: at each |latitude| knot, a ceiling for the warmest and for
# the coldest month and a floor for the year [degC], each set beyond the records known in
# that band, plus MARGIN_C. Anchors (WMO World Weather and Climate Extremes Archive,
# https://wmo.asu.edu, unless noted): world high 56.7 Death Valley 36.5N (Jul 1913; the
# reliable 54.4 of 2020-21 also there); Kuwait Mitribah 53.9 (29N); Australia 50.7
# Oodnadatta (27.6S, Jan 1960, BoM); Canada 49.6 Lytton (50.2N, Jun 2021, ECCC); Arctic
# 38.0 Verkhoyansk (67.5N, Jun 2020); Antarctic 18.3 Esperanza (63.4S, Feb 2020); world low
# -89.2 Vostok (78.5S); northern low -69.6 Klinck, Greenland (72.3N); Oymyakon -67.7
# (63.5N); Peter Sinks, Utah -56.3 (41.9N, Utah Climate Center). Winter ceilings sit above
# the warmest winter-month readings of each band (e.g. January: Death Valley ~31, Los
# Angeles 35 in Santa Ana winds, both ~34-36N; Chinook Montana ~26 at 47N; zonda/Chaco
# winter heat ~38-40 at 25-33S). The ceiling moves with the month as a cosine between the
# coldest (Jan N / Jul S) and warmest (Jul N / Jan S) month. Its purpose is units: a winter
# day in degF (San Jose in January: 38-60 "degC") exceeds it, a real one never does.
_LAT_KNOTS = (0, 10, 20, 30, 40, 50, 60, 70, 80, 90)
_T_MAX_WARMEST = (50, 52, 54, 56, 56, 52, 45, 40, 35, 30)
_T_MAX_COLDEST = (48, 46, 44, 40, 34, 28, 20, 15, 10, 10)
_T_MIN_YEAR = (-20, -25, -35, -50, -60, -60, -70, -72, -90, -90)
MARGIN_C = 3.0
# Relative humidity in percent is never <= 1 % for a whole day anywhere (the lowest single
# readings, in hyper-arid deserts, are ~1 %: WMO archive); a day of values in 0..1 is a fraction.
RH_FRACTION_RUN_H = 24.0


def temperature_bounds_c(latitude_deg: float, months) -> tuple[np.ndarray, np.ndarray]:
    """Plausible (floor, ceiling) outside air temperature [degC] at a latitude, per month 1-12."""
    lat = min(abs(float(latitude_deg)), 90.0)
    warm, cold = np.interp(lat, _LAT_KNOTS, _T_MAX_WARMEST), np.interp(lat, _LAT_KNOTS, _T_MAX_COLDEST)
    floor = np.interp(lat, _LAT_KNOTS, _T_MIN_YEAR)
    m = np.asarray(months, dtype=float)
    peak = 7.0 if latitude_deg >= 0 else 1.0
    w = (1.0 + np.cos(2.0 * np.pi * (m - peak) / 12.0)) / 2.0  # 1 in the warmest month, 0 in the coldest
    return np.full(m.shape, floor - MARGIN_C), cold + w * (warm - cold) + MARGIN_C


def _spans(rows, index, spans) -> str:
    return "; ".join(f"rows {rows[a]}-{rows[b - 1]} ({index[a]:%Y-%m-%d %H:%M} UTC, {b - a} value(s))" for a, b in spans[:3]) + (
        f"; and {len(spans) - 3} more run(s)" if len(spans) > 3 else "")


def check_weather_units(frame: pd.DataFrame, path, rows, latitude_deg: float | None, temp_label: str = TEMP_C,
                        rh_label: str = RH_PCT) -> None:
    """Refuse relative humidity given as a 0-1 fraction and temperatures implausible for the
    latitude and month (degF, kelvin); the error names the rows. ``frame`` is in file order."""
    rows = np.asarray(rows)
    idx = frame.index
    rh = frame[RH_PCT].to_numpy(dtype=float)
    ok = ~np.isnan(rh)
    if ok.sum() >= 3 and np.nanmax(rh) <= 1.0:
        raise DataError(path, f"every value is within 0-1 (max {np.nanmax(rh):g}): relative humidity looks like a 0-1 fraction; "
                              "give percent (x 100)", rh_label)
    if len(idx) > 1:
        step_h = abs(pd.Series(idx).diff().median() / pd.Timedelta("1h"))  # index units vary (s, us, ns)
        n = max(int(np.ceil(RH_FRACTION_RUN_H / max(step_h, 1e-9))), 3)
        spans = runs_of(ok & (rh <= 1.0), n)
        if spans:
            raise DataError(path, f"relative humidity <= 1 % for {RH_FRACTION_RUN_H:g} h or more: a 0-1 fraction among "
                                  f"percent values? {_spans(rows, idx, spans)}", rh_label, int(rows[spans[0][0]]))
    if latitude_deg is None:
        return
    t = frame[TEMP_C].to_numpy(dtype=float)
    lo, hi = temperature_bounds_c(latitude_deg, idx.month)
    with np.errstate(invalid="ignore"):
        high, low = t > hi, t < lo
    if high.any():
        spans = runs_of(high)
        a = spans[0][0]
        raise DataError(
            path, f"{int(high.sum())} value(s) above the plausible maximum for latitude {latitude_deg:g} in their month "
            f"(first: {t[a]:g} degC, limit {hi[a]:.0f} degC in {idx[a]:%B}): degF? ({t[a]:g} degF = {(t[a] - 32) / 1.8:.1f} degC) "
            f"{_spans(rows, idx, spans)}", temp_label, int(rows[a]))
    if low.any():
        spans = runs_of(low)
        a = spans[0][0]
        raise DataError(path, f"{int(low.sum())} value(s) below the plausible minimum {lo[a]:.0f} degC for latitude "
                              f"{latitude_deg:g}: {_spans(rows, idx, spans)}", temp_label, int(rows[a]))


def _with_wetbulb(frame: pd.DataFrame) -> pd.DataFrame:
    frame[WETBULB_C] = wetbulb_stull_c(frame[TEMP_C].to_numpy(), frame[RH_PCT].to_numpy())
    return frame


def _finish(frame: pd.DataFrame, path: Path, gap_policy, rows, latitude_deg, temp_label: str, rh_label: str) -> pd.DataFrame:
    """Unit plausibility on the file's own rows, then the shared checks, gap filling and wet-bulb."""
    check_weather_units(frame, path, rows, latitude_deg, temp_label, rh_label)
    return _with_wetbulb(finalise(frame, path, _RANGES, gap_policy=gap_policy, rows=rows))


def openmeteo_document(path: Path) -> dict:
    """An Open-Meteo JSON response as a dict; not JSON or not an object: a DataError naming the file (and line)."""
    try:
        doc = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise DataError(path, f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}", row=exc.lineno) from None
    if not isinstance(doc, dict):
        raise DataError(path, "expected a JSON object (Open-Meteo response) at the top level")
    return doc


def read_openmeteo(path, gap_policy: GapPolicy | None = None, latitude_deg: float | None = None) -> pd.DataFrame:
    """Open-Meteo historical-API JSON (hourly ``temperature_2m``, ``relative_humidity_2m``).

    ``hourly.time`` is local time at the *fixed* offset ``utc_offset_seconds`` (the
    offset at download time, no DST): UTC = time - offset. Temperatures are checked
    against the latitude (``latitude_deg``, else the file's own ``latitude``) and month.
    """
    path = Path(path)
    doc = openmeteo_document(path)
    offset = doc.get("utc_offset_seconds")
    if offset is None:
        raise DataError(path, "missing 'utc_offset_seconds': cannot convert local times to UTC")
    if isinstance(offset, bool) or not isinstance(offset, (int, float)) or not np.isfinite(offset) or abs(offset) > 14 * 3600:
        raise DataError(path, f"'utc_offset_seconds' must be a number of seconds within +-14 h, not {cell(offset)}", "utc_offset_seconds")
    hourly = doc.get("hourly")
    if not isinstance(hourly, dict):
        raise DataError(path, "missing 'hourly' block")
    require_columns(hourly.keys(), ["time", "temperature_2m", "relative_humidity_2m"], path)
    for key in ("time", "temperature_2m", "relative_humidity_2m"):
        if not isinstance(hourly[key], list):
            raise DataError(path, f"hourly.{key} must be a list", key)
    n = len(hourly["time"])
    for key in ("temperature_2m", "relative_humidity_2m"):
        if len(hourly[key]) != n:
            raise DataError(path, f"hourly.{key} has {len(hourly[key])} values for {n} times", key)
    units = doc.get("hourly_units", {})
    units = units if isinstance(units, dict) else {}
    if units.get("temperature_2m", "\u00b0C") not in ("\u00b0C", "degC", "C"):
        raise DataError(path, f"temperature unit {cell(units['temperature_2m'], 12)}; request Celsius", "temperature_2m")
    if units.get("relative_humidity_2m", "%") not in ("%", "percent"):
        raise DataError(path, f"humidity unit {cell(units['relative_humidity_2m'], 12)}; expected %", "relative_humidity_2m")
    times = pd.Series(hourly["time"], dtype=object)
    bad = ~times.map(lambda x: isinstance(x, str))
    local = pd.to_datetime(times.where(~bad), errors="coerce", format="ISO8601")
    if local.isna().any():
        i = int(np.flatnonzero(local.isna().to_numpy())[0])
        raise DataError(path, f"unparseable time {cell(hourly['time'][i])}", "hourly.time", i + 1)
    if local.dt.tz is not None:
        raise DataError(path, "hourly.time carries an offset; Open-Meteo times are local at utc_offset_seconds", "hourly.time")
    idx = pd.DatetimeIndex(local - pd.Timedelta(seconds=int(offset))).tz_localize("UTC")
    raw = pd.DataFrame({"temperature_2m": hourly["temperature_2m"], "relative_humidity_2m": hourly["relative_humidity_2m"]}, dtype=object)
    for key in raw.columns:  # numbers or null only (a nested list or a boolean is not a reading)
        odd = raw[key].map(lambda x: not (x is None or (isinstance(x, (int, float, str)) and not isinstance(x, bool))))
        if odd.any():
            i = int(np.flatnonzero(odd.to_numpy())[0])
            raise DataError(path, "not a number", key, i + 1)
    frame = pd.DataFrame(
        {TEMP_C: to_numeric(raw, "temperature_2m", path, 1).to_numpy(), RH_PCT: to_numeric(raw, "relative_humidity_2m", path, 1).to_numpy()},
        index=idx.rename("timestamp"),
    )
    lat = latitude_deg if latitude_deg is not None else _latitude(doc.get("latitude"))
    # "row" for JSON is the 1-based position in the hourly arrays.
    return _finish(frame, path, gap_policy, np.arange(n) + 1, lat, "temperature_2m", "relative_humidity_2m")


def _latitude(value) -> float | None:
    try:
        lat = float(value)
    except (TypeError, ValueError):
        return None
    return lat if -90.0 <= lat <= 90.0 else None


# EPW: 8 header lines, then one row per hour of 35 comma-separated fields (EnergyPlus
# Auxiliary Programs, "Weather Converter Program", EPW data format).
_EPW_HEADER_LINES, _EPW_FIELDS = 8, 35


def read_epw(path, year: int | None = None, gap_policy: GapPolicy | None = None, latitude_deg: float | None = None) -> pd.DataFrame:
    """EnergyPlus weather file via ``pvlib.iotools.read_epw``.

    EPW rows are hour-ending in local standard time; TMY files mix years by month, so
    ``year`` (default: the first row's year) coerces them onto one calendar year. A
    typical year has no 29 February: in a leap year that day is filled from the 28th
    (the default gap policy allows one day, reported in ``attrs['filled']``).
    """
    import pvlib

    path = Path(path)
    text = read_text(path)
    lines = text.splitlines()
    if len(lines) <= _EPW_HEADER_LINES:
        raise DataError(path, f"an EPW file has {_EPW_HEADER_LINES} header lines and then data; this one has {len(lines)} line(s)")
    for i, line in enumerate(lines[_EPW_HEADER_LINES:], _EPW_HEADER_LINES + 1):
        if line.strip() and line.count(",") + 1 < _EPW_FIELDS:
            raise DataError(path, f"EPW data row has {line.count(',') + 1} fields, expected {_EPW_FIELDS}", row=i)

    def parse(coerce_year):
        try:
            return pvlib.iotools.read_epw(io.StringIO(text), coerce_year=coerce_year)
        except Exception as exc:  # pvlib raises plain ValueError/IndexError on malformed files; its text may quote the file
            raise DataError(path, f"not a readable EPW file ({type(exc).__name__} while parsing)") from None

    data, meta = parse(year)
    if year is None:
        data, meta = parse(int(data["year"].iloc[0]))
    frame = pd.DataFrame({TEMP_C: data["temp_air"].to_numpy(dtype=float), RH_PCT: data["relative_humidity"].to_numpy(dtype=float)},
                         index=data.index.tz_convert("UTC").rename("timestamp"))
    frame.attrs["location"] = {"city": meta.get("city"), "latitude": meta.get("latitude"), "longitude": meta.get("longitude")}
    # EPW marks missing dry-bulb as 99.9 and RH as 999 (EnergyPlus Auxiliary Programs, EPW format).
    frame = frame.mask((frame[TEMP_C] >= 99.9) | (frame[RH_PCT] >= 999))
    gap_policy = gap_policy or GapPolicy(max_fill_h=24.0)
    lat = latitude_deg if latitude_deg is not None else _latitude(meta.get("latitude"))
    attrs = dict(frame.attrs)
    out = _finish(frame, path, gap_policy, np.arange(len(frame)) + _EPW_HEADER_LINES + 1, lat, "dry bulb temperature",
                  "relative humidity")
    out.attrs.update(attrs)
    return out


def read_canonical_weather(path, gap_policy: GapPolicy | None = None, latitude_deg: float | None = None) -> pd.DataFrame:
    """Coolshift's plain format: ``timestamp,temp_c,rh_pct``."""
    path = Path(path)
    df = read_csv_text(path)
    if "temp_f" in df.columns or "temp_k" in df.columns:
        raise DataError(path, "wrong unit: the canonical column is temp_c (degrees Celsius)")
    if "rh_frac" in df.columns or "rh" in df.columns:
        raise DataError(path, "the canonical humidity column is rh_pct (percent)")
    require_columns(df.columns, ["timestamp", TEMP_C, RH_PCT], path)
    idx = parse_timestamps(df["timestamp"], path, "timestamp")
    frame = pd.DataFrame({TEMP_C: to_numeric(df, TEMP_C, path).to_numpy(), RH_PCT: to_numeric(df, RH_PCT, path).to_numpy()}, index=idx)
    return _finish(frame, path, gap_policy, np.arange(len(frame)) + 2, latitude_deg, TEMP_C, RH_PCT)


WEATHER_FORMATS = {"openmeteo": read_openmeteo, "epw": read_epw, "canonical": read_canonical_weather}


def sniff_weather_format(path) -> str:
    """Name the reader for a weather file from its first characters."""
    path = Path(path)
    head = read_text(path)[:512]
    if head.lstrip().startswith("{"):
        return "openmeteo"
    if head.startswith("LOCATION,"):
        return "epw"
    first = head.splitlines()[0] if head else ""
    fields = [f.strip() for f in first.split(",")]
    if "timestamp" in fields and TEMP_C in fields:
        return "canonical"
    raise DataError(path, f"unrecognised weather file: its first line ({len(fields)} field(s)) is not an EPW LOCATION line, "
                          "a JSON object or a timestamp,temp_c,rh_pct header; expected EPW, Open-Meteo JSON or canonical CSV", row=1)


def read_weather(path, format: str = "auto", gap_policy: GapPolicy | None = None, year: int | None = None,
                 latitude_deg: float | None = None) -> pd.DataFrame:
    """Read any supported weather file; ``latitude_deg`` (the site's) enables the seasonal
    temperature check for files that carry no latitude of their own and overrides theirs."""
    path = Path(path)
    fmt = sniff_weather_format(path) if format == "auto" else format
    if fmt not in WEATHER_FORMATS:
        raise DataError(path, f"unknown weather format {fmt!r}; choose from {sorted(WEATHER_FORMATS)} or auto")
    if fmt == "epw":
        frame = read_epw(path, year=year, gap_policy=gap_policy, latitude_deg=latitude_deg)
    else:
        frame = WEATHER_FORMATS[fmt](path, gap_policy=gap_policy, latitude_deg=latitude_deg)
    frame.attrs.update({"source": str(path), "format": fmt})
    return frame
