"""Loading an LP into HiGHS: ``highspy.HighsLp`` filled field by field against one
``passModel`` call with NumPy arrays (:func:`coolshift.optimizer.highs.pass_lp`).

The fleet decomposition loads a fresh model for every site solve (thousands per run), and the
planner loads one per plan, so the hand-over is on the hot path. Cases: each site block of the
bundled 4-site example fleet (``configs/fleets/us4_example.yaml``), that fleet's joint LP, and
the synthetic medium site LP of ``bench_optimizer.py`` (20 zones / 200 pools, 24 h at 15 min).
Both ways must give HiGHS the same model: each case is solved both ways and the objectives
compared. Fastest of ``REPEAT`` loads each. Prints a table, then one JSON line.

    .venv/bin/python benchmarks/bench_highs_load.py
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import highspy
import numpy as np
import scipy.sparse as sp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
REPEAT = 30


def by_fields(c, a, row_lo, row_hi, col_lo, col_hi):
    """The way every loader here worked before: a HighsLp filled field by field."""
    from coolshift.optimizer.highs import new_highs

    h = new_highs()
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = a.shape[1], a.shape[0]
    lp.col_cost_, lp.col_lower_, lp.col_upper_ = c, col_lo, col_hi
    lp.row_lower_, lp.row_upper_ = row_lo, row_hi
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_ = a.indptr.astype(np.int32), a.indices.astype(np.int32), a.data
    h.passModel(lp)
    return h


def by_arrays(c, a, row_lo, row_hi, col_lo, col_hi):
    from coolshift.optimizer.highs import new_highs, pass_lp

    return pass_lp(new_highs(), c, col_lo, col_hi, row_lo, row_hi, a)


def fastest_ms(fn, args) -> float:
    best = float("inf")
    for _ in range(REPEAT):
        t0 = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - t0)
    return 1000 * best


def objective(h) -> float:
    h.run()
    return float(h.getInfo().objective_function_value)


def cases():
    from bench_optimizer import case

    from coolshift.fleet.usecase import load_inputs
    from coolshift.optimizer.build import build_lp
    from coolshift.optimizer.data import prepare
    from coolshift.optimizer.fleet import site_blocks
    from coolshift.optimizer.data import PlanOptions

    p = load_inputs(REPO / "configs/fleets/us4_example.yaml").problem
    blocks = site_blocks(p)
    for b in blocks:
        yield f"fleet block {p.sites[b.site]}", (b.c, b.a, b.row_lo, b.row_hi, b.col_lo, b.col_hi)
    a = sp.block_diag([b.a for b in blocks], format="csc")
    yield "fleet joint (no coupling rows)", (np.concatenate([b.c for b in blocks]), a,
                                              np.concatenate([b.row_lo for b in blocks]), np.concatenate([b.row_hi for b in blocks]),
                                              np.concatenate([b.col_lo for b in blocks]), np.concatenate([b.col_hi for b in blocks]))
    site, fc, co = case(20, 200)
    cost, clb, cub, rlb, rub, a, _ = build_lp(prepare(site, co, fc, None, PlanOptions())).lp.arrays()
    yield "site LP, medium (20 zones / 200 pools)", (cost, sp.csc_matrix(a), rlb, rub, clb, cub)


def main() -> int:
    rows = []
    for name, args in cases():
        a = args[1]
        f_ms, a_ms = fastest_ms(by_fields, args), fastest_ms(by_arrays, args)
        o_f, o_a = objective(by_fields(*args)), objective(by_arrays(*args))
        rows.append({"case": name, "cols": int(a.shape[1]), "nnz": int(a.nnz), "fields_ms": round(f_ms, 3), "arrays_ms": round(a_ms, 3),
                     "same_objective": bool(abs(o_f - o_a) <= 1e-9 * max(1.0, abs(o_f)))})
    print(f"{'case':<42}{'columns':>9}{'non-zeros':>11}{'fields ms':>11}{'arrays ms':>11}{'speed-up':>10}{'same obj':>10}")
    for r in rows:
        print(f"{r['case']:<42}{r['cols']:>9}{r['nnz']:>11}{r['fields_ms']:>11.3f}{r['arrays_ms']:>11.3f}"
              f"{r['fields_ms'] / r['arrays_ms']:>10.1f}{str(r['same_objective']):>10}")
    blocks = [r for r in rows if r["case"].startswith("fleet block")]
    print(json.dumps({"repeat": REPEAT, "cases": rows,
                      "fleet_block_fields_ms": round(float(np.mean([r["fields_ms"] for r in blocks])), 3),
                      "fleet_block_arrays_ms": round(float(np.mean([r["arrays_ms"] for r in blocks])), 3),
                      "all_same_objective": all(r["same_objective"] for r in rows)}))
    return 0 if all(r["same_objective"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
