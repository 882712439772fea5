"""Site time from wall time: the twin's clock runs ``speed`` times faster than real time."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pandas as pd

__all__ = ["TwinClock"]


@dataclass
class TwinClock:
    """Site seconds since ``start`` = wall seconds since the clock was made x ``speed``.

    Step k of the site's data (``start + k * step_s``) is simulated at wall time
    ``wall0 + k * step_s / speed``: at speed 60 a 15-min planning step takes 15 s.
    """

    start: pd.Timestamp
    step_s: float
    speed: float
    wall0: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if not self.speed > 0:
            raise ValueError(f"speed {self.speed} must be positive")

    def site_s(self) -> float:
        """Site seconds elapsed since ``start`` (continuous; the watchdog's timer runs on it)."""
        return (time.monotonic() - self.wall0) * self.speed

    def wall_of_step(self, k: int) -> float:
        """time.monotonic() at which step k starts."""
        return self.wall0 + k * self.step_s / self.speed

    def time_of_step(self, k: int) -> pd.Timestamp:
        return self.start + pd.Timedelta(seconds=k * self.step_s)
