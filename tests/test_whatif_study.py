"""A virtualisation what-if on the bundled small site, end to end (in-process), and the CLI."""

import json

import pandas as pd
import pytest
from conftest import REPO, SMALL_SITE
from typer.testing import CliRunner

from coolshift.config import load_site
from coolshift.io import load_site_data
from coolshift.whatif.embodied import HOURS_PER_MONTH
from coolshift.whatif.scenario_run import choose_policies, scenario_data
from coolshift.whatif.scenario import Scenario, ScenarioError, apply_scenario, load_scenario
from coolshift.whatif.study import ROW_KEYS, ScenarioSpec, build_tasks, compile_whatif, run_scenario_task
from coolshift.whatif.sweep import run_loop

WHATIF = REPO / "configs" / "whatif"
START, END = pd.Timestamp("2022-07-04T00:00Z"), pd.Timestamp("2022-07-11T00:00Z")  # one week, hourly


@pytest.fixture(scope="module")
def site():
    return load_site(SMALL_SITE)


@pytest.fixture(scope="module")
def week(site):
    return load_site_data(site, START, END, step_minutes=60)


@pytest.fixture(scope="module")
def virtualisation_rows(site, week, tmp_path_factory):
    pol = choose_policies("static", "carbon_greedy")
    spec = ScenarioSpec(load_scenario(WHATIF / "virtualisation.yaml"), str(WHATIF / "virtualisation.yaml"), WHATIF)
    tasks = build_tasks(SMALL_SITE, site, [spec], START, END, 60, pol)
    out = run_loop(tasks, run_scenario_task, tmp_path_factory.mktemp("virt"), week)
    assert out.failed == {}
    return compile_whatif(out.records, "location"), out


def test_virtualisation_reports_operational_embodied_and_payback(virtualisation_rows):
    rows, out = virtualisation_rows
    base, virt = rows["baseline"], rows["virtualisation"]
    for r in (base, virt):
        assert set(ROW_KEYS) <= set(r)
    assert base["tco2_embodied"] == 0.0 and base["payback_months"] is None and base["net_tco2_change_vs_baseline"] == 0.0
    # 400 hosts of 1,356.48 kgCO2e bought, 1,200 servers of 1,314.1 kgCO2e retired with 1 of 4 years left
    one_off = (400 * 1356.48 + 1200 * 1314.1 * 0.25) / 1000.0
    assert virt["tco2_embodied_one_off"] == pytest.approx(one_off)
    assert virt["tco2_embodied"] == pytest.approx(one_off * 168 / (4 * 8760))
    for role in ("baseline", "coolshift"):
        b, v = base["by_policy"][role], virt["by_policy"][role]
        # same work on fewer, more efficient hosts: less IT energy and less operational carbon
        assert v["it_kwh"] < b["it_kwh"] and v["tco2_operational"] < b["tco2_operational"]
        saved = b["tco2_operational"] - v["tco2_operational"]
        assert v["operational_tco2_saved"] == pytest.approx(saved)
        assert v["payback_months"] == pytest.approx(one_off / (saved * HOURS_PER_MONTH / 168))
        assert v["net_tco2_change_vs_baseline"] == pytest.approx(v["tco2_operational"] + v["tco2_embodied"] - b["tco2_operational"])
        assert v["sla_violations"] == 0 and v["late_work_units"] == pytest.approx(0.0, abs=1e-6)
    # the headline is the Coolshift role, here played by a rule policy that says what it stands in for
    assert virt["headline_policy"] == virt["by_policy"]["coolshift"]["policy"] == "carbon_greedy"
    assert virt["stand_in_for"] == "coolshift" and virt["plant_model"] is None
    rec = out.records["virtualisation"]["result"]
    assert rec["policy_used"]["baseline"] == "static"


def test_consolidation_beyond_capacity_is_a_clear_error(site, week):
    s = Scenario(name="too_far", consolidation={"pools": ["a_web", "a_compute", "b_compute"], "ratio": 3})
    new = apply_scenario(site, s, "too_far.yaml")
    with pytest.raises(ScenarioError, match=r"too_far: peak demand \d+ units/h exceeds the site's capacity \d+"):
        scenario_data(site, new, week, "too_far")


def test_grid_scenario_reloads_intensity_but_keeps_the_work(site, week):
    s = load_scenario(WHATIF / "grid_bpat.yaml")
    new = apply_scenario(site, s, WHATIF / "grid_bpat.yaml")
    d = scenario_data(site, new, week, s.name)
    assert d["gco2_per_kwh"].mean() < 0.5 * week["gco2_per_kwh"].mean()  # BPAT hydro vs CAISO
    pd.testing.assert_series_equal(d["web_units_per_h"], week["web_units_per_h"])
    pd.testing.assert_series_equal(d["temp_c"], week["temp_c"])


def test_cli_writes_whatif_json_report_and_mlflow_runs(tmp_path, monkeypatch):
    from coolshift.cli import app

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = tmp_path / "wi"
    # the default policies (best_practice against the optimiser on a plant model learned per scenario)
    args = ["whatif", "--site", str(SMALL_SITE), "--scenario", str(WHATIF / "setpoint_policy.yaml"),
            "--start", "2022-07-04", "--end", "2022-07-05", "--workers", "0", "--out", str(out)]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    rows = json.loads((out / "whatif.json").read_text())
    assert list(rows) == ["baseline", "setpoint_policy"]
    sp = rows["setpoint_policy"]
    assert sp["headline_policy"] == "coolshift" and sp["stand_in_for"] is None and sp["forecast"] == "perfect"
    assert sp["by_policy"]["baseline"]["policy"] == "best_practice"
    assert sp["plant_model"]["train_end"] == "2022-07-04T00:00:00+00:00" and sp["plant_model"]["train_rows"] == 28 * 96
    assert len(list((out / "plant_models").glob("*.pkl"))) == 2  # the raised limits change the plant: two models
    for row in rows.values():  # the optimiser planned (no fallback to the rule) and did not emit more
        pl = row["by_policy"]["coolshift"]
        assert pl["planner"]["plans"] == 6 and pl["planner"]["fallback_plans"] == 0
        assert pl["tco2_operational"] <= row["by_policy"]["baseline"]["tco2_operational"] * (1 + 1e-6)
    assert set(ROW_KEYS) <= set(sp) and sp["payback_months"] is None and sp["tco2_embodied"] == 0.0
    assert sp["net_tco2_change_vs_baseline"] == pytest.approx(sp["tco2_operational"] - rows["baseline"]["tco2_operational"])
    html = (out / "report.html").read_text()
    assert "setpoint_policy" in html and html.count("data:image/png;base64,") >= 3 and "<script" not in html
    meta = json.loads((out / "run.json").read_text())
    import mlflow

    mlflow.set_tracking_uri(meta["mlflow"]["tracking_uri"])
    runs = mlflow.search_runs(experiment_ids=[meta["mlflow"]["experiment_id"]])
    parent = runs[runs["tags.mlflow.parentRunId"].isna()]
    children = runs[runs["tags.mlflow.parentRunId"] == meta["mlflow"]["parent_run_id"]]
    assert len(parent) == 1 and sorted(children["tags.mlflow.runName"]) == ["baseline", "setpoint_policy"]
    assert children["metrics.tco2_operational"].notna().all()
    # a bad scenario is an input error (exit 2) naming the file and key, with no traceback
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\noverrides: {zones: {hall_a: {inlet_max_c: 40}}}\n")
    r = CliRunner().invoke(app, ["whatif", "--site", str(SMALL_SITE), "--scenario", str(bad), "--start", "2022-07-04",
                                 "--end", "2022-07-05", "--workers", "0", "--out", str(tmp_path / "b"), "--no-mlflow"])
    assert r.exit_code == 2
    assert "bad.yaml" in r.output and "hall_a" in r.output and "ASHRAE A1" in r.output
    assert "Traceback" not in r.output


def test_command_line_data_override_reaches_every_scenario(site):
    """A --carbon override is part of the current site on the workers too, also for scenarios
    that reload data (here: a new edge site)."""
    from coolshift.io.site_data import override_source

    bpat = REPO / "data/carbon_intensity/eia930_2022/BPAT_2022_hourly.csv"
    over = {"carbon": override_source(site.carbon, bpat, "eia930").model_dump(mode="json")}
    site_o = load_site(SMALL_SITE, **over)
    t0, t1 = START, START + pd.Timedelta(days=1)
    spec = ScenarioSpec(load_scenario(WHATIF / "edge_portland.yaml"), str(WHATIF / "edge_portland.yaml"), WHATIF)
    pol = choose_policies("static", "carbon_greedy")
    rows = {}
    for label, s, ov in (("caiso", site, None), ("bpat", site_o, over)):
        data = load_site_data(s, t0, t1, step_minutes=60)
        tasks = build_tasks(SMALL_SITE, s, [spec], t0, t1, 60, pol, site_overrides=ov)
        out = run_loop(tasks, run_scenario_task, None, data)
        assert out.failed == {}
        rows[label] = compile_whatif(out.records)
    for name in ("baseline", "edge_portland"):
        per_kwh = {k: r[name]["tco2_operational"] / r[name]["facility_kwh"] for k, r in rows.items()}
        assert per_kwh["bpat"] < 0.5 * per_kwh["caiso"], (name, per_kwh)
