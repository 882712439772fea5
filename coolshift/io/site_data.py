"""Load everything a site needs for a period onto one frame at the planning step."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from coolshift.config import DataSource, SiteConfig
from coolshift.io.carbon import read_carbon
from coolshift.io.checks import DataError, GapPolicy
from coolshift.io.weather import read_weather, wetbulb_stull_c
from coolshift.io.workload import demand_per_class, read_workload, reanchor_by_week, tile_to_cover
from coolshift.schema import CARBON_GCO2_PER_KWH, CPU_UTIL, RH_PCT, TEMP_C, WETBULB_C, col

__all__ = ["load_site_data", "to_step", "override_source", "gap_policy_for", "reanchor_note"]

log = logging.getLogger(__name__)


def reanchor_note(info: dict) -> str:
    """One line saying that (and how) the workload trace was re-anchored to the period."""
    return (f"workload: the trace covers {info['trace_start'][:10]} to {info['trace_end'][:10]}; "
            f"{info['steps_reanchored']:,} of {info['steps']:,} trace steps of the period are taken from it at the "
            f"same weekday and hour ({info['cycle_weeks']}-week cycle)")


def _extend_by_days(frame: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp, max_days: int) -> pd.DataFrame:
    """Cover a short shortfall at either edge with the same clock hours of the nearest day.

    Used for weather, whose local-time years start hours after the UTC year; the
    extension is reported in ``attrs['edge_filled_h']``.
    """
    day = pd.Timedelta("1D")
    src_step = frame.attrs.get("step") or (frame.index[1] - frame.index[0])
    before = frame.index[0] - start
    after = end - (frame.index[-1] + src_step)
    if (before > pd.Timedelta(0) or after > pd.Timedelta(0)) and max(before, after) <= max_days * day:
        parts = [frame]
        if before > pd.Timedelta(0):
            head = frame[frame.index < frame.index[0] + day].copy()
            head.index = head.index - day
            parts.insert(0, head[head.index >= start - src_step])
        if after > pd.Timedelta(0):
            tail = frame[frame.index > frame.index[-1] - day].copy()
            tail.index = tail.index + day
            parts.append(tail[tail.index < end + src_step])
        attrs = dict(frame.attrs)
        frame = pd.concat(parts)
        frame.attrs.update(attrs)
        frame.attrs["edge_filled_h"] = (max(before, pd.Timedelta(0)) + max(after, pd.Timedelta(0))) / pd.Timedelta("1h")
    return frame


def to_step(frame: pd.DataFrame, step: pd.Timedelta, how: str, start: pd.Timestamp, end: pd.Timestamp, path=None) -> pd.DataFrame:
    """Put a series on the plan grid [start, end).

    ``how='hold'`` for interval averages (carbon intensity, utilisation): a value holds
    for its whole interval when upsampling, and coarser steps take the mean.
    ``how='interpolate'`` for point samples (temperatures): linear in time.
    """
    grid = pd.date_range(start, end, freq=step, inclusive="left", name="timestamp")
    src_step = frame.attrs.get("step") or (frame.index[1] - frame.index[0])
    covered_to = frame.index[-1] + src_step
    if grid[0] < frame.index[0] or grid[-1] >= covered_to:
        raise DataError(
            path or frame.attrs.get("source"),
            f"data cover {frame.index[0].isoformat()} to {covered_to.isoformat()}, not the requested "
            f"{grid[0].isoformat()} to {(grid[-1] + step).isoformat()}",
        )
    if step >= src_step:
        out = frame.resample(step, origin=grid[0]).mean().reindex(grid)
        if how == "interpolate":
            out = out.interpolate(method="time", limit_direction="both")
    elif how == "hold":
        out = frame.reindex(frame.index.union(grid)).ffill().reindex(grid)
    else:
        ext = frame.reindex(frame.index.union(grid))
        out = ext.interpolate(method="time", limit_direction="both").reindex(grid)
    return out


def override_source(source: DataSource, path: str | Path | None, fmt: str | None = None) -> DataSource:
    """The config's data source with its path (and format) replaced from the command line.

    A format alone applies to the config's own file (it is never silently ignored).
    """
    if path is None:
        return source if fmt is None else source.model_copy(update={"format": fmt})
    update = {"path": str(Path(path).resolve()), "format": fmt or "auto"}
    return source.model_copy(update=update)


def gap_policy_for(src: DataSource) -> GapPolicy:
    """The gap rule a data source asks for."""
    return GapPolicy(max_interp_h=src.max_interp_gap_h, max_fill_h=src.max_fill_gap_h)


def load_site_data(
    site: SiteConfig,
    start,
    end,
    step_minutes: int | None = None,
    carbon: str | Path | None = None,
    weather: str | Path | None = None,
    workload: str | Path | None = None,
    carbon_format: str | None = None,
    weather_format: str | None = None,
    workload_format: str | None = None,
) -> pd.DataFrame:
    """All exogenous inputs for [start, end) on one UTC grid at the plan step.

    Columns: ``gco2_per_kwh`` (site grid), ``gco2_per_kwh__<edge>`` per edge site,
    ``temp_c``, ``rh_pct``, ``wetbulb_c``, ``cpu_util`` and ``<class>_units_per_h``.
    ``carbon``/``weather``/``workload`` override the config's sources.
    """
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")
    end = end.tz_localize("UTC") if end.tzinfo is None else end.tz_convert("UTC")
    if end <= start:
        raise DataError(None, f"end {end.isoformat()} is not after start {start.isoformat()}")
    step = pd.Timedelta(minutes=step_minutes or site.planning.step_minutes)

    c_src = override_source(site.carbon, carbon, carbon_format)
    w_src = override_source(site.weather, weather, weather_format)
    l_src = override_source(site.workload, workload, workload_format)

    c_path = site.resolve(c_src.path)
    # the source's scale converts to g/kWh before the unit checks (e.g. scale 1000 for kg/kWh)
    ci_raw = read_carbon(c_path, c_src.format, c_src.column, gap_policy=gap_policy_for(c_src), scale=c_src.scale)
    ci = ci_raw[[CARBON_GCO2_PER_KWH]]
    ci.attrs.update(ci_raw.attrs)
    frames = [to_step(ci, step, "hold", start, end, c_path)]
    notes = {"carbon": str(c_path), "filled": {"carbon": ci.attrs.get("filled", [])},
             "carbon_format": ci.attrs.get("format"), "carbon_basis": ci.attrs.get("basis", "")}
    if ci.attrs.get("column"):
        notes["carbon_column"] = ci.attrs["column"]

    for edge in site.edge_sites:
        e_path = site.resolve(edge.carbon.path)
        e = read_carbon(e_path, edge.carbon.format, edge.carbon.column, gap_policy=gap_policy_for(edge.carbon),
                        scale=edge.carbon.scale)[[CARBON_GCO2_PER_KWH]]
        frames.append(to_step(e, step, "hold", start, end, e_path).rename(columns={CARBON_GCO2_PER_KWH: col(CARBON_GCO2_PER_KWH, edge.name)}))

    w_path = site.resolve(w_src.path)
    # the site's latitude bounds the temperatures by month (a run of days in degF is refused)
    wx = read_weather(w_path, w_src.format, gap_policy=gap_policy_for(w_src), latitude_deg=site.latitude_deg)
    wx = _extend_by_days(wx[[TEMP_C, RH_PCT]], start, end, max_days=1)
    notes["weather_edge_filled_h"] = wx.attrs.get("edge_filled_h", 0.0)
    wx_step = to_step(wx, step, "interpolate", start, end, w_path)
    wx_step[WETBULB_C] = wetbulb_stull_c(wx_step[TEMP_C].to_numpy(), wx_step[RH_PCT].to_numpy())
    frames.append(wx_step)
    notes["weather"] = str(w_path)

    l_path = site.resolve(l_src.path)
    wl = read_workload(l_path, l_src.format, start=l_src.start, gap_policy=gap_policy_for(l_src))
    if l_src.repeat:
        wl = tile_to_cover(wl, start, end)
        notes["workload_tiled"] = True
    else:
        # a trace from another year (the examples' is 2022) drives any period, by weekday and hour
        wl = reanchor_by_week(wl, start, end)
        if "reanchored" in wl.attrs:
            notes["workload_reanchored"] = wl.attrs["reanchored"]
            log.warning("%s", reanchor_note(wl.attrs["reanchored"]))
    util = to_step(wl[[CPU_UTIL]], step, "hold", start, end, l_path) * l_src.scale
    if (util[CPU_UTIL] > 1.0 + 1e-9).any():
        raise DataError(l_path, f"utilisation x scale {l_src.scale:g} exceeds 1 (more work than the site's capacity)", CPU_UTIL)
    frames.append(util)
    frames.append(demand_per_class(util[CPU_UTIL], site))
    notes["workload"] = str(l_path)

    out = pd.concat(frames, axis=1)
    if out.isna().any().any():
        bad = out.columns[out.isna().any()].tolist()
        raise DataError(None, f"missing values after alignment in {bad}")
    out.index.name = "timestamp"
    out.attrs.update({"site": site.name, "step": step, "sources": notes})
    return out
