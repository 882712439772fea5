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
    SiteOpt,
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


def register(app: typer.Typer) -> None:
    @app.command("whatif")
    @cli_errors
    def whatif(
        site: SiteOpt,
        out: OutOpt,
        scenario: ScenarioOpt = None,
        sweep: SweepOpt = None,
        start: StartOpt = None,
        end: EndOpt = None,
        scheduler: SchedulerOpt = None,
        workers: WorkersOpt = None,
        step_minutes: Annotated[Optional[int], typer.Option(help="simulation step (default: the site's planning step)")] = None,
        baseline_policy: Annotated[str, typer.Option(help="baseline policy (simulator registry name)")] = "static",
        policy: Annotated[str, typer.Option(help="Coolshift policy; a registered stand-in is used (and named) when it is not available")] = "coolshift",
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
        """Evaluate what-if scenarios (baseline and Coolshift policy) side by side against the current site."""

        from coolshift.config import load_site
        from coolshift.io import load_site_data
        from coolshift.io.atomic import write_json_atomic, write_text_atomic
        from coolshift.whatif.evaluate import PolicyUnavailable, choose_policies
        from coolshift.whatif.report import render_report
        from coolshift.whatif.scenario import expand_sweep, load_scenario
        from coolshift.whatif.study import ScenarioSpec, build_tasks, compile_whatif, run_scenario_task
        from coolshift.whatif.sweep import run_loop, run_sweep

        from ._common import default_period

        from coolshift.io.site_data import override_source

        raw = load_site(site)
        # Command-line data sources become top-level overrides of the current site, applied
        # identically by every worker (relative parts such as a trace's start are kept).
        site_overrides = {
            key: override_source(getattr(raw, key), path, fmt).model_dump(mode="json")
            for key, path, fmt in (("carbon", carbon, carbon_format), ("weather", weather, weather_format),
                                   ("workload", workload, workload_format))
            if path is not None
        }
        base = load_site(site, **site_overrides)
        specs = [ScenarioSpec(load_scenario(p), str(p), Path(p).resolve().parent) for p in scenario or []]
        for sw in sweep or []:
            specs += [ScenarioSpec(s, str(sw), d) for s, d in expand_sweep(sw)]
        if not specs:
            err_console.print("[bold red]error:[/] give at least one --scenario or --sweep file")
            raise typer.Exit(EXIT_BAD_INPUT)
        acc = accounting or base.planning.accounting
        if acc not in ("location", "market"):
            err_console.print(f"[bold red]error:[/] --accounting must be location or market, not {acc!r}")
            raise typer.Exit(EXIT_BAD_INPUT)
        try:
            policies = choose_policies(baseline_policy, policy)
        except PolicyUnavailable as exc:
            err_console.print(f"[bold red]error:[/] {exc}")
            raise typer.Exit(EXIT_BAD_INPUT) from None
        if policies["stand_in_for"]:
            console.print(f"[yellow]note:[/] {policies['note']}")
        t0, t1 = default_period(base, start, end)
        step = step_minutes or base.planning.step_minutes
        data = load_site_data(base, t0, t1, step_minutes=step)
        tasks = build_tasks(site, base, specs, t0, t1, step, policies, site_overrides=site_overrides)
        out.mkdir(parents=True, exist_ok=True)
        res_dir = out / "scenarios"
        console.print(f"{len(tasks)} scenarios (current site + {len(tasks) - 1}), {t0.date()} to {t1.date()} at "
                      f"{step} min; results in {res_dir}")
        if workers == 0:
            outcome = run_loop(tasks, run_scenario_task, res_dir, data, progress=True, resume=resume)
        else:
            try:
                outcome = run_sweep(tasks, run_scenario_task, res_dir, data, scheduler=scheduler, n_workers=workers,
                                    progress=True, resume=resume)
            except (OSError, TimeoutError) as exc:
                if not scheduler:
                    raise
                err_console.print(f"[bold red]error:[/] cannot reach the Dask scheduler {scheduler}: {exc}", highlight=False)
                raise typer.Exit(EXIT_BAD_INPUT) from None
        rows = compile_whatif(outcome.records, acc, order=[t.name for t in tasks])
        meta = {
            "site": base.name, "site_config": str(Path(site).resolve()), "start": t0.isoformat(), "end": t1.isoformat(),
            "step_minutes": step, "accounting": acc, "policies": policies, "scheduler": outcome.scheduler,
            "workers": outcome.workers, "computed": len(outcome.computed), "resumed": len(outcome.skipped),
            "failed": outcome.failed, "elapsed_s": round(outcome.elapsed_s, 2),
        }
        write_json_atomic(out / "whatif.json", rows)
        write_json_atomic(out / "run.json", meta)
        write_text_atomic(out / "report.html", render_report(rows, meta))
        if mlflow:
            from coolshift.whatif.tracking import log_study

            docs = {t.name: t.payload["scenario"] for t in tasks}
            info = log_study(out, rows, meta, docs, [out / "whatif.json", out / "report.html", out / "run.json"])
            meta["mlflow"] = info
            write_json_atomic(out / "run.json", meta)
        _print_table(rows)
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
                     min_width=18 if c == "scenario" else None)
    f = lambda v, d=1: "-" if v is None else f"{v:,.{d}f}"  # noqa: E731
    for n, r in rows.items():
        if r.get("status") != "ok":
            t.add_row(n, "[red]failed[/]", *["-"] * 5)
            continue
        t.add_row(n, f(r["facility_kwh"] / 1000.0, 0), f(r["pue"], 3), f(r["tco2_operational"]),
                  f(r["tco2_embodied"]), f(r["net_tco2_change_vs_baseline"]), f(r["payback_months"]))
    console.print(t)
