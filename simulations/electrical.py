"""Electrical losses: UPS efficiency curve, PDU losses, fixed loads. Powers in kW.

References
----------
- UPS efficiency points come from the site config (default: double-conversion UPS
  datasheets, Eaton 93PM / Vertiv Liebert EXL S1, see :class:`coolshift.config.Electrical`).
- The Green Grid, White Paper #49 "PUE: a comprehensive examination of the metric" (2012):
  facility power = IT + cooling + power-delivery losses + lighting/other; PUE = facility / IT.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ups_efficiency", "ups_loss_kw", "pdu_loss_kw"]


def ups_efficiency(load_frac, points) -> np.ndarray:
    """UPS efficiency [-] at ``load_frac`` of rating, piecewise linear through ``points`` (frac, eff)."""
    pts = np.asarray(points, dtype=float)
    order = np.argsort(pts[:, 0])
    return np.interp(np.asarray(load_frac, dtype=float), pts[order, 0], pts[order, 1])


def ups_loss_kw(output_kw, rated_kw: float, points) -> np.ndarray:
    """UPS loss [kW] delivering ``output_kw``: input - output = output (1/eff - 1)."""
    out = np.asarray(output_kw, dtype=float)
    eff = ups_efficiency(out / rated_kw, points)
    return out * (1.0 / eff - 1.0)


def pdu_loss_kw(it_kw, loss_frac: float) -> np.ndarray:
    """PDU and transformer loss [kW], a share of the IT power they deliver."""
    return np.asarray(it_kw, dtype=float) * loss_frac
