"""Scenario overrides, sweeps, embodied carbon and on-site PV: pure, fast, hand-checkable."""

import math

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, SMALL_SITE

from coolshift.config import load_site
from coolshift.whatif.embodied import (
    HOURS_PER_MONTH,
    PCF_PRESETS,
    embodied_summary,
    hardware_lines,
    payback_months,
)
from coolshift.whatif.pv import kasten_czeplak_ghi, pv_ac_kw
from coolshift.whatif.scenario import (
    PCF,
    Hardware,
    HardwareLine,
    OnsitePV,
    Scenario,
    ScenarioError,
    apply_scenario,
    expand_sweep,
    load_scenario,
)

WHATIF = REPO / "configs" / "whatif"


@pytest.fixture(scope="module")
def site():
    return load_site(SMALL_SITE)


def test_override_one_pool_by_name_and_every_zone_with_star(site):
    s = Scenario(name="t", overrides={"server_pools": {"a_web": {"servers": 300, "min_active_servers": 60}},
                                      "zones": {"*": {"inlet_max_c": 30.0}}})
    new = apply_scenario(site, s, "t.yaml")
    pools = {p.name: p for p in new.server_pools}
    assert pools["a_web"].servers == 300 and pools["a_web"].min_active_servers == 60
    assert pools["a_compute"].servers == 1000  # untouched
    assert [z.inlet_max_c for z in new.zones] == [30.0, 30.0]
    assert [z.inlet_max_c for z in site.zones] == [27.0, 27.0]  # the current site is not changed
    assert new.capacity_units_per_h == pytest.approx(site.capacity_units_per_h - 900 * 0.8)


def test_new_edge_site_path_is_relative_to_the_scenario_file(site):
    s = load_scenario(WHATIF / "edge_portland.yaml")
    new = apply_scenario(site, s, WHATIF / "edge_portland.yaml")
    (edge,) = new.edge_sites
    assert edge.name == "portland_edge" and edge.capacity_units_per_h == 400
    assert new.resolve(edge.carbon.path) == (REPO / "data/carbon_intensity/eia930_2022/BPAT_2022_hourly.csv").resolve()
    assert {c.name: c.offloadable for c in new.workload_classes} == {"web": False, "batch": True}


def test_null_removes_a_component(site):
    s = Scenario(name="t", overrides={"server_pools": {"b_storage": None}})
    new = apply_scenario(site, s, "t.yaml")
    assert [p.name for p in new.server_pools] == ["a_web", "a_compute", "b_compute"]


def test_bad_override_names_the_file_and_the_component_key(site):
    s = Scenario(name="bad", overrides={"server_pools": {"a_web": {"peak_w": 50}}})  # below idle_w 95
    with pytest.raises(ScenarioError) as e:
        apply_scenario(site, s, "configs/whatif/bad.yaml")
    msg = str(e.value)
    assert "configs/whatif/bad.yaml" in msg and "scenario bad" in msg
    assert "server_pools[a_web]" in msg and "peak_w must exceed idle_w" in msg


def test_unknown_field_in_a_pool_is_named(site):
    s = Scenario(name="typo", overrides={"server_pools": {"a_web": {"peak_watts": 400}}})
    with pytest.raises(ScenarioError, match=r"server_pools\[a_web\]\.peak_watts: unknown key"):
        apply_scenario(site, s, "typo.yaml")


def test_unknown_top_level_override_key_is_an_error(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("name: x\noverrides: {chillers: {rated_cop: 7}}\n")
    with pytest.raises(ScenarioError, match=r"(?s)s.yaml: invalid scenario.*overrides: unknown site keys \['chillers'\]"):
        load_scenario(p)


def test_consolidation_divides_servers_and_keeps_the_redundancy_share(site):
    s = Scenario(name="v", consolidation={"pools": ["a_web", "a_compute"], "ratio": 3})
    new = apply_scenario(site, s, "v.yaml")
    pools = {p.name: p for p in new.server_pools}
    assert pools["a_web"].servers == 400  # 1200 / 3
    assert pools["a_web"].min_active_servers == 80  # 240 of 1200 -> the same 20 % of 400
    assert pools["a_compute"].servers == math.ceil(1000 / 3)
    assert pools["a_compute"].min_active_servers == math.ceil(100 * 334 / 1000)


def test_sweep_expands_the_grid_with_names_and_values(site):
    scen = expand_sweep(WHATIF / "sweeps" / "consolidation_x_inlet.yaml")
    assert len(scen) == 9
    names = [s.name for s, _ in scen]
    assert names[0] == "cons_x_inlet__ratio=2,inlet_max_c=27" and len(set(names)) == 9
    s, base_dir = scen[-1]
    assert s.consolidation.ratio == 4 and s.overrides["zones"]["*"]["inlet_max_c"] == 32
    new = apply_scenario(site, s, "sweep", base_dir)
    assert {z.inlet_max_c for z in new.zones} == {32.0}
    assert {p.name: p.servers for p in new.server_pools}["a_web"] == 300


def test_every_bundled_scenario_applies_to_the_small_site(site):
    files = sorted(WHATIF.glob("*.yaml"))
    kinds = {load_scenario(f).kind for f in files}
    assert {"virtualisation", "hardware_refresh", "setpoint", "cooling_retrofit", "renewables", "edge", "grid"} <= kinds
    for f in files:
        apply_scenario(site, load_scenario(f), f)


# ---------------------------------------------------------------------------------- embodied
def test_embodied_hand_computed():
    new_pcf = PCF(manufacturing_kgco2e=1000.0, transport_kgco2e=50.0, lifetime_years=5.0)
    old_pcf = PCF(manufacturing_kgco2e=800.0, lifetime_years=4.0)
    hw = Hardware(new=[HardwareLine(pool="p", count=10, pcf=new_pcf)],
                  retired=[HardwareLine(pool="p", count=20, pcf=old_pcf, age_years=3.0)])
    week_h = 168.0
    e = embodied_summary(hw, week_h)
    assert e["tco2_embodied_new"] == pytest.approx(10 * 1050 / 1000)  # 10.5 t
    assert e["tco2_embodied_retired_unamortised"] == pytest.approx(20 * 800 * 0.25 / 1000)  # 4 t
    assert e["tco2_embodied_one_off"] == pytest.approx(14.5)
    assert e["tco2_embodied"] == pytest.approx(14.5 * week_h / (5 * 8760))
    off = embodied_summary(hw.model_copy(update={"count_retired_writeoff": False}), week_h)
    assert off["tco2_embodied_one_off"] == pytest.approx(10.5)
    # payback: 14.5 t repaid by 2 t saved per week
    months, _ = payback_months(14.5, 2.0, week_h)
    assert months == pytest.approx(14.5 / (2.0 * HOURS_PER_MONTH / week_h))
    assert payback_months(0.0, 2.0, week_h)[0] is None
    assert payback_months(14.5, -1.0, week_h) == (None, "never: the scenario saves no operational carbon")


def test_consolidation_hardware_lines_and_bad_preset(site):
    s = Scenario(name="v", consolidation={"pools": ["a_web"], "ratio": 3, "host": {"idle_w": 180, "peak_w": 750,
                 "capacity_units_per_server": 2.4}, "host_pcf": "dell_r740_2019", "retired_age_years": 4})
    new = apply_scenario(site, s, "v.yaml")
    hw = hardware_lines(s, site, new)
    assert [(h.pool, h.count) for h in hw.retired] == [("a_web", 1200)]
    assert [(h.pool, h.count) for h in hw.new] == [("a_web", 400)]
    e = embodied_summary(hw, 8760.0)
    assert e["tco2_embodied_retired_unamortised"] == 0.0  # retired at the end of their 4-year life
    assert e["tco2_embodied_one_off"] == pytest.approx(400 * PCF_PRESETS["dell_r740_2019"].manufacturing_kgco2e / 1000)
    assert e["tco2_embodied"] == pytest.approx(e["tco2_embodied_one_off"] / 4)  # one year of a 4-year life
    keep = Scenario(name="k", consolidation={"pools": ["a_web"], "ratio": 4})  # no new hosts: retire 900
    hw2 = hardware_lines(keep, site, apply_scenario(site, keep, "k.yaml"))
    assert [(h.count) for h in hw2.retired] == [900] and hw2.new == []
    with pytest.raises(ScenarioError, match="unknown PCF preset 'dell_r999'.*dell_r640_2019"):
        embodied_summary(Hardware(new=[HardwareLine(pool="p", count=1, pcf="dell_r999")]), 1.0)


# ---------------------------------------------------------------------------------------- PV
def test_pv_output_night_noon_clouds_and_inverter_limit():
    idx = pd.date_range("2022-06-21T00:00Z", periods=24, freq="h")
    pv = OnsitePV(capacity_kw_dc=1000.0)
    clear = pv_ac_kw(idx, np.full(24, 20.0), 37.43, -121.95, pv)
    cloudy = pv_ac_kw(idx, np.full(24, 20.0), 37.43, -121.95, pv, cloud_frac=np.ones(24))
    local = (idx.hour - 8) % 24  # PDT = UTC-7, mid-step
    assert np.all(clear[(local >= 22) | (local <= 3)] == 0.0)  # night
    noon = int(np.argmax(clear))
    assert 11 <= local[noon] <= 14
    assert 0.5 * 1000 / 1.2 < clear[noon] <= 1000 / 1.2 + 1e-9  # inverter AC rating = DC / 1.2
    assert cloudy.sum() == pytest.approx(clear.sum() * 0.25, rel=0.15)  # Kasten-Czeplak: 1 - 0.75 at full cover
    assert kasten_czeplak_ghi(800.0, 0.5) == pytest.approx(800 * (1 - 0.75 * 0.5 ** 3.4))


def test_pv_reads_cloud_cover_from_the_bundled_open_meteo_file(site):
    from coolshift.whatif.pv import openmeteo_cloud_frac

    idx = pd.date_range("2022-01-10T00:00Z", periods=24 * 14, freq="h")
    cloud = openmeteo_cloud_frac(site.resolve(site.weather.path), idx)
    assert cloud is not None and cloud.shape == (len(idx),)
    assert 0.0 <= cloud.min() and cloud.max() <= 1.0 and cloud.std() > 0.05  # real, varying cover
    assert openmeteo_cloud_frac(REPO / "data/workload/Alibaba_CPU_Data_Hourly_1.csv", idx) is None  # not Open-Meteo


def test_ppa_profile_cache_matches_the_direct_computation():
    """accounting.ppa_profile_kw caches its shapes (sweeps simulate one period many times): same numbers."""
    import numpy as np

    from coolshift import accounting

    lat, lon = 37.43, -121.95
    idx = pd.date_range("2022-07-01", periods=3 * 96, freq="15min", tz="UTC")
    ref = pd.date_range("2022-01-01", "2023-01-01", freq="h", inclusive="left", tz="UTC")
    for profile in ("solar", "wind", "flat"):
        direct = 5000 * 1000.0 / 8760 * accounting._shape(idx, profile, lat, lon) / accounting._shape(ref, profile, lat, lon).mean()
        for ix in (idx, idx.as_unit("us"), idx.tz_convert("America/Los_Angeles")):
            np.testing.assert_allclose(accounting.ppa_profile_kw(ix, 5000, profile, lat, lon), direct, rtol=1e-12)
        irregular = idx.delete([5, 9])
        np.testing.assert_allclose(accounting.ppa_profile_kw(irregular, 5000, profile, lat, lon),
                                   np.delete(direct, [5, 9]), rtol=1e-12)
    solar = accounting.ppa_profile_kw(idx, 5000, "solar", lat, lon)
    assert solar.flags.writeable and solar[idx.hour == 11].min() == 0.0 < solar[idx.hour == 20].min()  # 11 UTC = 4 am PDT
    with pytest.raises(ValueError, match="unknown renewables profile"):
        accounting.ppa_profile_kw(idx, 5000, "tidal", lat, lon)
