"""BACnet/IP adapter (bacpypes3): write present-value at a priority, read back, relinquish.

Coolshift talks to one device at a directed address (no broadcast discovery) from
its own application bound to ``local_address``. A write goes into the object's
16-slot priority array at the point's priority (never 1-2, see ``points.py``);
relinquishing writes ``Null`` at that same priority, so the value falls back to a
lower occupied slot or to ``relinquish-default``: the BMS's own control.
"""

from __future__ import annotations

import asyncio
import struct
import time
from typing import Any

from .device import DeviceError, DeviceTimeout, PointState
from .points import BacnetConnection, Point

__all__ = ["BacnetAdapter", "make_application", "float32"]


def float32(x: float) -> float:
    """The value as a BACnet REAL (IEEE 754 single) stores it."""
    return struct.unpack("<f", struct.pack("<f", float(x)))[0]


def make_application(local_address: str, device_instance: int, name: str, objects: list[Any] = ()):  # type: ignore[assignment]
    """A bacpypes3 application bound to ``local_address`` ('127.0.0.1/8:47808') with ``objects``."""
    from bacpypes3.app import Application
    from bacpypes3.local.device import DeviceObject
    from bacpypes3.local.networkport import NetworkPortObject

    device = DeviceObject(
        objectIdentifier=("device", device_instance),
        objectName=name,
        # 999 is not a registered BACnet vendor; ASHRAE assigns real ids.
        vendorIdentifier=999,
    )
    port = NetworkPortObject(local_address, objectIdentifier=("network-port", 1), objectName="NetworkPort-1")
    return Application.from_object_list([device, port, *objects])


class BacnetAdapter:
    """Async context manager; every request is bounded by ``timeout_s``."""

    def __init__(self, conn: BacnetConnection):
        self.conn = conn
        self.app = None

    async def __aenter__(self) -> "BacnetAdapter":
        try:
            self.app = make_application(self.conn.local_address, self.conn.local_device_instance, "coolshift")
        except OSError as exc:
            raise DeviceError(f"cannot bind BACnet client to {self.conn.local_address}: {exc}") from None
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.app is not None:
            self.app.close()
            self.app = None

    async def _call(self, what: str, coro: Any, deadline: float | None = None) -> Any:
        """Await one request, bounded by ``timeout_s`` and by ``deadline`` (monotonic) if given."""
        from bacpypes3.apdu import ErrorRejectAbortNack

        timeout = self.conn.timeout_s
        if deadline is not None:
            timeout = min(timeout, deadline - time.monotonic())
            if timeout <= 0:
                coro.close()  # never started: do not leave an un-awaited coroutine behind
                raise DeviceTimeout(f"{what}: not sent: its time ran out")
        try:
            result = await asyncio.wait_for(coro, timeout)
        except (asyncio.TimeoutError, TimeoutError):
            raise DeviceTimeout(
                f"{what}: no answer from {self.conn.device_address} within {timeout:.3g} s"
            ) from None
        except ErrorRejectAbortNack as exc:  # a BaseException in bacpypes3
            raise DeviceError(f"{what}: device {self.conn.device_address} answered {exc}") from None
        except (OSError, ValueError, TypeError) as exc:
            raise DeviceError(f"{what}: {exc}") from None
        if isinstance(result, ErrorRejectAbortNack):  # some paths return the error instead of raising
            raise DeviceError(f"{what}: device {self.conn.device_address} answered {result}")
        return result

    async def _read(self, point: Point, prop: str, deadline: float | None = None) -> Any:
        assert self.app is not None and point.bacnet is not None
        return await self._call(
            f"read {point.name} ({point.bacnet.object} {prop})",
            self.app.read_property(self.conn.device_address, point.bacnet.object, prop),
            deadline,
        )

    async def read_value(self, point: Point, deadline: float | None = None) -> float:
        v = await self._read(point, "present-value", deadline)
        try:
            return float(v)
        except (TypeError, ValueError):
            raise DeviceError(f"read {point.name}: present-value {v!r} is not a number") from None

    async def read_state(self, point: Point, deadline: float | None = None) -> PointState:
        assert point.bacnet is not None
        value = await self.read_value(point, deadline)
        if point.bacnet.object_type == "analog-input":
            return PointState(value=value, commanded=None, detail="telemetry")
        slots = await self._read(point, "priority-array", deadline)
        if slots is None or not hasattr(slots, "__len__") or len(slots) != 16:
            raise DeviceError(
                f"read {point.name}: {point.bacnet.object} has no 16-slot priority array (not commandable)"
            )
        occupied = {}
        for i, pv in enumerate(slots, start=1):
            choice = getattr(pv, "_choice", None)
            if choice != "null":
                try:
                    occupied[i] = float(getattr(pv, choice))
                except (TypeError, ValueError, AttributeError):
                    raise DeviceError(f"read {point.name}: priority {i} holds {pv!r}, not a number") from None
        rd = await self._read(point, "relinquish-default", deadline)
        mine = occupied.get(point.bacnet.priority)
        higher = {p: v for p, v in occupied.items() if p < point.bacnet.priority}
        parts = [f"p{p}={v:g}" for p, v in sorted(occupied.items())] or ["no priority set"]
        parts.append(f"default {float(rd):g}")
        if higher:
            parts.append(f"overridden at priority {min(higher)}")
        return PointState(value=value, commanded=mine, detail=", ".join(parts),
                          overridden_by=min(higher) if higher else None)

    async def write(self, point: Point, value: float, deadline: float | None = None) -> None:
        assert self.app is not None and point.bacnet is not None
        await self._call(
            f"write {point.name} ({point.bacnet.object} @{point.bacnet.priority})",
            self.app.write_property(
                self.conn.device_address,
                point.bacnet.object,
                "present-value",
                float(value),
                priority=point.bacnet.priority,
            ),
            deadline,
        )

    async def release(self, point: Point, deadline: float | None = None) -> None:
        from bacpypes3.primitivedata import Null

        assert self.app is not None and point.bacnet is not None
        await self._call(
            f"relinquish {point.name} ({point.bacnet.object} @{point.bacnet.priority})",
            self.app.write_property(
                self.conn.device_address, point.bacnet.object, "present-value", Null(()), priority=point.bacnet.priority
            ),
            deadline,
        )

    def encoded(self, point: Point, value: float) -> float:
        return float32(value)

    def priority(self, point: Point) -> int | None:
        return point.bacnet.priority if point.bacnet and point.writable else None
