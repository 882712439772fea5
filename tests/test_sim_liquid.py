"""Direct liquid cooling in the simulator: a share of IT heat to a warm-water loop (ASHRAE W-classes)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import SMALL_SITE
from coolshift.config import ConfigError, load_site
from coolshift.simulations import initial_state, plant, servers, simulate
from coolshift.control.policies import FixedPolicy
from test_sim_physics import fixed_actions, synthetic


@pytest.fixture(scope="module")
def sj():
    return load_site(SMALL_SITE)


def with_liquid(site, share, supply_max_c=32.0, economiser="waterside"):
    cool = site.cooling.model_copy(update={
        "liquid": site.cooling.liquid.model_copy(update={"it_heat_share_frac": share, "supply_max_c": supply_max_c}),
        "economiser": site.cooling.economiser.model_copy(update={"type": economiser}),
    })
    return site.model_copy(update={"cooling": cool})


def run_fixed(site, data, supply=22.0, chw=12.0):
    st = initial_state(site)
    st.supply_c[:] = supply
    st.inlet_c[:] = supply
    return simulate(site, data, FixedPolicy(fixed_actions(site, len(data), supply, chw)), state=st)


def test_default_is_air_cooled_and_yaml_keys_are_checked(sj, tmp_path):
    assert sj.cooling.liquid.it_heat_share_frac == 0.0 and sj.cooling.liquid.supply_max_c == 32.0
    bad = tmp_path / "s.yaml"
    bad.write_text(SMALL_SITE.read_text().replace("  crah_supply_approach_c: 3.0",
                                                  "  crah_supply_approach_c: 3.0\n  liquid: {it_heat_share_frac: 1.5}"))
    with pytest.raises(ConfigError, match=r"cooling\.liquid\.it_heat_share_frac"):
        load_site(bad)


def test_liquid_loop_functions_by_hand():
    # tower water 25 degC + 2 K CDU approach = 27 <= 32: all free; 35 + 2 = 37: half of the 10 K range
    np.testing.assert_allclose(plant.liquid_free_fraction([25.0, 35.0, 45.0], 32.0), [1.0, 0.5, 0.0])
    # 1,000 kW at 10 K: 23.9 kg/s of water x 300 kPa / 0.5 = 14.35 kW
    assert float(plant.liquid_pump_kw(1000.0)) == pytest.approx(1000.0 / (4.18 * 10.0) / 1000.0 * 300.0 / 0.5)
    assert float(plant.liquid_pump_kw(1000.0)) == pytest.approx(14.354, rel=1e-3)
    assert float(servers.liquid_fan_saving_frac(0.5)) == pytest.approx(0.03)


def test_more_liquid_share_less_chiller_energy_at_the_same_work(sj):
    # a hot humid day, no water-side economiser for the air side: the chillers carry the air heat
    data = synthetic(sj, hours=24, temp=32.0)  # wet-bulb 27 degC: tower water 30.9 degC, W32 met free
    runs = {s: run_fixed(with_liquid(sj, s, economiser="none"), data) for s in (0.0, 0.4, 0.8)}
    out = {s: r.summary for s, r in runs.items()}
    # chiller energy falls less than its duty (the plant runs at lower part load, EnergyPlus EIR-f(PLR))
    assert out[0.0]["chiller_kwh"] > 1.15 * out[0.4]["chiller_kwh"] > 1.15 * 1.15 * out[0.8]["chiller_kwh"]
    duty = {s: r.timeseries.chiller_duty_kw.mean() for s, r in runs.items()}
    assert duty[0.8] < 0.4 * duty[0.0]
    # tower water 27 + 3.9 K, + 2 K CDU approach = 32.9 degC: 91 % of the liquid heat leaves free
    ts = runs[0.4].timeseries
    np.testing.assert_allclose(ts.liquid_free_kw, ts.liquid_heat_kw * (42.0 - 32.9) / 10.0, rtol=1e-9)
    # less air to move (CRAH fans here already sit at their minimum speed, so not below it)
    assert out[0.0]["crah_fan_kwh"] >= out[0.4]["crah_fan_kwh"] >= out[0.8]["crah_fan_kwh"]
    assert out[0.0]["liquid_loop_kwh"] == 0.0 < out[0.4]["liquid_loop_kwh"] < out[0.8]["liquid_loop_kwh"]
    # the same work: server power falls by the fan saving only (6 % x share, plus a smaller inlet rise)
    ratio = out[0.8]["it_kwh"] / out[0.0]["it_kwh"]
    assert 1.0 - servers.SERVER_FAN_FRAC * 0.8 - 0.01 < ratio <= 1.0 - servers.SERVER_FAN_FRAC * 0.8 + 1e-9
    assert out[0.8]["facility_kwh"] < out[0.4]["facility_kwh"] < out[0.0]["facility_kwh"]


def test_warmer_w_class_needs_less_chiller_in_a_hot_climate(sj):
    data = synthetic(sj, hours=12, temp=40.0)  # wet-bulb 35: tower water 38.9 + 2 K > 32 (W32) but < 40 (W40)
    w32 = run_fixed(with_liquid(sj, 0.7, 32.0, "none"), data).summary
    w40 = run_fixed(with_liquid(sj, 0.7, 40.0, "none"), data).summary
    assert w40["chiller_kwh"] < 0.8 * w32["chiller_kwh"]


def test_balances_close_with_liquid_cooling(sj):
    data = synthetic(sj, hours=12, temp=28.0)
    ts = run_fixed(with_liquid(sj, 0.6), data).timeseries
    cool = ts.chiller_kw + ts.crah_fan_kw + ts.pump_kw + ts.tower_fan_kw + ts.liquid_loop_kw
    np.testing.assert_allclose(ts.cooling_power_kw, cool, rtol=1e-12)
    parts = ts.it_power_kw + ts.cooling_power_kw + ts.ups_loss_kw + ts.pdu_loss_kw + ts.other_kw
    np.testing.assert_allclose(ts.facility_power_kw, parts, rtol=1e-12)
    np.testing.assert_allclose(ts.free_cooling_kw + ts.chiller_duty_kw + ts.unmet_cooling_kw, ts.heat_load_kw, rtol=1e-9)
    heat = ts.it_power_kw + ts.crah_fan_kw + ts.pdu_loss_kw + ts.ups_loss_kw + ts.other_kw
    np.testing.assert_allclose(ts.heat_load_kw, heat, rtol=1e-9)
    np.testing.assert_allclose(ts.liquid_heat_kw, 0.6 * ts.it_power_kw, rtol=1e-9)
