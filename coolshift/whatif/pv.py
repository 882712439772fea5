"""On-site PV output from the site's location and weather, with pvlib (PVWatts-style chain).

Chain: solar position -> clear-sky GHI (Haurwitz 1945) -> cloud attenuation from the weather
file's cloud cover (Kasten & Czeplak 1980) -> DNI/DHI split (Erbs, Klein, Duffie 1982) ->
plane-of-array irradiance (isotropic sky, Liu & Jordan 1963) -> cell temperature (SAPM,
King et al. 2004) -> PVWatts DC and inverter models (Dobos 2014, NREL/TP-6A20-62641).
Without cloud data the clear-sky output is an upper bound, and the result says so.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from coolshift.schema import TEMP_C

__all__ = ["kasten_czeplak_ghi", "openmeteo_cloud_frac", "pv_ac_kw", "onsite_pv_ac_kw"]


def kasten_czeplak_ghi(ghi_clear_w_m2, cloud_frac):
    """GHI [W/m2] under cloud cover ``cloud_frac`` [0-1]: ``clear x (1 - 0.75 N^3.4)`` (Kasten & Czeplak 1980)."""
    n = np.clip(np.asarray(cloud_frac, dtype=float), 0.0, 1.0)
    return np.asarray(ghi_clear_w_m2, dtype=float) * (1.0 - 0.75 * n ** 3.4)


def openmeteo_cloud_frac(path: str | Path, index: pd.DatetimeIndex) -> np.ndarray | None:
    """Cloud cover [0-1] on ``index`` from an Open-Meteo JSON's ``hourly.cloudcover``, or None."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        hourly = doc["hourly"]
        cc = hourly.get("cloudcover", hourly.get("cloud_cover"))
        if cc is None:
            return None
        t = pd.to_datetime(pd.Series(hourly["time"]), format="ISO8601") - pd.Timedelta(seconds=int(doc["utc_offset_seconds"]))
        s = pd.Series(np.asarray(cc, dtype=float) / 100.0, index=pd.DatetimeIndex(t).tz_localize("UTC"))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    s = s[~s.index.duplicated()].sort_index()
    out = s.reindex(s.index.union(index)).interpolate(method="time", limit_direction="both").reindex(index)
    return None if out.isna().any() else out.to_numpy()


def pv_ac_kw(index: pd.DatetimeIndex, temp_air_c, lat: float, lon: float, pv, cloud_frac=None) -> np.ndarray:
    """AC output [kW, step average] of the array ``pv`` (an :class:`OnsitePV`) on ``index``."""
    import pvlib

    step = index[1] - index[0] if len(index) > 1 else pd.Timedelta("1h")
    mid = index + step / 2  # step-average irradiance is best approximated at the middle of the step
    loc = pvlib.location.Location(lat, lon, tz="UTC")
    sp = loc.get_solarposition(mid)
    ghi = loc.get_clearsky(mid, model="haurwitz", solar_position=sp)["ghi"].to_numpy()
    if cloud_frac is not None:
        ghi = kasten_czeplak_ghi(ghi, cloud_frac)
    split = pvlib.irradiance.erbs(ghi, sp["zenith"].to_numpy(), mid.dayofyear.to_numpy())
    poa = pvlib.irradiance.get_total_irradiance(
        pv.tilt_deg, pv.azimuth_deg, sp["apparent_zenith"].to_numpy(), sp["azimuth"].to_numpy(),
        np.nan_to_num(np.asarray(split["dni"], dtype=float)), ghi, np.nan_to_num(np.asarray(split["dhi"], dtype=float)),
        model="isotropic",
    )["poa_global"]
    poa = np.nan_to_num(np.asarray(poa, dtype=float)).clip(min=0.0)
    params = pvlib.temperature.TEMPERATURE_MODEL_PARAMETERS["sapm"]["open_rack_glass_polymer"]
    # Wind 1 m/s: a calm default when the weather file has no wind (SAPM is sensitive to it).
    t_cell = pvlib.temperature.sapm_cell(poa, np.asarray(temp_air_c, dtype=float), 1.0, **params)
    pdc = pvlib.pvsystem.pvwatts_dc(poa, t_cell, pv.capacity_kw_dc, pv.gamma_pdc_per_k) * (1.0 - pv.system_loss_frac)
    pac0 = pv.capacity_kw_dc / pv.dc_ac_ratio
    pac = pvlib.inverter.pvwatts(np.asarray(pdc, dtype=float), pac0 / pv.inverter_eff, eta_inv_nom=pv.inverter_eff)
    return np.clip(np.nan_to_num(np.asarray(pac, dtype=float)), 0.0, pac0)


def onsite_pv_ac_kw(site, data: pd.DataFrame, pv) -> np.ndarray:
    """PV output for the site's period, with cloud cover from its weather file when it has one."""
    cloud = openmeteo_cloud_frac(site.resolve(site.weather.path), data.index)
    return pv_ac_kw(data.index, data[TEMP_C].to_numpy(), site.latitude_deg, site.longitude_deg, pv, cloud)
