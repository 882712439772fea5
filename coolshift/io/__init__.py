"""Data I/O at the edge: one reader per real format, all returning canonical frames.

Every frame has a tz-aware UTC ``DatetimeIndex`` named ``timestamp`` and the unit in
each column name. Bad input raises :class:`DataError` naming the file, column and row.
"""

from coolshift.io.atomic import write_frame_atomic, write_json_atomic, write_text_atomic
from coolshift.io.carbon import read_carbon, read_carbon_forecast
from coolshift.io.checks import DataError, GapPolicy
from coolshift.io.site_data import load_site_data, to_step
from coolshift.io.telemetry import read_telemetry
from coolshift.io.weather import read_weather
from coolshift.io.workload import demand_per_class, read_workload

__all__ = [
    "DataError", "GapPolicy", "load_site_data", "to_step", "read_carbon", "read_carbon_forecast",
    "read_weather", "read_workload", "read_telemetry", "demand_per_class",
    "write_frame_atomic", "write_json_atomic", "write_text_atomic",
]
