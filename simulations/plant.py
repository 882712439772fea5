"""Cooling plant: chiller power, economiser (free cooling), pumps, tower fans and water use.

Pure functions; powers and heat flows in kW, temperatures in degC.

Chiller model: the temperature dependence of the COP is a Carnot fraction on the
refrigerant-side lift (evaporator and condenser approaches added to the water
temperatures), calibrated so that the COP equals ``rated_cop`` at the rated chilled-water
and condenser temperatures (Gordon & Ng, "Cool Thermodynamics", 2000, ch. 3: real
chillers run at a roughly constant fraction of Carnot over their operating range). The
part-load ratio enters through the EnergyPlus ``Chiller:Electric:EIR`` EIR-f(PLR)
quadratic (EnergyPlus Engineering Reference, "Electric Chiller Model Based on Condenser
Entering Temperature"), with the coefficients of the dataset chiller "DOE-2
Centrifugal/5.50COP" (EnergyPlus ``DataSets/Chillers.idf``). We do not use the dataset's
biquadratic EIR-f(T) curve because it is only valid for leaving chilled water 5-10 degC,
while data-centre setpoints reach 18 degC.

References
----------
- AHRI 550/590 (2020): rating conditions 6.7 degC leaving chilled water, 29.4 degC entering
  condenser water, 10 degF (5.6 K) condenser range.
- ASHRAE Handbook - HVAC Systems and Equipment (2020), ch. 40 (cooling towers): ~80-90 % of
  the heat is rejected by evaporation; blowdown = evaporation / (cycles - 1).
- ASHRAE 90.4-2019 and Uptime Institute: water-side economisers use a plate heat exchanger
  with ~1-2 K approach after a tower with ~3-4 K approach to wet-bulb.
- ASHRAE TC 9.9, "Liquid Cooling Guidelines for Datacom Equipment Centers", 2nd ed. (2014),
  and "Water-Cooled Servers: Common Designs, Components, and Processes" (2019): facility
  water classes W17-W45 by highest supply temperature; cold-plate (direct-to-chip) servers
  carry 60-80 % of their heat in water; technology-loop temperature rise ~10 K.

Liquid cooling (direct-to-chip): the liquid share of the IT heat goes through a CDU plate
heat exchanger to warm facility water that the tower (or a dry cooler) cools without a
chiller while it can hold the W-class supply limit; the rest is trimmed by the chillers.
"""

from __future__ import annotations

import numpy as np

from .airside import SERVER_DELTA_T_K

__all__ = [
    "EIR_FPLR_DOE2_CENTRIFUGAL",
    "carnot_fraction",
    "chiller_cop",
    "eir_fplr",
    "chiller_power_kw",
    "condenser_water_c",
    "economiser_fraction",
    "pump_kw",
    "tower_fan_kw",
    "evaporative_water_l",
    "LIQUID_DELTA_T_K",
    "liquid_free_fraction",
    "liquid_pump_kw",
    "dry_cooler_fan_kw",
]

# EnergyPlus DataSets/Chillers.idf, "DOE-2 Centrifugal/5.50COP" EIRFPLR: a + b PLR + c PLR^2
# (sums to 1 at PLR = 1); minimum unloading PLR 0.1 (same dataset).
EIR_FPLR_DOE2_CENTRIFUGAL = (0.222903, 0.313387, 0.463710)
PLR_MIN = 0.1
# Refrigerant approaches: evaporating ~2 K below leaving chilled water, condensing ~2 K above
# leaving condenser water (shell-and-tube, ASHRAE Handbook - Refrigeration 2022, ch. 43).
EVAP_APPROACH_K = 2.0
COND_APPROACH_K = 2.0
CONDENSER_RANGE_K = 5.6  # AHRI 550/590: 10 degF condenser water range at 3 gpm/ton
# Air-cooled condensers run ~15 K above ambient dry-bulb (ASHRAE Handbook - Refrigeration
# 2022, ch. 39: design TD 11-17 K).
AIR_COOLED_TD_K = 15.0
# Towers are not run below ~15.5 degC (60 degF) entering condenser water: the minimum most
# centrifugal chillers accept (Trane, "Condenser water temperature control", Engineers
# Newsletter vol. 33-2, 2004).
CONDENSER_WATER_MIN_C = 15.5
TOWER_APPROACH_K = 3.9  # CTI / ASHRAE 90.1 rating: 7 degF approach at 35 degC / 29.4 degC
# Highest COP reached by certified variable-speed centrifugal chillers at low lift and
# part load (AHRI directory: IPLV ~0.29 kW/ton = COP 12); the Carnot fraction is capped there.
COP_MAX = 12.0
# Exponent of the low-lift efficiency penalty (applied to sqrt(lift ratio), so 1.0 = square
# root). Fitted by hand to the EnergyPlus DataSets/Chillers.idf reference points of "McQuay PEH
# 1231kW/6.18COP/Vanes" (5.56/22.78 degC) and "McQuay PEH 1635kW/7.47COP/Vanes" (4.44/12.78
# degC), which a constant Carnot fraction over-predicts by 18 % and 46 %; with it: 8-9 % high.
LOW_LIFT_EXPONENT = 1.0
# Chilled-water design temperature difference (return minus supply): 10 degF (ASHRAE
# Handbook - HVAC Systems and Equipment 2020, ch. 13).
CHW_DELTA_T_K = 5.6
# Minimum pump flow fraction (chillers need minimum evaporator flow; ASHRAE 90.1-2019
# 6.5.4.2 variable flow down to 30 %), and the part-load exponent of a variable-speed pump
# with differential-pressure reset (between the cube of the affinity law and linear;
# ASHRAE Handbook - HVAC Systems and Equipment 2020, ch. 44).
PUMP_MIN_FLOW_FRAC = 0.3
PUMP_EXPONENT = 2.0
TOWER_FAN_MIN_SPEED_FRAC = 0.2  # VFD tower fans rarely go below 20 % speed
LATENT_HEAT_KJ_KG = 2430.0  # water at ~30 degC (ASHRAE Fundamentals 2021 ch. 1)
EVAPORATED_SHARE = 0.85  # share of rejected heat carried by evaporation (ASHRAE HVAC S&E ch. 40)
CYCLES_OF_CONCENTRATION = 5.0  # typical tower water treatment (US DOE FEMP, "Cooling towers" 2011)


def condenser_water_c(wetbulb_c, drybulb_c, chiller_type: str) -> np.ndarray:
    """Entering condenser temperature [degC]: tower water (water-cooled) or ambient air (air-cooled)."""
    if chiller_type == "air_cooled":
        return np.asarray(drybulb_c, dtype=float)
    return np.maximum(np.asarray(wetbulb_c, dtype=float) + TOWER_APPROACH_K, CONDENSER_WATER_MIN_C)


def _lift_k(chw_c, cond_c, chiller_type: str):
    t_evap = np.asarray(chw_c, dtype=float) - EVAP_APPROACH_K
    if chiller_type == "air_cooled":
        t_cond = np.asarray(cond_c, dtype=float) + AIR_COOLED_TD_K
    else:
        t_cond = np.asarray(cond_c, dtype=float) + CONDENSER_RANGE_K + COND_APPROACH_K
    return t_evap + 273.15, np.maximum(t_cond - t_evap, 1.0)


def carnot_fraction(rated_cop: float, rated_chw_c: float, rated_cond_c: float, chiller_type: str) -> tuple[float, float]:
    """(second-law efficiency [-], refrigerant lift [K]) at the rating point, reproducing ``rated_cop``."""
    t_evap_k, lift = _lift_k(rated_chw_c, rated_cond_c, chiller_type)
    return float(rated_cop / (t_evap_k / lift)), float(lift)


def chiller_cop(chw_c, cond_c, eta_lift: tuple[float, float], chiller_type: str) -> np.ndarray:
    """Full-load COP [-] at leaving chilled water ``chw_c`` and entering condenser ``cond_c`` [degC].

    The second-law efficiency falls as lift drops (fixed compressor, motor and heat-exchanger
    losses weigh more): ``eta = eta_rated * sqrt(lift / lift_rated)`` below the rated lift.
    """
    eta, lift_rated = eta_lift
    t_evap_k, lift = _lift_k(chw_c, cond_c, chiller_type)
    eta_l = eta * np.sqrt(np.minimum(lift / lift_rated, 1.0)) ** LOW_LIFT_EXPONENT
    return np.minimum(eta_l * t_evap_k / lift, COP_MAX)


def eir_fplr(plr) -> np.ndarray:
    """EnergyPlus EIR-f(PLR) multiplier [-] (1 at full load), PLR clipped at ``PLR_MIN``."""
    a, b, c = EIR_FPLR_DOE2_CENTRIFUGAL
    p = np.clip(np.asarray(plr, dtype=float), PLR_MIN, 1.0)
    return a + b * p + c * p * p


def chiller_power_kw(load_kw, capacity_kw: float, cop_full) -> np.ndarray:
    """Chiller electric power [kW] for ``load_kw`` [kW] (already limited to capacity).

    EnergyPlus form: P = capacity / COP(T) * EIRFPLR(PLR); below PLR_MIN the chiller
    cycles, so power falls in proportion (PLR / PLR_MIN).
    """
    load = np.asarray(load_kw, dtype=float)
    plr = load / capacity_kw
    cycling = np.where(plr < PLR_MIN, plr / PLR_MIN, 1.0)
    return capacity_kw / np.asarray(cop_full, dtype=float) * eir_fplr(plr) * cycling


def economiser_fraction(economiser_type: str, approach_c: float, chw_c, supply_c, wetbulb_c, drybulb_c) -> np.ndarray:
    """Share of the cooling load met free [0-1]: 1 full, between 0 and 1 partial, 0 off.

    Water-side: tower + plate HX water at ``wetbulb + approach`` pre-cools the chilled-water
    return (``chw + CHW_DELTA_T_K``); full when it reaches the chilled-water setpoint. Air-side:
    outside air at ``drybulb + approach`` against the supply setpoint and the hot-aisle return
    (``supply + SERVER_DELTA_T``). Humidity limits of air-side economisers are not modelled.
    """
    if economiser_type == "none":
        return np.zeros(np.broadcast(np.asarray(chw_c), np.asarray(wetbulb_c)).shape)
    if economiser_type == "waterside":
        t_free = np.asarray(wetbulb_c, dtype=float) + approach_c
        lo = np.asarray(chw_c, dtype=float)
        hi = lo + CHW_DELTA_T_K
    else:
        t_free = np.asarray(drybulb_c, dtype=float) + approach_c
        lo = np.asarray(supply_c, dtype=float)
        hi = lo + SERVER_DELTA_T_K
    return np.clip((hi - t_free) / (hi - lo), 0.0, 1.0)


def pump_kw(load_kw, rated_kw: float, design_load_kw: float) -> np.ndarray:
    """Chilled + condenser water pump power [kW], flow following load above a minimum flow."""
    frac = np.clip(np.asarray(load_kw, dtype=float) / design_load_kw, PUMP_MIN_FLOW_FRAC, 1.0)
    return rated_kw * frac**PUMP_EXPONENT


def tower_fan_kw(rejected_kw, rated_kw: float, design_rejected_kw: float) -> np.ndarray:
    """Cooling-tower fan power [kW] by the cube law of a speed that follows the rejected heat."""
    frac = np.clip(np.asarray(rejected_kw, dtype=float) / design_rejected_kw, 0.0, 1.0)
    speed = np.where(frac > 0, np.maximum(frac, TOWER_FAN_MIN_SPEED_FRAC), 0.0)
    return rated_kw * speed**3


def evaporative_water_l(rejected_kwh) -> np.ndarray:
    """Tower make-up water [L] for ``rejected_kwh`` [kWh] of heat: evaporation plus blowdown."""
    evap_kg = np.asarray(rejected_kwh, dtype=float) * 3600.0 / LATENT_HEAT_KJ_KG * EVAPORATED_SHARE
    return evap_kg * (1.0 + 1.0 / (CYCLES_OF_CONCENTRATION - 1.0))  # 1 kg ~ 1 L


# -- direct liquid cooling ----------------------------------------------------------------
# Technology-cooling-loop temperature rise at design flow (ASHRAE TC 9.9 Water-Cooled Servers
# 2019: cold-plate loops are designed for ~10 K; OCP ACS cold-plate specifications likewise).
LIQUID_DELTA_T_K = 10.0
# CDU plate heat exchanger approach, facility water to technology loop (ASHRAE TC 9.9 2019:
# 2-4 K for liquid-to-liquid CDUs); we take the low end of a new installation.
CDU_APPROACH_K = 2.0
# Pumping of the technology and facility liquid loops: P = flow x head / efficiency, with the
# flow that carries the heat at LIQUID_DELTA_T_K (water cp 4.18 kJ/(kg K), 1 kg/L: ASHRAE
# Fundamentals 2021 ch. 33), a total head of 300 kPa across cold plates, rack manifolds, CDU
# and facility piping (ASHRAE TC 9.9 2019 gives 100-200 kPa for the technology loop alone)
# and a wire-to-water efficiency of 0.5 (small variable-speed pumps; ASHRAE HVAC S&E 2020
# ch. 44). Gives ~14 W of pump power per kW of heat.
CP_WATER_KJ_KGK = 4.18
LIQUID_LOOP_HEAD_KPA = 300.0
LIQUID_PUMP_EFFICIENCY = 0.5
# Dry coolers (sites without a tower): leaving water ~8 K above dry-bulb and ~20 W of EC fan
# power per kW rejected at design (ASHRAE HVAC S&E 2020 ch. 40 on closed-circuit/dry coolers;
# an estimate, not a datasheet figure: give your unit's if you have it).
DRY_COOLER_APPROACH_K = 8.0
DRY_COOLER_FAN_KW_PER_KW = 0.02


def liquid_free_fraction(source_water_c, supply_max_c: float, delta_t_k: float = LIQUID_DELTA_T_K,
                         approach_k: float = CDU_APPROACH_K) -> np.ndarray:
    """Share of the liquid loop's heat rejected without a chiller [0-1].

    Facility water from the tower or dry cooler at ``source_water_c`` [degC] meets the loop
    through the CDU (``approach_k``). It cools the loop return (``supply_max_c + delta_t_k``)
    down to the W-class supply limit ``supply_max_c``: all of it when ``source + approach``
    is at or below the limit, none when it is above the return, linearly in between (the
    chillers trim the rest, as in :func:`economiser_fraction`).
    """
    hi = supply_max_c + delta_t_k
    t = np.asarray(source_water_c, dtype=float) + approach_k
    return np.clip((hi - t) / delta_t_k, 0.0, 1.0)


def liquid_pump_kw(liquid_kw, delta_t_k: float = LIQUID_DELTA_T_K, head_kpa: float = LIQUID_LOOP_HEAD_KPA,
                   efficiency: float = LIQUID_PUMP_EFFICIENCY) -> np.ndarray:
    """Pump power [kW] to carry ``liquid_kw`` [kW] of heat at a ``delta_t_k`` rise against ``head_kpa``."""
    flow_m3_s = np.asarray(liquid_kw, dtype=float) / (CP_WATER_KJ_KGK * delta_t_k) / 1000.0
    return flow_m3_s * head_kpa / efficiency


def dry_cooler_fan_kw(rejected_kw) -> np.ndarray:
    """Dry-cooler fan power [kW] for ``rejected_kw`` [kW] (proportional to the heat, see constant)."""
    return np.asarray(rejected_kw, dtype=float) * DRY_COOLER_FAN_KW_PER_KW
