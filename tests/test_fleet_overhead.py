"""Each fleet site's planner model learned from its own commissioning telemetry
(coolshift.models.overhead, coolshift.fleet.commissioning): the fit recovers a known overhead,
and on the bundled example it follows the site's plant physics closer than the hand-set ramp."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from conftest import REPO
from coolshift.fleet.commissioning import commissioning_telemetry
from coolshift.fleet.physics import simulate_site
from coolshift.fleet.usecase import load_inputs
from coolshift.models.overhead import SiteOverheadModel, hat_basis
from coolshift.optimizer.fleet import plan_metrics, solve_joint

EXAMPLE = REPO / "configs" / "fleets" / "us4_example.yaml"


def test_hats_sum_to_one_and_hold_beyond_the_knots():
    H = hat_basis([-5.0, 0.0, 2.5, 5.0, 20.0], [0.0, 5.0, 10.0])
    assert H.sum(axis=1) == pytest.approx(np.ones(5))
    assert H[0] == pytest.approx([1, 0, 0]) and H[2] == pytest.approx([0.5, 0.5, 0]) and H[4] == pytest.approx([0, 0, 1])


def test_the_fit_recovers_a_known_overhead_and_fixed_draw():
    rng = np.random.default_rng(3)
    wb, t = rng.uniform(0, 25, 2000), rng.uniform(5, 35, 2000)
    it = rng.uniform(100, 1000, 2000)
    frac = 0.05 + 0.01 * wb + 0.002 * t                   # linear in wet-bulb: the hats hold it exactly
    fixed = 40.0 + 1.5 * t
    m = SiteOverheadModel(n_knots=5, ridge=0.0).fit(it, (1 + frac) * it + fixed, wb, t)
    assert m.overhead_frac(wb, t) == pytest.approx(frac, abs=1e-6)
    assert m.fixed_kw(wb, t) == pytest.approx(fixed, abs=1e-3)
    assert m.train_mape_pct_ < 1e-6
    assert m.hinge_frac(wb) == pytest.approx(np.zeros(2000))
    # a convex upper slope above 600 kW is found, and never negative
    upper = np.where(wb > 12, 0.08, 0.02) * np.maximum(it - 600, 0)
    m2 = SiteOverheadModel(n_knots=5, ridge=0.0).fit(it, (1 + frac) * it + fixed + upper, wb, t, hinge_kw=600)
    assert np.all(m2.hinge_frac(wb) >= 0)
    pred = m2.predict_facility_kw(it, wb, t)
    assert np.mean(np.abs(pred - ((1 + frac) * it + fixed + upper)) / pred) < 0.002
    with pytest.raises(ValueError, match="too few"):
        SiteOverheadModel().fit(it[:10], it[:10], wb[:10], t[:10])


def _plan_error_vs_physics(source: str, tmp_path) -> tuple[float, float]:
    doc = yaml.safe_load(EXAMPLE.read_text().replace("../../data", str(REPO / "data")))
    for s in doc["sites"]:
        s["cooling_model"] = {"source": source}
    f = tmp_path / f"fleet_{source}.yaml"
    f.write_text(yaml.safe_dump(doc))
    inp = load_inputs(f)
    p = inp.problem
    plan = solve_joint(p)
    work, n = plan.work_units(), plan.active_servers()
    err, total = 0.0, 0.0
    for s in range(p.n_sites):
        it = p.idle_kw[s] * n[s] + p.kw_per_unit[s] * work[s]
        planned = it * (1 + p.overhead_frac[s]) + p.fixed_kw[s] + p.hinge_frac[s] * np.maximum(it - p.hinge_kw[s], 0.0)
        r = simulate_site(inp.fleet.sites[s], work[s], n[s], inp.data.temp_c[s], inp.data.wetbulb_c[s],
                          p.ci_g_per_kwh[s], p.price_usd_per_mwh[s])
        err += float(np.abs(planned - r["facility_kw"]).sum())
        total += float(r["facility_kw"].sum())
    return err / total, plan_metrics(plan)["facility_mwh"]


def test_learned_site_models_follow_the_plant_closer_than_the_ramp(tmp_path):
    learned, mwh_learned = _plan_error_vs_physics("learned", tmp_path)
    ramp, _ = _plan_error_vs_physics("ramp", tmp_path)
    assert learned < 0.6 * ramp
    assert learned < 0.02                                  # hourly facility power within 2 % (energy-weighted)
    assert mwh_learned > 0


def test_commissioning_telemetry_spans_the_load_range_with_meter_noise():
    inp = load_inputs(EXAMPLE)
    site = inp.fleet.sites[0]
    temp, wb = inp.data.weather_file[0]
    it, fac = commissioning_telemetry(site, temp, wb, seed=0)
    it2, fac2 = commissioning_telemetry(site, temp, wb, seed=0)
    assert np.array_equal(fac, fac2)                       # reproducible
    idle_kw = site.servers * site.min_active_frac * site.idle_w / 1000
    assert it.min() < 2 * idle_kw + 0.2 * site.design_it_kw and it.max() > 0.8 * site.design_it_kw
    assert np.all(fac > it)


def test_a_negative_price_under_the_cost_objective_keeps_the_lp_bounded():
    """The upper-load variable is bounded by the most IT power can exceed the hinge: at -50
    USD/MWh the cost objective still has an optimum, and it runs every server flat out."""
    import dataclasses

    import sys
    sys.path.insert(0, str(REPO / "tests"))
    from test_fleet import two_sites

    p = two_sites(0.0)
    hours = p.hours
    p = dataclasses.replace(p, price_usd_per_mwh=np.full((2, hours), -50.0), cost_weight=1.0, carbon_weight=0.0,
                            idle_kw=np.array([0.1, 0.1]), hinge_kw=np.array([5.0, 5.0]),
                            hinge_frac=np.full((2, hours), 0.2), fixed_kw=np.zeros((2, hours)))
    plan = solve_joint(p)
    assert np.isfinite(plan.objective)
    # paid to consume: all 100 servers on at each site in every hour (idle 0.1 kW each = 10 kW)
    assert plan.active_servers() == pytest.approx(np.full((2, hours), 100.0))
