"""Safe setpoints: the one set of rules every part of Coolshift uses for supply air and chilled water.

Used by the optimiser's bounds (:mod:`coolshift.optimizer.data`), the baseline rules
(:mod:`coolshift.baselines`) and the BMS safety layer (:mod:`coolshift.bms.safety`), so a
setpoint the plan may choose, the rule plan falls back to and the BMS will write are judged
alike. Temperatures in degC.

- Supply air stays inside the zone's setpoint range and never above its inlet maximum
  (rack inlets are never colder than the supply air; ASHRAE TC 9.9 recommended 18-27 degC).
- Chilled water stays inside the chiller's range and at least the CRAH coil approach plus
  ``CHW_MARGIN_K`` below the coldest supply setpoint it must deliver.
- A setpoint moves at most the zone's ``supply_setpoint_max_step_c`` per planning step.
"""

from __future__ import annotations

import numpy as np

from coolshift.config import SiteConfig, Zone

__all__ = [
    "INLET_MARGIN_C",
    "CHW_MARGIN_K",
    "supply_envelope_c",
    "chw_envelope_c",
    "safe_supply_max_c",
    "chw_for_supply_c",
    "rate_per_step_c",
    "ramp_const",
    "ramp",
]

# Supply-to-hottest-inlet margin by containment (ASHRAE TC 9.9 "Best Practices for Datacom
# Facility Energy Efficiency", 2nd ed. 2009, ch. 4: the gap each air management achieves).
INLET_MARGIN_C = {"full": 2.0, "partial": 4.0, "none": 6.0}
# Chilled water 1 K below what the CRAH coil approach strictly needs: operators keep it so the
# coil can deliver the supply setpoint, and a learned model is not asked for unseen states.
CHW_MARGIN_K = 1.0


def supply_envelope_c(zone: Zone) -> tuple[float, float]:
    """(lowest, highest) supply setpoint a zone may be given: its range, capped at its inlet maximum."""
    return zone.supply_setpoint_min_c, min(zone.supply_setpoint_max_c, zone.inlet_max_c)


def chw_envelope_c(site: SiteConfig) -> tuple[float, float]:
    """(lowest, highest) chilled-water setpoint: the chiller's range, and cold enough that the
    CRAH coil can still hold every zone's inlet maximum."""
    ch = site.cooling.chiller
    approach = site.cooling.crah_supply_approach_c
    return ch.chw_setpoint_min_c, min([ch.chw_setpoint_max_c] + [z.inlet_max_c - approach for z in site.zones])


def safe_supply_max_c(site: SiteConfig) -> np.ndarray:
    """Highest supply setpoint per zone the rules aim for: inlet max minus the containment margin,
    within the zone's setpoint range (never below its minimum, even when the inlet limit
    cannot be met: the setpoint range is the plant's own limit)."""
    return np.array(
        [max(z.supply_setpoint_min_c, min(z.supply_setpoint_max_c, z.inlet_max_c - INLET_MARGIN_C[z.containment]))
         for z in site.zones]
    )


def chw_for_supply_c(site: SiteConfig, supply: np.ndarray) -> np.ndarray:
    """(n,) warmest chilled water that still delivers the lowest zone supply of each step, in range."""
    ch = site.cooling.chiller
    chw = supply.min(axis=1) - site.cooling.crah_supply_approach_c - CHW_MARGIN_K
    return np.clip(chw, ch.chw_setpoint_min_c, ch.chw_setpoint_max_c)


def rate_per_step_c(site: SiteConfig, step_h: float) -> np.ndarray:
    """(zones,) largest setpoint move per step of ``step_h`` hours (the config's is per planning step)."""
    return np.array([z.supply_setpoint_max_step_c for z in site.zones]) * max(
        step_h * 60.0 / site.planning.step_minutes, 1.0
    )


def ramp_const(target: np.ndarray, prev: np.ndarray, rate: np.ndarray, n: int) -> np.ndarray:
    """Move from ``prev`` toward a constant ``target`` at most ``rate`` per step (n x zones)."""
    k = np.arange(1, n + 1)[:, None]
    return np.clip(target[None], prev[None] - k * rate[None], prev[None] + k * rate[None])


def ramp(target: np.ndarray, prev: np.ndarray, rate: np.ndarray) -> np.ndarray:
    """Follow ``target`` (n x zones) from ``prev`` moving at most ``rate`` per step."""
    out = np.empty_like(target, dtype=float)
    x = np.asarray(prev, dtype=float).copy()
    for k in range(target.shape[0]):
        x = np.clip(target[k], x - rate, x + rate)
        out[k] = x
    return out
