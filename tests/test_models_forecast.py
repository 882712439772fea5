"""Forecasters: no look-ahead, beat the baselines on a series with structure, CLI output."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from coolshift.models.forecast import (
    CarbonIntensityForecaster, PersistenceForecaster, SeasonalNaiveForecaster, WorkloadForecaster,
    day_ahead_backtest, forecast_scores,
)


def _series(days: int = 50, seed: int = 0, name: str = "gco2_per_kwh") -> pd.Series:
    """Daily solar dip plus a slow AR(1) level: persistence is decent, the level is predictable."""
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2022-03-01", periods=24 * days, freq="h", tz="UTC")
    h = idx.hour.to_numpy()
    daily = -80.0 * np.clip(np.sin((h - 14) / 12 * np.pi), 0, None)
    level = np.zeros(len(idx))
    for i in range(1, len(idx)):
        level[i] = 0.97 * level[i - 1] + rng.normal(0, 8.0)
    return pd.Series(300.0 + daily + level, index=idx, name=name)


def test_forecast_uses_only_data_before_the_issue_time():
    y = _series()
    f = CarbonIntensityForecaster(issue_every_h=12).fit(y.iloc[: 24 * 40])
    issue = y.index[24 * 42]
    idx = pd.date_range(issue, periods=24, freq="h")
    a = f.predict_day_ahead(y, issue, idx)
    changed = y.copy()
    changed[changed.index >= issue] += 1000.0  # the future is different ...
    b = f.predict_day_ahead(changed, issue, idx)
    pd.testing.assert_frame_equal(a, b)  # ... and the forecast does not see it
    changed2 = y.copy()
    changed2[changed2.index == issue - pd.Timedelta("1h")] += 50.0  # the past is different
    c = f.predict_day_ahead(changed2, issue, idx)
    assert not np.allclose(a["gco2_per_kwh"], c["gco2_per_kwh"])
    with pytest.raises(ValueError, match="before the issue time"):
        f.predict_day_ahead(y, issue, idx - pd.Timedelta("2h"))
    assert f.train_end_ <= y.index[24 * 40]


def test_model_beats_persistence_and_seasonal_naive_on_held_out_days():
    y = _series(days=60, seed=1)
    cut = y.index[24 * 45]
    scores = {}
    for name, f in {"model": CarbonIntensityForecaster(issue_every_h=12),
                    "persistence": PersistenceForecaster("gco2_per_kwh"),
                    "seasonal_naive": SeasonalNaiveForecaster("gco2_per_kwh")}.items():
        f.fit(y[y.index < cut])
        bt = day_ahead_backtest(f, y, cut)
        assert bt["issue_time"].min() >= cut
        scores[name] = forecast_scores(bt["actual"], bt["gco2_per_kwh"])
    assert scores["model"]["mape_pct"] < 0.9 * scores["persistence"]["mape_pct"]
    assert scores["persistence"]["mape_pct"] < scores["seasonal_naive"]["mape_pct"]


def test_quantiles_are_ordered_and_cover_roughly_their_band():
    y = _series(days=60, seed=2)
    cut = y.index[24 * 45]
    f = CarbonIntensityForecaster(issue_every_h=12).fit(y[y.index < cut])
    bt = day_ahead_backtest(f, y, cut)
    assert (bt["gco2_per_kwh_q10"] <= bt["gco2_per_kwh_q50"]).all()
    assert (bt["gco2_per_kwh_q50"] <= bt["gco2_per_kwh_q90"]).all()
    assert (bt["gco2_per_kwh_std"] > 0).all()
    cover = ((bt["actual"] >= bt["gco2_per_kwh_q10"]) & (bt["actual"] <= bt["gco2_per_kwh_q90"])).mean()
    assert 0.6 <= cover <= 0.97


def test_workload_forecaster_has_the_same_shape():
    y = (_series(days=40, seed=3, name="cpu_util") / 1000.0).clip(0, 1)
    f = WorkloadForecaster(issue_every_h=12).fit(y.iloc[:-48])
    issue = y.index[-48]
    out = f.predict_day_ahead(y, issue, pd.date_range(issue, periods=24, freq="h"))
    assert list(out.columns) == ["cpu_util", "cpu_util_q10", "cpu_util_q50", "cpu_util_q90", "cpu_util_std"]
    assert out.index.tz is not None and len(out) == 24


def test_bad_series_is_refused_clearly():
    y = _series(days=10)
    with pytest.raises(ValueError, match="tz-aware"):
        PersistenceForecaster("gco2_per_kwh").fit(y.tz_localize(None))
    with pytest.raises(ValueError, match="3 weeks"):
        CarbonIntensityForecaster().fit(y)


def test_forecast_evaluate_cli_writes_metrics(tmp_path):
    from coolshift.cli import app

    y = _series(days=60, seed=4)
    csv = tmp_path / "ci.csv"
    pd.DataFrame({"timestamp": y.index.strftime("%Y-%m-%dT%H:%M:%S+00:00"), "gco2_per_kwh": y.to_numpy()}).to_csv(
        csv, index=False)
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["forecast", "evaluate", "--carbon", str(csv), "--train-end", "2022-04-15",
                                 "--out", str(out)])
    assert r.exit_code == 0, r.output
    m = json.loads((out / "forecast_metrics.json").read_text())
    for k in ("model", "persistence", "seasonal_naive"):
        assert {"mape_pct", "bias_pct"} <= set(m[k])
    assert m["model"]["mape_pct"] < m["persistence"]["mape_pct"]
    assert "beats persistence" in r.output
    r = CliRunner().invoke(app, ["forecast", "evaluate", "--carbon", str(csv), "--train-end", "2030-01-01",
                                 "--out", str(out)])
    assert r.exit_code == 2 and "train-end" in r.output


def test_evaluate_workload_cli_has_the_same_output(tmp_path):
    from coolshift.cli import app

    y = (_series(days=45, seed=5, name="cpu_util") / 600.0).clip(0.05, 0.95)
    csv = tmp_path / "trace.csv"
    pd.DataFrame({"timestamp": y.index.strftime("%Y-%m-%dT%H:%M:%S+00:00"), "cpu_util": y.to_numpy()}).to_csv(
        csv, index=False)
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["forecast", "evaluate-workload", "--workload", str(csv), "--train-end",
                                 "2022-04-05", "--out", str(out)])
    assert r.exit_code == 0, r.output
    m = json.loads((out / "workload_forecast_metrics.json").read_text())
    assert {"model", "persistence", "seasonal_naive"} <= set(m)
    assert m["model"]["mape_pct"] < m["persistence"]["mape_pct"]
    assert m["setup"]["test_steps"] > 24 * 5
