"""Electricity-price readers: one per real format, all returning the canonical price frame.

The canonical frame has a UTC ``DatetimeIndex`` named ``timestamp`` at the file's own step
and one column ``price_usd_per_mwh`` (wholesale energy price, US dollars per MWh; negative
prices are real and kept). Formats:

- ``sustaincluster``: ``Datetime (UTC),Datetime (Local),Price (USD/MWh)``, the
  standardised hourly day-ahead/real-time prices of SustainCluster
  (``data/prices/``, see data/PROVENANCE.md);
- ``canonical``: ``timestamp,price_usd_per_mwh`` (ISO 8601 with offset), what
  :func:`write_prices` writes.

Errors are :class:`DataError` naming the file, the column and the row (1-based line
number, header = 1) of the first bad value; the file's contents are never echoed beyond
the one offending cell.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from coolshift.config import SiteConfig
from coolshift.tariffs import energy_price_usd_per_kwh
from coolshift.io.atomic import write_frame_atomic
from coolshift.io.checks import (
    DataError,
    GapPolicy,
    finalise,
    parse_timestamps,
    read_csv_text,
    read_header,
    require_columns,
    to_numeric,
    unrecognised_header,
)

__all__ = ["PRICE_USD_PER_KWH", "site_prices", "with_prices", "PRICE_USD_PER_MWH", "PRICE_RANGE_USD_PER_MWH", "PRICE_FORMATS", "read_prices", "write_prices", "sniff_price_format"]

PRICE_USD_PER_MWH = "price_usd_per_mwh"
# The energy price per step the optimiser and the bills use (tariff applied), USD/kWh.
PRICE_USD_PER_KWH = "price_usd_per_kwh"
# Plausible wholesale prices: the widest market limits in the staged zones. AEMO (Australia)
# market floor -1,000 AUD/MWh and cap 15,500 AUD/MWh for 2022-23 (AEMC, "Schedule of
# reliability settings"), ~ -700 and 10,500 USD/MWh; ERCOT's system-wide offer cap was
# 5,000 USD/MWh in 2022 (PUCT rule 25.505). -1,000..20,000 USD/MWh leaves room and still
# catches a USD/kWh or cents column read as USD/MWh only where it leaves this range.
PRICE_RANGE_USD_PER_MWH = (-1000.0, 20000.0)

_SC_TIME, _SC_LOCAL, _SC_PRICE = "Datetime (UTC)", "Datetime (Local)", "Price (USD/MWh)"
PRICE_FORMATS = ("sustaincluster", "canonical")


def sniff_price_format(path: Path) -> str:
    header = read_header(path)
    if _SC_TIME in header and _SC_PRICE in header:
        return "sustaincluster"
    if "timestamp" in header and PRICE_USD_PER_MWH in header:
        return "canonical"
    raise unrecognised_header(path, "price", header,
                              f"'{_SC_TIME},{_SC_LOCAL},{_SC_PRICE}' (SustainCluster) or 'timestamp,{PRICE_USD_PER_MWH}'")


def read_prices(path, format: str = "auto", gap_policy: GapPolicy | None = None) -> pd.DataFrame:
    """Hourly (or any regular step) electricity prices as the canonical frame [USD/MWh]."""
    path = Path(path)
    fmt = sniff_price_format(path) if format == "auto" else format
    if fmt not in PRICE_FORMATS:
        raise DataError(path, f"unknown price format {format!r}; choose one of {', '.join(PRICE_FORMATS)} or auto")
    tcol, pcol = (_SC_TIME, _SC_PRICE) if fmt == "sustaincluster" else ("timestamp", PRICE_USD_PER_MWH)
    raw = read_csv_text(path)
    raw.columns = [str(c).strip() for c in raw.columns]
    require_columns(raw.columns, [tcol, pcol], path)
    if raw.empty:
        raise DataError(path, "no data rows")
    index = parse_timestamps(raw[tcol], path, tcol)
    values = to_numeric(raw, pcol, path)
    frame = pd.DataFrame({pcol: values.to_numpy(float)}, index=index)  # errors name the file's own column
    if frame[pcol].isna().all():
        raise DataError(path, "every price is empty", pcol)
    out = finalise(frame, path, {pcol: (PRICE_RANGE_USD_PER_MWH, "USD/MWh")}, gap_policy=gap_policy)
    attrs = dict(out.attrs)
    out = out.rename(columns={pcol: PRICE_USD_PER_MWH})
    out.attrs.update(attrs)
    return out


def write_prices(frame: pd.DataFrame, path) -> Path:
    """Write the canonical price CSV (``timestamp,price_usd_per_mwh``, UTC ISO 8601) atomically."""
    if PRICE_USD_PER_MWH not in frame.columns:
        raise ValueError(f"write_prices: the frame needs a {PRICE_USD_PER_MWH!r} column")
    out = frame[[PRICE_USD_PER_MWH]].copy()
    out.index = pd.DatetimeIndex(out.index).tz_convert("UTC")
    out.index.name = "timestamp"
    return write_frame_atomic(Path(path), out)


def site_prices(site: SiteConfig, index: pd.DatetimeIndex) -> np.ndarray | None:
    """(n,) wholesale price [USD/MWh] in force at each step of ``index`` (the last hourly price at
    or before the step: an hourly price holds for its hour), or None without a price file."""
    t = site.tariff
    if t is None or t.prices is None:
        return None
    path = site.resolve(t.prices.path)
    gp = GapPolicy(max_interp_h=t.prices.max_interp_gap_h, max_fill_h=t.prices.max_fill_gap_h)
    fr = read_prices(path, t.prices.format, gap_policy=gp)[PRICE_USD_PER_MWH] * t.prices.scale
    if index[0] < fr.index[0] or index[-1] >= fr.index[-1] + fr.attrs.get("step", pd.Timedelta("1h")):
        raise DataError(path, f"prices cover {fr.index[0].isoformat()}..{fr.index[-1].isoformat()}, not "
                              f"{index[0].isoformat()}..{index[-1].isoformat()}", PRICE_USD_PER_MWH)
    return fr.reindex(index, method="ffill").to_numpy(float)


def with_prices(site: SiteConfig, frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with a ``price_usd_per_kwh`` column from the site's tariff (unchanged without a tariff)."""
    if site.tariff is None:
        return frame
    out = frame.copy()
    out[PRICE_USD_PER_KWH] = energy_price_usd_per_kwh(frame.index, site.tariff, site_prices(site, frame.index))
    return out
