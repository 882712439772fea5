"""Forecast skill as the closed loop uses it: issued every 4 h, refitted monthly, 24-h horizon.

The learned forecaster is one ridge per (issue hour, horizon). This measures what training
it for the hours it is issued at is worth, against the former default (issue times every
6 h from 00:00, so forecasts at 04, 08, 16 and 20 UTC borrow a neighbour's ridge) and
against persistence (same hour yesterday), on the bundled 2022 series: CISO carbon
intensity and San Jose web demand. Scores: MAPE % and bias % over every (issue, hour) pair
from 1 March (two months of history first) to 30 December 2022, and the mean correlation
of each 24-h forecast's shape with the actual (what a planner ranking hours uses).

Prints a table, then one JSON line with the same figures.

    .venv/bin/python benchmarks/bench_forecast_issue_hours.py [--every-h 4] [--refit-days 30]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def _series() -> dict[str, pd.Series]:
    from coolshift.config import load_site
    from coolshift.io import load_site_data

    site = load_site(ROOT / "configs" / "sites" / "sanjose_colo_2mw.yaml")
    d = load_site_data(site, "2022-01-01", "2023-01-01").resample("1h").mean()
    return {"gco2_per_kwh": d["gco2_per_kwh"], "web_units_per_h": d["web_units_per_h"]}


def _shape_corr(actual: np.ndarray, pred: np.ndarray) -> float:
    da = actual - actual.mean(axis=1, keepdims=True)
    dp = pred - pred.mean(axis=1, keepdims=True)
    with np.errstate(all="ignore"):
        r = (da * dp).sum(axis=1) / np.sqrt((da ** 2).sum(axis=1) * (dp ** 2).sum(axis=1))
    return float(np.nanmean(r))


def run(y: pd.Series, variant: str, every_h: float, refit_days: float) -> dict:
    from coolshift.models.forecast import (CarbonIntensityForecaster, PersistenceForecaster, WorkloadForecaster,
                                           forecast_scores)
    from coolshift.control.receding import decision_hours_utc

    issues = pd.date_range("2022-03-01", "2022-12-30", freq=f"{every_h}h", tz="UTC")
    cls = CarbonIntensityForecaster if y.name.startswith("gco2") else WorkloadForecaster
    kw = {"matched": {"issue_hours": decision_hours_utc(issues[0], every_h)}, "every_6h": {"issue_every_h": 6.0},
          "persistence": None}[variant]
    actual, pred, fitted, t0 = [], [], None, time.perf_counter()
    fit_s = 0.0
    for issue in issues:
        hist = y[y.index < issue]
        if fitted is None or issue - fitted[0] >= pd.Timedelta(days=refit_days):
            f0 = time.perf_counter()
            model = (PersistenceForecaster(name=y.name) if kw is None else cls(name=y.name, max_horizon_h=48.0, **kw))
            fitted = (issue, model.fit(hist))
            fit_s += time.perf_counter() - f0
        idx = pd.date_range(issue, periods=24, freq="1h")
        pred.append(fitted[1].predict_day_ahead(hist, issue, idx)[y.name].to_numpy())
        actual.append(y.reindex(idx).to_numpy())
    a, p = np.array(actual), np.array(pred)
    s = forecast_scores(a.ravel(), p.ravel())
    return {"mape_pct": round(s["mape_pct"], 2), "bias_pct": round(s["bias_pct"], 2),
            "shape_corr": round(_shape_corr(a, p), 3), "fit_s": round(fit_s, 1),
            "total_s": round(time.perf_counter() - t0, 1), "forecasts": len(issues)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--every-h", type=float, default=4.0, help="issue interval, hours (the re-plan interval)")
    ap.add_argument("--refit-days", type=float, default=30.0, help="refit interval, days (ModelForecast's)")
    args = ap.parse_args()
    out = {"every_h": args.every_h, "refit_days": args.refit_days}
    rows = []
    for name, y in _series().items():
        res = {v: run(y, v, args.every_h, args.refit_days) for v in ("matched", "every_6h", "persistence")}
        out[name] = res
        for v, r in res.items():
            rows.append((name, v, r))
    print(f"{'series':18s} {'forecaster':12s} {'MAPE %':>7s} {'bias %':>7s} {'shape r':>8s} {'fit s':>6s} "
          f"{'vs persistence':>15s}")
    for name, v, r in rows:
        ratio = r["mape_pct"] / out[name]["persistence"]["mape_pct"]
        print(f"{name:18s} {v:12s} {r['mape_pct']:7.2f} {r['bias_pct']:+7.2f} {r['shape_corr']:8.3f} "
              f"{r['fit_s']:6.1f} {ratio:14.3f}x")
    for name in ("gco2_per_kwh", "web_units_per_h"):
        out[name]["matched_vs_every_6h_mape_ratio"] = round(
            out[name]["matched"]["mape_pct"] / out[name]["every_6h"]["mape_pct"], 3)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
