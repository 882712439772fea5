"""Coolshift's optimiser: one LP that co-schedules cooling, consolidation, deferral and offload.

``plan_site(site, coefficients, forecast, initial_state)`` returns a :class:`Plan`;
:class:`Planner` keeps the model loaded in HiGHS for receding-horizon re-solves.
"""

from .data import LEVERS, PlanOptions, ProblemData, power_curve_error, power_curve_segments, prepare
from .plan import Decisions, Plan, evaluate_actions
from .solve import Planner, plan_site, shadow_prices
from .state import InitialState

__all__ = [
    "Decisions",
    "LEVERS",
    "InitialState",
    "Plan",
    "PlanOptions",
    "Planner",
    "ProblemData",
    "evaluate_actions",
    "plan_site",
    "power_curve_error",
    "power_curve_segments",
    "prepare",
    "shadow_prices",
]
