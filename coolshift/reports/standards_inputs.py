"""Readers for the standards-reporting inputs: the reporting YAML and its CSV logs and registers.

Each reader checks its file at the boundary (scikit-learn style) and returns a clean frame; a
bad file is a :class:`DataError` naming the file, the column and the row (the header is row 1),
never quoting more than one cell.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import ValidationError

from coolshift.config import ConfigError, _format_validation_error, _read_site_yaml
from coolshift.io.checks import DataError, cell, read_csv_text, require_columns, to_numeric
from coolshift.reporting_config import Reporting
from coolshift.reports.scope1 import FUEL_FACTORS, refrigerant_gwp100
from coolshift.whatif.embodied import PCF_PRESETS

__all__ = ["load_reporting", "read_fuel_log", "read_refrigerant_log", "read_offsets", "read_inventory",
           "read_ewaste", "EWASTE_ROUTES"]

EWASTE_ROUTES = ("reuse", "refurbish", "recycle")


def load_reporting(path: str | Path) -> Reporting:
    """A separate reporting YAML (the keys of a site's ``reporting:`` block); CSV paths resolve against it."""
    path = Path(path)
    raw, lines, _ = _read_site_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping (key: value lines) at the top level")
    raw["base_dir"] = path.parent.resolve()
    try:
        return Reporting.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(path, exc, lines)) from None


def _read(path: Path, needed: tuple[str, ...]) -> pd.DataFrame:
    df = read_csv_text(path)
    df.columns = [str(c).strip() for c in df.columns]
    require_columns(df.columns, needed, path)
    return df


def _required_text(df: pd.DataFrame, column: str, path: Path) -> pd.Series:
    s = df[column].astype("string").str.strip()
    empty = s.isna() | (s == "")
    if empty.any():
        raise DataError(path, "empty cell: a value is required", column, int(np.flatnonzero(empty.to_numpy())[0]) + 2)
    return s.astype(str)


def _dates(df: pd.DataFrame, column: str, path: Path, required: bool = True) -> pd.Series:
    raw = df[column].astype("string").str.strip()
    out = []
    for i, v in enumerate(raw):
        if v is pd.NA or v == "":
            if required:
                raise DataError(path, "empty cell: a date (YYYY-MM-DD) is required", column, i + 2)
            out.append(pd.NaT)
            continue
        try:
            out.append(pd.Timestamp(v).tz_localize("UTC") if pd.Timestamp(v).tzinfo is None else pd.Timestamp(v).tz_convert("UTC"))
        except (ValueError, TypeError, OverflowError):
            raise DataError(path, f"not a date (YYYY-MM-DD): {cell(v)}", column, i + 2) from None
    return pd.Series(pd.DatetimeIndex(out, tz="UTC"), index=df.index)


def _numbers(df: pd.DataFrame, column: str, path: Path, minimum: float = 0.0, required: bool = True) -> pd.Series:
    s = to_numeric(df, column, path)
    for i, v in enumerate(s):
        if np.isnan(v):
            if required:
                raise DataError(path, "empty cell: a number is required", column, i + 2)
        elif not np.isfinite(v) or v < minimum:
            raise DataError(path, f"must be a finite number >= {minimum:g}", column, i + 2)
    return s


def read_fuel_log(path: Path, fuels: dict | None = None) -> pd.DataFrame:
    """Fuel burnt on site: ``date, fuel, quantity, unit[, reason]``; each row gets its cited factor."""
    df = _read(path, ("date", "fuel", "quantity", "unit"))
    out = pd.DataFrame({"date": _dates(df, "date", path), "fuel": _required_text(df, "fuel", path).str.lower(),
                        "quantity": _numbers(df, "quantity", path), "unit": _required_text(df, "unit", path).str.lower()})
    out["reason"] = df["reason"].fillna("").astype(str) if "reason" in df else ""
    lib = {k: (v[0], v[1], v[2]) for k, v in FUEL_FACTORS.items()}
    lib.update({k.lower(): (f.unit, f.kgco2e_per_unit, f.source) for k, f in (fuels or {}).items()})
    units, factors, sources = [], [], []
    for i, (fuel, unit) in enumerate(zip(out["fuel"], out["unit"])):
        if fuel not in lib:
            raise DataError(path, f"unknown fuel {cell(fuel)}: library fuels {sorted(FUEL_FACTORS)}, or add it under "
                                  "reporting.scope1.fuels with unit, kgco2e_per_unit and source", "fuel", i + 2)
        want = lib[fuel][0]
        if unit not in (want, want + "s") and not (want == "litre" and unit in ("l", "liter", "liters")):
            raise DataError(path, f"unit {cell(unit)} for {fuel}: its factor is per {want}", "unit", i + 2)
        factors.append(lib[fuel][1])
        sources.append(lib[fuel][2])
        units.append(want)
    out["unit"], out["kgco2e_per_unit"], out["factor_source"] = units, factors, sources
    out["kgco2e"] = out["quantity"] * out["kgco2e_per_unit"]
    return out


def read_refrigerant_log(path: Path) -> pd.DataFrame:
    """Refrigerant topped up: ``date, refrigerant, kg[, equipment]``; each row gets its AR6 GWP-100."""
    df = _read(path, ("date", "refrigerant", "kg"))
    out = pd.DataFrame({"date": _dates(df, "date", path), "refrigerant": _required_text(df, "refrigerant", path),
                        "kg": _numbers(df, "kg", path)})
    out["equipment"] = df["equipment"].fillna("").astype(str) if "equipment" in df else ""
    gwp = []
    for i, r in enumerate(out["refrigerant"]):
        g = refrigerant_gwp100(r)
        if g is None:
            raise DataError(path, f"unknown refrigerant {cell(r)}: give a single gas (e.g. HFC-134a, R-32) or a blend "
                                  "of coolshift.reports.scope1.REFRIGERANT_BLENDS (R-410A, R-407C, R-404A, R-513A, R-454B)",
                            "refrigerant", i + 2)
        gwp.append(g)
    out["gwp100"] = gwp
    out["kgco2e"] = out["kg"] * out["gwp100"]
    return out


_SERIAL = re.compile(r"^(.*?)(\d+)$")


def _serial_span(start: str, end: str) -> tuple[str, int, int] | None:
    """(prefix, first, last) when both serials are one prefix followed by a number; else None."""
    a, b = _SERIAL.match(start), _SERIAL.match(end)
    if not a or not b or a.group(1) != b.group(1):
        return None
    return a.group(1), int(a.group(2)), int(b.group(2))


def read_offsets(path: Path) -> pd.DataFrame:
    """Retired offset credits: ``registry, project_id, serial_start, serial_end, quantity_tco2e, vintage,
    retirement_date[, beneficiary]``. A serial range must hold ``quantity_tco2e`` credits and may not
    overlap another row's range in the same registry."""
    cols = ("registry", "project_id", "serial_start", "serial_end", "quantity_tco2e", "vintage", "retirement_date")
    df = _read(path, cols)
    out = pd.DataFrame({c: _required_text(df, c, path) for c in ("registry", "project_id", "serial_start", "serial_end")})
    q = _numbers(df, "quantity_tco2e", path, minimum=1.0)
    for i, v in enumerate(q):
        if v != int(v):
            raise DataError(path, "a whole number of credits (1 credit = 1 tCO2e) is required", "quantity_tco2e", i + 2)
    out["quantity_tco2e"] = q.astype(int)
    vint = _numbers(df, "vintage", path, minimum=1990.0)
    out["vintage"] = vint.astype(int)
    out["retirement_date"] = _dates(df, "retirement_date", path)
    out["beneficiary"] = df["beneficiary"].fillna("").astype(str) if "beneficiary" in df else ""
    spans: dict[tuple[str, str], list[tuple[int, int, int]]] = {}
    for i, r in enumerate(out.itertuples()):
        span = _serial_span(r.serial_start, r.serial_end)
        if span is None:
            if r.serial_start != r.serial_end or r.quantity_tco2e != 1:
                raise DataError(path, "serial_start and serial_end must share a prefix and end in a number "
                                      "(e.g. VCS-123-1001 .. VCS-123-1500)", "serial_end", i + 2)
            span = (r.serial_start, 0, 0)
        prefix, first, last = span
        if last < first:
            raise DataError(path, "serial_end comes before serial_start", "serial_end", i + 2)
        if last - first + 1 != r.quantity_tco2e:
            raise DataError(path, f"the serial range holds {last - first + 1:,d} credits but quantity_tco2e is "
                                  f"{r.quantity_tco2e:,d}", "quantity_tco2e", i + 2)
        key = (r.registry.upper(), prefix)
        for j, a, b in spans.get(key, []):
            if first <= b and a <= last:
                raise DataError(path, f"serial range overlaps row {j} (a credit can be retired once)", "serial_start", i + 2)
        spans.setdefault(key, []).append((i + 2, first, last))
    return out


def read_inventory(path: Path, models: dict, pools: list[str] | None = None) -> pd.DataFrame:
    """Hardware inventory, one row per unit: ``serial, model, purchase_date[, pool]``."""
    df = _read(path, ("serial", "model", "purchase_date"))
    out = pd.DataFrame({"serial": _required_text(df, "serial", path), "model": _required_text(df, "model", path),
                        "purchase_date": _dates(df, "purchase_date", path)})
    out["pool"] = df["pool"].fillna("").astype(str).str.strip() if "pool" in df else ""
    dup = out["serial"].duplicated()
    if dup.any():
        raise DataError(path, "serial listed twice (one row per unit)", "serial", int(np.flatnonzero(dup.to_numpy())[0]) + 2)
    for i, m in enumerate(out["model"]):
        if m not in models:
            raise DataError(path, f"model {cell(m)} has no footprint figures: add it under reporting.hardware_models "
                                  f"(manufacturing_kgco2e with source, or a preset of {sorted(PCF_PRESETS)})", "model", i + 2)
    if pools is not None:
        for i, p in enumerate(out["pool"]):
            if p and p not in pools:
                raise DataError(path, f"pool {cell(p)} is not a server pool of the site ({len(pools)} pools)", "pool", i + 2)
    return out


def read_ewaste(path: Path, models: dict) -> pd.DataFrame:
    """E-waste register of retired hardware: ``date, serial, model, route[, mass_kg, handler]``;
    route is reuse, refurbish or recycle; the mass defaults to the model's ``mass_kg``."""
    df = _read(path, ("date", "serial", "model", "route"))
    out = pd.DataFrame({"date": _dates(df, "date", path), "serial": _required_text(df, "serial", path),
                        "model": _required_text(df, "model", path),
                        "route": _required_text(df, "route", path).str.lower()})
    out["handler"] = df["handler"].fillna("").astype(str) if "handler" in df else ""
    mass = _numbers(df, "mass_kg", path, minimum=0.0, required=False) if "mass_kg" in df else pd.Series(np.nan, index=df.index)
    for i, r in enumerate(out["route"]):
        if r not in EWASTE_ROUTES:
            raise DataError(path, f"route {cell(r)}: one of {list(EWASTE_ROUTES)}", "route", i + 2)
    filled = []
    for i, (m, kg) in enumerate(zip(out["model"], mass)):
        if np.isnan(kg):
            hm = models.get(m)
            if hm is None or hm.mass_kg is None:
                raise DataError(path, "mass_kg is empty and the model has no mass_kg under reporting.hardware_models",
                                "mass_kg", i + 2)
            kg = hm.mass_kg
        filled.append(float(kg))
    out["mass_kg"] = filled
    dup = out["serial"].duplicated()
    if dup.any():
        raise DataError(path, "serial listed twice (a unit is retired once)", "serial", int(np.flatnonzero(dup.to_numpy())[0]) + 2)
    return out
