"""A fleet site's learned power overhead: facility power as a convex piecewise-linear function
of IT power whose slopes and intercept follow the outside air, fitted to the site's own
metered telemetry.

    facility_kw = (1 + overhead_frac(w)) * it_kw + fixed_kw(w) + hinge_frac(w) * max(0, it_kw - hinge_kw)

``overhead_frac`` is the marginal facility kW per IT kW (chillers, pumps, tower and CRAH fans
that follow the heat, UPS and distribution losses); ``fixed_kw`` is what runs whatever the
load (fans and pumps at their minimum flows, controls). Both are linear in piecewise-linear
"hat" functions of the wet-bulb temperature (knots at its quantiles, so each hat has data)
plus a linear dry-bulb term (air-side economisers follow dry-bulb). The optional hinge at
``hinge_kw`` adds the steeper slope of the upper load range (CRAH fans follow the cube of the
airflow, chillers load up); its slope is never negative, so the function is convex in IT power
and the fleet LP keeps it exactly with one epigraph variable per hour. The intercept is energy
the site draws whatever the plan, counted in its accounting.

Assumption: the telemetry covers the loads the plan will use (a commissioning design draws
servers on and utilisation across their range).
"""

from __future__ import annotations

import numpy as np

from .basis import hat_basis

__all__ = ["hat_basis", "SiteOverheadModel"]


class SiteOverheadModel:
    """fit / predict estimator of a site's facility power from IT power and the weather.

    Parameters
    ----------
    n_knots : wet-bulb knots (quantiles of the training wet-bulb, 2 at least).
    ridge : Tikhonov weight on the coefficients (relative to the design's scale), which keeps
        sparse hats from taking extreme slopes.
    """

    def __init__(self, n_knots: int = 6, ridge: float = 1e-6):
        if n_knots < 2:
            raise ValueError("n_knots must be at least 2")
        self.n_knots = n_knots
        self.ridge = ridge

    def _basis(self, wetbulb_c, temp_c) -> np.ndarray:
        return np.column_stack([hat_basis(wetbulb_c, self.knots_c_), np.asarray(temp_c, dtype=float)])

    def fit(self, it_kw, facility_kw, wetbulb_c, temp_c, hinge_kw: float | None = None) -> "SiteOverheadModel":
        """Least squares on hourly rows; rows with no IT load or non-finite values are dropped.
        ``hinge_kw``: IT power where the upper slope starts (None: one slope)."""
        self.hinge_kw_ = None if hinge_kw is None else float(hinge_kw)
        it, fac, wb, t = (np.asarray(a, dtype=float) for a in (it_kw, facility_kw, wetbulb_c, temp_c))
        ok = np.isfinite(it) & np.isfinite(fac) & np.isfinite(wb) & np.isfinite(t) & (it > 0)
        if ok.sum() < 4 * (self.n_knots + 1):
            raise ValueError(f"{int(ok.sum())} usable rows: too few to fit {2 * (self.n_knots + 1)} coefficients")
        it, fac, wb, t = it[ok], fac[ok], wb[ok], t[ok]
        self.knots_c_ = np.unique(np.quantile(wb, np.linspace(0.0, 1.0, self.n_knots)))
        if len(self.knots_c_) < 2:
            self.knots_c_ = np.array([wb.min() - 0.5, wb.max() + 0.5])
        E = self._basis(wb, t)
        parts = [E * it[:, None], E]                       # slope part, intercept part
        if self.hinge_kw_ is not None:
            parts.append(hat_basis(wb, self.knots_c_) * np.maximum(it - self.hinge_kw_, 0.0)[:, None])
        D = np.column_stack(parts)
        y = fac - it
        scale = np.linalg.norm(D, axis=0) + 1e-12
        Ds = D / scale
        k = Ds.shape[1]
        coef = np.linalg.solve(Ds.T @ Ds + self.ridge * np.eye(k), Ds.T @ y) / scale
        m = E.shape[1]
        self.slope_coef_, self.fixed_coef_ = coef[:m], coef[m:2 * m]
        # the upper slope on the (non-negative) hats alone, floored at 0: convex in IT power
        self.hinge_coef_ = np.maximum(coef[2 * m:], 0.0) if self.hinge_kw_ is not None else np.zeros(0)
        resid = y - D @ coef
        self.train_mape_pct_ = float(100.0 * np.mean(np.abs(resid) / fac))
        return self

    def overhead_frac(self, wetbulb_c, temp_c) -> np.ndarray:
        """Marginal facility kW per IT kW above one (never below zero: losses and cooling only add)."""
        return np.maximum(self._basis(wetbulb_c, temp_c) @ self.slope_coef_, 0.0)

    def fixed_kw(self, wetbulb_c, temp_c) -> np.ndarray:
        """Facility kW drawn whatever the IT load (never below zero)."""
        return np.maximum(self._basis(wetbulb_c, temp_c) @ self.fixed_coef_, 0.0)

    def hinge_frac(self, wetbulb_c) -> np.ndarray:
        """Extra facility kW per IT kW above ``hinge_kw_`` (>= 0; zeros without a hinge)."""
        if self.hinge_kw_ is None:
            return np.zeros(np.shape(wetbulb_c))
        return hat_basis(wetbulb_c, self.knots_c_) @ self.hinge_coef_

    def predict_facility_kw(self, it_kw, wetbulb_c, temp_c) -> np.ndarray:
        it = np.asarray(it_kw, dtype=float)
        upper = 0.0 if self.hinge_kw_ is None else self.hinge_frac(wetbulb_c) * np.maximum(it - self.hinge_kw_, 0.0)
        return (1.0 + self.overhead_frac(wetbulb_c, temp_c)) * it + self.fixed_kw(wetbulb_c, temp_c) + upper
