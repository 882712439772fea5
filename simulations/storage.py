"""Electricity storage behind the meter: state of charge, losses and grid import, step by step.

The simulator's own physics of a battery or UPS string (it shares no code with the LP's
``storage_balance`` rows): every step the battery management system clips the requested
power to the power limits and to the energy between the state-of-charge limits (a UPS
never below its ride-through reserve), then books the energy flows explicitly:

    stored(t) = stored(t-1) - self-discharge + charged - charge loss - discharged - discharge loss

with charge loss = (1 - eta) x energy drawn from the grid, discharge loss = (1/eta - 1) x
energy delivered, eta = sqrt(round-trip efficiency) each way, self-discharge = rate x dt x
stored(t-1). Grid import = facility + charging - discharging; discharging beyond the
facility's own draw is clipped (no export). A store that self-discharge has taken below its
floor (state-of-charge minimum or UPS reserve) is topped back up to it in the same step
(the BMS's maintenance charge, counted as charging: grid import), whatever was requested.

:func:`storage_steps` is the physics for a block of steps from a given state of charge (the
closed-loop simulator calls it per decision interval, :mod:`.engine`); :func:`run_storage`
runs it over a whole series.

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

__all__ = ["StorageRun", "run_storage", "reserve_kwh", "storage_steps", "storage_floor_kwh", "initial_soc_kwh"]


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


def storage_floor_kwh(site: SiteConfig) -> np.ndarray:
    """Per store [kWh]: the state of charge the BMS never goes below by discharging, the larger of
    ``soc_min_frac x energy`` and the UPS ride-through reserve (:func:`reserve_kwh`)."""
    design_kw = sum(z.design_it_load_kw for z in site.zones)
    return np.array([max(u.soc_min_frac * u.energy_kwh, reserve_kwh(u.ride_through_min, design_kw,
                                                                    u.round_trip_efficiency))
                     for u in site.storage], dtype=float)


def initial_soc_kwh(site: SiteConfig) -> np.ndarray:
    """Per store [kWh]: the config's initial state of charge (``soc_initial_frac x energy``)."""
    return np.array([u.soc_initial_frac * u.energy_kwh for u in site.storage], dtype=float)


# Below the floor by less than this [kWh] is float noise, not a reason for a maintenance charge.
FLOOR_TOL_KWH = 1e-9


def storage_steps(site: SiteConfig, facility_kw: np.ndarray, charge_kw: np.ndarray | None,
                  discharge_kw: np.ndarray | None, soc0_kwh: np.ndarray, dt_h: float) -> dict[str, np.ndarray]:
    """The site's stores over ``len(facility_kw)`` steps of ``dt_h`` hours from ``soc0_kwh`` (stores,).

    ``charge_kw``/``discharge_kw``: requested power per step and store (n, stores) [kW], None = idle.
    Returns per-step arrays (n, stores): ``soc_kwh`` (end of step), ``charge_kw`` and ``discharge_kw``
    as carried out, ``charge_loss_kwh``, ``discharge_loss_kwh``, ``self_discharge_kwh``; and
    ``grid_kw`` (n,) = facility + charge - discharge (summed over stores).
    """
    fac = np.asarray(facility_kw, dtype=float)
    n, S = len(fac), len(site.storage)
    out = {k: np.zeros((n, S)) for k in ("soc_kwh", "charge_kw", "discharge_kw", "charge_loss_kwh",
                                         "discharge_loss_kwh", "self_discharge_kwh")}
    req_c = np.zeros((n, S)) if charge_kw is None else np.asarray(charge_kw, dtype=float).reshape(n, S)
    req_d = np.zeros((n, S)) if discharge_kw is None else np.asarray(discharge_kw, dtype=float).reshape(n, S)
    grid = fac.copy()
    floors = storage_floor_kwh(site)
    for j, u in enumerate(site.storage):
        eta = float(np.sqrt(u.round_trip_efficiency))
        floor, ceil = floors[j], u.soc_max_frac * u.energy_kwh
        stored = float(soc0_kwh[j])
        for t in range(n):
            self_loss = u.self_discharge_per_h * dt_h * stored
            after_self = stored - self_loss
            topup = (floor - after_self) / (eta * dt_h) if after_self < floor - FLOOR_TOL_KWH else 0.0
            c = min(max(req_c[t, j], topup, 0.0), u.charge_kw, max(ceil - after_self, 0.0) / (eta * dt_h))
            d = 0.0 if topup else min(max(req_d[t, j], 0.0), u.discharge_kw, max(after_self - floor, 0.0) * eta / dt_h,
                                      max(grid[t] + c, 0.0))  # never export
            loss_c = (1.0 - eta) * c * dt_h
            loss_d = (1.0 / eta - 1.0) * d * dt_h
            stored = after_self + c * dt_h - loss_c - d * dt_h - loss_d
            grid[t] += c - d
            for k, val in zip(out, (stored, c, d, loss_c, loss_d, self_loss)):
                out[k][t, j] = val
    out["grid_kw"] = grid
    return out


def run_storage(site: SiteConfig, facility_kw: pd.Series, charge_kw: pd.DataFrame | None = None,
                discharge_kw: pd.DataFrame | None = None, initial_soc_kwh: dict | None = None) -> StorageRun:
    """Run the site's stores under requested charge/discharge power [kW] (columns = store names,
    missing = idle) beside ``facility_kw`` (the simulator's facility power) on its index."""
    idx = facility_kw.index
    if len(idx) < 2:
        raise ValueError("run_storage: needs at least two steps")
    dt = (idx[1] - idx[0]).total_seconds() / 3600.0
    names = [u.name for u in site.storage]

    def req(frame: pd.DataFrame | None) -> np.ndarray:
        return np.column_stack([np.zeros(len(idx)) if frame is None or s not in frame else frame[s].to_numpy(float)
                                for s in names]) if names else np.zeros((len(idx), 0))

    soc0 = np.array([float((initial_soc_kwh or {}).get(u.name, u.soc_initial_frac * u.energy_kwh))
                     for u in site.storage])
    out = storage_steps(site, facility_kw.to_numpy(float), req(charge_kw), req(discharge_kw), soc0, dt)
    fr = lambda k: pd.DataFrame(out[k], index=idx, columns=names)  # noqa: E731
    return StorageRun(fr("soc_kwh"), fr("charge_kw"), fr("discharge_kw"), fr("charge_loss_kwh"),
                      fr("discharge_loss_kwh"), fr("self_discharge_kwh"),
                      pd.Series(out["grid_kw"], index=idx, name="grid_power_kw"),
                      dict(zip(names, storage_floor_kwh(site))))
