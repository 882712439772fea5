"""Nightly plan plumbing: dates, run folders replaced atomically, the lock, forecasts from the past only."""

import multiprocessing as mp
import os
import time

import numpy as np
import pandas as pd
import pytest

from coolshift.usecases.nightly import horizon_forecast, plan_start
from coolshift.runs import RunLocked, run_lock, staged_run_dir


def test_plan_start_resolves_for_and_start():
    now = pd.Timestamp("2026-11-23T21:30:00Z")
    assert plan_start("tomorrow", None, now) == pd.Timestamp("2026-11-24T00:00Z")
    assert plan_start("today", None, now) == pd.Timestamp("2026-11-23T00:00Z")
    assert plan_start("2022-07-15", None, now) == pd.Timestamp("2022-07-15T00:00Z")
    assert plan_start(None, "2022-07-15T06:00+02:00", now) == pd.Timestamp("2022-07-15T04:00Z")
    with pytest.raises(ValueError, match="exactly one"):
        plan_start("tomorrow", "2022-01-01", now)
    with pytest.raises(ValueError, match="--for must be"):
        plan_start("next week", None, now)


def test_staged_run_replaces_whole_run_and_keeps_old_on_failure(tmp_path):
    final = tmp_path / "runs" / "2022-07-15"
    with staged_run_dir(final) as d:
        (d / "plan.csv").write_text("v1")
        (d / "extra.txt").write_text("only in v1")
    with pytest.raises(RuntimeError):
        with staged_run_dir(final) as d:
            (d / "plan.csv").write_text("half-written v2")
            raise RuntimeError("solver crashed")
    assert (final / "plan.csv").read_text() == "v1"  # the failed run left the old one intact
    with staged_run_dir(final) as d:
        (d / "plan.csv").write_text("v2")
    assert (final / "plan.csv").read_text() == "v2"
    assert not (final / "extra.txt").exists()  # replaced as a whole, not merged
    assert [p.name for p in final.parent.iterdir()] == ["2022-07-15"]  # no staging left behind


def _hold(root, ready, release):
    with run_lock(root, "plan-x"):
        ready.set()
        release.wait(10)


def test_lock_refuses_a_concurrent_run_and_frees_on_exit(tmp_path):
    ctx = mp.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    p = ctx.Process(target=_hold, args=(tmp_path, ready, release))
    p.start()
    try:
        assert ready.wait(10)
        with pytest.raises(RunLocked, match=str(p.pid)):
            with run_lock(tmp_path, "plan-x"):
                pass
    finally:
        release.set()
        p.join(10)
    with run_lock(tmp_path, "plan-x"):  # free again once the holder exited
        pass


def test_lock_is_released_when_the_holder_is_killed(tmp_path):
    ctx = mp.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    p = ctx.Process(target=_hold, args=(tmp_path, ready, release))
    p.start()
    assert ready.wait(10)
    p.kill()
    p.join(10)
    with run_lock(tmp_path, "plan-x"):
        pass


def test_model_forecast_uses_only_data_before_the_start():
    idx = pd.date_range("2022-01-01", periods=18 * 96, freq="15min", tz="UTC")
    rng = np.random.default_rng(0)
    daily = 300 + 100 * np.sin(np.arange(len(idx)) / 96 * 2 * np.pi)
    data = pd.DataFrame({"gco2_per_kwh": daily + rng.normal(0, 5, len(idx)), "temp_c": 10.0,
                         "web_units_per_h": 100 + 10 * np.cos(np.arange(len(idx)) / 96 * 2 * np.pi)}, index=idx)
    t0 = pd.Timestamp("2022-01-17T00:00Z")
    fc, info = horizon_forecast(data.loc[: t0 + pd.Timedelta("1D") - pd.Timedelta("1ns")], t0)
    assert info["forecasters"]["gco2_per_kwh"] == "CarbonIntensityForecaster"
    # change the future: the forecast must not move
    poisoned = data.copy()
    poisoned.loc[t0:, "gco2_per_kwh"] = 1999.0
    fc2, _ = horizon_forecast(poisoned.loc[: t0 + pd.Timedelta("1D") - pd.Timedelta("1ns")], t0)
    np.testing.assert_allclose(fc["gco2_per_kwh"], fc2["gco2_per_kwh"])
    err = np.abs(fc["gco2_per_kwh"] - data.loc[fc.index, "gco2_per_kwh"]).mean()
    assert err < 20  # a clean daily cycle is forecast to within the noise scale
    perfect, info = horizon_forecast(poisoned.loc[: t0 + pd.Timedelta("1D") - pd.Timedelta("1ns")], t0, "perfect")
    assert (perfect["gco2_per_kwh"] == 1999.0).all() and info["mode"] == "perfect"
