"""`coolshift demo`: the whole chain on the bundled example site with bundled real data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from coolshift.commands._common import cli_errors, console, load_inputs

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SITE = REPO_ROOT / "configs" / "sites" / "sanjose_colo_2mw.yaml"


def register(app: typer.Typer) -> None:
    @app.command("demo")
    @cli_errors
    def demo(
        site: Annotated[Path, typer.Option(help="site configuration")] = DEFAULT_SITE,
        out: Annotated[Optional[Path], typer.Option(help="output folder")] = None,
    ) -> None:
        """Validate the bundled example site and summarise a year of its real data."""
        from coolshift.commands.data import data_table, fills_note, site_tables

        cfg, data = load_inputs(site, None, None)
        for t in site_tables(cfg):
            console.print(t)
        console.print(data_table(data))
        console.print(fills_note(data), highlight=False)
