"""What the site's plant can carry: nameplate limits derived from the site config.

Pure functions over a :class:`~coolshift.config.SiteConfig`; powers and heat in kW,
temperatures in degC. The optimiser plans inside these limits (one constraint family
each, :mod:`coolshift.optimizer.constraints`), ``coolshift validate`` refuses a site whose
design load exceeds them in every weather (:func:`design_problems`), and the simulator
judges what physically happens when they are exceeded (its own physics, not these rows).

Redundancy: units held in reserve (``redundant_units``, ``ups_redundant_modules``: 1 for
N+1) are never counted on; the usable capacity is the rating of the others.

Assumptions, stated so they can be checked:

- CRAH capacity is the heat its airflow carries at the servers' air temperature rise
  (sensible heat, ``Q = rho cp V dT``), or the datasheet's ``rated_cooling_kw`` when given,
  whichever is lower.
- The chiller carries what the economiser does not. The economiser's share is counted at
  the coldest chilled water (water-side) or supply air (air-side) the plan may choose, so
  a plan never relies on more free cooling than it will get: conservative when the plan
  warms the water.
- Liquid-cooled heat (cold plates) is counted on the chiller like air-side heat, less the
  same economiser share: conservative, since warm-water loops run free more often.
- UPS losses at the design load's efficiency, PDU losses as configured, CRAH fans at their
  rated power, lighting and other loads in the room: all heat the plant must reject.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from coolshift.config import SiteConfig, Zone

__all__ = [
    "RHO_AIR_KG_M3",
    "CP_AIR_KJ_KGK",
    "SERVER_AIR_RISE_K",
    "CHW_RANGE_K",
    "PlantLimits",
    "plant_limits",
    "crah_capacity_kw",
    "free_cooling_share",
    "design_problems",
    "free_cooling_needed_wetbulb_c",
]

RHO_AIR_KG_M3 = 1.2  # ASHRAE Handbook - Fundamentals 2021 ch. 1: dry air at ~20 degC, sea level
CP_AIR_KJ_KGK = 1.006  # ASHRAE Handbook - Fundamentals 2021 ch. 1
# Server inlet-to-exhaust rise the CRAH airflow is sized for: ASHRAE TC 9.9 (2016), "Data
# Center Power Equipment Thermal Guidelines and Best Practices": 10-15 K typical; 12 K taken.
SERVER_AIR_RISE_K = 12.0
# Chilled-water design range (return minus supply): 10 degF, ASHRAE Handbook - HVAC Systems
# and Equipment 2020, ch. 13.
CHW_RANGE_K = 5.6


def _usable(units: int, redundant: int) -> float:
    return (units - redundant) / units


def crah_capacity_kw(zone: Zone) -> float:
    """Sensible heat [kW] the zone's usable CRAH units carry at full airflow."""
    c = zone.crah
    per_unit = c.rated_airflow_m3_s * RHO_AIR_KG_M3 * CP_AIR_KJ_KGK * SERVER_AIR_RISE_K
    if c.rated_cooling_kw is not None:
        per_unit = min(per_unit, c.rated_cooling_kw)
    return float((c.count - c.redundant_units) * per_unit)


def _ups_efficiency(load_frac: float, points) -> float:
    pts = np.asarray(points, float)
    order = np.argsort(pts[:, 0])
    return float(np.interp(load_frac, pts[order, 0], pts[order, 1]))


@dataclass(frozen=True)
class PlantLimits:
    """Usable ratings and the linear heat model the plan is held to (all kW)."""

    ups_kw: float  # UPS output it may carry: IT plus PDU losses
    ups_installed_kw: float
    pdu_kw: np.ndarray  # (Z,) IT per zone; inf where not rated
    crah_kw: np.ndarray  # (Z,) air-side IT heat per zone
    chiller_kw: float
    chiller_installed_kw: float
    pdu_loss_frac: float
    air_share: float  # share of IT heat carried by air (the rest by cold plates)
    # plant heat = heat_per_it_kw * IT + heat_fixed_kw
    heat_per_it_kw: float
    heat_fixed_kw: float


def plant_limits(site: SiteConfig) -> PlantLimits:
    """The site's usable plant ratings (see the module's assumptions)."""
    el, ch = site.electrical, site.cooling.chiller
    pdu = el.pdu_loss_frac
    ups_installed = el.ups_rated_kw
    ups = ups_installed * _usable(el.ups_modules, el.ups_redundant_modules)
    design_out = site.design_it_load_kw * (1.0 + pdu)
    ups_loss_frac = 1.0 / _ups_efficiency(design_out / ups_installed, el.ups_efficiency_points) - 1.0
    air_share = 1.0 - site.cooling.liquid.it_heat_share_frac
    crah_fans = sum(z.crah.count * z.crah.rated_fan_power_kw for z in site.zones)
    return PlantLimits(
        ups_kw=ups,
        ups_installed_kw=ups_installed,
        pdu_kw=np.array([z.pdu_rated_kw if z.pdu_rated_kw is not None else np.inf for z in site.zones], float),
        crah_kw=np.array([crah_capacity_kw(z) for z in site.zones], float),
        chiller_kw=ch.rated_capacity_kw * _usable(ch.units, ch.redundant_units),
        chiller_installed_kw=ch.rated_capacity_kw,
        pdu_loss_frac=pdu,
        air_share=air_share,
        heat_per_it_kw=(1.0 + pdu) * (1.0 + ups_loss_frac),
        heat_fixed_kw=el.lighting_other_kw + crah_fans,
    )


def free_cooling_share(site: SiteConfig, wetbulb_c, drybulb_c, chw_c, supply_c) -> np.ndarray:
    """Share [0-1] of the heat the economiser can carry, per step.

    Water-side: tower and plate-HX water at ``wetbulb + approach`` pre-cools the chilled-water
    return (``chw + CHW_RANGE_K``); all of it once it reaches ``chw``. Air-side: outside air at
    ``drybulb + approach`` against the supply air and the hot-aisle return (``supply +
    SERVER_AIR_RISE_K``). Linear in between (ASHRAE 90.4-2019 describes both integrated
    economisers; the share is the temperature ratio of the pre-cooled stream).
    """
    eco = site.cooling.economiser
    wb = np.asarray(wetbulb_c, float)
    if eco.type == "none":
        return np.zeros_like(wb)
    if eco.type == "waterside":
        t_free, lo, span = wb + eco.approach_c, np.asarray(chw_c, float), CHW_RANGE_K
    else:
        t_free, lo, span = np.asarray(drybulb_c, float) + eco.approach_c, np.asarray(supply_c, float), SERVER_AIR_RISE_K
    return np.clip((lo + span - t_free) / span, 0.0, 1.0)


def design_problems(site: SiteConfig) -> list[str]:
    """Why the site's plant can never carry its design load, one line per component (empty: it can).

    "Never": in the best weather for the plant (full free cooling when an economiser exists),
    at the design IT load of each zone (``design_it_load_kw``).
    """
    lim = plant_limits(site)
    out = []
    design_it = site.design_it_load_kw
    need = design_it * (1.0 + lim.pdu_loss_frac)
    if need > lim.ups_kw + 1e-9:
        out.append(f"electrical.ups_rated_kw: the design IT load needs {need:,.0f} kW of UPS output "
                   f"(IT {design_it:,.0f} kW + PDU losses), the UPS carries {lim.ups_kw:,.0f} kW usable")
    for i, z in enumerate(site.zones):
        if z.design_it_load_kw > lim.pdu_kw[i] + 1e-9:
            out.append(f"zones[{i}].pdu_rated_kw ({z.name}): design IT load {z.design_it_load_kw:,.0f} kW, "
                       f"PDUs rated {lim.pdu_kw[i]:,.0f} kW")
        air = z.design_it_load_kw * lim.air_share
        if air > lim.crah_kw[i] + 1e-9:
            out.append(f"zones[{i}].crah ({z.name}): design air-side heat {air:,.0f} kW, the usable CRAH units carry "
                       f"{lim.crah_kw[i]:,.0f} kW ({z.crah.count - z.crah.redundant_units} x "
                       f"{z.crah.rated_airflow_m3_s:g} m3/s at a {SERVER_AIR_RISE_K:g} K rise)")
    if site.cooling.economiser.type == "none":
        heat = design_it * lim.heat_per_it_kw + lim.heat_fixed_kw
        if heat > lim.chiller_kw + 1e-9:
            out.append(f"cooling.chiller.rated_capacity_kw: design heat {heat:,.0f} kW, the chillers carry "
                       f"{lim.chiller_kw:,.0f} kW usable and there is no economiser")
    return out


def free_cooling_needed_wetbulb_c(site: SiteConfig) -> float | None:
    """Highest wet-bulb [degC] at which the plant still carries the design heat, with the
    chilled water at its warmest setpoint; None when the chillers carry it alone (or the
    economiser is not water-side, whose limit is dry-bulb)."""
    lim = plant_limits(site)
    heat = site.design_it_load_kw * lim.heat_per_it_kw + lim.heat_fixed_kw
    if heat <= lim.chiller_kw or site.cooling.economiser.type != "waterside":
        return None
    share = 1.0 - lim.chiller_kw / heat  # what free cooling must carry
    eco, ch = site.cooling.economiser, site.cooling.chiller
    return float(ch.chw_setpoint_max_c + CHW_RANGE_K * (1.0 - share) - eco.approach_c)
