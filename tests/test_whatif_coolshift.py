"""The optimiser's Coolshift policy in every scenario: a plant model learned on the scenario's own
site (simulated commissioning before the period), cached by content, planned with, and judged on
the simulator against the scenario's best-practice baseline."""

import pandas as pd
import pytest
from conftest import REPO, SMALL_SITE

from coolshift.config import load_site
from coolshift.whatif.scenario_run import PolicyUnavailable, choose_policies, scenario_data
from coolshift.whatif.plant_model import cached_plant_model, plant_model_key
from coolshift.whatif.scenario import apply_scenario, load_scenario
from coolshift.whatif.study import ScenarioSpec, build_tasks, compile_whatif, load_study_data, run_scenario_task
from coolshift.whatif.sweep import run_loop

WHATIF = REPO / "configs" / "whatif"
START, END = pd.Timestamp("2022-07-04T00:00Z"), pd.Timestamp("2022-07-05T00:00Z")  # one day at 15 min
NAMES = ("virtualisation", "liquid_cooling", "grid_bpat")


@pytest.fixture(scope="module")
def site():
    return load_site(SMALL_SITE)


@pytest.fixture(scope="module")
def study(site, tmp_path_factory):
    data, train = load_study_data(site, START, END, 15)  # 28 days of commissioning before the period
    specs = [ScenarioSpec(load_scenario(WHATIF / f"{n}.yaml"), str(WHATIF / f"{n}.yaml"), WHATIF) for n in NAMES]
    out = tmp_path_factory.mktemp("cs")
    tasks = build_tasks(SMALL_SITE, site, specs, START, END, 15, choose_policies(), train=train,
                        model_cache_dir=out / "plant_models")
    res = run_loop(tasks, run_scenario_task, out / "scenarios", data)
    assert res.failed == {}
    return compile_whatif(res.records), res, tasks, data, train, out


def test_choose_policies_names_the_real_policy_or_the_stand_in():
    assert choose_policies() == {"baseline": "best_practice", "coolshift": "coolshift", "stand_in_for": None, "note": ""}
    p = choose_policies("static", "carbon_greedy")
    assert p["coolshift"] == "carbon_greedy" and p["stand_in_for"] == "coolshift" and "--policy" in p["note"]
    with pytest.raises(PolicyUnavailable, match="explore"):
        choose_policies("best_practice", "explore")
    with pytest.raises(PolicyUnavailable, match="nope"):
        choose_policies("nope", "coolshift")


def test_coolshift_plans_in_every_scenario_and_never_emits_more_than_best_practice(study):
    rows, res, *_ = study
    assert list(rows) == ["baseline", *NAMES]
    for name, row in rows.items():
        assert row["status"] == "ok" and row["headline_policy"] == "coolshift" and row["stand_in_for"] is None
        cs, bp = row["by_policy"]["coolshift"], row["by_policy"]["baseline"]
        assert bp["policy"] == "best_practice"
        assert cs["planner"]["plans"] == 6 and cs["planner"]["fallback_plans"] == 0, (name, cs["planner"])
        assert cs["sla_violations"] == 0 and cs["thermal_violation_minutes"] == 0.0
        if name != "grid_bpat":  # on CAISO's grid the optimiser never emits more than best practice
            assert cs["tco2_operational"] <= bp["tco2_operational"] * (1 + 1e-6), name
    # On BPAT's flat hydro intensity there is little to shift, and the optimiser's plans use a few %
    # more cooling energy than best practice (learned-model error, measured 2026-11-23: +0.6 % tCO2
    # that day): it stays within 2 % of the baseline.
    g = rows["grid_bpat"]["by_policy"]
    assert g["coolshift"]["tco2_operational"] <= 1.02 * g["baseline"]["tco2_operational"]
    # virtualisation: the same work on fewer hosts saves operational carbon under the optimiser too
    assert rows["virtualisation"]["operational_tco2_saved"] > 0.02 * rows["baseline"]["tco2_operational"]
    # liquid cooling: 70 % of the IT heat on a W32 loop cuts cooling energy by more than a third
    lc, base = rows["liquid_cooling"]["by_policy"]["coolshift"], rows["baseline"]["by_policy"]["coolshift"]
    assert lc["cooling_kwh"] < 0.67 * base["cooling_kwh"] and lc["liquid_kwh"] > 0
    assert rows["liquid_cooling"]["pue"] < rows["baseline"]["pue"] - 0.02
    # BPAT's hydro grid: the same plant, far less carbon
    assert rows["grid_bpat"]["tco2_operational"] < 0.5 * rows["baseline"]["tco2_operational"]


def test_plant_models_are_per_plant_cached_and_not_refitted_on_resume(study, site):
    rows, res, tasks, data, train, out = study
    pm = {n: r["plant_model"] for n, r in rows.items()}
    assert all(p["train_start"] == "2022-06-06T00:00:00+00:00" and p["train_end"] == START.isoformat() for p in pm.values())
    # the grid scenario changes no plant: it reuses the current site's model (fitted first)
    assert pm["grid_bpat"]["key"] == pm["baseline"]["key"] and pm["grid_bpat"]["cached"] and not pm["baseline"]["cached"]
    assert len({p["key"] for p in pm.values()}) == 3 == len(list((out / "plant_models").glob("*.pkl")))
    # a resumed sweep recomputes nothing (so fits nothing)
    again = run_loop(tasks, run_scenario_task, out / "scenarios", data)
    assert again.computed == [] and sorted(again.skipped) == sorted(t.name for t in tasks)
    # the cache is keyed on the plant: a changed chiller is a new model, a changed grid is not
    t0, t1 = pd.Timestamp(train["start"]), pd.Timestamp(train["end"])
    lc = apply_scenario(site, load_scenario(WHATIF / "liquid_cooling.yaml"), WHATIF / "liquid_cooling.yaml")
    full = scenario_data(site, lc, data, "liquid_cooling")  # what the task trains on
    tr = full[(full.index >= t0) & (full.index < t1)]
    assert plant_model_key(lc, tr) == pm["liquid_cooling"]["key"] != plant_model_key(site, tr)
    model, info = cached_plant_model(lc, tr, out / "plant_models")
    assert info["cached"] and model.n_cooling_pieces_ >= 1
    assert plant_model_key(site, tr, seed=1) != plant_model_key(site, tr)
    assert plant_model_key(site, tr.iloc[:-96]) != plant_model_key(site, tr)
