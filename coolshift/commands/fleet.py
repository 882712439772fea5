"""`coolshift fleet plan` and `coolshift fleet evaluate`: a fleet of sites planned jointly.

Exit codes: 0 written; 2 bad input (the fleet file, its data, or a fleet that cannot serve its
work: the message names the site or class); 1 a bug.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from coolshift.commands._common import EXIT_BAD_INPUT, cli_errors, console, err_console

fleet_app = typer.Typer(help="A fleet of sites: move batch work across regions and time, planned jointly.",
                        no_args_is_help=True)

FleetOpt = Annotated[Path, typer.Option("--fleet", "-f", help="fleet configuration YAML (configs/fleets/)")]
OutOpt = Annotated[Path, typer.Option("--out", help="output folder")]
MethodOpt = Annotated[str, typer.Option("--method", help="auto (joint LP up to 8 sites), joint, decomposed (by site on Dask)")]
WorkersOpt = Annotated[int, typer.Option("--workers", min=1, help="Dask LocalCluster worker processes")]
SchedOpt = Annotated[Optional[str], typer.Option("--scheduler", help="address of a running Dask scheduler (tcp://host:8786) "
                                                  "instead of a LocalCluster")]


def register(app: typer.Typer) -> None:
    app.add_typer(fleet_app, name="fleet")


def _infeasible(exc) -> None:
    err_console.print(f"[bold red]error:[/] infeasible fleet: {exc}", markup=True, highlight=False)
    raise typer.Exit(EXIT_BAD_INPUT)


@fleet_app.command("plan", help="Plan the fleet (plan_hourly.csv, routing.csv, summary.json).")
@cli_errors
def plan(fleet: FleetOpt, out: OutOpt, method: MethodOpt = "auto", workers: WorkersOpt = 2, scheduler: SchedOpt = None,
         gap: Annotated[float, typer.Option("--gap", min=0, help="decomposed: stop at this certified relative gap")] = 5e-3,
         max_iter: Annotated[int, typer.Option("--max-iter", min=1, help="decomposed: iteration limit")] = 200) -> None:
    from coolshift.fleet.usecase import plan_fleet
    from coolshift.optimizer.fleet import FleetInfeasible

    if method not in ("auto", "joint", "decomposed"):
        raise typer.BadParameter("--method must be auto, joint or decomposed")
    try:
        s = plan_fleet(fleet, out, method=method, workers=workers, scheduler=scheduler, gap_tol=gap, max_iter=max_iter)
    except FleetInfeasible as exc:
        _infeasible(exc)
    gap_txt = f", certified gap {100 * s['certified_gap']:.2f} %" if s["certified_gap"] is not None else ""
    console.print(f"{s['fleet']}: {s['sites']} sites, {s['hours']} h, {s['method']} plan in {s['plan_s']:.1f} s{gap_txt}; "
                  f"{s['tco2']:.2f} tCO2 (planner's model), {s['transfer_mwh']:.2f} MWh moving data -> {out}")


@fleet_app.command("evaluate", help="Score the fleet plan against each site alone and SustainCluster's five rules.")
@cli_errors
def evaluate(fleet: FleetOpt, out: OutOpt, method: MethodOpt = "auto", workers: WorkersOpt = 2,
             scheduler: SchedOpt = None) -> None:
    from coolshift.fleet.usecase import evaluate_fleet, policy_table
    from coolshift.optimizer.fleet import FleetInfeasible

    try:
        r = evaluate_fleet(fleet, out, method=method, workers=workers, scheduler=scheduler)
    except FleetInfeasible as exc:
        _infeasible(exc)
    console.print(policy_table(r["policies"]), highlight=False)
    console.print(f"fleet plan vs best rule ({r['best_rule']}): {r['saving_vs_best_rule_pct']:.1f} % less CO2; "
                  f"vs each site alone: {r['saving_vs_independent_pct']:.1f} % -> {out}", highlight=False)
