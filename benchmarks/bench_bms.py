"""What the BMS safety layer costs: a verified, audited push against bare protocol round trips.

For each protocol, against `bms-sim`'s device for the Philadelphia site (5 setpoints) on
127.0.0.1, in one process:

- floor: a bare client writes each setpoint and reads it back (no checks, no audit);
- push:  ``coolshift.bms.push.push(apply=True)``: read state (BACnet: present value,
  priority array, relinquish-default), safety checks, intent record, write, read-back
  verification, result records (each an fsynced sqlite commit);
- release: relinquish every point and verify.

Prints a table, then the same figures as one JSON object on the last line.
Run: ``.venv/bin/python benchmarks/bench_bms.py [--repeats 5]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def _port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _plan(folder: Path, values: dict[str, float]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    t0 = pd.Timestamp.now(tz="UTC").floor("15min")
    idx = pd.date_range(t0, periods=2, freq="15min")
    df = pd.DataFrame({"timestamp": [t.isoformat() for t in idx], **{k: [v, v] for k, v in values.items()}})
    df.to_csv(folder / "plan.csv", index=False)
    (folder / "summary.json").write_text(json.dumps({"run_id": "bench", "site": "philadelphia_multihall_20mw",
                                                     "created_at": pd.Timestamp.now(tz="UTC").isoformat()}))
    return folder


async def _bench(protocol: str, repeats: int, tmp: Path) -> dict:
    from coolshift.bms.audit import AuditLog
    from coolshift.bms.adapters import open_adapter
    from coolshift.bms.plan import read_plan
    from coolshift.bms.points import load_point_map
    from coolshift.bms.push import push, release
    from coolshift.bms.sim import BacnetSim, ModbusSim, SimConditions
    from coolshift.config import load_site

    port = _port(socket.SOCK_DGRAM if protocol == "bacnet" else socket.SOCK_STREAM)
    audit = tmp / f"{protocol}.sqlite"
    pm = load_point_map(REPO / "configs" / "bms" / f"philadelphia_multihall_20mw_{protocol}.yaml",
                        environ={"COOLSHIFT_BMS_PORT": str(port), "COOLSHIFT_BMS_AUDIT": str(audit)})
    pm = pm.model_copy(update={"safety": pm.safety.model_copy(update={"min_write_interval_s": 0.0})})
    site = load_site(pm.resolve(pm.site))
    stop, ready = asyncio.Event(), asyncio.Event()
    sim = (BacnetSim if protocol == "bacnet" else ModbusSim)(pm, site, port, SimConditions())
    task = asyncio.create_task(sim.run(stop, ready=ready))
    await ready.wait()
    n = len(pm.writable)
    floor, push_s, release_s = [], [], []
    log = AuditLog(audit)
    try:
        async with open_adapter(pm) as ad:
            for r in range(repeats):
                v = 18.5 if r % 2 == 0 else 19.0
                values = {p.variable: (v if p.variable.startswith("supply") else v - 8.0) for p in pm.writable}
                plan = read_plan(_plan(tmp / f"plan_{protocol}_{r}", values))
                t = time.perf_counter()
                for p in pm.writable:  # bare floor: write, read back
                    await ad.write(p, values[p.variable])
                    await ad.read_value(p)
                floor.append(time.perf_counter() - t)
                await release(pm, log, adapter=ad)
                t = time.perf_counter()
                out = await push(pm, site, plan, log, apply=True, adapter=ad)
                push_s.append(time.perf_counter() - t)
                assert out.status == "applied", out.messages
                t = time.perf_counter()
                res = await release(pm, log, adapter=ad)
                release_s.append(time.perf_counter() - t)
                assert all(ok for _, ok, _ in res)
    finally:
        log.close()
        stop.set()
        await task
    med = lambda xs: float(pd.Series(xs).median())  # noqa: E731
    return {"protocol": protocol, "points": n, "floor_ms_per_point": 1e3 * med(floor) / n,
            "push_ms_per_point": 1e3 * med(push_s) / n, "release_ms_per_point": 1e3 * med(release_s) / n,
            "ratio_push_to_floor": med(push_s) / med(floor)}


def _audit_rate(tmp: Path, n: int = 200) -> float:
    from coolshift.bms.audit import AuditLog

    with AuditLog(tmp / "rate.sqlite") as log:
        t = time.perf_counter()
        for i in range(n):
            log.record("write", "intent", "p", old_value=1.0, new_value=float(i), priority=10)
        return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rows = [asyncio.run(_bench(p, args.repeats, tmp)) for p in ("bacnet", "modbus")]
        rate = _audit_rate(tmp)
    print(f"{'protocol':<9}{'points':>7}{'floor ms/pt':>13}{'push ms/pt':>12}{'release ms/pt':>15}{'push/floor':>12}")
    for r in rows:
        print(f"{r['protocol']:<9}{r['points']:>7}{r['floor_ms_per_point']:>13.2f}{r['push_ms_per_point']:>12.2f}"
              f"{r['release_ms_per_point']:>15.2f}{r['ratio_push_to_floor']:>12.2f}")
    print(f"audit log: {rate:,.0f} committed records/s (WAL, synchronous=FULL)")
    print(json.dumps({"rows": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in rows],
                      "audit_records_per_s": round(rate, 1)}))


if __name__ == "__main__":
    main()
