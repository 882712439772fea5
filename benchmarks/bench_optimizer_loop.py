"""Plan vs simulator: does the plan's predicted carbon match what the simulator measures?

For each bundled example site (bundled real data): the simulator runs the ``explore``
commissioning policy over the training period and a ``LinearPlantModel`` is fitted on the
first 80 % of that telemetry. Its **stated error** is measured where the optimiser
operates: for every full day of the held-out last 20 % the optimiser plans the day with
the model, the simulator follows the plan, and the model is evaluated at the decisions the
simulator actually ran. The stated error is the carbon-weighted mean absolute error of
facility power over those steps, ``sum_t g_t |pred_t - meas_t| / sum_t g_t meas_t``
(g = grid intensity): a bound on the error of a day's carbon at such operating points.
The error on the held-out explore rows themselves is printed beside it.

The optimiser then plans each test day, the simulator follows the plan (``replay_day``)
and, separately, the best-practice policy. PASS when |plan tCO2 - measured tCO2| /
measured <= the stated error. The attribution splits the energy gap (plan - measured,
kWh) into IT (and within it the boot energy: the plan's own, of fractional servers, against
the replay's whole servers at about peak power for ``boot_time_s``),
cooling (plan, and the learned model evaluated at the replayed decisions), other
electrical losses, and the edge sites.

Usage: python benchmarks/bench_optimizer_loop.py [--sites sanjose,philadelphia]
       [--train-start 2022-06-01] [--day 2022-07-01] [--days 1] [--envelope-zone-it]
Prints a table and, as its last line, one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from coolshift.config import load_site
from coolshift.io import load_site_data
from coolshift.optimizer import InitialState, Planner, PlanOptions
from coolshift.control.replay import carbon_weighted_error_pct, replay_day

ROOT = Path(__file__).resolve().parents[1]
SITES = {
    "sanjose": ROOT / "configs/sites/sanjose_colo_2mw.yaml",
    "philadelphia": ROOT / "configs/sites/philadelphia_multihall_20mw.yaml",
}


def explore_error_pct(actual: pd.DataFrame, predicted: pd.DataFrame) -> float:
    """Carbon-weighted mean absolute error of facility power [%] on held-out explore rows."""
    g = actual["gco2_per_kwh"].to_numpy(float)
    a = actual["facility_power_kw"].to_numpy(float)
    p = predicted["facility_power_kw"].to_numpy(float)
    return float(100.0 * np.sum(g * np.abs(p - a)) / np.sum(g * a))


def boot_kwh(site, actions_frame: pd.DataFrame, step_h: float) -> float:
    """Energy of servers booting [kWh]: about peak instead of idle power for ``boot_time_s``
    (Meisner et al. 2009, "PowerNap", ASPLOS), from the replayed (whole) active servers."""
    total = 0.0
    for p in site.server_pools:
        n = actions_frame[f"active_servers__{p.name}"].to_numpy(float)
        up = np.maximum(np.diff(n, prepend=float(p.servers)), 0.0)  # the site starts with every server on
        frac = min(p.boot_time_s / (step_h * 3600.0), 1.0)
        total += float((up * frac * (p.peak_w - p.idle_w)).sum() / 1000.0 * step_h)
    return total


def train(site, d0: pd.Timestamp, data: pd.DataFrame):
    from coolshift.models.thermal import LinearPlantModel, plant_metrics
    from coolshift.simulations.engine import simulate
    from coolshift.control.policies import ExplorePolicy

    tel = simulate(site, data.loc[: d0 - pd.Timedelta("15min")], ExplorePolicy(seed=0)).timeseries
    cut = tel.index[int(0.8 * len(tel))]
    t0 = time.perf_counter()
    model = LinearPlantModel().fit(tel.loc[:cut], site)
    fit_s = time.perf_counter() - t0
    held = tel.loc[cut:].iloc[1:]
    pred = model.predict(held)
    metrics = plant_metrics(held, pred, [z.name for z in site.zones])
    metrics["facility_carbon_weighted_pct"] = explore_error_pct(held, pred)
    return model, metrics, fit_s, cut


def stated_error(site, model, data: pd.DataFrame, cut: pd.Timestamp, d0: pd.Timestamp, zone_it: bool) -> dict:
    """The model's error at the plan's operating points on held-out days: plans for the full
    days after the training cut (before the test day), replayed; carbon-weighted mean
    absolute error of facility power of the model at the replayed decisions."""
    days = pd.date_range(cut.ceil("D"), d0 - pd.Timedelta("1D"), freq="D")
    opts = PlanOptions(decision_envelope=model.envelope_, envelope_zone_it=zone_it)
    runs = [replay_day(site, model, data, d, opts) for d in days]
    steps = pd.concat([r["steps"] for r in runs])
    return {
        "stated_error_pct": carbon_weighted_error_pct(steps),
        "validation_days": [d.date().isoformat() for d in days],
        "validation_day_model_error_pct": [carbon_weighted_error_pct(r["steps"], absolute=False) for r in runs],
        "validation_day_plan_gap_pct": [100.0 * (r["predicted_tco2"] - r["measured_tco2"]) / r["measured_tco2"]
                                        for r in runs],
    }


def run_day(site, model, data: pd.DataFrame, day: pd.Timestamp, zone_it: bool) -> dict:
    from coolshift.simulations.engine import simulate
    from coolshift.control.policies import BestPracticePolicy

    opts = PlanOptions(decision_envelope=model.envelope_, envelope_zone_it=zone_it)
    r = replay_day(site, model, data, day, opts)
    plan, rep = r["plan"], r["result"]
    ts, meas = rep.timeseries, rep.summary
    today = data.loc[ts.index]
    base = simulate(site, today, BestPracticePolicy()).summary
    dt = site.step_h
    pf = plan.frame
    meas_t = r["measured_tco2"]  # site, edge sites and network (location-based)
    model_at_replay = model.predict(ts)
    zones = [z.name for z in site.zones]
    return {
        "day": day.date().isoformat(),
        "plan_status": plan.status,
        "predicted_tco2": r["predicted_tco2"],
        "measured_tco2": meas_t,
        "gap_pct": 100.0 * (r["predicted_tco2"] - meas_t) / meas_t,
        "model_error_at_replay_pct": carbon_weighted_error_pct(r["steps"], absolute=False),
        "best_practice_tco2": base["tco2_location"],
        "measured_saving_pct": 100.0 * (base["tco2_location"] - meas_t) / base["tco2_location"],
        "gap_kwh": {
            "it": plan.totals["it_kwh"] - meas["it_kwh"],
            "it_boot": float(pf["boot_power_kw"].sum() * dt) - boot_kwh(site, ts, dt),
            "cooling": plan.totals["cooling_kwh"] - meas["cooling_kwh"],
            "cooling_model_at_replay": float(model_at_replay["cooling_power_kw"].sum() * dt) - meas["cooling_kwh"],
            "other_electrical": float(((pf["facility_power_kw"] - pf["it_power_kw"] - pf["cooling_power_kw"]).sum()
                                       - (ts["facility_power_kw"] - ts["it_power_kw"] - ts["cooling_power_kw"]).sum()) * dt),
            "edge": plan.totals["edge_kwh"] - meas["edge_kwh"] - meas["network_kwh"],
        },
        "measured_kwh": {"facility": meas["facility_kwh"], "it": meas["it_kwh"], "cooling": meas["cooling_kwh"]},
        "zone_it_kw_min_plan": {z: float(pf[f"zone_it_power_kw__{z}"].min()) for z in zones},
        "violations": {k: meas[k] for k in ("thermal_violation_minutes", "late_work_units",
                                            "unserved_interactive_units", "redundancy_violation_minutes")},
    }


def run(site_path: Path, train_start: str, day: str, days: int, zone_it: bool) -> dict:
    site = load_site(site_path)
    d0 = pd.Timestamp(day, tz="UTC")
    data = load_site_data(site, train_start, d0 + pd.Timedelta(days=days))
    model, metrics, fit_s, cut = train(site, d0, data)
    stated = stated_error(site, model, data, cut, d0, zone_it)
    rows = [run_day(site, model, data, d0 + pd.Timedelta(days=k), zone_it) for k in range(days)]
    pred = sum(r["predicted_tco2"] for r in rows)
    meas = sum(r["measured_tco2"] for r in rows)
    gap = 100.0 * (pred - meas) / meas
    return {
        "site": site.name,
        **stated,
        "explore_held_out_metrics": metrics,
        "fit_s": fit_s,
        "predicted_tco2": pred,
        "measured_tco2": meas,
        "gap_pct": gap,
        "pass": bool(abs(gap) <= stated["stated_error_pct"]),
        "days": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sites", default="sanjose,philadelphia")
    ap.add_argument("--train-start", default="2022-06-01")
    ap.add_argument("--day", default="2022-07-01")
    ap.add_argument("--days", type=int, default=1)
    ap.add_argument("--envelope-zone-it", action="store_true", help="keep zone IT inside the trained range")
    args = ap.parse_args()
    res = [run(SITES[s], args.train_start, args.day, args.days, args.envelope_zone_it) for s in args.sites.split(",")]
    print(f"\nplan from {args.day} ({args.days} day(s)) vs the simulator following it; model trained on the first 80 % "
          f"of explore telemetry from {args.train_start}; stated error: the model at the replayed decisions of plans "
          f"for the held-out days (carbon-weighted MAE of facility power)")
    print(f"{'site':<30}{'plan tCO2':>11}{'sim tCO2':>11}{'gap %':>8}{'stated %':>10}{'':>6}{'best-pr. tCO2':>14}"
          f"{'saving %':>10}{'explore held-out %':>20}")
    for r in res:
        bp = sum(d["best_practice_tco2"] for d in r["days"])
        print(f"{r['site']:<30}{r['predicted_tco2']:>11.3f}{r['measured_tco2']:>11.3f}{r['gap_pct']:>8.2f}"
              f"{r['stated_error_pct']:>10.2f}{'PASS' if r['pass'] else 'FAIL':>6}{bp:>14.3f}"
              f"{100 * (bp - r['measured_tco2']) / bp:>10.2f}"
              f"{r['explore_held_out_metrics']['facility_carbon_weighted_pct']:>20.2f}")
    print("\nvalidation days (held out, plans replayed): daily error of the model at the replayed decisions / plan gap, %")
    for r in res:
        print(f"{r['site']:<30}" + "  ".join(f"{d[5:]}: {m:+.2f}/{g:+.2f}" for d, m, g in zip(
            r["validation_days"], r["validation_day_model_error_pct"], r["validation_day_plan_gap_pct"])))
    print("\nenergy gap, plan - simulator [kWh] (cooling_model_at_replay: the learned model at the replayed decisions)")
    keys = list(res[0]["days"][0]["gap_kwh"])
    print(f"{'site':<30}{'day':>12}" + "".join(f"{k:>25}" for k in keys))
    for r in res:
        for d in r["days"]:
            print(f"{r['site']:<30}{d['day']:>12}" + "".join(f"{d['gap_kwh'][k]:>25.0f}" for k in keys))
    print(json.dumps({"sites": res, "all_pass": all(r["pass"] for r in res)}))


if __name__ == "__main__":
    main()
