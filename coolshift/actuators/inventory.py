"""The actuator map, the host inventory and the work telemetry, read strictly.

The actuator map (YAML) names the site, the audit log, the Redfish service and, in an
optional ``slurm:`` section, the Slurm cluster (the Slurm map's fields, see
:func:`coolshift.actuators.slurm.slurm_map_from_section`), so one file names everything
Coolshift commands besides the BMS. The Redfish service's user and password (or session token) come only from the environment
(``COOLSHIFT_REDFISH_USER`` / ``COOLSHIFT_REDFISH_PASSWORD``, or ``COOLSHIFT_REDFISH_TOKEN``),
never from the map and never from a plan. The inventory maps each server pool of the site
config to its Redfish system ids, listed or discovered from the Systems collection by a
name pattern. The work file says which hosts carry no work; a host it does not list as
idle counts as busy and is never powered off.

Every error is a :class:`coolshift.config.ConfigError` naming the file and the key (or
row), so the CLI exits 2 with one line.
"""

from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import yaml

from coolshift.actuators.slurm import SlurmMap, slurm_map_from_section
from coolshift.bms.points import PointMapError, expand_env
from coolshift.config import ConfigError, SiteConfig

__all__ = ["ActuatorMap", "RedfishSettings", "Credentials", "Inventory", "InventorySpec", "ENV_USER",
           "ENV_PASSWORD", "ENV_TOKEN", "load_actuator_map", "load_inventory_spec", "resolve_inventory",
           "load_work", "redfish_credentials", "looks_like_credential"]

ENV_USER, ENV_PASSWORD, ENV_TOKEN = "COOLSHIFT_REDFISH_USER", "COOLSHIFT_REDFISH_PASSWORD", "COOLSHIFT_REDFISH_TOKEN"
# A key or column whose name says it holds a secret: refused in maps and plans (credentials are env-only).
_CREDENTIAL = re.compile(r"(pass(word|wd)?|secret|token|credential|(api|munge|private|ssh)[_-]?key|auth|user(name)?|login)",
                         re.I)
# Redfish resource ids go into URL paths: keep them to unreserved characters (RFC 3986 section 2.3).
_HOST_ID = re.compile(r"^[A-Za-z0-9._~-]{1,128}$")


def looks_like_credential(name: str) -> bool:
    """True for a key/column name that says it carries a user name, password, token or key.

    For plan columns ``<variable>__<entity>`` only the variable is judged, so a pool or zone
    named ``user_vms`` is not taken for a credential.
    """
    return bool(_CREDENTIAL.search(str(name).split("__", 1)[0]))


@dataclass(frozen=True)
class RedfishSettings:
    """How to reach the Redfish service and how fast to act on it (see docs/actuators.md)."""

    url: str
    inventory: Path
    work: Path | None
    verify_tls: bool | str = True
    timeout_s: float = 10.0
    max_concurrent_power_on: int = 20
    max_parallel_requests: int = 16
    power_off_timeout_s: float = 300.0
    power_on_timeout_s: float = 300.0
    power_on_settle_s: float = 0.0
    action_interval_s: float = 0.0
    poll_interval_s: float = 1.0

    @property
    def device(self) -> str:
        """The service as the audit log and the locks name it (``redfish://127.0.0.1:8000``)."""
        m = re.match(r"^(https?)://([^/]+)", self.url)
        host = m.group(2).lower() if m else self.url
        host = host.replace("localhost", "127.0.0.1")
        return f"redfish://{host}"


@dataclass(frozen=True)
class ActuatorMap:
    """One file for the actuators: the Redfish service and, optionally, the Slurm cluster."""

    name: str
    path: Path
    site: Path
    audit_db: Path
    redfish: RedfishSettings
    max_plan_age_h: float = 26.0
    slurm: SlurmMap | None = None  # the ``slurm:`` section; its site is the site config's name once loaded


@dataclass(frozen=True)
class Credentials:
    """Read from the environment when the service is contacted; never printed or logged."""

    user: str | None = None
    password: str | None = None
    token: str | None = None

    def __repr__(self) -> str:  # keep secrets out of any traceback or log line
        return f"Credentials(user={self.user!r}, password={'***' if self.password else None}, token={'***' if self.token else None})"


def redfish_credentials(environ: Mapping[str, str] | None = None) -> Credentials:
    """User and password, or a session token, from the environment; neither is an error."""
    env = os.environ if environ is None else environ
    token = env.get(ENV_TOKEN) or None
    user, password = env.get(ENV_USER) or None, env.get(ENV_PASSWORD)
    if token:
        return Credentials(token=token)
    if user and password is not None:
        return Credentials(user=user, password=password)
    if user or password:
        raise ConfigError(f"environment: set both {ENV_USER} and {ENV_PASSWORD} (or {ENV_TOKEN})")
    raise ConfigError(f"environment: no Redfish credentials: set {ENV_USER} and {ENV_PASSWORD}, or {ENV_TOKEN} "
                      "(credentials are never read from the actuator map or the plan)")


def _read_yaml(path: Path, what: str) -> object:
    if not path.is_file():
        raise ConfigError(f"{path}: {what} not found")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None


def _expand(path: Path, key: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{path}: {key}: expected a non-empty string, got {value!r}")
    try:
        return expand_env(value)
    except PointMapError as exc:
        raise ConfigError(f"{path}: {key}: {exc}") from None


def _number(path: Path, key: str, value: object, lo: float, integer: bool = False, strict_lo: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
        raise ConfigError(f"{path}: {key}: expected {'an integer' if integer else 'a number'}, got {value!r}")
    if value < lo or (strict_lo and value == lo) or value != value or value in (float("inf"), float("-inf")):
        raise ConfigError(f"{path}: {key}: {value!r} must be {'>' if strict_lo else '>='} {lo} and finite")
    return value


# Mappings whose keys are names chosen by the site (workload classes, server pools), not fields.
_NAME_KEYS = {"slurm.classes", "slurm.pools"}


def _refuse_credentials(path: Path, doc: object, where: str = "") -> None:
    """Refuse any key that names a credential, anywhere in the map (credentials are env-only)."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            key = f"{where}.{k}" if where else str(k)
            if where not in _NAME_KEYS and looks_like_credential(k):
                if key.startswith("slurm"):
                    raise ConfigError(f"{path}: {key}: credentials are not read from a file; Slurm authenticates "
                                      "through MUNGE (the socket its slurm.conf names)")
                raise ConfigError(f"{path}: {key}: credentials are not read from a file; set {ENV_USER} and "
                                  f"{ENV_PASSWORD} (or {ENV_TOKEN}) in the environment")
            _refuse_credentials(path, v, key)
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            _refuse_credentials(path, v, f"{where}[{i}]")


_MAP_KEYS = {"name", "site", "audit_db", "safety", "redfish", "slurm"}
_SAFETY_KEYS = {"max_plan_age_h"}
_REDFISH_NUM = {  # key: (lower bound, integer, strictly above)
    "timeout_s": (0, False, True), "max_concurrent_power_on": (1, True, False),
    "max_parallel_requests": (1, True, False), "power_off_timeout_s": (0, False, True),
    "power_on_timeout_s": (0, False, True), "power_on_settle_s": (0, False, False),
    "action_interval_s": (0, False, False), "poll_interval_s": (0, False, True),
}
_REDFISH_KEYS = {"url", "inventory", "work", "verify_tls"} | set(_REDFISH_NUM)


def load_actuator_map(path: str | Path) -> ActuatorMap:
    """Read and validate an actuator map; paths in it are relative to its folder.

    A ``slurm:`` section is read as a Slurm map (its ``audit_db`` defaults to the map's, its
    plan age to ``safety.max_plan_age_h``); its ``slurm.conf`` must exist.
    """
    path = Path(path)
    doc = _read_yaml(path, "actuator map")
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a mapping with keys {sorted(_MAP_KEYS)}")
    _refuse_credentials(path, doc)
    unknown = sorted(set(map(str, doc)) - _MAP_KEYS)
    if unknown:
        raise ConfigError(f"{path}: {unknown[0]}: unknown key (allowed: {', '.join(sorted(_MAP_KEYS))})")
    for k in ("name", "site", "audit_db", "redfish"):
        if k not in doc:
            raise ConfigError(f"{path}: {k}: missing")
    base = path.resolve().parent

    def rel(key: str, v: object) -> Path:
        p = Path(_expand(path, key, v))
        return p if p.is_absolute() else (base / p)

    safety = doc.get("safety") or {}
    if not isinstance(safety, dict):
        raise ConfigError(f"{path}: safety: expected a mapping")
    for k in safety:
        if k not in _SAFETY_KEYS:
            raise ConfigError(f"{path}: safety.{k}: unknown key (allowed: {', '.join(sorted(_SAFETY_KEYS))})")
    age = _number(path, "safety.max_plan_age_h", safety.get("max_plan_age_h", 26.0), 0, strict_lo=True)
    rf = doc["redfish"]
    if not isinstance(rf, dict):
        raise ConfigError(f"{path}: redfish: expected a mapping")
    for k in rf:
        if k not in _REDFISH_KEYS:
            raise ConfigError(f"{path}: redfish.{k}: unknown key (allowed: {', '.join(sorted(_REDFISH_KEYS))})")
    for k in ("url", "inventory"):
        if k not in rf:
            raise ConfigError(f"{path}: redfish.{k}: missing")
    url = _expand(path, "redfish.url", rf["url"]).rstrip("/")
    if not re.match(r"^https?://[^/\s@]+(/[^\s]*)?$", url):
        raise ConfigError(f"{path}: redfish.url: {url!r} is not an http(s) URL without user info "
                          "(e.g. https://bmc.example:443; credentials come from the environment)")
    if url.endswith("/redfish/v1"):
        url = url[: -len("/redfish/v1")]
    verify = rf.get("verify_tls", True)
    if not isinstance(verify, bool):
        verify = str(rel("redfish.verify_tls", verify))  # a CA bundle
    nums = {k: _number(path, f"redfish.{k}", rf[k], lo, integer, strict)
            for k, (lo, integer, strict) in _REDFISH_NUM.items() if k in rf}
    settings = RedfishSettings(
        url=url, inventory=rel("redfish.inventory", rf["inventory"]),
        work=rel("redfish.work", rf["work"]) if rf.get("work") is not None else None,
        verify_tls=verify, **nums)
    audit_db = rel("audit_db", doc["audit_db"])
    smap = None
    if doc.get("slurm") is not None:
        smap = slurm_map_from_section(path, doc["slurm"], name=str(doc["name"]), audit_db=audit_db,
                                      max_plan_age_h=float(age))
    return ActuatorMap(name=str(doc["name"]), path=path, site=rel("site", doc["site"]), audit_db=audit_db,
                       redfish=settings, max_plan_age_h=float(age), slurm=smap)


@dataclass(frozen=True)
class InventorySpec:
    """Hosts per pool as the file gives them: listed ids and/or a discovery pattern on the system Name."""

    path: Path
    hosts: dict[str, tuple[str, ...]]
    discover: dict[str, re.Pattern[str]] = field(default_factory=dict)
    servers_per_host: dict[str, int] = field(default_factory=dict)  # pools not named: 1

    @property
    def needs_discovery(self) -> bool:
        return bool(self.discover)


@dataclass(frozen=True)
class Inventory:
    """Redfish system ids per pool, validated against the site config and the service."""

    path: Path
    pools: dict[str, tuple[str, ...]]
    servers_per_host: dict[str, int] = field(default_factory=dict)  # a host stands for this many servers (default 1)

    def per_host(self, pool: str) -> int:
        return int(self.servers_per_host.get(pool, 1))

    def pool_of(self) -> dict[str, str]:
        return {h: p for p, hs in self.pools.items() for h in hs}

    @property
    def hosts(self) -> list[str]:
        return [h for hs in self.pools.values() for h in hs]


def _host_id(path: Path, key: str, v: object) -> str:
    s = str(v).strip() if isinstance(v, (str, int)) and not isinstance(v, bool) else None
    if not s or not _HOST_ID.match(s):
        raise ConfigError(f"{path}: {key}: {v!r} is not a Redfish system id (letters, digits, '.', '_', '~', '-')")
    return s


def load_inventory_spec(path: str | Path, site: SiteConfig) -> InventorySpec:
    """Read a YAML (``pools: {pool: [ids] | {hosts: [...], discover: {name_regex: ...},
    servers_per_host: N}}``) or CSV (``pool,host``) inventory; unknown pools, duplicated hosts
    and bad ids are errors. ``servers_per_host`` (default 1): one Redfish system switches a
    block of that many servers (a chassis power domain), so the actuator counts it as that many."""
    path = Path(path)
    pools = {p.name: p for p in site.server_pools}
    hosts: dict[str, list[str]] = {}
    discover: dict[str, re.Pattern[str]] = {}
    per_host: dict[str, int] = {}
    seen: dict[str, str] = {}

    def add(pool: str, key: str, v: object) -> None:
        h = _host_id(path, key, v)
        if h in seen:
            raise ConfigError(f"{path}: {key}: host {h} is listed twice (already in pool {seen[h]})")
        seen[h] = pool
        hosts.setdefault(pool, []).append(h)

    def check_pool(key: str, name: object) -> str:
        if str(name) not in pools:
            raise ConfigError(f"{path}: {key}: unknown pool {name!r} (the site config {site.name} has "
                              f"{', '.join(pools)})")
        return str(name)

    if path.suffix.lower() == ".csv":
        if not path.is_file():
            raise ConfigError(f"{path}: host inventory not found")
        try:
            rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
        except (UnicodeDecodeError, csv.Error) as exc:
            raise ConfigError(f"{path}: cannot read CSV ({exc})") from None
        if not rows or set(rows[0]) != {"pool", "host"}:
            raise ConfigError(f"{path}: expected the columns pool,host (got {list(rows[0]) if rows else 'no rows'})")
        for i, r in enumerate(rows):
            pool = check_pool(f"row {i + 2}, column pool", r["pool"])
            add(pool, f"row {i + 2}, column host", r["host"])
    else:
        doc = _read_yaml(path, "host inventory")
        if not isinstance(doc, dict) or set(doc) != {"pools"} or not isinstance(doc["pools"], dict):
            raise ConfigError(f"{path}: expected one key 'pools' mapping each pool to its hosts")
        for name, entry in doc["pools"].items():
            pool = check_pool(f"pools.{name}", name)
            key = f"pools.{pool}"
            if isinstance(entry, list):
                entry = {"hosts": entry}
            if not isinstance(entry, dict) or not entry or set(entry) - {"hosts", "discover", "servers_per_host"}:
                raise ConfigError(f"{path}: {key}: expected a list of system ids or {{hosts: [...], "
                                  "discover: {name_regex: ...}, servers_per_host: N}")
            if "servers_per_host" in entry:
                per_host[pool] = int(_number(path, f"{key}.servers_per_host", entry["servers_per_host"], 1, integer=True))
            for i, h in enumerate(entry.get("hosts") or []):
                add(pool, f"{key}.hosts[{i}]", h)
            if "discover" in entry:
                d = entry["discover"]
                if not isinstance(d, dict) or set(d) != {"name_regex"} or not isinstance(d["name_regex"], str):
                    raise ConfigError(f"{path}: {key}.discover: expected {{name_regex: <pattern on the system Name>}}")
                try:
                    discover[pool] = re.compile(d["name_regex"])
                except re.error as exc:
                    raise ConfigError(f"{path}: {key}.discover.name_regex: not a regular expression ({exc})") from None
    for pool, hs in hosts.items():
        if len(hs) > _max_hosts(pools[pool].servers, per_host.get(pool, 1)):
            each = f" of {per_host[pool]} servers each" if per_host.get(pool, 1) > 1 else ""
            raise ConfigError(f"{path}: pools.{pool}: {len(hs)} hosts{each} but the site config has "
                              f"{pools[pool].servers} servers in pool {pool}")
    return InventorySpec(path=path, hosts={p: tuple(h) for p, h in hosts.items()}, discover=discover,
                         servers_per_host=per_host)


def _max_hosts(servers: int, per_host: int) -> int:
    """Hosts a pool of ``servers`` can hold in blocks of ``per_host`` (the last block may be partial)."""
    return -(-servers // per_host)


def resolve_inventory(spec: InventorySpec, site: SiteConfig, systems: Mapping[str, str] | None) -> Inventory:
    """Apply discovery to the service's systems (id -> Name) and check every host exists there.

    ``systems=None`` skips both (no service contacted): only listed hosts are returned.
    """
    pools = {p.name: p for p in site.server_pools}
    out = {p: list(h) for p, h in spec.hosts.items()}
    owner = {h: p for p, hs in spec.hosts.items() for h in hs}
    if systems is not None:
        for p, hs in spec.hosts.items():
            for i, h in enumerate(hs):
                if h not in systems:
                    raise ConfigError(f"{spec.path}: pools.{p}: host {h} is not in the Redfish Systems collection "
                                      f"({len(systems)} systems)")
        for sid, name in systems.items():
            hits = [p for p, rx in spec.discover.items() if rx.search(str(name))]
            if len(hits) > 1:
                raise ConfigError(f"{spec.path}: pools.{hits[0]}.discover: system {sid} ({name}) also matches "
                                  f"pools.{hits[1]}.discover")
            if hits:
                if sid in owner and owner[sid] != hits[0]:
                    raise ConfigError(f"{spec.path}: pools.{hits[0]}.discover: system {sid} is listed in pool {owner[sid]}")
                if sid not in owner:
                    owner[sid] = hits[0]
                    out.setdefault(hits[0], []).append(sid)
    for p, hs in out.items():
        if len(hs) > _max_hosts(pools[p].servers, spec.servers_per_host.get(p, 1)):
            raise ConfigError(f"{spec.path}: pools.{p}: {len(hs)} hosts (listed and discovered) but the site config "
                              f"has {pools[p].servers} servers in pool {p}")
    return Inventory(path=spec.path, pools={p: tuple(sorted(hs)) for p, hs in out.items()},
                     servers_per_host=dict(spec.servers_per_host))


def load_work(path: Path | None, inventory: Inventory) -> dict[str, bool]:
    """Host -> busy from a CSV ``host,busy`` (true/false). A host it does not list is busy:
    nobody said it carries no work, so it is never powered off."""
    busy = {h: True for h in inventory.hosts}
    if path is None:
        return busy
    if not path.is_file():
        raise ConfigError(f"{path}: work file (redfish.work) not found")
    try:
        rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"{path}: cannot read CSV ({exc})") from None
    if rows and set(rows[0]) != {"host", "busy"}:
        raise ConfigError(f"{path}: expected the columns host,busy (got {list(rows[0])})")
    for i, r in enumerate(rows):
        h, v = str(r["host"]).strip(), str(r["busy"]).strip().lower()
        if h not in busy:
            raise ConfigError(f"{path}: row {i + 2}, column host: {h!r} is not in the host inventory")
        if v not in ("true", "1", "yes", "false", "0", "no"):
            raise ConfigError(f"{path}: row {i + 2}, column busy: expected true/false, got {r['busy']!r}")
        busy[h] = v in ("true", "1", "yes")
    return busy
