"""Canonical column names and units shared by readers, simulator, models and optimiser.

Every time series is a pandas object on a tz-aware UTC ``DatetimeIndex`` named
``timestamp``; the unit is in the column name. Per-zone / per-pool columns append
``__<name>`` (two underscores), e.g. ``inlet_temp_c__hall_a``.
"""

from __future__ import annotations

SEP = "__"

# carbon intensity
CARBON_GCO2_PER_KWH = "gco2_per_kwh"
# weather
TEMP_C = "temp_c"
RH_PCT = "rh_pct"
WETBULB_C = "wetbulb_c"
# workload: the trace, then demand per class in work units per hour
CPU_UTIL = "cpu_util"
DEMAND_SUFFIX = "_units_per_h"  # column "<class>_units_per_h"

# Facility telemetry (the simulator's export and an operator's own CSV; see README).
TELEMETRY_REQUIRED = (
    "it_power_kw",        # total IT (UPS output) power
    "cooling_power_kw",   # chillers + CRAH fans + pumps + tower fans
    "facility_power_kw",  # utility meter: everything
    "outside_temp_c",
    "outside_rh_pct",
    "chw_setpoint_c",     # chilled-water supply setpoint
)
TELEMETRY_PER_ZONE = (
    "supply_setpoint_c",  # CRAH supply-air setpoint
    "inlet_temp_c",       # hottest rack inlet in the zone (sensor)
    "zone_it_power_kw",
)
TELEMETRY_PER_POOL = ("active_servers",)


def col(quantity: str, name: str) -> str:
    """Column for a per-zone or per-pool quantity: ``col('inlet_temp_c', 'hall_a')``."""
    return f"{quantity}{SEP}{name}"


def demand_col(workload_class: str) -> str:
    return f"{workload_class}{DEMAND_SUFFIX}"
