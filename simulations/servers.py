"""Server power: SPECpower-style load curves, sleep power, boots and inlet-temperature rise.

Pure functions over numpy arrays (any shape that broadcasts); powers in W per server
unless the name says kW. Used by :mod:`coolshift.simulations.engine`.

References
----------
- SPEC, "SPECpower_ssj2008 Run and Reporting Rules" (11 load levels: active idle, 10 % .. 100 %).
- ASHRAE TC 9.9 (2011), "Thermal Guidelines for Data Processing Environments - Expanded
  Data Center Classes and Usage Guidance", white paper, Fig. 5: server power rises with
  inlet temperature above ~25 degC (fans speed up, silicon leakage grows); a band of
  about 4-20 % more power at 35 degC than at 25 degC across vendors.
- Meisner, Gold, Wenisch (2009), "PowerNap: eliminating server idle power", ASPLOS:
  a server takes minutes to boot and draws near-peak power while doing so.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "SPECPOWER_LOAD_POINTS",
    "FAN_LEAKAGE_THRESHOLD_C",
    "linear_curve_frac",
    "power_curve_w",
    "fan_leakage_frac",
    "boot_power_w",
    "SERVER_FAN_FRAC",
    "liquid_fan_saving_frac",
]

# The 11 SPECpower_ssj2008 measurement points: active idle (0 %) then 10 % .. 100 % load.
SPECPOWER_LOAD_POINTS = np.linspace(0.0, 1.0, 11)

# Inlet temperature above which server fans and leakage add power (ASHRAE TC 9.9 2011, Fig. 5:
# flat below ~25 degC for most servers).
FAN_LEAKAGE_THRESHOLD_C = 25.0
# Fractional power increase per K above the threshold (linear) and per K^2 (fan cube law makes
# the rise convex). Chosen so that +10 K gives 0.4 % * 10 + 0.12 % * 100 = 16 % at 35 degC,
# inside the 4-20 % band of ASHRAE TC 9.9 (2011) Fig. 5.
FAN_LEAKAGE_PER_K = 0.004
FAN_LEAKAGE_PER_K2 = 0.0012
# Share of an air-cooled server's power drawn by its fans at inlets below the threshold:
# ~5-10 % (Patterson 2008, "The effect of data center temperature on energy efficiency",
# ITHERM; ASHRAE TC 9.9 2011 white paper); we take 6 %. Cold plates take the CPU/GPU heat,
# so a direct-liquid-cooled server keeps fans only for the air-cooled share of its heat
# (memory, drives, VRMs: ASHRAE TC 9.9 "Water-Cooled Servers" 2019).
SERVER_FAN_FRAC = 0.06


def linear_curve_frac(idle_w: float, peak_w: float) -> np.ndarray:
    """11-point curve (fraction of peak) for a server whose power is linear from idle to peak.

    The linear model is the common fallback when no SPECpower result is given
    (Fan, Weber, Barroso 2007, "Power provisioning for a warehouse-sized computer", ISCA).
    """
    return (idle_w + (peak_w - idle_w) * SPECPOWER_LOAD_POINTS) / peak_w


def power_curve_w(util_frac, curve_frac, peak_w: float) -> np.ndarray:
    """Power per active server [W] at utilisation ``util_frac`` [0-1], interpolated on the 11-point curve.

    ``curve_frac`` holds power at 0, 10, .. 100 % load as a fraction of ``peak_w``.
    """
    u = np.asarray(util_frac, dtype=float)
    if np.any(u < -1e-9) or np.any(u > 1.0 + 1e-9):
        raise ValueError("power_curve_w: utilisation outside [0, 1]")
    return np.interp(u, SPECPOWER_LOAD_POINTS, np.asarray(curve_frac, dtype=float)) * peak_w


def fan_leakage_frac(inlet_c, threshold_c: float = FAN_LEAKAGE_THRESHOLD_C) -> np.ndarray:
    """Fractional increase of server power [-] from fans and leakage at inlet temperature ``inlet_c`` [degC]."""
    dk = np.maximum(np.asarray(inlet_c, dtype=float) - threshold_c, 0.0)
    return FAN_LEAKAGE_PER_K * dk + FAN_LEAKAGE_PER_K2 * dk * dk


def boot_power_w(servers_booted, peak_w, operating_w, boot_time_s, step_s: float) -> np.ndarray:
    """Extra power [W, step average] of servers that boot this step.

    A booting server draws about peak power for ``boot_time_s`` (Meisner et al. 2009)
    instead of the ``operating_w`` it is counted at as an active server (its pool's draw
    per server at the pool's utilisation; it serves no work while booting, so that draw
    would otherwise be charged twice); spread over the step.
    """
    frac = np.minimum(np.asarray(boot_time_s, dtype=float), step_s) / step_s
    return np.asarray(servers_booted, dtype=float) * (np.asarray(peak_w) - np.asarray(operating_w)) * frac


def liquid_fan_saving_frac(liquid_share) -> np.ndarray:
    """Fraction of server power saved by fans [-] when ``liquid_share`` [0-1] of its heat goes to cold plates.

    Fan power scales with the air-cooled heat it must move: ``SERVER_FAN_FRAC * liquid_share``.
    """
    return SERVER_FAN_FRAC * np.asarray(liquid_share, dtype=float)
