"""Measurement and verification of savings (IPMVP Option C, ASHRAE Guideline 14-2014).

A baseline model of the whole facility is fitted on a pre-period of metered data (facility
energy against IT load and outside temperature, with a cooling change point), then driven by
the post-period's IT load and weather: the *adjusted baseline*, what the site would have used
without the change. Avoided energy = adjusted baseline - metered; avoided carbon uses the
post-period's hourly grid factors. The uncertainty follows Guideline 14's fractional savings
uncertainty (FSU) with the residual autocorrelation correction, so a verifier can recompute it
from the numbers this module reports.

Choice of the load variable matters: with IT *power* as the driver, savings that lower IT
power (consolidation, server fans) move the baseline too and are *not* credited: only
facility overhead (cooling, losses) savings are measured. Give a work-demand column
(e.g. served work units) as ``load_column`` to credit IT savings as well.

References
----------
- EVO, IPMVP Core Concepts (2022), Option C: whole facility, routine adjustments for
  independent variables (weather, production/IT load).
- ASHRAE Guideline 14-2014, "Measurement of Energy, Demand, and Water Savings":
  CV(RMSE) and NMBE with n - p degrees of freedom (Annex B / sec. 5.2.11); savings
  uncertainty Annex B, approximation of Reddy & Claridge (2000):
  FSU = t * 1.26 * CV * sqrt((n / n') * (1 + 2 / n') / m) / F, n' = n (1 - rho) / (1 + rho);
  compliance (sec. 4.1.2, prescriptive whole-building path): baseline CV(RMSE) <= 20 %
  (< 12 months of post data; 25 % for 12-60 months, 30 % beyond), net determination bias
  <= 0.005 %, savings uncertainty < 50 % of reported savings at 68 % confidence.
- Kissock, Haberl & Claridge (2003), ASHRAE RP-1050 Inverse Modeling Toolkit: change-point
  models fitted by a grid search over the balance point.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.linear_model import LinearRegression
from sklearn.utils.validation import check_is_fitted

from coolshift.reports.carbon import reduction_split, step_hours

__all__ = [
    "ChangePointBaseline", "cv_rmse", "nmbe", "lag1_autocorrelation", "effective_n",
    "fractional_savings_uncertainty", "cv_rmse_threshold", "mv_intervals", "with_weather_driver", "MVResult", "verify_savings",
    "NMBE_MAX_PCT", "FSU_MAX", "FSU_CONFIDENCE",
]

# ASHRAE Guideline 14-2014 sec. 4.1.2: net determination bias of the baseline model.
NMBE_MAX_PCT = 0.005
# ASHRAE Guideline 14-2014 sec. 4.1.2: savings uncertainty below 50 % at 68 % confidence.
FSU_MAX = 0.50
FSU_CONFIDENCE = 0.68
# Reddy & Claridge (2000) empirical factor in the Guideline 14 FSU approximation.
FSU_EMPIRICAL_FACTOR = 1.26
# Candidate balance points [degC]: cooling in data centres starts from low outside
# temperatures (economiser limits), so the grid spans the whole temperate range.
DEFAULT_BALANCE_POINTS_C = tuple(float(x) for x in np.arange(-5.0, 31.0, 1.0))


def cv_rmse(y, y_hat, n_params: int) -> float:
    """CV(RMSE) [-] = sqrt(sum (y - y_hat)^2 / (n - p)) / mean(y) (Guideline 14 Annex B)."""
    y, y_hat = np.asarray(y, float), np.asarray(y_hat, float)
    dof = max(len(y) - n_params, 1)
    return float(np.sqrt(((y - y_hat) ** 2).sum() / dof) / y.mean())


def nmbe(y, y_hat, n_params: int) -> float:
    """NMBE [-] = sum (y - y_hat) / ((n - p) mean(y)) (Guideline 14 Annex B); positive = model low."""
    y, y_hat = np.asarray(y, float), np.asarray(y_hat, float)
    dof = max(len(y) - n_params, 1)
    return float((y - y_hat).sum() / (dof * y.mean()))


def lag1_autocorrelation(residuals) -> float:
    """Lag-1 autocorrelation of model residuals (rho in Guideline 14's n')."""
    r = np.asarray(residuals, float)
    r = r - r.mean()
    den = (r * r).sum()
    return float((r[1:] * r[:-1]).sum() / den) if den > 0 and len(r) > 2 else 0.0


def effective_n(n: int, rho: float) -> float:
    """Effective number of independent points n' = n (1 - rho) / (1 + rho); rho < 0 taken as 0."""
    rho = max(float(rho), 0.0)
    return n * (1.0 - rho) / (1.0 + rho)


def fractional_savings_uncertainty(cv: float, n: int, n_eff: float, m: int, savings_fraction: float,
                                   n_params: int, confidence: float = FSU_CONFIDENCE) -> float:
    """Guideline 14 FSU [-]: uncertainty of the total savings over ``m`` post points as a fraction of them."""
    if m <= 0 or n_eff <= 1 or savings_fraction == 0:
        return float("inf")
    dof = max(n_eff - n_params, 1.0)
    t = float(stats.t.ppf(0.5 + confidence / 2.0, dof))
    return float(t * FSU_EMPIRICAL_FACTOR * cv * np.sqrt((n / n_eff) * (1.0 + 2.0 / n_eff) / m) / abs(savings_fraction))


def cv_rmse_threshold(post_months: float) -> float:
    """Guideline 14 sec. 4.1.2 maximum baseline CV(RMSE) for energy, by length of the post period."""
    return 0.20 if post_months < 12 else (0.25 if post_months <= 60 else 0.30)


class ChangePointBaseline(BaseEstimator, RegressorMixin):
    """Facility energy per interval from IT load and outside temperature, with cooling change points.

    ``E = b0 + b1 load + sum_k [c_k (T - Tb_k)+ + d_k load (T - Tb_k)+ / mean load]``: base load
    plus load-proportional overhead, plus cooling that grows above each balance point ``Tb_k``
    (and, with ``interaction``, grows with the heat it rejects). Up to ``max_change_points``
    (1 or 2: a water-side economiser gives a second knee where free cooling runs out). The
    balance points are chosen by grid search (RP-1050) and the number of them by BIC, so a
    site with no weather dependence gets the load-only model and extra knees must pay for
    themselves.

    ``X``: frame with columns ``load`` and ``temp_c`` (interval means), optionally the interval
    means ``cdh__<Tb>``/``lcdh__<Tb>`` of :func:`mv_intervals`; ``y``: energy per interval.
    """

    def __init__(self, balance_points_c=DEFAULT_BALANCE_POINTS_C, interaction: bool = True,
                 max_change_points: int = 2, min_knee_gap_c: float = 3.0):
        self.balance_points_c = balance_points_c
        self.interaction = interaction
        self.max_change_points = max_change_points
        self.min_knee_gap_c = min_knee_gap_c

    def _terms(self, X: pd.DataFrame, tb: float) -> list[np.ndarray]:
        load = np.asarray(X["load"], float)
        # Interval means of the step-level terms when given (exact aggregation of the hourly
        # model to days: mean (T - Tb)+ over the day's hours, not (mean T - Tb)+).
        key = f"{tb:g}"
        if f"cdh__{key}" in X:
            cdh, lcdh = np.asarray(X[f"cdh__{key}"], float), np.asarray(X[f"lcdh__{key}"], float)
        else:
            cdh = np.maximum(np.asarray(X["temp_c"], float) - tb, 0.0)
            lcdh = load * cdh
        return [cdh] + ([lcdh / max(self._load_scale, 1e-12)] if self.interaction else [])

    def _design(self, X: pd.DataFrame, knees: tuple) -> np.ndarray:
        cols = [np.asarray(X["load"], float)]
        for tb in knees:
            cols += self._terms(X, tb)
        return np.column_stack(cols)

    def _candidates(self, X: pd.DataFrame):
        T = np.asarray(X["temp_c"], float)
        grid = [tb for tb in self.balance_points_c if np.sum(T > tb) >= 3 and np.sum(T <= tb) >= 3]
        yield ()
        if self.max_change_points >= 1:
            yield from ((tb,) for tb in grid)
        if self.max_change_points >= 2:
            yield from ((a, b) for i, a in enumerate(grid) for b in grid[i + 1:] if b - a >= self.min_knee_gap_c)

    @staticmethod
    def _check_X(X) -> pd.DataFrame:
        if not isinstance(X, pd.DataFrame) or not {"load", "temp_c"} <= set(X.columns):
            raise ValueError("X must be a DataFrame with columns 'load' and 'temp_c'")
        if X[["load", "temp_c"]].isna().any().any():
            raise ValueError("X has missing values: fill or drop them before fitting")
        return X

    def fit(self, X, y):
        X = self._check_X(X)
        y = np.asarray(y, float)
        n = len(y)
        if n != len(X) or n < 10:
            raise ValueError(f"need at least 10 intervals with matching X and y (got {len(X)} and {n})")
        if self.max_change_points not in (0, 1, 2):
            raise ValueError("max_change_points must be 0, 1 or 2")
        self._load_scale = float(np.mean(np.asarray(X["load"], float))) or 1.0
        best = None
        base = np.column_stack([np.ones(n), np.asarray(X["load"], float)])
        terms = {tb: np.column_stack(self._terms(X, tb)) for tb in self.balance_points_c}
        for knees in self._candidates(X):
            A = np.hstack([base] + [terms[tb] for tb in knees])
            beta, *_ = np.linalg.lstsq(A, y, rcond=None)
            sse = float(((y - A @ beta) ** 2).sum())
            k = A.shape[1] + len(knees)  # each balance point is a fitted parameter too
            bic = n * np.log(max(sse, 1e-300) / n) + k * np.log(n)
            if best is None or bic < best[0] - 1e-9:
                best = (bic, knees, k)
        _, knees, k = best
        reg = LinearRegression().fit(self._design(X, knees), y)
        res = y - reg.predict(self._design(X, knees))
        self.balance_points_c_ = knees
        self.balance_point_c_ = knees[0] if knees else None
        self.coef_ = reg.coef_
        self.intercept_ = float(reg.intercept_)
        self.n_params_ = k
        self.n_ = n
        fitted = y - res
        self.cv_rmse_ = cv_rmse(y, fitted, self.n_params_)
        self.nmbe_ = nmbe(y, fitted, self.n_params_)
        self.r2_ = float(1 - (res ** 2).sum() / ((y - y.mean()) ** 2).sum()) if np.ptp(y) > 0 else float("nan")
        self.rho_ = lag1_autocorrelation(res)
        self.y_mean_ = float(y.mean())
        self.load_range_ = (float(X["load"].min()), float(X["load"].max()))
        self.temp_range_c_ = (float(X["temp_c"].min()), float(X["temp_c"].max()))
        self._reg = reg
        return self

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self, "coef_")
        X = self._check_X(X)
        return self._reg.predict(self._design(X, self.balance_points_c_))

    def equation(self) -> str:
        """The fitted model as text, for the verifier."""
        check_is_fitted(self, "coef_")
        c = list(self.coef_)
        s = f"E = {self.intercept_:.6g} + {c.pop(0):.6g} x load"
        for tb in self.balance_points_c_:
            s += f" + {c.pop(0):.6g} x max(T - {tb:g}, 0)"
            if self.interaction:
                s += f" + {c.pop(0):.6g} x load x max(T - {tb:g}, 0) / {self._load_scale:.6g}"
        return s


def mv_intervals(frame: pd.DataFrame, freq: str = "h", load_column: str = "it_power_kw",
                 temp_column: str = "outside_temp_c", balance_points_c=DEFAULT_BALANCE_POINTS_C) -> pd.DataFrame:
    """Aggregate a step frame to M&V intervals: facility kWh, mean load and temperature, kgCO2.

    Columns: ``energy_kwh`` (facility), ``load`` (mean of ``load_column``), ``temp_c``,
    ``hours``; per candidate balance point Tb the interval means ``cdh__<Tb>`` of (T - Tb)+
    and ``lcdh__<Tb>`` of load x (T - Tb)+ (variable-base degree-hours); and, when the
    frame has ``gco2_per_kwh``, ``kgco2`` (metered energy at the step factors) and
    ``factor_gco2_per_kwh`` (its energy-weighted factor in the interval).
    """
    for c in ("facility_power_kw", load_column, temp_column):
        if c not in frame.columns:
            raise ValueError(f"column {c!r} missing for M&V (have {list(frame.columns)})")
    h = pd.Series(step_hours(frame.index), index=frame.index)
    e = frame["facility_power_kw"] * h
    parts = {"energy_kwh": e.resample(freq).sum(min_count=1), "load": frame[load_column].resample(freq).mean(),
             "temp_c": frame[temp_column].resample(freq).mean(), "hours": h.resample(freq).sum()}
    T, L = frame[temp_column].to_numpy(float), frame[load_column].to_numpy(float)
    terms = {}
    for tb in balance_points_c:
        excess = np.maximum(T - tb, 0.0)
        terms[f"cdh__{tb:g}"], terms[f"lcdh__{tb:g}"] = excess, L * excess
    agg = pd.DataFrame(terms, index=frame.index).resample(freq).mean()
    parts.update({c: agg[c] for c in agg.columns})
    if "gco2_per_kwh" in frame.columns:
        kg = e * frame["gco2_per_kwh"] / 1000.0
        parts["kgco2"] = kg.resample(freq).sum(min_count=1)
    out = pd.DataFrame(parts)
    # an incomplete last interval would bias totals: keep whole intervals only
    nominal = out["hours"].mode().iloc[0]
    out = out[np.isclose(out["hours"], nominal)].dropna()
    if "kgco2" in out:
        out["factor_gco2_per_kwh"] = np.where(out["energy_kwh"] > 0, 1000.0 * out["kgco2"] / out["energy_kwh"], 0.0)
    return out


@dataclass
class MVResult:
    """Avoided energy and carbon over the post period, with everything a verifier needs."""

    model: ChangePointBaseline
    pre: pd.DataFrame  # intervals with 'fitted'
    post: pd.DataFrame  # intervals with 'adjusted_baseline_kwh'
    freq: str
    load_column: str
    temperature: str
    adjusted_baseline_kwh: float
    metered_kwh: float
    avoided_kwh: float
    savings_fraction: float
    fsu_68: float
    fsu_90: float
    uncertainty_kwh_68: float
    uncertainty_kwh_90: float
    avoided_kgco2: float | None
    uncertainty_kgco2_68: float | None
    uncertainty_kgco2_90: float | None
    reduction: dict | None
    n_eff: float
    post_months: float
    checks: list[dict] = field(default_factory=list)

    @property
    def compliant(self) -> bool:
        return all(c["passed"] for c in self.checks if c["required"])

    def summary(self) -> dict:
        m = self.model
        return {
            "method": "IPMVP Option C whole facility; ASHRAE Guideline 14-2014 change-point regression",
            "interval": self.freq, "load_variable": self.load_column,
            "model": m.equation(), "balance_points_c": list(m.balance_points_c_), "n_params": m.n_params_,
            "temperature": self.temperature,
            "pre_intervals": m.n_, "post_intervals": len(self.post), "post_months": self.post_months,
            "pre_start": self.pre.index[0].isoformat(), "pre_end": self.pre.index[-1].isoformat(),
            "post_start": self.post.index[0].isoformat(), "post_end": self.post.index[-1].isoformat(),
            "cv_rmse_pct": 100 * m.cv_rmse_, "nmbe_pct": 100 * m.nmbe_, "r2": m.r2_,
            "residual_autocorrelation": m.rho_, "n_effective": self.n_eff,
            "adjusted_baseline_kwh": self.adjusted_baseline_kwh, "metered_kwh": self.metered_kwh,
            "avoided_kwh": self.avoided_kwh, "savings_pct": 100 * self.savings_fraction,
            "fsu_68_pct": 100 * self.fsu_68, "fsu_90_pct": 100 * self.fsu_90,
            "uncertainty_kwh_68": self.uncertainty_kwh_68, "uncertainty_kwh_90": self.uncertainty_kwh_90,
            "avoided_kgco2": self.avoided_kgco2, "uncertainty_kgco2_68": self.uncertainty_kgco2_68,
            "uncertainty_kgco2_90": self.uncertainty_kgco2_90, "reduction_split": self.reduction,
            "checks": self.checks, "compliant": self.compliant,
        }


def with_weather_driver(frame: pd.DataFrame, temperature: str = "auto") -> tuple[pd.DataFrame, str]:
    """Add ``mv_temp_c``, the outside temperature the baseline model uses, and name it.

    ``wetbulb``: the frame's ``wetbulb_c``, else computed from ``outside_temp_c`` and
    ``outside_rh_pct`` (Stull 2011, :func:`coolshift.io.weather.wetbulb_stull_c`): towers and
    water-side economisers follow the wet bulb. ``drybulb``: ``outside_temp_c``. ``auto``:
    wet bulb when it can be had, else dry bulb.
    """
    if temperature not in ("auto", "wetbulb", "drybulb"):
        raise ValueError("temperature must be auto, wetbulb or drybulb")
    if temperature in ("auto", "wetbulb"):
        if "wetbulb_c" in frame.columns:
            return frame.assign(mv_temp_c=frame["wetbulb_c"]), "wet bulb (wetbulb_c)"
        if {"outside_temp_c", "outside_rh_pct"} <= set(frame.columns):
            from coolshift.io.weather import wetbulb_stull_c

            wb = wetbulb_stull_c(frame["outside_temp_c"].to_numpy(float), frame["outside_rh_pct"].to_numpy(float))
            return frame.assign(mv_temp_c=np.asarray(wb, float)), "wet bulb (Stull 2011 from outside_temp_c, outside_rh_pct)"
        if temperature == "wetbulb":
            raise ValueError("wet bulb needs wetbulb_c or outside_temp_c with outside_rh_pct")
    if "outside_temp_c" not in frame.columns:
        raise ValueError(f"column 'outside_temp_c' missing for M&V (have {list(frame.columns)})")
    return frame.assign(mv_temp_c=frame["outside_temp_c"]), "dry bulb (outside_temp_c)"


WORK_COLUMN = "work_units_per_h"


def with_work_column(frame: pd.DataFrame, load_column: str) -> pd.DataFrame:
    """``work_units_per_h`` = sum of the simulator's ``served_units_per_h__<class>`` when asked for and absent."""
    if load_column != WORK_COLUMN or WORK_COLUMN in frame.columns:
        return frame
    served = [c for c in frame.columns if c.startswith("served_units_per_h__")]
    if not served:
        raise ValueError(f"column {WORK_COLUMN!r} missing and no served_units_per_h__<class> columns to sum")
    return frame.assign(**{WORK_COLUMN: frame[served].sum(axis=1)})


def verify_savings(pre: pd.DataFrame, post: pd.DataFrame, *, freq: str = "h", load_column: str = "it_power_kw",
                   temperature: str = "auto", model: ChangePointBaseline | None = None) -> MVResult:
    """Fit the baseline on ``pre``, drive it with ``post``'s load and weather, and report avoided energy and carbon.

    Both frames are step frames (UTC index, ``facility_power_kw``, ``load_column``, outside
    temperature (see :func:`with_weather_driver`); ``gco2_per_kwh`` on ``post`` for carbon).
    ``freq`` is the M&V interval (``h`` hourly, ``D`` daily).
    """
    pre, post = with_work_column(pre, load_column), with_work_column(post, load_column)
    pre, t_pre = with_weather_driver(pre, temperature)
    post, t_post = with_weather_driver(post, temperature)
    if t_pre != t_post:
        pre, t_pre = with_weather_driver(pre, "drybulb")
        post, t_post = with_weather_driver(post, "drybulb")
    temp_column = "mv_temp_c"

    model = model or ChangePointBaseline()
    a = mv_intervals(pre, freq, load_column, temp_column, model.balance_points_c)
    b = mv_intervals(post, freq, load_column, temp_column, model.balance_points_c)
    if len(a) < 10 or len(b) < 1:
        raise ValueError(f"too little data for M&V: {len(a)} pre and {len(b)} post intervals at '{freq}'")
    if b.index[0] < a.index[-1]:
        raise ValueError("the post period must start after the pre (baseline) period ends")
    xcols = [c for c in a.columns if c == "load" or c == "temp_c" or c.startswith(("cdh__", "lcdh__"))]
    model.fit(a[xcols], a["energy_kwh"])
    a = a.assign(fitted=model.predict(a[xcols]))
    b = b.assign(adjusted_baseline_kwh=model.predict(b[xcols]))
    a, b = a.drop(columns=xcols[2:]), b.drop(columns=xcols[2:])
    base, meas = float(b["adjusted_baseline_kwh"].sum()), float(b["energy_kwh"].sum())
    avoided = base - meas
    F = avoided / base if base > 0 else 0.0
    n, m = model.n_, len(b)
    n_eff = effective_n(n, model.rho_)
    # absolute uncertainty = FSU x |savings| = t 1.26 CV sqrt(...) x adjusted baseline: finite even at zero savings
    u68, u90 = (fractional_savings_uncertainty(model.cv_rmse_, n, n_eff, m, 1.0, model.n_params_, c) * base for c in (0.68, 0.90))
    fsu68, fsu90 = (u / abs(avoided) if avoided != 0 else float("inf") for u in (u68, u90))
    kg = u_kg68 = u_kg90 = red = None
    if "kgco2" in b:
        f = b["factor_gco2_per_kwh"].to_numpy()
        split = reduction_split(b["adjusted_baseline_kwh"], b["energy_kwh"], f)
        kg, red = split.total_kg, split.to_dict()
        # Model error e_i valued at f_i: independent errors give sd(sum e f) = sd(e) sqrt(sum f^2), so
        # the energy uncertainty carries over at the rms factor (exact for a constant factor).
        rms_f = float(np.sqrt(np.mean(f ** 2)))
        u_kg68, u_kg90 = u68 * rms_f / 1000.0, u90 * rms_f / 1000.0
    post_months = float(b["hours"].sum() / (24 * 365.25 / 12))
    cv_max = cv_rmse_threshold(post_months)
    out_load = float(((b["load"] < model.load_range_[0]) | (b["load"] > model.load_range_[1])).mean())
    out_temp = float(((b["temp_c"] < model.temp_range_c_[0]) | (b["temp_c"] > model.temp_range_c_[1])).mean())
    checks = [
        {"check": f"baseline CV(RMSE) <= {100 * cv_max:.0f} %", "value": f"{100 * model.cv_rmse_:.2f} %",
         "passed": model.cv_rmse_ <= cv_max, "required": True, "source": "ASHRAE Guideline 14-2014 4.1.2"},
        {"check": f"baseline |NMBE| <= {NMBE_MAX_PCT} %", "value": f"{100 * model.nmbe_:.2g} %",
         "passed": abs(100 * model.nmbe_) <= NMBE_MAX_PCT, "required": True, "source": "ASHRAE Guideline 14-2014 4.1.2"},
        {"check": "savings uncertainty < 50 % at 68 % confidence", "value": f"{100 * fsu68:.1f} %",
         "passed": fsu68 < FSU_MAX and avoided > 0, "required": True, "source": "ASHRAE Guideline 14-2014 4.1.2"},
        {"check": "post load within the baseline range", "value": f"{100 * (1 - out_load):.1f} % of intervals",
         "passed": out_load <= 0.05, "required": False, "source": "IPMVP: no extrapolation beyond the baseline's conditions"},
        {"check": "post temperature within the baseline range", "value": f"{100 * (1 - out_temp):.1f} % of intervals",
         "passed": out_temp <= 0.05, "required": False, "source": "IPMVP: no extrapolation beyond the baseline's conditions"},
    ]
    return MVResult(model, a, b, freq, load_column, t_pre, base, meas, avoided, F, fsu68, fsu90, u68, u90,
                    kg, u_kg68, u_kg90, red, n_eff, post_months, checks)
