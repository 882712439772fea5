"""The plant's state at the start of a plan: setpoints, active servers, batch backlog."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from coolshift.config import SiteConfig

__all__ = ["InitialState"]


@dataclass(frozen=True)
class InitialState:
    """Where the plan starts from (values in force just before the first step).

    Batch work already queued per class (work units = reference server-hours) is given
    either as ``backlog_due[class]`` = ``[(hours until due, units), ...]`` chunks, oldest
    first (a queue whose chunks fall due at different times: each must be served by its
    own due time, no earlier), or as one chunk ``backlog_units[class]`` due in
    ``backlog_deadline_h[class]`` hours. ``backlog_due`` wins where both name a class.
    """

    supply_setpoint_c: dict[str, float]
    chw_setpoint_c: float
    active_servers: dict[str, float]
    backlog_units: dict[str, float] = field(default_factory=dict)
    backlog_deadline_h: dict[str, float] = field(default_factory=dict)
    backlog_due: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    storage_soc_kwh: dict[str, float] = field(default_factory=dict)  # per store; default the config's initial

    def backlog_chunks(self) -> dict[str, list[tuple[float, float]]]:
        """Per batch class, the queued work as (hours until due, units) chunks."""
        out = {k: [(float(h), float(u)) for h, u in v] for k, v in self.backlog_due.items()}
        for k, v in self.backlog_units.items():
            if k not in out and v > 0:
                out[k] = [(float(self.backlog_deadline_h[k]), float(v))]
        return out

    @classmethod
    def from_site(cls, site: SiteConfig) -> "InitialState":
        """The config's initial setpoints, every server on, no backlog."""
        return cls(
            supply_setpoint_c={z.name: z.supply_setpoint_initial_c for z in site.zones},
            chw_setpoint_c=site.cooling.chiller.chw_setpoint_initial_c,
            active_servers={p.name: float(p.servers) for p in site.server_pools},
        )

    def validate(self, site: SiteConfig) -> None:
        """Raise ``ValueError`` naming the key that does not fit the site."""
        zones = {z.name: z for z in site.zones}
        pools = {p.name: p for p in site.server_pools}
        classes = {c.name: c for c in site.workload_classes}
        for z, v in self.supply_setpoint_c.items():
            if z not in zones:
                raise ValueError(f"initial state: supply_setpoint_c names unknown zone {z!r}")
            zc = zones[z]
            if not zc.supply_setpoint_min_c <= v <= zc.supply_setpoint_max_c:
                raise ValueError(
                    f"initial state: supply_setpoint_c[{z}] = {v} outside "
                    f"[{zc.supply_setpoint_min_c}, {zc.supply_setpoint_max_c}] degC"
                )
        for p, v in self.active_servers.items():
            if p not in pools:
                raise ValueError(f"initial state: active_servers names unknown pool {p!r}")
            if not 0 <= v <= pools[p].servers:
                raise ValueError(f"initial state: active_servers[{p}] = {v} outside [0, {pools[p].servers}]")
        for k, v in self.backlog_units.items():
            if k not in classes or classes[k].kind != "batch":
                raise ValueError(f"initial state: backlog_units names {k!r}, not a batch class")
            if v < 0:
                raise ValueError(f"initial state: backlog_units[{k}] = {v} is negative")
            if v > 0 and self.backlog_deadline_h.get(k) is None and k not in self.backlog_due:
                raise ValueError(f"initial state: backlog_units[{k}] needs backlog_deadline_h[{k}]")
        for k, chunks in self.backlog_due.items():
            if k not in classes or classes[k].kind != "batch":
                raise ValueError(f"initial state: backlog_due names {k!r}, not a batch class")
            for i, chunk in enumerate(chunks):
                if len(chunk) != 2:
                    raise ValueError(f"initial state: backlog_due[{k}][{i}] must be (hours until due, units)")
                h, u = float(chunk[0]), float(chunk[1])
                if not (np.isfinite(h) and np.isfinite(u)) or u < 0 or h < 0:
                    raise ValueError(f"initial state: backlog_due[{k}][{i}] = ({h}, {u}): hours and units must be >= 0")
