"""Period carbon accounting for reports: footprint, reductions, Scope 2, PUE/WUE, offsets.

Pure functions over per-step frames, built on the step-level functions of
:mod:`coolshift.accounting` (location kgCO2, hourly-matched market kgCO2, PPA profile, WUE).
A *step frame* has a UTC ``DatetimeIndex`` and at least ``it_power_kw`` and
``facility_power_kw`` (step averages, kW) and ``gco2_per_kwh`` (grid intensity, gCO2/kWh);
optional ``water_l`` (litres in the step), ``ppa_kw`` (contracted renewable supply, kW),
``cooling_power_kw``, ``edge_facility_kw__<site>``/``network_kw`` with ``kgco2_edge``.

Units: energy kWh, emissions kgCO2 (tCO2 in summaries), factors gCO2/kWh.

References
----------
- GHG Protocol Scope 2 Guidance (WRI/WBCSD, 2015): location-based = grid-average factors;
  market-based = contractual instruments first (ch. 6, Scope 2 Quality Criteria; instruments
  from the same reporting period and market), residual mix for the rest, grid average when no
  residual mix is available (Table 6.3, last in the hierarchy, with a disclosure).
- The Green Grid WP #49 (2012) PUE = total facility energy / IT energy, over the period;
  WP #35 (2011) WUE = site water [L] / IT energy [kWh].
- PAS 2060:2014 (BSI), carbon neutrality: quantify, reduce, offset the residual with credits
  of a stated standard (ISO 14068-1:2023 is its successor); credits are whole tonnes CO2e.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from coolshift import accounting

__all__ = [
    "step_hours", "emissions_kg", "average_factor_gco2_per_kwh", "weighted_factor_gco2_per_kwh",
    "footprint", "ReductionSplit", "reduction_split", "claimed_share", "scope2",
    "pue", "monthly_table", "offsets_needed_t", "neutrality_statement", "estimated_hours",
    "account_steps", "REQUIRED_COLUMNS",
]

REQUIRED_COLUMNS = ("it_power_kw", "facility_power_kw", "gco2_per_kwh")


def step_hours(index: pd.DatetimeIndex) -> np.ndarray:
    """Length of each step [h]: the gap to the next stamp; the last step repeats the most common gap."""
    if len(index) == 0:
        return np.zeros(0)
    if len(index) == 1:
        raise ValueError("a single timestamp has no step length; give at least two steps")
    d = np.asarray((index[1:] - index[:-1]) / pd.Timedelta(hours=1), dtype=float)
    if (d <= 0).any():
        raise ValueError("timestamps must be strictly increasing")
    mode = pd.Series(d).mode().iloc[0]
    return np.append(d, mode)


def emissions_kg(energy_kwh, gco2_per_kwh) -> np.ndarray:
    """kgCO2 = kWh x gCO2/kWh / 1000 (element-wise; built on :func:`accounting.location_kgco2`)."""
    return accounting.location_kgco2(energy_kwh, gco2_per_kwh)


def average_factor_gco2_per_kwh(gco2_per_kwh, step_h) -> float:
    """Time-weighted mean grid factor over the period [gCO2/kWh].

    Over a calendar year this is the 'annual average' factor that inventories without
    hourly data use (an approximation of the generation-weighted annual factor, which
    needs generation volumes).
    """
    g, h = np.asarray(gco2_per_kwh, float), np.asarray(step_h, float)
    return float((g * h).sum() / h.sum())


def weighted_factor_gco2_per_kwh(energy_kwh, gco2_per_kwh) -> float:
    """Energy-weighted factor [gCO2/kWh]: emissions / energy, the factor a load profile 'sees'."""
    e = np.asarray(energy_kwh, float)
    total = e.sum()
    return float((e * np.asarray(gco2_per_kwh, float)).sum() / total) if total > 0 else float("nan")


def footprint(energy_kwh, gco2_per_kwh, step_h) -> dict:
    """Footprint with hourly factors and, beside it, with the period-average factor.

    ``difference_kg`` = hourly - average: positive when the load runs in dirtier-than-average
    hours, negative when it runs in cleaner ones (what an annual factor cannot show).
    """
    e = np.asarray(energy_kwh, float)
    hourly = float(emissions_kg(e, gco2_per_kwh).sum())
    avg_f = average_factor_gco2_per_kwh(gco2_per_kwh, step_h)
    flat = float(e.sum() * avg_f / 1000.0)
    return {
        "energy_kwh": float(e.sum()),
        "kgco2_hourly_factors": hourly,
        "average_factor_gco2_per_kwh": avg_f,
        "weighted_factor_gco2_per_kwh": weighted_factor_gco2_per_kwh(e, gco2_per_kwh),
        "kgco2_average_factor": flat,
        "difference_kg": hourly - flat,
        "difference_pct": 100.0 * (hourly - flat) / flat if flat > 0 else float("nan"),
    }


@dataclass(frozen=True)
class ReductionSplit:
    """Reduction of emissions against a baseline over the same hours, split in two parts.

    ``total_kg = efficiency_kg + timing_kg`` exactly, with
    efficiency = (E_base - E_post) x f_base (less energy, valued at the baseline's own
    energy-weighted factor f_base = C_base / E_base) and timing = E_post x (f_base - f_post)
    (the energy that remains, run at a cleaner weighted factor).
    """

    baseline_kwh: float
    post_kwh: float
    baseline_kg: float
    post_kg: float
    baseline_factor_gco2_per_kwh: float
    post_factor_gco2_per_kwh: float
    total_kg: float
    efficiency_kg: float
    timing_kg: float

    @property
    def total_pct(self) -> float:
        return 100.0 * self.total_kg / self.baseline_kg if self.baseline_kg > 0 else float("nan")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["total_pct"] = self.total_pct
        return d


def reduction_split(baseline_kwh, post_kwh, gco2_per_kwh, post_gco2_per_kwh=None) -> ReductionSplit:
    """Emissions reduction (baseline - post) over the same steps, as efficiency + timing.

    ``baseline_kwh`` and ``post_kwh`` are per-step energies on the same steps;
    ``gco2_per_kwh`` the grid factor of those steps (``post_gco2_per_kwh`` only when the post
    energy sees a different factor series, e.g. market-based).
    """
    eb, ep = np.asarray(baseline_kwh, float), np.asarray(post_kwh, float)
    if eb.shape != ep.shape:
        raise ValueError(f"baseline and post must cover the same steps ({eb.shape} vs {ep.shape})")
    gb = np.asarray(gco2_per_kwh, float)
    gp = gb if post_gco2_per_kwh is None else np.asarray(post_gco2_per_kwh, float)
    cb, cp = float(emissions_kg(eb, gb).sum()), float(emissions_kg(ep, gp).sum())
    Eb, Ep = float(eb.sum()), float(ep.sum())
    fb = cb / Eb * 1000.0 if Eb > 0 else 0.0
    fp = cp / Ep * 1000.0 if Ep > 0 else 0.0
    eff = (Eb - Ep) * fb / 1000.0
    return ReductionSplit(Eb, Ep, cb, cp, fb, fp, cb - cp, eff, (cb - cp) - eff)


def claimed_share(energy_kwh, ppa_kwh, periods=None) -> np.ndarray:
    """Per step, the share of its energy covered by instruments matched within its matching period.

    ``periods`` labels each step's matching period (e.g. its calendar year; GHG Protocol Scope 2
    Quality Criteria: instruments from the same reporting year); None = one period. Within a
    period the claim min(supply, consumption) is spread pro rata over its steps.
    """
    e, p = np.asarray(energy_kwh, float), np.asarray(ppa_kwh, float)
    labels = np.zeros(len(e)) if periods is None else np.asarray(periods)
    share = np.zeros_like(e)
    for lab in np.unique(labels):
        m = labels == lab
        tot, sup = e[m].sum(), p[m].sum()
        share[m] = min(tot, sup) / tot if tot > 0 else 0.0
    return share


def scope2(energy_kwh, gco2_per_kwh, ppa_kwh=None, residual_mix_gco2_per_kwh: float | None = None, periods=None) -> dict:
    """Scope 2 location- and market-based (period-matched and hourly-matched) with renewable shares.

    ``periods``: matching period of each step (see :func:`claimed_share`); None = the whole span.
    """
    e = np.asarray(energy_kwh, float)
    ppa = np.zeros_like(e) if ppa_kwh is None else np.asarray(ppa_kwh, float)
    loc = float(emissions_kg(e, gco2_per_kwh).sum())
    share = claimed_share(e, ppa, periods)
    factor = gco2_per_kwh if residual_mix_gco2_per_kwh is None else residual_mix_gco2_per_kwh
    market_kg = float(emissions_kg(e * (1.0 - share), np.broadcast_to(np.asarray(factor, float), e.shape)).sum())
    claimed = float((e * share).sum())
    hourly_kg = float(accounting.market_kgco2(e, ppa, gco2_per_kwh, residual_mix_gco2_per_kwh).sum())
    hourly_matched = float(np.minimum(e, ppa).sum())
    total = float(e.sum())
    return {
        "energy_kwh": total,
        "location_kgco2": loc,
        "market_kgco2": market_kg,
        "market_hourly_kgco2": hourly_kg,
        "ppa_supply_kwh": float(ppa.sum()),
        "ppa_claimed_kwh": claimed,
        "ppa_surplus_kwh": float(ppa.sum()) - claimed,
        "ppa_hourly_matched_kwh": hourly_matched,
        "renewable_share": claimed / total if total > 0 else float("nan"),
        "renewable_share_hourly": hourly_matched / total if total > 0 else float("nan"),
        "residual_mix_gco2_per_kwh": residual_mix_gco2_per_kwh,
        "residual_factor_source": "residual mix (operator)" if residual_mix_gco2_per_kwh is not None
        else "grid average (no residual mix stated: GHG Protocol Scope 2 Table 6.3 fallback)",
        "matching": "whole period" if periods is None else "per calendar year",
    }


def pue(facility_kwh, it_kwh) -> float:
    """Power usage effectiveness over the period: facility energy / IT energy [-]."""
    f, i = float(np.sum(facility_kwh)), float(np.sum(it_kwh))
    return f / i if i > 0 else float("nan")


def account_steps(frame: pd.DataFrame, residual_mix_gco2_per_kwh: float | None = None) -> pd.DataFrame:
    """Per-step energies and emissions of a step frame (the table every total is summed from)."""
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"step frame lacks column(s) {missing}; has {list(frame.columns)}")
    h = step_hours(frame.index)
    out = pd.DataFrame(index=frame.index)
    out["step_h"] = h
    out["it_kwh"] = frame["it_power_kw"].to_numpy(float) * h
    out["facility_kwh"] = frame["facility_power_kw"].to_numpy(float) * h
    if "cooling_power_kw" in frame:
        out["cooling_kwh"] = frame["cooling_power_kw"].to_numpy(float) * h
    out["gco2_per_kwh"] = frame["gco2_per_kwh"].to_numpy(float)
    out["ppa_kwh"] = frame["ppa_kw"].to_numpy(float) * h if "ppa_kw" in frame else 0.0
    out["kgco2_location"] = emissions_kg(out["facility_kwh"], out["gco2_per_kwh"])
    out["kgco2_market_hourly"] = accounting.market_kgco2(out["facility_kwh"], out["ppa_kwh"], out["gco2_per_kwh"], residual_mix_gco2_per_kwh)
    share = claimed_share(out["facility_kwh"], out["ppa_kwh"], frame.index.year)
    out["ppa_claimed_kwh"] = out["facility_kwh"] * share
    factor = out["gco2_per_kwh"] if residual_mix_gco2_per_kwh is None else residual_mix_gco2_per_kwh
    out["kgco2_market"] = emissions_kg(out["facility_kwh"] * (1.0 - share), np.broadcast_to(np.asarray(factor, float), share.shape))
    if "water_l" in frame:
        out["water_l"] = frame["water_l"].to_numpy(float)
    if "kgco2_edge" in frame:
        out["kgco2_edge"] = frame["kgco2_edge"].to_numpy(float)
    return out


def monthly_table(steps: pd.DataFrame, residual_mix_gco2_per_kwh: float | None = None) -> pd.DataFrame:
    """Calendar-month (UTC) totals of :func:`account_steps`: IT/facility MWh, PUE, WUE, tCO2, factors.

    ``residual_mix_gco2_per_kwh`` is unused (the steps carry their market-based emissions) and
    kept for call compatibility.
    """
    rows = []
    for month, g in steps.groupby(steps.index.strftime("%Y-%m")):
        row = {
            "month": month,
            "it_mwh": g["it_kwh"].sum() / 1000.0,
            "facility_mwh": g["facility_kwh"].sum() / 1000.0,
            "pue": pue(g["facility_kwh"], g["it_kwh"]),
            "wue_l_per_kwh": accounting.wue_l_per_kwh(g["water_l"].sum(), g["it_kwh"].sum()) if "water_l" in g else float("nan"),
            "tco2_location": g["kgco2_location"].sum() / 1000.0,
            # the year's period-matched result allocated to its months: months add up to the year
            "tco2_market": g["kgco2_market"].sum() / 1000.0,
            "renewable_share_pct": 100.0 * g["ppa_claimed_kwh"].sum() / g["facility_kwh"].sum() if g["facility_kwh"].sum() > 0 else float("nan"),
            "average_factor_gco2_per_kwh": average_factor_gco2_per_kwh(g["gco2_per_kwh"], g["step_h"]),
            "weighted_factor_gco2_per_kwh": weighted_factor_gco2_per_kwh(g["facility_kwh"], g["gco2_per_kwh"]),
        }
        rows.append(row)
    return pd.DataFrame(rows).set_index("month")


def offsets_needed_t(residual_kgco2: float) -> int:
    """Credits to retire [whole tCO2e] to cover ``residual_kgco2``: rounded up (no part credits)."""
    if residual_kgco2 <= 0:
        return 0
    # round() first so float noise (e.g. 3000.0000001 kg) does not demand an extra credit
    return int(math.ceil(round(residual_kgco2 / 1000.0, 6)))


def neutrality_statement(measured_kgco2: float, reduction_kgco2: float | None, offset_standard: str | None,
                         basis: str = "Scope 2 market-based", period: str = "") -> dict:
    """PAS 2060-style statement (measured, reduced, offset) for the period's residual emissions."""
    credits = offsets_needed_t(measured_kgco2)
    std = offset_standard.strip() if offset_standard and offset_standard.strip() else "not stated"
    red = "not assessed (no baseline given)" if reduction_kgco2 is None else f"{reduction_kgco2 / 1000.0:,.1f} tCO2 against the baseline"
    text = (
        f"Measured: {measured_kgco2 / 1000.0:,.1f} tCO2 ({basis}){' for ' + period if period else ''}. "
        f"Reduced: {red}. Offset: {credits:,d} credits of 1 tCO2e each are needed to cover the residual "
        f"emissions; offset standard: {std}."
    )
    return {"basis": basis, "measured_tco2": measured_kgco2 / 1000.0,
            "reduction_tco2": None if reduction_kgco2 is None else reduction_kgco2 / 1000.0,
            "residual_tco2": measured_kgco2 / 1000.0, "offsets_needed_tco2e": credits,
            "offset_standard": std, "statement": text}


def estimated_hours(index: pd.DatetimeIndex, filled: list[dict] | None, columns=None) -> dict:
    """Hours whose values were estimated (gap-filled by a reader), from ``frame.attrs['filled']``.

    A step counts once however many of ``columns`` (default: all) were filled in it.
    """
    if len(index) == 0:
        return {"estimated_steps": 0, "estimated_hours": 0.0, "estimated_pct": 0.0, "fills": 0}
    h = step_hours(index)
    mask = np.zeros(len(index), bool)
    fills = [f for f in (filled or []) if columns is None or f["column"] in columns]
    for f in fills:
        i0 = index.searchsorted(pd.Timestamp(f["start"]))
        mask[i0:i0 + int(f["steps"])] = True
    return {"estimated_steps": int(mask.sum()), "estimated_hours": float(h[mask].sum()),
            "estimated_pct": 100.0 * float(h[mask].sum() / h.sum()), "fills": len(fills)}
