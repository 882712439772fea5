"""Electricity tariffs: energy price per step and the bill of a grid-import profile.

Pure functions over a UTC index and arrays (no I/O; :mod:`coolshift.io.prices` reads the
wholesale series). A :class:`~coolshift.config.Tariff` is

- energy: wholesale price [USD/MWh] / 1000 (when a series is given) + a flat adder
  [USD/kWh] + time-of-use adders for local hours [USD/kWh];
- demand: ``demand_charge_usd_per_kw_month`` x each billing month's peak grid import [kW]
  (the peak of step averages; a month is the calendar month in the tariff's time zone).

The optimiser prices energy with :func:`energy_price_usd_per_kwh` and the demand charge
with one peak variable per billing month (``optimizer/constraints.py``, ``monthly_peak``);
:func:`bill` prices any profile the same way, so a plan, a baseline and a simulation are
billed alike.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from coolshift.config import Tariff

__all__ = ["energy_price_usd_per_kwh", "time_of_use_usd_per_kwh", "billing_months", "bill"]


def _local(index: pd.DatetimeIndex, tz: str) -> pd.DatetimeIndex:
    if index.tz is None:
        raise ValueError("tariff: the index must be tz-aware (UTC)")
    return index.tz_convert(tz)


def time_of_use_usd_per_kwh(index: pd.DatetimeIndex, tariff: Tariff) -> np.ndarray:
    """(n,) sum of the time-of-use adders in force at each step's start [USD/kWh]."""
    local = _local(index, tariff.timezone)
    hour, weekday = local.hour.to_numpy(), local.dayofweek.to_numpy() < 5
    out = np.zeros(len(index))
    for p in tariff.time_of_use:
        if p.start_hour < p.end_hour:
            on = (hour >= p.start_hour) & (hour < p.end_hour)
        else:  # wraps past midnight, e.g. 22 -> 6
            on = (hour >= p.start_hour) | (hour < p.end_hour)
        if p.weekdays_only:
            on &= weekday
        out += np.where(on, p.usd_per_kwh, 0.0)
    return out


def energy_price_usd_per_kwh(index: pd.DatetimeIndex, tariff: Tariff, wholesale_usd_per_mwh=None) -> np.ndarray:
    """(n,) energy price per step [USD/kWh]: wholesale / 1000 + flat adder + time of use."""
    price = np.full(len(index), float(tariff.energy_usd_per_kwh)) + time_of_use_usd_per_kwh(index, tariff)
    if wholesale_usd_per_mwh is not None:
        w = np.asarray(wholesale_usd_per_mwh, float)
        if w.shape != (len(index),):
            raise ValueError(f"tariff: {w.shape[0] if w.ndim else 0} wholesale prices for {len(index)} steps")
        price = price + w / 1000.0
    return price


def billing_months(index: pd.DatetimeIndex, tz: str = "UTC") -> tuple[np.ndarray, list[str]]:
    """(n,) billing-month number of each step (0, 1, ...) and the months' labels (YYYY-MM, local)."""
    local = _local(index, tz)
    labels = local.strftime("%Y-%m")
    uniq = list(dict.fromkeys(labels))
    pos = {m: i for i, m in enumerate(uniq)}
    return np.array([pos[m] for m in labels], dtype=np.int64), uniq


def bill(index: pd.DatetimeIndex, grid_kw, price_usd_per_kwh, tariff: Tariff | None, step_h: float) -> dict:
    """Energy and demand charges of a grid-import profile [USD]; no tariff bills only energy at the given price."""
    g = np.asarray(grid_kw, float)
    energy = float(np.sum(g * np.asarray(price_usd_per_kwh, float)) * step_h)
    demand = 0.0
    peaks: dict[str, float] = {}
    if tariff is not None and tariff.demand_charge_usd_per_kw_month > 0 and len(g):
        month, labels = billing_months(index, tariff.timezone)
        for m, lab in enumerate(labels):
            peaks[lab] = float(g[month == m].max())
        demand = tariff.demand_charge_usd_per_kw_month * sum(peaks.values())
    return {"energy_usd": energy, "demand_usd": demand, "cost_usd": energy + demand, "peak_kw_by_month": peaks}
