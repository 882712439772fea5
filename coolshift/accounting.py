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


def ppa_profile_kw(index: pd.DatetimeIndex, ppa_mwh_per_year: float, profile: str, lat: float, lon: float) -> np.ndarray:
    """PPA supply [kW, step average] on ``index``, shaped by ``profile`` and scaled so that a
    full calendar year (the year of the first timestamp) delivers ``ppa_mwh_per_year``."""
    if len(index) == 0 or ppa_mwh_per_year <= 0:
        return np.zeros(len(index))
    year = index[0].year
    ref = pd.date_range(f"{year}-01-01", f"{year + 1}-01-01", freq="h", inclusive="left", tz="UTC")
    ref_mean = float(_shape(ref, profile, lat, lon).mean())  # hours in year cancel out
    mean_kw = ppa_mwh_per_year * 1000.0 / len(ref)
    return mean_kw * _shape(index, profile, lat, lon) / ref_mean


def wue_l_per_kwh(water_l: float, it_kwh: float) -> float:
    """Water usage effectiveness [L/kWh IT]."""
    return float(water_l) / float(it_kwh) if it_kwh > 0 else float("nan")
