"""The supervisor's side of the controller's watchdog: write the heartbeat point.

A controller configured with a watchdog (``heartbeat`` in the point map, docs/bms.md
"Watchdog") takes local control back when the heartbeat point has not changed for its
timeout, so a Coolshift process that dies (``kill -9``, a lost host, a cut network) hands
the plant back without anyone running ``coolshift release``. Whoever commands points
(``run-plan --apply``, a supervisory loop) calls :func:`write_heartbeat` before its writes
and at least every ``heartbeat.write_interval_s``.

The value is a counter: read, add one, write back (modulo 2**15, so it fits an int16, a
uint16 and a float32 exactly). Reading first keeps it changing even across restarts of
the supervisor, which a counter kept in memory would not guarantee.
"""

from __future__ import annotations

from .bacnet import BacnetAdapter
from .device import Adapter
from .modbus import ModbusAdapter
from .points import BacnetPoint, ModbusPoint, Point, PointMap

__all__ = ["COUNTER_MOD", "heartbeat_point", "write_heartbeat", "read_heartbeat"]

COUNTER_MOD = 1 << 15  # exact in int16, uint16 and float32 (24-bit mantissa)


def heartbeat_point(pm: PointMap) -> Point | None:
    """The heartbeat as a (read-only, so never a plan target) point of the map's protocol, or None."""
    hb = pm.heartbeat
    if hb is None:
        return None
    if pm.protocol == "modbus":
        return Point(name="heartbeat", variable="heartbeat", unit="count", writable=False,
                     modbus=ModbusPoint(address=hb.holding, datatype="uint16"))
    return Point(name="heartbeat", variable="heartbeat", unit="count", writable=False,
                 bacnet=BacnetPoint(object=hb.object, priority=hb.priority))


async def read_heartbeat(adapter: Adapter, pm: PointMap, deadline: float | None = None) -> int | None:
    """The heartbeat counter as the device holds it (None if the map has no heartbeat)."""
    p = heartbeat_point(pm)
    if p is None:
        return None
    return int(round(await adapter.read_value(p, deadline)))


async def write_heartbeat(adapter: Adapter, pm: PointMap, deadline: float | None = None) -> int | None:
    """Increment the controller's heartbeat point; returns the value written (None: no heartbeat configured).

    Raises :class:`~coolshift.bms.device.DeviceError` when the device does not take it;
    the caller logs it and carries on: a watchdog that trips is the safe outcome.
    """
    p = heartbeat_point(pm)
    if p is None:
        return None
    value = (int(round(await adapter.read_value(p, deadline))) + 1) % COUNTER_MOD
    if isinstance(adapter, ModbusAdapter):
        # a plain holding register: no mode register to set (ModbusAdapter.write sets one)
        await adapter._call(f"write heartbeat (register {pm.heartbeat.holding})", "write_register",
                            pm.heartbeat.holding, value, deadline=deadline)
    elif isinstance(adapter, BacnetAdapter):
        await adapter.write(p, float(value), deadline)  # present-value at the heartbeat's priority
    else:  # another Adapter implementation: its write() is expected to handle a read-only point
        await adapter.write(p, float(value), deadline)
    return value
