"""The nightly plan's weather: forecast from the past by default, the data as given on request."""

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from coolshift.cli import app
from coolshift.usecases.nightly import horizon_forecast
from conftest import SMALL_SITE


def _data():
    idx = pd.date_range("2022-01-01", periods=18 * 96, freq="15min", tz="UTC")
    hours = np.arange(len(idx)) / 4
    return pd.DataFrame({"gco2_per_kwh": 300.0 + 50 * np.sin(2 * np.pi * hours / 24),
                         "temp_c": 12 + 6 * np.sin(2 * np.pi * hours / 24), "rh_pct": 70.0, "wetbulb_c": 9.0,
                         "web_units_per_h": 100.0}, index=idx)


def test_the_plan_forecasts_the_weather_from_before_its_start():
    data = _data()
    t0 = pd.Timestamp("2022-01-17T00:00Z")
    poisoned = data.copy()
    poisoned.loc[t0:, "temp_c"] = 45.0  # a future no forecast could know
    fc, info = horizon_forecast(poisoned, t0)
    assert info["weather"] == "model"
    # a clean daily cycle: forecast within 0.1 degC of the cycle, never near the poisoned 45
    assert np.abs(fc["temp_c"] - data.loc[t0:, "temp_c"]).max() < 0.1
    given, info = horizon_forecast(poisoned, t0, "model", "perfect")
    assert info["weather"] == "perfect" and (given["temp_c"] == 45.0).all()


def test_plan_refuses_an_unknown_weather_mode(tmp_path):
    r = CliRunner().invoke(app, ["plan", "--site", str(SMALL_SITE), "--start", "2022-07-01", "--out", str(tmp_path / "p"),
                                 "--weather-forecast", "psychic", "--no-mlflow"])
    assert r.exit_code == 2 and "weather-forecast" in r.output
