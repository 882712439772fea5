"""The live loop's pure parts: the work ledger, the weather correction, the model at measured decisions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from coolshift.config import load_site
from coolshift.control.live import Telemetry, WorkLedger, model_at_measured, weather_bias_corrected

SITE = "configs/sites/sanjose_colo_2mw.yaml"  # batch class "batch", deadline 12 h, 15-min steps
T0 = pd.Timestamp("2022-06-01 00:15", tz="UTC")
STEP = pd.Timedelta(minutes=15)


@pytest.fixture(scope="module")
def site():
    return load_site(SITE)


def test_ledger_keeps_due_times_and_serves_oldest_first(site):
    led = WorkLedger(site)
    # step 00:00-00:15: 10 units arrive, none served; due at the end of the step 12 h after arrival began
    led.update(T0, {"batch_arrivals_units__batch": 10.0, "queue_units__batch": 10.0})
    assert led.backlog_due(T0, 0.25) == {"batch": [(11.75, 10.0)]}
    # next step: 4 arrive, the queue shows 8: 6 were served, from the oldest chunk
    t1 = T0 + STEP
    led.update(t1, {"batch_arrivals_units__batch": 4.0, "queue_units__batch": 8.0})
    assert led.backlog_due(t1, 0.25) == {"batch": [(11.5, 4.0), (11.75, 4.0)]}
    assert led.units() == {"batch": 8.0}
    # the queue shows more than the ledger knows: the rest is taken as due at once (one step)
    t2 = t1 + STEP
    led.update(t2, {"batch_arrivals_units__batch": 0.0, "queue_units__batch": 11.0})
    due = led.backlog_due(t2, 0.25)["batch"]
    assert due[0] == (0.25, 3.0) and sum(u for _, u in due) == pytest.approx(11.0)
    # overdue work is never due in less than one step
    later = t2 + pd.Timedelta(hours=20)
    assert min(h for h, _ in led.backlog_due(later, 0.25)["batch"]) == 0.25


def test_ledger_takes_arrivals_from_the_data_without_a_point(site):
    idx = pd.date_range("2022-06-01", periods=4, freq="15min", tz="UTC")
    data = pd.DataFrame({"batch_units_per_h": [40.0, 80.0, 0.0, 0.0]}, index=idx)
    led = WorkLedger(site)
    led.update(idx[1], {"queue_units__batch": 10.0}, data)  # the step 00:00-00:15 brought 40/h x 0.25 h
    assert led.units() == {"batch": pytest.approx(10.0)}
    led.update(idx[2], {"queue_units__batch": 5.0}, data)  # +20 arrived, 25 served
    assert led.backlog_due(idx[2], 0.25) == {"batch": [(11.75, 5.0)]}


def test_weather_correction_fades_with_the_horizon():
    idx = pd.date_range("2022-06-01", periods=25, freq="1h", tz="UTC")
    fc = pd.DataFrame({"temp_c": np.full(25, 20.0), "wetbulb_c": np.full(25, 15.0)}, index=idx)
    out = weather_bias_corrected(fc, {"outside_temp_c": 23.0, "wetbulb_c": 14.0}, decay_h=6.0)
    assert out["temp_c"].iloc[0] == pytest.approx(23.0)
    assert out["temp_c"].iloc[6] == pytest.approx(20.0 + 3.0 * np.exp(-1.0))
    assert out["wetbulb_c"].iloc[0] == pytest.approx(14.0)
    assert out["temp_c"].iloc[24] == pytest.approx(20.0 + 3.0 * np.exp(-4.0))
    # nothing measured: unchanged
    assert weather_bias_corrected(fc, {}).equals(fc)


def test_model_at_measured_uses_the_measured_decisions(site):
    from synthetic import linear_coefficients  # noqa: PLC0415 (tests/ on sys.path)

    class Model:
        def coefficients(self, site, frame):
            return linear_coefficients(site, frame.index, temp_c=frame["temp_c"].to_numpy())

    base = {"zone_it_power_kw__hall_a": 800.0, "zone_it_power_kw__hall_b": 700.0, "chw_setpoint_c": 15.0,
            "supply_setpoint_c__hall_a": 20.0, "supply_setpoint_c__hall_b": 20.0, "outside_temp_c": 25.0,
            "outside_rh_pct": 40.0}
    a = model_at_measured(site, Model(), Telemetry(T0, base))
    b = model_at_measured(site, Model(), Telemetry(T0, {**base, "zone_it_power_kw__hall_a": 900.0}))
    assert set(a) >= {"cooling_power_kw", "inlet_temp_c__hall_a", "inlet_temp_c__hall_b"}
    assert b["cooling_power_kw"] > a["cooling_power_kw"]  # more IT heat, more cooling
    assert model_at_measured(site, Model(), Telemetry(T0, {"outside_temp_c": 25.0})) == {}
