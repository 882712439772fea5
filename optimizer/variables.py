"""Decision variables: one family per decision, over whole component tables.

Units: setpoints degC, active servers (count, continuous unless ``integer_servers``),
work served and offloaded in work units per hour, backlog in work units, power in kW.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .data import ProblemData
from .lp import LinearProgram

__all__ = ["Vars", "add_variables"]


@dataclass
class Vars:
    """Column ids of each family, shaped steps-first; ``-1`` where a pair does not exist."""

    sp: np.ndarray  # (n, Z) supply-air setpoint
    chw: np.ndarray  # (n,) chilled-water setpoint
    nact: np.ndarray  # (n, P) active servers
    up: np.ndarray  # (n, P) servers switched on in the step (booting)
    pit: np.ndarray  # (n, P) pool IT power kW
    work: np.ndarray  # (n, P, K) work served
    off: np.ndarray  # (n, E, K) work offloaded
    backlog: np.ndarray  # (n, K) batch backlog at the end of the step (-1 for interactive)
    fan: np.ndarray  # (n, Z) server-fan power above the threshold, kW
    fac: np.ndarray  # (n,) facility (grid import) power kW
    dsp: np.ndarray | None  # (n, Z) |setpoint move|
    dchw: np.ndarray | None  # (n,) |chw move|
    unmatched: np.ndarray | None  # (n,) grid energy not matched by the PPA (market), kW
    cool: np.ndarray | None = None  # (n,) cooling power kW, only with piecewise-linear cooling
    grid: np.ndarray | None = None  # (n,) grid import kW = facility + charge - discharge (storage only)
    charge: np.ndarray | None = None  # (n, S) storage charging power kW (grid side)
    discharge: np.ndarray | None = None  # (n, S) storage discharging power kW (site side)
    soc: np.ndarray | None = None  # (n, S) state of charge at the end of the step, kWh
    peak: np.ndarray | None = None  # (M,) billing month's peak grid import kW (demand charge)

    @property
    def imports(self) -> np.ndarray:
        """(n,) the column of grid import: ``grid`` with storage, else facility power."""
        return self.grid if self.grid is not None else self.fac


def _pairs(mask: np.ndarray, rows: list[str], cols: list[str]):
    ij = np.argwhere(mask)
    return ij, [f"{rows[i]}:{cols[j]}" for i, j in ij]


def add_variables(lp: LinearProgram, d: ProblemData) -> Vars:
    n, step = d.n, {"step": d.index}
    Z, P, K, E = len(d.zones), len(d.pools), len(d.classes), len(d.edges)
    sp = lp.add_vars("supply_setpoint_c", {**step, "zone": d.zones}, lb=d.sp_min, ub=d.sp_max)
    chw = lp.add_vars("chw_setpoint_c", step, lb=d.chw_min, ub=d.chw_max)
    nact = lp.add_vars(
        "active_servers", {**step, "pool": d.pools}, lb=d.min_active, ub=d.servers, integer=d.options.integer_servers
    )
    up = lp.add_vars("servers_switched_on", {**step, "pool": d.pools}, lb=0.0, ub=d.servers)
    pit = lp.add_vars("pool_it_power_kw", {**step, "pool": d.pools}, lb=0.0)

    ij, labels = _pairs(d.serves, d.pools, d.classes)
    wid = lp.add_vars("served_units_per_h", {**step, "pool_class": labels}, lb=0.0)
    work = -np.ones((n, P, K), dtype=np.int64)
    work[:, ij[:, 0], ij[:, 1]] = wid

    off = -np.ones((n, E, K), dtype=np.int64)
    if E and d.offload_ok.any():
        ej, elabels = _pairs(d.offload_ok, d.edges, d.classes)
        oid = lp.add_vars("offload_units_per_h", {**step, "edge_class": elabels}, lb=0.0)
        off[:, ej[:, 0], ej[:, 1]] = oid

    backlog = -np.ones((n, K), dtype=np.int64)
    kb = np.flatnonzero(d.batch)
    if kb.size:
        bid = lp.add_vars("backlog_units", {**step, "class": [d.classes[k] for k in kb]}, lb=0.0)
        backlog[:, kb] = bid
    fan = lp.add_vars("fan_power_kw", {**step, "zone": d.zones}, lb=0.0)
    fac = lp.add_vars("facility_power_kw", step, lb=0.0)
    dsp = dchw = None
    if d.options.move_penalty_kg_per_c > 0:
        dsp = lp.add_vars("setpoint_move_c", {**step, "zone": d.zones}, lb=0.0)
        dchw = lp.add_vars("chw_move_c", step, lb=0.0)
    unmatched = None
    if d.accounting == "market":
        unmatched = lp.add_vars("unmatched_kw", step, lb=0.0)
    cool = None
    if d.cool_pieces:  # cooling = max of affine pieces: a variable above each of them
        cool = lp.add_vars("cooling_power_kw", step, lb=-np.inf)
    v = Vars(sp, chw, nact, up, pit, work, off, backlog, fan, fac, dsp, dchw, unmatched, cool)
    st = d.storage
    if st is not None:
        sc = {**step, "storage": st.names}
        v.grid = lp.add_vars("grid_power_kw", step, lb=0.0)
        v.charge = lp.add_vars("charge_kw", sc, lb=0.0, ub=st.charge_kw)
        v.discharge = lp.add_vars("discharge_kw", sc, lb=0.0, ub=st.discharge_kw)
        v.soc = lp.add_vars("soc_kwh", sc, lb=st.soc_min_kwh, ub=st.soc_max_kwh)
    if d.tariff is not None and d.tariff.demand_charge_usd_per_kw_month > 0 and d.money_weight_kg_per_usd > 0:
        so_far = d.options.peak_so_far_kw or {}
        v.peak = lp.add_vars("peak_grid_kw", {"month": d.months}, lb=[float(so_far.get(m, 0.0)) for m in d.months])
    return v

