"""The plant's state at the start of a plan: setpoints, active servers, batch backlog."""

from __future__ import annotations

from dataclasses import dataclass, field

from coolshift.config import SiteConfig

__all__ = ["InitialState"]


@dataclass(frozen=True)
class InitialState:
    """Where the plan starts from (values in force just before the first step).

    ``backlog_units`` is batch work already queued per class (work units = reference
    server-hours) and ``backlog_deadline_h`` the hours left until it is due.
    """

    supply_setpoint_c: dict[str, float]
    chw_setpoint_c: float
    active_servers: dict[str, float]
    backlog_units: dict[str, float] = field(default_factory=dict)
    backlog_deadline_h: dict[str, float] = field(default_factory=dict)

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
            if v > 0 and self.backlog_deadline_h.get(k) is None:
                raise ValueError(f"initial state: backlog_units[{k}] needs backlog_deadline_h[{k}]")
