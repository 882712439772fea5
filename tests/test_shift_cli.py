"""`coolshift shift` end to end: files in, schedule.csv and summary.json out, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from coolshift.cli import app

T0 = pd.Timestamp("2024-01-01T00:00Z")
runner = CliRunner()


@pytest.fixture()
def carbon(tmp_path):
    # canonical format, two days of 30-min slots: 300 g except 100 g at 02:00 and 200 g at 02:30
    idx = pd.date_range(T0, periods=96, freq="30min")
    g = np.full(96, 300.0)
    g[4], g[5] = 100.0, 200.0
    p = tmp_path / "carbon.csv"
    pd.DataFrame({"timestamp": idx.strftime("%Y-%m-%dT%H:%M:%SZ"), "gco2_per_kwh": g}).to_csv(p, index=False)
    return p


def jobs_file(tmp_path, text):
    p = tmp_path / "jobs.csv"
    p.write_text("job_id,release,deadline,duration_h,power_kw\n" + text)
    return p


def test_shift_writes_schedule_and_summary(tmp_path, carbon):
    jobs = jobs_file(tmp_path, "small,2024-01-01T00:00Z,2024-01-01T06:00Z,0.5,4\n"
                               "big,2024-01-01T00:00Z,2024-01-01T06:00Z,0.5,8\n")
    out = tmp_path / "out"
    r = runner.invoke(app, ["shift", "--carbon", str(carbon), "--jobs", str(jobs), "--out", str(out)])
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "summary.json").read_text())
    for key in ("jobs", "baseline_kgco2", "shifted_kgco2", "savings_pct", "late_jobs", "solve_time_s"):
        assert key in summary
    # baseline at release (300 g): 0.5 h x 12 kW x 300 = 1.8 kg; both at 100 g: 0.6 kg
    assert summary["jobs"] == 2 and summary["late_jobs"] == 0
    assert summary["baseline_kgco2"] == pytest.approx(1.8)
    assert summary["shifted_kgco2"] == pytest.approx(0.6)
    sched = pd.read_csv(out / "schedule.csv")
    assert list(sched["start"]) == ["2024-01-01T02:00:00Z"] * 2
    assert {"job_id", "start", "end", "slots_used", "kgco2_shifted", "kgco2_unshifted"} <= set(sched.columns)
    assert not list(out.glob(".*tmp"))  # atomic writes leave no temporaries


def test_capacity_run_reports_greedy_and_the_difference(tmp_path, carbon):
    jobs = jobs_file(tmp_path, "small,2024-01-01T00:00Z,2024-01-01T06:00Z,0.5,4\n"
                               "big,2024-01-01T00:00Z,2024-01-01T06:00Z,0.5,8\n")
    out = tmp_path / "out"
    r = runner.invoke(app, ["shift", "--carbon", str(carbon), "--jobs", str(jobs), "--out", str(out),
                            "--capacity-kw", "10"])
    assert r.exit_code == 0, r.output
    s = json.loads((out / "summary.json").read_text())
    # optimum: big at 100 g, small at 200 g = 0.4 + 0.4; greedy: small at 100, big at 200 = 0.2 + 0.8
    assert s["shifted_kgco2"] == pytest.approx(0.8)
    assert s["greedy"]["shifted_kgco2"] == pytest.approx(1.0)
    assert s["optimal_vs_greedy_pct"] == pytest.approx(20.0)
    assert (out / "schedule_greedy.csv").exists()
    assert "optimum emits 20.00 % less" in " ".join(r.output.split())


def test_noise_mode_writes_one_block_per_seed(tmp_path, carbon):
    jobs = jobs_file(tmp_path, "a,2024-01-01T00:00Z,2024-01-01T06:00Z,1,4\n")
    out = tmp_path / "out"
    r = runner.invoke(app, ["shift", "--carbon", str(carbon), "--jobs", str(jobs), "--out", str(out),
                            "--forecast", "noise5", "--seeds", "3", "--interruptible"])
    assert r.exit_code == 0, r.output
    sched = pd.read_csv(out / "schedule.csv")
    assert sorted(sched["seed"]) == [0, 1, 2]
    s = json.loads((out / "summary.json").read_text())
    assert s["seeds"] == 3 and s["forecast"] == "noise5"


@pytest.mark.parametrize("text,needle", [
    ("a,2024-01-01T00:00Z,2024-01-01T00:10Z,0.5,4\n", "row 1 (line 2, job_id 'a')"),
    ("a,2024-01-01T00:00Z,2024-01-01T06:00Z,0.5,-4\n", "power_kw -4.0 is negative"),
    ("a,2024-01-05T00:00Z,2024-01-05T06:00Z,0.5,4\n", "jobs.csv: 1 bad job row(s) row 1 (line 2, job_id 'a'): window"),
])
def test_bad_jobs_exit_2_with_the_row_and_no_traceback(tmp_path, carbon, text, needle):
    jobs = jobs_file(tmp_path, text)
    r = runner.invoke(app, ["shift", "--carbon", str(carbon), "--jobs", str(jobs),
                            "--out", str(tmp_path / "out")])
    assert r.exit_code == 2
    assert needle in " ".join(r.output.split())
    assert "Traceback" not in r.output
    assert not (tmp_path / "out" / "summary.json").exists()


def test_bad_options_exit_2(tmp_path, carbon):
    jobs = jobs_file(tmp_path, "a,2024-01-01T00:00Z,2024-01-01T06:00Z,0.5,4\n")
    base = ["shift", "--carbon", str(carbon), "--jobs", str(jobs), "--out", str(tmp_path / "o")]
    for extra, needle in ((["--forecast", "oracle"], "--forecast must be one of"),
                          (["--slot", "7min"], "must be positive and divide a day"),
                          (["--capacity-kw", "-1"], "--capacity-kw must be positive"),
                          (["--capacity-kw", "2"], "draws 4.0 kW, more than the capacity")):
        r = runner.invoke(app, base + extra)
        assert r.exit_code == 2, (extra, r.output)
        assert needle in " ".join(r.output.split())
    r = runner.invoke(app, ["shift", "--carbon", str(tmp_path / "missing.csv"), "--jobs", str(jobs),
                            "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "Traceback" not in r.output
    (tmp_path / "a_file").write_text("x")
    r = runner.invoke(app, base[:-1] + [str(tmp_path / "a_file")])
    assert r.exit_code == 2 and "exists and is not a folder" in " ".join(r.output.split())
