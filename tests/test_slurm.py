"""Batch jobs and nodes through Slurm (issue 19 item 2): the planner, then a real cluster.

The pure tests check :func:`plan_actions` (budget, deadlines beat the plan, busy nodes
never powered down, the pool minimum) and the map and parser errors. The others start a
real Slurm from Debian's packages on 127.0.0.1 (fixture ``cluster``): ``munged`` with a
key made in a temporary folder, ``slurmctld`` and one ``slurmd -N`` per node (three
nodes, one CPU each, each slurmd on its own loopback port), power saving with a
SuspendProgram that stops the node's slurmd and a ResumeProgram that starts it again.
They skip, saying why, when Slurm is not installed or the tests do not run as root
(``make test`` installs it when run as root).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from coolshift.actuators.slurm import (ClassSpec, Job, Node, PoolSpec, SlurmMap, SlurmMapError, load_slurm_map,
                                       parse_scontrol_records, plan_actions)
from coolshift.bms.audit import read_audit, verify_audit

COOLSHIFT = [str(Path(sys.executable).parent / "coolshift")]
NODES = ("cs1", "cs2", "cs3")
SLURM_TOOLS = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "squeue", "sinfo", "scancel")


def _tool(name: str) -> str | None:
    """A Slurm/MUNGE program on PATH, or in the sbin folders a non-login PATH may lack."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/local/sbin")


def _why_no_slurm() -> str | None:
    missing = [t for t in SLURM_TOOLS if _tool(t) is None]
    if missing:
        return (f"Slurm/MUNGE not installed ({', '.join(missing)} not on PATH): `make test` installs "
                "slurmctld slurmd slurm-client munge when it runs as root")
    if os.geteuid() != 0:
        return "slurmd must run as root to start jobs: run the Slurm tests as root"
    return None


needs_slurm = pytest.mark.skipif(_why_no_slurm() is not None, reason=_why_no_slurm() or "")


# ------------------------------------------------------------------ pure planning
def _smap(tmp_path: Path, pools=(), **kw) -> SlurmMap:
    return SlurmMap(name="t", path=tmp_path / "m.yaml", cluster="c", conf=tmp_path / "slurm.conf", bin_dir=None,
                    timeout_s=5, audit_db=tmp_path / "a.sqlite",
                    classes=(ClassSpec("batch", ("batch",), 1.0, 24.0, 60.0),), pools=tuple(pools),
                    deadline_margin_min=kw.get("margin", 0.0), resume_lead_min=kw.get("lead", 0.0))


def _frame(t0: pd.Timestamp, release: list[float], active: list[float] | None = None, minutes: int = 15) -> pd.DataFrame:
    idx = pd.date_range(t0, periods=len(release), freq=f"{minutes}min", name="timestamp")
    f = pd.DataFrame({"release_units_per_h__batch": release}, index=idx)
    if active is not None:
        f["active_servers__compute"] = active
    return f


T0 = pd.Timestamp("2026-12-07T10:00:00Z")


def _job(i, **kw) -> Job:
    base = dict(job_id=i, partition="batch", state="PENDING", time_limit_min=60.0, cpus=1,
                submit=T0 - pd.Timedelta(hours=1), deadline=T0 + pd.Timedelta(hours=10))
    base.update(kw)
    return Job(**base)


def test_budget_releases_earliest_deadline_first_and_holds_the_rest(tmp_path):
    # 4 units/h for 15 min = 1 unit: job 2 (earliest deadline, 1 unit) goes, the others wait
    jobs = [_job(1, deadline=T0 + pd.Timedelta(hours=9)), _job(2, deadline=T0 + pd.Timedelta(hours=3)),
            _job(3, reason="JobHeldAdmin", priority=0, comment="coolshift")]
    dec = plan_actions(_frame(T0, [4.0, 0.0]), T0, pd.Timedelta(minutes=15), T0 + pd.Timedelta(minutes=1),
                       jobs, [], _smap(tmp_path))
    kinds = {(a.kind, a.target) for a in dec.actions}
    assert kinds == {("hold", "1")}  # 2 is pending and released by simply not holding it; 3 stays held
    # with no budget, the unheld jobs are held; another user's hold is left alone
    jobs.append(_job(4, reason="JobHeldUser", priority=0))
    dec = plan_actions(_frame(T0, [0.0, 0.0]), T0, pd.Timedelta(minutes=15), T0, jobs, [], _smap(tmp_path))
    assert {(a.kind, a.target) for a in dec.actions} == {("hold", "1"), ("hold", "2")}
    assert any("held by someone else" in n and "4" in n for n in dec.notes)
    # the budget used earlier in the same step counts
    dec = plan_actions(_frame(T0, [4.0, 0.0]), T0, pd.Timedelta(minutes=15), T0, jobs, [], _smap(tmp_path),
                       released_units={"batch": 1.0})
    assert ("hold", "2") in {(a.kind, a.target) for a in dec.actions}


def test_deadline_beats_the_plan(tmp_path):
    # the plan releases nothing, but holding job 5 one more step would miss its deadline
    now = T0 + pd.Timedelta(minutes=2)
    jobs = [_job(5, reason="JobHeldAdmin", priority=0, deadline=T0 + pd.Timedelta(minutes=70)),
            _job(6, reason="JobHeldAdmin", priority=0, deadline=T0 + pd.Timedelta(minutes=80))]
    dec = plan_actions(_frame(T0, [0.0, 0.0]), T0, pd.Timedelta(minutes=15), now, jobs, [], _smap(tmp_path),
                       our_holds=[5, 6])
    assert [(a.kind, a.target) for a in dec.actions] == [("release", "5")]
    assert "deadlines beat the plan" in dec.actions[0].why
    # job 6 can still wait: latest start 10:20 is after the next step (10:15)


def test_nodes_follow_active_servers_never_busy_never_below_min(tmp_path):
    pool = PoolSpec("compute", ("batch",), servers_per_node=2.0, min_nodes=2)
    nodes = [Node(f"n{i}", "idle", partitions=("batch",)) for i in range(1, 6)]
    nodes[4] = Node("n5", "allocated", partitions=("batch",), alloc_cpus=1)
    sm = _smap(tmp_path, pools=[pool])
    # plan: 2 servers -> 1 node; min 2; n5 busy -> keep n5 and one more; power down 3 idle ones
    dec = plan_actions(_frame(T0, [0.0], [2.0]), T0, pd.Timedelta(minutes=15), T0, [], nodes, sm)
    down = [a.target for a in dec.actions if a.kind == "power_down"]
    assert len(down) == 3 and "n5" not in down
    # plan: 10 servers -> 5 nodes; two powered down by us, one drained by us: all come back
    nodes2 = [Node("n1", "idle", frozenset({"POWERED_DOWN"}), "coolshift: x", ("batch",)),
              Node("n2", "idle", frozenset({"DRAIN"}), "coolshift: x", ("batch",)),
              Node("n3", "idle", frozenset({"POWERED_DOWN"}), "", ("batch",)),
              Node("n4", "idle", partitions=("batch",)), Node("n5", "idle", partitions=("batch",))]
    dec = plan_actions(_frame(T0, [0.0], [10.0]), T0, pd.Timedelta(minutes=15), T0, [], nodes2, sm)
    assert {(a.kind, a.target) for a in dec.actions} == {("resume", "n2"), ("power_up", "n1"), ("power_up", "n3")}
    # resume lead: the next step's need counts now
    dec = plan_actions(_frame(T0, [0.0, 0.0], [2.0, 10.0]), T0, pd.Timedelta(minutes=15), T0 + pd.Timedelta(minutes=5),
                       [], nodes2, _smap(tmp_path, pools=[pool], lead=15))
    assert len([a for a in dec.actions if a.kind in ("power_up", "resume")]) == 3


def test_map_errors_name_file_and_key(tmp_path):
    m = tmp_path / "m.yaml"
    m.write_text("slurm: {cluster: c, conf: /x}\nclasses: {batch: {partitions: [batch], units: 2}}\n")
    with pytest.raises(SlurmMapError, match=r"m.yaml: classes.batch: unknown key\(s\) units"):
        load_slurm_map(m)
    m.write_text("slurm: {cluster: c, conf: '${NO_SUCH_VAR_X}'}\nclasses: {batch: {partitions: [batch]}}\n")
    with pytest.raises(SlurmMapError, match="slurm.conf: environment variable NO_SUCH_VAR_X"):
        load_slurm_map(m, environ={})
    m.write_text("slurm: {cluster: c}\nclasses: {batch: {partitions: [batch]}}\npools: {p: {partitions: [batch], min_nodes: -1}}\n")
    with pytest.raises(SlurmMapError, match="pools.p.min_nodes"):
        load_slurm_map(m)
    m.write_text("slurm: {cluster: c, conf: /nonexistent/slurm.conf}\nclasses: {batch: {partitions: [batch]}}\n")
    with pytest.raises(SlurmMapError, match="m.yaml: slurm.conf: /nonexistent/slurm.conf not found"):
        load_slurm_map(m)


def test_scontrol_oneliner_parser_keeps_values_with_spaces():
    rec = parse_scontrol_records("JobId=7 JobName=wrap Priority=0 Reason=JobHeldAdmin Comment=coolshift deadline=x "
                                 "JobState=PENDING Partition=batch TimeLimit=00:01:00\n")[0]
    assert rec["JobId"] == "7" and rec["Comment"] == "coolshift deadline=x" and rec["JobState"] == "PENDING"
    node = parse_scontrol_records("NodeName=cs1 Arch=x86_64 State=IDLE+POWERED_DOWN Reason=coolshift: plan 1 [root@h]\n")[0]
    assert node["State"] == "IDLE+POWERED_DOWN" and node["Reason"].startswith("coolshift: plan 1")


# ------------------------------------------------------------------ a real cluster
def _free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class Cluster:
    """A running local Slurm: its folder, slurm.conf and helpers to drive and watch it."""

    def __init__(self, root: Path):
        self.root = root
        self.conf = root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.procs: list[subprocess.Popen] = []

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cp = subprocess.run(list(args), capture_output=True, text=True, env=self.env, timeout=30)
        if check and cp.returncode != 0:
            raise AssertionError(f"{' '.join(args)}: {cp.returncode} {cp.stderr}")
        return cp

    def submit(self, *opts: str, wrap: str = "sleep 1") -> int:
        out = self.run("sbatch", "--parsable", "-p", "batch", "-o", str(self.root / "out-%j.txt"), *opts, "--wrap", wrap)
        return int(out.stdout.strip().split(";")[0])

    def job(self, jid: int) -> dict[str, str]:
        return parse_scontrol_records(self.run("scontrol", "-o", "show", "job", str(jid)).stdout)[0]

    def nodes(self) -> dict[str, dict]:
        doc = json.loads(self.run("sinfo", "--json").stdout)
        return {n["name"]: n for n in doc["nodes"]}

    def wait(self, what, timeout: float, desc: str):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            v = what()
            if v:
                return v
            time.sleep(0.3)
        raise AssertionError(f"timed out after {timeout} s waiting for {desc}; slurmctld log tail:\n"
                             + "\n".join((self.root / "log" / "slurmctld.log").read_text().splitlines()[-15:]))

    def all_idle(self) -> bool:
        return all(n["state"] == "idle" and not set(n["state_flags"]) for n in self.nodes().values())

    def power_log(self) -> list[str]:
        p = self.root / "power.log"
        return p.read_text().split("\n") if p.exists() else []


def _write_cluster(root: Path) -> None:
    (root / "log").mkdir()
    (root / "state").mkdir()
    for n in NODES:
        (root / "spool" / n).mkdir(parents=True)
    key = root / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    ctld, *dports = _free_ports(1 + len(NODES))
    d = root
    scontrol, slurmd = _tool("scontrol"), _tool("slurmd")
    (d / "suspend.sh").write_text(f"""#!/bin/sh
# SuspendProgram: "power off" a node = stop its slurmd
export SLURM_CONF={d}/slurm.conf
for n in $({scontrol} show hostnames "$1"); do
  echo "$(date -u +%FT%TZ) suspend $n" >> {d}/power.log
  [ -f {d}/slurmd-$n.pid ] && kill $(cat {d}/slurmd-$n.pid) 2>/dev/null
done
exit 0
""")
    (d / "resume.sh").write_text(f"""#!/bin/sh
# ResumeProgram: "power on" a node = start its slurmd (-b: report a fresh boot; its stdio
# detached, or slurmscriptd waits on the open pipe and the node never finishes booting)
export SLURM_CONF={d}/slurm.conf
for n in $({scontrol} show hostnames "$1"); do
  echo "$(date -u +%FT%TZ) resume $n" >> {d}/power.log
  {slurmd} -b -f {d}/slurm.conf -N $n </dev/null >/dev/null 2>&1
done
exit 0
""")
    for s in ("suspend.sh", "resume.sh"):
        (d / s).chmod(0o755)
    nodes = "\n".join(f"NodeName={n} NodeAddr=127.0.0.1 NodeHostname=localhost Port={p} CPUs=1 RealMemory=100 State=UNKNOWN"
                      for n, p in zip(NODES, dports))
    (d / "slurm.conf").write_text(f"""ClusterName=cstest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={ctld}
CommunicationParameters=NoInAddrAny,NoCtldInAddrAny
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={d}/munge.sock
CredType=cred/munge
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool/%n
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd-%n.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=1
ReturnToService=2
SlurmctldTimeout=10
SlurmdTimeout=10
MessageTimeout=5
MinJobAge=600
SuspendProgram={d}/suspend.sh
ResumeProgram={d}/resume.sh
SuspendTime=3600
SuspendTimeout=2
ResumeTimeout=30
SuspendRate=0
ResumeRate=0
{nodes}
PartitionName=batch Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """munged, slurmctld and three slurmd on 127.0.0.1, all in a temporary folder; stopped after the module."""
    why = _why_no_slurm()
    if why:
        pytest.skip(why)
    root = tmp_path_factory.mktemp("slurm")
    _write_cluster(root)
    c = Cluster(root)
    t0 = time.monotonic()
    munge = subprocess.Popen([_tool("munged"), "-F", "--force", f"--key-file={root}/munge.key", f"--socket={root}/munge.sock",
                              f"--pid-file={root}/munged.pid", f"--log-file={root}/munged.log",
                              f"--seed-file={root}/munged.seed"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    c.procs.append(munge)
    try:
        c.wait(lambda: (root / "munge.sock").exists(), 10, "munged's socket")
        c.procs.append(subprocess.Popen([_tool("slurmctld"), "-D", "-i", "-f", str(c.conf)], env=c.env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))
        c.wait(lambda: c.run("scontrol", "ping", check=False).returncode == 0, 20, "slurmctld to answer")
        for n in NODES:
            subprocess.run([_tool("slurmd"), "-f", str(c.conf), "-N", n], env=c.env, check=True, timeout=20,
                           stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        c.wait(c.all_idle, 30, "three idle nodes")
        c.startup_s = time.monotonic() - t0
        yield c
    finally:
        for n in NODES:  # slurmd daemonises (and resume.sh restarts it): stop each by its pid file
            pid = root / f"slurmd-{n}.pid"
            if pid.exists():
                try:
                    os.kill(int(pid.read_text().strip()), signal.SIGTERM)
                except (ValueError, ProcessLookupError):
                    pass
        for p in reversed(c.procs):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("COOLSHIFT_STATE_DIR", str(tmp_path / "state"))
    return {**os.environ, "COOLSHIFT_STATE_DIR": str(tmp_path / "state"), "COLUMNS": "160"}


def _map(tmp_path: Path, c: Cluster, pools: bool = False, bin_dir: Path | None = None, cluster: str = "cstest",
         margin: float = 0.1) -> Path:
    m = tmp_path / "slurm.yaml"
    text = (f"name: t\naudit_db: {tmp_path}/audit.sqlite\ndeadline_margin_min: {margin}\n"
            f"slurm: {{cluster: {cluster}, conf: '{c.conf}', timeout_s: 10"
            + (f", bin_dir: '{bin_dir}'" if bin_dir else "") + "}\n"
            "classes: {batch: {partitions: [batch], units_per_cpu_hour: 1.0, default_deadline_h: 12}}\n")
    if pools:
        text += "pools: {compute: {partitions: [batch], servers_per_node: 1, min_nodes: 1}}\n"
    m.write_text(text)
    return m


def _plan(tmp_path: Path, t0: pd.Timestamp, step_s: float, release: list[float], active: list[float] | None = None,
          extra: dict | None = None) -> Path:
    out = tmp_path / "run"
    out.mkdir(exist_ok=True)
    idx = [t0 + pd.Timedelta(seconds=step_s * i) for i in range(len(release))]
    cols = {"timestamp": [t.isoformat() for t in idx], "supply_setpoint_c__hall_a": 20.0,
            "release_units_per_h__batch": release}
    if active is not None:
        cols["active_servers__compute"] = active
    cols.update(extra or {})
    pd.DataFrame(cols).to_csv(out / "plan.csv", index=False)
    (out / "summary.json").write_text(json.dumps({"run_id": "slurm-test", "site": "s",
                                                  "created_at": pd.Timestamp.now(tz="UTC").isoformat()}))
    return out


def _cs(env, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*COOLSHIFT, *args], capture_output=True, text=True, env=env, timeout=timeout)


def _until(t: pd.Timestamp) -> None:
    dt = (t - pd.Timestamp.now(tz="UTC")).total_seconds()
    if dt > 0:
        time.sleep(dt + 0.2)


@needs_slurm
def test_held_job_released_at_the_planned_time_and_done_before_its_deadline(cluster, tmp_path, env):
    c = cluster
    # job A: submitted held for Coolshift, deadline in 5 min, 1 min limit (1/60 unit);
    # job B: pending (begins in an hour), 30 min limit, deadline in 3 h: Coolshift holds it.
    a = c.submit("--hold", "--comment", "coolshift", "--deadline", "now+5minutes", "-t", "1", wrap="sleep 1")
    b = c.submit("--begin", "now+1hour", "--deadline", "now+3hours", "-t", "30")
    try:
        t0 = pd.Timestamp.now(tz="UTC").floor("s") - pd.Timedelta(seconds=1)
        step = 15.0
        run = _plan(tmp_path, t0, step, [0.0, 2.4, 0.0, 0.0])  # step 1: 2.4 units/h x 15 s = 0.01 unit
        m = _map(tmp_path, c)
        dry = _cs(env, "jobs", "--plan", str(run), "--slurm", str(m))
        assert dry.returncode == 0, dry.stderr
        assert "dry run: 1 action(s)" in dry.stdout and "hold" in dry.stdout and str(b) in dry.stdout
        assert c.job(b)["JobState"] == "PENDING" and c.job(b)["Priority"] != "0"  # a dry run changes nothing
        r0 = _cs(env, "jobs", "--plan", str(run), "--slurm", str(m), "--apply")
        assert r0.returncode == 0, r0.stdout + r0.stderr
        assert c.job(b)["Reason"] in ("JobHeldAdmin", "JobHeldUser") and c.job(a)["JobState"] == "PENDING"
        time.sleep(2)
        assert c.job(a)["JobState"] == "PENDING", "job A must wait for the plan's release"
        t1 = t0 + pd.Timedelta(seconds=step)
        _until(t1)
        r1 = _cs(env, "jobs", "--plan", str(run), "--slurm", str(m), "--apply")
        released_at = pd.Timestamp.now(tz="UTC")
        assert r1.returncode == 0, r1.stdout + r1.stderr
        assert f"release {a}: done" in r1.stdout
        c.wait(lambda: c.job(a)["JobState"] == "COMPLETED", 30, f"job {a} to complete")
        ja = c.job(a)
        start, end, deadline = (pd.Timestamp(ja[k]) for k in ("StartTime", "EndTime", "Deadline"))
        assert t1.tz_localize(None) - pd.Timedelta(seconds=1) <= start <= released_at.tz_localize(None) + pd.Timedelta(seconds=5)
        assert end < deadline
        assert c.job(b)["Reason"] in ("JobHeldAdmin", "JobHeldUser"), "B exceeds the step's budget: still held"
        # the audit log: each action's intent before its result, the chain intact
        log = read_audit(tmp_path / "audit.sqlite")
        rel = log[log["point"] == f"job/{a}"]
        assert list(rel["result"]) == ["intent", "ok"] and (rel["action"] == "relinquish").all()
        assert list(log[log["point"] == f"job/{b}"]["result"]) == ["intent", "ok"]
        assert verify_audit(tmp_path / "audit.sqlite").ok
        # a second run in the same step releases nothing more (the step's budget is used)
        r2 = _cs(env, "jobs", "--plan", str(run), "--slurm", str(m))
        assert pd.Timestamp.now(tz="UTC") < t1 + pd.Timedelta(seconds=step), "too slow: the step ended"
        assert "dry run: 0 action(s)" in r2.stdout, r2.stdout
        out = _cs(env, "jobs-release", "--slurm", str(m))
        assert out.returncode == 0 and f"released job {b}" in out.stdout
        assert c.job(b)["Reason"] not in ("JobHeldAdmin", "JobHeldUser")
    finally:
        c.run("scancel", str(a), str(b), check=False)


@needs_slurm
def test_deadline_beats_a_plan_that_releases_nothing(cluster, tmp_path, env):
    c = cluster
    j = c.submit("--hold", "--comment", "coolshift", "--deadline", "now+100seconds", "-t", "1", wrap="sleep 1")
    try:
        t0 = pd.Timestamp.now(tz="UTC").floor("s") - pd.Timedelta(seconds=1)
        run = _plan(tmp_path, t0, 60.0, [0.0, 0.0, 0.0])
        r = _cs(env, "jobs", "--plan", str(run), "--slurm", str(_map(tmp_path, c)), "--apply")
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"release {j}: done" in r.stdout and "deadlines beat the plan" in r.stdout
        c.wait(lambda: c.job(j)["JobState"] == "COMPLETED", 30, f"job {j} to complete")
        assert pd.Timestamp(c.job(j)["EndTime"]) < pd.Timestamp(c.job(j)["Deadline"])
    finally:
        c.run("scancel", str(j), check=False)


@needs_slurm
def test_nodes_powered_down_and_resumed_never_one_with_work(cluster, tmp_path, env):
    c = cluster
    busy = c.submit("-w", "cs3", "-t", "2", wrap="sleep 120")
    try:
        c.wait(lambda: c.job(busy)["JobState"] == "RUNNING", 20, "the busy job to run on cs3")
        t0 = pd.Timestamp.now(tz="UTC").floor("s") - pd.Timedelta(seconds=1)
        step = 15.0
        run = _plan(tmp_path, t0, step, [0.0, 0.0, 0.0], active=[1.0, 3.0, 3.0])
        m = _map(tmp_path, c, pools=True)
        pids = {n: int((c.root / f"slurmd-{n}.pid").read_text()) for n in ("cs1", "cs2")}
        r = _cs(env, "jobs", "--plan", str(run), "--slurm", str(m), "--apply")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "power_down cs2: done" in r.stdout and "power_down cs1: done" in r.stdout and "cs3: done" not in r.stdout
        c.wait(lambda: all("POWERED_DOWN" in c.nodes()[n]["state_flags"] for n in ("cs1", "cs2")), 20,
               "cs1 and cs2 to power down")
        assert {f"suspend {n}" for n in ("cs1", "cs2")} <= {l.split(" ", 1)[-1] for l in c.power_log()}
        assert not any("cs3" in l for l in c.power_log()), "the node with work on it was touched"
        for n, pid in pids.items():  # its slurmd is really gone ("powered off")
            c.wait(lambda: not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z",
                   10, f"{n}'s slurmd to stop")
        _until(t0 + pd.Timedelta(seconds=step))
        r = _cs(env, "jobs", "--plan", str(run), "--slurm", str(m), "--apply")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "power_up cs1: done" in r.stdout and "power_up cs2: done" in r.stdout
        c.wait(lambda: all(c.nodes()[n]["state"] == "idle" and not c.nodes()[n]["state_flags"] for n in ("cs1", "cs2")),
               30, "cs1 and cs2 to come back")
        assert {f"resume {n}" for n in ("cs1", "cs2")} <= {l.split(" ", 1)[-1] for l in c.power_log()}
        j = c.submit("-w", "cs2", "-t", "1", wrap="sleep 1")  # a resumed node runs work again
        c.wait(lambda: c.job(j)["JobState"] == "COMPLETED", 30, f"job {j} to run on the resumed cs2")
    finally:
        c.run("scancel", str(busy), check=False)
        c.wait(c.all_idle, 40, "every node idle again")


def _wrapped_tools(tmp_path: Path, slow_hold_s: float = 0.0, fail_hold: int | None = None) -> Path:
    """A bin folder (the map's slurm.bin_dir) whose scontrol is slow or fails on one job's hold."""
    b = tmp_path / "bin"
    b.mkdir()
    for t in ("squeue", "sinfo"):
        (b / t).symlink_to(_tool(t))
    real = _tool("scontrol")
    fail = f'[ "$1" = hold ] && [ "$2" = "{fail_hold}" ] && {{ echo "scontrol: error: injected failure" >&2; exit 1; }}' \
        if fail_hold else ""
    (b / "scontrol").write_text(f"""#!/bin/sh
if [ "$1" = hold ]; then echo "$2" >> {tmp_path}/holds.txt; sleep {slow_hold_s}; fi
{fail}
exec {real} "$@"
""")
    (b / "scontrol").chmod(0o755)
    return b


@needs_slurm
def test_a_failed_step_releases_the_jobs_it_held(cluster, tmp_path, env):
    c = cluster
    jobs = [c.submit("--begin", "now+1hour", "-t", "5") for _ in range(4)]
    try:
        t0 = pd.Timestamp.now(tz="UTC").floor("s") - pd.Timedelta(seconds=1)
        run = _plan(tmp_path, t0, 60.0, [0.0, 0.0])
        m = _map(tmp_path, c, bin_dir=_wrapped_tools(tmp_path, fail_hold=jobs[2]))
        r = _cs(env, "jobs", "--plan", str(run), "--slurm", str(m), "--apply")
        assert r.returncode == 1, r.stdout + r.stderr
        assert f"FAILED hold {jobs[2]}" in r.stderr and "injected failure" in r.stderr
        assert f"rolled back: release {jobs[1]}" in r.stderr and f"rolled back: release {jobs[0]}" in r.stderr
        for j in jobs:  # known state: nothing of ours is held
            assert c.job(j)["Reason"] not in ("JobHeldAdmin", "JobHeldUser"), c.job(j)
        log = read_audit(tmp_path / "audit.sqlite")
        assert "restore" in set(log["action"]) and verify_audit(tmp_path / "audit.sqlite").ok
    finally:
        c.run("scancel", *map(str, jobs), check=False)


@needs_slurm
def test_adapter_killed_mid_step_then_jobs_release_leaves_a_known_state(cluster, tmp_path, env):
    c = cluster
    jobs = [c.submit("--begin", "now+1hour", "-t", "5") for _ in range(6)]
    try:
        t0 = pd.Timestamp.now(tz="UTC").floor("s") - pd.Timedelta(seconds=1)
        run = _plan(tmp_path, t0, 120.0, [0.0, 0.0], active=[1.0, 1.0])
        m = _map(tmp_path, c, pools=True, bin_dir=_wrapped_tools(tmp_path, slow_hold_s=0.4))
        p = subprocess.Popen([*COOLSHIFT, "jobs", "--plan", str(run), "--slurm", str(m), "--apply"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        holds = tmp_path / "holds.txt"
        c.wait(lambda: holds.exists() and len(holds.read_text().split()) >= 3, 60, "three holds to be sent")
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        held = [j for j in jobs if c.job(j)["Reason"] in ("JobHeldAdmin", "JobHeldUser")]
        assert 2 <= len(held) < len(jobs), "killed mid-step: some holds done, some not"
        log = read_audit(tmp_path / "audit.sqlite")
        assert verify_audit(tmp_path / "audit.sqlite").ok
        intents = log[(log["action"] == "write") & (log["result"] == "intent")]["point"].tolist()
        sent = [f"job/{j}" for j in holds.read_text().split()]
        assert intents == sent, "every hold sent was logged (intent) before it left the process"
        r = _cs(env, "jobs-release", "--slurm", str(m))
        assert r.returncode == 0, r.stdout + r.stderr
        for j in held:
            assert f"released job {j}" in r.stdout
        for j in jobs:
            assert c.job(j)["Reason"] not in ("JobHeldAdmin", "JobHeldUser")
        c.wait(c.all_idle, 30, "every node up and idle")
        # and once more: nothing left to hand back
        assert "nothing to hand back" in _cs(env, "jobs-release", "--slurm", str(m)).stdout
    finally:
        c.run("scancel", *map(str, jobs), check=False)


@needs_slurm
def test_hosts_and_credentials_come_from_the_map_never_the_plan(cluster, tmp_path, env):
    c = cluster
    t0 = pd.Timestamp.now(tz="UTC").floor("s") - pd.Timedelta(seconds=1)
    # the plan names another controller and configuration, the environment another slurm.conf
    run = _plan(tmp_path, t0, 60.0, [0.0, 0.0], extra={"slurm_conf": "/nonexistent/slurm.conf",
                                                         "SlurmctldHost": "10.9.9.9", "munge_socket": "/tmp/evil"})
    s = json.loads((run / "summary.json").read_text())
    s.update({"slurm": {"conf": "/nonexistent/slurm.conf", "cluster": "evil"}, "slurm_conf": "/nonexistent"})
    (run / "summary.json").write_text(json.dumps(s))
    bad_env = {**env, "SLURM_CONF": "/nonexistent/slurm.conf"}
    r = _cs(bad_env, "jobs", "--plan", str(run), "--slurm", str(_map(tmp_path, c)))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "cluster cstest" in r.stdout and "nonexistent" not in r.stdout + r.stderr
    # a map naming another cluster than its slurm.conf reaches: exit 2 naming the key
    r = _cs(env, "jobs", "--plan", str(run), "--slurm", str(_map(tmp_path, c, cluster="other")))
    assert r.returncode == 2 and "slurm.cluster" in r.stderr and "cstest" in r.stderr and "Traceback" not in r.stderr
    # a plan without the map's columns: exit 2 naming file and column
    pd.read_csv(run / "plan.csv").drop(columns=["release_units_per_h__batch"]).to_csv(run / "plan.csv", index=False)
    r = _cs(env, "jobs", "--plan", str(run), "--slurm", str(_map(tmp_path, c)))
    assert r.returncode == 2 and "plan.csv: no column release_units_per_h__batch" in r.stderr


@needs_slurm
def test_a_second_jobs_apply_on_one_cluster_exits_75(cluster, tmp_path, env):
    """While one `jobs --apply` acts on a cluster (its lock held), another is refused at once."""
    from coolshift.actuators.slurm import load_slurm_map
    from coolshift.locks import LockSpec, hold_locks, lock_path

    c = cluster
    m = _map(tmp_path, c)
    t0 = pd.Timestamp.now(tz="UTC").floor("s") - pd.Timedelta(seconds=1)
    run = _plan(tmp_path, t0, 60.0, [0.0, 0.0, 0.0])
    key = load_slurm_map(m).device
    with hold_locks([LockSpec(lock_path("actuator-slurm", key), "held by the test")], "test"):  # env's state dir
        r = _cs(env, "jobs", "--plan", str(run), "--slurm", str(m), "--apply")
    assert r.returncode == 75, r.stdout + r.stderr
    assert "is already running" in " ".join((r.stdout + r.stderr).split())
    r = _cs(env, "jobs", "--plan", str(run), "--slurm", str(m), "--apply")  # free again
    assert r.returncode == 0, r.stdout + r.stderr
