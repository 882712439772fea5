"""Closed-loop evaluation of one scenario on the simulator: ``evaluate_scenario``.

Each scenario's site is run on the simulator with a *baseline* policy and the *Coolshift*
policy through the product's closed-loop evaluation
(:func:`coolshift.control.evaluation.evaluate_policies`): the baseline rules are the simulator's
(``static``, ``best_practice``, ``carbon_greedy``), ``coolshift`` is the optimiser's
receding-horizon policy planning with a plant model learned on the scenario's own site
(:mod:`coolshift.whatif.plant_model`). A rule policy may play the Coolshift role on request
(``--policy carbon_greedy``, much cheaper); the result then says so (``stand_in_for``).

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
from coolshift.control.evaluation import POLICIES as LOOP_POLICIES
from coolshift.control.evaluation import evaluate_policies
from coolshift.control.policies import POLICIES as RULE_POLICIES
from coolshift.schema import CARBON_GCO2_PER_KWH, CPU_UTIL, DEMAND_SUFFIX, demand_col

from .scenario import ScenarioError

__all__ = [
    "PolicyUnavailable",
    "resolve_policy",
    "available_policies",
    "choose_policies",
    "needs_plant_model",
    "scenario_data",
    "evaluate_scenario",
    "SUMMARY_KEYS",
]

# Keys of the simulator's summary.json carried into whatif.json per policy.
SUMMARY_KEYS = (
    "it_kwh", "facility_kwh", "pue", "tco2_location", "tco2_market", "water_l",
    "sla_violations", "late_work_units", "thermal_violation_minutes",
)
# The optimiser's policy (coolshift.control.evaluation): receding-horizon LP on a learned plant model.
OPTIMISER_POLICY = "coolshift"
# Preference order for a rule policy that stands in for the optimiser when asked to (or when
# the optimiser is not installed).
COOLSHIFT_STAND_INS = ("carbon_greedy", "best_practice")
# Forecasts the optimiser plans on (coolshift.control.evaluation.FORECAST_MODES); "perfect" by default
# in what-ifs: the same for every scenario and half the cost of "model" (docs/whatif.md).
FORECAST_DEFAULT = "perfect"


class PolicyUnavailable(LookupError):
    """A policy name the simulator's registry does not know (or no registry yet)."""


def available_policies() -> list[str]:
    """Policy names a what-if can run: the baseline rules (``coolshift.control.policies.POLICIES``)
    and the optimiser's ``coolshift`` policy."""
    return list(RULE_POLICIES) + ([OPTIMISER_POLICY] if OPTIMISER_POLICY in LOOP_POLICIES else [])


def resolve_policy(name: str, site: SiteConfig | None = None):
    """The simulator rule policy called ``name``: the single registry lookup.

    Rule policies are looked up in ``coolshift.control.policies.POLICIES`` (name -> class);
    the optimiser's ``coolshift`` policy needs a plant model and is built by
    :func:`coolshift.control.evaluation.evaluate_policies` instead.
    """
    reg = RULE_POLICIES
    if name not in reg:
        raise PolicyUnavailable(f"unknown policy {name!r}; registered: {sorted(reg)}")
    return reg[name]()


def needs_plant_model(policies: dict) -> bool:
    """True when a role is played by the optimiser (which plans with a learned plant model)."""
    return any(policies.get(r) == OPTIMISER_POLICY for r in ("baseline", "coolshift"))


def choose_policies(baseline: str = "best_practice", coolshift: str = OPTIMISER_POLICY,
                    available: list[str] | None = None) -> dict:
    """Roles to policy names, with a stand-in stated: ``{"baseline": .., "coolshift": .., "stand_in_for": .., "note": ..}``.

    ``stand_in_for`` is null when the optimiser's ``coolshift`` policy plays the Coolshift role;
    it names ``coolshift`` when a rule policy plays it (asked for, or the optimiser missing).
    """
    avail = available_policies() if available is None else list(available)
    if baseline not in avail or baseline == "explore":
        raise PolicyUnavailable(f"baseline policy {baseline!r} is not available (choose from "
                                f"{[a for a in avail if a != 'explore'] or 'none'})")
    out = {"baseline": baseline, "coolshift": coolshift, "stand_in_for": None, "note": ""}
    if coolshift == "explore":
        raise PolicyUnavailable("explore is a commissioning test, not an operating policy")
    if coolshift not in avail:
        if coolshift != OPTIMISER_POLICY:
            raise PolicyUnavailable(f"policy {coolshift!r} is not available (choose from {avail})")
        for alt in COOLSHIFT_STAND_INS:
            if alt in avail:
                out.update(coolshift=alt, stand_in_for=coolshift,
                           note=f"policy {coolshift!r} is not available: {alt!r} stands in for it")
                break
        else:
            raise PolicyUnavailable(f"policy {coolshift!r} and its stand-ins {COOLSHIFT_STAND_INS} are not registered")
    elif coolshift != OPTIMISER_POLICY:
        out.update(stand_in_for=OPTIMISER_POLICY,
                   note=f"the rule policy {coolshift!r} plays the Coolshift role (asked for with --policy)")
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


def _policy_summary(site: SiteConfig, summary: dict, ts: pd.DataFrame, pv_kw: np.ndarray | None, policy_name: str,
                    elapsed_s: float) -> dict:
    """The simulator's summary plus energy by end use, with on-site PV netted from the grid."""
    from coolshift import accounting

    step_h = (ts.index[1] - ts.index[0]) / pd.Timedelta(hours=1) if len(ts) > 1 else site.step_h
    s = {k: summary.get(k) for k in SUMMARY_KEYS}
    kwh = lambda c: float(ts[c].sum() * step_h) if c in ts.columns else None  # noqa: E731
    s.update(
        policy=policy_name,
        cooling_kwh=kwh("cooling_power_kw"),
        chiller_kwh=kwh("chiller_kw"),
        crah_fan_kwh=kwh("crah_fan_kw"),
        server_fan_kwh=kwh("server_fan_kw"),
        liquid_kwh=kwh("liquid_loop_kw"),
        edge_tco2=float(ts["kgco2_edge"].sum() / 1000.0) if "kgco2_edge" in ts.columns else 0.0,
        offloaded_units=summary.get("offloaded_units"),
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


def _window(data: pd.DataFrame, start, end) -> pd.DataFrame:
    if start is None and end is None:
        return data
    t0 = data.index[0] if start is None else pd.Timestamp(start)
    t1 = data.index[-1] + pd.Timedelta(1, "ns") if end is None else pd.Timestamp(end)
    return data[(data.index >= t0) & (data.index < t1)]


def evaluate_scenario(site: SiteConfig, data: pd.DataFrame, policies: dict, start=None, end=None, pv=None,
                      plant_model=None, history: pd.DataFrame | None = None, forecast_mode: str = FORECAST_DEFAULT,
                      interval_h: float = 4.0) -> dict:
    """Simulate ``site`` over ``data`` [start, end) with each role's policy; one summary per role.

    ``policies`` maps roles to policy names (see :func:`choose_policies`; keys other than
    roles, such as ``stand_in_for`` and ``note``, are carried into the result). Runs through
    :func:`coolshift.control.evaluation.evaluate_policies`; the optimiser's ``coolshift`` policy plans
    with ``plant_model`` on ``forecast_mode`` forecasts (``history``: data before the period,
    for the ``model`` forecasters), re-planning every ``interval_h`` hours.
    """
    data = _window(data, start, end)
    if len(data) == 0:
        raise ScenarioError("evaluate_scenario: no data in the period")
    pv_kw = _pv_ac_kw(site, data, pv) if pv is not None else None
    roles = [r for r in ("baseline", "coolshift") if policies.get(r) is not None]
    names = list(dict.fromkeys(policies[r] for r in roles))
    ts: dict = {}
    rec = evaluate_policies(site, data, names, plant_model, forecast_mode=forecast_mode, interval_h=interval_h,
                            keep_timeseries=ts, history=history)
    out: dict = {"policies": {}}
    for role in roles:
        name = policies[role]
        out["policies"][role] = _policy_summary(site, rec["policies"][name], ts[name], pv_kw, name,
                                                rec["runtime_s"][name])
        if name in rec["planner"]:
            out["policies"][role]["planner"] = rec["planner"][name]
    out["policy_used"] = {r: policies[r] for r in roles}
    out["stand_in_for"] = policies.get("stand_in_for")
    out["policy_note"] = policies.get("note", "")
    out["forecast"] = forecast_mode if needs_plant_model(policies) else None
    out["replan_interval_h"] = interval_h if needs_plant_model(policies) else None
    out["code_version"] = rec.get("code_version")
    step = data.index[1] - data.index[0] if len(data) > 1 else pd.Timedelta(hours=site.step_h)
    out["period_h"] = float(len(data) * (step / pd.Timedelta(hours=1)))
    out["start"], out["end"] = data.index[0].isoformat(), (data.index[-1] + step).isoformat()
    return out
