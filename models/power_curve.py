"""Server power curve fitted from measured power/utilisation telemetry.

:class:`ServerPowerCurve` fits power [W] against utilisation [%] as a monotone
(isotonic) curve and reports it at the 11 SPECpower_ssj2008 load points (active idle,
10 % .. 100 %), the form :class:`coolshift.config.ServerPool` takes in
``power_curve_frac``. Shown here on the real hourly GPU telemetry of Cornell BioHPC's
``cbsugpu08`` (2x NVIDIA H100), bundled as ``data/telemetry/cbsugpu08_usage_stats.txt``.

References: SPEC, "SPECpower_ssj2008 Run and Reporting Rules" (the 11 load levels);
Fan, Weber, Barroso (2007), "Power provisioning for a warehouse-sized computer", ISCA
(the linear idle-to-peak model used as the comparison).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin

__all__ = ["SPECPOWER_LOAD_PCT", "ServerPowerCurve", "LinearPowerModel", "read_gpu_usage_stats"]

SPECPOWER_LOAD_PCT = np.linspace(0.0, 100.0, 11)
GPU_STATS_COLUMNS = ("name", "timestamp", "powerave", "powermin", "powermax", "tempave", "tempmin", "tempmax",
                     "utilave", "utilmin", "utilmax", "gmemave", "gmemmin", "gmemmax")


def read_gpu_usage_stats(path: str | Path) -> pd.DataFrame:
    """Read the BioHPC GPU usage export: tab-separated, BOM, newest first, SQL-client footer.

    Returns a frame on an ascending UTC index with ``power_w`` (hourly mean GPU board
    power), ``util_pct`` (hourly mean GPU utilisation) and ``temp_c`` (GPU temperature).
    The export ran at UTC-04:00 (US Eastern) and states no zone; stamps are taken as
    US/Eastern local time (see data/PROVENANCE.md).
    """
    path = Path(path)
    rows = []
    with open(path, encoding="utf-8-sig") as fh:
        header = fh.readline().rstrip("\r\n").split("\t")
        if tuple(h.strip() for h in header) != GPU_STATS_COLUMNS:
            raise ValueError(f"{path}: unexpected header {header[:4]}...; expected {GPU_STATS_COLUMNS[:4]}...")
        for line in fh:
            if line.count("\t") >= 13:  # data rows; the footer lines have no tabs
                rows.append(line.rstrip("\r\n").split("\t"))
    if not rows:
        raise ValueError(f"{path}: no data rows")
    df = pd.DataFrame(rows, columns=list(GPU_STATS_COLUMNS))
    ts = pd.to_datetime(df["timestamp"], errors="coerce")
    if ts.isna().any():
        i = int(np.flatnonzero(ts.isna().to_numpy())[0])
        raise ValueError(f"{path}: row {i + 2}: unparseable timestamp {df['timestamp'].iat[i]!r}")
    idx = pd.DatetimeIndex(ts).tz_localize("US/Eastern", ambiguous="NaT", nonexistent="NaT").tz_convert("UTC")
    out = pd.DataFrame({
        "power_w": pd.to_numeric(df["powerave"], errors="coerce").to_numpy(),
        "util_pct": pd.to_numeric(df["utilave"], errors="coerce").to_numpy(),
        "temp_c": pd.to_numeric(df["tempave"], errors="coerce").to_numpy(),
    }, index=idx)
    out = out[out.index.notna()].dropna()
    out = out[~out.index.duplicated()].sort_index()
    out.index.name = "timestamp"
    return out


class ServerPowerCurve(BaseEstimator, RegressorMixin):
    """Monotone power curve P(u) [W] of utilisation u [%], reported at the SPECpower points.

    Parameters
    ----------
    min_points_per_bin : a SPECpower point whose +-5 % bin holds fewer readings is
        extrapolated linearly from the fitted curve below it (sparse high-load data).
    """

    def __init__(self, min_points_per_bin: int = 5):
        self.min_points_per_bin = min_points_per_bin

    def fit(self, util_pct, power_w) -> "ServerPowerCurve":
        from sklearn.isotonic import IsotonicRegression

        u = np.asarray(util_pct, dtype=float).ravel()
        p = np.asarray(power_w, dtype=float).ravel()
        if u.shape != p.shape or len(u) < 10:
            raise ValueError("ServerPowerCurve.fit: need >= 10 paired utilisation and power readings")
        if np.any((u < 0) | (u > 100)):
            raise ValueError("ServerPowerCurve.fit: utilisation must be in percent, 0..100")
        # local linear fit (triangular weights, +-10 %) at each SPECpower point: unbiased on a
        # piecewise-linear curve, unlike a bin mean at the 0 % and 100 % edges ...
        counts = np.array([np.sum(np.abs(u - x) <= 5.0) for x in SPECPOWER_LOAD_PCT])
        raw = np.full(len(SPECPOWER_LOAD_PCT), np.nan)
        for k, x in enumerate(SPECPOWER_LOAD_PCT):
            w = np.clip(1.0 - np.abs(u - x) / 10.0, 0.0, None)
            sel = w > 0
            if sel.sum() < 2:
                continue
            if np.ptp(u[sel]) > 1.0:
                c1, c0 = np.polyfit(u[sel] - x, p[sel], 1, w=np.sqrt(w[sel]))
                raw[k] = c0
            else:
                raw[k] = np.average(p[sel], weights=w[sel])
        ok = np.isfinite(raw)
        if ok.sum() < 2:
            raise ValueError("ServerPowerCurve.fit: readings cover too little of the 0-100 % range")
        # ... then made monotone (isotonic, weighted by the readings near each point)
        iso = IsotonicRegression(increasing=True, out_of_bounds="clip").fit(
            SPECPOWER_LOAD_PCT[ok], raw[ok], sample_weight=np.maximum(counts[ok], 1))
        points = iso.predict(SPECPOWER_LOAD_PCT)
        supported = counts >= self.min_points_per_bin
        if supported.sum() >= 2:
            last = int(np.flatnonzero(supported)[-1])
            if last < len(points) - 1:  # extrapolate with the slope of the supported part
                k = np.flatnonzero(supported)
                slope = np.polyfit(SPECPOWER_LOAD_PCT[k], points[k], 1)[0]
                points[last + 1:] = points[last] + max(slope, 0.0) * (SPECPOWER_LOAD_PCT[last + 1:] - SPECPOWER_LOAD_PCT[last])
        self.power_w_at_points_ = points
        self.points_supported_ = supported
        self.idle_w_ = float(points[0])
        self.peak_w_ = float(points[-1])
        self.curve_frac_ = points / points[-1]  # ServerPool.power_curve_frac
        self.n_readings_ = int(len(u))
        return self

    def predict(self, util_pct) -> np.ndarray:
        return np.interp(np.asarray(util_pct, dtype=float), SPECPOWER_LOAD_PCT, self.power_w_at_points_)


class LinearPowerModel(BaseEstimator, RegressorMixin):
    """Linear idle-to-peak model P(u) = idle + (peak - idle) u/100, least squares (Fan et al. 2007)."""

    def fit(self, util_pct, power_w) -> "LinearPowerModel":
        c = np.polyfit(np.asarray(util_pct, float), np.asarray(power_w, float), 1)
        self.idle_w_, self.peak_w_ = float(c[1]), float(c[1] + 100 * c[0])
        return self

    def predict(self, util_pct) -> np.ndarray:
        return self.idle_w_ + (self.peak_w_ - self.idle_w_) * np.asarray(util_pct, float) / 100.0
