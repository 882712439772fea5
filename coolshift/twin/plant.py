"""The twin's plant: the simulator with its thermal state, one planning step at a time.

Each step, the site's local controller (the ``best_practice`` rule,
:class:`coolshift.control.policies.BestPracticePolicy`) decides the step as it would with
nobody commanding; every setpoint a supervisor commands replaces the local one (clipped to
the zone's and chiller's setpoint ranges, as a controller clamps its inputs), and the
chilled-water reset of the rule reads the supply setpoints in force.

Servers and batch work (issue 19 item 4): the active servers per pool come from the twin's
hosts (:mod:`.hosts`, the Redfish power states) when a supervisor commands them, else from
the local rule; never fewer than the pool's ``min_active_servers`` (the site's own floor).
A commanded ``release_units_per_h__<class>`` replaces the local scheduler's (which runs
work as it arrives), but work whose deadline falls in the step is released whatever is
commanded, as a scheduler with deadlines does: the twin never lets a deadline pass for
want of a release. The physics is
:class:`coolshift.simulations.engine.Stepper`'s, the same as :func:`simulate`'s: rack inlet
temperatures follow the supply air through the room's first-order lag (a time constant
of minutes, ``simulations.airside.room_time_constant_s``), so they move towards a new
setpoint over steps instead of jumping to it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from coolshift import workload
from coolshift.config import SiteConfig
from coolshift.control.policies import BestPracticePolicy
from coolshift.schema import RH_PCT, TEMP_C, WETBULB_C, CARBON_GCO2_PER_KWH, col
from coolshift.setpoints import chw_for_supply_c
from coolshift.simulations.engine import SimResult, Stepper

__all__ = ["CHW", "SIM_TIME", "TwinPlant", "supply_variable", "release_variable", "active_variable"]

CHW = "chw_setpoint_c"
SIM_TIME = "sim_time_unix_h"  # hours since 1970-01-01T00:00Z: quarter-hours are exact in a float32 REAL
_EPOCH = pd.Timestamp("1970-01-01", tz="UTC")


def supply_variable(zone: str) -> str:
    return col("supply_setpoint_c", zone)


def release_variable(batch_class: str) -> str:
    return col("release_units_per_h", batch_class)


def active_variable(pool: str) -> str:
    return col("active_servers", pool)


class TwinPlant:
    """The site's physics under the setpoints in force, advanced by :meth:`step`."""

    def __init__(self, site: SiteConfig, data: pd.DataFrame):
        self.site, self.data = site, data
        self.stepper = Stepper(site, data)
        self.local = BestPracticePolicy()
        self.zones = [z.name for z in site.zones]
        self._sp_lo = np.array([z.supply_setpoint_min_c for z in site.zones])
        self._sp_hi = np.array([z.supply_setpoint_max_c for z in site.zones])
        ch = site.cooling.chiller
        self._chw_lo, self._chw_hi = ch.chw_setpoint_min_c, ch.chw_setpoint_max_c
        self.step_s = self.stepper.step_h * 3600.0
        names = self.stepper.names
        self.pools, self.batch = list(names.pools), list(names.batch)
        self._servers = np.array([p.servers for p in site.server_pools], dtype=float)
        self._min_active = np.array([p.min_active_servers for p in site.server_pools], dtype=float)
        self._due_steps = [max(1, int(round(d / self.stepper.step_h))) for d in names.deadline_h]
        self._gop = self.stepper.params.gop
        self._boot_frac = np.asarray(self.stepper.params.boot_frac, dtype=float)
        self._cap_per_server = np.array([p.capacity_units_per_server for p in site.server_pools], dtype=float)
        self._eligible = np.asarray(names.eligible, dtype=bool)
        self._classes = list(names.classes)

    @property
    def done(self) -> bool:
        return self.stepper.done

    @property
    def t(self) -> int:
        """Index of the next step to simulate."""
        return self.stepper.t

    def initial_telemetry(self) -> dict[str, float]:
        """What the points show before the first step: the initial state, outside conditions of step 0."""
        st = self.stepper.state
        out = {CHW: st.chw_c, SIM_TIME: self._hours(0)}
        out.update(self._outside(0))
        for i, z in enumerate(self.zones):
            out[col("inlet_temp_c", z)] = float(st.inlet_c[i])
            out[supply_variable(z)] = float(st.supply_c[i])
        for j, p in enumerate(self.pools):
            out[active_variable(p)] = float(st.active_servers[j])
        for b, c in enumerate(self.batch):
            q = float(st.queue_units[b]) if len(st.queue_units) else 0.0
            out[col("queue_units", c)] = out[col("backlog_units", c)] = q
            out[col("batch_arrivals_units", c)] = 0.0
            out[col("backlog_due_h", c)] = self._due_steps[b] * self.stepper.step_h
        return out

    def forced_release_units_per_h(self) -> np.ndarray:
        """Per batch class, the release rate that serves every unit due by the end of the next step."""
        obs = self.stepper.observation(1)
        k, step_h = self.stepper.t, self.stepper.step_h
        out = np.zeros(len(self.batch))
        for b in range(len(self.batch)):
            due, units = obs.pending(b)
            out[b] = float(units[due <= k].sum()) / step_h
            if self._due_steps[b] <= 1:  # work that must run in the step it arrives
                c = self.stepper.names.classes.index(self.batch[b])
                out[b] += float(self.stepper.demand_units_per_h[k, c])
        return out

    def _servable_batch_units_per_h(self, act: np.ndarray, release: np.ndarray) -> np.ndarray:
        """Batch work per hour the servers ``act`` can run this step after the interactive work,
        by the engine's own allocation (booting servers add no capacity for their boot time)."""
        p, k = self.stepper.params, self.stepper.t
        booted = np.maximum(act - self.stepper.state.active_servers, 0.0)
        cap_g = ((act - booted * p.boot_frac) * p.cap_per_server) @ p.group_onehot
        want = np.concatenate([self.stepper.demand_units_per_h[k, p.inter_idx], release])[None, :]
        servable, _ = workload.allocate_groups(want, cap_g[None, :], p.elig_g_order)
        return servable[0, len(p.inter_idx):]

    def _deadline_servers(self, act: np.ndarray, release: np.ndarray, forced: np.ndarray) -> np.ndarray:
        """``act``, plus servers on the class's eligible pools when the ones running cannot serve
        the work due this step (as a scheduler with power saving resumes nodes for due jobs);
        a server switched on gives its capacity after its boot time, as the engine counts it."""
        act = act.copy()
        for _ in range(3):  # the shortfall, then what allocation across groups still leaves short
            short = forced - self._servable_batch_units_per_h(act, release)
            if not (short > 1e-6).any():
                break
            for b, c in enumerate(self.batch):
                need = float(short[b])
                for j in np.flatnonzero(self._eligible[self._classes.index(c)]):
                    if need <= 1e-6:
                        break
                    per = self._cap_per_server[j] * max(1.0 - self._boot_frac[j], 1e-3)
                    extra = max(min(float(np.ceil(need / per)), self._servers[j] - act[j]), 0.0)
                    act[j] += extra
                    need -= extra * per
        return act

    def step(self, overrides: dict[str, float],
             active_servers: dict[str, float] | None = None) -> tuple[dict[str, float], dict[str, float]]:
        """Simulate the next step with ``overrides`` (variable -> commanded value) in force.

        ``overrides`` may carry the setpoints and ``release_units_per_h__<class>``;
        ``active_servers`` (pool -> servers on, from the twin's hosts) replaces the local
        controller's consolidation for the pools it names, raised to the pool's minimum.
        Returns (the local controller's choice for this step: setpoints, release rates and
        active servers; the step's telemetry, named as :func:`simulate`'s timeseries
        columns, plus ``sim_time_unix_h``: the end of the step, where the twin's clock now
        stands).
        """
        k = self.stepper.t
        a = self.local.decide(self.stepper.observation(1))
        local_active = a.active_servers[0].copy()
        local_release = a.release_units_per_h[0].copy()
        if active_servers:
            act = np.array([active_servers.get(p, local_active[j]) for j, p in enumerate(self.pools)], dtype=float)
            a.active_servers[0] = np.clip(np.maximum(np.round(act), self._min_active), 0.0, self._servers)
        if self.batch:
            forced = self.forced_release_units_per_h()
            rel = np.array([max(float(overrides.get(release_variable(c), local_release[b])), 0.0)
                            for b, c in enumerate(self.batch)])
            a.release_units_per_h[0] = np.maximum(rel, forced)
            if forced.any():
                a.active_servers[0] = self._deadline_servers(a.active_servers[0], a.release_units_per_h[0], forced)
        local_supply = a.supply_c[0].copy()
        supply = np.array([overrides.get(supply_variable(z), local_supply[i]) for i, z in enumerate(self.zones)])
        supply = np.clip(supply, self._sp_lo, self._sp_hi)
        local_chw = float(chw_for_supply_c(self.site, supply[None, :])[0])
        chw = float(np.clip(overrides.get(CHW, local_chw), self._chw_lo, self._chw_hi))
        a.supply_c[0] = supply
        a.chw_c[0] = chw
        out = self.stepper.step(a)
        local = {supply_variable(z): float(local_supply[i]) for i, z in enumerate(self.zones)}
        local[CHW] = local_chw
        local.update({release_variable(c): float(local_release[b]) for b, c in enumerate(self.batch)})
        local.update({active_variable(p): float(local_active[j]) for j, p in enumerate(self.pools)})
        tele = self._telemetry(out, k)
        for j, p in enumerate(self.pools):
            tele[active_variable(p)] = float(a.active_servers[0, j])
            # servers carrying work: the active ones times their group's utilisation
            busy = np.ceil(a.active_servers[0, j] * out["util_g"][0, self._gop[j]] - 1e-6)
            tele[col("busy_servers", p)] = max(0.0, float(busy))
        for b, c in enumerate(self.batch):
            tele[release_variable(c)] = float(a.release_units_per_h[0, b])
        return local, tele

    def result(self) -> SimResult:
        """The run so far, as :func:`simulate` assembles it (its actions are what the twin applied)."""
        return self.stepper.result("twin")

    def _hours(self, k: int) -> float:
        return (self.data.index[0] - _EPOCH).total_seconds() / 3600.0 + k * self.step_s / 3600.0

    def _outside(self, k: int) -> dict[str, float]:
        row = self.data.iloc[k]
        out = {"outside_temp_c": float(row[TEMP_C]), "wetbulb_c": float(row[WETBULB_C]),
               "gco2_per_kwh": float(row[CARBON_GCO2_PER_KWH])}
        if RH_PCT in self.data.columns:
            out["outside_rh_pct"] = float(row[RH_PCT])
        return out

    def _telemetry(self, out: dict[str, np.ndarray], k: int) -> dict[str, float]:
        it, fac = float(out["it_kw"][0]), float(out["facility_kw"][0])
        tele = {
            "it_power_kw": it, "cooling_power_kw": float(out["cooling_kw"][0]), "facility_power_kw": fac,
            "pue": fac / max(it, 1e-9), "chiller_kw": float(out["chiller_kw"][0]),
            "crah_fan_kw": float(out["crah_kw"][0]), "unmet_cooling_kw": float(out["unmet_kw"][0]),
            "economiser_frac": float(out["econ_frac"][0]), CHW: float(out["chw_c"][0]),
            "kgco2_location": float(out["kgco2_location"][0]), SIM_TIME: self._hours(k + 1),
        }
        tele.update(self._outside(k))
        for i, z in enumerate(self.zones):
            tele[supply_variable(z)] = float(out["supply_sp_c"][0, i])
            tele[col("supply_temp_c", z)] = float(out["supply_act_c"][0, i])
            tele[col("inlet_temp_c", z)] = float(out["inlet_c"][0, i])
            tele[col("zone_it_power_kw", z)] = float(out["zone_it_kw"][0, i])
        pending = None if self.stepper.done else self.stepper.observation(1)
        for b, c in enumerate(self.stepper.names.batch):
            q = float(out["queue"][0, b])
            tele[col("queue_units", c)] = tele[col("backlog_units", c)] = q
            tele[col("batch_arrivals_units", c)] = float(out["arrivals"][0, b])
            tele[col("late_units", c)] = float(out["late_units"][0, b])
            due_h = self._due_steps[b] * self.stepper.step_h  # nothing waits: new work's full deadline
            if pending is not None:
                due, units = pending.pending(b)
                if len(due):  # the oldest waiting work: hours from the end of this step to its deadline
                    due_h = float(due[0] - k) * self.stepper.step_h
            tele[col("backlog_due_h", c)] = due_h
        return tele
