"""`coolshift plan`: the nightly plan (:func:`coolshift.usecases.nightly.nightly_plan`) from the command line.

Parses the options, calls the use case with a spinner for its stages, prints the plan
against the baseline and maps the outcome to the exit code.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Callable, Iterator, Optional

import typer

from coolshift.commands._common import (
    EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_FALLBACK, CarbonFmtOpt, CarbonOpt, SiteOpt, WeatherFmtOpt, WeatherOpt, WorkloadFmtOpt,
    WorkloadOpt, cli_errors, console, err_console, exit_lock_unavailable, exit_locked, iso_time_option,
)



def _fail(msg: str, code: int = EXIT_BAD_INPUT) -> None:
    err_console.print(f"[bold red]error:[/] {msg}", markup=True, highlight=False)
    raise typer.Exit(code)


def _warn(msg: str) -> None:
    err_console.print(f"[yellow]warning:[/] {msg}", markup=True, highlight=False)


@contextlib.contextmanager
def _stages() -> Iterator[Callable[[str], None]]:
    """A transient spinner naming the use case's current stage, started at its first stage (none before)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    prog = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=True)
    task = []

    def stage(text: str) -> None:
        if task:
            prog.update(task[0], description=text)
        else:
            prog.start()
            task.append(prog.add_task(text, total=None))

    try:
        yield stage
    finally:
        if task:  # a Progress never started must not be stopped (it would print an empty line)
            prog.stop()


def _print_result(res) -> None:
    """The plan against the baseline, the savings, the binding policies and where the run went."""
    from rich.table import Table

    site, summary, plan = res.site, res.summary, res.plan
    if res.mlflow_run_id is not None:
        console.print(f"MLflow run {res.mlflow_run_id}")
    t = Table(title=f"Plan for {site.name}, {res.start:%Y-%m-%d %H:%M} UTC + {site.planning.horizon_h} h ({summary['steps']} steps)")
    t.add_column("")
    t.add_column("plan", justify="right")
    t.add_column(f"baseline ({res.baseline_rule})", justify="right")
    pr, bs = summary["predicted"], summary["baseline"]
    t.add_row("facility MWh", f"{pr['facility_kwh'] / 1000:,.2f}", f"{bs['facility_kwh'] / 1000:,.2f}")
    t.add_row("PUE", f"{pr['pue']:.3f}", f"{bs['pue']:.3f}")
    t.add_row("tCO2", f"{pr['tco2']:,.3f}", f"{bs['tco2']:,.3f}")
    if "cost_usd" in pr and "cost_usd" in bs:
        t.add_row("cost USD", f"{pr['cost_usd']:,.0f}", f"{bs['cost_usd']:,.0f}")
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
    out_dir = res.out_dir
    console.print(f"wrote {out_dir / 'plan.csv'}, {out_dir / 'summary.json'} and the report {out_dir / 'report.html'}")


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
        weather_forecast: Annotated[Optional[str], typer.Option("--weather-forecast", help="model: forecast from the weather before the start; perfect: the weather data as given (e.g. a forecast file in --weather); default: as --forecast")] = None,
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
        state: Annotated[Optional[Path], typer.Option(
            "--state", help="start from this measured state (YAML/JSON: setpoints, servers on, work waiting; "
                            "see docs/optimizer.md) instead of the config's initial values")] = None,
        from_bms: Annotated[Optional[Path], typer.Option(
            "--from-bms", help="start from the state read from the BMS through this point map (read-only; "
                               "fields the map lacks come from the config, with a warning)")] = None,
        state_max_age_h: Annotated[float, typer.Option(
            help="refuse a state measured longer than this before the plan start")] = 6.0,
        state_max_ahead_h: Annotated[Optional[float], typer.Option(
            help="refuse a state measured longer than this after the plan start (default one planning step)")] = None,
        objective: Annotated[str, typer.Option(
            help="carbon (kgCO2), cost (USD: the config's tariff) or weighted (USD + carbon price x tCO2)")] = "carbon",
        carbon_price: Annotated[Optional[float], typer.Option(
            "--carbon-price", help="internal carbon price, USD/tCO2, for --objective weighted (default the tariff's)")] = None,
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

        By default the plan starts from the config's initial setpoints, every server on and
        no work waiting. `--state FILE` starts it from a measured state; `--from-bms MAP`
        reads that state from the BMS (never writing). summary.json records which
        (`initial_state`).
        """
        from coolshift.config import ConfigError
        from coolshift.io.checks import DataError
        from coolshift.usecases.nightly import (
            LockUnavailable, NightlyOptions, RunLocked, StateUnavailable, Terminated, nightly_plan,
        )

        if state is not None and from_bms is not None:
            _fail("give at most one of --state (a state file) and --from-bms (a point map)")
        if objective not in ("carbon", "cost", "weighted"):
            _fail(f"--objective must be carbon, cost or weighted, not {objective[:20]!r}")

        opts = NightlyOptions(
            site=site_path, start=start, for_date=for_, runs=runs, out=out, forecast=forecast, weather_forecast=weather_forecast, workdir=workdir,
            record_mlflow=mlflow_log, carbon=carbon, weather=weather, workload=workload, carbon_format=carbon_format,
            weather_format=weather_format, workload_format=workload_format, accounting=accounting,
            time_limit_s=time_limit_s, integer_servers=integer_servers, envelope_zone_it=envelope_zone_it,
            state_file=state, from_bms=from_bms, state_max_age_h=state_max_age_h, state_max_ahead_h=state_max_ahead_h,
            objective=objective, carbon_price_usd_per_tco2=carbon_price)
        with _stages() as stage:  # errors are printed under a running spinner, as the command always did
            try:
                res = nightly_plan(opts, progress=stage, warn=_warn)
            except RunLocked as exc:
                exit_locked(exc)
            except LockUnavailable as exc:
                exit_lock_unavailable(exc)
            except Terminated:
                _fail("stopped by SIGTERM before the plan was written; the previous run folder is untouched", EXIT_FAILURE)
            except StateUnavailable as exc:
                _fail(f"{exc}; nothing was planned", EXIT_FAILURE)
            except (ConfigError, DataError):
                raise  # cli_errors: one line naming the file, exit 2
            except (ValueError, LookupError) as exc:
                _fail(str(exc))
            except Exception as exc:  # noqa: BLE001 - the nightly job reports, never dumps a traceback
                _fail(f"plan failed: {type(exc).__name__}: {exc}", EXIT_FAILURE)
        _print_result(res)
        if res.fallback:
            err_console.print(f"[bold yellow]fallback plan:[/] {res.plan.reason}", markup=True, highlight=False)
            raise typer.Exit(EXIT_FALLBACK)
