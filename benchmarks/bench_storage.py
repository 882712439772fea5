"""Storage and prices on a month of the San Jose example: what a battery adds to Coolshift's saving.

Closed loop on the simulator (``coolshift.control.evaluation.run_policy``): ``static``, then
``coolshift`` (model forecasts, re-plan every 4 h over 24 h) and ``oracle`` (perfect
information, 36 h), each without and with a battery in the site config. With the battery the
loop carries it (coolshift.control.receding): each plan commands charge/discharge, the
simulator's own storage physics (simulations/storage.py) carries them out beside the
simulated plant (discharge clipped where the plant drew less than planned: no export) and the
next plan starts from the simulated state of charge. Carbon is the simulated grid import at the
actual intensity plus the battery's wear (embodied kgCO2 per kWh discharged), the bill the
site's tariff on grid import (:func:`coolshift.control.evaluation.policy_costs`: CAISO 2022
prices + its illustrative adders and demand charge) plus wear. With ``--objective
cost|weighted`` each re-plan pays the demand charge only on raising the month's peak so far
(``RecedingHorizonPolicy.peaks_kw``, from the executed intervals' planned import). The battery
(size below) is a stated assumption, not a measured site.

Usage: python benchmarks/bench_storage.py [--site S] [--start 2022-07-01] [--end 2022-08-01]
[--forecast model|perfect] [--energy-kwh 2000] [--power-kw 1000] [--objective carbon|weighted|cost]
[--workers 2] [--workdir WD] (needs a registered plant model: `coolshift train`, see README).
Prints a table, then one JSON line whose keys include saving_vs_static_pct and
oracle_saving_vs_static_pct (with and without storage), cost_saving_pct and solve_ratio
(mean plan time with storage over without).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import pandas as pd  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
INTERVAL_H = 4.0
TARGET_SAVING_PCT = 0.0  # storage must not make Coolshift worse: the saving with it >= without (compared below)


def _run(task):
    """One policy on one site variant in a worker process: carbon, bill, plan times."""
    name, with_storage, cfg = task
    from coolshift.config import load_site
    from coolshift.control.evaluation import policy_costs, policy_tco2, run_policy
    from coolshift.io import load_site_data
    from coolshift.io.prices import with_prices
    from coolshift.models.registry import load_plant_model
    from coolshift.usecases.nightly import HISTORY_DAYS

    site = load_site(cfg["site"])
    battery = {"name": "battery", "kind": "battery", "energy_kwh": cfg["energy_kwh"], "charge_kw": cfg["power_kw"],
               "discharge_kw": cfg["power_kw"]}
    site = site.model_validate({**site.model_dump(), "storage": [battery] if with_storage else [],
                                "base_dir": site.base_dir})
    data = load_site_data(site, cfg["start"], cfg["end"])
    history = None
    if cfg["forecast"] == "model":
        history = load_site_data(site, (data.index[0] - pd.Timedelta(days=HISTORY_DAYS)).isoformat(), data.index[0].isoformat())
    model = load_plant_model(site, workdir=cfg["workdir"])
    opts = {"objective": cfg["objective"]} if cfg["objective"] != "carbon" else None
    run_data = with_prices(site, data) if cfg["objective"] != "carbon" else data
    if history is not None and cfg["objective"] != "carbon":  # day-ahead prices: known, never forecast
        history = with_prices(site, history)
    t0 = time.perf_counter()
    out = run_policy(name, site, run_data, model, forecast_mode=cfg["forecast"] if name != "oracle" else "perfect",
                     interval_h=INTERVAL_H, history=history, plan_options=opts)
    seconds = time.perf_counter() - t0
    res = out["result"]
    s = res.summary
    costs, why = policy_costs(site, {name: res})
    if not costs:
        raise SystemExit(f"bench_storage: {why}")
    c = costs[name]
    planner = out["planner"] or {}
    extra = {}
    if with_storage:
        extra = {"discharged_mwh": s["storage_discharged_kwh"] / 1000.0, "losses_mwh": s["storage_losses_kwh"] / 1000.0,
                 "degradation_kgco2": s["storage_wear_tco2"] * 1000.0, "degradation_usd": s["storage_wear_usd"],
                 "clipped_mwh": s["storage_command_clipped_kwh"] / 1000.0, "soc_min_kwh": s["storage_soc_min_kwh"],
                 "soc_max_kwh": s["storage_soc_max_kwh"], "below_floor_kwh": s["storage_below_floor_kwh"]}
    return {"policy": name, "storage": with_storage, "kgco2": policy_tco2(s) * 1000.0, "cost_usd": c["cost_usd"],
            "energy_usd": c["energy_cost_usd"], "demand_usd": c["demand_charge_usd"], "grid_mwh": s["grid_kwh"] / 1000.0,
            "seconds": seconds, "plans": planner.get("plans", 0), "mean_plan_s": planner.get("mean_plan_s", 0.0),
            "fallback_plans": planner.get("fallback_plans", 0), **extra}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--site", default=str(REPO / "configs/sites/sanjose_colo_2mw.yaml"))
    ap.add_argument("--start", default="2022-07-01")
    ap.add_argument("--end", default="2022-08-01")
    ap.add_argument("--forecast", default="model")
    ap.add_argument("--energy-kwh", type=float, default=2000.0, help="battery energy (assumed: 1 h of the site's load)")
    ap.add_argument("--power-kw", type=float, default=1000.0, help="battery charge and discharge power (0.5C)")
    ap.add_argument("--objective", default="carbon", choices=("carbon", "weighted", "cost"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--workdir", default=None)
    a = ap.parse_args()
    cfg = {"site": a.site, "start": a.start, "end": a.end, "forecast": a.forecast, "energy_kwh": a.energy_kwh,
           "power_kw": a.power_kw, "objective": a.objective, "workdir": a.workdir}
    tasks = [("oracle", True, cfg), ("oracle", False, cfg), ("coolshift", True, cfg), ("coolshift", False, cfg),
             ("static", False, cfg)]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=a.workers, mp_context=get_context("fork")) as ex:
        rows = list(ex.map(_run, tasks))
    wall = time.perf_counter() - t0
    r = {(x["policy"], x["storage"]): x for x in rows}
    static = r[("static", False)]

    def saving(key, what="kgco2"):
        return 100.0 * (static[what] - r[key][what]) / static[what]

    print(f"San Jose example {a.start}..{a.end}, forecast {a.forecast}, objective {a.objective}, battery "
          f"{a.energy_kwh:g} kWh / {a.power_kw:g} kW (assumed), re-plan every {INTERVAL_H:g} h, battery in the closed "
          f"loop; wall {wall:.0f} s on {a.workers} worker(s)")
    print(f"{'policy':<12}{'storage':>8}{'tCO2':>10}{'vs static %':>12}{'cost kUSD':>11}{'vs static %':>12}"
          f"{'grid MWh':>10}{'plans':>7}{'s/plan':>8}{'fallback':>9}")
    for x in rows:
        key = (x["policy"], x["storage"])
        print(f"{x['policy']:<12}{'yes' if x['storage'] else 'no':>8}{x['kgco2'] / 1000:>10.2f}{saving(key):>12.2f}"
              f"{x['cost_usd'] / 1000:>11.1f}{saving(key, 'cost_usd'):>12.2f}{x['grid_mwh']:>10.1f}{x['plans']:>7}"
              f"{x['mean_plan_s']:>8.2f}{x['fallback_plans']:>9}")
    for x in rows:
        if x["storage"] and "discharged_mwh" in x:
            print(f"{x['policy']}: battery discharged {x['discharged_mwh']:.1f} MWh, losses {x['losses_mwh']:.2f} MWh, "
                  f"wear {x['degradation_kgco2']:.0f} kgCO2 / {x['degradation_usd']:.0f} USD, SoC "
                  f"{x['soc_min_kwh']:.0f}..{x['soc_max_kwh']:.0f} kWh (below its floor by {x['below_floor_kwh']:g} kWh), "
                  f"commands clipped by the simulator's storage physics {x['clipped_mwh']:.3f} MWh")
    res = {
        "site": "sanjose_colo_2mw", "start": a.start, "end": a.end, "forecast": a.forecast, "objective": a.objective,
        "battery_kwh": a.energy_kwh, "battery_kw": a.power_kw,
        "saving_vs_static_pct": {"without_storage": saving(("coolshift", False)), "with_storage": saving(("coolshift", True))},
        "oracle_saving_vs_static_pct": {"without_storage": saving(("oracle", False)), "with_storage": saving(("oracle", True))},
        "cost_saving_pct": {"without_storage": saving(("coolshift", False), "cost_usd"),
                            "with_storage": saving(("coolshift", True), "cost_usd")},
        "solve_ratio": r[("coolshift", True)]["mean_plan_s"] / max(r[("coolshift", False)]["mean_plan_s"], 1e-9),
        "oracle_solve_ratio": r[("oracle", True)]["mean_plan_s"] / max(r[("oracle", False)]["mean_plan_s"], 1e-9),
        "storage_adds_saving": saving(("coolshift", True)) - saving(("coolshift", False)) >= TARGET_SAVING_PCT,
        "storage_in_closed_loop": True,  # the simulator carried the battery (not tracked beside it)
        "soc_below_floor_kwh": max(r[(n, True)]["below_floor_kwh"] for n in ("coolshift", "oracle")),
        "wall_s": wall,
    }
    print(json.dumps(res))


if __name__ == "__main__":
    main()
