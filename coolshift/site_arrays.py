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


@dataclass(frozen=True)
class SiteArrays:
    """Names and per-component parameters of a site, as numpy arrays in a fixed order."""

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
        )
