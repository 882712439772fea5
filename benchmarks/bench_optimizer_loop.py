"""Plan vs simulator: does the plan's predicted carbon match what the simulator measures?

For each bundled example site (bundled real data): the simulator runs the ``explore``
policy for the training period, a ``LinearPlantModel`` is fitted on that telemetry (the
last 20 % held out for its stated error), the optimiser plans one day with the model's
coefficients (setpoints inside the model's training envelope), the simulator follows the
plan (``replay_plan``) and, separately, the best-practice policy on the same day.

Usage: python benchmarks/bench_optimizer_loop.py [--sites sanjose,philadelphia]
       [--train-start 2022-06-01] [--day 2022-07-01] [--envelope-zone-it]
Prints a table and, as its last line, one JSON object.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from coolshift.config import load_site
from coolshift.io import load_site_data
from coolshift.optimizer import InitialState, Planner, PlanOptions
from coolshift.optimizer.replay import replay_plan

ROOT = Path(__file__).resolve().parents[1]
SITES = {
    "sanjose": ROOT / "configs/sites/sanjose_colo_2mw.yaml",
    "philadelphia": ROOT / "configs/sites/philadelphia_multihall_20mw.yaml",
}


def run(site_path: Path, train_start: str, day: str, zone_it: bool) -> dict:
    from coolshift.models.thermal import LinearPlantModel, plant_metrics
    from coolshift.simulations.engine import simulate
    from coolshift.simulations.policies import BestPracticePolicy, ExplorePolicy

    site = load_site(site_path)
    d0 = pd.Timestamp(day, tz="UTC")
    data = load_site_data(site, train_start, d0 + pd.Timedelta("1D"))
    tel = simulate(site, data.loc[: d0 - pd.Timedelta("15min")], ExplorePolicy(seed=0)).timeseries
    cut = tel.index[int(0.8 * len(tel))]
    model = LinearPlantModel().fit(tel.loc[:cut], site)
    stated = plant_metrics(tel.loc[cut:], model.predict(tel.loc[cut:]), [z.name for z in site.zones])
    today = data.loc[d0:]
    co = model.coefficients(site, today)
    opts = PlanOptions(decision_envelope=model.envelope_, envelope_zone_it=zone_it)
    plan = Planner(site, co, today, InitialState.from_site(site), opts).solve()
    measured = replay_plan(site, today, plan).summary
    base = simulate(site, today, BestPracticePolicy()).summary
    meas_t = measured["tco2_location"] + measured["tco2_edge"]
    base_t = base["tco2_location"] + base["tco2_edge"]
    return {
        "site": site.name,
        "stated_facility_mape_pct": stated["facility_power_mape_pct"],
        "plan_status": plan.status,
        "predicted_tco2": plan.totals["tco2"],
        "measured_tco2": meas_t,
        "error_pct": 100.0 * (plan.totals["tco2"] - meas_t) / meas_t,
        "predicted_facility_kwh": plan.totals["facility_kwh"],
        "measured_facility_kwh": measured["facility_kwh"],
        "predicted_it_kwh": plan.totals["it_kwh"],
        "measured_it_kwh": measured["it_kwh"],
        "best_practice_tco2": base_t,
        "measured_saving_pct": 100.0 * (base_t - meas_t) / base_t,
        "violations": {k: measured[k] for k in ("thermal_violation_minutes", "late_work_units",
                                                "unserved_interactive_units", "redundancy_violation_minutes")},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sites", default="sanjose,philadelphia")
    ap.add_argument("--train-start", default="2022-06-01")
    ap.add_argument("--day", default="2022-07-01")
    ap.add_argument("--envelope-zone-it", action="store_true", help="keep zone IT inside the trained range")
    args = ap.parse_args()
    rows = [run(SITES[s], args.train_start, args.day, args.envelope_zone_it) for s in args.sites.split(",")]
    print(f"\nplan {args.day} vs the simulator following it (model trained on explore telemetry from {args.train_start})")
    print(f"{'site':<30}{'stated MAPE %':>14}{'pred tCO2':>11}{'meas tCO2':>11}{'error %':>9}{'best-pr. tCO2':>14}{'saving %':>10}")
    for r in rows:
        print(f"{r['site']:<30}{r['stated_facility_mape_pct']:>14.2f}{r['predicted_tco2']:>11.3f}{r['measured_tco2']:>11.3f}"
              f"{r['error_pct']:>9.2f}{r['best_practice_tco2']:>14.3f}{r['measured_saving_pct']:>10.2f}")
    print(json.dumps({"sites": rows}))


if __name__ == "__main__":
    main()
