"""Per-server lifecycle footprint, offset certificate records per serial, and the e-waste register.

Per unit: manufacture and transport from the model's figures (:func:`coolshift.whatif.embodied.model_pcf`:
the operator's per-model PCF with its cited method, or a named preset), plus use over the service
life = the unit's energy per hour in service in the reported period x 8,760 h x service years x
the period's energy-weighted location factor. The unit's energy is the run's IT energy allocated to
its pool by rated peak power (servers x peak_w), the model's ``rated_power_w`` when the unit names
no pool, else the site average per server; energy at the server's plug (cooling and losses are in
the site's Scope 2). The same PCFs serve the virtualisation and hardware-refresh what-ifs (a
scenario's ``pcf`` may name a model of the inventory). Boavizta's package (boaviztapi) was not
used: every release requires pandas < 3 (see docs/reporting.md).
"""

from __future__ import annotations

import math

import pandas as pd

from coolshift.whatif.embodied import HOURS_PER_YEAR, embodied_kgco2e, model_pcf

__all__ = ["unit_energy_kwh_per_h", "lifecycle_rows", "certificates", "ewaste_summary"]


def unit_energy_kwh_per_h(pool: str, model, it_kwh: float, period_h: float, pools: dict) -> tuple[float, str]:
    """(mean kWh per hour in service, method) of one unit; ``pools`` maps name -> (servers, peak_w)."""
    total_peak_w = sum(n * w for n, w in pools.values())
    if pool and pool in pools and total_peak_w > 0:
        return it_kwh / period_h * pools[pool][1] / total_peak_w, "run IT energy allocated to the pool by rated peak power"
    if model.rated_power_w is not None:
        return model.rated_power_w / 1000.0, "model rated_power_w (mean power in use)"
    n = sum(n for n, _ in pools.values())
    if n <= 0:
        raise ValueError("no pool, no rated_power_w and no site servers to allocate IT energy to")
    return it_kwh / period_h / n, "run IT energy / servers of the site"


def lifecycle_rows(inventory: pd.DataFrame, models: dict, *, start: pd.Timestamp, end: pd.Timestamp, it_kwh: float,
                   gco2_per_kwh: float, pools: dict, retired: dict | None = None) -> list[dict]:
    """One row per unit: embodied, use in the period and over the service life, total [kgCO2e]."""
    period_h = (end - start) / pd.Timedelta(hours=1)
    retired = retired or {}
    rows = []
    for u in inventory.itertuples():
        m = models[u.model]
        pcf = model_pcf(m, f"reporting.hardware_models.{u.model}")
        per_h, method = unit_energy_kwh_per_h(u.pool, m, it_kwh, period_h, pools)
        out_at = retired.get(u.serial, end)
        in_service_h = max(0.0, (min(end, out_at) - max(start, u.purchase_date)) / pd.Timedelta(hours=1))
        use_kwh = per_h * in_service_h
        life_kwh = per_h * HOURS_PER_YEAR * pcf.lifetime_years
        emb = embodied_kgco2e(1, pcf)
        life_use = life_kwh * gco2_per_kwh / 1000.0
        rows.append({
            "serial": u.serial, "model": u.model, "pool": u.pool or None, "purchase_date": u.purchase_date.date().isoformat(),
            "age_years": max(0.0, (end - u.purchase_date) / pd.Timedelta(hours=HOURS_PER_YEAR)),
            "lifetime_years": pcf.lifetime_years, "manufacture_kgco2e": pcf.manufacturing_kgco2e,
            "transport_kgco2e": pcf.transport_kgco2e, "in_service_h": in_service_h, "use_kwh_period": use_kwh,
            "use_kgco2e_period": use_kwh * gco2_per_kwh / 1000.0, "use_kwh_service_life": life_kwh,
            "use_kgco2e_service_life": life_use, "total_kgco2e": emb + life_use,
            "embodied_amortised_period_kgco2e": emb * min(1.0, in_service_h / (pcf.lifetime_years * HOURS_PER_YEAR)),
            "use_method": method, "embodied_source": pcf.source,
        })
    return rows


def certificates(rows: list[dict], site: str, year: int) -> list[dict]:
    """An offset certificate record per serial: its life-cycle footprint and the whole credits that cover it."""
    return [{"certificate_id": f"{site}/{year}/{r['serial']}", "serial": r["serial"], "model": r["model"],
             "footprint_kgco2e": r["total_kgco2e"], "stages_kgco2e": {
                 "manufacture": r["manufacture_kgco2e"], "transport": r["transport_kgco2e"],
                 "use_service_life": r["use_kgco2e_service_life"]},
             "service_life_years": r["lifetime_years"], "credits_to_offset": max(0, math.ceil(r["total_kgco2e"] / 1000.0 - 1e-9)),
             "method": f"embodied: {r['embodied_source']}; use: {r['use_method']} at the period's location factor"}
            for r in rows]


def ewaste_summary(ewaste: pd.DataFrame | None, start: pd.Timestamp, end: pd.Timestamp) -> dict:
    """Units and mass retired in the period by route, and the share kept out of recycling (reuse + refurbish)."""
    if ewaste is None:
        return {"entries": [], "by_route": [], "mass_kg": 0.0, "reuse_refurbish_share_pct": None}
    e = ewaste[(ewaste["date"] >= start) & (ewaste["date"] < end)]
    by = []
    for route in ("reuse", "refurbish", "recycle"):
        r = e[e["route"] == route]
        by.append({"route": route, "units": int(len(r)), "mass_kg": float(r["mass_kg"].sum())})
    mass = float(e["mass_kg"].sum())
    kept = sum(b["mass_kg"] for b in by if b["route"] in ("reuse", "refurbish"))
    entries = [{"date": d.date().isoformat(), "serial": s, "model": m, "route": r, "mass_kg": kg, "handler": h}
               for d, s, m, r, kg, h in zip(e["date"], e["serial"], e["model"], e["route"], e["mass_kg"], e["handler"])]
    return {"entries": entries, "by_route": by, "mass_kg": mass,
            "reuse_refurbish_share_pct": 100.0 * kept / mass if mass > 0 else None}
