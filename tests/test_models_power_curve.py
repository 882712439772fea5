"""Server power curve: recovers a known curve, fits the real GPU telemetry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from coolshift.models.power_curve import LinearPowerModel, ServerPowerCurve, read_gpu_usage_stats

GPU = Path(__file__).resolve().parents[1] / "data" / "telemetry" / "cbsugpu08_usage_stats.txt"


def test_known_curve_is_recovered_at_the_specpower_points():
    rng = np.random.default_rng(0)
    frac = np.array([0.25, 0.37, 0.44, 0.50, 0.56, 0.62, 0.68, 0.75, 0.82, 0.90, 1.0])  # SPECpower-like
    u = rng.uniform(0, 100, 20000)
    p = np.interp(u, np.linspace(0, 100, 11), frac * 400.0) + rng.normal(0, 5, u.size)
    c = ServerPowerCurve().fit(u, p)
    np.testing.assert_allclose(c.curve_frac_, frac, atol=0.02)
    assert c.peak_w_ == pytest.approx(400.0, rel=0.02)
    assert np.all(np.diff(c.power_w_at_points_) >= 0)


def test_sparse_high_load_is_extrapolated_not_flat():
    rng = np.random.default_rng(1)
    u = rng.uniform(0, 60, 5000)
    c = ServerPowerCurve().fit(u, 100 + 2.0 * u)
    assert not c.points_supported_[-1]
    assert c.peak_w_ == pytest.approx(300.0, rel=0.05)


def test_real_gpu_telemetry_fits_and_beats_a_linear_model_on_later_data():
    d = read_gpu_usage_stats(GPU)
    assert len(d) > 15000 and d.index.is_monotonic_increasing and str(d.index.tz) == "UTC"
    cut = d.index[int(len(d) * 0.7)]
    tr, te = d[d.index < cut], d[d.index >= cut]
    c = ServerPowerCurve().fit(tr["util_pct"], tr["power_w"])
    lin = LinearPowerModel().fit(tr["util_pct"], tr["power_w"])
    assert 40.0 < c.idle_w_ < 70.0  # H100 idle ~50 W (PROVENANCE: ~49 W idle readings)
    assert 250.0 < c.peak_w_ < 400.0
    mae_c = np.abs(c.predict(te["util_pct"]) - te["power_w"]).mean()
    mae_l = np.abs(lin.predict(te["util_pct"]) - te["power_w"]).mean()
    assert mae_c < mae_l


def test_bad_file_is_refused(tmp_path):
    f = tmp_path / "x.txt"
    f.write_text("a\tb\n1\t2\n")
    with pytest.raises(ValueError, match="unexpected header"):
        read_gpu_usage_stats(f)
