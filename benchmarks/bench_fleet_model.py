"""How closely each fleet site's planner model follows its plant (issue 21).

The joint fleet plan is made with each site's learned model (``cooling_model.source:
learned``) and with the hand-set wet-bulb ramp (``ramp``); the plan's hourly facility power
as each planner model predicts it is compared with the site physics
(:func:`coolshift.fleet.physics.simulate_site`) at the same work and servers. Runs on the
bundled 4-site example, and on the 16-zone week of ``bench_fleet.py`` when ``../shared/data``
is there (where the planner's own tCO2 is also set against the physics'). Prints a table,
then one JSON line.

    .venv/bin/python benchmarks/bench_fleet_model.py
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))


def _fleet_file(doc: dict, source: str, tmp: Path) -> Path:
    doc = {**doc, "sites": [{**s, "cooling_model": {"source": source}} for s in doc["sites"]]}
    f = tmp / f"{doc['name']}_{source}.yaml"
    f.write_text(yaml.safe_dump(doc, sort_keys=False))
    return f


def _score(path: Path) -> dict:
    from coolshift.fleet.physics import simulate_site
    from coolshift.fleet.usecase import load_inputs
    from coolshift.optimizer.fleet import plan_metrics, solve_joint

    inp = load_inputs(path)
    p = inp.problem
    plan = solve_joint(p)
    work, n, tx = plan.work_units(), plan.active_servers(), plan.transfer_kwh()
    per_site, err, total, tco2 = {}, 0.0, 0.0, 0.0
    for s in range(p.n_sites):
        it = p.idle_kw[s] * n[s] + p.kw_per_unit[s] * work[s]
        planned = it * (1 + p.overhead_frac[s]) + p.fixed_kw[s] + p.hinge_frac[s] * np.maximum(it - p.hinge_kw[s], 0.0)
        r = simulate_site(inp.fleet.sites[s], work[s], n[s], inp.data.temp_c[s], inp.data.wetbulb_c[s],
                          p.ci_g_per_kwh[s], p.price_usd_per_mwh[s], float(tx[s]))
        e = float(np.abs(planned - r["facility_kw"]).sum())
        per_site[p.sites[s]] = 100.0 * e / float(r["facility_kw"].sum())
        err, total, tco2 = err + e, total + float(r["facility_kw"].sum()), tco2 + r["tco2"]
    return {"hourly_error_pct": 100.0 * err / total, "per_site_pct": per_site,
            "planner_tco2": plan_metrics(plan)["tco2"], "physics_tco2": tco2}


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="bench_fleet_model_"))
    example = REPO / "configs" / "fleets" / "us4_example.yaml"
    fleets = {"us4_example": yaml.safe_load(example.read_text().replace("../../data", str(REPO / "data")))}
    if (REPO.parent / "shared" / "data" / "carbon_intensity" / "electricitymaps_hourly").exists():
        import bench_fleet

        fleets["sustaincluster16"] = yaml.safe_load(bench_fleet.fleet_yaml(bench_fleet.ORDER))
    out = {}
    print(f"{'fleet':>18}{'planner model':>15}{'hourly error %':>16}{'planner tCO2':>14}{'physics tCO2':>14}  per site %")
    for name, doc in fleets.items():
        for source in ("learned", "ramp"):
            r = _score(_fleet_file(doc, source, tmp))
            out[f"{name}_{source}"] = {k: (round(v, 3) if isinstance(v, float) else {s: round(x, 2) for s, x in v.items()})
                                       for k, v in r.items()}
            sites = " ".join(f"{s} {x:.1f}" for s, x in r["per_site_pct"].items())
            print(f"{name:>18}{source:>15}{r['hourly_error_pct']:>16.2f}{r['planner_tco2']:>14.2f}{r['physics_tco2']:>14.2f}  {sites}")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
