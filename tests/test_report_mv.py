"""M&V (IPMVP Option C / ASHRAE Guideline 14) on synthetic sites with a known step change."""

import numpy as np
import pandas as pd
import pytest

from coolshift.reports import mv


def synthetic_site(seed: int, days_pre=60, days_post=45, cooling_cut=0.20, noise_kw=12.0, rho=0.6):
    """Hourly pre/post frames of a 1 MW-class site; the post period's cooling is ``cooling_cut`` lower.

    Returns (pre, post, true avoided kWh in the post period): the saving the noise-free plant makes.
    """
    rng = np.random.default_rng(seed)
    n = 24 * (days_pre + days_post)
    idx = pd.date_range("2022-04-01T00:00Z", periods=n, freq="h", name="timestamp")
    hod, day = idx.hour.to_numpy(), np.arange(n) / 24.0
    it = 800 + 120 * np.sin(2 * np.pi * (hod - 9) / 24) + 40 * rng.standard_normal(n)
    # weather fronts (a 17-day cycle), a daily cycle and noise: the post period stays inside the
    # pre period's range, as Guideline 14 assumes (extrapolation is tested separately)
    temp = 15 + 5 * np.sin(2 * np.pi * day / 17) + 6 * np.sin(2 * np.pi * (hod - 15) / 24) + 2 * rng.standard_normal(n)
    cooling = 0.08 * it + 0.006 * it * np.maximum(temp - 12.0, 0) + 3.0 * np.maximum(temp - 12.0, 0)
    e = np.zeros(n)
    for i in range(1, n):  # AR(1) meter/process noise, as hourly residuals of real sites are
        e[i] = rho * e[i - 1] + np.sqrt(1 - rho ** 2) * noise_kw * rng.standard_normal()
    post = np.arange(n) >= 24 * days_pre
    factor = np.where(post, 1.0 - cooling_cut, 1.0)
    facility = 40 + 1.04 * it + cooling * factor + e
    gco2 = 250 + 100 * np.cos(2 * np.pi * (hod - 13) / 24)  # solar-dip grid
    frame = pd.DataFrame({"it_power_kw": it, "facility_power_kw": facility, "outside_temp_c": temp,
                          "gco2_per_kwh": gco2}, index=idx)
    true_saving = float((cooling * cooling_cut)[post].sum())  # kW x 1 h
    true_kg = float((cooling * cooling_cut * gco2)[post].sum() / 1000.0)
    return frame[~post], frame[post], true_saving, true_kg


def test_metrics_hand_case():
    y, yh = np.array([10.0, 12.0, 14.0, 16.0]), np.array([11.0, 11.0, 15.0, 15.0])
    # residuals -1, 1, -1, 1: SSE 4, n - p = 2 -> RMSE sqrt(2); mean 13
    assert mv.cv_rmse(y, yh, 2) == pytest.approx(np.sqrt(2) / 13)
    assert mv.nmbe(y, yh, 2) == pytest.approx(0.0)
    assert mv.nmbe(y, yh - 1, 2) == pytest.approx(4 / (2 * 13))
    assert mv.lag1_autocorrelation([-1, 1, -1, 1]) == pytest.approx(-0.75)
    assert mv.effective_n(100, 0.5) == pytest.approx(100 / 3)
    assert mv.effective_n(100, -0.3) == 100


def test_fsu_formula():
    # t(0.68, large dof) ~ 0.994; 1.26 x 0.1 x sqrt(1 x (1 + 2/1000) / 100) / 0.2
    f = mv.fractional_savings_uncertainty(0.1, 1000, 1000, 100, 0.2, 3, 0.68)
    t = 0.99446
    assert f == pytest.approx(t * 1.26 * 0.1 * np.sqrt(1.002 / 100) / 0.2, rel=1e-3)
    # autocorrelation widens it: n/n' = 3
    assert mv.fractional_savings_uncertainty(0.1, 1000, 1000 / 3, 100, 0.2, 3, 0.68) > f * np.sqrt(3)
    assert mv.cv_rmse_threshold(6) == 0.20 and mv.cv_rmse_threshold(24) == 0.25 and mv.cv_rmse_threshold(72) == 0.30


def test_change_point_model_recovers_balance_point_without_noise():
    pre, _, _, _ = synthetic_site(0, noise_kw=0.0, rho=0.0)
    X = pd.DataFrame({"load": pre["it_power_kw"], "temp_c": pre["outside_temp_c"]})
    m = mv.ChangePointBaseline(max_change_points=1).fit(X, pre["facility_power_kw"])
    assert m.balance_points_c_ == (12.0,)
    assert m.cv_rmse_ < 1e-6
    assert m.coef_[0] == pytest.approx(1.04 + 0.08)


def test_model_without_weather_dependence_drops_temperature_terms():
    rng = np.random.default_rng(3)
    X = pd.DataFrame({"load": 500 + 50 * rng.standard_normal(500), "temp_c": 15 + 8 * rng.standard_normal(500)})
    y = 30 + 1.3 * X["load"] + rng.standard_normal(500)
    m = mv.ChangePointBaseline(interaction=False).fit(X, y)
    assert m.balance_points_c_ == ()  # BIC: the temperature terms do not pay for themselves
    assert m.coef_[0] == pytest.approx(1.3, abs=0.01)


def test_recovers_known_saving_within_stated_uncertainty():
    # one site here; the statistical check of the interval is the coverage test below
    pre, post, true_kwh, true_kg = synthetic_site(0)
    r = mv.verify_savings(pre, post)
    assert r.avoided_kwh == pytest.approx(true_kwh, rel=0.15)
    assert abs(r.avoided_kwh - true_kwh) <= r.uncertainty_kwh_90
    assert abs(r.avoided_kgco2 - true_kg) <= r.uncertainty_kgco2_90
    assert r.uncertainty_kwh_90 < 0.3 * true_kwh  # informative, not a blanket interval
    assert r.compliant
    red = r.reduction
    assert red["efficiency_kg"] + red["timing_kg"] == pytest.approx(red["total_kg"])


def test_uncertainty_coverage_over_many_sites():
    inside68 = inside90 = 0
    seeds = range(24)
    for s in seeds:
        pre, post, true_kwh, _ = synthetic_site(100 + s, days_pre=40, days_post=20)
        r = mv.verify_savings(pre, post)
        inside68 += abs(r.avoided_kwh - true_kwh) <= r.uncertainty_kwh_68
        inside90 += abs(r.avoided_kwh - true_kwh) <= r.uncertainty_kwh_90
    assert inside90 >= 0.8 * len(seeds)
    assert inside68 >= 0.5 * len(seeds)


def test_no_change_gives_no_significant_saving():
    pre, post, _, _ = synthetic_site(11, cooling_cut=0.0)
    r = mv.verify_savings(pre, post)
    assert abs(r.savings_fraction) < 0.01
    assert not r.compliant  # no saving to claim: the 50 % uncertainty test fails


def test_daily_intervals_and_extrapolation_flag():
    pre, post, true_kwh, _ = synthetic_site(5, days_pre=90, days_post=60)
    r = mv.verify_savings(pre, post, freq="D")
    assert len(r.post) == 60 and r.model.n_ == 90
    assert abs(r.avoided_kwh - true_kwh) <= r.uncertainty_kwh_90
    hot = post.assign(outside_temp_c=post["outside_temp_c"] + 15)
    flags = {c["check"]: c["passed"] for c in mv.verify_savings(pre, hot).checks}
    assert flags["post temperature within the baseline range"] is False


def test_bad_inputs_are_named():
    pre, post, _, _ = synthetic_site(1, days_pre=5, days_post=2)
    with pytest.raises(ValueError, match="outside_temp_c"):
        mv.verify_savings(pre.drop(columns="outside_temp_c"), post)
    with pytest.raises(ValueError, match="wet bulb"):
        mv.verify_savings(pre, post, temperature="wetbulb")
    with pytest.raises(ValueError, match="after"):
        mv.verify_savings(post, pre)


def test_two_change_points_found_and_wet_bulb_preferred():
    # economiser-like plant: cooling flat below 6 degC wet bulb, a gentle rise to 14, then steep
    rng = np.random.default_rng(9)
    n = 24 * 120
    idx = pd.date_range("2022-01-01T00:00Z", periods=n, freq="h")
    wb = 10 + 7 * np.sin(2 * np.pi * np.arange(n) / (24 * 40)) + 3 * rng.standard_normal(n)
    it = 1000 + 100 * rng.standard_normal(n)
    facility = 50 + 1.1 * it + 4 * np.maximum(wb - 6, 0) + 25 * np.maximum(wb - 14, 0) + 5 * rng.standard_normal(n)
    f = pd.DataFrame({"it_power_kw": it, "facility_power_kw": facility, "wetbulb_c": wb, "outside_temp_c": wb + 6}, index=idx)
    r = mv.verify_savings(f.iloc[: n // 2], f.iloc[n // 2:])
    assert r.temperature.startswith("wet bulb")
    assert r.model.balance_points_c_ == (6.0, 14.0)
    assert abs(r.avoided_kwh) <= r.uncertainty_kwh_90 * 1.5  # nothing changed
    assert r.model.cv_rmse_ < 0.01


def test_work_column_summed_from_served_work():
    pre, post, _, _ = synthetic_site(3, days_pre=20, days_post=10)
    add = lambda f: f.assign(served_units_per_h__web=f["it_power_kw"] * 0.6, served_units_per_h__batch=f["it_power_kw"] * 0.4)  # noqa: E731
    r = mv.verify_savings(add(pre), add(post), load_column="work_units_per_h")
    assert r.post["load"].to_numpy() == pytest.approx(post["it_power_kw"].to_numpy())
    with pytest.raises(ValueError, match="served_units_per_h"):
        mv.verify_savings(pre, post, load_column="work_units_per_h")
