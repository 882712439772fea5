"""The standards sections of the annual report: targets, Scope 1, EU indicators, PAS 2060,
lifecycle and e-waste, ISO 14001/50001, and the M&V methods.

:func:`read_inputs` reads and checks the reporting block's files (I/O at the edge);
:func:`standards_figures` computes every number from them and the report's Scope 2 figures
(pure); :func:`standards_bodies` lays them out as HTML sections; :func:`accounting_figure` draws
the accounting page (Scope 1 + 2, targets, offsets, EU indicators).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from coolshift.io.checks import DataError
from coolshift.reporting_config import Reporting
from coolshift.reports import eu as EU
from coolshift.reports import iso as ISO
from coolshift.reports import lifecycle as LC
from coolshift.reports.html import html_kv, html_paragraphs, html_table
from coolshift.reports.pas2060 import pas2060_statement
from coolshift.reports.scope1 import scope1 as scope1_totals
from coolshift.reports.standards_inputs import read_ewaste, read_fuel_log, read_inventory, read_offsets, read_refrigerant_log
from coolshift.reports.targets import targets_progress

__all__ = ["STANDARDS_SECTIONS", "CALTRACK_STATUS", "caltrack_table", "StandardsInputs", "read_inputs", "standards_figures",
           "standards_bodies", "accounting_figure"]

STANDARDS_SECTIONS = (
    "Targets and progress",
    "Scope 1 and Scope 1 + 2",
    "EU data-centre indicators",
    "PAS 2060 statement",
    "Lifecycle footprint and e-waste",
    "ISO 14001 / ISO 50001",
)

# Said when the CalTRACK models were not asked for (they take minutes per year of data).
CALTRACK_STATUS = (
    "CalTRACK daily and hourly baselines (eemeter, OpenEEmeter's implementation) not computed for this report: give "
    "--pre with --caltrack (each model takes minutes per year of hourly data). The ASHRAE Guideline 14 "
    "change-point regression above is the baseline reported, with its CV(RMSE) and NMBE."
)


def caltrack_table(mv: dict | None, caltrack: dict) -> pd.DataFrame:
    """The M&V models side by side: Guideline 14 regression and the CalTRACK models, with fit statistics."""
    rows = []
    if mv is not None:
        rows.append({"model": f"ASHRAE Guideline 14 change-point ({mv['interval']})", "load variable": mv["load_variable"],
                     "CV(RMSE) %": mv["cv_rmse_pct"], "NMBE %": mv["nmbe_pct"],
                     "adjusted baseline MWh": mv["adjusted_baseline_kwh"] / 1000, "avoided MWh": mv["avoided_kwh"] / 1000,
                     "savings %": mv["savings_pct"], "CalTRACK sufficiency": ""})
    for r in caltrack.values():
        ok = r.get("applicable", True)
        rows.append({"model": r["model"], "load variable": "none (temperature, time of week)",
                     "CV(RMSE) %": r["cv_rmse_pct"], "NMBE %": r["nmbe_pct"],
                     "adjusted baseline MWh": r["adjusted_baseline_kwh"] / 1000 if ok else None,
                     "avoided MWh": r["avoided_kwh"] / 1000 if ok else None, "savings %": r["savings_pct"],
                     "CalTRACK sufficiency": ("; ".join(r["disqualification"]) or "met") if ok else f"not applicable: {r['reason']}"})
    return pd.DataFrame(rows)


@dataclass
class StandardsInputs:
    """The checked files of a reporting block (None where not given)."""

    reporting: Reporting
    fuel: pd.DataFrame | None = None
    refrigerant: pd.DataFrame | None = None
    offsets: pd.DataFrame | None = None
    inventory: pd.DataFrame | None = None
    ewaste: pd.DataFrame | None = None


def read_inputs(reporting: Reporting, pools: list[str] | None = None) -> StandardsInputs:
    """Read and check every CSV the reporting block names (exit-2 errors name file, column and row)."""
    r = reporting
    models = r.hardware_models
    return StandardsInputs(
        reporting=r,
        fuel=read_fuel_log(r.path(r.scope1.fuel_log), r.scope1.fuels) if r.scope1.fuel_log else None,
        refrigerant=read_refrigerant_log(r.path(r.scope1.refrigerant_log)) if r.scope1.refrigerant_log else None,
        offsets=read_offsets(r.path(r.offsets)) if r.offsets else None,
        inventory=read_inventory(r.path(r.inventory), models, pools) if r.inventory else None,
        ewaste=read_ewaste(r.path(r.ewaste), models) if r.ewaste else None,
    )


def _in_period(df: pd.DataFrame | None, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame | None:
    return None if df is None else df[(df["date"] >= start) & (df["date"] < end)]


def _setpoints(post: pd.DataFrame, site) -> dict:
    """Mean temperature set points of the period from the run, else the site's initial values."""
    sup = {c.split("__", 1)[1]: float(post[c].mean()) for c in post.columns if c.startswith("supply_setpoint_c__")}
    chw = float(post["chw_setpoint_c"].mean()) if "chw_setpoint_c" in post.columns else None
    basis = "mean of the period's set points (run)"
    if not sup and site is not None:
        sup = {z.name: z.supply_setpoint_initial_c for z in site.zones}
        chw = site.cooling.chiller.chw_setpoint_initial_c
        basis = "site configuration (initial set points)"
    return {"supply_air_c": sup or None, "chilled_water_c": chw, "basis": basis}


def _measures(figs: dict) -> list[dict]:
    """Measures Coolshift enacted, with their measured (or simulated) reductions."""
    out = []
    red = figs.get("reduction")
    if red is not None and red.get("label") != "adjusted baseline (M&V)":
        loc = red["location"]
        out.append({"measure": f"set points and load timing of the reported operation ({figs['source']})",
                    "against": red["label"], "reduction_tco2": red["net_location_kg"] / 1000.0,
                    "efficiency_tco2": loc["efficiency_kg"] / 1000.0, "timing_tco2": loc["timing_kg"] / 1000.0,
                    "evidence": "simulated" if figs["simulated"] else "metered, against a baseline run over the same hours"})
    mv = figs.get("mv")
    if mv is not None:
        out.append({"measure": "Coolshift operation, verified (IPMVP Option C)", "against": "adjusted baseline",
                    "reduction_tco2": None if mv["avoided_kgco2"] is None else mv["avoided_kgco2"] / 1000.0,
                    "avoided_kwh": mv["avoided_kwh"], "cv_rmse_pct": mv["cv_rmse_pct"], "nmbe_pct": mv["nmbe_pct"],
                    "evidence": "metered pre- and post-period (ASHRAE Guideline 14)"})
    return out


def standards_figures(post: pd.DataFrame, figs: dict, inputs: StandardsInputs | None, site=None,
                      offset_standard: str | None = None) -> dict:
    """The standards keys of the report JSON, from the Scope 2 figures ``figs`` of the same period."""
    rep = inputs.reporting if inputs is not None else Reporting()
    inputs = inputs or StandardsInputs(reporting=rep)
    start, end = pd.Timestamp(figs["start"]), pd.Timestamp(figs["end"])
    year = int(start.year)
    e, s2 = figs["energy"], figs["scope2"]
    it_kwh, fac_kwh = e["it_kwh"], e["facility_kwh"]

    s1 = scope1_totals(_in_period(inputs.fuel, start, end), _in_period(inputs.refrigerant, start, end))
    s1_t = s1["total_kgco2e"] / 1000.0
    loc_t, mkt_t = s2["location_kgco2"] / 1000.0, s2["market_kgco2"] / 1000.0
    s1["scope1_2_location_tco2e"] = s1_t + loc_t
    s1["scope1_2_market_tco2e"] = s1_t + mkt_t

    hr = rep.heat_reuse
    if hr is None:
        reuse = {"kwh": 0.0, "basis": "no heat reuse", "temperature_c": None, "recipient": None}
    elif hr.recovered_kwh is not None:
        reuse = {"kwh": hr.recovered_kwh, "basis": "metered (operator)", "temperature_c": hr.average_temperature_c,
                 "recipient": hr.recipient or None}
    else:
        reuse = {"kwh": hr.recovered_frac_of_it * it_kwh, "basis": f"modelled: {hr.recovered_frac_of_it:g} of IT energy",
                 "temperature_c": hr.average_temperature_c, "recipient": hr.recipient or None}
    installed = rep.eu.installed_it_power_kw or (sum(z.design_it_load_kw for z in site.zones) if site is not None else None)
    eu = EU.eu_report(site_name=figs["site"], latitude_deg=getattr(site, "latitude_deg", None),
                      longitude_deg=getattr(site, "longitude_deg", None), start=figs["start"], end=figs["end"],
                      facility_kwh=fac_kwh, it_kwh=it_kwh, water_l=e["water_l"], reuse=reuse,
                      ppa_kwh=s2["ppa_claimed_kwh"], info=rep.eu, installed_it_kw=installed, setpoints=_setpoints(post, site))
    ind = eu["annex_iii_sustainability_indicators"]
    eu_kpis = {"pue": ind["pue"], "wue": ind["wue_l_per_kwh"], "erf": ind["erf"], "ref": ind["ref"]}

    actuals = {"tco2_location": loc_t, "tco2_market": mkt_t, "tco2_scope1_2_market": s1_t + mkt_t, "pue": e["pue"],
               "wue_l_per_kwh": e["wue_l_per_kwh"], "renewable_share_pct": None if ind["ref"] is None else 100.0 * ind["ref"]}
    targets = targets_progress(rep.targets, actuals, year)

    pas = pas2060_statement(site=figs["site"], start=start, end=end, scope1_tco2e=s1_t, scope2_market_tco2=mkt_t,
                            scope2_location_tco2=loc_t, edge_tco2=figs["edge_and_network_kgco2"] / 1000.0, scope3=rep.scope3,
                            targets=targets, measures=_measures(figs), offsets=inputs.offsets,
                            offset_standard=offset_standard or rep.offset_standard, simulated=figs["simulated"])

    lifecycle, certs = [], []
    ew = LC.ewaste_summary(inputs.ewaste, start, end)
    if inputs.inventory is not None:
        pools = {p.name: (p.servers, p.peak_w) for p in site.server_pools} if site is not None else {}
        retired = {} if inputs.ewaste is None else dict(zip(inputs.ewaste["serial"], inputs.ewaste["date"]))
        try:
            lifecycle = LC.lifecycle_rows(inputs.inventory, rep.hardware_models, start=start, end=end, it_kwh=it_kwh,
                                          gco2_per_kwh=figs["footprint"]["weighted_factor_gco2_per_kwh"], pools=pools,
                                          retired=retired)
        except ValueError as exc:
            raise DataError(rep.path(rep.inventory), f"{exc}: give the unit's pool (with --site) or the model's rated_power_w") from None
        certs = LC.certificates(lifecycle, figs["site"], year)

    iso = {
        "seus": ISO.energy_uses(fac_kwh, it_kwh, e["cooling_kwh"], rep.iso.seu_threshold_pct),
        "seu_threshold_pct": rep.iso.seu_threshold_pct,
        "enpis": ISO.enpis(fac_kwh, it_kwh, e["cooling_kwh"], e["water_l"], s2["location_kgco2"]),
        "objectives": ISO.register_rows(rep.iso.objectives, end),
        "corrective_actions": ISO.register_rows(rep.iso.corrective_actions, end),
    }
    return {
        "targets": targets,
        "scope1": s1, "scope1_tco2": s1_t,
        "scope1_2_tco2e": {"location": s1_t + loc_t, "market": s1_t + mkt_t},
        "eu": eu, "eu_kpis": eu_kpis,
        "pas2060": pas,
        "lifecycle": lifecycle, "lifecycle_certificates": certs,
        "lifecycle_totals": {"units": len(lifecycle), "total_kgco2e": float(sum(r["total_kgco2e"] for r in lifecycle)),
                             "embodied_amortised_period_kgco2e": float(sum(r["embodied_amortised_period_kgco2e"] for r in lifecycle))},
        "ewaste": ew,
        "iso": iso,
        "mv_methods": {"ashrae_guideline14": figs.get("mv") is not None, "caltrack": {"computed": False, "reason": CALTRACK_STATUS}},  # set by the command with --caltrack
        "inputs_note": rep.inputs_note,
    }


# ----------------------------------------------------------------------------- HTML
def _df(rows: list[dict], cols: dict | None = None) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    if cols:
        df = df[[c for c in cols if c in df.columns]].rename(columns=cols)
    return df


def standards_bodies(figs: dict, figure_html: str = "") -> dict:
    """HTML body per standards section title (``figs`` holds :func:`standards_figures`' keys)."""
    b = {}
    note = html_paragraphs(f"Inputs: {figs['inputs_note']}", note=True) if figs.get("inputs_note") else ""
    t = figs["targets"]
    b["Targets and progress"] = (html_paragraphs(
        "Each target's straight-line trajectory from its baseline year to its target year; on track when the period's "
        "value is no worse than the trajectory's value for the year (gap = actual - expected).") + (html_table(_df(t, {
            "name": "target", "metric": "metric", "unit": "unit", "baseline_value": "baseline", "target_value": "target",
            "target_year": "by", "expected_value": "trajectory", "actual_value": "actual", "gap": "gap",
            "progress_pct": "progress %", "status": "status"}), index=False, digits=3) if t else html_paragraphs(
            "No targets are set: add reporting.targets to the site (metric, baseline year and value, target year, "
            "reduction_pct or target_value).", note=True)) + figure_html)
    s1 = figs["scope1"]
    b["Scope 1 and Scope 1 + 2"] = html_kv([
        ("fuel burnt on site [tCO2e]", s1["fuel_kgco2e"] / 1000), ("refrigerant released (topped up) [tCO2e]", s1["refrigerant_kgco2e"] / 1000),
        ("Scope 1 [tCO2e]", figs["scope1_tco2"]),
        ("Scope 1 + 2 location-based [tCO2e]", figs["scope1_2_tco2e"]["location"]),
        ("Scope 1 + 2 market-based [tCO2e]", figs["scope1_2_tco2e"]["market"]),
    ], digits=3) + (html_table(_df(s1["fuel"], {"fuel": "fuel", "quantity": "quantity", "unit": "unit",
                                               "kgco2e_per_unit": "kgCO2e/unit", "kgco2e": "kgCO2e", "source": "factor source"}),
                               index=False, digits=3, caption="Fuel") if s1["fuel"] else "") + (
        html_table(_df(s1["refrigerant"], {"refrigerant": "refrigerant", "kg": "kg added", "gwp100": "GWP-100",
                                           "kgco2e": "kgCO2e"}), index=False, digits=1, caption="Refrigerant") if s1["refrigerant"] else "") + html_paragraphs(
        f"GWP: {s1['gwp_source']}. Fuel factors: US EPA GHG Emission Factors Hub (2024) unless the operator gives "
        "one (cited beside it). No fuel or refrigerant log given means none is counted." if not (s1["fuel"] or s1["refrigerant"])
        else f"GWP: {s1['gwp_source']}.") + note
    eu = figs["eu"]
    k = eu["annex_i_kpis"]
    b["EU data-centre indicators"] = html_paragraphs(f"Legal basis: {eu['legal_basis']}.") + html_kv([
        ("installed IT power demand [kW]", k["installed_it_power_demand_kw"]),
        ("total energy consumption E_DC [MWh]", k["total_energy_consumption_kwh"] / 1000),
        ("ICT energy consumption E_IT [MWh]", k["ict_energy_consumption_kwh"] / 1000),
        ("renewable energy E_RES_TOT [MWh]", k["renewable_energy_consumption_kwh"]["total"] / 1000),
        ("waste heat reused E_REUSE [MWh]", k["waste_heat_reused_kwh"] / 1000),
        ("waste heat basis", k["waste_heat_reuse_basis"]),
        ("water input W_IN [m3]", k["total_water_input_m3"]),
        ("PUE [-]", figs["eu_kpis"]["pue"]), ("WUE [L/kWh]", figs["eu_kpis"]["wue"]),
        ("ERF [-]", figs["eu_kpis"]["erf"]), ("REF [-]", figs["eu_kpis"]["ref"]),
    ], digits=3) + html_paragraphs("The whole Annex structure is in eu_report.json / eu_report.csv "
                                   "(`coolshift report --format eu-json`).")
    p = figs["pas2060"]
    fp = p["footprint"]
    b["PAS 2060 statement"] = html_paragraphs(p["statement"]) + html_kv([
        ("Scope 1 [tCO2e]", fp["scope1_tco2e"]), ("Scope 2 market-based [tCO2]", fp["scope2_market_tco2"]),
        ("edge sites and network [tCO2]", fp["edge_and_network_tco2"]), ("Scope 3 given [tCO2e]", fp["scope3_tco2e"]),
        ("footprint [tCO2e]", fp["total_tco2e"]), ("credits needed", p["credits_needed"]),
        ("credits retired for the period", p["credits_retired"]), ("shortfall [tCO2e]", p["shortfall_tco2e"]),
        ("carbon neutral", p["neutral"]), ("offset standard", p["offset_standard"]),
    ], digits=1) + html_table(_df(p["requirements"]), index=False, caption="PAS 2060 requirements") + (
        html_table(_df(p["carbon_management_plan"]["measures"]), index=False, digits=2,
                   caption="Carbon management plan: measures enacted and their reductions")
        if p["carbon_management_plan"]["measures"] else "") + (
        html_table(_df(p["offsets"]), index=False, caption="Offset records") if p["offsets"] else html_paragraphs(
            "No offset records given (reporting.offsets: a CSV of retired credits).", note=True))
    lc, ew = figs["lifecycle"], figs["ewaste"]
    tot = figs["lifecycle_totals"]
    b["Lifecycle footprint and e-waste"] = (html_kv([
        ("units in the inventory", tot["units"]), ("life-cycle footprint of the inventory [tCO2e]", tot["total_kgco2e"] / 1000),
        ("embodied carbon amortised in the period [tCO2e]", tot["embodied_amortised_period_kgco2e"] / 1000),
        ("e-waste retired in the period [kg]", ew["mass_kg"]),
        ("kept from recycling: reuse + refurbish [% of mass]", ew["reuse_refurbish_share_pct"]),
    ], digits=2) + (html_table(_df(lc[:50], {"serial": "serial", "model": "model", "pool": "pool", "purchase_date": "bought",
                                             "manufacture_kgco2e": "manufacture kg", "transport_kgco2e": "transport kg",
                                             "use_kgco2e_service_life": "use (life) kg", "total_kgco2e": "total kgCO2e",
                                             "use_method": "use from"}),
                               index=False, digits=1, caption="Per-unit footprint (first 50; all in carbon_report.json)")
                    if lc else html_paragraphs("No hardware inventory given (reporting.inventory).", note=True)) + (
        html_table(_df(ew["by_route"]), index=False, digits=1, caption="E-waste register by route") if ew["entries"] else ""))
    iso = figs["iso"]
    b["ISO 14001 / ISO 50001"] = html_table(_df(iso["seus"]), index=False, digits=1,
                                            caption=f"Energy uses (significant at >= {iso['seu_threshold_pct']:g} % of facility energy)") + html_table(
        _df(iso["enpis"]), index=False, digits=3, caption="Energy performance indicators") + (
        html_table(_df(iso["objectives"]), index=False, caption="Objectives register") if iso["objectives"] else html_paragraphs(
            "No objectives register given (reporting.iso.objectives).", note=True)) + (
        html_table(_df(iso["corrective_actions"]), index=False, caption="Corrective actions") if iso["corrective_actions"] else
        html_paragraphs("No corrective actions given (reporting.iso.corrective_actions).", note=True))
    return b


def accounting_figure(figs: dict, title: str = ""):
    """(figure, caption): Scope 1 + 2, target trajectories, residual against retired credits, EU indicators."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 7.2))
    (a1, a2), (a3, a4) = axes
    s1 = figs["scope1"]
    s2m = figs["pas2060"]["footprint"]["scope2_market_tco2"]
    s2l = figs["pas2060"]["footprint"]["scope2_location_tco2"]
    for x, (lab, s2v) in enumerate((("location-based", s2l), ("market-based", s2m))):
        a1.bar(x, s1["fuel_kgco2e"] / 1000, color="C1", label="Scope 1 fuel" if x == 0 else None)
        a1.bar(x, s1["refrigerant_kgco2e"] / 1000, bottom=s1["fuel_kgco2e"] / 1000, color="C4", label="Scope 1 refrigerant" if x == 0 else None)
        a1.bar(x, s2v, bottom=figs["scope1_tco2"], color="C0", label="Scope 2" if x == 0 else None)
        a1.text(x, figs["scope1_tco2"] + s2v, f"{figs['scope1_tco2'] + s2v:,.0f}", ha="center", va="bottom", fontsize=8)
    a1.set_xticks([0, 1], ["Scope 1 + 2\nlocation", "Scope 1 + 2\nmarket"])
    a1.set_ylabel("tCO2e")
    a1.legend(fontsize=8)
    a1.set_title(f"Scope 1 + 2 (Scope 1: {figs['scope1_tco2']:,.1f} tCO2e)")
    if figs["targets"]:
        for i, t in enumerate(figs["targets"][:8]):
            a2.plot([t["baseline_year"], t["target_year"]], [0.0, 100.0], f"C{i}--", lw=1)
            if t["progress_pct"] is not None:
                a2.plot([t["year"]], [t["progress_pct"]], f"C{i}o", label=f"{t['name']} ({t['status']})")
        a2.set_ylabel("% of the way from baseline to target")
        a2.legend(fontsize=7)
    else:
        a2.text(0.5, 0.5, "no targets set", ha="center", va="center", transform=a2.transAxes)
    a2.set_title("Targets: trajectory (dashed) and this period (dot)")
    p = figs["pas2060"]
    a3.bar(0, p["footprint"]["total_tco2e"], color="0.4")
    a3.bar(1, p["credits_retired"], color="C2")
    if p["shortfall_tco2e"] > 0:
        a3.bar(1, p["shortfall_tco2e"], bottom=p["credits_retired"], color="none", edgecolor="C3", hatch="//", label="shortfall")
        a3.legend(fontsize=8)
    a3.set_xticks([0, 1], ["footprint", "retired credits"])
    a3.set_ylabel("tCO2e")
    a3.set_title("PAS 2060: carbon neutral" if p["neutral"] else
                 f"PAS 2060: not carbon neutral (shortfall {p['shortfall_tco2e']:,d} tCO2e)")
    k = figs["eu_kpis"]
    names = ["PUE", "WUE [L/kWh]", "ERF", "REF"]
    vals = [k["pue"], k["wue"], k["erf"], k["ref"]]
    a4.barh(names, [0 if v is None else v for v in vals], color=["C0", "C9", "C1", "C2"])
    for i, v in enumerate(vals):
        a4.text(0 if v is None else v, i, " n/a" if v is None else f" {v:.3f}", va="center", fontsize=8)
    a4.invert_yaxis()
    a4.set_title("EU indicators (Reg. 2024/1364)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig, "Accounting: Scope 1 + 2, targets against their trajectories, the PAS 2060 balance, the EU indicators."
