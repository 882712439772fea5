"""Learned thermal/power model of the facility, linear in the decisions.

:class:`LinearPlantModel` learns from facility telemetry (:mod:`coolshift.schema`) how
cooling power, facility power and rack inlet temperatures respond to the decisions
(per-zone supply-air setpoint, chilled-water setpoint, per-zone IT power) under the
exogenous conditions (outside dry-bulb temperature and humidity). It is a
*varying-coefficient* linear model: the outside wet-bulb (or dry-bulb) temperature picks a
regime (economiser, partial, mechanical ... : quantiles of the training data unless
given), and inside a regime every coefficient is itself linear in the exogenous
conditions. For a *forecast* of the weather the coefficients are numbers per step, so the
optimiser's problem stays an LP; :meth:`LinearPlantModel.coefficients` returns them as a
:class:`~coolshift.coefficients.PlantCoefficients`, and :meth:`predict` is exactly
``PlantCoefficients.predict`` on those coefficients.

:class:`ReferencePlantModel` (gradient-boosted trees on the same inputs plus active
servers) shows what the linearity costs.

Cooling power may be *convex piecewise linear* in the decisions (``n_cooling_pieces``):
hinges below a chilled-water knot that follows the outside wet-bulb (and the load), with
weather-dependent slopes >= 0, emitted as ``PlantCoefficients.cooling_pieces`` (the max
of affine pieces, exact in an LP). This follows the economiser kink: cooling falls with
the chilled-water setpoint while chillers run and is flat once the economiser carries
the load.

Nothing here uses the simulator's equations: only telemetry columns.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin

from coolshift.io.weather import wetbulb_stull_c  # one psychrometric formula for the whole product
from coolshift.coefficients import CoolingPiece, PlantCoefficients
from coolshift.schema import RH_PCT, TEMP_C, WETBULB_C, col

from .basis import hat_basis

__all__ = [
    "LinearPlantModel",
    "ReferencePlantModel",
    "wetbulb_stull_c",
    "plant_metrics",
    "time_block_split",
    "TARGET_COLUMNS",
    "IT_FAN_FRAC_PER_C",
    "PlantMismatchError",
    "check_plant",
]

OUTSIDE_TEMP = "outside_temp_c"
OUTSIDE_RH = "outside_rh_pct"
# Server fan/leakage power rise with inlet temperature above 25 degC: ASHRAE TC 9.9 (2011),
# "Thermal Guidelines for Data Processing Environments - Expanded Data Center Classes",
# Fig. 5, 4-20 % more server power at 35 degC than at 25 degC; the middle of that band,
# 12 % over 10 K, linearised. Telemetry of zone IT power includes the fans but cannot
# separate them from the compute load, so this prior (times the zone's mean IT power)
# gives the optimiser the cost of warm inlets.
IT_FAN_FRAC_PER_C = 0.012
IT_FAN_THRESHOLD_C = 25.0
REGIME_NAMES = {1: ["all"], 2: ["economiser", "mechanical"], 3: ["economiser", "partial", "mechanical"]}


def _exog(frame: pd.DataFrame, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Outside dry-bulb, RH and wet-bulb from telemetry (outside_*) or forecast (temp_c ...) columns."""
    if OUTSIDE_TEMP in frame.columns:
        t = frame[OUTSIDE_TEMP].to_numpy(float)
    elif TEMP_C in frame.columns:
        t = frame[TEMP_C].to_numpy(float)
    else:
        raise ValueError(f"{where}: needs an outside temperature column ({OUTSIDE_TEMP!r} or {TEMP_C!r})")
    if OUTSIDE_RH in frame.columns:
        rh = frame[OUTSIDE_RH].to_numpy(float)
    elif RH_PCT in frame.columns:
        rh = frame[RH_PCT].to_numpy(float)
    else:
        raise ValueError(f"{where}: needs an outside humidity column ({OUTSIDE_RH!r} or {RH_PCT!r})")
    wb = frame[WETBULB_C].to_numpy(float) if WETBULB_C in frame.columns else wetbulb_stull_c(t, rh)
    for name, v in (("outside temperature", t), ("outside humidity", rh)):
        if not np.isfinite(v).all():
            i = int(np.flatnonzero(~np.isfinite(v))[0])
            raise ValueError(f"{where}: {name} missing at row {i} ({frame.index[i]})")
    return t, rh, wb


class PlantMismatchError(LookupError):
    """A plant model used for a site whose plant differs from the one it was trained on."""


def _record_plant(model, site) -> None:
    """Remember the plant a model is fitted on (``plant_fingerprint_``, ``plant_spec_``)."""
    if site is not None:
        model.plant_fingerprint_ = site.plant_fingerprint()
        model.plant_spec_ = site.plant_spec()


def _differences(a, b, path: str = "") -> list[str]:
    """Paths where two plant specs differ, with both values (first few only)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _differences(a.get(k), b.get(k), f"{path}.{k}" if path else str(k))
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {a!r} when trained, {b!r} now"]


def check_plant(model, site, hint: str = "retrain it with `coolshift train --site <config>`") -> None:
    """Raise :class:`PlantMismatchError` unless ``model`` was fitted on ``site``'s plant.

    A model whose plant is unknown (fitted before fingerprints were recorded, or without a
    site) is refused too: its coefficients could belong to any plant.
    """
    have = getattr(model, "plant_fingerprint_", None)
    want = site.plant_fingerprint()
    if have is None:
        raise PlantMismatchError(f"the plant model for {site.name} records no plant fingerprint, so the plant it "
                                 f"was trained on is unknown; {hint}")
    if have != want:
        diff = _differences(getattr(model, "plant_spec_", {}) or {}, site.plant_spec())
        shown = "; ".join(diff[:4]) + (f"; and {len(diff) - 4} more" if len(diff) > 4 else "")
        raise PlantMismatchError(f"the plant model for {site.name} was trained on a different plant (fingerprint "
                                 f"{have}, this config's plant is {want}: {shown or 'details not recorded'}); {hint}")


def _check_index(frame: pd.DataFrame, where: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{where}: expected a DataFrame, got {type(frame).__name__}")
    if not isinstance(frame.index, pd.DatetimeIndex) or frame.index.tz is None:
        raise ValueError(f"{where}: needs a tz-aware (UTC) DatetimeIndex")


def _require(frame: pd.DataFrame, cols: list[str], where: str) -> None:
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise ValueError(f"{where}: missing column(s) {missing} (telemetry schema: coolshift/schema.py)")
    for c in cols:
        v = frame[c].to_numpy(float)
        if not np.isfinite(v).all():
            i = int(np.flatnonzero(~np.isfinite(v))[0])
            raise ValueError(f"{where}: column {c!r} is missing/non-finite at row {i} ({frame.index[i]})")


def _openmp_threads(n: int | None):
    """Limit OpenMP threads for the tree models: on a shared 2-core machine, OpenMP spin-waiting
    made one HistGradientBoosting fit 36x slower than on a single thread (measured 36 s vs 1 s)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=n, user_api="openmp")


def _lstsq(D: np.ndarray, y: np.ndarray, alpha: float, weight: np.ndarray | None = None) -> np.ndarray:
    """Ridge least squares on column-scaled features (no separate intercept: the basis holds it)."""
    from sklearn.linear_model import Ridge

    scale = np.abs(D).max(axis=0)
    scale[scale == 0] = 1.0
    r = Ridge(alpha=alpha, fit_intercept=False).fit(D / scale, y, sample_weight=weight)
    return r.coef_ / scale


def _fit_hinged(D: np.ndarray, Hb: np.ndarray, y: np.ndarray, families: list[np.ndarray], limits: list[int],
                alpha: float, weight: np.ndarray | None, min_gain_frac: float,
                nonneg: np.ndarray | None = None) -> tuple[np.ndarray, list[list[int]], list[list[np.ndarray]], float]:
    """Least squares ``y ~ D @ a + sum_m (Hb @ c_m) * v_m`` with every ``Hb @ c_m >= 0``.

    ``families[f]`` holds candidate hinge values ``v`` (one column per candidate knot, each
    a convex function of the decisions such as ``max(0, delta - margin)`` or
    ``max(0, IT - k)``); at most ``limits[f]`` of each family are chosen. Each chosen hinge
    gets a slope that may vary with the weather (``Hb``: non-negative hat functions, so
    ``c_m >= 0`` keeps every slope >= 0 and the response convex in the decisions). Knots
    are chosen greedily over all families (forward selection on the training error, a
    MARS-style search: Friedman 1991, "Multivariate adaptive regression splines", Ann.
    Stat. 19) and kept only if each cuts the squared error by ``min_gain_frac`` of the
    single-piece error. All fits are ridge solves on one Gram matrix; ``c_m >= 0`` by an
    active set (negative slopes are fixed at zero and the rest refitted); so are the columns
    of ``D`` with a sign in ``nonneg`` (+1: >= 0, -1: <= 0, 0: free; e.g. cooling per kW of
    IT >= 0, per degC of setpoint <= 0). Returns (a,
    chosen candidate numbers per family, their slopes c_m per family, squared error).
    """
    n, p = D.shape
    nh = Hb.shape[1]
    cand = [(f, c) for f, V in enumerate(families) if limits[f] > 0 for c in range(V.shape[1])]
    Z = np.column_stack([D] + [Hb * families[f][:, c][:, None] for f, c in cand])
    scale = np.abs(Z).max(axis=0)
    scale[scale == 0] = 1.0
    Z = Z / scale
    Zw = Z if weight is None else Z * weight[:, None]
    G = Zw.T @ Z
    g = Zw.T @ y
    yy = float(y @ (y if weight is None else weight * y))

    sign = np.zeros(p) if nonneg is None else np.asarray(nonneg, dtype=float)  # +1 >= 0, -1 <= 0, 0 free

    def solve(hinges: list[int]):
        keep = list(range(p)) + [p + h * nh + j for h in hinges for j in range(nh)]
        free = np.ones(len(keep), dtype=bool)
        beta = np.zeros(len(keep))
        signed = np.concatenate([sign, np.ones(len(keep) - p)])
        for _ in range(len(keep) + 1):
            k = np.asarray(keep)[free]
            beta[:] = 0.0
            beta[free] = np.linalg.solve(G[np.ix_(k, k)] + alpha * np.eye(len(k)), g[k])
            neg = free & (beta * signed < 0)
            if not neg.any():
                break
            free &= ~neg
        k = np.asarray(keep)
        sse = yy - 2.0 * beta @ g[k] + beta @ G[np.ix_(k, k)] @ beta
        return beta / scale[k], float(sse)

    chosen: list[int] = []
    beta, base = solve(chosen)
    best = base
    for _ in range(sum(max(0, x) for x in limits)):
        used = [sum(cand[h][0] == f for h in chosen) for f in range(len(families))]
        trials = [(solve(chosen + [h]), h) for h in range(len(cand))
                  if h not in chosen and used[cand[h][0]] < limits[cand[h][0]]]
        if not trials:
            break
        (b_new, sse_new), h = min(trials, key=lambda x: x[0][1])
        if best - sse_new < min_gain_frac * base:
            break
        chosen.append(h)
        beta, best = b_new, sse_new
    picks: list[list[int]] = [[] for _ in families]
    slopes: list[list[np.ndarray]] = [[] for _ in families]
    for i, h in enumerate(chosen):
        f, c = cand[h]
        picks[f].append(c)
        slopes[f].append(beta[p + i * nh:p + (i + 1) * nh])
    return beta[:p], picks, slopes, best


def _hinged_predict(D: np.ndarray, Hb: np.ndarray, families: list[np.ndarray], a: np.ndarray,
                    picks: list[list[int]], slopes: list[list[np.ndarray]]) -> np.ndarray:
    """The response of a :func:`_fit_hinged` fit on rows ``D`` / ``Hb`` / ``families``."""
    y = D @ a
    for f, V in enumerate(families):
        for c, sl in zip(picks[f], slopes[f]):
            y = y + (Hb @ sl) * V[:, c]
    return y


class LinearPlantModel(BaseEstimator, RegressorMixin):
    """Varying-coefficient linear plant model (see the module docstring).

    Parameters
    ----------
    n_regimes : number of outside-condition regimes (quantiles of the training data);
        ignored when ``regime_edges_c`` is given.
    regime_edges_c : explicit regime boundaries [degC] on ``regime_on``.
    regime_on : ``"wetbulb"`` (water-side economiser, cooling towers) or ``"drybulb"``.
    alpha : ridge penalty on scaled features (small: telemetry is plentiful).
    it_fan_frac_per_c : server fan/leakage prior, fraction of zone IT per degC above
        ``it_fan_threshold_c`` (ASHRAE TC 9.9 2011; see :data:`IT_FAN_FRAC_PER_C`).
    envelope_margin_frac : tolerance outside the training range, as a fraction of it.
    min_regime_samples : a regime with fewer training rows is merged into its neighbour.
    n_cooling_pieces : most affine pieces of the convex piecewise-linear cooling response;
        each piece beyond the first is a hinge in the chilled-water setpoint at a knot
        ``wet-bulb + delta`` with a weather-dependent slope >= 0 (:func:`_fit_hinged`).
        1 = the single linear piece (the fallback).
    piece_min_gain_frac : a hinge is kept only if it cuts the training squared error by at
        least this fraction of the single piece's.
    n_hinge_candidates : knots ``delta`` tried (quantiles 10-90 % of chilled water minus
        wet-bulb in the training data).
    hinge_load_slopes_c : candidate shifts of the hinge knots with load [K per mean total
        IT]: the hinge is ``max(0, wb + delta + gamma * IT / mean IT - chw)``, so the chillers
        start at a warmer chilled water when the load exceeds what the economiser covers;
        the best ``gamma`` is kept per regime, judged on the last ``gamma_holdout_frac`` of
        the regime's rows (time order) fitted on the rest, then refitted on all rows (0 =
        training error, which tends to prefer the largest shift). ``(0.0,)`` = fixed knots.
    n_it_hinges : most hinges ``max(0, IT - k)`` in total IT power (knots ``k`` from
        ``n_it_hinge_candidates`` quantiles 10-90 % of the training IT, slopes >= 0 varying
        with the weather): cooling is convex in the load (fan and pump affinity laws, chiller
        part-load curves, minimum flows at low load), and a line fitted over the training
        range under-predicts where an optimiser drives the load low or high. Each hinge
        multiplies the number of emitted pieces (``(chw hinges + 1) x (IT hinges + 1)``).
        0 = cooling linear in IT (the previous model).
    monotone_it : signs from physics on the main cooling piece: per kW of IT >= 0, per degC
        of supply-air and chilled-water setpoint <= 0 (coefficients on the hat functions;
        the dry-bulb term stays free).
    shared_supply_cooling : one cooling coefficient for the mean supply-air setpoint instead
        of one per zone (each zone gets it divided by the number of zones). The supply
        setpoints move together in telemetry (explore draws them per block; chilled water
        follows the coldest), so per-zone coefficients were not identified: at hot wet-bulbs
        they came out -60 and +50 kW per degC for two halls, and the LP set one hall warm and
        the other cold to "save" cooling that the plant never saw.
    support_window_c, support_quantile, support_min_rows : the training support emitted per
        step (``PlantCoefficients.support``, see :meth:`support`): training rows within this
        many K of the step's wet-bulb, the quantile range kept, the fewest rows needed.
    relative_loss : weight each training row by ``1 / cooling^(2 r)`` (floored at 5 % of the
        mean cooling), ``r`` this value: 1 = relative (MAPE-like) least squares, 0 = plain. The
        plain fit let the hundreds of kW of mechanical hours set every coefficient and missed
        the 13-60 kW economiser hours by 10-30 % (held-out cooling MAPE 9.7 against 6.7 %).
        Telemetry with any cooling power <= 0 (no real plant) is fitted plainly.
    hinge_quantile_range, it_hinge_quantile_range : quantile range of the candidate knots
        (chilled-water margin; total IT). The IT range reaches 2-98 %: at the lowest loads
        fans and pumps sit at their minimum flows, which a knot at the 10 % quantile missed.
    joint_hinge_gammas : every (knot, load shift) pair is a candidate of the forward
        selection, so each chilled-water hinge gets its own shift (the chillers' share of the
        load is a product of load and economiser margin: hinges with different shifts
        approximate it better than one shift for all). Emitted exactly as the max over the
        subsets of the hinges (``2^hinges x (IT hinges + 1)`` pieces). False = one shift per
        regime, chosen on the held-out tail (``gamma_holdout_frac``).
    l1_iterations, l1_floor_frac : rounds of iteratively reweighted least squares after the
        relative fit, each refitting (hinges included) with weights ``1 / (y |r|)`` from the
        previous round's residuals ``r``, ``|r|`` floored at ``l1_floor_frac y`` (four times the
        power meter's noise): the fit then minimises the mean *absolute* relative error, which is the scored
        MAPE, instead of its square, so the few hours the convex model cannot follow (chillers
        cycling below their minimum part load: concave in chilled water) no longer pull every
        coefficient toward them. 0 = the squared relative fit. Ignored with a plain fit.
    shared_it_cooling : one cooling coefficient for the total IT power instead of one per
        zone (the same value is emitted for every zone). Zones sharing one chilled-water
        plant reject their heat to the same loop, and per-zone coefficients are not
        identifiable when the zones' loads move together in the telemetry: an optimiser then
        shifts load toward whichever zone got the lower (even negative) coefficient.
    """

    def __init__(self, n_regimes: int = 1, n_knots: int = 8, regime_edges_c=None, regime_on: str = "wetbulb",
                 alpha: float = 1e-6, it_fan_frac_per_c: float = IT_FAN_FRAC_PER_C,
                 it_fan_threshold_c: float = IT_FAN_THRESHOLD_C, envelope_margin_frac: float = 0.05,
                 min_regime_samples: int = 50, relative_loss: float = 1.0, drybulb_term: bool = False,
                 n_cooling_pieces: int = 3, piece_min_gain_frac: float = 0.005, n_hinge_candidates: int = 17,
                 shared_it_cooling: bool = True, hinge_load_slopes_c: tuple = (0.0, 2.0, 4.0, 8.0),
                 n_it_hinges: int = 3, n_it_hinge_candidates: int = 17, monotone_it: bool = True,
                 shared_supply_cooling: bool = True, support_window_c: float = 1.0, support_quantile: float = 0.05,
                 support_min_rows: int = 30, gamma_holdout_frac: float = 0.2,
                 hinge_quantile_range: tuple = (0.1, 0.9), it_hinge_quantile_range: tuple = (0.02, 0.98),
                 joint_hinge_gammas: bool = True, l1_iterations: int = 3, l1_floor_frac: float = 0.01):
        self.l1_iterations = l1_iterations
        self.l1_floor_frac = l1_floor_frac
        self.joint_hinge_gammas = joint_hinge_gammas
        self.hinge_quantile_range = hinge_quantile_range
        self.it_hinge_quantile_range = it_hinge_quantile_range
        self.gamma_holdout_frac = gamma_holdout_frac
        self.support_window_c = support_window_c
        self.shared_supply_cooling = shared_supply_cooling
        self.support_quantile = support_quantile
        self.support_min_rows = support_min_rows
        self.monotone_it = monotone_it
        self.n_it_hinges = n_it_hinges
        self.n_it_hinge_candidates = n_it_hinge_candidates
        self.shared_it_cooling = shared_it_cooling
        self.hinge_load_slopes_c = hinge_load_slopes_c
        self.n_cooling_pieces = n_cooling_pieces
        self.piece_min_gain_frac = piece_min_gain_frac
        self.n_hinge_candidates = n_hinge_candidates
        self.relative_loss = relative_loss
        self.drybulb_term = drybulb_term
        self.n_regimes = n_regimes
        self.n_knots = n_knots
        self.regime_edges_c = regime_edges_c
        self.regime_on = regime_on
        self.alpha = alpha
        self.it_fan_frac_per_c = it_fan_frac_per_c
        self.it_fan_threshold_c = it_fan_threshold_c
        self.envelope_margin_frac = envelope_margin_frac
        self.min_regime_samples = min_regime_samples

    # -- inputs -----------------------------------------------------------------------
    def _decision_cols(self, zones: list[str]) -> tuple[list[str], list[str]]:
        return [col("zone_it_power_kw", z) for z in zones], [col("supply_setpoint_c", z) for z in zones]

    def _regime_var(self, t: np.ndarray, wb: np.ndarray) -> np.ndarray:
        if self.regime_on not in ("wetbulb", "drybulb"):
            raise ValueError(f"regime_on must be 'wetbulb' or 'drybulb', got {self.regime_on!r}")
        return wb if self.regime_on == "wetbulb" else t

    def _regimes(self, t: np.ndarray, wb: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.regime_edges_, self._regime_var(t, wb), side="right")

    def _E(self, t: np.ndarray, wb: np.ndarray) -> np.ndarray:
        """Exogenous basis each coefficient is linear in.

        Piecewise-linear "hat" functions of the regime variable at ``knots_`` (they sum to
        one, so they hold the constant) plus the dry-bulb temperature: each coefficient is a
        continuous piecewise-linear function of the outside conditions.
        """
        v = self._regime_var(t, wb)
        k = self.knots_
        if len(k) < 2:
            return np.column_stack([np.ones_like(t), t, wb])
        H = hat_basis(v, k)  # beyond the outer knots the hats hold the edge value (no extrapolation)
        # the optional dry-bulb term adds a linear trend in dry-bulb
        return np.column_stack([H, t]) if self.drybulb_term else H

    def _hinge_basis(self, t: np.ndarray, wb: np.ndarray) -> np.ndarray:
        """Basis of the hinge slopes: the hat functions alone (non-negative, so non-negative
        weights give a slope >= 0 at every weather), or a constant without knots."""
        E = self._E(t, wb)
        return E[:, :len(self.knots_)] if len(self.knots_) >= 2 else np.ones((len(t), 1))

    # -- fit ----------------------------------------------------------------------------
    def fit(self, telemetry: pd.DataFrame, site=None, zones: list[str] | None = None) -> "LinearPlantModel":
        """Learn from telemetry rows (a tz-aware frame in the schema of :mod:`coolshift.schema`).

        Fitted on one BLAS thread: its many small solves ran 30x slower with a thread pool on a
        busy 2-core machine (18 s against 0.6 s for 14 days of 15-min rows, measured 2026-11-23).
        """
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            return self._fit(telemetry, site, zones)

    def _fit(self, telemetry: pd.DataFrame, site, zones) -> "LinearPlantModel":
        where = "LinearPlantModel.fit"
        _check_index(telemetry, where)
        zones = list(zones) if zones is not None else [z.name for z in site.zones] if site is not None else None
        if not zones:
            raise ValueError(f"{where}: pass the site (or zones) so the per-zone columns are known")
        it_cols, sp_cols = self._decision_cols(zones)
        inlet_cols = [col("inlet_temp_c", z) for z in zones]
        need = it_cols + sp_cols + inlet_cols + ["chw_setpoint_c", "cooling_power_kw", "facility_power_kw", "it_power_kw"]
        _require(telemetry, need, where)
        if len(telemetry) < 10 * (2 * len(zones) + 2) * 3:
            raise ValueError(f"{where}: {len(telemetry)} rows are too few for {len(zones)} zones")
        t, rh, wb = _exog(telemetry, where)
        self.zones_ = zones
        _record_plant(self, site)
        self.pools_ = [c.split("__", 1)[1] for c in telemetry.columns if c.startswith("active_servers__")]

        # regimes: explicit edges, else quantiles; merge regimes with too few rows
        v = self._regime_var(t, wb)
        if self.regime_edges_c is not None:
            edges = np.sort(np.asarray(self.regime_edges_c, dtype=float))
        else:
            edges = np.quantile(v, np.linspace(0, 1, self.n_regimes + 1)[1:-1])
        edges = np.unique(edges)
        while len(edges):
            counts = np.bincount(np.searchsorted(edges, v, side="right"), minlength=len(edges) + 1)
            small = np.flatnonzero(counts < self.min_regime_samples)
            if not len(small):
                break
            k = int(small[0])
            edges = np.delete(edges, min(k, len(edges) - 1))
        self.regime_edges_ = edges
        n_reg = len(edges) + 1
        self.regime_names_ = REGIME_NAMES.get(n_reg, [f"regime_{k}" for k in range(n_reg)])
        reg = self._regimes(t, wb)
        self.knots_ = (np.quantile(v, np.linspace(0, 1, self.n_knots)) if self.n_knots >= 2 else np.array([]))
        E = self._E(t, wb)
        IT = telemetry[it_cols].to_numpy(float)
        SP = telemetry[sp_cols].to_numpy(float)
        CHW = telemetry["chw_setpoint_c"].to_numpy(float)
        cool = telemetry["cooling_power_kw"].to_numpy(float)
        nz = len(zones)

        # cooling: per regime, y = E.c + sum_z (E.a_z) it_z + sum_z (E.b_z) sp_z + (E.d) chw
        ne = E.shape[1]
        if int(self.n_cooling_pieces) < 1:
            raise ValueError(f"{where}: n_cooling_pieces must be >= 1, got {self.n_cooling_pieces!r}")
        self.cooling_coef_ = np.zeros((n_reg, 2 * nz + 2, ne))  # [const, it_z.., sp_z.., chw] x E
        self.inlet_coef_ = np.zeros((n_reg, nz, 3, ne))  # per zone: [const, sp, it] x E
        self.regime_counts_ = np.bincount(reg, minlength=n_reg).astype(int)
        # economiser margin (chilled water above outside wet-bulb [K]): where the cooling
        # response kinks (chillers below a weather-dependent margin, economiser above)
        margin = CHW - wb
        Hb = self._hinge_basis(t, wb)
        n_h = int(self.n_cooling_pieces) - 1
        it_tot = IT.sum(axis=1)
        self.it_ref_kw_ = float(max(np.mean(it_tot), 1e-9))
        gammas = [float(g) for g in (self.hinge_load_slopes_c or (0.0,))] if n_h > 0 else [0.0]
        self.hinge_gamma_ = np.zeros(n_reg)
        hinges, it_hinges = [], []
        # hinges in total IT power, max(0, IT - k) / IT_ref with slopes >= 0: cooling rises
        # faster than linearly with load (fan, pump and tower laws, chiller part-load curves)
        # and flattens at low load (minimum fan and pump flows); knots at IT quantiles
        n_hi = max(0, int(self.n_it_hinges))
        it_knots = np.unique(np.round(np.quantile(it_tot, np.linspace(*self.it_hinge_quantile_range, int(self.n_it_hinge_candidates))), 1))
        v_it = np.maximum(0.0, it_tot[:, None] - it_knots[None, :]) / self.it_ref_kw_
        for r in range(n_reg):
            m = reg == r
            Er = E[m]
            IT_m = IT[m].sum(axis=1, keepdims=True) if self.shared_it_cooling else IT[m]
            SP_m = SP[m].mean(axis=1, keepdims=True) if self.shared_supply_cooling else SP[m]
            X = np.column_stack([np.ones(m.sum()), IT_m, SP_m, CHW[m]])  # (n, 2nz+2) .. (n, 4)
            D = (X[:, :, None] * Er[:, None, :]).reshape(m.sum(), -1)
            # cooling never falls as IT rises: the IT coefficients on the (non-negative) hat
            # functions stay >= 0, so the main piece's slope in IT is >= 0 at every weather
            # (without, a fit over deferred, low-load hours bent it negative at low load)
            # and never rises with a warmer supply-air or chilled-water setpoint (less lift,
            # more free cooling): those coefficients on the hat functions stay <= 0. Without
            # the signs, the fit traded a positive chilled-water against a negative supply
            # coefficient (the two move together in telemetry: chilled water follows the
            # coldest supply) and the LP exploited the pair (-60 kW per degC of one hall).
            it_nonneg = np.zeros((X.shape[1], ne))
            if self.monotone_it and len(self.knots_) >= 2:
                nk = len(self.knots_)
                ni = IT_m.shape[1]
                it_nonneg[1:1 + ni, :nk] = 1.0
                it_nonneg[1 + ni:, :nk] = -1.0  # supply setpoints and chilled water
            it_nonneg = it_nonneg.ravel()
            # relative (MAPE-like) loss: weight 1/y^2, floored at 5 % of the mean cooling power
            w = (1.0 / np.maximum(np.abs(cool[m]), 0.05 * np.abs(cool).mean()) ** (2.0 * float(self.relative_loss))
                 if self.relative_loss and cool.min() > 0 else None)  # relative error needs power > 0
            if w is not None:  # mean 1: the ridge penalty keeps its weight against the data
                w = w / w.mean()
            # the knot's load shift: with more than one candidate, chosen on the last
            # ``gamma_holdout_frac`` of the regime's rows (in time order) fitted on the rest,
            # then refitted on all rows (in-sample error tends to prefer the largest shift)
            n_r = int(m.sum())
            fit_rows = np.ones(n_r, dtype=bool)
            if len(gammas) > 1 and self.gamma_holdout_frac > 0 and n_r >= 200:
                fit_rows[int((1.0 - self.gamma_holdout_frac) * n_r):] = False
            best = None
            if self.joint_hinge_gammas and len(gammas) > 1:
                # every (knot, load shift) pair is a candidate of one family: the forward selection
                # picks each hinge's shift with its knot (hinges may shift differently)
                blocks, info = [], []
                for g in gammas:
                    mg = margin - g * it_tot / self.it_ref_kw_
                    cg = np.unique(np.round(np.quantile(mg, np.linspace(*self.hinge_quantile_range,
                                                                        int(self.n_hinge_candidates))), 2))
                    blocks.append(np.maximum(0.0, cg[None, :] - mg[m, None]))
                    info += [(float(c), g) for c in cg]
                best = (0.0, 0.0, info, [np.hstack(blocks), v_it[m]])
                gammas_loop = []
            else:
                gammas_loop = gammas
            for g in gammas_loop:  # hinge argument: wb + delta + g * IT / IT_ref - chw = delta - margin_g
                mg = margin - g * it_tot / self.it_ref_kw_
                cands = np.unique(np.round(np.quantile(mg, np.linspace(*self.hinge_quantile_range, int(self.n_hinge_candidates))), 2))
                v_chw = np.maximum(0.0, cands[None, :] - mg[m, None])
                fam = [v_chw, v_it[m]]
                fr = fit_rows
                fit_g = _fit_hinged(D[fr], Hb[m][fr], cool[m][fr], [v[fr] for v in fam], [n_h, n_hi], self.alpha,
                                    None if w is None else w[fr], self.piece_min_gain_frac, nonneg=it_nonneg)
                score = fit_g[3]
                if not fr.all():  # squared error on the held-out tail
                    yh = _hinged_predict(D[~fr], Hb[m][~fr], [v[~fr] for v in fam], *fit_g[:3])
                    score = float(np.sum((yh - cool[m][~fr]) ** 2))
                if best is None or score < best[0] - 1e-9:
                    best = (score, g, [(float(c), g) for c in cands], fam)
            _, self.hinge_gamma_[r], cands, fam = best
            a, picks, slopes, _ = _fit_hinged(D, Hb[m], cool[m], fam, [n_h, n_hi], self.alpha, w,
                                              self.piece_min_gain_frac, nonneg=it_nonneg)
            for _ in range(int(self.l1_iterations) if w is not None else 0):
                # iteratively reweighted least squares toward the mean *absolute* relative error
                # (the MAPE that is scored): weight 1 / (y |r|), |r| floored at l1_floor_frac y
                y_m = np.maximum(np.abs(cool[m]), 0.05 * np.abs(cool).mean())
                r_m = np.abs(cool[m] - _hinged_predict(D, Hb[m], fam, a, picks, slopes))
                w_l1 = 1.0 / (y_m * np.maximum(r_m, float(self.l1_floor_frac) * y_m))
                a, picks, slopes, _ = _fit_hinged(D, Hb[m], cool[m], fam, [n_h, n_hi], self.alpha,
                                                  w_l1 / w_l1.mean(), self.piece_min_gain_frac, nonneg=it_nonneg)
            order = np.argsort([cands[c][0] for c in picks[0]])
            knots, slopes_chw = [cands[picks[0][i]] for i in order], [slopes[0][i] for i in order]
            order = np.argsort([it_knots[c] for c in picks[1]])
            it_hinges.append(([float(it_knots[picks[1][i]]) for i in order], [slopes[1][i] for i in order]))
            a = a.reshape(X.shape[1], ne)
            if self.shared_it_cooling:  # the total-IT coefficient is every zone's coefficient
                a = np.vstack([a[:1], np.repeat(a[1:2], nz, axis=0), a[2:]])
            if self.shared_supply_cooling:  # the mean-supply coefficient, split over the zones
                a = np.vstack([a[:1 + nz], np.repeat(a[1 + nz:2 + nz] / nz, nz, axis=0), a[2 + nz:]])
            self.cooling_coef_[r] = a
            hinges.append((knots, slopes_chw))
            for j, zc in enumerate(inlet_cols):
                Xz = np.column_stack([np.ones(m.sum()), SP[m, j], IT[m, j]])
                Dz = (Xz[:, :, None] * Er[:, None, :]).reshape(m.sum(), -1)
                y = telemetry[zc].to_numpy(float)[m]
                self.inlet_coef_[r, j] = _lstsq(Dz, y, self.alpha).reshape(3, ne)
        # every regime gets the same number of hinges (padding: zero slope, no effect)
        n_keep = max(len(k) for k, _ in hinges)
        self.hinge_knots_c_ = np.zeros((n_reg, n_keep))
        self.hinge_gammas_ = np.zeros((n_reg, n_keep))  # each hinge's knot shift with load [K per mean IT]
        self.hinge_coef_ = np.zeros((n_reg, n_keep, Hb.shape[1]))
        for r, (knots, slopes) in enumerate(hinges):
            pad = n_keep - len(knots)
            self.hinge_knots_c_[r] = [k for k, _ in knots] + [max((k for k, _ in knots), default=0.0)] * pad
            self.hinge_gammas_[r] = [g for _, g in knots] + [0.0] * pad
            for i, c in enumerate(slopes):
                self.hinge_coef_[r, i] = c
        ni_keep = max(len(k) for k, _ in it_hinges)
        self.it_hinge_knots_kw_ = np.zeros((n_reg, ni_keep))
        self.it_hinge_coef_ = np.zeros((n_reg, ni_keep, Hb.shape[1]))
        for r, (knots, slopes) in enumerate(it_hinges):
            self.it_hinge_knots_kw_[r] = list(knots) + [max(knots, default=0.0)] * (ni_keep - len(knots))
            for i, c in enumerate(slopes):
                self.it_hinge_coef_[r, i] = c
        self.n_cooling_pieces_ = int(2 ** n_keep * (ni_keep + 1))

        # server fans: a prior per zone (kW per degC above the threshold), see IT_FAN_FRAC_PER_C
        self.it_fan_kw_per_c_ = self.it_fan_frac_per_c * IT.mean(axis=0)
        # electrical: facility - cooling = const + per_it * (IT incl. fans)
        it_total = telemetry["it_power_kw"].to_numpy(float)
        other = telemetry["facility_power_kw"].to_numpy(float) - cool
        c = _lstsq(np.column_stack([np.ones_like(it_total), it_total]), other, self.alpha)
        self.facility_const_kw_, self.facility_per_it_kw_ = float(c[0]), float(c[1])

        # the training envelope: every input's range
        env = {OUTSIDE_TEMP: t, OUTSIDE_RH: rh, WETBULB_C: wb, "chw_setpoint_c": CHW}
        for j in range(nz):
            env[it_cols[j]] = IT[:, j]
            env[sp_cols[j]] = SP[:, j]
        for p in self.pools_:
            env[col("active_servers", p)] = telemetry[col("active_servers", p)].to_numpy(float)
        self.envelope_ = {k: (float(np.min(x)), float(np.max(x))) for k, x in env.items()}
        self.n_train_rows_ = int(len(telemetry))
        # where the model was trained, by weather: total IT and chilled water of the training
        # rows sorted by outside wet-bulb (at most 20,000 rows, evenly thinned), from which
        # coefficients() takes the range seen at each forecast step's wet-bulb
        order = np.argsort(wb, kind="stable")
        keep = order[np.unique(np.linspace(0, len(order) - 1, min(len(order), 20000)).astype(int))]
        self.support_rows_ = np.column_stack([wb[keep], it_tot[keep], CHW[keep]])
        # and each zone's share of the total IT: with one cooling coefficient for total IT the
        # model cannot see how the load is spread over the zones (CRAH fans follow a cube law
        # of each zone's airflow), so it is valid only for spreads like those it was fitted on
        share = IT / np.maximum(it_tot, 1e-9)[:, None]
        q = float(self.support_quantile)
        self.zone_share_range_ = np.quantile(share, [q, 1.0 - q], axis=0).T  # (nz, 2)
        self.train_period_ = (telemetry.index[0].isoformat(), telemetry.index[-1].isoformat())
        return self

    # -- coefficients for a forecast ----------------------------------------------------
    def coefficients(self, site=None, forecast: pd.DataFrame | None = None) -> PlantCoefficients:
        """Per-step linear coefficients for the weather in ``forecast`` (temp_c/rh_pct or outside_*)."""
        if forecast is None:  # allow coefficients(forecast) as a positional shortcut
            forecast, site = site, None
        where = "LinearPlantModel.coefficients"
        self._check_fitted()
        _check_index(forecast, where)
        if site is not None and [z.name for z in site.zones] != self.zones_:
            raise ValueError(f"{where}: the site's zones {[z.name for z in site.zones]} differ from the "
                             f"zones the model was trained on {self.zones_}")
        t, rh, wb = _exog(forecast, where)
        reg = self._regimes(t, wb)
        E = self._E(t, wb)
        idx = forecast.index
        zones = self.zones_
        nz = len(zones)
        cc = np.einsum("te,tke->tk", E, self.cooling_coef_[reg])  # (T, 2nz+2)
        ic = np.einsum("te,tzke->tzk", E, self.inlet_coef_[reg])  # (T, nz, 3)

        def zf(a):
            return pd.DataFrame(a, index=idx, columns=zones)

        env = self._envelope_mask(forecast, exog_only=True)
        # hinges (knots ascending): cooling = main + sum_m s_m max(0, wb + delta_m - chw) with
        # s_m >= 0, i.e. the max of the main piece and, for each j, the main piece plus the
        # hinges j.. (all of them active at the coldest chilled water)
        # Hinges in total IT (knots ascending): sum_i t_i max(0, IT - k_i) with t_i >= 0 is the
        # max over the prefixes {i < j} (j = 0..), each an affine piece. The sum of the two
        # convex parts is the max over every (chilled-water suffix, IT prefix) pair.
        n_reg = len(self.regime_edges_) + 1
        knots = getattr(self, "hinge_knots_c_", np.zeros((n_reg, 0)))
        it_knots = getattr(self, "it_hinge_knots_kw_", np.zeros((n_reg, 0)))
        Hb = self._hinge_basis(t, wb) if knots.shape[1] or it_knots.shape[1] else None
        # chilled-water parts (const, per-IT, per-chw), the first = none
        chw_parts = [(0.0, 0.0, 0.0)]
        if knots.shape[1]:
            slope = np.einsum("th,tmh->tm", Hb, self.hinge_coef_[reg])  # (T, M) kW per K, >= 0
            at = wb[:, None] + knots[reg]  # knot in chilled water [degC] at zero IT, per step and hinge
            if hasattr(self, "hinge_gammas_"):
                g = self.hinge_gammas_[reg] / getattr(self, "it_ref_kw_", 1.0)  # (T, M)
            else:  # fitted before per-hinge shifts: one shift per regime
                g = np.repeat((getattr(self, "hinge_gamma_", np.zeros(n_reg))[reg]
                               / getattr(self, "it_ref_kw_", 1.0))[:, None], knots.shape[1], axis=1)
            # sum_m s_m max(0, at_m + g_m IT - chw) with every s_m >= 0 is the max over the subsets
            # S of the hinges of sum_{m in S} s_m (at_m + g_m IT - chw): exact whatever the order
            # in which the hinges switch on (hinges with different load shifts cross)
            for k in range(1, 2 ** knots.shape[1]):
                sel = np.array([(k >> j) & 1 for j in range(knots.shape[1])], dtype=bool)
                s_k = slope[:, sel]
                chw_parts.append(((s_k * at[:, sel]).sum(axis=1), (s_k * g[:, sel]).sum(axis=1), -s_k.sum(axis=1)))
        it_parts = [(0.0, 0.0)]  # (const, per-IT), the first = none
        if it_knots.shape[1]:
            tslope = np.einsum("th,tmh->tm", Hb, self.it_hinge_coef_[reg]) / self.it_ref_kw_  # kW per kW, >= 0
            kk = it_knots[reg]
            for j in range(1, it_knots.shape[1] + 1):
                it_parts.append((-(tslope[:, :j] * kk[:, :j]).sum(axis=1), tslope[:, :j].sum(axis=1)))
        extra = []
        for i, (ic0, ic1) in enumerate(it_parts):
            for j, (c0, c1, c2) in enumerate(chw_parts):
                if i == 0 and j == 0:
                    continue  # the main piece
                extra.append(CoolingPiece(
                    const_kw=pd.Series(cc[:, 0] + c0 + ic0, index=idx),
                    per_it_kw=zf(cc[:, 1:1 + nz] + np.asarray(c1 + ic1)[..., None] * np.ones((1, nz))),
                    per_supply_c=zf(cc[:, 1 + nz:1 + 2 * nz]),
                    per_chw_c=pd.Series(cc[:, 1 + 2 * nz] + c2, index=idx)))
        return PlantCoefficients(
            cooling_const_kw=pd.Series(cc[:, 0], index=idx),
            cooling_per_it_kw=zf(cc[:, 1:1 + nz]),
            cooling_per_supply_c=zf(cc[:, 1 + nz:1 + 2 * nz]),
            cooling_per_chw_c=pd.Series(cc[:, 1 + 2 * nz], index=idx),
            inlet_const_c=zf(ic[:, :, 0]),
            inlet_per_supply_c=zf(ic[:, :, 1]),
            inlet_per_it_kw=zf(ic[:, :, 2]),
            it_fan_kw_per_c=zf(np.tile(self.it_fan_kw_per_c_, (len(idx), 1))),
            facility_const_kw=pd.Series(self.facility_const_kw_, index=idx),
            facility_per_it_kw=pd.Series(self.facility_per_it_kw_, index=idx),
            it_fan_threshold_c=float(self.it_fan_threshold_c),
            in_envelope=env,
            model_version=getattr(self, "model_version_", None),
            cooling_pieces=tuple(extra),
            decision_envelope=self.decision_envelope(),
            support=self.support(wb, idx),
        )

    def support(self, wetbulb_c, index=None) -> pd.DataFrame | None:
        """Per step, the range of total IT [kW] and chilled water [degC] the model was trained
        on at that outside wet-bulb (training rows within ``support_window_c``, widened to
        twice that when fewer than ``support_min_rows``; the ``support_quantile`` to
        1 - ``support_quantile`` range), and each zone's share of the total IT (columns
        ``share_lo__<zone>``, ``share_hi__<zone>``). The model's held-out error was measured on such rows;
        outside them, in the corners of (weather, load, chilled water) no telemetry holds, a
        linear model extrapolates and an optimiser exploits exactly that error. NaN where too
        few rows are near (the weather envelope flags those steps)."""
        rows = getattr(self, "support_rows_", None)
        if rows is None:
            return None
        w = np.asarray(wetbulb_c, float)
        out = np.full((len(w), 4), np.nan)
        q = float(self.support_quantile)
        for i, x in enumerate(w):
            for width in (self.support_window_c, 2.0 * self.support_window_c):
                a, b = np.searchsorted(rows[:, 0], [x - width, x + width])
                if b - a >= self.support_min_rows:
                    near = rows[a:b]
                    out[i, :2] = np.quantile(near[:, 1], [q, 1.0 - q])
                    out[i, 2:] = np.quantile(near[:, 2], [q, 1.0 - q])
                    break
        cols = ["it_lo_kw", "it_hi_kw", "chw_lo_c", "chw_hi_c"]
        frame = pd.DataFrame(out, index=index if index is not None else pd.RangeIndex(len(w)), columns=cols)
        shares = getattr(self, "zone_share_range_", None)
        if shares is not None:
            for z, (lo, hi) in zip(self.zones_, shares):
                frame[f"share_lo__{z}"], frame[f"share_hi__{z}"] = lo, hi
        return frame

    def decision_envelope(self) -> dict[str, tuple[float, float]]:
        """Training range of every decision column ({telemetry column: (lo, hi)}, no margin)."""
        self._check_fitted()
        it_cols, sp_cols = self._decision_cols(self.zones_)
        keys = ["chw_setpoint_c", *sp_cols, *it_cols, *[col("active_servers", p) for p in self.pools_]]
        return {k: tuple(self.envelope_[k]) for k in keys if k in self.envelope_}


    def regime(self, frame: pd.DataFrame) -> pd.Series:
        """Name of the regime each row falls in."""
        self._check_fitted()
        t, rh, wb = _exog(frame, "LinearPlantModel.regime")
        return pd.Series(np.asarray(self.regime_names_)[self._regimes(t, wb)], index=frame.index)

    # -- predict ------------------------------------------------------------------------
    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Predict cooling, facility, IT power, inlet per zone and PUE for telemetry-like rows.

        Exactly ``self.coefficients(frame).predict(...)`` with the rows' decisions, plus PUE.
        """
        where = "LinearPlantModel.predict"
        self._check_fitted()
        _check_index(frame, where)
        it_cols, sp_cols = self._decision_cols(self.zones_)
        _require(frame, it_cols + sp_cols + ["chw_setpoint_c"], where)
        pc = self.coefficients(None, frame)
        it = pd.DataFrame(frame[it_cols].to_numpy(float), index=frame.index, columns=self.zones_)
        sp = pd.DataFrame(frame[sp_cols].to_numpy(float), index=frame.index, columns=self.zones_)
        out = pc.predict(it, sp, frame["chw_setpoint_c"].astype(float))
        out["pue"] = out["facility_power_kw"] / out["it_power_kw"]
        return out

    # -- envelope -----------------------------------------------------------------------
    def in_envelope(self, frame: pd.DataFrame) -> pd.Series:
        """True where every input present in ``frame`` lies inside the training range (with margin)."""
        self._check_fitted()
        return self._envelope_mask(frame, exog_only=False)

    def _envelope_mask(self, frame: pd.DataFrame, exog_only: bool) -> pd.Series:
        t, rh, wb = _exog(frame, "LinearPlantModel.in_envelope")
        values = {OUTSIDE_TEMP: t, OUTSIDE_RH: rh, WETBULB_C: wb}
        if not exog_only:
            for k in self.envelope_:
                if k in frame.columns and k not in values:
                    values[k] = frame[k].to_numpy(float)
        ok = np.ones(len(frame), dtype=bool)
        for k, v in values.items():
            lo, hi = self.envelope_[k]
            tol = self.envelope_margin_frac * max(hi - lo, 1e-9)
            ok &= (v >= lo - tol) & (v <= hi + tol)
        return pd.Series(ok, index=frame.index, name="in_envelope")

    def _check_fitted(self) -> None:
        if not hasattr(self, "cooling_coef_"):
            raise RuntimeError("LinearPlantModel is not fitted: call fit(telemetry, site) first")


class ReferencePlantModel(BaseEstimator, RegressorMixin):
    """Nonlinear reference: one ``HistGradientBoostingRegressor`` per target.

    Features: outside dry-bulb, RH, wet-bulb, chilled-water setpoint, per-zone supply
    setpoint and IT power, per-pool active servers (when present). Same ``predict``
    output as :class:`LinearPlantModel`.
    """

    def __init__(self, max_iter: int = 300, learning_rate: float = 0.1, max_leaf_nodes: int = 31,
                 random_state: int = 0, n_threads: int | None = 1):
        self.n_threads = n_threads
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.random_state = random_state

    def _X(self, frame: pd.DataFrame) -> np.ndarray:
        t, rh, wb = _exog(frame, "ReferencePlantModel")
        _require(frame, self.feature_columns_, "ReferencePlantModel")
        return np.column_stack([t, rh, wb, frame[self.feature_columns_].to_numpy(float)])

    def fit(self, telemetry: pd.DataFrame, site=None, zones: list[str] | None = None) -> "ReferencePlantModel":
        from sklearn.ensemble import HistGradientBoostingRegressor

        _check_index(telemetry, "ReferencePlantModel.fit")
        zones = list(zones) if zones is not None else [z.name for z in site.zones]
        self.zones_ = zones
        _record_plant(self, site)
        pools = [c for c in telemetry.columns if c.startswith("active_servers__")]
        self.feature_columns_ = (["chw_setpoint_c"] + [col("supply_setpoint_c", z) for z in zones]
                                 + [col("zone_it_power_kw", z) for z in zones] + pools)
        self.targets_ = ["cooling_power_kw", "facility_power_kw"] + [col("inlet_temp_c", z) for z in zones]
        _require(telemetry, self.targets_, "ReferencePlantModel.fit")
        X = self._X(telemetry)
        self.estimators_ = []
        with _openmp_threads(self.n_threads):
            self._fit_targets(X, telemetry)
        return self

    def _fit_targets(self, X, telemetry) -> None:
        from sklearn.ensemble import HistGradientBoostingRegressor

        for tcol in self.targets_:
            m = HistGradientBoostingRegressor(max_iter=self.max_iter, learning_rate=self.learning_rate,
                                              max_leaf_nodes=self.max_leaf_nodes, random_state=self.random_state,
                                              early_stopping=False)
            self.estimators_.append(m.fit(X, telemetry[tcol].to_numpy(float)))

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        if not hasattr(self, "estimators_"):
            raise RuntimeError("ReferencePlantModel is not fitted")
        _check_index(frame, "ReferencePlantModel.predict")
        X = self._X(frame)
        out = pd.DataFrame(index=frame.index)
        it = frame[[col("zone_it_power_kw", z) for z in self.zones_]].sum(axis=1).astype(float)
        out["it_power_kw"] = it
        with _openmp_threads(self.n_threads):
            for tcol, m in zip(self.targets_, self.estimators_):
                out[tcol] = m.predict(X)
        out["pue"] = out["facility_power_kw"] / out["it_power_kw"]
        return out


TARGET_COLUMNS = ("cooling_power_kw", "facility_power_kw", "inlet_temp_c", "pue")


def plant_metrics(actual: pd.DataFrame, predicted: pd.DataFrame, zones: list[str]) -> dict[str, float]:
    """Held-out errors: MAPE of cooling and facility power [%], MAE of inlet [degC] and of PUE [-]."""
    def mape(c):
        a, p = actual[c].to_numpy(float), predicted[c].to_numpy(float)
        return float(np.mean(np.abs(p - a) / np.maximum(np.abs(a), 1e-9)) * 100.0)

    inlet = [col("inlet_temp_c", z) for z in zones]
    pue_a = actual["pue"] if "pue" in actual.columns else actual["facility_power_kw"] / actual["it_power_kw"]
    return {
        "cooling_power_mape_pct": mape("cooling_power_kw"),
        "facility_power_mape_pct": mape("facility_power_kw"),
        "inlet_temp_mae_c": float(np.mean(np.abs(predicted[inlet].to_numpy() - actual[inlet].to_numpy()))),
        "inlet_temp_max_abs_err_c": float(np.max(np.abs(predicted[inlet].to_numpy() - actual[inlet].to_numpy()))),
        "pue_mae": float(np.mean(np.abs(predicted["pue"].to_numpy() - pue_a.to_numpy()))),
        "n_test_rows": int(len(actual)),
    }


def time_block_split(frame: pd.DataFrame, test_from, gap: pd.Timedelta | str = "1D",
                     test_to=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split by time, never shuffled: train before ``test_from - gap``, test from ``test_from``.

    The gap keeps slow thermal state (and autocorrelated weather) from leaking across the cut.
    """
    _check_index(frame, "time_block_split")
    t0 = pd.Timestamp(test_from)
    t0 = t0.tz_localize("UTC") if t0.tzinfo is None else t0
    gap = pd.Timedelta(gap)
    train = frame[frame.index < t0 - gap]
    test = frame[frame.index >= t0]
    if test_to is not None:
        t1 = pd.Timestamp(test_to)
        test = test[test.index < (t1.tz_localize("UTC") if t1.tzinfo is None else t1)]
    if train.empty or test.empty:
        raise ValueError(f"time_block_split: test_from {t0} leaves an empty side "
                         f"(data {frame.index[0]} .. {frame.index[-1]})")
    return train, test
