"""Each site's physics for scoring a fleet policy: servers on their SPECpower curve and the
cooling plant of :mod:`coolshift.simulations.plant` (chillers with a temperature-dependent
COP, economiser, pumps, tower fans, CRAH fans by the cube law) under the site's real weather.

The planner's model (its overhead learned from commissioning telemetry of these equations,
:mod:`coolshift.fleet.commissioning`, or the configured wet-bulb ramp) is not used here: every
policy, the LP's included, is scored by the same plant equations.
"""

from __future__ import annotations

import math

import numpy as np

from coolshift.fleet_config import FleetSite
from coolshift.simulations.airside import crah_airflow_m3_s, crah_fan_kw, server_airflow_m3_s
from coolshift.simulations.plant import (
    carnot_fraction,
    chiller_cop,
    chiller_power_kw,
    condenser_water_c,
    economiser_fraction,
    pump_kw,
    tower_fan_kw,
)
from coolshift.simulations.servers import linear_curve_frac, power_curve_w

__all__ = ["simulate_site", "AHRI_CHW_C", "AHRI_COND_WATER_C", "AHRI_COND_AIR_C"]

# AHRI 550/590 (2020) rating points: 6.7 degC leaving chilled water, 29.4 degC entering
# condenser water (water-cooled), 35 degC entering air (air-cooled).
AHRI_CHW_C = 6.7
AHRI_COND_WATER_C = 29.4
AHRI_COND_AIR_C = 35.0
# Tower design heat rejection ~1.25 x the cooling load (compressor heat added; ASHRAE HVAC
# Systems and Equipment 2020 ch. 40 gives 1.2-1.3 for electric chillers).
TOWER_REJECTION_FACTOR = 1.25


def simulate_site(site: FleetSite, work_units, active_servers, temp_c, wetbulb_c, ci_g_per_kwh, price_usd_per_mwh,
                  transfer_kwh: float = 0.0) -> dict:
    """Hourly facility power of one site running ``work_units`` on ``active_servers``; totals.

    Returns kWh by end use, tCO2 (transfer energy charged at the site's mean intensity over
    the period) and USD at the hourly wholesale price.
    """
    work = np.asarray(work_units, dtype=float)
    n = np.maximum(np.asarray(active_servers, dtype=float), 1e-9)
    util = np.clip(work / (n * site.capacity_units_per_server), 0.0, 1.0)
    curve = np.asarray(site.power_curve_frac) if site.power_curve_frac else linear_curve_frac(site.idle_w, site.peak_w)
    it_kw = n * power_curve_w(util, curve, site.peak_w) / 1000.0
    pl = site.plant
    design = site.design_it_kw
    cond = condenser_water_c(wetbulb_c, temp_c, pl.chiller_type)
    rated_cond = AHRI_COND_AIR_C if pl.chiller_type == "air_cooled" else AHRI_COND_WATER_C
    eta = carnot_fraction(pl.rated_cop, AHRI_CHW_C, rated_cond, pl.chiller_type)
    cop = chiller_cop(pl.chw_setpoint_c, cond, eta, pl.chiller_type)
    free = economiser_fraction(pl.economiser, pl.economiser_approach_c, pl.chw_setpoint_c, pl.supply_air_c, wetbulb_c, temp_c)
    cap_kw = pl.chiller_capacity_per_it_kw * design
    chiller_kw = chiller_power_kw(np.minimum(it_kw * (1.0 - free), cap_kw), cap_kw, cop)
    pumps_kw = pump_kw(it_kw, pl.pump_kw_per_it_kw * design, design)
    tower_kw = (tower_fan_kw(it_kw + chiller_kw, pl.tower_fan_kw_per_it_kw * design, TOWER_REJECTION_FACTOR * design)
                if pl.chiller_type == "water_cooled" else np.zeros_like(it_kw))
    units = max(1, math.ceil(pl.crah_units_per_mw * design / 1000.0))
    airflow = crah_airflow_m3_s(server_airflow_m3_s(it_kw), "full", units * pl.crah_rated_airflow_m3_s, 0.3)
    crah_kw = crah_fan_kw(airflow, units, pl.crah_rated_airflow_m3_s, pl.crah_rated_fan_kw)
    loss_kw = pl.electrical_loss_frac * it_kw
    facility_kw = it_kw + chiller_kw + pumps_kw + tower_kw + crah_kw + loss_kw
    ci = np.asarray(ci_g_per_kwh, dtype=float)
    carbon_kg = float(facility_kw @ ci) / 1000.0 + transfer_kwh * float(ci.mean()) / 1000.0
    return {
        "it_mwh": float(it_kw.sum()) / 1000.0,
        "cooling_mwh": float((chiller_kw + pumps_kw + tower_kw + crah_kw).sum()) / 1000.0,
        "facility_mwh": float(facility_kw.sum()) / 1000.0,
        "transfer_mwh": transfer_kwh / 1000.0,
        "tco2": carbon_kg / 1000.0,
        "cost_usd": float(facility_kw @ np.asarray(price_usd_per_mwh, dtype=float)) / 1000.0,
        "pue": float(facility_kw.sum() / max(it_kw.sum(), 1e-9)),
        "facility_kw": facility_kw,
        "it_kw": it_kw,
    }
