"""The ``reporting:`` block of a site (or a separate ``--reporting FILE``): what the operator
states for standards reporting and Coolshift does not measure.

Targets, Scope 1 logs, Scope 3 figures, EU Annex fields, heat reuse, offsets, the hardware
inventory, the e-waste register and the ISO 14001/50001 registers. Logs and registers are CSV
files (paths relative to the YAML that names them), read and checked by
:mod:`coolshift.reports.standards_inputs` (which also reads a separate reporting YAML); everything here is validated strictly (unknown keys
are errors naming the key path).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "TARGET_METRICS",
    "Target",
    "FuelFactor",
    "Scope1Inputs",
    "Scope3Item",
    "HeatReuse",
    "EUInformation",
    "HardwareModel",
    "Register",
    "IsoInputs",
    "Reporting",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


# metric -> (unit, lower is better)
TARGET_METRICS: dict[str, tuple[str, bool]] = {
    "tco2_location": ("tCO2", True),
    "tco2_market": ("tCO2", True),
    "tco2_scope1_2_market": ("tCO2e", True),
    "pue": ("-", True),
    "wue_l_per_kwh": ("L/kWh", True),
    "renewable_share_pct": ("%", False),
}


class Target(_Strict):
    """A measurable target (the protocol's step 5): ``metric`` from ``baseline_value`` in
    ``baseline_year`` to ``target_value`` (or ``reduction_pct`` below the baseline) in ``target_year``."""

    name: str = Field(min_length=1)
    metric: Literal["tco2_location", "tco2_market", "tco2_scope1_2_market", "pue", "wue_l_per_kwh", "renewable_share_pct"]
    baseline_year: int = Field(ge=1990, le=2100)
    baseline_value: float = Field(ge=0)
    target_year: int = Field(ge=1990, le=2100)
    reduction_pct: float | None = Field(None, gt=-1000, le=100)
    target_value: float | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _check(self) -> "Target":
        if self.target_year <= self.baseline_year:
            raise ValueError(f"target {self.name}: target_year must be after baseline_year")
        if (self.reduction_pct is None) == (self.target_value is None):
            raise ValueError(f"target {self.name}: give exactly one of reduction_pct or target_value")
        return self

    @property
    def goal(self) -> float:
        """The target value [metric unit]."""
        if self.target_value is not None:
            return self.target_value
        return self.baseline_value * (1.0 - self.reduction_pct / 100.0)


class FuelFactor(_Strict):
    """An emission factor the operator supplies for a fuel not in the cited library."""

    unit: Literal["litre", "m3", "kg", "kwh"]
    kgco2e_per_unit: float = Field(ge=0)
    source: str = Field(min_length=3, description="where the factor comes from (cited in the report)")


class Scope1Inputs(_Strict):
    """Direct emissions logs: generator and other fuel burnt, refrigerant topped up."""

    fuel_log: str | None = Field(None, description="CSV: date, fuel, quantity, unit[, reason]")
    refrigerant_log: str | None = Field(None, description="CSV: date, refrigerant, kg[, equipment]")
    fuels: dict[str, FuelFactor] = Field(default_factory=dict, description="factors for fuels beyond the library")


class Scope3Item(_Strict):
    """A Scope 3 category figure the operator has from elsewhere (GHG Protocol Scope 3 Standard)."""

    category: str = Field(min_length=1)
    tco2e: float = Field(ge=0)
    source: str = ""


class HeatReuse(_Strict):
    """Waste heat delivered to a user outside the data centre (counted in ERF, EN 50600-4-6).

    ``recovered_kwh`` is the metered heat of the reporting period; ``recovered_frac_of_it``
    models it as a share of IT energy when no meter exists (stated as modelled)."""

    recovered_kwh: float | None = Field(None, ge=0)
    recovered_frac_of_it: float | None = Field(None, ge=0, le=1)
    average_temperature_c: float | None = Field(None, ge=0, le=150)
    recipient: str = ""

    @model_validator(mode="after")
    def _one(self) -> "HeatReuse":
        if (self.recovered_kwh is None) == (self.recovered_frac_of_it is None):
            raise ValueError("heat_reuse: give exactly one of recovered_kwh or recovered_frac_of_it")
        return self


class EUInformation(_Strict):
    """Annex I fields of Delegated Regulation (EU) 2024/1364 that no meter gives."""

    owner: str = ""
    operator: str = ""
    country: str = ""
    operation_start_year: int | None = Field(None, ge=1950, le=2100)
    data_centre_type: Literal["enterprise", "colocation", "co-hosting"] | None = None
    total_floor_area_m2: float | None = Field(None, gt=0)
    computer_room_floor_area_m2: float | None = Field(None, gt=0)
    installed_it_power_kw: float | None = Field(None, gt=0, description="default: the zones' design IT load")
    potable_water_m3: float | None = Field(None, ge=0, description="potable share of the water input, metered")
    guarantees_of_origin_kwh: float = Field(0.0, ge=0, description="unbundled certificates (GOs/RECs) cancelled for the period")
    onsite_renewable_kwh: float = Field(0.0, ge=0, description="renewable electricity generated and used on site")


class HardwareModel(_Strict):
    """Per-model footprint figures for the lifecycle section (manufacture and transport per unit)."""

    manufacturing_kgco2e: float | None = Field(None, ge=0)
    transport_kgco2e: float = Field(0.0, ge=0)
    preset: str | None = Field(None, description="a PCF preset of coolshift.whatif.embodied instead of the figures")
    lifetime_years: float = Field(5.0, gt=0, le=30, description="service life the use phase is counted over")
    mass_kg: float | None = Field(None, gt=0, description="for the e-waste register")
    rated_power_w: float | None = Field(None, gt=0, description="mean power in use when the run has no per-pool power")
    source: str = ""

    @model_validator(mode="after")
    def _one(self) -> "HardwareModel":
        if (self.manufacturing_kgco2e is None) == (self.preset is None):
            raise ValueError("give exactly one of manufacturing_kgco2e (with source) or preset")
        if self.manufacturing_kgco2e is not None and len(self.source.strip()) < 3:
            raise ValueError("source: cite where manufacturing_kgco2e comes from (method, sheet, year)")
        return self


class Register(_Strict):
    """A register item (ISO 14001 clause 6.2 objectives, 10.2 corrective actions)."""

    id: str = Field(min_length=1)
    title: str = Field(min_length=1)
    owner: str = ""
    due: dt.date | None = None
    status: Literal["open", "in progress", "done", "cancelled"] = "open"
    note: str = ""


class IsoInputs(_Strict):
    """ISO 14001 / ISO 50001 inputs: SEU threshold, objectives and corrective actions."""

    seu_threshold_pct: float = Field(10.0, gt=0, le=100, description="share of site energy above which a use is significant")
    objectives: list[Register] = []
    corrective_actions: list[Register] = []


class Reporting(_Strict):
    """What the operator states in carbon and standards reports (``coolshift report``)."""

    # PAS 2060:2014 / ISO 14068-1:2023: the standard of the retired offset credits
    # (e.g. "VCS", "Gold Standard"); reports print "not stated" when empty.
    offset_standard: str | None = None
    inputs_note: str = Field("", description="how the inputs were obtained (printed in the report), e.g. 'example inputs'")
    targets: list[Target] = []
    scope1: Scope1Inputs = Scope1Inputs()
    scope3: list[Scope3Item] = []
    heat_reuse: HeatReuse | None = None
    eu: EUInformation = EUInformation()
    offsets: str | None = Field(None, description="CSV of retired offset credits (PAS 2060)")
    inventory: str | None = Field(None, description="CSV hardware inventory: serial, model, purchase_date[, pool]")
    hardware_models: dict[str, HardwareModel] = {}
    ewaste: str | None = Field(None, description="CSV e-waste register: date, serial, model, route[, mass_kg, handler]")
    iso: IsoInputs = IsoInputs()
    # Where the relative CSV paths resolve (the YAML's folder); set by the loader.
    base_dir: Path = Field(default=Path("."), exclude=True)

    @model_validator(mode="after")
    def _names(self) -> "Reporting":
        names = [t.name for t in self.targets]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate target names: {dup}")
        for kind, items in (("objective", self.iso.objectives), ("corrective action", self.iso.corrective_actions)):
            ids = [i.id for i in items]
            dup = sorted({n for n in ids if ids.count(n) > 1})
            if dup:
                raise ValueError(f"duplicate {kind} ids: {dup}")
        return self

    def path(self, rel: str | None) -> Path | None:
        """A CSV path of this block, resolved against the YAML that named it."""
        if rel is None:
            return None
        p = Path(rel)
        return p if p.is_absolute() else self.base_dir / p

