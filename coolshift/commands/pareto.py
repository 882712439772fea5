"""`coolshift pareto`: the cost-carbon frontier of one day's plan (epsilon constraint).

Loads the site, its data and the registered plant model as `coolshift plan` does, prices
every step with the site's tariff, and solves the least-carbon plan, the least-cost plan
and the least-cost plans under evenly spaced carbon caps between them
(:func:`coolshift.optimizer.pareto.frontier`). Writes frontier.csv, frontier.json and
frontier.png (atomically) and prints the table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from coolshift.commands._common import EXIT_BAD_INPUT, EXIT_FAILURE, SiteOpt, cli_errors, console, err_console


def _fail(msg: str, code: int = EXIT_BAD_INPUT) -> None:
    err_console.print(f"[bold red]error:[/] {msg}", markup=True, highlight=False)
    raise typer.Exit(code)


def _plot(table, path: Path, title: str) -> None:
    """The frontier as a PNG: tCO2 against USD, anchors labelled, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import io

    from coolshift.io.atomic import write_bytes_atomic

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ax.plot(table["kgco2"] / 1000.0, table["cost_usd"], "o-", color="tab:green")
    for _, r in table.iterrows():
        if r["kind"] != "capped":
            ax.annotate(r["kind"], (r["kgco2"] / 1000.0, r["cost_usd"]), textcoords="offset points", xytext=(6, 6), fontsize=8)
    ax.set_xlabel("tCO2 over the horizon (predicted)")
    ax.set_ylabel("cost, USD (energy + demand charge + storage wear)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    write_bytes_atomic(path, buf.getvalue())
    plt.close(fig)


def register(app: typer.Typer) -> None:
    @app.command("pareto")
    @cli_errors
    def pareto_cmd(
        site_path: SiteOpt,
        for_: Annotated[str, typer.Option("--for", help="the day to plan: YYYY-MM-DD (00:00 UTC), today or tomorrow")],
        points: Annotated[int, typer.Option(help="frontier points, anchors included (>= 2)")] = 5,
        out: Annotated[Optional[Path], typer.Option(help="output folder (default runs/<site>/<date>/pareto)")] = None,
        forecast: Annotated[str, typer.Option(help="model (forecasters trained before the day) or perfect (the data)")] = "model",
        workdir: Annotated[Optional[Path], typer.Option(help="site working folder with mlflow.db (default ./.coolshift/<site>)")] = None,
        battery: Annotated[bool, typer.Option("--storage/--no-storage", help="plan with the config's storage (if any)")] = True,
    ) -> None:
        """Trace the cost-carbon frontier of one day: least carbon, least cost, and least cost under carbon caps between.

        Needs a `tariff:` block in the site config (energy prices, optional demand charge) and a
        registered plant model (`coolshift train`). Exit codes: 0 frontier written, 2 bad input,
        1 failure (an anchor plan not optimal).
        """
        import pandas as pd

        from coolshift.config import load_site
        from coolshift.control.receding import cap_interactive_demand
        from coolshift.io import DataError
        from coolshift.io.atomic import write_frame_atomic, write_json_atomic
        from coolshift.io.prices import with_prices
        from coolshift.optimizer import InitialState, PlanOptions
        from coolshift.optimizer.pareto import frontier
        from coolshift.usecases.inputs import NoPlantModel, load_inputs
        from coolshift.usecases.nightly import HISTORY_DAYS, horizon_forecast, load_coefficients, plan_start

        if points < 2 or points > 50:
            _fail(f"--points must be between 2 and 50, not {points}")
        if forecast not in ("model", "perfect"):
            _fail(f"--forecast must be model or perfect, not {forecast[:20]!r}")
        try:
            t0 = plan_start(for_, None)
        except ValueError as exc:
            _fail(str(exc))
        site = load_site(site_path)
        if site.tariff is None:
            _fail(f"{site_path}: no `tariff:` block: a frontier needs energy prices (see docs/storage.md)")
        t1 = t0 + pd.Timedelta(hours=site.planning.horizon_h)
        h0 = t0 - pd.Timedelta(days=HISTORY_DAYS) if forecast == "model" else t0
        try:
            site, full = load_inputs(site_path, h0, t1)
        except DataError:
            if forecast != "model":
                raise
            site, full = load_inputs(site_path, t0, t1)
        data, _ = horizon_forecast(full, t0, forecast)
        if forecast == "model":
            data = cap_interactive_demand(site, data)
        data = with_prices(site, data)
        try:
            coefs, envelope = load_coefficients(site, data, site_path, workdir)
        except NoPlantModel as exc:
            _fail(str(exc))
        opts = PlanOptions(decision_envelope=envelope, use_storage=battery)
        with console.status("solving the frontier"):
            try:
                table, _ = frontier(site, coefs, data, InitialState.from_site(site), points, opts)
            except ValueError as exc:
                _fail(str(exc), EXIT_FAILURE)
        out_dir = out or Path("runs") / site.name / f"{t0:%Y-%m-%d}" / "pareto"
        write_frame_atomic(out_dir / "frontier.csv", table.set_index("point"))
        write_json_atomic(out_dir / "frontier.json", {
            "site": site.name, "start": t0.isoformat(), "end": t1.isoformat(), "forecast": forecast,
            "storage": [u.name for u in site.storage] if battery else [],
            "points": table.to_dict(orient="records"),
        })
        _plot(table, out_dir / "frontier.png", f"{site.name}, {t0:%Y-%m-%d} + {site.planning.horizon_h} h: cost against carbon")
        from rich.table import Table

        t = Table(title=f"Cost-carbon frontier, {site.name}, {t0:%Y-%m-%d} ({forecast} forecast)")
        for c in ("point", "", "tCO2", "cost USD", "energy USD", "demand USD", "USD per tCO2 avoided"):
            t.add_column(c, justify="right")
        last = table.iloc[-1]
        for _, r in table.iterrows():
            dk = (last["kgco2"] - r["kgco2"]) / 1000.0
            mac = (r["cost_usd"] - last["cost_usd"]) / dk if dk > 1e-9 else float("nan")
            t.add_row(str(r["point"]), r["kind"], f"{r['kgco2'] / 1000:,.3f}", f"{r['cost_usd']:,.0f}",
                      f"{r['energy_usd']:,.0f}", f"{r['demand_usd']:,.0f}", "-" if mac != mac else f"{mac:,.0f}")
        console.print(t)
        console.print(f"wrote {out_dir / 'frontier.csv'}, {out_dir / 'frontier.json'} and {out_dir / 'frontier.png'}")
