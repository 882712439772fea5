"""`coolshift validate` and `coolshift data summary`: check a site and its data."""

from __future__ import annotations

import typer
from rich.table import Table

from coolshift.commands._common import (
    CarbonFmtOpt, CarbonOpt, EndOpt, SiteOpt, StartOpt, WeatherFmtOpt, WeatherOpt, WorkloadFmtOpt, WorkloadOpt,
    cli_errors, console, load_inputs,
)
from coolshift.io.site_data import reanchor_note


def site_tables(site) -> list[Table]:
    """Rich tables describing a site's components (zones, pools, classes, plant, edges)."""
    t = Table(title=f"Site {site.name}: {site.description}", show_lines=False)
    for c in ("zone", "racks", "design IT kW", "inlet limits degC", "supply sp degC", "containment", "CRAH units"):
        t.add_column(c)
    for z in site.zones:
        t.add_row(z.name, str(z.racks), f"{z.design_it_load_kw:,.0f}", f"{z.inlet_min_c:g}-{z.inlet_max_c:g}",
                  f"{z.supply_setpoint_min_c:g}-{z.supply_setpoint_max_c:g}", z.containment,
                  f"{z.crah.count} x {z.crah.rated_airflow_m3_s:g} m3/s, {z.crah.rated_fan_power_kw:g} kW")
    p = Table(title="Server pools")
    for c in ("pool", "zone", "servers", "idle/peak W", "capacity units/h", "min active", "classes"):
        p.add_column(c)
    for s in site.server_pools:
        p.add_row(s.name, s.zone, f"{s.servers:,}", f"{s.idle_w:g}/{s.peak_w:g}",
                  f"{s.servers * s.capacity_units_per_server:,.0f}", f"{s.min_active_servers:,}", ",".join(s.classes or ["all"]))
    w = Table(title="Workload classes")
    for c in ("class", "kind", "share", "deadline h", "offloadable"):
        w.add_column(c)
    for c in site.workload_classes:
        w.add_row(c.name, c.kind, f"{c.share:.0%}", "-" if c.deadline_h is None else f"{c.deadline_h:g}", "yes" if c.offloadable else "no")
    pl = Table(title="Cooling plant and electrical")
    pl.add_column("item")
    pl.add_column("value")
    ch = site.cooling.chiller
    pl.add_row("chillers", f"{ch.type}, {ch.rated_capacity_kw:,.0f} kW thermal, rated COP {ch.rated_cop:g}")
    pl.add_row("economiser", f"{site.cooling.economiser.type}, approach {site.cooling.economiser.approach_c:g} degC")
    pl.add_row("pumps / tower fans", f"{site.cooling.pump_rated_kw:g} / {site.cooling.tower_fan_rated_kw:g} kW")
    pl.add_row("UPS", f"{site.electrical.ups_rated_kw:,.0f} kW, PDU loss {site.electrical.pdu_loss_frac:.1%}")
    pl.add_row("grid region / accounting", f"{site.grid_region} / {site.planning.accounting}-based")
    pl.add_row("planning", f"{site.planning.step_minutes} min steps, {site.planning.horizon_h} h horizon")
    if site.renewables:
        pl.add_row("PPA", f"{site.renewables.ppa_mwh_per_year:,.0f} MWh/yr ({site.renewables.profile})")
    tables = [t, p, w, pl]
    if site.edge_sites:
        e = Table(title="Edge sites")
        for c in ("edge", "grid", "capacity units/h", "static kW", "PUE", "latency ms"):
            e.add_column(c)
        for s in site.edge_sites:
            e.add_row(s.name, s.grid_region, f"{s.capacity_units_per_h:,.0f}", f"{s.static_kw:g}", f"{s.pue:g}", f"{s.latency_ms:g}")
        tables.append(e)
    return tables


def data_table(data) -> Table:
    """Coverage and statistics of every input series on the plan grid."""
    t = Table(title=f"Input data {data.index[0]:%Y-%m-%d %H:%M} to {data.index[-1]:%Y-%m-%d %H:%M} UTC, "
                    f"{len(data):,} steps of {data.attrs['step']}")
    for c in ("series", "mean", "min", "max"):
        t.add_column(c, justify="right" if c != "series" else "left")
    for c in data.columns:
        s = data[c]
        t.add_row(c, f"{s.mean():,.2f}", f"{s.min():,.2f}", f"{s.max():,.2f}")
    return t


def fills_note(data) -> str:
    """Where each series came from, which reader column, and what was filled or re-anchored."""
    src = data.attrs.get("sources", {})
    fills = src.get("filled", {}).get("carbon", [])
    fills = [f for f in fills if f["column"] == "gco2_per_kwh"]
    carbon = f"carbon: {src.get('carbon')}"
    if src.get("carbon_format"):
        col = f", column {src['carbon_column']!r}" if src.get("carbon_column") else ""
        carbon += f"\n  read as {src['carbon_format']}{col}: {src.get('carbon_basis', '')}"
        if src["carbon_format"] == "electricitymaps":
            carbon += " (`column: lca` or `direct` on the site's carbon source chooses; lca is the default)"
    lines = [carbon, f"weather: {src.get('weather')}", f"workload: {src.get('workload')}"]
    if fills:
        lines.append("carbon gaps filled: " + "; ".join(f"{f['start']} {f['steps']} steps ({f['rule']})" for f in fills))
    if src.get("workload_reanchored"):
        lines.append(reanchor_note(src["workload_reanchored"]))
    if src.get("weather_edge_filled_h"):
        lines.append(f"weather: {src['weather_edge_filled_h']:g} h at the period's edges filled from the adjacent day")
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    data_app = typer.Typer(help="Inspect input data.", no_args_is_help=True)

    @app.command("validate")
    @cli_errors
    def validate(site: SiteOpt, start: StartOpt = None, end: EndOpt = None, carbon: CarbonOpt = None,
                 weather: WeatherOpt = None, workload: WorkloadOpt = None, carbon_format: CarbonFmtOpt = None,
                 weather_format: WeatherFmtOpt = None, workload_format: WorkloadFmtOpt = None) -> None:
        """Check a site configuration and its data; print a summary.

        Refuses (exit 2) a site whose plant (UPS, PDUs, CRAH units, chillers without an
        economiser) can never carry its design load, naming each component.
        """
        from coolshift.config import ConfigError, load_site
        from coolshift.ratings import design_problems

        problems = design_problems(load_site(site))
        if problems:
            raise ConfigError(f"{site}: the plant cannot carry the design load:\n  - " + "\n  - ".join(problems))
        cfg, data = load_inputs(site, start, end, carbon, weather, workload, carbon_format, weather_format, workload_format)
        for t in site_tables(cfg):
            console.print(t)
        console.print(data_table(data))
        console.print(fills_note(data), highlight=False)
        from coolshift.ratings import free_cooling_needed_wetbulb_c

        wb_max = free_cooling_needed_wetbulb_c(cfg)
        if wb_max is not None and "wetbulb_c" in data.columns:
            hot_h = float((data["wetbulb_c"] > wb_max).sum() * cfg.step_h)
            console.print(f"[yellow]note:[/] the chillers alone cannot carry the design heat; above {wb_max:.1f} degC "
                          f"wet-bulb, even at the warmest chilled water, neither can the plant ({hot_h:,.0f} h of "
                          "this period); plans whose load it cannot carry are infeasible and fall back (exit 3).", highlight=False)
        console.print(f"[green]OK[/]: {site} and its data are valid.")

    @data_app.command("summary")
    @cli_errors
    def summary(site: SiteOpt, start: StartOpt = None, end: EndOpt = None, carbon: CarbonOpt = None,
                weather: WeatherOpt = None, workload: WorkloadOpt = None, carbon_format: CarbonFmtOpt = None,
                weather_format: WeatherFmtOpt = None, workload_format: WorkloadFmtOpt = None) -> None:
        """Summarise the site's input series on the planning grid."""
        _, data = load_inputs(site, start, end, carbon, weather, workload, carbon_format, weather_format, workload_format)
        console.print(data_table(data))
        console.print(fills_note(data), highlight=False)

    app.add_typer(data_app, name="data")
