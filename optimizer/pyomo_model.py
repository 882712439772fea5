"""The planning LP as a Pyomo model: built per constraint family, compiled, handed to HiGHS.

This is the model of record: ``Planner.pyomo.model`` can be inspected, written
(``model.write("plan.lp")``) or solved by any Pyomo solver. On the hot path the planner
hands HiGHS the families' numpy assembly instead (:func:`direct`), which is the matrix
this model compiles to, entry by entry (``tests/test_opt_pyomo.py``), and builds this
model only when ``Planner.pyomo`` is read; ``PlanOptions(handover="pyomo")`` solves the
compiled model itself. :func:`build_pyomo` turns each variable family of a
:class:`~.lp.LinearProgram` into one Pyomo ``Var`` over flat integer indices (bounds
set on the data objects directly) and each constraint family into one indexed
``Constraint`` whose bodies are ``LinearExpression`` objects built from the family's
terms (no operator overloading, no per-element rule functions, GC paused). The
objective's coefficients are one mutable ``Param`` (what a new intensity forecast
changes); everything else is numeric.

:func:`compile_model` runs Pyomo's ``LinearStandardFormCompiler`` (mixed form) and keeps
its row and column order: ``col_ids[h]`` / ``row_ids[h]`` give the family-flat index of
HiGHS column / row ``h``, so solutions, duals and diagnoses still map back to
"family, component, steps". A ranged constraint, which the compiler emits as two rows,
is handed to HiGHS as one ranged row. :func:`pass_to_highs` loads the compiled arrays
into a ``highspy.Highs`` with one ``passModel``.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass

import numpy as np

from .highs import new_highs, pass_lp
from .lp import LinearProgram

__all__ = ["PyomoLP", "Compiled", "build_pyomo", "compile_model", "direct", "pass_to_highs"]


def _num(v: float):
    """Pyomo bound from a float (None for an infinite one)."""
    return None if v in (np.inf, -np.inf) else v


def _bounds(a: np.ndarray) -> list:
    """Pyomo bounds from floats, vectorised (None where infinite)."""
    out = np.asarray(a, float).astype(object)
    out[np.isinf(np.asarray(a, float))] = None
    return out.tolist()


@dataclass
class Compiled:
    """The compiled LP in the compiler's order, ranged rows merged, ready for ``passModel``."""

    cost: np.ndarray
    col_lb: np.ndarray
    col_ub: np.ndarray
    row_lb: np.ndarray
    row_ub: np.ndarray
    A: object  # scipy CSC
    integer: np.ndarray
    offset: float
    col_ids: np.ndarray  # family-flat column index of each compiled column
    row_ids: np.ndarray  # family-flat row index of each compiled row
    hcol: np.ndarray  # inverse: compiled column of each family-flat column (-1 if absent)
    hrow: np.ndarray  # inverse: compiled row of each family-flat row (-1 if absent)
    compile_s: float

    def in_lp_order(self, n_cols: int, n_rows: int):
        """(cost, col_lb, col_ub, row_lb, row_ub, A, integer) in the family-flat order, absent
        columns/rows left out of ``A`` (for comparing with the numpy assembly)."""
        import scipy.sparse as sp

        cost = np.zeros(n_cols)
        cost[self.col_ids] = self.cost
        clb, cub = np.full(n_cols, -np.inf), np.full(n_cols, np.inf)
        clb[self.col_ids], cub[self.col_ids] = self.col_lb, self.col_ub
        rlb, rub = np.full(n_rows, -np.inf), np.full(n_rows, np.inf)
        rlb[self.row_ids], rub[self.row_ids] = self.row_lb, self.row_ub
        coo = self.A.tocoo()
        a = sp.csc_matrix((coo.data, (self.row_ids[coo.row], self.col_ids[coo.col])), shape=(n_rows, n_cols))
        integ = np.zeros(n_cols, bool)
        integ[self.col_ids] = self.integer
        return cost, clb, cub, rlb, rub, a, integ


class PyomoLP:
    """A Pyomo ``ConcreteModel`` of one planning LP, with the family-flat index of every
    variable and constraint (``xs[j]``, ``cons[i]``)."""

    def __init__(self, lp: LinearProgram) -> None:
        import pyomo.environ as pyo

        t0 = time.perf_counter()
        was = gc.isenabled()
        gc.disable()
        try:
            self.lp = lp
            cost, clb, cub, rlb, rub, a, integ = lp.arrays()
            m = pyo.ConcreteModel(name="coolshift")
            xs: list = []
            for name, fam in lp.vars.items():
                integer = fam.size > 0 and bool(integ[fam.start])  # a family is all integer or all real
                var = pyo.Var(range(fam.size), dense=True, domain=pyo.Integers if integer else pyo.Reals)
                m.add_component(name, var)
                block = list(var.values())
                for vd, lo, hi in zip(block, _bounds(clb[fam.start : fam.stop]), _bounds(cub[fam.start : fam.stop])):
                    vd.lb = lo
                    vd.ub = hi
                xs.extend(block)
            self.xs = xs
            self._csr = a.tocsr()
            self._lists = None
            self.cons: list = []
            for name, fam in lp.cons.items():
                con = pyo.Constraint(range(fam.size))
                m.add_component(name, con)
                for i, entry in enumerate(self._rows(np.arange(fam.start, fam.stop), rlb, rub)):
                    con[i] = entry
                self.cons.extend(con[i] for i in range(fam.size))
            self.model = m
            self._set_objective(cost, lp.offset)
        finally:
            if was:
                gc.enable()
        self.build_s = time.perf_counter() - t0

    def _rows(self, ids, rlb, rub):
        """(lb, LinearExpression, ub) of the given family-flat rows from the CSR matrix."""
        from pyomo.core.expr.numeric_expr import LinearExpression, MonomialTermExpression

        xs = self.xs
        ids = np.asarray(ids, np.int64)
        if self._lists is None:
            self._lists = (self._csr.indptr.tolist(), self._csr.indices.tolist(), self._csr.data.tolist())
        ip, ix, dv = self._lists
        for i, lo, hi in zip(ids.tolist(), _bounds(rlb[ids]), _bounds(rub[ids])):
            s, e = ip[i], ip[i + 1]
            args = [xs[j] if v == 1.0 else MonomialTermExpression((v, xs[j])) for j, v in zip(ix[s:e], dv[s:e])]
            yield (lo, LinearExpression(args), hi)

    def _set_objective(self, cost: np.ndarray, offset: float) -> None:
        """min sum_j cost[j] x[j] with the coefficients as one mutable Param over the costed columns."""
        import pyomo.environ as pyo
        from pyomo.core.expr.numeric_expr import LinearExpression, MonomialTermExpression

        m = self.model
        for c in ("obj", "cost", "cost_index"):
            if hasattr(m, c):
                m.del_component(c)
        nz = np.flatnonzero(cost)
        self.cost_cols = nz
        self.cost_slot = np.full(len(self.xs), -1)
        self.cost_slot[nz] = np.arange(nz.size)
        m.cost = pyo.Param(range(nz.size), mutable=True, initialize=dict(enumerate(cost[nz].tolist())))
        args = [MonomialTermExpression((m.cost[i], self.xs[j])) for i, j in enumerate(nz.tolist())]
        if offset:
            args.append(float(offset))
        m.obj = pyo.Objective(expr=LinearExpression(args), sense=pyo.minimize)

    # -- updates of the loaded model (only what changed) -----------------------------
    def set_costs(self, cols: np.ndarray, cost: np.ndarray) -> None:
        slot = self.cost_slot[cols]
        if (slot < 0).any():  # a column gains a cost: re-declare the (small) objective
            self._set_objective(cost, self.lp.offset)
            return
        m = self.model
        for s, v in zip(slot.tolist(), cost[cols].tolist()):
            m.cost[s] = v

    def set_col_bounds(self, cols: np.ndarray, clb: np.ndarray, cub: np.ndarray) -> None:
        for j in cols.tolist():
            self.xs[j].setlb(_num(float(clb[j])))
            self.xs[j].setub(_num(float(cub[j])))

    def set_rows(self, lp: LinearProgram, rows: np.ndarray) -> None:
        """Re-state the given rows (bounds and coefficients) from a new LP of the same shape."""
        self.lp = lp
        _, _, _, rlb, rub, a, _ = lp.arrays()
        self._csr = a.tocsr()
        self._lists = None
        for i, entry in zip(rows.tolist(), self._rows(rows, rlb, rub)):
            self.cons[i].set_value(entry)


def build_pyomo(lp: LinearProgram) -> PyomoLP:
    return PyomoLP(lp)


def compile_model(p: PyomoLP) -> Compiled:
    """Compile with Pyomo's ``LinearStandardFormCompiler`` and map rows/columns to the families."""
    import pyomo.environ as pyo
    from pyomo.repn.plugins.standard_form import LinearStandardFormCompiler

    t0 = time.perf_counter()
    was = gc.isenabled()
    gc.disable()
    try:
        info = LinearStandardFormCompiler().write(p.model, mixed_form=True, set_sense=pyo.minimize)
        colmap = {id(v): j for j, v in enumerate(p.xs)}
        rowmap = {id(c): i for i, c in enumerate(p.cons)}
        col_ids = np.fromiter((colmap[id(v)] for v in info.columns), np.int64, len(info.columns))
        nr = len(info.rows)
        my_row = np.fromiter((rowmap[id(r[0])] for r in info.rows), np.int64, nr)
        sense = np.fromiter((r[1] for r in info.rows), np.int64, nr)
        rhs = np.asarray(info.rhs, float)
        first = np.ones(nr, bool)
        first[1:] = my_row[1:] != my_row[:-1]  # the two rows of a ranged constraint are adjacent
        grp = np.cumsum(first) - 1
        keep = np.flatnonzero(first)
        rlb, rub = np.full(keep.size, -np.inf), np.full(keep.size, np.inf)
        le, ge = sense >= 0, sense <= 0  # 0: equality, 1: <= rhs, -1: >= rhs (mixed form)
        rub[grp[le]] = rhs[le]
        rlb[grp[ge]] = rhs[ge]
        A = info.A.tocsr()[keep].tocsc() if keep.size < nr else info.A.tocsc()
        A.sum_duplicates()
        A.sort_indices()
        bounds = [(v.lb, v.ub) for v in info.columns]
        clb = np.array([-np.inf if b[0] is None else b[0] for b in bounds], float)
        cub = np.array([np.inf if b[1] is None else b[1] for b in bounds], float)
        integ = np.fromiter((v.is_integer() for v in info.columns), bool, len(info.columns))
        c = np.asarray(info.c.todense(), float).ravel() if info.c.shape[0] else np.zeros(len(info.columns))
        offset = float(info.c_offset[0]) if len(info.c_offset) else 0.0
        row_ids = my_row[keep]
    finally:
        if was:
            gc.enable()
    hcol = np.full(len(p.xs), -1, np.int64)
    hcol[col_ids] = np.arange(col_ids.size)
    hrow = np.full(len(p.cons), -1, np.int64)
    hrow[row_ids] = np.arange(row_ids.size)
    return Compiled(c, clb, cub, rlb, rub, A, integ, offset, col_ids, row_ids, hcol, hrow, time.perf_counter() - t0)


def direct(lp: LinearProgram) -> Compiled:
    """The numpy assembly of the same families in the families' own order (identity maps).

    It is the matrix the compiler produces from the Pyomo model, entry by entry (tested:
    ``tests/test_opt_pyomo.py``), without creating ~one Python object per variable,
    constraint and term and walking them back: the planner's default hand-over.
    """
    t0 = time.perf_counter()
    cost, clb, cub, rlb, rub, a, integ = lp.arrays()
    cols, rows = np.arange(lp.n_cols), np.arange(lp.n_rows)
    return Compiled(cost, clb, cub, rlb, rub, a, integ, float(lp.offset), cols, rows, cols, rows,
                    time.perf_counter() - t0)


def pass_to_highs(c: Compiled, highs=None):
    """Load the compiled LP into a (new or given) ``highspy.Highs`` with one ``passModel``."""
    h = highs or new_highs()
    h.setOptionValue("output_flag", False)
    return pass_lp(h, c.cost, c.col_lb, c.col_ub, c.row_lb, c.row_ub, c.A, offset=c.offset, integer=c.integer,
                   what="the compiled LP")
