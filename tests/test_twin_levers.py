"""Every lever on the twin (issue 19 item 4): its servers as Redfish systems, its batch queue as points.

The twin (Modbus TCP, pymodbus server; Redfish, the sushy-tools emulator's application with
the twin's driver; both on 127.0.0.1) runs in its own thread and event loop at 450 x real
time (a 15-min step every 2 s). The supervisor is real: it writes the release-rate point
and the heartbeat through the Modbus adapter and powers hosts through
:class:`coolshift.actuators.step.ActuatorStepper` (sushy, HTTP basic auth).

The site is San Jose with the batch deadline cut to 1 h (4 steps), so the deadline forces
held work out within seconds of wall time.
"""

from __future__ import annotations

import asyncio
import copy
import socket
import time

import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from coolshift.actuators.inventory import load_actuator_map, load_inventory_spec
from coolshift.actuators.redfish import pool_limits, servers_on, HostState
from coolshift.actuators.step import ActuatorStepper
from coolshift.bms.adapters import open_adapter
from coolshift.bms.audit import AuditLog, verify_audit
from coolshift.bms.heartbeat import write_heartbeat
from coolshift.bms.points import load_point_map
from coolshift.bms.safety import check_write
from coolshift.config import load_site
from coolshift.io import load_site_data
from coolshift.simulations.actions import Actions
from coolshift.simulations.engine import _ACTION_FIELDS as ACTION_FIELDS, Stepper
from coolshift.twin import SiteTwin, twin_point_map
from coolshift.twin.thread import TwinThread
from coolshift.twin.hosts import TwinHosts, auto_servers_per_host, write_actuator_map, write_inventory, write_work
from coolshift.twin.points import write_point_map as write_twin_map
from test_bms_kit import SITE, free_port, write_point_map
from test_redfish import PASSWORD, USER, env  # noqa: F401 (autouse: state dir, credentials, no proxy)

pytestmark = pytest.mark.timeout(180)

SPEED = 450.0  # a 15-min step every 2 wall seconds (the watchdog: 3 s; margin for a loaded host)
REL, QUEUE = "release_units_per_h__batch", "queue_units__batch"
POOLS = ("a_web", "a_compute", "b_storage", "b_compute")


def make_site(tmp) -> "Path":  # noqa: F821
    """San Jose with a 1-hour batch deadline; data paths made absolute."""
    d = yaml.safe_load(SITE.read_text())
    for k in ("carbon", "weather", "workload"):
        d[k]["path"] = str((SITE.parent / d[k]["path"]).resolve())
    for c in d["workload_classes"]:
        if c["kind"] == "batch":
            c["deadline_h"] = 1.0
    out = tmp / "site.yaml"
    out.write_text(yaml.safe_dump(d, sort_keys=False))
    return out


async def until(cond, timeout: float = 40.0, what: str = "") -> None:
    t_end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > t_end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def test_auto_block_size_and_inventory_round_trip(tmp_path):
    site = load_site(SITE)
    assert auto_servers_per_host(site) == 50  # 4,300 servers -> 24 + 20 + 12 + 30 = 86 systems
    hosts = TwinHosts(site, 50, SPEED)
    assert len(hosts.hosts) == 86
    inv = write_inventory(hosts, tmp_path / "inv.yaml")
    spec = load_inventory_spec(inv, site)
    assert spec.servers_per_host == {p: 50 for p in POOLS}
    assert len(spec.hosts["b_compute"]) == 30
    # 7 servers per host: the last host of a_web (1,200 = 171 x 7 + 3) holds 3
    odd = TwinHosts(site, 7, SPEED)
    web = [h for h in odd.hosts if h.pool == "a_web"]
    assert len(web) == 172 and web[-1].servers == 3 and sum(h.servers for h in web) == 1200


def test_actuator_counts_a_host_as_its_block_and_rounds_targets_up(tmp_path):
    """A host of 50 servers: 120 servers wanted -> 3 hosts on; the floor (100) in servers -> 2 hosts."""
    from coolshift.actuators.inventory import Inventory
    from coolshift.actuators.redfish import plan_hosts

    site = load_site(SITE)
    inv = Inventory(tmp_path / "inv.yaml", {"a_compute": tuple(f"a_compute-{i:03d}" for i in range(20))},
                    {"a_compute": 50})
    lim = pool_limits(site, inv)["a_compute"]
    assert (lim.controlled, lim.servers_per_host, lim.hosts_for(120), lim.hosts_for(100)) == (1000, 50, 3, 2)
    hosts = [HostState(h, "a_compute", "On" if i < 10 else "Off", busy=i < 1) for i, h in enumerate(inv.pools["a_compute"])]
    assert servers_on(hosts, {"a_compute": lim}) == {"a_compute": 500}
    hp = plan_hosts(hosts, {"a_compute": 120}, {"a_compute": lim}, 20)
    assert sorted(a.host for a in hp.actions if a.action == "off") == [f"a_compute-{i:03d}" for i in range(3, 10)]
    hp = plan_hosts(hosts, {"a_compute": 0}, {"a_compute": lim}, 20)  # the floor: 100 servers = 2 hosts stay on
    assert len([a for a in hp.actions if a.action == "off"]) == 8
    hp = plan_hosts(hosts, {"a_compute": 651}, {"a_compute": lim}, 2)  # 651 -> 14 hosts: 4 on, in 2 rounds
    assert [(a.host, a.round) for a in hp.actions] == [("a_compute-010", 0), ("a_compute-011", 0),
                                                       ("a_compute-012", 1), ("a_compute-013", 1)]


@settings(max_examples=300, deadline=None)
@given(n_hosts=st.integers(1, 30), per_host=st.integers(1, 60), data=st.data())
def test_block_targets_never_take_a_busy_host_or_go_below_the_floor(n_hosts, per_host, data):
    """Any pool of blocks: the servers on after the step cover the target (rounded up to whole
    hosts) when enough hosts read Off, and the floor in servers; no busy host goes off."""
    from coolshift.actuators.redfish import PoolLimits, plan_hosts

    servers = n_hosts * per_host - data.draw(st.integers(0, per_host - 1))  # the last block may be partial
    floor = data.draw(st.integers(0, servers))
    lim = PoolLimits("p", servers, floor, 180.0, servers, per_host)
    power = data.draw(st.lists(st.sampled_from(["On", "Off"]), min_size=n_hosts, max_size=n_hosts))
    busy = data.draw(st.lists(st.booleans(), min_size=n_hosts, max_size=n_hosts))
    hosts = [HostState(f"h{i:02d}", "p", power[i], busy[i] and power[i] == "On") for i in range(n_hosts)]
    target = data.draw(st.integers(0, servers))
    hp = plan_hosts(hosts, {"p": target}, {"p": lim}, 4)
    off = {a.host for a in hp.actions if a.action == "off"}
    on = {a.host for a in hp.actions if a.action == "on"}
    assert not any(h.busy for h in hosts if h.host in off)
    after = [h for h in hosts if (h.power == "On" and h.host not in off) or h.host in on]
    n_on_before = sum(h.power == "On" for h in hosts)
    assert len(after) >= min(n_on_before, -(-floor // per_host))  # never takes the pool below its floor
    want = max(-(-target // per_host), -(-floor // per_host))
    if n_hosts >= want:
        assert len(after) >= want  # enough hosts: the target (and floor) in whole hosts is met
    if not on:  # nothing switched on: only surplus hosts went off
        assert len(after) >= min(n_on_before, want)
    if not any(h.busy for h in hosts) and n_hosts >= want:
        assert len(after) == want  # no work in the way: exactly the whole hosts the target needs


def test_due_work_is_released_and_servers_added_only_when_the_running_ones_fall_short(tmp_path):
    """TwinPlant alone (no network): batch held at 0 units/h with a 1-h deadline. With the servers
    the local rule would run, the due work fits: nothing is added. With the compute pools at
    their minimum it does not: servers are added, and still no unit is late."""
    from coolshift.twin import TwinPlant

    site = load_site(make_site(tmp_path))
    data = load_site_data(site, "2022-06-01", "2022-06-02")
    hold = {REL: 0.0}
    plant = TwinPlant(site, data)
    added = forced = 0
    for k in range(16):
        local = plant.local.decide(plant.stepper.observation(1))
        want = {p: float(local.active_servers[0, j]) for j, p in enumerate(plant.pools)}
        _, tele = plant.step(hold, want)
        added += sum(tele[f"active_servers__{p}"] > want[p] for p in POOLS)
        forced += tele[REL] > 0
        assert tele["late_units__batch"] == 0.0, k
    assert forced >= 10 and added == 0  # the deadline released work every step from the 4th; no server added
    plant = TwinPlant(site, data)
    floor = {"a_web": 1200.0, "a_compute": 100.0, "b_storage": 600.0, "b_compute": 150.0}
    runs = []
    for k in range(16):
        _, tele = plant.step(hold, floor)
        runs.append(tele["active_servers__a_compute"] + tele["active_servers__b_compute"])
        assert tele["late_units__batch"] == 0.0, k
    assert runs[0] == 250.0 and max(runs) > 250.0  # 100 + 150 until work fell due, then more


def test_safety_accepts_release_points_within_capacity_and_setpoint_checks_stand(tmp_path):
    site = load_site(SITE)
    base = load_point_map(write_point_map(tmp_path / "m.yaml", "modbus", 15020, wide_limits=True))
    pm = twin_point_map(base, site, 15020, queue_points=True)
    rel = pm.by_variable(REL)
    # batch runs on a_compute and b_compute (no classes list): (1,000 + 1,500) x 1.0 units/h
    assert (rel.min_value, rel.max_value, rel.writable) == (0.0, 2500.0, True)
    now = pd.Timestamp("2026-01-01", tz="UTC")
    assert check_write(rel, 0.0, 2500.0, site, pm.safety, None, now) == []  # any change within capacity
    assert check_write(rel, 2500.0, 0.0, site, pm.safety, None, now) == []
    assert any("outside" in r for r in check_write(rel, 2600.0, 0.0, site, pm.safety, None, now))
    assert any("outside" in r for r in check_write(rel, -1.0, 0.0, site, pm.safety, None, now))
    sup = pm.by_variable("supply_setpoint_c__hall_a")
    assert any("maximum change per write" in r for r in check_write(sup, 22.0, 25.0, site, pm.safety, None, now))
    assert any("envelope" in r for r in check_write(sup, 28.5, 28.0, site, pm.safety, None, now))
    for v in ("active_servers__a_web", QUEUE, "backlog_units__batch", "batch_arrivals_units__batch",
              "backlog_due_h__batch"):
        assert not pm.by_variable(v).writable


def test_supervisor_holds_work_powers_hosts_off_and_the_watchdog_hands_everything_back(tmp_path):
    site_path = make_site(tmp_path)
    site = load_site(site_path)
    data = load_site_data(site, "2022-06-01", "2022-06-03")
    port, rport = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_STREAM)  # both TCP
    base = load_point_map(write_point_map(tmp_path / "m.yaml", "modbus", port, wide_limits=True))
    twin_pm = twin_point_map(base, site, port, queue_points=True)
    pm = load_point_map(write_twin_map(twin_pm, tmp_path / "twin_map.yaml"))
    hosts = TwinHosts(site, 50, SPEED)
    inv, work = tmp_path / "inv.yaml", tmp_path / "inv_work.csv"
    write_inventory(hosts, inv)
    write_work(hosts, work)
    amap = write_actuator_map(tmp_path / "act.yaml", site_path, f"http://127.0.0.1:{rport}", inv, work, SPEED)
    am = load_actuator_map(amap)
    twin = SiteTwin(twin_pm, site, data, SPEED, port, hosts=hosts, redfish_port=rport, redfish_auth=(USER, PASSWORD),
                    work_path=work)
    hist = twin.history
    rec: dict = {}

    async def supervisor():
        feeding = True

        async def feed(ad):
            while True:
                if feeding:
                    await write_heartbeat(ad, pm)
                await asyncio.sleep(0.1)

        async with open_adapter(pm) as ad:
            hb = asyncio.create_task(feed(ad))
            try:
                await until(lambda: len(hist) >= 2, what="two steps")
                # 1. consolidate: every pool as low as the actuator may take it
                # (every blocking call in a worker thread, as the live loop makes them: the heartbeat goes on)
                with AuditLog(am.audit_db) as audit:
                    st = ActuatorStepper(am, site, audit, apply=True)
                    await asyncio.to_thread(st.open)
                    try:
                        rec["before"] = await asyncio.to_thread(st.read)
                        rec["k_cmd"] = len(hist)
                        rec["out"] = await asyncio.to_thread(st.step, pd.Timestamp.now(tz="UTC"),
                                                             {f"active_servers__{p}": 0 for p in POOLS})
                        rec["after"] = await asyncio.to_thread(st.read)
                    finally:
                        st.close()
                await until(lambda: len(hist) >= rec["k_cmd"] + 2, what="two steps under the command")
                rec["on_wire"] = await ad.read_value(pm.by_variable("active_servers__b_storage"))
                # 2. hold the batch queue: release 0 units/h
                await ad.write(pm.by_variable(REL), 0.0)
                await until(lambda: any(r.overrides.get(REL) == 0.0 for r in hist), what="the hold to apply")
                rec["k_hold"] = next(r.k for r in hist if r.overrides.get(REL) == 0.0)
                await until(lambda: len(hist) >= rec["k_hold"] + 6, what="six held steps")
                # 3. the supervisor goes silent: the watchdog hands points, servers and queue back
                feeding = False
                rec["t_silent"] = twin.clock.site_s()
                await until(lambda: not hosts.remote, what="the servers back to local control")
                rec["t_back"] = twin.clock.site_s()
                rec["k_back"] = len(hist)
                await until(lambda: len(hist) >= rec["k_back"] + 3, what="three steps under local control")
            finally:
                hb.cancel()

    with TwinThread(twin):
        asyncio.run(supervisor())
    tele = {r.k: r.telemetry for r in hist}

    # the actuator powered hosts off, none with work, never below a pool's minimum
    out = rec["out"]
    assert out.ok and out.hosts_off > 0 and out.hosts_on == 0, out
    offs = [c for c in hosts.commands if c.reset_type == "GracefulShutdown"]
    assert len(offs) == out.hosts_off
    assert not any(c.busy for c in offs), [c for c in offs if c.busy]
    lim = {p.name: p.min_active_servers for p in site.server_pools}
    for p in POOLS:
        n = sum(c.host.startswith(p + "-") for c in offs)
        assert rec["after"][f"active_servers__{p}"] == rec["before"][f"active_servers__{p}"] - 50 * n, p
        assert rec["after"][f"active_servers__{p}"] >= lim[p]
    assert rec["after"]["active_servers__b_storage"] == 600.0  # its minimum is every server
    # the plant ran what the power states say (until the held work's deadline needs more), shown on the wire
    k_cmd, k_hold = rec["k_cmd"], rec["k_hold"]
    for k in range(k_cmd + 1, k_hold + 2):
        for p in POOLS:
            assert tele[k][f"active_servers__{p}"] == rec["after"][f"active_servers__{p}"], (k, p)
    assert rec["on_wire"] == 600.0
    # IT power: the twin ran the servers it reports (the same step replayed through the engine with
    # those counts gives its IT power to float noise), and fell against the same step replayed with
    # the local rule's servers by a material share of the switched-off servers' idle power (a_web
    # 95 - 8 W, compute 120 - 10 W each, from the site config). Less than all of it: the compute
    # pools' power curves steepen above 50 % load, where their remaining servers then run.
    idle_sleep_w = {"a_web": 87.0, "a_compute": 110.0, "b_compute": 110.0, "b_storage": 140.0}
    k = k_cmd + 1
    local_servers = {p: hist[k].local[f"active_servers__{p}"] for p in POOLS}
    saved_kw = sum((local_servers[p] - tele[k][f"active_servers__{p}"]) * idle_sleep_w[p] for p in POOLS) / 1000.0
    acts = twin.plant.result().actions
    replay = Stepper(site, data)
    for j in range(k):
        replay.step(Actions(*(getattr(acts, f)[j:j + 1] for f in ACTION_FIELDS)))
    same = Actions(*(getattr(acts, f)[k:k + 1].copy() for f in ACTION_FIELDS))
    assert list(same.active_servers[0]) == [tele[k][f"active_servers__{p}"] for p in replay.names.pools]
    cf = Actions(*(getattr(acts, f)[k:k + 1].copy() for f in ACTION_FIELDS))
    cf.active_servers[0] = [local_servers[p] for p in replay.names.pools]
    it_same = float(copy.deepcopy(replay).step(same)["it_kw"][0])
    it_local = float(replay.step(cf)["it_kw"][0])
    print(f"step {k}: IT {tele[k]['it_power_kw']:.1f} kW; with the local rule's servers {it_local:.1f} kW; "
          f"the servers off idle {saved_kw:.1f} kW")
    assert it_same == pytest.approx(tele[k]["it_power_kw"], rel=1e-9)
    assert saved_kw > 10.0
    assert 0.2 * saved_kw < it_local - tele[k]["it_power_kw"] < 3.0 * saved_kw

    # the queue held: work arrived and waited; the deadline (4 steps) forced it out, never late
    k_back = rec["k_back"]
    held = [k for k in range(k_hold, k_back) if hist[k].overrides.get(REL) == 0.0]
    assert len(held) >= 6
    assert all(tele[k]["batch_arrivals_units__batch"] > 0 for k in held)
    forced = [k for k in held if tele[k][REL] > 0]
    assert forced and min(forced) <= k_hold + 4, (k_hold, forced)
    # the first held steps release nothing (the oldest work, due within the hour, waits to its last step)
    assert tele[held[0]][REL] == 0.0 and tele[held[1]][REL] == 0.0
    assert tele[held[1]][QUEUE] == pytest.approx(tele[held[0]][QUEUE] + tele[held[1]]["batch_arrivals_units__batch"])
    assert all(0.0 <= tele[k]["backlog_due_h__batch"] <= 1.0 for k in held)
    assert max(tele[k]["late_units__batch"] for k in tele) == 0.0
    q_cap = max(tele[k]["batch_arrivals_units__batch"] for k in held) * 4  # at most 4 steps of arrivals wait
    assert max(tele[k][QUEUE] for k in held) <= q_cap + 1e-6
    # the site's scheduler switched servers on for the due work: only when work was forced out
    for k in held:
        if tele[k]["active_servers__b_compute"] > rec["after"]["active_servers__b_compute"]:
            assert tele[k][REL] > 0, k

    # the watchdog (1.5 steps) handed everything back within 2 steps of the last heartbeat
    assert (rec["t_back"] - rec["t_silent"]) / twin.step_s <= 2.0
    assert any("servers" in names for _, names in twin.watchdog.events)
    assert REL in {p.variable for p in pm.writable}
    for k in range(k_back + 1, len(hist)):
        r = hist[k]
        assert REL not in r.overrides and not any(v.startswith("active_servers__") for v in r.overrides)
        for p in POOLS:  # local control: best practice's consolidation again
            assert r.telemetry[f"active_servers__{p}"] == r.local[f"active_servers__{p}"], (k, p)
    assert tele[len(hist) - 1][QUEUE] < 0.5 * max(tele[k][QUEUE] for k in held)  # run as it arrives again
    assert verify_audit(am.audit_db).ok


def test_twin_cli_serves_redfish_with_inventory_work_file_and_actuator_map(tmp_path):
    """`coolshift twin --redfish-port` as an operator runs it; `coolshift hosts` (dry run) reads its service."""
    import os
    import signal
    import subprocess

    from test_redfish import COOLSHIFT, cli, make_plan

    code, out = cli("twin", "--site", SITE, "--inventory-out", tmp_path / "x.yaml")
    assert code == 2 and "--inventory-out and --actuators-out need --redfish-port" in out, out
    port, rport = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_STREAM)  # both TCP
    inv, act = tmp_path / "inv.yaml", tmp_path / "act.yaml"
    proc = subprocess.Popen([str(COOLSHIFT), "twin", "--site", str(SITE), "--protocol", "modbus", "--port", str(port),
                             "--speed", "900", "--days", "1", "--redfish-port", str(rport), "--inventory-out", str(inv),
                             "--actuators-out", str(act)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "COLUMNS": "200"})
    try:
        first = proc.stdout.readline() + proc.stdout.readline()  # the announcement, once it serves
        assert f"redfish: 86 systems of 50 servers on http://127.0.0.1:{rport} (basic auth" in first, first
        work = (tmp_path / "inv_work.csv").read_text().splitlines()
        assert work[0] == "host,busy" and len(work) == 87
        plan = make_plan(tmp_path / "run", {"a_compute": 0, "b_compute": 0})
        code, out = cli("hosts", "--plan", plan, "--actuators", act)
        assert code == 0 and "dry run:" in out and "nothing done" in out, out
        row = next(line for line in out.splitlines() if "a_compute" in line and "│" in line)
        cells = [c.strip() for c in row.split("│") if c.strip()]
        assert cells[:2] == ["a_compute", "20"] and cells[6] == "2", cells  # 20 hosts; the floor 100 = 2 hosts
    finally:
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=20)[0]
    assert proc.returncode == 0 and "twin stopped after" in rest, rest
