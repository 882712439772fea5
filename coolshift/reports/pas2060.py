"""A PAS 2060:2014 carbon-neutrality statement for a period (ISO 14068-1:2023 is its successor).

The subject's footprint is quantified (Scope 1, Scope 2 market-based, the edge sites and network
of offloaded work, and the Scope 3 categories the operator gives); the carbon management plan
lists the targets and the measures Coolshift enacted with their measured reductions; the residual
is covered by retired credits (1 credit = 1 tCO2e) given as records with registry, serial range
and retirement date. Only credits retired from the period's start to 12 months after its end are
counted (PAS 2060 lets offsetting for a period be completed within 12 months of its end). The
period is declared carbon neutral only when every requirement holds (a simulated period never is); otherwise ``neutral`` is
false and the shortfall in credits is stated.
"""

from __future__ import annotations

import math

import pandas as pd

__all__ = ["RETIREMENT_WINDOW_MONTHS", "credits_needed", "count_offsets", "pas2060_statement"]

RETIREMENT_WINDOW_MONTHS = 12  # PAS 2060:2014, offsetting completed within 12 months of the period's end


def credits_needed(residual_tco2e: float) -> int:
    """Whole credits that cover ``residual_tco2e`` (rounded up)."""
    return max(0, math.ceil(residual_tco2e - 1e-9))


def count_offsets(offsets: pd.DataFrame | None, start: pd.Timestamp, end: pd.Timestamp) -> list[dict]:
    """Each offset record with ``counted`` (retired in the window) and the reason when not."""
    if offsets is None:
        return []
    last = end + pd.DateOffset(months=RETIREMENT_WINDOW_MONTHS)
    rows = []
    for r in offsets.itertuples():
        ok = start <= r.retirement_date <= last
        reason = "" if ok else ("retired before the period" if r.retirement_date < start else
                                f"retired more than {RETIREMENT_WINDOW_MONTHS} months after the period")
        rows.append({"registry": r.registry, "project_id": r.project_id, "serial_start": r.serial_start,
                     "serial_end": r.serial_end, "quantity_tco2e": int(r.quantity_tco2e), "vintage": int(r.vintage),
                     "retirement_date": r.retirement_date.date().isoformat(), "beneficiary": r.beneficiary,
                     "counted": bool(ok), "reason": reason})
    return rows


def pas2060_statement(*, site: str, start: pd.Timestamp, end: pd.Timestamp, scope1_tco2e: float, scope2_market_tco2: float,
                      scope2_location_tco2: float, edge_tco2: float, scope3: list, targets: list[dict], measures: list[dict],
                      offsets: pd.DataFrame | None, offset_standard: str | None, simulated: bool = False) -> dict:
    """The statement (JSON-able): footprint, plan, offsets, ``neutral`` and ``shortfall_tco2e``."""
    s3 = [{"category": i.category, "tco2e": i.tco2e, "source": i.source} for i in scope3]
    s3_t = sum(i["tco2e"] for i in s3)
    total = scope1_tco2e + scope2_market_tco2 + edge_tco2 + s3_t
    need = credits_needed(total)
    records = count_offsets(offsets, start, end)
    retired = sum(r["quantity_tco2e"] for r in records if r["counted"])
    shortfall = max(0, need - retired)
    registries = sorted({r["registry"] for r in records if r["counted"]})
    reqs = [
        {"requirement": "footprint quantified (Scope 1, 2 and the Scope 3 given)", "met": True},
        {"requirement": "footprint from metered data (a simulated period is a plan, not a claim)", "met": not simulated},
        {"requirement": "carbon management plan with reduction targets", "met": bool(targets)},
        {"requirement": "retired credits cover the residual", "met": shortfall == 0},
        {"requirement": "credits retired on a registry (records with serial ranges)", "met": need == 0 or bool(registries)},
    ]
    neutral = all(r["met"] for r in reqs)
    period = f"{start.date().isoformat()} to {(end - pd.Timedelta(seconds=1)).date().isoformat()}"
    if neutral:
        text = (f"Declaration of achievement (PAS 2060:2014): {site} is carbon neutral for {period}: a footprint of "
                f"{total:,.1f} tCO2e (Scope 1 {scope1_tco2e:,.1f}, Scope 2 market-based {scope2_market_tco2:,.1f}, "
                f"edge and network {edge_tco2:,.1f}, Scope 3 {s3_t:,.1f}) reduced under the carbon management plan and "
                f"offset by {retired:,d} retired credits ({', '.join(registries) or 'none needed'}).")
    else:
        missing = "; ".join(r["requirement"] for r in reqs if not r["met"])
        text = (f"Not carbon neutral for {period}: the footprint is {total:,.1f} tCO2e ({need:,d} credits needed), "
                f"{retired:,d} retired credits count for the period, a shortfall of {shortfall:,d} tCO2e. "
                f"Requirements not met: {missing}.")
    return {
        "standard": "PAS 2060:2014 (successor ISO 14068-1:2023)", "subject": site, "period": period,
        "footprint": {"scope1_tco2e": scope1_tco2e, "scope2_market_tco2": scope2_market_tco2,
                      "scope2_location_tco2": scope2_location_tco2, "edge_and_network_tco2": edge_tco2,
                      "scope3": s3, "scope3_tco2e": s3_t, "total_tco2e": total},
        "carbon_management_plan": {"targets": targets, "measures": measures},
        "offsets": records, "offset_standard": (offset_standard or "not stated"),
        "credits_needed": need, "credits_retired": retired, "shortfall_tco2e": shortfall,
        "requirements": reqs, "neutral": neutral, "statement": text,
    }
