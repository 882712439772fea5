"""`coolshift fleet plan` and `coolshift fleet evaluate`: load, plan, score, write.

Plans: ``joint`` (one LP), ``decomposed`` (Dantzig-Wolfe by site on Dask with its certified
gap), ``auto`` (joint up to ``JOINT_MAX_SITES`` sites). Evaluation scores the fleet plan, each
site planned alone and SustainCluster's five rules with the same per-site physics, one Dask
task per site and policy. Outputs are written atomically.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from coolshift.fleet.data import FleetData, build_problem, load_fleet_data
from coolshift.fleet.engine import DaskSites, dask_client, dask_map
from coolshift.fleet.physics import simulate_site
from coolshift.fleet.rules import RULES, dispatch
from coolshift.fleet_config import FleetConfig, load_fleet
from coolshift.io.atomic import write_frame_atomic, write_json_atomic, write_text_atomic
from coolshift.optimizer.fleet import (
    FleetPlan,
    FleetProblem,
    plan_metrics,
    site_blocks,
    solve_decomposed,
    solve_independent,
    solve_joint,
)

__all__ = ["JOINT_MAX_SITES", "FleetInputs", "load_inputs", "make_plan", "score_policies", "plan_fleet", "evaluate_fleet",
           "policy_table"]

JOINT_MAX_SITES = 8


@dataclass
class FleetInputs:
    fleet: FleetConfig
    data: FleetData
    problem: FleetProblem


def load_inputs(path: str | Path) -> FleetInputs:
    fleet = load_fleet(path)
    data = load_fleet_data(fleet)
    return FleetInputs(fleet, data, build_problem(fleet, data))


def make_plan(problem: FleetProblem, method: str = "auto", client=None, gap_tol: float = 5e-3, max_iter: int = 200) -> FleetPlan:
    """The fleet plan by ``method``; the decomposed one runs its site subproblems on ``client``."""
    if method == "auto":
        method = "joint" if problem.n_sites <= JOINT_MAX_SITES else "decomposed"
    if method == "joint":
        return solve_joint(problem)
    if method != "decomposed":
        raise ValueError(f"unknown method {method!r}: auto, joint or decomposed")
    if client is None:
        return solve_decomposed(problem, gap_tol=gap_tol, max_iter=max_iter)
    with DaskSites(client) as sites:
        return solve_decomposed(problem, map_fn=sites.map, map_blocks=sites.scatter, gap_tol=gap_tol, max_iter=max_iter)


def _policy_inputs(problem: FleetProblem, plan: FleetPlan | None = None, rule: str | None = None) -> dict:
    if plan is not None:
        return {"work_units": plan.work_units(), "active_servers": plan.active_servers(), "routed": plan.routed(),
                "transfer_kwh": plan.transfer_kwh(), "unfinished_units": 0.0}
    return dispatch(problem, rule)


def score_policies(inputs: FleetInputs, policies: dict[str, dict], client=None) -> dict[str, dict]:
    """Simulate every site under every policy (one task each) and sum per policy."""
    fleet, data = inputs.fleet, inputs.data
    args = []
    for name, pol in policies.items():
        for s, site in enumerate(fleet.sites):
            args.append((site, pol["work_units"][s], pol["active_servers"][s], data.temp_c[s], data.wetbulb_c[s],
                         data.ci_g_per_kwh[s], data.price_usd_per_mwh[s], float(pol["transfer_kwh"][s])))
    if client is None:
        sims = [simulate_site(*a) for a in args]
    else:
        sims = dask_map(client)(simulate_site, args)
    out: dict[str, dict] = {}
    k = 0
    for name, pol in policies.items():
        per_site = sims[k:k + len(fleet.sites)]
        k += len(fleet.sites)
        tot = {key: float(sum(r[key] for r in per_site)) for key in ("it_mwh", "cooling_mwh", "facility_mwh", "transfer_mwh",
                                                                     "tco2", "cost_usd")}
        tot["pue"] = tot["facility_mwh"] / max(tot["it_mwh"] - 0.0, 1e-9)
        tot["unfinished_units"] = float(pol["unfinished_units"])
        tot["work_moved_pct"] = _moved_pct(inputs.problem, pol["routed"])
        tot["per_site_tco2"] = {fleet.sites[s].name: r["tco2"] for s, r in enumerate(per_site)}
        tot["per_site_work_units"] = {fleet.sites[s].name: float(pol["work_units"][s].sum()) for s in range(len(fleet.sites))}
        out[name] = tot
    return out


def _moved_pct(p: FleetProblem, routed: np.ndarray) -> float:
    total = routed.sum()
    home = sum(routed[c, p.origin[c]].sum() for c in range(len(p.classes)))
    return float(100.0 * (total - home) / max(total, 1e-9))


def policy_table(scores: dict[str, dict]) -> str:
    lines = [f"{'policy':<16}{'tCO2':>10}{'MWh':>10}{'PUE':>7}{'USD':>12}{'moved %':>9}{'late units':>12}"]
    for name, r in scores.items():
        lines.append(f"{name:<16}{r['tco2']:>10.2f}{r['facility_mwh']:>10.1f}{r['pue']:>7.3f}{r['cost_usd']:>12.0f}"
                     f"{r['work_moved_pct']:>9.1f}{r['unfinished_units']:>12.0f}")
    return "\n".join(lines)


def _plan_frames(inputs: FleetInputs, plan: FleetPlan) -> tuple[pd.DataFrame, pd.DataFrame]:
    p, idx = inputs.problem, inputs.data.index
    cols = {}
    work, servers = plan.work_units(), plan.active_servers()
    for s, name in enumerate(p.sites):
        cols[f"work_units__{name}"] = work[s]
        cols[f"active_servers__{name}"] = servers[s]
    hourly = pd.DataFrame(cols, index=idx)
    routed = plan.routed()
    rows = [{"class": p.classes[c], "origin": p.sites[p.origin[c]], "site": p.sites[s], "units": float(routed[c, s].sum())}
            for c in range(len(p.classes)) for s in range(p.n_sites) if routed[c, s].sum() > 1e-6]
    return hourly, pd.DataFrame(rows)


def plan_fleet(path: str | Path, out: Path, method: str = "auto", workers: int = 2, scheduler: str | None = None,
               gap_tol: float = 5e-3, max_iter: int = 200) -> dict:
    """Plan the fleet and write plan_hourly.csv, routing.csv and summary.json to ``out``."""
    inputs = load_inputs(path)
    t0 = time.perf_counter()
    use_dask = method == "decomposed" or (method == "auto" and inputs.problem.n_sites > JOINT_MAX_SITES)
    if use_dask:
        with dask_client(workers, scheduler) as client:
            plan = make_plan(inputs.problem, method, client, gap_tol, max_iter)
    else:
        plan = make_plan(inputs.problem, method)
    wall = time.perf_counter() - t0
    hourly, routing = _plan_frames(inputs, plan)
    out.mkdir(parents=True, exist_ok=True)
    write_frame_atomic(out / "plan_hourly.csv", hourly)
    write_text_atomic(out / "routing.csv", routing.to_csv(index=False))
    summary = {"fleet": inputs.fleet.name, "method": plan.method, "sites": inputs.problem.n_sites,
               "start": inputs.data.index[0].isoformat(), "hours": inputs.problem.hours, "plan_s": wall,
               "certified_gap": plan.certified_gap, "lower_bound": plan.lower_bound, **plan_metrics(plan),
               "decomposition_log": plan.log.rows if plan.log else None}
    write_json_atomic(out / "summary.json", summary)
    return summary


def evaluate_fleet(path: str | Path, out: Path | None, method: str = "auto", workers: int = 2,
                   scheduler: str | None = None) -> dict:
    """Score the fleet plan against each site alone and the five rules (physics on Dask)."""
    inputs = load_inputs(path)
    p = inputs.problem
    with dask_client(workers, scheduler) as client:
        t0 = time.perf_counter()
        plan = make_plan(p, method, client)
        plan_s = time.perf_counter() - t0
        blocks = site_blocks(p)
        alone = solve_independent(p, blocks, map_fn=dask_map(client))
        policies = {f"fleet_{plan.method}": _policy_inputs(p, plan), "independent": _policy_inputs(p, alone)}
        for rule in RULES:
            policies[rule] = _policy_inputs(p, rule=rule)
        scores = score_policies(inputs, policies, client)
    fleet_key = f"fleet_{plan.method}"
    best_rule = min(RULES, key=lambda r: scores[r]["tco2"])
    result = {"fleet": inputs.fleet.name, "sites": p.n_sites, "hours": p.hours, "plan_method": plan.method,
              "plan_s": plan_s, "certified_gap": plan.certified_gap, "best_rule": best_rule,
              "saving_vs_best_rule_pct": 100.0 * (1 - scores[fleet_key]["tco2"] / scores[best_rule]["tco2"]),
              "saving_vs_independent_pct": 100.0 * (1 - scores[fleet_key]["tco2"] / scores["independent"]["tco2"]),
              "policies": scores}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / "evaluation.json", result)
        hourly, routing = _plan_frames(inputs, plan)
        write_frame_atomic(out / "plan_hourly.csv", hourly)
        write_text_atomic(out / "routing.csv", routing.to_csv(index=False))
        write_text_atomic(out / "table.txt", policy_table(scores) + "\n")
    return result
