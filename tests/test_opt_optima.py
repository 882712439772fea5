"""Hand-computable optima of the planning LP (tiny one-zone, one-pool sites).

Tiny site: 10 servers, idle 100 W, peak 300 W (linear curve), 1 unit/h per server,
no sleep power, instant boot; facility power = IT power unless a test says otherwise.
Serving w units/h on n servers draws n*0.1 + 0.2*w kW, so at full utilisation a unit
costs 0.3 kWh.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from coolshift.optimizer import InitialState, PlanOptions, plan_site
from synthetic import tiny_forecast, tiny_site, zero_coefficients

NO_MOVES = PlanOptions(move_penalty_kg_per_c=0.0)


def test_batch_job_goes_to_the_cleaner_hour():
    site = tiny_site()
    for gco2, clean in (([500.0, 100.0], 1), ([100.0, 500.0], 0)):
        fc = tiny_forecast(site, gco2, batch_units_per_h=[5.0, 0.0])
        plan = plan_site(site, zero_coefficients(site, fc.index), fc)
        assert plan.status == "optimal" and not plan.fallback
        served = plan.frame["served_units_per_h__pool__batch"].to_numpy()
        np.testing.assert_allclose(served[clean], 5.0, atol=1e-6)
        np.testing.assert_allclose(served[1 - clean], 0.0, atol=1e-6)
        # 5 servers fully used: 5 x 0.1 kW idle + 5 units x 0.2 kW = 1.5 kWh at 100 g/kWh
        np.testing.assert_allclose(plan.frame["active_servers__pool"].iloc[clean], 5.0, atol=1e-6)
        np.testing.assert_allclose(plan.totals["tco2"] * 1000, 1.5 * 100 / 1000, rtol=1e-6)


def test_binding_inlet_limit_caps_the_setpoint_and_prices_it():
    # inlet = 3 + setpoint; cooling falls 2 kW per degC of setpoint; inlet_max 27 -> setpoint <= 24
    site = tiny_site(classes=[{"name": "web", "kind": "interactive", "share": 1.0}])
    fc = tiny_forecast(site, [500.0, 500.0], web_units_per_h=2.0)
    co = zero_coefficients(site, fc.index, inlet_const_c=3.0, cooling_const_kw=60.0, cooling_per_supply_c=-2.0)
    plan = plan_site(site, co, fc, options=NO_MOVES)
    np.testing.assert_allclose(plan.frame["supply_setpoint_c__hall"], 24.0, atol=1e-6)
    np.testing.assert_allclose(plan.frame["inlet_temp_c__hall"], 27.0, atol=1e-6)
    sh = plan.shadow_prices.set_index("family")
    # one more degC of inlet limit: 2 kW less cooling for 1 h at 500 g/kWh = 1 kg, in each of 2 steps
    assert sh.loc["inlet_limit", "value"] == pytest.approx(-2.0, rel=1e-5)
    assert sh.loc["inlet_limit", "binding_steps"] == 2


def test_redundancy_forces_minimum_servers_on_and_prices_it():
    site = tiny_site(classes=[{"name": "web", "kind": "interactive", "share": 1.0}], min_active_servers=4)
    fc = tiny_forecast(site, [500.0, 300.0], web_units_per_h=1.0)
    plan = plan_site(site, zero_coefficients(site, fc.index), fc)
    np.testing.assert_allclose(plan.frame["active_servers__pool"], 4.0, atol=1e-6)
    sh = plan.shadow_prices.set_index("family")
    # one more server: 0.1 kW idle for 1 h at 500 then 300 g/kWh = 0.05 + 0.03 kg
    assert sh.loc["redundancy", "value"] == pytest.approx(0.08, rel=1e-5)
    # without the floor one server suffices
    plan0 = plan_site(tiny_site(classes=[{"name": "web", "kind": "interactive", "share": 1.0}]),
                      zero_coefficients(site, fc.index), fc)
    np.testing.assert_allclose(plan0.frame["active_servers__pool"], 1.0, atol=1e-6)


def test_impossible_deadline_is_diagnosed_and_falls_back():
    site = tiny_site()
    fc = tiny_forecast(site, [300.0, 300.0], batch_units_per_h=0.0)
    state = InitialState.from_site(site)
    state = InitialState(
        state.supply_setpoint_c, state.chw_setpoint_c, state.active_servers,
        backlog_units={"batch": 100.0}, backlog_deadline_h={"batch": 1.0},
    )  # 100 units due within 1 h; the pool serves at most 10 units/h
    plan = plan_site(site, zero_coefficients(site, fc.index), fc, state)
    assert plan.fallback and plan.status == "infeasible"
    assert plan.diagnosis.families[0] == "batch_deadline"
    row = plan.diagnosis.conflicts.iloc[0]
    assert (row.component, row.first_step, row.last_step) == ("batch", 0, 1)
    # overdue backlog: 100 - 10 = 90 units after step 0, 80 after step 1
    assert row.violation == pytest.approx(170.0, rel=1e-5)
    assert "batch_deadline (batch) at steps 0-1" in plan.reason
    assert plan.frame["facility_power_kw"].notna().all()  # the fallback is a full plan


def test_deadline_shadow_price_matches_a_longer_deadline():
    # 6 units arrive in hour 0; hours 0-1 are dirty, 2-3 clean; a deadline of 3 h reaches hour 2
    cls = lambda h: [{"name": "batch", "kind": "batch", "share": 1.0, "deadline_h": h}]  # noqa: E731
    gco2 = [500.0, 500.0, 100.0, 100.0]
    kw = {"batch_units_per_h": [6.0, 0.0, 0.0, 0.0]}
    site1, site2 = tiny_site(classes=cls(1), horizon_h=4), tiny_site(classes=cls(2), horizon_h=4)
    fc = tiny_forecast(site1, gco2, **kw)
    p1 = plan_site(site1, zero_coefficients(site1, fc.index), fc)
    p2 = plan_site(site2, zero_coefficients(site2, fc.index), fc)
    # one hour more deadline is not enough to reach the clean hours: no saving, zero price
    assert p2.totals["tco2"] == pytest.approx(p1.totals["tco2"], rel=1e-9)
    assert "batch_deadline" not in set(p1.shadow_prices["family"])
    site3 = tiny_site(classes=cls(3), horizon_h=4)
    p3 = plan_site(site3, zero_coefficients(site3, fc.index), fc)
    sh2 = p2.shadow_prices.set_index("family")
    # from 2 h to 3 h: 6 units x 0.3 kWh move from 500 to 100 g/kWh = -0.72 kg per hour of deadline
    assert (p3.totals["tco2"] - p2.totals["tco2"]) * 1000 == pytest.approx(-0.72, rel=1e-5)
    assert sh2.loc["batch_deadline", "value"] == pytest.approx(-0.72, rel=1e-5)


@pytest.mark.parametrize(
    "edge_gco2, latency_ms, offloads",
    [
        (100.0, 30.0, True),  # 0.3 kWh x 100 + 0.1 kWh x 400 = 70 g < 120 g at the site
        (300.0, 30.0, False),  # 90 + 40 = 130 g > 120 g: stay
        (100.0, 500.0, False),  # clean, but beyond the class's 200 ms latency limit
    ],
)
def test_edge_offload_only_when_edge_plus_transfer_beats_the_site(edge_gco2, latency_ms, offloads):
    site = tiny_site(
        classes=[{"name": "web", "kind": "interactive", "share": 1.0, "offloadable": True,
                  "max_latency_ms": 200.0, "data_gb_per_unit": 1.0}],
        edges=[{"name": "edge", "latency_ms": latency_ms}],
    )
    fc = tiny_forecast(site, [400.0, 400.0], web_units_per_h=5.0, gco2_per_kwh__edge=edge_gco2)
    plan = plan_site(site, zero_coefficients(site, fc.index), fc)
    off = plan.frame["offload_units_per_h__edge__web"].to_numpy().sum()
    served = plan.frame["served_units_per_h__pool__web"].to_numpy()
    if offloads:
        np.testing.assert_allclose(off, 10.0, atol=1e-6)
        np.testing.assert_allclose(served, 0.0, atol=1e-6)
        np.testing.assert_allclose(plan.totals["tco2"] * 1000, 2 * 5 * 0.070, rtol=1e-5)
    else:
        np.testing.assert_allclose(off, 0.0, atol=1e-6)
        np.testing.assert_allclose(served, 5.0, atol=1e-6)
        np.testing.assert_allclose(plan.totals["tco2"] * 1000, 2 * 5 * 0.120, rtol=1e-5)


def test_learned_model_is_not_extrapolated():
    site = tiny_site(classes=[{"name": "web", "kind": "interactive", "share": 1.0}])
    fc = tiny_forecast(site, [500.0, 500.0], web_units_per_h=2.0)
    # cooling = 40 - 2 x setpoint reaches 0 at 20 degC: a linear fit would "predict" negative
    # cooling above that; the floor keeps predicted cooling >= 0, so no gain beyond 20 degC
    co = zero_coefficients(site, fc.index, cooling_const_kw=40.0, cooling_per_supply_c=-2.0)
    plan = plan_site(site, co, fc, options=NO_MOVES)
    assert plan.frame["cooling_power_kw"].min() >= -1e-9
    # IT only: 2 servers x 0.1 kW + 2 units x 0.2 kW = 0.6 kW, 2 h at 500 g/kWh
    assert plan.totals["tco2"] * 1000 == pytest.approx(0.6 * 2 * 0.5, rel=1e-6)
    # setpoints kept inside the range the model was trained on (18-22 degC here)
    co2 = zero_coefficients(site, fc.index, inlet_const_c=3.0, cooling_const_kw=60.0, cooling_per_supply_c=-2.0)
    env = {"supply_setpoint_c__hall": (18.0, 22.0)}
    plan2 = plan_site(site, co2, fc, options=PlanOptions(move_penalty_kg_per_c=0.0, decision_envelope=env))
    np.testing.assert_allclose(plan2.frame["supply_setpoint_c__hall"], 22.0, atol=1e-6)  # not the 24 the inlet allows


def test_setpoints_hold_where_the_forecast_leaves_the_model_envelope():
    site = tiny_site(classes=[{"name": "web", "kind": "interactive", "share": 1.0}], horizon_h=3)
    fc = tiny_forecast(site, [500.0, 500.0, 500.0], web_units_per_h=2.0)
    co = zero_coefficients(site, fc.index, inlet_const_c=3.0, cooling_const_kw=60.0, cooling_per_supply_c=-2.0)
    co = type(co)(**{**co.__dict__, "in_envelope": pd.Series([True, False, True], index=fc.index)})
    state = InitialState({"hall": 20.0}, 10.0, {"pool": 10.0})
    # the zone may ramp 20 degC a step (tiny_site); the inlet caps the setpoint at 24
    plan = plan_site(site, co, fc, state, options=NO_MOVES)
    np.testing.assert_allclose(plan.frame["supply_setpoint_c__hall"], [24.0, 24.0, 24.0], atol=1e-6)
    co0 = type(co)(**{**co.__dict__, "in_envelope": pd.Series([False, True, True], index=fc.index)})
    plan0 = plan_site(site, co0, fc, state, options=NO_MOVES)
    # step 0 is outside: setpoint and chilled water stay where they are, then move
    np.testing.assert_allclose(plan0.frame["supply_setpoint_c__hall"], [20.0, 24.0, 24.0], atol=1e-6)
    assert plan0.frame["chw_setpoint_c"].iloc[0] == pytest.approx(10.0)


def test_zone_it_kept_inside_the_model_envelope_when_asked():
    site = tiny_site(classes=[{"name": "web", "kind": "interactive", "share": 1.0}])
    fc = tiny_forecast(site, [500.0, 500.0], web_units_per_h=2.0)  # needs 0.6 kW of IT
    env = {"zone_it_power_kw__hall": (1.0, 2.0)}
    opts = PlanOptions(decision_envelope=env, envelope_zone_it=True)
    plan = plan_site(site, zero_coefficients(site, fc.index), fc, options=opts)
    # the 1.0 kW floor keeps servers on: n x 0.1 kW idle + 2 units x 0.2 kW = 1.0 kW -> n = 6
    np.testing.assert_allclose(plan.frame["zone_it_power_kw__hall"], 1.0, atol=1e-6)
    np.testing.assert_allclose(plan.frame["active_servers__pool"], 6.0, atol=1e-6)
    free = plan_site(site, zero_coefficients(site, fc.index), fc, options=PlanOptions(decision_envelope=env))
    np.testing.assert_allclose(free.frame["zone_it_power_kw__hall"], 0.6, atol=1e-6)


def test_queued_chunks_are_each_served_by_their_own_due_time():
    """Queue: 2 units due in 1 h, 3 units due in 4 h; intensity 300, 500, 500, 100 g/kWh.

    The first chunk must run in step 0; the second waits for the clean last hour. Planning
    the whole queue against the earliest due time would force all 5 units into step 0.
    """
    site = tiny_site(horizon_h=4)
    fc = tiny_forecast(site, [300.0, 500.0, 500.0, 100.0], batch_units_per_h=0.0)
    base = InitialState.from_site(site)
    chunks = InitialState(base.supply_setpoint_c, base.chw_setpoint_c, base.active_servers,
                          backlog_due={"batch": [(1.0, 2.0), (4.0, 3.0)]})
    plan = plan_site(site, zero_coefficients(site, fc.index), fc, chunks)
    served = plan.frame["served_units_per_h__pool__batch"].to_numpy()
    np.testing.assert_allclose(served, [2.0, 0.0, 0.0, 3.0], atol=1e-6)
    # 0.3 kWh per unit at full load: 2 x 0.3 x 300 g + 3 x 0.3 x 100 g = 0.27 kg
    assert plan.totals["tco2"] * 1000 == pytest.approx(0.27, rel=1e-6)
    one = InitialState(base.supply_setpoint_c, base.chw_setpoint_c, base.active_servers,
                       backlog_units={"batch": 5.0}, backlog_deadline_h={"batch": 1.0})
    early = plan_site(site, zero_coefficients(site, fc.index), fc, one)
    np.testing.assert_allclose(early.frame["served_units_per_h__pool__batch"], [5.0, 0.0, 0.0, 0.0], atol=1e-6)
    late = InitialState(base.supply_setpoint_c, base.chw_setpoint_c, base.active_servers,
                        backlog_units={"batch": 5.0}, backlog_deadline_h={"batch": 4.0})
    np.testing.assert_allclose(plan_site(site, zero_coefficients(site, fc.index), fc, late)
                               .frame["served_units_per_h__pool__batch"], [0.0, 0.0, 0.0, 5.0], atol=1e-6)
    with pytest.raises(ValueError, match=r"backlog_due\[batch\]\[0\]"):
        InitialState(base.supply_setpoint_c, base.chw_setpoint_c, base.active_servers,
                     backlog_due={"batch": [(1.0, -2.0)]}).validate(site)


def test_observed_queue_is_passed_chunk_by_chunk():
    """The receding-horizon policy hands each queued chunk to the plan with its own due time."""
    from types import SimpleNamespace

    from coolshift.control.receding import initial_state_from_observation

    site = tiny_site(horizon_h=4)
    obs = SimpleNamespace(
        names=SimpleNamespace(batch=["batch"], zones=["hall"], pools=["pool"]),
        state=SimpleNamespace(supply_c=np.array([20.0]), chw_c=10.0, active_servers=np.array([4.0])),
        step=10, step_h=1.0,
        # chunks due at the end of steps 9 (overdue), 10 and 13: 1, 2 and 3 units
        pending=lambda b: (np.array([9, 10, 13]), np.array([1.0, 2.0, 3.0])),
    )
    st = initial_state_from_observation(site, obs)
    assert st.backlog_due == {"batch": [(1.0, 1.0), (1.0, 2.0), (4.0, 3.0)]}
    fc = tiny_forecast(site, [300.0, 500.0, 500.0, 100.0], batch_units_per_h=0.0)
    plan = plan_site(site, zero_coefficients(site, fc.index), fc, st)
    np.testing.assert_allclose(plan.frame["served_units_per_h__pool__batch"], [3.0, 0.0, 0.0, 3.0], atol=1e-6)


def _piece(index, zones, const, per_supply):
    from coolshift.coefficients import CoolingPiece

    z = pd.DataFrame(0.0, index=index, columns=zones)
    return CoolingPiece(const_kw=pd.Series(const, index=index), per_it_kw=z, per_supply_c=z + per_supply,
                        per_chw_c=pd.Series(0.0, index=index))


def test_piecewise_linear_cooling_stops_at_the_kink():
    """Main piece 60 - 2 sp (falls as supply air warms), extra piece -20 + 2 sp (rises: e.g.
    fans speeding up); cooling = max of both is least at their crossing, sp = 20 degC, 20 kW.
    With the main piece alone the inlet limit stops it: sp = 24, 12 kW."""
    site = tiny_site(classes=[{"name": "web", "kind": "interactive", "share": 1.0}])
    fc = tiny_forecast(site, [500.0, 500.0], web_units_per_h=2.0)
    co = zero_coefficients(site, fc.index, inlet_const_c=3.0, cooling_const_kw=60.0, cooling_per_supply_c=-2.0)
    kinked = type(co)(**{**co.__dict__, "cooling_pieces": (_piece(fc.index, co.zones, -20.0, 2.0),)})
    plan = plan_site(site, kinked, fc, options=NO_MOVES)
    assert plan.status == "optimal"
    np.testing.assert_allclose(plan.frame["supply_setpoint_c__hall"], 20.0, atol=1e-6)
    np.testing.assert_allclose(plan.frame["cooling_power_kw"], 20.0, atol=1e-6)
    # 2 servers serve 2 units/h: 0.6 kW IT; 2 h x 20.6 kW x 0.5 kg/kWh
    assert plan.totals["tco2"] * 1000 == pytest.approx(20.6, rel=1e-6)
    assert plan.objective_kg == pytest.approx(plan.totals["tco2"] * 1000, rel=1e-5)
    flat = plan_site(site, co, fc, options=NO_MOVES)
    np.testing.assert_allclose(flat.frame["supply_setpoint_c__hall"], 24.0, atol=1e-6)
    assert flat.totals["tco2"] * 1000 == pytest.approx(12.6, rel=1e-6)
    # a piece that never binds (below the main one everywhere in range) changes nothing
    low = type(co)(**{**co.__dict__, "cooling_pieces": (_piece(fc.index, co.zones, -100.0, 0.0),)})
    assert plan_site(site, low, fc, options=NO_MOVES).totals["tco2"] == pytest.approx(flat.totals["tco2"], rel=1e-9)


def test_decision_envelope_from_the_coefficients():
    """The coefficients' own training range caps the setpoint (22 degC instead of the inlet limit's 24)."""
    site = tiny_site(classes=[{"name": "web", "kind": "interactive", "share": 1.0}])
    fc = tiny_forecast(site, [500.0, 500.0], web_units_per_h=2.0)
    co = zero_coefficients(site, fc.index, inlet_const_c=3.0, cooling_const_kw=60.0, cooling_per_supply_c=-2.0)
    env = type(co)(**{**co.__dict__, "decision_envelope": {"supply_setpoint_c__hall": (15.0, 22.0)}})
    plan = plan_site(site, env, fc, options=NO_MOVES)
    np.testing.assert_allclose(plan.frame["supply_setpoint_c__hall"], 22.0, atol=1e-6)


def test_chilled_water_stays_below_the_supply_by_the_coil_approach():
    # cooling falls 3 kW per degC of chilled water and rises 1 kW per degC of supply air:
    # without the coil rule the LP would run supply at its minimum (16) and chilled water
    # at its maximum (18), a state no CRAH coil can deliver.
    site = tiny_site(classes=[{"name": "web", "kind": "interactive", "share": 1.0}])
    fc = tiny_forecast(site, [500.0, 500.0], web_units_per_h=2.0)
    co = zero_coefficients(site, fc.index, inlet_const_c=3.0, cooling_const_kw=60.0, cooling_per_chw_c=-3.0,
                           cooling_per_supply_c=1.0)
    plan = plan_site(site, co, fc, options=NO_MOVES)
    gap = site.cooling.crah_supply_approach_c + 1.0  # coil approach + the 1 K margin
    sp = plan.frame["supply_setpoint_c__hall"]
    chw = plan.frame["chw_setpoint_c"]
    assert (chw <= sp - gap + 1e-6).all()
    # and it binds: warmer chilled water pays, so it sits exactly at the gap below the supply
    np.testing.assert_allclose(chw, np.minimum(sp - gap, site.cooling.chiller.chw_setpoint_max_c), atol=1e-6)
