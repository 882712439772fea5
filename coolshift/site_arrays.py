"""The site as named arrays: components in a fixed order, with their parameters (units in the names).

Built once per site from the config (:meth:`SiteArrays.from_site`) and read by the
simulator, the optimiser's problem data, the baseline rules and the controllers' actions,
so all of them agree on the order of zones, pools, classes and edge sites.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from coolshift.config import SiteConfig

__all__ = ["SiteArrays"]

_POOL_FIELDS = ("servers", "min_active_servers", "capacity_units_per_server", "idle_w", "peak_w", "sleep_w", "boot_time_s")
_ZONE_FIELDS = ("inlet_min_c", "inlet_max_c", "supply_setpoint_min_c", "supply_setpoint_max_c",
                "supply_setpoint_max_step_c", "supply_setpoint_initial_c")


@dataclass(frozen=True)
class SiteArrays:
    """Names and per-component parameters of a site, as numpy arrays in a fixed order.

    Built by :meth:`from_site`; the parameter arrays default to None only so that hand-made
    instances in tests may give just the names."""

    zones: list[str]
    pools: list[str]
    classes: list[str]
    interactive: list[str]
    batch: list[str]
    offloadable: list[str]
    edges: list[str]
    pool_zone: np.ndarray  # (pools,) zone index
    eligible: np.ndarray  # (classes, pools) bool
    deadline_h: np.ndarray  # (batch,)
    # pools (pools,): per server unless the name says otherwise
    servers: np.ndarray = None  # count installed
    min_active_servers: np.ndarray = None  # redundancy floor, count
    capacity_units_per_server: np.ndarray = None  # work units per hour at full load
    idle_w: np.ndarray = None
    peak_w: np.ndarray = None
    sleep_w: np.ndarray = None
    boot_time_s: np.ndarray = None
    # zones (zones,)
    inlet_min_c: np.ndarray = None
    inlet_max_c: np.ndarray = None
    supply_setpoint_min_c: np.ndarray = None
    supply_setpoint_max_c: np.ndarray = None
    supply_setpoint_max_step_c: np.ndarray = None  # per planning step
    supply_setpoint_initial_c: np.ndarray = None

    @property
    def capacity_units_per_h(self) -> np.ndarray:
        """(pools,) every server of the pool at full load, work units per hour."""
        return self.servers * self.capacity_units_per_server

    @property
    def open_to(self) -> np.ndarray:
        """(pools,) how many classes each pool serves."""
        return self.eligible.sum(axis=0)

    @classmethod
    def from_site(cls, site: SiteConfig) -> "SiteArrays":
        zones = [z.name for z in site.zones]
        pools = [p.name for p in site.server_pools]
        classes = [c.name for c in site.workload_classes]
        el = np.array(
            [[p.classes is None or c in p.classes for p in site.server_pools] for c in classes], dtype=bool
        )
        return cls(
            zones=zones,
            pools=pools,
            classes=classes,
            interactive=[c.name for c in site.workload_classes if c.kind == "interactive"],
            batch=[c.name for c in site.workload_classes if c.kind == "batch"],
            offloadable=[c.name for c in site.workload_classes if c.offloadable],
            edges=[e.name for e in site.edge_sites],
            pool_zone=np.array([zones.index(p.zone) for p in site.server_pools]),
            eligible=el,
            deadline_h=np.array([c.deadline_h for c in site.workload_classes if c.kind == "batch"], dtype=float),
            **{k: np.array([getattr(q, k) for q in site.server_pools], dtype=float) for k in _POOL_FIELDS},
            **{k: np.array([getattr(z, k) for z in site.zones], dtype=float) for k in _ZONE_FIELDS},
        )
