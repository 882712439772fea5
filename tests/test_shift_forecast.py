"""Forecast modes: decide on a forecast, count on actuals; seeded noise; the model mode
only ever sees data from before each decision."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from coolshift.shift import prepare, schedule_jobs, validate_jobs
from coolshift.shift.forecast import (
    model_decisions,
    noisy_decision,
    run_forecast_mode,
)

T0 = pd.Timestamp("2024-01-01T00:00Z")


def daily_profile(days=40, noise=0.0, seed=0):
    """A clean daily cycle: cheapest at 13:00 UTC, dearest at 01:00 [gCO2/kWh]."""
    idx = pd.date_range(T0, periods=48 * days, freq="30min")
    hour = idx.hour + idx.minute / 60
    y = 300 + 150 * np.cos(2 * np.pi * (hour - 1) / 24)
    y = y + np.random.default_rng(seed).normal(0, noise, len(idx))
    return pd.Series(y, index=idx, name="gco2_per_kwh")


def nightly(days, first_day=30, flex_h=8):
    rows = []
    for d in range(first_day, first_day + days):
        nominal = T0 + pd.Timedelta(days=d, hours=1)
        rows.append({"job_id": f"d{d}", "release": (nominal - pd.Timedelta(hours=flex_h)).isoformat(),
                     "deadline": (nominal + pd.Timedelta(hours=flex_h, minutes=30)).isoformat(),
                     "duration_h": 0.5, "power_kw": 1.0, "baseline_start": nominal.isoformat()})
    return validate_jobs(pd.DataFrame(rows))


def test_noise_is_seeded_and_scaled_to_the_mean():
    actual = np.full(20000, 200.0)
    a, b = noisy_decision(actual, 0.05, 3), noisy_decision(actual, 0.05, 3)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, noisy_decision(actual, 0.05, 4))
    assert np.std(a - actual) == pytest.approx(10.0, rel=0.03)  # 5 % of 200


def test_noise_modes_average_over_seeds_and_count_on_actuals():
    intensity = daily_profile(days=12)
    prob = prepare(nightly(5, first_day=5), intensity)
    perfect = run_forecast_mode(prob, "perfect")
    n10 = run_forecast_mode(prob, "noise10", seeds=4)
    again = run_forecast_mode(prob, "noise10", seeds=4)
    assert len(n10.schedules) == 4 and n10.summary["seeds"] == 4
    assert n10.summary["shifted_kgco2"] == again.summary["shifted_kgco2"]  # reproducible
    each = [s.summary()["shifted_kgco2"] for s in n10.schedules]
    assert n10.summary["shifted_kgco2"] == pytest.approx(np.mean(each))
    # deciding on noise can never beat deciding on the actuals (counted on actuals)
    assert min(each) >= perfect.summary["shifted_kgco2"] - 1e-12
    assert n10.summary["baseline_kgco2"] == pytest.approx(perfect.summary["baseline_kgco2"])
    # baseline: the peak at 01:00 (450 g); the window 17:00-09:30 is cleanest at its ends,
    # 300 + 150 cos(240 deg) = 225 g: 50 % saved
    assert perfect.summary["savings_pct"] == pytest.approx(50.0, rel=1e-9)
    assert n10.summary["late_jobs"] == 0


class RecordingForecaster:
    """Yesterday's value at the same step; records what it was trained on."""

    fits: list = []

    def fit(self, y):
        RecordingForecaster.fits.append(y.index.max())
        self.trained_until_ = y.index.max()
        return self

    def predict_day_ahead(self, history, issue_time, index):
        seen = history[history.index < issue_time]
        assert seen.index.max() < issue_time
        assert self.trained_until_ < issue_time
        prev = seen.reindex(index - pd.Timedelta("1D")).to_numpy()
        return pd.DataFrame({"gco2_per_kwh": prev}, index=index)


def test_model_mode_trains_and_forecasts_only_on_data_before_each_decision():
    RecordingForecaster.fits = []
    intensity = daily_profile(days=20)
    prob = prepare(nightly(7, first_day=10), intensity)
    decisions, stats = model_decisions(prob, RecordingForecaster, refit_every="2D",
                                       train_window="5D")
    assert len(decisions) == 7  # one issue time per release
    assert stats["forecast_fits"] == 4  # days 0, 2, 4, 6 of the 7 decisions
    for d in decisions:
        assert d.issue == prob.jobs["release"].iat[d.jobs[0]]
        lo, hi = prob.first[d.jobs].min(), prob.stop[d.jobs].max()
        # yesterday's profile is today's: the forecast equals the actuals in the window
        assert d.intensity[lo:hi] == pytest.approx(prob.actual[lo:hi])
        assert not d.intensity[:lo].any() and not d.intensity[hi:].any()
    assert stats["forecast_wape_pct"] == pytest.approx(0.0, abs=1e-9)


def test_model_mode_with_the_coolshift_forecaster_saves_close_to_perfect():
    intensity = daily_profile(days=40, noise=5.0)
    prob = prepare(nightly(4, first_day=35), intensity)
    perfect = run_forecast_mode(prob, "perfect").summary
    model = run_forecast_mode(prob, "model",
                              model_options={"refit_every": "30D", "train_window": "28D"}).summary
    assert model["forecast_fits"] == 1
    assert model["forecast_fallback_jobs"] == 0
    assert model["forecast_wape_pct"] < 5.0
    assert model["late_jobs"] == 0
    assert model["savings_pct"] <= perfect["savings_pct"] + 1e-9
    assert model["savings_pct"] > 0.9 * perfect["savings_pct"]


def test_model_mode_with_capacity_commits_capacity_in_issue_order():
    # two single-slot jobs released a day apart share the same cleanest slot only if
    # windows overlap; make them overlap and give room for one: the earlier decision wins.
    intensity = daily_profile(days=20)
    base = T0 + pd.Timedelta(days=15)
    jobs = validate_jobs(pd.DataFrame([
        {"job_id": "early", "release": (base).isoformat(),
         "deadline": (base + pd.Timedelta(hours=20)).isoformat(), "duration_h": 0.5, "power_kw": 5},
        {"job_id": "later", "release": (base + pd.Timedelta(hours=6)).isoformat(),
         "deadline": (base + pd.Timedelta(hours=20)).isoformat(), "duration_h": 0.5, "power_kw": 5},
    ]))
    prob = prepare(jobs, intensity)
    run = run_forecast_mode(prob, "model", capacity_kw=5.0,
                            model_options={"make_forecaster": RecordingForecaster})
    t = run.schedules[0].table.set_index("job_id")
    assert t.loc["early", "start"] == base + pd.Timedelta(hours=13)  # the cosine minimum
    assert t.loc["later", "start"] in (base + pd.Timedelta(hours=12, minutes=30),
                                       base + pd.Timedelta(hours=13, minutes=30))
    assert run.summary["late_jobs"] == 0
    assert "greedy" in run.summary


def test_unknown_mode_is_refused():
    prob = prepare(nightly(1, first_day=2), daily_profile(days=5))
    with pytest.raises(ValueError, match="forecast must be one of"):
        run_forecast_mode(prob, "oracle")
    with pytest.raises(ValueError, match="seeds must be >= 1"):
        run_forecast_mode(prob, "noise5", seeds=0)


def test_schedule_jobs_decision_length_is_checked():
    prob = prepare(nightly(1, first_day=2), daily_profile(days=5))
    with pytest.raises(ValueError, match="decision intensity has 3 slots"):
        schedule_jobs(prob, decision=np.ones(3))
