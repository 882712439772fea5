"""ISO 50001:2018 energy review (significant energy uses, energy performance indicators) and
the ISO 14001:2015 registers (objectives, clause 6.2; corrective actions, clause 10.2).

SEUs: the site's energy split by use (IT, cooling, the rest); a use is significant when
its share of facility energy reaches the operator's threshold (ISO 50001 clause 6.3 leaves the
criteria to the organisation). EnPIs (ISO 50006:2023): PUE, cooling energy per IT energy, WUE
and carbon per IT energy.
"""

from __future__ import annotations

import pandas as pd

__all__ = ["energy_uses", "enpis", "register_rows"]

def energy_uses(facility_kwh: float, it_kwh: float, cooling_kwh: float | None, threshold_pct: float) -> list[dict]:
    """Energy [kWh] and share [%] of facility energy per use, each flagged significant at ``threshold_pct``;
    the remainder of facility energy is power losses, lighting and offices."""
    uses = [("IT equipment", it_kwh)]
    if cooling_kwh is not None:
        uses.append(("cooling", cooling_kwh))
    uses.append(("other (power losses, lighting, offices)", facility_kwh - sum(k for _, k in uses)))
    return [{"use": n, "kwh": k, "share_pct": 100.0 * k / facility_kwh if facility_kwh > 0 else None,
             "significant": bool(facility_kwh > 0 and 100.0 * k / facility_kwh >= threshold_pct)} for n, k in uses]


def enpis(facility_kwh: float, it_kwh: float, cooling_kwh: float | None, water_l: float | None, kgco2_location: float) -> list[dict]:
    """Energy performance indicators of the period."""
    def ratio(a, b):
        return None if a is None or not b else a / b

    return [
        {"enpi": "PUE", "value": ratio(facility_kwh, it_kwh), "unit": "-", "definition": "facility / IT energy"},
        {"enpi": "cooling energy per IT energy", "value": ratio(cooling_kwh, it_kwh), "unit": "kWh/kWh",
         "definition": "cooling / IT energy"},
        {"enpi": "WUE", "value": ratio(water_l, it_kwh), "unit": "L/kWh", "definition": "site water / IT energy"},
        {"enpi": "carbon per IT energy", "value": ratio(kgco2_location * 1000.0, it_kwh), "unit": "gCO2/kWh IT",
         "definition": "location-based Scope 2 / IT energy"},
    ]


def register_rows(items, as_of: pd.Timestamp) -> list[dict]:
    """Register items as rows, each open item past its due date flagged overdue at ``as_of``."""
    out = []
    for it in items:
        overdue = bool(it.due is not None and it.status in ("open", "in progress") and pd.Timestamp(it.due, tz="UTC") < as_of)
        out.append({"id": it.id, "title": it.title, "owner": it.owner, "due": None if it.due is None else it.due.isoformat(),
                    "status": it.status, "overdue": overdue, "note": it.note})
    return out
