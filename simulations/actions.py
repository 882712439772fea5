"""The policy interface: actions, observations and the ``Policy`` protocol.

A policy is called once per *decision interval* (it states its own ``interval_h``; ``None``
means the whole run) and returns :class:`Actions` for every simulator step of that interval
as arrays. The engine checks every action: hard bounds (setpoint limits, more servers than
installed, negative work, edge capacity or latency) raise :class:`ActionError`; soft limits
(redundancy floor, setpoint rate of change, supply air below what the chilled water can
deliver, work released beyond capacity) are recorded as violations in the results. Nothing
is clamped silently.

Array shapes (``n`` = steps in the interval; names in :class:`SiteArrays` order):

=========================  ===============  ==============================================
field                      shape            meaning [unit]
=========================  ===============  ==============================================
``supply_c``               (n, zones)       CRAH supply-air setpoint [degC]
``chw_c``                  (n,)             chilled-water supply setpoint [degC]
``active_servers``         (n, pools)       servers switched on (rest asleep) [count]
``release_units_per_h``    (n, batch)       batch work taken from each class's queue to run
                                            locally [units/h]; more than the queue holds is
                                            simply unused (recorded)
``offload_units_per_h``    (n, edges, off)  work of each offloadable class run at each edge
                                            site [units/h] (batch: from the queue;
                                            interactive: from that step's demand)
=========================  ===============  ==============================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from coolshift.config import SiteConfig
from coolshift.schema import col

__all__ = ["ActionError", "SiteArrays", "Actions", "SimState", "Observation", "Policy"]


class ActionError(ValueError):
    """An action outside its hard bounds; the message names the step, component and limit."""


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


@dataclass
class Actions:
    """Actions for ``n`` consecutive steps (see the module table for shapes and units)."""

    supply_c: np.ndarray
    chw_c: np.ndarray
    active_servers: np.ndarray
    release_units_per_h: np.ndarray
    offload_units_per_h: np.ndarray

    @property
    def n_steps(self) -> int:
        return int(np.asarray(self.chw_c).shape[0])

    def check_shapes(self, names: SiteArrays, n: int) -> None:
        want = {
            "supply_c": (n, len(names.zones)),
            "chw_c": (n,),
            "active_servers": (n, len(names.pools)),
            "release_units_per_h": (n, len(names.batch)),
            "offload_units_per_h": (n, len(names.edges), len(names.offloadable)),
        }
        for k, shape in want.items():
            got = np.shape(getattr(self, k))
            if got != shape:
                raise ActionError(f"Actions.{k}: shape {got}, expected {shape}")

    def to_frame(self, index: pd.DatetimeIndex, names: SiteArrays) -> pd.DataFrame:
        """Plan-style frame: ``supply_setpoint_c__<zone>``, ``chw_setpoint_c``, ``active_servers__<pool>``,
        ``release_units_per_h__<class>``, ``offload_units_per_h__<edge>__<class>``."""
        data = {col("supply_setpoint_c", z): self.supply_c[:, i] for i, z in enumerate(names.zones)}
        data["chw_setpoint_c"] = self.chw_c
        data.update({col("active_servers", p): self.active_servers[:, i] for i, p in enumerate(names.pools)})
        data.update({col("release_units_per_h", c): self.release_units_per_h[:, i] for i, c in enumerate(names.batch)})
        for i, e in enumerate(names.edges):
            for j, c in enumerate(names.offloadable):
                data[col(col("offload_units_per_h", e), c)] = self.offload_units_per_h[:, i, j]
        return pd.DataFrame(data, index=index)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, names: SiteArrays) -> "Actions":
        """Inverse of :meth:`to_frame`; a missing column is an error naming it."""

        def get(c: str) -> np.ndarray:
            if c not in frame.columns:
                raise ActionError(f"plan frame: missing column {c!r}")
            return frame[c].to_numpy(dtype=float)

        n = len(frame)
        off = np.zeros((n, len(names.edges), len(names.offloadable)))
        for i, e in enumerate(names.edges):
            for j, c in enumerate(names.offloadable):
                off[:, i, j] = get(col(col("offload_units_per_h", e), c))
        return cls(
            supply_c=np.column_stack([get(col("supply_setpoint_c", z)) for z in names.zones]).reshape(n, -1),
            chw_c=get("chw_setpoint_c"),
            active_servers=np.column_stack([get(col("active_servers", p)) for p in names.pools]).reshape(n, -1),
            release_units_per_h=np.column_stack([get(col("release_units_per_h", c)) for c in names.batch]).reshape(n, -1)
            if names.batch
            else np.zeros((n, 0)),
            offload_units_per_h=off,
        )


@dataclass
class SimState:
    """State carried between decision intervals (values at the end of the previous step)."""

    inlet_c: np.ndarray  # (zones,) rack inlet temperature [degC]
    supply_c: np.ndarray  # (zones,) last supply setpoint [degC]
    chw_c: float  # last chilled-water setpoint [degC]
    active_servers: np.ndarray  # (pools,)
    queue_units: np.ndarray  # (batch,) backlog [units]


@dataclass
class Observation:
    """What a policy sees at the start of a decision interval.

    ``forecast`` is the data frame from ``step`` to the end of the run (actual data unless
    the caller passed another forecast frame); the policy decides how far to trust it.
    ``pending(b)`` lists the queued work of batch class ``b`` (index into ``names.batch``)
    as (due step, units) arrays, oldest first, where due step is the last step by which
    that work must be served.
    """

    site: SiteConfig
    names: SiteArrays
    step: int
    n_steps: int
    step_h: float
    index: pd.DatetimeIndex  # timestamps of this interval's steps
    state: SimState
    _forecast_full: pd.DataFrame = field(default=None, repr=False)
    _forecast_arrays_full: dict = field(default_factory=dict, repr=False)
    _arrivals_cum: list = field(default_factory=list, repr=False)  # per batch class, up to step
    _served_total: np.ndarray = field(default=None, repr=False)

    @property
    def forecast(self) -> pd.DataFrame:
        """Forecast frame from this interval's first step to the end of the run."""
        return self._forecast_full.iloc[self.step :]

    @property
    def forecast_arrays(self) -> dict[str, np.ndarray]:
        """The forecast's columns as numpy views from this step on (fast path for policies)."""
        return {k: v[self.step :] for k, v in self._forecast_arrays_full.items()}

    def pending(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        a_cum = self._arrivals_cum[b]
        if len(a_cum) == 0:
            return np.zeros(0, dtype=int), np.zeros(0)
        s = float(self._served_total[b])
        k0 = int(np.searchsorted(a_cum, s + 1e-9, side="right"))
        if k0 >= len(a_cum):
            return np.zeros(0, dtype=int), np.zeros(0)
        prev = np.concatenate([[0.0], a_cum[:-1]])[k0:]
        units = a_cum[k0:] - np.maximum(prev, s)
        due = np.arange(k0, len(a_cum)) + int(round(self.names.deadline_h[b] / self.step_h)) - 1
        keep = units > 1e-9
        return due[keep], units[keep]


@runtime_checkable
class Policy(Protocol):
    """Decides the actions of one decision interval.

    ``interval_h``: hours per call (``None``: one call for the whole run). ``decide``
    returns :class:`Actions` with exactly ``obs.n_steps`` steps.
    """

    name: str
    interval_h: float | None

    def decide(self, obs: Observation) -> Actions: ...
