"""Assemble the planning LP from :class:`ProblemData`: variables, constraint families, objective."""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass

from .constraints import add_constraints
from .data import ProblemData
from .lp import LinearProgram
from .objective import set_objective
from .variables import Vars, add_variables

__all__ = ["PlanningLP", "build_lp"]


@dataclass
class PlanningLP:
    lp: LinearProgram
    vars: Vars
    data: ProblemData
    build_s: float


def build_lp(d: ProblemData) -> PlanningLP:
    """Build the whole LP with array operations (no per-element Python); GC paused meanwhile."""
    t0 = time.perf_counter()
    was = gc.isenabled()
    gc.disable()
    try:
        lp = LinearProgram()
        v = add_variables(lp, d)
        add_constraints(lp, d, v)
        set_objective(lp, d, v)
        lp.arrays()  # assemble the CSC matrix now, so build time includes it
    finally:
        if was:
            gc.enable()
    return PlanningLP(lp, v, d, time.perf_counter() - t0)
