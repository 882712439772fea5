"""A Gymnasium environment on the physics simulator, to benchmark any controller against Coolshift's LP.

:class:`CoolshiftEnv` advances the simulator (:class:`coolshift.simulations.engine.Stepper`,
the same physics :func:`~coolshift.simulations.engine.simulate` uses) one decision at a time
over a period of a site's bundled real data (grid intensity, weather, workload). Registered
as ``coolshift/SanJose-v0`` and ``coolshift/Philadelphia-v0`` by ``import coolshift.control``.

- **Observation** (a ``Dict`` of float32 ``Box`` es, see :meth:`CoolshiftEnv._observation_space`):
  telemetry (rack inlet temperatures, IT/cooling/facility power of the last decision,
  setpoints in force, active servers, batch backlog, outside dry-bulb and wet-bulb) and
  forecasts for the next ``horizon_steps`` simulator steps (grid intensity, demand per
  workload class, weather; perfect, or with noisy intensity as in ``coolshift evaluate``).
- **Action**: one ``Box(-1, 1)`` vector, each entry mapped linearly onto a configured range
  (see :class:`ActionLayout`): supply setpoint per zone, chilled-water setpoint, active
  servers per pool, share of each batch class's available work released, and (sites with
  edge sites) offload per edge site and offloadable class.
- **Reward**: minus the decision's kgCO2 (the site's accounting basis) minus penalties in
  kgCO2e for thermal violations, unserved interactive work and late batch work
  (:class:`RewardWeights`).

Coolshift's own controllers act through the env with :class:`PolicyController`
(:func:`best_practice_controller`, :func:`lp_controller`), a random policy with
:func:`random_controller`; :func:`run_episode` runs one episode. See docs/control.md.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import pandas as pd
from gymnasium import spaces

from coolshift.config import SiteConfig, load_site
from coolshift.io import load_site_data
from coolshift.models.thermal import LinearPlantModel
from coolshift.control.receding import RecedingHorizonPolicy, closed_loop_options, noisy_forecast, observed_forecast
from coolshift.schema import CARBON_GCO2_PER_KWH, TEMP_C, WETBULB_C, col, demand_col
from coolshift.simulations.actions import Observation, Policy
from coolshift.actions import Actions
from coolshift.simulations.engine import SimResult, Stepper, simulate
from coolshift.control.policies import BestPracticePolicy, get_policy
from coolshift.simulations.telemetry import to_telemetry

__all__ = [
    "CoolshiftEnv", "RewardWeights", "ActionLayout", "PolicyController", "best_practice_controller",
    "lp_controller", "random_controller", "fit_plant_model", "run_episode", "SITES_DIR", "FORECAST_NOISE",
]

SITES_DIR = Path(__file__).resolve().parents[1] / "configs" / "sites"
# Default episode: the first week of July 2022 (summer: the economiser works least, cooling
# carbon is highest; the bundled data cover 2022).
DEFAULT_START = "2022-07-01T00:00:00Z"
DEFAULT_DAYS = 7.0
# Forecast modes as in ``coolshift evaluate``: noise on grid intensity with sd = 5 % / 10 % of
# its mean (Wiesner et al. 2021, "Let's Wait Awhile", studied these error levels).
FORECAST_NOISE = {"perfect": 0.0, "noise5": 0.05, "noise10": 0.10}
# Plant model training window (explore telemetry, before the default episode): as the
# closed-loop tests' fixture (tests/conftest.py ``small_site_model``).
TRAIN_START, TRAIN_END = "2022-05-15", "2022-06-12"
# Observation bounds: generous physical limits, far outside anything the example sites
# reach (values beyond them are clipped; gymnasium's checker warns on infinite bounds).
TEMP_BOUNDS_C = (-60.0, 150.0)
POWER_MAX_KW = 1e7
WORK_MAX_UNITS = 1e9
GCO2_MAX = 5000.0


@dataclass(frozen=True)
class RewardWeights:
    """Prices of violations [kgCO2e per unit of violation]; reward = -(kgCO2 + penalties).

    Each price is far above the most carbon the violation could save, so that a controller
    maximising the reward never trades violations for carbon (figures: the example sites,
    2022 data, docs/control.md "Reward"):

    - ``thermal_kgco2e_per_k_h``: per kelvin of rack inlet above ``inlet_max_c`` (or below
      ``inlet_min_c``), per zone, per hour. Switching a zone's cooling off entirely would save
      at most its share of the cooling power's carbon: under 0.03 tCO2/h per San Jose hall
      and 0.27 tCO2/h per Philadelphia hall (best_practice, first week of July, the worst
      step); one K-hour costs 1 tCO2e.
    - ``unserved_kgco2e_per_unit``: per unit of interactive work not served in its step (an
      SLA breach). Serving one unit takes about 0.6 kWh of facility energy (380-480 W peak
      servers at 0.8-1.0 units/h, PUE 1.16-1.25), under 0.3 kgCO2 at the highest 2022
      intensity of the example grids (517 gCO2/kWh, ERCOT); the price is over 30 times that.
    - ``late_kgco2e_per_unit``: per unit of batch work still unserved at its deadline
      (counted once, when it becomes late). Deferring a unit past its deadline saves at most
      its energy times the spread of intensity (< 0.3 kgCO2); the price is over 15 times
      that, and below the unserved price (late work is still done).
    """

    thermal_kgco2e_per_k_h: float = 1000.0
    unserved_kgco2e_per_unit: float = 10.0
    late_kgco2e_per_unit: float = 5.0


@dataclass(frozen=True)
class ActionLayout:
    """Where each lever sits in the action vector, and the range each entry spans.

    Entry ``a`` in [-1, 1] maps to ``lo + (a + 1) / 2 * (hi - lo)``:

    - ``supply``: supply-air setpoint per zone [degC] in [supply_setpoint_min_c,
      supply_setpoint_max_c]; the env moves the setpoint in force toward it at most
      ``supply_setpoint_max_step_c`` per planning step (as the simulator's rate limit);
    - ``chw``: chilled-water setpoint [degC] in [chw_setpoint_min_c, chw_setpoint_max_c];
    - ``active``: active servers per pool [count] in [min_active_servers, servers],
      rounded to whole servers;
    - ``release``: share in [0, 1] of each batch class's available work (its backlog plus
      the step's arrivals) released to run in the step;
    - ``offload``: per (edge site, offloadable class) pair the class's latency limit allows,
      share in [0, 1] of the edge's ``capacity_units_per_h``; scaled down where an edge's
      shares sum above 1 or interactive offload exceeds the step's demand.
    """

    supply: slice
    chw: slice
    active: slice
    release: slice
    offload: slice
    offload_pairs: tuple  # ((edge index, offloadable-class index), ...)
    size: int

    @classmethod
    def from_site(cls, site: SiteConfig, latency_ok: np.ndarray) -> "ActionLayout":
        nz, npool = len(site.zones), len(site.server_pools)
        nb = sum(c.kind == "batch" for c in site.workload_classes)
        pairs = tuple((int(i), int(j)) for i, j in np.argwhere(latency_ok))
        sizes = [nz, 1, npool, nb, len(pairs)]
        ends = np.cumsum(sizes)
        starts = ends - sizes
        sl = [slice(int(s), int(e)) for s, e in zip(starts, ends)]
        return cls(*sl, offload_pairs=pairs, size=int(ends[-1]))


def _site_path(site: str) -> Path:
    """An example site by config stem (``sanjose_colo_2mw``) or a path to a site YAML."""
    p = Path(site)
    if p.suffix in (".yaml", ".yml"):
        return p
    return SITES_DIR / f"{site}.yaml"


def _to_unit(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Inverse of the action map: a value in [lo, hi] as an entry in [-1, 1] (0 where lo == hi)."""
    span = hi - lo
    return np.clip(np.divide(2.0 * (x - lo), span, out=np.ones_like(span), where=span > 0) - 1.0, -1.0, 1.0)


def _from_unit(a: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """An entry in [-1, 1] mapped onto [lo, hi]."""
    return np.clip(lo + (np.clip(a, -1.0, 1.0) + 1.0) * 0.5 * (hi - lo), lo, hi)


class CoolshiftEnv(gym.Env):
    """One site on the physics simulator, one env step per decision (default: one 15-min planning step).

    ``site``: an example config stem, a YAML path or a :class:`SiteConfig`. ``start``/``days``:
    the episode (the site's bundled data are loaded for it); or ``data``: the episode's
    canonical frame (``load_site_data``), used as given. ``decision_minutes``: minutes per
    env step (a multiple of the planning step; the action holds for all its simulator
    steps). ``horizon_steps``: forecast rows in the observation (default: the site's
    planning horizon). ``forecast``: ``perfect``, ``noise5`` or ``noise10`` (noisy grid
    intensity, redrawn at each reset from the env's seeded generator).
    ``reset(options={"start": ..., "days": ...})`` loads another period.
    """

    metadata = {"render_modes": []}

    def __init__(self, site: str | Path | SiteConfig = "sanjose_colo_2mw", start: str = DEFAULT_START,
                 days: float = DEFAULT_DAYS, decision_minutes: float | None = None, horizon_steps: int | None = None,
                 forecast: str = "perfect", weights: RewardWeights = RewardWeights(),
                 data: pd.DataFrame | None = None, render_mode: str | None = None):
        if forecast not in FORECAST_NOISE:
            raise ValueError(f"forecast {forecast!r}: choose one of {sorted(FORECAST_NOISE)}")
        if render_mode is not None:
            raise ValueError(f"render_mode {render_mode!r}: this environment does not render")
        self.render_mode = None
        self.site = site if isinstance(site, SiteConfig) else load_site(_site_path(str(site)))
        self.weights = weights
        self.forecast_mode = forecast
        step_min = self.site.planning.step_minutes
        dm = float(decision_minutes or step_min)
        k = int(round(dm / step_min))
        if k < 1 or abs(k * step_min - dm) > 1e-9:
            raise ValueError(f"decision_minutes {dm:g} must be a positive multiple of the {step_min}-min planning step")
        self.decision_steps = k
        self.horizon_steps = int(horizon_steps or round(self.site.planning.horizon_h * 60 / step_min))
        if self.horizon_steps < 1:
            raise ValueError(f"horizon_steps must be at least 1, got {self.horizon_steps}")
        self._load(start, days, data)
        self._stepper = Stepper(self.site, self.data)  # replaced at every reset; gives the limits now
        names = self._stepper.names
        self.names = names
        self.layout = ActionLayout.from_site(self.site, self._stepper.params.edge_latency_ok)
        self._limits()
        # float64: a float32 share of a backlog of 10,000 units resolves only ~1e-3 units, enough
        # to leave work a hair past its deadline where the LP releases it exactly on time
        self.action_space = spaces.Box(-1.0, 1.0, shape=(self.layout.size,), dtype=np.float64)
        self.observation_space = self._observation_space()
        self._last_power_kw = np.zeros(3)

    # -- setup ---------------------------------------------------------------------------
    def _load(self, start, days, data: pd.DataFrame | None) -> None:
        """The episode's data frame (loaded for [start, start + days) unless given)."""
        if data is None:
            t0 = pd.Timestamp(start)
            t0 = t0.tz_localize("UTC") if t0.tzinfo is None else t0.tz_convert("UTC")
            if not float(days) > 0:
                raise ValueError(f"days must be positive, got {days}")
            data = load_site_data(self.site, t0, t0 + pd.Timedelta(days=float(days)))
        step_min = (data.index[1] - data.index[0]).total_seconds() / 60 if len(data) > 1 else self.site.planning.step_minutes
        if abs(step_min - self.site.planning.step_minutes) > 1e-9:
            raise ValueError(f"data step {step_min:g} min differs from the site's planning step "
                             f"{self.site.planning.step_minutes} min")
        self.data = data
        self.step_h = self.site.step_h

    def _limits(self) -> None:
        """Ranges of the action entries, from the site config."""
        s = self.site
        self._sp_lo = np.array([z.supply_setpoint_min_c for z in s.zones], dtype=float)
        self._sp_hi = np.array([z.supply_setpoint_max_c for z in s.zones], dtype=float)
        ch = s.cooling.chiller
        self._chw_lo, self._chw_hi = np.array([ch.chw_setpoint_min_c]), np.array([ch.chw_setpoint_max_c])
        self._srv_lo = np.array([p.min_active_servers for p in s.server_pools], dtype=float)
        self._srv_hi = np.array([p.servers for p in s.server_pools], dtype=float)
        self._edge_cap = np.array([e.capacity_units_per_h for e in s.edge_sites], dtype=float)
        self._inlet_max = np.array([z.inlet_max_c for z in s.zones], dtype=float)
        self._inlet_min = np.array([z.inlet_min_c for z in s.zones], dtype=float)
        n = self.names
        self._batch_cols = [n.classes.index(c) for c in n.batch]
        self._inter_cols = [n.classes.index(c) for c in n.interactive]

    def _observation_space(self) -> spaces.Dict:
        """Observation keys, shapes and units (float32; H = ``horizon_steps``, row 0 = the coming step)."""
        n, H = self.names, self.horizon_steps
        t_lo, t_hi = TEMP_BOUNDS_C

        def box(lo, hi, shape):
            return spaces.Box(np.full(shape, lo, np.float32), np.full(shape, hi, np.float32), dtype=np.float32)

        d = {
            "inlet_temp_c": box(t_lo, t_hi, (len(n.zones),)),  # rack inlet per zone at the end of the last step [degC]
            "supply_setpoint_c": box(t_lo, t_hi, (len(n.zones),)),  # in force [degC]
            "chw_setpoint_c": box(t_lo, t_hi, (1,)),  # in force [degC]
            "active_server_frac": box(0.0, 1.0, (len(n.pools),)),  # servers on / installed, per pool
            "batch_queue_units": box(0.0, WORK_MAX_UNITS, (len(n.batch),)),  # backlog per batch class [units]
            "it_power_kw": box(0.0, POWER_MAX_KW, (1,)),  # mean over the last decision (0 at reset) [kW]
            "cooling_power_kw": box(0.0, POWER_MAX_KW, (1,)),
            "facility_power_kw": box(0.0, POWER_MAX_KW, (1,)),
            "outside_temp_c": box(t_lo, t_hi, (1,)),  # dry bulb, the coming step [degC]
            "wetbulb_c": box(t_lo, t_hi, (1,)),
            "time_of_day": box(-1.0, 1.0, (2,)),  # sin, cos of the UTC hour angle
            "gco2_per_kwh_forecast": box(0.0, GCO2_MAX, (H,)),  # site grid [gCO2/kWh]
            "demand_units_per_h_forecast": box(0.0, WORK_MAX_UNITS, (H, len(n.classes))),  # per class [units/h]
            "outside_temp_c_forecast": box(t_lo, t_hi, (H,)),
            "wetbulb_c_forecast": box(t_lo, t_hi, (H,)),
        }
        if n.edges:
            d["edge_gco2_per_kwh_forecast"] = box(0.0, GCO2_MAX, (H, len(n.edges)))  # per edge site's grid
        return spaces.Dict(d)

    # -- gymnasium API -------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Start the episode: initial plant state (initial setpoints, all servers on, empty queues)."""
        super().reset(seed=seed)
        options = options or {}
        if "start" in options or "days" in options:
            self._load(options.get("start", self.data.index[0]), options.get("days", len(self.data) * self.step_h / 24),
                       None)
        sd = FORECAST_NOISE[self.forecast_mode]
        fc = noisy_forecast(self.data, sd, seed=int(self.np_random.integers(2**31 - 1))) if sd > 0 else None
        self._stepper = Stepper(self.site, self.data, forecast=fc)
        self._padded_forecast(self._stepper.forecast)
        self._last_power_kw = np.zeros(3)
        return self._obs(), {"timestamp": self.data.index[0].isoformat(), "sim_step": 0}

    def step(self, action):
        """Apply ``action`` for ``decision_steps`` simulator steps; reward = -(kgCO2 + penalties)."""
        a = np.asarray(action, dtype=float).reshape(-1)
        if a.shape != (self.layout.size,) or not np.all(np.isfinite(a)):
            raise ValueError(f"action: expected {self.layout.size} finite values, got shape {np.shape(action)}")
        st = self._stepper
        if st.done:
            raise RuntimeError("step() after the episode ended: call reset()")
        kg = kwh = it_kwh = cool_kwh = thermal_kh = unserved = late = 0.0
        n = 0
        basis = "kgco2_" + self.site.planning.accounting
        while n < self.decision_steps and not st.done:
            out = st.step(self.decode_action(a))
            kg += float(out[basis].sum())
            kwh += float(out["facility_kw"].sum() * self.step_h)
            it_kwh += float(out["it_kw"].sum() * self.step_h)
            cool_kwh += float(out["cooling_kw"].sum() * self.step_h)
            inlet = out["inlet_c"]
            excess = np.maximum(inlet - self._inlet_max, 0.0) + np.maximum(self._inlet_min - inlet, 0.0)
            thermal_kh += float(excess.sum() * self.step_h)
            unserved += float(out["unserved_inter"].sum() * self.step_h)
            late += float(out["late_units"].sum())
            n += 1
        hours = n * self.step_h
        self._last_power_kw = np.array([it_kwh, cool_kwh, kwh]) / hours
        w = self.weights
        pen_t = w.thermal_kgco2e_per_k_h * thermal_kh
        pen_u = w.unserved_kgco2e_per_unit * unserved
        pen_l = w.late_kgco2e_per_unit * late
        reward = -(kg + pen_t + pen_u + pen_l)
        info = {
            "kgco2": kg, "facility_kwh": kwh, "thermal_excess_k_h": thermal_kh, "unserved_units": unserved,
            "late_units": late, "penalty_thermal_kgco2e": pen_t, "penalty_unserved_kgco2e": pen_u,
            "penalty_late_kgco2e": pen_l, "sim_step": st.t,
            "timestamp": self.data.index[min(st.t, len(self.data) - 1)].isoformat(),
        }
        return self._obs(), float(reward), False, bool(st.done), info

    # -- actions -------------------------------------------------------------------------
    def decode_action(self, action: np.ndarray) -> Actions:
        """The simulator :class:`Actions` of the next step for an action vector (see :class:`ActionLayout`)."""
        L, st = self.layout, self._stepper
        a = np.clip(np.asarray(action, dtype=float), -1.0, 1.0)
        state = st.state
        rate = st.params.sp_step_max
        target = _from_unit(a[L.supply], self._sp_lo, self._sp_hi)
        supply = np.clip(np.clip(target, state.supply_c - rate, state.supply_c + rate), self._sp_lo, self._sp_hi)
        chw = _from_unit(a[L.chw], self._chw_lo, self._chw_hi)
        active = np.clip(np.round(_from_unit(a[L.active], self._srv_lo, self._srv_hi)), self._srv_lo, self._srv_hi)
        t = st.t
        dem = st.demand_units_per_h[t]
        avail = state.queue_units + dem[self._batch_cols] * self.step_h  # units
        release = (a[L.release] + 1.0) * 0.5 * avail / self.step_h
        off = np.zeros((len(self.names.edges), len(self.names.offloadable)))
        if L.offload_pairs:
            for (i, j), x in zip(L.offload_pairs, a[L.offload]):
                off[i, j] = (x + 1.0) * 0.5 * self._edge_cap[i]
            tot = off.sum(axis=1)
            off *= np.divide(self._edge_cap, tot, out=np.ones_like(tot), where=tot > self._edge_cap)[:, None]
            for j, c in enumerate(self.names.offloadable):
                if c in self.names.interactive:
                    want, have = off[:, j].sum(), dem[self.names.classes.index(c)]
                    if want > have:
                        off[:, j] *= have / want
        return Actions(supply_c=supply[None], chw_c=chw, active_servers=active[None],
                       release_units_per_h=release[None], offload_units_per_h=off[None])

    def encode_action(self, actions: Actions, row: int = 0) -> np.ndarray:
        """The action vector that reproduces row ``row`` of ``actions`` at the current step.

        Inverse of :meth:`decode_action` for actions within the ranges (the release share
        is taken of the work available now; values outside a range are clipped to it).
        """
        L, st = self.layout, self._stepper
        a = np.zeros(L.size)
        a[L.supply] = _to_unit(np.asarray(actions.supply_c[row], float), self._sp_lo, self._sp_hi)
        a[L.chw] = _to_unit(np.atleast_1d(float(actions.chw_c[row])), self._chw_lo, self._chw_hi)
        a[L.active] = _to_unit(np.asarray(actions.active_servers[row], float), self._srv_lo, self._srv_hi)
        avail = st.state.queue_units + st.demand_units_per_h[st.t][self._batch_cols] * self.step_h
        share = np.divide(np.asarray(actions.release_units_per_h[row], float) * self.step_h, avail,
                          out=np.zeros_like(avail), where=avail > 1e-9)
        a[L.release] = 2.0 * np.clip(share, 0.0, 1.0) - 1.0
        if L.offload_pairs:
            off = np.asarray(actions.offload_units_per_h[row], float)
            share = np.array([off[i, j] / self._edge_cap[i] for i, j in L.offload_pairs])
            a[L.offload] = 2.0 * np.clip(share, 0.0, 1.0) - 1.0
        return a

    # -- observation ---------------------------------------------------------------------
    def _padded_forecast(self, fc: pd.DataFrame) -> None:
        """Forecast columns as arrays with ``horizon_steps`` rows past the episode's end (last value held)."""
        H = self.horizon_steps
        n = self.names

        def pad(x: np.ndarray) -> np.ndarray:
            return np.concatenate([x, np.repeat(x[-1:], H, axis=0)], axis=0)

        self._fc_gco2 = pad(fc[CARBON_GCO2_PER_KWH].to_numpy(float))
        self._fc_temp = pad(fc[TEMP_C].to_numpy(float))
        self._fc_wb = pad(fc[WETBULB_C].to_numpy(float))
        self._fc_dem = pad(np.column_stack([fc[demand_col(c)].to_numpy(float) for c in n.classes]))
        self._fc_edge = (pad(np.column_stack([fc[col(CARBON_GCO2_PER_KWH, e)].to_numpy(float) for e in n.edges]))
                         if n.edges else None)
        ts = self.data.index
        last = ts[-1] + pd.Timedelta(hours=self.step_h)
        hours = np.concatenate([ts.hour + ts.minute / 60.0, [last.hour + last.minute / 60.0]])
        self._hour_angle = 2.0 * np.pi * hours / 24.0

    def _obs(self) -> dict[str, np.ndarray]:
        st = self._stepper
        t, H = st.t, self.horizon_steps
        s = st.state
        obs = {
            "inlet_temp_c": s.inlet_c,
            "supply_setpoint_c": np.asarray(s.supply_c),
            "chw_setpoint_c": np.array([s.chw_c]),
            "active_server_frac": s.active_servers / self._srv_hi,
            "batch_queue_units": s.queue_units,
            "it_power_kw": self._last_power_kw[:1],
            "cooling_power_kw": self._last_power_kw[1:2],
            "facility_power_kw": self._last_power_kw[2:],
            "outside_temp_c": self._fc_temp[t : t + 1],
            "wetbulb_c": self._fc_wb[t : t + 1],
            "time_of_day": np.array([np.sin(self._hour_angle[t]), np.cos(self._hour_angle[t])]),
            "gco2_per_kwh_forecast": self._fc_gco2[t : t + H],
            "demand_units_per_h_forecast": self._fc_dem[t : t + H],
            "outside_temp_c_forecast": self._fc_temp[t : t + H],
            "wetbulb_c_forecast": self._fc_wb[t : t + H],
        }
        if self._fc_edge is not None:
            obs["edge_gco2_per_kwh_forecast"] = self._fc_edge[t : t + H]
        space = self.observation_space
        return {k: np.clip(np.asarray(v, dtype=np.float32), space[k].low, space[k].high) for k, v in obs.items()}

    # -- for controllers that read the simulator directly, and for results ----------------
    @property
    def sim_step(self) -> int:
        """Index of the next simulator step in the episode."""
        return self._stepper.t

    @property
    def stepper(self) -> Stepper:
        """The episode's simulator (replaced at each reset)."""
        return self._stepper

    def sim_observation(self, n_steps: int) -> Observation:
        """The simulator's :class:`Observation` for the next ``n_steps`` (what its policies read):
        the same information as the env's observation (state, forecast, backlog with due times)."""
        return self._stepper.observation(n_steps)

    def result(self, policy_name: str = "gym") -> SimResult:
        """The simulator's result for the episode so far (timeseries and summary, as ``simulate`` gives)."""
        return self._stepper.result(policy_name)


# -- controllers -------------------------------------------------------------------------------
Controller = Callable[[dict], np.ndarray]  # observation -> action


class PolicyController:
    """A simulator :class:`Policy` acting through the env: one action per call.

    The policy decides every ``interval_h`` on the simulator's :class:`Observation` of the env
    (:meth:`CoolshiftEnv.sim_observation`); each call returns its actions for the env's
    current step as an action vector (:meth:`CoolshiftEnv.encode_action`). With
    ``decision_minutes`` longer than the planning step, the first step of each decision is
    held. ``make_policy`` is called at the start of each episode (policies keep state).
    """

    def __init__(self, env: gym.Env, make_policy: Callable[[], Policy]):
        self.env = env.unwrapped
        self.make_policy = make_policy
        self.policy: Policy | None = None
        self._stepper = None
        self._acts: Actions | None = None
        self._t0 = 0

    def __call__(self, obs: dict | None = None) -> np.ndarray:
        env = self.env
        if env.stepper is not self._stepper:  # a new episode
            self._stepper, self.policy, self._acts = env.stepper, self.make_policy(), None
        t = env.sim_step
        if self._acts is None or t >= self._t0 + self._acts.n_steps:
            ih = self.policy.interval_h
            n = env.stepper.n_total - t if ih is None else max(1, int(round(ih / env.step_h)))
            self._acts, self._t0 = self.policy.decide(env.sim_observation(n)), t
        return env.encode_action(self._acts, t - self._t0)


def best_practice_controller(env: gym.Env) -> PolicyController:
    """The ``best_practice`` baseline (:mod:`coolshift.control.policies`) through the env."""
    return PolicyController(env, BestPracticePolicy)


def lp_controller(env: gym.Env, plant_model, interval_h: float = 4.0, reactive: bool = True,
                  warm_start: bool = True) -> PolicyController:
    """Coolshift's receding-horizon LP through the env, as ``coolshift evaluate`` runs it
    (perfect or noisy forecast: the env's forecast frame; re-plan every ``interval_h`` over the
    site's horizon; autoscaler on). ``plant_model``: a fitted :class:`LinearPlantModel`."""
    site = env.unwrapped.site
    return PolicyController(env, lambda: RecedingHorizonPolicy(
        site, plant_model, interval_h=interval_h, forecast_provider=observed_forecast,
        options=closed_loop_options(), reactive=reactive, warm_start=warm_start))


def random_controller(env: gym.Env, seed: int = 0) -> Controller:
    """Uniform random actions (``action_space.sample`` on a copy of the space seeded with ``seed``)."""
    space = spaces.Box(env.action_space.low, env.action_space.high, dtype=env.action_space.dtype)
    space.seed(seed)
    return lambda obs: space.sample()


def fit_plant_model(site: SiteConfig, start: str = TRAIN_START, end: str = TRAIN_END) -> LinearPlantModel:
    """A :class:`LinearPlantModel` fitted on the simulator's ``explore`` telemetry over [start, end)
    (four weeks before the default episode: the same model as the closed-loop tests use)."""
    train = load_site_data(site, start, end)
    res = simulate(site, train, get_policy("explore"))
    tel = to_telemetry(res.timeseries, [z.name for z in site.zones], [p.name for p in site.server_pools])
    return LinearPlantModel().fit(tel, site)


def run_episode(env: gym.Env, controller: Controller, seed: int | None = None, options: dict | None = None) -> dict:
    """One episode: totals of kgCO2, reward, violations and penalties, steps, wall seconds, and the
    simulator's result (``"result"``, a :class:`SimResult`)."""
    t0 = time.perf_counter()
    obs, _ = env.reset(seed=seed, options=options)
    keys = ("kgco2", "facility_kwh", "thermal_excess_k_h", "unserved_units", "late_units",
            "penalty_thermal_kgco2e", "penalty_unserved_kgco2e", "penalty_late_kgco2e")
    tot = dict.fromkeys(keys, 0.0)
    reward, steps, done = 0.0, 0, False
    while not done:
        obs, r, term, trunc, info = env.step(controller(obs))
        reward += r
        steps += 1
        for k in keys:
            tot[k] += info[k]
        done = term or trunc
    return {**tot, "reward": reward, "steps": steps, "seconds": time.perf_counter() - t0,
            "result": env.unwrapped.result()}
