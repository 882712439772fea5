"""Storage and prices on a month of the San Jose example: what a battery adds to Coolshift's saving.

Closed loop on the simulator (``coolshift.control.evaluation.run_policy``): ``static``, then
``coolshift`` (model forecasts, re-plan every 4 h over 24 h) and ``oracle`` (perfect
information, 36 h), each without and with a battery in the site config. With the battery
the LP plans it (``storage_balance``, ``grid_balance``); the loop's policies know nothing of
storage, so this benchmark carries it: each re-plan starts from the state of charge the
storage physics reached (:func:`simulations.storage.run_storage` on the charge/discharge the
previous plans asked for in their executed 4 h), and after the run the same physics runs on
the simulated facility power (discharge clipped where the plant drew less than planned: no
export) to give grid import, carbon at the actual intensity and the bill
(:func:`coolshift.tariffs.bill`: the site's CAISO 2022 prices + its illustrative adders and
demand charge). With ``--objective cost|weighted`` each re-plan pays the demand charge only on
raising the month's peak so far (``PlanOptions.peak_so_far_kw``, from the executed intervals'
planned import). The battery (size below) is a stated assumption, not a measured site.

Usage: python benchmarks/bench_storage.py [--site S] [--start 2022-07-01] [--end 2022-08-01]
[--forecast model|perfect] [--energy-kwh 2000] [--power-kw 1000] [--objective carbon|weighted|cost]
[--workers 2] [--workdir WD] (needs a registered plant model: `coolshift train`, see README).
Prints a table, then one JSON line whose keys include saving_vs_static_pct and
oracle_saving_vs_static_pct (with and without storage), cost_saving_pct and solve_ratio
(mean plan time with storage over without).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
INTERVAL_H = 4.0
# What the battery targets: the loop's carbon objective unless --objective says otherwise.
TARGET_SAVING_PCT = 0.0  # storage must not make Coolshift worse: the saving with it >= without (compared below)


class _Tracker:
    """The battery's requests and state of charge across the loop's re-plans (one per process)."""

    def __init__(self, site, steps_per_interval: int):
        self.site, self.n = site, steps_per_interval
        self.soc = {u.name: u.soc_initial_frac * u.energy_kwh for u in site.storage}
        self.charge: list[pd.DataFrame] = []
        self.discharge: list[pd.DataFrame] = []
        self.plan_s: list[float] = []
        self.peaks: dict[str, float] = {}  # billing month -> planned peak import so far, kW


TRACK: _Tracker | None = None


def _patch_planner(track: _Tracker) -> None:
    """Let the loop's Planner start from the tracked state of charge and record what it asks of the battery."""
    import coolshift.control.receding as receding
    from coolshift.optimizer import Planner
    from coolshift.simulations.storage import run_storage
    from coolshift.tariffs import billing_months

    class StoragePlanner(Planner):
        def __init__(self, site, coefficients, forecast, initial_state=None, options=None):
            if site.storage and initial_state is not None:
                initial_state = dataclasses.replace(initial_state, storage_soc_kwh=dict(track.soc))
            if options is not None and options.objective != "carbon":  # pay only on raising the month's peak
                options = dataclasses.replace(options, peak_so_far_kw=dict(track.peaks))
            super().__init__(site, coefficients, forecast, initial_state, options)

        def solve(self):
            plan = super().solve()
            track.plan_s.append(float(plan.timings.get("total_s") or 0.0))
            if self.site.tariff is not None:  # the executed interval's planned import sets the month's peak so far
                f = plan.frame.iloc[: track.n]
                g = f["grid_power_kw"] if "grid_power_kw" in f else f["facility_power_kw"]
                month, labels = billing_months(f.index, self.site.tariff.timezone)
                for m, lab in enumerate(labels):
                    track.peaks[lab] = max(track.peaks.get(lab, 0.0), float(g.to_numpy()[month == m].max()))
            if not self.site.storage:
                return plan
            f = plan.frame.iloc[: track.n]
            names = [u.name for u in self.site.storage]
            ch = pd.DataFrame({s: f.get(f"charge_kw__{s}", pd.Series(0.0, index=f.index)) for s in names})
            dis = pd.DataFrame({s: f.get(f"discharge_kw__{s}", pd.Series(0.0, index=f.index)) for s in names})
            track.charge.append(ch)
            track.discharge.append(dis)
            # the state of charge the executed interval leaves (no-export clipping only known after the run)
            run = run_storage(self.site, pd.Series(1e12, index=f.index), ch, dis, initial_soc_kwh=track.soc)
            track.soc = {s: float(run.soc_kwh[s].iloc[-1]) for s in names}
            return plan

    receding.Planner = StoragePlanner


def _run(task):
    """One policy on one site variant in a worker process: carbon, bill, plan times."""
    name, with_storage, cfg = task
    from coolshift.config import load_site
    from coolshift.control.evaluation import run_policy
    from coolshift.io import load_site_data
    from coolshift.io.prices import with_prices
    from coolshift.models.registry import load_plant_model
    from coolshift.tariffs import bill
    from coolshift.usecases.nightly import HISTORY_DAYS
    from coolshift.simulations.storage import run_storage

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
    step_h = site.step_h
    track = _Tracker(site, int(round(INTERVAL_H / step_h)))
    if name != "static":
        _patch_planner(track)
    opts = {"objective": cfg["objective"]} if cfg["objective"] != "carbon" else None
    run_data = with_prices(site, data) if cfg["objective"] != "carbon" else data
    if history is not None and cfg["objective"] != "carbon":  # day-ahead prices: known, never forecast
        history = with_prices(site, history)
    t0 = time.perf_counter()
    out = run_policy(name, site, run_data, model, forecast_mode=cfg["forecast"] if name != "oracle" else "perfect",
                     interval_h=INTERVAL_H, history=history, plan_options=opts)
    seconds = time.perf_counter() - t0
    ts = out["result"].timeseries
    fac = ts["facility_power_kw"]
    kg = float(ts["kgco2_location"].sum())
    grid = fac.to_numpy(float)
    extra = {}
    if with_storage and track.charge:
        idx = ts.index
        ch = pd.concat(track.charge).groupby(level=0).last().reindex(idx).fillna(0.0)
        dis = pd.concat(track.discharge).groupby(level=0).last().reindex(idx).fillna(0.0)
        st = run_storage(site, fac, ch, dis)
        grid = st.grid_kw.to_numpy(float)
        u = site.storage[0]
        deg_kg = float(st.discharge_kw.to_numpy().sum() * step_h * u.degradation_kgco2_per_kwh)
        kg += float((ts["gco2_per_kwh"].to_numpy() * (grid - fac.to_numpy())).sum() * step_h / 1000.0) + deg_kg
        extra = {"discharged_mwh": float(st.discharge_kw.to_numpy().sum() * step_h / 1000.0),
                 "losses_mwh": st.losses_kwh / 1000.0, "degradation_kgco2": deg_kg,
                 "degradation_usd": float(st.discharge_kw.to_numpy().sum() * step_h * u.degradation_usd_per_kwh),
                 "clipped_mwh": float((dis - st.discharge_kw).clip(lower=0).to_numpy().sum() * step_h / 1000.0),
                 "soc_min_kwh": float(st.soc_kwh.to_numpy().min()), "soc_max_kwh": float(st.soc_kwh.to_numpy().max())}
    price = with_prices(site, ts[[]])["price_usd_per_kwh"].to_numpy()
    b = bill(ts.index, grid, price, site.tariff, step_h)
    cost = b["cost_usd"] + extra.get("degradation_usd", 0.0)
    return {"policy": name, "storage": with_storage, "kgco2": kg, "cost_usd": cost, "energy_usd": b["energy_usd"],
            "demand_usd": b["demand_usd"], "grid_mwh": float(grid.sum() * step_h / 1000.0), "seconds": seconds,
            "plans": len(track.plan_s), "mean_plan_s": float(np.mean(track.plan_s)) if track.plan_s else 0.0,
            "fallback_plans": (out["planner"] or {}).get("fallback_plans", 0), **extra}


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
          f"{a.energy_kwh:g} kWh / {a.power_kw:g} kW (assumed), re-plan every {INTERVAL_H:g} h; wall {wall:.0f} s "
          f"on {a.workers} worker(s)")
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
                  f"{x['soc_min_kwh']:.0f}..{x['soc_max_kwh']:.0f} kWh, discharge clipped (no export) {x['clipped_mwh']:.3f} MWh")
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
        "wall_s": wall,
    }
    print(json.dumps(res))


if __name__ == "__main__":
    main()
