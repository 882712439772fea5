"""The simulator: a physics model of a site and its edge sites that judges every plan.

It shares no equations with :mod:`coolshift.models`; it is the "truth" the learned models
are trained on and the optimiser is judged by. See docs/simulator.md.
"""

from .actions import ActionError, Actions, Observation, Policy, SimState, SiteArrays
from .engine import SimResult, initial_state, required_columns, simulate
from .policies import POLICIES, best_practice_actions, carbon_greedy_actions, get_policy, static_actions

__all__ = [
    "ActionError", "Actions", "Observation", "Policy", "SimState", "SiteArrays",
    "SimResult", "initial_state", "required_columns", "simulate",
    "POLICIES", "get_policy", "best_practice_actions", "carbon_greedy_actions", "static_actions",
]
