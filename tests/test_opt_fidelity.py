"""Plan vs simulator on real data: the plan's predicted carbon agrees with what the simulator
measures when it follows the plan, within the learned model's stated error, and the plan
stays where the model was trained. Both sites, with attribution:
``benchmarks/bench_optimizer_loop.py``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from coolshift.config import load_site
from coolshift.io import load_site_data
from coolshift.models.thermal import LinearPlantModel
from coolshift.optimizer import PlanOptions
from coolshift.control.replay import carbon_weighted_error_pct, replay_day
from coolshift.simulations.engine import simulate
from coolshift.control.policies import BestPracticePolicy, ExplorePolicy
from conftest import SMALL_SITE


@pytest.fixture(scope="module")
def san_jose_day():
    """Three weeks of explore telemetry; the model is fitted on the first 80 %; its stated error
    is measured at the plans' operating points on the held-out days (plans replayed in the
    simulator, the model evaluated at the decisions the simulator ran); then one test day."""
    site = load_site(SMALL_SITE)
    day = pd.Timestamp("2022-07-01", tz="UTC")
    data = load_site_data(site, "2022-06-10", day + pd.Timedelta("1D"))
    tel = simulate(site, data.loc[: day - pd.Timedelta("15min")], ExplorePolicy(seed=0)).timeseries
    cut = tel.index[int(0.8 * len(tel))]
    model = LinearPlantModel().fit(tel.loc[:cut], site)
    held_days = pd.date_range(cut.ceil("D"), day - pd.Timedelta("1D"), freq="D")
    stated = carbon_weighted_error_pct(pd.concat([replay_day(site, model, data, d)["steps"] for d in held_days]))
    return site, model, stated, replay_day(site, model, data, day), data.loc[day:]


def test_plan_carbon_matches_the_simulator_within_the_stated_error(san_jose_day):
    site, model, stated, run, today = san_jose_day
    plan, rep = run["plan"], run["result"]
    assert plan.status == "optimal" and not plan.fallback
    assert 0.2 < stated < 2.5  # a real held-out error, not zero (measured 1.16 % on 4 days)
    gap = 100.0 * (run["predicted_tco2"] - run["measured_tco2"]) / run["measured_tco2"]
    assert abs(gap) <= stated, (gap, stated)  # measured -1.05 %
    # the learned model's own share: at the decisions the simulator ran (measured -0.46 %)
    assert abs(carbon_weighted_error_pct(run["steps"], absolute=False)) <= stated
    # the plan's saving is real: the simulator following it emits less than best practice
    base = simulate(site, today, BestPracticePolicy()).summary
    assert run["measured_tco2"] < 0.97 * base["tco2_location"]
    for k in ("thermal_violation_minutes", "late_work_units", "unserved_interactive_units"):
        assert rep.summary[k] == 0


def test_plan_stays_inside_the_models_training_support(san_jose_day):
    """Total IT and chilled water inside what was trained at each step's wet-bulb, hall shares
    inside the trained spread: the operating points the model was fitted and validated on."""
    site, model, stated, run, today = san_jose_day
    f = run["plan"].frame
    sup = model.coefficients(site, today).support
    tol = 1e-3
    it = f["it_power_kw"] - f["fan_power_kw"]
    assert (it >= sup["it_lo_kw"] - tol).all() and (it <= sup["it_hi_kw"] + tol).all()
    assert (f["chw_setpoint_c"] >= sup["chw_lo_c"] - tol).all() and (f["chw_setpoint_c"] <= sup["chw_hi_c"] + tol).all()
    for z in [z.name for z in site.zones]:
        share = f[f"zone_it_power_kw__{z}"] / it
        assert (share >= sup[f"share_lo__{z}"] - tol).all() and (share <= sup[f"share_hi__{z}"] + tol).all()
    # without the support rows the same plan leaves it (measured: IT at 47 % of the steps,
    # chilled water at 91 %, hall shares at 22 %)
    free = replay_day(site, model, today, today.index[0],
                      PlanOptions(decision_envelope=model.envelope_, support_envelope=False))["plan"].frame
    it_free = free["it_power_kw"] - free["fan_power_kw"]
    outside = (it_free < sup["it_lo_kw"] - tol) | (it_free > sup["it_hi_kw"] + tol)
    outside |= (free["chw_setpoint_c"] < sup["chw_lo_c"] - tol) | (free["chw_setpoint_c"] > sup["chw_hi_c"] + tol)
    assert outside.mean() > 0.2
