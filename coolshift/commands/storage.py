"""`coolshift battery`: the battery-sizing what-if (:mod:`coolshift.whatif.battery`) from the command line.

Plans the period day by day with each candidate battery and without one, on the data as
given (perfect information), and prints and writes (sizing.csv, sizing.json, atomically)
the carbon and bill saved per year against the battery's embodied carbon and capex.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from coolshift.commands._common import EXIT_BAD_INPUT, SiteOpt, cli_errors, console, err_console


def _fail(msg: str, code: int = EXIT_BAD_INPUT) -> None:
    err_console.print(f"[bold red]error:[/] {msg}", markup=True, highlight=False)
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    @app.command("battery")
    @cli_errors
    def battery_cmd(
        site_path: SiteOpt,
        start: Annotated[str, typer.Option(help="first day, YYYY-MM-DD (00:00 UTC)")],
        days: Annotated[int, typer.Option(help="days to plan (one horizon each)")] = 7,
        sizes_kwh: Annotated[str, typer.Option("--sizes-kwh", help="battery energies to compare, kWh, comma-separated")] = "500,1000,2000,4000",
        c_rate: Annotated[float, typer.Option(help="power as a multiple of energy per hour (0.5: 2-hour battery)")] = 0.5,
        objective: Annotated[str, typer.Option(help="what each day's plan minimises: carbon, cost or weighted")] = "carbon",
        out: Annotated[Optional[Path], typer.Option(help="output folder (default runs/<site>/battery-<start>)")] = None,
        workdir: Annotated[Optional[Path], typer.Option(help="site working folder with mlflow.db (default ./.coolshift/<site>)")] = None,
    ) -> None:
        """Size a battery: carbon and money saved per year against embodied carbon and capex (paybacks).

        Needs a registered plant model (`coolshift train`); prices come from the config's
        `tariff:` block (without one the bill columns are zero). Exit 0 written, 2 bad input.
        """
        import pandas as pd

        from coolshift.io.atomic import write_frame_atomic, write_json_atomic
        from coolshift.io.prices import with_prices
        from coolshift.optimizer import PlanOptions
        from coolshift.usecases.inputs import NoPlantModel, load_inputs, registered_plant_model, utc_time
        from coolshift.whatif.battery import size_batteries

        try:
            sizes = [float(s) for s in sizes_kwh.split(",") if s.strip()]
        except ValueError:
            _fail(f"--sizes-kwh must be numbers separated by commas, not {sizes_kwh[:40]!r}")
        if not sizes or any(s < 0 for s in sizes) or len(sizes) > 20:
            _fail("--sizes-kwh: give 1 to 20 sizes, each >= 0 kWh")
        if days < 1 or days > 366 or c_rate <= 0 or c_rate > 4:
            _fail("--days must be 1..366 and --c-rate in (0, 4]")
        if objective not in ("carbon", "cost", "weighted"):
            _fail(f"--objective must be carbon, cost or weighted, not {objective[:20]!r}")
        t0 = utc_time(start, "--start").normalize()
        site, data = load_inputs(site_path, t0, t0 + pd.Timedelta(days=days))
        data = with_prices(site, data)
        if objective != "carbon" and site.tariff is None:
            _fail(f"{site_path}: --objective {objective} needs a `tariff:` block")
        try:
            model = registered_plant_model(site, workdir)
        except NoPlantModel as exc:
            _fail(str(exc))
        opts = PlanOptions(deadline_prices=False, objective=objective, decision_envelope=getattr(model, "envelope_", None))
        with console.status(f"planning {days} day(s) for {len(sizes) + 1} battery size(s)"):
            table = size_batteries(site, model.coefficients, data, sizes, c_rate, opts)
        out_dir = out or Path("runs") / site.name / f"battery-{t0:%Y-%m-%d}"
        write_frame_atomic(out_dir / "sizing.csv", table.set_index("energy_kwh"))
        write_json_atomic(out_dir / "sizing.json", {
            "site": site.name, "start": t0.isoformat(), "days": days, "c_rate": c_rate, "objective": objective,
            "information": "perfect (the data as given): an upper bound of what each size saves",
            "rows": [{k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()} for r in table.to_dict(orient="records")],
        })
        from rich.table import Table

        t = Table(title=f"Battery sizing, {site.name}, {days} day(s) from {t0:%Y-%m-%d} (perfect information, annualised)")
        for c in ("kWh", "kW", "tCO2/yr saved", "kUSD/yr saved", "embodied tCO2", "carbon payback (months)",
                  "capex kUSD", "payback (years)"):
            t.add_column(c, justify="right")
        fmt = lambda v, f: "-" if v is None or v != v else format(v, f)  # noqa: E731
        for r in table.itertuples():
            t.add_row(f"{r.energy_kwh:,.0f}", f"{r.power_kw:,.0f}", fmt(r.saved_tco2_per_year, ",.1f"),
                      fmt(r.saved_usd_per_year / 1000, ",.1f"), fmt(r.embodied_tco2, ",.1f"), fmt(r.carbon_payback_months, ",.1f"),
                      fmt(r.capex_usd / 1000, ",.0f"), fmt(r.payback_years, ",.1f"))
        console.print(t)
        console.print(f"wrote {out_dir / 'sizing.csv'} and {out_dir / 'sizing.json'}")
