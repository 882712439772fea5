"""Benchmark: Coolshift's planning LP against the same LP handed straight to highspy.

Sites are SYNTHETIC (``tests/synthetic.py``, the test fixtures), 24 h at 15 min:
small 4 zones / 20 pools, medium 20 / 200, large 50 / 1000. For each size Coolshift
validates the inputs, builds the LP's constraint families, hands them to a persistent
HiGHS and solves, then extracts the plan (``coolshift_s``: all of that, wall clock; the
default hand-over, ``PlanOptions.handover="numpy"``: the families' numpy assembly, which
tests/test_opt_pyomo.py checks equals the compiled Pyomo model entry by entry; the Pyomo
model is not built on this path). ``pyomo_s`` is the same with ``handover="pyomo"``: the
Pyomo model built, compiled by ``LinearStandardFormCompiler``, that matrix solved (at
large only build + compile + pass are timed and HiGHS's time on the numpy path is added,
marked ``~``). The floor (``highspy_s``) is the same LP assembled in numpy from the same
families and passed straight to a fresh ``highspy.Highs`` (assembly + passModel +
solve), in the same run. ``ratio`` = coolshift_s / highspy_s.

``--decompose SIZE --decompose-method zones``: the zone decomposition (``optimizer/decompose.py``) on that size,
time-limited to ``--decompose-limit`` x the direct time measured in the same run; prints
its rounds, bounds, the gap it certified, and its objective against the monolithic one.
``--alternatives SIZE``: HiGHS settings on the monolithic LP (IPX/HiPO interior point with
and without crossover, parallel dual simplex, no presolve, PDLP).
``--scaling``: growth with horizon (12/24/48 h) and pools (20/100/200), and formulation
choices (identical servers split into twice the pools; 30/60-min steps) with their cost
in plan quality.

``resolve_speedup`` (medium): cold build-and-solve (a fresh Planner on the new inputs)
over a re-solve of the loaded model after a new intensity forecast and a new initial
state (setpoints, active servers, backlog); both must reach the same objective. The table also shows a re-solve after a whole new forecast (demand too).

``--decompose SIZE`` (default method ``sifting``): ``PlanOptions(decompose="sifting")`` end
to end (``optimizer/sifting.py``) against the direct highspy solve of the monolithic LP in
the same run (measured here if SIZE is not in ``--sizes``; ``--sizes none`` skips the table);
prints the rounds, the plan's objective against the monolithic optimum, the certified gap and
the plan's largest violation of the full LP's rows and bounds (JSON ``"decomposition"``).
``--decompose-cap F``: the same on the site with a power cap at F x the uncapped plan's peak.
``--decompose-method zones``: the Dantzig-Wolfe zone decomposition instead.

Usage: python benchmarks/bench_optimizer.py [--sizes none|small,medium[,large]] [--scaling] [--repeat N]
       [--resolve-size none|small|medium] [--decompose SIZE [--decompose-method sifting|zones]
       [--decompose-cap F] [--decompose-limit X]] [--alternatives SIZE]
Prints a table and, as its last line, one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from coolshift.optimizer import InitialState, Planner, PlanOptions

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the synthetic sites are test fixtures
from synthetic import linear_coefficients, split_pools, synthetic_forecast, synthetic_site  # noqa: E402

SIZES = {"small": (4, 20), "medium": (20, 200), "large": (50, 1000)}


def case(zones, pools, horizon_h=24, step_minutes=15, seed=0):
    site = synthetic_site(zones, pools, horizon_h=horizon_h, step_minutes=step_minutes, seed=seed)
    fc = synthetic_forecast(site, seed=seed)
    co = linear_coefficients(site, fc.index, temp_c=fc["temp_c"].to_numpy())
    return site, fc, co


def highspy_direct(site, co, fc, opts):
    """The floor: the LP assembled in numpy and passed straight to a fresh highspy.Highs."""
    import highspy

    from coolshift.optimizer.build import build_lp
    from coolshift.optimizer.data import prepare

    t0 = time.perf_counter()
    lpp = build_lp(prepare(site, co, fc, None, opts)).lp
    cost, clb, cub, rlb, rub, a, _ = lpp.arrays()
    offset = lpp.offset
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    a = a.tocsc()
    # One passModel with arrays: the fastest hand-over highspy has (benchmarks/bench_highs_load.py).
    h.passModel(a.shape[1], a.shape[0], a.nnz, int(highspy.MatrixFormat.kColwise), int(highspy.ObjSense.kMinimize), offset,
                cost, clb, cub, rlb, rub, a.indptr.astype(np.int32), a.indices.astype(np.int32), a.data,
                np.zeros(a.shape[1], dtype=np.int32))
    h.run()
    return time.perf_counter() - t0, h.getInfo().objective_function_value


def _pyomo_overhead(planner):
    """Build, compile and pass the Pyomo model of a solved planner's LP (seconds, no solve)."""
    from coolshift.optimizer.pyomo_model import build_pyomo, compile_model, pass_to_highs

    t0 = time.perf_counter()
    m = build_pyomo(planner.problem.lp)
    c = compile_model(m)
    pass_to_highs(c)
    return time.perf_counter() - t0, m.build_s, c.compile_s


def run_size(name, zones, pools, opts, repeat=1, pyomo_solve=True, **kw):
    """Coolshift end to end (numpy and Pyomo hand-overs) vs highspy direct, interleaved
    ``repeat`` times; the fastest of each.

    On a shared machine identical HiGHS runs differ by up to 2x at the small size, so the
    minimum over interleaved repeats is the fair figure for every side.
    """
    site, fc, co = case(zones, pools, **kw)
    best = None
    direct_s = pyomo_s = float("inf")
    pyomo_parts = None
    popts = PlanOptions(**{**opts.__dict__, "handover": "pyomo"})
    for _ in range(repeat):
        t0 = time.perf_counter()
        planner = Planner(site, co, fc, options=opts)
        plan = planner.solve()
        total = time.perf_counter() - t0
        if best is None or total < best[0]:
            best = (total, planner, plan)
        ds, direct_obj = highspy_direct(site, co, fc, opts)
        direct_s = min(direct_s, ds)
        if plan.fallback or abs(plan.objective_kg - direct_obj) > 1e-6 * abs(direct_obj):
            raise SystemExit(f"{name}: Coolshift and direct highspy disagree ({plan.status}, {plan.objective_kg} vs {direct_obj})")
        if pyomo_solve:
            t0 = time.perf_counter()
            pp = Planner(site, co, fc, options=popts)
            pplan = pp.solve()
            ps = time.perf_counter() - t0
            if abs(pplan.objective_kg - direct_obj) > 1e-6 * abs(direct_obj):
                raise SystemExit(f"{name}: the compiled Pyomo model reached {pplan.objective_kg}, direct {direct_obj}")
            if ps < pyomo_s:
                pyomo_s, pyomo_parts = ps, (pp.timings["pyomo_build_s"], pp.timings["compile_s"])
    total, planner, plan = best
    if not pyomo_solve:  # large: time the Pyomo work, add the numpy path's HiGHS run
        over, b, c = _pyomo_overhead(planner)
        pyomo_s, pyomo_parts = total + over, (b, c)
    lp = planner.problem.lp
    t = plan.timings
    return planner, {
        "name": name,
        "variables": lp.n_cols,
        "constraints": lp.n_rows,
        "nonzeros": lp.nnz,
        "build_s": round(t["build_s"], 3),
        "terms_s": round(t["terms_s"], 3),
        "handover_s": round(t["handover_s"], 3),
        "solve_s": round(t["solve_s"], 3),
        "coolshift_s": round(total, 3),
        "highspy_s": round(direct_s, 3),
        "ratio": round(total / direct_s, 3),
        "pyomo_build_s": round(pyomo_parts[0], 3),
        "compile_s": round(pyomo_parts[1], 3),
        "pyomo_s": round(pyomo_s, 3),
        "pyomo_ratio": round(pyomo_s / direct_s, 3),
        "pyomo_solved": pyomo_solve,
        "objective_kg": plan.objective_kg,
    }


def decomposition(name, opts, direct_s, direct_obj, limit_factor=1.0, window=8):
    """The zone decomposition on one size, time-limited to ``limit_factor`` x the direct time;
    blocks are (zone, ``window``-step window) pairs, or whole zones with ``window`` 0."""
    from coolshift.optimizer.build import build_lp
    from coolshift.optimizer.data import prepare
    from coolshift.optimizer.decompose import decompose_zones

    site, fc, co = case(*SIZES[name])
    t0 = time.perf_counter()
    problem = build_lp(prepare(site, co, fc, None, opts))
    build_s = time.perf_counter() - t0
    limit = max(limit_factor * direct_s - build_s, 1.0)
    log = lambda r, e, ub, lb, cols: print(f"    round {r:>4} {e:7.1f} s  upper {ub:.2f}  lower {lb:.2f}  columns {cols}", flush=True) if r % 10 == 0 else None  # noqa: E731
    res = decompose_zones(problem, time_limit_s=limit, log=log, window_steps=window or None)
    total = time.perf_counter() - t0
    half = [h for h in res.history if h[1] + build_s <= 0.5 * direct_s]
    gap_at_half = (half[-1][2] - direct_obj) / abs(direct_obj) * 100.0 if half and np.isfinite(half[-1][2]) else None
    obj_gap = (res.objective - direct_obj) / abs(direct_obj) * 100.0 if np.isfinite(res.objective) else None
    return {
        "size": name, "window_steps": window, "coolshift_s": round(total, 3), "highspy_s": round(direct_s, 3), "ratio": round(total / direct_s, 3),
        "status": res.status, "rounds": res.iterations, "columns": res.columns,
        "objective_kg": res.objective, "monolithic_kg": direct_obj, "lower_bound_kg": res.lower_bound,
        "objective_gap_pct": None if obj_gap is None else round(obj_gap, 4),
        "certified_gap_pct": round(100.0 * res.gap, 4) if np.isfinite(res.gap) else None,
        "objective_gap_pct_at_half_direct_time": None if gap_at_half is None else round(gap_at_half, 4),
        "price_s": round(res.timings["price_s"], 3), "master_s": round(res.timings["master_s"], 3),
        "setup_s": round(res.timings["setup_s"] + res.timings["seed_s"], 3), "time_limit_s": round(limit, 1),
    }


def sifting(name, opts, direct_s, direct_obj, cap=None):
    """``PlanOptions(decompose="sifting")`` end to end on one size (a fresh Planner: inputs
    validated, LP built, the coarse guess, the restricted rounds, the plan extracted), its
    objective against the monolithic optimum, and its plan checked against every row and
    bound of the full LP."""
    from coolshift.optimizer import Planner

    site, fc, co = case(*SIZES[name]) if cap is None else _capped(name, cap)
    so = PlanOptions(**{**opts.__dict__, "decompose": "sifting"})
    t0 = time.perf_counter()
    planner = Planner(site, co, fc, options=so)
    plan = planner.solve()
    total = time.perf_counter() - t0
    res = planner.decomposition
    lp = planner.problem.lp
    cost, clb, cub, rlb, rub, a, _ = lp.arrays()
    x = planner.solution_x()
    ax = a @ x
    scale = 1.0 + np.abs(ax)
    viol = max(float(((rlb - ax) / scale).max()), float(((ax - rub) / scale).max()),
               float((clb - x).max()), float((x - cub).max()), 0.0)
    t = res.timings
    return {
        "size": name, "method": "sifting (working-set LP seeded by a 1-h plan, zone-pricing bound)",
        "coolshift_s": round(total, 3), "highspy_s": round(direct_s, 3), "ratio": round(total / direct_s, 3),
        "objective_kg": plan.objective_kg, "monolithic_kg": direct_obj,
        "objective_gap_pct": round((plan.objective_kg - direct_obj) / abs(direct_obj) * 100.0, 5),
        "certified_gap_pct": round(100.0 * res.gap, 4) if np.isfinite(res.gap) else None,
        "lower_bound_kg": res.lower_bound, "status": res.status, "plan_status": plan.status,
        "fallback": bool(plan.fallback), "rounds": res.rounds, "fixed_columns": res.fixed_columns,
        "columns": lp.n_cols, "max_row_violation": viol,
        "objective_recomputed_kg": float(cost @ x + lp.offset),
        "build_s": round(planner.timings["build_s"], 3), "coarse_s": round(t["coarse_s"], 3),
        "restricted_s": round(t["restricted_s"], 3), "price_s": round(t["price_s"], 3),
        "history": [[r, round(e, 2), u, lo, f] for r, e, u, lo, f, _ in res.history],
    }


def _capped(name, cap_frac):
    """The size's site with a site power cap at ``cap_frac`` x the uncapped plan's peak facility kW."""
    site, fc, co = case(*SIZES[name])

    global _capped_kw
    peak = Planner(site, co, fc, options=PlanOptions(deadline_prices=False)).solve().frame["facility_power_kw"].max()
    z, p = SIZES[name]
    _capped_kw = float(cap_frac * peak)
    site = synthetic_site(z, p, power_cap_kw=_capped_kw)
    return site, fc, co


_capped_kw = None


ALTERNATIVES = [
    ("dual simplex (default)", {}),
    ("IPX, no crossover", {"solver": "ipm", "run_crossover": "off"}),
    ("IPX + crossover", {"solver": "ipm"}),
    ("HiPO, no crossover", {"solver": "hipo", "run_crossover": "off"}),
    ("HiPO + crossover", {"solver": "hipo"}),
    ("parallel dual simplex", {"parallel": "on", "simplex_strategy": 2}),
    ("no presolve", {"presolve": "off"}),
    ("PDLP", {"solver": "pdlp"}),
]


def alternatives(name, opts, limit_s=120.0, only=None):
    """HiGHS settings on the monolithic LP of one size (same LP, fresh model each)."""
    from coolshift.optimizer.build import build_lp
    from coolshift.optimizer.data import prepare

    site, fc, co = case(*SIZES[name])
    lp = build_lp(prepare(site, co, fc, None, opts)).lp
    rows = []
    for label, options in ALTERNATIVES:
        if only and not any(o.lower() in label.lower() for o in only):
            continue
        h = lp.to_highs()
        for k, v in options.items():
            h.setOptionValue(k, v)
        h.setOptionValue("time_limit", limit_s)
        t0 = time.perf_counter()
        h.run()
        dt = time.perf_counter() - t0
        rows.append({"size": name, "method": label, "solve_s": round(dt, 3),
                     "status": h.modelStatusToString(h.getModelStatus()),
                     "objective_kg": h.getInfo().objective_function_value})
        print(f"  {label:<24} {dt:8.2f} s  {rows[-1]['status']}", flush=True)
    return rows


def new_state(site, seed=1):
    rng = np.random.default_rng(seed)
    s = InitialState.from_site(site)
    return InitialState(
        {z: v + float(rng.uniform(0, 1)) for z, v in s.supply_setpoint_c.items()},
        s.chw_setpoint_c + 1.0,
        {p: float(np.floor(v * rng.uniform(0.3, 0.9))) for p, v in s.active_servers.items()},
        {"batch": 50.0 * len(site.server_pools)},
        {"batch": 3.0},
    )


def resolve_case(planner, opts):
    site = planner.site
    f_new = synthetic_forecast(site, seed=1)
    intensity_only = planner.forecast.copy()
    cols = [c for c in f_new.columns if c.startswith("gco2_per_kwh")]
    intensity_only[cols] = f_new[cols]
    st = new_state(site)
    out = {}
    for label, fc in (("intensity+state", intensity_only), ("forecast+state", f_new)):
        t0 = time.perf_counter()
        info = planner.update(forecast=fc, initial_state=st)
        plan = planner.solve()
        dt = time.perf_counter() - t0
        ref = Planner(site, planner.coefficients, fc, st, options=opts)
        t1 = time.perf_counter()
        ref_plan = ref.solve()
        fresh_s = time.perf_counter() - t1 + ref.timings["build_s"]
        err = abs(plan.objective_kg - ref_plan.objective_kg) / abs(ref_plan.objective_kg)
        if err > 1e-6:
            raise SystemExit(f"re-solve ({label}) objective {plan.objective_kg} != fresh {ref_plan.objective_kg}")
        out[label] = {"method": info.get("method"), "resolve_s": dt, "fresh_s": fresh_s, "speedup": fresh_s / dt}
        planner = ref  # next case starts from a freshly solved model again
    return out


def scaling(opts):
    """Growth with horizon (4 zones / 20 pools) and pools (24 h), Coolshift's default path."""
    rows = []
    for h in (12, 24, 48):
        _, r = run_size(f"4z/20p {h}h", 4, 20, opts, pyomo_solve=False, horizon_h=h)
        rows.append(r)
    for z, p in ((10, 100), (20, 200)):
        _, r = run_size(f"{z}z/{p}p 24h", z, p, opts, pyomo_solve=False)
        rows.append(r)
    return rows


def pool_aggregation(opts):
    """Identical servers aggregated into pools vs the same servers split into twice the pools."""

    site, fc, co = case(4, 20)
    out = []
    for label, s in (("20 pools (aggregated)", site), ("40 pools (each split in 2)", split_pools(site, 2))):
        t0 = time.perf_counter()
        pl = Planner(s, co, fc, options=opts)
        plan = pl.solve()
        out.append((label, pl.problem.lp.n_cols, time.perf_counter() - t0, plan.objective_kg))
    return out


def step_quality(opts):
    """Coarser steps: LP size and time, and the 15-min plan's carbon lost by planning coarser.

    The coarse plan's decisions are held over the fine steps they cover and scored on the
    15-min forecast with the same model; constraint violations at the fine step are not
    repaired, so this is the carbon side of the trade only.
    """
    from coolshift.optimizer import evaluate_actions
    from coolshift.optimizer.plan import Decisions, totals_of

    site, fc, co = case(4, 20)
    fine = Planner(site, co, fc, options=opts)
    fplan = fine.solve()
    base = fplan.totals["tco2"]
    rows = [("15 min", fine.problem.lp.n_cols, fplan.timings["total_s"], base, 0.0)]
    for minutes in (30, 60):
        k = minutes // 15
        fc_c = fc.resample(f"{minutes}min").mean()
        co_c = linear_coefficients(site, fc_c.index, temp_c=fc_c["temp_c"].to_numpy())
        coarse = Planner(site, co_c, fc_c, options=opts)
        t0 = time.perf_counter()
        cplan = coarse.solve()
        dt = time.perf_counter() - t0 + coarse.timings["build_s"]
        x = coarse.solution_x()
        from coolshift.optimizer.results import actions_from_solution

        a = actions_from_solution(coarse.problem, x)
        rep = lambda v: np.repeat(v, k, axis=0)  # noqa: E731
        held = Decisions(rep(a.sp), rep(a.chw), rep(a.nact), rep(a.work), rep(a.off), rep(a.backlog))
        tco2 = totals_of(fine.problem.data, evaluate_actions(fine.problem.data, held))["tco2"]
        rows.append((f"{minutes} min", coarse.problem.lp.n_cols, dt, tco2, 100.0 * (tco2 - base) / base))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="small,medium", help="comma list of small,medium,large")
    ap.add_argument("--resolve-size", default="medium")
    ap.add_argument("--scaling", action="store_true", help="also time growth with horizon and pools, and formulation choices")
    ap.add_argument("--repeat", type=int, default=None, help="interleaved repeats per size (default small 5, medium 2, large 1)")
    ap.add_argument("--decompose", default=None, help="size to run the zone decomposition on (one of --sizes)")
    ap.add_argument("--decompose-limit", type=float, default=1.0, help="its time limit as a multiple of the direct time")
    ap.add_argument("--decompose-window", type=int, default=8, help="steps per time window of a block (0: whole zones)")
    ap.add_argument("--decompose-cap", type=float, default=None,
                    help="sifting on a site power cap at this share of the uncapped plan's peak facility kW")
    ap.add_argument("--decompose-method", default="sifting", choices=["sifting", "zones"],
                    help="sifting: PlanOptions(decompose='sifting'); zones: the Dantzig-Wolfe decomposition")
    ap.add_argument("--alternatives", default=None, help="size to time HiGHS settings on")
    ap.add_argument("--alt-methods", default=None, help="comma list of words picking some of them (e.g. hipo,default)")
    ap.add_argument("--alt-limit", type=float, default=120.0, help="time limit per alternative, s")
    args = ap.parse_args()
    opts = PlanOptions(deadline_prices=False)
    rows, planners = [], {}
    for name in [n for n in args.sizes.split(",") if n and n != "none"]:
        z, p = SIZES[name]
        rep = args.repeat or {"small": 5, "medium": 2, "large": 1}[name]
        planners[name], r = run_size(name, z, p, opts, repeat=rep, pyomo_solve=name != "large")
        rows.append(r)
        print(f"  done {name}: {r['coolshift_s']:.2f} s (direct {r['highspy_s']:.2f} s)", flush=True)
    dec = None
    if args.decompose:
        r = next((r for r in rows if r["name"] == args.decompose), None)
        if r is None:  # the floor only: the direct highspy solve of the monolithic LP, this run
            site, fc, co = case(*SIZES[args.decompose])
            ds, dobj = highspy_direct(site, co, fc, opts)
            r = {"highspy_s": ds, "objective_kg": dobj}
            print(f"  direct highspy on {args.decompose}: {ds:.2f} s", flush=True)
        if args.decompose_method == "sifting":
            print(f"  sifting on {args.decompose}:", flush=True)
            if args.decompose_cap:  # a binding site power cap: the floor re-measured on the capped LP
                site, fc, co = _capped(args.decompose, args.decompose_cap)
                ds, dobj = highspy_direct(site, co, fc, opts)
                r = {"highspy_s": ds, "objective_kg": dobj}
                print(f"  direct highspy on {args.decompose}, cap {site.planning.site_power_cap_kw:.0f} kW: {ds:.2f} s", flush=True)
            dec = sifting(args.decompose, opts, r["highspy_s"], r["objective_kg"], cap=args.decompose_cap)
            dec["cap_kw"] = None if not args.decompose_cap else _capped_kw
        else:
            print(f"  decomposition on {args.decompose} (limit {args.decompose_limit:g} x {r['highspy_s']:.1f} s):", flush=True)
            dec = decomposition(args.decompose, opts, r["highspy_s"], r["objective_kg"], args.decompose_limit, args.decompose_window)
            dec["method"] = "zones (Dantzig-Wolfe)"
    only = args.alt_methods.split(",") if args.alt_methods else None
    alts = alternatives(args.alternatives, opts, limit_s=args.alt_limit, only=only) if args.alternatives else None
    rname = args.resolve_size
    res = {}
    if rname != "none":
        if rname not in planners:
            planners[rname], _ = run_size(rname, *SIZES[rname], opts, pyomo_solve=False)
        res = resolve_case(planners[rname], opts)

    print("\nSYNTHETIC sites, 24 h / 15 min (benchmark sites, not real ones)")
    hdr = "" if not rows else (f"{'size':<8}{'vars':>9}{'cons':>9}{'nnz':>10}{'terms s':>9}{'pass s':>8}{'HiGHS s':>9}{'coolshift s':>12}"
           f"{'highspy s':>10}{'ratio':>7}{'| Pyomo s':>10}{'compile s':>10}{'pyomo path s':>13}{'ratio':>7}")
    if hdr:
        print(hdr)
    for r in rows:
        mark = "" if r["pyomo_solved"] else "~"
        print(
            f"{r['name']:<8}{r['variables']:>9}{r['constraints']:>9}{r['nonzeros']:>10}{r['terms_s']:>9.3f}"
            f"{r['handover_s']:>8.3f}{r['solve_s']:>9.3f}{r['coolshift_s']:>12.3f}{r['highspy_s']:>10.3f}{r['ratio']:>7.3f}"
            f"{r['pyomo_build_s']:>10.3f}{r['compile_s']:>10.3f}{mark + format(r['pyomo_s'], '.3f'):>13}{r['pyomo_ratio']:>7.3f}"
        )
    if res:
        print(f"\nre-solves at {rname} (loaded model, only changed costs/bounds pushed):")
    for label, v in res.items():
        print(f"  {label:<16} method {v['method']:<12} re-solve {v['resolve_s']:.2f} s, cold {v['fresh_s']:.2f} s, speedup {v['speedup']:.2f}")
    if dec and dec.get("method", "").startswith("sifting"):
        print(f"\nsifting at {dec['size']}: {dec['coolshift_s']:.2f} s end to end vs direct highspy {dec['highspy_s']:.2f} s "
              f"(ratio {dec['ratio']:.3f}); {dec['status']} after {dec['rounds']} rounds (coarse guess {dec['coarse_s']:.1f} s, "
              f"restricted LPs {dec['restricted_s']:.1f} s, zone pricing {dec['price_s']:.1f} s); "
              f"{dec['fixed_columns']} of {dec['columns']} columns still fixed")
        print(f"  objective {dec['objective_kg']:.3f} kg vs monolithic {dec['monolithic_kg']:.3f} kg: gap "
              f"{dec['objective_gap_pct']:+.5f} % (certified {dec['certified_gap_pct']} %); plan vs the full LP's rows and "
              f"bounds: max violation {dec['max_row_violation']:.2e}, cost recomputed {dec['objective_recomputed_kg']:.3f} kg")
        for row in dec["history"]:
            print(f"    round {row[0]:>2} {row[1]:8.2f} s  plan {row[2]:.3f}  bound {row[3]:.3f}  freed {row[4]}")
    elif dec:
        print(f"\nzone decomposition ({str(dec['window_steps']) + '-step window' if dec['window_steps'] else 'whole-zone'} blocks) at {dec['size']}: {dec['coolshift_s']:.1f} s vs direct {dec['highspy_s']:.1f} s "
              f"(ratio {dec['ratio']:.2f}), {dec['status']} after {dec['rounds']} rounds / {dec['columns']} zone plans "
              f"(pricing {dec['price_s']:.1f} s, master {dec['master_s']:.1f} s)")
        print(f"  objective {dec['objective_kg']:.3f} kg vs monolithic {dec['monolithic_kg']:.3f} kg: "
              f"gap {dec['objective_gap_pct']} % (certified {dec['certified_gap_pct']} %, lower bound {dec['lower_bound_kg']:.3f}); "
              f"at half the direct time: {dec['objective_gap_pct_at_half_direct_time']} %")
    scal = form = None
    if args.scaling:
        print("\ngrowth with horizon and pools (Coolshift default path):")
        scal = scaling(opts)
        for r in scal:
            print(f"  {r['name']:<14} vars {r['variables']:>7} cons {r['constraints']:>7} total {r['coolshift_s']:.2f} s (highspy {r['highspy_s']:.2f} s)")
        form = []
        print("\nformulation choices (4z/20p, 24 h):")
        agg = pool_aggregation(opts)
        for label, nv, secs, obj in agg:
            gap = 100.0 * (obj - agg[0][3]) / agg[0][3]
            form.append({"choice": label, "variables": nv, "total_s": round(secs, 3), "objective_gap_pct": round(gap, 5)})
            print(f"  {label:<28} vars {nv:>6} total {secs:.2f} s  objective {obj:.3f} kg ({gap:+.4f} %)")
        for name, nv, secs, tco2, pct in step_quality(opts):
            form.append({"choice": f"{name} steps", "variables": nv, "total_s": round(secs, 3), "tco2_gap_pct": round(pct, 4)})
            print(f"  {name + ' steps':<28} vars {nv:>6} total {secs:.2f} s  tCO2 {tco2:.4f}  (+{pct:.2f} % vs 15 min)")
    keys = ("name", "variables", "constraints", "nonzeros", "build_s", "solve_s", "coolshift_s", "highspy_s", "ratio",
            "pyomo_s", "pyomo_ratio")
    out = {"sizes": [{k: r[k] for k in keys} for r in rows],
           "resolve_speedup": round(res["intensity+state"]["speedup"], 3) if res else None}
    if dec:
        out["decomposition"] = dec
    if alts:
        out["alternatives"] = alts
    if scal:
        out["scaling"] = [{k: r[k] for k in ("name", "variables", "constraints", "coolshift_s", "highspy_s")} for r in scal]
        out["formulation"] = form
    print(json.dumps(out))


if __name__ == "__main__":
    main()
