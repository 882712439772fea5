"""Issued weather forecasts in Open-Meteo's JSON: the reader and the loop planning on them."""

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from coolshift.cli import app
from coolshift.control.receding import ModelForecast
from coolshift.io import DataError
from coolshift.io.forecast_weather import read_openmeteo_forecast
from coolshift.io.weather import wetbulb_stull_c
from conftest import SMALL_SITE


def _write(tmp_path, hourly, offset=-25200, units=None, name="om.json"):
    doc = {"latitude": 37.4, "longitude": -121.9, "utc_offset_seconds": offset, "timezone": "America/Los_Angeles",
           "hourly_units": units or {"time": "iso8601", "temperature_2m": "\u00b0C"}, "hourly": hourly}
    p = tmp_path / name
    p.write_text(json.dumps(doc))
    return p


def test_previous_runs_are_dated_back_by_their_day(tmp_path):
    p = _write(tmp_path, {"time": ["2022-07-01T00:00", "2022-07-01T01:00"],
                          "temperature_2m": [19.0, 18.0],  # day 0: the latest run, not a forecast made ahead
                          "temperature_2m_previous_day1": [20.0, 21.0], "relative_humidity_2m_previous_day1": [50, 60],
                          "temperature_2m_previous_day2": [22.0, None], "relative_humidity_2m_previous_day2": [40, 40]})
    f = read_openmeteo_forecast(p)
    # local PDT (UTC-7): 00:00 local is 07:00 UTC
    t = pd.Timestamp("2022-07-01T07:00Z")
    assert len(f) == 3  # two day-1 values, one day-2 value (the null is dropped)
    first = f[f["forecast_time"] == t].set_index("request_time")
    assert first.loc[t - pd.Timedelta(days=1), "temp_c"] == 20.0
    assert first.loc[t - pd.Timedelta(days=2), "temp_c"] == 22.0
    np.testing.assert_allclose(f["wetbulb_c"], wetbulb_stull_c(f["temp_c"], f["rh_pct"]))


def test_a_plain_forecast_needs_its_issue_time(tmp_path):
    p = _write(tmp_path, {"time": ["2022-07-01T00:00", "2022-07-01T01:00", "2022-07-01T02:00"],
                          "temperature_2m": [19.0, 18.0, 17.0], "relative_humidity_2m": [50, 50, 50]}, offset=0)
    with pytest.raises(DataError, match="issued"):
        read_openmeteo_forecast(p)
    f = read_openmeteo_forecast(p, issued_at="2022-07-01T00:30Z")
    assert list(f["temp_c"]) == [18.0, 17.0]  # the hours before the issue are not a forecast
    assert (f["request_time"] == pd.Timestamp("2022-07-01T00:30Z")).all()


@pytest.mark.parametrize("hourly, units, match", [
    ({"time": ["2022-07-01T00:00"], "temperature_2m": [68.0], "relative_humidity_2m": [50]},
     {"temperature_2m": "\u00b0F"}, "Celsius"),
    ({"time": ["2022-07-01T00:00", "2022-07-01T01:00"], "temperature_2m": [20.0, 95.0], "relative_humidity_2m": [50, 50]},
     None, "outside"),
    ({"time": ["2022-07-01T00:00"], "temperature_2m": [20.0, 21.0], "relative_humidity_2m": [50]}, None, "2 values"),
    ({"time": ["yesterday"], "temperature_2m": [20.0], "relative_humidity_2m": [50]}, None, "unparseable"),
])
def test_bad_responses_are_refused_naming_the_field(tmp_path, hourly, units, match):
    with pytest.raises(DataError, match=match):
        read_openmeteo_forecast(_write(tmp_path, hourly, units=units), issued_at="2022-06-30T00:00Z")


def test_the_loop_plans_on_issued_weather_where_it_covers_and_its_own_forecast_beyond():
    t0 = pd.Timestamp("2022-07-03T00:00Z")
    idx = pd.date_range(t0 - pd.Timedelta(days=2), periods=3 * 96, freq="15min")
    actual = pd.DataFrame({"gco2_per_kwh": 300.0, "temp_c": 10.0, "rh_pct": 50.0, "wetbulb_c": wetbulb_stull_c(10.0, 50.0)},
                          index=idx)
    issued = pd.DataFrame({"request_time": t0 - pd.Timedelta(days=1), "forecast_time": [t0, t0 + pd.Timedelta("1h")],
                           "temp_c": [30.0, 32.0], "rh_pct": [40.0, 40.0]})
    provider = ModelForecast(actual, intensity=False, weather=True, issued_weather=issued)
    fc = provider(SimpleNamespace(forecast=actual.loc[t0:]), 12)
    np.testing.assert_allclose(fc["temp_c"].to_numpy(), [30.0] * 4 + [32.0] * 4 + [10.0] * 4)  # own: the flat past
    np.testing.assert_allclose(fc["wetbulb_c"], wetbulb_stull_c(fc["temp_c"], fc["rh_pct"]))


def test_evaluate_issued_weather_needs_its_file(tmp_path):
    r = CliRunner().invoke(app, ["evaluate", "--site", str(SMALL_SITE), "--out", str(tmp_path / "o"),
                                 "--weather-forecast", "issued"])
    assert r.exit_code == 2 and "--issued-weather" in r.output
