"""Any year on the examples: the bundled 2022 workload trace drives another year's period,
re-anchored by weekday and hour, and `validate` says so and names the carbon column it read.

The 2023 carbon and weather files here are synthetic (written by the test, round numbers);
the workload is the bundled real trace.
"""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from coolshift.cli import app
from coolshift.config import load_site
from coolshift.io import DataError, load_site_data, read_workload
from coolshift.io.workload import reanchor_by_week
from conftest import REPO, SMALL_SITE

GOOGLE = REPO / "data" / "workload" / "GoogleClusteData_CPU_Data_Hourly_1.csv"


def _trace():
    return read_workload(GOOGLE, start="2022-01-01T00:00:00Z")  # as the San Jose example anchors it


def _year_files(tmp_path, start="2023-06-30", days=10):
    """Synthetic canonical carbon (200 g/kWh + 10 x hour of day) and weather (18 degC, 60 %) files."""
    idx = pd.date_range(start, periods=24 * days, freq="h", tz="UTC")
    c = tmp_path / "carbon_2023.csv"
    pd.DataFrame({"timestamp": [t.isoformat() for t in idx], "gco2_per_kwh": 200.0 + 10.0 * idx.hour}).to_csv(c, index=False)
    w = tmp_path / "weather_2023.csv"
    pd.DataFrame({"timestamp": [t.isoformat() for t in idx], "temp_c": 18.0, "rh_pct": 60.0}).to_csv(w, index=False)
    return c, w


def test_a_covered_period_is_left_alone():
    tr = _trace()
    out = reanchor_by_week(tr, pd.Timestamp("2022-03-01", tz="UTC"), pd.Timestamp("2022-03-08", tz="UTC"))
    assert out is tr and "reanchored" not in out.attrs


def test_another_year_reads_the_same_weekday_and_hour():
    tr = _trace()
    t0, t1 = pd.Timestamp("2023-07-01", tz="UTC"), pd.Timestamp("2023-07-08", tz="UTC")
    out = reanchor_by_week(tr, t0, t1)
    # 2023-07-01 is a Saturday; 52 weeks (364 days) earlier is Saturday 2022-07-02
    assert t0.day_name() == "Saturday" and pd.Timestamp("2022-07-02").day_name() == "Saturday"
    np.testing.assert_array_equal(out["cpu_util"].to_numpy(),
                                  tr.loc["2022-07-02":"2022-07-08", "cpu_util"].to_numpy())
    info = out.attrs["reanchored"]
    assert info["cycle_weeks"] == 52 and info["steps_reanchored"] == info["steps"] == 168
    # the trace itself is 8760 h = 52 weeks + 1 day: its last day is kept where it is covered
    edge = reanchor_by_week(tr, pd.Timestamp("2022-12-31", tz="UTC"), pd.Timestamp("2023-01-02", tz="UTC"))
    np.testing.assert_array_equal(edge["cpu_util"].to_numpy()[:24], tr["cpu_util"].to_numpy()[-24:])
    # 2023-01-01 (Sunday) -> 2022-01-02 (Sunday): 52 weeks after the trace start wraps to its day 2
    np.testing.assert_array_equal(edge["cpu_util"].to_numpy()[24:], tr["cpu_util"].to_numpy()[24:48])


@settings(max_examples=25, deadline=None)
@given(st.integers(-400, 4000), st.integers(0, 23))
def test_every_reanchored_step_keeps_its_weekday_and_hour(day, hour):
    # a trace whose value is its own hour of the week (Monday 00:00 = 0): hand-checkable
    idx = pd.date_range("2022-01-03", periods=24 * 7 * 8, freq="h", tz="UTC")  # 8 weeks from a Monday
    tr = pd.DataFrame({"cpu_util": (idx.dayofweek * 24 + idx.hour) / 168.0}, index=idx)
    tr.attrs["step"] = pd.Timedelta("1h")
    t0 = pd.Timestamp("2022-01-01", tz="UTC") + pd.Timedelta(days=day, hours=hour)
    out = reanchor_by_week(tr, t0, t0 + pd.Timedelta("2D"))
    np.testing.assert_allclose(out["cpu_util"].to_numpy() * 168.0, out.index.dayofweek * 24 + out.index.hour)


def test_a_trace_shorter_than_a_week_is_refused():
    idx = pd.date_range("2022-01-03", periods=100, freq="h", tz="UTC")
    tr = pd.DataFrame({"cpu_util": 0.5}, index=idx)
    tr.attrs.update({"step": pd.Timedelta("1h"), "source": "short.csv"})
    with pytest.raises(DataError, match="less than a week.*repeat: true"):
        reanchor_by_week(tr, pd.Timestamp("2023-01-01", tz="UTC"), pd.Timestamp("2023-01-02", tz="UTC"))


def test_site_data_for_2023_from_the_2022_example(tmp_path):
    c, w = _year_files(tmp_path)
    site = load_site(SMALL_SITE)
    d = load_site_data(site, "2023-07-01", "2023-07-08", carbon=c, weather=w)
    assert len(d) == 7 * 96 and d.index[0] == pd.Timestamp("2023-07-01T00:00Z")
    # hourly trace held over four 15-min steps; Saturday 2023-07-01 10:00 <- Saturday 2022-07-02 10:00
    want = _trace().loc["2022-07-02T10:00Z", "cpu_util"]
    assert (d.loc["2023-07-01T10:00Z":"2023-07-01T10:45Z", "cpu_util"] == want).all()
    assert d.loc["2023-07-01T10:00Z", "gco2_per_kwh"] == 300.0  # 200 + 10 x 10 h
    assert d.attrs["sources"]["workload_reanchored"]["cycle_weeks"] == 52


def test_validate_on_another_year_says_what_it_did(tmp_path):
    c, w = _year_files(tmp_path)
    r = CliRunner().invoke(app, ["validate", "--site", str(SMALL_SITE), "--carbon", str(c), "--weather", str(w),
                                 "--start", "2023-07-01", "--end", "2023-07-08"])
    out = " ".join(r.output.split())
    assert r.exit_code == 0, r.output
    assert "same weekday and hour (52-week cycle)" in out and "2022-01-01 to 2023-01-01" in out
    assert "read as canonical" in out
    # the example's own carbon file: the reader and its basis are named
    r = CliRunner().invoke(app, ["validate", "--site", str(SMALL_SITE), "--start", "2022-05-01", "--end", "2022-05-08"])
    out = " ".join(r.output.split())
    assert r.exit_code == 0 and "read as eia930" in out and "life-cycle" in out and "re-anchored" not in out
    assert "same weekday" not in out


def test_validate_names_the_electricity_maps_column(tmp_path):
    from test_io_readers import _emaps_file

    p = _emaps_file(tmp_path, [100.0] * 24 * 9, [150.0] * 24 * 9)  # 2023-03-01 .. 03-10
    wx = tmp_path / "wx.csv"
    idx = pd.date_range("2023-03-01", periods=24 * 9, freq="h", tz="UTC")
    pd.DataFrame({"timestamp": [t.isoformat() for t in idx], "temp_c": 12.0, "rh_pct": 70.0}).to_csv(wx, index=False)
    r = CliRunner().invoke(app, ["validate", "--site", str(SMALL_SITE), "--carbon", str(p), "--weather", str(wx),
                                 "--start", "2023-03-01", "--end", "2023-03-08"])
    out = " ".join(r.output.split())
    assert r.exit_code == 0, r.output
    assert "read as electricitymaps, column 'Carbon Intensity gCO₂eq/kWh (LCA)'" in out and "lca is the default" in out
    assert "150.00" in out  # the LCA values, not the direct ones, are the series
