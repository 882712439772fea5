"""The nightly plan as a library function, and its pieces: dates, forecasts, report, MLflow record.

:func:`nightly_plan` does what ``coolshift plan`` does, for any caller (the CLI, a
scheduler, a notebook): it takes the plan's locks, loads the site and its data, forecasts,
loads the registered plant model, plans, scores the best-practice baseline, writes the
dated run folder atomically and records the run in MLflow. Bad input raises
ConfigError/DataError/ValueError (a missing plant model :class:`NoPlantModel`, a
LookupError), another run holding a lock raises
:class:`~coolshift.locks.RunLocked`, SIGTERM raises :class:`Terminated` after the run is
unwound; the CLI maps these to exit codes. The plant-model registry is imported where
it is used (it loads scikit-learn, and tests stand in for it through ``sys.modules``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd

from coolshift.bms.state_read import StateUnavailable, read_site_state_sync
from coolshift.config import ConfigError, SiteConfig, load_site
from coolshift.control.receding import cap_interactive_demand, forecast_columns, forecast_weather
from coolshift.io import DataError
from coolshift.io.atomic import write_frame_atomic, write_json_atomic
from coolshift.io.prices import with_prices
from coolshift.locks import Acquired, LockSpec, RunLocked, hold_locks, pid_alive, site_lock
from coolshift.optimizer import InitialState, Plan, Planner, PlanOptions, evaluate_actions
from coolshift.optimizer.fallback import baseline_actions
from coolshift.optimizer.plan import totals_of
from coolshift.reports.html import Section, html_figure, html_kv, html_paragraphs, html_table, render_page
from coolshift.runs import clean_stale_staging, output_lock, staged_run_dir
from coolshift.site_state import STATE_MAX_AGE_H, SiteState, load_state_file
from coolshift.usecases.inputs import NoPlantModel, coerce_paths, load_inputs

__all__ = ["NightlyOptions", "NightlyResult", "nightly_plan", "Terminated", "LockUnavailable", "RunLocked", "NoPlantModel",
           "StateUnavailable", "measured_initial_state",
           "plan_start", "horizon_forecast", "load_coefficients", "summary_of", "plan_locks", "plan_report_html",
           "PlanRecord", "fail_stale_plan_runs", "log_plan_run", "HISTORY_DAYS", "NO_MODEL_HINT"]

# History the forecasters train on before the plan's first step.
HISTORY_DAYS = 60
NO_MODEL_HINT = "run `coolshift train --site {cfg}` first to fit and register the plant model"


@dataclass(frozen=True)
class NightlyOptions:
    """Every option of ``coolshift plan``: which site and horizon, on which data, where the run goes.

    Give exactly one of ``start`` (ISO 8601, UTC if no offset) and ``for_date`` (``today``,
    ``tomorrow`` or ``YYYY-MM-DD``, planned from 00:00 UTC). The run folder is ``out``, else
    ``<runs>/<site>/<date>``. ``forecast``: ``model`` (Coolshift's forecasters trained on the
    data before the start) or ``perfect`` (the data as given). ``weather_forecast``: ``model``
    (:class:`~coolshift.models.forecast.WeatherForecaster`, from the weather before the
    start) or ``perfect`` (the weather data as given, e.g. an issued forecast passed with
    ``--weather``); None: model with ``forecast="model"``, perfect otherwise. ``workdir``: the
    site's working folder holding mlflow.db (default ``./.coolshift/<site>``).

    The plan starts from the config's initial state unless given at most one of
    ``state_file`` (a measured state, :mod:`coolshift.site_state`) and ``from_bms`` (a point
    map: the state read from the BMS, :mod:`coolshift.bms.state_read`). The state may be
    measured up to ``state_max_age_h`` before the start and ``state_max_ahead_h`` (default
    one planning step) after it.
    """

    site: Path
    start: str | None = None
    for_date: str | None = None
    runs: Path = Path("runs")
    out: Path | None = None
    forecast: str = "model"
    weather_forecast: str | None = None
    workdir: Path | None = None
    record_mlflow: bool = True
    carbon: Path | None = None
    weather: Path | None = None
    workload: Path | None = None
    carbon_format: str | None = None
    weather_format: str | None = None
    workload_format: str | None = None
    accounting: str | None = None
    time_limit_s: float = 600.0
    integer_servers: bool = False
    envelope_zone_it: bool = False
    state_file: Path | None = None
    from_bms: Path | None = None
    state_max_age_h: float = STATE_MAX_AGE_H
    state_max_ahead_h: float | None = None
    objective: str = "carbon"  # carbon | cost | weighted (PlanOptions.objective)
    carbon_price_usd_per_tco2: float | None = None  # weighted: None = the tariff's

    def __post_init__(self):
        coerce_paths(self, "site", "runs", "out", "workdir", "carbon", "weather", "workload", "state_file", "from_bms")


@dataclass(frozen=True)
class NightlyResult:
    """A plan written to its run folder: the plan, the summary written as summary.json, the MLflow run.

    ``mlflow_run_id`` is None when the run was not recorded (``record_mlflow`` off, or
    tracking down: the plan stands and a warning says so).
    """

    site: SiteConfig
    start: pd.Timestamp
    out_dir: Path
    plan: Plan
    summary: dict
    baseline_rule: str
    mlflow_run_id: str | None = None

    @property
    def fallback(self) -> bool:
        """The optimiser did not return a plan: this is the best-practice rule plan (the CLI's exit 3)."""
        return self.plan.fallback


class Terminated(BaseException):
    """SIGTERM arrived (systemd stop or timeout): the run unwound, its staging and MLflow record closed."""


class LockUnavailable(OSError):
    """A lock file could not be created or opened (the state folder is missing or read-only)."""


def plan_start(for_: str | None, start: str | None, now: pd.Timestamp | None = None) -> pd.Timestamp:
    """The plan's first step (UTC): ``--start`` as given, or ``--for today|tomorrow|YYYY-MM-DD`` at 00:00 UTC."""
    if (for_ is None) == (start is None):
        raise ValueError("give exactly one of --for (today, tomorrow or a date) and --start")
    if start is not None:
        t = pd.Timestamp(start)
        return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    now = now or pd.Timestamp.now(tz="UTC")
    today = now.tz_convert("UTC").normalize()
    if for_ == "today":
        return today
    if for_ == "tomorrow":
        return today + pd.Timedelta("1D")
    try:
        t = pd.Timestamp(for_)
    except ValueError:
        raise ValueError(f"--for must be today, tomorrow or a date (YYYY-MM-DD), not {for_!r}") from None
    return (t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")).normalize()


def horizon_forecast(data: pd.DataFrame, t0: pd.Timestamp, mode: str = "model",
                     weather: str | None = None) -> tuple[pd.DataFrame, dict]:
    """The inputs the plan sees for [t0, end of ``data``).

    ``mode='model'``: grid intensities (site and edges) and demand per class are forecast
    by Coolshift's forecasters trained only on ``data`` before ``t0`` (persistence, the
    same hour a day earlier, when under 14 days of history exist). ``mode='perfect'``:
    the data as they are (hindcasts and what-if replays). ``weather='model'``: dry-bulb,
    humidity and wet-bulb forecast from the weather before ``t0``
    (:func:`~coolshift.control.receding.forecast_weather`); ``'perfect'``: the weather as
    given (an issued weather forecast passed with ``--weather``); None: as ``mode``.
    """
    weather = weather or mode
    if mode not in ("model", "perfect") or weather not in ("model", "perfect"):
        raise ValueError(f"forecast modes must be 'model' or 'perfect', not {mode!r} / weather {weather!r}")
    horizon = data.loc[t0:]
    history = data.loc[: t0 - pd.Timedelta("1ns")]
    info = {"mode": mode, "weather": weather}
    fc = horizon.copy()
    if mode == "model":
        fc, used = forecast_columns(history, horizon)
        info.update({"history_from": history.index[0].isoformat() if len(history) else None, "forecasters": used})
    if weather == "model" and len(history):
        fc = forecast_weather(history.resample("1h").mean(), fc)
    return fc, info


def _figures(plan, baseline: pd.DataFrame, forecast: pd.DataFrame):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f = plan.frame
    out = []
    fig, ax = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True)
    ci = [c for c in forecast.columns if c.startswith("gco2_per_kwh")]
    forecast[ci].plot(ax=ax[0])
    ax[0].set_ylabel("gCO2/kWh")
    ax[0].set_title("Grid intensity the plan used")
    sp = [c for c in f.columns if c.startswith("supply_setpoint_c__")] + ["chw_setpoint_c"]
    f[sp].plot(ax=ax[1])
    ax[1].set_ylabel("degC")
    ax[1].set_title("Supply-air and chilled-water setpoints")
    out.append((fig, "Intensity and setpoints"))
    fig, ax = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True)
    f[[c for c in f.columns if c.startswith("active_servers__")]].plot(ax=ax[0])
    ax[0].set_ylabel("servers")
    ax[0].set_title("Active servers per pool")
    rel = [c for c in f.columns if c.startswith(("release_units_per_h__", "offload_units_per_h__"))]
    if rel:
        f[rel].plot(ax=ax[1])
    ax[1].set_ylabel("units/h")
    ax[1].set_title("Batch work released and offloaded (shifted work)")
    out.append((fig, "Consolidation and shifted work"))
    fig, ax = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True)
    ax[0].plot(f.index, f["facility_power_kw"], label="plan")
    ax[0].plot(baseline.index, baseline["facility_power_kw"], label="best-practice baseline", ls="--")
    ax[0].set_ylabel("kW")
    ax[0].set_title("Predicted facility power")
    ax[0].legend()
    ax[1].plot(f.index, f["kgco2"].cumsum(), label="plan")
    ax[1].plot(baseline.index, baseline["kgco2"].cumsum(), label="best-practice baseline", ls="--")
    ax[1].set_ylabel("kgCO2 (cumulative)")
    ax[1].legend()
    out.append((fig, "Predicted power and carbon against the baseline"))
    soc = [c for c in f.columns if c.startswith("soc_kwh__")]
    if soc:  # storage: state of charge and the grid import it shapes
        fig, ax = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True)
        f[soc].plot(ax=ax[0])
        ax[0].set_ylabel("kWh")
        ax[0].set_title("Storage state of charge")
        ax[1].plot(f.index, f["facility_power_kw"], label="facility")
        ax[1].plot(f.index, f["grid_power_kw"], label="grid import")
        ax[1].set_ylabel("kW")
        ax[1].legend()
        out.append((fig, "Storage state of charge and grid import"))
    return out


def plan_report_html(site, plan, baseline: pd.DataFrame, summary: dict, forecast: pd.DataFrame) -> str:
    """Self-contained HTML report of one plan."""
    pr, bs, sv = summary["predicted"], summary["baseline"], summary["savings"]
    kv = {
        "site": site.name, "period": f"{summary['start']} to {summary['end']}", "steps": summary["steps"],
        "status": summary["status"] + (" (FALLBACK: " + str(summary["reason"]) + ")" if summary["fallback"] else ""),
        "plant model": summary.get("model_version") or "-", "forecast": summary.get("forecast", {}).get("mode"),
        "predicted tCO2": pr["tco2"], "baseline tCO2": bs["tco2"], "saving tCO2": sv["tco2"],
        "saving %": sv["pct_co2"], "predicted PUE": pr["pue"], "baseline PUE": bs["pue"],
        "steps outside the model's training envelope": summary["out_of_envelope_steps"],
    }
    sp = plan.shadow_prices
    sections = [
        Section("Summary", html_kv(kv, digits=3)),
        Section("Figures", "".join(html_figure(fig, cap) for fig, cap in _figures(plan, baseline, forecast))),
        Section("Shadow prices", html_table(sp, index=False, digits=4) if len(sp) else html_paragraphs("No constraint family binds.")
                + html_paragraphs("What relaxing a binding policy by one unit would save over this horizon "
                                  "(kgCO2 per degC of inlet limit, per hour of deadline, per server of redundancy).")),
        Section("Solver", html_kv(summary["solver"], digits=3)),
    ]
    if summary.get("fallback"):
        sections.insert(1, Section("Fallback", html_paragraphs(
            f"The optimiser did not return a plan ({summary['reason']}); this is the best-practice rule plan.", note=True)))
    return render_page(f"Coolshift plan: {site.name}", sections, subtitle=f"{summary['start']} + {summary['steps']} steps")


# Tags that let a later run tell whether a RUNNING record's process is still alive.
PID_TAG, HOST_TAG, STARTED_TAG, LOCK_TAG = "coolshift.pid", "coolshift.host", "coolshift.started_epoch", "coolshift.lock"


def _plans_experiment(client, site_name: str, workdir: Path) -> str:
    """The site's plan experiment, created with its artifacts in the working folder (not ./mlruns)."""
    from coolshift.models.registry import tracking_uri

    name = f"coolshift-plans-{site_name}"
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    loc = (Path(workdir).resolve() / "mlartifacts").as_uri() if tracking_uri(workdir).startswith("sqlite:") else None
    try:
        return client.create_experiment(name, artifact_location=loc)
    except Exception:  # noqa: BLE001 - created meanwhile by another site's run on the same store
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def fail_stale_plan_runs(client, experiment_id: str, lock_path: Path | str | None) -> list[str]:
    """Mark FAILED the RUNNING plan records whose process died; return one line per record.

    A record is stale when it was started on this host and either recorded the lock this
    run now holds (so its process cannot be running) or its pid is no longer alive.
    Records from other hosts are left alone.
    """
    host, me, out = socket.gethostname(), os.getpid(), []
    for r in client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=500):
        t = r.data.tags
        try:
            pid, started = int(t.get(PID_TAG, "0")), float(t.get(STARTED_TAG, "0"))
        except ValueError:
            continue
        if not pid or t.get(HOST_TAG) != host or pid == me:
            continue
        held = lock_path is not None and t.get(LOCK_TAG) == str(lock_path)
        if held or not pid_alive(pid, started):
            why = f"process {pid} on {host} ended without finishing the run (killed or crashed)"
            client.set_tag(r.info.run_id, "coolshift.failed_reason", why)
            client.set_terminated(r.info.run_id, "FAILED")
            out.append(f"marked the MLflow run {r.info.run_id} ({r.info.run_name}) FAILED: {why}")
    return out


class PlanRecord:
    """The MLflow record of one plan run, opened at the start (status RUNNING, tagged with our pid
    and host) so that a run killed half-way is found and marked FAILED by the next one."""

    def __init__(self, client, run_id: str):
        self.client, self.run_id, self.ended = client, run_id, False

    @classmethod
    def open(cls, site_name: str, workdir: Path, run_name: str, lock_path: Path | None = None) -> tuple["PlanRecord", list[str]]:
        """Fail the stale records of this site's plans, then start ours; returns (record, messages)."""
        from coolshift.models.registry import configure  # imports mlflow (slow): only when a run is recorded

        mlflow = configure(workdir)
        client = mlflow.MlflowClient()
        exp_id = _plans_experiment(client, site_name, workdir)
        messages = fail_stale_plan_runs(client, exp_id, lock_path)
        tags = {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname(), STARTED_TAG: repr(time.time()),
                "coolshift.command": "plan", "site": site_name}
        if lock_path is not None:
            tags[LOCK_TAG] = str(lock_path)
        run = client.create_run(exp_id, run_name=run_name, tags=tags)
        return cls(client, run.info.run_id), messages

    def finish(self, site, summary: dict, run_dir: Path) -> str:
        """Log params, metrics and the run folder's files, then end the record FINISHED."""
        from mlflow.entities import Metric, Param

        params = {
            "site": site.name, "start": summary["start"], "steps": summary["steps"], "step_minutes": summary["step_minutes"],
            "accounting": summary["accounting"], "forecast": summary.get("forecast", {}).get("mode"),
            "model_version": summary.get("model_version"),
        }
        metrics = {
            "predicted_tco2": summary["predicted"]["tco2"], "baseline_tco2": summary["baseline"]["tco2"],
            "saving_tco2": summary["savings"]["tco2"], "predicted_pue": summary["predicted"]["pue"],
            "predicted_facility_kwh": summary["predicted"]["facility_kwh"],
        }
        if summary["savings"]["pct_co2"] is not None:
            metrics["saving_pct"] = summary["savings"]["pct_co2"]
        for k in ("build_s", "handover_s", "solve_s"):
            v = summary["solver"].get(k)
            if v is not None and np.isfinite(v):
                metrics[k] = float(v)
        now = int(pd.Timestamp.now(tz="UTC").timestamp() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
                              params=[Param(k, str(v)) for k, v in params.items()])
        self.client.set_tag(self.run_id, "fallback", str(summary["fallback"]))
        self.client.set_tag(self.run_id, "status", summary["status"])
        for name in ("plan.csv", "summary.json", "report.html"):
            if (Path(run_dir) / name).exists():
                self.client.log_artifact(self.run_id, str(Path(run_dir) / name))
        self.client.set_terminated(self.run_id, "FINISHED")
        self.ended = True
        return self.run_id

    def fail(self, reason: str, status: str = "FAILED") -> None:
        """End the record as FAILED (or KILLED) with the reason as a tag; never raises."""
        if self.ended:
            return
        self.ended = True
        try:
            self.client.set_tag(self.run_id, "coolshift.failed_reason", reason[:4000])
            self.client.set_terminated(self.run_id, status)
        except Exception:  # noqa: BLE001 - tracking down: the next run marks it from the dead pid
            pass


def log_plan_run(site, workdir: Path, summary: dict, run_dir: Path) -> str | None:
    """Record a finished plan run in MLflow in one go (params, metrics, artifacts); returns the run id."""
    rec, _ = PlanRecord.open(site.name, workdir, summary["run_id"])
    return rec.finish(site, summary, run_dir)


# -- the use case ---------------------------------------------------------------------------
def _quiet(_: str) -> None:
    """The default progress and warning callback: say nothing."""


def nightly_plan(opts: NightlyOptions, *, progress: Callable[[str], None] | None = None,
                 warn: Callable[[str], None] | None = None, now: pd.Timestamp | None = None,
                 unwind_on_sigterm: bool = True) -> NightlyResult:
    """Plan the horizon from ``opts``, write its run folder and record it: ``coolshift plan`` as a function.

    The run holds two locks (the site's, in the state folder, and one beside the run
    folders) from before any data is loaded to its end, cleans what a killed run left, and
    replaces the run folder as a whole. ``progress`` receives the name of each stage,
    ``warn`` the lines an operator should read (a lock recovered, a staging folder removed,
    MLflow down). ``now`` fixes "today" for ``for_date``. With ``unwind_on_sigterm`` (main
    thread only) SIGTERM raises :class:`Terminated` inside the run so that its staging and
    record are closed; the previous handler is restored after.
    """
    progress, warn = progress or _quiet, warn or _quiet
    if opts.forecast not in ("model", "perfect"):
        raise ValueError(f"--forecast must be 'model' or 'perfect', not {opts.forecast!r}")
    if opts.weather_forecast not in (None, "model", "perfect"):
        raise ValueError(f"--weather-forecast must be 'model' or 'perfect', not {opts.weather_forecast!r}")
    t0 = plan_start(opts.for_date, opts.start, now)
    if opts.accounting not in (None, "location", "market"):
        raise ValueError(f"--accounting must be 'location' or 'market', not {opts.accounting!r}")
    if opts.state_file is not None and opts.from_bms is not None:
        raise ValueError("give at most one of --state (a state file) and --from-bms (a point map)")
    site0 = load_site(opts.site)  # only the site name is needed to take the locks
    # the measured state is read (and a bad one refused) before any lock or data
    initial, state_record = measured_initial_state(opts, site0, t0, progress, warn)
    out_dir = opts.out or opts.runs / site0.name / f"{t0:%Y-%m-%d}"
    with _whole_run(site0, t0, out_dir, opts, warn, unwind_on_sigterm) as rec:
        site, plan, summary, frame, html, rule = _make_plan(opts, t0, site0.planning.horizon_h, progress, initial,
                                                            state_record)
        progress("writing the run folder")
        _write_run(out_dir, frame, summary, html)
        run_id = None
        if rec is not None:
            try:
                run_id = rec.finish(site, summary, out_dir)
            except Exception as exc:  # noqa: BLE001 - the plan stands even if tracking is down
                rec.fail(f"logging failed: {type(exc).__name__}: {exc}")
                warn(f"MLflow logging failed: {exc}")
    return NightlyResult(site, t0, out_dir, plan, summary, rule, run_id)


def plan_locks(site_name: str, out_dir: Path) -> list[LockSpec]:
    """The plan's two locks: one per site in the state folder, one beside the run folders."""
    return [site_lock("plan", site_name), output_lock(Path(out_dir).parent, f"plan-{site_name}")]


@contextlib.contextmanager
def _locks_held(specs: list[LockSpec], warn: Callable[[str], None]) -> Iterator[list[Acquired]]:
    """Hold the locks (RunLocked when one is held elsewhere); a lock left by a dead run is reported."""
    with contextlib.ExitStack() as stack:
        try:
            taken = stack.enter_context(hold_locks(specs, "plan"))
        except OSError as exc:
            raise LockUnavailable(str(exc)) from exc
        for a in taken:
            m = a.recovered_message()
            if m:
                warn(m)
        yield taken


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


def _failed_reason(exc: BaseException) -> str:
    """The reason a failed plan record is tagged with.

    Bad input other than a config or data file (no registered model, an option the LP
    refuses) reads ``exit 2: <message>``, as the plan records have always read.
    """
    if isinstance(exc, (ValueError, LookupError)) and not isinstance(exc, (ConfigError, DataError)):
        return f"exit 2: {exc}"
    return f"{type(exc).__name__}: {exc}"


@contextlib.contextmanager
def _whole_run(site0: SiteConfig, t0: pd.Timestamp, out_dir: Path, opts: NightlyOptions,
               warn: Callable[[str], None], unwind_on_sigterm: bool) -> Iterator["PlanRecord | None"]:
    """Hold the plan's locks for the whole run, clean what a killed run left, open the MLflow record.

    Yields the :class:`PlanRecord` (None without MLflow or when tracking is down); it is
    marked FAILED (KILLED on SIGTERM) if the block raises.
    """
    specs = plan_locks(site0.name, out_dir)
    with _locks_held(specs, warn), (_sigterm_unwinds() if unwind_on_sigterm else contextlib.nullcontext()):
        for m in clean_stale_staging(out_dir):
            warn(m)
        rec = None
        if opts.record_mlflow:
            from coolshift.models.registry import site_workdir

            try:
                rec, msgs = PlanRecord.open(site0.name, opts.workdir or site_workdir(site0),
                                            f"plan-{site0.name}-{t0:%Y%m%dT%H%MZ}", specs[0].path)
                for m in msgs:
                    warn(m)
            except Exception as exc:  # noqa: BLE001 - the plan stands even if tracking is down
                warn(f"MLflow tracking unavailable, the run is not recorded: {type(exc).__name__}: {exc}")
        try:
            yield rec
        except Terminated:
            if rec is not None:
                rec.fail("stopped by SIGTERM", "KILLED")
            raise
        except BaseException as exc:
            if rec is not None:
                rec.fail(_failed_reason(exc))
            raise


def _load_horizon(opts: NightlyOptions, t0: pd.Timestamp, horizon_h: float) -> tuple[SiteConfig, pd.DataFrame, pd.Timestamp]:
    """The site and its data from HISTORY_DAYS before ``t0`` (model forecast) or from ``t0`` to the horizon end."""
    t1 = t0 + pd.Timedelta(hours=horizon_h)
    files = (opts.carbon, opts.weather, opts.workload, opts.carbon_format, opts.weather_format, opts.workload_format)
    own = opts.forecast == "model" or opts.weather_forecast == "model"
    h0 = t0 - pd.Timedelta(days=HISTORY_DAYS) if own else t0
    try:
        site, full = load_inputs(opts.site, h0, t1, *files)
    except DataError:
        if not own:
            raise
        # less history than HISTORY_DAYS: forecast from whatever precedes the start
        site, full = load_inputs(opts.site, t0, t1, *files)
    return site, full, t1


def load_coefficients(site: SiteConfig, data: pd.DataFrame, site_path: Path, workdir: Path | None = None):
    """The registered plant model's coefficients for this forecast and its training envelope.

    No registered model (or one of another plant) is :class:`NoPlantModel` saying how to train one.
    """
    hint = NO_MODEL_HINT.format(cfg=site_path)
    no_model = f"no registered plant model for site {site.name} (alias 'production'): {hint}"
    try:
        from coolshift.models.registry import load_plant_model
    except ImportError:
        raise NoPlantModel(f"no plant model registry is available for site {site.name}: {hint}") from None
    try:
        model = load_plant_model(site, alias="production", workdir=workdir)
    except Exception as exc:  # registry back-ends raise their own lookup errors
        raise NoPlantModel(f"{no_model} ({type(exc).__name__}: {exc})") from exc
    if model is None:
        raise NoPlantModel(no_model)
    return model.coefficients(site, data), getattr(model, "envelope_", None)


def measured_initial_state(opts: NightlyOptions, site: SiteConfig, t0: pd.Timestamp,
                           progress: Callable[[str], None] | None = None,
                           warn: Callable[[str], None] | None = None) -> tuple[InitialState, dict]:
    """Where the plan starts: the config's initial state, a state file's, or the BMS's (read-only).

    Returns the optimiser's ``InitialState`` and its record for summary.json
    (``source``: ``config``, ``state_file``, ``bms`` or ``bms+config`` when some fields were
    not in the point map; ``from_config`` lists those). A bad state is a ConfigError naming
    the file (or map and point) and key; an unreadable BMS is :class:`StateUnavailable`.
    """
    progress, warn = progress or _quiet, warn or _quiet
    if opts.state_file is None and opts.from_bms is None:
        init = InitialState.from_site(site)
        return init, {"source": "config", "measured_at": None,
                      "from_config": ["supply_setpoint_c", "chw_setpoint_c", "active_servers", "backlog"], "values": {
            "supply_setpoint_c": init.supply_setpoint_c, "chw_setpoint_c": init.chw_setpoint_c,
            "active_servers": init.active_servers, "backlog": {}}}
    limits = dict(max_age_h=opts.state_max_age_h, max_ahead_h=opts.state_max_ahead_h)
    if opts.state_file is not None:
        progress("reading the state file")
        state: SiteState = load_state_file(opts.state_file)
        state.check(site, t0, str(opts.state_file), **limits)
        record = {"source": "state_file", "path": str(opts.state_file), "from_config": []}
    else:
        progress("reading the measured state from the BMS (read-only)")
        got = read_site_state_sync(opts.from_bms, site)
        state = got.state
        state.check(site, t0, f"{opts.from_bms} (BMS reading)", labels=got.points, **limits)
        for n in got.notes:
            warn(n)
        if got.from_config:
            warn(f"{opts.from_bms}: the point map has no point for {', '.join(got.from_config)}: "
                 "taken from the config (initial setpoints, every server on, no backlog)")
        record = {"source": "bms+config" if got.from_config else "bms", "path": str(opts.from_bms),
                  "from_config": list(got.from_config), "points": got.points}
    due, notes = state.backlog_due_h(t0)
    for n in notes:
        warn(f"{record['path']}: {n}")
    init = InitialState(supply_setpoint_c=dict(state.supply_setpoint_c), chw_setpoint_c=float(state.chw_setpoint_c),
                        active_servers=dict(state.active_servers), backlog_due={k: v for k, v in due.items() if v})
    values = state.record(t0)
    record["measured_at"] = values.pop("measured_at")
    record["values"] = values
    return init, record


def _make_plan(opts: NightlyOptions, t0: pd.Timestamp, horizon_h: float, progress: Callable[[str], None],
               initial: InitialState | None = None, state_record: dict | None = None):
    """Load, forecast, plan and score the baseline: (site, plan, summary, plan frame, report HTML, baseline rule)."""
    progress("loading site and data")
    site, full, t1 = _load_horizon(opts, t0, horizon_h)
    progress("forecasting intensity and demand")
    data, fc_info = horizon_forecast(full, t0, opts.forecast, opts.weather_forecast)
    if opts.forecast == "model":  # a forecast above full capacity is unservable, not a plan to make
        data = cap_interactive_demand(site, data)
    try:
        data = with_prices(site, data)  # the tariff's energy price per step (day-ahead prices are known)
    except DataError as exc:
        if opts.objective != "carbon":
            raise  # a cost or weighted plan cannot be made without the prices
        # a carbon plan needs no price: plan it, and report no cost (the site's prices cover another period)
        progress(f"no electricity prices for this period, cost not reported: {exc}")
    progress("loading the plant model")
    coefs, envelope = load_coefficients(site, data, opts.site, opts.workdir)
    progress("building the LP")
    plan_opts = PlanOptions(accounting=opts.accounting, time_limit_s=opts.time_limit_s, integer_servers=opts.integer_servers,
                            decision_envelope=envelope, envelope_zone_it=opts.envelope_zone_it,
                            objective=opts.objective, carbon_price_usd_per_tco2=opts.carbon_price_usd_per_tco2)
    planner = Planner(site, coefs, data, initial if initial is not None else InitialState.from_site(site), plan_opts)
    progress("solving with HiGHS")
    plan = planner.solve()
    progress("scoring the best-practice baseline")
    acts, rule = baseline_actions(site, planner.problem.data)
    baseline_frame = evaluate_actions(planner.problem.data, acts)
    summary = summary_of(site, plan, totals_of(planner.problem.data, baseline_frame), rule, planner, t0, t1, coefs)
    summary["forecast"] = fc_info
    if state_record is not None:
        summary["initial_state"] = state_record
    frame = plan.frame.copy()
    frame["in_envelope"] = coefs.in_envelope.reindex(frame.index).fillna(False).astype(bool).to_numpy()
    html = plan_report_html(site, plan, baseline_frame.set_axis(frame.index), summary, data)
    return site, plan, summary, frame, html, rule


def _write_run(out_dir: Path, frame: pd.DataFrame, summary: dict, html: str) -> None:
    """Write plan.csv/.parquet, summary.json and report.html, replacing the run folder as a whole."""
    with staged_run_dir(out_dir) as stage:  # the locks are held: nobody else writes here
        write_frame_atomic(stage / "plan.csv", frame)
        write_frame_atomic(stage / "plan.parquet", frame)
        write_json_atomic(stage / "summary.json", summary)
        (stage / "report.html").write_text(html, encoding="utf-8")


def summary_of(site: SiteConfig, plan: Plan, baseline_totals: dict, baseline_rule: str, planner, start: pd.Timestamp,
               end: pd.Timestamp, coefs) -> dict:
    """The run's summary.json: plan and baseline totals, savings, solver figures, shadow prices."""
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
        "predicted": {k: p[k] for k in ("facility_kwh", "it_kwh", "cooling_kwh", "edge_kwh", "pue", "site_tco2", "edge_tco2", "tco2",
                                        "grid_kwh", "storage_tco2", "cost_usd", "energy_usd", "demand_usd", "storage_usd")
                      if k in p},
        "objective": planner.options.objective,
        "baseline": {"rule": baseline_rule, **{k: b[k] for k in ("facility_kwh", "it_kwh", "cooling_kwh", "pue", "tco2", "cost_usd")
                                               if k in b}},
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
