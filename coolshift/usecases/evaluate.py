"""The closed-loop evaluation as a library function: every policy on the simulator, compared, written out.

:func:`evaluate_site` does what ``coolshift evaluate`` does: it loads the site and its data
(and the history the forecasters train on), the registered plant model when an LP policy
needs it, runs :func:`coolshift.control.evaluation.evaluate_policies` and writes
evaluation.json, evaluation.csv and report.html. Bad options are a DataError, a missing or
mismatched plant model :class:`~coolshift.usecases.inputs.NoPlantModel` (a LookupError).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from coolshift.control.evaluation import (FORECAST_MODES, LEVER_POLICIES, POLICIES, WEATHER_FORECAST_MODES,
                                         default_weather_forecast, evaluate_policies, savings_table)
from coolshift.io import DataError, write_frame_atomic, write_json_atomic, write_text_atomic
from coolshift.io.forecast_weather import read_openmeteo_forecast
from coolshift.io.issued import read_issued_forecast
from coolshift.reports.html import Section, html_figure, html_kv, html_paragraphs, html_table, render_page
from coolshift.usecases.inputs import coerce_paths, load_inputs, registered_plant_model
from coolshift.usecases.nightly import HISTORY_DAYS

__all__ = ["EvaluateOptions", "EvaluateResult", "evaluate_site", "evaluation_figures", "evaluation_report_html",
           "DEFAULT_POLICIES"]

DEFAULT_POLICIES = ("static", "best_practice", "carbon_greedy", "coolshift", "oracle")


@dataclass(frozen=True)
class EvaluateOptions:
    """Every option of ``coolshift evaluate``.

    ``policies``: names from :data:`coolshift.control.evaluation.POLICIES` and the lever
    policies (``coolshift_<lever>``). ``forecast``: what the LP policies plan on (perfect,
    model, noise5, noise10). ``workers``: processes running policies in parallel (None: one
    per core). ``support_envelope``/``horizon_end``: PlanOptions for every LP policy (None:
    the optimiser's default). ``demand_headroom`` None: off with ``reactive``, on without.
    ``weather_forecast``: what Coolshift plans the weather on (model, perfect; None: model
    unless ``forecast`` is perfect). ``issued``: issued intensity forecast files for
    ``forecast="issued"`` (WattTime or SGIP format, sniffed unless ``issued_format``).
    ``issued_weather``: Open-Meteo forecast JSON files for ``weather_forecast="issued"``
    (previous-runs archives, or forecasts issued at ``issued_weather_at``).
    """

    site: Path
    out: Path
    start: str | None = None
    end: str | None = None
    policies: tuple[str, ...] = DEFAULT_POLICIES
    forecast: str = "model"
    interval_h: float = 4.0
    seed: int = 0
    workers: int | None = None
    reactive: bool = True
    support_envelope: bool | None = None
    demand_headroom: bool | None = None
    horizon_end: str | None = None
    warm_start: bool = True
    weather_forecast: str | None = None
    issued: tuple[Path, ...] = ()
    issued_format: str = "auto"
    issued_weather: tuple[Path, ...] = ()
    issued_weather_at: str | None = None
    workdir: Path | None = None
    carbon: Path | None = None
    weather: Path | None = None
    workload: Path | None = None
    carbon_format: str | None = None
    weather_format: str | None = None
    workload_format: str | None = None

    def __post_init__(self):
        coerce_paths(self, "site", "out", "workdir", "carbon", "weather", "workload")
        object.__setattr__(self, "policies", tuple(self.policies))
        object.__setattr__(self, "issued", tuple(Path(p) for p in self.issued))
        object.__setattr__(self, "issued_weather", tuple(Path(p) for p in self.issued_weather))


@dataclass(frozen=True)
class EvaluateResult:
    """The evaluation record (evaluation.json), the savings table (evaluation.csv) and each policy's time series."""

    record: dict
    table: pd.DataFrame
    timeseries: dict[str, pd.DataFrame]
    out: Path


def _check(opts: EvaluateOptions) -> None:
    """Refuse unknown policies or forecast, a bad --horizon-end or fewer than one worker (DataError)."""
    bad = [p for p in opts.policies if p not in POLICIES + LEVER_POLICIES]
    if bad or opts.forecast not in FORECAST_MODES:
        raise DataError(None, f"unknown policies {bad} or forecast {opts.forecast!r}; policies: "
                              f"{', '.join(POLICIES)}; forecasts: {', '.join(FORECAST_MODES)}")
    if opts.weather_forecast not in (None, *WEATHER_FORECAST_MODES):
        raise DataError(None, f"--weather-forecast {opts.weather_forecast!r}: choose from {', '.join(WEATHER_FORECAST_MODES)}")
    if opts.forecast == "issued" and not opts.issued:
        raise DataError(None, "--forecast issued needs --issued FILE (issued intensity forecasts: WattTime or SGIP format)")
    if opts.issued and opts.forecast != "issued":
        raise DataError(None, f"--issued is used only with --forecast issued (got --forecast {opts.forecast})")
    if opts.weather_forecast == "issued" and not opts.issued_weather:
        raise DataError(None, "--weather-forecast issued needs --issued-weather FILE (Open-Meteo forecast JSON)")
    if opts.issued_weather and opts.weather_forecast != "issued":
        raise DataError(None, "--issued-weather is used only with --weather-forecast issued")
    if opts.horizon_end not in (None, "soft", "hard"):
        raise DataError(None, f"--horizon-end {opts.horizon_end!r}: choose soft or hard")
    if opts.workers is not None and opts.workers < 1:
        raise DataError(None, f"--workers must be at least 1, got {opts.workers}")


def evaluate_site(opts: EvaluateOptions, *, progress: Callable[[str, int, int], None] | None = None) -> EvaluateResult:
    """Run the policies in closed loop on the simulator and write evaluation.json/.csv and report.html.

    ``progress(policy, steps done, steps)`` is called once per policy with 0 done, in the
    order of ``opts.policies``, before any runs, then as each advances.
    """
    _check(opts)
    files = (opts.carbon, opts.weather, opts.workload, opts.carbon_format, opts.weather_format, opts.workload_format)
    cfg, data = load_inputs(opts.site, opts.start, opts.end, *files)
    weather_forecast = opts.weather_forecast or default_weather_forecast(opts.forecast)
    own = opts.forecast in ("model", "issued") or weather_forecast in ("model", "issued")
    history = _history(opts, data, files) if own else None
    issued = read_issued_forecast(opts.issued, opts.issued_format) if opts.forecast == "issued" else None
    issued_weather = (pd.concat([read_openmeteo_forecast(p, opts.issued_weather_at) for p in opts.issued_weather],
                                ignore_index=True) if weather_forecast == "issued" else None)
    model = None
    if any(n.startswith("coolshift") or n == "oracle" for n in opts.policies):
        model = registered_plant_model(cfg, opts.workdir)
    if progress is not None:
        for n in opts.policies:
            progress(n, 0, len(data))
    timeseries: dict[str, pd.DataFrame] = {}
    plan_options = {k: v for k, v in (("support_envelope", opts.support_envelope), ("horizon_end", opts.horizon_end))
                    if v is not None}
    rec = evaluate_policies(cfg, data, list(opts.policies), model, opts.forecast, opts.interval_h, opts.seed,
                            progress=progress, keep_timeseries=timeseries, history=history,
                            workers=opts.workers or os.cpu_count() or 1, reactive=opts.reactive,
                            plan_options=plan_options or None, demand_headroom=opts.demand_headroom,
                            warm_start=opts.warm_start, weather_forecast=weather_forecast, issued=issued,
                            issued_weather=issued_weather)
    if issued is not None:
        rec["issued_forecast"] = {"files": [str(p) for p in opts.issued], "rows": int(len(issued)),
                                  "first_issue": issued["request_time"].min().isoformat(),
                                  "last_issue": issued["request_time"].max().isoformat()}
    table = savings_table(rec)
    opts.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(opts.out / "evaluation.json", rec)
    write_frame_atomic(opts.out / "evaluation.csv", table)
    write_text_atomic(opts.out / "report.html", evaluation_report_html(rec, table, timeseries))
    return EvaluateResult(rec, table, timeseries, opts.out)


def _history(opts: EvaluateOptions, data: pd.DataFrame, files: tuple) -> pd.DataFrame | None:
    """The HISTORY_DAYS before the period that the forecasters train on, or None when the data do not have them."""
    h0 = data.index[0] - pd.Timedelta(days=HISTORY_DAYS)
    try:
        _, history = load_inputs(opts.site, h0.isoformat(), data.index[0].isoformat(), *files)
    except DataError:
        return None
    return history


def evaluation_figures(results_ts: dict, rec: dict):
    """Bar chart of tCO2 per policy and cumulative carbon over the period."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs = []
    names = list(rec["policies"])
    fig, ax = plt.subplots(figsize=(8, 3.5))
    loc = [rec["policies"][n]["tco2_location"] for n in names]
    mkt = [rec["policies"][n]["tco2_market"] for n in names]
    x = range(len(names))
    ax.bar([i - 0.2 for i in x], loc, width=0.4, label="location-based")
    ax.bar([i + 0.2 for i in x], mkt, width=0.4, label="market-based")
    ax.set_xticks(list(x), names)
    ax.set_ylabel("tCO2")
    ax.legend()
    ax.set_title("Emissions per policy")
    figs.append((fig, "Scope 2 emissions per policy over the period"))
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for n, ts in results_ts.items():
        col = "kgco2_location" if "kgco2_location" in ts.columns else None
        if col:
            (ts[col].cumsum() / 1000).plot(ax=ax, label=n)
    ax.set_ylabel("cumulative tCO2 (location)")
    ax.legend()
    figs.append((fig, "Cumulative location-based emissions"))
    figs += storage_figures(results_ts)
    return figs


def storage_figures(results_ts: dict) -> list:
    """With storage: each store's simulated state of charge under every policy that moved it,
    and the grid import it shaped against the facility's draw (Coolshift's policy, else the
    first that used the store). None without storage."""
    import matplotlib.pyplot as plt

    stores = sorted({c.split("__", 1)[1] for ts in results_ts.values() for c in ts.columns if c.startswith("soc_kwh__")})

    def moved(ts: pd.DataFrame) -> bool:
        cols = [f"{k}_kw__{s}" for s in stores for k in ("charge", "discharge")]
        return any(c in ts.columns and float(ts[c].abs().sum()) > 0 for c in cols)

    used = {n: ts for n, ts in results_ts.items() if moved(ts)}
    if not used:
        return []
    fig, ax = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True)
    for n, ts in used.items():
        for s in stores:
            if f"soc_kwh__{s}" in ts.columns:
                ax[0].plot(ts.index, ts[f"soc_kwh__{s}"], label=f"{n}: {s}")
    ax[0].set_ylabel("kWh")
    ax[0].set_title("Storage state of charge (simulated)")
    ax[0].legend()
    name = "coolshift" if "coolshift" in used else next(iter(used))
    ts = used[name]
    ax[1].plot(ts.index, ts["facility_power_kw"], label="facility")
    ax[1].plot(ts.index, ts["grid_power_kw"], label="grid import")
    ax[1].set_ylabel("kW")
    ax[1].set_title(f"Facility draw and grid import: {name}")
    ax[1].legend()
    return [(fig, "Storage state of charge and grid import")]


def evaluation_report_html(rec: dict, table: pd.DataFrame, results_ts: dict) -> str:
    """Self-contained HTML report of one evaluation: summary, policy table, figures, method."""
    figs = evaluation_figures(results_ts, rec)
    sections = [
        Section("Summary", html_kv({
            "site": rec["site"], "period": f"{rec['start']} to {rec['end']}", "forecast": rec["forecast"],
            "weather forecast": rec.get("weather_forecast", "-"),
            "re-plan interval h": rec["replan_interval_h"], "plant model": rec["plant_model"] or "-",
            "autoscaler": "on" if rec["reactive"] else "off", "workers": rec["workers"],
            "demand headroom (q90)": {True: "on", False: "off", None: "-"}[rec["demand_headroom"]],
            "interactive demand planned at": ("-" if rec.get("interactive_plan_quantile") is None
                                              else f"q{100 * rec['interactive_plan_quantile']:g}"),
            "plan options": ", ".join(f"{k}={v}" for k, v in rec["plan_options"].items()) or "defaults",
            "warm-started re-plans": "on" if rec["warm_start"] else "off",
            "wall time s": f"{rec['wall_s']:.0f}",
            "share of the perfect-information (oracle) saving": "-" if rec["oracle_share"] is None else f"{rec['oracle_share']:.1%}",
        })),
        Section("Policies", html_table(table, digits=2)),
        Section("Figures", "".join(html_figure(f, c) for f, c in figs)),
        Section("Method", html_paragraphs(
            "Every policy runs on the physics simulator (coolshift.simulations), which shares no equations "
            "with the learned model the optimiser plans with. Baselines are defined once in the simulator "
            "(docs/simulator.md). Coolshift re-plans every "
            f"{rec['replan_interval_h']:g} h over its planning horizon on the '{rec['forecast']}' forecast of "
            f"intensity and demand and the '{rec.get('weather_forecast', 'perfect')}' weather. The oracle is the same "
            "LP with the same learned plant model and perfect information (the actual future intensity, demand and "
            "weather) over a 36 h horizon: what planning with perfect information gives, not a bound on what "
            "any policy can save, since its plans are optimal for the learned model and not for the simulator's "
            "physics (on a short run Coolshift can beat it). "
            + ("Between re-plans an autoscaler wakes servers when the demand observed in a step does not "
               "fit the plan's capacity (boot time charged by the simulator). " if rec["reactive"] else "")
            + "Savings are location-based tCO2.")),
    ]
    return render_page(f"Closed-loop evaluation: {rec['site']}", sections)
