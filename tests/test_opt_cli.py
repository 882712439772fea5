"""`coolshift plan` on a bundled example site with bundled real data.

The learned-model registry is replaced by a stand-in returning hand-set coefficients
(the ``registry`` fixture in conftest.py); everything else is the real command.
"""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from coolshift.cli import app

SITE = "configs/sites/sanjose_colo_2mw.yaml"


def test_plan_writes_plan_and_summary(registry, tmp_path):
    out = tmp_path / "plan"
    res = CliRunner().invoke(app, ["plan", "--site", SITE, "--start", "2022-07-01", "--out", str(out),
                                        "--forecast", "perfect", "--no-mlflow"])
    assert res.exit_code == 0, res.output
    frame = pd.read_csv(out / "plan.csv", index_col="timestamp", parse_dates=True)
    summary = json.loads((out / "summary.json").read_text())
    assert len(frame) == 96 and summary["steps"] == 96  # 24 h at 15 min from the config
    assert summary["status"] == "optimal" and summary["fallback"] is False
    np.testing.assert_allclose(frame["kgco2"].sum() / 1000, summary["predicted"]["tco2"], rtol=1e-9)
    np.testing.assert_allclose(frame["facility_power_kw"].sum() * 0.25, summary["predicted"]["facility_kwh"], rtol=1e-9)
    assert summary["savings"]["tco2"] == pytest.approx(summary["baseline"]["tco2"] - summary["predicted"]["tco2"])
    assert summary["baseline"]["rule"] == "baselines.best_practice"
    # setpoints within the config's limits, the redundancy floor kept
    assert frame.filter(like="supply_setpoint_c__").to_numpy().max() <= 27.0 + 1e-9
    assert (frame["active_servers__b_storage"] >= 600 - 1e-6).all()
    for k in ("predicted", "baseline", "savings", "solver", "shadow_prices"):
        assert k in summary
    assert summary["solver"]["build_s"] > 0 and summary["solver"]["solve_s"] > 0
    # the BMS side can read it (the plan-folder contract)
    from coolshift.bms.plan import read_plan

    p = read_plan(out)
    assert p.site == "sanjose_colo_2mw" and len(p.frame) == 96


def test_plan_without_a_registered_model_says_to_train(monkeypatch, tmp_path):
    mod = types.ModuleType("coolshift.models.registry")

    def missing(site, alias="production", **kw):
        raise LookupError(f"no model registered under alias {alias!r}")

    mod.load_plant_model = missing
    monkeypatch.setitem(sys.modules, "coolshift.models.registry", mod)
    res = CliRunner().invoke(app, ["plan", "--site", SITE, "--start", "2022-07-01", "--out", str(tmp_path / "p"),
                                        "--forecast", "perfect", "--no-mlflow"])
    assert res.exit_code == 2
    assert "coolshift train" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "p").exists()


def test_plan_rejects_a_bad_accounting_choice(registry, tmp_path):
    res = CliRunner().invoke(app, ["plan", "--site", SITE, "--start", "2022-07-01", "--accounting", "both"])
    assert res.exit_code == 2 and "location or market" in res.output.replace("'", "")


def test_nightly_run_folder_is_dated_complete_idempotent_and_locked(registry, tmp_path):
    runs = tmp_path / "runs"
    args = ["plan", "--site", SITE, "--for", "2022-07-01", "--runs", str(runs), "--forecast", "perfect", "--no-mlflow"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    run = runs / "sanjose_colo_2mw" / "2022-07-01"
    assert {p.name for p in run.iterdir()} == {"plan.csv", "plan.parquet", "summary.json", "report.html"}
    html = (run / "report.html").read_text()
    for section in ("Summary", "Figures", "Shadow prices", "Solver"):
        assert f"<h2" in html and section in html
    assert html.count("<img") == 3  # intensity+setpoints, servers+shifted work, power+carbon vs baseline
    pd.testing.assert_frame_equal(pd.read_parquet(run / "plan.parquet").reset_index(drop=True),
                                  pd.read_csv(run / "plan.csv").drop(columns="timestamp"), check_dtype=False, atol=1e-9)
    first = json.loads((run / "summary.json").read_text())
    # re-running the same date replaces the run as a whole
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert json.loads((run / "summary.json").read_text())["created_at"] != first["created_at"]
    assert [p.name for p in run.parent.iterdir() if not p.name.startswith(".")] == ["2022-07-01"]
    # another run holding the lock: exit 75, the existing run untouched
    from coolshift.runs import run_lock

    before = (run / "summary.json").read_text()
    with run_lock(run.parent, name="plan-sanjose_colo_2mw"):
        import multiprocessing as mp

        ctx = mp.get_context("fork")
        q = ctx.Queue()
        p = ctx.Process(target=lambda: q.put(CliRunner().invoke(app, args).exit_code))
        p.start()
        p.join(120)
        assert q.get(timeout=5) == 75
    assert (run / "summary.json").read_text() == before


def test_a_carbon_plan_needs_no_prices_a_cost_plan_refuses_without_them(registry, tmp_path):
    """The site's price file covers June 2022 only: the carbon plan for July goes ahead (cost not
    reported); a cost plan exits 2 naming the price file."""
    import yaml

    from coolshift.config import load_site

    site = load_site(SITE)
    src = site.resolve(site.tariff.prices.path)
    lines = src.read_text().splitlines()
    june = [lines[0]] + [ln for ln in lines[1:] if ln.startswith("2022-06")]
    (tmp_path / "june_prices.csv").write_text("\n".join(june) + "\n")
    doc = yaml.safe_load(open(SITE))
    for k in ("carbon", "weather", "workload"):
        doc[k]["path"] = str(site.resolve(doc[k]["path"]))
    doc["tariff"]["prices"]["path"] = str(tmp_path / "june_prices.csv")
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    base = ["plan", "--site", str(path), "--start", "2022-07-01", "--forecast", "perfect", "--no-mlflow"]
    res = CliRunner().invoke(app, base + ["--out", str(tmp_path / "carbon")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "carbon" / "summary.json").read_text())["status"] == "optimal"
    res = CliRunner().invoke(app, base + ["--out", str(tmp_path / "cost"), "--objective", "cost"])
    assert res.exit_code == 2, res.output
    assert "june_prices.csv" in res.output and "Traceback" not in res.output
