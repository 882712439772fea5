"""Actions a controller takes on a site, and the state carried between its decisions.

The types the simulator, the optimiser's closed loop and the controllers exchange; they live
below all of them.

In the simulator, a policy is called once per *decision interval* (it states its own ``interval_h``; ``None``
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
``charge_kw``              (n, stores)      storage charging power asked of each store of
                                            ``site.storage`` [kW, grid side]; None: idle
``discharge_kw``           (n, stores)      storage discharging power asked [kW, site side];
                                            None: idle. The simulator's storage physics
                                            carries out what its limits allow (recorded)
=========================  ===============  ==============================================
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from coolshift.schema import col
from coolshift.site_arrays import SiteArrays

__all__ = ["ActionError", "Actions", "SimState"]


class ActionError(ValueError):
    """An action outside its hard bounds; the message names the step, component and limit."""


@dataclass
class Actions:
    """Actions for ``n`` consecutive steps (see the module table for shapes and units)."""

    supply_c: np.ndarray
    chw_c: np.ndarray
    active_servers: np.ndarray
    release_units_per_h: np.ndarray
    offload_units_per_h: np.ndarray
    charge_kw: np.ndarray | None = None
    discharge_kw: np.ndarray | None = None

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
    storage_soc_kwh: np.ndarray | None = None  # (stores,) state of charge [kWh]; None: the config's initial
