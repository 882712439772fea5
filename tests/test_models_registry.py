"""Registry round trip on a temporary sqlite store: log, register, alias, load; and `coolshift train`."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from coolshift.config import load_site

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

SITE = load_site(os.path.join(os.path.dirname(__file__), "..", "configs", "sites", "sanjose_colo_2mw.yaml"))
ZONES = [z.name for z in SITE.zones]


def _telemetry(n: int = 2000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2022-01-01", periods=n, freq="15min", tz="UTC", name="timestamp")
    f = pd.DataFrame(index=idx)
    f["outside_temp_c"] = 15 + 10 * np.sin(np.arange(n) / 96 * 2 * np.pi) + rng.normal(0, 1, n)
    f["outside_rh_pct"] = rng.uniform(30, 80, n)
    f["chw_setpoint_c"] = rng.uniform(9, 15, n)
    cool = 50 + 3 * f["outside_temp_c"] - 4 * f["chw_setpoint_c"]
    for z in ZONES:
        it = rng.uniform(500, 900, n)
        sp = rng.uniform(18, 24, n)
        f[f"zone_it_power_kw__{z}"] = it
        f[f"supply_setpoint_c__{z}"] = sp
        f[f"inlet_temp_c__{z}"] = sp + 0.001 * it + 0.3
        cool = cool + 0.1 * it - 2 * sp
    f["cooling_power_kw"] = cool + rng.normal(0, 1, n)
    f["it_power_kw"] = f[[f"zone_it_power_kw__{z}" for z in ZONES]].sum(axis=1)
    f["facility_power_kw"] = 30 + 1.05 * f["it_power_kw"] + f["cooling_power_kw"]
    return f


def test_registry_round_trip_and_alias_only_when_better(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    from coolshift.models import registry
    from coolshift.models.thermal import LinearPlantModel

    tel = _telemetry()
    m = LinearPlantModel().fit(tel, SITE)
    mlflow = registry.configure(tmp_path)
    assert mlflow.get_tracking_uri() == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    good = {"cooling_power_mape_pct": 3.0, "facility_power_mape_pct": 0.5, "inlet_temp_mae_c": 0.1, "pue_mae": 0.005}
    with mlflow.start_run():
        mv = registry.log_plant_model(m, SITE, "linear", tel.iloc[:50], good)
    ok, why = registry.promote_if_better(SITE, "linear", mv.version, good)
    assert ok and "no production" in why
    loaded = registry.load_plant_model(SITE, "production", workdir=tmp_path)
    assert loaded.model_version_ == f"{registry.model_name(SITE, 'linear')}/{mv.version}"
    pd.testing.assert_frame_equal(loaded.predict(tel.iloc[:100]), m.predict(tel.iloc[:100]))
    fc = pd.DataFrame({"temp_c": [10.0], "rh_pct": [50.0]}, index=pd.DatetimeIndex(["2023-01-01"], tz="UTC"))
    assert loaded.coefficients(SITE, fc).model_version == loaded.model_version_
    # artifacts are in the working folder, not in ./mlruns
    assert (tmp_path / "mlartifacts").is_dir() and not (tmp_path / "mlruns").exists()
    # a worse candidate does not take the alias (no second 5-s log_model needed to decide)
    worse = dict(good, cooling_power_mape_pct=9.0)
    ok, why = registry.promote_if_better(SITE, "linear", "99", worse)
    assert not ok and "not better" in why and f"stays at version {mv.version}" in why
    _, cur = registry.production_metrics(SITE, "linear")
    assert cur["cooling_power_mape_pct"] == pytest.approx(3.0)
    with pytest.raises(LookupError, match="coolshift train"):
        registry.load_plant_model(SITE, "staging", workdir=tmp_path)


def test_tracking_uri_env_overrides(tmp_path, monkeypatch):
    from coolshift.models import registry

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert registry.tracking_uri(tmp_path) == "http://127.0.0.1:5999"


def test_train_cli_writes_metrics_without_registry(tmp_path):
    from coolshift.cli import app
    from coolshift.io import write_frame_atomic

    csv = tmp_path / "telemetry.csv"
    write_frame_atomic(csv, _telemetry(3000))
    site_yaml = os.path.join(os.path.dirname(__file__), "..", "configs", "sites", "sanjose_colo_2mw.yaml")
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["train", "--site", site_yaml, "--telemetry", str(csv), "--out", str(out),
                                 "--test-from", "2022-01-25", "--no-register"])
    assert r.exit_code == 0, r.output
    m = json.loads((out / "metrics.json").read_text())
    assert set(m) == {"linear", "reference"}
    for k in ("cooling_power_mape_pct", "facility_power_mape_pct", "inlet_temp_mae_c", "pue_mae"):
        assert np.isfinite(m["linear"][k]) and np.isfinite(m["reference"][k])
    assert m["linear"]["inlet_temp_mae_c"] < 0.05  # the synthetic plant is linear
    assert (out / "plots" / "predicted_vs_measured.png").stat().st_size > 1000
    r = CliRunner().invoke(app, ["train", "--site", site_yaml, "--telemetry", str(tmp_path / "nope.csv"),
                                 "--out", str(out), "--no-register"])
    assert r.exit_code == 2 and "nope.csv" in r.output


def _other_plant(**chiller):
    cfg = SITE.model_dump()
    cfg["cooling"]["chiller"].update(chiller)
    return type(SITE).model_validate(cfg)


def test_plant_fingerprint_tracks_the_plant_not_its_operation():
    fp = SITE.plant_fingerprint()
    assert len(fp) == 16 and fp == _other_plant().plant_fingerprint()
    assert _other_plant(rated_capacity_kw=300).plant_fingerprint() != fp
    cfg = SITE.model_dump()
    cfg["name"] = "renamed"
    cfg["zones"][0]["inlet_max_c"] = 25.0  # an operating limit, not the plant
    assert type(SITE).model_validate(cfg).plant_fingerprint() == fp
    cfg["server_pools"][0]["servers"] += 100  # more servers: another plant
    assert type(SITE).model_validate(cfg).plant_fingerprint() != fp


def test_a_model_of_another_plant_is_refused_with_how_to_retrain(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    from coolshift.models import registry
    from coolshift.models.thermal import LinearPlantModel, PlantMismatchError

    tel = _telemetry()
    m = LinearPlantModel().fit(tel, SITE)
    mlflow = registry.configure(tmp_path)
    good = {"cooling_power_mape_pct": 3.0, "facility_power_mape_pct": 0.5, "inlet_temp_mae_c": 0.1, "pue_mae": 0.005}
    with mlflow.start_run():
        mv = registry.log_plant_model(m, SITE, "linear", tel.iloc[:50], good)
    registry.promote_if_better(SITE, "linear", mv.version, good)
    small = _other_plant(rated_capacity_kw=300)  # same site name, same zones: another chiller
    with pytest.raises(PlantMismatchError, match=r"cooling\.chiller\.rated_capacity_kw: 2800\.0 when trained, 300\.0 now"):
        registry.load_plant_model(small, "production", workdir=tmp_path)
    with pytest.raises(PlantMismatchError, match="coolshift train"):
        registry.load_plant_model(small, "production", workdir=tmp_path)
    # retraining for the new plant promotes even with a worse score: the old model cannot serve it
    m2 = LinearPlantModel().fit(tel, small)
    worse = {k: v * 2 for k, v in good.items()}
    with mlflow.start_run():
        mv2 = registry.log_plant_model(m2, small, "linear", tel.iloc[:50], worse)
    ok, why = registry.promote_if_better(small, "linear", mv2.version, worse)
    assert ok and "another plant" in why
    assert registry.load_plant_model(small, "production", workdir=tmp_path).plant_fingerprint_ == small.plant_fingerprint()
    # a model without a recorded plant is refused, not trusted
    del m.plant_fingerprint_
    from coolshift.models.thermal import check_plant

    with pytest.raises(PlantMismatchError, match="unknown"):
        check_plant(m, SITE)


def test_plan_refuses_a_model_of_another_plant_with_exit_2(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    import yaml

    from coolshift.cli import app
    from coolshift.models import registry
    from coolshift.models.thermal import LinearPlantModel

    m = LinearPlantModel().fit(_telemetry(), SITE)
    mlflow = registry.configure(tmp_path)
    good = {"cooling_power_mape_pct": 3.0, "facility_power_mape_pct": 0.5, "inlet_temp_mae_c": 0.1, "pue_mae": 0.005}
    with mlflow.start_run():
        mv = registry.log_plant_model(m, SITE, "linear", _telemetry().iloc[:50], good)
    registry.promote_if_better(SITE, "linear", mv.version, good)
    src = os.path.join(os.path.dirname(__file__), "..", "configs", "sites", "sanjose_colo_2mw.yaml")
    cfg = yaml.safe_load(open(src))
    for src_cfg in (cfg["carbon"], cfg["weather"], cfg["workload"], cfg.get("tariff", {}).get("prices")):
        if src_cfg:  # every data file the config names, so the copy in tmp_path finds them
            src_cfg["path"] = os.path.abspath(os.path.join(os.path.dirname(src), src_cfg["path"]))
    cfg["server_pools"][0]["servers"] = 1500
    p = tmp_path / "bigger.yaml"
    p.write_text(yaml.safe_dump(cfg))
    res = CliRunner().invoke(app, ["plan", "--site", str(p), "--start", "2022-07-15", "--out", str(tmp_path / "out"),
                                   "--forecast", "perfect", "--no-mlflow", "--workdir", str(tmp_path)])
    text = " ".join(res.output.split())
    assert res.exit_code == 2, res.output
    assert "different plant" in text and "server_pools[0].servers: 1200 when trained, 1500 now" in text
    assert "coolshift train" in text and "Traceback" not in res.output
    assert not (tmp_path / "out").exists()
    # the closed-loop evaluation refuses it the same way, before simulating anything
    res = CliRunner().invoke(app, ["evaluate", "--site", str(p), "--start", "2022-07-15", "--end", "2022-07-16",
                                   "--policies", "best_practice,coolshift", "--forecast", "perfect",
                                   "--workers", "1", "--workdir", str(tmp_path), "--out", str(tmp_path / "ev")])
    text = " ".join(res.output.split())
    assert res.exit_code == 2, res.output
    assert "different plant" in text and "coolshift train" in text and "Traceback" not in res.output
    assert not (tmp_path / "ev" / "evaluation.json").exists()
