"""Simulated devices on a real wire: register images served by pymodbus servers.

Used by the tests, `bench/meters.py` and the simulator: a profile plus a set of values
becomes the registers a real meter would hold (`image`), served over TCP, RTU-over-TCP or
RTU through a pty pair (`PtyLine`), with a log of every request the server answered.
"""

from __future__ import annotations

import asyncio
import os
import time
import tty
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from pymodbus import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from gateway.meters.control import control_words
from gateway.meters.decode import decode_raw, encode_raw
from gateway.meters.profile import TYPES, Control, Register

Image = dict[int, int]  # address -> register word


def image(registers: Iterable[Register], values: Mapping[str, float], sf: int = 0) -> Image:
    """The words a device holds when it measures `values` (in its own sign and units).

    SunSpec-style registers get the scale factor `sf` (value = raw * 10**sf).
    """
    words: Image = {}
    for r in registers:
        if r.name not in values:
            continue
        raw = values[r.name]
        raw = -raw if r.negate else raw
        raw = abs(raw) if r.sign_of else raw
        raw /= r.scale
        if r.scale_sf is not None:
            words[r.scale_sf] = sf & 0xFFFF
            raw /= 10.0**sf
        for i, w in enumerate(encode_raw(raw, r.type, r.word_order)):
            words[r.address + i] = w
    return words


@dataclass
class Unit:
    """One served unit id: its image (holes read as 0) and whether it answers at all."""

    unit_id: int
    words: Image
    dead: bool = False
    requests: list[tuple[int, int, int]] = field(default_factory=list)  # (fc, address, count)
    # Every write accepted, in order: (address, words); the image follows them.
    writes: list[tuple[int, list[int]]] = field(default_factory=list)


class ServedBus:
    """A pymodbus server standing in for a bus or a TCP device with one or more units."""

    def __init__(self, units: Iterable[Unit]) -> None:
        self.units = {u.unit_id: u for u in units}
        self._release = asyncio.Event()
        self.server: ModbusTcpServer | ModbusSerialServer | None = None
        self.port = 0

    def _device(self, unit: Unit) -> SimDevice:
        # A dead unit spans the whole address space, so every read reaches the stalling action.
        lo, hi = (0, 0xFFFF) if unit.dead else (min(unit.words), max(unit.words))
        values = [unit.words.get(a, 0) for a in range(lo, hi + 1)]

        async def action(fc, _start, address, _count, _registers, set_values):
            if unit.dead and set_values is None:
                await self._release.wait()  # like a unit that never answers
            if set_values is not None and fc in (6, 16):
                words = [int(v) for v in set_values]
                unit.writes.append((address, words))
                for i, word in enumerate(words):
                    unit.words[address + i] = word
            return None

        data = SimData(address=lo, values=values, datatype=DataType.REGISTERS)
        return SimDevice(id=unit.unit_id, simdata=[data], action=action)

    def devices(self) -> list[SimDevice]:
        return [self._device(u) for u in self.units.values()]

    def _trace(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        """Log every request received, including those the datastore refuses."""
        unit = self.units.get(pdu.dev_id)
        if not sending and unit is not None and pdu.function_code in (3, 4):
            unit.requests.append((pdu.function_code, pdu.address, pdu.count))
        return pdu

    async def start_tcp(self, port: int = 0, framer: FramerType = FramerType.SOCKET) -> int:
        self.server = ModbusTcpServer(
            self.devices(), address=("127.0.0.1", port), framer=framer, trace_pdu=self._trace
        )
        await self.server.serve_forever(background=True)
        self.port = self.server.transport.sockets[0].getsockname()[1]
        return self.port

    async def start_serial(self, path: str, baud: int = 9600) -> None:
        self.server = ModbusSerialServer(
            self.devices(), port=path, framer=FramerType.RTU, baudrate=baud, trace_pdu=self._trace
        )
        await self.server.serve_forever(background=True)

    async def set(self, unit_id: int, address: int, words: list[int]) -> None:
        assert self.server is not None
        await self.server.async_setValues(unit_id, 3, address, words)
        for i, word in enumerate(words):
            self.units[unit_id].words[address + i] = word

    async def stop(self) -> None:
        self._release.set()
        if self.server is not None:
            await self.server.shutdown()
            self.server = None
        await asyncio.sleep(0)

    def request_count(self) -> int:
        return sum(len(u.requests) for u in self.units.values())


def release_image(control: Control) -> Image:
    """The control registers of a device nobody has held: 0, then its release written."""
    words: Image = {w.address + i: 0 for w in control.hold for i in range(TYPES[w.type])}
    for address, run in control_words(control, None):
        words |= {address + i: word for i, word in enumerate(run)}
    return words


class SimControl:
    """A served battery's writable control: the discharge limit it obeys, and its expiry.

    It reads its own control registers the way the device would: held while every
    constant of the profile's hold matches and the limit register is below max_w (or,
    for a hold-only control with max_w 0, at 0). A
    device with an expiry stops obeying `expiry_s` after the last write to it, as a
    real one falls back to self-consumption when the controller goes quiet.
    """

    def __init__(
        self, control: Control, unit: Unit, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.control = control
        self.unit = unit
        self.clock = clock
        self._addresses = {w.address for w in (*control.hold, *control.release)}
        self._seen = 0  # writes of the unit already looked at
        self.last_write: float | None = None

    def limit_w(self) -> float | None:
        """The discharge cap in force now (None: none)."""
        writes = self.unit.writes
        if any(a in self._addresses for a, _ in writes[self._seen :]):
            self.last_write = self.clock()
        self._seen = len(writes)
        expiry = self.control.expiry_s
        if self.last_write is None or (
            expiry is not None and self.clock() - self.last_write > expiry
        ):
            return None
        limit = None
        for w in self.control.hold:
            raw = decode_raw(
                [self.unit.words.get(w.address + i, 0) for i in range(TYPES[w.type])],
                w.type,
                w.word_order,
            )
            if w.value is None:
                limit = None if raw is None else raw * w.scale
            elif raw != w.value:
                return None
        if limit is None:
            return None
        # A cap at max_w is the release; a hold-only control (max_w 0) holds at 0.
        return limit if limit < self.control.max_w or self.control.max_w == 0 else None


class PtyLine:
    """Two pty pairs joined by a relay: a client at `client_path`, a server at `server_path`.

    One pty pair cannot carry pymodbus on both ends (its master side has no path), so the
    relay copies bytes between the two master sides, like the RS485 wire would.
    """

    def __init__(self) -> None:
        self._a_master, a_slave = os.openpty()
        self._b_master, b_slave = os.openpty()
        for fd in (a_slave, b_slave):
            tty.setraw(fd)
        self.client_path = os.ttyname(a_slave)
        self.server_path = os.ttyname(b_slave)
        self._slaves = (a_slave, b_slave)
        self.bytes_relayed = 0

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(self._a_master, self._copy, self._a_master, self._b_master)
        loop.add_reader(self._b_master, self._copy, self._b_master, self._a_master)

    def _copy(self, src: int, dst: int) -> None:
        try:
            data = os.read(src, 4096)
        except OSError:
            return
        self.bytes_relayed += len(data)
        os.write(dst, data)

    def close(self) -> None:
        loop = asyncio.get_running_loop()
        for fd in (self._a_master, self._b_master):
            loop.remove_reader(fd)
        for fd in (self._a_master, self._b_master, *self._slaves):
            os.close(fd)
