"""Numeric inputs of the LP: site tables, learned coefficients and forecasts as arrays.

:func:`prepare` validates everything at the boundary (errors name the column, row,
zone or pool) and returns a :class:`ProblemData` of plain numpy arrays (steps first)
that the variable, constraint and objective functions read. Nothing here solves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from coolshift.baselines import run_on_arrival, site_arrays
from coolshift.config import SiteConfig, Tariff
from coolshift.coefficients import PlantCoefficients
from coolshift.ratings import PlantLimits, free_cooling_share, plant_limits
from coolshift.setpoints import CHW_MARGIN_K, chw_envelope_c, supply_envelope_c
from coolshift.site_arrays import SiteArrays
from coolshift.tariffs import billing_months

from .state import InitialState

__all__ = ["LEVERS", "PlanOptions", "ProblemData", "StorageTable", "objective_weights", "COST_TIE_BREAK", "prepare", "power_curve_segments", "power_curve_error", "boot_extra_kw_per_server"]

# A CRAH coil cannot cool supply air below chilled water + its approach; the plan keeps
# 1 K more, as operators (and the baseline rules) do, so it never asks the plant for a state
# the learned model has not seen and the coil cannot deliver (coolshift.setpoints).
CHW_SUPPLY_MARGIN_K = CHW_MARGIN_K

# What the optimiser may move; a lever left out behaves like the static baseline for it.
LEVERS = frozenset({"cooling", "consolidation", "shifting", "offload"})

_CURVE_U = np.linspace(0.0, 1.0, 11)  # SPECpower_ssj2008 load levels: active idle, 10 % ... 100 %


@dataclass(frozen=True)
class PlanOptions:
    """Choices that shape the LP (defaults: carbon only, continuous servers)."""

    accounting: str | None = None  # "location" | "market"; None = the config's
    tariff_weight_kg_per_currency: float = 0.0  # kgCO2-equivalent per unit of energy cost
    move_penalty_kg_per_c: float = 0.01  # small penalty per degC of setpoint move (damps chatter)
    integer_servers: bool = False  # MILP when True
    site_power_cap_kw: float | None = None  # overrides the config's cap when set
    time_limit_s: float = 600.0
    threads: int | None = None
    # HiGHS's algorithm for a cold solve ("choose": dual simplex here; "hipo": HiGHS's new
    # interior point, which the highspy 1.15 wheel lacks the dependencies for: HiGHS then runs
    # dual simplex, docs/optimizer.md, Speed). Warm re-solves continue with simplex.
    lp_solver: str = "choose"
    deadline_prices: bool = True  # value an hour of each batch deadline by a warm re-solve
    warm_bound_share: float = 0.01  # re-solve warm only if at most this share of bounds moved
    # Ranges of the decisions the learned model was trained on ({column: (lo, hi)}, e.g. a
    # LinearPlantModel's ``envelope_``): setpoints are kept inside them, because a linear
    # model extrapolated to an unseen corner is what an optimiser exploits first.
    decision_envelope: dict | None = None
    envelope_zone_it: bool = False  # also keep zone IT power inside the envelope (hard rows)
    # Keep total IT and chilled water inside the range the model was trained on at each
    # step's forecast weather (PlantCoefficients.support), as soft rows: leaving it costs
    # these penalties (far above any carbon saving, so only where nothing else is feasible).
    support_envelope: bool = True
    support_penalty_kg_per_kwh: float = 10.0
    support_penalty_kg_per_c: float = 10.0  # per degC of chilled water outside, per step
    # Levers the plan may use (for attributing savings). Off: cooling -> supply and chilled
    # water held at the config's initial setpoints; consolidation -> every server active;
    # shifting -> batch served on arrival as capacity allows (the simulator's run-on-arrival
    # rule); offload -> none.
    levers: frozenset = LEVERS
    # What HiGHS is handed. "numpy": the families' numpy assembly (the same matrix as the
    # Pyomo model, tested entry by entry; the Pyomo model is built when ``Planner.pyomo`` is
    # first read). "pyomo": the Pyomo model compiled by ``LinearStandardFormCompiler``.
    handover: str = "numpy"
    # Large sites (docs/optimizer.md, Speed): "off"; "zones" (Dantzig-Wolfe, :mod:`.decompose`,
    # slower than the monolithic LP on the benchmark sites); "sifting" (a working-set LP seeded
    # by a coarse-step plan, :mod:`.sifting`). Off by default.
    decompose: str = "off"
    decompose_gap: float = 5e-4  # stop when (upper - lower bound) / upper <= this
    decompose_workers: int = 2  # threads pricing zones in parallel (HiGHS releases the GIL)
    # Batch work left at the horizon's end. "hard": none (a plan is complete in itself; an
    # impossible end is diagnosed). "soft": work not yet due under its own deadline may be
    # left, at ``horizon_end_penalty_kg_per_unit`` a unit, far above what serving a unit costs
    # (~0.1-0.3 kgCO2), so a plan clears its queue whenever it can; a receding-horizon policy
    # re-plans the rest, rather than falling back when forecast demand near the end of the
    # horizon exceeds what the pools can serve before it.
    horizon_end: str = "hard"
    horizon_end_penalty_kg_per_unit: float = 10.0
    # What the plan minimises (docs/storage.md): "carbon" (kgCO2; the default), "cost" (USD:
    # energy at the forecast's ``price_usd_per_kwh``, the tariff's demand charge, storage
    # degradation; carbon only breaks ties) or "weighted" (USD + internal carbon price x tCO2,
    # expressed in kgCO2-equivalent: kg + USD x 1000 / price).
    objective: str = "carbon"
    carbon_price_usd_per_tco2: float | None = None  # None: the tariff's (weighted objective)
    carbon_cap_kg: float | None = None  # epsilon constraint: the plan's kgCO2 at most this (pareto)
    use_storage: bool = True  # False: plan as if the site had no storage (the "without" case)
    # Each billing month's peak grid import so far ({"YYYY-MM": kW}, local months): the demand
    # charge is then paid only on raising it. None: every horizon pays on its own peak.
    peak_so_far_kw: dict | None = None


@dataclass
class StorageTable:
    """The site's stores as arrays (S,), PyPSA ``StorageUnit``-style: limits in kWh and kW,
    charge and discharge efficiency (sqrt of round trip each), self-discharge per hour,
    degradation per kWh discharged in kgCO2 and USD. ``soc_min_kwh`` includes a UPS's
    ride-through reserve (minutes at design IT load / 60 x kW / discharge efficiency)."""

    names: list[str]
    energy_kwh: np.ndarray
    charge_kw: np.ndarray
    discharge_kw: np.ndarray
    eta_charge: np.ndarray
    eta_discharge: np.ndarray
    soc_min_kwh: np.ndarray
    soc_max_kwh: np.ndarray
    soc0_kwh: np.ndarray
    reserve_kwh: np.ndarray
    self_discharge_per_h: np.ndarray
    degradation_kg_per_kwh: np.ndarray
    degradation_usd_per_kwh: np.ndarray
    soc_min_frac: np.ndarray
    soc_max_frac: np.ndarray

    @classmethod
    def from_site(cls, site: SiteConfig, soc0_kwh: dict | None = None) -> "StorageTable | None":
        units = site.storage
        if not units:
            return None
        design_kw = sum(z.design_it_load_kw for z in site.zones)
        a = lambda f: np.array([f(u) for u in units], float)  # noqa: E731
        e = a(lambda u: u.energy_kwh)
        eta = np.sqrt(a(lambda u: u.round_trip_efficiency))
        reserve = a(lambda u: u.ride_through_min / 60.0 * design_kw) / eta
        lo = np.maximum(a(lambda u: u.soc_min_frac) * e, reserve)
        hi = a(lambda u: u.soc_max_frac) * e
        if (lo > hi).any():
            k = int(np.argmax(lo > hi))
            raise ValueError(f"storage {units[k].name}: the ride-through reserve {reserve[k]:.1f} kWh exceeds soc_max "
                             f"{hi[k]:.1f} kWh")
        soc0 = a(lambda u: u.soc_initial_frac) * e
        for k, u in enumerate(units):
            if soc0_kwh and u.name in soc0_kwh:
                soc0[k] = float(soc0_kwh[u.name])
            if not lo[k] - 1e-6 <= soc0[k] <= hi[k] + 1e-6:
                raise ValueError(f"storage {u.name}: initial state of charge {soc0[k]:.1f} kWh outside "
                                 f"[{lo[k]:.1f}, {hi[k]:.1f}] kWh (limits and ride-through reserve)")
        return cls(
            names=[u.name for u in units], energy_kwh=e, charge_kw=a(lambda u: u.charge_kw),
            discharge_kw=a(lambda u: u.discharge_kw), eta_charge=eta, eta_discharge=eta.copy(), soc_min_kwh=lo,
            soc_max_kwh=hi, soc0_kwh=np.clip(soc0, lo, hi), reserve_kwh=reserve,
            self_discharge_per_h=a(lambda u: u.self_discharge_per_h),
            degradation_kg_per_kwh=a(lambda u: u.degradation_kgco2_per_kwh),
            degradation_usd_per_kwh=a(lambda u: u.degradation_usd_per_kwh),
            soc_min_frac=a(lambda u: u.soc_min_frac), soc_max_frac=a(lambda u: u.soc_max_frac),
        )


def objective_weights(options: "PlanOptions", tariff: Tariff | None) -> tuple[float, float]:
    """(carbon weight, money weight in kg per USD) of the objective for ``options.objective``."""
    if options.objective == "carbon":
        return 1.0, float(options.tariff_weight_kg_per_currency)
    if options.objective == "cost":
        return COST_TIE_BREAK, 1.0
    if options.objective == "weighted":
        price = options.carbon_price_usd_per_tco2
        if price is None:
            price = tariff.carbon_price_usd_per_tco2 if tariff is not None else 0.0
        if not price or price <= 0:
            raise ValueError("objective 'weighted' needs an internal carbon price > 0 (--carbon-price or "
                             "tariff.carbon_price_usd_per_tco2)")
        return 1.0, 1000.0 / float(price)
    raise ValueError(f"PlanOptions.objective: {options.objective!r}; choose 'carbon', 'cost' or 'weighted'")


# In the cost objective carbon only breaks ties between plans of equal cost: 1e-6 kg-eq per kg,
# far below any tariff's price of a kg (a 10 USD/tCO2 price is 1e-2 USD per kg).
COST_TIE_BREAK = 1e-6


@dataclass
class ProblemData:
    """Arrays for one planning horizon (n steps, Z zones, P pools, K classes, E edges)."""

    index: pd.DatetimeIndex
    step_h: float
    zones: list[str]
    pools: list[str]
    classes: list[str]
    edges: list[str]
    pool_zone: np.ndarray  # (P,) zone number of each pool
    zone_pools: np.ndarray  # (Z, maxPz) pool numbers, -1 padded
    # pools
    servers: np.ndarray
    min_active: np.ndarray
    sleep_w: np.ndarray
    peak_w: np.ndarray
    cap_per_server: np.ndarray  # units/h per active server at full load
    boot_frac: np.ndarray  # share of a step a server switched on spends booting
    segments: list[list[tuple[float, float]]]  # per pool: (intercept, slope) as fractions of peak
    serves: np.ndarray  # (P, K) bool
    # classes
    batch: np.ndarray  # (K,) bool
    deadline_steps: np.ndarray  # (K,) int, batch only
    demand: np.ndarray  # (n, K) units/h
    backlog0: np.ndarray  # (K,) units
    backlog0_chunks: list[list[tuple[int, float]]]  # per class: (due step, units), the due step the last step to serve it by
    backlog_fixed: np.ndarray | None  # (n, K) backlog pinned to the run-on-arrival rule's queue (shifting off)
    data_gb_per_unit: np.ndarray
    offloadable: np.ndarray  # (K,) bool: the class may run at an edge site at all
    # edges
    offload_ok: np.ndarray  # (E, K) bool
    edge_capacity: np.ndarray
    edge_kwh_per_unit: np.ndarray  # (E,) kW per unit/h (proportional + static share at capacity) x PUE
    network_kwh_per_gb: np.ndarray
    edge_gco2: np.ndarray  # (n, E)
    # zones / plant
    inlet_min: np.ndarray
    inlet_max: np.ndarray
    sp_min: np.ndarray
    sp_max: np.ndarray
    sp_step: np.ndarray
    sp0: np.ndarray
    chw_min: float
    chw_max: float
    chw0: float
    n0: np.ndarray  # (P,) active servers before step 0
    # learned coefficients (n, Z) / (n,)
    cool_const: np.ndarray
    cool_it: np.ndarray
    cool_sp: np.ndarray
    cool_chw: np.ndarray
    inlet_const: np.ndarray
    inlet_sp: np.ndarray
    inlet_it: np.ndarray
    fan_k: np.ndarray
    fan_thr: float
    fac_const: np.ndarray
    fac_it: np.ndarray
    # extra convex pieces of cooling power (cooling = max(main, pieces)): (n,), (n,Z), (n,Z), (n,) each
    cool_pieces: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]
    in_envelope: np.ndarray  # (n,) bool: forecast conditions inside the model's training data
    zone_it_lo: np.ndarray | None  # (Z,) zone IT kW range of the training data, if known
    zone_it_hi: np.ndarray | None
    # (n, 4) training support per step: total IT lo/hi kW, chilled water lo/hi degC (inf = none)
    support: np.ndarray | None
    # (n, Z, 2) each zone's share of total IT seen in training (lo, hi), or None
    support_share: np.ndarray | None
    # grid
    gco2: np.ndarray  # (n,) site intensity, gCO2/kWh
    accounting: str
    ppa_kw: np.ndarray  # (n,) contracted supply (market accounting)
    residual_gco2: np.ndarray  # (n,) factor for unmatched energy (market accounting)
    price_per_kwh: np.ndarray  # (n,) tariff, 0 if none
    power_cap_kw: float | None
    options: PlanOptions = field(default_factory=PlanOptions)
    # Chilled water must stay this far below every zone's supply-air setpoint: the CRAH
    # coil approach (config) plus a margin (``CHW_SUPPLY_MARGIN_K``).
    chw_gap_c: float = 0.0
    # What the plant can carry (:mod:`coolshift.ratings`), and the economiser's share of
    # the heat per step at the forecast weather and the coldest water the plan may choose
    # (0 without weather columns in the forecast: the chillers alone).
    plant: PlantLimits | None = None
    free_share: np.ndarray | None = None  # (n,)
    # storage behind the meter (None without): :class:`StorageTable`
    storage: "StorageTable | None" = None
    tariff: Tariff | None = None  # for the demand charge and bills
    month: np.ndarray | None = None  # (n,) billing month of each step (demand charge)
    months: list[str] = field(default_factory=list)
    carbon_weight: float = 1.0  # objective = carbon_weight x kgCO2 + money_weight x USD
    money_weight_kg_per_usd: float = 0.0

    @property
    def n(self) -> int:
        return len(self.index)


def boot_extra_kw_per_server(d: ProblemData) -> np.ndarray:
    """(P,) step-average extra kW of a server switched on in a step, above its no-work draw.

    A booting server draws about peak power for ``boot_time_s`` (Meisner et al. 2009,
    "PowerNap", ASPLOS) and serves no work meanwhile (``pool_capacity``); the curve counts
    it at its no-work draw (the curve's value at zero work per active server).
    """
    idle = np.array([max(a for a, _ in segs) for segs in d.segments]) * d.peak_w
    return d.boot_frac * np.maximum(d.peak_w - idle, 0.0) / 1000.0


def power_curve_segments(idle_w: float, peak_w: float, curve_frac=None) -> list[tuple[float, float]]:
    """Per-server power as max of lines ``a + b*u`` (fractions of peak, ``u`` = utilisation).

    Linear form (no curve): one line through idle and peak, exact. With an 11-point
    SPECpower curve: the lines of its lower convex envelope, exact at the envelope's
    vertices and below the curve elsewhere (see :func:`power_curve_error`). A convex
    envelope keeps the perspective ``n * f(w / (n c))`` convex, so the LP stays an LP.
    """
    if curve_frac is None:
        a = idle_w / peak_w
        return [(a, 1.0 - a)]
    f = np.asarray(curve_frac, float)
    hull = [0]
    for i in range(1, len(f)):  # monotone-chain lower hull over increasing u
        while len(hull) >= 2:
            i0, i1 = hull[-2], hull[-1]
            cross = (_CURVE_U[i1] - _CURVE_U[i0]) * (f[i] - f[i0]) - (f[i1] - f[i0]) * (_CURVE_U[i] - _CURVE_U[i0])
            if cross <= 0:
                hull.pop()
            else:
                break
        hull.append(i)
    segs = []
    for i0, i1 in zip(hull, hull[1:]):
        b = (f[i1] - f[i0]) / (_CURVE_U[i1] - _CURVE_U[i0])
        segs.append((float(f[i0] - b * _CURVE_U[i0]), float(b)))
    return segs


def power_curve_error(curve_frac) -> float:
    """Largest gap between the 11-point curve and its convex envelope, as a fraction of peak."""
    segs = power_curve_segments(0.0, 1.0, curve_frac)
    env = np.max([a + b * _CURVE_U for a, b in segs], axis=0)
    return float(np.max(np.asarray(curve_frac) - env))


def _col(frame: pd.DataFrame, name: str, what: str) -> np.ndarray:
    if name not in frame.columns:
        raise ValueError(f"forecast: missing column {name!r} ({what}); columns: {list(frame.columns)}")
    v = pd.to_numeric(frame[name], errors="coerce").to_numpy(float)
    bad = ~np.isfinite(v)
    if bad.any():
        raise ValueError(f"forecast: column {name!r} has a missing/non-numeric value at {frame.index[bad.argmax()]}")
    return v


def _ppa_kw(site: SiteConfig, forecast: pd.DataFrame) -> np.ndarray:
    if "ppa_kw" in forecast.columns:
        return _col(forecast, "ppa_kw", "contracted renewable supply")
    ren = site.renewables
    mwh = ren.ppa_mwh_per_year if ren else 0.0
    # Without a supply series, a flat profile delivering the contracted annual volume.
    return np.full(len(forecast), mwh * 1000.0 / 8760.0)


def prepare(
    site: SiteConfig,
    coefficients: PlantCoefficients,
    forecast: pd.DataFrame,
    initial_state: InitialState | None = None,
    options: PlanOptions | None = None,
) -> ProblemData:
    """Validate and convert all inputs of one horizon into :class:`ProblemData`."""
    options = options or PlanOptions()
    state = initial_state or InitialState.from_site(site)
    state.validate(site)
    if not isinstance(forecast.index, pd.DatetimeIndex) or len(forecast) == 0:
        raise ValueError("forecast: needs a non-empty DatetimeIndex")
    idx = forecast.index
    if not coefficients.index.equals(idx):
        raise ValueError(
            f"coefficients cover {coefficients.index[0]}..{coefficients.index[-1]} ({len(coefficients.index)} "
            f"steps) but the forecast covers {idx[0]}..{idx[-1]} ({len(idx)} steps)"
        )
    zones = [z.name for z in site.zones]
    if coefficients.zones != zones:
        raise ValueError(f"coefficients are for zones {coefficients.zones}, the site has {zones}")
    if len(idx) > 1:
        step_h = (idx[1] - idx[0]).total_seconds() / 3600.0
        if not np.allclose(np.diff(idx.asi8), idx.asi8[1] - idx.asi8[0]):
            raise ValueError("forecast: index is not evenly spaced")
    else:
        step_h = site.step_h
    pools = site.server_pools
    site_arr = SiteArrays.from_site(site)  # the site's parameters as arrays, shared with the simulator and the rules
    pool_names = [p.name for p in pools]
    classes = site.workload_classes
    cls_names = [c.name for c in classes]
    zpos = {z: i for i, z in enumerate(zones)}
    pool_zone = np.array([zpos[p.zone] for p in pools])
    maxpz = max(np.bincount(pool_zone, minlength=len(zones)).max(), 1)
    zone_pools = -np.ones((len(zones), maxpz), dtype=np.int64)
    for zi in range(len(zones)):
        mem = np.flatnonzero(pool_zone == zi)
        zone_pools[zi, : len(mem)] = mem
    serves = np.array([[p.classes is None or c.name in p.classes for c in classes] for p in pools], dtype=bool)
    for k, c in enumerate(classes):
        if not serves[:, k].any():
            raise ValueError(f"workload class {c.name}: no server pool may serve it")
    batch = np.array([c.kind == "batch" for c in classes])
    deadline_steps = np.array(
        [max(1, int(math.floor(c.deadline_h / step_h + 1e-9))) if c.kind == "batch" else 0 for c in classes]
    )
    demand = np.column_stack([_col(forecast, f"{c.name}_units_per_h", f"demand of class {c.name}") for c in classes])
    if (demand < 0).any():
        k = int(np.argwhere(demand < 0)[0][1])
        raise ValueError(f"forecast: column '{cls_names[k]}_units_per_h' has negative demand")
    chunks_h = state.backlog_chunks()
    # a chunk due in h hours must be served by the end of step ceil(h / dt) - 1 (step 0 at the latest)
    chunks = [
        [(max(0, int(math.ceil(h / step_h - 1e-9)) - 1), u) for h, u in chunks_h.get(c, []) if u > 0]
        for c in cls_names
    ]
    backlog0 = np.array([sum(u for _, u in ch) for ch in chunks], float)
    edges = site.edge_sites
    offload_ok = np.array(
        [
            [c.offloadable and (c.max_latency_ms is None or e.latency_ms <= c.max_latency_ms) for c in classes]
            for e in edges
        ],
        dtype=bool,
    ).reshape(len(edges), len(classes))
    edge_gco2 = np.column_stack(
        [_col(forecast, f"gco2_per_kwh__{e.name}", f"grid intensity at edge site {e.name}") for e in edges]
    ) if edges else np.zeros((len(idx), 0))

    c = coefficients
    for name in ("cooling_const_kw", "cooling_per_it_kw", "cooling_per_supply_c", "cooling_per_chw_c", "inlet_const_c",
                 "inlet_per_supply_c", "inlet_per_it_kw", "it_fan_kw_per_c", "facility_const_kw", "facility_per_it_kw"):
        v = np.asarray(getattr(c, name), float).reshape(len(idx), -1)
        bad = ~np.isfinite(v).all(axis=1)
        if bad.any():
            raise ValueError(f"coefficients: {name} is missing/non-finite at step {idx[bad.argmax()]}")
    zf = site.zones
    accounting = options.accounting or site.planning.accounting
    if accounting not in ("location", "market"):
        raise ValueError(f"accounting must be 'location' or 'market', not {accounting!r}")
    gco2 = _col(forecast, "gco2_per_kwh", "site grid intensity")
    residual = None
    if site.renewables is not None and site.renewables.residual_mix_gco2_per_kwh is not None:
        residual = np.full(len(idx), site.renewables.residual_mix_gco2_per_kwh)
    pcol = next((c for c in ("price_usd_per_kwh", "price_per_kwh") if c in forecast.columns), None)
    price = _col(forecast, pcol, "energy price") if pcol else np.zeros(len(idx))
    if options.tariff_weight_kg_per_currency and pcol is None:
        raise ValueError("forecast: a tariff weight was given but there is no 'price_per_kwh' column")
    wc, wm = objective_weights(options, site.tariff)
    if options.objective != "carbon" and pcol is None:
        raise ValueError(f"objective {options.objective!r} needs energy prices: a 'price_usd_per_kwh' column in the "
                         "forecast (a `tariff:` block in the site config provides it)")
    sp0 = np.array([state.supply_setpoint_c.get(z.name, z.supply_setpoint_initial_c) for z in zf])
    # the safe envelope every part of Coolshift uses (coolshift.setpoints): the setpoint range,
    # supply air never above the inlet maximum, chilled water cold enough for every zone
    sp_lo, sp_hi = (np.array(v, float) for v in zip(*(supply_envelope_c(z) for z in zf)))
    ch = site.cooling.chiller
    chw_lo, chw_hi = chw_envelope_c(site)
    # the coefficients' own training range when the model provides it, else the options'
    env = (c.decision_envelope if c.decision_envelope is not None else options.decision_envelope) or {}
    pieces = []
    for k, pc in enumerate(c.cooling_pieces):
        arr = (pc.const_kw.to_numpy(float), pc.per_it_kw.to_numpy(float), pc.per_supply_c.to_numpy(float),
               pc.per_chw_c.to_numpy(float))
        for name, a in zip(("const_kw", "per_it_kw", "per_supply_c", "per_chw_c"), arr):
            if not np.isfinite(a).all():
                bad = ~np.isfinite(a.reshape(len(idx), -1)).all(axis=1)
                raise ValueError(f"coefficients: cooling_pieces[{k}].{name} is missing/non-finite at step {idx[bad.argmax()]}")
        pieces.append(arr)
    for i, z in enumerate(zf):
        lo, hi = env.get(f"supply_setpoint_c__{z.name}", (-np.inf, np.inf))
        # never exclude where the plant is now: it must be able to ramp in from there
        sp_lo[i] = min(max(sp_lo[i], lo), sp0[i])
        sp_hi[i] = max(min(sp_hi[i], hi), sp0[i])
    if "chw_setpoint_c" in env:
        lo, hi = env["chw_setpoint_c"]
        chw_lo = min(max(chw_lo, lo), state.chw_setpoint_c)
        chw_hi = max(min(chw_hi, hi), state.chw_setpoint_c)
    zit = (None, None)
    if options.envelope_zone_it and all(f"zone_it_power_kw__{z.name}" in env for z in zf):
        zit = tuple(np.array([env[f"zone_it_power_kw__{z.name}"][j] for z in zf], float) for j in (0, 1))
    unknown = set(options.levers) - LEVERS
    if unknown:
        raise ValueError(f"PlanOptions.levers: unknown lever(s) {sorted(unknown)}; choose from {sorted(LEVERS)}")
    if options.lp_solver not in ("choose", "simplex", "ipm", "hipo"):
        raise ValueError(f"PlanOptions.lp_solver: {options.lp_solver!r}; choose 'choose', 'simplex', 'ipm' or 'hipo'")
    if options.handover not in ("numpy", "pyomo"):
        raise ValueError(f"PlanOptions.handover: {options.handover!r}; choose 'numpy' or 'pyomo'")
    if options.horizon_end not in ("hard", "soft"):
        raise ValueError(f"PlanOptions.horizon_end: {options.horizon_end!r}; choose 'hard' or 'soft'")
    if options.decompose not in ("off", "zones", "sifting"):
        raise ValueError(f"PlanOptions.decompose: {options.decompose!r}; choose 'off', 'zones' or 'sifting'")
    storage = StorageTable.from_site(site, getattr(state, "storage_soc_kwh", None)) if options.use_storage else None
    if storage is not None and options.decompose != "off":
        raise ValueError("PlanOptions.decompose: storage is planned by the whole LP only; use decompose='off'")
    month, months = billing_months(idx, site.tariff.timezone if site.tariff else "UTC")
    if "cooling" not in options.levers:  # setpoints held where the config starts them
        sp0 = np.array([z.supply_setpoint_initial_c for z in zf], float)
        sp_lo, sp_hi = sp0.copy(), sp0.copy()
        chw_lo = chw_hi = float(ch.chw_setpoint_initial_c)
    d = ProblemData(
        index=idx,
        step_h=step_h,
        zones=zones,
        pools=pool_names,
        classes=cls_names,
        edges=[e.name for e in edges],
        pool_zone=pool_zone,
        zone_pools=zone_pools,
        servers=site_arr.servers.copy(),
        min_active=site_arr.min_active_servers.copy(),
        sleep_w=site_arr.sleep_w.copy(),
        peak_w=site_arr.peak_w.copy(),
        cap_per_server=site_arr.capacity_units_per_server.copy(),
        boot_frac=np.minimum(1.0, site_arr.boot_time_s / (step_h * 3600.0)),
        segments=[power_curve_segments(p.idle_w, p.peak_w, p.power_curve_frac) for p in pools],
        serves=serves,
        batch=batch,
        deadline_steps=deadline_steps,
        demand=demand,
        backlog0=backlog0,
        backlog0_chunks=chunks,
        backlog_fixed=None,
        data_gb_per_unit=np.array([c_.data_gb_per_unit for c_ in classes], float),
        offloadable=np.array([c_.offloadable for c_ in classes], dtype=bool),
        offload_ok=offload_ok,
        edge_capacity=np.array([e.capacity_units_per_h for e in edges], float),
        # proportional kW per unit/h plus the static power's share per unit at full capacity,
        # x PUE: the tightest linear (convex) bound on the fixed charge the simulator makes
        # whenever an edge carries work (simulations/edge.py); exact at full edge load
        edge_kwh_per_unit=np.array([(e.kw_per_unit_per_h + e.static_kw / e.capacity_units_per_h) * e.pue
                                    for e in edges], float),
        network_kwh_per_gb=np.array([e.network_kwh_per_gb for e in edges], float),
        edge_gco2=edge_gco2,
        inlet_min=site_arr.inlet_min_c.copy(),
        inlet_max=site_arr.inlet_max_c.copy(),
        sp_min=sp_lo,
        sp_max=sp_hi,
        sp_step=site_arr.supply_setpoint_max_step_c.copy(),
        sp0=sp0,
        chw_min=chw_lo,
        chw_max=chw_hi,
        chw0=float(state.chw_setpoint_c),
        n0=np.array([state.active_servers.get(p.name, float(p.servers)) for p in pools], float),
        cool_const=c.cooling_const_kw.to_numpy(float),
        cool_it=c.cooling_per_it_kw.to_numpy(float),
        cool_sp=c.cooling_per_supply_c.to_numpy(float),
        cool_chw=c.cooling_per_chw_c.to_numpy(float),
        inlet_const=c.inlet_const_c.to_numpy(float),
        inlet_sp=c.inlet_per_supply_c.to_numpy(float),
        inlet_it=c.inlet_per_it_kw.to_numpy(float),
        fan_k=c.it_fan_kw_per_c.to_numpy(float),
        fan_thr=float(c.it_fan_threshold_c),
        fac_const=c.facility_const_kw.to_numpy(float),
        fac_it=c.facility_per_it_kw.to_numpy(float),
        cool_pieces=pieces,
        in_envelope=c.in_envelope.reindex(idx).fillna(False).to_numpy(bool),
        zone_it_lo=zit[0],
        zone_it_hi=zit[1],
        support=_support(c, idx, options),
        support_share=_support_share(c, idx, zones, options),
        gco2=gco2,
        accounting=accounting,
        ppa_kw=_ppa_kw(site, forecast) if accounting == "market" else np.zeros(len(idx)),
        residual_gco2=residual if residual is not None else gco2,
        price_per_kwh=price,
        power_cap_kw=options.site_power_cap_kw or site.planning.site_power_cap_kw,
        options=options,
        chw_gap_c=site.cooling.crah_supply_approach_c + CHW_SUPPLY_MARGIN_K,
        plant=plant_limits(site),
        free_share=_free_share(site, forecast, chw_lo, sp_lo),
        storage=storage,
        tariff=site.tariff,
        month=month,
        months=months,
        carbon_weight=wc,
        money_weight_kg_per_usd=wm,
    )
    if "cooling" not in options.levers:
        d.chw0 = chw_lo
    if "consolidation" not in options.levers:
        d.min_active = d.servers.copy()
    if "offload" not in options.levers:
        d.offload_ok = np.zeros_like(d.offload_ok)
    if "shifting" not in options.levers and d.batch.any():
        d.backlog_fixed = run_on_arrival_backlog(site, d, forecast)
    return d


def _free_share(site: SiteConfig, forecast: pd.DataFrame, chw_lo: float, sp_lo: np.ndarray) -> np.ndarray:
    """(n,) economiser share of the heat at the forecast weather, at the coldest chilled water
    and supply air the plan may choose (never more free cooling than it will get)."""
    if "wetbulb_c" not in forecast.columns or "temp_c" not in forecast.columns:
        return np.zeros(len(forecast))
    wb = _col(forecast, "wetbulb_c", "outside wet-bulb temperature")
    db = _col(forecast, "temp_c", "outside dry-bulb temperature")
    return free_cooling_share(site, wb, db, chw_lo, float(np.min(sp_lo)))


def _support(c: PlantCoefficients, idx: pd.DatetimeIndex, options: PlanOptions) -> np.ndarray | None:
    """(n, 4) support bounds from the coefficients, NaN -> unbounded; chilled water unbounded
    when the cooling lever is off (it is then held at its initial value)."""
    if not options.support_envelope or c.support is None:
        return None
    need = ["it_lo_kw", "it_hi_kw", "chw_lo_c", "chw_hi_c"]
    missing = [k for k in need if k not in c.support.columns]
    if missing:
        raise ValueError(f"coefficients: support lacks column(s) {missing}")
    a = c.support.reindex(idx)[need].to_numpy(float, copy=True)
    a[:, 0::2] = np.where(np.isfinite(a[:, 0::2]), a[:, 0::2], -np.inf)
    a[:, 1::2] = np.where(np.isfinite(a[:, 1::2]), a[:, 1::2], np.inf)
    if "cooling" not in options.levers:
        a[:, 2], a[:, 3] = -np.inf, np.inf
    return a


def _support_share(c: PlantCoefficients, idx, zones: list[str], options: PlanOptions) -> np.ndarray | None:
    """(n, Z, 2) range of each zone's share of total IT from the coefficients' support, if given."""
    if not options.support_envelope or c.support is None or len(zones) < 2:
        return None
    cols = [f"share_{s}__{z}" for z in zones for s in ("lo", "hi")]
    if not all(k in c.support.columns for k in cols):
        return None
    a = c.support.reindex(idx)[cols].to_numpy(float, copy=True).reshape(len(idx), len(zones), 2)
    a[..., 0] = np.where(np.isfinite(a[..., 0]), a[..., 0], 0.0)
    a[..., 1] = np.where(np.isfinite(a[..., 1]), a[..., 1], 1.0)
    return a


def run_on_arrival_backlog(site: SiteConfig, d: ProblemData, forecast: pd.DataFrame) -> np.ndarray:
    """(n, K) batch queue after each step when batch runs on arrival as far as capacity allows:
    the simulator's run-on-arrival rule (the one its static and best-practice baselines use).

    Capacity is every server's, except in step 0, where servers switched on from the
    initial state still boot for ``boot_time_s`` of the step (``pool_capacity``): the most
    the plan can serve there. With that the pinned queue is always reachable by the LP.
    """
    kb = np.flatnonzero(d.batch)
    cap = np.broadcast_to(d.servers * d.cap_per_server, (d.n, len(d.pools))).copy()
    cap[0] = d.cap_per_server * (d.servers - d.boot_frac * np.maximum(d.servers - d.n0, 0.0))
    rel, _ = run_on_arrival(site, site_arrays(site), d.demand, cap, d.backlog0[kb].copy(), d.step_h)
    q = np.zeros((d.n, len(d.classes)))
    q[:, kb] = np.maximum(d.backlog0[kb] + np.cumsum((d.demand[:, kb] - rel) * d.step_h, axis=0), 0.0)
    return q
