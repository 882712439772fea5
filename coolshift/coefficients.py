"""The learned plant model's linear coefficients, in the form the optimiser consumes.

This is the one contract between :mod:`coolshift.models` (which learns it from
telemetry) and :mod:`coolshift.optimizer` (which plans with it). Every coefficient
may vary by step, because the learned model picks its linear regime (economiser,
partial, mechanical) from the *forecast* outside conditions; it is linear in the
decisions, so the LP stays an LP.

For step ``t`` and zone ``z`` (decisions: zone IT power ``it_kw[z]`` in kW, supply-air
setpoint ``sp[z]`` in degC, chilled-water setpoint ``chw`` in degC)::

    cooling_kw[t]   = cooling_const_kw[t]
                      + sum_z cooling_per_it_kw[t, z] * it_kw[z]
                      + sum_z cooling_per_supply_c[t, z] * sp[z]
                      + cooling_per_chw_c[t] * chw
    inlet_c[t, z]   = inlet_const_c[t, z] + inlet_per_supply_c[t, z] * sp[z]
                      + inlet_per_it_kw[t, z] * it_kw[z]
    fan_kw[t, z]    = it_fan_kw_per_c[t, z] * max(0, inlet_c[t, z] - it_fan_threshold_c)
    facility_kw[t]  = facility_const_kw[t] + facility_per_it_kw[t] * sum_z (it_kw[z] + fan_kw[t, z])
                      + cooling_kw[t]

Optionally the cooling response is *convex piecewise linear*: ``cooling_pieces`` is a
list of further affine pieces of the same form (fields ``const_kw``, ``per_it_kw``,
``per_supply_c``, ``per_chw_c``), and ``cooling_kw[t]`` is the largest of the main piece
and every extra piece. An LP represents it exactly by ``cooling >= piece`` for every
piece (minimising carbon pushes cooling down onto the maximum). This follows kinks such
as the economiser taking over below a wet-bulb-dependent chilled-water setpoint.

``fan_kw`` is the server-fan/leakage power that rises with inlet temperature (the
reason raising setpoints is not free); it is part of IT power. ``in_envelope[t]`` is
False where the forecast conditions fall outside the training data: the optimiser and
the BMS push refuse or fall back on those steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["PlantCoefficients", "CoolingPiece"]


@dataclass(frozen=True)
class CoolingPiece:
    """One affine piece of a convex piecewise-linear cooling response (same units as the main one)."""

    const_kw: pd.Series
    per_it_kw: pd.DataFrame
    per_supply_c: pd.DataFrame
    per_chw_c: pd.Series

    def evaluate(self, it_kw: pd.DataFrame, supply_c: pd.DataFrame, chw_c: pd.Series) -> pd.Series:
        return (self.const_kw + (self.per_it_kw * it_kw).sum(axis=1) + (self.per_supply_c * supply_c).sum(axis=1)
                + self.per_chw_c * chw_c)


@dataclass(frozen=True)
class PlantCoefficients:
    """Per-step linear plant response (units in the field names; frames are step x zone)."""

    cooling_const_kw: pd.Series
    cooling_per_it_kw: pd.DataFrame  # kW cooling per kW of zone IT
    cooling_per_supply_c: pd.DataFrame  # kW per degC of zone supply setpoint (usually < 0)
    cooling_per_chw_c: pd.Series  # kW per degC of chilled-water setpoint (usually < 0)
    inlet_const_c: pd.DataFrame
    inlet_per_supply_c: pd.DataFrame  # degC inlet per degC supply
    inlet_per_it_kw: pd.DataFrame  # degC per kW of zone IT (recirculation)
    it_fan_kw_per_c: pd.DataFrame  # extra IT kW per degC inlet above the threshold
    facility_const_kw: pd.Series  # fixed loads (lighting, UPS no-load losses ...)
    facility_per_it_kw: pd.Series  # 1 + proportional electrical losses
    it_fan_threshold_c: float = 25.0
    in_envelope: pd.Series = field(default=None)  # bool per step
    model_version: str | None = None
    # Extra convex pieces of cooling power (see module docstring); each a CoolingPiece.
    cooling_pieces: tuple = ()
    # Training range of each decision column ({telemetry column: (lo, hi)}), so the
    # optimiser can stay where the model was fitted without reading the estimator.
    decision_envelope: dict | None = None
    # Where the model was trained, per step, at that step's forecast weather: columns
    # it_lo_kw / it_hi_kw (total IT) and chw_lo_c / chw_hi_c (chilled water), NaN = unknown;
    # optionally share_lo__<zone> / share_hi__<zone> (the zone's share of total IT).
    # The optimiser keeps its plan inside (the model's stated error was measured there).
    support: pd.DataFrame | None = None

    def __post_init__(self) -> None:
        idx = self.cooling_const_kw.index
        zones = self.cooling_per_it_kw.columns
        for name in (
            "cooling_per_it_kw",
            "cooling_per_supply_c",
            "inlet_const_c",
            "inlet_per_supply_c",
            "inlet_per_it_kw",
            "it_fan_kw_per_c",
        ):
            f = getattr(self, name)
            if not f.index.equals(idx) or list(f.columns) != list(zones):
                raise ValueError(f"PlantCoefficients.{name}: index/columns differ from cooling_per_it_kw")
        for name in ("cooling_per_chw_c", "facility_const_kw", "facility_per_it_kw"):
            if not getattr(self, name).index.equals(idx):
                raise ValueError(f"PlantCoefficients.{name}: index differs from cooling_const_kw")
        for k, piece in enumerate(self.cooling_pieces):
            for name in ("per_it_kw", "per_supply_c"):
                f = getattr(piece, name)
                if not f.index.equals(idx) or list(f.columns) != list(zones):
                    raise ValueError(f"PlantCoefficients.cooling_pieces[{k}].{name}: index/columns differ")
            for name in ("const_kw", "per_chw_c"):
                if not getattr(piece, name).index.equals(idx):
                    raise ValueError(f"PlantCoefficients.cooling_pieces[{k}].{name}: index differs")
        if self.support is not None and not self.support.index.equals(idx):
            raise ValueError("PlantCoefficients.support: index differs from cooling_const_kw")
        if self.in_envelope is None:
            object.__setattr__(self, "in_envelope", pd.Series(True, index=idx))

    @property
    def zones(self) -> list[str]:
        return list(self.cooling_per_it_kw.columns)

    @property
    def index(self) -> pd.DatetimeIndex:
        return self.cooling_const_kw.index

    def predict(self, it_kw: pd.DataFrame, supply_c: pd.DataFrame, chw_c: pd.Series) -> pd.DataFrame:
        """Evaluate the linear model for given decisions (step x zone frames)."""
        inlet = self.inlet_const_c + self.inlet_per_supply_c * supply_c + self.inlet_per_it_kw * it_kw
        fan = self.it_fan_kw_per_c * np.maximum(inlet - self.it_fan_threshold_c, 0.0)
        cooling = (
            self.cooling_const_kw
            + (self.cooling_per_it_kw * it_kw).sum(axis=1)
            + (self.cooling_per_supply_c * supply_c).sum(axis=1)
            + self.cooling_per_chw_c * chw_c
        )
        for piece in self.cooling_pieces:
            cooling = np.maximum(cooling, piece.evaluate(it_kw, supply_c, chw_c))
        it_total = (it_kw + fan).sum(axis=1)
        facility = self.facility_const_kw + self.facility_per_it_kw * it_total + cooling
        out = pd.DataFrame({"it_power_kw": it_total, "cooling_power_kw": cooling, "facility_power_kw": facility})
        for z in self.zones:
            out[f"inlet_temp_c__{z}"] = inlet[z]
        return out
