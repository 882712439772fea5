"""Sweeps on dask.distributed: a 3 x 3 grid on a 2-worker LocalCluster, a real scheduler and
worker started as separate processes on 127.0.0.1, resume without recomputation, and a
failing scenario that does not sink the sweep."""

import json
import os
import socket
import subprocess
import sys
import time

import cloudpickle
import pandas as pd
import pytest
from conftest import REPO, SMALL_SITE

from coolshift.config import load_site
from coolshift.io import load_site_data
from coolshift.whatif.scenario_run import choose_policies
from coolshift.whatif.scenario import Scenario, expand_sweep
from coolshift.whatif.study import ScenarioSpec, build_tasks, compile_whatif, run_scenario_task
from coolshift.whatif.sweep import Task, result_path, run_sweep

# Toy task functions below are shipped to the workers by value (the workers cannot import tests/).
cloudpickle.register_pickle_by_value(sys.modules[__name__])

START, END = pd.Timestamp("2022-07-04T00:00Z"), pd.Timestamp("2022-07-06T00:00Z")  # 48 hourly steps


@pytest.fixture(scope="module")
def site():
    return load_site(SMALL_SITE)


@pytest.fixture(scope="module")
def data(site):
    return load_site_data(site, START, END, step_minutes=60)


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None) as cl:
        with Client(cl) as c:
            yield c


def _sweep_tasks(site, tmp_path, grid_yaml: str):
    f = tmp_path / "sweep.yaml"
    f.write_text(grid_yaml)
    specs = [ScenarioSpec(s, str(f), d) for s, d in expand_sweep(f)]
    return build_tasks(SMALL_SITE, site, specs, START, END, 60, choose_policies("static", "carbon_greedy"))


SWEEP_3X3 = f"""
name: g
base: {REPO / 'configs/whatif/virtualisation.yaml'}
grid:
  consolidation.ratio: [1.5, 2, 3]
  overrides.zones.*.inlet_max_c: [27, 29.5, 32]
"""


def test_3x3_sweep_on_a_2_worker_local_cluster(site, data, client, tmp_path):
    day = data.iloc[:24]  # one day keeps ten scenarios x two policies quick on a busy CI machine
    tasks = _sweep_tasks(site, tmp_path, SWEEP_3X3)
    assert len(tasks) == 10  # the current site + 9 grid points
    out = run_sweep(tasks, run_scenario_task, tmp_path / "res", day, client=client)
    assert out.failed == {} and sorted(out.computed) == sorted(t.name for t in tasks)
    assert out.workers == 2
    workers = {r["worker"] for r in out.records.values()}
    assert len(workers) == 2  # both worker processes took tasks
    assert all(w.split(":")[-1] != str(os.getpid()) for w in workers)
    for t in tasks:  # one JSON per scenario, written as it finished
        rec = json.loads(result_path(tmp_path / "res", t.name).read_text())
        assert rec["status"] == "ok" and rec["key"] == t.key
    rows = compile_whatif(out.records)
    a_web = {n: r["servers"] for n, r in rows.items()}
    assert a_web["g__ratio=3,inlet_max_c=27"] == 4300 - 1200 + 400
    assert a_web["g__ratio=1.5,inlet_max_c=27"] == 4300 - 1200 + 800
    # more consolidation, more embodied carbon avoided on hosts and less IT energy, at each inlet limit
    for inlet in ("27", "29.5", "32"):
        emb = [rows[f"g__ratio={r},inlet_max_c={inlet}"]["tco2_embodied_new"] for r in ("1.5", "2", "3")]
        assert emb[0] > emb[1] > emb[2]
        it = [rows[f"g__ratio={r},inlet_max_c={inlet}"]["by_policy"]["baseline"]["it_kwh"] for r in ("1.5", "2", "3")]
        assert it[0] > it[1] > it[2]


def _toy(payload, shared):
    """A pure stand-in for the simulator: cheap, deterministic, fails on request."""
    if payload.get("fail"):
        raise ValueError(f"scenario {payload['name']} asked to fail")
    return {"value": payload["x"] * shared["scale"], "pid": os.getpid()}


def test_resume_skips_finished_results_and_recomputes_changed_ones(client, tmp_path):
    res = tmp_path / "res"
    first = [Task(f"s{i}", f"k{i}", {"name": f"s{i}", "x": i}) for i in range(3)]
    out1 = run_sweep(first, _toy, res, {"scale": 10}, client=client)
    assert sorted(out1.computed) == ["s0", "s1", "s2"]
    before = {t.name: result_path(res, t.name).read_text() for t in first}
    # "interrupted" sweep: s0..s2 finished, now the full sweep runs; s1 changed (new key)
    full = [first[0], Task("s1", "k1-changed", {"name": "s1", "x": 100}), first[2]] + \
           [Task(f"s{i}", f"k{i}", {"name": f"s{i}", "x": i}) for i in range(3, 6)]
    out2 = run_sweep(full, _toy, res, {"scale": 10}, client=client)
    assert sorted(out2.skipped) == ["s0", "s2"]
    assert sorted(out2.computed) == ["s1", "s3", "s4", "s5"]
    assert result_path(res, "s0").read_text() == before["s0"]  # not rewritten
    assert result_path(res, "s2").read_text() == before["s2"]
    assert out2.ok["s1"]["value"] == 1000 and out2.ok["s5"]["value"] == 50
    # everything present: nothing is submitted at all
    out3 = run_sweep(full, _toy, res, {"scale": 10}, client=client)
    assert out3.computed == [] and len(out3.skipped) == 6


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def external_cluster(tmp_path):
    """A dask-scheduler and a dask-worker started as separate processes on 127.0.0.1."""
    port = _free_port()
    addr = f"tcp://127.0.0.1:{port}"
    env = dict(os.environ)
    sched = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                              "--port", str(port), "--no-dashboard", "--no-show"],
                             stdout=subprocess.DEVNULL, stderr=open(tmp_path / "scheduler.log", "w"), env=env)
    worker = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", addr, "--host", "127.0.0.1",
                               "--no-nanny", "--nthreads", "1", "--no-dashboard", "--name", "ext-worker"],
                              stdout=subprocess.DEVNULL, stderr=open(tmp_path / "worker.log", "w"), env=env)
    try:
        from distributed import Client

        deadline = time.time() + 90
        while True:  # wait for the worker to register with the scheduler
            try:
                with Client(addr, timeout="5s") as c:
                    if c.scheduler_info()["workers"]:
                        break
            except OSError:
                pass
            if time.time() > deadline or sched.poll() is not None or worker.poll() is not None:
                raise RuntimeError("dask cluster did not start:\n" + (tmp_path / "scheduler.log").read_text()[-2000:]
                                   + (tmp_path / "worker.log").read_text()[-2000:])
            time.sleep(0.5)
        yield addr, worker.pid
    finally:
        for p in (worker, sched):  # the worker first, while its scheduler still answers
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)


def test_sweep_against_a_real_scheduler_address_with_one_failing_scenario(site, data, external_cluster, tmp_path):
    addr, ext_pid = external_cluster
    scen = [
        Scenario(name="cons2", consolidation={"pools": ["a_web"], "ratio": 2}),
        # three pools at ratio 3 on the same hardware cannot carry the peak: this one fails
        Scenario(name="too_far", consolidation={"pools": ["a_web", "a_compute", "b_compute"], "ratio": 3}),
        Scenario(name="warm", overrides={"zones": {"*": {"inlet_max_c": 30.0}}}),
    ]
    specs = [ScenarioSpec(s, "inline", tmp_path) for s in scen]
    tasks = build_tasks(SMALL_SITE, site, specs, START, END, 60, choose_policies("static", "carbon_greedy"))
    fn = run_scenario_task
    out = run_sweep(tasks, fn, tmp_path / "res", data, scheduler=addr)
    assert out.scheduler == addr and out.workers == 1
    assert list(out.failed) == ["too_far"], out.failed
    assert "peak demand" in out.failed["too_far"] and "exceeds the site's capacity" in out.failed["too_far"]
    assert sorted(out.ok) == ["baseline", "cons2", "warm"]
    rec = json.loads(result_path(tmp_path / "res", "too_far").read_text())
    assert rec["status"] == "failed" and "ScenarioError" in rec["error"] and "Traceback" in rec["traceback"]
    workers = {out.records[n]["worker"] for n in out.ok}
    assert workers == {f"{socket.gethostname()}:{ext_pid}"}  # all ran in the external dask-worker process
    rows = compile_whatif(out.records)
    assert rows["cons2"]["it_kwh"] < rows["baseline"]["it_kwh"]  # fewer servers idling for the same work
    assert rows["too_far"]["status"] == "failed" and rows["too_far"]["tco2_operational"] is None
    # same hardware as hosts: nothing bought; the 600 retired servers still had 1 of 4 PCF years left,
    # written off and spread over that remaining year
    cons2 = rows["cons2"]
    assert cons2["status"] == "ok" and cons2["tco2_embodied_new"] == 0.0
    assert cons2["tco2_embodied_one_off"] == pytest.approx(600 * 1314.1 * 0.25 / 1000)
    assert cons2["tco2_embodied"] == pytest.approx(cons2["tco2_embodied_one_off"] * 48 / 8760)
    # rerun: the failed scenario is retried, the finished ones are kept
    out2 = run_sweep(tasks, fn, tmp_path / "res", data, scheduler=addr)
    assert out2.computed == ["too_far"] and sorted(out2.skipped) == ["baseline", "cons2", "warm"]


def test_interrupted_sweep_keeps_finished_results_and_resumes(client, tmp_path, monkeypatch):
    from coolshift.whatif import sweep as sweep_mod

    res = tmp_path / "res"
    tasks = [Task(f"t{i}", f"k{i}", {"name": f"t{i}", "x": i}) for i in range(6)]
    real_record = sweep_mod._record
    written = []

    def record_then_interrupt(task, rec, out_dir):
        out = real_record(task, rec, out_dir)
        written.append(task.name)
        if len(written) == 2:
            raise KeyboardInterrupt  # Ctrl-C in the client after two results were written
        return out

    monkeypatch.setattr(sweep_mod, "_record", record_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(tasks, _toy, res, {"scale": 1}, client=client)
    monkeypatch.setattr(sweep_mod, "_record", real_record)
    assert sorted(p.stem for p in res.glob("*.json")) == sorted(written)  # only complete files, no temporaries
    assert not list(res.glob(".*.tmp"))
    out = run_sweep(tasks, _toy, res, {"scale": 1}, client=client)
    assert sorted(out.skipped) == sorted(written)
    assert sorted(out.computed) == sorted(set(t.name for t in tasks) - set(written))
    assert {n: r["value"] for n, r in out.ok.items()} == {f"t{i}": i for i in range(6)}


def test_coolshift_scenarios_on_2_workers_share_one_plant_model_through_the_disk_cache(site, client, tmp_path):
    """The optimiser's policy on Dask workers: the grid scenarios change no plant, so the three tasks
    need one model; the first finished fit is read from disk by the worker that comes after it."""
    from coolshift.whatif.scenario import load_scenario
    from coolshift.whatif.study import load_study_data

    t0, t1 = START, START + pd.Timedelta(days=1)
    data, train = load_study_data(site, t0, t1, 15)
    w = REPO / "configs" / "whatif"
    specs = [ScenarioSpec(load_scenario(w / f"{n}.yaml"), str(w / f"{n}.yaml"), w) for n in ("grid_bpat", "grid_pjm")]
    tasks = build_tasks(SMALL_SITE, site, specs, t0, t1, 15, choose_policies(), train=train,
                        model_cache_dir=tmp_path / "plant_models")
    out = run_sweep(tasks, run_scenario_task, tmp_path / "res", data, client=client)
    assert out.failed == {}
    rows = compile_whatif(out.records)
    keys = {r["plant_model"]["key"] for r in rows.values()}
    assert len(keys) == 1 and [p.stem for p in (tmp_path / "plant_models").glob("*.pkl")] == list(keys)
    assert sum(r["plant_model"]["cached"] for r in rows.values()) >= 1
    for r in rows.values():
        assert r["headline_policy"] == "coolshift" and r["by_policy"]["coolshift"]["planner"]["fallback_plans"] == 0
    # the same plant model, the same plans: BPAT's carbon per kWh is far below PJM's
    per_kwh = {n: r["tco2_operational"] / r["facility_kwh"] for n, r in rows.items()}
    assert per_kwh["grid_bpat"] < 0.2 * per_kwh["grid_pjm"]
