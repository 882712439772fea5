"""Day-ahead and intraday forecasts of grid carbon intensity and workload.

A forecast is *issued* at ``issue_time`` and uses only observations strictly before
it. The learned forecaster is a direct multi-horizon regressor
(scikit-learn ``HistGradientBoostingRegressor``) on calendar features and recent
history (same step yesterday, two days and a week ago, the recent mean, the last
value), predicting the deviation from the same step on the latest observed day
(so it learns corrections to persistence rather than absolute levels, which keeps it
sane in a season it was not trained on). Uncertainty is the empirical quantile of
its errors, by horizon, on the last block of the training period (held out in time,
never shuffled).

Baselines, with the same ``predict_day_ahead`` interface:

* :class:`PersistenceForecaster`: the same step on the most recent observed day
  ("same hour yesterday" for a day-ahead forecast);
* :class:`SeasonalNaiveForecaster`: the same step one week earlier (Hyndman &
  Athanasopoulos, *Forecasting: Principles and Practice*, 3rd ed., sec. 5.2).

Output of ``predict_day_ahead``: a frame on the requested index with the point
forecast ``<name>`` (e.g. ``gco2_per_kwh``), quantiles ``<name>_q10``, ``<name>_q50``,
``<name>_q90`` and the residual standard deviation ``<name>_std``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin

from coolshift.schema import CARBON_GCO2_PER_KWH, CPU_UTIL

__all__ = [
    "CarbonIntensityForecaster",
    "WorkloadForecaster",
    "PersistenceForecaster",
    "SeasonalNaiveForecaster",
    "WeatherForecaster",
    "day_ahead_backtest",
    "forecast_scores",
    "forecast_quantile",
    "issue_hours_with",
    "QUANTILES",
]

QUANTILES = (0.1, 0.5, 0.9)
DAY = pd.Timedelta(hours=24)
WEEK = pd.Timedelta(days=7)


# --------------------------------------------------------------------------------------
# input validation and the regular grid
# --------------------------------------------------------------------------------------
def issue_hours_with(hour: int) -> tuple[int, ...]:
    """Training issue hours for forecasts issued at ``hour`` UTC: it and three more 6 h apart.

    The ridge is one per issue hour, so only ``hour`` is used; the others give the
    calibration block four times the rows to choose the penalty by (with three weeks of
    5-min history, one issue hour alone picked a near-persistence penalty: MAPE 7.77 %
    against 6.83 % on the bundled Google 2019 trace; an exploratory run, the 6.83 % is in
    benchmarks/results/forecast_evaluate_s7.txt).
    """
    return tuple(sorted((int(hour) + 6 * k) % 24 for k in range(4)))


def _validate_series(y: pd.Series, name: str | None = None) -> pd.Series:
    """A float series on a tz-aware, sorted, unique DatetimeIndex at a regular step."""
    if isinstance(y, pd.DataFrame):
        if name is None or name not in y.columns:
            raise ValueError(f"expected a Series or a frame with column {name!r}; got columns {list(y.columns)}")
        y = y[name]
    if not isinstance(y, pd.Series):
        raise TypeError(f"expected a pandas Series, got {type(y).__name__}")
    if not isinstance(y.index, pd.DatetimeIndex) or y.index.tz is None:
        raise ValueError("the series needs a tz-aware (UTC) DatetimeIndex")
    if y.index.has_duplicates:
        dup = y.index[y.index.duplicated()][0]
        raise ValueError(f"duplicate timestamp {dup} in the series")
    y = y.sort_index().astype(float)
    if len(y) < 3:
        raise ValueError("the series is too short to infer its step")
    return y


def _infer_step(index: pd.DatetimeIndex) -> pd.Timedelta:
    step = pd.Series(index).diff().median()
    if pd.isna(step) or step <= pd.Timedelta(0):
        raise ValueError("cannot infer the time step of the series")
    if DAY % step != pd.Timedelta(0):
        raise ValueError(f"the series step {step} does not divide a day")
    return step


def _regular(y: pd.Series, step: pd.Timedelta) -> pd.Series:
    """Put the series on its regular grid (gaps become NaN; off-grid stamps are snapped by mean)."""
    if len(y) > 1 and (y.index[0] - y.index[0].normalize()) % step == pd.Timedelta(0):
        d = np.diff(y.index.asi8)
        if (d == d[0]).all() and pd.Timedelta(int(d[0]), unit=y.index.unit) == step:
            return y  # already on its grid: what resampling would return
    return y.resample(step).mean()


# --------------------------------------------------------------------------------------
# baselines
# --------------------------------------------------------------------------------------
class _BaseForecaster(BaseEstimator, RegressorMixin):
    """Shared plumbing: fit on a series, forecast an index from an issue time."""

    name: str | None = None

    def _history(self, history: pd.Series, issue_time) -> tuple[pd.Series, pd.Timestamp]:
        issue = pd.Timestamp(issue_time)
        if issue.tz is None:
            raise ValueError("issue_time must be tz-aware (UTC)")
        y = _validate_series(history, self.name_)
        y = _regular(y[y.index < issue], self.step_)  # nothing at or after the issue time
        if y.dropna().empty:
            raise ValueError(f"no history before the issue time {issue}")
        return y, issue

    def _target_index(self, index, issue: pd.Timestamp) -> pd.DatetimeIndex:
        index = pd.DatetimeIndex(index)
        if index.tz is None:
            raise ValueError("the forecast index must be tz-aware (UTC)")
        if len(index) and index.min() < issue:
            raise ValueError(f"forecast index starts at {index.min()}, before the issue time {issue}")
        return index

    def _frame(self, index: pd.DatetimeIndex, point: np.ndarray, horizon_steps: np.ndarray) -> pd.DataFrame:
        q = self._residual_quantiles(horizon_steps)
        cols = {self.name_: point}
        for i, level in enumerate(QUANTILES):
            cols[f"{self.name_}_q{int(round(level * 100)):02d}"] = point + q[:, i]
        cols[f"{self.name_}_std"] = q[:, -1]
        out = pd.DataFrame(cols, index=index)
        out.index.name = "timestamp"
        return out

    def _residual_quantiles(self, horizon_steps: np.ndarray) -> np.ndarray:
        """(n, len(QUANTILES)+1): residual quantiles and std for each horizon (in steps)."""
        table = self.residual_quantiles_  # rows: horizon bucket edges -> stats
        edges = self.residual_edges_
        pos = np.clip(np.searchsorted(edges, horizon_steps, side="right") - 1, 0, len(table) - 1)
        return table[pos]

    def _fit_common(self, y: pd.Series) -> pd.Series:
        y = _validate_series(y, self.name)
        self.name_ = self.name or (y.name if isinstance(y.name, str) else "value")
        self.step_ = _infer_step(y.index)
        y = _regular(y, self.step_)
        self.train_end_ = y.index.max() + self.step_
        self.train_range_ = (float(np.nanmin(y.values)), float(np.nanmax(y.values)))
        return y

    def _fit_residuals(self, y: pd.Series, max_horizon: pd.Timedelta) -> None:
        """Residual quantiles by horizon from backtests on the last training block."""
        steps_per_day = int(DAY / self.step_)
        horizon_steps = int(max_horizon / self.step_)
        issues = _issue_times(y.index, self.step_, every=DAY)
        issues = issues[issues >= y.index[0] + 2 * WEEK]
        cut = int(len(issues) * 0.8)
        calib = issues[cut:] if len(issues) - cut >= 7 else issues[-7:]
        res, hs = [], []
        for issue in calib:
            idx = pd.date_range(issue, periods=horizon_steps, freq=self.step_)
            idx = idx[idx <= y.index[-1]]
            if len(idx) == 0:
                continue
            pred = self._point(y[y.index < issue], issue, idx)
            obs = y.reindex(idx).to_numpy()
            res.append(obs - pred)
            hs.append(_horizon_steps(idx, issue, self.step_))
        self._set_residual_table(np.concatenate(res) if res else np.zeros(1),
                                 np.concatenate(hs) if hs else np.ones(1), steps_per_day)

    def _set_residual_table(self, res: np.ndarray, hs: np.ndarray, steps_per_day: int) -> None:
        ok = np.isfinite(res)
        res, hs = res[ok], hs[ok]
        # buckets of a quarter day; a bucket without data borrows the overall spread
        width = max(steps_per_day // 4, 1)
        top = int(hs.max()) if len(hs) else 1
        edges = np.arange(1, top + width, width)
        rows = []
        overall = _stats(res)
        for lo in edges:
            sel = (hs >= lo) & (hs < lo + width)
            rows.append(_stats(res[sel]) if sel.sum() >= 20 else overall)
        self.residual_edges_ = edges
        self.residual_quantiles_ = np.array(rows)

    def predict_day_ahead(self, history: pd.Series, issue_time, index) -> pd.DataFrame:
        """Forecast ``index`` from observations of ``history`` strictly before ``issue_time``."""
        y, issue = self._history(history, issue_time)
        idx = self._target_index(index, issue)
        point = self._point(y, issue, idx)
        return self._frame(idx, point, _horizon_steps(idx, issue, self.step_))

    def predict(self, X) -> np.ndarray:  # scikit-learn compatibility: X is (history, issue, index)
        history, issue_time, index = X
        return self.predict_day_ahead(history, issue_time, index)[self.name_].to_numpy()


def _ns(index: pd.DatetimeIndex) -> np.ndarray:
    """Nanoseconds since the epoch (UTC) of each timestamp, whatever the index's resolution."""
    return index.asi8 * {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}[index.unit]


def _clock(t0: pd.Timestamp, pos: np.ndarray, step: pd.Timedelta) -> tuple[np.ndarray, np.ndarray]:
    """(hour of day with minutes as a fraction, day of week, Monday = 0) at ``t0 + pos * step``."""
    ns = pd.Timestamp(t0).value + np.asarray(pos, dtype=np.int64) * step.value
    if str(t0.tz) not in ("UTC", "UTC+00:00"):  # local clocks: let pandas apply the zone
        times = pd.DatetimeIndex(pd.to_datetime(ns, unit="ns", utc=True)).tz_convert(t0.tz)
        return (times.hour + times.minute / 60.0).to_numpy(), times.dayofweek.to_numpy()
    day_ns = 86_400 * 10**9
    minute_of_day = (ns % day_ns) // (60 * 10**9)  # whole minutes, as hour + minute / 60 counts them
    dow = (ns // day_ns + 3) % 7  # 1970-01-01 was a Thursday (3)
    return minute_of_day / 60.0, dow


def _stats(res: np.ndarray) -> list[float]:
    if len(res) == 0:
        return [0.0] * (len(QUANTILES) + 1)
    return [float(np.quantile(res, q)) for q in QUANTILES] + [float(np.std(res))]


def _horizon_steps(idx: pd.DatetimeIndex, issue: pd.Timestamp, step: pd.Timedelta) -> np.ndarray:
    """Steps from the last observation (issue - step) to each target: 1 for the first."""
    return np.asarray((idx - issue) // step + 1, dtype=int)


def _issue_times(index: pd.DatetimeIndex, step: pd.Timedelta, every: pd.Timedelta,
                 hour: int = 0) -> pd.DatetimeIndex:
    start = index[0].normalize() + pd.Timedelta(hours=hour)
    if start < index[0]:
        start += DAY
    return pd.date_range(start, index[-1], freq=every)


def _lag(y: pd.Series, idx: pd.DatetimeIndex, offsets: np.ndarray | pd.Timedelta) -> np.ndarray:
    return y.reindex(idx - offsets).to_numpy()


def _same_step_latest_day(y: pd.Series, issue: pd.Timestamp, idx: pd.DatetimeIndex, step: pd.Timedelta):
    """Offsets (whole days) back to the same step on the latest day observed before ``issue``."""
    last_obs = issue - step
    days = np.ceil(((idx - last_obs) / DAY)).astype(int)
    days = np.maximum(days, 1)
    return pd.to_timedelta(days, unit="D")


class _NaiveForecaster(_BaseForecaster):
    """A baseline with no learned point model: fit only records the step and the residual spread."""

    def __init__(self, name: str | None = None, max_horizon_h: float = 48.0):
        self.name = name
        self.max_horizon_h = max_horizon_h

    def fit(self, y: pd.Series, X=None):
        y = self._fit_common(y)
        self._fit_residuals(y, pd.Timedelta(hours=self.max_horizon_h))
        return self


class PersistenceForecaster(_NaiveForecaster):
    """Same step on the most recent observed day (same hour yesterday, day-ahead)."""

    def _point(self, y: pd.Series, issue: pd.Timestamp, idx: pd.DatetimeIndex) -> np.ndarray:
        off = _same_step_latest_day(y, issue, idx, self.step_)
        p = _lag(y, idx, off)
        p2 = _lag(y, idx, off + DAY)  # a gap in yesterday falls back to the day before
        return _fill_last(np.where(np.isfinite(p), p, p2), y)


class SeasonalNaiveForecaster(_NaiveForecaster):
    """Same step one week earlier (weekly season), falling back to persistence."""

    def _point(self, y: pd.Series, issue: pd.Timestamp, idx: pd.DatetimeIndex) -> np.ndarray:
        weeks = np.maximum(np.ceil(((idx - (issue - self.step_)) / WEEK)).astype(int), 1)
        p = _lag(y, idx, pd.to_timedelta(7 * weeks, unit="D"))
        off = _same_step_latest_day(y, issue, idx, self.step_)
        return _fill_last(np.where(np.isfinite(p), p, _lag(y, idx, off)), y)


def _fill_last(p: np.ndarray, y: pd.Series) -> np.ndarray:
    last = y.dropna().iloc[-1]
    return np.where(np.isfinite(p), p, last)


# --------------------------------------------------------------------------------------
# the learned forecaster
# --------------------------------------------------------------------------------------
class _LagForecaster(_BaseForecaster):
    """Direct multi-horizon gradient-boosting forecaster on calendar and lag features.

    Parameters
    ----------
    name : column forecast (``gco2_per_kwh``, ``cpu_util`` ...); ``None`` takes the series name.
    max_horizon_h : longest horizon trained, hours (48 covers a day-ahead forecast issued
        at noon for the next day).
    issue_every_h : spacing of the training issue times, hours (from 00:00 UTC).
    issue_hours : UTC hours of day at which forecasts will be issued (e.g. ``(0, 4, 8, 12,
        16, 20)`` for a 4-hourly re-plan); training issue times are those hours each day, and
        ``issue_every_h`` is ignored. The model is one ridge per (issue hour, horizon): an
        issue hour it was not trained on borrows the nearest one, whose persistence base and
        lags mean other things (CISO 2022 issued every 4 h: MAPE 10.4 % against 9.5 % when
        trained on the hours used; benchmarks/bench_forecast_issue_hours.py).
    max_iter, learning_rate, max_leaf_nodes : passed to ``HistGradientBoostingRegressor``.
    """

    def __init__(self, name: str | None = None, max_horizon_h: float = 48.0, issue_every_h: float = 6.0,
                 estimator: str = "linear", alpha: float | None = None,
                 log_target: bool = False,
                 max_iter: int = 200, learning_rate: float = 0.05, max_leaf_nodes: int = 31,
                 random_state: int = 0, issue_hours: tuple[float, ...] | None = None):
        if estimator not in ("linear", "hgb"):
            raise ValueError(f"estimator must be 'linear' or 'hgb', got {estimator!r}")
        self.name = name
        self.issue_hours = issue_hours
        self.estimator = estimator
        self.alpha = alpha
        self.log_target = log_target
        self.max_horizon_h = max_horizon_h
        self.issue_every_h = issue_every_h
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.random_state = random_state

    FEATURES = ("horizon_steps", "hour_sin", "hour_cos", "dow", "issue_hour",
                "lag_day", "lag_2day", "lag_week", "mean_7day_same_step",
                "last", "mean_24h", "last_minus_mean_24h", "last_minus_day_before")

    def _features(self, y: pd.Series, issue: pd.Timestamp, idx: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
        """Feature matrix for one issue time and the persistence baseline it corrects."""
        step = self.step_
        hs = _horizon_steps(idx, issue, step)
        off = _same_step_latest_day(y, issue, idx, step)
        lag_day = _lag(y, idx, off)
        lag_2day = _lag(y, idx, off + DAY)
        weeks = np.maximum(np.ceil(((idx - (issue - step)) / WEEK)).astype(int), 1)
        lag_week = _lag(y, idx, pd.to_timedelta(7 * weeks, unit="D"))
        same = np.column_stack([_lag(y, idx, off + k * DAY) for k in range(7)])
        with np.errstate(all="ignore"):
            mean7 = np.nanmean(np.where(np.isfinite(same), same, np.nan), axis=1)
        recent = y[y.index >= issue - DAY].dropna()
        last = float(recent.iloc[-1]) if len(recent) else float(y.dropna().iloc[-1])
        mean24 = float(recent.mean()) if len(recent) else last
        base = np.where(np.isfinite(lag_day), lag_day, np.where(np.isfinite(mean7), mean7, last))
        # the anomaly now: the last observation against the same step a day before it
        prev = y.get(recent.index[-1] - DAY, np.nan) if len(recent) else np.nan
        prev_day = float(prev) if np.isfinite(prev) else last
        hour = (idx.hour + idx.minute / 60.0).to_numpy()
        X = np.column_stack([
            hs,
            np.sin(2 * np.pi * hour / 24), np.cos(2 * np.pi * hour / 24),
            idx.dayofweek.to_numpy(),
            np.full(len(idx), issue.hour + issue.minute / 60.0),
            lag_day - base, lag_2day - base, lag_week - base, mean7 - base,
            np.full(len(idx), last) - base, np.full(len(idx), mean24) - base,
            np.full(len(idx), last - mean24),
            np.full(len(idx), last - prev_day),
        ])
        return X, base

    def _grid_features(self, z: pd.Series, ipos: np.ndarray, tpos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_features` for many (issue, target) rows at once, by position on ``z``'s grid.

        ``z`` is on its regular grid; row r forecasts position ``tpos[r]`` from the values
        before position ``ipos[r]`` (its issue time). Same features as :meth:`_features`
        (tested equal), without a pandas reindex per lag and issue: a year of hourly
        training issues in milliseconds instead of seconds.
        """
        v = z.to_numpy(dtype=float)
        n = len(v)
        spd = int(DAY // self.step_)
        ipos = np.asarray(ipos, dtype=np.int64)
        tpos = np.asarray(tpos, dtype=np.int64)
        k = tpos - ipos  # steps after the issue time (0 for the first target)

        def at(pos):
            ok = (pos >= 0) & (pos < n) & (pos < ipos)  # only what was observed before the issue
            out = np.full(len(pos), np.nan)
            out[ok] = v[pos[ok]]
            return out

        off = (k + spd) // spd * spd  # back to the same step on the latest observed day
        lag_day = at(tpos - off)
        lag_2day = at(tpos - off - spd)
        lag_week = at(tpos - (k + 7 * spd) // (7 * spd) * 7 * spd)
        same = np.column_stack([at(tpos - off - j * spd) for j in range(7)])
        with np.errstate(all="ignore"):
            mean7 = np.nanmean(same, axis=1)
        # last observation before the issue and the mean of the day before it
        fin = np.isfinite(v)
        last_pos = np.maximum.accumulate(np.where(fin, np.arange(n), -1))
        upto = np.clip(ipos, 0, n)  # values at positions < upto are observed
        lp = np.where(upto > 0, last_pos[np.maximum(upto - 1, 0)], -1)
        last = np.where(lp >= 0, v[np.maximum(lp, 0)], np.nan)
        csum = np.concatenate([[0.0], np.cumsum(np.where(fin, v, 0.0))])
        ccnt = np.concatenate([[0], np.cumsum(fin)])
        lo = np.clip(ipos - spd, 0, n)
        cnt = ccnt[upto] - ccnt[lo]
        with np.errstate(all="ignore"):
            mean24 = np.where(cnt > 0, (csum[upto] - csum[lo]) / np.maximum(cnt, 1), last)
        base = np.where(np.isfinite(lag_day), lag_day, np.where(np.isfinite(mean7), mean7, last))
        # the anomaly now: the last observation against the same step a day before it
        prev = np.full(len(lp), np.nan)
        okp = (lp - spd) >= 0
        prev[okp] = v[lp[okp] - spd]
        prev_day = np.where(np.isfinite(prev), prev, last)
        hour, dow = _clock(z.index[0], tpos, self.step_)
        issue_hour, _ = _clock(z.index[0], ipos, self.step_)
        X = np.column_stack([
            k + 1,
            np.sin(2 * np.pi * hour / 24), np.cos(2 * np.pi * hour / 24),
            dow,
            issue_hour,
            lag_day - base, lag_2day - base, lag_week - base, mean7 - base,
            last - base, mean24 - base, last - mean24,
            last - prev_day,
        ])
        return X, base

    def _training_issues(self, index: pd.DatetimeIndex) -> pd.DatetimeIndex:
        """Training issue times: ``issue_hours`` each day, else every ``issue_every_h`` from 00:00."""
        if self.issue_hours is None:
            return _issue_times(index, self.step_, every=pd.Timedelta(hours=self.issue_every_h))
        hours = sorted({float(h) % 24.0 for h in self.issue_hours})
        if not hours:
            raise ValueError("issue_hours is empty: give at least one UTC hour of day")
        return pd.DatetimeIndex(sorted(t for h in hours for t in _issue_times(index, self.step_, every=DAY, hour=h)))

    def _positions(self, z: pd.Series, times) -> np.ndarray | None:
        """Grid positions of ``times`` on ``z``'s index, or None if any is off the grid."""
        if len(z) == 0:
            return None
        d = _ns(pd.DatetimeIndex(times)) - pd.Timestamp(z.index[0]).value
        step = self.step_.value  # ns
        if (d % step != 0).any():
            return None
        return d // step

    def fit(self, y: pd.Series, X=None) -> "_LagForecaster":
        """Learn from the series ``y``; every training target lies before ``y``'s end."""
        from sklearn.ensemble import HistGradientBoostingRegressor

        y = self._fit_common(y)
        horizon = pd.Timedelta(hours=self.max_horizon_h)
        n_h = int(horizon / self.step_)
        issues = self._training_issues(y.index)
        issues = issues[(issues >= y.index[0] + WEEK + DAY) & (issues <= y.index[-1])]
        # the first 8 days only feed the lags; then at least 4 days of training issue times
        # (whatever the issue hours: one a day for a nightly plan, six for a 4-hourly loop)
        if len(np.unique(issues.normalize())) < 4:
            raise ValueError(
                f"{self.name_}: need at least 12 days of history to fit, ~3 weeks for a useful model "
                f"(got {len(y)} steps from {y.index[0]} to {y.index[-1]})"
            )
        self.log_ = bool(self.log_target and np.nanmin(y.values) > 0)
        z = np.log(y) if self.log_ else y  # the model works in log space for positive series
        # the calibration block: the last 20 % of issue times, at least the last week (a block
        # of a day or two, all the first weeks of history give, picks the penalty by noise)
        cut = min(issues[int(len(issues) * 0.8)], issues[-1] - CALIBRATION_MIN)
        ipos = self._positions(z, issues)
        if ipos is not None:
            # every issue time and its targets at once, by position on the grid
            tpos = (ipos[:, None] + np.arange(n_h)[None, :]).ravel()
            ipos = np.repeat(ipos, n_h)
            keep = tpos < len(z)
            ipos, tpos = ipos[keep], tpos[keep]
            Xall, ball = self._grid_features(z, ipos, tpos)
            obs = z.to_numpy(dtype=float)[tpos]
            ok = np.isfinite(obs) & np.isfinite(ball)
            Xall, ball, tall = Xall[ok], ball[ok], obs[ok] - ball[ok]
            iall = z.index[0].value + ipos[ok] * self.step_.value
        else:  # issue times off the series' grid: one issue at a time
            rows = {"X": [], "t": [], "issue": [], "base": []}
            for issue in issues:
                idx = pd.date_range(issue, periods=n_h, freq=self.step_)
                idx = idx[idx <= z.index[-1]]
                obs = z.reindex(idx).to_numpy()
                Xi, base = self._features(z[z.index < issue], issue, idx)
                ok = np.isfinite(obs) & np.isfinite(base)
                rows["X"].append(Xi[ok])
                rows["t"].append(obs[ok] - base[ok])
                rows["base"].append(base[ok])
                rows["issue"].append(np.full(ok.sum(), issue.value))
            Xall = np.vstack(rows["X"])
            tall = np.concatenate(rows["t"])
            iall = np.concatenate(rows["issue"])
            ball = np.concatenate(rows["base"])

        def model(alpha):
            if self.estimator == "linear":
                return _PerHorizonRidge(alpha=alpha)
            return HistGradientBoostingRegressor(
                max_iter=self.max_iter, learning_rate=self.learning_rate,
                max_leaf_nodes=self.max_leaf_nodes, random_state=self.random_state,
                early_stopping=False)

        # 1) time-block calibration: fit on issue times whose targets all end before the last
        #    20 % of issue times (no leak), score that block. It picks the ridge penalty
        #    (a large penalty shrinks the model to persistence) and gives the residual spread.
        first = (iall + int(horizon.value)) <= cut.value
        cal = iall >= cut.value
        alphas = [self.alpha] if self.alpha is not None or self.estimator != "linear" else list(ALPHA_GRID)
        # too little history to calibrate: the largest penalty, a model near persistence
        best = (np.inf, alphas[-1], None)
        if first.sum() > 100 and cal.sum() > 100:
            obs_cal = self._inverse(ball[cal] + tall[cal])
            for a in alphas:
                m = model(a).fit(Xall[first], tall[first])
                pred = self._inverse(ball[cal] + m.predict(Xall[cal]))
                mape = float(np.mean(np.abs(pred - obs_cal) / np.maximum(np.abs(obs_cal), 1e-9)))
                if mape < best[0]:
                    best = (mape, a, obs_cal - pred)
        self.alpha_ = best[1]
        if best[2] is not None:
            self._set_residual_table(best[2], Xall[cal, 0].astype(int), int(DAY / self.step_))
        else:
            self._set_residual_table(np.zeros(1), np.ones(1), int(DAY / self.step_))
        # 2) the final model on everything
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="openmp"):  # see thermal._openmp_threads
            self.regressor_ = model(self.alpha_).fit(Xall, tall)
        self.n_training_rows_ = int(len(tall))
        return self

    def _inverse(self, z: np.ndarray) -> np.ndarray:
        return np.exp(z) if self.log_ else z

    def _point(self, y: pd.Series, issue: pd.Timestamp, idx: pd.DatetimeIndex) -> np.ndarray:
        z = np.log(y.where(y > 0)) if self.log_ else y
        tpos = self._positions(z, idx)
        ipos = self._positions(z, [issue])
        if tpos is None or ipos is None:
            X, base = self._features(z, issue, idx)
        else:
            X, base = self._grid_features(z, np.full(len(tpos), ipos[0]), tpos)
        return self._inverse(base + self.regressor_.predict(X))


# Shortest calibration block: a week of issue times, so that every weekday is scored.
CALIBRATION_MIN = pd.Timedelta(days=7)
# Ridge penalties tried on the calibration block (features are in the series' own units,
# or log units; the largest values shrink the model to persistence).
ALPHA_GRID = (0.01, 0.1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5)


class CarbonIntensityForecaster(_LagForecaster):
    """Grid carbon-intensity forecaster (gCO2/kWh); see the module docstring."""

    def __init__(self, name: str | None = CARBON_GCO2_PER_KWH, max_horizon_h: float = 48.0,
                 issue_every_h: float = 6.0, estimator: str = "linear", alpha: float | None = None,
                 log_target: bool = False,
                 max_iter: int = 200, learning_rate: float = 0.05, max_leaf_nodes: int = 31,
                 random_state: int = 0, issue_hours: tuple[float, ...] | None = None):
        super().__init__(name, max_horizon_h, issue_every_h, estimator, alpha, log_target, max_iter, learning_rate,
                         max_leaf_nodes, random_state, issue_hours)


class WorkloadForecaster(_LagForecaster):
    """Workload forecaster (``cpu_util`` or a ``<class>_units_per_h`` demand column)."""

    def __init__(self, name: str | None = CPU_UTIL, max_horizon_h: float = 48.0,
                 issue_every_h: float = 6.0, estimator: str = "linear", alpha: float | None = None,
                 log_target: bool = False,
                 max_iter: int = 200, learning_rate: float = 0.05, max_leaf_nodes: int = 31,
                 random_state: int = 0, issue_hours: tuple[float, ...] | None = None):
        super().__init__(name, max_horizon_h, issue_every_h, estimator, alpha, log_target, max_iter, learning_rate,
                         max_leaf_nodes, random_state, issue_hours)


# --------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------
def day_ahead_backtest(forecaster: _BaseForecaster, y: pd.Series, start, end=None, issue_hour: int = 0,
                       horizon_h: float = 24.0) -> pd.DataFrame:
    """Issue one forecast a day at ``issue_hour`` UTC for the next ``horizon_h`` hours.

    Each forecast sees only ``y`` before its issue time. Returns a long frame with
    ``issue_time``, ``timestamp``, ``actual`` and the forecast columns.
    """
    y = _validate_series(y, forecaster.name_)
    start = pd.Timestamp(start)
    end = pd.Timestamp(end) if end is not None else y.index[-1] + forecaster.step_
    issues = _issue_times(y.index[y.index >= start], forecaster.step_, every=DAY, hour=issue_hour)
    yr = _regular(y, forecaster.step_)
    out = []
    n = int(pd.Timedelta(hours=horizon_h) / forecaster.step_)
    for issue in issues:
        idx = pd.date_range(issue, periods=n, freq=forecaster.step_)
        idx = idx[idx < end]
        if len(idx) == 0:
            continue
        f = forecaster.predict_day_ahead(yr, issue, idx)
        f["actual"] = yr.reindex(idx).to_numpy()
        f["issue_time"] = issue
        out.append(f)
    if not out:
        raise ValueError(f"no forecast issue time between {start} and {end}")
    return pd.concat(out)


def forecast_quantile(forecast: pd.DataFrame, name: str, level: float) -> pd.Series:
    """The ``level`` quantile of a forecast frame's ``name``, linear between its q10, q50 and q90.

    ``level`` outside [0.1, 0.9] is an error: the frame carries no tail beyond those bands.
    """
    if not 0.1 <= float(level) <= 0.9:
        raise ValueError(f"quantile level {level} is outside the forecast's bands [0.1, 0.9]")
    cols = [f"{name}_q{int(round(q * 100)):02d}" for q in QUANTILES]
    missing = [c for c in cols if c not in forecast.columns]
    if missing:
        raise ValueError(f"forecast frame has no column(s) {missing} for the {level} quantile of {name!r}")
    lo, hi = (0, 1) if level <= 0.5 else (1, 2)
    w = (float(level) - QUANTILES[lo]) / (QUANTILES[hi] - QUANTILES[lo])
    out = (1.0 - w) * forecast[cols[lo]] + w * forecast[cols[hi]]
    return out.rename(name)


def forecast_scores(actual, predicted) -> dict[str, float]:
    """MAPE and bias in percent over the steps where both are finite.

    ``bias_pct`` is the mean error over the mean actual (positive: over-forecast).
    """
    a = np.asarray(actual, dtype=float)
    p = np.asarray(predicted, dtype=float)
    ok = np.isfinite(a) & np.isfinite(p) & (np.abs(a) > 1e-9)
    if not ok.any():
        raise ValueError("no overlapping finite values to score")
    a, p = a[ok], p[ok]
    return {
        "mape_pct": float(np.mean(np.abs(p - a) / np.abs(a)) * 100.0),
        "bias_pct": float((p - a).mean() / np.abs(a).mean() * 100.0),
        "mae": float(np.mean(np.abs(p - a))),
        # robust to near-zero actuals (a marginal signal can drop to ~35 g and blow up MAPE)
        "median_ape_pct": float(np.median(np.abs(p - a) / np.abs(a)) * 100.0),
        "n": int(ok.sum()),
    }


class _PerHorizonRidge(BaseEstimator, RegressorMixin):
    """One ridge regression per (issue hour, horizon step): a direct multi-horizon model.

    Column 0 of X is the horizon in steps and column 4 the issue hour; ``columns`` are the
    regressors. No intercept: with every feature at zero the forecast is persistence.
    An issue hour not seen in training uses the nearest trained one. Each group's ridge
    is solved in closed form, ``(X'X + alpha I) w = X'y`` (what scikit-learn's ``Ridge``
    solves for dense data), all groups in one batched solve: ``coef_`` is (groups, columns)
    and ``keys_`` the (issue hour, horizon) of each row of it.
    """

    def __init__(self, columns=(1, 2, 5, 6, 7, 8, 9, 10, 11, 12), alpha: float = 1.0, fit_intercept: bool = False):
        self.columns = columns
        self.alpha = alpha
        self.fit_intercept = fit_intercept

    def fit(self, X: np.ndarray, y: np.ndarray) -> "_PerHorizonRidge":
        X = np.asarray(X, dtype=float)
        y = np.asarray(y, dtype=float)
        if X.ndim != 2 or len(X) != len(y) or len(y) == 0:
            raise ValueError(f"X must be (n, features) and y (n,) with n > 0; got {X.shape} and {y.shape}")
        A = np.nan_to_num(X[:, list(self.columns)])
        keys, g = np.unique(np.column_stack([X[:, 4], X[:, 0]]), axis=0, return_inverse=True)
        g = g.ravel()
        G, m = len(keys), A.shape[1]
        cnt = np.bincount(g, minlength=G).astype(float)
        if self.fit_intercept:  # centre each group (an unpenalised intercept)
            xm = np.stack([np.bincount(g, A[:, j], G) for j in range(m)], axis=1) / cnt[:, None]
            ym = np.bincount(g, y, G) / cnt
            A = A - xm[g]
            y = y - ym[g]
        gram = np.zeros((G, m, m))
        np.add.at(gram, g, A[:, :, None] * A[:, None, :])
        xty = np.stack([np.bincount(g, A[:, j] * y, G) for j in range(m)], axis=1)
        self.coef_ = np.linalg.solve(gram + self.alpha * np.eye(m)[None], xty[:, :, None])[:, :, 0]
        self.intercept_ = (ym - np.einsum("gj,gj->g", xm, self.coef_)) if self.fit_intercept else np.zeros(G)
        self.keys_ = np.column_stack([keys[:, 0], keys[:, 1].astype(int)])
        self.issue_hours_ = np.unique(keys[:, 0])
        return self

    def _groups(self, X: np.ndarray) -> np.ndarray:
        """Row of ``coef_`` for each row of X: nearest trained issue hour (on the 24-h
        circle), then the first trained horizon at or after the row's (the last one beyond)."""
        g = np.empty(len(X), dtype=np.int64)
        for ih in np.unique(X[:, 4]):
            d = np.abs(self.issue_hours_ - ih)
            d = np.minimum(d, 24 - d)
            near = self.issue_hours_[np.argmin(d)]
            rows_k = np.flatnonzero(self.keys_[:, 0] == near)  # sorted by horizon (np.unique order)
            hs = self.keys_[rows_k, 1]
            sel = X[:, 4] == ih
            g[sel] = rows_k[np.clip(np.searchsorted(hs, X[sel, 0]), 0, len(hs) - 1)]
        return g

    def predict(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=float)
        g = self._groups(X)
        A = np.nan_to_num(X[:, list(self.columns)])
        return np.einsum("ij,ij->i", A, self.coef_[g]) + self.intercept_[g]


# --------------------------------------------------------------------------------------
# weather: persistence of today's anomaly on top of the recent diurnal profile
# --------------------------------------------------------------------------------------
class WeatherForecaster(_BaseForecaster):
    """Dry-bulb temperature or humidity: the recent diurnal profile plus the current anomaly, decayed.

    ``profile_days``: the profile is the mean of the same step over the last days observed
    before the issue. The anomaly is the last observation minus the profile at its step;
    it persists at horizon ``h`` with weight ``phi_h``, fitted by least squares (through the
    origin) on the training history, one per horizon step: persistence at short horizons,
    the diurnal profile alone once the anomaly has no skill. No numerical weather
    prediction: an issued forecast (Open-Meteo) does better where one is available; this
    is what a site without one can do from its own past.
    """

    def __init__(self, name: str | None = None, max_horizon_h: float = 48.0, profile_days: int = 7,
                 issue_every_h: float = 6.0):
        self.name = name
        self.max_horizon_h = max_horizon_h
        self.profile_days = profile_days
        self.issue_every_h = issue_every_h

    def _profile(self, v: np.ndarray, target: np.ndarray, latest_day: np.ndarray) -> np.ndarray:
        """Mean of ``v`` at ``target - (latest_day + k) * steps_per_day`` for k < profile_days (NaN-aware)."""
        spd = int(DAY / self.step_)
        pos = target[..., None] - (latest_day[..., None] + np.arange(self.profile_days)) * spd
        ok = pos >= 0
        vals = np.where(ok, v[np.clip(pos, 0, len(v) - 1)], np.nan)
        n = np.isfinite(vals).sum(axis=-1)
        return np.where(n > 0, np.nansum(vals, axis=-1) / np.maximum(n, 1), np.nan)

    def _anomaly_forecast(self, v: np.ndarray, last: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(profile at each target, anomaly at the last observation) for last positions ``last``
        (n,) and horizon steps ``h`` (m,): arrays (n, m) and (n, 1)."""
        spd = int(DAY / self.step_)
        target = last[:, None] + h[None, :]
        latest_day = np.ceil(h / spd).astype(int)[None, :] * np.ones_like(target)
        prof = self._profile(v, target, latest_day)
        a0 = v[last] - self._profile(v, last, np.ones_like(last))
        return prof, a0[:, None]

    def fit(self, y: pd.Series, X=None) -> "WeatherForecaster":
        y = self._fit_common(y)
        v = y.to_numpy(dtype=float)
        spd = int(DAY / self.step_)
        n_h = max(int(pd.Timedelta(hours=self.max_horizon_h) / self.step_), 1)
        every = max(int(pd.Timedelta(hours=self.issue_every_h) / self.step_), 1)
        last = np.arange(self.profile_days * spd, len(v) - 1, every)
        h = np.arange(1, n_h + 1)
        self.phi_ = np.zeros(n_h)
        if len(last):
            prof, a0 = self._anomaly_forecast(v, last, h)
            target = last[:, None] + h[None, :]
            ah = np.where(target < len(v), v[np.clip(target, 0, len(v) - 1)], np.nan) - prof
            ok = np.isfinite(ah) & np.isfinite(a0)
            num = np.where(ok, a0 * ah, 0.0).sum(axis=0)
            den = np.where(ok, a0 * a0, 0.0).sum(axis=0)
            self.phi_ = np.clip(np.where(den > 0, num / np.maximum(den, 1e-12), 0.0), 0.0, 1.0)
        self._fit_residuals(y, pd.Timedelta(hours=self.max_horizon_h))
        return self

    def _point(self, y: pd.Series, issue: pd.Timestamp, idx: pd.DatetimeIndex) -> np.ndarray:
        v = y.to_numpy(dtype=float)
        finite = np.flatnonzero(np.isfinite(v))
        last = int(finite[-1])
        t0 = y.index[0]
        h = np.asarray((idx - t0) // self.step_, dtype=int) - last
        h = np.maximum(h, 1)
        prof, a0 = self._anomaly_forecast(v, np.array([last]), h)
        phi = self.phi_[np.clip(h - 1, 0, len(self.phi_) - 1)]
        a0 = np.nan_to_num(a0, nan=0.0)
        p = prof[0] + phi * a0[0]
        # no profile yet (less than a day of history): persistence of the last value
        return np.where(np.isfinite(p), p, v[last])
