"""Live grid carbon-intensity sources for the live loop (`coolshift operate`, issue 18 item 6).

Three sources, one result: a file refreshed by an outside job (:class:`FileSource`), the
Electricity Maps v3 API (:class:`ElectricityMapsSource`) and the WattTime v3 API
(:class:`WattTimeSource`). Each ``fetch(now)`` returns an :class:`IntensitySnapshot`: the
actual intensity so far and the forecast ahead as canonical frames (UTC ``timestamp`` index,
column ``gco2_per_kwh``) and the time the data was issued, from which its age follows.

:func:`fresh_forecast` is the one gate the loop calls: it returns a snapshot no older than the
configured age, or raises :class:`StaleIntensity`, so the loop hands back to local control
instead of planning on old data. A failed request raises :class:`SourceError` naming the source
and the HTTP status; tokens come from the environment only and never appear in a message or
a log line. Parsing is pure (``parse_*``); the HTTP and file reads are at the edges.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from coolshift.io.carbon import read_carbon, read_carbon_forecast
from coolshift.io.checks import CARBON_RANGE_GCO2_PER_KWH, DataError, GapPolicy, read_header
from coolshift.schema import CARBON_GCO2_PER_KWH

__all__ = [
    "G_PER_LB", "KWH_PER_MWH", "lbs_per_mwh_to_g_per_kwh",
    "LiveIntensityError", "SourceError", "StaleIntensity", "IntensitySnapshot",
    "LiveSource", "FileSource", "ElectricityMapsSource", "WattTimeSource", "fresh_forecast",
    "parse_electricitymaps", "parse_watttime",
]

log = logging.getLogger(__name__)

# --- units --------------------------------------------------------------------------------------
# The international avoirdupois pound is exactly 0.45359237 kg (International Yard and Pound
# Agreement, 1959; NIST SP 811 (2008) Appendix B.8), i.e. 453.59237 g; 1 MWh = 1000 kWh (SI).
# So x lb/MWh = x * 453.59237 g / 1000 kWh = x * 0.45359237 g/kWh. WattTime's co2_moer is in
# lbs_co2_per_mwh (`meta.units` of /v3/forecast and /v3/historical, docs.watttime.org).
G_PER_LB = 453.59237
KWH_PER_MWH = 1000.0
WATTTIME_LBS_UNITS = "lbs_co2_per_mwh"

# A JSON answer from either API is a few tens of kB (72 h at 5 minutes is 864 points); 16 MiB
# is far above that and still bounds what a misbehaving server can make us hold.
MAX_RESPONSE_BYTES = 16 * 2**20
DEFAULT_TIMEOUT_S = 10.0


def lbs_per_mwh_to_g_per_kwh(values_lbs_per_mwh):
    """Convert lb CO2/MWh to g CO2/kWh (x 453.59237 g/lb / 1000 kWh/MWh); arrays or scalars."""
    return np.asarray(values_lbs_per_mwh, dtype=float) * (G_PER_LB / KWH_PER_MWH)


# --- errors -------------------------------------------------------------------------------------
class LiveIntensityError(RuntimeError):
    """Base of the live-intensity errors: one line, naming the source, never a secret."""


class SourceError(LiveIntensityError):
    """A fetch failed (HTTP error, timeout, bad JSON, bad file); ``status`` is the HTTP status if any."""

    def __init__(self, source: str, message: str, status: int | None = None):
        self.source, self.status = source, status
        super().__init__(f"{source}: {message}")


class StaleIntensity(LiveIntensityError):
    """The newest usable intensity data is older than allowed (or missing): do not plan on it."""

    def __init__(self, source: str, reason: str, age_s: float | None = None, max_age_s: float | None = None):
        self.source, self.reason, self.age_s, self.max_age_s = source, reason, age_s, max_age_s
        super().__init__(f"{source}: stale carbon intensity: {reason}")


# --- the result ---------------------------------------------------------------------------------
def _utc(ts) -> pd.Timestamp:
    """A tz-aware UTC timestamp from anything pandas parses; naive values are taken as UTC."""
    t = pd.Timestamp(ts)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def _now(now) -> pd.Timestamp:
    return _utc(pd.Timestamp.now(tz="UTC") if now is None else now)


def _empty_frame() -> pd.DataFrame:
    return pd.DataFrame({CARBON_GCO2_PER_KWH: pd.Series(dtype=float)},
                        index=pd.DatetimeIndex([], tz="UTC", name="timestamp"))


@dataclass(frozen=True)
class IntensitySnapshot:
    """What a source knew at one fetch.

    ``actual``: intensity up to now; ``forecast``: from the interval containing ``now`` onwards
    (both canonical frames, gCO2/kWh). ``issued_at``: when the provider issued or last updated
    the data (forecast ``updatedAt``/``generated_at``, the file's mtime or newest request_time);
    the age of the data is measured from it. ``error`` is set when this is an earlier good
    snapshot handed out after a failed fetch.
    """

    source: str
    actual: pd.DataFrame
    forecast: pd.DataFrame
    issued_at: pd.Timestamp
    fetched_at: pd.Timestamp
    signal: str = "average"  # "average" (Electricity Maps, most files) or "marginal" (WattTime MOER)
    error: str | None = None
    meta: dict = field(default_factory=dict)

    def age_s(self, now=None) -> float:
        """Seconds from ``issued_at`` to ``now`` (never negative: a clock ahead of ours counts as 0)."""
        return max(0.0, (_now(now) - self.issued_at).total_seconds())


def _canonical(times: Iterable, values: Iterable, source: str, what: str) -> pd.DataFrame:
    """Build the canonical frame from (time, gCO2/kWh) pairs; bad stamps or values are a SourceError."""
    times, values = list(times), list(values)
    if not times:
        return _empty_frame()
    idx = pd.to_datetime(pd.Series(times, dtype="object"), utc=True, errors="coerce", format="mixed")
    if idx.isna().any():
        i = int(np.flatnonzero(idx.isna().to_numpy())[0])
        raise SourceError(source, f"{what}: unparseable timestamp {str(times[i])[:40]!r}")
    v = pd.to_numeric(pd.Series(values, dtype="object"), errors="coerce").to_numpy(dtype=float)
    frame = pd.DataFrame({CARBON_GCO2_PER_KWH: v}, index=pd.DatetimeIndex(idx, name="timestamp"))
    frame = frame[~np.isnan(v)]  # the APIs return null where they have no value: a gap, not a zero
    lo, hi = CARBON_RANGE_GCO2_PER_KWH
    bad = (frame[CARBON_GCO2_PER_KWH] < lo) | (frame[CARBON_GCO2_PER_KWH] > hi)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise SourceError(source, f"{what}: value {frame[CARBON_GCO2_PER_KWH].iat[i]:g} gCO2/kWh at "
                                  f"{frame.index[i].isoformat()} outside {lo:g}..{hi:g} (wrong units?)")
    frame = frame[~frame.index.duplicated(keep="last")].sort_index()
    return frame


def _step(index: pd.DatetimeIndex) -> pd.Timedelta:
    """The series' step (median spacing); one hour when there are fewer than two points."""
    if len(index) < 2:
        return pd.Timedelta(hours=1)
    return pd.Timedelta(pd.Series(index).diff().dropna().median())


def _ahead(frame: pd.DataFrame, now: pd.Timestamp) -> pd.DataFrame:
    """Rows whose interval has not ended at ``now`` (stamp > now - step): the current interval on."""
    if frame.empty:
        return frame
    return frame[frame.index > now - _step(frame.index)]


def _upto(frame: pd.DataFrame, now: pd.Timestamp) -> pd.DataFrame:
    return frame[frame.index <= now]


# --- sources ------------------------------------------------------------------------------------
class LiveSource:
    """A live intensity source: ``fetch(now)`` -> :class:`IntensitySnapshot` or :class:`SourceError`.

    Remembers the last good snapshot and the last error, so :func:`fresh_forecast` can let the
    data age out over a short outage instead of handing back at the first failed request.
    """

    name: str = "source"
    max_age_s: float = 3600.0

    def __init__(self) -> None:
        self.last_good: IntensitySnapshot | None = None
        self.last_error: SourceError | None = None

    def fetch(self, now=None) -> IntensitySnapshot:
        now = _now(now)
        try:
            snap = self._fetch(now)
        except SourceError as exc:
            self.last_error = exc
            log.warning("%s", exc)
            raise
        self.last_good, self.last_error = snap, None
        log.debug("%s: fetched, issued %s, %d actual and %d forecast points", self.name, snap.issued_at.isoformat(),
                  len(snap.actual), len(snap.forecast))
        return snap

    def _fetch(self, now: pd.Timestamp) -> IntensitySnapshot:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:  # never the token: only the name
        return f"{type(self).__name__}({self.name!r})"


class FileSource(LiveSource):
    """A carbon file refreshed by an outside job: any format :func:`read_carbon` reads, or an
    issued-forecast file (``request_time, forecast_time, <value>``, :func:`read_carbon_forecast`).

    Re-read only when the file changed (mtime and size). For a plain series, rows up to ``now``
    are the actual and rows from the current interval on the forecast, and the data were issued
    when the file was last written (mtime). For an issued-forecast file the newest issue is the
    forecast, issued at its ``request_time``; each issue's first point (its nowcast) is the actual.
    """

    def __init__(self, path, max_age_s: float, *, format: str = "auto", column: str | None = None, scale: float = 1.0,
                 gap_policy: GapPolicy | None = None, name: str | None = None):
        super().__init__()
        self.path = Path(path)
        self.max_age_s = float(max_age_s)
        self.format, self.column, self.scale, self.gap_policy = format, column, scale, gap_policy
        self.name = name or f"file {self.path}"
        self.reads = 0  # how many times the file was parsed (unchanged files are not re-read)
        self._key: tuple[int, int] | None = None
        self._parsed: tuple[pd.DataFrame, pd.DataFrame | None, pd.Timestamp, str] | None = None

    def _parse(self, mtime: pd.Timestamp):
        header = read_header(self.path)
        if {"request_time", "forecast_time"} <= set(header):
            long = read_carbon_forecast(self.path)
            issued = long["request_time"].max()
            newest = long[long["request_time"] == issued]
            forecast = _canonical(newest["forecast_time"], newest[CARBON_GCO2_PER_KWH], self.name, "forecast")
            first = long.sort_values("forecast_time").groupby("request_time", sort=True).head(1)
            actual = _canonical(first["forecast_time"], first[CARBON_GCO2_PER_KWH], self.name, "nowcast")
            return actual, forecast, _utc(issued), "marginal"
        frame = read_carbon(self.path, format=self.format, column=self.column, gap_policy=self.gap_policy, scale=self.scale)
        series = frame[[CARBON_GCO2_PER_KWH]].copy()
        signal = "marginal" if frame.attrs.get("signal") == "marginal" else "average"
        return series, None, mtime, signal

    def _fetch(self, now: pd.Timestamp) -> IntensitySnapshot:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise SourceError(self.name, "file not found (has the job that writes it stopped?)") from None
        except OSError as exc:
            raise SourceError(self.name, f"cannot read the file ({exc.strerror or type(exc).__name__})") from None
        key = (st.st_mtime_ns, st.st_size)
        if key != self._key or self._parsed is None:
            try:
                self._parsed = self._parse(_utc(pd.Timestamp(st.st_mtime_ns, unit="ns")))
            except DataError as exc:
                raise SourceError(self.name, f"unreadable: {exc}") from None
            self._key = key
            self.reads += 1
        series, forecast, issued, signal = self._parsed
        if forecast is None:  # one series: split at now
            actual, ahead = _upto(series, now), _ahead(series, now)
        else:
            actual, ahead = _upto(series, now), _ahead(forecast, now)
        return IntensitySnapshot(self.name, actual, ahead, issued, now, signal, meta={"path": str(self.path)})


# --- HTTP at the edge ---------------------------------------------------------------------------
class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: following one would send the token to wherever the answer points."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def _redact(text: str, secrets: Iterable[str | None]) -> str:
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    return text


def _http_get_json(source: str, url: str, params: dict, headers: dict, timeout_s: float, secrets: Iterable[str | None],
                   what: str) -> Any:
    """GET ``url`` and parse JSON; every failure is one SourceError naming ``what`` and the status.

    Headers go in as unredirected headers and redirects are refused, so a secret never leaves
    for another host. Exceptions are raised ``from None`` and messages are redacted: no
    traceback chain or message carries a token.
    """
    secrets = [s for s in secrets if s]
    full = url + ("?" + urllib.parse.urlencode(params) if params else "")
    req = urllib.request.Request(full, method="GET")
    req.add_unredirected_header("Accept", "application/json")
    for k, v in headers.items():
        req.add_unredirected_header(k, v)
    opener = urllib.request.build_opener(_NoRedirect)
    log.debug("%s: GET %s", source, url)
    try:
        with opener.open(req, timeout=timeout_s) as resp:
            status = resp.status
            body = resp.read(MAX_RESPONSE_BYTES + 1)
    except urllib.error.HTTPError as exc:
        code = exc.code
        hint = {401: ": the token was refused (expired or wrong?)", 403: ": access denied (token or plan without this endpoint?)",
                404: ": not found (zone/region or base URL wrong?)", 429: ": rate limited"}.get(code, "")
        if 300 <= code < 400:
            hint = ": redirect refused (the token is not forwarded; set base_url to the final address)"
        reason = _redact(str(exc.reason or ""), secrets)
        raise SourceError(source, f"{what} failed: HTTP {code} {reason}{hint}".rstrip(), status=code) from None
    except (TimeoutError, socket.timeout):
        raise SourceError(source, f"{what} failed: timed out after {timeout_s:g} s") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, (TimeoutError, socket.timeout)):
            raise SourceError(source, f"{what} failed: timed out after {timeout_s:g} s") from None
        raise SourceError(source, f"{what} failed: cannot connect ({_redact(str(exc.reason), secrets)})") from None
    except (http.client.HTTPException, OSError) as exc:
        raise SourceError(source, f"{what} failed: connection broken ({type(exc).__name__})") from None
    if len(body) > MAX_RESPONSE_BYTES:
        raise SourceError(source, f"{what}: response larger than {MAX_RESPONSE_BYTES // 2**20} MiB", status=status)
    try:
        return json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise SourceError(source, f"{what}: response is not JSON (HTTP {status}, {len(body)} bytes)", status=status) from None


def _env(var: str, source: str, why: str) -> str:
    value = os.environ.get(var, "").strip()
    if not value:
        raise SourceError(source, f"environment variable {var} is not set ({why})")
    return value


# --- Electricity Maps ---------------------------------------------------------------------------
ELECTRICITYMAPS_BASE_URL = "https://api.electricitymaps.com/v3"


def _records(payload: Any, key: str | None, source: str, what: str) -> list[dict]:
    if not isinstance(payload, dict):
        raise SourceError(source, f"{what}: expected a JSON object, got {type(payload).__name__}")
    items = [payload] if key is None else payload.get(key)
    if not isinstance(items, list) or not all(isinstance(r, dict) for r in items):
        raise SourceError(source, f"{what}: no {key!r} list of objects in the response")
    return items


def parse_electricitymaps(latest: dict | None, history: dict | None, forecast: dict | None, source: str = "electricitymaps"):
    """Electricity Maps v3 JSON -> (actual frame, forecast frame, issued_at). Pure.

    Shapes (docs.electricitymaps.com; portal.electricitymaps.com/developer-hub/api/reference):
    ``/carbon-intensity/latest`` is one object ``{zone, carbonIntensity, datetime, updatedAt,
    createdAt, emissionFactorType, isEstimated, estimationMethod}``; ``/history`` is
    ``{zone, history: [<same objects>]}`` (last 24 h); ``/forecast`` is ``{zone, forecast:
    [{carbonIntensity, datetime}], updatedAt}``. Values are gCO2eq/kWh already.
    ``issued_at`` is the forecast's ``updatedAt``, else the latest's ``updatedAt``.
    """
    rows: list[dict] = []
    if history is not None:
        rows += _records(history, "history", source, "carbon-intensity/history")
    latest_rows = _records(latest, None, source, "carbon-intensity/latest") if latest is not None else []
    rows += latest_rows  # last, so the latest value wins a duplicated stamp
    for r in rows:
        if "datetime" not in r or "carbonIntensity" not in r:
            raise SourceError(source, "carbon-intensity/latest|history: a record lacks datetime or carbonIntensity")
    actual = _canonical([r["datetime"] for r in rows], [r["carbonIntensity"] for r in rows], source, "actual")
    fc = _empty_frame()
    issued = None
    if forecast is not None:
        recs = _records(forecast, "forecast", source, "carbon-intensity/forecast")
        if any("datetime" not in r or "carbonIntensity" not in r for r in recs):
            raise SourceError(source, "carbon-intensity/forecast: a record lacks datetime or carbonIntensity")
        fc = _canonical([r["datetime"] for r in recs], [r["carbonIntensity"] for r in recs], source, "forecast")
        issued = forecast.get("updatedAt")
    if issued is None and latest_rows:
        issued = latest_rows[0].get("updatedAt") or latest_rows[0].get("datetime")
    if issued is None:
        raise SourceError(source, "no updatedAt in the responses: cannot tell how old the data are")
    try:
        issued_at = _utc(issued)
    except (ValueError, TypeError):
        raise SourceError(source, f"unparseable updatedAt {str(issued)[:40]!r}") from None
    return actual, fc, issued_at


class ElectricityMapsSource(LiveSource):
    """Electricity Maps v3: ``carbon-intensity/latest``, ``/history`` and ``/forecast`` for a zone.

    The token is read from ``token_env`` at every fetch and sent in the ``auth-token`` header
    (docs.electricitymaps.com, Authentication). Average (not marginal) intensity, gCO2eq/kWh,
    life-cycle factors unless ``emission_factor_type="direct"``. ``forecast=False`` for tokens
    without the forecast endpoint (the free tier has latest and history only); such a source
    cannot pass :func:`fresh_forecast` unless ``require_forecast=False``.
    """

    def __init__(self, zone: str, token_env: str = "ELECTRICITYMAPS_TOKEN", base_url: str = ELECTRICITYMAPS_BASE_URL, *,
                 emission_factor_type: str = "lifecycle", history: bool = True, forecast: bool = True,
                 horizon_hours: int | None = None, timeout_s: float = DEFAULT_TIMEOUT_S, max_age_s: float = 7200.0):
        super().__init__()
        if emission_factor_type not in ("lifecycle", "direct"):
            raise ValueError(f"emission_factor_type must be 'lifecycle' or 'direct', not {emission_factor_type!r}")
        self.zone, self.token_env, self.base_url = zone, token_env, base_url.rstrip("/")
        self.emission_factor_type, self.history, self.forecast = emission_factor_type, history, forecast
        self.horizon_hours, self.timeout_s, self.max_age_s = horizon_hours, float(timeout_s), float(max_age_s)
        self.name = f"electricitymaps {zone}"

    def _get(self, endpoint: str, token: str, extra: dict | None = None) -> Any:
        params = {"zone": self.zone, "emissionFactorType": self.emission_factor_type, **(extra or {})}
        return _http_get_json(self.name, f"{self.base_url}/{endpoint}", params, {"auth-token": token}, self.timeout_s,
                              [token], endpoint)

    def _fetch(self, now: pd.Timestamp) -> IntensitySnapshot:
        token = _env(self.token_env, self.name, "the Electricity Maps API token")
        latest = self._get("carbon-intensity/latest", token)
        history = self._get("carbon-intensity/history", token) if self.history else None
        extra = {"horizonHours": self.horizon_hours} if self.horizon_hours else None
        forecast = self._get("carbon-intensity/forecast", token, extra) if self.forecast else None
        actual, fc, issued = parse_electricitymaps(latest, history, forecast, self.name)
        return IntensitySnapshot(self.name, _upto(actual, now), _ahead(fc, now), issued, now, "average",
                                 meta={"zone": self.zone, "emission_factor_type": self.emission_factor_type})


# --- WattTime -----------------------------------------------------------------------------------
WATTTIME_BASE_URL = "https://api.watttime.org"


def parse_watttime(payload: Any, source: str = "watttime", what: str = "forecast"):
    """WattTime v3 ``/v3/forecast`` or ``/v3/historical`` JSON -> (frame in gCO2/kWh, generated_at). Pure.

    Shape (docs.watttime.org, ForecastResponse/DataResponse): ``{"data": [{"point_time": ISO,
    "value": number}], "meta": {"region", "signal_type", "units": "lbs_co2_per_mwh",
    "generated_at": ISO (forecast only), ...}}``. co2_moer values are lb/MWh, converted with
    :func:`lbs_per_mwh_to_g_per_kwh`; any other unit is refused. ``generated_at`` is None when
    absent (historical data).
    """
    recs = _records(payload, "data", source, what)
    meta = payload.get("meta") if isinstance(payload.get("meta"), dict) else {}
    units = meta.get("units", WATTTIME_LBS_UNITS)  # co2_moer is documented in lbs_co2_per_mwh
    if units != WATTTIME_LBS_UNITS:
        raise SourceError(source, f"{what}: units {units!r}, expected {WATTTIME_LBS_UNITS!r} (signal_type co2_moer)")
    if any("point_time" not in r or "value" not in r for r in recs):
        raise SourceError(source, f"{what}: a data record lacks point_time or value")
    raw = pd.to_numeric(pd.Series([r["value"] for r in recs], dtype="object"), errors="coerce").to_numpy(dtype=float)
    frame = _canonical([r["point_time"] for r in recs], lbs_per_mwh_to_g_per_kwh(raw), source, what)
    generated = meta.get("generated_at")
    try:
        generated_at = _utc(generated) if generated else None
    except (ValueError, TypeError):
        raise SourceError(source, f"{what}: unparseable meta.generated_at {str(generated)[:40]!r}") from None
    return frame, generated_at


class WattTimeSource(LiveSource):
    """WattTime v3: ``/v3/forecast`` (and ``/v3/historical`` for the last hours) of ``co2_moer``.

    Credentials from the environment only: a ready token in ``token_env`` (``WATTTIME_TOKEN``),
    else ``/login`` with HTTP basic auth from ``user_env``/``password_env`` (``WATTTIME_USER``,
    ``WATTTIME_PASSWORD``, the names the official SDK reads) returning ``{"token": ...}``, sent
    as ``Authorization: Bearer``. Tokens expire after 30 minutes: on HTTP 401 the source logs in
    again once. A *marginal* signal (MOER), converted from lb/MWh to gCO2/kWh.
    ``history_hours=0`` skips /v3/historical (a subscriber endpoint outside CAISO_NORTH).
    """

    def __init__(self, region: str, *, token_env: str = "WATTTIME_TOKEN", user_env: str = "WATTTIME_USER",
                 password_env: str = "WATTTIME_PASSWORD", base_url: str = WATTTIME_BASE_URL, login_path: str = "/login",
                 signal_type: str = "co2_moer", horizon_hours: int = 24, history_hours: float = 24.0,
                 timeout_s: float = DEFAULT_TIMEOUT_S, max_age_s: float = 1800.0):
        super().__init__()
        if signal_type != "co2_moer":
            raise ValueError("only signal_type='co2_moer' has a carbon-intensity unit (lbs_co2_per_mwh)")
        self.region, self.base_url, self.login_path = region, base_url.rstrip("/"), login_path
        self.token_env, self.user_env, self.password_env = token_env, user_env, password_env
        self.signal_type, self.horizon_hours, self.history_hours = signal_type, int(horizon_hours), float(history_hours)
        self.timeout_s, self.max_age_s = float(timeout_s), float(max_age_s)
        self.name = f"watttime {region}"
        self._token: str | None = None  # from /login, kept in memory only

    def _login(self) -> str:
        user = _env(self.user_env, self.name, f"set {self.token_env}, or {self.user_env} and {self.password_env} to log in")
        password = _env(self.password_env, self.name, f"the WattTime password for {self.user_env}")
        basic = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        payload = _http_get_json(self.name, self.base_url + self.login_path, {}, {"Authorization": f"Basic {basic}"},
                                 self.timeout_s, [password, basic], "login")
        token = payload.get("token") if isinstance(payload, dict) else None
        if not isinstance(token, str) or not token:
            raise SourceError(self.name, "login: no token in the response")
        return token

    def _token_for_request(self) -> tuple[str, bool]:
        """(token, renewable): a token from the environment is used as is, a login token is renewed on 401."""
        env_token = os.environ.get(self.token_env, "").strip()
        if env_token:
            return env_token, False
        if self._token is None:
            self._token = self._login()
        return self._token, True

    def _get(self, path: str, params: dict) -> Any:
        token, renewable = self._token_for_request()
        try:
            return _http_get_json(self.name, self.base_url + path, params, {"Authorization": f"Bearer {token}"},
                                  self.timeout_s, [token], path)
        except SourceError as exc:
            if exc.status != 401 or not renewable:
                raise
            self._token = None  # expired (30 min): log in once more
            token, _ = self._token_for_request()
            return _http_get_json(self.name, self.base_url + path, params, {"Authorization": f"Bearer {token}"},
                                  self.timeout_s, [token], path)

    def _fetch(self, now: pd.Timestamp) -> IntensitySnapshot:
        base = {"region": self.region, "signal_type": self.signal_type}
        fc_json = self._get("/v3/forecast", {**base, "horizon_hours": self.horizon_hours})
        forecast, generated_at = parse_watttime(fc_json, self.name, "/v3/forecast")
        if generated_at is None:
            raise SourceError(self.name, "/v3/forecast: no meta.generated_at: cannot tell how old the forecast is")
        actual = _empty_frame()
        if self.history_hours > 0:
            start = now - pd.Timedelta(hours=self.history_hours)
            hist_json = self._get("/v3/historical", {**base, "start": start.isoformat(), "end": now.isoformat()})
            actual, _ = parse_watttime(hist_json, self.name, "/v3/historical")
        return IntensitySnapshot(self.name, _upto(actual, now), _ahead(forecast, now), generated_at, now, "marginal",
                                 meta={"region": self.region, "signal_type": self.signal_type})


# --- the staleness gate -------------------------------------------------------------------------
def fresh_forecast(source: LiveSource, now=None, max_age_s: float | None = None, *, require_forecast: bool = True,
                   use_last_good: bool = True) -> IntensitySnapshot:
    """Fetch and return data no older than ``max_age_s`` (default: the source's), else raise StaleIntensity.

    Rule: the age is ``now - issued_at`` of the newest data the source gave. A failed fetch
    does not hand back at once: the last good snapshot is returned (with ``error`` set) while
    it is still young enough, so the forecast *ages out* over an outage (``use_last_good=False``
    refuses at the first failure). A snapshot with no forecast from the current interval on is
    refused when ``require_forecast``: there is nothing to plan on.
    """
    now = _now(now)
    limit = float(source.max_age_s if max_age_s is None else max_age_s)
    try:
        snap = source.fetch(now)
    except SourceError as exc:
        last = source.last_good if use_last_good else None
        if last is None:
            raise StaleIntensity(source.name, f"the source failed and there is no earlier data ({exc})", None, limit) from None
        age = last.age_s(now)
        if age > limit:
            raise StaleIntensity(source.name, f"the source failed ({exc}) and the last data, issued "
                                              f"{last.issued_at.isoformat()}, are {age:,.0f} s old (limit {limit:,.0f} s)",
                                 age, limit) from None
        snap = replace(last, forecast=_ahead(last.forecast, now), error=str(exc))
    age = snap.age_s(now)
    if age > limit:
        raise StaleIntensity(source.name, f"newest data issued {snap.issued_at.isoformat()}, {age:,.0f} s old "
                                          f"(limit {limit:,.0f} s)", age, limit)
    if require_forecast and snap.forecast.empty:
        raise StaleIntensity(source.name, f"no forecast from {now.isoformat()} on (the data end "
                                          f"{_last_stamp(snap)})", age, limit)
    return snap


def _last_stamp(snap: IntensitySnapshot) -> str:
    stamps = [f.index.max() for f in (snap.actual, snap.forecast) if not f.empty]
    return max(stamps).isoformat() if stamps else "with no rows"
