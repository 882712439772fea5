"""Fleet studies: several --site at once, each site x each scenario a task, whatif.json keyed by site."""

import json

import pytest
from conftest import LARGE_SITE, REPO, SMALL_SITE
from typer.testing import CliRunner

WHATIF = REPO / "configs" / "whatif"


def test_fleet_whatif_runs_every_scenario_on_every_site_against_its_own_baseline(tmp_path):
    from coolshift.cli import app

    out = tmp_path / "fleet"
    args = ["whatif", "--site", str(SMALL_SITE), "--site", str(LARGE_SITE),
            "--scenario", str(WHATIF / "grid_bpat.yaml"), "--scenario", str(WHATIF / "virtualisation.yaml"),
            "--start", "2022-07-04", "--end", "2022-07-05", "--step-minutes", "60", "--policy", "carbon_greedy",
            "--workers", "0", "--no-mlflow", "--out", str(out)]
    r = CliRunner().invoke(app, args)
    # virtualisation names San Jose's a_web pool: on Philadelphia it fails with that message, the rest completes
    assert r.exit_code == 1, r.output
    rows = json.loads((out / "whatif.json").read_text())
    sj, ph = "sanjose_colo_2mw", "philadelphia_multihall_20mw"
    assert list(rows) == [sj, ph]
    assert list(rows[sj]) == list(rows[ph]) == ["baseline", "grid_bpat", "virtualisation"]
    assert rows[sj]["virtualisation"]["status"] == "ok"
    bad = rows[ph]["virtualisation"]
    assert bad["status"] == "failed" and "unknown pool 'a_web'" in bad["error"] and bad["tco2_operational"] is None
    for site in (sj, ph):
        base, g = rows[site]["baseline"], rows[site]["grid_bpat"]
        # each site is compared with its own current state
        assert base["net_tco2_change_vs_baseline"] == 0.0
        assert g["net_tco2_change_vs_baseline"] == pytest.approx(g["tco2_operational"] - base["tco2_operational"])
        assert g["tco2_operational"] < 0.5 * base["tco2_operational"]
    # a 20 MW site uses about ten times the energy of a 2 MW one
    assert 5 < rows[ph]["baseline"]["facility_kwh"] / rows[sj]["baseline"]["facility_kwh"] < 15
    meta = json.loads((out / "run.json").read_text())
    assert sorted(meta["fleet"]) == sorted([sj, ph]) and meta["failed"] == {f"{ph}@virtualisation": bad["error"]}
    assert sorted(p.name for p in (out / "scenarios").glob("*.json")) == sorted(
        f"{s}@{n}.json" for s in (sj, ph) for n in ("baseline", "grid_bpat", "virtualisation"))
    html = (out / "report.html").read_text()
    assert f"{ph}@grid_bpat" in html


def test_fleet_rejects_one_sites_data_override(tmp_path):
    from coolshift.cli import app

    r = CliRunner().invoke(app, ["whatif", "--site", str(SMALL_SITE), "--site", str(LARGE_SITE), "--scenario",
                                 str(WHATIF / "grid_bpat.yaml"), "--carbon", str(REPO / "data/carbon_intensity/eia930_2022/BPAT_2022_hourly.csv"),
                                 "--out", str(tmp_path / "x"), "--no-mlflow"])
    assert r.exit_code == 2 and "not with several --site" in r.output
