"""Closed-loop evaluation: the autoscaler under the plan (hand-computed), policies in parallel processes."""

import numpy as np
import pytest

from coolshift.config import load_site
from coolshift.control.evaluation import evaluate_policies
from coolshift.io import load_site_data
from coolshift.control.receding import autoscale_servers
from conftest import SMALL_SITE


def test_autoscaler_wakes_servers_for_observed_demand_with_boot_time():
    # San Jose: pools a_web (web, 0.8 units/h per server, 95 W idle), a_compute (all, 1.0, 120 W),
    # b_storage (web, 0.5, 150 W), b_compute (all, 1.0, 120 W); 180 s boot in a 15-min step = 0.2 lost
    site = load_site(SMALL_SITE)
    plan = np.array([[300, 100, 600, 150], [300, 100, 600, 150]], dtype=float)
    prev = np.array([300, 100, 600, 150], dtype=float)
    demand = np.array([[800.0, 0.0], [800.0, 0.0]])  # web, batch (batch arrivals are not the autoscaler's)
    release = np.array([[50.0], [50.0]])  # the plan's batch release
    off = np.zeros((2, len(site.edge_sites), 0))
    act, woken = autoscale_servers(site, plan, demand, release, off, prev, 0.25)
    # step 0: capacity 240 + 100 + 300 + 150 = 790 < 800 web: 10 short. Cheapest per unit of
    # capacity is a_web (95/0.8 W); a booting server gives 0.8 x (1 - 0.2) = 0.64: ceil(10/0.64) = 16.
    # Batch 50 has no capacity left on the compute pools: ceil(50 / 0.8) = 63 booting in a_compute.
    np.testing.assert_array_equal(woken[0], [16, 63, 0, 0])
    # step 1: the plan switches them off again, but they are still on: full capacity, no boot.
    # web: ceil(10 / 0.8) = 13 kept in a_web; batch: 50 kept in a_compute.
    np.testing.assert_array_equal(woken[1], [13, 50, 0, 0])
    np.testing.assert_array_equal(act, plan + woken)
    # demand that fits changes nothing
    act2, woken2 = autoscale_servers(site, plan, demand * 0.5, release, off, prev, 0.25)
    assert woken2.sum() == 0 and np.array_equal(act2, plan)

    # and the simulator (its own allocation and boot accounting) serves all of it with the
    # autoscaled servers, but not with the plan's
    from coolshift.actions import Actions
    from coolshift.simulations.engine import initial_state, simulate
    from coolshift.control.policies import FixedPolicy

    data = load_site_data(site, "2022-06-14", "2022-06-15").iloc[:2].copy()
    data["web_units_per_h"] = 800.0
    data["batch_units_per_h"] = 50.0
    st = initial_state(site)
    st.active_servers[:] = prev
    st.queue_units[:] = 0.0

    def run(active):
        a = Actions(supply_c=np.full((2, 2), 20.0), chw_c=np.full(2, 10.0), active_servers=active,
                    release_units_per_h=release, offload_units_per_h=np.zeros((2, 0, 0)))
        return simulate(site, data, FixedPolicy(a, name="t"), state=st).summary

    assert run(act)["sla_violations"] == 0 and run(act)["batch_capacity_shortfall_units"] < 1e-6
    assert run(plan)["sla_violations"] == 2


def test_parallel_run_gives_the_serial_record():
    site = load_site(SMALL_SITE)
    data = load_site_data(site, "2022-06-14", "2022-06-15")
    pols = ["static", "best_practice", "carbon_greedy"]
    seen = {}
    serial = evaluate_policies(site, data, pols)
    par = evaluate_policies(site, data, pols, workers=2, progress=lambda n, d, t: seen.__setitem__(n, (d, t)))
    assert par["workers"] == 2 and serial["workers"] == 1
    assert par["policies"] == serial["policies"]
    assert par["savings_vs_static_pct"] == serial["savings_vs_static_pct"]
    assert seen == {p: (len(data), len(data)) for p in pols}  # every policy reported done
    with pytest.raises(ValueError, match="workers"):
        evaluate_policies(site, data, pols, workers=0)


def test_plan_options_are_checked_and_recorded():
    site = load_site(SMALL_SITE)
    data = load_site_data(site, "2022-06-14", "2022-06-15")
    with pytest.raises(ValueError, match="unknown PlanOptions field.*'support_envelop'"):
        evaluate_policies(site, data, ["static"], plan_options={"support_envelop": False})
    rec = evaluate_policies(site, data, ["static"], plan_options={"support_envelope": False}, reactive=False)
    assert rec["plan_options"] == {"support_envelope": False} and rec["reactive"] is False
    # and they reach every LP policy's plan options (Coolshift, a lever, the oracle)
    from coolshift.control.evaluation import _coolshift_policy
    from coolshift.optimizer.data import PlanOptions

    for opts in (None, PlanOptions(levers=frozenset({"cooling"}), deadline_prices=False)):
        pol, _ = _coolshift_policy(site, object(), data, "perfect", 4.0, None, 0, options=opts,
                                   plan_options={"support_envelope": False})
        assert pol.options.support_envelope is False and pol.options.deadline_prices is False
        if opts is not None:
            assert pol.options.levers == frozenset({"cooling"})


def test_demand_headroom_follows_the_autoscaler_and_reaches_the_forecaster():
    """Default: planned at the point forecast when the autoscaler covers the rest, at q90 without it."""
    site = load_site(SMALL_SITE)
    data = load_site_data(site, "2022-06-14", "2022-06-15")
    assert evaluate_policies(site, data, ["static"], forecast_mode="model")["demand_headroom"] is False
    assert evaluate_policies(site, data, ["static"], forecast_mode="model", reactive=False)["demand_headroom"] is True
    assert evaluate_policies(site, data, ["static"], forecast_mode="model", demand_headroom=True)["demand_headroom"]
    assert evaluate_policies(site, data, ["static"], forecast_mode="perfect")["demand_headroom"] is None
    from coolshift.control.evaluation import _coolshift_policy

    for headroom in (False, True):
        pol, _ = _coolshift_policy(site, object(), data, "model", 4.0, None, 0, demand_headroom=headroom)
        assert pol.forecast_provider.demand_headroom is headroom


def test_warm_start_choice_reaches_every_lp_policy_and_the_record():
    site = load_site(SMALL_SITE)
    data = load_site_data(site, "2022-06-14", "2022-06-15")
    assert evaluate_policies(site, data, ["static"])["warm_start"] is True
    assert evaluate_policies(site, data, ["static"], warm_start=False)["warm_start"] is False
    from coolshift.control.evaluation import _coolshift_policy

    for warm in (False, True):
        for mode, horizon in (("perfect", 36.0), ("model", None)):
            pol, _ = _coolshift_policy(site, object(), data, mode, 4.0, horizon, 0, warm_start=warm)
            assert pol.warm_start is warm


def test_decision_hours_are_the_loops_replan_hours():
    import pandas as pd

    from coolshift.control.receding import decision_hours_utc

    assert decision_hours_utc(pd.Timestamp("2022-07-01", tz="UTC"), 4.0) == (0, 4, 8, 12, 16, 20)
    assert decision_hours_utc(pd.Timestamp("2022-07-01 02:30", tz="UTC"), 6.0) == (2, 8, 14, 20)
    assert decision_hours_utc(pd.Timestamp("2022-07-01", tz="UTC"), 5.0) == tuple(range(24))  # 5 and 24 coprime
    assert decision_hours_utc(pd.Timestamp("2022-07-01", tz="UTC"), 1.5) == tuple(h for h in range(24) if h % 3 != 2)
    with pytest.raises(ValueError, match="positive"):
        decision_hours_utc(pd.Timestamp("2022-07-01", tz="UTC"), 0.0)


def test_interactive_demand_is_planned_at_its_low_quantile_with_the_autoscaler():
    """With the autoscaler, web (interactive) demand is planned at INTERACTIVE_PLAN_QUANTILE of
    its forecast, batch at its point forecast; the forecasters are trained for the loop's hours."""
    import pandas as pd

    from coolshift.control.evaluation import _coolshift_policy
    from coolshift.models.forecast import WorkloadForecaster, forecast_quantile
    from coolshift.control.receding import INTERACTIVE_PLAN_QUANTILE, forecast_columns

    site = load_site(SMALL_SITE)
    data = load_site_data(site, "2022-05-01", "2022-06-16")
    pol, _ = _coolshift_policy(site, object(), data.loc["2022-06-15":], "model", 4.0, None, 0, demand_headroom=False)
    assert pol.forecast_provider.quantiles == {"web_units_per_h": INTERACTIVE_PLAN_QUANTILE}
    assert pol.forecast_provider.issue_hours == (0, 4, 8, 12, 16, 20)
    pol, _ = _coolshift_policy(site, object(), data, "model", 4.0, None, 0, demand_headroom=True)
    assert pol.forecast_provider.quantiles == {}  # q90 headroom instead

    issue = pd.Timestamp("2022-06-15 04:00", tz="UTC")
    history, horizon = data.loc[: issue - pd.Timedelta("1ns")], data.loc[issue:].iloc[:96]
    fitted = {}
    fc, used = forecast_columns(history, horizon, fitted, demand_headroom=False, issue_hours=(0, 4),
                                quantiles={"web_units_per_h": 0.25})
    point, _ = forecast_columns(history, horizon, demand_headroom=False, issue_hours=(0, 4))
    assert used["web_units_per_h"] == "WorkloadForecaster q0.25" and used["batch_units_per_h"] == "WorkloadForecaster"
    assert set(fitted["web_units_per_h"][1].regressor_.issue_hours_) == {0.0, 4.0}
    hourly = history["web_units_per_h"].resample("1h").mean()
    f = WorkloadForecaster(name="web_units_per_h", issue_hours=(0, 4)).fit(hourly)
    pred = f.predict_day_ahead(hourly, issue, pd.date_range(issue, periods=24, freq="h"))
    want = forecast_quantile(pred, "web_units_per_h", 0.25).reindex(horizon.index.floor("1h")).to_numpy()
    np.testing.assert_allclose(fc["web_units_per_h"].to_numpy(), np.clip(want, 0, None), rtol=1e-9)
    assert (fc["web_units_per_h"] < point["web_units_per_h"]).mean() > 0.9  # q25 below the mean
    np.testing.assert_allclose(fc["batch_units_per_h"], point["batch_units_per_h"])
    rec = evaluate_policies(site, data.loc["2022-06-15":], ["static"], forecast_mode="model")
    assert rec["interactive_plan_quantile"] == INTERACTIVE_PLAN_QUANTILE
    assert evaluate_policies(site, data.loc["2022-06-15":], ["static"],
                             forecast_mode="perfect")["interactive_plan_quantile"] is None


def test_forecasters_fitted_on_little_history_are_refitted_when_it_doubles():
    """15 days of history at the first fit: refitted after 15 more days, not after the 30-day refit."""
    import pandas as pd

    from coolshift.control.receding import forecast_columns

    site = load_site(SMALL_SITE)
    data = load_site_data(site, "2022-01-01", "2022-03-05")
    fitted, day = {}, pd.Timedelta(days=1)
    first = pd.Timestamp("2022-01-16", tz="UTC")

    def at(t):
        forecast_columns(data.loc[: t - pd.Timedelta("1ns")], data.loc[t:].iloc[:8], fitted, pd.Timedelta(days=30),
                         demand_headroom=False)
        return fitted["gco2_per_kwh"][0]

    assert at(first) == first
    assert at(first + 14 * day) == first  # 29 days of history: the 15-day fit is kept
    assert at(first + 15 * day) == first + 15 * day  # history doubled: refitted
    assert at(first + 44 * day) == first + 15 * day  # 30 days of history at that fit: the 30-day refit rules
    assert at(first + 45 * day) == first + 45 * day
