"""Bases the learned models are linear in: functions of the outside conditions."""

from __future__ import annotations

import numpy as np

__all__ = ["hat_basis"]


def hat_basis(values, knots) -> np.ndarray:
    """Piecewise-linear hat functions of ``values`` at ``knots`` (rows sum to one; beyond the
    outer knots the edge hat holds, so nothing is extrapolated)."""
    v = np.clip(np.asarray(values, dtype=float), knots[0], knots[-1])
    return np.column_stack([np.interp(v, knots, np.eye(len(knots))[i]) for i in range(len(knots))])
