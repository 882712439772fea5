"""One actuator map for Redfish and Slurm, and ``coolshift release`` handing everything back (issue 19 item 3).

The map's ``slurm:`` section names the cluster beside the Redfish service; ``coolshift
hosts`` and ``coolshift jobs`` both read it, and ``coolshift release --actuators MAP``
powers hosts on again, lifts holds and resumes nodes. Against the real sushy-tools
emulator (``emulator_factory`` of tests/test_redfish.py) and the real local Slurm
(``cluster`` of tests/test_slurm.py, started once for this module), both on 127.0.0.1.
The credential refusals run without either.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
import yaml

from coolshift.actuators.inventory import load_actuator_map
from coolshift.bms.audit import AuditLog, read_audit, verify_audit
from coolshift.config import ConfigError
from test_redfish import PASSWORD, USER, cli, emulator_factory, free_port, host_ids, make_map, make_plan, make_site  # noqa: F401
from test_redfish import env  # noqa: F401 (autouse: own state folder, Redfish credentials in the environment, no proxy)
from test_slurm import NODES, cluster, needs_slurm  # noqa: F401


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    """Rich tables wide enough that a device name is never wrapped in the output checked."""
    monkeypatch.setenv("COLUMNS", "160")


SECTION = {"classes": {"batch": {"partitions": ["batch"], "default_deadline_h": 12}},
           "pools": {"compute": {"partitions": ["batch"], "min_nodes": 1}},
           "deadline_margin_min": 0.1, "timeout_s": 10}


def add_slurm(amap: Path, conf: Path, **extra) -> Path:
    """The actuator map with a ``slurm:`` section naming the local cluster."""
    doc = yaml.safe_load(amap.read_text())
    doc["slurm"] = {"cluster": "cstest", "conf": str(conf), **SECTION, **extra}
    amap.write_text(yaml.safe_dump(doc, sort_keys=False))
    return amap


def held(c, jid: int) -> bool:
    return c.job(jid)["Reason"] in ("JobHeldAdmin", "JobHeldUser")


@needs_slurm
def test_one_map_drives_hosts_and_jobs_and_release_hands_everything_back(cluster, tmp_path, emulator_factory):
    c = cluster
    web = host_ids("a_web", 4)
    em = emulator_factory({h: "On" for h in web})
    make_site(tmp_path, {"a_web": (4, 1)})
    amap = add_slurm(make_map(tmp_path, em, {"a_web": web}, {h: False for h in web}), c.conf)
    am = load_actuator_map(amap)
    assert am.slurm is not None and am.slurm.audit_db == am.audit_db  # one audit log for both
    # one plan: one web server, nothing released, one Slurm node
    plan = make_plan(tmp_path / "run", {"a_web": 1}, extra={"release_units_per_h__batch": 0.0,
                                                            "active_servers__compute": 1})
    jobs = [c.submit("--begin", "now+1hour", "-t", "5") for _ in range(2)]
    try:
        code, out = cli("hosts", "--plan", plan, "--actuators", amap, "--apply")
        assert code == 0 and "applied: 3 host(s) powered off" in out, out
        code, out = cli("jobs", "--plan", plan, "--actuators", amap, "--apply")
        assert code == 0 and "cluster cstest" in out, out
        assert all(f"hold {j}: done" in out for j in jobs) and out.count("power_down") >= 2, out
        assert sum(s == "Off" for s in em.powers(web).values()) == 3
        assert all(held(c, j) for j in jobs)
        down = [n for n in NODES if f"power_down {n}: done" in out]
        assert len(down) == 2
        c.wait(lambda: all("POWERED_DOWN" in c.nodes()[n]["state_flags"] for n in down), 20, f"{down} powered down")

        code, out = cli("release", "--actuators", amap)
        print(f"\n$ coolshift release --actuators actuators.yaml\n{out}[exit {code}]")  # for docs/actuators.md (pytest -s)
        assert code == 0, out
        assert "handed back: hosts (redfish://127.0.0.1" in out and "released 3/3 host(s)" in out, out
        assert "handed back: jobs and nodes (slurm://cstest)" in out, out
        assert all(f"released job {j}" in out for j in jobs) and all(f"resumed node {n}" in out for n in down), out
        assert set(em.powers(web).values()) == {"On"}
        assert not any(held(c, j) for j in jobs)
        c.wait(c.all_idle, 40, "every node resumed and idle")
        log = read_audit(am.audit_db)
        assert {"redfish://127.0.0.1:" + str(em.port), "slurm://cstest"} <= set(log["device"].dropna())
        assert verify_audit(am.audit_db).ok
        # handed back: a second release finds nothing of Coolshift's
        code, out = cli("release", "--actuators", amap)
        assert code == 0 and "nothing to release" in out and "nothing to hand back" in out, out
    finally:
        c.run("scancel", *map(str, jobs), check=False)
        c.wait(c.all_idle, 40, "every node idle again")


@needs_slurm
def test_release_names_the_part_it_could_not_hand_back(cluster, tmp_path):
    """A Redfish service that does not answer: the Slurm part is still handed back, exit 1 names hosts."""
    c = cluster
    make_site(tmp_path, {"a_web": (4, 1)})

    class Gone:  # a service on a loopback port nobody listens on
        url = f"http://127.0.0.1:{free_port()}"

    amap = add_slurm(make_map(tmp_path, Gone, {"a_web": host_ids("a_web", 4)}, None,
                              power_off_timeout_s=1, power_on_timeout_s=1, timeout_s=1), c.conf)
    am = load_actuator_map(amap)
    with AuditLog(am.audit_db, device=am.redfish.device) as log:  # a host Coolshift powered off earlier
        log.record("write", "intent", point="a-web-003", old_value=1.0, new_value=0.0, detail="GracefulShutdown")
    j = c.submit("--hold", "--comment", "coolshift", "--begin", "now+1hour", "-t", "5")  # held for Coolshift
    try:
        code, out = cli("release", "--actuators", amap)
        print(f"\n$ coolshift release --actuators actuators.yaml\n{out}[exit {code}]")
        assert code == 1, out
        assert "NOT HANDED BACK: hosts (redfish://127.0.0.1" in out and "NOT ON a-web-003" in out, out
        assert "handed back: jobs and nodes (slurm://cstest)" in out and f"released job {j}" in out, out
        assert not held(c, j) and "Traceback" not in out
    finally:
        c.run("scancel", str(j), check=False)


def test_a_credential_key_in_the_map_is_refused(tmp_path):
    """Credentials only from the environment: a credential-looking key anywhere is exit 2 naming
    file and key, before anything is contacted; class and pool names are names, not keys."""
    make_site(tmp_path, {"a_web": (4, 1)})
    conf = tmp_path / "slurm.conf"
    conf.write_text("ClusterName=cstest\n")

    class Service:
        url = "http://127.0.0.1:9"

    amap = make_map(tmp_path, Service, {"a_web": host_ids("a_web", 4)}, None)
    base = yaml.safe_load(amap.read_text())
    plan = make_plan(tmp_path / "run", {"a_web": 1}, extra={"release_units_per_h__batch": 0.0,
                                                            "active_servers__compute": 1})
    cases = [("slurm.password", {"slurm": {"cluster": "cstest", "conf": str(conf), **SECTION, "password": "x"}}),
             ("slurm.munge_key", {"slurm": {"cluster": "cstest", "conf": str(conf), **SECTION,
                                            "munge_key": "/etc/munge/munge.key"}}),
             ("redfish.token", {"redfish": {**base["redfish"], "token": "abc"}})]
    for key, change in cases:
        bad = tmp_path / f"bad-{key}.yaml"
        bad.write_text(yaml.safe_dump({**base, **change}, sort_keys=False))
        for args in (["release", "--actuators", bad], ["jobs", "--plan", plan, "--actuators", bad],
                     ["hosts", "--plan", plan, "--actuators", bad]):
            code, out = cli(*args)
            assert code == 2, (key, args, out)
            assert f"{bad}: {key}" in out and "Traceback" not in out, (key, args, out)
            assert "abc" not in out and "/etc/munge" not in out
    # the same map without the secret is read: a class or pool named user_* is not a credential
    good = tmp_path / "good.yaml"
    sec = {**SECTION, "classes": {"user_batch": {"partitions": ["batch"]}}}
    good.write_text(yaml.safe_dump({**base, "slurm": {"cluster": "cstest", "conf": str(conf), **sec}}))
    am = load_actuator_map(good)
    assert [k.name for k in am.slurm.classes] == ["user_batch"] and am.slurm.conf == conf
    # an unknown key in the section, and jobs from a map without one: exit 2 naming file and key
    odd = tmp_path / "odd.yaml"
    odd.write_text(yaml.safe_dump({**base, "slurm": {"cluster": "cstest", "conf": str(conf), **SECTION, "nodes": 3}}))
    code, out = cli("release", "--actuators", odd)
    assert code == 2 and f"{odd}: slurm: unknown key(s) nodes" in out, out
    code, out = cli("jobs", "--plan", plan, "--actuators", amap)
    assert code == 2 and f"{amap}: slurm: missing" in out, out
    code, out = cli("jobs-release", "--slurm", odd, "--actuators", amap)
    assert code == 2 and "exactly one of --slurm MAP or --actuators MAP" in out, out
    with pytest.raises(ConfigError, match="slurm.classes: expected"):
        bad = tmp_path / "noclass.yaml"
        bad.write_text(yaml.safe_dump({**base, "slurm": {"cluster": "cstest", "conf": str(conf)}}))
        load_actuator_map(bad)
    assert os.environ.get("COOLSHIFT_REDFISH_PASSWORD") == PASSWORD  # the env, not the file, holds it


@needs_slurm
def test_actuator_stepper_holds_and_releases_jobs_each_step(cluster, tmp_path, emulator_factory):
    """ActuatorStepper (what run-plan --actuators and the live loop call) with the map's slurm:
    section: release 0 holds the pending batch jobs, a release rate lets them go, release() lifts holds."""
    from coolshift.actuators.step import ActuatorStepper
    from coolshift.config import load_site

    c = cluster
    web = host_ids("a_web", 2)
    em = emulator_factory({h: "On" for h in web})
    make_site(tmp_path, {"a_web": (2, 1)})
    am = load_actuator_map(add_slurm(make_map(tmp_path, em, {"a_web": web}, {h: False for h in web}), c.conf))
    jobs = [c.submit("--begin", "now+1hour", "-t", "5") for _ in range(2)]
    try:
        with AuditLog(am.audit_db) as audit, ActuatorStepper(am, load_site(am.site), audit, apply=True) as st:
            assert st.columns() == ["active_servers__a_web", "active_servers__compute", "release_units_per_h__batch"]
            now = pd.Timestamp.now(tz="UTC")
            out = st.step(now, {"release_units_per_h__batch": 0.0})
            assert out.ok and out.status == {"slurm": "applied"} and out.slurm_actions == 2, out
            assert all(held(c, j) for j in jobs)
            out = st.step(now + pd.Timedelta(minutes=15), {"release_units_per_h__batch": 1e6})
            assert out.ok and out.slurm_actions == 2 and not any(held(c, j) for j in jobs), out
            out = st.step(now + pd.Timedelta(minutes=30), {"release_units_per_h__batch": 0.0})
            assert out.ok and all(held(c, j) for j in jobs), out
            lines = st.release()
            assert st.released_ok and all(f"job {j}: handed back" in lines for j in jobs), lines
        assert not any(held(c, j) for j in jobs)
        assert verify_audit(am.audit_db).ok
    finally:
        c.run("scancel", *map(str, jobs), check=False)
        c.wait(c.all_idle, 40, "every node idle again")
