"""Reading the data a report or a verification is made from (I/O at the edge).

A *run* is what ``coolshift simulate --out DIR`` writes (``DIR/timeseries.parquet`` or
``.csv``) or a metered telemetry CSV in the schema of :mod:`coolshift.schema` (read with
:func:`coolshift.io.read_telemetry`). Grid intensity comes from the run itself
(``gco2_per_kwh``), or from ``--carbon`` / the site's carbon source; contracted renewable
supply (``ppa_kw``) from the run or the site's ``renewables`` block.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from coolshift.io.checks import DataError

__all__ = ["RunData", "read_run", "attach_carbon", "attach_ppa", "trim"]

SIM_MARKER = "kgco2_location"  # a column only the simulator writes


@dataclass
class RunData:
    """A period's step frame and where it came from."""

    frame: pd.DataFrame
    source: str
    simulated: bool
    filled: list = field(default_factory=list)
    carbon_source: str = "in the run data"
    summary: dict | None = None  # the simulator's summary.json when present


def _read_frame_file(path: Path, zones: list[str] | None) -> tuple[pd.DataFrame, list]:
    if path.suffix == ".parquet":
        try:
            df = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises many types for a corrupt file
            raise DataError(path, f"cannot read parquet: {exc}") from None
        if "timestamp" in df.columns:
            df = df.set_index("timestamp")
        if not isinstance(df.index, pd.DatetimeIndex):
            raise DataError(path, "needs a timestamp index or column")
        df.index = (df.index.tz_localize("UTC") if df.index.tz is None else df.index.tz_convert("UTC")).rename("timestamp")
        return df.sort_index(), []
    if path.suffix.lower() in (".csv", ".txt"):
        head = pd.read_csv(path, nrows=0, encoding="utf-8-sig").columns
        if SIM_MARKER in head:  # the simulator's CSV export: every column, regular grid
            df = pd.read_csv(path, encoding="utf-8-sig")
            if "timestamp" not in df.columns:
                raise DataError(path, "missing column 'timestamp'")
            idx = pd.to_datetime(df.pop("timestamp"), utc=True, format="mixed")
            df.index = pd.DatetimeIndex(idx, name="timestamp")
            return df.sort_index(), []
        from coolshift.io import read_telemetry

        df = read_telemetry(path, zones=zones)
        return df, list(df.attrs.get("filled", []))
    raise DataError(path, "expected a run folder, a .parquet or a .csv file")


def read_run(path: str | Path, zones: list[str] | None = None) -> RunData:
    """Read a simulator run folder/file or a telemetry CSV into a step frame."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "not found")
    summary = None
    if path.is_dir():
        for name in ("timeseries.parquet", "timeseries.csv"):
            if (path / name).exists():
                import json

                if (path / "summary.json").exists():
                    summary = json.loads((path / "summary.json").read_text())
                path = path / name
                break
        else:
            raise DataError(path, "no timeseries.parquet or timeseries.csv in this folder (a `coolshift simulate --out` folder?)")
    frame, filled = _read_frame_file(path, zones)
    for c in ("it_power_kw", "facility_power_kw"):
        if c not in frame.columns:
            raise DataError(path, f"missing column {c!r}")
    if len(frame) < 2:
        raise DataError(path, "needs at least two time steps")
    for c in ("it_power_kw", "facility_power_kw"):
        missing = frame[c].isna().to_numpy()
        if missing.any():
            i = int(np.flatnonzero(missing)[0])
            raise DataError(path, f"{int(missing.sum())} missing value(s), first at {frame.index[i].isoformat()}", c)
    bad = frame["facility_power_kw"].to_numpy() + 1e-6 < frame["it_power_kw"].to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(path, f"facility power below IT power at {frame.index[i].isoformat()} (meters swapped?)", "facility_power_kw")
    return RunData(frame, str(path), SIM_MARKER in frame.columns, filled, summary=summary)


def trim(run: RunData, start=None, end=None) -> RunData:
    """Keep [start, end) of a run (UTC; naive times are taken as UTC)."""
    def ts(v):
        if v is None:
            return None
        t = pd.Timestamp(v)
        return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")

    t0, t1 = ts(start), ts(end)
    f = run.frame
    m = np.ones(len(f), bool)
    if t0 is not None:
        m &= f.index >= t0
    if t1 is not None:
        m &= f.index < t1
    if m.sum() < 2:
        raise DataError(run.source, f"fewer than two steps between {start} and {end}")
    run.frame = f.loc[m]
    return run


def attach_carbon(run: RunData, site=None, carbon: Path | None = None, carbon_format: str | None = None) -> RunData:
    """Give the run hourly grid factors: ``--carbon`` first, then the run's own, then the site's source."""
    f = run.frame
    if carbon is None and "gco2_per_kwh" in f.columns and f["gco2_per_kwh"].notna().all():
        run.carbon_source = "grid intensity recorded in the run (" + (run.source if not run.simulated else "simulator input") + ")"
        return run
    from coolshift.io import read_carbon
    from coolshift.io.site_data import gap_policy_for, to_step

    scale = 1.0
    if carbon is not None:
        path, fmt, column, policy = Path(carbon), carbon_format or "auto", None, None
    elif site is not None:
        src = site.carbon
        path, fmt, column, policy = site.resolve(src.path), carbon_format or src.format, src.column, gap_policy_for(src)
        scale = src.scale  # e.g. 1000 for a kg/kWh file, as the planner reads it
    else:
        raise DataError(run.source, "no grid intensity: the data have no gco2_per_kwh column; give --carbon FILE or --site CONFIG")
    intensity = read_carbon(path, fmt, column, gap_policy=policy, scale=scale)
    step = pd.Timedelta(f.index[1] - f.index[0])
    on_grid = to_step(intensity[["gco2_per_kwh"]], step, "hold", f.index[0], f.index[-1] + step, path)
    on_grid = on_grid.reindex(f.index)
    if on_grid["gco2_per_kwh"].isna().any():
        raise DataError(path, "grid intensity does not cover every step of the run", "gco2_per_kwh")
    run.frame = f.assign(gco2_per_kwh=on_grid["gco2_per_kwh"].to_numpy())
    run.carbon_source = f"{path} ({fmt})"
    run.filled = run.filled + [dict(d, column="gco2_per_kwh") for d in intensity.attrs.get("filled", [])
                               if f.index[0] <= pd.Timestamp(d["start"]) <= f.index[-1]]
    return run


def attach_ppa(run: RunData, site=None) -> tuple[RunData, str]:
    """Contracted renewable supply per step: the run's ``ppa_kw``, else the site's PPA profile."""
    f = run.frame
    if "ppa_kw" in f.columns:
        return run, "PPA supply recorded in the run"
    ren = getattr(site, "renewables", None)
    if ren is None or ren.ppa_mwh_per_year <= 0:
        run.frame = f.assign(ppa_kw=0.0)
        return run, "no contractual instruments (no renewables block in the site config)"
    from coolshift import accounting

    run.frame = f.assign(ppa_kw=accounting.ppa_profile_kw(f.index, ren.ppa_mwh_per_year, ren.profile,
                                                          site.latitude_deg, site.longitude_deg))
    return run, f"PPA {ren.ppa_mwh_per_year:,.0f} MWh/year, {ren.profile} profile (coolshift.accounting.ppa_profile_kw)"
