"""Scope 1 (direct) emissions: fuel burnt on site and refrigerant topped up (leaked).

Fuel: kgCO2e = quantity x factor, with factors built from the US EPA GHG Emission Factors Hub
(2024), Table 1 (stationary combustion: kg CO2, g CH4 and g N2O per mmBtu, and the fuel's
higher heating value), CH4 and N2O weighted by their IPCC AR6 GWP-100. Refrigerant: a top-up
replaces what leaked (the GHG Protocol's mass-balance / simplified material balance method for
HFCs), so kgCO2e = kg added x GWP-100 (IPCC AR6; blends by their ASHRAE Standard 34 mass
composition).
"""

from __future__ import annotations

import pandas as pd

__all__ = ["GWP100_AR6", "REFRIGERANT_BLENDS", "FUEL_FACTORS", "refrigerant_gwp100", "fuel_kgco2e", "refrigerant_kgco2e", "scope1"]

# IPCC AR6 WG1 (2021) Chapter 7, Table 7.15 and Supplementary Material Table 7.SM.7: GWP-100.
GWP100_AR6: dict[str, float] = {
    "CO2": 1.0,
    "CH4": 29.8,  # fossil methane
    "N2O": 273.0,
    "HFC-23": 14600.0,
    "HFC-32": 771.0,
    "HFC-125": 3740.0,
    "HFC-134a": 1530.0,
    "HFC-143a": 5810.0,
    "HFC-227ea": 3600.0,
    "HFC-245fa": 962.0,
    "HCFC-22": 1960.0,
    "HFO-1234yf": 0.501,
    "HFO-1234ze(E)": 1.37,
    "SF6": 25200.0,
}
# Refrigerant numbers -> single gases.
_ALIASES = {"R-23": "HFC-23", "R-32": "HFC-32", "R-125": "HFC-125", "R-134A": "HFC-134a", "R-143A": "HFC-143a",
            "R-227EA": "HFC-227ea", "R-245FA": "HFC-245fa", "R-22": "HCFC-22", "R-1234YF": "HFO-1234yf",
            "R-1234ZE": "HFO-1234ze(E)", "R-1234ZE(E)": "HFO-1234ze(E)"}
# ASHRAE Standard 34-2022, Table D-2 (zeotropic and azeotropic blends): mass fractions.
REFRIGERANT_BLENDS: dict[str, dict[str, float]] = {
    "R-410A": {"HFC-32": 0.50, "HFC-125": 0.50},
    "R-407C": {"HFC-32": 0.23, "HFC-125": 0.25, "HFC-134a": 0.52},
    "R-404A": {"HFC-125": 0.44, "HFC-143a": 0.52, "HFC-134a": 0.04},
    "R-513A": {"HFO-1234yf": 0.56, "HFC-134a": 0.44},
    "R-454B": {"HFC-32": 0.689, "HFO-1234yf": 0.311},
}

_GAL_L = 3.785411784  # litres per US gallon (NIST Handbook 44, exact)
_SCF_M3 = 0.3048 ** 3  # m3 per standard cubic foot (exact)


def _per_unit(co2_kg_per_mmbtu: float, ch4_g_per_mmbtu: float, n2o_g_per_mmbtu: float, mmbtu_per_unit: float) -> float:
    """kgCO2e per unit of fuel from EPA per-mmBtu factors and the fuel's HHV per unit."""
    per_mmbtu = co2_kg_per_mmbtu + ch4_g_per_mmbtu / 1000.0 * GWP100_AR6["CH4"] + n2o_g_per_mmbtu / 1000.0 * GWP100_AR6["N2O"]
    return per_mmbtu * mmbtu_per_unit


_EPA = "US EPA GHG Emission Factors Hub (2024), Table 1 stationary combustion; CH4/N2O at IPCC AR6 GWP-100"
# fuel: (unit, kgCO2e per unit, source). EPA Table 1: distillate fuel oil No. 2 73.96 kg CO2,
# 3.0 g CH4, 0.6 g N2O per mmBtu, 0.138 mmBtu/gal; motor gasoline 70.22 kg, 0.125 mmBtu/gal;
# propane 62.87 kg, 0.091 mmBtu/gal; natural gas 53.06 kg, 1.0 g CH4, 0.10 g N2O per mmBtu,
# 0.001026 mmBtu/scf.
FUEL_FACTORS: dict[str, tuple[str, float, str]] = {
    "diesel": ("litre", _per_unit(73.96, 3.0, 0.6, 0.138 / _GAL_L), _EPA + ": distillate fuel oil No. 2"),
    "gasoline": ("litre", _per_unit(70.22, 3.0, 0.6, 0.125 / _GAL_L), _EPA + ": motor gasoline"),
    "propane": ("litre", _per_unit(62.87, 3.0, 0.6, 0.091 / _GAL_L), _EPA + ": propane"),
    "natural_gas": ("m3", _per_unit(53.06, 1.0, 0.1, 0.001026 / _SCF_M3), _EPA + ": natural gas"),
}


def refrigerant_gwp100(name: str) -> float | None:
    """GWP-100 (IPCC AR6) of a refrigerant or blend by name (R-410A, HFC-134a, R-134a ...); None if unknown."""
    key = name.strip()
    for table in (GWP100_AR6,):
        for k, v in table.items():
            if k.upper() == key.upper():
                return v
    alias = _ALIASES.get(key.upper())
    if alias:
        return GWP100_AR6[alias]
    blend = REFRIGERANT_BLENDS.get(key.upper())
    if blend:
        return sum(frac * GWP100_AR6[g] for g, frac in blend.items())
    return None


def fuel_kgco2e(quantity, kgco2e_per_unit: float):
    """Emissions [kgCO2e] of burning ``quantity`` units of a fuel."""
    return quantity * kgco2e_per_unit


def refrigerant_kgco2e(kg, gwp100: float):
    """Emissions [kgCO2e] of ``kg`` of refrigerant released (topped up)."""
    return kg * gwp100


def scope1(fuel: pd.DataFrame | None, refrigerant: pd.DataFrame | None) -> dict:
    """Scope 1 from checked logs (``kgco2e`` per row already set by the reader); totals by fuel / gas."""
    out = {"fuel": [], "refrigerant": [], "fuel_kgco2e": 0.0, "refrigerant_kgco2e": 0.0}
    if fuel is not None and len(fuel):
        g = fuel.groupby("fuel", sort=True).agg(quantity=("quantity", "sum"), unit=("unit", "first"),
                                                kgco2e_per_unit=("kgco2e_per_unit", "first"), kgco2e=("kgco2e", "sum"),
                                                entries=("quantity", "size"), source=("factor_source", "first"))
        out["fuel"] = g.reset_index().to_dict(orient="records")
        out["fuel_kgco2e"] = float(fuel["kgco2e"].sum())
    if refrigerant is not None and len(refrigerant):
        g = refrigerant.groupby("refrigerant", sort=True).agg(kg=("kg", "sum"), gwp100=("gwp100", "first"),
                                                              kgco2e=("kgco2e", "sum"), entries=("kg", "size"))
        out["refrigerant"] = g.reset_index().to_dict(orient="records")
        out["refrigerant_kgco2e"] = float(refrigerant["kgco2e"].sum())
    out["total_kgco2e"] = out["fuel_kgco2e"] + out["refrigerant_kgco2e"]
    out["gwp_source"] = "IPCC AR6 WG1 (2021) Table 7.15 / 7.SM.7, GWP-100; blends by ASHRAE Standard 34 mass fractions"
    return out
