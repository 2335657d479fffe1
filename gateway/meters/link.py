"""One Modbus connection (serial RTU, TCP, RTU-over-TCP): a thin layer over pymodbus.

pymodbus runs with retries=0 and a long timeout: the bus owner applies each device's own
short timeout and retry count, so one dead unit never inherits another's budget, and
pymodbus never drops a TCP connection shared with healthy units because one unit is silent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from pymodbus import FramerType, ModbusException
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.pdu import ModbusPDU

from gateway.meters.config import Connection

log = logging.getLogger(__name__)

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "device failure",
    6: "device busy",
    10: "gateway path unavailable",
    11: "gateway target did not respond",
}
_LIBRARY_TIMEOUT_S = 30.0


class ReadError(Exception):
    """A failed request (a read, or a control's write); `timeout`: no answer at all."""

    def __init__(self, message: str, *, timeout: bool = False, code: int | None = None) -> None:
        super().__init__(message)
        self.timeout = timeout
        self.code = code


class Link:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.requests = 0  # every request put on the wire, for tests and the bench
        if connection.transport == "rtu":
            self._client: AsyncModbusSerialClient | AsyncModbusTcpClient = AsyncModbusSerialClient(
                connection.device,
                framer=FramerType.RTU,
                baudrate=connection.baud,
                bytesize=connection.bytesize,
                parity=connection.parity,
                stopbits=connection.stopbits,
                timeout=_LIBRARY_TIMEOUT_S,
                retries=0,
                reconnect_delay=0,
            )
        else:
            framer = FramerType.RTU if connection.transport == "rtu-over-tcp" else FramerType.SOCKET
            self._client = AsyncModbusTcpClient(
                connection.host,
                port=connection.port,
                framer=framer,
                timeout=_LIBRARY_TIMEOUT_S,
                retries=0,
                reconnect_delay=0,
            )
        # Our own timeouts decide; never let the library close a shared connection.
        self._client.set_max_no_responses(1 << 30)

    @property
    def connected(self) -> bool:
        return self._client.connected

    async def connect(self, timeout: float) -> bool:
        try:
            async with asyncio.timeout(timeout):
                return bool(await self._client.connect())
        except (TimeoutError, OSError):
            return False

    async def read(
        self, function: int, address: int, count: int, unit: int, timeout: float
    ) -> list[int]:
        """Read `count` registers or raise `ReadError`."""
        call = (
            self._client.read_holding_registers
            if function == 3
            else self._client.read_input_registers
        )
        response = await self._answer(call(address, count=count, device_id=unit), timeout)
        registers = list(getattr(response, "registers", []))
        if len(registers) != count:
            raise ReadError(f"asked for {count} registers, got {len(registers)}")
        return registers

    async def write(self, address: int, words: list[int], unit: int, timeout: float) -> None:
        """Write holding registers (FC16) or raise `ReadError`."""
        await self._answer(self._client.write_registers(address, words, device_id=unit), timeout)

    async def _answer(self, request: Awaitable[ModbusPDU], timeout: float) -> ModbusPDU:
        """One request on the wire: its response, or `ReadError` (silence, exception)."""
        self.requests += 1
        try:
            async with asyncio.timeout(timeout):
                response = await request
        except TimeoutError as exc:
            raise ReadError(f"no answer within {timeout:g} s", timeout=True) from exc
        except ModbusException as exc:
            raise ReadError(f"modbus error: {exc}") from exc
        if response.isError():
            code = getattr(response, "exception_code", None)
            name = EXCEPTION_NAMES.get(code or 0, "unknown")
            raise ReadError(f"exception {code} ({name})", code=code)
        return response

    def close(self) -> None:
        self._client.close()
