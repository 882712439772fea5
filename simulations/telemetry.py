"""Telemetry export: the simulator's run as the facility telemetry an operator would log.

Columns follow :mod:`coolshift.schema` (``TELEMETRY_REQUIRED``, per zone
``TELEMETRY_PER_ZONE``, per pool ``TELEMETRY_PER_POOL``) so the learned models train on it
exactly as on a real site's CSV. Measured quantities carry sensor noise (seeded, Gaussian,
with the stated accuracy taken as two standard deviations) and are rounded to the
resolution a BMS logs; commanded setpoints and server counts are exact.

Sensor accuracies:

- Power meters: ANSI C12.20 accuracy class 0.5 (+/-0.5 % of reading) for revenue-grade
  facility and UPS-output meters; rounded to 0.1 kW.
- Temperatures: IEC 60751 class B platinum RTD, +/-(0.3 + 0.005 |t|) degC; rounded to 0.1 degC.
- Relative humidity: +/-3 %RH, typical of capacitive BMS humidity sensors (e.g. Vaisala
  HMW90 series datasheet, +/-1.7 to +/-3 %RH); rounded to 1 %.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from coolshift.schema import TELEMETRY_PER_POOL, TELEMETRY_PER_ZONE, TELEMETRY_REQUIRED, col

__all__ = ["to_telemetry", "POWER_METER_ACCURACY_FRAC", "RH_ACCURACY_PCT", "rtd_accuracy_c"]

POWER_METER_ACCURACY_FRAC = 0.005  # ANSI C12.20 class 0.5
RH_ACCURACY_PCT = 3.0


def rtd_accuracy_c(t_c) -> np.ndarray:
    """IEC 60751 class B tolerance [degC] at temperature ``t_c``."""
    return 0.3 + 0.005 * np.abs(np.asarray(t_c, dtype=float))


def to_telemetry(timeseries: pd.DataFrame, zones: list[str], pools: list[str], seed: int = 0, noise: bool = True) -> pd.DataFrame:
    """Telemetry frame (schema columns) from a :class:`SimResult` ``timeseries``."""
    rng = np.random.default_rng(seed)
    ts = timeseries
    n = len(ts)

    def power(c: str) -> np.ndarray:
        v = ts[c].to_numpy(dtype=float)
        if noise:
            v = v * (1.0 + rng.normal(0.0, POWER_METER_ACCURACY_FRAC / 2.0, n))
        return np.round(np.maximum(v, 0.0), 1)

    def temp(v: np.ndarray) -> np.ndarray:
        if noise:
            v = v + rng.normal(0.0, 1.0, n) * rtd_accuracy_c(v) / 2.0
        return np.round(v, 1)

    out = {
        "it_power_kw": power("it_power_kw"),
        "cooling_power_kw": power("cooling_power_kw"),
        "facility_power_kw": power("facility_power_kw"),
        "outside_temp_c": temp(ts["outside_temp_c"].to_numpy(dtype=float)),
    }
    rh = ts["outside_rh_pct"].to_numpy(dtype=float) if "outside_rh_pct" in ts.columns else np.full(n, np.nan)
    if noise:
        rh = rh + rng.normal(0.0, RH_ACCURACY_PCT / 2.0, n)
    out["outside_rh_pct"] = np.round(np.clip(rh, 0.0, 100.0), 0)
    out["chw_setpoint_c"] = ts["chw_setpoint_c"].to_numpy(dtype=float)  # commanded: exact
    # a facility meter never reads below the IT meter it contains
    out["facility_power_kw"] = np.maximum(out["facility_power_kw"], out["it_power_kw"])
    for z in zones:
        out[col("supply_setpoint_c", z)] = ts[col("supply_setpoint_c", z)].to_numpy(dtype=float)
        out[col("inlet_temp_c", z)] = temp(ts[col("inlet_temp_c", z)].to_numpy(dtype=float))
        out[col("zone_it_power_kw", z)] = power(col("zone_it_power_kw", z))
    for p in pools:
        out[col("active_servers", p)] = ts[col("active_servers", p)].to_numpy()
    frame = pd.DataFrame(out, index=ts.index)
    frame.index.name = "timestamp"
    expected = list(TELEMETRY_REQUIRED) + [col(q, z) for z in zones for q in TELEMETRY_PER_ZONE]
    missing = [c for c in expected if c not in frame.columns]
    assert not missing, missing  # schema drift is a programming error
    assert all(col(q, p) in frame.columns for p in pools for q in TELEMETRY_PER_POOL)
    return frame
