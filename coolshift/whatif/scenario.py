"""What-if scenarios: YAML documents of overrides on a site, and sweeps (grids) of them.

A scenario is a strict pydantic model read from ``configs/whatif/*.yaml``:

- ``overrides``: a patch on the site YAML, merged key by key. Lists of named components
  (``zones``, ``server_pools``, ``workload_classes``, ``edge_sites``) are patched *by name*:
  ``server_pools: {a_web: {servers: 300}}`` changes one pool, ``zones: {"*": {inlet_max_c: 30}}``
  every zone, a new name adds a component (it must then be complete), ``null`` removes one.
  Relative ``path``/``profile_path`` values are relative to the scenario file.
- ``consolidation``: N physical servers of the listed pools become ``ceil(N / ratio)`` hosts
  (virtualisation), optionally of new host hardware; the embodied carbon of the retired and
  new hardware follows from it (see :mod:`coolshift.whatif.embodied`).
- ``hardware``: explicit retired/new hardware lines (a refresh), with product carbon footprints.
- ``onsite_pv``: an on-site PV array modelled with pvlib from the site's weather.

The patched site is re-validated with :class:`coolshift.config.SiteConfig`; a bad override
is a :class:`ScenarioError` naming the scenario file and the key (``server_pools[a_web].peak_w``).

A sweep file expands one base scenario over a grid of values at dotted paths of the scenario
document (``consolidation.ratio``, ``overrides.zones.*.inlet_max_c``,
``overrides.renewables.ppa_mwh_per_year``): the Cartesian product, one scenario per point.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from coolshift.config import ConfigError, SiteConfig

__all__ = [
    "ScenarioError",
    "PCF",
    "HostSpec",
    "Consolidation",
    "HardwareLine",
    "Hardware",
    "OnsitePV",
    "Scenario",
    "Sweep",
    "BASELINE",
    "load_scenario",
    "load_sweep",
    "expand_sweep",
    "apply_scenario",
    "merge_overrides",
    "scenario_key",
]

BASELINE = "baseline"
# Component lists of SiteConfig that are patched by name.
NAMED_LISTS = ("zones", "server_pools", "workload_classes", "edge_sites")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.,=+-]+$")
# Keys whose relative values are file paths (resolved against the scenario file).
_PATH_KEYS = ("path", "profile_path")


class ScenarioError(ConfigError):
    """A scenario or sweep that cannot be applied; the message names the file and key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class PCF(_Strict):
    """A product carbon footprint, the embodied part only (per unit of hardware)."""

    manufacturing_kgco2e: float = Field(ge=0, description="cradle-to-gate, per unit")
    transport_kgco2e: float = Field(0.0, ge=0, description="factory to site, per unit")
    lifetime_years: float = Field(4.0, gt=0, description="service life the footprint is amortised over")
    source: str = ""


class HostSpec(_Strict):
    """The host hardware consolidated work runs on (fields of a server pool)."""

    idle_w: float = Field(gt=0)
    peak_w: float = Field(gt=0)
    power_curve_frac: list[float] | None = None
    sleep_w: float | None = Field(None, ge=0)
    capacity_units_per_server: float = Field(gt=0, description="work units per hour per host at full load")


class Consolidation(_Strict):
    """Virtualisation: ``N`` servers of each listed pool become ``ceil(N / ratio)`` hosts."""

    pools: list[str] = Field(min_length=1)
    ratio: float = Field(gt=1.0, description="physical servers per host")
    host: HostSpec | None = Field(None, description="new host hardware; None keeps the pool's servers as hosts")
    new_hosts: bool | None = Field(None, description="hosts are bought new (default: True when host is given)")
    host_pcf: str | PCF = "dell_r940_2019"
    retired_pcf: str | PCF = "dell_r640_2019"
    retired_age_years: float = Field(3.0, ge=0, description="age of the retired servers at retirement")

    @property
    def buys_hosts(self) -> bool:
        return self.host is not None if self.new_hosts is None else self.new_hosts


class HardwareLine(_Strict):
    """Servers of one pool retired or bought: ``count`` ("all": the whole pool) of one PCF."""

    pool: str
    count: int | Literal["all"] = "all"
    pcf: str | PCF
    age_years: float | None = Field(None, ge=0, description="retired only: age at retirement")

    @field_validator("count")
    @classmethod
    def _count(cls, v):
        if isinstance(v, int) and v < 0:
            raise ValueError("count must be >= 0 or 'all'")
        return v


class Hardware(_Strict):
    retired: list[HardwareLine] = []
    new: list[HardwareLine] = []
    count_retired_writeoff: bool = Field(
        True,
        description="count the unamortised embodied carbon of hardware retired before its lifetime "
        "as a one-off cost of the project (conservative: lengthens the payback)",
    )


class OnsitePV(_Strict):
    """On-site PV (PVWatts-style, via pvlib) fed by the site's weather file."""

    capacity_kw_dc: float = Field(gt=0)
    tilt_deg: float = Field(20.0, ge=0, le=90)
    azimuth_deg: float = Field(180.0, ge=0, lt=360, description="180 = facing south")
    # PVWatts v5 default system losses 14.08 % (Dobos 2014, NREL/TP-6A20-62641, Table 4).
    system_loss_frac: float = Field(0.1408, ge=0, lt=1)
    # PVWatts v5 default nominal inverter efficiency 0.96 (Dobos 2014, Section 9).
    inverter_eff: float = Field(0.96, gt=0, le=1)
    # PVWatts v5 "standard" module temperature coefficient -0.47 %/K (Dobos 2014, Table 1).
    gamma_pdc_per_k: float = Field(-0.0047, le=0)
    dc_ac_ratio: float = Field(1.2, gt=0, description="PVWatts v5 default DC/AC ratio 1.2 (Dobos 2014)")
    embodied_kgco2e_per_kw_dc: float | None = Field(
        None, ge=0, description="embodied carbon of the array per kW DC (from the supplier's EPD); None: not counted"
    )
    lifetime_years: float = Field(25.0, gt=0, description="typical module warranty period")


Kind = Literal[
    "virtualisation", "hardware_refresh", "setpoint", "cooling_retrofit", "renewables", "edge", "grid", "custom"
]


class Scenario(_Strict):
    name: str
    kind: Kind = "custom"
    description: str = ""
    overrides: dict[str, Any] = {}
    consolidation: Consolidation | None = None
    hardware: Hardware | None = None
    onsite_pv: OnsitePV | None = None
    sources: list[str] = Field([], description="citations for the numbers this scenario uses")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME_RE.match(v) or v == BASELINE:
            raise ValueError(
                f"name {v!r} must use letters, digits and _.,=+- only, and not be {BASELINE!r} (the current site)"
            )
        return v

    @model_validator(mode="after")
    def _top_keys(self) -> "Scenario":
        unknown = sorted(set(self.overrides) - set(SiteConfig.model_fields) - {"base_dir"})
        if unknown:
            raise ValueError(f"overrides: unknown site keys {unknown} (site keys: {sorted(set(SiteConfig.model_fields) - {'base_dir'})})")
        if "base_dir" in self.overrides:
            raise ValueError("overrides: base_dir cannot be overridden")
        return self


class Sweep(_Strict):
    """A grid of values at dotted paths of a base scenario document."""

    name: str
    base: str | None = Field(None, description="base scenario file, relative to the sweep file")
    scenario: dict[str, Any] | None = Field(None, description="inline base scenario document")
    grid: dict[str, list[Any]] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError(f"name {v!r} must use letters, digits and _.,=+- only")
        return v

    @field_validator("grid")
    @classmethod
    def _grid(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for k, vals in v.items():
            if not vals:
                raise ValueError(f"grid.{k}: needs at least one value")
        return v

    @model_validator(mode="after")
    def _one_base(self) -> "Sweep":
        if (self.base is None) == (self.scenario is None):
            raise ValueError("give exactly one of base (a scenario file) or scenario (an inline document)")
        return self


# --------------------------------------------------------------------------------------------
def _fmt_errors(path: Path | str, what: str, err: ValidationError, namer=None) -> str:
    lines = [f"{path}: invalid {what} ({err.error_count()} error(s))"]
    for e in err.errors():
        loc = namer(e["loc"]) if namer else ".".join(str(x) for x in e["loc"])
        msg = "unknown key (check spelling; keys carry units, e.g. _kw, _c)" if e["type"] == "extra_forbidden" else e["msg"]
        lines.append(f"  - {loc or '<root>'}: {msg}")
    return "\n".join(lines)


def _read_yaml(path: Path) -> dict:
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ScenarioError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ScenarioError(f"{path}: expected a mapping at the top level")
    return raw


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file (paths in its overrides stay relative to it)."""
    path = Path(path)
    raw = _read_yaml(path)
    try:
        return Scenario.model_validate(raw)
    except ValidationError as exc:
        raise ScenarioError(_fmt_errors(path, "scenario", exc)) from None


def load_sweep(path: str | Path) -> tuple[Sweep, dict, Path]:
    """Read a sweep file: (sweep, base scenario document, folder its relative paths resolve against)."""
    path = Path(path)
    try:
        sweep = Sweep.model_validate(_read_yaml(path))
    except ValidationError as exc:
        raise ScenarioError(_fmt_errors(path, "sweep", exc)) from None
    if sweep.base is not None:
        base_path = (path.parent / sweep.base).resolve()
        base_doc = _read_yaml(base_path)
        return sweep, base_doc, base_path.parent
    return sweep, dict(sweep.scenario or {}), path.parent.resolve()


def _set_dotted(doc: dict, dotted: str, value: Any, where: str) -> None:
    parts = dotted.split(".")
    node = doc
    for p in parts[:-1]:
        nxt = node.get(p)
        if nxt is None:
            nxt = node[p] = {}
        if not isinstance(nxt, dict):
            raise ScenarioError(f"{where}: grid key {dotted!r}: {p!r} is not a mapping in the base scenario")
        node = nxt
    node[parts[-1]] = value


def _label(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    s = re.sub(r"[^A-Za-z0-9_.+-]", "_", str(value))
    return s[:24]


def expand_sweep(path: str | Path) -> list[tuple[Scenario, Path]]:
    """All scenarios of a sweep file, each with the folder its relative paths resolve against.

    Names are ``<sweep>__<key>=<value>,...`` with the last segment of each dotted key.
    """
    path = Path(path)
    sweep, base_doc, base_dir = load_sweep(path)
    keys = list(sweep.grid)
    short = [k.split(".")[-1] for k in keys]
    if len(set(short)) < len(short):  # ambiguous last segments: use the full key
        short = [k.replace(".", "_").replace("*", "all") for k in keys]
    out = []
    for combo in itertools.product(*(sweep.grid[k] for k in keys)):
        doc = copy.deepcopy(base_doc)
        for k, v in zip(keys, combo):
            _set_dotted(doc, k, v, str(path))
        doc["name"] = f"{sweep.name}__" + ",".join(f"{s}={_label(v)}" for s, v in zip(short, combo))
        try:
            out.append((Scenario.model_validate(doc), base_dir))
        except ValidationError as exc:
            raise ScenarioError(_fmt_errors(path, f"sweep point {doc['name']}", exc)) from None
    return out


# --------------------------------------------------------------------------------------------
def _absolutise_paths(node: Any, base: Path) -> Any:
    if isinstance(node, dict):
        return {
            k: (str((base / v).resolve()) if k in _PATH_KEYS and isinstance(v, str) and not Path(v).is_absolute()
                else _absolutise_paths(v, base))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_absolutise_paths(v, base) for v in node]
    return node


def merge_overrides(base: Any, patch: Any, where: str = "") -> Any:
    """``base`` (a site document) with ``patch`` merged in; named lists are patched by name."""
    if isinstance(patch, dict) and isinstance(base, list) and all(isinstance(i, dict) and "name" in i for i in base):
        items = {i["name"]: copy.deepcopy(i) for i in base}
        order = [i["name"] for i in base]
        star = patch.get("*")
        if star is not None:
            for n in order:
                items[n] = merge_overrides(items[n], star, f"{where}[*]")
        for name, sub in patch.items():
            if name == "*":
                continue
            if sub is None:
                if name not in items:
                    raise ScenarioError(f"{where}: cannot remove {name!r}: no such component (have {order})")
                items.pop(name)
                order.remove(name)
            elif name in items:
                items[name] = merge_overrides(items[name], sub, f"{where}[{name}]")
            else:
                if not isinstance(sub, dict):
                    raise ScenarioError(f"{where}[{name}]: a new component needs a mapping of its fields")
                items[name] = {"name": name, **sub}
                order.append(name)
        return [items[n] for n in order]
    if isinstance(patch, dict) and isinstance(base, dict):
        out = dict(base)
        for k, v in patch.items():
            out[k] = merge_overrides(base.get(k), v, f"{where}.{k}" if where else k) if k in base else v
        return out
    return copy.deepcopy(patch)


def _site_namer(doc: dict):
    """Turn pydantic locations with list indices into ``server_pools[a_web].peak_w``."""

    def name(loc) -> str:
        out, node = "", doc
        for part in loc:
            if isinstance(part, int) and isinstance(node, list) and part < len(node):
                item = node[part]
                out += f"[{item.get('name', part)}]" if isinstance(item, dict) else f"[{part}]"
                node = item
            else:
                out += f".{part}" if out else str(part)
                node = node.get(part) if isinstance(node, dict) else None
        return out

    return name


def _consolidate(doc: dict, cons: Consolidation, where: str) -> dict:
    pools = {p["name"]: p for p in doc["server_pools"]}
    for name in cons.pools:
        if name not in pools:
            raise ScenarioError(f"{where}: consolidation.pools: unknown pool {name!r} (pools: {sorted(pools)})")
        p = pools[name]
        n = int(p["servers"])
        m = max(1, math.ceil(n / cons.ratio))
        p["servers"] = m
        # The redundancy floor keeps its share of the pool (rounded up, at most the pool).
        p["min_active_servers"] = min(m, math.ceil(int(p.get("min_active_servers", 0)) * m / n))
        if cons.host is not None:
            p.update({k: v for k, v in cons.host.model_dump().items() if v is not None})
            if cons.host.power_curve_frac is None:
                p["power_curve_frac"] = None
    return doc


def apply_scenario(site: SiteConfig, scenario: Scenario, source: str | Path = "<scenario>",
                   base_dir: Path | None = None) -> SiteConfig:
    """The site as the scenario changes it, re-validated; errors name ``source`` and the key.

    ``base_dir``: folder that relative paths in the overrides resolve against (default: the
    folder of ``source``).
    """
    where = f"{source}: scenario {scenario.name}"
    base_dir = Path(base_dir) if base_dir is not None else Path(source).resolve().parent
    doc = site.model_dump(mode="python")
    patch = _absolutise_paths(copy.deepcopy(scenario.overrides), base_dir)
    doc = merge_overrides(doc, patch)
    if scenario.consolidation is not None:
        doc = _consolidate(doc, scenario.consolidation, where)
    doc["base_dir"] = site.base_dir
    try:
        new = SiteConfig.model_validate(doc)
    except ValidationError as exc:
        raise ScenarioError(_fmt_errors(where, "site after overrides", exc, _site_namer(doc))) from None
    pools = {p.name for p in new.server_pools}
    if scenario.hardware is not None:
        base_pools = {p.name for p in site.server_pools}
        for kind, lines, known in (("retired", scenario.hardware.retired, base_pools), ("new", scenario.hardware.new, pools)):
            for i, line in enumerate(lines):
                if line.pool not in known:
                    raise ScenarioError(f"{where}: hardware.{kind}[{i}].pool: unknown pool {line.pool!r} (pools: {sorted(known)})")
    return new


def scenario_key(payload: dict) -> str:
    """Content hash of everything a scenario's result depends on (for resuming sweeps)."""
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
