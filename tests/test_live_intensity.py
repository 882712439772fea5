"""Live intensity sources (coolshift.io.live) against a local HTTP server on 127.0.0.1.

The server replays responses in the providers' documented formats. The fixture JSON below is
written by hand following the documentation (not captured from the real services):
Electricity Maps v3 (docs.electricitymaps.com; portal.electricitymaps.com/developer-hub/api/reference)
and WattTime v3 (docs.watttime.org: /login, /v3/forecast, /v3/historical). No other network.
Clocks are fake (``now=``); nothing sleeps except the timeout case (a fraction of a second).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest

from coolshift.io.live import (
    ElectricityMapsSource, FileSource, SourceError, StaleIntensity, WattTimeSource, fresh_forecast,
    lbs_per_mwh_to_g_per_kwh, parse_watttime,
)

EM_TOKEN = "em-secret-token-5f3a9c"
WT_TOKEN = "wt-jwt-secret-77e1b2"
WT_USER, WT_PASSWORD = "coolshift-ops", "wt-password-secret-0d4e"

# --- hand-written fixtures in the documented shapes ---------------------------------------------
# Electricity Maps v3 /carbon-intensity/latest: one object (values in gCO2eq/kWh).
EM_LATEST = {
    "zone": "DE", "carbonIntensity": 302, "datetime": "2024-05-01T09:00:00.000Z",
    "updatedAt": "2024-05-01T09:41:12.002Z", "createdAt": "2024-04-28T09:47:05.118Z",
    "emissionFactorType": "lifecycle", "isEstimated": True, "estimationMethod": "TIME_SLICER_AVERAGE",
}
# /carbon-intensity/history: {"zone", "history": [objects like latest]} (last 24 h; 3 hours here).
EM_HISTORY = {"zone": "DE", "history": [
    {"zone": "DE", "carbonIntensity": 310, "datetime": "2024-05-01T07:00:00.000Z", "updatedAt": "2024-05-01T08:40:00.000Z",
     "createdAt": "2024-04-28T07:47:05.118Z", "emissionFactorType": "lifecycle", "isEstimated": False, "estimationMethod": None},
    {"zone": "DE", "carbonIntensity": 305, "datetime": "2024-05-01T08:00:00.000Z", "updatedAt": "2024-05-01T09:40:00.000Z",
     "createdAt": "2024-04-28T08:47:05.118Z", "emissionFactorType": "lifecycle", "isEstimated": False, "estimationMethod": None},
    {"zone": "DE", "carbonIntensity": 300, "datetime": "2024-05-01T09:00:00.000Z", "updatedAt": "2024-05-01T09:40:00.000Z",
     "createdAt": "2024-04-28T09:47:05.118Z", "emissionFactorType": "lifecycle", "isEstimated": True,
     "estimationMethod": "TIME_SLICER_AVERAGE"},
]}
# /carbon-intensity/forecast: {"zone", "forecast": [{"carbonIntensity", "datetime"}], "updatedAt"}.
EM_FORECAST = {"zone": "DE", "forecast": [
    {"carbonIntensity": 298, "datetime": "2024-05-01T09:00:00.000Z"},
    {"carbonIntensity": 290, "datetime": "2024-05-01T10:00:00.000Z"},
    {"carbonIntensity": 281, "datetime": "2024-05-01T11:00:00.000Z"},
], "updatedAt": "2024-05-01T09:45:00.000Z"}
EM_NOW = pd.Timestamp("2024-05-01T09:50Z")

# WattTime v3 /login: {"token": ...}; /v3/forecast and /v3/historical: {"data": [{"point_time",
# "value"}], "meta": {..., "units": "lbs_co2_per_mwh", "generated_at" (forecast)}}.
WT_LOGIN = {"token": WT_TOKEN}
WT_META = {"data_point_period_seconds": 300, "region": "CAISO_NORTH", "warnings": [], "signal_type": "co2_moer",
           "model": {"date": "2023-03-01"}, "units": "lbs_co2_per_mwh"}
WT_FORECAST = {"data": [
    {"point_time": "2024-05-01T09:50:00+00:00", "value": 900.0},
    {"point_time": "2024-05-01T09:55:00+00:00", "value": 1000.0},
    {"point_time": "2024-05-01T10:00:00+00:00", "value": 880.5},
], "meta": {**WT_META, "generated_at_period_seconds": 300, "generated_at": "2024-05-01T09:50:00+00:00"}}
WT_HISTORICAL = {"data": [
    {"point_time": "2024-05-01T09:40:00+00:00", "value": 950.0},
    {"point_time": "2024-05-01T09:45:00+00:00", "value": 940.0},
], "meta": WT_META}
WT_NOW = pd.Timestamp("2024-05-01T09:52Z")


# --- a replaying server -------------------------------------------------------------------------
class Replay:
    """Per path, a list of (status, body, delay_s) replies served in order; the last one repeats."""

    def __init__(self):
        self.routes: dict[str, list[tuple[int, object, float]]] = {}
        self.requests: list[dict] = []

    def set(self, path: str, *replies):
        self.routes[path] = [r if isinstance(r, tuple) else (200, r, 0.0) for r in replies]


@pytest.fixture
def server():
    replay = Replay()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            url = urllib.parse.urlsplit(self.path)
            replay.requests.append({"path": url.path, "query": dict(urllib.parse.parse_qsl(url.query)),
                                    "headers": {k.lower(): v for k, v in self.headers.items()}})
            replies = replay.routes.get(url.path)
            if not replies:
                status, body, delay = 404, {"error": "no such route"}, 0.0
            else:
                status, body, delay = replies.pop(0) if len(replies) > 1 else replies[0]
            if delay:
                time.sleep(delay)
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            try:
                self.send_response(status)
                if status in (301, 302, 307):
                    self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout case)

        def log_message(self, *args):  # keep the test output clean
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.block_on_close = False
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    replay.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield replay
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def em(server, monkeypatch):
    monkeypatch.setenv("ELECTRICITYMAPS_TOKEN", EM_TOKEN)
    server.set("/v3/carbon-intensity/latest", EM_LATEST)
    server.set("/v3/carbon-intensity/history", EM_HISTORY)
    server.set("/v3/carbon-intensity/forecast", EM_FORECAST)
    return ElectricityMapsSource("DE", base_url=server.base + "/v3", timeout_s=2.0)


@pytest.fixture
def wt(server, monkeypatch):
    monkeypatch.delenv("WATTTIME_TOKEN", raising=False)
    monkeypatch.setenv("WATTTIME_USER", WT_USER)
    monkeypatch.setenv("WATTTIME_PASSWORD", WT_PASSWORD)
    server.set("/login", WT_LOGIN)
    server.set("/v3/forecast", WT_FORECAST)
    server.set("/v3/historical", WT_HISTORICAL)
    return WattTimeSource("CAISO_NORTH", base_url=server.base, timeout_s=2.0)


def _no_secret(*texts):
    for text in texts:
        for secret in (EM_TOKEN, WT_TOKEN, WT_PASSWORD, base64.b64encode(f"{WT_USER}:{WT_PASSWORD}".encode()).decode()):
            assert secret not in text


# --- units --------------------------------------------------------------------------------------
def test_pounds_per_mwh_to_grams_per_kwh_by_hand():
    # 1 lb = 453.59237 g exactly (1959 agreement); 1 MWh = 1000 kWh: 900 lb/MWh = 900*453.59237/1000 g/kWh
    assert float(lbs_per_mwh_to_g_per_kwh(900.0)) == pytest.approx(408.233133, abs=1e-9)
    assert float(lbs_per_mwh_to_g_per_kwh(1.0)) == pytest.approx(0.45359237, abs=1e-15)


# --- Electricity Maps ---------------------------------------------------------------------------
def test_electricitymaps_documented_json_becomes_canonical_frames(em, server, caplog, capsys):
    caplog.set_level(logging.DEBUG, logger="coolshift")
    snap = em.fetch(now=EM_NOW)
    # actual: history with the latest value winning its hour; canonical frame
    assert list(snap.actual.columns) == ["gco2_per_kwh"] and snap.actual.index.name == "timestamp"
    assert str(snap.actual.index.tz) == "UTC"
    assert snap.actual["gco2_per_kwh"].tolist() == [310.0, 305.0, 302.0]
    # forecast: from the hour containing now (09:00-10:00) on
    assert snap.forecast.index[0] == pd.Timestamp("2024-05-01T09:00Z")
    assert snap.forecast["gco2_per_kwh"].tolist() == [298.0, 290.0, 281.0]
    assert snap.issued_at == pd.Timestamp("2024-05-01T09:45Z") and snap.age_s(EM_NOW) == 300.0
    assert snap.signal == "average"
    # the token in the documented header, on every call; zone and factor type as query parameters
    assert [r["path"] for r in server.requests] == ["/v3/carbon-intensity/latest", "/v3/carbon-intensity/history",
                                                    "/v3/carbon-intensity/forecast"]
    assert all(r["headers"]["auth-token"] == EM_TOKEN for r in server.requests)
    assert all(r["query"] == {"zone": "DE", "emissionFactorType": "lifecycle"} for r in server.requests)
    assert all(EM_TOKEN not in json.dumps(r["query"]) for r in server.requests)
    out = capsys.readouterr()
    _no_secret(caplog.text, out.out, out.err, repr(em), repr(snap.meta))
    assert "electricitymaps DE" in caplog.text  # it does log, just not the token


def test_electricitymaps_missing_token_names_the_variable_not_a_value(em, monkeypatch):
    monkeypatch.delenv("ELECTRICITYMAPS_TOKEN")
    with pytest.raises(SourceError, match="environment variable ELECTRICITYMAPS_TOKEN is not set"):
        em.fetch(now=EM_NOW)


# --- WattTime -----------------------------------------------------------------------------------
def test_watttime_logs_in_sends_bearer_and_converts_lbs_per_mwh(wt, server, caplog, capsys):
    caplog.set_level(logging.DEBUG, logger="coolshift")
    snap = wt.fetch(now=WT_NOW)
    login, fc, hist = server.requests
    assert login["path"] == "/login"
    assert base64.b64decode(login["headers"]["authorization"].removeprefix("Basic ")).decode() == f"{WT_USER}:{WT_PASSWORD}"
    assert fc["path"] == "/v3/forecast" and fc["headers"]["authorization"] == f"Bearer {WT_TOKEN}"
    assert fc["query"] == {"region": "CAISO_NORTH", "signal_type": "co2_moer", "horizon_hours": "24"}
    assert hist["path"] == "/v3/historical" and hist["headers"]["authorization"] == f"Bearer {WT_TOKEN}"
    assert pd.Timestamp(hist["query"]["end"]) == WT_NOW and pd.Timestamp(hist["query"]["start"]) == WT_NOW - pd.Timedelta("24h")
    # by hand: x lb/MWh * 453.59237 g/lb / 1000 kWh/MWh
    assert snap.forecast["gco2_per_kwh"].tolist() == pytest.approx([408.233133, 453.59237, 399.388082], abs=1e-6)
    assert snap.actual["gco2_per_kwh"].tolist() == pytest.approx([430.9127515, 426.3768278], abs=1e-6)
    assert snap.issued_at == pd.Timestamp("2024-05-01T09:50Z") and snap.signal == "marginal"
    # the second fetch reuses the login token (no second /login)
    wt.fetch(now=WT_NOW)
    assert [r["path"] for r in server.requests].count("/login") == 1
    out = capsys.readouterr()
    _no_secret(caplog.text, out.out, out.err, repr(wt))


def test_watttime_token_from_the_environment_skips_login(wt, server, monkeypatch):
    monkeypatch.setenv("WATTTIME_TOKEN", "env-token-abc")
    wt.history_hours = 0
    snap = wt.fetch(now=WT_NOW)
    assert [r["path"] for r in server.requests] == ["/v3/forecast"]
    assert server.requests[0]["headers"]["authorization"] == "Bearer env-token-abc"
    assert snap.actual.empty and len(snap.forecast) == 3


def test_watttime_logs_in_again_once_when_the_token_expired(wt, server):
    server.set("/v3/forecast", (401, {"error": "token expired"}, 0.0), WT_FORECAST)
    snap = wt.fetch(now=WT_NOW)
    assert [r["path"] for r in server.requests] == ["/login", "/v3/forecast", "/login", "/v3/forecast", "/v3/historical"]
    assert len(snap.forecast) == 3


def test_watttime_refuses_other_units():
    other = {**WT_FORECAST, "meta": {**WT_FORECAST["meta"], "units": "percentile"}}
    with pytest.raises(SourceError, match="units 'percentile', expected 'lbs_co2_per_mwh'"):
        parse_watttime(other, "watttime CAISO_NORTH")


# --- failures: one named error, no traceback chain, no token ------------------------------------
@pytest.mark.parametrize("reply, expected, status", [
    ((401, {"message": f"bad token {EM_TOKEN}"}, 0.0), "HTTP 401", 401),
    ((500, {"message": "internal"}, 0.0), "HTTP 500", 500),
    ((200, b"<html>gateway says hello</html>", 0.0), "not JSON", 200),
    ((200, {"zone": "DE", "unexpected": []}, 0.0), "no 'forecast' list", None),
    ((200, {"zone": "DE", "forecast": [{"carbonIntensity": 0.3, "datetime": "2024-05-01T10:00Z"},
                                       {"carbonIntensity": 5000, "datetime": "2024-05-01T11:00Z"}],
            "updatedAt": "2024-05-01T09:45:00Z"}, 0.0), "outside 0..2000", None),
    ((302, {}, 0.0), "redirect refused", 302),
    ((200, EM_FORECAST, 1.5), "timed out after 0.3 s", None),
])
def test_a_failed_request_is_a_named_error(em, server, reply, expected, status, caplog):
    caplog.set_level(logging.DEBUG, logger="coolshift")
    em.timeout_s = 0.3
    server.set("/v3/carbon-intensity/forecast", reply)
    with pytest.raises(SourceError) as info:
        em.fetch(now=EM_NOW)
    err = info.value
    msg = str(err)
    assert msg.startswith("electricitymaps DE: ") and expected in msg and "\n" not in msg
    assert err.status == status and err.source == "electricitymaps DE"
    # raised `from None` (or outside any handler): no chained traceback that could carry a request
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)
    _no_secret(msg, caplog.text)
    assert em.last_error is err
    if status == 302:  # the redirect target never saw the token (and was not contacted at all)
        assert all(r["path"].startswith("/v3/") for r in server.requests)


def test_watttime_login_refused_is_named_without_the_password(wt, server, caplog):
    caplog.set_level(logging.DEBUG, logger="coolshift")
    server.set("/login", (403, {"error": "nope"}, 0.0))
    with pytest.raises(SourceError, match=r"watttime CAISO_NORTH: login failed: HTTP 403") as info:
        wt.fetch(now=WT_NOW)
    _no_secret(str(info.value), caplog.text)


# --- staleness ----------------------------------------------------------------------------------
def test_a_source_that_fails_then_recovers(em, server):
    server.set("/v3/carbon-intensity/latest", (500, {"message": "down"}, 0.0), EM_LATEST)
    with pytest.raises(StaleIntensity, match="failed and there is no earlier data.*HTTP 500"):
        fresh_forecast(em, now=EM_NOW, max_age_s=3600)
    snap = fresh_forecast(em, now=EM_NOW, max_age_s=3600)
    assert snap.error is None and em.last_error is None
    assert snap.forecast["gco2_per_kwh"].tolist() == [298.0, 290.0, 281.0]


def test_during_an_outage_the_forecast_ages_out(em, server):
    fresh_forecast(em, now=EM_NOW, max_age_s=3600)  # issued 09:45
    server.set("/v3/carbon-intensity/latest", (503, {"message": "maintenance"}, 0.0))
    later = pd.Timestamp("2024-05-01T10:30Z")  # 45 min after issue: the last good data still serve
    snap = fresh_forecast(em, now=later, max_age_s=3600)
    assert "HTTP 503" in snap.error
    assert snap.forecast.index[0] == pd.Timestamp("2024-05-01T10:00Z")  # the passed hour is dropped
    with pytest.raises(StaleIntensity, match=r"HTTP 503.*3,900 s old \(limit 3,600 s\)") as info:
        fresh_forecast(em, now=pd.Timestamp("2024-05-01T10:50Z"), max_age_s=3600)
    assert info.value.age_s == 3900 and info.value.max_age_s == 3600
    with pytest.raises(StaleIntensity):  # strict mode refuses at the first failure
        fresh_forecast(em, now=later, max_age_s=3600, use_last_good=False)


def test_old_data_from_a_working_source_are_refused(em, server):
    with pytest.raises(StaleIntensity, match="issued 2024-05-01T09:45:00\\+00:00, 900 s old \\(limit 600 s\\)"):
        fresh_forecast(em, now=pd.Timestamp("2024-05-01T10:00Z"), max_age_s=600)


def _write_series(path, start, hours, base=200.0):
    stamps = pd.date_range(start, periods=hours, freq="h", tz="UTC")
    rows = [f"{t.strftime('%Y-%m-%dT%H:%M:%SZ')},{base + i:.1f}" for i, t in enumerate(stamps)]
    path.write_text("timestamp,gco2_per_kwh\n" + "\n".join(rows) + "\n")


def _set_mtime(path, ts):
    ns = pd.Timestamp(ts).value
    os.utime(path, ns=(ns, ns))


def test_file_source_splits_at_now_and_goes_stale_when_the_file_stops_updating(tmp_path):
    path = tmp_path / "carbon.csv"
    t0 = pd.Timestamp("2024-05-01T06:00Z")
    _write_series(path, "2024-05-01T00:00Z", 48)
    _set_mtime(path, t0)
    src = FileSource(path, max_age_s=2 * 3600)
    snap = fresh_forecast(src, now=t0 + pd.Timedelta("30min"))
    assert snap.issued_at == t0 and snap.age_s(t0 + pd.Timedelta("30min")) == 1800
    assert snap.actual.index[-1] == pd.Timestamp("2024-05-01T06:00Z") and len(snap.actual) == 7
    assert snap.forecast.index[0] == pd.Timestamp("2024-05-01T06:00Z")  # the hour in progress
    assert snap.forecast.index[-1] == pd.Timestamp("2024-05-02T23:00Z")
    # the file is not rewritten: fine up to 2 h after its last write, stale after
    fresh_forecast(src, now=t0 + pd.Timedelta("2h"))
    assert src.reads == 1  # unchanged file, not parsed again
    with pytest.raises(StaleIntensity, match=r"7,260 s old \(limit 7,200 s\)"):
        fresh_forecast(src, now=t0 + pd.Timedelta("2h") + pd.Timedelta("1min"))
    # the outside job writes again: re-read, fresh, new values
    _write_series(path, "2024-05-01T00:00Z", 48, base=100.0)
    _set_mtime(path, t0 + pd.Timedelta("3h"))
    snap = fresh_forecast(src, now=t0 + pd.Timedelta("3h5min"))
    assert src.reads == 2 and snap.forecast["gco2_per_kwh"].iloc[0] == 109.0


def test_file_source_with_no_rows_ahead_is_refused(tmp_path):
    path = tmp_path / "carbon.csv"
    _write_series(path, "2024-05-01T00:00Z", 6)
    _set_mtime(path, "2024-05-01T08:00Z")
    with pytest.raises(StaleIntensity, match="no forecast from 2024-05-01T08:10:00\\+00:00 on"):
        fresh_forecast(FileSource(path, 3600), now="2024-05-01T08:10Z")


def test_file_source_reads_issued_forecasts(tmp_path):
    path = tmp_path / "moer_forecast.csv"
    rows = ["request_time,forecast_time,CAISO_NORTH"]
    for issue, level in (("2024-05-01T09:00:00Z", 300.0), ("2024-05-01T09:05:00Z", 320.0)):
        for k in range(6):
            ft = pd.Timestamp(issue) + pd.Timedelta(minutes=5 * k)
            rows.append(f"{issue},{ft.strftime('%Y-%m-%dT%H:%M:%SZ')},{level + k:.1f}")
    path.write_text("\n".join(rows) + "\n")
    _set_mtime(path, "2024-05-01T09:30Z")  # the mtime is not the issue time for these files
    src = FileSource(path, max_age_s=900)
    snap = fresh_forecast(src, now="2024-05-01T09:06Z")
    assert snap.issued_at == pd.Timestamp("2024-05-01T09:05Z") and snap.signal == "marginal"
    assert snap.forecast["gco2_per_kwh"].tolist() == [320.0, 321.0, 322.0, 323.0, 324.0, 325.0]
    assert snap.actual["gco2_per_kwh"].tolist() == [300.0, 320.0]  # each issue's nowcast
    with pytest.raises(StaleIntensity, match="960 s old"):
        fresh_forecast(src, now="2024-05-01T09:21Z")


def test_file_source_missing_or_bad_file_is_a_named_error(tmp_path):
    src = FileSource(tmp_path / "gone.csv", 3600)
    with pytest.raises(SourceError, match="gone.csv: file not found"):
        src.fetch(now="2024-05-01T00:00Z")
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,gco2_per_kwh\n2024-05-01T00:00:00Z,0.3\n2024-05-01T01:00:00Z,0.31\n")
    with pytest.raises(StaleIntensity, match="kgCO2/kWh"):
        fresh_forecast(FileSource(bad, 3600), now="2024-05-01T00:30Z")
