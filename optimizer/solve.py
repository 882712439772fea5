"""Solve the planning LP with HiGHS, keep the model loaded, re-solve after forecast changes.

:class:`Planner` builds the LP's constraint families (:mod:`.build`) and hands their numpy
assembly to one persistent ``highspy.Highs``; the same families as one Pyomo model
(:mod:`.pyomo_model`: the model of record, the same matrix entry by entry) are built when
``Planner.pyomo`` is read, or compiled with ``LinearStandardFormCompiler`` and solved
with ``PlanOptions(handover="pyomo")``. ``PlanOptions(decompose="zones")`` solves a
large site by zone decomposition (:mod:`.decompose`), ``decompose="sifting"`` by a
working-set LP seeded by a coarse-step plan (:mod:`.sifting`).
On :meth:`Planner.resolve` it rebuilds only the numeric arrays (milliseconds to a
second), updates the changed Params, bounds and rows of the Pyomo model, pushes the
same changes into the loaded HiGHS model (``changeColsCost``, ``changeColsBounds``,
``changeRowsBounds``, ``changeCoeff``) and picks the algorithm for the change:

- only costs changed (new intensity forecast): the old basis is still primal feasible,
  so primal simplex continues from it;
- only a few bounds/RHS changed (a new initial state): the old basis is still dual
  feasible, so dual simplex continues from it;
- both (new intensity forecast and initial state): costs first with primal simplex,
  then the few bounds with dual simplex;
- many bounds changed (more than ``PlanOptions.warm_bound_share``, default 1 %: a new
  demand forecast moves a bound in every step): cold, because
  HiGHS skips presolve when it starts from a basis and that costs more than it saves;
- ``method="cold"``: ``clearSolver()`` and a fresh solve with presolve (what the notes
  measured as the safe choice: a warm dual simplex after a cost change was slower
  than cold).

Failures never escape as solver tracebacks: infeasible models are diagnosed
(:mod:`.diagnose`) and, like time limits and solver errors, answered with the
best-practice rule plan flagged ``fallback=True`` and the reason.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from coolshift.config import SiteConfig
from coolshift.coefficients import PlantCoefficients

from .build import PlanningLP, build_lp
from .pyomo_model import build_pyomo, compile_model, direct, pass_to_highs
from .constraints import batch_not_due_units
from .data import PlanOptions, prepare
from .decompose import solve_planner, use_decomposition
from .sifting import solve_planner as sift_planner, use_sifting
from .diagnose import diagnose
from .fallback import fallback_plan
from .plan import Plan, evaluate_actions, totals_of
from .results import DUAL_TOL, actions_from_solution, shadow_prices
from .state import InitialState
from .warmstart import family_basis, shift_basis
from .highs import run_highs

__all__ = ["Planner", "plan_site", "shadow_prices"]

class Planner:
    """One site's planning LP, loaded once into HiGHS and re-solved as forecasts move."""

    def __init__(
        self,
        site: SiteConfig,
        coefficients: PlantCoefficients,
        forecast: pd.DataFrame,
        initial_state: InitialState | None = None,
        options: PlanOptions | None = None,
    ) -> None:
        self.site = site
        self.options = options or PlanOptions()
        self.coefficients = coefficients
        self.forecast = forecast
        self.initial_state = initial_state or InitialState.from_site(site)
        self.problem = build_lp(prepare(site, coefficients, forecast, self.initial_state, self.options))
        self._pyomo = build_pyomo(self.problem.lp) if self.options.handover == "pyomo" else None
        self.compiled = None
        self.highs = None
        pyomo_s = self._pyomo.build_s if self._pyomo is not None else 0.0
        self.timings: dict = {"build_s": self.problem.build_s + pyomo_s,
                              "terms_s": self.problem.build_s, "pyomo_build_s": pyomo_s}
        self._pending: str = "cold"
        self._bound_changes = None
        self._x = None  # the solution of a decomposed solve (no HiGHS model is kept then)
        self.decomposition = None
        self._start_basis = None  # a FamilyBasis to warm-start the first solve from

    # -- solver handle ---------------------------------------------------------------
    @property
    def _optimal(self):
        import highspy

        return highspy.HighsModelStatus.kOptimal

    @property
    def pyomo(self):
        """The Pyomo model of the current LP (built on first access with ``handover="numpy"``)."""
        if self._pyomo is None:
            self._pyomo = build_pyomo(self.problem.lp)
        return self._pyomo

    def _load(self) -> None:
        """Hand the LP to HiGHS (one ``passModel``): the numpy assembly, or the compiled Pyomo model."""
        self.compiled = compile_model(self.pyomo) if self.options.handover == "pyomo" else direct(self.problem.lp)
        self.timings["compile_s"] = self.compiled.compile_s
        t0 = time.perf_counter()
        self.highs = pass_to_highs(self.compiled, self.highs)
        self._loaded = self.problem.lp.arrays()
        self.timings["handover_s"] = time.perf_counter() - t0

    # -- maps between HiGHS' (the compiler's) order and the families' flat order ------
    def solution_x(self) -> np.ndarray:
        """Column values in the families' flat order (columns the compiler dropped, which
        appear nowhere, sit at the bound nearest 0)."""
        if self.highs is None and getattr(self, "_x", None) is not None:  # a decomposed solve
            return self._x.copy()
        cost, clb, cub, *_ = self.problem.lp.arrays()
        x = np.clip(np.zeros(self.problem.lp.n_cols), clb, cub)
        x[self.compiled.col_ids] = np.asarray(self.highs.getSolution().col_value)
        return x

    def _duals(self):
        sol = self.highs.getSolution()
        y = np.zeros(self.problem.lp.n_rows)
        y[self.compiled.row_ids] = np.asarray(sol.row_dual)
        rc = np.zeros(self.problem.lp.n_cols)
        rc[self.compiled.col_ids] = np.asarray(sol.col_dual)
        return y, rc

    def _hrows(self, ids: np.ndarray) -> np.ndarray:
        return self.compiled.hrow[np.asarray(ids, np.int64)].astype(np.int32)

    def _run(self, strategy: str) -> None:
        h = self.highs
        h.setOptionValue("time_limit", float(self.options.time_limit_s))
        if self.options.threads:
            h.setOptionValue("threads", int(self.options.threads))
        if strategy == "cold":
            h.clearSolver()
            h.setOptionValue("simplex_dual_edge_weight_strategy", -1)  # HiGHS' choice
            h.setOptionValue("solver", self.options.lp_solver)
            h.setOptionValue("run_crossover", "on")  # a vertex and a basis: duals and warm re-solves
            h.setOptionValue("simplex_strategy", 1)
        elif strategy == "basis":  # an alien start basis was set: dual simplex from it
            h.setOptionValue("solver", "simplex")
            h.setOptionValue("simplex_strategy", 1)
            # Devex pricing: steepest-edge weights for a basis HiGHS did not build itself cost
            # a solve per row to initialise (PHL 36-h oracle plans, 2022-06-01..03: 0.33 s a
            # plan with steepest edge, 0.25 s with Devex, docs/optimizer.md, Warm-started re-plans)
            h.setOptionValue("simplex_dual_edge_weight_strategy", 1)
        else:
            h.setOptionValue("solver", "simplex")
            h.setOptionValue("simplex_strategy", 4 if strategy == "primal" else 1)
            h.setOptionValue("simplex_dual_edge_weight_strategy", -1)  # as measured for update() re-solves
        run_highs(h)

    def solve(self) -> Plan:
        """Solve (or re-solve after :meth:`update`) and return the plan or the flagged fallback."""
        d = self.problem.data
        if self.highs is None and use_decomposition(self.problem):
            plan = solve_planner(self)  # None: the gap did not close, solve the whole LP below
            if plan is not None:
                return plan
        if self.highs is None and use_sifting(self.problem):
            plan = sift_planner(self)  # None: the working set failed, solve the whole LP below
            if plan is not None:
                return plan
        t0 = time.perf_counter()
        try:
            if self.highs is None:
                self._load()
                self._pending = "cold"
                if self._start_basis is not None and not self.options.integer_servers:
                    self._pending = "basis" if self._set_start_basis(self._start_basis) else "cold"
                    self._start_basis = None
            t1 = time.perf_counter()
            for strategy in self._pending.split("+"):
                if strategy == "dual" and self._bound_changes is not None:
                    self._push_bounds(*self._bound_changes)
                    self._bound_changes = None
                self._run(strategy)
            if self._pending == "basis" and self._retry_cold(self.highs.getModelStatus()):
                self._run("cold")  # a start basis must never decide the outcome: confirm cold
            self.timings["warm_start"] = self._pending == "basis"
            self.timings["simplex_iterations"] = int(self.highs.getInfo().simplex_iteration_count)
            self.timings["solve_s"] = time.perf_counter() - t1
            status = self.highs.modelStatusToString(self.highs.getModelStatus())
        except Exception as exc:  # a solver failure must never leave the site without a plan
            return self._fallback(f"solver error: {type(exc).__name__}: {exc}", "error")
        finally:
            self._pending = "cold"
        self.timings["total_s"] = self.timings.get("build_s", 0.0) + time.perf_counter() - t0
        import highspy

        ms = self.highs.getModelStatus()
        if ms == highspy.HighsModelStatus.kOptimal:
            return self._extract(status)
        if ms in (highspy.HighsModelStatus.kInfeasible, highspy.HighsModelStatus.kUnboundedOrInfeasible):
            lp = self.problem.lp  # the compiled Pyomo model, in the families' order, relaxed
            diag = diagnose(lp, arrays=self.compiled.in_lp_order(lp.n_cols, lp.n_rows))
            return self._fallback(diag.message(), "infeasible", diag)
        if ms == highspy.HighsModelStatus.kTimeLimit:
            return self._fallback(f"time limit of {self.options.time_limit_s:g} s reached", "time_limit")
        return self._fallback(f"HiGHS stopped with status {status!r}", status)

    # -- warm starts across re-plans (optimizer.warmstart) -----------------------------
    def family_basis(self):
        """The optimal basis of the last solve by family (None without one), for :meth:`warm_start_from`."""

        if self.highs is None or self.highs.getModelStatus() != self._optimal:
            return None
        b = self.highs.getBasis()
        if not b.valid:
            return None
        lp, c = self.problem.lp, self.compiled
        col = np.full(lp.n_cols, -1, dtype=np.int64)
        row = np.full(lp.n_rows, -1, dtype=np.int64)
        col[c.col_ids] = np.fromiter((int(s) for s in b.col_status), dtype=np.int64, count=len(c.col_ids))
        row[c.row_ids] = np.fromiter((int(s) for s in b.row_status), dtype=np.int64, count=len(c.row_ids))
        return family_basis(lp, col, row)

    def warm_start_from(self, basis) -> None:
        """Start the next cold solve from ``basis`` (a previous plan's :meth:`family_basis`),
        moved onto this LP's steps by timestamp (:func:`.warmstart.shift_basis`)."""
        self._start_basis = basis

    @staticmethod
    def _retry_cold(status) -> bool:
        """After a warm start, anything but optimal, infeasible or a time limit is re-solved cold."""
        import highspy

        ms = highspy.HighsModelStatus
        return status not in (ms.kOptimal, ms.kInfeasible, ms.kTimeLimit)

    def _set_start_basis(self, basis) -> bool:
        import highspy


        cols, rows = shift_basis(basis, self.problem.lp)
        c = self.compiled
        b = highspy.HighsBasis()
        status = [highspy.HighsBasisStatus(k) for k in range(4)]
        b.col_status = [status[k] for k in cols[c.col_ids].tolist()]
        b.row_status = [status[k] for k in rows[c.row_ids].tolist()]
        b.alien = True  # HiGHS completes or repairs it (rank, number of basic variables)
        b.valid = True
        self.highs.clearSolver()
        return self.highs.setBasis(b) == highspy.HighsStatus.kOk

    def _fallback(self, reason, status, diagnosis=None) -> Plan:
        plan = fallback_plan(self.problem.data, reason, status, diagnosis, site=self.site)
        plan.timings = dict(self.timings)
        return plan

    def _extract(self, status: str) -> Plan:
        p = self.problem
        sol = self.highs.getSolution()
        x = self.solution_x()
        frame = evaluate_actions(p.data, actions_from_solution(p, x))
        if sol.dual_valid and not self.options.integer_servers:
            sh = shadow_prices(p, *self._duals(), x)
        else:
            sh = pd.DataFrame(columns=["family", "component", "value", "unit", "binding_steps"])
        info = self.highs.getInfo()
        if sol.dual_valid and not self.options.integer_servers and self.options.deadline_prices:
            t0 = time.perf_counter()
            sh = pd.concat([sh, self.deadline_values(float(info.objective_function_value))], ignore_index=True)
            self.timings["shadow_s"] = time.perf_counter() - t0
        return Plan(
            frame=frame,
            totals=totals_of(p.data, frame),
            shadow_prices=sh,
            status=status.lower(),
            objective_kg=float(info.objective_function_value),
            timings=dict(self.timings),
        )

    def deadline_values(self, objective_kg: float) -> pd.DataFrame:
        """kgCO2 per extra hour of each batch class's deadline, by a warm re-solve.

        The dual of a deadline row is not unique when the backlog it bounds is empty (the
        row and the backlog's lower bound meet: a degenerate vertex), so it is not a
        reliable "what is an hour worth". Instead the deadline rows get the bounds of a
        deadline one hour (rounded up to whole steps) longer, dual simplex continues from
        the optimal basis, and the objective change is reported; then the bounds return.
        """
        p, h = self.problem, self.highs
        fam = p.lp.cons.get("batch_deadline")
        rows = []
        if fam is None or p.data.backlog_fixed is not None:  # no shifting, no deadline to value
            return pd.DataFrame(rows)
        d = p.data
        extra = max(1, int(np.ceil(1.0 / d.step_h - 1e-9)))
        ids = fam.ids()
        base = batch_not_due_units(d)
        longer = batch_not_due_units(d, extra)
        for j, cname in enumerate(fam.coords["class"]):
            r = self._hrows(ids[:, j])
            diff = longer[:, j] != base[:, j]
            if not diff.any() or (r < 0).any():
                continue
            h.changeRowsBounds(r.size, r, np.full(r.size, -np.inf), longer[:, j])
            self._run("dual")
            ok = h.getModelStatus() == self._optimal
            val = (h.getInfo().objective_function_value - objective_kg) / (extra * d.step_h) if ok else float("nan")
            h.changeRowsBounds(r.size, r, np.full(r.size, -np.inf), base[:, j])
            if ok and abs(val) > DUAL_TOL:
                rows.append({"family": "batch_deadline", "component": str(cname), "value": float(val),
                             "unit": "kgCO2 per hour of deadline", "binding_steps": int(diff.sum())})
        return pd.DataFrame(rows, columns=["family", "component", "value", "unit", "binding_steps"])

    # -- re-solves -------------------------------------------------------------------
    def update(
        self,
        forecast: pd.DataFrame | None = None,
        coefficients: PlantCoefficients | None = None,
        initial_state: InitialState | None = None,
        method: str = "auto",
    ) -> dict:
        """Rebuild the arrays for new inputs and push only what changed into the loaded model."""
        t0 = time.perf_counter()
        self.forecast = self.forecast if forecast is None else forecast
        self.coefficients = self.coefficients if coefficients is None else coefficients
        self.initial_state = self.initial_state if initial_state is None else initial_state
        new = build_lp(prepare(self.site, self.coefficients, self.forecast, self.initial_state, self.options))
        self.problem = new
        self._x = None
        if self.highs is None:
            self._pyomo = build_pyomo(new.lp) if self.options.handover == "pyomo" else None
            self.timings.update(build_s=new.build_s + (self._pyomo.build_s if self._pyomo is not None else 0.0))
            return {"rebuilt": True}
        cost, clb, cub, rlb, rub, a, _ = new.lp.arrays()
        ocost, oclb, ocub, orlb, orub, oa, _ = self._loaded
        same = a.shape == oa.shape and np.array_equal(a.indptr, oa.indptr) and np.array_equal(a.indices, oa.indices)
        changed = {"rebuilt": False, "costs": 0, "col_bounds": 0, "row_bounds": 0, "coefficients": 0}
        c = self.compiled
        if same:
            dv = np.flatnonzero(a.data != oa.data)
            dcol = np.searchsorted(a.indptr, dv, side="right") - 1
            drow = a.indices[dv]
            jc = np.flatnonzero(cost != ocost)
            jb = np.flatnonzero((clb != oclb) | (cub != ocub))
            ib = np.flatnonzero((rlb != orlb) | (rub != orub))
            # a change to a row or column the compiler left out (no terms, no bounds) needs a recompile
            absent = (c.hcol[np.concatenate([jc, jb, dcol])] < 0).any() or (c.hrow[np.concatenate([ib, drow])] < 0).any()
        if not same or absent or dv.size > 0.01 * max(a.nnz, 1):
            # a new structure: a new Pyomo model, compiled and handed over again
            if self.options.handover == "pyomo":
                self._pyomo = build_pyomo(new.lp)
                self.compiled = compile_model(self._pyomo)
            else:
                self._pyomo = None  # rebuilt from the new LP when read
                self.compiled = direct(new.lp)
            pass_to_highs(self.compiled, self.highs)
            changed["rebuilt"] = True
            self._pending = "cold"
        else:
            # keep the Pyomo model and the loaded HiGHS model: update what changed in both
            h = self.highs
            rows = np.union1d(ib, drow)
            if self._pyomo is not None:  # a Pyomo model that was built is kept equal to the LP
                if rows.size:
                    self._pyomo.set_rows(new.lp, rows)
                self._pyomo.lp = new.lp
                if jc.size:
                    self._pyomo.set_costs(jc, cost)
                if jb.size:
                    self._pyomo.set_col_bounds(jb, clb, cub)
            for i, j, val in zip(c.hrow[drow].tolist(), c.hcol[dcol].tolist(), a.data[dv].tolist()):
                h.changeCoeff(int(i), int(j), float(val))
            if jc.size:
                h.changeColsCost(jc.size, c.hcol[jc].astype(np.int32), cost[jc])
            changed.update(costs=int(jc.size), col_bounds=int(jb.size), row_bounds=int(ib.size), coefficients=int(dv.size))
            bounds = (jb, clb, cub, ib, rlb, rub)
            many = jb.size + ib.size > self.options.warm_bound_share * (a.shape[0] + a.shape[1])
            if method == "cold" or dv.size or many or self.options.integer_servers:
                self._push_bounds(*bounds)
                self._pending = "cold"
            elif jc.size and (jb.size or ib.size):
                self._bound_changes = bounds
                self._pending = "primal+dual"
            elif jc.size:
                self._pending = "primal"
            else:
                self._push_bounds(*bounds)
                self._pending = "dual"
        self._loaded = (cost, clb, cub, rlb, rub, a, None)
        self.timings = {"build_s": new.build_s, "update_s": time.perf_counter() - t0}
        if changed["rebuilt"]:
            self.timings.update(pyomo_build_s=self._pyomo.build_s if self._pyomo is not None else 0.0,
                                compile_s=self.compiled.compile_s)
        changed["method"] = self._pending
        return changed

    def _push_bounds(self, jb, clb, cub, ib, rlb, rub) -> None:
        h, c = self.highs, self.compiled
        if jb.size:
            h.changeColsBounds(jb.size, c.hcol[jb].astype(np.int32), clb[jb], cub[jb])
        if ib.size:
            h.changeRowsBounds(ib.size, c.hrow[ib].astype(np.int32), rlb[ib], rub[ib])

    def resolve(self, forecast=None, coefficients=None, initial_state=None, method: str = "auto") -> Plan:
        self.update(forecast, coefficients, initial_state, method)
        return self.solve()


def plan_site(
    site: SiteConfig,
    coefficients: PlantCoefficients,
    forecast: pd.DataFrame,
    initial_state: InitialState | None = None,
    options: PlanOptions | None = None,
) -> Plan:
    """Plan one horizon: build, solve, and return a :class:`Plan` (or the flagged fallback)."""
    return Planner(site, coefficients, forecast, initial_state, options).solve()
