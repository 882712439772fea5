"""Battery sizing what-if: operational carbon and cost saved per size, against embodied carbon and capex.

For each candidate energy (kWh, power = energy x C-rate) the site gains one battery with the
config's storage defaults (or the site's first ``storage:`` entry as template) and is
planned day by day over the period, each day from the state of charge the previous one
left, on the data as given (perfect information: the upper bound of what the size can
do). The same days without a battery are the reference. Savings are the plans' predicted
carbon and bill (the learned plant model's), annualised over the period; paybacks are

- carbon: embodied kgCO2e (energy x ``embodied_kgco2_per_kwh_capacity``) over the
  operational kgCO2 saved per month (:func:`~coolshift.whatif.embodied.payback_months`);
- money: capex (energy x ``capex_usd_per_kwh``) over the bill saved per year. The period's
  grid import is billed once (:func:`coolshift.tariffs.bill`); energy and wear savings are
  annualised by the period's length, demand-charge savings by its billing months (x 12 /
  months): a week's lower peak saves a month's charge, not 52 weeks' worth.

Wear (degradation per kWh discharged, in kgCO2 and USD) is inside the plans' totals.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import pandas as pd

from coolshift.config import SiteConfig, StorageUnit
from coolshift.optimizer import InitialState, PlanOptions, Planner
from coolshift.tariffs import bill, billing_months
from coolshift.whatif.embodied import payback_months

__all__ = ["battery_site", "size_batteries", "SIZING_COLUMNS"]

SIZING_COLUMNS = ["energy_kwh", "power_kw", "tco2", "cost_usd", "saved_tco2", "saved_usd", "saved_tco2_per_year",
                  "saved_usd_per_year", "embodied_tco2", "capex_usd", "carbon_payback_months", "payback_years",
                  "discharged_mwh", "fallback_days"]


def battery_site(site: SiteConfig, energy_kwh: float, c_rate: float) -> SiteConfig:
    """The site with one battery of ``energy_kwh`` and ``c_rate`` x energy of power (0: none),
    the other fields from the site's first storage entry, else the config's defaults."""
    if energy_kwh <= 0:
        return site.model_validate({**site.model_dump(), "storage": [], "base_dir": site.base_dir})
    tmpl = site.storage[0].model_dump() if site.storage else {"name": "battery", "kind": "battery"}
    tmpl.update(energy_kwh=float(energy_kwh), charge_kw=float(energy_kwh * c_rate), discharge_kw=float(energy_kwh * c_rate))
    if tmpl.get("kind") == "ups" and tmpl.get("ride_through_min"):
        tmpl["kind"], tmpl["ride_through_min"] = "battery", 0.0  # sizing a battery, not the UPS string
    return site.model_validate({**site.model_dump(), "storage": [StorageUnit(**tmpl).model_dump()], "base_dir": site.base_dir})


def _days(site: SiteConfig, coefficients: Callable, data: pd.DataFrame, options: PlanOptions) -> dict:
    """Plan ``data`` one horizon after another, carrying the state of charge; totals."""
    steps = int(round(site.planning.horizon_h / site.step_h))
    init = InitialState.from_site(site)
    tot = {"tco2": 0.0, "discharged_mwh": 0.0, "fallback_days": 0, "wear_usd": 0.0}
    grid, price, peaks = [], [], {}
    for s in range(0, len(data) - steps + 1, steps):
        fc = data.iloc[s: s + steps]
        # the demand charge is paid on raising the month's peak so far, not on each day's own peak
        plan = Planner(site, coefficients(site, fc), fc, init, replace(options, peak_so_far_kw=dict(peaks))).solve()
        t = plan.totals
        tot["tco2"] += t["tco2"]
        tot["wear_usd"] += t.get("storage_usd", 0.0)
        tot["fallback_days"] += int(plan.fallback)
        f = plan.frame
        grid.append(f["grid_power_kw"] if "grid_power_kw" in f else f["facility_power_kw"])
        if site.tariff is not None:
            month, labels = billing_months(f.index, site.tariff.timezone)
            for m, lab in enumerate(labels):
                peaks[lab] = max(peaks.get(lab, 0.0), float(grid[-1].to_numpy()[month == m].max()))
        price.append(f["price_usd_per_kwh"] if "price_usd_per_kwh" in f else pd.Series(0.0, index=f.index))
        soc = {u.name: float(f[f"soc_kwh__{u.name}"].iloc[-1]) for u in site.storage if f"soc_kwh__{u.name}" in f}
        tot["discharged_mwh"] += float(f.filter(like="discharge_kw__").to_numpy().sum() * site.step_h / 1000.0)
        last = f.iloc[-1]
        init = InitialState(
            supply_setpoint_c={z.name: float(last[f"supply_setpoint_c__{z.name}"]) for z in site.zones},
            chw_setpoint_c=float(last["chw_setpoint_c"]),
            active_servers={p.name: float(last[f"active_servers__{p.name}"]) for p in site.server_pools},
            storage_soc_kwh=soc,
        )
    tot["period_h"] = (len(data) // steps) * steps * site.step_h
    # one bill over the whole period: the demand charge on each billing month's peak, once
    g, p = pd.concat(grid), pd.concat(price)
    b = bill(g.index, g.to_numpy(), p.to_numpy(), site.tariff, site.step_h)
    tot.update(energy_usd=b["energy_usd"] + tot["wear_usd"], demand_usd=b["demand_usd"], months=len(b["peak_kw_by_month"]),
               cost_usd=b["cost_usd"] + tot["wear_usd"])
    return tot


def size_batteries(site: SiteConfig, coefficients: Callable, data: pd.DataFrame, sizes_kwh, c_rate: float = 0.5,
                   options: PlanOptions | None = None) -> pd.DataFrame:
    """One row per size (0 = no battery, the reference) with savings, embodied carbon, capex and paybacks.

    ``coefficients(site, frame)`` gives the plant coefficients (a fitted model's
    ``coefficients``); ``data`` holds whole horizons of inputs with ``price_usd_per_kwh``.
    """
    if c_rate <= 0:
        raise ValueError(f"c_rate must be > 0, not {c_rate}")
    if any(s < 0 for s in sizes_kwh):
        raise ValueError("battery sizes must be >= 0 kWh")
    opts = options or PlanOptions(deadline_prices=False)
    ref = _days(battery_site(site, 0.0, c_rate), coefficients, data, opts)
    rows = []
    for e in sorted(set([0.0, *map(float, sizes_kwh)])):
        b = battery_site(site, e, c_rate)
        r = ref if e == 0 else _days(b, coefficients, data, opts)
        unit = b.storage[0] if b.storage else None
        per_year = 8760.0 / r["period_h"] if r["period_h"] else float("nan")
        saved_t, saved_usd = ref["tco2"] - r["tco2"], ref["cost_usd"] - r["cost_usd"]
        # energy and wear scale with time; a demand charge is per billing month whatever the period's length
        saved_usd_year = (ref["energy_usd"] - r["energy_usd"]) * per_year
        if r["months"]:
            saved_usd_year += (ref["demand_usd"] - r["demand_usd"]) * 12.0 / r["months"]
        emb_t = e * unit.embodied_kgco2_per_kwh_capacity / 1000.0 if unit else 0.0
        capex = e * unit.capex_usd_per_kwh if unit else 0.0
        months, _ = payback_months(emb_t, saved_t, r["period_h"])
        years = capex / saved_usd_year if capex > 0 and saved_usd_year > 0 else None
        rows.append({"energy_kwh": e, "power_kw": e * c_rate, "tco2": r["tco2"], "cost_usd": r["cost_usd"],
                     "saved_tco2": saved_t, "saved_usd": saved_usd, "saved_tco2_per_year": saved_t * per_year,
                     "saved_usd_per_year": saved_usd_year, "embodied_tco2": emb_t, "capex_usd": capex,
                     "carbon_payback_months": months, "payback_years": years,
                     "discharged_mwh": r["discharged_mwh"], "fallback_days": r["fallback_days"]})
    return pd.DataFrame(rows, columns=SIZING_COLUMNS)
