"""Host power through Redfish (issue 19, item 1) against the sushy-tools emulator on 127.0.0.1.

Each test starts its own ``sushy-emulator`` (fake driver, HTTP basic auth from an htpasswd
file, state in tmp_path) with the systems it needs. The fake driver applies a power change
1-11 s after the request; the tests shorten that to 0-2 s (``random.randint`` patched in the
emulator process, nothing else) to stay under 90 s; benchmarks/bench_actuators.py runs it
unmodified. The CLI runs in process (typer's CliRunner) except where a test kills it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import requests
import yaml
from typer.testing import CliRunner

from coolshift.actuators.inventory import (Credentials, load_actuator_map, load_inventory_spec, load_work,
                                           resolve_inventory)
from coolshift.actuators.redfish import (HostState, RedfishClient, enact, host_actions, ours_off,
                                         read_host_plan)
from coolshift.bms.audit import AuditLog, read_audit, verify_audit
from coolshift.cli import app
from coolshift.config import ConfigError, load_site

REPO = Path(__file__).resolve().parents[1]
SITE = REPO / "configs" / "sites" / "sanjose_colo_2mw.yaml"
COOLSHIFT = Path(sys.executable).parent / "coolshift"
EMULATOR = Path(sys.executable).parent / "sushy-emulator"
USER, PASSWORD = "coolshift-test", "not-a-real-secret"
PREFIX = {"a_web": "a-web", "a_compute": "a-compute", "b_storage": "b-storage", "b_compute": "b-compute"}


@pytest.fixture(autouse=True)
def env(tmp_path, monkeypatch):
    """Own state folder; credentials in the environment, as an operator would set them."""
    monkeypatch.setenv("COOLSHIFT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("COOLSHIFT_REDFISH_USER", USER)
    monkeypatch.setenv("COOLSHIFT_REDFISH_PASSWORD", PASSWORD)
    monkeypatch.delenv("COOLSHIFT_REDFISH_TOKEN", raising=False)
    for k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def host_ids(pool: str, n: int) -> list[str]:
    return [f"{PREFIX[pool]}-{i:03d}" for i in range(n)]


class Emulator:
    """sushy-emulator with the fake driver on 127.0.0.1, in a subprocess."""

    def __init__(self, tmp: Path, systems: dict[str, str], max_delay_s: int = 2):
        import bcrypt

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        auth = tmp / "htpasswd"
        # bcrypt cost 4 (its minimum): the emulator checks the password on every request
        auth.write_text(f"{USER}:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()}\n")
        conf = tmp / "emulator.conf"
        fake = [{"uuid": h, "name": h, "power_state": st} for h, st in systems.items()]
        conf.write_text(
            f"SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'\nSUSHY_EMULATOR_LISTEN_PORT = {self.port}\n"
            f"SUSHY_EMULATOR_FAKE_DRIVER = True\nSUSHY_EMULATOR_STATE_DIR = {str(tmp / 'emulator_state')!r}\n"
            f"SUSHY_EMULATOR_AUTH_FILE = {str(auth)!r}\nSUSHY_EMULATOR_FAKE_SYSTEMS = {fake!r}\n")
        shim = ("import random, sys\n"
                "import sushy_tools.emulator.resources.systems.fakedriver as f\n"
                f"class _R:\n    @staticmethod\n    def randint(a, b): return random.randint(0, {max_delay_s})\n"
                "f.random = _R\n"
                "from sushy_tools.emulator.main import main\n"
                f"sys.argv = ['sushy-emulator', '--config', {str(conf)!r}]\nmain()\n")
        self.log = open(tmp / "emulator.log", "w")
        self.proc = subprocess.Popen([sys.executable, "-c", shim], stdout=self.log, stderr=subprocess.STDOUT)
        s = requests.Session()
        s.trust_env = False
        self.s = s
        s.auth = (USER, PASSWORD)
        for _ in range(200):
            try:
                if s.get(self.url + "/redfish/v1/", timeout=1).ok:
                    return
            except requests.ConnectionError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"sushy-emulator did not start: {(tmp / 'emulator.log').read_text()[-2000:]}")

    def power(self, host: str) -> str:
        return self.s.get(f"{self.url}/redfish/v1/Systems/{host}", timeout=5).json()["PowerState"]

    def powers(self, hosts) -> dict[str, str]:
        return {h: self.power(h) for h in hosts}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture
def emulator_factory(tmp_path):
    started = []

    def make(systems: dict[str, str], **kw) -> Emulator:
        em = Emulator(tmp_path, systems, **kw)
        started.append(em)
        return em

    yield make
    for em in started:
        em.stop()


def make_site(tmp: Path, pools: dict[str, tuple[int, int]]) -> Path:
    """The San Jose site with small pools: pool -> (servers, min_active_servers)."""
    d = yaml.safe_load(SITE.read_text())
    for k in ("carbon", "weather", "workload"):
        d[k]["path"] = str((SITE.parent / d[k]["path"]).resolve())
    for p in d["server_pools"]:
        if p["name"] in pools:
            p["servers"], p["min_active_servers"] = pools[p["name"]]
    out = tmp / "site.yaml"
    out.write_text(yaml.safe_dump(d, sort_keys=False))
    return out


def make_map(tmp: Path, em: Emulator, inventory: dict[str, list[str]], busy: dict[str, bool] | None,
             **redfish) -> Path:
    (tmp / "hosts.yaml").write_text(yaml.safe_dump({"pools": inventory}))
    rf = {"url": em.url, "inventory": "hosts.yaml", "timeout_s": 5, "poll_interval_s": 0.2,
          "power_off_timeout_s": 8, "power_on_timeout_s": 8, "max_concurrent_power_on": 4}
    if busy is not None:
        (tmp / "work.csv").write_text("host,busy\n" + "".join(f"{h},{str(b).lower()}\n" for h, b in busy.items()))
        rf["work"] = "work.csv"
    rf.update(redfish)
    m = {"name": "test_redfish", "site": "site.yaml", "audit_db": "audit.sqlite",
         "safety": {"max_plan_age_h": 26}, "redfish": rf}
    path = tmp / "actuators.yaml"
    path.write_text(yaml.safe_dump(m, sort_keys=False))
    return path


def make_plan(folder: Path, counts: dict[str, float], *, extra: dict[str, object] | None = None,
              summary_extra: dict | None = None, created_at: pd.Timestamp | None = None,
              site: str = "sanjose_colo_2mw") -> Path:
    """Four 15-minute steps from the current quarter hour, each with ``counts`` active servers."""
    folder.mkdir(parents=True, exist_ok=True)
    t0 = pd.Timestamp.now(tz="UTC").floor("15min")
    steps = pd.date_range(t0, periods=4, freq="15min")
    df = pd.DataFrame({"timestamp": steps.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
                       **{f"active_servers__{p}": v for p, v in counts.items()}, **(extra or {})})
    df.to_csv(folder / "plan.csv", index=False)
    created = created_at if created_at is not None else pd.Timestamp.now(tz="UTC")
    (folder / "summary.json").write_text(json.dumps({"run_id": folder.name, "site": site,
                                                     "created_at": created.isoformat(), **(summary_extra or {})}))
    return folder


def cli(*args) -> tuple[int, str]:
    res = CliRunner().invoke(app, [str(a) for a in args])
    return res.exit_code, res.output


def audit_rows(path: Path) -> pd.DataFrame:
    return read_audit(path) if path.is_file() else pd.DataFrame(columns=["action", "result", "point", "new_value"])


def max_overlap(df: pd.DataFrame) -> int:
    """Most power-ons in flight at once from the audit log: [intent, ok] per host."""
    on = df[(df["new_value"] == 1.0) & df["action"].isin(["write", "restore", "relinquish"])]
    events = []
    for host, g in on.groupby("point"):
        starts = g[g["result"] == "intent"]["id"].tolist()
        ends = g[g["result"].isin(["ok", "error", "timeout"])]["id"].tolist()
        for s, e in zip(starts, ends):
            events += [(s, 1), (e, -1)]
    live = best = 0
    for _, d in sorted(events):
        live += d
        best = max(best, live)
    return best


# ---------------------------------------------------------------------------- the pure planner
def test_host_actions_never_busy_never_below_floor_and_paced():
    """Property over many random cases: no busy host off, no pool below its floor, power-on rounds."""
    import random

    rng = random.Random(7)
    for _ in range(400):
        hosts, targets, floors = [], {}, {}
        for p in ("x", "y"):
            n = rng.randint(1, 12)
            for i in range(n):
                hosts.append(HostState(f"{p}{i:02d}", p, rng.choice(["On", "On", "Off", "PoweringOn", "PoweringOff"]),
                                       rng.random() < 0.4))
            targets[p], floors[p] = rng.randint(0, n), rng.randint(0, n)
        cap = rng.randint(1, 4)
        hp = host_actions(hosts, targets, floors, cap)
        by = {h.host: h for h in hosts}
        for a in hp.actions:
            h = by[a.host]
            assert h.pool == a.pool
            if a.action == "off":
                assert h.power == "On" and not h.busy
            else:
                assert h.power == "Off"
        for p in targets:
            on_after = sum(1 for h in hosts if h.pool == p and h.power == "On") \
                - sum(1 for a in hp.actions if a.pool == p and a.action == "off")
            assert on_after >= min(floors[p], sum(1 for h in hosts if h.pool == p and h.power == "On"))
        rounds = {}
        for a in hp.actions:
            if a.action == "on":
                rounds[a.round] = rounds.get(a.round, 0) + 1
        assert all(v <= cap for v in rounds.values())


def test_pacing_rounds_start_early_for_boot_time(tmp_path):
    """A rise needing 3 rounds of power-ons starts 2 boot times before its step, not sooner."""
    from coolshift.actuators.redfish import PoolLimits, pool_targets

    plan_dir = tmp_path / "p"
    t0 = pd.Timestamp.now(tz="UTC").floor("15min")
    steps = pd.date_range(t0, periods=3, freq="15min")
    pd.DataFrame({"timestamp": steps.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
                  "active_servers__a_web": [2, 2, 11.2]}).to_csv(tmp_path / "plan.csv", index=False)
    plan_dir.mkdir()
    (tmp_path / "plan.csv").rename(plan_dir / "plan.csv")
    (plan_dir / "summary.json").write_text(json.dumps({"run_id": "p", "site": "s", "created_at": t0.isoformat()}))
    plan = read_host_plan(plan_dir, ["a_web"])
    lim = {"a_web": PoolLimits("a_web", 12, 1, 300.0, 12)}
    rise_at = steps[2]
    # 12 needed (11.2 rounded up), 2 on: 10 to power on, 4 at once -> 3 rounds -> lead 600 s
    tg, _ = pool_targets(plan, rise_at - pd.Timedelta(seconds=601), lim, {"a_web": 2}, 4)
    assert tg["a_web"] == 2
    tg, why = pool_targets(plan, rise_at - pd.Timedelta(seconds=599), lim, {"a_web": 2}, 4)
    assert tg["a_web"] == 12, why


# ---------------------------------------------------------------------------- against the emulator
def test_hosts_follow_plan_off_then_on(tmp_path, emulator_factory):
    """Dry run changes nothing; --apply powers idle hosts off down to the plan (busy ones and the
    pool minimum kept on); a later plan powers them on again; the audit chain is intact."""
    web, comp = host_ids("a_web", 8), host_ids("a_compute", 6)
    em = emulator_factory({h: "On" for h in web + comp})
    make_site(tmp_path, {"a_web": (8, 2), "a_compute": (6, 2)})
    busy = {h: h in ("a-web-006", "a-web-007") for h in web}  # the two highest ids carry work
    busy.update({h: False for h in comp})
    amap = make_map(tmp_path, em, {"a_web": web, "a_compute": comp}, busy)

    plan = make_plan(tmp_path / "run-low", {"a_web": 3.2, "a_compute": 0.0})
    code, out = cli("hosts", "--plan", plan, "--actuators", amap)
    assert code == 0, out
    assert "dry run: 8 host(s) would be powered off, 0 on" in out, out
    assert set(em.powers(web + comp).values()) == {"On"}

    code, out = cli("hosts", "--plan", plan, "--actuators", amap, "--apply")
    assert code == 0, out
    st = em.powers(web + comp)
    on_web = [h for h in web if st[h] == "On"]
    # 4 wanted (3.2 rounded up), the two busy hosts among them
    assert len(on_web) == 4 and {"a-web-006", "a-web-007"} <= set(on_web), st
    # plan 0 but the pool minimum is 2
    assert sum(st[h] == "On" for h in comp) == 2, st

    plan2 = make_plan(tmp_path / "run-high", {"a_web": 8, "a_compute": 6})
    code, out = cli("hosts", "--plan", plan2, "--actuators", amap, "--apply")
    assert code == 0, out
    assert set(em.powers(web + comp).values()) == {"On"}
    df = audit_rows(tmp_path / "audit.sqlite")
    offs = df[(df["action"] == "write") & (df["new_value"] == 0.0) & (df["result"] == "ok")]["point"]
    assert not set(offs) & {"a-web-006", "a-web-007"}
    assert len(offs) == 8  # 4 web + 4 compute
    assert verify_audit(tmp_path / "audit.sqlite").ok
    assert ours_off(tmp_path / "audit.sqlite", load_actuator_map(amap).redfish.device) == {}


def test_unknown_work_counts_busy(tmp_path, emulator_factory):
    """Without a work file nobody said a host is idle: nothing is powered off."""
    web = host_ids("a_web", 5)
    em = emulator_factory({h: "On" for h in web})
    make_site(tmp_path, {"a_web": (5, 1)})
    amap = make_map(tmp_path, em, {"a_web": web}, None)
    code, out = cli("hosts", "--plan", make_plan(tmp_path / "r", {"a_web": 1}), "--actuators", amap, "--apply")
    assert code == 0 and "nothing to do" in out, out
    assert set(em.powers(web).values()) == {"On"}


def test_power_ons_paced(tmp_path, emulator_factory):
    """12 hosts to power on, at most 3 at once: every one comes on, never more than 3 in flight."""
    comp = host_ids("b_compute", 12)
    em = emulator_factory({h: "Off" for h in comp})
    make_site(tmp_path, {"b_compute": (12, 0)})
    amap = make_map(tmp_path, em, {"b_compute": comp}, {h: False for h in comp}, max_concurrent_power_on=3)
    code, out = cli("hosts", "--plan", make_plan(tmp_path / "r", {"b_compute": 12}), "--actuators", amap, "--apply")
    assert code == 0, out
    assert set(em.powers(comp).values()) == {"On"}
    n = max_overlap(audit_rows(tmp_path / "audit.sqlite"))
    assert 2 <= n <= 3, n  # paced, and actually in parallel


def test_failed_action_rolls_back(tmp_path, emulator_factory):
    """The third power-off fails: no new action starts and the hosts powered off are on again."""
    web = host_ids("a_web", 8)
    em = emulator_factory({h: "On" for h in web})
    site = load_site(make_site(tmp_path, {"a_web": (8, 1)}))
    amap = load_actuator_map(make_map(tmp_path, em, {"a_web": web}, {h: False for h in web},
                                      max_parallel_requests=1, action_interval_s=0.3))

    class Failing(RedfishClient):
        offs = 0

        def reset(self, host, reset_type):
            if reset_type == "GracefulShutdown":
                Failing.offs += 1
                if Failing.offs == 3:
                    from coolshift.actuators.redfish import RedfishError

                    raise RedfishError(f"{host}: injected failure")
            return super().reset(host, reset_type)

    client = Failing(amap.redfish, Credentials(user=USER, password=PASSWORD))
    inv = resolve_inventory(load_inventory_spec(amap.redfish.inventory, site), site, {h: h for h in web})
    busy = load_work(amap.redfish.work, inv)
    plan = read_host_plan(make_plan(tmp_path / "r", {"a_web": 1}), ["a_web"])
    with AuditLog(tmp_path / "audit.sqlite", device=amap.redfish.device) as log:
        rep = enact(client, site, inv, plan, log, busy=busy.__getitem__, apply=True)
    client.close()
    assert rep.status == "rolled_back", rep.messages
    assert Failing.offs == 3  # nothing started after the failure
    assert len(rep.restored) == 3 and all(r.ok for r in rep.restored)
    assert set(em.powers(web).values()) == {"On"}
    df = audit_rows(tmp_path / "audit.sqlite")
    assert (df["action"] == "restore").any() and verify_audit(tmp_path / "audit.sqlite").ok


def test_killed_mid_step_then_release(tmp_path, emulator_factory):
    """`coolshift hosts --apply` killed -9 after its first power-off: `hosts-release` powers every
    host it asked off back on (also one whose shutdown was still pending) and the log is intact."""
    web = host_ids("a_web", 10)
    em = emulator_factory({h: "On" for h in web})
    make_site(tmp_path, {"a_web": (10, 1)})
    amap = make_map(tmp_path, em, {"a_web": web}, {h: False for h in web},
                    max_parallel_requests=1, action_interval_s=0.5, power_off_timeout_s=4)
    plan = make_plan(tmp_path / "r", {"a_web": 1})
    audit = tmp_path / "audit.sqlite"
    proc = subprocess.Popen([str(COOLSHIFT), "hosts", "--plan", str(plan), "--actuators", str(amap), "--apply"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=os.environ.copy())
    killed_after = None
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and proc.poll() is None:
        if audit.is_file():
            try:
                db = sqlite3.connect(f"file:{audit}?mode=ro", uri=True)
                n = db.execute("SELECT COUNT(*) FROM audit WHERE action='write' AND result='ok' "
                               "AND new_value=0").fetchone()[0]
                db.close()
            except sqlite3.OperationalError:
                n = 0
            if n >= 1:
                proc.send_signal(signal.SIGKILL)
                killed_after = n
                break
        time.sleep(0.02)
    proc.wait(10)
    assert killed_after is not None, proc.stdout.read().decode()[-2000:]
    df = audit_rows(audit)
    asked = set(df[(df["action"] == "write") & (df["new_value"] == 0.0) & (df["result"] == "intent")]["point"])
    assert 1 <= len(asked) < 9  # killed mid-step: some, not all, of the 9 power-offs
    assert verify_audit(audit).ok

    code, out = cli("hosts-release", "--actuators", amap)
    assert code == 0, out
    assert set(em.powers(web).values()) == {"On"}
    time.sleep(2.5)  # longer than the emulator's delay: no shutdown still pending
    assert set(em.powers(web).values()) == {"On"}
    assert ours_off(audit, load_actuator_map(amap).redfish.device) == {}
    assert verify_audit(audit).ok


# ---------------------------------------------------------------------------- credentials and bad input
def test_credentials_never_read_from_a_plan(tmp_path, emulator_factory, monkeypatch):
    web = host_ids("a_web", 4)
    em = emulator_factory({h: "On" for h in web})
    make_site(tmp_path, {"a_web": (4, 1)})
    amap = make_map(tmp_path, em, {"a_web": web}, {h: False for h in web})
    # a plan carrying a password column is refused, nothing done
    p = make_plan(tmp_path / "r1", {"a_web": 1}, extra={"redfish_password": PASSWORD})
    code, out = cli("hosts", "--plan", p, "--actuators", amap, "--apply")
    assert code == 2 and "redfish_password" in out and "credential" in out, out
    # so is one with a token in its summary
    p2 = make_plan(tmp_path / "r2", {"a_web": 1}, summary_extra={"token": "abc"})
    code, out = cli("hosts", "--plan", p2, "--actuators", amap, "--apply")
    assert code == 2 and "summary.json" in out, out
    assert set(em.powers(web).values()) == {"On"}
    assert not (audit_rows(tmp_path / "audit.sqlite")["action"] == "write").any()
    # without credentials in the environment: exit 2, naming the variables (the plan's column is not used)
    monkeypatch.delenv("COOLSHIFT_REDFISH_USER")
    monkeypatch.delenv("COOLSHIFT_REDFISH_PASSWORD")
    code, out = cli("hosts", "--plan", make_plan(tmp_path / "r3", {"a_web": 1}, extra={"user": USER}),
                    "--actuators", amap)
    assert code == 2, out
    code, out = cli("hosts", "--plan", make_plan(tmp_path / "r4", {"a_web": 1}), "--actuators", amap)
    assert code == 2 and "COOLSHIFT_REDFISH_USER" in out, out
    # a wrong password from the environment: the service refuses (exit 1), no traceback
    monkeypatch.setenv("COOLSHIFT_REDFISH_USER", USER)
    monkeypatch.setenv("COOLSHIFT_REDFISH_PASSWORD", "wrong")
    code, out = cli("hosts", "--plan", make_plan(tmp_path / "r5", {"a_web": 1}), "--actuators", amap)
    assert code == 1 and "service error" in out and "Traceback" not in out, out
    # and a map with a password key is refused
    m = yaml.safe_load(amap.read_text())
    m["redfish"]["password"] = "x"
    bad = tmp_path / "bad_map.yaml"
    bad.write_text(yaml.safe_dump(m))
    code, out = cli("hosts", "--plan", make_plan(tmp_path / "r6", {"a_web": 1}), "--actuators", bad)
    assert code == 2 and "redfish.password" in out, out


def test_bad_inventory_names_file_and_key(tmp_path):
    site = load_site(make_site(tmp_path, {"a_web": (3, 1), "a_compute": (4, 1)}))
    inv = tmp_path / "inv.yaml"
    cases = [
        ({"pools": {"a_wbe": ["a-web-000"]}}, "pools.a_wbe: unknown pool"),
        ({"pools": {"a_web": ["h1", "h2"], "a_compute": ["h2"]}}, "host h2 is listed twice"),
        ({"pools": {"a_web": ["h1", "h2", "h3", "h4"]}}, "pools.a_web: 4 hosts but the site config has 3 servers"),
        ({"pools": {"a_web": ["bad/id"]}}, "pools.a_web.hosts[0]"),
    ]
    for doc, msg in cases:
        inv.write_text(yaml.safe_dump(doc))
        with pytest.raises(ConfigError) as e:
            load_inventory_spec(inv, site)
        assert str(inv) in str(e.value) and msg in str(e.value), str(e.value)
    csv_inv = tmp_path / "inv.csv"
    csv_inv.write_text("pool,host\na_web,h1\na_web,h1\n")
    with pytest.raises(ConfigError, match=r"inv.csv: row 3, column host: host h1 is listed twice"):
        load_inventory_spec(csv_inv, site)
    # discovery by name that would exceed the pool
    inv.write_text(yaml.safe_dump({"pools": {"a_web": {"discover": {"name_regex": "^a-web-"}}}}))
    spec = load_inventory_spec(inv, site)
    with pytest.raises(ConfigError, match=r"pools.a_web: 4 hosts \(listed and discovered\)"):
        resolve_inventory(spec, site, {f"a-web-{i}": f"a-web-{i}" for i in range(4)})
    got = resolve_inventory(spec, site, {"a-web-1": "a-web-1", "x": "other"})
    assert got.pools == {"a_web": ("a-web-1",)}
    # through the CLI: exit 2, one line, no traceback (no service contacted)
    inv.write_text(yaml.safe_dump({"pools": {"a_wbe": ["h"]}}))
    (tmp_path / "m.yaml").write_text(yaml.safe_dump({"name": "m", "site": "site.yaml", "audit_db": "a.sqlite",
                                                     "redfish": {"url": "http://127.0.0.1:9", "inventory": "inv.yaml"}}))
    code, out = cli("hosts", "--plan", make_plan(tmp_path / "r", {"a_web": 1}), "--actuators", tmp_path / "m.yaml")
    assert code == 2 and "pools.a_wbe" in out and "Traceback" not in out, out


def test_stale_or_foreign_plan_refused(tmp_path, emulator_factory):
    web = host_ids("a_web", 3)
    em = emulator_factory({h: "On" for h in web})
    make_site(tmp_path, {"a_web": (3, 0)})
    amap = make_map(tmp_path, em, {"a_web": web}, {h: False for h in web})
    old = make_plan(tmp_path / "old", {"a_web": 0}, created_at=pd.Timestamp.now(tz="UTC") - pd.Timedelta(hours=30))
    code, out = cli("hosts", "--plan", old, "--actuators", amap, "--apply")
    assert code == 3 and "max_plan_age_h" in out, out
    other = make_plan(tmp_path / "other", {"a_web": 0}, site="philadelphia_multihall_20mw")
    code, out = cli("hosts", "--plan", other, "--actuators", amap, "--apply")
    assert code == 3 and "philadelphia" in out, out
    assert set(em.powers(web).values()) == {"On"}
