"""A what-if study: scenarios -> sweep tasks -> results -> ``whatif.json`` rows.

:func:`build_tasks` validates every scenario against the site up front (a bad override is
an input error before any work starts), :func:`run_scenario_task` is what a Dask worker
runs for one scenario, and :func:`compile_whatif` puts the results side by side against
the current site (``baseline``): operational and embodied carbon, net change, payback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from coolshift.config import SiteConfig, load_site

from .embodied import embodied_summary, hardware_lines, payback_months
from .scenario_run import FORECAST_DEFAULT, evaluate_scenario, needs_plant_model, scenario_data
from .plant_model import EXPLORE_SEED, TRAIN_DAYS_DEFAULT, cached_plant_model
from .scenario import BASELINE, Hardware, Scenario, apply_scenario, scenario_key
from .sweep import Task

__all__ = ["ScenarioSpec", "build_tasks", "run_scenario_task", "compile_whatif", "compile_fleet", "load_study_data",
           "task_name", "ROW_KEYS", "FLEET_SEP"]

# Separates the site from the scenario in a fleet study's task names ("site@scenario").
FLEET_SEP = "@"
# Keys every whatif.json row carries (null where they do not apply).
ROW_KEYS = ("facility_kwh", "tco2_operational", "tco2_embodied", "net_tco2_change_vs_baseline", "payback_months")


@dataclass(frozen=True)
class ScenarioSpec:
    """A scenario and where it came from (its file, and the folder its relative paths use)."""

    scenario: Scenario | None  # None: the current site
    source: str
    base_dir: Path

    @property
    def name(self) -> str:
        return BASELINE if self.scenario is None else self.scenario.name


def task_name(scenario: str, site_label: str | None = None) -> str:
    """A task's name: the scenario's, prefixed ``<site>@`` in a fleet study."""
    return scenario if site_label is None else f"{site_label}{FLEET_SEP}{scenario}"


def load_study_data(site: SiteConfig, start: pd.Timestamp, end: pd.Timestamp, step_minutes: int,
                    train_days: int | None = TRAIN_DAYS_DEFAULT) -> tuple[pd.DataFrame, dict | None]:
    """The current site's data for the study period, preceded by the plant model's training window.

    Returns ``(data, train)``; ``train`` holds the training window (``start``, ``end``,
    ``days``, ``note``), or is None when ``train_days`` is None (no model needed). When the
    data do not reach back ``train_days`` before ``start`` (e.g. a study of the data's first
    year), the commissioning runs over the first ``train_days`` of the period instead and
    ``note`` says so.
    """
    from coolshift.io import DataError, load_site_data

    start, end = pd.Timestamp(start), pd.Timestamp(end)
    if train_days is None:
        return load_site_data(site, start, end, step_minutes=step_minutes), None
    t_train = start - pd.Timedelta(days=train_days)
    try:
        data = load_site_data(site, t_train, end, step_minutes=step_minutes)
        train = {"start": t_train.isoformat(), "end": start.isoformat(), "days": train_days,
                 "note": f"commissioning over the {train_days} days before the period"}
    except DataError:
        data = load_site_data(site, start, end, step_minutes=step_minutes)
        t1 = min(start + pd.Timedelta(days=train_days), end)
        train = {"start": start.isoformat(), "end": t1.isoformat(), "days": train_days,
                 "note": f"no data {train_days} days before the period: commissioning over its first "
                         f"{(t1 - start) / pd.Timedelta(days=1):g} days"}
    return data, train


def build_tasks(site_path: Path, site: SiteConfig, specs: list[ScenarioSpec], start: pd.Timestamp, end: pd.Timestamp,
                step_minutes: int, policies: dict, evaluator: str = "simulator",
                site_overrides: dict | None = None, train: dict | None = None, forecast: str = FORECAST_DEFAULT,
                interval_h: float = 4.0, model_cache_dir: str | Path | None = None,
                site_label: str | None = None, strict: bool = True) -> list[Task]:
    """One task per scenario (the current site first); every override is applied once here to fail early.

    ``site`` is the current site as loaded with ``site_overrides`` (top-level keys given to
    :func:`coolshift.config.load_site`, e.g. a command-line ``carbon`` source), which the
    workers apply the same way. ``train`` is the plant model's training window (see
    :func:`load_study_data`; needed when the optimiser plays a role); fitted models are
    cached in ``model_cache_dir``. ``site_label``: the site's key in a fleet study (task
    names ``<site>@<scenario>``; the shared data is then a dict by site label). ``strict``:
    a scenario that does not apply to the site is an error here; otherwise (fleet studies,
    where a scenario may name one site's pools) its task fails with that message.
    """
    from .scenario import ScenarioError

    if needs_plant_model(policies) and train is None:
        train_end = pd.Timestamp(start)
        train = {"start": (train_end - pd.Timedelta(days=TRAIN_DAYS_DEFAULT)).isoformat(), "end": train_end.isoformat(),
                 "days": TRAIN_DAYS_DEFAULT, "note": f"commissioning over the {TRAIN_DAYS_DEFAULT} days before the period"}
    tasks = []
    names = set()
    for spec in [ScenarioSpec(None, str(site_path), Path(site_path).parent)] + [s for s in specs if s.scenario is not None]:
        if spec.name in names:
            raise ScenarioError(f"{spec.source}: scenario name {spec.name!r} is used twice")
        names.add(spec.name)
        if spec.scenario is not None:
            try:
                apply_scenario(site, spec.scenario, spec.source, spec.base_dir)  # raises ScenarioError naming file + key
            except ScenarioError:
                if strict:
                    raise
        payload = {
            "name": spec.name,
            "site_label": site_label,
            "site_path": str(Path(site_path).resolve()),
            "site_mtime": Path(site_path).stat().st_mtime if Path(site_path).exists() else None,
            "site_overrides": site_overrides or {},
            "scenario": None if spec.scenario is None else spec.scenario.model_dump(mode="json"),
            "source": spec.source,
            "base_dir": str(spec.base_dir),
            "start": pd.Timestamp(start).isoformat(),
            "end": pd.Timestamp(end).isoformat(),
            "step_minutes": int(step_minutes),
            "policies": policies,
            "evaluator": evaluator,
        }
        if needs_plant_model(policies):
            payload.update(train=train, forecast=forecast, interval_h=float(interval_h), explore_seed=EXPLORE_SEED)
        key = scenario_key(payload)  # the cache folder is where models are kept, not what a result depends on
        payload["model_cache_dir"] = None if model_cache_dir is None else str(model_cache_dir)
        tasks.append(Task(task_name(spec.name, site_label), key, payload))
    return tasks


def run_scenario_task(payload: dict, base_data, evaluate: Callable = evaluate_scenario) -> dict:
    """One scenario, on a worker: apply it, train its plant model (cached), simulate both policies,
    add its embodied carbon.

    ``base_data``: the current site's data (study period, preceded by the training window when
    the optimiser plays a role), or a dict of them by site label in a fleet study.
    """
    if isinstance(base_data, dict):
        base_data = base_data[payload["site_label"]]
    base = load_site(payload["site_path"], **payload.get("site_overrides", {}))
    scen = None if payload["scenario"] is None else Scenario.model_validate(payload["scenario"])
    site = base if scen is None else apply_scenario(base, scen, payload["source"], Path(payload["base_dir"]))
    data = scenario_data(base, site, base_data, payload["name"])
    t0, t1 = pd.Timestamp(payload["start"]), pd.Timestamp(payload["end"])
    study = data[(data.index >= t0) & (data.index < t1)]
    pv = scen.onsite_pv if scen is not None else None
    kwargs, model_info = {}, None
    if needs_plant_model(payload["policies"]):
        tr = payload["train"]
        a, b = pd.Timestamp(tr["start"]), pd.Timestamp(tr["end"])
        train = data[(data.index >= a) & (data.index < b)]
        if len(train) == 0:
            raise ValueError(f"scenario {payload['name']}: no data in the training window {a} to {b}")
        model, model_info = cached_plant_model(site, train, payload.get("model_cache_dir"),
                                               payload.get("explore_seed", EXPLORE_SEED))
        model_info["note"] = tr.get("note", "")
        kwargs = dict(plant_model=model, history=train if b <= t0 else None,
                      forecast_mode=payload.get("forecast", FORECAST_DEFAULT), interval_h=payload.get("interval_h", 4.0))
    res = evaluate(site, study, payload["policies"], pv=pv, **kwargs)
    res["plant_model"] = model_info
    hw = hardware_lines(scen, base, site) if scen is not None else Hardware()
    res["embodied"] = embodied_summary(hw, res["period_h"], pv)
    res.update(
        name=payload["name"],
        site=site.name,
        kind="current site" if scen is None else scen.kind,
        description="the site as configured" if scen is None else scen.description,
        sources=[] if scen is None else list(scen.sources),
        servers=int(sum(p.servers for p in site.server_pools)),
        capacity_units_per_h=site.capacity_units_per_h,
        grid_region=site.grid_region,
    )
    return res


def _row(res: dict, role: str, accounting: str, base: dict | None) -> dict:
    s = res["policies"][role]
    op = s["tco2_market"] if accounting == "market" else s["tco2_location"]
    emb = res["embodied"]["tco2_embodied"]
    row = {
        "policy": s["policy"],
        "facility_kwh": s["facility_kwh"],
        "it_kwh": s["it_kwh"],
        "pue": s["pue"],
        "tco2_operational": op,
        "tco2_embodied": emb,
        "tco2_total": op + emb,
        "cooling_kwh": s.get("cooling_kwh"),
        "server_fan_kwh": s.get("server_fan_kwh"),
        "chiller_kwh": s.get("chiller_kwh"),
        "crah_fan_kwh": s.get("crah_fan_kwh"),
        "liquid_kwh": s.get("liquid_kwh"),
        "offloaded_units": s.get("offloaded_units"),
        "sla_violations": s.get("sla_violations"),
        "late_work_units": s.get("late_work_units"),
        "thermal_violation_minutes": s.get("thermal_violation_minutes"),
        "planner": s.get("planner"),
    }
    if base is None:
        row.update(net_tco2_change_vs_baseline=0.0, operational_tco2_saved=0.0, payback_months=None,
                   payback_note="not applicable: the current site")
    else:
        bs = base["policies"][role]
        b_op = bs["tco2_market"] if accounting == "market" else bs["tco2_location"]
        b_emb = base["embodied"]["tco2_embodied"]
        saved = b_op - op
        months, note = payback_months(res["embodied"]["tco2_embodied_one_off"], saved, res["period_h"])
        row.update(net_tco2_change_vs_baseline=(op + emb) - (b_op + b_emb), operational_tco2_saved=saved,
                   payback_months=months, payback_note=note)
    return row


def compile_whatif(records: dict[str, dict], accounting: str = "location", headline_role: str = "coolshift",
                   order: list[str] | None = None) -> dict:
    """``whatif.json``: scenario name -> headline row (policy of ``headline_role``), with every policy's row.

    A failed scenario keeps its row with null figures and its ``error``. ``records`` are one
    site's (names without the ``<site>@`` prefix of a fleet study: see :func:`compile_fleet`).
    """
    base_rec = records.get(BASELINE)
    base = base_rec["result"] if base_rec and base_rec.get("status") == "ok" else None
    out: dict[str, dict] = {}
    order = [BASELINE] + [n for n in (order or records) if n != BASELINE]
    for name in order:
        rec = records.get(name)
        if rec is None:
            continue
        if rec.get("status") != "ok":
            out[name] = {k: None for k in ROW_KEYS} | {"status": "failed", "error": rec.get("error")}
            continue
        res = rec["result"]
        cmp_base = None if name == BASELINE else base
        if name != BASELINE and base is None:
            out[name] = {k: None for k in ROW_KEYS} | {"status": "no baseline",
                                                         "error": "the current site's run failed: nothing to compare with"}
            continue
        roles = list(res["policies"])
        by_policy = {r: _row(res, r, accounting, cmp_base) for r in roles}
        head = by_policy.get(headline_role) or by_policy[roles[0]]
        emb = res["embodied"]
        out[name] = {
            **{k: head[k] for k in ROW_KEYS},
            "status": "ok",
            "kind": res.get("kind"),
            "description": res.get("description", ""),
            "headline_policy": head["policy"],
            "stand_in_for": res.get("stand_in_for") if head is by_policy.get("coolshift") else None,
            "forecast": res.get("forecast"),
            "plant_model": res.get("plant_model"),
            "pue": head["pue"],
            "it_kwh": head["it_kwh"],
            "tco2_total": head["tco2_total"],
            "operational_tco2_saved": head["operational_tco2_saved"],
            "payback_note": head["payback_note"],
            "tco2_embodied_one_off": emb["tco2_embodied_one_off"],
            "tco2_embodied_new": emb["tco2_embodied_new"],
            "tco2_embodied_retired_unamortised": emb["tco2_embodied_retired_unamortised"],
            "servers": res.get("servers"),
            "capacity_units_per_h": res.get("capacity_units_per_h"),
            "grid_region": res.get("grid_region"),
            "accounting": accounting,
            "by_policy": by_policy,
            "embodied": emb,
            "sources": res.get("sources", []),
            "elapsed_s": rec.get("elapsed_s"),
        }
    return out


def compile_fleet(records: dict[str, dict], site_labels: list[str], accounting: str | dict = "location",
                  order: list[str] | None = None) -> dict:
    """A fleet study's ``whatif.json``: site label -> (scenario name -> row), each site against its own current state.

    ``accounting``: one basis for all sites, or one per site label.
    """
    out = {}
    for label in site_labels:
        acc = accounting.get(label, "location") if isinstance(accounting, dict) else accounting
        pre = f"{label}{FLEET_SEP}"
        recs = {n[len(pre):]: r for n, r in records.items() if n.startswith(pre)}
        names = [n[len(pre):] for n in (order or records) if n.startswith(pre)]
        out[label] = compile_whatif(recs, acc, order=names)
    return out
