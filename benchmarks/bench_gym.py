"""Controllers through the Gymnasium environment: Coolshift's LP, best_practice and a random policy.

Runs each on ``coolshift/SanJose-v0`` over the same period (default: 2 days from
1 July 2022, one env step per 15-min planning step, perfect forecasts), prints a table
(policy, kgCO2, reward, violations, seconds), and as the LAST line one JSON object.

- ``lp``: the receding-horizon LP (re-plan every 4 h over 24 h, autoscaler on) as
  ``coolshift evaluate`` runs it, with a LinearPlantModel fitted on four weeks of the
  simulator's explore telemetry (15 May - 12 June 2022; fit time not counted);
- ``best_practice``: the best-practice baseline rule (``coolshift.baselines``);
- ``random``: ``action_space.sample()`` seeded with 0.

``lp_sim_kgco2`` is the same LP run directly on the simulator (``evaluate.run_policy``): the
env adds nothing to what the LP achieves. ``steps_per_s`` is the env's own rate (random
policy: no controller cost).

Run: ``.venv/bin/python benchmarks/bench_gym.py [--days 2] [--start 2022-07-01]``.
"""

from __future__ import annotations

import argparse
import json
import time

import gymnasium

import coolshift.control  # noqa: F401  (registers the environments)
from coolshift.control.gym_env import (best_practice_controller, fit_plant_model, lp_controller, random_controller,
                                       run_episode)
from coolshift.control.evaluation import run_policy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=float, default=2.0)
    ap.add_argument("--start", default="2022-07-01T00:00:00Z")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    env = gymnasium.make("coolshift/SanJose-v0", start=args.start, days=args.days)
    core = env.unwrapped
    t0 = time.perf_counter()
    model = fit_plant_model(core.site)
    fit_s = time.perf_counter() - t0
    controllers = {
        "lp": lp_controller(env, model),
        "best_practice": best_practice_controller(env),
        "random": random_controller(env, seed=args.seed),
    }
    runs = {name: run_episode(env, c, seed=args.seed) for name, c in controllers.items()}
    t0 = time.perf_counter()
    lp_sim = run_policy("coolshift", core.site, core.data, model)["result"].summary["tco2_location"] * 1000.0
    lp_sim_s = time.perf_counter() - t0

    print(f"San Jose, {core.data.index[0]:%Y-%m-%d %H:%M} UTC + {args.days:g} days, {len(core.data)} steps of "
          f"{core.site.planning.step_minutes} min; plant model fit {fit_s:.1f} s")
    print(f"{'policy':<14}{'kgCO2':>11}{'reward':>12}{'thermal_K_h':>13}{'unserved_u':>12}{'late_u':>13}"
          f"{'seconds':>9}{'steps/s':>9}")
    for name, r in runs.items():
        print(f"{name:<14}{r['kgco2']:>11.1f}{r['reward']:>12.1f}{r['thermal_excess_k_h']:>13.3f}"
              f"{r['unserved_units']:>12.2f}{r['late_units']:>13.3f}{r['seconds']:>9.2f}"
              f"{r['steps'] / r['seconds']:>9.0f}")
    print(f"lp on the simulator directly (evaluate.run_policy): {lp_sim:.1f} kgCO2 in {lp_sim_s:.2f} s")
    out = {"site": "sanjose_colo_2mw", "start": core.data.index[0].isoformat(), "period_days": args.days,
           "steps": len(core.data)}
    for name, r in runs.items():
        out[f"{name}_kgco2"] = round(r["kgco2"], 3)
        out[f"{name}_reward"] = round(r["reward"], 3)
        out[f"{name}_thermal_k_h"] = round(r["thermal_excess_k_h"], 4)
        out[f"{name}_unserved_units"] = round(r["unserved_units"], 3)
        out[f"{name}_late_units"] = round(r["late_units"], 5)
        out[f"{name}_seconds"] = round(r["seconds"], 3)
    out["lp_sim_kgco2"] = round(lp_sim, 3)
    out["lp_saving_vs_best_practice_pct"] = round(100.0 * (1.0 - runs["lp"]["kgco2"] / runs["best_practice"]["kgco2"]), 3)
    out["steps_per_s"] = round(runs["random"]["steps"] / runs["random"]["seconds"], 1)
    out["lp_steps_per_s"] = round(runs["lp"]["steps"] / runs["lp"]["seconds"], 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
