from pathlib import Path

import pytest
import yaml

from coolshift.config import ConfigError, load_site
from conftest import LARGE_SITE, SMALL_SITE


def test_example_sites_load_with_component_tables():
    small, large = load_site(SMALL_SITE), load_site(LARGE_SITE)
    assert small.design_it_load_kw == pytest.approx(2000)
    assert large.design_it_load_kw == pytest.approx(20000)
    assert len(large.edge_sites) >= 1
    pools = large.pools_frame()
    assert set(pools["zone"]) == {z.name for z in large.zones}
    assert pools["capacity_units_per_h"].sum() == pytest.approx(large.capacity_units_per_h)
    # peak IT of the pools fits the design load of each zone
    peak_kw = (pools["servers"] * pools["peak_w"] / 1000).groupby(pools["zone"]).sum()
    design = large.zones_frame()["design_it_load_kw"]
    assert (peak_kw <= design * 1.0 + 1e-9).all()


def _write(tmp_path: Path, raw: dict) -> Path:
    p = tmp_path / "site.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


@pytest.fixture
def raw():
    d = yaml.safe_load(SMALL_SITE.read_text())
    for k in ("carbon", "weather", "workload"):
        d[k]["path"] = str((SMALL_SITE.parent / d[k]["path"]).resolve())
    return d


def test_unknown_key_is_an_error_naming_file_and_key(tmp_path, raw):
    raw["zones"][0]["design_it_load_w"] = 5
    p = _write(tmp_path, raw)
    with pytest.raises(ConfigError) as e:
        load_site(p)
    assert str(p) in str(e.value) and "zones.0.design_it_load_w" in str(e.value) and "unknown key" in str(e.value)


@pytest.mark.parametrize(
    "mutate, expect",
    [
        (lambda d: d["server_pools"][0].update(zone="nowhere"), "unknown zone 'nowhere'"),
        (lambda d: d["workload_classes"][0].update(share=0.9), "shares sum to"),
        (lambda d: d["zones"][0].update(inlet_max_c=35), "ASHRAE A1 allowable"),
        (lambda d: d["server_pools"][0].update(peak_w=50), "peak_w must exceed idle_w"),
        (lambda d: d["workload_classes"][1].pop("deadline_h"), "batch work needs deadline_h"),
        (lambda d: d["planning"].update(step_minutes=7), "step_minutes must divide an hour"),
        (lambda d: d["server_pools"][1].update(power_curve_frac=[0.3, 0.2] + [1.0] * 9), "11 non-decreasing"),
    ],
)
def test_semantic_errors(tmp_path, raw, mutate, expect):
    mutate(raw)
    with pytest.raises(ConfigError, match=expect):
        load_site(_write(tmp_path, raw))


def test_bad_yaml_and_missing_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_site(p)
    with pytest.raises(ConfigError, match="file not found"):
        load_site(tmp_path / "absent.yaml")
