"""Each fleet site's planner model, learned as today's site model is: from commissioning
telemetry of its own plant.

The telemetry is the site's plant (:func:`coolshift.fleet.physics.simulate_site`) metered
hourly over every hour of its weather file, at loads a commissioning design draws across
their range (servers on between the always-on share and all of them, utilisation 5-100 %,
each held for 4 h), with revenue-meter noise on facility power. The planner then sees only
the fitted :class:`coolshift.models.overhead.SiteOverheadModel`, never the plant equations.
"""

from __future__ import annotations

import numpy as np

from coolshift.fleet.physics import simulate_site
from coolshift.fleet_config import FleetSite
from coolshift.models.overhead import SiteOverheadModel

__all__ = ["commissioning_telemetry", "learn_site_overhead", "METER_NOISE_FRAC", "HOLD_H", "HINGE_AT_DESIGN_FRAC"]

# IEC 62053-22 accuracy class 0.5S: +-0.5 % for revenue-grade active-energy meters; used as
# the standard deviation of the facility meter's relative error.
METER_NOISE_FRAC = 0.005
HOLD_H = 4  # hours each drawn load is held (a commissioning test point)
# Where the upper slope starts, as a share of design IT power: chosen on the bundled 4-site
# example's plans, where the planner's hourly facility error per site is 0.7-0.9 % with it
# (1.6-9.1 % with the hand-set ramp): benchmarks/bench_fleet_model.py.
HINGE_AT_DESIGN_FRAC = 0.6


def commissioning_telemetry(site: FleetSite, temp_c, wetbulb_c, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Hourly (IT kW, metered facility kW) of the site's plant over the given weather hours."""
    temp, wb = np.asarray(temp_c, dtype=float), np.asarray(wetbulb_c, dtype=float)
    n_h = len(temp)
    rng = np.random.default_rng(seed)
    blocks = -(-n_h // HOLD_H)
    on = np.repeat(rng.uniform(site.min_active_frac, 1.0, blocks), HOLD_H)[:n_h] * site.servers
    util = np.repeat(rng.uniform(0.05, 1.0, blocks), HOLD_H)[:n_h]
    zeros = np.zeros(n_h)
    res = simulate_site(site, util * on * site.capacity_units_per_server, on, temp, wb, zeros, zeros)
    metered = res["facility_kw"] * (1.0 + METER_NOISE_FRAC * rng.standard_normal(n_h))
    return res["it_kw"], metered


def learn_site_overhead(site: FleetSite, temp_c, wetbulb_c, seed: int = 0) -> SiteOverheadModel:
    """Fit the site's overhead model on its commissioning telemetry (hours with weather only)."""
    temp, wb = np.asarray(temp_c, dtype=float), np.asarray(wetbulb_c, dtype=float)
    ok = np.isfinite(temp) & np.isfinite(wb)
    it, fac = commissioning_telemetry(site, temp[ok], wb[ok], seed=seed)
    return SiteOverheadModel().fit(it, fac, wb[ok], temp[ok], hinge_kw=HINGE_AT_DESIGN_FRAC * site.design_it_kw)
