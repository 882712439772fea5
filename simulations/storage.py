"""Electricity storage behind the meter: state of charge, losses and grid import, step by step.

The simulator's own physics of a battery or UPS string (it shares no code with the LP's
``storage_balance`` rows): every step the battery management system clips the requested
power to the power limits and to the energy between the state-of-charge limits (a UPS
never below its ride-through reserve), then books the energy flows explicitly:

    stored(t) = stored(t-1) - self-discharge + charged - charge loss - discharged - discharge loss

with charge loss = (1 - eta) x energy drawn from the grid, discharge loss = (1/eta - 1) x
energy delivered, eta = sqrt(round-trip efficiency) each way, self-discharge = rate x dt x
stored(t-1). Grid import = facility + charging - discharging; discharging beyond the
facility's own draw is clipped (no export).

References
----------
- Round trip split equally between charge and discharge: PyPSA ``StorageUnit``
  (``efficiency_store``, ``efficiency_dispatch``), pypsa.readthedocs.io, Components.
- Self-discharge as a share of stored energy per hour: PyPSA ``standing_loss``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from coolshift.config import SiteConfig

__all__ = ["StorageRun", "run_storage", "reserve_kwh"]


def reserve_kwh(ride_through_min: float, design_it_kw: float, round_trip_efficiency: float) -> float:
    """Stored energy [kWh] a UPS keeps to carry ``design_it_kw`` for ``ride_through_min`` minutes
    (the stored energy that delivers it: the delivered energy over the discharge efficiency)."""
    return ride_through_min / 60.0 * design_it_kw / float(np.sqrt(round_trip_efficiency))


@dataclass
class StorageRun:
    """Per-step results of :func:`run_storage` (frames indexed like the input, one column per store)."""

    soc_kwh: pd.DataFrame
    charge_kw: pd.DataFrame
    discharge_kw: pd.DataFrame
    charge_loss_kwh: pd.DataFrame
    discharge_loss_kwh: pd.DataFrame
    self_discharge_kwh: pd.DataFrame
    grid_kw: pd.Series
    floor_kwh: dict

    @property
    def losses_kwh(self) -> float:
        return float(self.charge_loss_kwh.to_numpy().sum() + self.discharge_loss_kwh.to_numpy().sum()
                     + self.self_discharge_kwh.to_numpy().sum())


def run_storage(site: SiteConfig, facility_kw: pd.Series, charge_kw: pd.DataFrame | None = None,
                discharge_kw: pd.DataFrame | None = None, initial_soc_kwh: dict | None = None) -> StorageRun:
    """Run the site's stores under requested charge/discharge power [kW] (columns = store names,
    missing = idle) beside ``facility_kw`` (the simulator's facility power) on its index."""
    idx = facility_kw.index
    if len(idx) < 2:
        raise ValueError("run_storage: needs at least two steps")
    dt = (idx[1] - idx[0]).total_seconds() / 3600.0
    fac = facility_kw.to_numpy(float)
    design_kw = sum(z.design_it_load_kw for z in site.zones)
    names = [u.name for u in site.storage]
    out = {k: np.zeros((len(idx), len(names))) for k in ("soc", "ch", "dis", "lc", "ld", "ls")}
    grid = fac.copy()
    floors = {}
    for j, u in enumerate(site.storage):
        eta = float(np.sqrt(u.round_trip_efficiency))
        floor = max(u.soc_min_frac * u.energy_kwh, reserve_kwh(u.ride_through_min, design_kw, u.round_trip_efficiency))
        ceil = u.soc_max_frac * u.energy_kwh
        floors[u.name] = floor
        stored = float((initial_soc_kwh or {}).get(u.name, u.soc_initial_frac * u.energy_kwh))
        req_c = np.zeros(len(idx)) if charge_kw is None or u.name not in charge_kw else charge_kw[u.name].to_numpy(float)
        req_d = np.zeros(len(idx)) if discharge_kw is None or u.name not in discharge_kw else discharge_kw[u.name].to_numpy(float)
        for t in range(len(idx)):
            self_loss = u.self_discharge_per_h * dt * stored
            after_self = stored - self_loss
            c = min(max(req_c[t], 0.0), u.charge_kw, max(ceil - after_self, 0.0) / (eta * dt))
            d = min(max(req_d[t], 0.0), u.discharge_kw, max(after_self - floor, 0.0) * eta / dt,
                    max(grid[t] + c, 0.0))  # never export
            loss_c = (1.0 - eta) * c * dt
            loss_d = (1.0 / eta - 1.0) * d * dt
            stored = after_self + c * dt - loss_c - d * dt - loss_d
            grid[t] += c - d
            for k, val in zip(("soc", "ch", "dis", "lc", "ld", "ls"), (stored, c, d, loss_c, loss_d, self_loss)):
                out[k][t, j] = val
    fr = lambda a: pd.DataFrame(a, index=idx, columns=names)  # noqa: E731
    return StorageRun(fr(out["soc"]), fr(out["ch"]), fr(out["dis"]), fr(out["lc"]), fr(out["ld"]), fr(out["ls"]),
                      pd.Series(grid, index=idx, name="grid_power_kw"), floors)
