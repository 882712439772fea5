"""Grid carbon-intensity readers: one per real format, all returning the same frame.

The canonical frame has a UTC ``DatetimeIndex`` named ``timestamp`` at the file's own
step and one column ``gco2_per_kwh`` (grams CO2-equivalent per kWh). Which reader runs
is sniffed from the header unless ``format`` names one.
"""

from __future__ import annotations

import re
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
    read_csv_text,
    read_header,
    require_columns,
    runs_of,
    to_numeric,
    unrecognised_header,
)
from coolshift.schema import CARBON_GCO2_PER_KWH

__all__ = [
    "IPCC_LIFECYCLE_GCO2_PER_KWH",
    "EMAPS_DEFAULT_COLUMN",
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
# The Electricity Maps default is the life-cycle (LCA) column, chosen, not inherited:
# * it is Electricity Maps' own headline signal ("The carbon-intensity factors used by
#   Electricity Maps are computed through life-cycle analysis"; direct/operational factors
#   are offered "for some commercial purposes": electricitymaps-contrib wiki, "Emission
#   factors") and its API's default (emissionFactorType=lifecycle), which Coolshift's live
#   source (coolshift.io.live.ElectricityMapsSource) uses too: plans, forecasts and history
#   stay on one basis;
# * every other average-intensity reader here is life-cycle (EIA-930 from the mix with IPCC
#   AR5 life-cycle medians, Let's Wait Awhile with IPCC SRREN medians), so swapping the
#   bundled EIA file for an Electricity Maps one changes the data, not the accounting basis;
# * life-cycle intensity of a real grid is >= ~11 g/kWh, which the kg/kWh unit check relies on.
# Scope 2 inventories under the GHG Protocol (Scope 2 Guidance, 2015) count generation
# emissions only, i.e. the direct column: set `column: direct` on the data source for them.
EMAPS_DEFAULT_COLUMN = "lca"
# What each reader's intensity means, shown by `coolshift validate` beside the file.
_BASIS = {
    "eia930": "average, life-cycle (IPCC AR5 medians over the EIA-930 fuel mix, production-based)",
    "electricitymaps:lca": "average, life-cycle (Electricity Maps LCA column, consumption-based)",
    "electricitymaps:direct": "average, direct/operational (Electricity Maps direct column, consumption-based)",
    "watttime": "marginal (WattTime MOER)",
    "lwa": "average, life-cycle (Let's Wait Awhile, IPCC SRREN medians)",
    "canonical": "as given in the file (gco2_per_kwh)",
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
    return read_csv_text(path, **kw)


# --- unit plausibility ------------------------------------------------------------------------
# What the numbers alone can and cannot tell:
# * kgCO2/kWh (= tCO2/MWh) read as g/kWh is 1000x too small. Life-cycle intensity cannot be
#   below the lowest life-cycle factor of any generator, ~11-12 gCO2eq/kWh (wind, nuclear:
#   IPCC AR5 WG3 Annex III Table A.III.2 medians), and the cleanest grids' annual means are
#   ~10-40 g/kWh (Electricity Maps / Ember country data: Iceland, Norway, Sweden, Quebec,
#   life-cycle). A median below 2 g/kWh is therefore kg/kWh (0.1-1.2 for real grids). Only a
#   *direct* (operational) intensity of an all-hydro/nuclear grid can really be that low (e.g.
#   Quebec); such data are refused too: use the life-cycle column.
# * lb/MWh is 2.2046x g/kWh and overlaps it: a clean grid in lb/MWh (say 400) looks like a
#   dirty one in g/kWh. It is caught only where it cannot be g/kWh: a median above 1,100
#   (no grid's median exceeds the direct emissions of a lignite plant, ~1,000-1,100 g/kWh,
#   IPCC AR5 Annex III; the dirtiest national grids average ~700-1,000 g/kWh, Ember Global
#   Electricity Review 2023) or a header naming lb/pounds. WattTime MOER from its API is in
#   lbs/MWh: the `watttime` reader expects files already converted to g/kWh.
CARBON_KG_MEDIAN_MAX = 2.0
CARBON_MEDIAN_MAX = 1100.0
# A run of cells in 0 < v < 2 in a series whose median is at least 50 g/kWh is kg/kWh mixed
# into g/kWh data (a life-cycle intensity cannot fall below ~11; zero is a real marginal MOER).
CARBON_KG_CELL_MAX, CARBON_KG_RUN_MEDIAN_MIN = 2.0, 50.0
_LB_WORDS = re.compile(r"(?i)(?<![a-z])(lbs?|pounds?)(?![a-z])|lbs?_|_lbs?")
_KG_WORDS = re.compile(r"(?i)kg ?co2|kg_?per|t ?co2 ?/ ?mwh|tco2_per_mwh|g ?co2e?q? ?/ ?mwh|gco2_per_mwh")


def check_carbon_units(values: pd.Series, path, column: str, rows=None, header: str | None = None) -> None:
    """Refuse intensities whose unit cannot be gCO2/kWh (kg/kWh, lb/MWh): see the notes above.

    ``values`` is indexed by timestamp; ``rows`` are the file's line numbers; ``header`` is
    the value column's own name when it may carry a unit.
    """
    if header is not None:
        if _LB_WORDS.search(header):
            raise DataError(path, "the column is in pounds (lb/MWh): convert to gCO2/kWh (x 0.4536) or set `scale: 0.4536` "
                                  "on the data source", column, 1)
        if _KG_WORDS.search(header):
            raise DataError(path, "the column is not in gCO2/kWh (kg/kWh, t/MWh or g/MWh by its name): convert it or set "
                                  "`scale` on the data source", column, 1)
    v = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    ok = ~np.isnan(v)
    if ok.sum() < 2:
        return
    med = float(np.median(v[ok]))
    rows = np.arange(len(v)) + 2 if rows is None else np.asarray(rows)
    if med < CARBON_KG_MEDIAN_MAX:
        raise DataError(path, f"median intensity {med:.3g} is below {CARBON_KG_MEDIAN_MAX:g} gCO2/kWh, lower than any grid's "
                              "life-cycle intensity (>= ~11): the values look like kgCO2/kWh (t/MWh); multiply by 1000 or "
                              "set `scale: 1000` on the data source", column)
    if med > CARBON_MEDIAN_MAX:
        raise DataError(path, f"median intensity {med:,.0f} is above {CARBON_MEDIAN_MAX:,.0f} gCO2/kWh, dirtier than any grid: "
                              "lb/MWh (x 0.4536 to g/kWh) or another unit?", column)
    if med >= CARBON_KG_RUN_MEDIAN_MIN:
        small = ok & (v > 0) & (v < CARBON_KG_CELL_MAX)
        spans = runs_of(small)
        if spans:
            where = "; ".join(f"rows {rows[a]}-{rows[b - 1]} ({values.index[a].isoformat()}, {b - a} value(s))" for a, b in spans[:3])
            raise DataError(path, f"{int(small.sum())} value(s) below {CARBON_KG_CELL_MAX:g} in a series whose median is "
                                  f"{med:,.0f} gCO2/kWh: kgCO2/kWh mixed into g/kWh? {where}", column, int(rows[spans[0][0]]))


def _finish(out: pd.DataFrame, path: Path, gap_policy, column: str, header: str | None = None, scale: float = 1.0) -> pd.DataFrame:
    """Scale to g/kWh, refuse impossible units, then the shared checks and gap filling."""
    out[CARBON_GCO2_PER_KWH] = out[CARBON_GCO2_PER_KWH] * scale
    check_carbon_units(out[CARBON_GCO2_PER_KWH], path, column, header=header)
    return finalise(out, path, _RANGES, gap_policy=gap_policy)


def read_eia930(path, factors_gco2_per_kwh: Mapping[str, float] | None = None, gap_policy: GapPolicy | None = None,
                scale: float = 1.0) -> pd.DataFrame:
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
    return _finish(out, path, gap_policy, CARBON_GCO2_PER_KWH, scale=scale)


def read_electricitymaps(path, column: str = EMAPS_DEFAULT_COLUMN, gap_policy: GapPolicy | None = None,
                         scale: float = 1.0) -> pd.DataFrame:
    """Electricity Maps hourly export; ``column`` is ``lca`` (life-cycle, the default: see
    :data:`EMAPS_DEFAULT_COLUMN`) or ``direct`` (operational)."""
    path = Path(path)
    if column not in _EMAPS_COLS:
        raise DataError(path, f"column must be one of {sorted(_EMAPS_COLS)}, not {column!r}")
    df = _read_csv(path)
    require_columns(df.columns, [_EMAPS_TIME, _EMAPS_COLS[column]], path)
    idx = parse_timestamps(df[_EMAPS_TIME], path, _EMAPS_TIME, assume_utc=True)
    out = pd.DataFrame({CARBON_GCO2_PER_KWH: to_numeric(df, _EMAPS_COLS[column], path).to_numpy()}, index=idx)
    if "Data Estimated" in df.columns:
        out["estimated"] = (df["Data Estimated"].str.lower() == "true").to_numpy().astype(float)
    out = _finish(out, path, gap_policy, _EMAPS_COLS[column], _EMAPS_COLS[column], scale)
    out.attrs.update({"column": _EMAPS_COLS[column], "basis": _BASIS[f"electricitymaps:{column}"]})
    return out


def read_watttime(path, gap_policy: GapPolicy | None = None, scale: float = 1.0) -> pd.DataFrame:
    """WattTime MOER actuals (``time`` + one region column, gCO2/kWh, naive UTC).

    A *marginal* signal: do not mix it with average intensities in one study.
    """
    path = Path(path)
    df = _read_csv(path)
    require_columns(df.columns, ["time"], path)
    value_cols = [c for c in df.columns if c != "time"]
    if len(value_cols) != 1:
        raise DataError(path, f"expected one region column beside 'time', found {len(value_cols)}", row=1)
    idx = parse_timestamps(df["time"], path, "time", assume_utc=True)
    out = pd.DataFrame({CARBON_GCO2_PER_KWH: to_numeric(df, value_cols[0], path).to_numpy()}, index=idx)
    out = _finish(out, path, gap_policy, value_cols[0], value_cols[0], scale)
    out.attrs["signal"] = "marginal"
    return out


def read_lwa(path, gap_policy: GapPolicy | None = None, scale: float = 1.0) -> pd.DataFrame:
    """Let's Wait Awhile (ENTSO-E) ``Time,Carbon Intensity``; naive stamps are UTC.

    Mixed 30/15-minute steps are averaged onto the nominal (most common) step.
    """
    path = Path(path)
    df = _read_csv(path)
    require_columns(df.columns, ["Time", "Carbon Intensity"], path)
    idx = parse_timestamps(df["Time"], path, "Time", assume_utc=True)
    out = pd.DataFrame({CARBON_GCO2_PER_KWH: to_numeric(df, "Carbon Intensity", path).to_numpy()}, index=idx)
    return _finish(out, path, gap_policy, "Carbon Intensity", scale=scale)


def read_canonical_carbon(path, gap_policy: GapPolicy | None = None, scale: float = 1.0) -> pd.DataFrame:
    """Coolshift's plain format: ``timestamp,gco2_per_kwh`` (ISO 8601 with offset or Z)."""
    path = Path(path)
    df = _read_csv(path)
    if "kgco2_per_kwh" in df.columns or "gco2_per_mwh" in df.columns:
        raise DataError(path, "wrong unit: the canonical column is gco2_per_kwh (grams per kWh)")
    require_columns(df.columns, ["timestamp", CARBON_GCO2_PER_KWH], path)
    idx = parse_timestamps(df["timestamp"], path, "timestamp")
    out = pd.DataFrame({CARBON_GCO2_PER_KWH: to_numeric(df, CARBON_GCO2_PER_KWH, path).to_numpy()}, index=idx)
    return _finish(out, path, gap_policy, CARBON_GCO2_PER_KWH, scale=scale)


def read_carbon_forecast(path) -> pd.DataFrame:
    """Issued forecasts (WattTime style): ``request_time, forecast_time, <region>``.

    Returns a long frame with UTC ``request_time``, ``forecast_time``, ``gco2_per_kwh``.
    """
    path = Path(path)
    df = _read_csv(path)
    require_columns(df.columns, ["request_time", "forecast_time"], path)
    value_cols = [c for c in df.columns if c not in ("request_time", "forecast_time")]
    if len(value_cols) != 1:
        raise DataError(path, f"expected one value column beside request_time and forecast_time, found {len(value_cols)}", row=1)
    out = pd.DataFrame(
        {
            "request_time": parse_timestamps(df["request_time"], path, "request_time", assume_utc=True),
            "forecast_time": parse_timestamps(df["forecast_time"], path, "forecast_time", assume_utc=True),
            CARBON_GCO2_PER_KWH: to_numeric(df, value_cols[0], path).to_numpy(),
        }
    )
    check_carbon_units(out.set_index("forecast_time")[CARBON_GCO2_PER_KWH], path, value_cols[0], header=value_cols[0])
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
    raise unrecognised_header(path, "carbon-intensity", header, f"one of {sorted(CARBON_FORMATS)} (canonical: timestamp,gco2_per_kwh)")


def read_carbon(path, format: str = "auto", column: str | None = None, gap_policy: GapPolicy | None = None,
                scale: float = 1.0) -> pd.DataFrame:
    """Read any supported carbon-intensity file into the canonical frame.

    ``scale`` converts the file's values to gCO2/kWh (a data source's ``scale``, e.g. 1000
    for kg/kWh) before the range and unit checks, so converted data pass them.
    """
    path = Path(path)
    fmt = sniff_carbon_format(path) if format == "auto" else format
    if fmt not in CARBON_FORMATS:
        raise DataError(path, f"unknown carbon format {fmt!r}; choose from {sorted(CARBON_FORMATS)} or auto")
    kwargs = {"gap_policy": gap_policy, "scale": scale}
    if fmt == "electricitymaps" and column:
        kwargs["column"] = column
    frame = CARBON_FORMATS[fmt](path, **kwargs)
    frame.attrs.update({"source": str(path), "format": fmt})
    frame.attrs.setdefault("basis", _BASIS.get(fmt, ""))
    return frame
