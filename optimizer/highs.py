"""A HiGHS instance that prints nothing: the one place Coolshift creates ``highspy.Highs``.

highspy 1.16 prints its banner ("Running HiGHS ...") to the C-level stdout when the first
instance of a process is constructed, before any option can be set (HiGHS issues #1702 and
#2749 discuss the banner and ``output_flag``); a command's output, a nightly job's log and a
JSON line on stdout must not carry it. The first construction runs with file descriptor 1
pointed at /dev/null; every instance gets ``output_flag`` off.
"""

from __future__ import annotations

import os
import sys
import threading

import highspy
import numpy as np
import scipy.sparse as sp

__all__ = ["new_highs", "run_highs", "pass_lp"]

_LOCK = threading.Lock()
_BANNER_SEEN = False


def new_highs(output: bool = False) -> highspy.Highs:
    """A ``highspy.Highs`` with its log off (``output=True`` keeps HiGHS' own logging)."""
    global _BANNER_SEEN
    if _BANNER_SEEN:
        h = highspy.Highs()
    else:
        with _LOCK:
            if _BANNER_SEEN:
                h = highspy.Highs()
            else:
                sys.stdout.flush()
                saved = os.dup(1)
                try:
                    with open(os.devnull, "wb") as null:
                        os.dup2(null.fileno(), 1)
                        h = highspy.Highs()
                finally:
                    os.dup2(saved, 1)
                    os.close(saved)
                _BANNER_SEEN = True
    h.setOptionValue("output_flag", bool(output))
    return h


def run_highs(h: highspy.Highs) -> highspy.HighsStatus:
    """``h.run()``, re-run once after resizing HiGHS' thread scheduler when that is why it failed.

    HiGHS keeps one thread scheduler per process, sized by the ``threads`` option of the first
    run; a later run asking for another count returns an error before solving (model status
    "Not Set"): one process planning with ``threads`` 1 (the fleet's site blocks) and 2 (the
    time-decomposed solve) hit it. The scheduler is sized again for this run's count.
    """
    status = h.run()
    if status == highspy.HighsStatus.kError and h.getModelStatus() == highspy.HighsModelStatus.kNotset:
        with _LOCK:
            highspy.Highs.resetGlobalScheduler(True)
        status = h.run()
    return status


def pass_lp(h: highspy.Highs, cost, col_lower, col_upper, row_lower, row_upper, a: sp.spmatrix, offset: float = 0.0,
            integer=None, what: str = "the LP") -> highspy.Highs:
    """Load ``min cost x + offset`` s.t. ``row_lower <= A x <= row_upper``,
    ``col_lower <= x <= col_upper`` (``integer``: mask of integer columns) into ``h``, one
    ``passModel`` call with arrays.

    highspy copies NumPy buffers at once; filling a ``highspy.HighsLp`` field by field
    converts them element by element: 6 to 10 times slower (benchmarks/bench_highs_load.py:
    0.29 against 1.78 ms for a block of the 4-site fleet, loaded thousands of times per
    decomposition; 5.4 against 54.5 ms for a 20-zone / 200-pool site LP).
    """
    a = sp.csc_matrix(a)
    m, n = a.shape
    f64 = lambda v: np.ascontiguousarray(v, dtype=np.float64)      # noqa: E731
    kinds = np.zeros(n, dtype=np.int32) if integer is None else np.asarray(integer, dtype=bool).astype(np.int32)
    status = h.passModel(int(n), int(m), int(a.nnz), int(highspy.MatrixFormat.kColwise), int(highspy.ObjSense.kMinimize),
                         float(offset), f64(cost), f64(col_lower), f64(col_upper), f64(row_lower), f64(row_upper),
                         a.indptr.astype(np.int32), a.indices.astype(np.int32), f64(a.data),
                         kinds)                       # HighsVarType: 0 continuous, 1 integer
    if status == highspy.HighsStatus.kError:
        raise RuntimeError(f"HiGHS rejected {what} (passModel returned an error)")
    return h
