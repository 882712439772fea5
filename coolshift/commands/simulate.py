"""`coolshift simulate`: run a policy on the physics simulator over a period.

Writes ``timeseries.parquet`` (or ``.csv``), ``summary.json`` and ``plot.png`` to ``--out``,
and optionally the run as facility telemetry (``--telemetry-out``) for training models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from coolshift.commands._common import (
    EXIT_BAD_INPUT, CarbonFmtOpt, CarbonOpt, EndOpt, SiteOpt, StartOpt, WeatherFmtOpt, WeatherOpt, WorkloadFmtOpt,
    WorkloadOpt, cli_errors, console, err_console, load_inputs,
)


def _fail(msg: str) -> None:
    err_console.print(f"[bold red]error:[/] {msg}", markup=True, highlight=False)
    raise typer.Exit(EXIT_BAD_INPUT)


def plot_run(ts, site_name: str, policy: str, path: Path) -> None:
    """PNG of the main series: power stack, PUE, inlet temperatures, carbon intensity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from coolshift.io.atomic import write_bytes_atomic

    # hourly means keep year-long plots readable
    h = ts.resample("1h").mean() if len(ts) > 2000 else ts
    fig, ax = plt.subplots(4, 1, figsize=(12, 11), sharex=True)
    ax[0].plot(h.index, h["facility_power_kw"], label="facility", lw=0.8)
    ax[0].plot(h.index, h["it_power_kw"], label="IT", lw=0.8)
    ax[0].plot(h.index, h["cooling_power_kw"], label="cooling", lw=0.8)
    ax[0].set_ylabel("kW")
    ax[0].legend(loc="upper right")
    ax[0].set_title(f"{site_name}: policy {policy}")
    ax[1].plot(h.index, h["pue"], lw=0.8, color="k")
    ax[1].set_ylabel("PUE")
    for c in [c for c in h.columns if c.startswith("inlet_temp_c__")]:
        ax[2].plot(h.index, h[c], lw=0.6, label=c.split("__", 1)[1])
    ax[2].plot(h.index, h["outside_temp_c"], lw=0.6, color="grey", label="outside")
    ax[2].set_ylabel("degC")
    ax[2].legend(loc="upper right", ncol=4, fontsize=7)
    ax[3].plot(h.index, h["gco2_per_kwh"], lw=0.8, color="tab:green")
    ax[3].set_ylabel("gCO2/kWh")
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    write_bytes_atomic(path, buf.getvalue())


def register(app: typer.Typer) -> None:
    @app.command("simulate")
    @cli_errors
    def simulate_cmd(
        site: SiteOpt,
        policy: Annotated[str, typer.Option("--policy", "-p", help="static, best_practice, carbon_greedy or explore")] = "best_practice",
        start: StartOpt = None,
        end: EndOpt = None,
        out: Annotated[Path, typer.Option("--out", "-o", help="output folder")] = Path("out/simulate"),
        step_minutes: Annotated[Optional[int], typer.Option("--step-minutes", help="simulator step (default: the site's planning step)")] = None,
        carbon: CarbonOpt = None,
        weather: WeatherOpt = None,
        workload: WorkloadOpt = None,
        carbon_format: CarbonFmtOpt = None,
        weather_format: WeatherFmtOpt = None,
        workload_format: WorkloadFmtOpt = None,
        telemetry_out: Annotated[Optional[Path], typer.Option("--telemetry-out", help="also write the run as telemetry CSV (schema of coolshift.schema)")] = None,
        seed: Annotated[int, typer.Option(help="seed for sensor noise and the explore policy")] = 0,
        csv: Annotated[bool, typer.Option("--csv", help="write timeseries.csv instead of parquet")] = False,
    ) -> None:
        """Simulate a baseline policy on the site's physics and write the per-step frame and summary."""
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        from coolshift.io.atomic import write_frame_atomic, write_json_atomic
        from coolshift.simulations import simulate
        from coolshift.actions import ActionError
        from coolshift.control.policies import get_policy
        from coolshift.control.policies import POLICIES
        from coolshift.simulations.telemetry import to_telemetry

        if policy not in POLICIES:
            _fail(f"unknown policy {policy!r}; choose one of {', '.join(sorted(POLICIES))}")
        if step_minutes is not None and (step_minutes <= 0 or (60 % step_minutes and step_minutes % 60)):
            _fail(f"--step-minutes {step_minutes}: must divide an hour (5, 10, 15, 30, 60) or be whole hours")
        cfg, data = load_inputs(site, start, end, carbon, weather, workload, carbon_format, weather_format,
                                workload_format, step_minutes)
        pol = get_policy(policy, seed=seed) if policy == "explore" else get_policy(policy)
        with Progress(TextColumn("[bold]simulate[/] {task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
                      TimeRemainingColumn(), console=console, transient=True) as prog:
            task = prog.add_task(f"{cfg.name} / {policy}", total=len(data))
            try:
                res = simulate(cfg, data, pol, progress=lambda done, total: prog.update(task, completed=done))
            except ActionError as exc:
                _fail(f"policy {policy}: {exc}")
        out.mkdir(parents=True, exist_ok=True)
        ts_path = out / ("timeseries.csv" if csv else "timeseries.parquet")
        write_frame_atomic(ts_path, res.timeseries)
        summary = {"site": cfg.name, "site_config": str(site), **res.summary}
        write_json_atomic(out / "summary.json", summary)
        plot_run(res.timeseries, cfg.name, policy, out / "plot.png")
        if telemetry_out is not None:
            tel = to_telemetry(res.timeseries, res.names.zones, res.names.pools, seed=seed)
            write_frame_atomic(telemetry_out, tel)
        s = res.summary
        console.print(
            f"{cfg.name} / {policy}: {s['steps']} steps of {s['step_minutes']:g} min; IT {s['it_kwh'] / 1e3:,.0f} MWh, "
            f"facility {s['facility_kwh'] / 1e3:,.0f} MWh, PUE {s['pue']:.3f}, {s['tco2_location']:,.1f} tCO2 location / "
            f"{s['tco2_market']:,.1f} market, WUE {s['wue_l_per_kwh']:.2f} L/kWh; SLA violations {s['sla_violations']}, "
            f"late work {s['late_work_units']:,.0f} units, thermal violations {s['thermal_violation_minutes']:,.0f} min"
        )
        console.print(f"wrote {ts_path}, {out / 'summary.json'}, {out / 'plot.png'}"
                      + (f", {telemetry_out}" if telemetry_out else ""))
