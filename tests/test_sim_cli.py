"""`coolshift simulate` end to end on a short real period."""

from __future__ import annotations

import json

import pandas as pd
from typer.testing import CliRunner

from conftest import SMALL_SITE
from coolshift.cli import app

runner = CliRunner()


def test_simulate_writes_timeseries_summary_plot_and_telemetry(tmp_path):
    out = tmp_path / "run"
    tel = tmp_path / "tel.csv"
    r = runner.invoke(app, ["simulate", "--site", str(SMALL_SITE), "--policy", "carbon_greedy", "--start", "2022-07-01",
                            "--end", "2022-07-04", "--out", str(out), "--step-minutes", "30", "--telemetry-out", str(tel)])
    assert r.exit_code == 0, r.output
    s = json.loads((out / "summary.json").read_text())
    for k in ("it_kwh", "facility_kwh", "pue", "tco2_location", "tco2_market", "water_l", "wue_l_per_kwh",
              "sla_violations", "late_work_units", "thermal_violation_minutes", "cooling_kwh", "crah_fan_kwh",
              "chiller_kwh", "server_fan_kwh"):
        assert k in s
    assert s["steps"] == 3 * 48 and s["step_minutes"] == 30 and s["policy"] == "carbon_greedy"
    ts = pd.read_parquet(out / "timeseries.parquet")
    assert len(ts) == 144 and abs(ts.facility_power_kw.sum() * 0.5 - s["facility_kwh"]) < 1e-6 * s["facility_kwh"]
    assert (out / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pd.read_csv(tel).shape[0] == 144


def test_simulate_bad_input_exits_2_with_a_clear_message(tmp_path):
    r = runner.invoke(app, ["simulate", "--site", str(SMALL_SITE), "--policy", "magic", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "unknown policy 'magic'" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["simulate", "--site", str(tmp_path / "nope.yaml"), "--out", str(tmp_path)])
    assert r.exit_code == 2 and "not found" in r.output
    r = runner.invoke(app, ["simulate", "--site", str(SMALL_SITE), "--step-minutes", "7", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "--step-minutes" in r.output
