"""``coolshift whatif``: scenarios and sweeps against the current site, on Dask."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from ._common import (
    EXIT_BAD_INPUT,
    EXIT_FAILURE,
    EXIT_OK,
    CarbonFmtOpt,
    CarbonOpt,
    EndOpt,
    StartOpt,
    WeatherFmtOpt,
    WeatherOpt,
    WorkloadFmtOpt,
    WorkloadOpt,
    cli_errors,
    console,
    err_console,
)

ScenarioOpt = Annotated[Optional[List[Path]], typer.Option("--scenario", help="scenario YAML (repeatable), e.g. configs/whatif/virtualisation.yaml")]
SweepOpt = Annotated[Optional[List[Path]], typer.Option("--sweep", help="sweep YAML: a grid over a base scenario (repeatable)")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="output folder (whatif.json, report.html, scenarios/, mlflow.db)")]
SchedulerOpt = Annotated[Optional[str], typer.Option("--scheduler", help="existing Dask scheduler, tcp://HOST:PORT (default: a LocalCluster)")]
WorkersOpt = Annotated[Optional[int], typer.Option("--workers", min=0, help="LocalCluster worker processes (default: one per core; 0: run in this process)")]


SitesOpt = Annotated[List[Path], typer.Option("--site", "-s", help="site configuration YAML; repeat for a fleet study (each site x each scenario is a task)")]


def _labels(sites: list) -> list[str]:
    """A fleet's site labels: each site's name, made unique with -2, -3 ... when repeated."""
    seen: dict[str, int] = {}
    out = []
    for cfg in sites:
        seen[cfg.name] = seen.get(cfg.name, 0) + 1
        out.append(cfg.name if seen[cfg.name] == 1 else f"{cfg.name}-{seen[cfg.name]}")
    return out


def register(app: typer.Typer) -> None:
    @app.command("whatif")
    @cli_errors
    def whatif(
        site: SitesOpt,
        out: OutOpt,
        scenario: ScenarioOpt = None,
        sweep: SweepOpt = None,
        start: StartOpt = None,
        end: EndOpt = None,
        scheduler: SchedulerOpt = None,
        workers: WorkersOpt = None,
        step_minutes: Annotated[Optional[int], typer.Option(help="simulation step (default: the site's planning step)")] = None,
        baseline_policy: Annotated[str, typer.Option(help="baseline policy: best_practice, static or carbon_greedy")] = "best_practice",
        policy: Annotated[str, typer.Option(help="the Coolshift role: coolshift (optimiser on a plant model learned per "
                                                 "scenario) or a rule policy such as carbon_greedy (cheaper; named a stand-in)")] = "coolshift",
        forecast: Annotated[str, typer.Option(help="what the coolshift policy plans on: perfect|model|noise5|noise10")] = "perfect",
        train_days: Annotated[int, typer.Option(min=2, help="days of simulated commissioning telemetry (explore) before the "
                                                           "period that each scenario's plant model is trained on")] = 28,
        interval_h: Annotated[float, typer.Option("--interval-h", min=0.25, help="coolshift re-plans every N hours")] = 4.0,
        accounting: Annotated[Optional[str], typer.Option(help="location or market (default: the site's planning.accounting)")] = None,
        mlflow: Annotated[bool, typer.Option("--mlflow/--no-mlflow", help="log a parent run and a child run per scenario")] = True,
        resume: Annotated[bool, typer.Option("--resume/--no-resume", help="keep finished scenario results in OUT/scenarios")] = True,
        carbon: CarbonOpt = None,
        weather: WeatherOpt = None,
        workload: WorkloadOpt = None,
        carbon_format: CarbonFmtOpt = None,
        weather_format: WeatherFmtOpt = None,
        workload_format: WorkloadFmtOpt = None,
    ) -> None:
        """Evaluate what-if scenarios (baseline and Coolshift policy) side by side against the current site, for one site or a fleet."""

        from coolshift.config import load_site
        from coolshift.control.evaluation import FORECAST_MODES
        from coolshift.io.atomic import write_json_atomic, write_text_atomic
        from coolshift.io.site_data import override_source
        from coolshift.whatif.scenario_run import PolicyUnavailable, choose_policies, needs_plant_model
        from coolshift.whatif.report import render_report
        from coolshift.whatif.scenario import expand_sweep, load_scenario
        from coolshift.whatif.study import (ScenarioSpec, build_tasks, compile_fleet, compile_whatif, load_study_data,
                                            run_scenario_task)
        from coolshift.whatif.sweep import run_loop, run_sweep

        from ._common import default_period

        if forecast not in FORECAST_MODES:
            err_console.print(f"[bold red]error:[/] --forecast {forecast!r}: choose from {', '.join(FORECAST_MODES)}")
            raise typer.Exit(EXIT_BAD_INPUT)
        fleet = len(site) > 1
        if fleet and any(x is not None for x in (carbon, weather, workload)):
            err_console.print("[bold red]error:[/] --carbon/--weather/--workload override one site's data: not with several --site")
            raise typer.Exit(EXIT_BAD_INPUT)
        specs = [ScenarioSpec(load_scenario(p), str(p), Path(p).resolve().parent) for p in scenario or []]
        for sw in sweep or []:
            specs += [ScenarioSpec(s, str(sw), d) for s, d in expand_sweep(sw)]
        if not specs:
            err_console.print("[bold red]error:[/] give at least one --scenario or --sweep file")
            raise typer.Exit(EXIT_BAD_INPUT)
        try:
            policies = choose_policies(baseline_policy, policy)
        except PolicyUnavailable as exc:
            err_console.print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(EXIT_BAD_INPUT) from None
        if policies["stand_in_for"]:
            console.print(f"[yellow]note:[/] {policies['note']}")
        learn = needs_plant_model(policies)

        bases = []
        for path in site:
            raw = load_site(path)
            # Command-line data sources become top-level overrides of the current site, applied
            # identically by every worker (relative parts such as a trace's start are kept).
            site_overrides = {
                key: override_source(getattr(raw, key), src, fmt).model_dump(mode="json")
                for key, src, fmt in (("carbon", carbon, carbon_format), ("weather", weather, weather_format),
                                      ("workload", workload, workload_format))
                if src is not None
            }
            bases.append((path, load_site(path, **site_overrides), site_overrides))
        labels = _labels([b for _, b, _ in bases])
        out.mkdir(parents=True, exist_ok=True)
        res_dir = out / "scenarios"
        tasks, shared, per_site = [], {}, {}
        for label, (path, base, site_overrides) in zip(labels, bases):
            acc = accounting or base.planning.accounting
            if acc not in ("location", "market"):
                err_console.print(f"[bold red]error:[/] --accounting must be location or market, not {acc!r}")
                raise typer.Exit(EXIT_BAD_INPUT)
            t0, t1 = default_period(base, start, end)
            step = step_minutes or base.planning.step_minutes
            with console.status(f"loading {label} data ..."):
                data, train = load_study_data(base, t0, t1, step, train_days if learn else None)
            if train is not None and not train["note"].startswith("commissioning over the"):
                console.print(f"[yellow]note:[/] {label}: {train['note']}")
            site_tasks = build_tasks(path, base, specs, t0, t1, step, policies, site_overrides=site_overrides, train=train,
                                     forecast=forecast, interval_h=interval_h, model_cache_dir=out / "plant_models",
                                     site_label=label if fleet else None, strict=not fleet)
            tasks += site_tasks
            shared[label] = data
            per_site[label] = {"site": base.name, "site_config": str(Path(path).resolve()), "start": t0.isoformat(),
                               "end": t1.isoformat(), "step_minutes": step, "accounting": acc, "train": train,
                               "scenarios": [t.name for t in site_tasks]}
            console.print(f"{label}: {len(site_tasks)} scenarios (current site + {len(site_tasks) - 1}), {t0.date()} to "
                          f"{t1.date()} at {step} min")
        shared_data = shared if fleet else shared[labels[0]]
        console.print(f"{len(tasks)} tasks; results in {res_dir}"
                      + (f"; each trains its plant model on {train_days} days of commissioning (cached in "
                         f"{out / 'plant_models'})" if learn else ""))
        if workers == 0:
            outcome = run_loop(tasks, run_scenario_task, res_dir, shared_data, progress=True, resume=resume)
        else:
            try:
                outcome = run_sweep(tasks, run_scenario_task, res_dir, shared_data, scheduler=scheduler, n_workers=workers,
                                    progress=True, resume=resume)
            except (OSError, TimeoutError) as exc:
                if not scheduler:
                    raise
                err_console.print(f"[bold red]error:[/] cannot reach the Dask scheduler {scheduler}: {exc}", highlight=False)
                raise typer.Exit(EXIT_BAD_INPUT) from None
        order = [t.name for t in tasks]
        if fleet:
            nested = compile_fleet(outcome.records, labels, order=order,
                                   accounting={lb: per_site[lb]["accounting"] for lb in labels})
            rows = {f"{lb}@{n}": r for lb in labels for n, r in nested[lb].items()}
        else:
            nested = rows = compile_whatif(outcome.records, per_site[labels[0]]["accounting"], order=order)
        first = per_site[labels[0]]
        meta = {
            "site": ", ".join(labels), "site_config": first["site_config"] if not fleet else [p["site_config"] for p in per_site.values()],
            "start": first["start"], "end": first["end"], "step_minutes": first["step_minutes"],
            "accounting": first["accounting"], "policies": policies, "forecast": forecast if learn else None,
            "train_days": train_days if learn else None, "replan_interval_h": interval_h if learn else None,
            "scheduler": outcome.scheduler, "workers": outcome.workers, "computed": len(outcome.computed),
            "resumed": len(outcome.skipped), "failed": outcome.failed, "elapsed_s": round(outcome.elapsed_s, 2),
        }
        if fleet:
            meta["fleet"] = per_site
        else:
            meta["train"] = first["train"]
        write_json_atomic(out / "whatif.json", nested)
        write_json_atomic(out / "run.json", meta)
        write_text_atomic(out / "report.html", render_report(rows, meta))
        if mlflow:
            from coolshift.whatif.tracking import log_study

            docs = {t.name: t.payload["scenario"] for t in tasks}
            info = log_study(out, rows, meta, docs, [out / "whatif.json", out / "report.html", out / "run.json"])
            meta["mlflow"] = info
            write_json_atomic(out / "run.json", meta)
        _print_table(rows)
        fb = {n: r["by_policy"]["coolshift"]["planner"]["fallback_plans"] for n, r in rows.items()
              if r.get("status") == "ok" and (r["by_policy"].get("coolshift") or {}).get("planner")
              and r["by_policy"]["coolshift"]["planner"]["fallback_plans"]}
        if fb:
            console.print(f"[yellow]note:[/] coolshift fell back to the rule in some plans: {fb} (see by_policy.coolshift.planner)")
        console.print(f"computed {len(outcome.computed)}, resumed {len(outcome.skipped)}, failed {len(outcome.failed)} "
                      f"in {outcome.elapsed_s:.1f} s on {outcome.scheduler}")
        console.print(f"wrote {out / 'whatif.json'} and {out / 'report.html'}")
        if outcome.failed:
            for n, e in outcome.failed.items():
                err_console.print(f"[bold red]failed:[/] {n}: {e}", highlight=False)
            raise typer.Exit(EXIT_FAILURE)
        raise typer.Exit(EXIT_OK)


def _print_table(rows: dict) -> None:
    from rich import box
    from rich.table import Table

    ok = [r for r in rows.values() if r.get("status") == "ok"]
    head = ok[0]["headline_policy"] + (f", stand-in for {ok[0]['stand_in_for']}" if ok and ok[0].get("stand_in_for") else "") if ok else "-"
    t = Table(title=f"what-if, headline policy: {head}", box=box.SIMPLE_HEAD, pad_edge=False)
    for c in ("scenario", "MWh", "PUE", "tCO2 op", "tCO2 emb", "net tCO2", "payback mo"):
        t.add_column(c, justify="left" if c == "scenario" else "right", no_wrap=c != "scenario", overflow="fold",
                     min_width=min(max([18] + [len(n) for n in rows]), 48) if c == "scenario" else None)
    f = lambda v, d=1: "-" if v is None else f"{v:,.{d}f}"  # noqa: E731
    for n, r in rows.items():
        if r.get("status") != "ok":
            t.add_row(n, "[red]failed[/]", *["-"] * 5)
            continue
        t.add_row(n, f(r["facility_kwh"] / 1000.0, 0), f(r["pue"], 3), f(r["tco2_operational"]),
                  f(r["tco2_embodied"]), f(r["net_tco2_change_vs_baseline"]), f(r["payback_months"]))
    console.print(t)
