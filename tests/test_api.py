"""The live loop's REST API and /metrics over real HTTP on 127.0.0.1, with the loop running against the twin.

The twin (Modbus TCP on 127.0.0.1, speed 900: a 15-min step per second) runs in its own
thread (tests/test_operate.py's helpers); the loop and the API (uvicorn) share the test's
event loop in the main thread, as in ``coolshift operate --api``; the scenario talks HTTP
from a worker thread with httpx, as an operator's tool would.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import socket
import time

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from coolshift.bms.audit import AuditLog, read_audit
from coolshift.config import ConfigError
from coolshift.control.live import LiveLimits
from coolshift.services.api import _operator_name, api_running, create_app, parse_listen, serve
from coolshift.usecases.operate import LiveView, OperateOptions, OperatorInbox, run_operate
from test_bms_kit import free_port
from test_bms_kit import state_dir  # noqa: F401 (autouse: a private COOLSHIFT_STATE_DIR per test)
from test_operate import SPEED, TwinThread, _twin, site_data  # noqa: F401 (site_data: the module fixture)

pytestmark = pytest.mark.timeout(120)

TOKEN = "test-token-7f3a9c"  # a test's own secret, set in the environment of the loop's process
STEP_S = 900.0 / SPEED


def wait_for(cond, what: str, timeout_s: float = 15.0, every_s: float = 0.05):
    """Poll ``cond()`` until it returns something truthy; fail naming ``what``."""
    t_end = time.monotonic() + timeout_s
    while True:
        out = cond()
        if out:
            return out
        assert time.monotonic() < t_end, f"timed out waiting for {what}"
        time.sleep(every_s)


def metrics_of(text: str) -> dict[tuple[str, tuple], float]:
    """/metrics parsed by prometheus_client's own parser: (sample name, labels) -> value."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def run_live(pm, site, data, model, during, after=None, *, token_env: str = "COOLSHIFT_API_TOKEN"):
    """The loop (``operate --apply``) and its API on a free port; ``during(base_url)`` runs in a
    thread while the loop runs, ``after(base_url)`` once the loop has stopped (the API still up)."""
    view, inbox = LiveView(), OperatorInbox()
    port = free_port(socket.SOCK_STREAM)
    base = f"http://127.0.0.1:{port}"
    opts = OperateOptions(apply=True, steps=None, interval_s=STEP_S,
                          limits=LiveLimits(telemetry_max_age_s=1.5 * STEP_S, horizon_h=6.0))

    async def main():
        with AuditLog(pm.resolve(pm.audit_db)) as audit:
            async with api_running(create_app(view, inbox, audit, token_env=token_env, point_map=pm), "127.0.0.1", port):
                stop_loop = asyncio.Event()
                loop = asyncio.create_task(run_operate(pm, site, data, model, audit, opts, None, log=lambda m: None,
                                                       stop=stop_loop, inbox=inbox, view=view))
                try:
                    got = await asyncio.to_thread(during, base)
                finally:
                    stop_loop.set()
                    res = await loop
                got_after = await asyncio.to_thread(after, base) if after is not None else None
        return res, view, got, got_after

    return asyncio.run(main())


def test_read_endpoints_and_metrics_show_what_the_loop_did(tmp_path, site_data, small_site_model):
    site, data = site_data
    twin, pm = _twin(tmp_path, site, data)

    def during(base):
        with httpx.Client(base_url=base, timeout=10) as c:
            wait_for(lambda: c.get("/api/status").json().get("steps_written", 0) >= 3, "3 steps written")
            points = c.get("/api/points").json()
            held = twin.server.held_by_supervisor()
            m = metrics_of(c.get("/metrics").text)
        return points, held, m

    def after(base):
        with httpx.Client(base_url=base, timeout=10) as c:
            return {p: c.get(p).json() for p in ("/api/status", "/api/plan", "/api/telemetry", "/api/points",
                                                 "/api/refusals", "/api/history?n=1000", "/api/audit?n=7")} | {
                "metrics": metrics_of(c.get("/metrics").text), "page": c.get("/")}

    with TwinThread(twin):
        res, view, (points, held, m_live), got = run_live(pm, site, data, small_site_model[1], during, after)
    assert res.exit_code == 0, res.reason
    # while it ran: every writable point commanded, on the twin and in the API alike
    assert all(held.values()) and set(held) == {p.variable for p in pm.writable}, held
    assert points["state"] == "running"
    assert {n: p["control"] for n, p in points["points"].items()} == {p.name: "coolshift" for p in pm.writable}
    for p in pm.writable:  # the planned column is the plan's target for the point's variable
        assert points["points"][p.name]["variable"] == p.variable
        assert isinstance(points["points"][p.name]["planned"], float)
    assert m_live[("coolshift_loop_state", (("state", "running"),))] == 1.0
    assert m_live[("coolshift_loop_state", (("state", "stopped"),))] == 0.0
    assert m_live[("coolshift_steps_written_total", ())] >= 3

    # after: the API returns exactly what the loop did
    st = got["/api/status"]
    assert st["state"] == "stopped" and st["steps"] == res.steps and st["steps_written"] == res.steps_written
    assert st["site_time"] == res.status["site_time"]
    assert got["/api/plan"]["plan"]["targets"] == res.status["plan"]["targets"]
    assert got["/api/plan"]["plan"]["status"] == res.status["plan"]["status"]
    assert got["/api/telemetry"] == {"site_time": res.status["site_time"], "telemetry": res.status["telemetry"]}
    assert {n: p["control"] for n, p in got["/api/points"]["points"].items()} == {p.name: "local" for p in pm.writable}
    assert got["/api/refusals"] == {"refusals": []}
    hist = got["/api/history?n=1000"]["steps"]
    assert [h["site_time"] for h in hist] == [h["site_time"] for h in view.history] and len(hist) >= 3
    assert [h["targets"] for h in hist] == [h["targets"] for h in view.history]
    # what the history says was written is what the twin ran under, point by point (a twin step may
    # fall between two points' writes; int16 x 0.1 on the wire)
    commanded = [r.overrides for r in twin.history if r.overrides]
    written = [h["targets"] for h in hist if h["state"] == "running"]
    assert commanded and all(any(abs(v - t[k]) <= 0.051 for t in written) for o in commanded for k, v in o.items()), \
        (commanded, written)
    # the audit tail: the log's last records, chain verified
    log = read_audit(pm.resolve(pm.audit_db))
    aud = got["/api/audit?n=7"]
    assert aud["chain_ok"] is True and aud["problems"] == [] and aud["total"] == len(log)
    assert [r["id"] for r in aud["records"]] == log["id"].tail(7).tolist()
    assert [r["hash"] for r in aud["records"]] == log["hash"].tail(7).tolist()
    assert aud["records"][-1]["action"] == "run" and aud["records"][-1]["result"] == "end"
    # /metrics: the gauges carry the status's values; PUE and carbon rate by hand from the last step
    m, tele = got["metrics"], res.status["telemetry"]
    assert m[("coolshift_steps_written_total", ())] == res.steps_written
    assert m[("coolshift_steps_total", ())] == res.steps
    assert m[("coolshift_loop_latency_seconds", ())] == pytest.approx(res.status["loop_latency_s"])
    assert m[("coolshift_carbon_so_far_kgco2", ())] == pytest.approx(res.status["kgco2_so_far"])
    assert res.status["kgco2_so_far"] > 0
    assert m[("coolshift_pue", ())] == pytest.approx(tele["facility_power_kw"] / tele["it_power_kw"])
    assert 1.0 < m[("coolshift_pue", ())] < 3.0
    gco2 = view.history[-1]["gco2_per_kwh"]
    assert m[("coolshift_carbon_rate_kgco2_per_hour", ())] == pytest.approx(tele["facility_power_kw"] * gco2 / 1000.0)
    drift = res.status.get("drift") or {}  # the drift gate's last check (none when it had nothing to compare)
    for key, name in (("inlet_error_c", "coolshift_drift_inlet_error_kelvin"),
                      ("cooling_error_frac", "coolshift_drift_cooling_error_ratio")):
        v = drift.get(key)
        if v is not None and math.isfinite(v):
            assert m[(name, ())] == pytest.approx(v)
        else:
            assert (name, ()) not in m
    assert m[("coolshift_loop_state", (("state", "stopped"),))] == 1.0
    assert m[("coolshift_loop_state", (("state", "running"),))] == 0.0
    assert m[("coolshift_refusals_total", ())] == 0 and m[("coolshift_api_refusals_total", ())] == 0
    if "kgco2_saved_so_far" in res.status:  # the loop's estimate, when it has one
        assert m[("coolshift_carbon_saved_so_far_kgco2", ())] == pytest.approx(res.status["kgco2_saved_so_far"])
    # the console page loads nothing from outside this process
    page = got["page"]
    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    assert "http://" not in page.text and "https://" not in page.text


def _audited_refusals(pm) -> list[str]:
    log = read_audit(pm.resolve(pm.audit_db))
    return log.loc[(log.action == "operator") & (log.result == "refused"), "detail"].tolist()


def test_actions_need_the_token_and_pause_hands_back_resume_writes_again(tmp_path, site_data, small_site_model,
                                                                          monkeypatch):
    monkeypatch.setenv("COOLSHIFT_API_TOKEN", TOKEN)
    site, data = site_data
    twin, pm = _twin(tmp_path, site, data)
    seen = {}

    def during(base):
        with httpx.Client(base_url=base, timeout=10) as c:
            status = lambda: c.get("/api/status").json()  # noqa: E731
            wait_for(lambda: status().get("steps_written", 0) >= 2 and all(twin.server.held_by_supervisor().values()),
                     "every point commanded")
            # no token, then a wrong one: refused, audited, nothing changes
            r = c.post("/api/release", json={"operator": "mallory"})
            seen["no_token"] = (r.status_code, r.headers.get("www-authenticate"), r.json())
            r = c.post("/api/release", json={"operator": "mallory"}, headers={"Authorization": "Bearer guessed"})
            seen["wrong_token"] = (r.status_code, r.json())
            r = c.post("/api/pause", headers={"Authorization": f"Basic {TOKEN}"})
            seen["not_bearer"] = r.status_code
            seen["refusals_audited"] = _audited_refusals(pm)
            time.sleep(1.5 * STEP_S)
            seen["held_after_refusals"] = twin.server.held_by_supervisor()
            seen["state_after_refusals"] = status()["state"]
            # the right token: pause hands every point back on the twin at once
            t0 = time.monotonic()
            r = c.post("/api/pause", json={"operator": "alice"}, headers={"Authorization": f"Bearer {TOKEN}"})
            seen["pause"] = (r.status_code, r.json())
            wait_for(lambda: not any(twin.server.held_by_supervisor().values()), "every point handed back", 5)
            seen["pause_to_local_s"] = time.monotonic() - t0
            st = wait_for(lambda: (s := status())["state"] == "paused" and s, "state paused")
            seen["paused_status"] = st
            written, written_steps = st["steps_written"], st["steps"]
            # paused: the loop goes on planning (two more steps, however long a loaded machine
            # takes to solve them) and never writes
            st = wait_for(lambda: (s := status())["steps"] - written_steps >= 2 and s, "two steps planned while paused", 90)
            seen["paused_later"] = (st["state"], st["steps_written"] - written, st["steps"] - seen["paused_status"]["steps"],
                                    twin.server.held_by_supervisor())
            seen["points_paused"] = c.get("/api/points").json()
            seen["metrics_paused"] = metrics_of(c.get("/metrics").text)
            # resume: writes again from the next step
            r = c.post("/api/resume", headers={"Authorization": f"Bearer {TOKEN}", "X-Coolshift-Operator": "bob"})
            seen["resume"] = r.status_code
            wait_for(lambda: all(twin.server.held_by_supervisor().values()), "points commanded again", 10)
            seen["resumed"] = wait_for(lambda: (s := status())["steps_written"] > written and s["state"] == "running"
                                       and s, "a step written after resume", 10)

    with TwinThread(twin):
        res, view, _, _ = run_live(pm, site, data, small_site_model[1], during)
    assert res.exit_code == 0, res.reason
    code, challenge, body = seen["no_token"]
    assert code == 401 and challenge.startswith("Bearer") and "bearer token" in body["error"]
    assert seen["wrong_token"][0] == 403 and seen["wrong_token"][1]["error"] == "wrong token"
    assert seen["not_bearer"] == 401
    refusals = seen["refusals_audited"]
    assert len(refusals) == 3, refusals
    assert "release by mallory from 127.0.0.1 refused: no bearer token" in refusals[0]
    assert "release by mallory from 127.0.0.1 refused: wrong token" in refusals[1]
    assert not any(TOKEN in d or "guessed" in d for d in refusals)  # never the token, right or wrong
    assert all(seen["held_after_refusals"].values()) and seen["state_after_refusals"] == "running"
    assert seen["pause"][0] == 202 and seen["pause"][1]["requested_by"] == "alice from 127.0.0.1"
    assert seen["pause_to_local_s"] < 2 * STEP_S, seen["pause_to_local_s"]
    assert seen["paused_status"]["paused_by"] == "alice from 127.0.0.1"
    state, new_writes, new_steps, held = seen["paused_later"]
    assert state == "paused" and new_writes == 0 and new_steps >= 1 and not any(held.values()), seen["paused_later"]
    assert {p["control"] for p in seen["points_paused"]["points"].values()} == {"local"}
    assert seen["metrics_paused"][("coolshift_loop_state", (("state", "paused"),))] == 1.0
    assert seen["metrics_paused"][("coolshift_api_refusals_total", ())] == 3
    assert seen["resume"] == 202 and seen["resumed"]["paused_by"] is None
    log = read_audit(pm.resolve(pm.audit_db))
    ops = log.loc[(log.action == "operator") & (log.result == "ok"), "detail"].tolist()
    assert ops == ["pause requested by alice from 127.0.0.1", "resume requested by bob from 127.0.0.1"], ops
    # the hand-back on pause is in the log: every writable point relinquished after the pause record
    i_pause = log.index[(log.action == "operator") & (log.result == "ok")][0]
    relinquished = log.loc[i_pause:].query("action == 'relinquish' and result == 'ok'")["point"]
    assert set(relinquished) == {p.name for p in pm.writable}, relinquished
    print({"pause_to_local_s": round(seen["pause_to_local_s"], 3)})


def test_actions_are_disabled_without_a_configured_token_and_the_refusal_is_audited(tmp_path, monkeypatch):
    """No loop needed: the app alone on 127.0.0.1, the variable unset."""
    monkeypatch.delenv("COOLSHIFT_API_TOKEN", raising=False)
    port = free_port(socket.SOCK_STREAM)
    view, inbox = LiveView(status={"state": "running"}), OperatorInbox()

    async def main():
        with AuditLog(tmp_path / "audit.db") as audit:
            stop, started = asyncio.Event(), asyncio.Event()
            api = asyncio.create_task(serve(create_app(view, inbox, audit), "127.0.0.1", port, stop, started=started))
            await asyncio.wait_for(started.wait(), 10)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
                r = await c.post("/api/release", headers={"Authorization": "Bearer anything"})
                m = metrics_of((await c.get("/metrics")).text)
            stop.set()
            await api
        return r, m

    r, m = asyncio.run(main())
    assert r.status_code == 503 and "COOLSHIFT_API_TOKEN" in r.json()["error"]
    assert inbox.take() == []  # nothing reached the loop
    log = read_audit(tmp_path / "audit.db")
    assert log[["action", "result"]].values.tolist() == [["operator", "refused"]]
    assert "release by unnamed operator from 127.0.0.1 refused: operator actions are disabled" in log.detail[0]
    assert "anything" not in log.detail[0]
    assert m[("coolshift_api_refusals_total", ())] == 1
    # no telemetry yet: no PUE or carbon-rate sample rather than a made-up 0
    assert ("coolshift_pue", ()) not in m and ("coolshift_carbon_rate_kgco2_per_hour", ()) not in m


def test_serve_refuses_a_non_loopback_host_and_a_port_in_use(tmp_path):
    assert parse_listen("127.0.0.1:8787") == ("127.0.0.1", 8787)
    assert parse_listen("[::1]:9000") == ("::1", 9000)
    assert parse_listen("localhost:1") == ("localhost", 1)
    for bad in ("0.0.0.0:8787", "10.1.2.3:80", "example.org:80"):
        with pytest.raises(ConfigError, match="not a loopback address"):
            parse_listen(bad)
    assert parse_listen("0.0.0.0:8787", allow_remote=True) == ("0.0.0.0", 8787)
    for bad in ("8787", "127.0.0.1:", "127.0.0.1:http", "127.0.0.1:70000", "127.0.0.1:0"):
        with pytest.raises(ConfigError, match="is not HOST:PORT"):
            parse_listen(bad)
    with socket.socket() as taken, AuditLog(tmp_path / "a.db") as audit:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        app = create_app(LiveView(), OperatorInbox(), audit)
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}"):
            asyncio.run(serve(app, "127.0.0.1", port, asyncio.Event()))
        with pytest.raises(ConfigError, match="not a loopback address"):
            asyncio.run(serve(app, "192.0.2.1", 8787, asyncio.Event()))

        async def enter():
            async with api_running(app, "127.0.0.1", port):
                raise AssertionError("served on a port in use")

        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}"):
            asyncio.run(enter())


@given(st.text(max_size=300))
def test_an_operator_name_reaches_the_audit_log_printable_and_short(raw):
    name = _operator_name(raw)
    assert 0 < len(name) <= 64 and name.isprintable()
    assert not set(name) & set("\n\r\t<>\"'`;")
    if not any(ch.isascii() and (ch.isalnum() or ch in " ._@+-") for ch in raw):
        assert name == "unnamed operator"


def test_metrics_hand_computed_from_a_status():
    """Round numbers: 1200 kW facility, 1000 kW IT at 250 g/kWh -> PUE 1.2, 300 kgCO2/h."""
    from coolshift.services.metrics import LoopCollector, carbon_rate_kgco2_per_h, loop_registry, pue
    from prometheus_client import generate_latest

    assert pue(1200.0, 1000.0) == pytest.approx(1.2) and carbon_rate_kgco2_per_h(1200.0, 250.0) == pytest.approx(300.0)
    assert pue(1200.0, 0.0) is None and carbon_rate_kgco2_per_h(None, 250.0) is None
    status = {"state": "handed_back", "telemetry": {"facility_power_kw": 1200.0, "it_power_kw": 1000.0},
              "refusals": [{"reasons": ["x"]}, {"reasons": ["y"]}], "kgco2_so_far": 75.0, "kgco2_saved_so_far": 5.5,
              "drift": {"cooling_error_frac": float("nan"), "inlet_error_c": 0.25}, "steps": 4, "steps_written": 2}
    m = metrics_of(generate_latest(loop_registry(LoopCollector(lambda: status, lambda: [{"gco2_per_kwh": 250.0}],
                                                               lambda: 0))).decode())
    assert m[("coolshift_pue", ())] == pytest.approx(1.2)
    assert m[("coolshift_carbon_rate_kgco2_per_hour", ())] == pytest.approx(300.0)
    assert m[("coolshift_refusals_total", ())] == 2
    assert m[("coolshift_carbon_saved_so_far_kgco2", ())] == 5.5
    assert ("coolshift_drift_cooling_error_ratio", ()) not in m  # NaN is no measurement
    assert m[("coolshift_drift_inlet_error_kelvin", ())] == 0.25
    assert [k[1][0][1] for k, v in m.items() if k[0] == "coolshift_loop_state" and v == 1.0] == ["handed_back"]
    assert math.isclose(m[("coolshift_steps_written_total", ())], 2)


def test_the_api_leaves_the_loops_signal_handlers_alone(tmp_path):
    """SIGTERM goes to the loop's handler (which hands back, then stops the API), even when the API
    started after the handler was installed; uvicorn keeps serving until told to stop."""
    port = free_port(socket.SOCK_STREAM)

    async def main():
        loop, got = asyncio.get_running_loop(), asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, got.set)
        try:
            with AuditLog(tmp_path / "a.db") as audit:
                async with api_running(create_app(LiveView(status={"state": "running"}), OperatorInbox(), audit),
                                       "127.0.0.1", port):
                    os.kill(os.getpid(), signal.SIGTERM)
                    await asyncio.wait_for(got.wait(), 5)
                    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as c:
                        return (await c.get("/api/status")).json()
        finally:
            loop.remove_signal_handler(signal.SIGTERM)

    assert asyncio.run(main()) == {"state": "running"}
