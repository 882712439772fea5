"""The live loop's REST API, web console and Prometheus metrics, served in the loop's own process.

:func:`create_app` builds a FastAPI app over the loop's :class:`LiveView` (what it shows),
:class:`OperatorInbox` (what operators ask) and :class:`AuditLog` (the same hash-chained log
the loop writes); :func:`serve` runs it with uvicorn in the running event loop until a stop
event, so the loop and the API share one thread and never race on the status.

Reading needs no token: ``/api/status``, ``/api/plan``, ``/api/telemetry``, ``/api/points``,
``/api/refusals``, ``/api/history``, ``/api/audit`` (the tail with the chain verified), the
console at ``/`` and ``/metrics``. Operator actions (``POST /api/pause|resume|release``)
need ``Authorization: Bearer <token>`` equal to the environment variable ``token_env``
(compared in constant time); with no token configured they are disabled (503). Every
refused action is audited (who said they were, from which address, why; never the token)
and every accepted one is audited by the loop when it takes it. docs/live_api.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import hmac
import ipaddress
import math
import os
import re
import socket
from importlib import resources
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from coolshift.bms.audit import AuditError, AuditLog, read_audit, verify_audit
from coolshift.bms.points import PointMap
from coolshift.config import ConfigError
from coolshift.usecases.operate import OPERATOR_ACTIONS, LiveView, OperatorInbox

from .metrics import LoopCollector, loop_registry

__all__ = ["create_app", "serve", "api_running", "parse_listen", "is_loopback", "TOKEN_ENV", "OPERATOR_HEADER"]

TOKEN_ENV = "COOLSHIFT_API_TOKEN"
OPERATOR_HEADER = "X-Coolshift-Operator"
AUDIT_TAIL_MAX = 1000
# The console loads its script and styles from this app only (no CDN, nothing outside loopback).
_CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'"
_NAME_OK = re.compile(r"[^A-Za-z0-9 ._@+-]")


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_listen(text: str, *, allow_remote: bool = False) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) for ``--api``; a non-loopback host is refused
    unless ``allow_remote`` (the read endpoints need no token). ConfigError names the option."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--api: {text[:60]!r} is not HOST:PORT (e.g. 127.0.0.1:8787)")
    if not allow_remote and not is_loopback(host):
        raise ConfigError(f"--api: {host[:40]!r} is not a loopback address: the API serves the loop's status "
                          "without a token, so it listens on 127.0.0.1 or ::1 only (put a reverse proxy "
                          "with TLS and authentication in front to reach it from elsewhere)")
    return host, int(port)


def _json_safe(v: Any) -> Any:
    """The status as JSON: NaN/inf as null, timestamps as ISO 8601, numpy scalars as numbers."""
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, bool) or v is None or isinstance(v, (str, int)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, (_dt.datetime, _dt.date)):
        return v.isoformat()
    if hasattr(v, "item"):  # numpy scalar
        return _json_safe(v.item())
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return str(v)


def _operator_name(raw: Any) -> str:
    """Who the caller says they are, made safe for the audit log (printable, at most 64 characters)."""
    name = _NAME_OK.sub("", str(raw or ""))[:64].strip()
    return name or "unnamed operator"


def _point_states(status: dict, variables: dict[str, str]) -> dict[str, dict]:
    """Each writable point: its value at the last read, the plan's target and who rules it now.

    The loop commands every writable point while it runs with ``apply`` and has written;
    paused, handed back or stopped, every point is back under local control. A per-point
    map ``points_commanded`` in the status, when the loop provides one, wins.
    """
    points = status.get("points") or {}
    per_point = status.get("points_commanded")
    commanding = bool(status.get("apply")) and status.get("state") == "running" and (status.get("steps_written") or 0) > 0
    targets = (status.get("plan") or {}).get("targets") or {}
    out = {}
    for name, value in points.items():
        held = bool(per_point.get(name)) if isinstance(per_point, dict) and name in per_point else commanding
        var = variables.get(name)
        out[name] = {"variable": var, "value": value, "planned": targets.get(var) if var else None,
                     "control": "coolshift" if held else "local"}
    return out


def _audit_tail(path: Path, n: int) -> dict:
    """The last ``n`` records and whether the whole chain verifies (read-only connections)."""
    try:
        frame = read_audit(path)
        ver = verify_audit(path)
    except AuditError as exc:
        return {"records": [], "chain_ok": False, "problems": [str(exc)], "total": 0}
    tail = frame.tail(n)
    records = [_json_safe({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()})
               for r in tail.to_dict("records")]
    return {"records": records, "chain_ok": ver.ok, "problems": ver.problems, "total": int(len(frame))}


def _static(name: str) -> bytes:
    return resources.files("coolshift.services").joinpath("static", name).read_bytes()


def create_app(view: LiveView, inbox: OperatorInbox, audit: AuditLog, *, token_env: str = TOKEN_ENV,
               point_map: PointMap | None = None) -> FastAPI:
    """The API, console and metrics over the running loop's view, inbox and audit log.

    ``point_map`` (the loop's) ties each point's name to the plan's variable (the console's
    planned column); without it the points show their values and control only.

    The token is read from ``token_env`` once, here: an empty or missing variable disables
    the operator actions (reading still works).
    """
    token = os.environ.get(token_env, "")
    variables = {p.name: p.variable for p in point_map.writable} if point_map is not None else {}
    app = FastAPI(title="Coolshift live loop", docs_url=None, redoc_url=None, openapi_url="/api/openapi.json")
    refused = {"count": 0}
    registry = loop_registry(LoopCollector(lambda: view.status, lambda: view.history, lambda: refused["count"]))
    console_html, console_js, console_css = _static("console.html"), _static("console.js"), _static("console.css")

    def ok(doc: Any, status_code: int = 200) -> JSONResponse:
        return JSONResponse(_json_safe(doc), status_code=status_code, headers={"Cache-Control": "no-store"})

    @app.get("/api/status")
    async def get_status() -> JSONResponse:
        """The loop's status (the fields of status.json)."""
        return ok(view.status)

    @app.get("/api/plan")
    async def get_plan() -> JSONResponse:
        """The plan of the last step: targets written (or planned), the LP's status, its prediction."""
        st = view.status
        return ok({"site_time": st.get("site_time"), "state": st.get("state"), "plan": st.get("plan")})

    @app.get("/api/telemetry")
    async def get_telemetry() -> JSONResponse:
        """Every mapped point as read at the last step."""
        st = view.status
        return ok({"site_time": st.get("site_time"), "telemetry": st.get("telemetry") or {}})

    @app.get("/api/points")
    async def get_points() -> JSONResponse:
        """Each writable point: value and who rules it (coolshift or local)."""
        st = view.status
        return ok({"state": st.get("state"), "reason": st.get("reason"), "paused_by": st.get("paused_by"),
                   "points": _point_states(st, variables), "released": st.get("released")})

    @app.get("/api/refusals")
    async def get_refusals() -> JSONResponse:
        """The last steps the safety layer refused, with its reasons."""
        return ok({"refusals": view.status.get("refusals") or []})

    @app.get("/api/history")
    async def get_history(n: int = Query(96, ge=1, le=10000)) -> JSONResponse:
        """The last ``n`` steps: targets, planned, measured, predicted, carbon."""
        return ok({"steps": view.history[-n:]})

    @app.get("/api/audit")
    async def get_audit(n: int = Query(50, ge=1, le=AUDIT_TAIL_MAX)) -> JSONResponse:
        """The audit log's last ``n`` records and whether its hash chain verifies."""
        # a thread: reading and hashing the whole log must not hold up the control loop
        return ok({"path": str(audit.path), **await asyncio.to_thread(_audit_tail, audit.path, n)})

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/")
    async def console_page() -> Response:
        return Response(console_html, media_type="text/html; charset=utf-8", headers={"Content-Security-Policy": _CSP})

    @app.get("/console.js")
    async def console_script() -> Response:
        return Response(console_js, media_type="text/javascript; charset=utf-8")

    @app.get("/console.css")
    async def console_style() -> Response:
        return Response(console_css, media_type="text/css; charset=utf-8")

    async def action(name: str, request: Request) -> JSONResponse:
        who_said = request.headers.get(OPERATOR_HEADER)
        if who_said is None:
            with contextlib.suppress(Exception):  # a body is optional: {"operator": "..."}
                body = await request.json()
                if isinstance(body, dict):
                    who_said = body.get("operator")
        client = request.client.host if request.client else "unknown address"
        who = f"{_operator_name(who_said)} from {client}"

        def refuse(code: int, why: str, headers: dict | None = None) -> JSONResponse:
            refused["count"] += 1
            audit.record("operator", "refused", detail=f"{name} by {who} refused: {why}")
            return JSONResponse({"error": why, "action": name}, status_code=code, headers=headers)

        if not token:
            return refuse(503, f"operator actions are disabled: no token configured (set {token_env} in the "
                               "environment of coolshift operate)")
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return refuse(401, "no bearer token (send Authorization: Bearer <token>)",
                          {"WWW-Authenticate": 'Bearer realm="coolshift"'})
        if not hmac.compare_digest(given.strip().encode("utf-8"), token.encode("utf-8")):
            return refuse(403, "wrong token")
        if view.status.get("state") == "stopped":
            return refuse(409, "the loop has stopped (every point was handed back)")
        inbox.request(name, who)  # the loop audits it when it takes it, at once
        return ok({"accepted": name, "requested_by": who, "state": view.status.get("state")}, 202)

    def endpoint_for(name: str):
        async def endpoint(request: Request) -> JSONResponse:
            return await action(name, request)
        endpoint.__doc__ = f"Operator action: {name} (Authorization: Bearer <token>; who: {OPERATOR_HEADER} or body operator)."
        return endpoint

    for name in OPERATOR_ACTIONS:
        app.post(f"/api/{name}", name=name)(endpoint_for(name))
    return app


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: the loop's SIGTERM/SIGINT handlers stop
    everything (the loop hands its points back, then sets the API's stop event)."""

    def capture_signals(self):  # noqa: D102 - uvicorn's hook, replaced
        return contextlib.nullcontext()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"--api: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


async def serve(app: FastAPI, host: str, port: int, stop: asyncio.Event, *, allow_remote: bool = False,
                started: asyncio.Event | None = None) -> None:
    """Serve ``app`` on ``host:port`` in the running event loop until ``stop`` is set.

    The socket is bound first (a port in use or a non-loopback host is a ConfigError naming
    it, before anything is served); ``started`` is set once requests are answered.
    """
    if not allow_remote and not is_loopback(host):
        raise ConfigError(f"--api: {host[:40]!r} is not a loopback address (the API listens on loopback only)")
    sock = _bind(host, port)
    server = _Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        if started is not None and server.started:
            started.set()
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()


@contextlib.asynccontextmanager
async def api_running(app: FastAPI, host: str, port: int, *, allow_remote: bool = False):
    """``async with api_running(app, host, port):`` the API answers inside the block.

    Entering waits until the socket is bound and uvicorn serves, so a port in use or a
    non-loopback host fails here (ConfigError), before the loop starts commanding anything.
    """
    stop, started = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(serve(app, host, port, stop, allow_remote=allow_remote, started=started))
    ready = asyncio.create_task(started.wait())
    await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
    ready.cancel()
    if task.done():
        task.result()  # the bind error, raised here
        raise ConfigError(f"--api: the server on {host}:{port} stopped before it served")
    try:
        yield
    finally:
        stop.set()
        await task
