"""What the use cases load first: a site and its data for a period, and its registered plant model.

Below the CLI so that the use cases load without it, with the same rules as the commands'
``--carbon/--weather/--workload`` (and ``--*-format``) overrides. The plant-model registry
is imported where it is used (MLflow and scikit-learn behind it; tests stand in for it
through ``sys.modules``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from coolshift.config import SiteConfig, load_site
from coolshift.io import DataError, load_site_data, read_carbon
from coolshift.io.site_data import gap_policy_for, override_source

__all__ = ["utc_time", "default_period", "load_inputs", "NoPlantModel", "registered_plant_model", "coerce_paths"]


def utc_time(value, option: str) -> pd.Timestamp:
    """A time option as a UTC timestamp (naive = UTC); a bad one is a DataError naming the option."""
    try:
        t = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError):
        t = pd.NaT
    if t is pd.NaT:
        raise DataError(None, f"{option}: {str(value)[:40]!r} is not an ISO 8601 date or time")
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def default_period(site: SiteConfig, start, end, carbon: Path | None = None,
                   carbon_format: str | None = None) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The period asked for: the given bounds, else from the carbon data's start, one year long."""
    if start is not None:
        t0 = utc_time(start, "--start")
    else:
        src = override_source(site.carbon, carbon, carbon_format)
        t0 = read_carbon(site.resolve(src.path), src.format, src.column, gap_policy=gap_policy_for(src), scale=src.scale).index[0]
    t1 = utc_time(end, "--end") if end is not None else t0 + pd.DateOffset(years=1)
    return t0, t1


def load_inputs(site_path: Path, start, end, carbon=None, weather=None, workload=None,
                carbon_format=None, weather_format=None, workload_format=None,
                step_minutes=None) -> tuple[SiteConfig, pd.DataFrame]:
    """The site configuration and its data for the period, with the given file overrides."""
    site = load_site(site_path)
    t0, t1 = default_period(site, start, end, carbon, carbon_format)
    data = load_site_data(site, t0, t1, step_minutes=step_minutes, carbon=carbon, weather=weather, workload=workload,
                          carbon_format=carbon_format, weather_format=weather_format, workload_format=workload_format)
    return site, data


class NoPlantModel(LookupError):
    """No plant model is registered for the site, or the registered one was trained on another plant."""


def registered_plant_model(site: SiteConfig, workdir: Path | None = None, alias: str = "production"):
    """The site's plant model under ``alias`` in its registry; NoPlantModel (the registry's message) if there is none."""
    from coolshift.models.registry import load_plant_model

    try:
        return load_plant_model(site, alias=alias, workdir=workdir)
    except LookupError as exc:
        raise NoPlantModel(str(exc)) from exc


def coerce_paths(options, *names: str) -> None:
    """In a frozen options dataclass's ``__post_init__``: the named fields given as strings become Paths."""
    for n in names:
        v = getattr(options, n)
        if v is not None and not isinstance(v, Path):
            object.__setattr__(options, n, Path(v))
