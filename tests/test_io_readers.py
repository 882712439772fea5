"""Readers on the real files (bundled and ../shared) and on malformed variants of them."""

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coolshift.io import DataError, GapPolicy, read_carbon, read_carbon_forecast, read_telemetry, read_weather, read_workload
from coolshift.io.weather import wetbulb_stull_c
from conftest import REPO, shared

DATA = REPO / "data"
CISO = DATA / "carbon_intensity/eia930_2022/CISO_2022_hourly.csv"
PJM = DATA / "carbon_intensity/eia930_2022/PJM_2022_hourly.csv"
SJ_WX = DATA / "weather/openmeteo_2022/US-CAL-CISO_2022.json"


# --- carbon ------------------------------------------------------------------------------
def test_eia930_mix_reproduces_file_intensity_and_fills_short_gaps():
    ci = read_carbon(CISO)
    assert ci.attrs["format"] == "eia930"
    assert len(ci) == 8760 and str(ci.index.tz) == "UTC"
    assert ci.index[0] == pd.Timestamp("2022-01-01T00:00Z")
    # intensity recomputed from the fuel mix with IPCC medians equals the file's avg_CI
    np.testing.assert_allclose(ci["gco2_per_kwh"], ci["gco2_per_kwh_file"], rtol=1e-9)
    filled = [f for f in ci.attrs["filled"] if f["column"] == "gco2_per_kwh"]
    assert [f["steps"] for f in filled] == [1, 1, 1] and {f["rule"] for f in filled} == {"linear"}
    assert ci["gco2_per_kwh"].mean() == pytest.approx(256.2, abs=0.1)


def test_eia930_custom_factors_change_the_intensity():
    zero_gas = read_carbon(CISO, gap_policy=None)
    from coolshift.io.carbon import IPCC_LIFECYCLE_GCO2_PER_KWH, read_eia930

    f = dict(IPCC_LIFECYCLE_GCO2_PER_KWH, NG=0.0)
    low = read_eia930(CISO, factors_gco2_per_kwh=f)
    assert (low["gco2_per_kwh"] < zero_gas["gco2_per_kwh"]).mean() > 0.99


def test_long_gap_is_an_error_unless_the_fill_limit_allows_it():
    with pytest.raises(DataError) as e:
        read_carbon(PJM)
    msg = str(e.value)
    assert "PJM_2022_hourly.csv" in msg and "gco2_per_kwh" in msg and "2022-03-13T07:00:00+00:00" in msg and "22 steps" in msg
    ci = read_carbon(PJM, gap_policy=GapPolicy(max_fill_h=24))
    gap = pd.date_range("2022-03-13T07:00Z", periods=22, freq="h")
    np.testing.assert_allclose(ci.loc[gap, "gco2_per_kwh"], ci.loc[gap - pd.Timedelta("1D"), "gco2_per_kwh"])


def _canonical(tmp_path, n=48, start="2022-01-01T00:00:00Z"):
    idx = pd.date_range(start, periods=n, freq="h")
    vals = 200 + 50 * np.sin(np.arange(n) / 24 * 2 * np.pi)
    lines = ["timestamp,gco2_per_kwh"] + [f"{t.isoformat()},{v:.3f}" for t, v in zip(idx, vals)]
    return lines


def _write(tmp_path, lines, name="ci.csv"):
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n")
    return p


def test_canonical_round_trip(tmp_path):
    ci = read_carbon(_write(tmp_path, _canonical(tmp_path)))
    assert ci.attrs["format"] == "canonical" and len(ci) == 48 and ci.attrs["step"] == pd.Timedelta("1h")


BAD_CELLS = {
    "timestamp": ["not-a-date", "2022-13-45T00:00:00Z", "2022-01-01T05:00:00"],  # last: no offset
    "gco2_per_kwh": ["abc", "-5", "2500", "1e9"],
}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(row=st.integers(min_value=2, max_value=48), field=st.sampled_from(sorted(BAD_CELLS)), data=st.data())
def test_malformed_canonical_names_file_column_and_row(tmp_path, row, field, data):
    lines = _canonical(tmp_path)
    bad = data.draw(st.sampled_from(BAD_CELLS[field]))
    ts, val = lines[row - 1].split(",")
    lines[row - 1] = f"{bad},{val}" if field == "timestamp" else f"{ts},{bad}"
    p = _write(tmp_path, lines)
    with pytest.raises(DataError) as e:
        read_carbon(p)
    assert e.value.path == str(p) and e.value.column == field and e.value.row == row


def test_duplicate_timestamp_names_the_second_row(tmp_path):
    lines = _canonical(tmp_path)
    lines[10] = lines[9].split(",")[0] + ",123"
    with pytest.raises(DataError, match="duplicated timestamp") as e:
        read_carbon(_write(tmp_path, lines))
    assert e.value.row == 11


def test_missing_column_and_wrong_units(tmp_path):
    with pytest.raises(DataError, match="unrecognised carbon-intensity file"):
        read_carbon(_write(tmp_path, ["timestamp,intensity", "2022-01-01T00:00Z,3"]))
    with pytest.raises(DataError, match="missing column"):
        read_carbon(_write(tmp_path, ["timestamp,value", "2022-01-01T00:00Z,3"]), format="canonical")
    with pytest.raises(DataError, match="wrong unit"):
        read_carbon(_write(tmp_path, ["timestamp,kgco2_per_kwh", "2022-01-01T00:00Z,0.3"]), format="canonical")


def test_eia930_blank_cell_in_a_row_is_a_gap_and_text_is_an_error(tmp_path):
    lines = CISO.read_text().splitlines()[:30]
    text = list(lines)
    text[5] = text[5].replace(",", ",x", 1)  # garbage in the first fuel column of row 6
    with pytest.raises(DataError) as e:
        read_carbon(_write(tmp_path, text, "eia.csv"))
    assert e.value.row == 6 and e.value.column == "WND"


def test_electricitymaps_direct_and_lca():
    p = shared("carbon_intensity/electricitymaps_hourly/GB_2022_hourly.csv")
    direct = read_carbon(p, column="direct")
    lca = read_carbon(p, column="lca")
    assert direct.attrs["format"] == "electricitymaps" and len(direct) == 8760
    assert direct["gco2_per_kwh"].mean() == pytest.approx(156, abs=1)  # PROVENANCE: mean direct CI 2022 GB 156
    assert (lca["gco2_per_kwh"] >= direct["gco2_per_kwh"]).all()


def test_watttime_actual_and_forecast():
    act = read_carbon(shared("carbon_intensity/watttime_caiso_north_2023/watttime2023_caiso-north_actual.csv"))
    assert act.attrs["format"] == "watttime" and act.attrs["step"] == pd.Timedelta("5min")
    assert act["gco2_per_kwh"].mean() == pytest.approx(355, abs=1)
    fc_path = shared("carbon_intensity/watttime_caiso_north_2023/watttime2023_caiso-north_forecast.csv")
    with pytest.raises(DataError, match="issued-forecast file"):
        read_carbon(fc_path)
    fc = read_carbon_forecast(fc_path)
    assert len(fc) == 115932 and (fc["forecast_time"] > fc["request_time"]).all()
    assert fc["request_time"].nunique() == 8917


def test_lwa_mixed_steps_are_regularised():
    gb = read_carbon(shared("carbon_intensity/lets_wait_awhile_entsoe_2020/gb_ci.csv"))
    assert gb.attrs["format"] == "lwa" and gb.attrs["step"] == pd.Timedelta("30min")
    assert pd.infer_freq(gb.index[-100:]) == "30min"
    de = read_carbon(shared("carbon_intensity/lets_wait_awhile_entsoe_2020/ger_ci.csv"))
    assert len([f for f in de.attrs["filled"]]) == 2  # the two missing 15-min stamps (PROVENANCE)


# --- weather -------------------------------------------------------------------------------
def test_openmeteo_fixed_offset_to_utc():
    wx = read_weather(SJ_WX)
    raw = json.loads(SJ_WX.read_text())
    assert raw["utc_offset_seconds"] == -25200
    assert wx.index[0] == pd.Timestamp("2022-01-01T07:00Z")  # local 00:00 at UTC-7
    assert wx["temp_c"].iloc[0] == raw["hourly"]["temperature_2m"][0]
    assert len(wx) == 8760 and (wx["wetbulb_c"] <= wx["temp_c"]).all()


def test_openmeteo_malformed(tmp_path):
    raw = json.loads(SJ_WX.read_text())
    raw["hourly"]["temperature_2m"][100] = 75.0
    p = tmp_path / "wx.json"
    p.write_text(json.dumps(raw))
    with pytest.raises(DataError) as e:
        read_weather(p)
    # the file's own key is named (the seasonal check runs before the canonical renaming)
    assert e.value.column == "temperature_2m" and e.value.row == 101
    del raw["utc_offset_seconds"]
    p.write_text(json.dumps(raw))
    with pytest.raises(DataError, match="utc_offset_seconds"):
        read_weather(p)


def test_epw_via_pvlib():
    wx = read_weather(shared("weather/epw_tmyx/USA_CA_San.Jose-Mineta.epw"))
    assert wx.attrs["format"] == "epw"
    assert wx["temp_c"].mean() == pytest.approx(15.2, abs=0.1)  # PROVENANCE: mean 15.2
    assert wx["temp_c"].max() == pytest.approx(34.4)


def test_wetbulb_stull_published_value():
    # Stull (2011) worked example: T = 20 degC, RH = 50 % -> Tw = 13.7 degC
    assert wetbulb_stull_c(20.0, 50.0) == pytest.approx(13.7, abs=0.05)


def test_canonical_weather_and_units(tmp_path):
    p = tmp_path / "wx.csv"
    p.write_text("timestamp,temp_c,rh_pct\n2022-06-01T00:00Z,20,50\n2022-06-01T01:00Z,21,55\n")
    wx = read_weather(p)
    assert wx["wetbulb_c"].iloc[0] == pytest.approx(13.7, abs=0.05)
    p.write_text("timestamp,temp_f,rh_pct\n2022-06-01T00:00Z,70,50\n")
    with pytest.raises(DataError, match="unrecognised weather file"):
        read_weather(p)
    p.write_text("timestamp,temp_c,rh_pct\n2022-06-01T00:00Z,20,150\n2022-06-01T01:00Z,21,55\n")
    with pytest.raises(DataError) as e:
        read_weather(p)
    assert e.value.column == "rh_pct" and e.value.row == 2


# --- workload ------------------------------------------------------------------------------
def test_traces_without_timestamps_need_an_anchor():
    p = DATA / "workload/Alibaba_CPU_Data_Hourly_1.csv"
    with pytest.raises(DataError, match="give a start time"):
        read_workload(p)
    wl = read_workload(p, start="2022-01-01T00:00:00Z")
    assert len(wl) == 8904 and wl.attrs["format"] == "sustaindc_hourly"
    assert wl["cpu_util"].mean() == pytest.approx(0.495, abs=0.001)
    ali = read_workload(DATA / "workload/alibaba2018_machine_usage_days_1_to_8_grouped_300_seconds.csv", start="2018-01-01T00:00Z")
    assert ali.attrs["step"] == pd.Timedelta("5min") and ali["cpu_util"].mean() == pytest.approx(0.40, abs=0.01)


def test_percent_trace_in_canonical_is_rejected(tmp_path):
    p = tmp_path / "wl.csv"
    p.write_text("timestamp,cpu_util\n2022-01-01T00:00Z,0.5\n2022-01-01T01:00Z,55\n")
    with pytest.raises(DataError) as e:
        read_workload(p)
    assert e.value.row == 3 and "outside the plausible range" in str(e.value)


# --- telemetry -------------------------------------------------------------------------------
def _telemetry(n=8):
    idx = pd.date_range("2022-07-01T00:00Z", periods=n, freq="15min")
    return pd.DataFrame(
        {
            "it_power_kw": 1000.0, "cooling_power_kw": 250.0, "facility_power_kw": 1330.0, "outside_temp_c": 25.0,
            "outside_rh_pct": 40.0, "chw_setpoint_c": 10.0, "supply_setpoint_c__a": 18.0, "inlet_temp_c__a": 20.5,
            "zone_it_power_kw__a": 1000.0,
        },
        index=pd.Index(idx, name="timestamp"),
    )


def test_telemetry_schema(tmp_path):
    p = tmp_path / "t.csv"
    t = _telemetry()
    t.to_csv(p)
    got = read_telemetry(p)
    assert got.attrs["zones"] == ["a"] and len(got) == 8
    t.iloc[3, t.columns.get_loc("facility_power_kw")] = 900.0
    t.to_csv(p)
    with pytest.raises(DataError, match="facility power below IT power") as e:
        read_telemetry(p)
    assert e.value.row == 5
    _telemetry().drop(columns=["inlet_temp_c__a"]).to_csv(p)
    with pytest.raises(DataError, match="missing column"):
        read_telemetry(p, zones=["a"])
