"""`coolshift plan`: solve one horizon for a site and write plan.csv + summary.json."""

from __future__ import annotations

import contextlib
import signal
from pathlib import Path
from typing import Annotated, Optional

import typer

from coolshift.commands._common import (
    EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_FALLBACK, CarbonFmtOpt, CarbonOpt, SiteOpt, WeatherFmtOpt, WeatherOpt, WorkloadFmtOpt,
    WorkloadOpt, cli_errors, cli_locks, console, err_console, iso_time_option,
)

from coolshift.locks import EXIT_LOCKED  # noqa: F401 - 75, EX_TEMPFAIL: another run holds the lock

NO_MODEL_HINT = "run `coolshift train --site {cfg}` first to fit and register the plant model"


_LAST_ERROR: list[str] = []  # the message of the last _fail, for the MLflow record of a failed run


def _fail(msg: str, code: int = EXIT_BAD_INPUT) -> None:
    _LAST_ERROR[:] = [msg]
    err_console.print(f"[bold red]error:[/] {msg}", markup=True, highlight=False)
    raise typer.Exit(code)


class Terminated(BaseException):
    """SIGTERM arrived (systemd stop or timeout): unwind so the staging and the MLflow record are closed."""


def _warn(msg: str) -> None:
    err_console.print(f"[yellow]warning:[/] {msg}", markup=True, highlight=False)


@contextlib.contextmanager
def _sigterm_unwinds():
    """Turn SIGTERM into :class:`Terminated` for the block (main thread only), then restore the handler."""
    def raise_terminated(signum, frame):
        raise Terminated()

    try:
        prev = signal.signal(signal.SIGTERM, raise_terminated)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, prev)


def load_coefficients(site, data, site_path: Path, workdir: Path | None = None):
    """The registered plant model's coefficients for this forecast, or a clear error."""
    hint = NO_MODEL_HINT.format(cfg=site_path)
    try:
        from coolshift.models.registry import load_plant_model
    except ImportError:
        _fail(f"no plant model registry is available for site {site.name}: {hint}")
    try:
        model = load_plant_model(site, alias="production", workdir=workdir)
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
        start: Annotated[Optional[str], typer.Option("--start", help="first step of the plan, ISO 8601 (UTC if no offset)",
                                                                 callback=iso_time_option)] = None,
        for_: Annotated[Optional[str], typer.Option("--for", help="today, tomorrow or YYYY-MM-DD (00:00 UTC)")] = None,
        runs: Annotated[Path, typer.Option("--runs", help="root of the dated run folders")] = Path("runs"),
        out: Annotated[Optional[Path], typer.Option("--out", help="output folder (default <runs>/<site>/<date>)")] = None,
        forecast: Annotated[str, typer.Option(help="model: Coolshift's forecasters trained on data before the start; perfect: the data as given")] = "model",
        workdir: Annotated[Optional[Path], typer.Option(help="site working folder with mlflow.db (default ./.coolshift/<site>)")] = None,
        mlflow_log: Annotated[bool, typer.Option("--mlflow/--no-mlflow", help="record the run in MLflow")] = True,
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
        """Plan the next horizon (length and step from the config) for least carbon.

        The nightly job: `coolshift plan --site S --for tomorrow` writes plan.csv/.parquet,
        summary.json and report.html into <runs>/<site>/<date> (re-running replaces that
        run atomically; a lock stops concurrent runs) and records the run in MLflow. Exit
        codes: 0 plan, 3 fallback plan, 2 bad input, 1 failure, 75 another run holds the lock.

        The run holds two locks from its start (before any data is loaded) to its end: one
        per site in the state folder ($COOLSHIFT_STATE_DIR, default ~/.local/state/coolshift)
        and one beside the run folders (<runs>/<site>/.plan-<site>.lock). A run killed
        half-way is cleaned up by the next one: its lock recovered, its staging folders
        removed and its MLflow record marked FAILED.
        """
        try:
            _plan(site_path, start, for_, runs, out, forecast, workdir, mlflow_log, carbon, weather, workload,
                  carbon_format, weather_format, workload_format, accounting, time_limit_s, integer_servers, envelope_zone_it)
        except typer.Exit:
            raise
        except Terminated:
            _fail("stopped by SIGTERM before the plan was written; the previous run folder is untouched", EXIT_FAILURE)
        except (ValueError, LookupError) as exc:
            from coolshift.config import ConfigError
            from coolshift.io.checks import DataError

            if isinstance(exc, (ConfigError, DataError)):
                raise
            _fail(str(exc))
        except Exception as exc:  # noqa: BLE001 - the nightly job reports, never dumps a traceback
            _fail(f"plan failed: {type(exc).__name__}: {exc}", EXIT_FAILURE)

    def _plan(site_path, start, for_, runs, out, forecast, workdir, mlflow_log, carbon, weather, workload,
              carbon_format, weather_format, workload_format, accounting, time_limit_s, integer_servers, envelope_zone_it):
        from coolshift.nightly import plan_start

        if forecast not in ("model", "perfect"):
            _fail(f"--forecast must be 'model' or 'perfect', not {forecast!r}")
        t0 = plan_start(for_, start)
        if accounting not in (None, "location", "market"):
            _fail(f"--accounting must be 'location' or 'market', not {accounting!r}")
        from coolshift.config import load_site

        site0 = load_site(site_path)  # only the site name is needed to take the locks
        out_dir = out or runs / site0.name / f"{t0:%Y-%m-%d}"
        with _whole_run(site0, t0, out_dir, workdir, mlflow_log) as rec:
            _plan_locked(site_path, t0, out_dir, forecast, workdir, rec, carbon, weather, workload, carbon_format,
                         weather_format, workload_format, accounting, time_limit_s, integer_servers, envelope_zone_it)

    @contextlib.contextmanager
    def _whole_run(site0, t0, out_dir: Path, workdir, mlflow_log: bool):
        """Hold the plan's locks for the whole run, clean what a killed run left, open the MLflow record.

        Yields the :class:`~coolshift.nightly.PlanRecord` (None with --no-mlflow or when
        tracking is down); it is marked FAILED (KILLED on SIGTERM) if the block raises.
        """
        from coolshift.locks import site_lock
        from coolshift.nightly import PlanRecord
        from coolshift.runs import clean_stale_staging, output_lock

        specs = [site_lock("plan", site0.name), output_lock(out_dir.parent, f"plan-{site0.name}")]
        with cli_locks(specs, "plan", warn=_warn), _sigterm_unwinds():
            for m in clean_stale_staging(out_dir):
                _warn(m)
            rec = None
            if mlflow_log:
                from coolshift.models.registry import site_workdir

                try:
                    rec, msgs = PlanRecord.open(site0.name, workdir or site_workdir(site0),
                                                f"plan-{site0.name}-{t0:%Y%m%dT%H%MZ}", specs[0].path)
                    for m in msgs:
                        _warn(m)
                except Exception as exc:  # noqa: BLE001 - the plan stands even if tracking is down
                    _warn(f"MLflow tracking unavailable, the run is not recorded: {type(exc).__name__}: {exc}")
            try:
                yield rec
            except typer.Exit as exc:
                if rec is not None and exc.exit_code not in (0, EXIT_FALLBACK):
                    rec.fail(f"exit {exc.exit_code}: {_LAST_ERROR[0] if _LAST_ERROR else ''}")
                raise
            except Terminated:
                if rec is not None:
                    rec.fail("stopped by SIGTERM", "KILLED")
                raise
            except BaseException as exc:
                if rec is not None:
                    rec.fail(f"{type(exc).__name__}: {exc}")
                raise

    def _plan_locked(site_path, t0, out_dir, forecast, workdir, rec, carbon, weather, workload, carbon_format,
                     weather_format, workload_format, accounting, time_limit_s, integer_servers, envelope_zone_it):
        import pandas as pd
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
        from rich.table import Table

        from coolshift.commands._common import load_inputs
        from coolshift.io.checks import DataError
        from coolshift.io.atomic import write_frame_atomic, write_json_atomic
        from coolshift.optimizer import InitialState, Planner, PlanOptions, evaluate_actions
        from coolshift.optimizer.fallback import baseline_actions
        from coolshift.optimizer.plan import totals_of
        from coolshift.nightly import HISTORY_DAYS, horizon_forecast, plan_report_html
        from coolshift.runs import staged_run_dir

        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=True) as prog:
            task = prog.add_task("loading site and data", total=None)
            from coolshift.config import load_site

            site0 = load_site(site_path)
            t1 = t0 + pd.Timedelta(hours=site0.planning.horizon_h)
            h0 = t0 - pd.Timedelta(days=HISTORY_DAYS) if forecast == "model" else t0
            try:
                site, full = load_inputs(site_path, h0, t1, carbon, weather, workload, carbon_format, weather_format, workload_format)
            except DataError:
                if forecast != "model":
                    raise
                # less history than HISTORY_DAYS: forecast from whatever precedes the start
                site, full = load_inputs(site_path, t0, t1, carbon, weather, workload, carbon_format, weather_format, workload_format)
            prog.update(task, description="forecasting intensity and demand")
            data, fc_info = horizon_forecast(full, t0, forecast)
            if forecast == "model":  # a forecast above full capacity is unservable, not a plan to make
                from coolshift.control.receding import cap_interactive_demand

                data = cap_interactive_demand(site, data)
            prog.update(task, description="loading the plant model")
            coefs, envelope = load_coefficients(site, data, site_path, workdir)
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
        summary["forecast"] = fc_info
        frame = plan.frame.copy()
        frame["in_envelope"] = coefs.in_envelope.reindex(frame.index).fillna(False).astype(bool).to_numpy()
        baseline_frame = evaluate_actions(planner.problem.data, acts)
        baseline_frame.index = frame.index
        html = plan_report_html(site, plan, baseline_frame, summary, data)
        with staged_run_dir(out_dir) as stage:  # the locks are held: nobody else writes here
            write_frame_atomic(stage / "plan.csv", frame)
            write_frame_atomic(stage / "plan.parquet", frame)
            write_json_atomic(stage / "summary.json", summary)
            (stage / "report.html").write_text(html, encoding="utf-8")
        if rec is not None:
            try:
                console.print(f"MLflow run {rec.finish(site, summary, out_dir)}")
            except Exception as exc:  # noqa: BLE001 - the plan stands even if tracking is down
                rec.fail(f"logging failed: {type(exc).__name__}: {exc}")
                err_console.print(f"[yellow]warning:[/] MLflow logging failed: {exc}")

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
        console.print(f"wrote {out_dir / 'plan.csv'}, {out_dir / 'summary.json'} and the report {out_dir / 'report.html'}")
        if plan.fallback:
            err_console.print(f"[bold yellow]fallback plan:[/] {plan.reason}", markup=True, highlight=False)
            raise typer.Exit(EXIT_FALLBACK)
