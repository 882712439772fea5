"""Standards sections of `coolshift report` (issue 23) on a small site with round numbers, by hand.

The run: 100 hourly steps from 2025-01-01, IT 100 kW, facility 150 kW (cooling 40 kW), 10 L of
water per step, grid 400 gCO2/kWh, a 50 kW flat PPA, residual mix 500 gCO2/kWh. So IT 10,000 kWh,
facility 15,000 kWh, PUE 1.5, WUE 0.1 L/kWh, location 6.0 tCO2, market 10,000 kWh x 0.5 = 5.0 tCO2.
"""

import json
import math
from types import SimpleNamespace

import pandas as pd
import pytest
from typer.testing import CliRunner

from coolshift.cli import app
from coolshift.reporting_config import HardwareModel, Reporting
from coolshift.reports.lifecycle import unit_energy_kwh_per_h
from coolshift.reports.scope1 import FUEL_FACTORS, refrigerant_gwp100
from coolshift.reports.targets import trajectory_value
from coolshift.whatif.embodied import embodied_summary, hardware_lines
from coolshift.whatif.scenario import Scenario

runner = CliRunner()
START = pd.Timestamp("2025-01-01T00:00Z")


def _run(folder, simulated: bool = False):
    idx = pd.date_range(START, periods=100, freq="h")
    f = pd.DataFrame({"it_power_kw": 100.0, "facility_power_kw": 150.0, "cooling_power_kw": 40.0, "water_l": 10.0,
                      "gco2_per_kwh": 400.0, "ppa_kw": 50.0, "kgco2_edge": 0.0}, index=idx)
    if simulated:
        f["kgco2_location"] = f["facility_power_kw"] * f["gco2_per_kwh"] / 1000.0  # marks a simulator run
    folder.mkdir()
    f.to_parquet(folder / "timeseries.parquet")
    return folder


def _write(path, text):
    path.write_text(text)
    return path


OFFSETS = """registry,project_id,serial_start,serial_end,quantity_tco2e,vintage,retirement_date,beneficiary
VCS,VCS-1234,VCS-1234-2024-1001,VCS-1234-2024-1010,10,2024,2025-02-01,Example site
Gold Standard,GS-77,GS-77-0001,GS-77-0005,5,2021,2023-01-01,Example site
"""


@pytest.fixture()
def inputs(tmp_path):
    _write(tmp_path / "fuel.csv", "date,fuel,quantity,unit,reason\n2025-01-02,diesel_b0,400,litre,test run\n"
                                  "2024-06-01,diesel_b0,999,litre,outside the period\n")
    _write(tmp_path / "refrigerant.csv", "date,refrigerant,kg,equipment\n2025-01-03,R-410A,2,CRAH 1\n")
    _write(tmp_path / "offsets.csv", OFFSETS)
    _write(tmp_path / "inventory.csv", "serial,model,purchase_date\nSN1,srv,2024-01-01\nSN2,srv,2025-01-03\n")
    _write(tmp_path / "ewaste.csv", "date,serial,model,route,mass_kg,handler\n2025-01-02,OLD1,srv,reuse,20,Broker\n"
                                    "2025-01-03,OLD2,srv,recycle,,Recycler\n")
    yaml = """
inputs_note: test inputs
offset_standard: VCS
targets:
  - {name: market carbon, metric: tco2_market, baseline_year: 2020, baseline_value: 20, target_year: 2030, reduction_pct: 50}
  - {name: pue, metric: pue, baseline_year: 2020, baseline_value: 2.0, target_year: 2024, target_value: 1.2}
  - {name: renewables, metric: renewable_share_pct, baseline_year: 2020, baseline_value: 0, target_year: 2030, target_value: 100}
scope1:
  fuel_log: fuel.csv
  refrigerant_log: refrigerant.csv
  fuels: {diesel_b0: {unit: litre, kgco2e_per_unit: 2.5, source: "test factor"}}
scope3: [{category: "1 purchased goods", tco2e: 1.489, source: supplier}]
heat_reuse: {recovered_kwh: 1500, average_temperature_c: 30, recipient: district heating}
eu: {guarantees_of_origin_kwh: 2500, total_floor_area_m2: 1000, country: DE}
offsets: offsets.csv
inventory: inventory.csv
hardware_models:
  srv: {manufacturing_kgco2e: 1000, transport_kgco2e: 100, lifetime_years: 5, mass_kg: 30, rated_power_w: 200,
        source: "test figures"}
ewaste: ewaste.csv
iso:
  objectives:
    - {id: O1, title: cut PUE, owner: ops, due: 2024-12-31, status: open}
    - {id: O2, title: meter water, owner: ops, due: 2024-12-31, status: done}
  corrective_actions:
    - {id: C1, title: fix CRAH leak, owner: facilities, due: 2025-03-01, status: in progress}
"""
    return _write(tmp_path / "reporting.yaml", yaml)


def _report(tmp_path, reporting, *extra, simulated: bool = False):
    out = tmp_path / "rep"
    name = "sim" if simulated else "run"
    run = tmp_path / name if (tmp_path / name).exists() else _run(tmp_path / name, simulated)
    res = runner.invoke(app, ["report", str(run), "--reporting", str(reporting), "--residual-mix", "500",
                              "--out", str(out), *extra])
    return res, out


def test_every_standards_section_by_hand(tmp_path, inputs):
    res, out = _report(tmp_path, inputs)
    assert res.exit_code == 0, res.output
    f = json.loads((out / "carbon_report.json").read_text())
    assert f["scope2"]["location_kgco2"] == pytest.approx(6000.0) and f["scope2"]["market_kgco2"] == pytest.approx(5000.0)
    # Scope 1: 400 L x 2.5 = 1,000 kg (the 2024 entry is outside the period); R-410A 2 kg x (771 + 3740) / 2 = 4,511 kg
    assert f["scope1"]["fuel_kgco2e"] == pytest.approx(1000.0)
    assert f["scope1"]["refrigerant_kgco2e"] == pytest.approx(4511.0)
    assert f["scope1_tco2"] == pytest.approx(5.511)
    assert f["scope1_2_tco2e"] == pytest.approx({"location": 11.511, "market": 10.511})
    # EU: ERF 1,500 / 15,000; REF (2,500 GOs + 5,000 PPA) / 15,000
    assert f["eu_kpis"] == pytest.approx({"pue": 1.5, "wue": 0.1, "erf": 0.1, "ref": 0.5})
    k = f["eu"]["annex_i_kpis"]
    assert k["total_water_input_m3"] == pytest.approx(1.0) and k["waste_heat_reused_kwh"] == 1500.0
    assert k["renewable_energy_consumption_kwh"]["power_purchase_agreements"] == pytest.approx(5000.0)
    # targets in 2025: market 20 -> 10 (2020 -> 2030): trajectory 15, actual 5, gap -10, progress (20-5)/(20-10)
    t = {r["name"]: r for r in f["targets"]}
    assert t["market carbon"]["expected_value"] == pytest.approx(15.0) and t["market carbon"]["gap"] == pytest.approx(-10.0)
    assert t["market carbon"]["on_track"] is True and t["market carbon"]["progress_pct"] == pytest.approx(150.0)
    # PUE 2.0 -> 1.2 by 2024, year 2025 past it: trajectory 1.2, actual 1.5 -> off track by 0.3, 62.5 % of the way
    assert t["pue"]["expected_value"] == pytest.approx(1.2) and t["pue"]["gap"] == pytest.approx(0.3)
    assert t["pue"]["on_track"] is False and t["pue"]["progress_pct"] == pytest.approx(62.5)
    assert t["pue"]["status"] == "off track (target year passed)"
    # renewables 0 -> 100 % (2020 -> 2030): trajectory 50 %, REF 50 % -> on track with no gap (higher is better)
    assert t["renewables"]["expected_value"] == pytest.approx(50.0) and t["renewables"]["on_track"] is True
    # PAS 2060: 5.511 + 5.0 + 1.489 = 12.0 tCO2e -> 12 credits; 10 retired in the window (the 2023 row is not) -> short 2
    p = f["pas2060"]
    assert p["footprint"]["total_tco2e"] == pytest.approx(12.0)
    assert (p["credits_needed"], p["credits_retired"], p["shortfall_tco2e"], p["neutral"]) == (12, 10, 2, False)
    assert [o["counted"] for o in p["offsets"]] == [True, False] and "before the period" in p["offsets"][1]["reason"]
    assert "Not carbon neutral" in p["statement"] and "shortfall of 2" in p["statement"]
    # lifecycle: 200 W -> 0.2 kWh/h; SN1 in service 100 h, SN2 from hour 48 (52 h); life use 0.2 x 8,760 x 5 x 0.4 kg
    lc = {r["serial"]: r for r in f["lifecycle"]}
    assert lc["SN1"]["use_kwh_period"] == pytest.approx(20.0) and lc["SN2"]["use_kwh_period"] == pytest.approx(10.4)
    assert lc["SN1"]["use_kgco2e_period"] == pytest.approx(8.0)
    assert lc["SN1"]["use_kgco2e_service_life"] == pytest.approx(3504.0)
    assert lc["SN1"]["total_kgco2e"] == pytest.approx(4604.0)
    cert = f["lifecycle_certificates"][0]
    assert cert["certificate_id"].endswith("/2025/SN1") and cert["credits_to_offset"] == 5
    # e-waste: reuse 20 kg, recycle 30 kg (the model's mass) -> 40 % kept from recycling
    assert f["ewaste"]["mass_kg"] == pytest.approx(50.0) and f["ewaste"]["reuse_refurbish_share_pct"] == pytest.approx(40.0)
    # ISO 50001: IT 2/3, cooling 4,000/15,000, the rest 1,000/15,000 (below the 10 % threshold)
    seu = {r["use"]: r for r in f["iso"]["seus"]}
    assert seu["cooling"]["share_pct"] == pytest.approx(100 * 4000 / 15000) and seu["cooling"]["significant"] is True
    assert seu["other (power losses, lighting, offices)"]["significant"] is False
    obj = {r["id"]: r for r in f["iso"]["objectives"]}
    assert obj["O1"]["overdue"] is True and obj["O2"]["overdue"] is False
    assert f["mv_methods"]["caltrack"]["computed"] is False and "--caltrack" in f["mv_methods"]["caltrack"]["reason"]
    page = (out / "carbon_report.html").read_text()
    for title in ("Targets and progress", "PAS 2060 statement", "EU data-centre indicators", "ISO 14001 / ISO 50001"):
        assert title in page
    assert (out / "eu_report.json").exists() and (out / "lifecycle.csv").exists()


def test_neutral_when_retired_credits_cover_the_footprint(tmp_path, inputs):
    (tmp_path / "offsets.csv").write_text(OFFSETS.replace("1010,10,", "1012,12,"))
    res, out = _report(tmp_path, inputs)
    assert res.exit_code == 0, res.output
    p = json.loads((out / "carbon_report.json").read_text())["pas2060"]
    assert (p["credits_retired"], p["shortfall_tco2e"], p["neutral"]) == (12, 0, True)
    assert p["statement"].startswith("Declaration of achievement")
    res, out = _report(tmp_path, inputs, simulated=True)  # the same numbers simulated: a plan, never a claim
    assert res.exit_code == 0, res.output
    p = json.loads((out / "carbon_report.json").read_text())["pas2060"]
    assert (p["shortfall_tco2e"], p["neutral"]) == (0, False) and "metered data" in p["statement"]


def test_eu_json_and_csv_formats(tmp_path, inputs):
    res, out = _report(tmp_path, inputs, "--format", "eu-json")
    assert res.exit_code == 0, res.output
    eu = json.loads((out / "eu_report.json").read_text())
    assert not (out / "carbon_report.html").exists()
    assert eu["annex_iii_sustainability_indicators"] == pytest.approx({"pue": 1.5, "wue_l_per_kwh": 0.1, "erf": 0.1, "ref": 0.5})
    assert eu["annex_i_information"]["country"] == "DE" and eu["annex_i_kpis"]["total_floor_area_m2"] == 1000
    res, out = _report(tmp_path, inputs, "--format", "eu-csv")
    assert res.exit_code == 0, res.output
    rows = pd.read_csv(out / "eu_report.csv")
    erf = rows[rows["field"] == "erf"]
    assert erf["section"].iloc[0] == "annex_iii_sustainability_indicators" and float(erf["value"].iloc[0]) == pytest.approx(0.1)
    res, _ = _report(tmp_path, inputs, "--format", "pdf")
    assert res.exit_code == 2


@pytest.mark.parametrize("name,text,expect", [
    ("offsets.csv", OFFSETS.replace("1010,10,", "1010,11,"), ["offsets.csv", "'quantity_tco2e'", "row 2", "holds 10"]),
    ("offsets.csv", OFFSETS.replace("GS-77-0001,GS-77-0005,5", "VCS-1234-2024-1005,VCS-1234-2024-1009,5").replace(
        "Gold Standard", "VCS"), ["offsets.csv", "'serial_start'", "row 3", "overlaps row 2"]),
    ("offsets.csv", OFFSETS.replace("2025-02-01", "someday"), ["offsets.csv", "'retirement_date'", "row 2", "not a date"]),
    ("inventory.csv", "serial,model,purchase_date\nSN1,srv,2024-01-01\nSN2,other,2024-01-01\n",
     ["inventory.csv", "'model'", "row 3", "hardware_models"]),
    ("inventory.csv", "serial,model,purchase_date\nSN1,srv,2024-01-01\nSN1,srv,2024-01-01\n", ["inventory.csv", "'serial'", "row 3"]),
    ("inventory.csv", "serial,model\nSN1,srv\n", ["inventory.csv", "missing column(s) ['purchase_date']"]),
    ("fuel.csv", "date,fuel,quantity,unit\n2025-01-02,diesel_b0,lots,litre\n", ["fuel.csv", "'quantity'", "row 2", "not a number"]),
    ("fuel.csv", "date,fuel,quantity,unit\n2025-01-02,diesel_b0,-4,litre\n", ["fuel.csv", "'quantity'", "row 2", ">= 0"]),
    ("fuel.csv", "date,fuel,quantity,unit\n2025-01-02,whale_oil,4,litre\n", ["fuel.csv", "'fuel'", "row 2", "unknown fuel"]),
    ("fuel.csv", "date,fuel,quantity,unit\n2025-01-02,diesel_b0,4,m3\n", ["fuel.csv", "'unit'", "row 2", "per litre"]),
    ("refrigerant.csv", "date,refrigerant,kg\n2025-01-03,R-999,2\n", ["refrigerant.csv", "'refrigerant'", "row 2"]),
    ("ewaste.csv", "date,serial,model,route\n2025-01-02,OLD1,srv,landfill\n", ["ewaste.csv", "'route'", "row 2"]),
])
def test_bad_inputs_exit_2_naming_file_column_row(tmp_path, inputs, name, text, expect):
    (tmp_path / name).write_text(text)
    res, _ = _report(tmp_path, inputs)
    assert res.exit_code == 2, res.output
    msg = " ".join(res.output.split())
    for e in expect:
        assert e in msg, (e, msg)
    assert "Traceback" not in res.output


def test_bad_reporting_yaml_names_the_key(tmp_path, inputs):
    text = inputs.read_text().replace("reduction_pct: 50", "reduction_pct: 50, target_value: 3")
    bad = _write(tmp_path / "bad.yaml", text)
    res, _ = _report(tmp_path, bad)
    assert res.exit_code == 2 and "bad.yaml" in res.output and "exactly one of reduction_pct or target_value" in res.output


# ----------------------------------------------------------------------------- pure functions
def test_cited_factors_by_hand():
    # EPA 2024 distillate No. 2: (73.96 kg CO2 + 3.0 g CH4 x 29.8 + 0.6 g N2O x 273) per mmBtu x 0.138 mmBtu/gal / 3.785411784 L/gal
    assert FUEL_FACTORS["diesel"][1] == pytest.approx((73.96 + 0.0894 + 0.1638) * 0.138 / 3.785411784)
    assert FUEL_FACTORS["diesel"][1] == pytest.approx(2.7055, abs=1e-4)
    assert refrigerant_gwp100("R-134a") == 1530.0 and refrigerant_gwp100("hfc-32") == 771.0
    assert refrigerant_gwp100("R-407C") == pytest.approx(0.23 * 771 + 0.25 * 3740 + 0.52 * 1530)
    assert refrigerant_gwp100("R-999") is None


def test_trajectory_is_clamped_to_the_target_years():
    assert trajectory_value(10.0, 0.0, 2020, 2030, 2020) == 10.0
    assert trajectory_value(10.0, 0.0, 2020, 2030, 2024) == pytest.approx(6.0)
    assert trajectory_value(10.0, 0.0, 2020, 2030, 2040) == 0.0 and trajectory_value(10.0, 0.0, 2020, 2030, 2010) == 10.0


def test_unit_energy_allocated_by_rated_peak_power():
    m = HardwareModel(manufacturing_kgco2e=1.0, source="test", rated_power_w=300)
    pools = {"a": (10, 400.0), "b": (30, 200.0)}  # 4,000 + 6,000 W of rated peak
    # 1,000 kWh over 10 h = 100 kW; pool a holds 400 / 10,000 of it per server
    assert unit_energy_kwh_per_h("a", m, 1000.0, 10.0, pools)[0] == pytest.approx(4.0)
    assert unit_energy_kwh_per_h("", m, 1000.0, 10.0, pools)[0] == pytest.approx(0.3)  # the model's rated power
    m2 = HardwareModel(manufacturing_kgco2e=1.0, source="test")
    assert unit_energy_kwh_per_h("", m2, 1000.0, 10.0, pools)[0] == pytest.approx(100.0 / 40)  # site average


def test_whatif_pcf_may_name_a_hardware_model_of_the_site():
    rep = Reporting(hardware_models={"own_2u": HardwareModel(manufacturing_kgco2e=2000, transport_kgco2e=200,
                                                             lifetime_years=5, source="vendor PCF 2024")})
    site = SimpleNamespace(server_pools=[SimpleNamespace(name="p", servers=10)], reporting=rep)
    s = Scenario(name="r", hardware={"new": [{"pool": "p", "count": 10, "pcf": "own_2u"}]})
    hw = hardware_lines(s, site, site)
    e = embodied_summary(hw, 8760.0)
    assert e["tco2_embodied_new"] == pytest.approx(10 * 2200 / 1000)
    assert e["tco2_embodied"] == pytest.approx(22.0 / 5)  # one year of a five-year life
    assert math.isclose(hw.new[0].pcf.lifetime_years, 5.0)


def test_the_san_jose_example_inputs_read_and_check():
    from pathlib import Path

    from coolshift.config import load_site
    from coolshift.reports.standards import read_inputs
    from coolshift.reports.standards_inputs import load_reporting

    root = Path(__file__).resolve().parents[1] / "configs"
    site = load_site(root / "sites" / "sanjose_colo_2mw.yaml")
    rep = load_reporting(root / "reporting" / "sanjose_2022.yaml")
    assert "EXAMPLE INPUTS" in rep.inputs_note
    got = read_inputs(rep, [p.name for p in site.server_pools])
    # 2 gensets x 12 monthly tests x 125 L + 1,400 L on 2022-09-06
    assert got.fuel.loc[got.fuel["fuel"] == "diesel", "quantity"].sum() == 2 * 12 * 125 + 1400
    assert len(got.inventory) == 40 and set(got.inventory["pool"]) == {p.name for p in site.server_pools}
    assert got.offsets["quantity_tco2e"].tolist() == [2000, 300]
    assert got.ewaste["mass_kg"].sum() == pytest.approx(2 * 28.6 + 3 * 21.9 + 23.5)


def test_the_site_reporting_block_and_pool_allocation(tmp_path):
    # the site's own reporting: block (paths relative to the site file); the run's IT energy
    # (10,000 kWh over 100 h) is allocated to a_web by rated peak power: 380 / sum(servers x peak_w)
    from pathlib import Path

    from coolshift.config import load_site

    src = Path(__file__).resolve().parents[1] / "configs" / "sites" / "sanjose_colo_2mw.yaml"
    text = src.read_text().replace("../../data/", str(src.parents[2] / "data") + "/")
    text += """
reporting:
  offset_standard: Gold Standard
  targets: [{name: pue, metric: pue, baseline_year: 2024, baseline_value: 1.6, target_year: 2026, target_value: 1.4}]
  inventory: inv.csv
  hardware_models: {web: {preset: dell_r640_2019, lifetime_years: 4}}
"""
    _write(tmp_path / "site.yaml", text)
    _write(tmp_path / "inv.csv", "serial,model,purchase_date,pool\nW1,web,2020-01-01,a_web\n")
    site = load_site(tmp_path / "site.yaml")
    peak = sum(p.servers * p.peak_w for p in site.server_pools)
    out = tmp_path / "rep"
    res = runner.invoke(app, ["report", str(_run(tmp_path / "run")), "--site", str(tmp_path / "site.yaml"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    f = json.loads((out / "carbon_report.json").read_text())
    row = f["lifecycle"][0]
    assert row["use_kwh_period"] == pytest.approx(10000.0 * 380.0 / peak)
    assert row["manufacture_kgco2e"] == pytest.approx(1314.1)  # the R640 preset
    assert f["targets"][0]["expected_value"] == pytest.approx(1.5) and f["targets"][0]["on_track"] is True  # 2025: half way
    assert f["pas2060"]["offset_standard"] == "Gold Standard"
    assert f["eu"]["annex_i_kpis"]["installed_it_power_demand_kw"] == 2000.0  # the zones' design IT load
    # a unit in a pool the site does not have
    _write(tmp_path / "inv.csv", "serial,model,purchase_date,pool\nW1,web,2020-01-01,z_pool\n")
    res = runner.invoke(app, ["report", str(tmp_path / "run"), "--site", str(tmp_path / "site.yaml"), "--out", str(out)])
    assert res.exit_code == 2 and "inv.csv" in res.output and "'pool'" in res.output and "row 2" in res.output
