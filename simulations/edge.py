"""Edge sites: LEAF-style static + proportional power, their PUE, and network transfer energy.

Convention (stated in docs/simulator.md): an edge site's static power is attributed to
Coolshift only in steps where it carries offloaded work (it could otherwise sleep or serve
others), so small offloads are not flattered; its energy is multiplied by its own PUE and
counted at its own grid intensity. Network transfer energy is counted at the home site's
grid intensity.

References
----------
- Wiesner & Thamsen (2021), "LEAF: Simulating large energy-aware fog computing
  environments", IEEE ICFEC: node power = static + utilisation-proportional dynamic power;
  network links charged per bit transferred.
- Aslan, Mayers, Koomey, France (2018), "Electricity intensity of Internet data
  transmission", J. Industrial Ecology: kWh/GB halving every ~2 years (site config value).
"""

from __future__ import annotations

import numpy as np

__all__ = ["edge_it_kw", "edge_facility_kw", "network_kw"]


def edge_it_kw(load_units_per_h, static_kw: float, kw_per_unit_per_h: float) -> np.ndarray:
    """Edge IT power [kW]: static power while carrying work plus the proportional part."""
    load = np.asarray(load_units_per_h, dtype=float)
    return np.where(load > 0, static_kw, 0.0) + kw_per_unit_per_h * load


def edge_facility_kw(it_kw, pue: float) -> np.ndarray:
    """Edge facility power [kW] = IT x the site's PUE."""
    return np.asarray(it_kw, dtype=float) * pue


def network_kw(units_per_h, data_gb_per_unit, kwh_per_gb: float) -> np.ndarray:
    """Network transfer power [kW] = GB/h moved x kWh/GB."""
    return np.asarray(units_per_h, dtype=float) * np.asarray(data_gb_per_unit, dtype=float) * kwh_per_gb
