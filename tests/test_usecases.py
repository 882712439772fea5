"""The use cases called as a library (no CLI): the nightly plan, training, the closed-loop evaluation.

The nightly plan uses the stand-in plant model of the ``registry`` fixture (conftest.py);
each use case is checked against what its command writes for the same options.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import SMALL_SITE
from coolshift.cli import app
from coolshift.io import DataError, write_frame_atomic
from coolshift.locks import RunLocked, hold_locks
from coolshift.usecases.evaluate import EvaluateOptions, evaluate_site
from coolshift.usecases.inputs import NoPlantModel
from coolshift.usecases.nightly import NightlyOptions, nightly_plan, plan_locks
from coolshift.usecases.train import METRIC_KEYS, TrainOptions, train_plant_model
from test_models_registry import _telemetry

SITE_NAME = "sanjose_colo_2mw"


def test_nightly_plan_writes_the_run_the_cli_writes(registry, tmp_path):
    stages, warnings = [], []
    opts = NightlyOptions(site=SMALL_SITE, start="2022-07-01", forecast="perfect", out=tmp_path / "lib", record_mlflow=False)
    res = nightly_plan(opts, progress=stages.append, warn=warnings.append)
    assert {p.name for p in res.out_dir.iterdir()} == {"plan.csv", "plan.parquet", "summary.json", "report.html"}
    written = json.loads((res.out_dir / "summary.json").read_text())
    assert written["predicted"] == res.summary["predicted"] and written["baseline"] == res.summary["baseline"]
    assert res.summary["steps"] == 96 and res.summary["status"] == "optimal" and not res.fallback
    assert res.mlflow_run_id is None and warnings == []
    assert stages[0] == "loading site and data" and stages[-1] == "writing the run folder" and "solving with HiGHS" in stages
    np.testing.assert_allclose(res.plan.frame["kgco2"].sum() / 1000, res.summary["predicted"]["tco2"], rtol=1e-9)
    assert 0 < res.summary["predicted"]["tco2"] < res.summary["baseline"]["tco2"]
    assert res.summary["savings"]["tco2"] == pytest.approx(res.summary["baseline"]["tco2"] - res.summary["predicted"]["tco2"])

    cli = CliRunner().invoke(app, ["plan", "--site", str(SMALL_SITE), "--start", "2022-07-01", "--forecast", "perfect",
                                   "--out", str(tmp_path / "cli"), "--no-mlflow"])
    assert cli.exit_code == 0, cli.output
    by_cli = json.loads((tmp_path / "cli" / "summary.json").read_text())
    assert by_cli["baseline"].pop("rule") == res.summary["baseline"]["rule"] == "baselines.best_practice"
    for k in ("predicted", "baseline", "savings"):
        assert by_cli[k] == pytest.approx({n: res.summary[k][n] for n in by_cli[k]}, rel=1e-9), k
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "cli" / "plan.parquet"), pd.read_parquet(res.out_dir / "plan.parquet"),
                                  atol=1e-6)


def test_nightly_plan_raises_where_the_cli_exits(registry, monkeypatch, tmp_path):
    out = tmp_path / "runs" / SITE_NAME / "2022-07-01"
    base = dict(site=SMALL_SITE, forecast="perfect", record_mlflow=False, runs=tmp_path / "runs")
    with pytest.raises(ValueError, match="exactly one of --for"):
        nightly_plan(NightlyOptions(**base, start="2022-07-01", for_date="tomorrow"))
    with pytest.raises(ValueError, match="--accounting must be"):
        nightly_plan(NightlyOptions(**base, for_date="2022-07-01", accounting="both"))
    # another run holds the site's lock: RunLocked naming it, nothing written
    with hold_locks(plan_locks(SITE_NAME, out)[:1], "test"):
        with pytest.raises(RunLocked, match=f"coolshift plan for site {SITE_NAME} is already running"):
            nightly_plan(NightlyOptions(**base, for_date="2022-07-01"))
    assert not out.exists()
    # no registered model: a LookupError saying how to train one, nothing written
    monkeypatch.setattr(registry, "load_plant_model", lambda site, alias="production", **kw: None)
    with pytest.raises(NoPlantModel, match="coolshift train"):
        nightly_plan(NightlyOptions(**base, for_date="2022-07-01"))
    assert not out.exists()


def test_train_plant_model_gives_the_clis_metrics(tmp_path):
    csv = tmp_path / "telemetry.csv"
    write_frame_atomic(csv, _telemetry(3000))
    stages = []
    res = train_plant_model(TrainOptions(site=SMALL_SITE, telemetry=csv, out=tmp_path / "lib", test_from="2022-01-25",
                                         register=False), progress=stages.append)
    assert set(res.models) == {"linear", "reference"} and res.summary["registry"] == {}
    written = json.loads(res.metrics_path.read_text())
    assert written == {name: {k: m[k] for k in METRIC_KEYS} for name, m in res.metrics.items()}
    assert res.metrics["linear"]["inlet_temp_mae_c"] < 0.05  # the synthetic plant is linear
    assert res.summary["split"] == "time block: train before 2022-01-24, test from 2022-01-25"
    n_test = int((_telemetry(3000).index >= "2022-01-25").sum())
    assert res.summary["test_rows"] == n_test and res.summary["train_rows"] + n_test + 96 == 3000  # a 1-day gap
    assert any(s.startswith("fitting linear on") for s in stages)

    cli = CliRunner().invoke(app, ["train", "--site", str(SMALL_SITE), "--telemetry", str(csv), "--out", str(tmp_path / "cli"),
                                   "--test-from", "2022-01-25", "--no-register"])
    assert cli.exit_code == 0, cli.output
    by_cli = json.loads((tmp_path / "cli" / "metrics.json").read_text())
    for name in ("linear", "reference"):
        assert by_cli[name] == pytest.approx(written[name], rel=1e-9), name


def test_train_plant_model_refuses_bad_input_with_data_errors(tmp_path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(DataError, match="nope.csv: file not found"):
        train_plant_model(TrainOptions(site=SMALL_SITE, telemetry=missing, out=tmp_path / "out", register=False))
    assert not (tmp_path / "out").exists()
    csv = tmp_path / "telemetry.csv"
    write_frame_atomic(csv, _telemetry(500))
    with pytest.raises(DataError, match="not both"):
        train_plant_model(TrainOptions(site=SMALL_SITE, telemetry=csv, out=tmp_path / "out", test_from="2022-01-03",
                                       test_telemetry=csv, register=False))
    with pytest.raises(DataError, match="telemetry.csv: time_block_split"):
        train_plant_model(TrainOptions(site=SMALL_SITE, telemetry=csv, out=tmp_path / "out", test_from="2030-01-01",
                                       register=False))
    assert not (tmp_path / "out").exists()


def test_evaluate_site_runs_the_policies_and_writes_the_record(tmp_path):
    seen = []
    opts = EvaluateOptions(site=SMALL_SITE, out=tmp_path / "eval", start="2022-07-01", end="2022-07-02",
                           policies=("static", "best_practice"), workers=1)
    res = evaluate_site(opts, progress=lambda n, done, total: seen.append((n, done, total)))
    assert seen[:2] == [("static", 0, 96), ("best_practice", 0, 96)] and seen[-1][1:] == (96, 96)
    rec = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert list(rec["policies"]) == ["static", "best_practice"] and set(res.timeseries) == {"static", "best_practice"}
    assert rec["policies"]["best_practice"]["tco2_location"] == pytest.approx(res.record["policies"]["best_practice"]["tco2_location"])
    assert 0 < rec["policies"]["best_practice"]["tco2_location"] < rec["policies"]["static"]["tco2_location"]
    assert list(res.table.index) == ["static", "best_practice"] and (tmp_path / "eval" / "report.html").stat().st_size > 1000
    with pytest.raises(DataError, match="unknown policies \\['genius'\\]"):
        evaluate_site(EvaluateOptions(site=SMALL_SITE, out=tmp_path / "bad", policies=("static", "genius")))
    assert not (tmp_path / "bad").exists()
