"""Facility telemetry CSV (the schema in :mod:`coolshift.schema`), used to train models.

Columns: ``timestamp`` (ISO 8601 with offset), the site-wide columns in
``TELEMETRY_REQUIRED`` and, per zone, ``supply_setpoint_c__<zone>``,
``inlet_temp_c__<zone>``, ``zone_it_power_kw__<zone>``; per pool
``active_servers__<pool>`` is optional. Powers in kW (averages over the row's step),
temperatures in degC.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from coolshift.io.checks import (
    RH_RANGE_PCT, TEMP_RANGE_C, DataError, GapPolicy, finalise, parse_timestamps, read_csv_text, require_columns, runs_of, to_numeric,
)
from coolshift.schema import TELEMETRY_PER_ZONE, TELEMETRY_REQUIRED, col

__all__ = ["read_telemetry", "telemetry_columns"]

# A facility meter reading above 1 GW or a negative one is a unit or sensor error.
POWER_RANGE_KW = (0.0, 1.0e6)
# Indoor supply/inlet/chilled-water temperatures: 0-60 degC covers every sane reading.
INDOOR_RANGE_C = (0.0, 60.0)


def telemetry_columns(zones: list[str]) -> list[str]:
    return list(TELEMETRY_REQUIRED) + [col(q, z) for z in zones for q in TELEMETRY_PER_ZONE]


def _step(frame: pd.DataFrame) -> pd.Timedelta:
    """The median step between sorted stamps (one hour if there is none)."""
    d = pd.Series(frame.index.sort_values()).diff().dropna()
    d = d[d > pd.Timedelta(0)]
    return d.median() if len(d) else pd.Timedelta("1h")


def read_telemetry(path, zones: list[str] | None = None, gap_policy: GapPolicy | None = None) -> pd.DataFrame:
    """Read and validate a telemetry CSV; ``zones`` (from the site) makes per-zone columns required."""
    path = Path(path)
    df = read_csv_text(path)
    if any(c.endswith("_w") and c[:-2] + "_kw" in TELEMETRY_REQUIRED for c in df.columns):
        raise DataError(path, "power columns must be in kW (e.g. it_power_kw), not W")
    zones = zones or sorted({c.split("__", 1)[1] for c in df.columns if c.startswith("inlet_temp_c__")})
    needed = ["timestamp", *telemetry_columns(zones)]
    require_columns(df.columns, needed, path)
    idx = parse_timestamps(df["timestamp"], path, "timestamp")
    keep = [c for c in df.columns if c != "timestamp"]
    frame = pd.DataFrame({c: to_numeric(df, c, path).to_numpy() for c in keep}, index=idx)
    ranges = {}
    for c in keep:
        if c.endswith("_kw"):
            ranges[c] = (POWER_RANGE_KW, "kW")
        elif c.startswith("outside_temp_c"):
            ranges[c] = (TEMP_RANGE_C, "degC")
        elif c.endswith("_pct"):
            ranges[c] = (RH_RANGE_PCT, "%")
        elif c.startswith(("supply_setpoint_c", "inlet_temp_c", "chw_setpoint_c")):
            ranges[c] = (INDOOR_RANGE_C, "degC")
    for c in keep:
        if "rh" in c and c.endswith("_pct"):
            v = frame[c].to_numpy(dtype=float)
            ok = ~np.isnan(v)
            # percent RH never stays <= 1 for a day (see coolshift.io.weather); a day of 0-1 values is a fraction
            if ok.sum() >= 3 and (np.nanmax(v) <= 1.0 or runs_of(ok & (v <= 1.0), max(3, int(pd.Timedelta("1D") / _step(frame))))):
                raise DataError(path, "relative humidity within 0-1 for a day or more: a 0-1 fraction? give percent (x 100)", c)
    frame = finalise(frame, path, ranges, gap_policy=gap_policy)
    if (frame["facility_power_kw"] + 1e-6 < frame["it_power_kw"]).any():
        i = int(np.flatnonzero((frame["facility_power_kw"] + 1e-6 < frame["it_power_kw"]).to_numpy())[0])
        raise DataError(path, "facility power below IT power (meters swapped?)", "facility_power_kw", i + 2)
    frame.attrs.update({"source": str(path), "zones": zones})
    return frame
