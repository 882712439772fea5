"""A sparse linear program assembled from labelled blocks (linopy/PyPSA style).

Variables and constraints are added one *family* at a time over whole coordinate
arrays (steps x zones, steps x pools ...), never one element at a time: each family
is a numpy block of column or row indices with its coordinate labels, so results,
duals and infeasibility diagnoses can be mapped back to "inlet_limit at hall_a,
steps 12-20". The planner states these families as a Pyomo model
(:mod:`.pyomo_model`) and solves that; :meth:`LinearProgram.to_highs` hands the numpy
assembly straight to HiGHS, the floor the benchmark compares the Pyomo path with.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .highs import new_highs, pass_lp

__all__ = ["Family", "LinearProgram", "INF"]

INF = np.inf


@dataclass
class Family:
    """A block of variables or constraints: a contiguous index range with coordinates."""

    name: str
    start: int
    coords: dict[str, pd.Index]
    kind: str = "var"
    meta: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(c) for c in self.coords.values())

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    @property
    def stop(self) -> int:
        return self.start + self.size

    def ids(self) -> np.ndarray:
        return np.arange(self.start, self.stop).reshape(self.shape)

    def frame(self, values: np.ndarray) -> pd.DataFrame | pd.Series:
        """Values of this family (a flat vector over the whole LP) as a labelled frame."""
        block = np.asarray(values)[self.start : self.stop].reshape(self.shape)
        dims = list(self.coords.values())
        if len(dims) == 1:
            return pd.Series(block, index=dims[0], name=self.name)
        if len(dims) == 2:
            return pd.DataFrame(block, index=dims[0], columns=dims[1])
        cols = pd.MultiIndex.from_product(dims[1:])
        return pd.DataFrame(block.reshape(self.shape[0], -1), index=dims[0], columns=cols)


class LinearProgram:
    """Columns with bounds and costs, rows with ranged bounds, a COO matrix built by blocks."""

    def __init__(self) -> None:
        self.n_cols = 0
        self.n_rows = 0
        self.vars: dict[str, Family] = {}
        self.cons: dict[str, Family] = {}
        self._col_lb: list[np.ndarray] = []
        self._col_ub: list[np.ndarray] = []
        self._col_int: list[np.ndarray] = []
        self._row_lb: list[np.ndarray] = []
        self._row_ub: list[np.ndarray] = []
        self._r: list[np.ndarray] = []
        self._c: list[np.ndarray] = []
        self._v: list[np.ndarray] = []
        self.cost = np.zeros(0)
        self.offset = 0.0
        self._frozen: tuple | None = None

    # -- variables ------------------------------------------------------------------
    def add_vars(self, name: str, coords: dict, lb=0.0, ub=INF, integer: bool = False) -> np.ndarray:
        """Add a family of variables over ``coords``; returns its column ids shaped like coords."""
        if name in self.vars:
            raise ValueError(f"variable family {name!r} already exists")
        coords = {k: pd.Index(v) for k, v in coords.items()}
        fam = Family(name, self.n_cols, coords, "var")
        shape = fam.shape
        self._col_lb.append(np.broadcast_to(np.asarray(lb, float), shape).ravel().copy())
        self._col_ub.append(np.broadcast_to(np.asarray(ub, float), shape).ravel().copy())
        self._col_int.append(np.full(fam.size, bool(integer)))
        self.vars[name] = fam
        self.n_cols += fam.size
        self._frozen = None
        return fam.ids()

    # -- constraints ----------------------------------------------------------------
    def add_cons(self, name: str, coords: dict, terms, lb=-INF, ub=INF, **meta) -> np.ndarray:
        """Add ``lb <= sum(coef * x[idx]) <= ub`` over ``coords``.

        ``terms`` is a list of ``(coef, idx)`` pairs broadcastable to the row shape, or to
        the row shape plus one trailing axis that is summed (padded with ``idx = -1``).
        """
        if name in self.cons:
            raise ValueError(f"constraint family {name!r} already exists")
        coords = {k: pd.Index(v) for k, v in coords.items()}
        fam = Family(name, self.n_rows, coords, "con", meta)
        shape = fam.shape
        row_ids = fam.ids()
        for coef, idx in terms:
            coef = np.asarray(coef, float)
            idx = np.asarray(idx)
            ndim = max(coef.ndim, idx.ndim)
            extra = ndim - len(shape)
            if extra not in (0, 1):
                raise ValueError(f"constraint {name}: term of {ndim} dims for rows of {len(shape)}")
            coef, idx = np.broadcast_arrays(coef, idx)
            full = np.broadcast_shapes(coef.shape, shape + (1,) * extra)
            coef = np.broadcast_to(coef, full)
            idx = np.broadcast_to(idx, full)
            rows = np.broadcast_to(row_ids.reshape(shape + (1,) * extra), full)
            keep = idx.ravel() >= 0
            self._r.append(rows.ravel()[keep])
            self._c.append(idx.ravel()[keep].astype(np.int64))
            self._v.append(coef.ravel()[keep])
        self._row_lb.append(np.broadcast_to(np.asarray(lb, float), shape).ravel().copy())
        self._row_ub.append(np.broadcast_to(np.asarray(ub, float), shape).ravel().copy())
        self.cons[name] = fam
        self.n_rows += fam.size
        self._frozen = None
        return row_ids

    def add_cost(self, coef, idx) -> None:
        """Add ``coef * x[idx]`` to the objective (broadcast; repeated ids accumulate)."""
        if self.cost.size < self.n_cols:
            self.cost = np.concatenate([self.cost, np.zeros(self.n_cols - self.cost.size)])
        coef, idx = np.broadcast_arrays(np.asarray(coef, float), np.asarray(idx))
        keep = idx.ravel() >= 0
        np.add.at(self.cost, idx.ravel()[keep], coef.ravel()[keep])

    # -- assembled arrays -----------------------------------------------------------
    def arrays(self):
        """(cost, col_lb, col_ub, row_lb, row_ub, A as CSC, integrality)."""
        if self._frozen is None:
            cost = np.zeros(self.n_cols)
            cost[: self.cost.size] = self.cost
            cat = lambda xs: np.concatenate(xs) if xs else np.zeros(0)  # noqa: E731
            r, c, v = cat(self._r).astype(np.int64), cat(self._c).astype(np.int64), cat(self._v)
            a = sp.csc_matrix((v, (r, c)), shape=(self.n_rows, self.n_cols))
            a.sum_duplicates()
            a.sort_indices()
            self._frozen = (
                cost,
                cat(self._col_lb),
                cat(self._col_ub),
                cat(self._row_lb),
                cat(self._row_ub),
                a,
                cat(self._col_int).astype(bool),
            )
        return self._frozen

    @property
    def nnz(self) -> int:
        return int(self.arrays()[5].nnz)

    def row_family(self, row: int) -> Family:
        for fam in self.cons.values():
            if fam.start <= row < fam.stop:
                return fam
        raise IndexError(row)

    def to_highs(self, highs=None):
        """Pass the whole LP to a (new or given) ``highspy.Highs`` in one call."""
        cost, clb, cub, rlb, rub, a, integ = self.arrays()
        h = highs or new_highs()
        h.setOptionValue("output_flag", False)
        return pass_lp(h, cost, clb, cub, rlb, rub, a, offset=self.offset, integer=integ)
