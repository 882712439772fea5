"""Hand a plan to the simulator: the plan's decisions as simulator actions, and a replay.

The simulator judges with its own physics (no equations shared with the learned model),
so replaying a plan and comparing its measured carbon with the plan's predicted carbon
checks the whole chain: learned coefficients, LP and plan extraction.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from coolshift.config import SiteConfig

from .plan import Plan

__all__ = ["simulator_actions", "replay_plan"]


def simulator_actions(site: SiteConfig, plan: Plan):
    """The plan's setpoints, active servers, batch releases and offloads as simulator ``Actions``.

    Continuous active-server counts are rounded up to whole servers (never fewer than planned).
    """
    from coolshift.simulations.actions import Actions, SiteArrays

    frame = plan.frame.copy()
    cols = [c for c in frame.columns if c.startswith("active_servers__")]
    frame[cols] = np.ceil(frame[cols].to_numpy() - 1e-6)
    return Actions.from_frame(frame, SiteArrays.from_site(site))


def replay_plan(site: SiteConfig, data: pd.DataFrame, plan: Plan, state=None):
    """Run the simulator over ``data`` (the plan's steps) following ``plan``; returns its ``SimResult``."""
    from coolshift.simulations.engine import simulate
    from coolshift.simulations.policies import FixedPolicy

    data = data.loc[plan.frame.index]
    return simulate(site, data, FixedPolicy(simulator_actions(site, plan), name="plan"), state=state)
