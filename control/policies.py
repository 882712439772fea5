"""The baseline controllers: ``static``, ``best_practice``, ``carbon_greedy``, ``explore``, and a fixed plan.

Each is a simulator :class:`~coolshift.simulations.actions.Policy` applying a rule of
:mod:`coolshift.baselines` (whose docstring defines the rules) at every decision interval;
``explore`` is the commissioning test that excites the plant for training data. Defined
once; never weaken them to flatter the optimiser.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import beta as beta_law

from coolshift.actions import Actions
from coolshift.baselines import (HEADROOM_FRAC, best_practice_actions, carbon_greedy_actions, demand_matrix,
                                 full_capacity, run_on_arrival, serve_load, static_actions)
from coolshift.setpoints import chw_for_supply_c, ramp, rate_per_step_c, safe_supply_max_c
from coolshift.simulations.actions import Observation, Policy

__all__ = [
    "POLICIES",
    "get_policy",
    "StaticPolicy",
    "BestPracticePolicy",
    "CarbonGreedyPolicy",
    "ExplorePolicy",
    "FixedPolicy",
]


@dataclass
class StaticPolicy:
    name: str = "static"
    interval_h: float | None = 24.0

    def decide(self, obs: Observation) -> Actions:
        return static_actions(obs.site, obs.forecast_arrays, obs.state, obs.n_steps, obs.step_h)


@dataclass
class BestPracticePolicy:
    name: str = "best_practice"
    interval_h: float | None = 24.0
    headroom: float = HEADROOM_FRAC

    def decide(self, obs: Observation) -> Actions:
        return best_practice_actions(obs.site, obs.forecast_arrays, obs.state, obs.n_steps, obs.step_h, self.headroom)


@dataclass
class CarbonGreedyPolicy:
    name: str = "carbon_greedy"
    interval_h: float | None = 24.0
    headroom: float = HEADROOM_FRAC

    def decide(self, obs: Observation) -> Actions:
        pending = [obs.pending(b) for b in range(len(obs.names.batch))]
        return carbon_greedy_actions(obs.site, obs.forecast_arrays, obs.state, obs.n_steps, obs.step_h, pending,
                                     step0=obs.step, headroom=self.headroom)


@dataclass
class ExplorePolicy:
    """Commissioning-style excitation within the safe envelope (seeded, reproducible).

    Each ``hold_h`` block draws supply setpoints, a chilled-water setpoint between the
    initial one and the warmest that still delivers the lowest supply, and a consolidation
    headroom (0 = servers packed to the work they serve, None = all on). A share
    ``corner_frac`` of the blocks visits the corner a carbon optimiser drives to: every
    supply setpoint in the top ``corner_band`` of its safe range, chilled water in the top
    band of its range, and servers packed (headroom 0, so zone IT power is lowest), so a
    model learned from this data has seen those joint settings. In a share ``skew_frac``
    of the other blocks each pool draws its own mode (packed, the block's headroom, or all
    on): work spreads over the active servers, so the zones' IT powers move apart (an
    optimiser moves work between halls; a model needs to have seen them vary apart).
    Every pool keeps at least the servers its own work needs, so capacity never drops.

    The chilled-water offset (0 = the initial setpoint, 1 = the warmest that still delivers
    the block's lowest supply) is drawn from a Beta(``chw_beta``) law, by default (2, 1): a
    density rising linearly toward the warm end, as a commissioning engineer weights the
    test points where the plant will run (the local rule and Coolshift's plans hold chilled
    water at or near the warmest the supply allows), still covering the whole range (a
    quarter of the draws in its colder half). ``None`` = uniform, which puts a fifth of the
    autumn rows at chillers cycling below their minimum part load. The same uniform numbers
    are mapped through the law's quantiles, so every other draw of a block is unchanged.

    In a share ``defer_frac`` of the blocks batch work is held in its queue (never two such
    blocks in a row, and only for classes whose deadline is at least two blocks long) and
    run as fast as capacity allows afterwards: total IT power then falls to what the
    interactive work alone needs and rises above the arrivals while the queue drains, the
    low and high loads a carbon optimiser creates by shifting batch work in time.
    """

    name: str = "explore"
    interval_h: float | None = 24.0
    hold_h: float = 3.0
    seed: int = 0
    headrooms: tuple = (0.0, 0.1, 0.3, 0.6, None)  # None = all servers on
    corner_frac: float = 0.25
    corner_band: float = 0.15
    skew_frac: float = 0.3
    defer_frac: float = 0.25
    chw_beta: tuple | None = (2.0, 1.0)  # (a, b) of the chilled-water offset's Beta law; None = uniform

    def _held(self, block: int) -> bool:
        """Batch is held in ``block``: its own seeded draw, and the block before was not held."""
        def draw(b: int) -> bool:
            return bool(np.random.default_rng([self.seed, b, 1]).random() < self.defer_frac)

        return draw(block) and not draw(block - 1)

    def _release(self, site, names, dem: np.ndarray, q0: np.ndarray, held: np.ndarray, step_h: float) -> np.ndarray:
        """Batch release units/h: run on arrival, except held classes on held steps (capacity 0 for them)."""
        cap = full_capacity(site, dem.shape[0])
        rel, _ = run_on_arrival(site, names, dem, cap, q0, step_h)
        rel = np.maximum(rel, 0.0)  # the queue recursion leaves -1e-12 where it empties
        hold_ok = names.deadline_h >= 2.0 * self.hold_h
        if not (held.any() and hold_ok.any()):
            return rel
        # the run-on-arrival rule with no capacity on held steps: the queue holds the work,
        # then drains at full capacity (interactive work is still served by the simulator first)
        rel_h, _ = run_on_arrival(site, names, dem, np.where(held[:, None], 0.0, cap), q0, step_h)
        return np.maximum(np.where(hold_ok[None], rel_h, rel), 0.0)

    def decide(self, obs: Observation) -> Actions:
        site, n, step_h = obs.site, obs.n_steps, obs.step_h
        names = obs.names
        hold = max(1, int(round(self.hold_h / step_h)))
        lo = np.array([max(z.supply_setpoint_min_c, z.inlet_min_c) for z in site.zones])
        hi = np.maximum(safe_supply_max_c(site), lo)
        blocks = (obs.step + np.arange(n)) // hold
        ub = np.unique(blocks)
        draws = {int(b): np.random.default_rng([self.seed, int(b)]) for b in ub}
        tgt_b = {b: lo + (hi - lo) * r.random(len(lo)) for b, r in draws.items()}
        chw_off = {b: r.random() for b, r in draws.items()}
        head = {b: self.headrooms[int(r.integers(len(self.headrooms)))] for b, r in draws.items()}
        corner = set()
        for b, r in draws.items():  # corner blocks: warm supply, warm chilled water, packed servers
            if r.random() < self.corner_frac:
                corner.add(b)
                tgt_b[b] = hi - (hi - lo) * self.corner_band * r.random(len(lo))
                chw_off[b] = 1.0 - self.corner_band * r.random()
                head[b] = 0.0
        npool = len(site.server_pools)
        skew = {b: (r.random(npool) * 3).astype(int) if r.random() < self.skew_frac and b not in corner else None
                for b, r in draws.items()}  # per pool: 0 packed, 1 block headroom, 2 all on
        target = np.vstack([tgt_b[int(b)] for b in blocks])
        supply = ramp(target, obs.state.supply_c, rate_per_step_c(site, step_h))
        ch = site.cooling.chiller
        chw_hi = chw_for_supply_c(site, supply)
        chw_lo = np.minimum(ch.chw_setpoint_initial_c, chw_hi)
        off = np.array([chw_off[int(b)] for b in blocks])
        if self.chw_beta is not None:  # the same uniform draws, mapped through the Beta law's quantiles
            off = beta_law.ppf(off, *self.chw_beta)
        chw = chw_lo + (chw_hi - chw_lo) * off
        dem = demand_matrix(site, obs.forecast_arrays, n)
        cap = full_capacity(site, n)
        held = np.array([self._held(int(b)) for b in blocks]) if self.defer_frac > 0 else np.zeros(n, bool)
        release = self._release(site, names, dem, obs.state.queue_units, held, step_h)
        load = serve_load(names, dem, release, cap)
        hk = np.array([np.inf if head[int(b)] is None else head[int(b)] for b in blocks])
        per = np.array([p.capacity_units_per_server for p in site.server_pools])
        lo = np.array([p.min_active_servers for p in site.server_pools], dtype=float)
        hi = np.array([p.servers for p in site.server_pools], dtype=float)
        need = np.where(np.isinf(hk)[:, None], hi[None], np.ceil(load * (1.0 + np.where(np.isinf(hk), 0, hk))[:, None] / per - 1e-9))
        for k, b in enumerate(blocks):
            mode = skew[int(b)]
            if mode is not None:
                packed = np.ceil(load[k] / per - 1e-9)
                need[k] = np.where(mode == 0, packed, np.where(mode == 2, hi, np.maximum(need[k], packed)))
        # while batch is held the servers are packed to the interactive work alone: switch on
        # a step ahead of its rises, so servers still booting never leave it short
        ahead = held[:-1] | held[1:]
        need[:-1] = np.where(ahead[:, None], np.maximum(need[:-1], need[1:]), need[:-1])
        need = np.clip(need, lo, hi)
        bf = np.minimum(np.array([p.boot_time_s for p in site.server_pools]) / (step_h * 3600.0), 0.95)
        prev = np.vstack([obs.state.active_servers[None], need[:-1]])
        active = np.clip(np.maximum(need, np.ceil((need - bf * prev) / (1.0 - bf) - 1e-9)), lo, hi)
        return Actions(supply_c=supply, chw_c=chw, active_servers=active,
                       release_units_per_h=release,
                       offload_units_per_h=np.zeros((n, len(names.edges), len(names.offloadable))))


@dataclass
class FixedPolicy:
    """Follows a fixed :class:`Actions` for the whole run (tests, what-ifs, plan following)."""

    actions: Actions
    name: str = "fixed"
    interval_h: float | None = None

    def decide(self, obs: Observation) -> Actions:
        sl = slice(obs.step, obs.step + obs.n_steps)
        a = self.actions
        return Actions(a.supply_c[sl], a.chw_c[sl], a.active_servers[sl], a.release_units_per_h[sl],
                       a.offload_units_per_h[sl])


POLICIES = {
    "static": StaticPolicy,
    "best_practice": BestPracticePolicy,
    "carbon_greedy": CarbonGreedyPolicy,
    "explore": ExplorePolicy,
}


def get_policy(name: str, **kwargs) -> Policy:
    """A baseline policy by its command-line name."""
    try:
        return POLICIES[name](**kwargs)
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; choose one of {sorted(POLICIES)}") from None
