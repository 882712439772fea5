"""The weather forecast the loop plans on: diurnal profile + decayed anomaly, from the past only."""

import numpy as np
import pandas as pd
import pytest

from coolshift.control.receding import forecast_weather
from coolshift.io.weather import wetbulb_stull_c
from coolshift.models.forecast import WeatherForecaster


def _hourly(values, start="2022-06-01") -> pd.Series:
    return pd.Series(np.asarray(values, float), index=pd.date_range(start, periods=len(values), freq="1h", tz="UTC"),
                     name="temp_c")


def test_a_repeating_day_is_forecast_exactly():
    day = 20.0 + 5.0 * np.sin(2 * np.pi * np.arange(24) / 24)
    y = _hourly(np.tile(day, 10))
    m = WeatherForecaster(name="temp_c").fit(y)
    issue = y.index[-1] + pd.Timedelta("1h")
    idx = pd.date_range(issue, periods=30, freq="1h")
    fc = m.predict_day_ahead(y, issue, idx)["temp_c"].to_numpy()
    np.testing.assert_allclose(fc, np.tile(day, 2)[:30], atol=1e-9)


def test_the_anomaly_persists_with_the_fitted_weights():
    """Flat 10 degC for eight days, the last hour 12: anomaly +2 over the profile (10), so the
    forecast at horizon h is 10 + 2 x phi_h (phi set by hand here)."""
    y = _hourly([10.0] * (8 * 24 - 1) + [12.0])
    m = WeatherForecaster(name="temp_c").fit(y)
    m.phi_ = np.array([1.0, 0.5, 0.25] + [0.0] * 45)
    issue = y.index[-1] + pd.Timedelta("1h")
    fc = m.predict_day_ahead(y, issue, pd.date_range(issue, periods=4, freq="1h"))["temp_c"].to_numpy()
    np.testing.assert_allclose(fc, [12.0, 11.0, 10.5, 10.0])


def test_the_weights_learn_how_long_an_anomaly_lasts():
    """A diurnal cycle plus an AR(1) anomaly with coefficient 0.8 per hour: phi_h ~ 0.8^h."""
    rng = np.random.default_rng(3)
    n = 120 * 24
    a = np.zeros(n)
    for t in range(1, n):
        a[t] = 0.8 * a[t - 1] + rng.normal(0.0, 1.0)
    y = _hourly(15.0 + 6.0 * np.sin(2 * np.pi * np.arange(n) / 24) + a)
    m = WeatherForecaster(name="temp_c", issue_every_h=1.0).fit(y)
    assert m.phi_[0] == pytest.approx(0.8, abs=0.06)
    assert m.phi_[1] == pytest.approx(0.64, abs=0.07)
    assert m.phi_[23] < 0.1  # no skill left after a day: the profile alone


def test_the_forecast_uses_only_the_past_and_beats_persistence_on_real_weather():
    y = _hourly(20 + 5 * np.sin(2 * np.pi * np.arange(20 * 24) / 24) + np.random.default_rng(0).normal(0, 1, 20 * 24))
    m = WeatherForecaster(name="temp_c").fit(y[:"2022-06-15"])
    issue = pd.Timestamp("2022-06-16T00:00Z")
    idx = pd.date_range(issue, periods=24, freq="1h")
    poisoned = y.copy()
    poisoned[issue:] = 55.0
    a = m.predict_day_ahead(y, issue, idx)["temp_c"].to_numpy()
    b = m.predict_day_ahead(poisoned, issue, idx)["temp_c"].to_numpy()
    np.testing.assert_array_equal(a, b)


def test_forecast_weather_fills_a_horizon_and_derives_wetbulb():
    idx = pd.date_range("2022-06-01", periods=10 * 96, freq="15min", tz="UTC")
    hours = np.arange(len(idx)) / 4
    temp = 20 + 5 * np.sin(2 * np.pi * hours / 24)
    rh = 60 - 20 * np.sin(2 * np.pi * hours / 24)
    frame = pd.DataFrame({"gco2_per_kwh": 200.0, "temp_c": temp, "rh_pct": rh,
                          "wetbulb_c": wetbulb_stull_c(temp, rh)}, index=idx)
    t0 = pd.Timestamp("2022-06-09T00:00Z")
    horizon = frame.loc[t0:].copy()
    horizon[["temp_c", "rh_pct", "wetbulb_c"]] = 99.0  # the future: must not be seen
    fc = forecast_weather(frame.loc[: t0 - pd.Timedelta("1ns")].resample("1h").mean(), horizon)
    truth = frame.loc[t0:]
    # a clean daily cycle: the forecast is the cycle (the hourly means of a sine, interpolated)
    assert np.abs(fc["temp_c"] - truth["temp_c"]).max() < 0.1
    np.testing.assert_allclose(fc["wetbulb_c"], wetbulb_stull_c(fc["temp_c"], fc["rh_pct"]))
    assert (fc["gco2_per_kwh"] == 200.0).all()  # other columns untouched


def test_a_weather_model_fitted_on_little_history_is_refitted_when_it_doubles():
    idx = pd.date_range("2022-06-01", periods=40 * 24, freq="1h", tz="UTC")
    hourly = pd.DataFrame({"temp_c": 20 + 5 * np.sin(2 * np.pi * np.arange(len(idx)) / 24), "rh_pct": 50.0}, index=idx)
    fitted = {}

    def at(days):
        t = idx[0] + pd.Timedelta(days=days)
        horizon = pd.DataFrame({"temp_c": 0.0, "rh_pct": 0.0}, index=pd.date_range(t, periods=8, freq="15min"))
        forecast_weather(hourly.loc[: t - pd.Timedelta("1h")], horizon, fitted, pd.Timedelta(days=30))
        return fitted["temp_c"][0]

    assert at(2) == idx[0] + pd.Timedelta(days=2)
    assert at(3) == idx[0] + pd.Timedelta(days=2)  # 3 days of history: not yet doubled
    assert at(4) == idx[0] + pd.Timedelta(days=4)  # 4 days: doubled, refitted
    assert at(7) == idx[0] + pd.Timedelta(days=4)
    assert at(8) == idx[0] + pd.Timedelta(days=8)  # doubled again
    # nothing observed before the horizon: the value measured now, held (never the future)
    horizon = pd.DataFrame({"temp_c": [21.0, 99.0], "rh_pct": [50.0, 50.0]},
                           index=pd.date_range(idx[0], periods=2, freq="15min"))
    assert (forecast_weather(hourly.iloc[:0], horizon)["temp_c"] == 21.0).all()
