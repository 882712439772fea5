"""Whole-run locks (issue 17, part 5): one `plan` per site, one `run-plan` per site and BMS device.

Real processes throughout: `coolshift plan` and `coolshift run-plan` as subprocesses, held
still with SIGSTOP at a known point (their lock file names them) or killed with SIGKILL,
against a plant model registered in a temporary MLflow store and a BACnet device on
loopback. No test-only hook in the commands.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import SMALL_SITE
from coolshift.locks import (
    EXIT_LOCKED, LockSpec, RunLocked, control_locks, device_key, hold_locks, lock_path, pid_alive, site_lock,
)
from coolshift.runs import clean_stale_staging, staged_run_dir

pytestmark = pytest.mark.timeout(180)

CLI = [sys.executable, "-c", "from coolshift.cli import main; main()"]
SITE_NAME = "sanjose_colo_2mw"
HOST = socket.gethostname()
HOLD = ("import sys, time\nfrom pathlib import Path\nfrom coolshift.locks import LockSpec, hold_locks\n"
        "with hold_locks([LockSpec(Path(sys.argv[1]), 'test')], 'test'):\n"
        "    print('held', flush=True)\n    time.sleep(120)\n")


def _env(state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(COOLSHIFT_STATE_DIR=str(state), PYTHONUNBUFFERED="1", MLFLOW_DISABLE_TELEMETRY="true", COLUMNS="200")
    return env


def _holder_pid(path: Path) -> int | None:
    try:
        line = path.read_text().split("\n", 1)[0]
        return json.loads(line)["pid"] if line else None
    except (OSError, ValueError, KeyError):
        return None


def _wait(cond, timeout: float = 60.0, what: str = "") -> None:
    t_end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > t_end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


# -- the lock helper ----------------------------------------------------------------------
def test_holder_is_written_on_taking_and_cleared_on_release(tmp_path):
    spec = LockSpec(tmp_path / "locks" / "x.lock", "coolshift test for site x")
    with hold_locks([spec], "test") as taken:
        d = json.loads(spec.path.read_text())
        assert d["pid"] == os.getpid() and d["host"] == HOST and d["command"] == "test" and d["started_at"]
        assert taken[0].recovered is None
        with pytest.raises(RunLocked) as exc:  # a second open file description conflicts, even in one process
            with hold_locks([spec], "test"):
                pass
        msg = str(exc.value)
        assert str(spec.path) in msg and f"pid {os.getpid()}" in msg and f"on host {HOST}" in msg and "since" in msg
    assert spec.path.read_text() == ""  # released cleanly: nothing to recover
    with hold_locks([spec], "test") as taken:
        assert taken[0].recovered is None


def test_lock_of_a_killed_holder_is_recovered_and_its_holder_rewritten(tmp_path):
    path = tmp_path / "x.lock"
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "held"
        with pytest.raises(RunLocked, match=f"pid {p.pid} on host"):
            with hold_locks([LockSpec(path, "test")], "test"):
                pass
    finally:
        p.kill()
        p.wait(10)
    assert _holder_pid(path) == p.pid  # the dead holder's line is still there...
    with hold_locks([LockSpec(path, "test")], "test") as taken:
        assert taken[0].recovered is not None and taken[0].recovered.pid == p.pid
        assert "recovered the lock" in taken[0].recovered_message() and f"pid {p.pid}" in taken[0].recovered_message()
        assert _holder_pid(path) == os.getpid()  # ...and is replaced by the new holder's


def test_a_lock_taken_second_is_released_when_the_first_is_held(tmp_path):
    a, b = LockSpec(tmp_path / "a.lock", "a"), LockSpec(tmp_path / "b.lock", "b")
    with hold_locks([b], "test"):
        with pytest.raises(RunLocked):
            with hold_locks([a, b], "test"):
                pass
        with hold_locks([a], "test"):  # a was given back when b was found held
            pass


def test_pid_alive_notices_a_reused_pid():
    assert pid_alive(os.getpid(), time.time())
    assert not pid_alive(os.getpid(), time.time() - 10 * 365 * 86400)  # that process started long before us
    assert not pid_alive(0)


def test_lock_names_come_from_the_site_and_the_device_not_the_files(tmp_path, monkeypatch):
    from types import SimpleNamespace as NS

    monkeypatch.setenv("COOLSHIFT_STATE_DIR", str(tmp_path / "state"))
    assert site_lock("plan", SITE_NAME).path == tmp_path / "state" / "locks" / f"plan-site-{SITE_NAME}.lock"
    monkeypatch.delenv("COOLSHIFT_STATE_DIR")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert lock_path("plan-site", "a b/c").parent == tmp_path / "xdg" / "coolshift" / "locks"
    assert lock_path("plan-site", "a b/c") != lock_path("plan-site", "a_b_c")  # no collision after escaping
    bac = device_key("bacnet", NS(device_address="LOCALHOST:47808"))
    assert bac == device_key("bacnet", NS(device_address="127.0.0.1:47808")) == "bacnet://127.0.0.1:47808"
    m1 = device_key("modbus", NS(host="10.0.0.5", port=502, device_id=1))
    assert m1 == "modbus://10.0.0.5:502/1" and m1 != device_key("modbus", NS(host="10.0.0.5", port=502, device_id=2))
    locks = control_locks(SITE_NAME, "modbus", NS(host="10.0.0.5", port=502, device_id=1))
    assert [s.path.name.split("-")[1] for s in locks] == ["site", "device"]


# -- stale staging ------------------------------------------------------------------------
def test_stale_staging_is_cleaned_and_a_set_aside_run_restored(tmp_path):
    parent = tmp_path / "runs" / SITE_NAME
    final = parent / "2022-07-15"
    with staged_run_dir(final) as d:
        (d / "plan.csv").write_text("v1")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    made = {
        ".2022-07-15.staging-abcdefgh-999999@otherhost": True,     # ours (the lock covers it): removed
        ".2022-07-15.staging-k2j4h5g6": True,                      # ours, older naming: removed
        f".2022-07-14.staging-abcdefgh-{dead.pid}@{HOST}": True,   # another date, its creator dead: removed
        f".2022-07-13.staging-abcdefgh-{os.getpid()}@{HOST}": False,  # its creator alive: kept
        ".2022-07-12.staging-abcdefgh-1@otherhost": False,         # another host's: kept
        "2022-07-11": False,                                       # a run folder
    }
    for name in made:
        (parent / name).mkdir()
        (parent / name / "plan.csv").write_text("partial")
    # killed between its two renames: 2022-07-10 was set aside and the new one never moved in
    (parent / f".2022-07-10.old-{dead.pid}@{HOST}").mkdir()
    (parent / f".2022-07-10.old-{dead.pid}@{HOST}" / "plan.csv").write_text("previous run")
    done = clean_stale_staging(final)
    left = {p.name for p in parent.iterdir()}
    for name, removed in made.items():
        assert (name not in left) == removed, name
    assert (parent / "2022-07-10" / "plan.csv").read_text() == "previous run"
    assert (final / "plan.csv").read_text() == "v1"
    assert len(done) == 4 and sum("removed the staging folder" in m for m in done) == 3


# -- coolshift plan, for real -------------------------------------------------------------
@pytest.fixture(scope="module")
def plan_workdir(small_site_model, tmp_path_factory):
    """A site working folder whose MLflow registry holds San Jose's plant model as `production`."""
    from coolshift.io import load_site_data
    from coolshift.models import registry
    from coolshift.simulations.engine import simulate
    from coolshift.control.policies import get_policy
    from coolshift.simulations.telemetry import to_telemetry

    site, model = small_site_model
    day = load_site_data(site, "2022-06-12", "2022-06-13")
    res = simulate(site, day, get_policy("explore"))
    tel = to_telemetry(res.timeseries, [z.name for z in site.zones], [p.name for p in site.server_pools])
    wd = tmp_path_factory.mktemp("workdir")
    old = os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        mlflow = registry.configure(wd)
        metrics = {"cooling_power_mape_pct": 3.0, "facility_power_mape_pct": 0.5, "inlet_temp_mae_c": 0.1, "pue_mae": 0.005}
        with mlflow.start_run():
            mv = registry.log_plant_model(model, site, "linear", tel.iloc[:50], metrics)
        assert registry.promote_if_better(site, "linear", mv.version, metrics)[0]
    finally:
        if old is not None:
            os.environ["MLFLOW_TRACKING_URI"] = old
    return wd


def _plan_args(out: Path, wd: Path) -> list[str]:
    return [*CLI, "plan", "--site", str(SMALL_SITE), "--start", "2022-07-01", "--out", str(out),
            "--forecast", "perfect", "--workdir", str(wd)]


def _start_plan(out: Path, wd: Path, state: Path) -> subprocess.Popen:
    return subprocess.Popen(_plan_args(out, wd), env=_env(state), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run_plan(out: Path, wd: Path, state: Path) -> subprocess.CompletedProcess:
    return subprocess.run(_plan_args(out, wd), env=_env(state), capture_output=True, text=True, timeout=120)


def _client(wd: Path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{wd.resolve() / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _plan_records(client) -> list:
    exp = client.get_experiment_by_name(f"coolshift-plans-{SITE_NAME}")
    return [] if exp is None else client.search_runs([exp.experiment_id])


def test_two_concurrent_plans_for_one_site_one_exits_75(plan_workdir, tmp_path):
    """The first run is stopped (SIGSTOP) once its lock names it; the second, with another
    --out folder, must refuse at its start; the first then finishes normally."""
    state = tmp_path / "state"
    lock = state / "locks" / f"plan-site-{SITE_NAME}.lock"
    first = _start_plan(tmp_path / "a", plan_workdir, state)
    try:
        _wait(lambda: _holder_pid(lock) == first.pid or first.poll() is not None, what="the first run's lock")
        first.send_signal(signal.SIGSTOP)
        t = time.monotonic()
        second = _run_plan(tmp_path / "b", plan_workdir, state)
        assert second.returncode == EXIT_LOCKED, second.stdout + second.stderr
        err = " ".join(second.stderr.split())
        assert f"coolshift plan for site {SITE_NAME} is already running" in err
        assert str(lock) in second.stderr
        assert f"pid {first.pid} on host {HOST}" in err and "since" in err and "Traceback" not in second.stderr
        assert time.monotonic() - t < 30 and not (tmp_path / "b").exists()  # refused at the start
    finally:
        first.send_signal(signal.SIGCONT)
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, out + err
    assert (tmp_path / "a" / "plan.csv").exists() and lock.read_text() == ""
    assert [r.info.status for r in _plan_records(_client(plan_workdir))].count("RUNNING") == 0


def test_a_killed_plan_is_cleaned_up_by_the_next_run(plan_workdir, tmp_path):
    """kill -9 after the run opened its MLflow record: the next run recovers the lock, removes
    the staging it left and marks its record FAILED, then plans normally."""
    state = tmp_path / "state"
    lock = state / "locks" / f"plan-site-{SITE_NAME}.lock"
    client = _client(plan_workdir)
    out = tmp_path / "runs" / "2022-07-01"
    victim = _start_plan(out, plan_workdir, state)

    def recorded() -> bool:  # the record is opened right after the locks, seconds before the plan is solved
        assert victim.poll() is None, "the victim finished before it could be killed"
        return any(r.data.tags.get("coolshift.pid") == str(victim.pid) and r.info.status == "RUNNING"
                   for r in _plan_records(client))

    try:
        _wait(recorded, what="the victim's MLflow record")
        victim.send_signal(signal.SIGSTOP)  # hold it still while we look
        assert victim.poll() is None and _holder_pid(lock) == victim.pid and not (out / "plan.csv").exists()
    finally:
        victim.kill()
        victim.communicate(timeout=30)
    assert victim.returncode == -signal.SIGKILL
    # what a run killed while writing leaves: a staging folder beside its run folder, named after it
    stage = out.parent / f".{out.name}.staging-abcdefgh-{victim.pid}@{HOST}"
    stage.mkdir(parents=True)
    (stage / "plan.csv").write_text("half-written")
    (rec,) = [r for r in _plan_records(client) if r.data.tags.get("coolshift.pid") == str(victim.pid)]

    nxt = _run_plan(out, plan_workdir, state)
    assert nxt.returncode == 0, nxt.stdout + nxt.stderr
    err = " ".join(nxt.stderr.split())
    assert f"recovered the lock {lock}" in err and f"pid {victim.pid} on host {HOST}" in err
    assert f"removed the staging folder {stage}" in err
    assert f"marked the MLflow run {rec.info.run_id}" in err and "FAILED" in err
    assert client.get_run(rec.info.run_id).info.status == "FAILED"
    assert "ended without finishing" in client.get_run(rec.info.run_id).data.tags["coolshift.failed_reason"]
    mine = [r for r in _plan_records(client) if r.data.tags.get("coolshift.pid") not in (None, str(victim.pid))]
    assert mine and all(r.info.status == "FINISHED" for r in mine)
    assert not stage.exists() and (out / "plan.csv").read_text() != "half-written"
    assert sorted(p.name for p in out.parent.iterdir()) == [f".plan-{SITE_NAME}.lock", out.name]
    assert lock.read_text() == ""


def test_a_plan_stopped_by_sigterm_closes_its_record_and_lock(plan_workdir, tmp_path):
    """systemd's stop or timeout sends SIGTERM: the run unwinds, exit 1, record KILLED, lock released."""
    state = tmp_path / "state"
    lock = state / "locks" / f"plan-site-{SITE_NAME}.lock"
    client = _client(plan_workdir)
    run = _start_plan(tmp_path / "out", plan_workdir, state)

    def mine() -> list:
        assert run.poll() is None, "the run finished before it could be stopped"
        return [r for r in _plan_records(client) if r.data.tags.get("coolshift.pid") == str(run.pid)]

    _wait(mine, what="the run's MLflow record")
    run.send_signal(signal.SIGTERM)
    out, err = run.communicate(timeout=120)
    assert run.returncode == 1, out + err
    assert "stopped by SIGTERM" in " ".join(err.split()) and "Traceback" not in err
    (rec,) = [r for r in _plan_records(client) if r.data.tags.get("coolshift.pid") == str(run.pid)]
    assert rec.info.status == "KILLED" and lock.read_text() == ""
    assert not (tmp_path / "out").exists() and not any((tmp_path).glob(".out.*"))


# -- coolshift run-plan, for real ---------------------------------------------------------
def test_two_run_plans_against_one_device_one_exits_75(tmp_path, monkeypatch):
    """The second run-plan uses another point map and audit log for the same device (spelt
    `localhost`): it must refuse at its start, before it writes anything."""
    from test_bms_cli import GOOD, _cli
    from test_bms_kit import RD, BacnetDevice, free_port, make_plan, write_point_map

    state = tmp_path / "state"
    monkeypatch.setenv("COOLSHIFT_STATE_DIR", str(state))
    port = free_port()
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    bms = write_point_map(tmp_path / "one" / "map.yaml", "bacnet", port, timeout_s=5)
    other = write_point_map(tmp_path / "two" / "map.yaml", "bacnet", port, timeout_s=5)
    other.write_text(other.read_text().replace(f"127.0.0.1:{port}", f"localhost:{port}"))
    plan = make_plan(tmp_path / "plan", GOOD)
    site_lock_file = state / "locks" / f"control-site-{SITE_NAME}.lock"
    import asyncio
    from types import SimpleNamespace as NS

    async def main():
        d = BacnetDevice(port).start()
        try:
            first = await asyncio.create_subprocess_exec(
                *CLI, "run-plan", "--plan", str(plan), "--bms", str(bms), "--apply", env=_env(state),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            t_end = time.monotonic() + 60
            while _holder_pid(site_lock_file) != first.pid:
                if first.returncode is not None or time.monotonic() > t_end:
                    out, _ = await first.communicate()
                    raise AssertionError(f"the first run-plan never took its lock: {out.decode()}")
                await asyncio.sleep(0.02)
            while not all(d.slot(n, 10) is not None for n in RD):  # the first run's first step
                assert time.monotonic() < t_end, "the first run-plan never wrote its first step"
                await asyncio.sleep(0.05)
            writes = d.writes
            code, text = await asyncio.to_thread(_cli, "run-plan", "--plan", str(plan), "--bms", str(other), "--apply")
            assert code == EXIT_LOCKED, text
            flat = " ".join(text.split())
            assert "is already running" in flat and f"pid {first.pid} on host {HOST}" in flat, flat
            assert d.writes == writes  # refused before it wrote anything
            # a one-shot push --apply to the same device is refused while the loop runs; a dry run is not
            code, text = await asyncio.to_thread(_cli, "push", "--plan", str(plan), "--bms", str(other), "--apply")
            assert code == EXIT_LOCKED and "is already running" in " ".join(text.split()), text
            assert d.writes == writes
            code, text = await asyncio.to_thread(_cli, "push", "--plan", str(plan), "--bms", str(other))
            assert code != EXIT_LOCKED, text
            # the device lock on its own: another site's loop on the same device is refused too
            with pytest.raises(RunLocked, match=f"BMS device bacnet://127.0.0.1:{port} is already running.*pid {first.pid}"):
                with hold_locks(control_locks("elsewhere", "bacnet", NS(device_address=f"LocalHost:{port}")), "test"):
                    pass
            first.send_signal(signal.SIGTERM)
            out, _ = await asyncio.wait_for(first.communicate(), 60)
            assert first.returncode == 0, out.decode()
            for name, rd in RD.items():  # the first one handed everything back
                assert d.slot(name, 10) is None and d.value(name) == pytest.approx(rd)
        finally:
            d.close()

    asyncio.run(main())
    with hold_locks(control_locks("elsewhere", "bacnet", NS(device_address=f"127.0.0.1:{port}")), "test"):
        pass  # both control locks were released
