"""CalTRACK baselines (eemeter) beside the Guideline 14 regression (issue 23 item 6).

A synthetic site with a known step change: facility energy = (1,000 kW + 25 kW per degC above
18 degC) x (1 - cut) + noise, 28 days before (cut 0) and 7 days after (cut 10 %). The true
saving is 10 % of the adjusted baseline; the daily CalTRACK model must find it within 1.5 points.
The hourly model takes over a minute on 28 days of data and is exercised by the San Jose run
(docs/reporting.md), not here.
"""

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from coolshift.cli import app
from coolshift.reports.caltrack import unsupported_months

runner = CliRunner()


def _frame(start, days, cut, seed):
    rng = np.random.default_rng(seed)
    idx = pd.date_range(start, periods=24 * days, freq="h")
    doy, h = idx.dayofyear.to_numpy(), idx.hour.to_numpy()
    t = 15 + 8 * np.sin(2 * np.pi * (doy - 110) / 365) + 6 * np.sin(2 * np.pi * (h - 9) / 24) + rng.normal(0, 1, len(idx))
    fac = (1000 + 25 * np.maximum(0, t - 18)) * (1 - cut) + rng.normal(0, 5, len(idx))
    return pd.DataFrame({"it_power_kw": 800.0, "facility_power_kw": fac, "outside_temp_c": t, "gco2_per_kwh": 300.0}, index=idx)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("ct")
    pre, post = _frame("2024-03-01T00:00Z", 28, 0.0, 1), _frame("2024-03-29T00:00Z", 7, 0.1, 2)
    pre.to_parquet(d / "pre.parquet")
    post.to_parquet(d / "post.parquet")
    return d, post


def test_verify_reports_caltrack_daily_beside_guideline14(files):
    d, post = files
    out = d / "v"
    res = runner.invoke(app, ["verify", "--pre", str(d / "pre.parquet"), "--post", str(d / "post.parquet"),
                              "--caltrack", "daily", "--out", str(out)])
    assert res.exit_code == 0, res.output
    s = json.loads((out / "verification.json").read_text())
    ct = s["caltrack"]["daily"]
    assert ct["model"].startswith("CalTRACK daily (eemeter 4.")
    assert (ct["baseline_intervals"], ct["reporting_intervals"]) == (28, 7)
    truth_kwh = post["facility_power_kw"].sum() / 0.9 * 0.1  # the cut removed 10 % of what the baseline would use
    # the intervals CalTRACK keeps: eemeter's daily aggregation drops the period's last hour
    assert 0 <= post["facility_power_kw"].sum() - ct["metered_kwh"] <= post["facility_power_kw"].max()
    assert 8.5 < ct["savings_pct"] < 11.5 and ct["avoided_kwh"] == pytest.approx(truth_kwh, rel=0.15)
    assert ct["cv_rmse_pct"] < 3 and abs(ct["nmbe_pct"]) < 1
    assert "eemeter.sufficiency_criteria.incorrect_number_of_total_days" in ct["disqualification"]  # < 365 days, said
    page = (out / "verification.html").read_text()
    assert "CalTRACK daily" in page and "ASHRAE Guideline 14 change-point" in page


def test_caltrack_option_checks(files, tmp_path):
    d, _ = files
    res = runner.invoke(app, ["verify", "--pre", str(d / "pre.parquet"), "--post", str(d / "post.parquet"),
                              "--caltrack", "weekly", "--out", str(tmp_path / "v")])
    assert res.exit_code == 2 and "--caltrack: must be daily, hourly or both" in " ".join(res.output.split())
    res = runner.invoke(app, ["report", str(d / "post.parquet"), "--carbon-format", "auto", "--caltrack", "daily",
                              "--out", str(tmp_path / "r")])
    assert res.exit_code == 2
    short = _frame("2024-03-01T00:00Z", 5, 0.0, 3)
    short.to_parquet(tmp_path / "short.parquet")
    res = runner.invoke(app, ["verify", "--pre", str(tmp_path / "short.parquet"), "--post", str(d / "post.parquet"),
                              "--caltrack", "daily", "--out", str(tmp_path / "v")])
    assert res.exit_code == 2 and "short.parquet" in res.output


def test_report_puts_caltrack_beside_guideline14(files, tmp_path):
    d, _ = files
    out = tmp_path / "r"
    res = runner.invoke(app, ["report", str(d / "post.parquet"), "--pre", str(d / "pre.parquet"), "--caltrack", "daily",
                              "--out", str(out)])
    assert res.exit_code == 0, res.output
    f = json.loads((out / "carbon_report.json").read_text())
    ct = f["mv_methods"]["caltrack"]
    assert ct["computed"] is True and 8.5 < ct["models"]["daily"]["savings_pct"] < 11.5
    page = (out / "carbon_report.html").read_text()
    assert "Baseline models side by side" in page and "CalTRACK daily" in page


def test_hourly_model_needs_the_post_months_in_the_baseline():
    # one segment per calendar month, fitted from the month and its neighbours (three-month weighted)
    h1 = pd.date_range("2022-01-01T00:00Z", "2022-06-30T23:00Z", freq="h")
    h2 = pd.date_range("2022-07-01T00:00Z", "2022-12-31T23:00Z", freq="h")
    assert unsupported_months(h1, h2) == [8, 9, 10, 11]  # July borders June, December borders January
    assert unsupported_months(h1.append(h2), h2) == []
