"""`coolshift shift` at scale and at its limits: identical jobs merged into classes (same
optimum as one column set per job), the numpy route to HiGHS (same optimum as Pyomo), a
time limit reported as a time limit (never as "no schedule fits"), infeasible job sets
still diagnosed. No timing or memory assertions here: see benchmarks/bench_shift.py."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from coolshift.cli import app
from coolshift.shift import capacity as sm
from coolshift.shift import (
    JobsError,
    SolverStopped,
    make_schedule,
    prepare,
    slot_load_kw,
    solve_runs,
    validate_jobs,
)

T0 = pd.Timestamp("2024-01-01T00:00Z")
runner = CliRunner()


def profile(values):
    return pd.Series(np.asarray(values, float),
                     index=pd.date_range(T0, periods=len(values), freq="30min"))


def stamp(slot: int) -> str:
    return (T0 + pd.Timedelta(minutes=30 * int(slot))).isoformat()


def frame(rows, interruptible=None):
    """rows: (release slot, deadline slot, duration h, power kW[, interruptible])."""
    out = pd.DataFrame([{"job_id": f"j{i}", "release": stamp(r[0]), "deadline": stamp(r[1]),
                         "duration_h": r[2], "power_kw": r[3]} for i, r in enumerate(rows)])
    if interruptible is not None:
        out["interruptible"] = ["true" if f else "false" for f in interruptible]
    return validate_jobs(out)


def kg(prob, job, slot, hours, decision):
    return float((prob.power_kw[job] * hours * decision[slot]).sum()) / 1000.0


# ------------------------------------------------------------------------- job classes
def test_identical_jobs_form_one_class_in_input_order():
    intensity = profile([5, 1, 2, 3, 4, 5])
    jobs = frame([(0, 4, 0.5, 2.0), (0, 4, 1.0, 2.0), (0, 4, 0.5, 2.0), (0, 4, 0.5, 3.0),
                  (0, 4, 0.5, 2.0)])
    prob = prepare(jobs, intensity)
    cls = sm.job_classes(prob, np.arange(5))
    assert cls.rep.tolist() == [0, 1, 3]
    assert cls.count.tolist() == [3, 1, 1]
    assert cls.members.tolist() == [0, 2, 4, 1, 3]
    assert cls.offset.tolist() == [0, 3, 4]


def test_class_counts_are_split_back_to_jobs_deterministically():
    # four identical 0.5 h, 4 kW jobs, capacity 8 kW: two in the cleanest slot (1), two in
    # the next (2); jobs in input order take the starts in time order
    intensity = profile([300, 100, 200, 400])
    jobs = frame([(0, 4, 0.5, 4.0)] * 4)
    prob = prepare(jobs, intensity)
    job, slot, hours, info = sm.solve_capacity(prob, prob.actual, np.full(4, 8.0))
    assert info["job_classes"] == 1 and info["variables"] == 4  # one class, four starts
    assert dict(zip(job.tolist(), slot.tolist())) == {0: 1, 1: 1, 2: 2, 3: 2}


def test_interruptible_class_wraps_round_its_jobs_at_most_one_slot_each():
    # three 1 h interruptible 2 kW jobs, capacity 4 kW: the class puts 2 slot-lengths in
    # each of the three cleanest slots; each job runs 1 h, at most 0.5 h per slot
    intensity = profile([100, 200, 300, 900, 900])
    jobs = frame([(0, 5, 1.0, 2.0)] * 3, interruptible=[True] * 3)
    prob = prepare(jobs, intensity)
    job, slot, hours, info = sm.solve_capacity(prob, prob.actual, np.full(5, 4.0), 0.0)
    per = pd.DataFrame({"job": job, "slot": slot, "h": hours})
    assert per.groupby("job")["h"].sum().tolist() == pytest.approx([1.0] * 3)
    assert per.groupby(["job", "slot"])["h"].sum().max() <= 0.5 + 1e-9
    assert slot_load_kw(prob, job, slot, hours).max() <= 4.0 + 1e-9
    assert sorted(set(slot.tolist())) == [0, 1, 2]


templates = st.tuples(st.integers(0, 7), st.integers(1, 4), st.sampled_from([0.5, 1.0, 1.25]),
                      st.sampled_from([2.0, 3.0, 5.0]), st.booleans())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(templates=st.lists(templates, min_size=1, max_size=3),
       picks=st.lists(st.integers(0, 2), min_size=2, max_size=9),
       values=st.lists(st.integers(10, 500), min_size=12, max_size=12),
       cap=st.sampled_from([5.0, 6.0, 8.0, 11.0]))
def test_classes_have_the_optimum_of_the_per_job_model(templates, picks, values, cap):
    """Random small instances with repeated jobs: the class model and the per-job model
    are both infeasible or have the same optimal kgCO2, and the class schedule, split back
    into jobs, keeps every job in its window, whole, and under the capacity."""
    rows, flags = [], []
    for p in picks:
        a, slack, d, kw, inter = templates[p % len(templates)]
        need = int(np.ceil(d / 0.5))
        rows.append((a, min(12, a + need + slack), d, kw))
        flags.append(inter)
    rows = [r for r in rows if r[1] - r[0] >= int(np.ceil(r[2] / 0.5))]
    if not rows:
        return
    prob = prepare(frame(rows, flags[:len(rows)]), profile(values))
    capa = np.full(12, cap)
    out = {}
    for agg in (True, False):
        try:
            out[agg] = sm.solve_capacity(prob, prob.actual, capa, 0.0, None, agg)
        except JobsError as exc:
            out[agg] = str(exc)
    if isinstance(out[False], str):
        assert isinstance(out[True], str)
        return
    assert not isinstance(out[True], str), out[True]
    (j1, s1, h1, _), (j2, s2, h2, _) = out[True], out[False]
    assert kg(prob, j1, s1, h1, prob.actual) == pytest.approx(kg(prob, j2, s2, h2, prob.actual),
                                                             rel=1e-7, abs=1e-9)
    assert slot_load_kw(prob, j1, s1, h1).max() <= cap + 1e-6
    sched = make_schedule(prob, j1, s1, h1, "milp", 0.0)
    assert sched.summary()["late_jobs"] == 0
    assert (s1 >= prob.first[j1]).all() and (s1 < prob.stop[j1]).all()
    per_slot = pd.DataFrame({"j": j1, "s": s1, "h": h1}).groupby(["j", "s"])["h"].sum()
    assert per_slot.max() <= 0.5 + 1e-7


def test_numpy_route_has_the_optimum_of_the_pyomo_route(monkeypatch):
    rng = np.random.default_rng(7)
    intensity = profile(rng.uniform(50, 400, 24))
    rows = [(int(a), int(a) + 6, float(d), float(p)) for a, d, p in
            zip(rng.integers(0, 18, 14), rng.choice([0.5, 1.0, 1.5], 14), rng.integers(2, 9, 14))]
    prob = prepare(frame(rows + rows[:4]), intensity)  # four repeated jobs
    cap = np.full(24, 12.0)
    j1, s1, h1, i1 = sm.solve_capacity(prob, prob.actual, cap, 0.0)
    monkeypatch.setattr(sm, "PYOMO_MAX_COLUMNS", 0)
    j2, s2, h2, i2 = sm.solve_capacity(prob, prob.actual, cap, 0.0)
    assert i1["pyomo_groups"] == i1["groups"] and i2["pyomo_groups"] == 0
    assert kg(prob, j1, s1, h1, prob.actual) == pytest.approx(kg(prob, j2, s2, h2, prob.actual),
                                                             rel=1e-9)


# ----------------------------------------------------------------- time limit, CLI
def _instance(tmp_path, n, cap_seed=1):
    """n random jobs over one day (slack 1-5.5 h, 1-9 kW) and a two-peak intensity."""
    rng = np.random.default_rng(cap_seed)
    g = 200 + 100 * np.sin(np.arange(96) / 96 * 4 * np.pi) + rng.uniform(0, 50, 96)
    carbon = tmp_path / "carbon.csv"
    pd.DataFrame({"timestamp": pd.date_range(T0, periods=96, freq="30min").strftime(
        "%Y-%m-%dT%H:%M:%SZ"), "gco2_per_kwh": g}).to_csv(carbon, index=False)
    a = rng.integers(0, 80, n)
    d = rng.choice([0.5, 1.0, 1.5, 2.0], n)
    b = np.minimum(a + np.ceil(d / 0.5).astype(int) + rng.integers(2, 12, n), 96)
    jobs = tmp_path / "jobs.csv"
    pd.DataFrame({"job_id": [f"j{i}" for i in range(n)], "release": [stamp(x) for x in a],
                  "deadline": [stamp(x) for x in b], "duration_h": d,
                  "power_kw": rng.integers(1, 10, n).astype(float)}).to_csv(jobs, index=False)
    return carbon, jobs


def _shift(carbon, jobs, out, *extra):
    return runner.invoke(app, ["shift", "--carbon", str(carbon), "--jobs", str(jobs),
                               "--out", str(out), *extra])


def test_time_limit_with_no_feasible_schedule_is_exit_1_not_infeasible(tmp_path):
    # 15 kW: greedy strands jobs (no starting incumbent) and HiGHS has found nothing at 0 s
    carbon, jobs = _instance(tmp_path, 60)
    r = _shift(carbon, jobs, tmp_path / "out", "--capacity-kw", "15", "--time-limit-s", "0")
    assert r.exit_code == 1, r.output
    assert "time limit" in r.output and "no feasible schedule" in r.output
    assert "no schedule fits every job" not in r.output
    assert "Traceback" not in r.output
    assert not (tmp_path / "out" / "schedule.csv").exists()
    # the same job set is feasible: without the limit it is solved
    r = _shift(carbon, jobs, tmp_path / "out2", "--capacity-kw", "15")
    assert r.exit_code == 0, r.output


def test_time_limit_with_an_incumbent_writes_it_with_exit_3(tmp_path):
    # 30 kW: greedy places every job, which HiGHS takes as its first incumbent; at 0 s it
    # stops there, so the schedule is written and flagged, not called optimal
    carbon, jobs = _instance(tmp_path, 60)
    out = tmp_path / "out"
    r = _shift(carbon, jobs, out, "--capacity-kw", "30", "--time-limit-s", "0")
    assert r.exit_code == 3, r.output
    assert "time limit" in r.output and "best feasible" in r.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["time_limit_reached"] is True
    assert "mip_gap" in summary and summary["late_jobs"] == 0
    assert summary["max_over_capacity_kw"] <= 1e-6
    sched = pd.read_csv(out / "schedule.csv")
    assert len(sched) == 60 and not sched["late"].any()
    # with time, the optimum is no worse than that incumbent
    r = _shift(carbon, jobs, tmp_path / "opt", "--capacity-kw", "30")
    assert r.exit_code == 0, r.output
    best = json.loads((tmp_path / "opt" / "summary.json").read_text())
    assert best["shifted_kgco2"] <= summary["shifted_kgco2"] + 1e-9
    assert not best.get("time_limit_reached")


def test_time_limit_api_raises_solver_stopped_not_jobs_error(tmp_path):
    carbon, jobs = _instance(tmp_path, 60)
    from coolshift.shift import read_jobs

    raw = pd.read_csv(carbon)
    intensity = pd.Series(raw["gco2_per_kwh"].to_numpy(),
                          index=pd.to_datetime(raw["timestamp"], utc=True))
    prob = prepare(read_jobs(jobs), intensity)
    with pytest.raises(SolverStopped, match="time limit") as err:
        solve_runs(prob, None, 15.0, 1e-4, 0.0)
    assert err.value.time_limit and not isinstance(err.value, JobsError)


# ----------------------------------------------------------------- infeasible, named
def test_infeasible_job_set_names_the_window_and_the_jobs(tmp_path):
    # three 1 h 6 kW jobs that must all run in 01:00-02:30 under 10 kW: 3 x 6 kW x 2 slots
    # = 18 kWh needed, 3 slots x 10 kW x 0.5 h = 15 kWh there
    carbon = tmp_path / "carbon.csv"
    pd.DataFrame({"timestamp": pd.date_range(T0, periods=12, freq="30min").strftime(
        "%Y-%m-%dT%H:%M:%SZ"), "gco2_per_kwh": np.arange(12) + 100.0}).to_csv(carbon, index=False)
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("job_id,release,deadline,duration_h,power_kw\n"
                    + "".join(f"n{i},{stamp(2)},{stamp(5)},1.0,6\n" for i in range(3))
                    + f"free,{stamp(0)},{stamp(12)},0.5,6\n")
    r = _shift(carbon, jobs, tmp_path / "out", "--capacity-kw", "10", "--time-limit-s", "30")
    assert r.exit_code == 2, r.output
    text = " ".join(r.output.split())
    assert "no schedule fits every job under the capacity" in text
    assert "2024-01-01T01:00Z and 2024-01-01T02:30Z" in text
    assert "'n0', 'n1', 'n2'" in text and "'free'" not in text
    assert "18.00 kWh" in text and "15.00 kWh" in text
    assert "time limit" not in text and "Traceback" not in text


def test_bad_time_limit_is_exit_2(tmp_path):
    carbon, jobs = _instance(tmp_path, 5)
    r = _shift(carbon, jobs, tmp_path / "out", "--capacity-kw", "10", "--time-limit-s", "-1")
    assert r.exit_code == 2 and "--time-limit-s" in r.output
    r = _shift(carbon, jobs, tmp_path / "out", "--capacity-kw", "inf")
    assert r.exit_code == 2 and "--capacity-kw" in r.output
