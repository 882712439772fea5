"""Open the protocol adapter a point map names (BACnet/IP or Modbus TCP)."""

from __future__ import annotations

from .bacnet import BacnetAdapter
from .device import Adapter
from .modbus import ModbusAdapter
from .points import PointMap

__all__ = ["open_adapter"]


def open_adapter(pm: PointMap) -> Adapter:
    """The adapter for the point map's protocol (not yet connected: use ``async with``)."""
    if pm.protocol == "bacnet":
        return BacnetAdapter(pm.connection)  # type: ignore[arg-type]
    return ModbusAdapter(pm.connection)  # type: ignore[arg-type]
