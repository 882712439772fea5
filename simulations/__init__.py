"""The simulator: a physics model of a site and its edge sites that judges every plan.

It shares no equations with :mod:`coolshift.models`; it is the "truth" the learned models
are trained on and the optimiser is judged by. The policies it runs (the baseline rules,
Coolshift's receding-horizon controller) live in :mod:`coolshift.control`. See
docs/simulator.md.
"""

from .actions import Observation, Policy
from .engine import SimResult, Stepper, initial_state, required_columns, simulate

__all__ = ["Observation", "Policy", "SimResult", "Stepper", "initial_state", "required_columns", "simulate"]
