"""One step's consolidation for 1,000 hosts through Redfish, on the sushy-tools emulator.

Starts ``sushy-emulator`` (fake driver, unmodified: each power change lands 1-11 s after
its request; HTTP basic auth) on 127.0.0.1 with 1,000 systems in the San Jose site's four
pools (scaled to 300/250/150/300 servers), a fifth of them carrying work (seeded), and
enacts one plan step with ``coolshift.actuators.redfish.enact(apply=True)``, the code
``coolshift hosts --apply`` runs: list the Systems collection, read 1,000 power states,
choose, power idle hosts off (GracefulShutdown) and others on (paced), each audited and
read back.

``enact_s`` is wall time from connecting to the last read-back (target <= 30 s, issue 19).
``wrong_host_actions`` is counted from the audit log and the service, not from the code
under test: power-offs of hosts the work file marks busy, plus hosts a pool is below its
``min_active_servers`` afterwards. ``max_concurrent_power_on`` is the most power-ons in
flight (intent to read-back) at once, from the audit log.

Prints a table, then one JSON object as the last line.
Run: ``.venv/bin/python benchmarks/bench_actuators.py``
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import requests
import yaml

REPO = Path(__file__).resolve().parents[1]
SITE = REPO / "configs" / "sites" / "sanjose_colo_2mw.yaml"
TARGET_ENACT_S = 30.0  # issue 19, "Done when"
# pool: (servers, min_active_servers, on before, plan active servers for the step)
POOLS = {"a_web": (300, 60, 300, 150.4), "a_compute": (250, 25, 250, 100.0),
         "b_storage": (150, 150, 150, 150.0), "b_compute": (300, 30, 250, 290.0)}
BUSY_FRAC = 0.2
USER, PASSWORD = "bench", "bench-only"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-concurrent-power-on", type=int, default=20)
    ap.add_argument("--max-parallel-requests", type=int, default=16)
    ap.add_argument("--seed", type=int, default=19)
    args = ap.parse_args()
    import bcrypt

    from coolshift.actuators.inventory import (Credentials, load_actuator_map, load_inventory_spec, load_work,
                                               resolve_inventory)
    from coolshift.actuators.redfish import RedfishClient, enact, read_host_plan
    from coolshift.bms.audit import AuditLog, read_audit, verify_audit
    from coolshift.config import load_site

    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="bench_actuators_"))
    os.environ["COOLSHIFT_STATE_DIR"] = str(tmp / "state")
    hosts = {p: [f"{p.replace('_', '-')}-{i:04d}" for i in range(n)] for p, (n, _, _, _) in POOLS.items()}
    power = {}
    for p, hs in hosts.items():
        for i, h in enumerate(hs):
            power[h] = "On" if i < POOLS[p][2] else "Off"
    busy = {h: (power[h] == "On" and rng.random() < BUSY_FRAC) for hs in hosts.values() for h in hs}

    port = _port()
    (tmp / "htpasswd").write_text(f"{USER}:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()}\n")
    fake = [{"uuid": h, "name": h, "power_state": power[h]} for hs in hosts.values() for h in hs]
    (tmp / "emulator.conf").write_text(
        f"SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'\nSUSHY_EMULATOR_LISTEN_PORT = {port}\n"
        f"SUSHY_EMULATOR_FAKE_DRIVER = True\nSUSHY_EMULATOR_STATE_DIR = {str(tmp / 'emu')!r}\n"
        f"SUSHY_EMULATOR_AUTH_FILE = {str(tmp / 'htpasswd')!r}\nSUSHY_EMULATOR_FAKE_SYSTEMS = {fake!r}\n")
    log_f = open(tmp / "emulator.log", "w")
    emu = subprocess.Popen([str(Path(sys.executable).parent / "sushy-emulator"), "--config", str(tmp / "emulator.conf")],
                           stdout=log_f, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    s = requests.Session()
    s.trust_env, s.auth = False, (USER, PASSWORD)
    try:
        for _ in range(600):
            try:
                # the first request builds the fake driver's 1,000 systems (its sqlite state): slow
                if s.get(url + "/redfish/v1/Systems", timeout=120).ok:
                    break
            except (requests.ConnectionError, requests.Timeout):
                time.sleep(0.1)
        else:
            raise SystemExit(f"sushy-emulator did not start (log: {tmp / 'emulator.log'})")

        d = yaml.safe_load(SITE.read_text())
        for k in ("carbon", "weather", "workload"):
            d[k]["path"] = str((SITE.parent / d[k]["path"]).resolve())
        for p in d["server_pools"]:
            p["servers"], p["min_active_servers"] = POOLS[p["name"]][:2]
        (tmp / "site.yaml").write_text(yaml.safe_dump(d, sort_keys=False))
        (tmp / "hosts.yaml").write_text(yaml.safe_dump({"pools": hosts}))
        (tmp / "work.csv").write_text("host,busy\n" + "".join(f"{h},{str(b).lower()}\n" for h, b in busy.items()))
        (tmp / "actuators.yaml").write_text(yaml.safe_dump({
            "name": "bench", "site": "site.yaml", "audit_db": "audit.sqlite",
            "redfish": {"url": url, "inventory": "hosts.yaml", "work": "work.csv", "timeout_s": 10,
                        "max_concurrent_power_on": args.max_concurrent_power_on,
                        "max_parallel_requests": args.max_parallel_requests, "poll_interval_s": 0.5,
                        "power_off_timeout_s": 60, "power_on_timeout_s": 60}}))
        run = tmp / "run"
        run.mkdir()
        t0 = pd.Timestamp.now(tz="UTC").floor("15min")
        pd.DataFrame({"timestamp": pd.date_range(t0, periods=2, freq="15min").strftime("%Y-%m-%dT%H:%M:%S+00:00"),
                      **{f"active_servers__{p}": [v[3]] * 2 for p, v in POOLS.items()}}).to_csv(run / "plan.csv", index=False)
        (run / "summary.json").write_text(json.dumps({"run_id": "bench", "site": d["name"],
                                                      "created_at": pd.Timestamp.now(tz="UTC").isoformat()}))

        am = load_actuator_map(tmp / "actuators.yaml")
        site = load_site(am.site)
        spec = load_inventory_spec(am.redfish.inventory, site)
        plan = read_host_plan(run, list(POOLS))
        start = time.perf_counter()
        client = RedfishClient(am.redfish, Credentials(user=USER, password=PASSWORD))
        ids = client.system_ids()
        inv = resolve_inventory(spec, site, {i: i for i in ids})
        work = load_work(am.redfish.work, inv)
        with AuditLog(am.audit_db, run_id="bench", device=am.redfish.device) as log:
            rep = enact(client, site, inv, plan, log, busy=work.__getitem__, apply=True)
        enact_s = time.perf_counter() - start
        requests_sent = client.requests
        client.close()

        # independent checks: the service's states and the audit log
        after = {h: s.get(f"{url}/redfish/v1/Systems/{h}", timeout=10).json()["PowerState"] for h in power}
        df = read_audit(am.audit_db)
        writes = df[df["action"] == "write"]
        offs = writes[(writes["new_value"] == 0.0) & (writes["result"] == "intent")]["point"].tolist()
        ons = writes[(writes["new_value"] == 1.0) & (writes["result"] == "intent")]["point"].tolist()
        wrong = sum(1 for h in offs if busy[h])
        rows, events = [], []
        for p, (n, lo, before, want) in POOLS.items():
            on_after = sum(after[h] == "On" for h in hosts[p])
            wrong += max(0, lo - on_after)
            rows.append((p, n, lo, before, want, sum(busy[h] for h in hosts[p]),
                         sum(h in set(offs) for h in hosts[p]), sum(h in set(ons) for h in hosts[p]), on_after))
        for h, g in writes[writes["new_value"] == 1.0].groupby("point"):
            ids_ = g.sort_values("id")
            st = ids_[ids_["result"] == "intent"]["id"].tolist()
            en = ids_[ids_["result"] != "intent"]["id"].tolist()
            events += [(a, 1) for a in st] + [(b, -1) for b in en]
        live = peak = 0
        for _, dlt in sorted(events):
            live += dlt
            peak = max(peak, live)
        intact = verify_audit(am.audit_db).ok
    finally:
        emu.terminate()
        emu.wait(10)
        log_f.close()

    print(f"bench_actuators: {len(power)} hosts on sushy-emulator (fake driver, unmodified) at {url}; "
          f"{pd.Timestamp.now(tz='UTC').isoformat(timespec='seconds')}")
    print(f"{'pool':<10} {'servers':>7} {'min':>4} {'on before':>9} {'plan':>6} {'busy':>5} {'off':>4} {'on':>4} {'on after':>8}")
    for r in rows:
        print(f"{r[0]:<10} {r[1]:>7} {r[2]:>4} {r[3]:>9} {r[4]:>6g} {r[5]:>5} {r[6]:>4} {r[7]:>4} {r[8]:>8}")
    print(f"status {rep.status}; {len(offs)} power-offs, {len(ons)} power-ons; {requests_sent} Redfish requests; "
          f"audit log {len(df)} records, chain {'intact' if intact else 'BROKEN'}")
    verdict = "PASS" if enact_s <= TARGET_ENACT_S and wrong == 0 and rep.status == "applied" else "FAIL"
    print(f"enact_s {enact_s:.1f} s vs target {TARGET_ENACT_S:g} s; wrong_host_actions {wrong}; "
          f"max_concurrent_power_on {peak} (cap {args.max_concurrent_power_on}): {verdict}")
    print(json.dumps({"hosts": len(power), "enact_s": round(enact_s, 2), "target_enact_s": TARGET_ENACT_S,
                      "wrong_host_actions": wrong, "max_concurrent_power_on": peak,
                      "power_on_cap": args.max_concurrent_power_on, "power_offs": len(offs), "power_ons": len(ons),
                      "status": rep.status, "audit_intact": intact, "result": verdict}))


if __name__ == "__main__":
    main()
