"""The Gymnasium environment (coolshift.control.gym_env) and the simulator's stepping API it runs on."""

import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import coolshift.control  # noqa: F401  (registers the environments)
from coolshift.config import load_site
from coolshift.control.gym_env import (CoolshiftEnv, best_practice_controller, lp_controller, random_controller,
                                       run_episode)
from coolshift.control.evaluation import run_policy
from coolshift.io import load_site_data
from coolshift.actions import Actions
from coolshift.simulations.engine import Stepper, simulate
from coolshift.control.policies import FixedPolicy, get_policy

from conftest import SMALL_SITE

START = "2022-07-01T00:00:00Z"


@pytest.fixture(scope="module")
def sj_env():
    """San Jose, two days of July 2022 (episodes are reset by each test)."""
    return gymnasium.make("coolshift/SanJose-v0", start=START, days=2)


def _rows(a: Actions, sl: slice) -> Actions:
    return Actions(a.supply_c[sl], a.chw_c[sl], a.active_servers[sl], a.release_units_per_h[sl],
                   a.offload_units_per_h[sl])


# -- the stepping API ------------------------------------------------------------------------
def test_stepper_equals_simulate():
    """A policy stepped at its own interval gives simulate's result exactly; its actions applied
    one step at a time give it within float noise; late work counted per step sums to the summary's."""
    site = load_site(SMALL_SITE)
    data = load_site_data(site, START, "2022-07-03")
    bp = get_policy("best_practice", interval_h=6.0)
    ref = simulate(site, data, bp)
    s = Stepper(site, data)
    while not s.done:
        s.step(bp.decide(s.observation(24)))
    got = s.result(bp.name)
    assert got.summary == ref.summary

    # hold batch work for 15 h (deadline 12 h), then release everything: late work
    acts = ref.actions
    acts.release_units_per_h[:60] = 0.0
    acts.release_units_per_h[60:] = 1e4
    ref = simulate(site, data, FixedPolicy(acts))
    assert ref.summary["late_work_units"] > 100.0
    s = Stepper(site, data)
    kg = late = 0.0
    while not s.done:
        out = s.step(_rows(acts, slice(s.t, s.t + 1)))
        kg += float(out["kgco2_location"].sum())
        late += float(out["late_units"].sum())
    got = s.result("fixed")
    for k, v in ref.summary.items():
        if isinstance(v, float):
            assert got.summary[k] == pytest.approx(v, rel=1e-9, abs=1e-9), k
    assert kg == pytest.approx(ref.summary["tco2_location"] * 1000.0, rel=1e-9)
    assert late == pytest.approx(ref.summary["late_work_units"], rel=1e-9)


# -- the environment -------------------------------------------------------------------------
@pytest.mark.parametrize("env_id", ["coolshift/SanJose-v0", "coolshift/Philadelphia-v0"])
def test_env_checker(env_id):
    env = gymnasium.make(env_id, start=START, days=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    gym_warnings = [str(w.message) for w in caught if "gymnasium" in str(w.filename)]
    assert gym_warnings == []


def test_best_practice_through_env_matches_simulator(sj_env):
    """The rule through the env (its actions encoded as action vectors) = the simulator's own run."""
    core = sj_env.unwrapped
    ep = run_episode(sj_env, best_practice_controller(sj_env))
    ref = simulate(core.site, core.data, get_policy("best_practice"))
    assert ep["steps"] == len(core.data)
    assert ep["kgco2"] == pytest.approx(ref.summary["tco2_location"] * 1000.0, rel=0.005)
    for k in ("thermal_violation_minutes", "sla_violations", "late_work_units"):
        assert ep["result"].summary[k] == ref.summary[k] == 0


def test_reward_is_minus_kgco2_without_violations(sj_env):
    controller = best_practice_controller(sj_env)
    obs, _ = sj_env.reset(seed=0)
    kg = 0.0
    for _ in range(48):
        obs, reward, term, trunc, info = sj_env.step(controller(obs))
        assert info["thermal_excess_k_h"] == info["unserved_units"] == info["late_units"] == 0.0
        assert info["kgco2"] > 0
        assert reward == -info["kgco2"]
        kg += info["kgco2"]
    res = sj_env.unwrapped.result()
    assert kg == pytest.approx(res.timeseries["kgco2_location"].sum(), rel=1e-12)


def test_overheating_action_is_penalised(sj_env):
    """Warmest supply and chilled water with every server on: inlets pass 27 degC and cost a penalty;
    the same with 20 degC supply air and 10 degC chilled water costs none."""
    core = sj_env.unwrapped
    L = core.layout
    hot = np.ones(L.size)  # supply and chw at their maxima, all servers on, release all
    cold = hot.copy()
    zones, ch = core.site.zones, core.site.cooling.chiller
    cold[L.supply] = [2 * (20.0 - z.supply_setpoint_min_c) / (z.supply_setpoint_max_c - z.supply_setpoint_min_c) - 1
                      for z in zones]
    cold[L.chw] = 2 * (10.0 - ch.chw_setpoint_min_c) / (ch.chw_setpoint_max_c - ch.chw_setpoint_min_c) - 1
    sums = {}
    for name, action in (("hot", hot), ("cold", cold)):
        sj_env.reset(seed=0)
        pen = kg = reward = 0.0
        for _ in range(24):
            _, r, _, _, info = sj_env.step(action)
            pen += info["penalty_thermal_kgco2e"]
            kg += info["kgco2"]
            reward += r
            assert r == pytest.approx(-(info["kgco2"] + info["penalty_thermal_kgco2e"]
                                        + info["penalty_unserved_kgco2e"] + info["penalty_late_kgco2e"]))
        sums[name] = (pen, kg, reward, core.result().summary["max_inlet_c"])
    pen, kg, reward, max_inlet = sums["hot"]
    assert max_inlet > core.site.zones[0].inlet_max_c
    assert pen > 0 and reward < -kg - pen + 1e-6
    assert sums["cold"][0] == 0.0


def test_encode_decode_round_trip(sj_env):
    """A best-practice step encoded as an action vector decodes back to the same actions."""
    core = sj_env.unwrapped
    sj_env.reset(seed=0)
    for _ in range(5):  # away from the initial state: setpoints ramping, a backlog may exist
        sj_env.step(best_practice_controller(sj_env)(None))
    acts = get_policy("best_practice").decide(core.sim_observation(4))
    back = core.decode_action(core.encode_action(acts, 0))
    assert np.allclose(back.supply_c, acts.supply_c[:1], rtol=1e-12, atol=1e-12)
    assert np.allclose(back.chw_c, acts.chw_c[:1], rtol=1e-12, atol=1e-12)
    assert np.array_equal(back.active_servers, acts.active_servers[:1])
    assert np.allclose(back.release_units_per_h, acts.release_units_per_h[:1], rtol=1e-12, atol=1e-12)


def test_random_controller_is_reproducible(sj_env):
    a = run_episode(sj_env, random_controller(sj_env, seed=3), seed=0)
    b = run_episode(sj_env, random_controller(sj_env, seed=3), seed=0)
    c = run_episode(sj_env, random_controller(sj_env, seed=4), seed=0)
    assert a["kgco2"] == b["kgco2"] and a["reward"] == b["reward"]
    assert c["kgco2"] != a["kgco2"]


def test_decision_interval_and_noisy_forecast():
    env = CoolshiftEnv("sanjose_colo_2mw", start=START, days=1, decision_minutes=60, horizon_steps=8,
                       forecast="noise10")
    obs1, _ = env.reset(seed=5)
    obs2, _ = env.reset(seed=5)
    assert np.array_equal(obs1["gco2_per_kwh_forecast"], obs2["gco2_per_kwh_forecast"])
    actual = env.data["gco2_per_kwh"].to_numpy()[:8].astype(np.float32)
    assert not np.allclose(obs1["gco2_per_kwh_forecast"], actual)
    ep = run_episode(env, best_practice_controller(env), seed=5)
    assert ep["steps"] == 24 and env.sim_step == 96
    with pytest.raises(ValueError, match="multiple"):
        CoolshiftEnv("sanjose_colo_2mw", start=START, days=1, decision_minutes=20)


def test_lp_through_env_matches_simulator(small_site_model):
    """Coolshift's LP acting through the env = the same LP run by ``evaluate`` on the simulator."""
    site, model = small_site_model
    env = CoolshiftEnv(site, start=START, days=1)
    ep = run_episode(env, lp_controller(env, model))
    ref = run_policy("coolshift", site, env.data, model)["result"]
    assert ep["kgco2"] == pytest.approx(ref.summary["tco2_location"] * 1000.0, rel=0.005)
    assert ep["thermal_excess_k_h"] == 0.0 and ep["unserved_units"] == 0.0
    assert ep["late_units"] == 0.0
