"""Closed-loop evaluation of one scenario on the simulator: ``evaluate_scenario``.

Each scenario's site is run on the simulator (:func:`coolshift.simulations.engine.simulate`)
with a *baseline* policy and a *Coolshift* policy, looked up by name in the simulator's
policy registry (:func:`resolve_policy`, the one place policies are found). When the
optimiser's ``coolshift`` policy is not registered yet, a named stand-in is used and the
result says so (``policy_used``, ``stand_in_for``); nothing pretends to be what it is not.

The work is the same in every scenario: demand per workload class comes from the current
site's data (utilisation x the current site's capacity), so a scenario that removes servers
runs the same work on fewer of them. Grid, weather and edge data are reloaded only when a
scenario changes their source.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from coolshift.config import SiteConfig
from coolshift.schema import CARBON_GCO2_PER_KWH, CPU_UTIL, DEMAND_SUFFIX, demand_col

from .scenario import ScenarioError

__all__ = [
    "PolicyUnavailable",
    "resolve_policy",
    "available_policies",
    "choose_policies",
    "scenario_data",
    "evaluate_scenario",
    "SUMMARY_KEYS",
]

# Keys of the simulator's summary.json carried into whatif.json per policy.
SUMMARY_KEYS = (
    "it_kwh", "facility_kwh", "pue", "tco2_location", "tco2_market", "water_l",
    "sla_violations", "late_work_units", "thermal_violation_minutes",
)
# Preference order for the policy that stands in for the optimiser until it is registered.
COOLSHIFT_STAND_INS = ("carbon_greedy", "best_practice")


class PolicyUnavailable(LookupError):
    """A policy name the simulator's registry does not know (or no registry yet)."""


def _registry():
    try:
        from coolshift.simulations import policies as mod
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("coolshift.simulations"):
            raise PolicyUnavailable("the simulator's policy registry (coolshift.simulations.policies) is not installed") from None
        raise
    return mod


def available_policies() -> list[str]:
    """Policy names in the simulator's registry (``coolshift.simulations.policies.POLICIES``)."""
    try:
        return list(_registry().POLICIES)
    except PolicyUnavailable:
        return []


def resolve_policy(name: str, site: SiteConfig | None = None):
    """The simulator policy called ``name``: the single registry lookup.

    Policies are looked up in ``coolshift.simulations.policies.POLICIES`` (name -> class);
    a policy registered there later (the optimiser's ``coolshift``) is used with no change here.
    """
    reg = _registry().POLICIES
    if name not in reg:
        raise PolicyUnavailable(f"unknown policy {name!r}; registered: {sorted(reg)}")
    return reg[name]()


def choose_policies(baseline: str = "static", coolshift: str = "coolshift", available: list[str] | None = None) -> dict:
    """Roles to policy names, with the stand-in stated: ``{"baseline": .., "coolshift": .., "stand_in_for": ..}``."""
    avail = available_policies() if available is None else list(available)
    if baseline not in avail:
        raise PolicyUnavailable(f"baseline policy {baseline!r} is not registered (registered: {avail or 'none'})")
    out = {"baseline": baseline, "coolshift": coolshift, "stand_in_for": None, "note": ""}
    if coolshift not in avail:
        for alt in COOLSHIFT_STAND_INS:
            if alt in avail:
                out.update(coolshift=alt, stand_in_for=coolshift,
                           note=f"policy {coolshift!r} is not available yet: {alt!r} stands in for it")
                break
        else:
            raise PolicyUnavailable(f"policy {coolshift!r} and its stand-ins {COOLSHIFT_STAND_INS} are not registered")
    return out


# -------------------------------------------------------------------------------------------
def _source_key(site: SiteConfig, src) -> tuple:
    return (str(site.resolve(src.path)), src.model_dump_json(exclude={"path"}))


def _sources(site: SiteConfig) -> dict:
    return {
        "carbon": _source_key(site, site.carbon),
        "weather": _source_key(site, site.weather),
        "workload": _source_key(site, site.workload),
        "edges": tuple((e.name, _source_key(site, e.carbon)) for e in site.edge_sites),
    }


def scenario_data(base_site: SiteConfig, site: SiteConfig, base_data: pd.DataFrame, name: str = "") -> pd.DataFrame:
    """Inputs for a scenario's site: the current site's work, the scenario's grid/weather/edges.

    Raises :class:`ScenarioError` when the scenario's site cannot serve the peak demand.
    """
    from coolshift.io import load_site_data

    a, b = _sources(base_site), _sources(site)
    step_min = int(round((base_data.index[1] - base_data.index[0]) / pd.Timedelta(minutes=1))) if len(base_data) > 1 else None
    if a == b:
        data = base_data.copy()
    else:
        end = base_data.index[-1] + (base_data.index[1] - base_data.index[0])
        data = load_site_data(site, base_data.index[0], end, step_minutes=step_min)
        if a["workload"] == b["workload"]:
            for c in [c for c in base_data.columns if c.endswith(DEMAND_SUFFIX)] + [CPU_UTIL]:
                if c in base_data.columns:
                    data[c] = base_data[c].to_numpy()
    dem_cols = [demand_col(c.name) for c in site.workload_classes]
    missing = [c for c in dem_cols if c not in data.columns]
    if missing:
        raise ScenarioError(f"scenario {name}: no demand for workload classes {missing} (a new class needs a workload share of the data)")
    total = data[dem_cols].sum(axis=1)
    cap = site.capacity_units_per_h
    peak = float(total.max())
    if peak > cap * (1 + 1e-9):
        raise ScenarioError(
            f"scenario {name}: peak demand {peak:.0f} units/h exceeds the site's capacity {cap:.0f} units/h after "
            f"the changes (consolidation ratio too high, or hosts too small: capacity_units_per_server)"
        )
    data[CPU_UTIL] = (total / cap).to_numpy()
    return data


def _pv_ac_kw(site: SiteConfig, data: pd.DataFrame, pv) -> np.ndarray:
    from .pv import onsite_pv_ac_kw

    return onsite_pv_ac_kw(site, data, pv)


def _policy_summary(site: SiteConfig, res, pv_kw: np.ndarray | None, policy_name: str, elapsed_s: float) -> dict:
    """The simulator's summary plus energy by end use, with on-site PV netted from the grid."""
    from coolshift import accounting

    ts = res.timeseries
    step_h = (ts.index[1] - ts.index[0]) / pd.Timedelta(hours=1) if len(ts) > 1 else site.step_h
    s = {k: res.summary.get(k) for k in SUMMARY_KEYS}
    kwh = lambda c: float(ts[c].sum() * step_h) if c in ts.columns else None  # noqa: E731
    s.update(
        policy=policy_name,
        cooling_kwh=kwh("cooling_power_kw"),
        chiller_kwh=kwh("chiller_kw"),
        crah_fan_kwh=kwh("crah_fan_kw"),
        server_fan_kwh=kwh("server_fan_kw"),
        edge_tco2=float(ts["kgco2_edge"].sum() / 1000.0) if "kgco2_edge" in ts.columns else 0.0,
        simulate_s=round(elapsed_s, 3),
    )
    fac_kwh = ts["facility_power_kw"].to_numpy() * step_h
    g = ts[CARBON_GCO2_PER_KWH].to_numpy()
    if pv_kw is not None:
        pv_kwh = np.asarray(pv_kw) * step_h
        grid_kwh = np.maximum(fac_kwh - pv_kwh, 0.0)
        used = fac_kwh - grid_kwh
        site_loc_before = accounting.location_kgco2(fac_kwh, g).sum()
        edge_kg = float(ts["kgco2_edge"].sum()) if "kgco2_edge" in ts.columns else 0.0
        ppa_kwh = ts["ppa_kw"].to_numpy() * step_h if "ppa_kw" in ts.columns else np.zeros(len(ts))
        resid = site.renewables.residual_mix_gco2_per_kwh if site.renewables else None
        s["tco2_location"] = float(accounting.location_kgco2(grid_kwh, g).sum() + edge_kg) / 1000.0
        s["tco2_market"] = float(accounting.market_kgco2(grid_kwh, ppa_kwh, g, resid).sum() + edge_kg) / 1000.0
        s.update(pv_generated_kwh=float(pv_kwh.sum()), pv_used_kwh=float(used.sum()),
                 grid_kwh=float(grid_kwh.sum()), tco2_location_before_pv=float(site_loc_before + edge_kg) / 1000.0)
    else:
        s["grid_kwh"] = float(fac_kwh.sum())
    return s


def evaluate_scenario(site: SiteConfig, data: pd.DataFrame, policies: dict, start=None, end=None, pv=None) -> dict:
    """Simulate ``site`` over ``data`` [start, end) with each role's policy; one summary per role.

    ``policies`` maps roles to registered policy names (see :func:`choose_policies`; keys
    other than roles, such as ``stand_in_for`` and ``note``, are carried into the result).
    """
    from coolshift.simulations.engine import simulate

    if start is not None or end is not None:
        t0 = data.index[0] if start is None else pd.Timestamp(start)
        t1 = data.index[-1] + pd.Timedelta(1, "ns") if end is None else pd.Timestamp(end)
        data = data[(data.index >= t0) & (data.index < t1)]
    if len(data) == 0:
        raise ScenarioError("evaluate_scenario: no data in the period")
    pv_kw = _pv_ac_kw(site, data, pv) if pv is not None else None
    out: dict = {"policies": {}}
    for role in ("baseline", "coolshift"):
        name = policies.get(role)
        if name is None:
            continue
        t = time.perf_counter()
        res = simulate(site, data, resolve_policy(name, site))
        out["policies"][role] = _policy_summary(site, res, pv_kw, name, time.perf_counter() - t)
    out["policy_used"] = {r: policies[r] for r in ("baseline", "coolshift") if r in policies}
    out["stand_in_for"] = policies.get("stand_in_for")
    out["policy_note"] = policies.get("note", "")
    out["period_h"] = float(len(data) * ((data.index[1] - data.index[0]) / pd.Timedelta(hours=1) if len(data) > 1 else site.step_h))
    out["start"], out["end"] = data.index[0].isoformat(), (data.index[-1] + (data.index[1] - data.index[0])).isoformat()
    return out
