"""Targets and progress on a straight-line trajectory (GHG Protocol / SBTi-style linear path).

Expected value in year Y: ``baseline + (goal - baseline) x (Y - baseline_year) / (target_year -
baseline_year)``, Y clamped to [baseline_year, target_year]. On track when the actual value is no
worse than the expected one; the gap is ``actual - expected`` (in the metric's unit; positive is
worse for a lower-is-better metric). Progress is the share of the way from baseline to goal.
"""

from __future__ import annotations

from coolshift.reporting_config import TARGET_METRICS, Target

__all__ = ["trajectory_value", "target_progress", "targets_progress"]


def trajectory_value(baseline: float, goal: float, baseline_year: int, target_year: int, year: float) -> float:
    """Value on the straight line from ``baseline`` (``baseline_year``) to ``goal`` (``target_year``) in ``year``."""
    y = min(max(year, baseline_year), target_year)
    return baseline + (goal - baseline) * (y - baseline_year) / (target_year - baseline_year)


def target_progress(target: Target, actual: float | None, year: int) -> dict:
    """Progress of one target in ``year`` given the period's ``actual`` value (None: not measured)."""
    unit, lower_better = TARGET_METRICS[target.metric]
    goal = target.goal
    expected = trajectory_value(target.baseline_value, goal, target.baseline_year, target.target_year, year)
    row = {"name": target.name, "metric": target.metric, "unit": unit, "baseline_year": target.baseline_year,
           "baseline_value": target.baseline_value, "target_year": target.target_year, "target_value": goal,
           "year": year, "expected_value": expected, "actual_value": actual, "gap": None, "on_track": None,
           "progress_pct": None, "status": "not measured in this period"}
    if actual is None:
        return row
    gap = actual - expected
    on_track = gap <= 1e-9 if lower_better else gap >= -1e-9
    span = target.baseline_value - goal
    progress = 100.0 * (target.baseline_value - actual) / span if span != 0 else None
    row.update(gap=gap, on_track=bool(on_track), progress_pct=progress,
               status=("on track" if on_track else "off track") + (" (target year passed)" if year > target.target_year else ""))
    return row


def targets_progress(targets: list[Target], actuals: dict, year: int) -> list[dict]:
    """One progress row per target; ``actuals`` maps metric -> the period's value."""
    return [target_progress(t, actuals.get(t.metric), year) for t in targets]
