"""Carbon report and M&V on a full simulated year of the small example site.

1. Speed: a year of hourly simulator output through the whole report (accounts, figures,
   HTML, PDF) and through `verify_savings`, against a floor measured in the same run (reading
   the parquet and summing one column).
2. M&V validation against the simulator's truth: baseline model fitted on the `static`
   policy's first half-year, driven by the second half-year of the `best_practice` policy; the
   truth is the difference of the two simulated runs over the second half (same weather, same
   work). Done twice: load variable = IT power (credits cooling/loss savings only) and load
   variable = work served (credits consolidation too). The simulator shares no equations with
   the change-point model, so this checks the method, not a tautology.

Prints a table, then as the last line one JSON object with the same figures.
Run: .venv/bin/python benchmarks/bench_report.py
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SITE = REPO / "configs" / "sites" / "sanjose_colo_2mw.yaml"
START, MID, END = "2022-01-01T00:00Z", "2022-07-01T00:00Z", "2023-01-01T00:00Z"


def main() -> dict:
    import matplotlib

    matplotlib.use("Agg")
    from coolshift.config import load_site
    from coolshift.io import load_site_data
    from coolshift.reports import annual
    from coolshift.reports.mv import verify_savings
    from coolshift.simulations.engine import simulate
    from coolshift.control.policies import get_policy

    site = load_site(SITE)
    t = time.perf_counter()
    # bundled weather/carbon end on 2022-12-31: the last hours are filled from the adjacent day
    data = load_site_data(site, START, "2022-12-31T00:00Z", step_minutes=60)
    t_data = time.perf_counter() - t
    runs, t_sim = {}, {}
    for name in ("static", "best_practice"):
        t = time.perf_counter()
        runs[name] = simulate(site, data, get_policy(name)).timeseries
        t_sim[name] = time.perf_counter() - t
    post, base = runs["best_practice"], runs["static"]

    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "timeseries.parquet"
        post.to_parquet(p)
        t = time.perf_counter()
        floor_frame = pd.read_parquet(p)
        float(floor_frame["facility_power_kw"].sum())
        t_floor = time.perf_counter() - t
        t = time.perf_counter()
        ctx = annual.ReportContext(site_name=site.name, simulated=True, carbon_source="EIA-930 CISO 2022",
                                   baseline_label="static")
        figs = annual.carbon_figures(post, ctx, base)
        t_accounts = time.perf_counter() - t
        figures = annual.make_figures(post, figs, base)
        annual.write_pdf(Path(tmp) / "r.pdf", figs, ctx, figures)
        html = annual.render_html(figs, ctx, figures)
        t_report = time.perf_counter() - t
    rows = []
    for label, column in (("IT power", "it_power_kw"), ("work served", "work_units_per_h")):
        frames = {}
        for name, f in runs.items():
            served = [c for c in f.columns if c.startswith("served_units_per_h__")]
            frames[name] = f.assign(work_units_per_h=f[served].sum(axis=1))
        pre_f = frames["static"].loc[:MID].iloc[:-1]
        post_f = frames["best_practice"].loc[MID:]
        truth_kwh = float((frames["static"].loc[MID:, "facility_power_kw"] - post_f["facility_power_kw"]).sum())
        t = time.perf_counter()
        r = verify_savings(pre_f, post_f, freq="h", load_column=column)
        t_mv = time.perf_counter() - t
        rows.append({"load_variable": label, "truth_mwh": truth_kwh / 1000, "estimate_mwh": r.avoided_kwh / 1000,
                     "u90_mwh": r.uncertainty_kwh_90 / 1000, "within_u90": bool(abs(r.avoided_kwh - truth_kwh) <= r.uncertainty_kwh_90),
                     "cv_rmse_pct": 100 * r.model.cv_rmse_, "compliant": r.compliant, "seconds": t_mv})
    out = {
        "site": site.name, "steps": len(post), "data_s": t_data, "simulate_s": t_sim,
        "floor_read_sum_s": t_floor, "accounts_s": t_accounts, "report_html_pdf_s": t_report,
        "report_over_floor": t_report / t_floor, "html_bytes": len(html),
        "reduction_location_t": figs["reduction"]["location"]["total_kg"] / 1000,
        "efficiency_t": figs["reduction"]["location"]["efficiency_kg"] / 1000,
        "timing_t": figs["reduction"]["location"]["timing_kg"] / 1000,
        "mv": rows,
    }
    print(f"{'figure':<44}{'value':>16}")
    print(f"{'steps (1 year, hourly)':<44}{len(post):>16,d}")
    print(f"{'floor: read parquet + sum [s]':<44}{t_floor:>16.3f}")
    print(f"{'accounts [s]':<44}{t_accounts:>16.3f}")
    print(f"{'full report: accounts+figures+HTML+PDF [s]':<44}{t_report:>16.2f}")
    print(f"{'report / floor':<44}{t_report / t_floor:>16.0f}")
    print(f"{'reduction best_practice vs static [tCO2]':<44}{out['reduction_location_t']:>16.1f}")
    print(f"{'  efficiency / timing [tCO2]':<44}{out['efficiency_t']:>8.1f}{out['timing_t']:>8.1f}")
    print()
    print(f"{'M&V load variable':<14}{'truth MWh':>11}{'estimate':>10}{'+/-U90':>9}{'within':>8}{'CV%':>7}{'G14':>6}{'s':>7}")
    for r in rows:
        print(f"{r['load_variable']:<14}{r['truth_mwh']:>11.1f}{r['estimate_mwh']:>10.1f}{r['u90_mwh']:>9.1f}"
              f"{str(r['within_u90']):>8}{r['cv_rmse_pct']:>7.2f}{str(r['compliant']):>6}{r['seconds']:>7.2f}")
    print("(IT power as load variable credits overhead savings only: its estimate is not meant to reach the truth,")
    print(" which includes the IT energy saved by consolidation.)")
    print(json.dumps(out, default=float))
    return out


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
