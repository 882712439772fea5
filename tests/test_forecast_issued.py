"""Issued intensity forecasts: the SGIP/WattTime readers and the look-up the loop plans on."""

import gzip
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from coolshift.cli import app
from coolshift.control.receding import IssuedForecasts, ModelForecast
from coolshift.io import DataError
from coolshift.io.issued import read_issued_forecast, read_sgip, read_sgip_actual
from conftest import REPO, SMALL_SITE

T = pd.Timestamp("2022-07-01T00:00Z")


def _issued(rows):
    return pd.DataFrame(rows, columns=["request_time", "forecast_time", "gco2_per_kwh"])


def _five_min(issue, first, values):
    return [(issue, first + pd.Timedelta(minutes=5 * k), v) for k, v in enumerate(values)]


def test_a_plan_step_gets_the_mean_of_the_forecast_issued_before_the_decision():
    """Issued at 00:10 for 00:15..00:40 (5-min values 100..600); another issue at 00:15 (999)
    is not yet known at a decision at 00:15. Step 00:15-00:30: (100+200+300)/3 = 200;
    00:30-00:45: (400+500+600)/3 = 500; 00:45 on: not covered."""
    rows = _five_min(T + pd.Timedelta("10min"), T + pd.Timedelta("15min"), [100, 200, 300, 400, 500, 600])
    rows += _five_min(T + pd.Timedelta("15min"), T + pd.Timedelta("20min"), [999] * 6)
    src = IssuedForecasts(_issued(rows))
    idx = pd.date_range(T + pd.Timedelta("15min"), periods=4, freq="15min")
    v = src.values(idx)
    np.testing.assert_allclose(v[:2], [200.0, 500.0])
    assert np.isnan(v[2:]).all()
    assert (src.steps_planned, src.steps_issued) == (4, 2)
    # two hours later the newest issue is too old (max_age 1 h): nothing is used
    assert np.isnan(src.values(idx + pd.Timedelta("2h"))).all()


def test_hourly_issued_values_hold_over_their_hour():
    rows = [(T - pd.Timedelta("5min"), T + pd.Timedelta(hours=h), 100.0 * (h + 1)) for h in range(2)]
    v = IssuedForecasts(_issued(rows)).values(pd.date_range(T, periods=9, freq="15min"))
    np.testing.assert_allclose(v[:8], [100.0] * 4 + [200.0] * 4)
    assert np.isnan(v[8])


def test_the_loop_plans_on_issued_values_where_they_cover_and_its_own_forecast_beyond():
    idx = pd.date_range(T - pd.Timedelta(days=2), periods=3 * 96, freq="15min")
    actual = pd.DataFrame({"gco2_per_kwh": 300.0, "web_units_per_h": 100.0}, index=idx)
    rows = _five_min(T - pd.Timedelta("5min"), T, [50.0] * 6)  # 00:00..00:30: two whole steps
    provider = ModelForecast(actual, issued=IssuedForecasts(_issued(rows)))
    fc = provider(SimpleNamespace(forecast=actual.loc[T:]), 8)
    np.testing.assert_allclose(fc["gco2_per_kwh"].to_numpy(), [50.0, 50.0] + [300.0] * 6)  # own: persistence of 300


def _sgip(tmp_path, body: str, name="sgip.csv.gz"):
    p = tmp_path / name
    p.write_bytes(gzip.compress(body.encode()))
    return p


def test_sgip_reader_converts_kg_to_g_and_dates_each_lead(tmp_path):
    p = _sgip(tmp_path, "time,moer,f1,f2\n2020-07-01 00:00:00+00:00,0.2,0.25,0.3\n"
                        "2020-07-01 00:05:00+00:00,0.21,0.31,0.35\n")
    f = read_sgip(p)
    assert list(f.columns) == ["request_time", "forecast_time", "gco2_per_kwh"]
    np.testing.assert_allclose(f["gco2_per_kwh"], [250.0, 300.0, 310.0, 350.0])
    assert f["forecast_time"].iloc[1] == pd.Timestamp("2020-07-01T00:10Z")
    assert f["forecast_time"].iloc[2] == pd.Timestamp("2020-07-01T00:10Z")
    a = read_sgip_actual(p)
    np.testing.assert_allclose(a["gco2_per_kwh"], [200.0, 210.0])
    assert str(a.index.tz) == "UTC"


@pytest.mark.parametrize("body, match", [
    ("time,moer,f1\n2020-07-01 00:00:00+00:00,0.2,250\n", "kgCO2/kWh"),  # grams given
    ("time,moer,f1,f3\n2020-07-01 00:00:00+00:00,0.2,0.2,0.2\n", "not contiguous"),
    ("time,mer,f1\n2020-07-01 00:00:00+00:00,0.2,0.2\n", "missing column"),
    ("time,moer,f1\n2020-07-01 00:00,0.2,0.2\n", "no UTC offset"),
])
def test_sgip_reader_refuses_bad_files_naming_what_is_wrong(tmp_path, body, match):
    with pytest.raises(DataError, match=match):
        read_issued_forecast(_sgip(tmp_path, body))


def test_the_bundled_archive_reads_as_issued_forecasts_three_hours_ahead():
    f = read_issued_forecast(REPO / "data/carbon_intensity/sgip_moer_pge_2020/SGIP_CAISO_PGE_2020-07.csv.gz")
    lead = (f["forecast_time"] - f["request_time"]).max()
    assert lead == pd.Timedelta(hours=3)
    assert f["gco2_per_kwh"].between(0, 2000).all()


def test_evaluate_issued_needs_a_readable_forecast_file(tmp_path):
    r = CliRunner().invoke(app, ["evaluate", "--site", str(SMALL_SITE), "--out", str(tmp_path / "o"),
                                 "--forecast", "issued"])
    assert r.exit_code == 2 and "--issued" in r.output
    bad = _sgip(tmp_path, "time,moer,f1\n2022-07-01 00:00:00+00:00,0.2,250\n")
    r = CliRunner().invoke(app, ["evaluate", "--site", str(SMALL_SITE), "--out", str(tmp_path / "o"), "--start",
                                 "2022-07-01", "--end", "2022-07-02", "--forecast", "issued", "--issued", str(bad)])
    assert r.exit_code == 2 and "sgip.csv.gz" in r.output and "f1" in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)
