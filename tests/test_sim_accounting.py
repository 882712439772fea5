"""Carbon and water accounting (coolshift.accounting) and the telemetry export."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import SMALL_SITE
from coolshift import accounting
from coolshift.config import load_site
from coolshift.io import load_site_data, read_telemetry
from coolshift.simulations import simulate
from coolshift.control.policies import get_policy
from coolshift.simulations.telemetry import POWER_METER_ACCURACY_FRAC, to_telemetry


def test_location_and_market_by_hand():
    kwh = np.array([100.0, 200.0, 300.0])
    g = np.array([400.0, 200.0, 100.0])
    np.testing.assert_allclose(accounting.location_kgco2(kwh, g), [40.0, 40.0, 30.0])
    ppa = np.array([150.0, 50.0, 0.0])
    # step 0 fully matched (surplus 50 kWh not banked); steps 1-2 unmatched at the location factor
    np.testing.assert_allclose(accounting.market_kgco2(kwh, ppa, g), [0.0, 30.0, 30.0])
    np.testing.assert_allclose(accounting.market_kgco2(kwh, ppa, g, 500.0), [0.0, 75.0, 150.0])
    assert accounting.wue_l_per_kwh(1800.0, 1000.0) == pytest.approx(1.8)
    assert np.isnan(accounting.wue_l_per_kwh(1.0, 0.0))


@pytest.mark.parametrize("profile", ["flat", "solar", "wind"])
def test_ppa_profiles_deliver_the_contracted_year(profile):
    idx = pd.date_range("2022-01-01", "2023-01-01", freq="15min", inclusive="left", tz="UTC")
    kw = accounting.ppa_profile_kw(idx, 5000.0, profile, 37.43, -121.95)
    assert (kw >= 0).all()
    assert kw.sum() * 0.25 / 1000 == pytest.approx(5000.0, rel=2e-3)
    if profile == "solar":
        local_hour = (idx + pd.Timedelta(hours=-8)).hour
        assert kw[(local_hour >= 22) | (local_hour < 4)].max() == 0.0  # no sun at night
        assert kw[local_hour == 12].mean() > 2.5 * kw.mean()
    with pytest.raises(ValueError, match="profile"):
        accounting.ppa_profile_kw(idx[:3], 1.0, "tidal", 0.0, 0.0)


def test_simulated_market_carbon_uses_the_ppa():
    site = load_site(SMALL_SITE)
    data = load_site_data(site, "2022-06-01", "2022-06-03")
    r = simulate(site, data, get_policy("static"))
    s, ts = r.summary, r.timeseries
    loc = (ts.facility_power_kw * 0.25 * ts.gco2_per_kwh).sum() / 1e6
    assert s["tco2_location"] == pytest.approx(loc, rel=1e-9)
    ppa = ts.ppa_kw * 0.25
    unmatched = ts.facility_power_kw * 0.25 - np.minimum(ts.facility_power_kw * 0.25, ppa)
    assert s["tco2_market"] == pytest.approx((unmatched * ts.gco2_per_kwh).sum() / 1e6, rel=1e-9)
    assert s["tco2_market"] < s["tco2_location"]
    assert s["wue_l_per_kwh"] == pytest.approx(s["water_l"] / s["it_kwh"])
    assert 0.5 < s["wue_l_per_kwh"] < 3.0  # evaporative sites: ~1-2 L/kWh (The Green Grid WUE reports)


def test_telemetry_export_round_trips_through_the_reader(tmp_path):
    site = load_site(SMALL_SITE)
    data = load_site_data(site, "2022-06-01", "2022-06-04")
    r = simulate(site, data, get_policy("explore", seed=3))
    tel = to_telemetry(r.timeseries, r.names.zones, r.names.pools, seed=1)
    from coolshift.io import write_frame_atomic

    path = write_frame_atomic(tmp_path / "tel.csv", tel)
    back = read_telemetry(path, zones=r.names.zones)
    assert len(back) == len(data)
    rel = back.it_power_kw / r.timeseries.it_power_kw - 1
    assert 0.3 * POWER_METER_ACCURACY_FRAC / 2 < rel.std() < 2 * POWER_METER_ACCURACY_FRAC / 2
    err = back["inlet_temp_c__hall_a"] - r.timeseries["inlet_temp_c__hall_a"]
    assert 0.05 < err.std() < 0.4 and abs(err.mean()) < 0.05
    np.testing.assert_array_equal(back.chw_setpoint_c, r.timeseries.chw_setpoint_c)
    # the explore policy moves the levers the models must learn
    assert back.filter(like="supply_setpoint_c__").std().min() > 0.5
    assert back.chw_setpoint_c.std() > 0.5
    assert tel.filter(like="active_servers__").std().max() > 10
    assert r.summary["thermal_violation_minutes"] == 0  # within the safe envelope
