"""EU data-centre reporting: Directive (EU) 2023/1791 Article 12 and Annex VII, Commission
Delegated Regulation (EU) 2024/1364 (first phase of the Union rating scheme for data centres).

The report is laid out like the Regulation: Annex I information and key performance indicators
(the operator's fields and the metered energy, water, heat-reuse and renewable figures, with
the Annex's symbols), and the sustainability indicators of Annex III, computed as EN 50600-4-x
defines them:

- PUE = E_DC / E_IT (EN 50600-4-2), E_DC the data centre's total energy, E_IT the ICT energy;
- WUE = W_IN / E_IT [L/kWh] (EN 50600-4-9), W_IN the water input;
- ERF = E_REUSE / E_DC (EN 50600-4-6), E_REUSE the waste heat delivered for reuse;
- REF = E_RES_TOT / E_DC (EN 50600-4-3), renewable energy from guarantees of origin, PPAs
  and on-site generation, capped at E_DC.
"""

from __future__ import annotations

import pandas as pd

__all__ = ["REGULATION", "eu_kpis", "eu_report", "eu_rows"]

REGULATION = ("Directive (EU) 2023/1791, Article 12 and Annex VII; Commission Delegated Regulation (EU) 2024/1364, "
              "Annexes I and III")


def eu_kpis(facility_kwh: float, it_kwh: float, water_l: float | None, reuse_kwh: float, renewable_kwh: float) -> dict:
    """PUE, WUE [L/kWh], ERF and REF [0-1] of a period (None where the input is missing or zero)."""
    ok = facility_kwh > 0 and it_kwh > 0
    return {
        "pue": facility_kwh / it_kwh if ok else None,
        "wue": (water_l / it_kwh if it_kwh > 0 else None) if water_l is not None else None,
        "erf": reuse_kwh / facility_kwh if facility_kwh > 0 else None,
        "ref": min(renewable_kwh, facility_kwh) / facility_kwh if facility_kwh > 0 else None,
    }


def eu_report(*, site_name: str, latitude_deg: float | None, longitude_deg: float | None, start: str, end: str,
              facility_kwh: float, it_kwh: float, water_l: float | None, reuse: dict, ppa_kwh: float, info,
              installed_it_kw: float | None, setpoints: dict) -> dict:
    """The Annex structure of one reporting period (JSON-able); ``info`` is the operator's
    :class:`~coolshift.reporting_config.EUInformation`, ``reuse`` the heat-reuse figures."""
    res_kwh = info.guarantees_of_origin_kwh + ppa_kwh + info.onsite_renewable_kwh
    kpis = eu_kpis(facility_kwh, it_kwh, water_l, reuse["kwh"], res_kwh)
    return {
        "legal_basis": REGULATION,
        "reporting_period": {"start": start, "end": end},
        "annex_i_information": {
            "data_centre_name": site_name, "owner": info.owner or None, "operator": info.operator or None,
            "data_centre_type": info.data_centre_type, "country": info.country or None,
            "location": {"latitude_deg": latitude_deg, "longitude_deg": longitude_deg},
            "operation_start_year": info.operation_start_year,
        },
        "annex_i_kpis": {
            "installed_it_power_demand_kw": installed_it_kw,
            "total_floor_area_m2": info.total_floor_area_m2,
            "computer_room_floor_area_m2": info.computer_room_floor_area_m2,
            "total_energy_consumption_kwh": facility_kwh,  # E_DC
            "ict_energy_consumption_kwh": it_kwh,  # E_IT
            "renewable_energy_consumption_kwh": {  # E_RES_TOT
                "total": res_kwh, "guarantees_of_origin": info.guarantees_of_origin_kwh,
                "power_purchase_agreements": ppa_kwh, "onsite": info.onsite_renewable_kwh},
            "waste_heat_reused_kwh": reuse["kwh"],  # E_REUSE
            "waste_heat_reuse_basis": reuse["basis"],
            "average_waste_heat_temperature_c": reuse["temperature_c"],
            "temperature_set_points_c": setpoints,
            "total_water_input_m3": None if water_l is None else water_l / 1000.0,  # W_IN
            "potable_water_input_m3": info.potable_water_m3,
        },
        "annex_iii_sustainability_indicators": {
            "pue": kpis["pue"], "wue_l_per_kwh": kpis["wue"], "erf": kpis["erf"], "ref": kpis["ref"]},
    }


def eu_rows(report: dict) -> pd.DataFrame:
    """The Annex structure flattened to ``section, field, value`` rows (the CSV export)."""
    rows = []

    def walk(section: str, prefix: str, d: dict) -> None:
        for k, v in d.items():
            name = f"{prefix}{k}"
            if isinstance(v, dict):
                walk(section, name + ".", v)
            else:
                rows.append({"section": section, "field": name, "value": v})

    for section in ("reporting_period", "annex_i_information", "annex_i_kpis", "annex_iii_sustainability_indicators"):
        walk(section, "", report[section])
    return pd.DataFrame(rows)
