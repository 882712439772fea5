"""Grid carbon-intensity readers: one per real format, all returning the same frame.

The canonical frame has a UTC ``DatetimeIndex`` named ``timestamp`` at the file's own
step and one column ``gco2_per_kwh`` (grams CO2-equivalent per kWh). Which reader runs
is sniffed from the header unless ``format`` names one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from coolshift.io.checks import (
    CARBON_RANGE_GCO2_PER_KWH,
    DataError,
    GapPolicy,
    finalise,
    parse_timestamps,
    read_header,
    require_columns,
    to_numeric,
)
from coolshift.schema import CARBON_GCO2_PER_KWH

__all__ = [
    "IPCC_LIFECYCLE_GCO2_PER_KWH",
    "CARBON_FORMATS",
    "read_carbon",
    "read_carbon_forecast",
    "intensity_from_mix",
    "sniff_carbon_format",
]

# Life-cycle emission factors by EIA-930 fuel code, gCO2eq/kWh: IPCC AR5 WG3 (2014)
# Annex III Table A.III.2 medians (wind onshore 11, solar PV utility 48 / rooftop 41 ->
# 41 as used for EIA data by SustainDC, hydro 24, nuclear 12, gas CC 490, coal 820,
# biomass 230 for "other"); oil 650 is the value that reproduces the SustainDC `avg_CI`
# column exactly (least-squares fit, see data/PROVENANCE.md).
IPCC_LIFECYCLE_GCO2_PER_KWH: dict[str, float] = {
    "WND": 11.0, "SUN": 41.0, "WAT": 24.0, "OIL": 650.0, "NG": 490.0, "COL": 820.0, "NUC": 12.0, "OTH": 230.0,
}

_EMAPS_TIME = "Datetime (UTC)"
_EMAPS_COLS = {
    "direct": "Carbon Intensity gCO\u2082eq/kWh (direct)",
    "lca": "Carbon Intensity gCO\u2082eq/kWh (LCA)",
}
_RANGES = {CARBON_GCO2_PER_KWH: (CARBON_RANGE_GCO2_PER_KWH, "gCO2/kWh")}


def intensity_from_mix(generation_mwh: pd.DataFrame, factors_gco2_per_kwh: Mapping[str, float]) -> pd.Series:
    """Generation-weighted average intensity [gCO2/kWh] from generation by fuel [MWh].

    Production-based: imports and exports are ignored, as in the EIA-930 data. Negative
    net generation (pumped storage, station load) is treated as zero output.
    """
    fuels = [f for f in factors_gco2_per_kwh if f in generation_mwh.columns]
    gen = generation_mwh[fuels].clip(lower=0.0)
    total = gen.sum(axis=1, min_count=1)
    weighted = (gen * pd.Series(factors_gco2_per_kwh)[fuels]).sum(axis=1, min_count=1)
    return (weighted / total.where(total > 0)).rename(CARBON_GCO2_PER_KWH)


def _read_csv(path: Path, **kw) -> pd.DataFrame:
    try:
        return pd.read_csv(path, encoding="utf-8-sig", dtype=str, keep_default_na=False, na_values=[""], **kw)
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(path, f"not a readable CSV: {exc}") from None


def read_eia930(path, factors_gco2_per_kwh: Mapping[str, float] | None = None, gap_policy: GapPolicy | None = None) -> pd.DataFrame:
    """EIA-930 hourly net generation by fuel (MWh) -> intensity from the mix.

    Rows where every value is empty are gaps (filled or rejected by ``gap_policy``).
    The file's own ``avg_CI`` is kept as ``gco2_per_kwh_file`` for comparison.
    """
    path = Path(path)
    factors = dict(factors_gco2_per_kwh or IPCC_LIFECYCLE_GCO2_PER_KWH)
    df = _read_csv(path)
    require_columns(df.columns, ["timestamp"], path)
    if not any(f in df.columns for f in factors):
        raise DataError(path, f"no generation-by-fuel columns; expected some of {sorted(factors)}")
    idx = parse_timestamps(df["timestamp"], path, "timestamp")
    gen = pd.DataFrame({f: to_numeric(df, f, path) for f in factors if f in df.columns})
    gen.index = idx
    negative = (gen < -0.05 * gen.abs().sum(axis=1).to_numpy()[:, None]).to_numpy()
    # Small negatives are normal (pumped storage); a large negative share means bad data.
    if negative.any():
        r, c = np.argwhere(negative)[0]
        raise DataError(path, f"implausible negative generation {gen.iat[r, c]:g} MWh", gen.columns[c], int(r) + 2)
    out = intensity_from_mix(gen, factors).to_frame()
    if "avg_CI" in df.columns:
        out["gco2_per_kwh_file"] = to_numeric(df, "avg_CI", path).to_numpy()
    return finalise(out, path, _RANGES, gap_policy=gap_policy)


def read_electricitymaps(path, column: str = "lca", gap_policy: GapPolicy | None = None) -> pd.DataFrame:
    """Electricity Maps hourly export; ``column`` is ``direct`` (operational) or ``lca``."""
    path = Path(path)
    if column not in _EMAPS_COLS:
        raise DataError(path, f"column must be one of {sorted(_EMAPS_COLS)}, not {column!r}")
    df = _read_csv(path)
    require_columns(df.columns, [_EMAPS_TIME, _EMAPS_COLS[column]], path)
    idx = parse_timestamps(df[_EMAPS_TIME], path, _EMAPS_TIME, assume_utc=True)
    out = pd.DataFrame({CARBON_GCO2_PER_KWH: to_numeric(df, _EMAPS_COLS[column], path).to_numpy()}, index=idx)
    if "Data Estimated" in df.columns:
        out["estimated"] = (df["Data Estimated"].str.lower() == "true").to_numpy().astype(float)
    return finalise(out, path, _RANGES, gap_policy=gap_policy)


def read_watttime(path, gap_policy: GapPolicy | None = None) -> pd.DataFrame:
    """WattTime MOER actuals (``time`` + one region column, gCO2/kWh, naive UTC).

    A *marginal* signal: do not mix it with average intensities in one study.
    """
    path = Path(path)
    df = _read_csv(path)
    require_columns(df.columns, ["time"], path)
    value_cols = [c for c in df.columns if c != "time"]
    if len(value_cols) != 1:
        raise DataError(path, f"expected one region column beside 'time', found {value_cols}")
    idx = parse_timestamps(df["time"], path, "time", assume_utc=True)
    out = pd.DataFrame({CARBON_GCO2_PER_KWH: to_numeric(df, value_cols[0], path).to_numpy()}, index=idx)
    out.attrs["signal"] = "marginal"
    return finalise(out, path, _RANGES, gap_policy=gap_policy)


def read_lwa(path, gap_policy: GapPolicy | None = None) -> pd.DataFrame:
    """Let's Wait Awhile (ENTSO-E) ``Time,Carbon Intensity``; naive stamps are UTC.

    Mixed 30/15-minute steps are averaged onto the nominal (most common) step.
    """
    path = Path(path)
    df = _read_csv(path)
    require_columns(df.columns, ["Time", "Carbon Intensity"], path)
    idx = parse_timestamps(df["Time"], path, "Time", assume_utc=True)
    out = pd.DataFrame({CARBON_GCO2_PER_KWH: to_numeric(df, "Carbon Intensity", path).to_numpy()}, index=idx)
    return finalise(out, path, _RANGES, gap_policy=gap_policy)


def read_canonical_carbon(path, gap_policy: GapPolicy | None = None) -> pd.DataFrame:
    """Coolshift's plain format: ``timestamp,gco2_per_kwh`` (ISO 8601 with offset or Z)."""
    path = Path(path)
    df = _read_csv(path)
    if "kgco2_per_kwh" in df.columns or "gco2_per_mwh" in df.columns:
        raise DataError(path, "wrong unit: the canonical column is gco2_per_kwh (grams per kWh)")
    require_columns(df.columns, ["timestamp", CARBON_GCO2_PER_KWH], path)
    idx = parse_timestamps(df["timestamp"], path, "timestamp")
    out = pd.DataFrame({CARBON_GCO2_PER_KWH: to_numeric(df, CARBON_GCO2_PER_KWH, path).to_numpy()}, index=idx)
    return finalise(out, path, _RANGES, gap_policy=gap_policy)


def read_carbon_forecast(path) -> pd.DataFrame:
    """Issued forecasts (WattTime style): ``request_time, forecast_time, <region>``.

    Returns a long frame with UTC ``request_time``, ``forecast_time``, ``gco2_per_kwh``.
    """
    path = Path(path)
    df = _read_csv(path)
    require_columns(df.columns, ["request_time", "forecast_time"], path)
    value_cols = [c for c in df.columns if c not in ("request_time", "forecast_time")]
    if len(value_cols) != 1:
        raise DataError(path, f"expected one value column, found {value_cols}")
    out = pd.DataFrame(
        {
            "request_time": parse_timestamps(df["request_time"], path, "request_time", assume_utc=True),
            "forecast_time": parse_timestamps(df["forecast_time"], path, "forecast_time", assume_utc=True),
            CARBON_GCO2_PER_KWH: to_numeric(df, value_cols[0], path).to_numpy(),
        }
    )
    lo, hi = CARBON_RANGE_GCO2_PER_KWH
    bad = ~out[CARBON_GCO2_PER_KWH].between(lo, hi) & out[CARBON_GCO2_PER_KWH].notna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(path, f"value {out[CARBON_GCO2_PER_KWH].iat[i]:g} outside {lo:g}..{hi:g} gCO2/kWh", value_cols[0], i + 2)
    if (out["forecast_time"] < out["request_time"]).any():
        i = int(np.flatnonzero((out["forecast_time"] < out["request_time"]).to_numpy())[0])
        raise DataError(path, "forecast_time before request_time", "forecast_time", i + 2)
    return out


CARBON_FORMATS = {
    "eia930": read_eia930,
    "electricitymaps": read_electricitymaps,
    "watttime": read_watttime,
    "lwa": read_lwa,
    "canonical": read_canonical_carbon,
}


def sniff_carbon_format(path) -> str:
    """Name the reader for a file from its header line."""
    path = Path(path)
    header = read_header(path)
    cols = set(header)
    if {"request_time", "forecast_time"} <= cols:
        raise DataError(path, "this is an issued-forecast file: read it with read_carbon_forecast (--carbon-forecast)")
    if "timestamp" in cols and {"NG", "COL"} <= cols:
        return "eia930"
    if _EMAPS_TIME in cols:
        return "electricitymaps"
    if {"Time", "Carbon Intensity"} <= cols:
        return "lwa"
    if "timestamp" in cols and CARBON_GCO2_PER_KWH in cols:
        return "canonical"
    if header and header[0] == "time" and len(header) == 2:
        return "watttime"
    raise DataError(
        path, f"unrecognised carbon-intensity header {header}; expected one of {sorted(CARBON_FORMATS)} "
        "(canonical: timestamp,gco2_per_kwh)"
    )


def read_carbon(path, format: str = "auto", column: str | None = None, gap_policy: GapPolicy | None = None) -> pd.DataFrame:
    """Read any supported carbon-intensity file into the canonical frame."""
    path = Path(path)
    fmt = sniff_carbon_format(path) if format == "auto" else format
    if fmt not in CARBON_FORMATS:
        raise DataError(path, f"unknown carbon format {fmt!r}; choose from {sorted(CARBON_FORMATS)} or auto")
    kwargs = {"gap_policy": gap_policy}
    if fmt == "electricitymaps" and column:
        kwargs["column"] = column
    frame = CARBON_FORMATS[fmt](path, **kwargs)
    frame.attrs.update({"source": str(path), "format": fmt})
    return frame
