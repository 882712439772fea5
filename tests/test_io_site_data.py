import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from coolshift.cli import app
from coolshift.config import load_site
from coolshift.io import DataError, load_site_data
from conftest import LARGE_SITE, SMALL_SITE


def test_year_of_both_sites_on_the_plan_grid():
    for path, n_edge in ((SMALL_SITE, 0), (LARGE_SITE, 2)):
        site = load_site(path)
        d = load_site_data(site, "2022-01-01T00:00Z", "2023-01-01T00:00Z")
        assert len(d) == 365 * 96 and str(d.index.tz) == "UTC"
        assert pd.infer_freq(d.index) == "15min"
        assert sum(c.startswith("gco2_per_kwh__") for c in d.columns) == n_edge
        demand = d[[f"{c.name}_units_per_h" for c in site.workload_classes]].sum(axis=1)
        np.testing.assert_allclose(demand, d["cpu_util"] * site.capacity_units_per_h)
        assert not d.isna().any().any()


def test_hold_for_intensity_and_interpolation_for_temperature():
    site = load_site(SMALL_SITE)
    d = load_site_data(site, "2022-06-01T00:00Z", "2022-06-02T00:00Z", step_minutes=5)
    hour = d.loc["2022-06-01T10:00Z":"2022-06-01T10:55Z"]
    assert hour["gco2_per_kwh"].nunique() == 1  # an hourly average holds for its hour
    t = d["temp_c"]
    # linear between hourly samples: the half-hour value is the mean of its neighbours
    mid = t.loc["2022-06-01T10:30Z"]
    assert mid == pytest.approx((t.loc["2022-06-01T10:00Z"] + t.loc["2022-06-01T11:00Z"]) / 2)


def test_override_carbon_with_canonical_file(tmp_path):
    site = load_site(SMALL_SITE)
    idx = pd.date_range("2022-03-01T00:00Z", periods=48, freq="h")
    p = tmp_path / "flat.csv"
    pd.DataFrame({"timestamp": [t.isoformat() for t in idx], "gco2_per_kwh": 123.0}).to_csv(p, index=False)
    d = load_site_data(site, "2022-03-01T00:00Z", "2022-03-02T00:00Z", carbon=p)
    assert (d["gco2_per_kwh"] == 123.0).all()
    with pytest.raises(DataError, match="not the requested"):
        load_site_data(site, "2022-03-01T00:00Z", "2022-03-05T00:00Z", carbon=p)


def test_cli_validate_and_errors(tmp_path):
    r = CliRunner().invoke(app, ["validate", "--site", str(SMALL_SITE), "--start", "2022-05-01", "--end", "2022-05-08"])
    assert r.exit_code == 0, r.output
    assert "sanjose_colo_2mw" in r.output and "gco2_per_kwh" in r.output and "OK" in r.output
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,gco2_per_kwh\n2022-05-01T00:00Z,100\n2022-05-01T01:00Z,oops\n")
    r = CliRunner().invoke(app, ["data", "summary", "--site", str(SMALL_SITE), "--carbon", str(bad)])
    assert r.exit_code == 2
    assert "bad.csv" in r.output and "row 3" in r.output and "Traceback" not in r.output
