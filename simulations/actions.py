"""The simulator's policy interface: what a policy observes and the ``Policy`` protocol.

The actions a policy returns and the state it sees are :mod:`coolshift.actions`
(shared with the optimiser's closed loop); their shapes and units are listed there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from coolshift.actions import Actions, SimState
from coolshift.config import SiteConfig
from coolshift.site_arrays import SiteArrays

__all__ = ["Observation", "Policy"]


@dataclass
class Observation:
    """What a policy sees at the start of a decision interval.

    ``forecast`` is the data frame from ``step`` to the end of the run (actual data unless
    the caller passed another forecast frame); the policy decides how far to trust it.
    ``pending(b)`` lists the queued work of batch class ``b`` (index into ``names.batch``)
    as (due step, units) arrays, oldest first, where due step is the last step by which
    that work must be served.
    """

    site: SiteConfig
    names: SiteArrays
    step: int
    n_steps: int
    step_h: float
    index: pd.DatetimeIndex  # timestamps of this interval's steps
    state: SimState
    _forecast_full: pd.DataFrame = field(default=None, repr=False)
    _forecast_arrays_full: dict = field(default_factory=dict, repr=False)
    _arrivals_cum: list = field(default_factory=list, repr=False)  # per batch class, up to step
    _served_total: np.ndarray = field(default=None, repr=False)

    @property
    def forecast(self) -> pd.DataFrame:
        """Forecast frame from this interval's first step to the end of the run."""
        return self._forecast_full.iloc[self.step :]

    @property
    def forecast_arrays(self) -> dict[str, np.ndarray]:
        """The forecast's columns as numpy views from this step on (fast path for policies)."""
        return {k: v[self.step :] for k, v in self._forecast_arrays_full.items()}

    def pending(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        a_cum = self._arrivals_cum[b]
        if len(a_cum) == 0:
            return np.zeros(0, dtype=int), np.zeros(0)
        s = float(self._served_total[b])
        k0 = int(np.searchsorted(a_cum, s + 1e-9, side="right"))
        if k0 >= len(a_cum):
            return np.zeros(0, dtype=int), np.zeros(0)
        prev = np.concatenate([[0.0], a_cum[:-1]])[k0:]
        units = a_cum[k0:] - np.maximum(prev, s)
        due = np.arange(k0, len(a_cum)) + int(round(self.names.deadline_h[b] / self.step_h)) - 1
        keep = units > 1e-9
        return due[keep], units[keep]


@runtime_checkable
class Policy(Protocol):
    """Decides the actions of one decision interval.

    ``interval_h``: hours per call (``None``: one call for the whole run). ``decide``
    returns :class:`Actions` with exactly ``obs.n_steps`` steps.
    """

    name: str
    interval_h: float | None

    def decide(self, obs: Observation) -> Actions: ...
