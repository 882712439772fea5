"""The twin's plant: the simulator with its thermal state, one planning step at a time.

Each step, the site's local controller (the ``best_practice`` rule,
:class:`coolshift.control.policies.BestPracticePolicy`) decides the step as it would with
nobody commanding; every setpoint a supervisor commands replaces the local one (clipped to
the zone's and chiller's setpoint ranges, as a controller clamps its inputs), and the
chilled-water reset of the rule reads the supply setpoints in force. The physics is
:class:`coolshift.simulations.engine.Stepper`'s, the same as :func:`simulate`'s: rack inlet
temperatures follow the supply air through the room's first-order lag (a time constant
of minutes, ``simulations.airside.room_time_constant_s``), so they move towards a new
setpoint over steps instead of jumping to it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from coolshift.config import SiteConfig
from coolshift.control.policies import BestPracticePolicy
from coolshift.schema import RH_PCT, TEMP_C, WETBULB_C, CARBON_GCO2_PER_KWH, col
from coolshift.setpoints import chw_for_supply_c
from coolshift.simulations.engine import SimResult, Stepper

__all__ = ["CHW", "SIM_TIME", "TwinPlant", "supply_variable"]

CHW = "chw_setpoint_c"
SIM_TIME = "sim_time_unix_h"  # hours since 1970-01-01T00:00Z: quarter-hours are exact in a float32 REAL
_EPOCH = pd.Timestamp("1970-01-01", tz="UTC")


def supply_variable(zone: str) -> str:
    return col("supply_setpoint_c", zone)


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
        return out

    def step(self, overrides: dict[str, float]) -> tuple[dict[str, float], dict[str, float]]:
        """Simulate the next step with ``overrides`` (variable -> commanded value) in force.

        Returns (the local controller's setpoints for this step, the step's telemetry,
        named as :func:`simulate`'s timeseries columns, plus ``sim_time_unix_h``: the end of
        the step, where the twin's clock now stands).
        """
        k = self.stepper.t
        a = self.local.decide(self.stepper.observation(1))
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
        return local, self._telemetry(out, k)

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
        for b, c in enumerate(self.stepper.names.batch):
            tele[col("queue_units", c)] = float(out["queue"][0, b])
        return tele
