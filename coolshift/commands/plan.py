"""`coolshift plan`: solve one horizon for a site and write plan.csv + summary.json."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from coolshift.commands._common import (
    EXIT_BAD_INPUT, EXIT_FALLBACK, CarbonFmtOpt, CarbonOpt, SiteOpt, WeatherFmtOpt, WeatherOpt, WorkloadFmtOpt,
    WorkloadOpt, cli_errors, console, err_console,
)

NO_MODEL_HINT = "run `coolshift train --site {cfg}` first to fit and register the plant model"


def _fail(msg: str, code: int = EXIT_BAD_INPUT) -> None:
    err_console.print(f"[bold red]error:[/] {msg}", markup=True, highlight=False)
    raise typer.Exit(code)


def load_coefficients(site, data, site_path: Path):
    """The registered plant model's coefficients for this forecast, or a clear error."""
    hint = NO_MODEL_HINT.format(cfg=site_path)
    try:
        from coolshift.models.registry import load_plant_model
    except ImportError:
        _fail(f"no plant model registry is available for site {site.name}: {hint}")
    try:
        model = load_plant_model(site, alias="production")
    except Exception as exc:  # registry back-ends raise their own lookup errors
        _fail(f"no registered plant model for site {site.name} (alias 'production'): {hint} ({type(exc).__name__}: {exc})")
    if model is None:
        _fail(f"no registered plant model for site {site.name} (alias 'production'): {hint}")
    return model.coefficients(site, data), getattr(model, "envelope_", None)


def summary_of(site, plan, baseline_totals: dict, baseline_rule: str, planner, start, end, coefs) -> dict:
    import pandas as pd

    lp = planner.problem.lp
    p, b = plan.totals, baseline_totals
    saved_t = b["tco2"] - p["tco2"]
    return {
        "run_id": f"plan-{site.name}-{start:%Y%m%dT%H%MZ}",
        "created_at": pd.Timestamp.now(tz="UTC").isoformat(),
        "site": site.name,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "steps": p["steps"],
        "step_minutes": int(round(p["step_h"] * 60)),
        "accounting": p["accounting"],
        "model_version": getattr(coefs, "model_version", None),
        "out_of_envelope_steps": int((~coefs.in_envelope.astype(bool)).sum()),
        "status": plan.status,
        "fallback": plan.fallback,
        "reason": plan.reason,
        "predicted": {k: p[k] for k in ("facility_kwh", "it_kwh", "cooling_kwh", "edge_kwh", "pue", "site_tco2", "edge_tco2", "tco2")},
        "baseline": {"rule": baseline_rule, **{k: b[k] for k in ("facility_kwh", "it_kwh", "cooling_kwh", "pue", "tco2")}},
        "savings": {
            "tco2": saved_t,
            "pct_co2": 100.0 * saved_t / b["tco2"] if b["tco2"] else None,
            "facility_kwh": b["facility_kwh"] - p["facility_kwh"],
        },
        "solver": {
            "name": "highs",
            "status": plan.status,
            "objective_kg": plan.objective_kg,
            "variables": lp.n_cols,
            "constraints": lp.n_rows,
            "nonzeros": lp.nnz,
            "build_s": plan.timings.get("build_s"),
            "handover_s": plan.timings.get("handover_s"),
            "solve_s": plan.timings.get("solve_s"),
            "shadow_s": plan.timings.get("shadow_s"),
        },
        "shadow_prices": plan.shadow_prices.to_dict(orient="records"),
        "diagnosis": plan.diagnosis.conflicts.to_dict(orient="records") if plan.diagnosis is not None else None,
    }


def register(app: typer.Typer) -> None:
    @app.command("plan")
    @cli_errors
    def plan_cmd(
        site_path: SiteOpt,
        start: Annotated[str, typer.Option("--start", help="first step of the plan, ISO 8601 (UTC if no offset)")],
        out: Annotated[Optional[Path], typer.Option("--out", help="output folder (default plans/<site>/<start>)")] = None,
        carbon: CarbonOpt = None,
        weather: WeatherOpt = None,
        workload: WorkloadOpt = None,
        carbon_format: CarbonFmtOpt = None,
        weather_format: WeatherFmtOpt = None,
        workload_format: WorkloadFmtOpt = None,
        accounting: Annotated[Optional[str], typer.Option(help="location or market (default: the config's)")] = None,
        time_limit_s: Annotated[float, typer.Option(help="solver time limit; beyond it the rule plan is used")] = 600.0,
        integer_servers: Annotated[bool, typer.Option(help="whole servers (a MILP) instead of continuous")] = False,
        envelope_zone_it: Annotated[bool, typer.Option(
            help="keep zone IT power inside the plant model's trained range (see docs/optimizer.md)")] = False,
    ) -> None:
        """Plan the next horizon (length and step from the config) for least carbon."""
        import pandas as pd
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
        from rich.table import Table

        from coolshift.commands._common import load_inputs
        from coolshift.io.atomic import write_frame_atomic, write_json_atomic
        from coolshift.optimizer import InitialState, Planner, PlanOptions, evaluate_actions
        from coolshift.optimizer.fallback import baseline_actions
        from coolshift.optimizer.plan import totals_of
        from coolshift.runs import staged_run_dir

        if accounting not in (None, "location", "market"):
            _fail(f"--accounting must be 'location' or 'market', not {accounting!r}")
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=True) as prog:
            task = prog.add_task("loading site and data", total=None)
            from coolshift.config import load_site

            site0 = load_site(site_path)
            t0 = pd.Timestamp(start)
            t0 = t0.tz_localize("UTC") if t0.tzinfo is None else t0.tz_convert("UTC")
            t1 = t0 + pd.Timedelta(hours=site0.planning.horizon_h)
            site, data = load_inputs(site_path, t0, t1, carbon, weather, workload, carbon_format, weather_format, workload_format)
            prog.update(task, description="loading the plant model")
            coefs, envelope = load_coefficients(site, data, site_path)
            prog.update(task, description="building the LP")
            opts = PlanOptions(accounting=accounting, time_limit_s=time_limit_s, integer_servers=integer_servers,
                               decision_envelope=envelope, envelope_zone_it=envelope_zone_it)
            try:
                planner = Planner(site, coefs, data, InitialState.from_site(site), opts)
            except ValueError as exc:
                _fail(str(exc))
            prog.update(task, description="solving with HiGHS")
            plan = planner.solve()
            prog.update(task, description="scoring the best-practice baseline")
            acts, rule = baseline_actions(site, planner.problem.data)
            base = totals_of(planner.problem.data, evaluate_actions(planner.problem.data, acts))
        summary = summary_of(site, plan, base, rule, planner, t0, t1, coefs)
        frame = plan.frame.copy()
        frame["in_envelope"] = coefs.in_envelope.reindex(frame.index).fillna(False).astype(bool).to_numpy()
        out_dir = out or Path("plans") / site.name / f"{t0:%Y-%m-%dT%H%MZ}"
        with staged_run_dir(out_dir) as stage:
            write_frame_atomic(stage / "plan.csv", frame)
            write_json_atomic(stage / "summary.json", summary)

        t = Table(title=f"Plan for {site.name}, {t0:%Y-%m-%d %H:%M} UTC + {site.planning.horizon_h} h ({summary['steps']} steps)")
        t.add_column("")
        t.add_column("plan", justify="right")
        t.add_column(f"baseline ({rule})", justify="right")
        pr, bs = summary["predicted"], summary["baseline"]
        t.add_row("facility MWh", f"{pr['facility_kwh'] / 1000:,.2f}", f"{bs['facility_kwh'] / 1000:,.2f}")
        t.add_row("PUE", f"{pr['pue']:.3f}", f"{bs['pue']:.3f}")
        t.add_row("tCO2", f"{pr['tco2']:,.3f}", f"{bs['tco2']:,.3f}")
        console.print(t)
        sv = summary["savings"]
        pct = f"{sv['pct_co2']:.1f} %" if sv["pct_co2"] is not None else "n/a"
        console.print(f"savings vs baseline: {sv['tco2']:,.3f} tCO2 ({pct}); status {plan.status}; "
                      f"build {summary['solver']['build_s']:.2f} s, solve {summary['solver']['solve_s'] or 0:.2f} s")
        if len(plan.shadow_prices):
            sp = Table(title="Shadow prices (binding policies)")
            for c in ("family", "component", "value", "unit", "binding steps"):
                sp.add_column(c)
            for r in plan.shadow_prices.itertuples():
                sp.add_row(r.family, r.component, f"{r.value:,.4g}", r.unit, str(r.binding_steps))
            console.print(sp)
        console.print(f"wrote {out_dir / 'plan.csv'} and {out_dir / 'summary.json'}")
        if plan.fallback:
            err_console.print(f"[bold yellow]fallback plan:[/] {plan.reason}", markup=True, highlight=False)
            raise typer.Exit(EXIT_FALLBACK)
