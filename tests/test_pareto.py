"""The cost-carbon frontier (epsilon constraint): monotone, anchored on the two single-objective
plans, and the `coolshift pareto` command on the bundled San Jose example."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from coolshift.cli import app
from coolshift.config import SiteConfig
from coolshift.optimizer import PlanOptions, plan_site
from coolshift.optimizer.pareto import frontier
from synthetic import tiny_forecast, tiny_site, zero_coefficients

SITE = "configs/sites/sanjose_colo_2mw.yaml"


def _site() -> SiteConfig:
    d = tiny_site(horizon_h=4).model_dump()
    d["tariff"] = {"energy_usd_per_kwh": 0.0}
    d["storage"] = [{"name": "bat", "energy_kwh": 2.0, "charge_kw": 1.0, "discharge_kw": 1.0}]
    return SiteConfig.model_validate(d)


def test_frontier_is_monotone_and_anchored():
    site = _site()
    # cheap hours are the dirty ones: cost and carbon pull the batch work and the battery apart
    fc = tiny_forecast(site, [600.0, 500.0, 150.0, 100.0], batch_units_per_h=[6.0, 0.0, 0.0, 0.0],
                       price_usd_per_kwh=[0.05, 0.06, 0.25, 0.30])
    co = zero_coefficients(site, fc.index)
    table, plans = frontier(site, co, fc, points=6, options=PlanOptions(move_penalty_kg_per_c=0.0))
    assert len(table) == 6 and list(table["kind"].iloc[[0, -1]]) == ["least carbon", "least cost"]
    kg, usd = table["kgco2"].to_numpy(), table["cost_usd"].to_numpy()
    assert (np.diff(kg) >= -1e-6).all() and (np.diff(usd) <= 1e-7).all()
    assert kg[-1] - kg[0] > 0.5 and usd[0] - usd[-1] > 0.1  # a real trade-off, not one point
    # the anchors are the single-objective optima
    low = plan_site(site, co, fc, options=PlanOptions(move_penalty_kg_per_c=0.0, deadline_prices=False))
    cheap = plan_site(site, co, fc, options=PlanOptions(objective="cost", move_penalty_kg_per_c=0.0))
    assert kg[0] == pytest.approx(low.totals["tco2"] * 1000, rel=1e-6)
    assert usd[-1] == pytest.approx(cheap.totals["cost_usd"], rel=1e-6)
    # each capped point meets its cap
    capped = table[table["carbon_cap_kg"].notna()]
    assert (capped["kgco2"] <= capped["carbon_cap_kg"] + 1e-6).all()
    # carbon only moves where it is cheapest: the frontier is convex (the slopes rise)
    slopes = np.diff(usd) / np.diff(kg)
    assert (np.diff(slopes) >= -1e-6).all()


def test_frontier_needs_two_points():
    site = _site()
    fc = tiny_forecast(site, [1, 1, 1, 1], batch_units_per_h=[1, 0, 0, 0], price_usd_per_kwh=0.1)
    with pytest.raises(ValueError, match="at least 2"):
        frontier(site, zero_coefficients(site, fc.index), fc, points=1)


def test_pareto_command_writes_table_json_and_plot(registry, tmp_path):
    out = tmp_path / "f"
    res = CliRunner().invoke(app, ["pareto", "--site", SITE, "--for", "2022-07-01", "--points", "3", "--out", str(out),
                                   "--forecast", "perfect"])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out / "frontier.csv")
    doc = json.loads((out / "frontier.json").read_text())
    assert len(table) == 3 and len(doc["points"]) == 3 and doc["site"] == "sanjose_colo_2mw"
    assert (np.diff(table["kgco2"]) >= -1e-6).all() and (np.diff(table["cost_usd"]) <= 1e-6).all()
    assert (out / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(table["kind"]) == ["least carbon", "capped", "least cost"] and "frontier.png" in res.output


def test_pareto_command_refuses_a_site_without_tariff(registry, tmp_path):
    d = SiteConfig.model_validate({**tiny_site().model_dump()}).model_dump(mode="json", exclude={"base_dir"})
    import yaml

    p = tmp_path / "site.yaml"
    p.write_text(yaml.safe_dump(d))
    res = CliRunner().invoke(app, ["pareto", "--site", str(p), "--for", "2022-07-01"])
    assert res.exit_code == 2 and "tariff" in res.output and "Traceback" not in res.output
