"""Carbon and water accounting: small pure functions used by the simulator and the reports.

Conventions (also in docs/simulator.md):

- Location-based Scope 2 (GHG Protocol Scope 2 Guidance, 2015): kgCO2 = kWh x gCO2/kWh / 1000,
  using the hourly grid average intensity of the site's balancing area.
- Market-based: contracted renewable energy (PPA) is matched *in the same step* (time
  matching, as in 24/7 carbon-free energy accounting; surplus PPA energy in a step is not
  banked); unmatched energy is counted at the residual-mix factor, or at the location
  intensity when no residual mix is configured (the GHG Protocol's fallback).
- Edge sites: their facility energy at their own grid intensity; network transfer energy at
  the home site's intensity.
- WUE (The Green Grid WP #35, 2011): site water litres per kWh of IT energy.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd

__all__ = ["location_kgco2", "market_kgco2", "ppa_profile_kw", "wue_l_per_kwh", "PPA_PROFILES"]

PPA_PROFILES = ("flat", "solar", "wind")


def location_kgco2(kwh, gco2_per_kwh):
    """Location-based emissions [kgCO2] of ``kwh`` [kWh] at ``gco2_per_kwh`` [gCO2/kWh]."""
    return np.asarray(kwh, dtype=float) * np.asarray(gco2_per_kwh, dtype=float) / 1000.0


def market_kgco2(kwh, ppa_kwh, location_gco2_per_kwh, residual_mix_gco2_per_kwh: float | None = None):
    """Market-based emissions [kgCO2]: energy not matched by the PPA in its step, at the residual mix."""
    kwh = np.asarray(kwh, dtype=float)
    unmatched = kwh - np.minimum(kwh, np.asarray(ppa_kwh, dtype=float))
    factor = location_gco2_per_kwh if residual_mix_gco2_per_kwh is None else residual_mix_gco2_per_kwh
    return unmatched * np.asarray(factor, dtype=float) / 1000.0


def _shape(times: pd.DatetimeIndex, profile: str, lat: float, lon: float) -> np.ndarray:
    if profile == "flat":
        return np.ones(len(times))
    if profile == "solar":
        # Clear-sky global horizontal irradiance (Haurwitz 1945 model via pvlib): a clear-sky
        # shape, so real cloud cover is not represented.
        from pvlib.location import Location

        return Location(lat, lon, tz="UTC").get_clearsky(times, model="haurwitz")["ghi"].to_numpy()
    if profile == "wind":
        # SYNTHETIC wind shape, not measured: winter-peaking season (+/-30 %) and a night-peaking
        # diurnal cycle (+/-15 %), the typical pattern of US onshore wind (US EIA, "Today in
        # Energy", 2019-2022 hourly wind generation). Replace with `renewables.profile_path` data.
        doy = times.dayofyear.to_numpy()
        local_h = (times.hour.to_numpy() + times.minute.to_numpy() / 60.0 + lon / 15.0) % 24.0
        return 1.0 + 0.3 * np.cos(2 * np.pi * (doy - 15) / 365.25) + 0.15 * np.cos(2 * np.pi * (local_h - 3) / 24.0)
    raise ValueError(f"unknown renewables profile {profile!r}; choose one of {PPA_PROFILES}")


@lru_cache(maxsize=64)
def _reference_mean(year: int, profile: str, lat: float, lon: float) -> float:
    """Mean of the profile's shape over the hours of calendar ``year`` (cached: a solar year is
    8,760 solar positions, recomputed on every simulator run before)."""
    ref = pd.date_range(f"{year}-01-01", f"{year + 1}-01-01", freq="h", inclusive="left", tz="UTC")
    return float(_shape(ref, profile, lat, lon).mean())


@lru_cache(maxsize=32)
def _regular_shape(start_ns: int, step_ns: int, n: int, profile: str, lat: float, lon: float) -> np.ndarray:
    times = pd.DatetimeIndex(start_ns + step_ns * np.arange(n, dtype=np.int64), tz="UTC")
    out = _shape(times, profile, lat, lon)
    out.flags.writeable = False  # shared between callers
    return out


def _shape_cached(index: pd.DatetimeIndex, profile: str, lat: float, lon: float) -> np.ndarray:
    """:func:`_shape` on ``index``, cached for regular indexes (sweeps simulate the same period many times)."""
    ix = index.tz_convert("UTC") if index.tz is not None else index.tz_localize("UTC")
    i8 = ix.as_unit("ns").asi8  # nanoseconds whatever the index's resolution
    if len(i8) > 1:
        d = np.diff(i8)
        if np.all(d == d[0]):
            return _regular_shape(int(i8[0]), int(d[0]), len(i8), profile, float(lat), float(lon))
    return _shape(index, profile, lat, lon)


def ppa_profile_kw(index: pd.DatetimeIndex, ppa_mwh_per_year: float, profile: str, lat: float, lon: float) -> np.ndarray:
    """PPA supply [kW, step average] on ``index``, shaped by ``profile`` and scaled so that a
    full calendar year (the year of the first timestamp) delivers ``ppa_mwh_per_year``.

    Shapes are cached by their inputs (year, profile, location, and a regular index's start,
    step and length): what-if sweeps simulate one period for many scenarios.
    """
    if len(index) == 0 or ppa_mwh_per_year <= 0:
        return np.zeros(len(index))
    if profile not in PPA_PROFILES:
        raise ValueError(f"unknown renewables profile {profile!r}; choose one of {PPA_PROFILES}")
    year = index[0].year
    hours = (pd.Timestamp(f"{year + 1}-01-01") - pd.Timestamp(f"{year}-01-01")) // pd.Timedelta(hours=1)
    ref_mean = _reference_mean(year, profile, float(lat), float(lon))  # hours in year cancel out
    mean_kw = ppa_mwh_per_year * 1000.0 / hours
    return mean_kw * _shape_cached(index, profile, lat, lon) / ref_mean


def wue_l_per_kwh(water_l: float, it_kwh: float) -> float:
    """Water usage effectiveness [L/kWh IT]."""
    return float(water_l) / float(it_kwh) if it_kwh > 0 else float("nan")
