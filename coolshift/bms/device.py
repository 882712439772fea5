"""What every protocol adapter returns and raises (the adapters themselves: :mod:`.adapters`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .points import Point

__all__ = ["PointState", "DeviceError", "DeviceTimeout", "Adapter", "values_match"]


class DeviceError(RuntimeError):
    """The device answered with an error, or the connection failed."""


class DeviceTimeout(DeviceError):
    """The device did not answer within the configured timeout."""


@dataclass(frozen=True)
class PointState:
    """A point as read from the device.

    ``value`` is what the device uses now (BACnet present-value, the decoded
    register). ``commanded`` is the value held at *our* priority slot (BACnet) or in
    the setpoint register while the point is in remote mode (Modbus); ``None`` means
    we do not command the point and local control (or a higher priority) rules.
    """

    value: float
    commanded: float | None
    detail: str = ""
    overridden_by: int | None = None  # a higher (more important) priority slot is in use


class Adapter(Protocol):
    async def __aenter__(self) -> "Adapter": ...
    async def __aexit__(self, *exc: object) -> None: ...
    # ``deadline`` (time.monotonic()): no request of the call may run past it (DeviceTimeout)
    async def read_state(self, point: "Point", deadline: float | None = None) -> PointState: ...
    async def read_value(self, point: "Point", deadline: float | None = None) -> float: ...
    async def write(self, point: "Point", value: float, deadline: float | None = None) -> None: ...
    async def release(self, point: "Point", deadline: float | None = None) -> None: ...
    def encoded(self, point: "Point", value: float) -> float: ...
    def priority(self, point: "Point") -> int | None: ...


def values_match(a: float | None, b: float | None) -> bool:
    """Equal as the device stores them (float32 carries ~7 significant digits)."""
    if a is None or b is None:
        return a is b
    return abs(a - b) <= 1e-5 * max(1.0, abs(a), abs(b))
