"""Air side of a white-space zone: airflow, recirculation, room thermal lag, CRAH fans.

Pure functions; powers in kW, airflow in m3/s, temperatures in degC.

References
----------
- ASHRAE Handbook - Fundamentals (2021), ch. 1: dry air at ~20 degC, rho = 1.2 kg/m3,
  cp = 1.006 kJ/(kg K).
- ASHRAE TC 9.9 (2016), "Data Center Power Equipment Thermal Guidelines and Best
  Practices": typical server air temperature rise 10-15 K (we use 12 K).
- Sharma, Bash, Patel (2002), "Dimensionless parameters for evaluation of thermal design
  and performance of large-scale data centers", AIAA 2002-3091: the supply heat index
  (share of rack inlet heat from recirculated exhaust) is ~0.2-0.4 in open-aisle rooms and
  falls below ~0.1 with containment.
- Affinity (fan) laws, ASHRAE Handbook - HVAC Systems and Equipment (2020), ch. 21:
  fan power scales with the cube of airflow at fixed system curve.
- Room thermal mass: air plus the thermally active mass of racks, servers and raised
  floor; effective capacitance ~5-10x the air alone (Zhang et al. 2015, "Thermal modeling of
  data centers", and measured room step responses of minutes, e.g. VanGilder 2007).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "RHO_AIR_KG_M3",
    "CP_AIR_KJ_KGK",
    "SERVER_DELTA_T_K",
    "RECIRCULATION_INDEX",
    "AIRFLOW_OVERPROVISION",
    "server_airflow_m3_s",
    "crah_airflow_m3_s",
    "recirculation_rise_c",
    "crah_fan_kw",
    "room_time_constant_s",
    "rc_lag",
]

RHO_AIR_KG_M3 = 1.2  # ASHRAE Fundamentals 2021 ch. 1, dry air ~20 degC at sea level
CP_AIR_KJ_KGK = 1.006  # ASHRAE Fundamentals 2021 ch. 1
SERVER_DELTA_T_K = 12.0  # ASHRAE TC 9.9 (2016): 10-15 K typical inlet-to-exhaust rise

# Share of server intake air that is recirculated exhaust, by containment, at the
# reference rack density (Sharma et al. 2002 SHI ranges; low end for full containment).
RECIRCULATION_INDEX = {"none": 0.25, "partial": 0.12, "full": 0.04}
# CRAH airflow supplied per unit of server airflow: bypass margin operators keep so that
# all racks are fed (Uptime Institute, "Cooling capacity factor" white paper 2013: typical
# rooms supply 1.1-2x the IT airflow; contained rooms need the least).
AIRFLOW_OVERPROVISION = {"none": 1.4, "partial": 1.2, "full": 1.05}
# Recirculation grows with rack density: exhaust jets and pressure differences rise with
# kW per rack (Sharma et al. 2002). Reference density 8 kW/rack (Uptime 2023 survey
# average 6-8 kW); rise scales with sqrt(density / reference).
REFERENCE_RACK_KW = 8.0
# Effective thermal capacitance of the room over that of its air alone (see module refs).
ROOM_MASS_MULTIPLIER = 8.0


def server_airflow_m3_s(it_kw, delta_t_k: float = SERVER_DELTA_T_K) -> np.ndarray:
    """Airflow servers pull [m3/s] to carry ``it_kw`` [kW] at an air temperature rise ``delta_t_k`` [K]."""
    return np.asarray(it_kw, dtype=float) / (RHO_AIR_KG_M3 * CP_AIR_KJ_KGK * delta_t_k)


def crah_airflow_m3_s(server_airflow, containment: str, rated_total_m3_s: float, min_frac: float) -> np.ndarray:
    """CRAH airflow [m3/s]: server airflow times the containment's overprovision, within fan limits."""
    want = np.asarray(server_airflow, dtype=float) * AIRFLOW_OVERPROVISION[containment]
    return np.clip(want, min_frac * rated_total_m3_s, rated_total_m3_s)


def recirculation_rise_c(it_kw, crah_airflow, racks, containment: str) -> np.ndarray:
    """Rack inlet minus supply air temperature [K] from recirculated hot exhaust.

    Grows with heat density (kW per rack) and with any shortfall of CRAH airflow below
    the server airflow (the missing air is drawn from the hot aisle); falls with airflow.
    """
    return recirculation_rise_by_index_c(
        it_kw, crah_airflow, racks, RECIRCULATION_INDEX[containment], AIRFLOW_OVERPROVISION[containment]
    )


def recirculation_rise_by_index_c(it_kw, crah_airflow, racks, recirc_index, overprovision) -> np.ndarray:
    """:func:`recirculation_rise_c` with the containment's index and overprovision given as
    numbers or arrays (one per zone), for vectorised use over zones."""
    it = np.asarray(it_kw, dtype=float)
    v_srv = server_airflow_m3_s(it)
    v = np.maximum(np.asarray(crah_airflow, dtype=float), 1e-9)
    density = np.maximum(it / racks, 0.0) / REFERENCE_RACK_KW
    base = recirc_index * np.sqrt(density) * np.minimum(v_srv * overprovision / v, 1.0)
    shortfall = np.maximum(1.0 - v / np.maximum(v_srv, 1e-9), 0.0)
    return SERVER_DELTA_T_K * (base + shortfall)


def crah_fan_kw(airflow_m3_s, units: int, rated_airflow_m3_s: float, rated_fan_kw: float) -> np.ndarray:
    """CRAH fan power [kW] by the cube law, airflow shared equally by ``units`` EC fans."""
    frac = np.asarray(airflow_m3_s, dtype=float) / (units * rated_airflow_m3_s)
    return units * rated_fan_kw * frac**3


def room_time_constant_s(room_volume_m3: float, airflow_m3_s: float) -> float:
    """First-order time constant [s] of the room: effective heat capacity over airflow heat capacity rate."""
    return ROOM_MASS_MULTIPLIER * room_volume_m3 / max(airflow_m3_s, 1e-9)


def rc_lag(target, x0, step_s: float, tau_s) -> tuple[np.ndarray, np.ndarray]:
    """Exact zero-order-hold response of a first-order lag, along axis 0.

    ``x[k] = a x[k-1] + (1 - a) target[k]``, ``a = exp(-step_s / tau_s)`` per column.
    Returns ``(x, x_last)``; ``x0`` is the state before the first step.
    """
    target = np.asarray(target, dtype=float)
    tau = np.broadcast_to(np.asarray(tau_s, dtype=float), target.shape[1:])
    a = np.exp(-step_s / tau)
    x0 = np.broadcast_to(np.asarray(x0, dtype=float), target.shape[1:])
    # imported here: scipy.signal (and the scipy.stats it pulls in) take ~1 s to import, which a
    # process that never runs the room model (the CLI, a Dask worker's start) should not pay
    from scipy.signal import lfilter

    out = np.empty_like(target)
    # one lfilter per distinct coefficient (zones sharing a time constant go together)
    for av in np.unique(a):
        cols = np.flatnonzero(a == av)
        zi = (av * x0[cols])[None, :]
        out[:, cols], _ = lfilter([1.0 - av], [1.0, -av], target[:, cols], axis=0, zi=zi)
    return out, out[-1].copy()
