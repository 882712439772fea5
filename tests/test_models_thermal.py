"""Learned plant model: coefficient recovery, exact mapping to PlantCoefficients, envelope, time blocks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from coolshift.coefficients import PlantCoefficients
from coolshift.models.thermal import (
    LinearPlantModel, ReferencePlantModel, plant_metrics, time_block_split, wetbulb_stull_c,
)
from coolshift.schema import col

ZONES = ["hall_a", "hall_b"]
# The known plants below have per-zone terms and coefficients that vary with the outside
# dry-bulb, so they are fitted with per-zone coefficients and the dry-bulb term (12 hats).
PER_ZONE_DRYBULB = dict(shared_it_cooling=False, shared_supply_cooling=False, drybulb_term=True, n_knots=12)


def _inputs(n: int, seed: int = 0, t_range=(0.0, 35.0)) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2022-01-01", periods=n, freq="15min", tz="UTC")
    f = pd.DataFrame(index=idx)
    f["outside_temp_c"] = rng.uniform(*t_range, n)
    f["outside_rh_pct"] = rng.uniform(20, 90, n)
    f["chw_setpoint_c"] = rng.uniform(8, 16, n)
    for z in ZONES:
        f[col("zone_it_power_kw", z)] = rng.uniform(300, 900, n)
        f[col("supply_setpoint_c", z)] = rng.uniform(18, 25, n)
    f[col("active_servers", "p1")] = rng.integers(500, 1500, n)
    return f


# A known plant, linear in the decisions, whose coefficients are linear in outside dry-bulb T.
TRUE = {
    "c0": 40.0, "cT": 2.0,
    "a": {"hall_a": (0.05, 0.004), "hall_b": (0.08, 0.003)},  # kW cooling per kW IT: a0 + aT*T
    "b": {"hall_a": -3.0, "hall_b": -2.0},  # kW per degC supply setpoint
    "d": (-4.0, -0.1),  # kW per degC chilled water: d0 + dT*T
    "i0": {"hall_a": 0.5, "hall_b": 1.0}, "isp": {"hall_a": 1.0, "hall_b": 0.95},
    "iit": {"hall_a": 0.0005, "hall_b": 0.001},
    "f0": 30.0, "f1": 1.06,
}


def _known_plant(f: pd.DataFrame, noise: float = 0.0, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    T = f["outside_temp_c"]
    cool = TRUE["c0"] + TRUE["cT"] * T + (TRUE["d"][0] + TRUE["d"][1] * T) * f["chw_setpoint_c"]
    it_total = 0.0
    for z in ZONES:
        a0, aT = TRUE["a"][z]
        it = f[col("zone_it_power_kw", z)]
        cool = cool + (a0 + aT * T) * it + TRUE["b"][z] * f[col("supply_setpoint_c", z)]
        f[col("inlet_temp_c", z)] = (TRUE["i0"][z] + TRUE["isp"][z] * f[col("supply_setpoint_c", z)]
                                    + TRUE["iit"][z] * it)
        it_total = it_total + it
    f["cooling_power_kw"] = cool + noise * rng.standard_normal(len(f))
    f["it_power_kw"] = it_total
    f["facility_power_kw"] = TRUE["f0"] + TRUE["f1"] * it_total + f["cooling_power_kw"]
    return f


def test_known_linear_plant_recovers_its_coefficients():
    tel = _known_plant(_inputs(3000))
    m = LinearPlantModel(n_knots=0, it_fan_frac_per_c=0.0, shared_it_cooling=False, shared_supply_cooling=False).fit(tel, zones=ZONES)
    fc = pd.DataFrame({"temp_c": [0.0, 10.0, 30.0], "rh_pct": [50.0, 50.0, 50.0]},
                      index=pd.date_range("2023-01-01", periods=3, freq="h", tz="UTC"))
    pc = m.coefficients(None, fc)
    T = fc["temp_c"].to_numpy()
    np.testing.assert_allclose(pc.cooling_const_kw, TRUE["c0"] + TRUE["cT"] * T, rtol=1e-4, atol=1e-3)
    for z in ZONES:
        a0, aT = TRUE["a"][z]
        np.testing.assert_allclose(pc.cooling_per_it_kw[z], a0 + aT * T, atol=1e-6)
        np.testing.assert_allclose(pc.cooling_per_supply_c[z], TRUE["b"][z], atol=1e-4)
        np.testing.assert_allclose(pc.inlet_per_supply_c[z], TRUE["isp"][z], atol=1e-6)
        np.testing.assert_allclose(pc.inlet_per_it_kw[z], TRUE["iit"][z], atol=1e-8)
        np.testing.assert_allclose(pc.inlet_const_c[z], TRUE["i0"][z], atol=1e-4)
    np.testing.assert_allclose(pc.cooling_per_chw_c, TRUE["d"][0] + TRUE["d"][1] * T, atol=1e-4)
    assert pc.facility_const_kw.iloc[0] == pytest.approx(TRUE["f0"], abs=1e-3)
    assert pc.facility_per_it_kw.iloc[0] == pytest.approx(TRUE["f1"], abs=1e-6)


def test_noisy_known_plant_recovers_coefficients_within_noise():
    tel = _known_plant(_inputs(4000, seed=3), noise=5.0)  # 5 kW sensor noise on ~200-500 kW
    m = LinearPlantModel(n_knots=0, it_fan_frac_per_c=0.0, shared_it_cooling=False, shared_supply_cooling=False).fit(tel, zones=ZONES)
    fc = pd.DataFrame({"temp_c": [20.0], "rh_pct": [50.0]}, index=pd.DatetimeIndex(["2023-06-01"], tz="UTC"))
    pc = m.coefficients(None, fc)
    assert pc.cooling_per_it_kw["hall_a"].iloc[0] == pytest.approx(0.05 + 0.004 * 20, abs=0.003)
    assert pc.cooling_per_chw_c.iloc[0] == pytest.approx(-4.0 - 0.1 * 20, abs=0.5)


def test_two_regimes_are_recovered_with_explicit_edges():
    f = _inputs(4000, seed=5)
    wb = wetbulb_stull_c(f["outside_temp_c"], f["outside_rh_pct"])
    edge = 12.0
    tel = _known_plant(f.copy())
    # mechanical regime above the edge: cooling per kW IT doubles, offset rises
    hot = wb > edge
    extra = 50.0 + sum(0.1 * tel[col("zone_it_power_kw", z)] for z in ZONES)
    tel.loc[hot, "cooling_power_kw"] += extra[hot]
    tel["facility_power_kw"] = TRUE["f0"] + TRUE["f1"] * tel["it_power_kw"] + tel["cooling_power_kw"]
    m = LinearPlantModel(regime_edges_c=[edge], n_knots=0, it_fan_frac_per_c=0.0, shared_it_cooling=False, shared_supply_cooling=False).fit(tel, zones=ZONES)
    assert list(m.regime_names_) == ["economiser", "mechanical"]
    fc = pd.DataFrame({"temp_c": [10.0, 30.0], "rh_pct": [50.0, 60.0]},
                      index=pd.date_range("2023-01-01", periods=2, freq="h", tz="UTC"))
    pc = m.coefficients(None, fc)
    T = fc["temp_c"].to_numpy()
    a0, aT = TRUE["a"]["hall_a"]
    np.testing.assert_allclose(pc.cooling_per_it_kw["hall_a"], a0 + aT * T + np.array([0.0, 0.1]), atol=1e-5)
    assert list(m.regime(fc)) == ["economiser", "mechanical"]


def test_predict_is_exactly_plant_coefficients_predict():
    tel = _known_plant(_inputs(2000, seed=7), noise=3.0)
    m = LinearPlantModel(**PER_ZONE_DRYBULB).fit(tel, zones=ZONES)  # hat basis and the fan prior
    test = _known_plant(_inputs(200, seed=8))
    pred = m.predict(test)
    pc = m.coefficients(None, test)
    assert isinstance(pc, PlantCoefficients)
    it = test[[col("zone_it_power_kw", z) for z in ZONES]].set_axis(ZONES, axis=1)
    sp = test[[col("supply_setpoint_c", z) for z in ZONES]].set_axis(ZONES, axis=1)
    ref = pc.predict(it, sp, test["chw_setpoint_c"])
    pd.testing.assert_frame_equal(pred[ref.columns], ref)
    assert (pc.it_fan_kw_per_c > 0).all().all()  # the fan prior reaches the optimiser
    np.testing.assert_allclose(pred["pue"], pred["facility_power_kw"] / pred["it_power_kw"])
    # and it is accurate on this plant (training noise 3 kW; the test rows are noise-free)
    assert np.abs(pred["cooling_power_kw"] - test["cooling_power_kw"]).mean() < 1.0
    assert np.abs(pred[[col("inlet_temp_c", z) for z in ZONES]].to_numpy()
                  - test[[col("inlet_temp_c", z) for z in ZONES]].to_numpy()).mean() < 0.01


def test_coefficients_vary_by_step_with_the_forecast():
    tel = _known_plant(_inputs(2000, seed=9))
    m = LinearPlantModel().fit(tel, zones=ZONES)
    fc = pd.DataFrame({"temp_c": np.linspace(2, 33, 8), "rh_pct": 50.0},
                      index=pd.date_range("2023-07-01", periods=8, freq="h", tz="UTC"))
    pc = m.coefficients(None, fc)
    assert pc.cooling_per_it_kw["hall_a"].is_monotonic_increasing
    # the truth (one shared IT coefficient: the mean of the halls') rises by 0.0035 x 31 = 0.11 kW/kW;
    # the hat functions are in wet-bulb, the truth linear in dry-bulb: 6 hats gave +0.092, 8 give +0.077
    true_rise = np.mean([TRUE["a"][z][1] for z in ZONES]) * (fc["temp_c"].iloc[-1] - fc["temp_c"].iloc[0])
    assert pc.cooling_per_it_kw["hall_a"].iloc[-1] > pc.cooling_per_it_kw["hall_a"].iloc[0] + 0.6 * true_rise


def test_in_envelope_flags_inputs_outside_training():
    tel = _known_plant(_inputs(2000, seed=11, t_range=(5.0, 25.0)))
    m = LinearPlantModel().fit(tel, zones=ZONES)
    assert m.in_envelope(tel).all()
    fc = pd.DataFrame({"temp_c": [15.0, 40.0, 15.0], "rh_pct": [50.0, 50.0, 50.0]},
                      index=pd.date_range("2023-01-01", periods=3, freq="h", tz="UTC"))
    assert list(m.in_envelope(fc)) == [True, False, True]
    assert list(m.coefficients(None, fc).in_envelope) == [True, False, True]
    odd = tel.iloc[:3].copy()
    odd[col("supply_setpoint_c", "hall_b")] = [20.0, 35.0, 20.0]  # a decision never seen
    assert list(m.in_envelope(odd)) == [True, False, True]


def test_bad_input_names_the_column_and_row():
    tel = _known_plant(_inputs(500))
    with pytest.raises(ValueError, match="zone_it_power_kw__hall_b"):
        LinearPlantModel().fit(tel.drop(columns=[col("zone_it_power_kw", "hall_b")]), zones=ZONES)
    tel.iloc[17, tel.columns.get_loc("chw_setpoint_c")] = np.nan
    with pytest.raises(ValueError, match="chw_setpoint_c.*row 17"):
        LinearPlantModel().fit(tel, zones=ZONES)
    with pytest.raises(RuntimeError, match="not fitted"):
        LinearPlantModel().predict(tel)


def test_time_block_split_leaks_nothing():
    """A memoriser (nearest training timestamp) scores well on a shuffled split of a random
    walk and badly on a time block: the split must give the honest, bad score."""
    rng = np.random.default_rng(0)
    idx = pd.date_range("2022-01-01", periods=4000, freq="15min", tz="UTC")
    frame = pd.DataFrame({"y": np.cumsum(rng.standard_normal(4000))}, index=idx)
    train, test = time_block_split(frame, "2022-02-01", gap="1D")
    assert train.index.max() < test.index.min() - pd.Timedelta("1D") + pd.Timedelta("15min")
    assert train.index.intersection(test.index).empty

    def memoriser_mae(tr, te):
        pos = np.clip(np.searchsorted(tr.index.asi8, te.index.asi8), 0, len(tr) - 1)
        return float(np.mean(np.abs(tr["y"].to_numpy()[pos] - te["y"].to_numpy())))

    honest = memoriser_mae(train, test)
    shuffled = frame.sample(frac=1.0, random_state=0)
    n = len(train)
    leaky = memoriser_mae(shuffled.iloc[:n].sort_index(), shuffled.iloc[n:].sort_index())
    assert leaky < 1.0  # neighbours in time leak the answer
    assert honest > 5 * leaky


def test_reference_model_fits_a_nonlinear_plant_better():
    f = _inputs(3000, seed=13)
    tel = _known_plant(f)
    # a cube-law fan term, nonlinear in IT: the linear model cannot follow it exactly
    tel["cooling_power_kw"] += 300.0 + 150.0 * (tel[col("zone_it_power_kw", "hall_a")] / 900.0) ** 4
    tel["facility_power_kw"] = TRUE["f0"] + TRUE["f1"] * tel["it_power_kw"] + tel["cooling_power_kw"]
    train, test = time_block_split(tel, tel.index[2400])
    lin = LinearPlantModel(shared_it_cooling=False, shared_supply_cooling=False).fit(train, zones=ZONES)  # the plant has per-zone terms
    ref = ReferencePlantModel(max_iter=150).fit(train, zones=ZONES)
    ml, mr = plant_metrics(test, lin.predict(test), ZONES), plant_metrics(test, ref.predict(test), ZONES)
    assert set(ml) >= {"cooling_power_mape_pct", "facility_power_mape_pct", "inlet_temp_mae_c", "pue_mae"}
    # the trees follow the curvature the linear model has to average out
    assert mr["cooling_power_mape_pct"] < 0.7 * ml["cooling_power_mape_pct"]
    assert ml["cooling_power_mape_pct"] < 5.0


def test_learns_the_simulators_telemetry_export(tmp_path):
    """End to end on the real export path: simulate (explore) -> telemetry CSV -> read -> fit -> later block."""
    from pathlib import Path

    from coolshift.config import load_site
    from coolshift.io import load_site_data, read_telemetry, write_frame_atomic
    from coolshift.simulations.engine import simulate
    from coolshift.control.policies import get_policy
    from coolshift.simulations.telemetry import to_telemetry

    site = load_site(Path(__file__).resolve().parents[1] / "configs" / "sites" / "sanjose_colo_2mw.yaml")
    zones = [z.name for z in site.zones]
    data = load_site_data(site, "2022-06-01", "2022-06-29")
    # without the batch-deferral blocks (the telemetry the issue-4 targets were set on)
    res = simulate(site, data, get_policy("explore", defer_frac=0.0))
    csv = tmp_path / "telemetry.csv"
    write_frame_atomic(csv, to_telemetry(res.timeseries, res.names.zones, res.names.pools, seed=0))
    tel = read_telemetry(csv, zones=zones)
    train, test = time_block_split(tel, "2022-06-22", gap="1D")
    m = LinearPlantModel().fit(train, site)
    met = plant_metrics(test, m.predict(test), zones)
    # issue-4 targets for inlet and PUE hold on a summer week (chillers running)
    assert met["inlet_temp_mae_c"] < 0.5 and met["pue_mae"] < 0.01
    # measured 6.3 % (3.3 % before the explore policy visited warm chilled water, where the
    # economiser partly carries the load; the single piece gives 6.7 % on the same rows)
    assert met["cooling_power_mape_pct"] < 8.0
    assert m.in_envelope(test).mean() > 0.9
    # with batch deferral (total IT from 0.6 to 2.0 MW) a line in IT fitted by plain least
    # squares misses the curvature and the low-cooling hours: the hinges in total IT and the
    # relative fit cut the held-out cooling error (measured 9.29 -> 8.07 %; the previous
    # defaults, two hinges and the plain fit, 8.01 %)
    res = simulate(site, data, get_policy("explore"))
    tel = to_telemetry(res.timeseries, res.names.zones, res.names.pools, seed=0)
    train, test = time_block_split(tel, "2022-06-22", gap="1D")
    hinged = plant_metrics(test, LinearPlantModel().fit(train, site).predict(test), zones)
    line = plant_metrics(test, LinearPlantModel(n_it_hinges=0, relative_loss=0.0).fit(train, site).predict(test), zones)
    assert hinged["cooling_power_mape_pct"] < 0.9 * line["cooling_power_mape_pct"], (hinged, line)


def _kinked_plant(n: int, seed: int) -> pd.DataFrame:
    """The known linear plant plus an economiser kink: below chilled water = wet-bulb + 4 K the
    chillers add 25 kW per K (more at a warmer wet-bulb), above it cooling is flat in chilled water."""
    f = _known_plant(_inputs(n, seed=seed))
    wb = wetbulb_stull_c(f["outside_temp_c"], f["outside_rh_pct"])
    slope = 25.0 + 0.5 * wb
    f["cooling_power_kw"] += slope * np.maximum(0.0, wb + 4.0 - f["chw_setpoint_c"])
    f["facility_power_kw"] = TRUE["f0"] + TRUE["f1"] * f["it_power_kw"] + f["cooling_power_kw"]
    return f


def test_convex_pieces_follow_an_economiser_kink_and_predict_is_their_max():
    train, test = _kinked_plant(3000, seed=21), _kinked_plant(300, seed=22)
    m = LinearPlantModel(n_cooling_pieces=3, **PER_ZONE_DRYBULB).fit(train, zones=ZONES)
    one = LinearPlantModel(n_cooling_pieces=1, n_it_hinges=0, **PER_ZONE_DRYBULB).fit(train, zones=ZONES)
    assert m.n_cooling_pieces_ >= 2 and one.n_cooling_pieces_ == 1
    err = np.abs(m.predict(test)["cooling_power_kw"] - test["cooling_power_kw"]).mean()
    err1 = np.abs(one.predict(test)["cooling_power_kw"] - test["cooling_power_kw"]).mean()
    assert err < 1.0 and err < 0.5 * err1  # kW on ~100-600 kW (measured 0.33 vs 1.97)
    pc = m.coefficients(None, test)
    assert len(pc.cooling_pieces) == m.n_cooling_pieces_ - 1 and one.coefficients(None, test).cooling_pieces == ()
    it = test[[col("zone_it_power_kw", z) for z in ZONES]].set_axis(ZONES, axis=1)
    sp = test[[col("supply_setpoint_c", z) for z in ZONES]].set_axis(ZONES, axis=1)
    ref = pc.predict(it, sp, test["chw_setpoint_c"])
    pd.testing.assert_frame_equal(m.predict(test)[ref.columns], ref)
    # convex and physical: every extra piece is steeper in chilled water than the main (economiser) one
    for piece in pc.cooling_pieces:
        assert (piece.per_chw_c <= pc.cooling_per_chw_c + 1e-9).all()
    # the kink sits where it was built (wet-bulb + 4 K): at +8 K the main piece alone holds
    wb = wetbulb_stull_c(test["outside_temp_c"], test["outside_rh_pct"])
    hi = pc.cooling_const_kw + (pc.cooling_per_it_kw * it).sum(axis=1) + (pc.cooling_per_supply_c * sp).sum(axis=1)
    main_at = hi + pc.cooling_per_chw_c * (wb + 8.0)
    assert all((piece.evaluate(it, sp, wb + 8.0) <= main_at + 2.0).all() for piece in pc.cooling_pieces)


def test_coefficients_carry_the_decisions_training_range():
    tel = _known_plant(_inputs(1000, seed=23))
    pc = LinearPlantModel().fit(tel, zones=ZONES).coefficients(None, tel.iloc[:4])
    env = pc.decision_envelope
    assert env["chw_setpoint_c"] == (tel["chw_setpoint_c"].min(), tel["chw_setpoint_c"].max())
    for z in ZONES:
        for c in (col("supply_setpoint_c", z), col("zone_it_power_kw", z)):
            assert env[c] == (tel[c].min(), tel[c].max())
    assert env[col("active_servers", "p1")][1] == tel[col("active_servers", "p1")].max()
    assert "outside_temp_c" not in env  # decisions only


def test_explore_policy_visits_packed_servers_and_warm_setpoint_corners():
    """Training coverage: the explore policy reaches the joint corners the optimiser uses
    (all supply setpoints and chilled water warm, servers packed), still within the safe envelope."""
    from pathlib import Path

    from coolshift.config import load_site
    from coolshift.io import load_site_data
    from coolshift.simulations.engine import simulate
    from coolshift.control.policies import ExplorePolicy
    from coolshift.setpoints import safe_supply_max_c

    site = load_site(Path(__file__).resolve().parents[1] / "configs" / "sites" / "sanjose_colo_2mw.yaml")
    data = load_site_data(site, "2022-06-01", "2022-06-11")
    new = simulate(site, data, ExplorePolicy(seed=3))
    old = simulate(site, data, ExplorePolicy(seed=3, corner_frac=0.0, skew_frac=0.0, headrooms=(0.1, 0.3, 0.6, None),
                                             defer_frac=0.0))
    zones = [z.name for z in site.zones]
    hi = safe_supply_max_c(site)
    lo = np.array([max(z.supply_setpoint_min_c, z.inlet_min_c) for z in site.zones])

    def corner_share(ts):
        sp = ts[[col("supply_setpoint_c", z) for z in zones]].to_numpy()
        warm = (sp >= hi - 0.2 * (hi - lo)).all(axis=1)
        # chilled water within 0.5 K of the warmest that still delivers the lowest supply
        chw_max = np.clip(sp.min(axis=1) - site.cooling.crah_supply_approach_c - 1.0,
                          site.cooling.chiller.chw_setpoint_min_c, site.cooling.chiller.chw_setpoint_max_c)
        return float((warm & (ts["chw_setpoint_c"].to_numpy() >= chw_max - 0.5)).mean())

    share_new, share_old = corner_share(new.timeseries), corner_share(old.timeseries)
    assert share_new > 0.1 and share_new > 3 * share_old + 0.01, (share_new, share_old)
    def spread(ts):  # how far the halls' loads move apart, and the IT power per active server
        share = ts[col("zone_it_power_kw", zones[0])] / ts["it_power_kw"]
        return float(share.std()), float((ts["it_power_kw"] / ts.filter(like="active_servers__").sum(axis=1)).mean())

    (sd_new, kw_new), (sd_old, kw_old) = spread(new.timeseries), spread(old.timeseries)
    assert sd_new > 1.5 * sd_old  # measured 0.029 vs 0.015
    assert kw_new > 1.03 * kw_old  # packed servers (measured 0.379 vs 0.360 kW per server)
    for r in (new, old):
        assert r.summary["thermal_violation_minutes"] == 0 and r.summary["unserved_interactive_units"] == 0
    # batch held in some blocks and caught up after: total IT spans the low and high loads a
    # carbon optimiser creates by shifting work (5-95 % quantiles measured 666-1836 kW
    # against 1051-1538 kW without deferral), and no work is late
    lo_new, hi_new = new.timeseries["it_power_kw"].quantile([0.05, 0.95])
    lo_old, hi_old = old.timeseries["it_power_kw"].quantile([0.05, 0.95])
    assert lo_new < 0.8 * lo_old and hi_new > 1.1 * hi_old
    assert new.summary["late_work_units"] == 0


def test_hinge_knot_moves_with_load_when_the_plant_does():
    """Chillers start at a warmer chilled water when the load is higher: the knot is
    wet-bulb + 1 K + 2 K x (total IT / mean total IT). The model picks that load shift."""
    def plant(n, seed, it_ref=None):
        f = _known_plant(_inputs(n, seed=seed))
        wb = wetbulb_stull_c(f["outside_temp_c"], f["outside_rh_pct"])
        it_ref = f["it_power_kw"].mean() if it_ref is None else it_ref
        f["cooling_power_kw"] += 30.0 * np.maximum(0.0, wb + 1.0 + 2.0 * f["it_power_kw"] / it_ref - f["chw_setpoint_c"])
        f["facility_power_kw"] = TRUE["f0"] + TRUE["f1"] * f["it_power_kw"] + f["cooling_power_kw"]
        return f, it_ref

    train, it_ref = plant(3000, 31)
    test, _ = plant(300, 32, it_ref)
    kw = dict(n_cooling_pieces=2, **PER_ZONE_DRYBULB)
    m = LinearPlantModel(**kw).fit(train, zones=ZONES)
    fixed = LinearPlantModel(hinge_load_slopes_c=(0.0,), **kw).fit(train, zones=ZONES)
    assert m.hinge_gammas_[0].tolist() == [2.0] and fixed.hinge_gammas_[0].tolist() == [0.0]  # each hinge's own shift
    err = np.abs(m.predict(test)["cooling_power_kw"] - test["cooling_power_kw"]).mean()
    err_fixed = np.abs(fixed.predict(test)["cooling_power_kw"] - test["cooling_power_kw"]).mean()
    assert err < 0.7 * err_fixed  # measured 0.53 vs 1.05 kW
    pc = m.coefficients(None, test)
    it = test[[col("zone_it_power_kw", z) for z in ZONES]].set_axis(ZONES, axis=1)
    sp = test[[col("supply_setpoint_c", z) for z in ZONES]].set_axis(ZONES, axis=1)
    pd.testing.assert_frame_equal(m.predict(test)[["cooling_power_kw"]], pc.predict(it, sp, test["chw_setpoint_c"])[["cooling_power_kw"]])
    # the chiller piece costs more per kW of IT than the economiser piece (the knot moves with load)
    extra = pc.cooling_pieces[0].per_it_kw["hall_a"] - pc.cooling_per_it_kw["hall_a"]
    # (measured 78 % of steps; at the warmest wet-bulbs every training row sits below the
    # knot, the hinge is always on and its slope merges into the main piece)
    assert (extra >= 0).all() and (extra > 1e-3).mean() > 0.7


def test_hinges_with_different_load_shifts_are_found_and_emitted_exactly():
    """Two chiller hinges whose knots move differently with load (they cross as IT changes):
    each hinge gets its own shift, and the emitted pieces (the max over subsets) equal the
    sum of the hinges at every decision."""
    def plant(n, seed, it_ref=None):
        f = _known_plant(_inputs(n, seed=seed))
        wb = wetbulb_stull_c(f["outside_temp_c"], f["outside_rh_pct"])
        it_ref = f["it_power_kw"].mean() if it_ref is None else it_ref
        f["cooling_power_kw"] += (30.0 * np.maximum(0.0, wb + 0.0 + 4.0 * f["it_power_kw"] / it_ref - f["chw_setpoint_c"])
                                  + 20.0 * np.maximum(0.0, wb + 3.0 - f["chw_setpoint_c"]))
        f["facility_power_kw"] = TRUE["f0"] + TRUE["f1"] * f["it_power_kw"] + f["cooling_power_kw"]
        return f, it_ref

    train, it_ref = plant(4000, 41)
    test, _ = plant(300, 42, it_ref)
    kw = dict(n_cooling_pieces=3, n_it_hinges=0, hinge_load_slopes_c=(0.0, 4.0), **PER_ZONE_DRYBULB)
    joint = LinearPlantModel(**kw).fit(train, zones=ZONES)
    one = LinearPlantModel(joint_hinge_gammas=False, **kw).fit(train, zones=ZONES)
    assert sorted(joint.hinge_gammas_[0].tolist()) == [0.0, 4.0]  # one hinge of each shift
    assert joint.n_cooling_pieces_ == 4  # 2^2 subsets x 1
    err = np.abs(joint.predict(test)["cooling_power_kw"] - test["cooling_power_kw"]).mean()
    err_one = np.abs(one.predict(test)["cooling_power_kw"] - test["cooling_power_kw"]).mean()
    assert err < 0.9 * err_one, (err, err_one)  # measured 0.89 vs 1.13 kW (knots from a quantile grid)
    # the pieces: cooling = max(main, main + each subset of hinges) == main + sum of active hinges
    pc = joint.coefficients(None, test)
    it = test[[col("zone_it_power_kw", z) for z in ZONES]].set_axis(ZONES, axis=1)
    sp = test[[col("supply_setpoint_c", z) for z in ZONES]].set_axis(ZONES, axis=1)
    chw = test["chw_setpoint_c"]

    def affine(p, const, per_it, per_sp, per_chw):
        return const + (per_it * it).sum(axis=1) + (per_sp * sp).sum(axis=1) + per_chw * chw

    main = affine(None, pc.cooling_const_kw, pc.cooling_per_it_kw, pc.cooling_per_supply_c, pc.cooling_per_chw_c)
    pieces = [affine(None, q.const_kw, q.per_it_kw, q.per_supply_c, q.per_chw_c) for q in pc.cooling_pieces]
    wb = np.asarray(wetbulb_stull_c(test["outside_temp_c"], test["outside_rh_pct"]), dtype=float)
    at = joint.hinge_knots_c_[0] + wb[:, None] + joint.hinge_gammas_[0] * test["it_power_kw"].to_numpy()[:, None] / joint.it_ref_kw_
    hb = joint._hinge_basis(test["outside_temp_c"].to_numpy(), wb)
    slopes = np.einsum("th,mh->tm", hb, joint.hinge_coef_[0])
    explicit = main.to_numpy() + (slopes * np.maximum(0.0, at - chw.to_numpy()[:, None])).sum(axis=1)
    np.testing.assert_allclose(np.max(np.column_stack([main] + pieces), axis=1), explicit, rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(joint.predict(test)["cooling_power_kw"], explicit, rtol=1e-9, atol=1e-6)
