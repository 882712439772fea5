"""Job-level shifting without a capacity limit: hand-computed optima, inputs, resampling."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from coolshift.shift import (
    JobsError,
    prepare,
    read_jobs,
    resample_intensity,
    schedule_jobs,
    validate_jobs,
)

T0 = pd.Timestamp("2024-01-01T00:00Z")


def profile(values, step="30min", start=T0):
    idx = pd.date_range(start, periods=len(values), freq=step)
    return pd.Series(np.asarray(values, float), index=idx, name="gco2_per_kwh")


def job(job_id="a", release=T0, deadline=None, duration_h=1.0, power_kw=2.0, **extra):
    deadline = deadline if deadline is not None else T0 + pd.Timedelta("90min")
    row = {"job_id": job_id, "release": release.isoformat(), "deadline": deadline.isoformat(),
           "duration_h": duration_h, "power_kw": power_kw, **extra}
    return row


def jobs_frame(*rows):
    return validate_jobs(pd.DataFrame(list(rows)))


# ------------------------------------------------------------------- hand-computed optima
def test_two_slot_job_on_three_slot_profile_takes_the_cleaner_pair():
    # slots 300, 100, 200 g/kWh; a 1 h job (two 30-min slots) at 2 kW.
    # start 0: 2 kW x 0.5 h x (300 + 100) = 400 g; start 1: 2 x 0.5 x (100 + 200) = 300 g.
    s = schedule_jobs(jobs_frame(job()), profile([300, 100, 200]))
    row = s.table.iloc[0]
    assert row["start"] == T0 + pd.Timedelta("30min")
    assert row["end"] == T0 + pd.Timedelta("90min")
    assert row["kgco2_shifted"] == pytest.approx(0.300)
    assert row["kgco2_unshifted"] == pytest.approx(0.400)  # starts at its release
    summ = s.summary()
    assert summ["savings_pct"] == pytest.approx(25.0)
    assert summ["late_jobs"] == 0
    assert summ["energy_kwh"] == pytest.approx(2.0)


def test_interruptible_job_splits_around_a_dirty_slot_contiguous_cannot():
    # slots 100, 300, 200: contiguous best = slots 0-1 = 0.5 x 2 x 400 g = 0.4 kg;
    # interruptible takes slots 0 and 2 = 0.5 x 2 x 300 g = 0.3 kg.
    intensity = profile([100, 300, 200])
    block = schedule_jobs(jobs_frame(job()), intensity)
    split = schedule_jobs(jobs_frame(job()), intensity, interruptible=True)
    assert block.table["kgco2_shifted"].iat[0] == pytest.approx(0.4)
    assert split.table["kgco2_shifted"].iat[0] == pytest.approx(0.3)
    assert split.table["slots"].iat[0] == "2024-01-01T00:00Z;2024-01-01T01:00Z"
    assert set(split.runs["run_h"]) == {0.5}
    # the per-job column overrides the default
    per_job = schedule_jobs(jobs_frame(job(interruptible="true")), intensity, interruptible=False)
    assert per_job.table["kgco2_shifted"].iat[0] == pytest.approx(0.3)


def test_partial_last_slot_is_charged_for_the_time_it_runs():
    # 0.75 h at 1 kW on 100, 300, 50. Contiguous: start 0 = 0.5x100 + 0.25x300 = 125 g,
    # start 1 = 0.5x300 + 0.25x50 = 162.5 g. Interruptible: 0.5x50 + 0.25x100 = 50 g.
    intensity = profile([100, 300, 50])
    j = jobs_frame(job(duration_h=0.75, power_kw=1.0))
    block = schedule_jobs(j, intensity)
    assert block.table["kgco2_shifted"].iat[0] == pytest.approx(0.125)
    assert block.table["end"].iat[0] == T0 + pd.Timedelta("45min")
    split = schedule_jobs(j, intensity, interruptible=True)
    assert split.table["kgco2_shifted"].iat[0] == pytest.approx(0.050)
    assert split.table["run_h"].iat[0] == pytest.approx(0.75)
    assert sorted(split.runs["run_h"]) == [0.25, 0.5]


def test_release_and_deadline_off_the_grid_shrink_the_window():
    # release 00:10 -> first usable slot 00:30; deadline 01:20 -> last usable slot ends 01:00.
    intensity = profile([10, 500, 400, 5])
    j = jobs_frame(job(release=T0 + pd.Timedelta("10min"), deadline=T0 + pd.Timedelta("80min"),
                       duration_h=0.5, power_kw=1.0))
    s = schedule_jobs(j, intensity)
    assert s.table["start"].iat[0] == T0 + pd.Timedelta("30min")
    assert s.table["kgco2_shifted"].iat[0] == pytest.approx(0.25)


def test_baseline_start_column_sets_the_unshifted_reference():
    intensity = profile([300, 100, 200, 400])
    j = jobs_frame(job(deadline=T0 + pd.Timedelta("2h"), duration_h=0.5, power_kw=1.0,
                       baseline_start=(T0 + pd.Timedelta("90min")).isoformat()))
    s = schedule_jobs(j, intensity)
    assert s.table["kgco2_unshifted"].iat[0] == pytest.approx(0.2)  # 0.5 h x 400 g
    assert s.table["kgco2_shifted"].iat[0] == pytest.approx(0.05)


def test_decision_intensity_is_used_to_choose_and_actuals_to_count():
    intensity = profile([300, 100, 200])
    j = jobs_frame(job(duration_h=0.5, power_kw=1.0))
    s = schedule_jobs(j, intensity, decision=np.array([1.0, 50.0, 40.0]))  # a wrong forecast
    assert s.table["start"].iat[0] == T0
    assert s.table["kgco2_shifted"].iat[0] == pytest.approx(0.15)  # counted at 300 g


@pytest.mark.parametrize("interruptible", [False, True])
def test_vectorised_optimum_matches_brute_force(interruptible):
    rng = np.random.default_rng(7)
    intensity = profile(rng.uniform(50, 500, 40))
    rows = []
    for i in range(60):
        a = int(rng.integers(0, 30))
        dur = float(rng.choice([0.5, 1.0, 1.25, 2.0]))
        w = int(np.ceil(dur / 0.5)) + int(rng.integers(0, 8))
        rows.append(job(f"j{i}", T0 + pd.Timedelta(minutes=30 * a),
                        T0 + pd.Timedelta(minutes=30 * min(a + w, 40)), dur,
                        float(rng.uniform(0.5, 5))))
    j = jobs_frame(*rows)
    s = schedule_jobs(j, intensity, interruptible=interruptible)
    x = intensity.to_numpy()
    for i, r in enumerate(rows):
        a = int((pd.Timestamp(r["release"]) - T0) / pd.Timedelta("30min"))
        b = int((pd.Timestamp(r["deadline"]) - T0) / pd.Timedelta("30min"))
        dur, p = r["duration_h"], r["power_kw"]
        full, rem = int(dur // 0.5), dur - 0.5 * int(dur // 0.5)
        weights = [0.5] * full + ([rem] if rem else [])
        if interruptible:
            vals = sorted(x[a:b])
            best = sum(w * v for w, v in zip(weights, vals))
        else:
            best = min(sum(w * x[t + k] for k, w in enumerate(weights))
                       for t in range(a, b - len(weights) + 1))
        assert s.table["kgco2_shifted"].iat[i] == pytest.approx(p * best / 1000, rel=1e-9)
        assert not s.table["late"].iat[i]
        assert s.table["end"].iat[i] <= pd.Timestamp(r["deadline"])


# ------------------------------------------------------------------------------- inputs
def write(tmp_path, text):
    p = tmp_path / "jobs.csv"
    p.write_text(text)
    return p


def test_read_jobs_parses_offsets_to_utc(tmp_path):
    p = write(tmp_path, "job_id,release,deadline,duration_h,power_kw,interruptible\n"
                        "a,2024-01-01T01:00+01:00,2024-01-01T03:00Z,1,2,yes\n"
                        "b,2024-01-01T00:00Z,2024-01-01T01:00Z,0.5,0,\n")
    j = read_jobs(p)
    assert j["release"].iat[0] == T0
    assert list(j["interruptible"].astype(object)) == [True, pd.NA]
    assert j["power_kw"].tolist() == [2.0, 0.0]


@pytest.mark.parametrize("row,needle", [
    ("c,2024-01-01T00:00Z,2024-01-01T00:30Z,1,2", "before release"),
    ("c,2024-01-01 00:00,2024-01-01T03:00Z,1,2", "no UTC offset"),
    ("c,2024-01-01,2024-01-01T03:00Z,1,2", "'2024-01-01' has no UTC offset"),
    ("c,yesterday,2024-01-01T03:00Z,1,2", "not an ISO 8601"),
    ("c,2024-01-01T00:00Z,2024-01-01T03:00Z,1,-5", "power_kw -5.0 is negative"),
    ("c,2024-01-01T00:00Z,2024-01-01T03:00Z,0,5", "duration_h 0.0 must be > 0"),
    ("c,2024-01-01T00:00Z,2024-01-01T03:00Z,one,5", "duration_h 'one'"),
    ("a,2024-01-01T00:00Z,2024-01-01T03:00Z,1,5", "repeats an earlier row"),
    ("c,2024-01-01T00:00Z,2024-01-01T03:00Z,1,5,maybe", "interruptible 'maybe'"),
])
def test_bad_job_rows_are_errors_naming_the_row(tmp_path, row, needle):
    head = "job_id,release,deadline,duration_h,power_kw,interruptible\n"
    good = "a,2024-01-01T00:00Z,2024-01-01T03:00Z,1,2,no\n"
    if row.count(",") == 4:
        row += ","
    p = write(tmp_path, head + good + row + "\n")
    with pytest.raises(JobsError) as err:
        read_jobs(p)
    msg = str(err.value)
    assert str(p) in msg and needle in msg
    assert "row 2 (line 3, job_id" in msg


def test_missing_column_and_missing_file_are_clear(tmp_path):
    with pytest.raises(JobsError, match=r"missing column\(s\) \['power_kw'\]"):
        read_jobs(write(tmp_path, "job_id,release,deadline,duration_h\n"))
    with pytest.raises(JobsError, match="no such jobs file"):
        read_jobs(tmp_path / "nope.csv")


def test_window_outside_the_data_or_too_short_after_alignment_names_the_job():
    intensity = profile([100, 200, 300])
    with pytest.raises(JobsError, match=r"job_id 'late'.*outside the intensity data"):
        prepare(jobs_frame(job("late", deadline=T0 + pd.Timedelta("3h"))), intensity)
    # 00:10-00:50 holds 40 minutes but no whole slot
    with pytest.raises(JobsError, match=r"job_id 'odd'.*holds 0 whole 30min slot"):
        prepare(jobs_frame(job("odd", T0 + pd.Timedelta("10min"), T0 + pd.Timedelta("50min"),
                               duration_h=0.5)), intensity)


# ---------------------------------------------------------------------------- resampling
def test_resample_weights_mixed_steps_by_time_not_by_count():
    # 00:00 holds 30 min at 100; then 15-min steps 200, 400, 600, 800 (GB-style switch).
    idx = pd.DatetimeIndex([T0, T0 + pd.Timedelta("30min"), T0 + pd.Timedelta("45min"),
                            T0 + pd.Timedelta("60min"), T0 + pd.Timedelta("75min")])
    s = pd.Series([100.0, 200.0, 400.0, 600.0, 800.0], index=idx)
    hourly = resample_intensity(s, "1h")
    # 00:00-01:00: (100 x 30 + 200 x 15 + 400 x 15) / 60 = 200, not the count mean 233.3.
    assert hourly.iloc[0] == pytest.approx(200.0)
    half = resample_intensity(s, "30min")
    assert half.tolist() == pytest.approx([100.0, 300.0, 700.0])
    assert len(hourly) == 1  # 01:00-02:00 is only half covered: dropped


def test_resample_fills_a_missing_stamp_from_the_reading_before_and_rejects_long_gaps():
    idx = pd.date_range(T0, periods=8, freq="15min").delete(5)  # 01:15 missing (DE-style)
    s = pd.Series(np.arange(8.0)[np.r_[0:5, 6:8]], index=idx)
    half = resample_intensity(s, "30min")
    assert half.tolist() == pytest.approx([0.5, 2.5, 4.0, 6.5])
    gap = pd.Series([1.0, 2.0], index=[T0, T0 + pd.Timedelta("5h")])
    with pytest.raises(JobsError, match="gap of 0 days 05:00:00"):
        resample_intensity(gap, "30min")


def test_every_choice_is_within_the_window_for_all_small_cases():
    # exhaustive over windows of a 6-slot profile, 1-slot and 2-slot jobs
    intensity = profile([5, 1, 4, 1, 3, 2])
    rows = []
    for k, (a, b, d) in enumerate(itertools.product(range(6), range(1, 7), (0.5, 1.0))):
        if (b - a) * 0.5 >= d:
            rows.append(job(f"j{k}", T0 + pd.Timedelta(minutes=30 * a),
                            T0 + pd.Timedelta(minutes=30 * b), d, 1.0))
    s = schedule_jobs(jobs_frame(*rows), intensity)
    assert (s.table["start"] >= s.table["release"]).all()
    assert (s.table["end"] <= s.table["deadline"]).all()
    assert s.summary()["late_jobs"] == 0
    assert (s.table["kgco2_shifted"] <= s.table["kgco2_unshifted"] + 1e-12).all()


# Bundled real data (EIA-930 CAISO 2022, hourly; data/PROVENANCE.md): the test runs on a
# fresh clone. Its file's own avg_CI column is the reference the reader must reproduce.
CISO = Path(__file__).resolve().parents[1] / "data" / "carbon_intensity" / "eia930_2022" / "CISO_2022_hourly.csv"


def test_nightly_jobs_on_real_caiso_data_match_a_pandas_brute_force():
    from coolshift.io import read_carbon

    raw = pd.read_csv(CISO)
    raw.index = pd.to_datetime(raw["timestamp"], utc=True)
    hourly = raw["avg_CI"]
    rows = []
    for d in pd.date_range("2022-03-01", periods=10, freq="D", tz="UTC"):
        nominal = d + pd.Timedelta("1h")
        rows.append(job(d.strftime("%m%d"), nominal - pd.Timedelta("8h"),
                        nominal + pd.Timedelta("8h30min"), 0.5, 1.0,
                        baseline_start=nominal.isoformat()))
    s = schedule_jobs(jobs_frame(*rows), read_carbon(CISO, "eia930"))
    for i, r in enumerate(rows):
        # every 30-min slot of the window: the value of the hour it lies in
        slots = pd.date_range(pd.Timestamp(r["release"]), pd.Timestamp(r["deadline"]) - pd.Timedelta("30min"),
                              freq="30min")
        g = [hourly[t.floor("h")] for t in slots]
        base = hourly[pd.Timestamp(r["baseline_start"]).floor("h")]
        assert s.table["kgco2_shifted"].iat[i] == pytest.approx(0.5 * min(g) / 1000, rel=1e-9)
        assert s.table["kgco2_unshifted"].iat[i] == pytest.approx(0.5 * base / 1000, rel=1e-9)
        assert s.table["start"].iat[i] == slots[int(np.argmin(g))]
