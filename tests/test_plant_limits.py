"""The plant's limits: an undersized chiller, CRAH or UPS is diagnosed by `plan` (exit 3, the
component named), refused by `validate` where the design load can never be carried, and
judged by the simulator (unmet cooling, airflow shortfall, UPS overload minutes)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from coolshift.cli import app
from coolshift.config import load_site
from coolshift.io import load_site_data
from coolshift.ratings import crah_capacity_kw, design_problems, free_cooling_share, plant_limits
from coolshift.simulations.engine import simulate
from coolshift.control.policies import get_policy

from conftest import SMALL_SITE

UNDERSIZED = {
    # San Jose's load is ~1.3-1.8 MW of IT on a July day
    "chiller": (lambda c: c["cooling"]["chiller"].update(rated_capacity_kw=300), "chiller_capacity"),
    "crah": (lambda c: [z["crah"].update(count=1, redundant_units=0, rated_airflow_m3_s=2.0) for z in c["zones"]],
             "crah_capacity (hall_a)"),
    "ups": (lambda c: c["electrical"].update(ups_rated_kw=400), "ups_capacity"),
}


def _variant(tmp_path: Path, name: str, edit) -> Path:
    cfg = yaml.safe_load(SMALL_SITE.read_text())
    edit(cfg)
    for k in ("carbon", "weather", "workload"):
        cfg[k]["path"] = str((SMALL_SITE.parent / cfg[k]["path"]).resolve())
    p = tmp_path / f"{name}.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


@pytest.mark.parametrize("case", sorted(UNDERSIZED))
def test_plan_on_an_undersized_plant_is_diagnosed_with_the_component(registry, tmp_path, case):
    edit, family = UNDERSIZED[case]
    site = _variant(tmp_path, case, edit)
    out = tmp_path / "plan"
    res = CliRunner().invoke(app, ["plan", "--site", str(site), "--start", "2022-07-15", "--out", str(out),
                                   "--forecast", "perfect", "--no-mlflow"])
    assert res.exit_code == 3, res.output
    text = " ".join(res.output.split())
    assert family in text and "kW" in text and "Traceback" not in res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["fallback"] is True and summary["status"] == "infeasible"
    rows = [r for r in summary["diagnosis"] if r["family"] == family.split()[0]]
    assert rows and all(r["needed_kw"] > r["carry_kw"] for r in rows)


def test_plan_on_the_real_site_is_not_limited(registry, tmp_path):
    out = tmp_path / "plan"
    res = CliRunner().invoke(app, ["plan", "--site", str(SMALL_SITE), "--start", "2022-07-15", "--out", str(out),
                                   "--forecast", "perfect", "--no-mlflow"])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "optimal" and not summary["fallback"]


def test_chiller_diagnosis_names_the_step_and_shortfall(registry, tmp_path):
    site = _variant(tmp_path, "chiller", UNDERSIZED["chiller"][0])
    out = tmp_path / "plan"
    CliRunner().invoke(app, ["plan", "--site", str(site), "--start", "2022-07-15", "--out", str(out),
                             "--forecast", "perfect", "--no-mlflow"])
    (row,) = [r for r in json.loads((out / "summary.json").read_text())["diagnosis"] if r["family"] == "chiller_capacity"]
    assert row["rated_kw"] == pytest.approx(300.0)
    # the heat of at least the site's lowest IT load that day (~1.2 MW) is far above 300 kW
    assert row["needed_kw"] > 1000.0
    assert row["worst_time"].startswith("2022-07-15")


def test_validate_refuses_a_plant_that_can_never_carry_the_design_load(tmp_path):
    for case, key in (("crah", "zones[0].crah (hall_a)"), ("ups", "electrical.ups_rated_kw")):
        site = _variant(tmp_path, case, UNDERSIZED[case][0])
        res = CliRunner().invoke(app, ["validate", "--site", str(site), "--start", "2022-07-01", "--end", "2022-07-02"])
        assert res.exit_code == 2, res.output
        assert key in " ".join(res.output.split()) and "Traceback" not in res.output
    # the chiller case can be carried in cold weather (economiser): valid, with a note of the hours it cannot
    site = _variant(tmp_path, "chiller", UNDERSIZED["chiller"][0])
    res = CliRunner().invoke(app, ["validate", "--site", str(site), "--start", "2022-07-01", "--end", "2022-07-08"])
    assert res.exit_code == 0, res.output
    assert "chillers alone cannot carry" in " ".join(res.output.split())


def test_simulator_reports_what_an_undersized_plant_does(tmp_path):
    def run(path):
        s = load_site(path)
        return simulate(s, load_site_data(s, "2022-07-15", "2022-07-16"), get_policy("best_practice")).summary

    real = run(SMALL_SITE)
    assert real["ups_overload_minutes"] == 0 and real["unmet_cooling_kwh"] == 0
    assert real["crah_airflow_shortfall_minutes"] == 0 and real["thermal_violation_minutes"] == 0
    ups = run(_variant(tmp_path, "ups", UNDERSIZED["ups"][0]))
    assert ups["ups_overload_minutes"] == 1440.0  # ~1.3 MW on a 400 kW UPS all day
    assert ups["max_ups_load_frac"] > 3.0
    chiller = run(_variant(tmp_path, "chiller", UNDERSIZED["chiller"][0]))
    assert chiller["unmet_cooling_kwh"] > 1000 and chiller["chiller_overload_minutes"] > 0
    assert chiller["thermal_violation_minutes"] > 0
    crah = run(_variant(tmp_path, "crah", UNDERSIZED["crah"][0]))
    assert crah["crah_airflow_shortfall_minutes"] == 1440.0 and crah["thermal_violation_minutes"] > 0


def test_redundant_units_are_not_counted_on():
    cfg = yaml.safe_load(SMALL_SITE.read_text())
    cfg["base_dir"] = SMALL_SITE.parent
    from coolshift.config import SiteConfig

    base = SiteConfig.model_validate(cfg)
    cfg["electrical"].update(ups_modules=4, ups_redundant_modules=1)
    cfg["cooling"]["chiller"].update(units=4, redundant_units=1)
    cfg["zones"][0]["crah"]["redundant_units"] = 2
    n1 = SiteConfig.model_validate(cfg)
    assert plant_limits(n1).ups_kw == pytest.approx(0.75 * plant_limits(base).ups_kw)
    assert plant_limits(n1).chiller_kw == pytest.approx(0.75 * plant_limits(base).chiller_kw)
    # San Jose: 8 units per hall, N+1 (7 counted on); with 2 in reserve, 6
    assert base.zones[0].crah.count == 8 and base.zones[0].crah.redundant_units == 1
    assert crah_capacity_kw(n1.zones[0]) == pytest.approx(crah_capacity_kw(base.zones[0]) * 6 / 7)
    # 4 x 600 kW modules with one in reserve carry 1,800 kW: short of the 2,030 kW design output
    assert any("ups_rated_kw" in p for p in design_problems(n1))
    assert not design_problems(base)


def test_free_cooling_share_follows_wetbulb_and_chilled_water():
    site = load_site(SMALL_SITE)  # water-side economiser, 4 K approach
    wb = np.array([0.0, 10.0, 12.0, 20.0])
    share = free_cooling_share(site, wb, wb + 5, chw_c=10.0, supply_c=18.0)
    # full when wb + 4 <= chw; none when wb + 4 >= chw + 5.6; linear between
    assert share[0] == 1.0 and share[-1] == 0.0
    assert share[1] == pytest.approx((10 + 5.6 - 14) / 5.6)
    assert share[1] > share[2]
    warmer = free_cooling_share(site, wb, wb + 5, chw_c=14.0, supply_c=18.0)
    assert (warmer >= share).all() and warmer[2] > share[2]


def test_a_binding_ups_has_a_shadow_price_per_kw_of_rating():
    """A UPS rated just below the unconstrained plan's peak output binds at the peak (batch work
    moves to other steps); its shadow price matches a finite difference of the optimum."""
    from coolshift.optimizer import InitialState, Planner, PlanOptions
    from synthetic import linear_coefficients, synthetic_forecast, synthetic_site

    def solve(ups_kw):
        cfg = synthetic_site(zones=2, pools=4, edges=0, horizon_h=12).model_dump()
        cfg.pop("base_dir", None)
        cfg["electrical"]["ups_rated_kw"] = ups_kw
        from coolshift.config import SiteConfig

        site = SiteConfig.model_validate(cfg)
        fc = synthetic_forecast(site, seed=3, load_frac=0.6)
        plan = Planner(site, linear_coefficients(site, fc.index), fc, InitialState.from_site(site),
                       PlanOptions(deadline_prices=False)).solve()
        return plan

    free = solve(1e6)
    peak_out = float((free.frame["it_power_kw"] * 1.015).max())
    cap = 0.97 * peak_out  # binds at the peak, still feasible by moving batch work
    plan = solve(cap)
    assert plan.status == "optimal"
    assert (plan.frame["it_power_kw"] * 1.015 <= cap + 1e-3).all()
    sp = plan.shadow_prices.set_index("family")
    assert "ups_capacity" in sp.index
    price = float(sp.loc["ups_capacity", "value"])
    more = solve(cap + 5.0)
    fd = (more.objective_kg - plan.objective_kg) / 5.0
    assert price < 0 and fd == pytest.approx(price, rel=0.1, abs=1e-4)
