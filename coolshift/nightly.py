"""The nightly plan's pieces around the optimiser: dates, forecasts, report, MLflow record.

Pure functions where possible; the CLI (``coolshift plan``) does the I/O.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["plan_start", "horizon_forecast", "plan_report_html", "PlanRecord", "fail_stale_plan_runs", "log_plan_run",
           "HISTORY_DAYS"]

# History the forecasters train on before the plan's first step.
HISTORY_DAYS = 60


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


def horizon_forecast(data: pd.DataFrame, t0: pd.Timestamp, mode: str = "model") -> tuple[pd.DataFrame, dict]:
    """The inputs the plan sees for [t0, end of ``data``).

    ``mode='model'``: grid intensities (site and edges) and demand per class are forecast
    by Coolshift's forecasters trained only on ``data`` before ``t0`` (persistence, the
    same hour a day earlier, when under 14 days of history exist). Weather is taken from
    the data as given: pass a weather forecast file with ``--weather`` for real nights.
    ``mode='perfect'``: the data as they are (hindcasts and what-if replays).
    """
    from coolshift.control.receding import forecast_columns

    horizon = data.loc[t0:]
    if mode == "perfect":
        return horizon.copy(), {"mode": "perfect"}
    if mode != "model":
        raise ValueError(f"forecast mode must be 'model' or 'perfect', not {mode!r}")
    history = data.loc[: t0 - pd.Timedelta("1ns")]
    fc, used = forecast_columns(history, horizon)
    return fc, {"mode": "model", "history_from": history.index[0].isoformat() if len(history) else None, "forecasters": used}


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
    return out


def plan_report_html(site, plan, baseline: pd.DataFrame, summary: dict, forecast: pd.DataFrame) -> str:
    """Self-contained HTML report of one plan."""
    from coolshift.reports.html import Section, html_figure, html_kv, html_paragraphs, html_table, render_page

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
    import socket

    from coolshift.locks import pid_alive

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
        import socket
        import time

        from coolshift.models.registry import configure

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
