"""`coolshift report` and `coolshift verify` end to end on small runs, and the HTML helpers."""

import base64
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from test_report_mv import synthetic_site  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from coolshift.cli import app  # noqa: E402
from coolshift.reports import html as H  # noqa: E402
from coolshift.reports.annual import SECTIONS  # noqa: E402

from conftest import SMALL_SITE  # noqa: E402

runner = CliRunner()


# ------------------------------------------------------------------------------ HTML helpers
def test_figure_to_data_uri_is_a_png():
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    uri = H.figure_to_data_uri(fig)
    assert uri.startswith("data:image/png;base64,")
    assert base64.b64decode(uri.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.fignum_exists(fig.number)  # closed after rendering


def test_html_table_escapes_and_formats():
    df = pd.DataFrame({"name": ["<script>x</script>"], "kwh": [1234567.891], "gap": [float("nan")]}, index=["r&1"])
    t = H.html_table(df, digits=1)
    assert "<script>" not in t and "&lt;script&gt;" in t and "r&amp;1" in t
    assert "1,234,567.9" in t and "&ndash;" in t


def test_render_page_has_every_section_and_toc():
    page = H.render_page("T <1>", [H.Section("Energy and PUE", "<p>a</p>"), H.Section("Data quality", "<p>b</p>")])
    assert page.startswith("<!DOCTYPE html>") and "T &lt;1&gt;" in page
    assert 'href="#energy-and-pue"' in page and 'id="energy-and-pue"' in page and 'id="data-quality"' in page
    assert "http" not in page.replace("https://", "")  # self-contained: no external resources


# ------------------------------------------------------------------------------ report
def _sim_like(frame: pd.DataFrame, ppa_kw: float) -> pd.DataFrame:
    """A simulator-style step frame from the synthetic site (columns as simulations.engine writes them)."""
    f = frame.copy()
    f["cooling_power_kw"] = f["facility_power_kw"] - 1.04 * f["it_power_kw"] - 40
    f["water_l"] = 0.5 * f["cooling_power_kw"].clip(lower=0)
    f["ppa_kw"] = ppa_kw
    f["kgco2_location"] = f["facility_power_kw"] * f["gco2_per_kwh"] / 1000.0
    f["kgco2_edge"] = 0.0
    return f


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("runs")
    pre, post, true_kwh, _ = synthetic_site(2, days_pre=30, days_post=21)
    base_pre, base_post, _, _ = synthetic_site(2, days_pre=30, days_post=21, cooling_cut=0.0)
    (d / "post").mkdir()
    (d / "base").mkdir()
    _sim_like(post, 300.0).to_parquet(d / "post" / "timeseries.parquet")
    _sim_like(base_post, 300.0).to_parquet(d / "base" / "timeseries.parquet")
    _sim_like(pre, 300.0).to_parquet(d / "pre.parquet")
    return d, post, base_post, true_kwh


def test_report_from_a_small_run_contains_every_section(runs, tmp_path):
    d, post, base, _ = runs
    out = tmp_path / "rep"
    res = runner.invoke(app, ["report", str(d / "post"), "--baseline", str(d / "base"), "--baseline-label", "static",
                              "--pre", str(d / "pre.parquet"), "--residual-mix", "400", "--pdf", "--out", str(out)])
    assert res.exit_code == 0, res.output
    page = (out / "carbon_report.html").read_text()
    for title in SECTIONS:
        assert f">{H.escape(title)}</h2>" in page, title
    assert page.count("data:image/png;base64,") == 6  # energy, emissions, reductions, renewables, M&V, accounting
    assert "not stated" in page  # offset standard left empty
    assert (out / "carbon_report.pdf").read_bytes()[:5] == b"%PDF-"
    figs = json.loads((out / "carbon_report.json").read_text())
    # numbers against the frame, computed independently here
    kwh = post["facility_power_kw"].sum()  # hourly steps
    assert figs["energy"]["facility_kwh"] == pytest.approx(kwh)
    assert figs["scope2"]["location_kgco2"] == pytest.approx((post["facility_power_kw"] * post["gco2_per_kwh"]).sum() / 1000)
    unmatched = kwh - 300.0 * len(post)
    assert figs["scope2"]["market_kgco2"] == pytest.approx(unmatched * 0.4)
    assert figs["neutrality"]["offsets_needed_tco2e"] == int(np.ceil(unmatched * 0.4 / 1000))
    red = figs["reduction"]["location"]
    assert red["efficiency_kg"] + red["timing_kg"] == pytest.approx(red["total_kg"])
    assert red["baseline_kwh"] == pytest.approx(base["facility_power_kw"].sum())
    assert figs["mv"]["avoided_kwh"] > 0
    monthly = pd.read_csv(out / "monthly.csv")
    assert monthly["facility_mwh"].sum() == pytest.approx(kwh / 1000)


def test_report_without_baseline_says_so_and_uses_offset_standard(runs, tmp_path):
    d, _, _, _ = runs
    out = tmp_path / "rep"
    res = runner.invoke(app, ["report", str(d / "post" / "timeseries.parquet"), "--offset-standard", "Gold Standard",
                              "--out", str(out)])
    assert res.exit_code == 0, res.output
    page = (out / "carbon_report.html").read_text()
    assert "No baseline was given" in page and "Gold Standard" in page and "Not performed" in page
    for title in SECTIONS:
        assert f">{H.escape(title)}</h2>" in page


def test_report_bad_inputs_exit_2_with_a_clear_line(runs, tmp_path):
    d, post, _, _ = runs
    res = runner.invoke(app, ["report", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "not found" in res.output
    bare = post.drop(columns="gco2_per_kwh")
    bare.to_parquet(tmp_path / "bare.parquet")
    res = runner.invoke(app, ["report", str(tmp_path / "bare.parquet"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "no grid intensity" in res.output
    res = runner.invoke(app, ["report", str(d / "post"), "--baseline", str(d / "pre.parquet"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "same steps" in res.output


def test_report_takes_grid_intensity_from_the_site(runs, tmp_path):
    # 2022 CAISO (bundled EIA-930) replaces the run's own factors when the run has none
    _, post, _, _ = runs
    bare = post.drop(columns="gco2_per_kwh")
    bare.to_parquet(tmp_path / "bare.parquet")
    out = tmp_path / "rep"
    res = runner.invoke(app, ["report", str(tmp_path / "bare.parquet"), "--site", str(SMALL_SITE), "--out", str(out)])
    assert res.exit_code == 0, res.output
    figs = json.loads((out / "carbon_report.json").read_text())
    assert "CISO_2022_hourly.csv" in figs["context"]["carbon_source"]
    assert 50 < figs["footprint"]["average_factor_gco2_per_kwh"] < 500
    assert figs["scope2"]["ppa_supply_kwh"] > 0  # the site's solar PPA profile


# ------------------------------------------------------------------------------ verify
def _telemetry_csv(frame: pd.DataFrame, path) -> None:
    frame = frame.reset_index(drop=True).assign(ts=frame.index.strftime("%Y-%m-%dT%H:%M:%S+00:00"))
    t = pd.DataFrame({
        "timestamp": frame["ts"],
        "it_power_kw": frame["it_power_kw"].round(3), "cooling_power_kw": (frame["facility_power_kw"] - frame["it_power_kw"]).round(3),
        "facility_power_kw": frame["facility_power_kw"].round(3), "outside_temp_c": frame["outside_temp_c"].round(2),
        "outside_rh_pct": 50.0, "chw_setpoint_c": 10.0, "supply_setpoint_c__hall": 20.0, "inlet_temp_c__hall": 24.0,
        "zone_it_power_kw__hall": frame["it_power_kw"].round(3),
    })
    t.loc[5, "facility_power_kw"] = None  # a metering gap, filled by the reader
    t.to_csv(path, index=False)


def test_verify_on_metered_telemetry(tmp_path):
    pre, post, true_kwh, _ = synthetic_site(0)
    _telemetry_csv(pre, tmp_path / "pre.csv")
    _telemetry_csv(post, tmp_path / "post.csv")
    pd.DataFrame({"timestamp": post.index.strftime("%Y-%m-%dT%H:%M:%SZ"), "gco2_per_kwh": post["gco2_per_kwh"].to_numpy()}).to_csv(
        tmp_path / "grid.csv", index=False)
    out = tmp_path / "v"
    res = runner.invoke(app, ["verify", "--pre", str(tmp_path / "pre.csv"), "--post", str(tmp_path / "post.csv"),
                              "--carbon", str(tmp_path / "grid.csv"), "--temperature", "drybulb", "--strict", "--out", str(out)])
    assert res.exit_code == 0, res.output
    v = json.loads((out / "verification.json").read_text())
    assert abs(v["avoided_kwh"] - true_kwh) <= v["uncertainty_kwh_90"]
    assert v["compliant"] and v["avoided_kgco2"] > 0
    table = pd.read_csv(out / "adjusted_baseline.csv")
    assert (table["adjusted_baseline_kwh"] - table["energy_kwh"]).sum() == pytest.approx(v["avoided_kwh"], rel=1e-6)
    assert "Guideline 14 checks" in (out / "verification.html").read_text()


def test_verify_strict_fails_without_a_saving(tmp_path):
    pre, post, _, _ = synthetic_site(4, cooling_cut=0.0, days_pre=30, days_post=14)
    _telemetry_csv(pre, tmp_path / "pre.csv")
    _telemetry_csv(post, tmp_path / "post.csv")
    res = runner.invoke(app, ["verify", "--pre", str(tmp_path / "pre.csv"), "--post", str(tmp_path / "post.csv"),
                              "--strict", "--out", str(tmp_path / "v")])
    assert res.exit_code == 1
    assert json.loads((tmp_path / "v" / "verification.json").read_text())["avoided_kgco2"] is None  # no grid data given


def test_offset_standard_from_the_site_config(runs, tmp_path):
    import yaml

    d, _, _, _ = runs
    raw = yaml.safe_load(SMALL_SITE.read_text())
    for key in ("carbon", "weather", "workload"):
        raw[key]["path"] = str((SMALL_SITE.parent / raw[key]["path"]).resolve())
    raw["reporting"] = {"offset_standard": "VCS (Verra)"}
    (tmp_path / "site.yaml").write_text(yaml.safe_dump(raw))
    out = tmp_path / "rep"
    res = runner.invoke(app, ["report", str(d / "post"), "--site", str(tmp_path / "site.yaml"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "carbon_report.json").read_text())["neutrality"]["offset_standard"] == "VCS (Verra)"
    res = runner.invoke(app, ["report", str(d / "post"), "--site", str(tmp_path / "site.yaml"), "--offset-standard", "Gold Standard",
                              "--out", str(out)])
    assert json.loads((out / "carbon_report.json").read_text())["neutrality"]["offset_standard"] == "Gold Standard"


def test_report_on_simulator_runs(tmp_path):
    """Two days of the small example site through the real simulator: static vs carbon-aware greedy."""
    engine = pytest.importorskip("coolshift.simulations.engine")
    policies = pytest.importorskip("coolshift.control.policies")
    from coolshift.config import load_site
    from coolshift.io import load_site_data

    site = load_site(SMALL_SITE)
    data = load_site_data(site, "2022-06-01T00:00Z", "2022-06-03T00:00Z", step_minutes=60)
    sums = {}
    for name in ("static", "carbon_greedy"):
        r = engine.simulate(site, data, policies.get_policy(name))
        (tmp_path / name).mkdir()
        r.timeseries.to_parquet(tmp_path / name / "timeseries.parquet")
        sums[name] = r.summary
    out = tmp_path / "rep"
    res = runner.invoke(app, ["report", str(tmp_path / "carbon_greedy"), "--site", str(SMALL_SITE),
                              "--baseline", str(tmp_path / "static"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    figs = json.loads((out / "carbon_report.json").read_text())
    s = sums["carbon_greedy"]
    # the report's totals agree with the simulator's own summary (same accounting functions underneath)
    assert figs["energy"]["facility_kwh"] == pytest.approx(s["facility_kwh"])
    assert figs["energy"]["pue"] == pytest.approx(s["pue"])
    assert (figs["scope2"]["location_kgco2"] + figs["edge_and_network_kgco2"]) / 1000 == pytest.approx(s["tco2_location"])
    assert (figs["scope2"]["market_hourly_kgco2"] + figs["edge_and_network_kgco2"]) / 1000 == pytest.approx(s["tco2_market"])
    assert figs["energy"]["wue_l_per_kwh"] == pytest.approx(s["wue_l_per_kwh"])
    assert figs["scope2"]["ppa_claimed_kwh"] >= figs["scope2"]["ppa_hourly_matched_kwh"] - 1e-6  # period matching never claims less
    red = figs["reduction"]["location"]
    assert red["total_kg"] / 1000 == pytest.approx(sums["static"]["tco2_location"] - s["tco2_location"], rel=1e-6, abs=1e-9)
    page = (out / "carbon_report.html").read_text()
    assert all(f">{H.escape(t)}</h2>" in page for t in SECTIONS)


def test_report_on_telemetry_lists_filled_gaps(tmp_path):
    _, post, _, _ = synthetic_site(6, days_pre=2, days_post=5)
    _telemetry_csv(post, tmp_path / "post.csv")  # row 5 has an empty facility reading
    pd.DataFrame({"timestamp": post.index.strftime("%Y-%m-%dT%H:%M:%SZ"), "gco2_per_kwh": post["gco2_per_kwh"].to_numpy()}).to_csv(
        tmp_path / "grid.csv", index=False)
    out = tmp_path / "rep"
    res = runner.invoke(app, ["report", str(tmp_path / "post.csv"), "--carbon", str(tmp_path / "grid.csv"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    figs = json.loads((out / "carbon_report.json").read_text())
    dq = figs["data_quality"]
    assert dq["estimated_steps"] == 1 and dq["fills"] == 1 and not dq["simulated"]
    assert dq["fills_detail"][0]["column"] == "facility_power_kw"
    assert figs["energy"]["water_l"] is None  # not metered: WUE not invented
    assert "metered telemetry" in (out / "carbon_report.html").read_text()


def test_report_rejects_missing_power_values(runs, tmp_path):
    _, post, _, _ = runs
    holes = post.copy()
    holes.iloc[7, holes.columns.get_loc("facility_power_kw")] = np.nan
    holes.to_parquet(tmp_path / "holes.parquet")
    res = runner.invoke(app, ["report", str(tmp_path / "holes.parquet"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "facility_power_kw" in res.output and post.index[7].isoformat() in res.output
