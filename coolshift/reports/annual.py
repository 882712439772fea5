"""The carbon report of a period (annual by default), for an ISO 14001 management review.

:func:`carbon_figures` computes every number (a JSON-able dict); :func:`render_html` lays them
out as a self-contained page with plots; :func:`write_pdf` puts the same figures and text on
PDF pages with matplotlib's ``PdfPages`` (no extra dependency).

Sections (:data:`SECTIONS`): scope and boundary; method and emission factors; energy and
PUE; emissions location- and market-based; Scope 1 and Scope 1 + 2; reductions; targets and
progress; renewables; EU data-centre indicators; residual emissions and offsets; PAS 2060
statement; measurement and verification; lifecycle footprint and e-waste; ISO 14001 / 50001;
data quality. The standards sections come from :mod:`.standards`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from coolshift.reports import carbon as C
from coolshift.reports import standards as S
from coolshift.reports.html import Section, html_figure, html_kv, html_paragraphs, html_table, render_page

__all__ = ["SECTIONS", "ReportContext", "carbon_figures", "render_html", "write_pdf", "make_figures", "mv_figure", "mv_body"]

SECTIONS = (
    "Scope and boundary",
    "Method and emission factors",
    "Energy and PUE",
    "Emissions: location- and market-based",
    "Scope 1 and Scope 1 + 2",
    "Reductions",
    "Targets and progress",
    "Renewables",
    "EU data-centre indicators",
    "Residual emissions and offsets",
    "PAS 2060 statement",
    "Measurement and verification",
    "Lifecycle footprint and e-waste",
    "ISO 14001 / ISO 50001",
    "Data quality",
)

FACTOR_SOURCES = {
    "location": "hourly grid-average intensity of the site's balancing area (GHG Protocol Scope 2 location-based)",
    "eia930": "US EIA Form EIA-930 hourly generation by fuel, intensity from the mix with life-cycle factors "
              "(IPCC AR5 WG3 Annex III medians; see coolshift.io.carbon)",
}


@dataclass
class ReportContext:
    """Everything the report states about the site and the data, besides the numbers."""

    site_name: str = "site"
    description: str = ""
    grid_region: str = ""
    source: str = ""
    simulated: bool = False
    carbon_source: str = ""
    ppa_source: str = ""
    residual_mix_gco2_per_kwh: float | None = None
    offset_standard: str | None = None
    baseline_label: str | None = None
    baseline_source: str | None = None
    filled: list = field(default_factory=list)
    notes: list = field(default_factory=list)


def _edge_kg(frame: pd.DataFrame) -> float:
    return float(frame["kgco2_edge"].sum()) if "kgco2_edge" in frame.columns else 0.0


def carbon_figures(post: pd.DataFrame, ctx: ReportContext, baseline: pd.DataFrame | None = None, mv_result=None,
                   standards: S.StandardsInputs | None = None, site=None) -> dict:
    """All the report's numbers for the period of ``post`` (a step frame; see :mod:`.carbon`), with the
    standards sections (:func:`.standards.standards_figures`) from ``standards`` (the reporting block's inputs)."""
    steps = C.account_steps(post, ctx.residual_mix_gco2_per_kwh)
    rmix = ctx.residual_mix_gco2_per_kwh
    it_kwh, fac_kwh = float(steps["it_kwh"].sum()), float(steps["facility_kwh"].sum())
    s2 = C.scope2(steps["facility_kwh"], steps["gco2_per_kwh"], steps["ppa_kwh"], rmix, periods=steps.index.year)
    fp = C.footprint(steps["facility_kwh"], steps["gco2_per_kwh"], steps["step_h"])
    edge = _edge_kg(post)
    water = float(steps["water_l"].sum()) if "water_l" in steps else None
    out = {
        "site": ctx.site_name, "start": post.index[0].isoformat(),
        "end": (post.index[-1] + pd.Timedelta(hours=float(steps["step_h"].iloc[-1]))).isoformat(),
        "hours": float(steps["step_h"].sum()), "steps": len(steps), "simulated": ctx.simulated, "source": ctx.source,
        "energy": {
            "it_kwh": it_kwh, "facility_kwh": fac_kwh,
            "cooling_kwh": float(steps["cooling_kwh"].sum()) if "cooling_kwh" in steps else None,
            "pue": C.pue(fac_kwh, it_kwh), "water_l": water,
            "wue_l_per_kwh": (water / it_kwh if it_kwh > 0 else None) if water is not None else None,
        },
        "footprint": fp,
        "scope2": s2,
        "edge_and_network_kgco2": edge,
    }
    measured_kg = s2["market_kgco2"] + edge
    reduction = None
    if baseline is not None:
        bsteps = C.account_steps(baseline, rmix)
        if len(bsteps) != len(steps) or not bsteps.index.equals(steps.index):
            raise ValueError("the baseline run must cover exactly the same steps as the reported run")
        split = C.reduction_split(bsteps["facility_kwh"], steps["facility_kwh"], steps["gco2_per_kwh"])
        b_s2 = C.scope2(bsteps["facility_kwh"], bsteps["gco2_per_kwh"], bsteps["ppa_kwh"], rmix, periods=bsteps.index.year)
        d_edge = _edge_kg(post) - _edge_kg(baseline)
        reduction = {
            "label": ctx.baseline_label or "baseline", "source": ctx.baseline_source,
            "location": split.to_dict(),
            "edge_and_network_increase_kg": d_edge,
            "net_location_kg": split.total_kg - d_edge,
            "market_kg": b_s2["market_kgco2"] - s2["market_kgco2"] - d_edge,
            "baseline_pue": C.pue(bsteps["facility_kwh"], bsteps["it_kwh"]),
            "baseline_it_kwh": float(bsteps["it_kwh"].sum()),
        }
    elif mv_result is not None and mv_result.reduction is not None:
        reduction = {"label": "adjusted baseline (M&V)", "source": "coolshift verify", "location": mv_result.reduction,
                     "edge_and_network_increase_kg": 0.0, "net_location_kg": mv_result.reduction["total_kg"],
                     "market_kg": None, "baseline_pue": None, "baseline_it_kwh": None}
    out["reduction"] = reduction
    red_kg = None if reduction is None else reduction["net_location_kg"]
    out["neutrality"] = C.neutrality_statement(measured_kg, red_kg, ctx.offset_standard,
                                               basis="Scope 2 market-based (period-matched) + edge sites and network",
                                               period=f"{out['start'][:10]} to {out['end'][:10]}")
    out["mv"] = mv_result.summary() if mv_result is not None else None
    quality = C.estimated_hours(post.index, ctx.filled)
    quality.update({"simulated": ctx.simulated, "fills_detail": ctx.filled[:50]})
    out["data_quality"] = quality
    out["monthly"] = C.monthly_table(steps, rmix).reset_index().to_dict(orient="records")
    out["context"] = {"carbon_source": ctx.carbon_source, "ppa_source": ctx.ppa_source,
                      "offset_standard": ctx.offset_standard or "not stated", "notes": ctx.notes}
    out.update(S.standards_figures(post, out, standards, site, ctx.offset_standard))
    return out


# ----------------------------------------------------------------------------- figures
def make_figures(post: pd.DataFrame, figs: dict, baseline: pd.DataFrame | None = None, mv_result=None) -> dict:
    """matplotlib figures by section key (each a new Figure; the caller embeds or saves them)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    monthly = pd.DataFrame(figs["monthly"]).set_index("month")
    steps = C.account_steps(post)
    out = {}

    fig, ax = plt.subplots(figsize=(9, 3.6))
    x = np.arange(len(monthly))
    ax.bar(x - 0.2, monthly["it_mwh"], 0.4, label="IT")
    ax.bar(x + 0.2, monthly["facility_mwh"], 0.4, label="facility")
    ax.set_xticks(x, monthly.index, rotation=45, ha="right")
    ax.set_ylabel("MWh")
    ax2 = ax.twinx()
    ax2.plot(x, monthly["pue"], "k.-", label="PUE")
    ax2.set_ylabel("PUE [-]")
    ax.legend(loc="upper left")
    ax2.legend(loc="upper right")
    ax.set_title("Monthly IT and facility energy, PUE")
    out["energy"] = (fig, "Monthly IT and facility energy (bars) and PUE (line).")

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    a1.bar(x - 0.2, monthly["tco2_location"], 0.4, label="location-based")
    a1.bar(x + 0.2, monthly["tco2_market"], 0.4, label="market-based")
    a1.set_xticks(x, monthly.index, rotation=45, ha="right")
    a1.set_ylabel("tCO2")
    a1.legend()
    a1.set_title("Scope 2 by month")
    hod = steps.groupby(steps.index.hour)
    a2.plot(hod["gco2_per_kwh"].mean(), "C3", label="grid intensity")
    a2.set_ylabel("gCO2/kWh", color="C3")
    a2.set_xlabel("hour of day (UTC)")
    a3 = a2.twinx()
    a3.plot(hod["facility_kwh"].sum() / hod["step_h"].sum(), "C0", label="facility power")
    if baseline is not None:
        bst = C.account_steps(baseline)
        bh = bst.groupby(bst.index.hour)
        a3.plot(bh["facility_kwh"].sum() / bh["step_h"].sum(), "C0--", label="baseline facility power")
        a3.legend(loc="lower right", fontsize=8)
    a3.set_ylabel("kW", color="C0")
    a2.set_title("Mean daily profile: intensity and load")
    out["emissions"] = (fig, "Location- and market-based tCO2 by month; mean daily profile of grid intensity and facility power (timing).")

    red = figs.get("reduction")
    if red is not None:
        loc = red["location"]
        fig, ax = plt.subplots(figsize=(7, 3.6))
        vals = [loc["baseline_kg"] / 1000, -loc["efficiency_kg"] / 1000, -loc["timing_kg"] / 1000,
                red["edge_and_network_increase_kg"] / 1000]
        labels = ["baseline", "efficiency", "timing", "edge + network"]
        bottoms = [0, loc["baseline_kg"] / 1000]
        bottoms.append(bottoms[1] + vals[1])
        bottoms.append(bottoms[2] + vals[2])
        colors = ["0.6", "C2", "C0", "C1"]
        for i, (v, b) in enumerate(zip(vals, bottoms)):
            ax.bar(i, v, bottom=b if i else 0, color=colors[i])
        ax.bar(4, loc["post_kg"] / 1000 + red["edge_and_network_increase_kg"] / 1000, color="0.3")
        ax.set_xticks(range(5), labels + ["reported"])
        ax.set_ylabel("tCO2 (location-based)")
        ax.set_title(f"Reduction against {red['label']}")
        out["reductions"] = (fig, "From the baseline's emissions to the reported period's: efficiency (less energy) and timing (cleaner hours).")

    fig, ax = plt.subplots(figsize=(9, 3.4))
    ppa_m = steps["ppa_kwh"].groupby(steps.index.strftime("%Y-%m")).sum() / 1000
    ax.bar(x - 0.2, monthly["facility_mwh"], 0.4, label="consumption")
    ax.bar(x + 0.2, ppa_m.reindex(monthly.index).fillna(0), 0.4, label="PPA supply", color="C2")
    ax.set_xticks(x, monthly.index, rotation=45, ha="right")
    ax.set_ylabel("MWh")
    ax.legend()
    ax.set_title("Consumption and contracted renewable supply")
    out["renewables"] = (fig, "Monthly consumption against contracted renewable (PPA) supply.")

    if mv_result is not None:
        out["mv"] = mv_figure(mv_result)
    if "pas2060" in figs:
        out["accounting"] = S.accounting_figure(figs, f"{figs['site']}: accounting {figs['start'][:10]} to {figs['end'][:10]}")
    return out


def mv_figure(mv_result):
    """(figure, caption): the fitted baseline, the adjusted baseline and the residuals."""
    import matplotlib.pyplot as plt

    pre, pst = mv_result.pre, mv_result.post
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.6))
    d_pre = pre[["energy_kwh", "fitted"]].resample("D").sum(min_count=1) / 1000
    d_post = pst[["energy_kwh", "adjusted_baseline_kwh"]].resample("D").sum(min_count=1) / 1000
    a1.plot(d_pre.index, d_pre["energy_kwh"], "0.5", lw=1, label="metered (pre)")
    a1.plot(d_pre.index, d_pre["fitted"], "C0--", lw=1, label="baseline model (fit)")
    a1.plot(d_post.index, d_post["energy_kwh"], "k", lw=1, label="metered (post)")
    a1.plot(d_post.index, d_post["adjusted_baseline_kwh"], "C3", lw=1, label="adjusted baseline")
    a1.set_ylabel("MWh/day")
    a1.legend(fontsize=8)
    a1.set_title("Baseline model and adjusted baseline")
    a2.scatter(pre["temp_c"], pre["energy_kwh"] - pre["fitted"], s=3, alpha=0.4)
    a2.axhline(0, color="k", lw=0.8)
    a2.set_xlabel("outside temperature [degC]")
    a2.set_ylabel("residual [kWh per interval]")
    a2.set_title("Baseline residuals")
    fig.autofmt_xdate()
    return (fig, "Measurement and verification: the model fitted on the pre-period, the adjusted baseline over the post-period, and the residuals.")




# ----------------------------------------------------------------------------- HTML
def _num(v, unit="", digits=1):
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "n/a"
    return f"{v:,.{digits}f}{(' ' + unit) if unit else ''}"


def section_bodies(figs: dict, ctx: ReportContext, figures: dict | None = None) -> dict:
    """HTML body per section title; ``figures`` (from :func:`make_figures`) are embedded as PNG."""
    figures = figures or {}

    def fig(key):
        if key not in figures:
            return ""
        f, cap = figures[key]
        return html_figure(f, cap)

    e, s2, fp = figs["energy"], figs["scope2"], figs["footprint"]
    red, neut, mvs, dq = figs["reduction"], figs["neutrality"], figs["mv"], figs["data_quality"]
    kind = "simulated (modelled by coolshift simulate; no metered data)" if figs["simulated"] else "metered telemetry"
    b = {}
    b["Scope and boundary"] = html_paragraphs(
        f"Organisational boundary: {ctx.site_name}{' - ' + ctx.description if ctx.description else ''} "
        f"(grid region {ctx.grid_region or 'not stated'}).",
        "Operational boundary: the electricity drawn at the site's utility meter (IT, cooling, power-distribution "
        "losses, lighting and other loads): Scope 2. Work offloaded to edge sites and the network energy it takes are "
        "reported beside it at their own grids. Scope 1 (standby generator and other fuel, refrigerant top-ups) "
        "from the operator's logs, when given (see Scope 1); Scope 3 only as the categories the operator gives "
        "(PAS 2060 statement) and the hardware inventory's life-cycle footprint.",
        f"Period: {figs['start']} to {figs['end']} ({figs['hours']:,.0f} h, {figs['steps']:,d} steps). Data: {kind}, from {figs['source']}.",
    )
    b["Method and emission factors"] = html_paragraphs(
        "Emissions = energy [kWh] x emission factor [gCO2/kWh] / 1000, per time step, with the hourly grid factor of "
        "that step. The period-average factor is shown beside it to show what an annual factor hides.",
        "Reduction = baseline emissions - reported emissions over the same hours, split into efficiency = "
        "(E_baseline - E_reported) x f_baseline and timing = E_reported x (f_baseline - f_reported), where f is each "
        "profile's energy-weighted factor; the two parts add up to the total exactly.",
        "Market-based (GHG Protocol Scope 2 Guidance, 2015): contractual instruments (PPA with their certificates, "
        "0 gCO2/kWh) applied first, matched within each calendar-year reporting period, the rest at the residual mix; "
        "monthly figures are the year's result allocated pro rata, so they add up to it; hourly matching "
        "(24/7 carbon-free energy) shown beside it. PUE = facility / IT energy and WUE = site water / IT energy "
        "(The Green Grid WP #49, #35).",
    ) + html_kv([
        ("grid factors", ctx.carbon_source or "n/a"),
        ("period-average grid factor [gCO2/kWh]", fp["average_factor_gco2_per_kwh"]),
        ("energy-weighted factor of the site [gCO2/kWh]", fp["weighted_factor_gco2_per_kwh"]),
        ("residual-mix factor", s2["residual_factor_source"] if s2["residual_mix_gco2_per_kwh"] is None
         else f"{s2['residual_mix_gco2_per_kwh']:g} gCO2/kWh (operator)"),
        ("contractual instruments", ctx.ppa_source or "none"),
    ])
    monthly = pd.DataFrame(figs["monthly"]).set_index("month")
    b["Energy and PUE"] = html_kv([
        ("IT energy [MWh]", e["it_kwh"] / 1000), ("facility energy [MWh]", e["facility_kwh"] / 1000),
        ("cooling energy [MWh]", None if e["cooling_kwh"] is None else e["cooling_kwh"] / 1000),
        ("PUE [-]", e["pue"]),
        ("water [m3]", None if e["water_l"] is None else e["water_l"] / 1000),
        ("WUE [L/kWh IT]", e["wue_l_per_kwh"]),
    ], digits=3) + fig("energy") + html_table(
        monthly[["it_mwh", "facility_mwh", "pue", "wue_l_per_kwh"]].rename(columns={
            "it_mwh": "IT MWh", "facility_mwh": "facility MWh", "pue": "PUE", "wue_l_per_kwh": "WUE L/kWh"}), digits=3,
        caption="Monthly energy, PUE and WUE")
    b["Emissions: location- and market-based"] = html_kv([
        ("Scope 2 location-based [tCO2], hourly factors", s2["location_kgco2"] / 1000),
        ("same energy at the period-average factor [tCO2]", fp["kgco2_average_factor"] / 1000),
        ("difference hourly - average [%]", fp["difference_pct"]),
        ("Scope 2 market-based [tCO2], period-matched (GHG Protocol)", s2["market_kgco2"] / 1000),
        ("market-based, hourly-matched (24/7) [tCO2]", s2["market_hourly_kgco2"] / 1000),
        ("edge sites and network, location-based [tCO2]", figs["edge_and_network_kgco2"] / 1000),
    ], digits=2) + fig("emissions") + html_table(
        monthly[["tco2_location", "tco2_market", "average_factor_gco2_per_kwh", "weighted_factor_gco2_per_kwh"]].rename(
            columns={"tco2_location": "tCO2 location", "tco2_market": "tCO2 market",
                     "average_factor_gco2_per_kwh": "avg factor g/kWh", "weighted_factor_gco2_per_kwh": "site factor g/kWh"}),
        digits=2, caption="Monthly emissions and factors")
    if red is None:
        b["Reductions"] = html_paragraphs(
            "No baseline was given, so no reduction is claimed. Give a baseline run over the same hours "
            "(e.g. `coolshift simulate --policy static`) with --baseline, or metered pre-period data with --pre "
            "(measurement and verification).", note=True)
    else:
        loc = red["location"]
        b["Reductions"] = html_paragraphs(f"Baseline: {red['label']} ({red['source'] or 'n/a'}).") + html_kv([
            ("baseline facility energy [MWh]", loc["baseline_kwh"] / 1000),
            ("reported facility energy [MWh]", loc["post_kwh"] / 1000),
            ("baseline emissions, location [tCO2]", loc["baseline_kg"] / 1000),
            ("reported emissions, location [tCO2]", loc["post_kg"] / 1000),
            ("reduction, location [tCO2]", loc["total_kg"] / 1000),
            ("  of which efficiency (less energy) [tCO2]", loc["efficiency_kg"] / 1000),
            ("  of which timing (cleaner hours) [tCO2]", loc["timing_kg"] / 1000),
            ("reduction [% of baseline]", loc["total_pct"]),
            ("added at edge sites and network [tCO2]", red["edge_and_network_increase_kg"] / 1000),
            ("net reduction, location [tCO2]", red["net_location_kg"] / 1000),
            ("net reduction, market-based [tCO2]", None if red["market_kg"] is None else red["market_kg"] / 1000),
            ("baseline PUE -> reported PUE", f"{_num(red['baseline_pue'], digits=3)} -> {_num(e['pue'], digits=3)}"),
        ], digits=2) + fig("reductions")
    b["Renewables"] = html_kv([
        ("contracted renewable supply [MWh]", s2["ppa_supply_kwh"] / 1000),
        ("claimed against consumption [MWh]", s2["ppa_claimed_kwh"] / 1000),
        ("surplus, not claimed [MWh]", s2["ppa_surplus_kwh"] / 1000),
        ("renewable share, period-matched [%]", 100 * s2["renewable_share"]),
        ("renewable share, hourly-matched [%]", 100 * s2["renewable_share_hourly"]),
    ], digits=1) + fig("renewables")
    b["Residual emissions and offsets"] = html_kv([
        ("residual emissions [tCO2]", neut["residual_tco2"]),
        ("offsets needed [credits of 1 tCO2e]", neut["offsets_needed_tco2e"]),
        ("offset standard", neut["offset_standard"]),
        ("basis", neut["basis"]),
    ], digits=1) + html_paragraphs(
        neut["statement"],
        "PAS 2060-style declaration: measured, reduced, offset. Credits must be retired (not only bought) "
        "for this period and meet the stated standard (e.g. VCS, Gold Standard); ISO 14068-1:2023 succeeds PAS 2060. "
        "This residual is Scope 2 and the edge sites only: the PAS 2060 statement adds Scope 1, the Scope 3 "
        "categories given and the retired credits.",
        note=True)
    ct = figs.get("mv_methods", {}).get("caltrack", {})
    b["Measurement and verification"] = mv_body(mvs, fig("mv")) + (
        html_table(S.caltrack_table(mvs, ct["models"]), index=False, digits=3,
                   caption="Baseline models side by side (CalTRACK: dry bulb and time of week only, so IT-load changes "
                           "count as savings; fit statistics on the pre-period)")
        if ct.get("computed") else html_paragraphs(S.CALTRACK_STATUS, note=True))
    if "pas2060" in figs:
        b.update(S.standards_bodies(figs, fig("accounting")))
    rows = pd.DataFrame(dq["fills_detail"]) if dq["fills_detail"] else None
    b["Data quality"] = html_kv([
        ("data kind", kind),
        ("steps with estimated (gap-filled) values", dq["estimated_steps"]),
        ("estimated hours", dq["estimated_hours"]), ("estimated share [%]", dq["estimated_pct"]),
        ("gap fills", dq["fills"]),
    ], digits=2) + (html_table(rows, index=False, caption="Gap fills (first 50)") if rows is not None else
                    html_paragraphs("No gaps were filled in the data used.")) + html_paragraphs(*ctx.notes)
    return b


def mv_body(mvs: dict | None, figure_html: str = "") -> str:
    """HTML of the measurement-and-verification section from :meth:`MVResult.summary`."""
    if mvs is None:
        return html_paragraphs(
            "Not performed for this report: give metered pre-period telemetry with --pre (or run "
            "`coolshift verify --pre FILE --post FILE`) to estimate avoided energy and carbon against an adjusted "
            "baseline (IPMVP Option C, ASHRAE Guideline 14).", note=True)
    return html_paragraphs(
        f"Method: {mvs['method']}. Model ({mvs['interval']} intervals, load variable {mvs['load_variable']}, "
        f"T = {mvs['temperature']}): {mvs['model']}.",
        "With IT power as the load variable, savings that lower IT power are not credited (they move the "
        "baseline too): the avoided energy is facility overhead (cooling, losses) only."
        if mvs["load_variable"] == "it_power_kw" else "") + html_kv([
        ("pre period", f"{mvs['pre_start']} .. {mvs['pre_end']} ({mvs['pre_intervals']} intervals)"),
        ("post period", f"{mvs['post_start']} .. {mvs['post_end']} ({mvs['post_intervals']} intervals)"),
        ("CV(RMSE) [%]", mvs["cv_rmse_pct"]), ("NMBE [%]", mvs["nmbe_pct"]), ("R2", mvs["r2"]),
        ("residual lag-1 autocorrelation", mvs["residual_autocorrelation"]), ("effective n'", mvs["n_effective"]),
        ("adjusted baseline [MWh]", mvs["adjusted_baseline_kwh"] / 1000), ("metered [MWh]", mvs["metered_kwh"] / 1000),
        ("avoided energy [MWh]", mvs["avoided_kwh"] / 1000), ("savings [% of adjusted baseline]", mvs["savings_pct"]),
        ("uncertainty at 68 % [MWh]", mvs["uncertainty_kwh_68"] / 1000),
        ("uncertainty at 90 % [MWh]", mvs["uncertainty_kwh_90"] / 1000),
        ("avoided carbon [tCO2]", None if mvs["avoided_kgco2"] is None else mvs["avoided_kgco2"] / 1000),
        ("carbon uncertainty at 90 % [tCO2]", None if mvs["uncertainty_kgco2_90"] is None else mvs["uncertainty_kgco2_90"] / 1000),
        ("Guideline 14 compliant", mvs["compliant"]),
    ], digits=3) + html_table(pd.DataFrame(mvs["checks"]).set_index("check"), caption="Guideline 14 checks") + figure_html


def render_html(figs: dict, ctx: ReportContext, figures: dict | None = None) -> str:
    """The self-contained HTML report."""
    bodies = section_bodies(figs, ctx, figures)
    title = f"Carbon report: {ctx.site_name}, {figs['start'][:10]} to {figs['end'][:10]}"
    s2 = figs["scope2"]
    subtitle = (f"Scope 2 location-based {s2['location_kgco2'] / 1000:,.1f} tCO2, market-based {s2['market_kgco2'] / 1000:,.1f} tCO2; "
                f"PUE {figs['energy']['pue']:.3f}; offsets needed {figs['neutrality']['offsets_needed_tco2e']:,d} tCO2e.")
    if "pas2060" in figs:
        subtitle += (f" Scope 1 {figs['scope1_tco2']:,.1f} tCO2e; PAS 2060: "
                     f"{'carbon neutral' if figs['pas2060']['neutral'] else 'not carbon neutral'}.")
    return render_page(title, [Section(t, bodies[t]) for t in SECTIONS if t in bodies], subtitle=subtitle)


def write_pdf(path, figs: dict, ctx: ReportContext, figures: dict) -> None:
    """The same report as PDF pages (text pages plus the figures), via matplotlib's PdfPages."""
    import re
    import textwrap

    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    import io

    from coolshift.io.atomic import write_bytes_atomic

    bodies = section_bodies(figs, ctx, figures={})

    def text_of(html: str) -> str:
        import html as _h

        t = re.sub(r"</(p|tr|caption)>", "\n", html)
        t = re.sub(r"</t[dh]>", "   ", t)
        return _h.unescape(re.sub(r"<[^>]+>", "", t))

    buf = io.BytesIO()
    with PdfPages(buf) as pdf:
        lines = [f"Carbon report: {ctx.site_name}", f"{figs['start']} to {figs['end']}", ""]
        for title in (t for t in SECTIONS if t in bodies):
            lines += ["", title.upper()]
            for para in text_of(bodies[title]).splitlines():
                lines += textwrap.wrap(para, 105) or [""]
        lines += ["", "FIGURES (following pages)"] + [f"{i + 1}. {cap}" for i, (_, cap) in enumerate(figures.values())]
        per_page = 86
        for i in range(0, len(lines), per_page):
            page = plt.figure(figsize=(8.27, 11.69))
            page.text(0.05, 0.97, "\n".join(lines[i:i + per_page]), va="top", family="monospace", fontsize=7.2)
            pdf.savefig(page)
            plt.close(page)
        for f, _cap in figures.values():  # left open: the HTML embeds (and closes) them afterwards
            pdf.savefig(f)
    write_bytes_atomic(path, buf.getvalue())
