"""The simulator: ``simulate(site, data, policy) -> SimResult``.

Discrete time, vectorised over steps and components. The run is cut into the policy's
decision intervals; for each one the engine builds an :class:`Observation`, asks the
policy for :class:`Actions`, checks them, and evaluates the physics for the whole interval
at once (numpy over steps x zones/pools). State carried between intervals: rack inlet
temperatures (first-order room lag), last setpoints, active servers (boots), batch queues.

Order of the physics in one interval (one fixed-point pass for the coupling between
server fan power and inlet temperature):

1. work: interactive demand then released batch work allocated to eligible pools within
   the effective capacity of the active servers (booting servers add no capacity for the
   boot time); FIFO batch queues (closed-form Lindley recursion); edge offload;
2. IT power: SPECpower curve per pool at its utilisation, sleep power, boot power;
3. air side: CRAH airflow for the zone heat, recirculation rise, CRAH fan cube law;
4. server fan/leakage rise from the inlet temperature (first pass), then the plant:
   economiser share, chiller COP and capacity, unmet load raising the supply air, pumps,
   tower fans, water; room lag on the inlet temperature; fan rise recomputed from the
   lagged inlet (second pass) and the plant recomputed with it;
5. electrical losses, facility power, PUE, water;
6. storage behind the meter (:mod:`.storage`, its own physics, no equations shared with the
   LP): the charge/discharge the policy commands (``Actions.charge_kw``/``discharge_kw``;
   None = idle) as the store's limits allow, state of charge carried to the next interval
   (``SimState.storage_soc_kwh``, what the next decision observes); grid import = facility +
   charge - discharge; carbon (location and market) and the bill count grid import.

Energy balance: facility = IT + cooling (chiller + CRAH fans + pumps + tower fans) + UPS
loss + PDU loss + other, exactly, every step; grid import = facility + charge - discharge
(= facility without storage); heat balance: heat load = free cooling +
chiller duty + unmet load, exactly, every step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from coolshift import accounting, workload
from coolshift.actions import ActionError, Actions, SimState
from coolshift.config import SiteConfig
from coolshift.schema import CARBON_GCO2_PER_KWH, TEMP_C, WETBULB_C, RH_PCT, col, demand_col
from coolshift.site_arrays import SiteArrays

from . import airside, edge, electrical, plant, servers
from .storage import initial_soc_kwh, storage_floor_kwh, storage_steps
from .actions import Observation, Policy

__all__ = ["SimResult", "Stepper", "simulate", "initial_state", "required_columns"]

# Tolerance for "served in its step" and queue arithmetic [units].
UNITS_TOL = 1e-6
_ACTION_FIELDS = ("supply_c", "chw_c", "active_servers", "release_units_per_h", "offload_units_per_h")


def required_columns(site: SiteConfig) -> list[str]:
    cols = [CARBON_GCO2_PER_KWH, TEMP_C, WETBULB_C]
    cols += [col(CARBON_GCO2_PER_KWH, e.name) for e in site.edge_sites]
    cols += [demand_col(c.name) for c in site.workload_classes]
    return cols


@dataclass
class SimResult:
    """Per-step ``timeseries`` frame, ``summary`` dict, and the :class:`Actions` the policy took."""

    timeseries: pd.DataFrame
    summary: dict
    actions: Actions
    names: SiteArrays

    def actions_frame(self) -> pd.DataFrame:
        """The actions as a plan-style frame (see :meth:`Actions.to_frame`)."""
        return self.actions.to_frame(self.timeseries.index, self.names)


def initial_state(site: SiteConfig) -> SimState:
    """Start of a run: initial setpoints, all servers on, empty queues, inlets at supply."""
    return SimState(
        inlet_c=np.array([z.supply_setpoint_initial_c for z in site.zones], dtype=float),
        supply_c=np.array([z.supply_setpoint_initial_c for z in site.zones], dtype=float),
        chw_c=float(site.cooling.chiller.chw_setpoint_initial_c),
        active_servers=np.array([p.servers for p in site.server_pools], dtype=float),
        queue_units=np.zeros(sum(c.kind == "batch" for c in site.workload_classes)),
        storage_soc_kwh=initial_soc_kwh(site),
    )


class _Params:
    """Per-component parameters as arrays (built once per run)."""

    def __init__(self, site: SiteConfig, step_h: float):
        self.site = site
        self.names = SiteArrays.from_site(site)
        n = self.names
        pools = site.server_pools
        zones = site.zones
        self.step_h = step_h
        self.step_s = step_h * 3600.0
        self.servers = n.servers
        self.min_active = n.min_active_servers
        self.cap_per_server = n.capacity_units_per_server
        self.peak_w = n.peak_w
        self.idle_w = n.idle_w
        self.sleep_w = n.sleep_w
        self.curve_w = np.array(
            [
                (np.asarray(p.power_curve_frac) if p.power_curve_frac else servers.linear_curve_frac(p.idle_w, p.peak_w))
                * p.peak_w
                for p in pools
            ]
        )  # (pools, 11) W per server
        self.boot_time_s = n.boot_time_s
        self.boot_frac = np.minimum(self.boot_time_s, self.step_s) / self.step_s
        self.pool_zone_onehot = np.zeros((len(pools), len(zones)))
        self.pool_zone_onehot[np.arange(len(pools)), n.pool_zone] = 1.0
        self.gop, elig_g, _ = workload.pool_groups(n.eligible)
        self.group_onehot = np.zeros((len(pools), elig_g.shape[1]))
        self.group_onehot[np.arange(len(pools)), self.gop] = 1.0
        self.curve_slope_w = np.diff(self.curve_w, axis=1)  # (pools, 10)
        self.m_sleep_kw = self.pool_zone_onehot * (self.sleep_w / 1000.0)[:, None]
        self.sleep_zone_all_kw = (self.servers * self.sleep_w / 1000.0) @ self.pool_zone_onehot
        self.racks = np.array([z.racks for z in zones], dtype=float)
        self.containment = [z.containment for z in zones]
        self.crah_rated_m3_s = np.array([z.crah.count * z.crah.rated_airflow_m3_s for z in zones])
        self.crah_count = np.array([z.crah.count for z in zones], dtype=float)
        self.crah_unit_m3_s = np.array([z.crah.rated_airflow_m3_s for z in zones])
        self.crah_unit_kw = np.array([z.crah.rated_fan_power_kw for z in zones])
        self.crah_min_frac = np.array([z.crah.min_airflow_frac for z in zones])
        self.crah_fan_rated_kw = np.array([z.crah.count * z.crah.rated_fan_power_kw for z in zones])
        # nameplate limits the summary judges against: UPS output (installed, and without the
        # redundant modules), PDU ratings per zone (inf where none is given)
        el = site.electrical
        self.ups_rated_kw = el.ups_rated_kw
        self.ups_usable_kw = el.ups_rated_kw * (el.ups_modules - el.ups_redundant_modules) / el.ups_modules
        self.pdu_rated_kw = np.array([z.pdu_rated_kw if z.pdu_rated_kw is not None else np.inf for z in zones])
        self.overprov = np.array([airside.AIRFLOW_OVERPROVISION[c] for c in self.containment])
        self.recirc = np.array([airside.RECIRCULATION_INDEX[c] for c in self.containment])
        design_flow = np.clip(
            airside.server_airflow_m3_s(np.array([z.design_it_load_kw for z in zones])) * self.overprov,
            self.crah_min_frac * self.crah_rated_m3_s,
            self.crah_rated_m3_s,
        )
        self.tau_s = np.array(
            [airside.room_time_constant_s(z.room_volume_m3, f) for z, f in zip(zones, design_flow)]
        )
        self.inlet_max = np.array([z.inlet_max_c for z in zones])
        self.inlet_min = np.array([z.inlet_min_c for z in zones])
        self.sp_min = np.array([z.supply_setpoint_min_c for z in zones])
        self.sp_max = np.array([z.supply_setpoint_max_c for z in zones])
        # rate limit per simulator step: config gives the largest change per planning step
        self.sp_step_max = np.array([z.supply_setpoint_max_step_c for z in zones]) * max(
            step_h * 60.0 / site.planning.step_minutes, 1.0
        )
        ch = site.cooling.chiller
        self.chiller = ch
        self.eta = plant.carnot_fraction(ch.rated_cop, ch.rated_chw_supply_c, ch.rated_condenser_c, ch.type)
        self.has_tower = ch.type == "water_cooled" or site.cooling.economiser.type == "waterside"
        self.design_rejected_kw = ch.rated_capacity_kw * (1.0 + 1.0 / ch.rated_cop)
        lq = site.cooling.liquid
        self.liquid_share = float(lq.it_heat_share_frac)  # share of IT heat in the liquid loop
        self.liquid_supply_max_c = float(lq.supply_max_c)
        self.air_share = 1.0 - self.liquid_share
        cls_by_name = {c.name: c for c in site.workload_classes}
        self.off_gb = np.array([cls_by_name[c].data_gb_per_unit for c in n.offloadable])
        self.off_is_batch = np.array([cls_by_name[c].kind == "batch" for c in n.offloadable], dtype=bool)
        self.off_batch_idx = np.array([n.batch.index(c) if c in n.batch else -1 for c in n.offloadable], dtype=int)
        self.off_inter_idx = np.array(
            [n.interactive.index(c) if c in n.interactive else -1 for c in n.offloadable], dtype=int
        )
        edges = site.edge_sites
        self.edge_cap = np.array([e.capacity_units_per_h for e in edges], dtype=float)
        self.edge_static = np.array([e.static_kw for e in edges], dtype=float)
        self.edge_kw_per_unit = np.array([e.kw_per_unit_per_h for e in edges], dtype=float)
        self.edge_pue = np.array([e.pue for e in edges], dtype=float)
        self.edge_kwh_per_gb = np.array([e.network_kwh_per_gb for e in edges], dtype=float)
        lat_ok = np.ones((len(edges), len(n.offloadable)), dtype=bool)
        for i, e in enumerate(edges):
            for j, c in enumerate(n.offloadable):
                lim = cls_by_name[c].max_latency_ms
                lat_ok[i, j] = lim is None or e.latency_ms <= lim
        self.edge_latency_ok = lat_ok
        self.deadline_steps = np.array([max(1, int(round(d / step_h))) for d in n.deadline_h], dtype=int)
        self.inter_idx = np.array([n.classes.index(c) for c in n.interactive], dtype=int)
        self.batch_idx = np.array([n.classes.index(c) for c in n.batch], dtype=int)
        self.order = np.concatenate([self.inter_idx, self.batch_idx])  # interactive first
        self.elig_g_order = elig_g[self.order]
        self.stores = [u.name for u in site.storage]
        self.store_floor_kwh = storage_floor_kwh(site)
        self.store_ceil_kwh = np.array([u.soc_max_frac * u.energy_kwh for u in site.storage], dtype=float)
        # storage wear per kWh discharged (config: degradation_kgco2_per_kwh, degradation_usd_per_kwh)
        self.store_wear_kg = np.array([u.degradation_kgco2_per_kwh for u in site.storage], dtype=float)
        self.store_wear_usd = np.array([u.degradation_usd_per_kwh for u in site.storage], dtype=float)


def _check_actions(p: _Params, a: Actions, state: SimState, t0: int, index: pd.DatetimeIndex) -> dict:
    """Raise on hard-bound violations; return soft-violation arrays."""
    n = a.n_steps
    a.check_shapes(p.names, n)

    def where(mask: np.ndarray) -> str:
        k, j = np.argwhere(mask)[0] if mask.ndim > 1 else (np.flatnonzero(mask)[0], None)
        return f"step {t0 + k} ({index[k]})", j

    for name, arr in (("supply_c", a.supply_c), ("chw_c", a.chw_c), ("active_servers", a.active_servers),
                      ("release_units_per_h", a.release_units_per_h), ("offload_units_per_h", a.offload_units_per_h)):
        if not np.all(np.isfinite(arr)):
            raise ActionError(f"Actions.{name}: non-finite value")
    bad = (a.supply_c < p.sp_min - 1e-9) | (a.supply_c > p.sp_max + 1e-9)
    if bad.any():
        at, j = where(bad)
        raise ActionError(
            f"supply setpoint {a.supply_c[np.argwhere(bad)[0][0], j]:.2f} degC for zone {p.names.zones[j]} at {at} "
            f"outside [{p.sp_min[j]}, {p.sp_max[j]}] (zones[].supply_setpoint_min_c/max_c)"
        )
    ch = p.chiller
    bad = (a.chw_c < ch.chw_setpoint_min_c - 1e-9) | (a.chw_c > ch.chw_setpoint_max_c + 1e-9)
    if bad.any():
        at, _ = where(bad)
        raise ActionError(
            f"chilled-water setpoint at {at} outside [{ch.chw_setpoint_min_c}, {ch.chw_setpoint_max_c}] degC"
        )
    act = a.active_servers
    bad = (act < 0) | (act > p.servers + 1e-9) | (np.abs(act - np.round(act)) > 1e-9)
    if bad.any():
        at, j = where(bad)
        raise ActionError(
            f"active servers for pool {p.names.pools[j]} at {at} must be a whole number in [0, {int(p.servers[j])}]"
        )
    for name, arr in (("release_units_per_h", a.release_units_per_h), ("offload_units_per_h", a.offload_units_per_h)):
        if (arr < 0).any():
            raise ActionError(f"Actions.{name}: negative work at step {t0 + int(np.argwhere(arr < 0)[0][0])}")
    if a.offload_units_per_h.size:
        bad_lat = (a.offload_units_per_h > 0) & ~p.edge_latency_ok[None]
        if bad_lat.any():
            k, i, j = np.argwhere(bad_lat)[0]
            raise ActionError(
                f"offload of class {p.names.offloadable[j]} to edge {p.names.edges[i]} at step {t0 + k}: edge latency "
                f"exceeds the class's max_latency_ms"
            )
        load = a.offload_units_per_h.sum(axis=2)
        bad = load > p.edge_cap[None] * (1 + 1e-9)
        if bad.any():
            k, i = np.argwhere(bad)[0]
            raise ActionError(
                f"offload to edge {p.names.edges[i]} at step {t0 + k}: {load[k, i]:.1f} units/h exceeds its "
                f"capacity_units_per_h {p.edge_cap[i]}"
            )
    for name in ("charge_kw", "discharge_kw"):
        arr = getattr(a, name)
        if arr is None:
            continue
        if np.shape(arr) != (n, len(p.stores)):
            raise ActionError(f"Actions.{name}: shape {np.shape(arr)}, expected {(n, len(p.stores))} (steps, stores "
                              f"{p.stores})")
        if not np.all(np.isfinite(arr)):
            raise ActionError(f"Actions.{name}: non-finite value")
        if (arr < 0).any():
            k, j = np.argwhere(arr < 0)[0]
            raise ActionError(f"Actions.{name}: negative power {arr[k, j]:g} kW for store {p.stores[j]} at step "
                              f"{t0 + k} ({index[k]})")
    prev_sp = np.vstack([state.supply_c[None], a.supply_c[:-1]])
    return {
        "redundancy_shortfall_servers": np.maximum(p.min_active[None] - act, 0.0),
        "setpoint_rate_violation": np.abs(a.supply_c - prev_sp) > p.sp_step_max[None] + 1e-9,
    }


class _Physics:
    """Physics of one interval, vectorised (kept as a class only to share the parameter arrays)."""

    def __init__(self, p: _Params):
        self.p = p

    def plant(self, it_zone_kw, supply_eff, chw, temp, wb):
        p = self.p
        it_air_kw = it_zone_kw * p.air_share  # the liquid share leaves by the cold plates, not the air
        v_srv = airside.server_airflow_m3_s(it_air_kw)
        v_crah = np.clip(v_srv * p.overprov, p.crah_min_frac * p.crah_rated_m3_s, p.crah_rated_m3_s)
        fan_kw = airside.crah_fan_kw(v_crah, p.crah_count, p.crah_unit_m3_s, p.crah_unit_kw)
        pdu_zone = it_zone_kw * p.site.electrical.pdu_loss_frac
        it_tot = it_zone_kw.sum(axis=1)
        pdu = pdu_zone.sum(axis=1)
        el = p.site.electrical
        ups = electrical.ups_loss_kw(it_tot + pdu, el.ups_rated_kw, el.ups_efficiency_points)
        zone_heat = it_air_kw + fan_kw.reshape(it_zone_kw.shape) + pdu_zone
        heat_air = zone_heat.sum(axis=1) + ups + el.lighting_other_kw
        eco = p.site.cooling.economiser
        f_free = plant.economiser_fraction(eco.type, eco.approach_c, chw, supply_eff.mean(axis=1), wb, temp)
        if p.liquid_share > 0:
            liquid = it_tot * p.liquid_share
            source = (np.asarray(wb, dtype=float) + plant.TOWER_APPROACH_K if p.has_tower
                      else np.asarray(temp, dtype=float) + plant.DRY_COOLER_APPROACH_K)
            liq_free = liquid * plant.liquid_free_fraction(source, p.liquid_supply_max_c)
        else:
            liquid = liq_free = np.zeros_like(heat_air)
        heat = heat_air + liquid
        free = heat_air * f_free + liq_free
        mech = heat - free
        cap = p.chiller.rated_capacity_kw
        duty = np.minimum(mech, cap)
        unmet = mech - duty
        cond = plant.condenser_water_c(wb, temp, p.chiller.type)
        cop = plant.chiller_cop(chw, cond, p.eta, p.chiller.type)
        chiller_kw = plant.chiller_power_kw(duty, cap, cop)
        pump = plant.pump_kw(heat, p.site.cooling.pump_rated_kw, cap)
        rejected = free + duty + (chiller_kw if p.chiller.type == "water_cooled" else 0.0)
        if p.has_tower:
            tower = plant.tower_fan_kw(rejected, p.site.cooling.tower_fan_rated_kw, p.design_rejected_kw)
            tower_heat = rejected
            dry = np.zeros_like(heat)
        else:
            tower = np.zeros_like(heat)
            tower_heat = np.zeros_like(heat)
            dry = plant.dry_cooler_fan_kw(liq_free)  # the liquid loop's own heat rejection
        liquid_loop = plant.liquid_pump_kw(liquid) + dry
        return dict(
            liquid_kw=liquid, liquid_free_kw=liq_free, liquid_loop_kw=liquid_loop,
            v_crah=v_crah, crah_fan_kw=fan_kw, pdu_kw=pdu, ups_kw=ups, zone_heat_kw=zone_heat, heat_kw=heat,
            free_kw=free, duty_kw=duty, unmet_kw=unmet, econ_frac=f_free, cop=cop, chiller_kw=chiller_kw,
            pump_kw=pump, tower_kw=tower, tower_heat_kw=tower_heat, cond_c=cond,
        )

    def interval(self, a: Actions, state: SimState, dem: np.ndarray, temp, wb, viol: dict):
        """Evaluate one interval; returns (per-step arrays dict, new state)."""
        p = self.p
        n = a.n_steps
        step_h = p.step_h
        act = np.asarray(a.active_servers, dtype=float)
        prev_act = np.empty_like(act)
        prev_act[0] = state.active_servers
        prev_act[1:] = act[:-1]
        booted = np.maximum(act - prev_act, 0.0)
        cap = (act - booted * p.boot_frac) * p.cap_per_server  # effective capacity, units/h
        cap_g = cap @ p.group_onehot

        # -- work ------------------------------------------------------------------------
        inter = dem[:, p.inter_idx]
        off = a.offload_units_per_h  # (n, E, O)
        off_by_class = off.sum(axis=1) if off.size else np.zeros((n, len(p.names.offloadable)))
        inter_local = inter.copy()
        for j in range(len(p.names.offloadable)):
            if not p.off_is_batch[j]:
                ii = p.off_inter_idx[j]
                if (off_by_class[:, j] > inter[:, ii] + UNITS_TOL).any():
                    k = int(np.argmax(off_by_class[:, j] > inter[:, ii] + UNITS_TOL))
                    raise ActionError(
                        f"offload of interactive class {p.names.offloadable[j]} exceeds its demand at interval step {k}"
                    )
                inter_local[:, ii] = inter[:, ii] - off_by_class[:, j]
        nb = len(p.names.batch)
        ni = len(p.inter_idx)
        arrivals = dem[:, p.batch_idx] * step_h  # units per step
        want = np.concatenate([inter_local, a.release_units_per_h], axis=1)  # interactive first
        servable, _ = workload.allocate_groups(want, cap_g, p.elig_g_order)
        servable_b = servable[:, ni:]
        off_b = np.zeros((n, nb))
        for j in range(len(p.names.offloadable)):
            if p.off_is_batch[j]:
                off_b[:, p.off_batch_idx[j]] += off_by_class[:, j]
        drain = (servable_b + off_b) * step_h
        queue, served = workload.lindley_queue(state.queue_units, arrivals, drain)
        share_local = np.divide(servable_b * step_h, drain, out=np.zeros_like(drain), where=drain > 0)
        served_local = served * share_local
        served_edge_b = served - served_local
        want[:, ni:] = served_local / step_h
        served_all, used_g = workload.allocate_groups(want, cap_g, p.elig_g_order)
        unserved_inter = inter_local - served_all[:, :ni]
        # edge load: interactive offload as asked, batch offload scaled to what the queue held
        edge_load = np.zeros((n, len(p.names.edges)))
        net_kw = np.zeros(n)
        for j in range(len(p.names.offloadable)):
            if p.off_is_batch[j]:
                b = p.off_batch_idx[j]
                scale = np.divide(served_edge_b[:, b] / step_h, off_b[:, b], out=np.zeros(n), where=off_b[:, b] > 0)
            else:
                scale = np.ones(n)
            units = off[:, :, j] * scale[:, None] if off.size else np.zeros((n, 0))
            edge_load += units
            net_kw += (units * p.edge_kwh_per_gb[None]).sum(axis=1) * p.off_gb[j]  # kW of network

        # -- IT power: SPECpower curve at each group's utilisation, summed per zone ----------
        x = used_g * 10.0
        i_g = np.minimum(x.astype(np.intp), 9)
        f_g = x - i_g
        i_p = i_g[:, p.gop]
        cols = np.arange(len(p.names.pools))[None, :]
        w = p.curve_w[cols, i_p] + p.curve_slope_w[cols, i_p] * f_g[:, p.gop]  # W per active server
        zone_active = (act * w) @ (p.pool_zone_onehot / 1000.0)
        if p.liquid_share > 0:  # cold-plate servers need less fan power (servers.liquid_fan_saving_frac)
            zone_active = zone_active * (1.0 - servers.liquid_fan_saving_frac(p.liquid_share))
        boot_kw = servers.boot_power_w(booted, p.peak_w[None, :], w, p.boot_time_s[None, :], p.step_s) / 1000.0
        zone_other = p.sleep_zone_all_kw[None] - act @ p.m_sleep_kw + boot_kw @ p.pool_zone_onehot
        util_g = used_g

        chw = a.chw_c
        approach = p.site.cooling.crah_supply_approach_c
        supply_floor = chw[:, None] + approach
        below = a.supply_c < supply_floor - 1e-9
        supply_eff = np.maximum(a.supply_c, supply_floor)

        def inlet_target(it_zone, v_crah, supply):  # the air-cooled share heats the exhaust that recirculates
            return supply + airside.recirculation_rise_by_index_c(it_zone * p.air_share, v_crah, p.racks, p.recirc,
                                                                  p.overprov)

        def fan_rise(inlet_c):  # inlet air drives fans and leakage of the air-cooled share only
            return servers.fan_leakage_frac(inlet_c) * p.air_share

        # pass 1: fan rise from the steady inlet at the setpoint
        it0 = zone_active + zone_other
        v0 = np.clip(airside.server_airflow_m3_s(it0 * p.air_share) * p.overprov, p.crah_min_frac * p.crah_rated_m3_s, p.crah_rated_m3_s)
        inlet1 = inlet_target(it0, v0, supply_eff)
        it1 = zone_active * (1.0 + fan_rise(inlet1)) + zone_other
        pl = self.plant(it1, supply_eff, chw, temp, wb)
        # unmet load warms the supply air of every zone in proportion to its heat
        zshare = pl["zone_heat_kw"] / np.maximum(pl["zone_heat_kw"].sum(axis=1, keepdims=True), 1e-9)
        rise = pl["unmet_kw"][:, None] * zshare / (airside.RHO_AIR_KG_M3 * airside.CP_AIR_KJ_KGK * pl["v_crah"])
        supply_act = supply_eff + rise
        target = inlet_target(it1, pl["v_crah"], supply_act)
        inlet, inlet_last = airside.rc_lag(target, state.inlet_c, p.step_s, p.tau_s)
        # pass 2: fan rise from the lagged inlet, plant again
        it_zone = zone_active * (1.0 + fan_rise(inlet)) + zone_other
        pl = self.plant(it_zone, supply_eff, chw, temp, wb)
        server_fan_kw = (zone_active * fan_rise(inlet)).sum(axis=1)

        it_kw = it_zone.sum(axis=1)
        crah = pl["crah_fan_kw"].sum(axis=1)
        cooling = pl["chiller_kw"] + crah + pl["pump_kw"] + pl["tower_kw"] + pl["liquid_loop_kw"]
        other = np.full(n, p.site.electrical.lighting_other_kw)
        facility = it_kw + cooling + pl["ups_kw"] + pl["pdu_kw"] + other
        water_l = plant.evaporative_water_l(pl["tower_heat_kw"] * step_h) if p.has_tower else np.zeros(n)

        edge_it = edge.edge_it_kw(edge_load, p.edge_static[None], p.edge_kw_per_unit[None]) if edge_load.size else edge_load
        edge_fac = edge_it * p.edge_pue[None] if edge_load.size else edge_load

        out = dict(
            it_kw=it_kw, server_fan_kw=server_fan_kw, chiller_kw=pl["chiller_kw"], crah_kw=crah, pump_kw=pl["pump_kw"],
            tower_kw=pl["tower_kw"], cooling_kw=cooling, ups_kw=pl["ups_kw"], pdu_kw=pl["pdu_kw"], other_kw=other,
            facility_kw=facility, heat_kw=pl["heat_kw"], free_kw=pl["free_kw"], duty_kw=pl["duty_kw"],
            unmet_kw=pl["unmet_kw"], econ_frac=pl["econ_frac"], cop=pl["cop"], water_l=water_l,
            liquid_kw=pl["liquid_kw"], liquid_free_kw=pl["liquid_free_kw"], liquid_loop_kw=pl["liquid_loop_kw"],
            zone_it_kw=it_zone, inlet_c=inlet, supply_act_c=supply_act, supply_sp_c=a.supply_c, chw_c=chw,
            util_g=util_g, inter_demand=inter, inter_served=served_all[:, : len(p.inter_idx)],
            unserved_inter=np.maximum(unserved_inter, 0.0), arrivals=arrivals, served_local=served_local,
            served_edge=served_edge_b, queue=queue, release_unused=_above_tol(drain - served) / step_h,
            capacity_shortfall=_above_tol(a.release_units_per_h - servable_b),
            edge_load=edge_load, edge_fac_kw=edge_fac, network_kw=net_kw,
            supply_below_chw=below, ups_out_kw=it_kw + pl["pdu_kw"],
            pdu_over=it_zone > p.pdu_rated_kw[None] * (1 + 1e-9),
            # servers pull more air than the CRAH units can supply: the rest is hot-aisle air
            crah_short=airside.server_airflow_m3_s(it_zone * p.air_share) > p.crah_rated_m3_s[None] * (1 + 1e-9),
            **viol,
        )
        soc0 = state.storage_soc_kwh if state.storage_soc_kwh is not None else initial_soc_kwh(p.site)
        out.update(self.storage(a, facility, soc0))
        new_state = SimState(
            inlet_c=inlet_last, supply_c=a.supply_c[-1].copy(), chw_c=float(chw[-1]),
            active_servers=act[-1].copy(), queue_units=queue[-1].copy() if nb else np.zeros(0),
            storage_soc_kwh=out["soc_kwh"][-1].copy() if p.stores else np.asarray(soc0, dtype=float),
        )
        return out, new_state

    def storage(self, a: Actions, facility: np.ndarray, soc0: np.ndarray) -> dict[str, np.ndarray]:
        """The stores under the commanded power (:func:`.storage.storage_steps`); per-step arrays,
        ``grid_kw`` = facility without storage."""
        p = self.p
        n, S = len(facility), len(p.stores)
        if not S:
            return {"grid_kw": facility.copy(), "soc_kwh": np.zeros((n, 0)), "store_charge_kw": np.zeros((n, 0)),
                    "store_discharge_kw": np.zeros((n, 0)), "store_charge_req_kw": np.zeros((n, 0)),
                    "store_discharge_req_kw": np.zeros((n, 0)), "store_loss_kwh": np.zeros((n, 0))}
        req_c = np.zeros((n, S)) if a.charge_kw is None else np.asarray(a.charge_kw, dtype=float)
        req_d = np.zeros((n, S)) if a.discharge_kw is None else np.asarray(a.discharge_kw, dtype=float)
        st = storage_steps(p.site, facility, req_c, req_d, np.asarray(soc0, dtype=float), p.step_h)
        return {"grid_kw": st["grid_kw"], "soc_kwh": st["soc_kwh"], "store_charge_kw": st["charge_kw"],
                "store_discharge_kw": st["discharge_kw"], "store_charge_req_kw": req_c,
                "store_discharge_req_kw": req_d,
                "store_loss_kwh": st["charge_loss_kwh"] + st["discharge_loss_kwh"] + st["self_discharge_kwh"]}


def _above_tol(x: np.ndarray) -> np.ndarray:
    """Positive part, with float noise below ``UNITS_TOL`` counted as zero."""
    return np.where(x > UNITS_TOL, x, 0.0)


def _as_array(frame: pd.DataFrame, c: str, path_hint: str) -> np.ndarray:
    if c not in frame.columns:
        raise ValueError(f"{path_hint}: missing column {c!r}")
    v = frame[c].to_numpy(dtype=float)
    if not np.all(np.isfinite(v)):
        k = int(np.flatnonzero(~np.isfinite(v))[0])
        raise ValueError(f"{path_hint}: column {c!r} has a missing or non-finite value at {frame.index[k]}")
    return v


def simulate(
    site: SiteConfig,
    data: pd.DataFrame,
    policy: Policy,
    *,
    forecast: pd.DataFrame | None = None,
    state: SimState | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SimResult:
    """Run ``policy`` on ``site`` over ``data`` (canonical frame, regular UTC steps).

    ``forecast`` (same index and columns) is what the policy sees as its forecast; by
    default the actual data. ``progress(done_steps, total_steps)`` is called per interval.
    """
    if not isinstance(data.index, pd.DatetimeIndex) or data.index.tz is None or len(data) < 1:
        raise ValueError("simulate: data needs a non-empty tz-aware DatetimeIndex")
    if len(data) > 1:
        d = np.diff(data.index.asi8)
        if not np.all(d == d[0]) or d[0] <= 0:
            raise ValueError("simulate: data index must be regular and increasing")
        step_h = (data.index[1] - data.index[0]).total_seconds() / 3600.0
    else:
        step_h = site.step_h
    p = _Params(site, step_h)
    names = p.names
    hint = "simulate data"
    temp = _as_array(data, TEMP_C, hint)
    wb = _as_array(data, WETBULB_C, hint)
    gco2 = _as_array(data, CARBON_GCO2_PER_KWH, hint)
    dem = np.column_stack([_as_array(data, demand_col(c), hint) for c in names.classes])
    if (dem < 0).any():
        raise ValueError(f"{hint}: negative demand")
    edge_g = (
        np.column_stack([_as_array(data, col(CARBON_GCO2_PER_KWH, e), hint) for e in names.edges])
        if names.edges
        else np.zeros((len(data), 0))
    )
    fc = data if forecast is None else forecast
    if forecast is not None and not forecast.index.equals(data.index):
        raise ValueError("simulate: forecast frame must have the same index as data")

    fc_arrays = {c: fc[c].to_numpy(dtype=float) for c in fc.columns if pd.api.types.is_numeric_dtype(fc[c])}
    T = len(data)
    st = state or initial_state(site)
    phys = _Physics(p)
    full: dict[str, np.ndarray] = {}
    acts_full: Actions | None = None
    nb = len(names.batch)
    # cumulative batch arrivals [units] per step, for the observation's pending-work view
    arr_cum = np.cumsum(dem[:, [names.classes.index(c) for c in names.batch]] * step_h, axis=0) if nb else np.zeros((T, 0))
    served_tot = np.zeros(nb)
    interval = T if policy.interval_h is None else max(1, int(round(policy.interval_h / step_h)))
    # Single-threaded BLAS: the small per-interval matrix products are slower with threads,
    # and the simulator is meant to run one per core (sweeps parallelise across runs).
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        t0 = 0
        while t0 < T:
            n = min(interval, T - t0)
            idx = data.index[t0 : t0 + n]
            a_cum_now = [arr_cum[:t0, b] for b in range(nb)]
            obs = Observation(
                site=site, names=names, step=t0, n_steps=n, step_h=step_h, index=idx, state=st,
                _forecast_full=fc, _forecast_arrays_full=fc_arrays,
                _arrivals_cum=a_cum_now, _served_total=served_tot.copy(),
            )
            acts = policy.decide(obs)
            if not isinstance(acts, Actions) or acts.n_steps != n:
                raise ActionError(f"policy {policy.name}: decide() must return Actions for {n} steps at step {t0}")
            viol = _check_actions(p, acts, st, t0, idx)
            out, st = phys.interval(acts, st, dem[t0 : t0 + n], temp[t0 : t0 + n], wb[t0 : t0 + n], viol)
            served_tot = served_tot + (out["served_local"] + out["served_edge"]).sum(axis=0)
            if not full:
                full = {k: np.empty((T,) + np.shape(v)[1:], dtype=np.asarray(v).dtype) for k, v in out.items()}
            for k, v in out.items():
                full[k][t0 : t0 + n] = v
            if acts_full is None:
                acts_full = Actions(*(np.empty((T,) + np.shape(getattr(acts, f))[1:]) for f in _ACTION_FIELDS))
            for f in _ACTION_FIELDS:
                getattr(acts_full, f)[t0 : t0 + n] = getattr(acts, f)
            t0 += n
            if progress:
                progress(t0, T)
    res = full
    return _assemble(p, data, res, gco2, edge_g, acts_full, policy.name)


def _assemble(p: _Params, data: pd.DataFrame, r: dict, gco2, edge_g, actions: Actions, policy_name: str) -> SimResult:
    names = p.names
    site = p.site
    step_h = p.step_h
    idx = data.index
    T = len(idx)
    ts = {
        "it_power_kw": r["it_kw"], "server_fan_kw": r["server_fan_kw"], "chiller_kw": r["chiller_kw"],
        "crah_fan_kw": r["crah_kw"], "pump_kw": r["pump_kw"], "tower_fan_kw": r["tower_kw"],
        "liquid_loop_kw": r["liquid_loop_kw"], "liquid_heat_kw": r["liquid_kw"], "liquid_free_kw": r["liquid_free_kw"],
        "cooling_power_kw": r["cooling_kw"], "ups_loss_kw": r["ups_kw"], "pdu_loss_kw": r["pdu_kw"],
        "other_kw": r["other_kw"], "facility_power_kw": r["facility_kw"],
        "pue": r["facility_kw"] / np.maximum(r["it_kw"], 1e-9),
        "heat_load_kw": r["heat_kw"], "free_cooling_kw": r["free_kw"], "chiller_duty_kw": r["duty_kw"],
        "unmet_cooling_kw": r["unmet_kw"], "economiser_frac": r["econ_frac"], "chiller_cop": r["cop"],
        "chw_setpoint_c": r["chw_c"], "outside_temp_c": data[TEMP_C].to_numpy(), "wetbulb_c": data[WETBULB_C].to_numpy(),
        "gco2_per_kwh": gco2, "water_l": r["water_l"],
    }
    if RH_PCT in data.columns:
        ts["outside_rh_pct"] = data[RH_PCT].to_numpy()
    for i, z in enumerate(names.zones):
        ts[col("supply_setpoint_c", z)] = r["supply_sp_c"][:, i]
        ts[col("supply_temp_c", z)] = r["supply_act_c"][:, i]
        ts[col("inlet_temp_c", z)] = r["inlet_c"][:, i]
        ts[col("zone_it_power_kw", z)] = r["zone_it_kw"][:, i]
    for i, c in enumerate(names.interactive):
        ts[col("demand_units_per_h", c)] = r["inter_demand"][:, i]
        ts[col("served_units_per_h", c)] = r["inter_served"][:, i]
        ts[col("unserved_units_per_h", c)] = r["unserved_inter"][:, i]
    late_total = 0.0
    late_by = {}
    for b, c in enumerate(names.batch):
        lt = workload.lateness(r["arrivals"][:, b], r["served_local"][:, b] + r["served_edge"][:, b],
                               int(p.deadline_steps[b]), step_h)
        late_by[c] = lt
        late_total += lt["late_units"]
        ts[col("arrived_units", c)] = r["arrivals"][:, b]
        ts[col("served_units_per_h", c)] = (r["served_local"][:, b] + r["served_edge"][:, b]) / step_h
        ts[col("served_edge_units_per_h", c)] = r["served_edge"][:, b] / step_h
        ts[col("queue_units", c)] = r["queue"][:, b]
        ts[col("late_units", c)] = lt["late_units_by_step"]
    # carbon: site grid import (location), PPA (market), edge sites at their own grids, network at the site's grid
    fac_kwh = r["facility_kw"] * step_h
    grid_kwh = r["grid_kw"] * step_h
    kg_loc_site = accounting.location_kgco2(grid_kwh, gco2)
    ren = site.renewables
    if ren is not None and ren.ppa_mwh_per_year > 0:
        ppa_kwh = accounting.ppa_profile_kw(idx, ren.ppa_mwh_per_year, ren.profile, site.latitude_deg, site.longitude_deg) * step_h
        resid = ren.residual_mix_gco2_per_kwh
    else:
        ppa_kwh = np.zeros(T)
        resid = None
    kg_mkt_site = accounting.market_kgco2(grid_kwh, ppa_kwh, gco2, resid)
    edge_kwh = r["edge_fac_kw"] * step_h
    kg_edge = (accounting.location_kgco2(edge_kwh, edge_g)).sum(axis=1) if edge_kwh.size else np.zeros(T)
    net_kwh = r["network_kw"] * step_h
    kg_net = accounting.location_kgco2(net_kwh, gco2)
    for i, e in enumerate(names.edges):
        ts[col("edge_load_units_per_h", e)] = r["edge_load"][:, i]
        ts[col("edge_facility_kw", e)] = r["edge_fac_kw"][:, i]
    ts["network_kw"] = r["network_kw"]
    ts["grid_power_kw"] = r["grid_kw"]
    for j, s_ in enumerate(p.stores):  # what was commanded, what the store carried out, its state of charge
        ts[col("soc_kwh", s_)] = r["soc_kwh"][:, j]
        ts[col("charge_kw", s_)] = r["store_charge_kw"][:, j]
        ts[col("discharge_kw", s_)] = r["store_discharge_kw"][:, j]
        ts[col("charge_command_kw", s_)] = r["store_charge_req_kw"][:, j]
        ts[col("discharge_command_kw", s_)] = r["store_discharge_req_kw"][:, j]
    ts["ups_output_kw"] = r["ups_out_kw"]
    ts["ppa_kw"] = ppa_kwh / step_h
    ts["kgco2_location"] = kg_loc_site + kg_edge + kg_net
    ts["kgco2_market"] = kg_mkt_site + kg_edge + kg_net
    ts["kgco2_edge"] = kg_edge + kg_net
    thermal = (r["inlet_c"] > p.inlet_max[None] + 1e-9) | (r["inlet_c"] < p.inlet_min[None] - 1e-9)
    ts["thermal_violation_zones"] = thermal.sum(axis=1)
    ts["sla_violation"] = (r["unserved_inter"].sum(axis=1) > UNITS_TOL).astype(int)
    ts["redundancy_shortfall_servers"] = r["redundancy_shortfall_servers"].sum(axis=1)
    ts["setpoint_rate_violation_zones"] = r["setpoint_rate_violation"].sum(axis=1)
    ts["supply_below_chw_zones"] = r["supply_below_chw"].sum(axis=1)
    ts["batch_capacity_shortfall_units_per_h"] = r["capacity_shortfall"].sum(axis=1)
    ts["batch_release_unused_units_per_h"] = r["release_unused"].sum(axis=1)
    # one float block plus one integer block of active servers per pool, built column-major
    # so that pandas takes them without a transposing copy
    block = np.empty((len(ts), T))
    for i, v in enumerate(ts.values()):
        block[i] = v
    iblock = np.ascontiguousarray(actions.active_servers.T, dtype=np.int32)
    frame = pd.concat(
        [pd.DataFrame(block.T, index=idx, columns=list(ts), copy=False),
         pd.DataFrame(iblock.T, index=idx, columns=[col("active_servers", q) for q in names.pools], copy=False)],
        axis=1, copy=False,
    )
    frame.index.name = "timestamp"

    minutes = step_h * 60.0
    it_kwh = float(r["it_kw"].sum() * step_h)
    facility_kwh = float(fac_kwh.sum())
    water = float(r["water_l"].sum())
    summary = {
        "policy": policy_name,
        "start": idx[0].isoformat(),
        "end": (idx[-1] + pd.Timedelta(hours=step_h)).isoformat(),
        "steps": T,
        "step_minutes": float(minutes),
        "it_kwh": it_kwh,
        "facility_kwh": facility_kwh,
        "pue": facility_kwh / it_kwh if it_kwh > 0 else float("nan"),
        "tco2_location": float(ts["kgco2_location"].sum() / 1000.0),
        "tco2_market": float(ts["kgco2_market"].sum() / 1000.0),
        "tco2_edge": float(ts["kgco2_edge"].sum() / 1000.0),
        "water_l": water,
        "wue_l_per_kwh": accounting.wue_l_per_kwh(water, it_kwh),
        "sla_violations": int(ts["sla_violation"].sum()),
        "sla_violation_minutes": float(ts["sla_violation"].sum() * minutes),
        "unserved_interactive_units": float(r["unserved_inter"].sum() * step_h),
        "late_work_units": float(late_total),
        "max_lateness_h": max([v["max_lateness_h"] for v in late_by.values()], default=0.0),
        "backlog_end_units": float(r["queue"][-1].sum()) if r["queue"].size else 0.0,
        "thermal_violation_minutes": float(thermal.any(axis=1).sum() * minutes),
        "thermal_violation_zone_minutes": float(thermal.sum() * minutes),
        "max_inlet_c": float(r["inlet_c"].max()),
        "redundancy_violation_minutes": float((ts["redundancy_shortfall_servers"] > 0).sum() * minutes),
        "setpoint_rate_violations": int(ts["setpoint_rate_violation_zones"].sum()),
        "supply_below_chw_minutes": float((ts["supply_below_chw_zones"] > 0).sum() * minutes),
        "batch_capacity_shortfall_units": float(ts["batch_capacity_shortfall_units_per_h"].sum() * step_h),
        "unmet_cooling_kwh": float(r["unmet_kw"].sum() * step_h),
        "chiller_overload_minutes": float((r["unmet_kw"] > 1e-6).sum() * minutes),
        # UPS output above its installed rating (overload: bypass or trip), and above the
        # rating of the modules not held in reserve (redundancy lost)
        "ups_overload_minutes": float((r["ups_out_kw"] > p.ups_rated_kw * (1 + 1e-9)).sum() * minutes),
        "ups_redundancy_loss_minutes": float((r["ups_out_kw"] > p.ups_usable_kw * (1 + 1e-9)).sum() * minutes),
        "max_ups_load_frac": float(r["ups_out_kw"].max() / p.ups_rated_kw),
        "pdu_overload_minutes": float(r["pdu_over"].any(axis=1).sum() * minutes),
        "crah_airflow_shortfall_minutes": float(r["crah_short"].any(axis=1).sum() * minutes),
        # per-lever breakdown
        "cooling_kwh": float(r["cooling_kw"].sum() * step_h),
        "liquid_loop_kwh": float(r["liquid_loop_kw"].sum() * step_h),
        "chiller_kwh": float(r["chiller_kw"].sum() * step_h),
        "crah_fan_kwh": float(r["crah_kw"].sum() * step_h),
        "pump_kwh": float(r["pump_kw"].sum() * step_h),
        "tower_fan_kwh": float(r["tower_kw"].sum() * step_h),
        "server_fan_kwh": float(r["server_fan_kw"].sum() * step_h),
        "ups_loss_kwh": float(r["ups_kw"].sum() * step_h),
        "pdu_loss_kwh": float(r["pdu_kw"].sum() * step_h),
        "other_kwh": float(r["other_kw"].sum() * step_h),
        "economiser_full_hours": float((r["econ_frac"] >= 1.0 - 1e-9).sum() * step_h),
        "economiser_partial_hours": float(((r["econ_frac"] > 1e-9) & (r["econ_frac"] < 1.0 - 1e-9)).sum() * step_h),
        "edge_kwh": float(edge_kwh.sum()),
        "network_kwh": float(net_kwh.sum()),
        "offloaded_units": float(r["served_edge"].sum()),
        "ppa_kwh": float(ppa_kwh.sum()),
        "mean_active_server_frac": float(actions.active_servers.sum(axis=1).mean() / p.servers.sum()),
        "grid_kwh": float(grid_kwh.sum()),
    }
    if p.stores:
        summary.update(_storage_summary(p, r, step_h))
        actions.charge_kw, actions.discharge_kw = r["store_charge_req_kw"], r["store_discharge_req_kw"]
    return SimResult(timeseries=frame, summary=summary, actions=actions, names=names)


def _storage_summary(p: _Params, r: dict, step_h: float) -> dict:
    """The run's storage figures [kWh, tCO2, USD], all stores together (SoC extremes per store's floor)."""
    soc = r["soc_kwh"]
    dis_kwh = r["store_discharge_kw"] * step_h
    clipped = (np.maximum(r["store_charge_req_kw"] - r["store_charge_kw"], 0.0)
               + np.maximum(r["store_discharge_req_kw"] - r["store_discharge_kw"], 0.0))
    return {
        "storage_charged_kwh": float(r["store_charge_kw"].sum() * step_h),
        "storage_discharged_kwh": float(dis_kwh.sum()),
        "storage_losses_kwh": float(r["store_loss_kwh"].sum()),
        "storage_soc_end_kwh": float(soc[-1].sum()),
        "storage_soc_min_kwh": float(soc.min()),
        "storage_soc_max_kwh": float(soc.max()),
        # the deepest the stored energy went below a store's floor (state-of-charge minimum or UPS
        # reserve) and above its ceiling: 0 when the reserve was never used [kWh]
        "storage_below_floor_kwh": float(np.maximum(p.store_floor_kwh[None] - soc, 0.0).max()),
        "storage_above_ceiling_kwh": float(np.maximum(soc - p.store_ceil_kwh[None], 0.0).max()),
        "storage_command_clipped_kwh": float(clipped.sum() * step_h),
        # wear per kWh discharged, as the LP counts it (config degradation_*_per_kwh)
        "storage_wear_tco2": float((dis_kwh * p.store_wear_kg[None]).sum() / 1000.0),
        "storage_wear_usd": float((dis_kwh * p.store_wear_usd[None]).sum()),
    }


class Stepper:
    """The simulator advanced interval by interval by its caller, with :func:`simulate`'s physics.

    :func:`simulate` asks a policy for each interval's actions; a Stepper leaves that to its
    caller (a Gymnasium environment, a live loop)::

        s = Stepper(site, data)
        while not s.done:
            obs = s.observation(n)              # what a Policy sees for the next n steps
            out = s.step(policy.decide(obs))    # physics of those steps, per-step arrays
        res = s.result("name")                  # the SimResult simulate would return

    The same checks (hard bounds raise :class:`ActionError`), state carried between
    intervals, per-interval physics (:meth:`_Physics.interval`) and assembly of the results
    (:func:`_assemble`) as :func:`simulate`: a policy stepped with the intervals simulate
    uses gives simulate's result, and the same actions applied in shorter intervals give it
    within float noise (the physics runs step by step).
    """

    def __init__(self, site: SiteConfig, data: pd.DataFrame, *, forecast: pd.DataFrame | None = None,
                 state: SimState | None = None):
        if not isinstance(data.index, pd.DatetimeIndex) or data.index.tz is None or len(data) < 1:
            raise ValueError("Stepper: data needs a non-empty tz-aware DatetimeIndex")
        step_h = site.step_h
        if len(data) > 1:
            d = np.diff(data.index.asi8)
            if not np.all(d == d[0]) or d[0] <= 0:
                raise ValueError("Stepper: data index must be regular and increasing")
            step_h = (data.index[1] - data.index[0]).total_seconds() / 3600.0
        if forecast is not None and not forecast.index.equals(data.index):
            raise ValueError("Stepper: forecast frame must have the same index as data")
        self.site = site
        self.data = data
        self.params = _Params(site, step_h)  # the run's per-component arrays (limits, rates)
        self.names = self.params.names
        self.step_h = step_h
        hint = "Stepper data"
        self._temp = _as_array(data, TEMP_C, hint)
        self._wb = _as_array(data, WETBULB_C, hint)
        self._gco2 = _as_array(data, CARBON_GCO2_PER_KWH, hint)
        self._dem = np.column_stack([_as_array(data, demand_col(c), hint) for c in self.names.classes])
        if (self._dem < 0).any():
            raise ValueError(f"{hint}: negative demand")
        self._edge_g = (
            np.column_stack([_as_array(data, col(CARBON_GCO2_PER_KWH, e), hint) for e in self.names.edges])
            if self.names.edges else np.zeros((len(data), 0))
        )
        self.forecast = data if forecast is None else forecast
        self._fc_arrays = {c: self.forecast[c].to_numpy(dtype=float) for c in self.forecast.columns
                           if pd.api.types.is_numeric_dtype(self.forecast[c])}
        self.n_total = len(data)
        self.t = 0  # next step to simulate
        self.state = state or initial_state(site)
        self._phys = _Physics(self.params)
        nb = len(self.names.batch)
        bcols = [self.names.classes.index(c) for c in self.names.batch]
        # cumulative batch arrivals [units] per step (the observation's pending-work view)
        self._arr_cum = np.cumsum(self._dem[:, bcols] * step_h, axis=0) if nb else np.zeros((self.n_total, 0))
        self._served_cum = np.zeros((self.n_total, nb))  # cumulative batch work served [units]
        self._served_tot = np.zeros(nb)
        self._full: dict[str, np.ndarray] = {}
        self._acts: Actions | None = None
        ren = site.renewables
        self._ppa_kwh = (
            accounting.ppa_profile_kw(data.index, ren.ppa_mwh_per_year, ren.profile, site.latitude_deg,
                                      site.longitude_deg) * step_h
            if ren is not None and ren.ppa_mwh_per_year > 0 else np.zeros(self.n_total)
        )
        self._resid = ren.residual_mix_gco2_per_kwh if ren is not None and ren.ppa_mwh_per_year > 0 else None

    @property
    def demand_units_per_h(self) -> np.ndarray:
        """Actual demand per step and workload class (``names.classes`` order) [units/h]."""
        return self._dem

    @property
    def done(self) -> bool:
        """True once every step of ``data`` has been simulated."""
        return self.t >= self.n_total

    def observation(self, n_steps: int) -> Observation:
        """What a :class:`Policy` sees at the next step for an interval of ``n_steps`` (cut at the run's end)."""
        if self.done:
            raise ValueError("Stepper: the run is over")
        t0 = self.t
        n = max(1, min(int(n_steps), self.n_total - t0))
        return Observation(
            site=self.site, names=self.names, step=t0, n_steps=n, step_h=self.step_h,
            index=self.data.index[t0 : t0 + n], state=self.state,
            _forecast_full=self.forecast, _forecast_arrays_full=self._fc_arrays,
            _arrivals_cum=[self._arr_cum[:t0, b] for b in range(len(self.names.batch))],
            _served_total=self._served_tot.copy(),
        )

    def step(self, actions: Actions) -> dict[str, np.ndarray]:
        """Simulate the next ``actions.n_steps`` steps under ``actions``; advance the state.

        Returns the interval's per-step arrays (the engine's physics arrays, e.g. ``it_kw``,
        ``cooling_kw``, ``facility_kw`` [kW], ``inlet_c`` [degC] (steps x zones),
        ``unserved_inter`` [units/h], ``queue`` [units]) plus ``kgco2_location`` and
        ``kgco2_market`` [kgCO2 per step, site + edge sites + network, as the results count
        them] and ``late_units`` [units of batch work whose deadline passed unserved in the
        step, steps x batch classes; summed over a run: the summary's ``late_work_units``].
        """
        t0 = self.t
        n = actions.n_steps if isinstance(actions, Actions) else -1
        if n < 1 or t0 + n > self.n_total:
            raise ActionError(f"Stepper: actions for {n} steps at step {t0} of {self.n_total}")
        p = self.params
        sl = slice(t0, t0 + n)
        idx = self.data.index[sl]
        viol = _check_actions(p, actions, self.state, t0, idx)
        out, self.state = self._phys.interval(actions, self.state, self._dem[sl], self._temp[sl], self._wb[sl], viol)
        served = out["served_local"] + out["served_edge"]
        self._served_cum[sl] = self._served_tot + np.cumsum(served, axis=0)
        self._served_tot = self._served_tot + served.sum(axis=0)
        if not self._full:
            self._full = {k: np.empty((self.n_total,) + np.shape(v)[1:], dtype=np.asarray(v).dtype)
                          for k, v in out.items()}
            self._acts = Actions(*(np.empty((self.n_total,) + np.shape(getattr(actions, f))[1:]) for f in _ACTION_FIELDS))
        for k, v in out.items():
            self._full[k][sl] = v
        for f in _ACTION_FIELDS:
            getattr(self._acts, f)[sl] = getattr(actions, f)
        self.t = t0 + n
        res = dict(out)
        res.update(self._carbon(out, sl))
        res["late_units"] = self._late(sl)
        return res

    def _carbon(self, out: dict, sl: slice) -> dict[str, np.ndarray]:
        """Per-step kgCO2 of the interval, by the formulas :func:`_assemble` sums."""
        step_h = self.step_h
        grid_kwh = out["grid_kw"] * step_h  # grid import: facility + storage charge - discharge
        gco2 = self._gco2[sl]
        edge_kwh = out["edge_fac_kw"] * step_h
        kg_edge = accounting.location_kgco2(edge_kwh, self._edge_g[sl]).sum(axis=1) if edge_kwh.size else np.zeros(len(grid_kwh))
        kg_net = accounting.location_kgco2(out["network_kw"] * step_h, gco2)
        kg_mkt = accounting.market_kgco2(grid_kwh, self._ppa_kwh[sl], gco2, self._resid)
        return {"kgco2_location": accounting.location_kgco2(grid_kwh, gco2) + kg_edge + kg_net,
                "kgco2_market": kg_mkt + kg_edge + kg_net}

    def _late(self, sl: slice) -> np.ndarray:
        """Batch work that became late in each step of ``sl`` (due then, still unserved), per class.

        Work arriving in step k is due by the end of step k + deadline_steps - 1
        (:func:`workload.lateness`); it is counted once, in its due step.
        """
        steps = np.arange(sl.start, sl.stop)
        nb = len(self.names.batch)
        late = np.zeros((len(steps), nb))
        for b in range(nb):
            k = steps - int(self.params.deadline_steps[b]) + 1
            ok = k >= 0
            kk = np.maximum(k, 0)
            a_cum = self._arr_cum[kk, b]
            a_prev = a_cum - self._dem[kk, self.params.batch_idx[b]] * self.step_h
            v = np.where(ok, a_cum - np.clip(self._served_cum[steps, b], a_prev, a_cum), 0.0)
            late[:, b] = np.where(v > UNITS_TOL, v, 0.0)
        return late

    def result(self, policy_name: str = "stepper") -> SimResult:
        """The :class:`SimResult` of the steps simulated so far (what :func:`simulate` assembles)."""
        t = self.t
        if t < 1:
            raise ValueError("Stepper: no step simulated yet")
        full = {k: v[:t] for k, v in self._full.items()}
        acts = Actions(*(getattr(self._acts, f)[:t] for f in _ACTION_FIELDS))
        return _assemble(self.params, self.data.iloc[:t], full, self._gco2[:t], self._edge_g[:t], acts, policy_name)
