"""Options and error handling shared by every command (data overrides, site, period)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Callable, Optional

import pandas as pd
import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True, soft_wrap=True)

SiteOpt = Annotated[Path, typer.Option("--site", "-s", help="site configuration YAML", exists=False)]
StartOpt = Annotated[Optional[str], typer.Option(help="period start, ISO 8601 (UTC if no offset); default: start of the carbon data")]
EndOpt = Annotated[Optional[str], typer.Option(help="period end (exclusive); default: start + 1 year or end of data")]
CarbonOpt = Annotated[Optional[Path], typer.Option("--carbon", help="override the site's carbon-intensity file")]
WeatherOpt = Annotated[Optional[Path], typer.Option("--weather", help="override the site's weather file")]
WorkloadOpt = Annotated[Optional[Path], typer.Option("--workload", help="override the site's workload trace")]
CarbonFmtOpt = Annotated[Optional[str], typer.Option("--carbon-format", help="force a reader: eia930, electricitymaps, watttime, lwa, canonical")]
WeatherFmtOpt = Annotated[Optional[str], typer.Option("--weather-format", help="force a reader: openmeteo, epw, canonical")]
WorkloadFmtOpt = Annotated[Optional[str], typer.Option("--workload-format", help="force a reader: sustaindc_hourly, alibaba2018_5min, google2019_5min, canonical")]

EXIT_OK, EXIT_FALLBACK, EXIT_BAD_INPUT, EXIT_FAILURE = 0, 3, 2, 1


def cli_errors(func: Callable) -> Callable:
    """Turn input errors into one clear line and exit code 2, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from coolshift.config import ConfigError
        from coolshift.io.checks import DataError

        try:
            return func(*args, **kwargs)
        except (ConfigError, DataError) as exc:
            err_console.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False)
            raise typer.Exit(EXIT_BAD_INPUT) from None

    return wrapper


def default_period(site, start: str | None, end: str | None, carbon: Path | None = None, carbon_format: str | None = None):
    """Resolve the period: given values, else the carbon data's first year."""
    from coolshift.io import read_carbon
    from coolshift.io.site_data import gap_policy_for, override_source

    if start is not None:
        t0 = pd.Timestamp(start)
        t0 = t0.tz_localize("UTC") if t0.tzinfo is None else t0.tz_convert("UTC")
    else:
        src = override_source(site.carbon, carbon, carbon_format)
        t0 = read_carbon(site.resolve(src.path), src.format, src.column, gap_policy=gap_policy_for(src)).index[0]
    if end is not None:
        t1 = pd.Timestamp(end)
        t1 = t1.tz_localize("UTC") if t1.tzinfo is None else t1.tz_convert("UTC")
    else:
        t1 = t0 + pd.DateOffset(years=1)
    return t0, t1


def load_inputs(site_path: Path, start, end, carbon=None, weather=None, workload=None,
                carbon_format=None, weather_format=None, workload_format=None, step_minutes=None):
    """Site config and its data for the period, with the command line's overrides."""
    from coolshift.config import load_site
    from coolshift.io import load_site_data

    site = load_site(site_path)
    t0, t1 = default_period(site, start, end, carbon, carbon_format)
    data = load_site_data(site, t0, t1, step_minutes=step_minutes, carbon=carbon, weather=weather, workload=workload,
                          carbon_format=carbon_format, weather_format=weather_format, workload_format=workload_format)
    return site, data
