"""What forecast error costs in the closed loop: own, issued and perfect forecasts by the saving they give.

Two one-month experiments on the San Jose example (needs a registered plant model:
``coolshift train``, see README; ``--workdir`` as for ``coolshift evaluate``):

1. **Weather**: July 2022 with the site's own data (EIA-930 CAISO), Coolshift planning on
   its own intensity and demand forecasts with the weather forecast (``WeatherForecaster``,
   fitted on the past only) and with the actual weather; and everything perfect.
2. **Intensity**: the same site, weather and workload, with the grid signal replaced by the
   real SGIP marginal-emissions archive of PG&E (bundled: data/carbon_intensity/
   sgip_moer_pge_2020, 5-min MOER and the forecasts issued every 5 min for the next 3 h).
   The archive is of 2020 and the example's weather and workload of 2022, so the 2020
   signal is moved by 728 days (104 weeks: weekdays kept), 2020-07-03 -> 2022-07-01, and
   the issued forecasts with it. Coolshift plans on its own forecaster, on the issued
   forecasts where they cover the plan (3 h of each 24 h plan) and its own beyond, and on
   the actual signal; the weather forecast is on in all three. Each forecast is also
   scored (MAPE over the first 3 h of each plan, the part the issued forecast covers).

Prints the table, then one JSON object as the last line.
Usage: python benchmarks/bench_forecast_modes.py [--workdir DIR] [--days N] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from coolshift.config import load_site  # noqa: E402
from coolshift.control.evaluation import evaluate_policies  # noqa: E402
from coolshift.control.receding import IssuedForecasts, ModelForecast, decision_hours_utc  # noqa: E402
from coolshift.io import load_site_data  # noqa: E402
from coolshift.io.issued import read_issued_forecast, read_sgip_actual  # noqa: E402
from coolshift.models.forecast import forecast_scores  # noqa: E402
from coolshift.models.registry import load_plant_model  # noqa: E402
from coolshift.schema import CARBON_GCO2_PER_KWH  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SGIP = REPO / "data/carbon_intensity/sgip_moer_pge_2020"
SHIFT = pd.Timedelta(days=728)  # 104 weeks: 2020-07-03 (Fri) -> 2022-07-01 (Fri)


def _sgip_on_2022(index: pd.DatetimeIndex) -> tuple[pd.Series, pd.DataFrame]:
    """The SGIP actual signal on ``index`` (15-min means of the 5-min values) and the issued forecasts, moved by SHIFT."""
    files = sorted(SGIP.glob("SGIP_CAISO_PGE_2020-*.csv.gz"))
    actual = pd.concat([read_sgip_actual(f) for f in files])
    actual = actual[~actual.index.duplicated(keep="first")].sort_index()[CARBON_GCO2_PER_KWH]
    actual.index = actual.index + SHIFT
    step = index[1] - index[0]
    on_grid = actual.resample(step).mean().reindex(index)
    if on_grid.isna().any():
        raise SystemExit(f"the SGIP archive does not cover {index[0]}..{index[-1]} after the shift")
    issued = read_issued_forecast(files)
    issued["request_time"] += SHIFT
    issued["forecast_time"] += SHIFT
    return on_grid, issued


def _mape_first_hours(data, history, issued, interval_h: float, hours: float = 3.0) -> dict:
    """MAPE of own, issued (where it covers) and persistence forecasts over the first ``hours`` of each plan."""
    own = ModelForecast(data, history=history, issue_hours=decision_hours_utc(data.index[0], interval_h))
    src = IssuedForecasts(issued)
    n = int(round(hours * 3600 / (data.index[1] - data.index[0]).total_seconds()))
    rows = []
    for t in pd.date_range(data.index[0], data.index[-1], freq=f"{interval_h:g}h"):
        horizon = data.loc[t:].iloc[:96]
        fc = own(SimpleNamespace(forecast=horizon), len(horizon))
        iv = src.values(horizon.index[:n])
        rows.append(pd.DataFrame({"actual": horizon[CARBON_GCO2_PER_KWH].iloc[:n].to_numpy(),
                                  "own": fc[CARBON_GCO2_PER_KWH].iloc[:n].to_numpy(), "issued": iv}))
    f = pd.concat(rows)
    both = f.dropna()
    return {"steps": len(f), "issued_covered_steps": len(both),
            "own_mape_pct": forecast_scores(both["actual"], both["own"])["mape_pct"],
            "issued_mape_pct": forecast_scores(both["actual"], both["issued"])["mape_pct"]}


def _row(label, rec, name="coolshift"):
    s = rec["policies"][name]
    return {"experiment": label, "policy": name, "forecast": rec["forecast"] if name != "oracle" else "perfect",
            "weather": rec["weather_forecast"] if name != "oracle" else "perfect",
            "tCO2_location": s["tco2_location"], "facility_MWh": s["facility_kwh"] / 1000,
            "saving_vs_static_pct": rec["savings_vs_static_pct"].get(name),
            "SLA_violations": s["sla_violations"], "thermal_violation_min": s["thermal_violation_minutes"],
            "issued_steps_share": (rec["planner"].get(name) or {}).get("issued_steps_share")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--site", default=str(REPO / "configs/sites/sanjose_colo_2mw.yaml"))
    ap.add_argument("--start", default="2022-07-01")
    ap.add_argument("--days", type=int, default=28, help="the SGIP archive moved to 2022 ends on 2022-07-30")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    a = ap.parse_args()
    t_start = time.perf_counter()
    site = load_site(a.site)
    t0 = pd.Timestamp(a.start, tz="UTC")
    t1 = t0 + pd.Timedelta(days=a.days)
    data = load_site_data(site, t0.isoformat(), t1.isoformat())
    # the SGIP archive moved to 2022 starts on 2022-05-29: 33 days of history for July
    history = load_site_data(site, (t0 - pd.Timedelta(days=33)).isoformat(), t0.isoformat())
    model = load_plant_model(site, workdir=a.workdir)
    rows = []
    kw = dict(history=history, workers=a.workers)

    # 1. weather: own intensity and demand forecasts, weather forecast vs actual weather
    rec = evaluate_policies(site, data, ["static", "best_practice", "coolshift", "oracle"], model, "model",
                            weather_forecast="model", **kw)
    rows += [_row("weather (EIA CAISO)", rec, n) for n in ("static", "best_practice", "coolshift", "oracle")]
    rec_pw = evaluate_policies(site, data, ["static", "coolshift"], model, "model", weather_forecast="perfect", **kw)
    rows.append(_row("weather (EIA CAISO)", rec_pw))
    rec_pp = evaluate_policies(site, data, ["static", "coolshift"], model, "perfect", **kw)
    rows.append(_row("weather (EIA CAISO)", rec_pp))

    # 2. intensity: the SGIP marginal signal, own vs issued vs perfect (weather forecast on)
    sg = data.copy()
    hist_sg = history.copy()
    sg[CARBON_GCO2_PER_KWH], issued = _sgip_on_2022(sg.index)
    hist_sg[CARBON_GCO2_PER_KWH], _ = _sgip_on_2022(hist_sg.index)
    kw_sg = dict(history=hist_sg, workers=a.workers)
    recs = {}
    recs["own"] = evaluate_policies(site, sg, ["static", "best_practice", "coolshift", "oracle"], model, "model",
                                    weather_forecast="model", **kw_sg)
    recs["issued"] = evaluate_policies(site, sg, ["static", "coolshift"], model, "issued", weather_forecast="model",
                                       issued=issued, **kw_sg)
    recs["perfect"] = evaluate_policies(site, sg, ["static", "coolshift"], model, "perfect", weather_forecast="model",
                                        **kw_sg)
    rows += [_row("intensity (SGIP MOER)", recs["own"], n) for n in ("static", "best_practice")]
    rows += [_row("intensity (SGIP MOER)", r) for r in recs.values()]
    rows.append(_row("intensity (SGIP MOER)", recs["own"], "oracle"))
    scores = _mape_first_hours(sg, hist_sg, issued, 4.0)

    table = pd.DataFrame(rows)
    pd.set_option("display.width", 200)
    print(f"# {site.name}, {t0.date()} to {t1.date()} ({a.days} days), re-plan every 4 h, code {rec['code_version']}, "
          f"plant model {rec['plant_model']}")
    print(table.round(3).to_string(index=False))
    print(f"SGIP first 3 h of each plan ({scores['issued_covered_steps']} of {scores['steps']} steps covered by the issued "
          f"forecast): MAPE own {scores['own_mape_pct']:.2f} %, issued {scores['issued_mape_pct']:.2f} %")
    sv = lambda r: r["savings_vs_static_pct"]["coolshift"]  # noqa: E731
    out = {
        "site": site.name, "start": t0.isoformat(), "days": a.days, "code_version": rec["code_version"],
        "weather_saving_forecast_pct": sv(rec), "weather_saving_perfect_weather_pct": sv(rec_pw),
        "weather_saving_all_perfect_pct": sv(rec_pp),
        "weather_error_cost_pts": sv(rec_pw) - sv(rec),
        "sgip_saving_own_pct": sv(recs["own"]), "sgip_saving_issued_pct": sv(recs["issued"]),
        "sgip_saving_perfect_pct": sv(recs["perfect"]),
        "sgip_oracle_saving_pct": recs["own"]["savings_vs_static_pct"]["oracle"],
        "sgip_issued_steps_share": recs["issued"]["planner"]["coolshift"].get("issued_steps_share"),
        "sgip_mape_first_3h_own_pct": scores["own_mape_pct"], "sgip_mape_first_3h_issued_pct": scores["issued_mape_pct"],
        "wall_s": time.perf_counter() - t_start,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
