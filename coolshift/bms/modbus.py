"""Modbus TCP adapter (pymodbus): scaled holding registers and a local-control coil/register.

A setpoint lives in one holding register (int16/uint16) or two (float32, word order
per point); engineering value = raw * scale + offset. Each writable point names a
coil or register whose ``auto_value`` hands the point back to the device's local
control (the Modbus counterpart of a BACnet relinquish) and whose ``remote_value``
means the setpoint register is commanded by us.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from .device import DeviceError, DeviceTimeout, PointState
from .points import ModbusConnection, ModbusPoint, Point

__all__ = ["ModbusAdapter", "encode_registers", "decode_registers", "raw_range"]

_RAW_RANGE = {"int16": (-32768, 32767), "uint16": (0, 65535)}


def raw_range(mp: ModbusPoint) -> tuple[float, float]:
    """Engineering values a point can carry, from its data type, scale and offset."""
    if mp.datatype == "float32":
        return (-3.4e38, 3.4e38)
    lo, hi = _RAW_RANGE[mp.datatype]
    a, b = lo * mp.scale + mp.offset, hi * mp.scale + mp.offset
    return (min(a, b), max(a, b))


def encode_registers(mp: ModbusPoint, value: float) -> list[int]:
    """Register words for an engineering value (raises ValueError if it does not fit)."""
    from pymodbus.client.mixin import ModbusClientMixin as M

    raw = (float(value) - mp.offset) / mp.scale
    if mp.datatype == "float32":
        return M.convert_to_registers(raw, M.DATATYPE.FLOAT32, word_order=mp.word_order)
    lo, hi = _RAW_RANGE[mp.datatype]
    r = int(round(raw))
    if not lo <= r <= hi:
        raise ValueError(f"{value} needs raw {r}, outside {mp.datatype} range {lo}..{hi}")
    return [r & 0xFFFF]


def decode_registers(mp: ModbusPoint, words: list[int]) -> float:
    from pymodbus.client.mixin import ModbusClientMixin as M

    if mp.datatype == "float32":
        raw = float(M.convert_from_registers(list(words), M.DATATYPE.FLOAT32, word_order=mp.word_order))
    elif mp.datatype == "int16":
        w = int(words[0])
        raw = float(w - 0x10000 if w >= 0x8000 else w)
    else:
        raw = float(words[0])
    return raw * mp.scale + mp.offset


class ModbusAdapter:
    """Async context manager around one pymodbus TCP client; reconnects after a failure."""

    def __init__(self, conn: ModbusConnection):
        self.conn = conn
        self.client = None
        # pymodbus logs every failed request at ERROR with a hex dump; we raise instead.
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

    async def __aenter__(self) -> "ModbusAdapter":
        await self._connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def _timeout(self, what: str, deadline: float | None, factor: float = 1.0) -> float:
        """Seconds this request may take: the configured timeout, cut to ``deadline`` (monotonic)."""
        t = self.conn.timeout_s * factor
        if deadline is not None:
            t = min(t, deadline - time.monotonic())
            if t <= 0:
                raise DeviceTimeout(f"{what}: not sent: its time ran out")
        return t

    async def _connect(self, deadline: float | None = None) -> None:
        from pymodbus.client import AsyncModbusTcpClient

        if self.client is not None:
            self.client.close()
        timeout = self._timeout(f"connect to {self.conn.host}:{self.conn.port}", deadline)
        self.client = AsyncModbusTcpClient(
            self.conn.host, port=self.conn.port, timeout=self.conn.timeout_s, retries=0, reconnect_delay=0
        )
        try:
            ok = await asyncio.wait_for(self.client.connect(), timeout)
        except (asyncio.TimeoutError, TimeoutError, OSError):
            ok = False
        if not ok:
            self.client.close()
            self.client = None
            raise DeviceTimeout(f"cannot connect to Modbus device {self.conn.host}:{self.conn.port}")

    async def _call(self, what: str, fn: str, *args: Any, deadline: float | None = None, **kw: Any) -> Any:
        from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

        if self.client is None or not self.client.connected:
            await self._connect(deadline)
        assert self.client is not None
        timeout = self._timeout(what, deadline, 1.5)
        try:
            rr = await asyncio.wait_for(
                getattr(self.client, fn)(*args, device_id=self.conn.device_id, **kw), timeout
            )
        except (asyncio.TimeoutError, TimeoutError, ModbusIOException, ConnectionException) as exc:
            self.client.close()  # a late answer must not be read as the next one's
            self.client = None
            raise DeviceTimeout(
                f"{what}: no answer from {self.conn.host}:{self.conn.port} within {self.conn.timeout_s:g} s"
                f" ({type(exc).__name__})"
            ) from None
        except (ModbusException, OSError) as exc:
            raise DeviceError(f"{what}: {exc}") from None
        if rr.isError():
            code = getattr(rr, "exception_code", "?")
            raise DeviceError(f"{what}: device answered Modbus exception code {code}")
        return rr

    async def read_value(self, point: Point, deadline: float | None = None) -> float:
        mp = point.modbus
        assert mp is not None
        fn = "read_holding_registers" if mp.table == "holding" else "read_input_registers"
        rr = await self._call(f"read {point.name} (register {mp.address})", fn, mp.address, count=mp.n_registers,
                              deadline=deadline)
        return decode_registers(mp, rr.registers[: mp.n_registers])

    async def _read_mode(self, point: Point, deadline: float | None = None) -> int:
        rel = point.modbus.release  # type: ignore[union-attr]
        assert rel is not None
        if rel.coil is not None:
            rr = await self._call(f"read {point.name} mode (coil {rel.coil})", "read_coils", rel.coil, count=1,
                                  deadline=deadline)
            return int(bool(rr.bits[0]))
        rr = await self._call(f"read {point.name} mode (register {rel.holding})", "read_holding_registers",
                              rel.holding, count=1, deadline=deadline)
        return int(rr.registers[0])

    async def _write_mode(self, point: Point, mode: int, deadline: float | None = None) -> None:
        rel = point.modbus.release  # type: ignore[union-attr]
        assert rel is not None
        if rel.coil is not None:
            await self._call(f"set {point.name} mode (coil {rel.coil})", "write_coil", rel.coil, bool(mode),
                             deadline=deadline)
        else:
            await self._call(f"set {point.name} mode (register {rel.holding})", "write_register",
                             rel.holding, mode & 0xFFFF, deadline=deadline)

    async def read_state(self, point: Point, deadline: float | None = None) -> PointState:
        mp = point.modbus
        assert mp is not None
        value = await self.read_value(point, deadline)
        if mp.release is None:
            return PointState(value=value, commanded=None, detail="telemetry" if not point.writable else "")
        mode = await self._read_mode(point, deadline)
        if mode == mp.release.auto_value:
            return PointState(value=value, commanded=None, detail="local control (auto)")
        if mode == mp.release.remote_value:
            return PointState(value=value, commanded=value, detail="remote (commanded)")
        return PointState(value=value, commanded=None, detail=f"unknown mode value {mode}")

    async def write(self, point: Point, value: float, deadline: float | None = None) -> None:
        """Write the setpoint register(s), then put the point in remote mode (each request by ``deadline``)."""
        mp = point.modbus
        assert mp is not None and mp.release is not None
        try:
            words = encode_registers(mp, value)
        except ValueError as exc:
            raise DeviceError(f"write {point.name}: {exc}") from None
        await self._call(f"write {point.name} (register {mp.address})", "write_registers", mp.address, words,
                         deadline=deadline)
        await self._write_mode(point, mp.release.remote_value, deadline)

    async def release(self, point: Point, deadline: float | None = None) -> None:
        mp = point.modbus
        assert mp is not None and mp.release is not None
        await self._write_mode(point, mp.release.auto_value, deadline)

    def encoded(self, point: Point, value: float) -> float:
        assert point.modbus is not None
        return decode_registers(point.modbus, encode_registers(point.modbus, value))

    def priority(self, point: Point) -> int | None:
        return None
