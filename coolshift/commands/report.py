"""`coolshift report` (carbon report of a period) and `coolshift verify` (M&V of savings)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from coolshift.commands._common import EXIT_BAD_INPUT, EXIT_FAILURE, CarbonFmtOpt, CarbonOpt, EndOpt, StartOpt, cli_errors, console, err_console

RunArg = Annotated[Path, typer.Argument(help="a `coolshift simulate --out` folder, its timeseries.parquet/.csv, or a telemetry CSV")]
SiteOptional = Annotated[Optional[Path], typer.Option("--site", "-s", help="site configuration YAML (PPA, residual mix, grid, zones)")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="output folder")]
FORMATS = ("all", "eu-json", "eu-csv")


def _site(path):
    if path is None:
        return None
    from coolshift.config import load_site

    return load_site(path)


def _load(path, site, carbon, carbon_format, start, end, carbon_required: bool = True, with_carbon: bool = True):
    """Read a run, trim it, give it grid factors (``with_carbon``; optional when not ``carbon_required``) and PPA supply.

    An M&V pre-period needs no grid factors (only its energy is modelled)."""
    from coolshift.io.checks import DataError
    from coolshift.reports.inputs import attach_carbon, attach_ppa, read_run, trim

    zones = [z.name for z in site.zones] if site is not None else None
    run = read_run(path, zones=zones)
    if start or end:
        run = trim(run, start, end)
    try:
        if not with_carbon:
            run.carbon_source = "not used"
        else:
            run = attach_carbon(run, site, carbon, carbon_format)
    except DataError as exc:
        if carbon_required or "no grid intensity" not in str(exc):
            raise
        run.carbon_source = "none (energy only)"
    run, ppa_note = attach_ppa(run, site)
    return run, ppa_note


def _residual_mix(cli_value, site):
    if cli_value is not None:
        return cli_value
    ren = getattr(site, "renewables", None)
    return ren.residual_mix_gco2_per_kwh if ren is not None else None


def _reporting(path, site):
    """The reporting block: a separate YAML (``--reporting``), else the site's ``reporting:`` block."""
    if path is not None:
        from coolshift.reports.standards_inputs import load_reporting

        return load_reporting(path)
    if site is not None:
        return site.reporting.model_copy(update={"base_dir": site.base_dir})
    return None


def _f(v, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _write_all(out: Path, figs: dict, ctx, post, rmix, pdf: bool, prog, task, base_frame, mv_result) -> None:
    """Every output of the report, each written atomically."""
    from coolshift.io import write_frame_atomic, write_json_atomic, write_text_atomic
    from coolshift.reports import annual
    from coolshift.reports.carbon import account_steps, monthly_table
    from coolshift.reports.eu import eu_rows

    prog.update(task, description="drawing the figures")
    figures = annual.make_figures(post.frame, figs, base_frame, mv_result)
    if "accounting" in figures:  # the accounting page as a picture of its own (README, slides)
        import io

        from coolshift.io.atomic import write_bytes_atomic

        buf = io.BytesIO()
        figures["accounting"][0].savefig(buf, format="png", dpi=110)
        write_bytes_atomic(out / "accounting.png", buf.getvalue())
    if pdf:
        prog.update(task, description="writing the PDF")
        annual.write_pdf(out / "carbon_report.pdf", figs, ctx, figures)
    prog.update(task, description="writing the HTML")
    write_text_atomic(out / "carbon_report.html", annual.render_html(figs, ctx, figures))
    write_json_atomic(out / "carbon_report.json", figs)
    write_frame_atomic(out / "monthly.csv", monthly_table(account_steps(post.frame, rmix), rmix))
    write_json_atomic(out / "eu_report.json", figs["eu"])
    write_frame_atomic(out / "eu_report.csv", eu_rows(figs["eu"]).set_index("section"))
    if figs["lifecycle"]:
        import pandas as pd

        write_frame_atomic(out / "lifecycle.csv", pd.DataFrame(figs["lifecycle"]).set_index("serial"))
        write_json_atomic(out / "lifecycle_certificates.json", figs["lifecycle_certificates"])


def _bad_option(option: str, message: str) -> None:
    """An option value the command does not know: one line and exit 2 (a typer.BadParameter raised
    inside the command would surface as an internal error)."""
    err_console.print(f"[bold red]error:[/] {option}: {message}", highlight=False)
    raise typer.Exit(EXIT_BAD_INPUT)


def _caltrack(path, pre_frame, post_frame, which: str) -> dict:
    """CalTRACK results (``which``: daily, hourly or both); a period it cannot model is bad input naming the file."""
    from coolshift.io.checks import DataError
    from coolshift.reports.caltrack import caltrack_baselines

    choices = {"daily": ("daily",), "hourly": ("hourly",), "both": ("daily", "hourly")}
    if which not in choices:
        _bad_option("--caltrack", "must be daily, hourly or both")
    try:
        return caltrack_baselines(pre_frame, post_frame, choices[which])
    except ValueError as exc:
        raise DataError(path, str(exc)) from None


def _check_mv_options(interval: str, temperature: str, prefix: str) -> None:
    """Reject an M&V interval or weather variable the adjusted-baseline model does not know."""
    if interval not in ("h", "D"):
        _bad_option(f"{prefix}interval", "must be h (hourly) or D (daily)")
    if temperature not in ("auto", "wetbulb", "drybulb"):
        _bad_option(f"{prefix}temperature", "must be auto, wetbulb or drybulb")


def register(app: typer.Typer) -> None:
    @app.command("report")
    @cli_errors
    def report(
        run: RunArg,
        site: SiteOptional = None,
        baseline: Annotated[Optional[Path], typer.Option(help="baseline run over the same hours (e.g. the static policy) for reductions")] = None,
        baseline_label: Annotated[str, typer.Option(help="name of the baseline in the report")] = "",
        pre: Annotated[Optional[Path], typer.Option(help="metered pre-period telemetry: adds measurement and verification against an adjusted baseline")] = None,
        start: StartOpt = None,
        end: EndOpt = None,
        carbon: CarbonOpt = None,
        carbon_format: CarbonFmtOpt = None,
        offset_standard: Annotated[Optional[str], typer.Option(help="standard of the retired offsets (e.g. 'VCS', 'Gold Standard'); default: the site's reporting.offset_standard")] = None,
        residual_mix: Annotated[Optional[float], typer.Option("--residual-mix", help="residual-mix factor in gCO2/kWh for market-based; default: the site's renewables.residual_mix_gco2_per_kwh")] = None,
        mv_interval: Annotated[str, typer.Option(help="M&V interval: h (hourly) or D (daily)")] = "h",
        mv_temperature: Annotated[str, typer.Option(help="M&V weather variable: auto (wet bulb when available), wetbulb or drybulb")] = "auto",
        mv_load_column: Annotated[str, typer.Option(help="M&V load variable: it_power_kw, or a work column to credit IT savings too")] = "it_power_kw",
        pdf: Annotated[bool, typer.Option("--pdf/--no-pdf", help="also write carbon_report.pdf")] = False,
        caltrack: Annotated[Optional[str], typer.Option("--caltrack", help="with --pre: also fit CalTRACK baselines: daily, hourly or both (eemeter; minutes per year of data)")] = None,
        reporting: Annotated[Optional[Path], typer.Option(help="reporting inputs YAML (targets, Scope 1 logs, EU fields, offsets, inventory, ISO registers); default: the site's reporting: block")] = None,
        fmt: Annotated[str, typer.Option("--format", help="all (HTML, JSON, CSVs and the EU export), eu-json or eu-csv (only the EU Delegated Regulation 2024/1364 structure)")] = "all",
        out: OutOpt = Path("carbon_report"),
    ):
        """Carbon report of a period: Scope 1 and 2, PUE/WUE, reductions, targets, EU indicators, PAS 2060, lifecycle, ISO, M&V."""
        from rich.progress import Progress, SpinnerColumn, TextColumn

        from coolshift.io import write_frame_atomic, write_json_atomic
        from coolshift.io.checks import DataError
        from coolshift.reports import annual

        _check_mv_options(mv_interval, mv_temperature, "--mv-")
        if fmt not in FORMATS:
            _bad_option("--format", f"must be one of {', '.join(FORMATS)}")
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=console, transient=True) as prog:
            task = prog.add_task("reading data")
            cfg = _site(site)
            from coolshift.reports.standards import read_inputs

            rep_cfg = _reporting(reporting, cfg)
            std_inputs = read_inputs(rep_cfg, [p.name for p in cfg.server_pools] if cfg is not None else None) if rep_cfg else None
            post, ppa_note = _load(run, cfg, carbon, carbon_format, start, end)
            base_frame = base_src = None
            if baseline is not None:
                b, _ = _load(baseline, cfg, carbon, carbon_format, start, end)
                if not b.frame.index.equals(post.frame.index):
                    raise DataError(baseline, f"baseline covers {b.frame.index[0]} .. {b.frame.index[-1]} ({len(b.frame)} steps); "
                                              f"the run covers {post.frame.index[0]} .. {post.frame.index[-1]} ({len(post.frame)} steps): "
                                              "they must be the same steps (use --start/--end)")
                base_frame, base_src = b.frame, b.source
            mv_result = None
            if pre is not None:
                prog.update(task, description="fitting the M&V baseline")
                from coolshift.reports.mv import verify_savings

                p, _ = _load(pre, cfg, carbon, carbon_format, None, None, with_carbon=False)
                try:
                    mv_result = verify_savings(p.frame, post.frame, freq=mv_interval, temperature=mv_temperature,
                                               load_column=mv_load_column)
                except ValueError as exc:
                    raise DataError(pre, str(exc)) from None
            ct_result = None
            if caltrack:
                if pre is None:
                    _bad_option("--caltrack", "needs --pre (the metered pre-period the baselines are fitted on)")
                prog.update(task, description="fitting the CalTRACK baselines (minutes per year of data)")
                ct_result = _caltrack(pre, p.frame, post.frame, caltrack)
            rmix = _residual_mix(residual_mix, cfg)
            notes = []
            if post.simulated:
                notes.append("All values are simulated by the Coolshift simulator (a model of the site): a report for "
                             "planning and evaluation, not a verified inventory.")
            ctx = annual.ReportContext(
                site_name=cfg.name if cfg else Path(run).stem, description=cfg.description if cfg else "",
                grid_region=cfg.grid_region if cfg else "", source=post.source, simulated=post.simulated,
                carbon_source=post.carbon_source, ppa_source=ppa_note, residual_mix_gco2_per_kwh=rmix,
                offset_standard=offset_standard or (rep_cfg.offset_standard if rep_cfg is not None else None), baseline_label=baseline_label or (
                    (base_frame is not None and Path(baseline).name) or None),
                baseline_source=base_src, filled=post.filled, notes=notes)
            prog.update(task, description="computing the accounts")
            figs = annual.carbon_figures(post.frame, ctx, base_frame, mv_result, std_inputs, cfg)
            if ct_result is not None:
                figs["mv_methods"]["caltrack"] = {"computed": True, "models": ct_result}
            out.mkdir(parents=True, exist_ok=True)
            if fmt != "all":
                if fmt == "eu-json":
                    write_json_atomic(out / "eu_report.json", figs["eu"])
                else:
                    from coolshift.reports.eu import eu_rows

                    write_frame_atomic(out / "eu_report.csv", eu_rows(figs["eu"]).set_index("section"))
            else:
                _write_all(out, figs, ctx, post, rmix, pdf, prog, task, base_frame, mv_result)
        if fmt != "all":
            k = figs["eu_kpis"]
            console.print(f"[bold]{ctx.site_name}[/] EU indicators: PUE {k['pue']:.3f}, WUE {_f(k['wue'])} L/kWh, "
                          f"ERF {_f(k['erf'])}, REF {_f(k['ref'])}; written: {out / ('eu_report.json' if fmt == 'eu-json' else 'eu_report.csv')}")
            return
        s2, e, n = figs["scope2"], figs["energy"], figs["neutrality"]
        console.print(f"[bold]{ctx.site_name}[/] {figs['start'][:10]} .. {figs['end'][:10]}: facility {e['facility_kwh'] / 1000:,.1f} MWh, "
                      f"PUE {e['pue']:.3f}, Scope 2 location {s2['location_kgco2'] / 1000:,.1f} tCO2, market {s2['market_kgco2'] / 1000:,.1f} tCO2, "
                      f"renewable share {100 * s2['renewable_share']:.1f} %")
        if figs["reduction"] is not None:
            loc = figs["reduction"]["location"]
            console.print(f"reduction vs {figs['reduction']['label']}: {loc['total_kg'] / 1000:,.1f} tCO2 ({loc['total_pct']:.1f} %) = "
                          f"efficiency {loc['efficiency_kg'] / 1000:,.1f} + timing {loc['timing_kg'] / 1000:,.1f}")
        console.print(f"Scope 1 {figs['scope1_tco2']:,.1f} tCO2e; Scope 1 + 2 market {figs['scope1_2_tco2e']['market']:,.1f} tCO2e; "
                      f"EU: PUE {figs['eu_kpis']['pue']:.3f}, WUE {_f(figs['eu_kpis']['wue'])}, ERF {_f(figs['eu_kpis']['erf'])}, "
                      f"REF {_f(figs['eu_kpis']['ref'])}")
        console.print(figs["pas2060"]["statement"])
        console.print(f"report: {out / 'carbon_report.html'}" + (f" and {out / 'carbon_report.pdf'}" if pdf else ""))

    @app.command("verify")
    @cli_errors
    def verify(
        pre: Annotated[Path, typer.Option(help="metered telemetry (CSV) or run before the change: the baseline period")],
        post: Annotated[Path, typer.Option(help="metered telemetry (CSV) or run after the change: the reporting period")],
        site: SiteOptional = None,
        carbon: CarbonOpt = None,
        carbon_format: CarbonFmtOpt = None,
        interval: Annotated[str, typer.Option(help="model interval: h (hourly) or D (daily)")] = "h",
        load_column: Annotated[str, typer.Option(help="load variable: it_power_kw, or a work column (work_units_per_h: summed from a simulator run) to credit IT savings too")] = "it_power_kw",
        temperature: Annotated[str, typer.Option(help="weather variable: auto (wet bulb when available), wetbulb or drybulb")] = "auto",
        strict: Annotated[bool, typer.Option("--strict", help="exit 1 when the result does not meet ASHRAE Guideline 14")] = False,
        caltrack: Annotated[Optional[str], typer.Option("--caltrack", help="also fit CalTRACK baselines: daily, hourly or both (eemeter; minutes per year of data)")] = None,
        out: OutOpt = Path("verification"),
    ):
        """Avoided energy and carbon against an adjusted baseline (IPMVP Option C, ASHRAE Guideline 14), with uncertainty."""
        from rich.table import Table

        from coolshift.io import write_frame_atomic, write_json_atomic, write_text_atomic
        from coolshift.io.checks import DataError
        from coolshift.reports import annual
        from coolshift.reports.html import Section, html_figure, render_page
        from coolshift.reports.mv import verify_savings

        _check_mv_options(interval, temperature, "--")
        cfg = _site(site)
        a, _ = _load(pre, cfg, carbon, carbon_format, None, None, with_carbon=False)
        b, _ = _load(post, cfg, carbon, carbon_format, None, None, carbon_required=False)
        for path, run in ((pre, a), (post, b)):
            if load_column not in run.frame.columns and not (
                    load_column == "work_units_per_h" and any(c.startswith("served_units_per_h__") for c in run.frame.columns)):
                raise DataError(path, f"missing column {load_column!r} needed for the baseline model")
        try:
            r = verify_savings(a.frame, b.frame, freq=interval, load_column=load_column, temperature=temperature)
        except ValueError as exc:
            raise DataError(post, str(exc)) from None
        s = r.summary()
        s["pre_source"], s["post_source"], s["carbon_source"] = a.source, b.source, b.carbon_source
        s["caltrack"] = _caltrack(pre, a.frame, b.frame, caltrack) if caltrack else None
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / "verification.json", s)
        cols = ["load", "temp_c", "energy_kwh", "adjusted_baseline_kwh"] + [c for c in ("kgco2", "factor_gco2_per_kwh") if c in r.post]
        write_frame_atomic(out / "adjusted_baseline.csv", r.post[cols])
        write_frame_atomic(out / "baseline_fit.csv", r.pre[["load", "temp_c", "energy_kwh", "fitted"]])
        fig, cap = annual.mv_figure(r)
        body = annual.mv_body(s, html_figure(fig, cap))
        if s["caltrack"]:
            from coolshift.reports.html import html_table
            from coolshift.reports.standards import caltrack_table

            body += html_table(caltrack_table(s, s["caltrack"]), index=False, digits=3,
                               caption="Baseline models side by side (CalTRACK: dry bulb and time of week only)")
        write_text_atomic(out / "verification.html", render_page(
            "Measurement and verification of savings", [Section("Measurement and verification", body)],
            subtitle=f"pre: {a.source}; post: {b.source}; grid factors: {b.carbon_source}"))
        t = Table(title="Measurement and verification (IPMVP Option C, ASHRAE Guideline 14-2014)")
        t.add_column("item")
        t.add_column("value", justify="right")
        t.add_row("model", s["model"])
        t.add_row("CV(RMSE) / NMBE", f"{s['cv_rmse_pct']:.2f} % / {s['nmbe_pct']:.2g} %")
        t.add_row("adjusted baseline / metered", f"{s['adjusted_baseline_kwh'] / 1000:,.1f} / {s['metered_kwh'] / 1000:,.1f} MWh")
        t.add_row("avoided energy", f"{s['avoided_kwh'] / 1000:,.1f} MWh ({s['savings_pct']:.2f} %) "
                                    f"+/- {s['uncertainty_kwh_68'] / 1000:,.1f} (68 %), +/- {s['uncertainty_kwh_90'] / 1000:,.1f} (90 %)")
        if s["avoided_kgco2"] is not None:
            t.add_row("avoided carbon", f"{s['avoided_kgco2'] / 1000:,.2f} tCO2 +/- {s['uncertainty_kgco2_90'] / 1000:,.2f} (90 %)")
        for m in (s["caltrack"] or {}).values():
            t.add_row(m["model"], f"CV(RMSE) {m['cv_rmse_pct']:.2f} % / NMBE {m['nmbe_pct']:.2g} %; avoided "
                                  f"{m['avoided_kwh'] / 1000:,.1f} MWh ({m['savings_pct']:.2f} %)" if m.get("applicable", True)
                      else f"not applicable: {m['reason']}")
        for c in s["checks"]:
            t.add_row(c["check"], f"{c['value']} {'[green]pass[/]' if c['passed'] else '[red]fail[/]'}{'' if c['required'] else ' (advisory)'}")
        console.print(t)
        console.print(f"written: {out / 'verification.json'}, {out / 'verification.html'}, {out / 'adjusted_baseline.csv'}")
        if strict and not r.compliant:
            err_console.print("[bold red]not compliant with ASHRAE Guideline 14[/] (see the failed checks)")
            raise typer.Exit(EXIT_FAILURE)
