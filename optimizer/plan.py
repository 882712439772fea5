"""The ``Plan``: per-step decisions and predictions, totals, shadow prices, solver facts.

:func:`evaluate_actions` turns decisions (setpoints, active servers, work, offload)
into predicted power, inlet temperatures and carbon with the same learned linear
model the LP uses, so an optimised plan and the rule-based fallback are scored alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from coolshift.tariffs import bill

from .data import ProblemData, StorageTable, boot_extra_kw_per_server

__all__ = ["Decisions", "Plan", "evaluate_actions", "storage_soc_kwh"]


@dataclass
class Decisions:
    """Decisions over the horizon (steps first)."""

    sp: np.ndarray  # (n, Z) degC
    chw: np.ndarray  # (n,) degC
    nact: np.ndarray  # (n, P) servers
    work: np.ndarray  # (n, P, K) units/h
    off: np.ndarray  # (n, E, K) units/h
    backlog: np.ndarray  # (n, K) units at the end of each step
    charge: np.ndarray | None = None  # (n, S) storage charging kW (None: storage idle)
    discharge: np.ndarray | None = None  # (n, S) storage discharging kW


@dataclass
class Plan:
    """A plan over the horizon.

    ``frame`` holds one row per step: setpoints, active servers, work per pool and class,
    offload, backlog, predicted kW, inlet temperatures, intensity, kgCO2 and PUE.
    ``shadow_prices`` lists the binding constraint families in operator units.
    """

    frame: pd.DataFrame
    totals: dict
    shadow_prices: pd.DataFrame = field(default_factory=pd.DataFrame)
    status: str = "optimal"
    fallback: bool = False
    reason: str | None = None
    diagnosis: object | None = None
    objective_kg: float | None = None
    timings: dict = field(default_factory=dict)

    def columns(self, prefix: str) -> pd.DataFrame:
        """Columns starting with ``prefix`` (e.g. ``'supply_setpoint_c'``, ``'active_servers'``)."""
        return self.frame[[c for c in self.frame.columns if c.startswith(prefix)]]

    @property
    def setpoints(self) -> pd.DataFrame:
        return self.frame[[c for c in self.frame.columns if c.startswith(("supply_setpoint_c", "chw_setpoint_c"))]]

    @property
    def active_servers(self) -> pd.DataFrame:
        return self.columns("active_servers__")

    @property
    def work(self) -> pd.DataFrame:
        return self.columns("served_units_per_h__")

    @property
    def offload(self) -> pd.DataFrame:
        return self.columns("offload_units_per_h__")

    @property
    def power(self) -> pd.DataFrame:
        cols = ["it_power_kw", "fan_power_kw", "cooling_power_kw", "facility_power_kw", "pue"]
        return self.frame[cols]


def pool_it_kw(d: ProblemData, nact: np.ndarray, work: np.ndarray) -> np.ndarray:
    """(n, P) pool IT power from the (convex piecewise-linear) power curve plus boots, kW."""
    wsum = work.sum(axis=2)
    out = np.empty_like(nact, dtype=float)
    for p, segs in enumerate(d.segments):
        base = d.servers[p] * d.sleep_w[p]
        lines = [base + nact[:, p] * (a * d.peak_w[p] - d.sleep_w[p]) + b * d.peak_w[p] * wsum[:, p] / d.cap_per_server[p] for a, b in segs]
        out[:, p] = np.max(lines, axis=0) / 1000.0
    return out + pool_boot_kw(d, nact)


def pool_boot_kw(d: ProblemData, nact: np.ndarray) -> np.ndarray:
    """(n, P) extra kW of the servers switched on in each step while they boot."""
    prev = np.vstack([d.n0[None, :], nact[:-1]])
    return np.maximum(nact - prev, 0.0) * boot_extra_kw_per_server(d)[None, :]


def storage_soc_kwh(st: StorageTable, charge: np.ndarray, discharge: np.ndarray, step_h: float) -> np.ndarray:
    """(n, S) state of charge at the end of each step by the LP's own balance (the simulator
    checks it independently: ``simulations/storage.py``)."""
    keep = 1.0 - st.self_discharge_per_h * step_h
    soc = np.empty_like(np.asarray(charge, float))
    prev = st.soc0_kwh.copy()
    for t in range(soc.shape[0]):
        prev = keep * prev + step_h * (st.eta_charge * charge[t] - discharge[t] / st.eta_discharge)
        soc[t] = prev
    return soc


def evaluate_actions(d: ProblemData, a: Decisions) -> pd.DataFrame:
    """Predicted per-step power, temperatures and carbon of given decisions (one frame)."""
    pit = pool_it_kw(d, a.nact, a.work)
    Z = len(d.zones)
    zit = np.zeros((d.n, Z))
    np.add.at(zit.T, d.pool_zone, pit.T)
    inlet = d.inlet_const + d.inlet_sp * a.sp + d.inlet_it * zit
    fan = d.fan_k * np.maximum(inlet - d.fan_thr, 0.0)
    cooling = d.cool_const + (d.cool_it * zit).sum(1) + (d.cool_sp * a.sp).sum(1) + d.cool_chw * a.chw
    for const, per_it, per_sp, per_chw in d.cool_pieces:  # convex piecewise linear: the largest piece
        cooling = np.maximum(cooling, const + (per_it * zit).sum(1) + (per_sp * a.sp).sum(1) + per_chw * a.chw)
    it_total = zit.sum(1) + fan.sum(1)
    facility = d.fac_const + d.fac_it * it_total + cooling
    dt = d.step_h
    st = d.storage
    grid = facility
    if st is not None:
        S = len(st.names)
        ch = np.zeros((d.n, S)) if a.charge is None else np.asarray(a.charge, float)
        dis = np.zeros((d.n, S)) if a.discharge is None else np.asarray(a.discharge, float)
        grid = facility + ch.sum(1) - dis.sum(1)
    if d.accounting == "location":
        site_kg = dt * d.gco2 / 1000.0 * grid
    else:
        site_kg = dt * d.residual_gco2 / 1000.0 * np.maximum(grid - d.ppa_kw, 0.0)
    cols: dict[str, np.ndarray] = {}
    for z, name in enumerate(d.zones):
        cols[f"supply_setpoint_c__{name}"] = a.sp[:, z]
    cols["chw_setpoint_c"] = a.chw
    for p, name in enumerate(d.pools):
        cols[f"active_servers__{name}"] = a.nact[:, p]
    for p, pname in enumerate(d.pools):
        for k, cname in enumerate(d.classes):
            if d.serves[p, k]:
                cols[f"served_units_per_h__{pname}__{cname}"] = a.work[:, p, k]
    for k, cname in enumerate(d.classes):
        if d.batch[k]:  # what the simulator's plan-following policy releases from the queue
            cols[f"release_units_per_h__{cname}"] = a.work[:, :, k].sum(axis=1)
    edge_kg = np.zeros(d.n)
    edge_kwh = np.zeros(d.n)
    for e, ename in enumerate(d.edges):
        for k, cname in enumerate(d.classes):
            if not d.offloadable[k]:
                continue
            o = a.off[:, e, k]  # zero where the edge is beyond the class's latency limit
            cols[f"offload_units_per_h__{ename}__{cname}"] = o
            kwh = dt * o * d.edge_kwh_per_unit[e]
            net = dt * o * d.data_gb_per_unit[k] * d.network_kwh_per_gb[e]
            edge_kwh += kwh + net
            edge_kg += (kwh * d.edge_gco2[:, e] + net * d.gco2) / 1000.0
    for k, cname in enumerate(d.classes):
        if d.batch[k]:
            cols[f"backlog_units__{cname}"] = a.backlog[:, k]
    for z, name in enumerate(d.zones):
        cols[f"zone_it_power_kw__{name}"] = zit[:, z]
        cols[f"inlet_temp_c__{name}"] = inlet[:, z]
    cols.update(
        {
            "it_power_kw": it_total,
            "boot_power_kw": pool_boot_kw(d, a.nact).sum(1),  # included in it_power_kw
            "fan_power_kw": fan.sum(1),
            "cooling_power_kw": cooling,
            "facility_power_kw": facility,
            "pue": facility / np.maximum(it_total, 1e-9),
            "gco2_per_kwh": d.gco2,
            "site_kgco2": site_kg,
            "edge_kwh": edge_kwh,
            "edge_kgco2": edge_kg,
            "kgco2": site_kg + edge_kg,
        }
    )
    if st is not None:
        soc = storage_soc_kwh(st, ch, dis, dt)
        for s_, name in enumerate(st.names):
            cols[f"charge_kw__{name}"] = ch[:, s_]
            cols[f"discharge_kw__{name}"] = dis[:, s_]
            cols[f"soc_kwh__{name}"] = soc[:, s_]
        deg_kg = dt * (dis * st.degradation_kg_per_kwh).sum(1)
        cols["grid_power_kw"] = grid
        cols["storage_kgco2"] = deg_kg
        cols["kgco2"] = site_kg + edge_kg + deg_kg
    if d.tariff is not None or d.options.objective != "carbon":
        cols["price_usd_per_kwh"] = d.price_per_kwh
        cols["energy_cost_usd"] = dt * d.price_per_kwh * grid
        if st is not None:
            cols["storage_cost_usd"] = dt * (dis * st.degradation_usd_per_kwh).sum(1)
    frame = pd.DataFrame(cols, index=d.index)
    frame.index.name = "timestamp"
    return frame


def totals_of(d: ProblemData, frame: pd.DataFrame) -> dict:
    dt = d.step_h
    kwh = float(frame["facility_power_kw"].sum() * dt)
    it_kwh = float(frame["it_power_kw"].sum() * dt)
    return {
        "steps": int(d.n),
        "step_h": dt,
        "facility_kwh": kwh,
        "it_kwh": it_kwh,
        "cooling_kwh": float(frame["cooling_power_kw"].sum() * dt),
        "edge_kwh": float(frame["edge_kwh"].sum()),
        "pue": kwh / it_kwh if it_kwh > 0 else float("nan"),
        "site_tco2": float(frame["site_kgco2"].sum() / 1000.0),
        "edge_tco2": float(frame["edge_kgco2"].sum() / 1000.0),
        "tco2": float(frame["kgco2"].sum() / 1000.0),
        "accounting": d.accounting,
        **_money_totals(d, frame),
    }


def _money_totals(d: ProblemData, frame: pd.DataFrame) -> dict:
    """Grid energy and the bill (energy, demand charge, storage degradation) when prices are known."""
    out: dict = {}
    if "grid_power_kw" in frame.columns:
        out["grid_kwh"] = float(frame["grid_power_kw"].sum() * d.step_h)
        out["storage_tco2"] = float(frame["storage_kgco2"].sum() / 1000.0)
    if "energy_cost_usd" in frame.columns:
        grid = frame["grid_power_kw"] if "grid_power_kw" in frame.columns else frame["facility_power_kw"]
        b = bill(d.index, grid.to_numpy(), d.price_per_kwh, d.tariff, d.step_h)
        deg = float(frame["storage_cost_usd"].sum()) if "storage_cost_usd" in frame.columns else 0.0
        out.update(energy_usd=b["energy_usd"], demand_usd=b["demand_usd"], storage_usd=deg,
                   cost_usd=b["cost_usd"] + deg, peak_kw_by_month=b["peak_kw_by_month"])
    return out
