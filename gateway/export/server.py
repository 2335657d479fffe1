"""The Modbus TCP server: serves the published image, hands accepted writes to the book.

pymodbus keeps its own register list; ours is the image built once per cycle. The
device's action callback copies the requested window out of the current image right
before pymodbus slices its list, with no await in between, so every response comes from
one image: `publish` swaps the whole list in one assignment and a reader never sees
half a cycle. FC3 and FC4 share the one image. Unit ids: the configured one, plus 0 and
255 which some TCP clients send; any other id gets exception 0x0B.

Anyone on the LAN can connect, so the server is bounded: at most `max_clients`
connections (more are closed at once, keeping file descriptors for the OCPP chargers), a
connection silent for `idle_timeout_s` is dropped, and every frame is screened before
pymodbus sees it: only the function codes of the map are served (diagnostics such as 8
or 17 would tell a stranger about the device), counts outside the standard's limits get
exception 03, malformed frames exception 03, all logged at debug level and rate-limited
per client instead of pymodbus' error tracebacks with frame dumps.

Call `publish` and `overrides` from the event loop the server runs on.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.pdu import ExceptionResponse
from pymodbus.server import ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import DataType, SimData, SimDevice

from gateway import __version__
from gateway.export.config import ExportConfig
from gateway.export.image import ImageBuilder
from gateway.export.overrides import ACCEPTED, OverrideBook, Overrides
from gateway.export.regmap import MAP_SIZE, RegisterMap, load_map
from gateway.export.state import NAN, ExportState
from gateway.ratelimit import RateLimiter

log = logging.getLogger(__name__)

# Coils and discrete inputs are not part of the map.
BIT_CODES = frozenset({1, 2, 5, 15})
# function code -> (PDU length without the code or None: variable, the count limit)
_SERVED: dict[int, tuple[int | None, int]] = {
    1: (4, 2000),
    2: (4, 2000),
    3: (4, 125),
    4: (4, 125),
    5: (4, 1),
    6: (4, 1),
    15: (None, 1968),
    16: (None, 123),
    22: (6, 1),
    23: (None, 121),
}
_MBAP = 7  # transaction id, protocol id, length, unit id
# The client of the request being handled: set per request task by `_Handler`.
_CLIENT: contextvars.ContextVar[str] = contextvars.ContextVar("modbus_client", default="?")

# Before the first cycle: constants only, everything else unknown and flagged stale.
_NO_DATA = ExportState(
    cycle=0,
    updated_unix=0,
    cycle_time_ms=NAN,
    breaker_limit_a=NAN,
    breaker_limit_w=NAN,
    meters_ok=False,
    ocpp_ok=False,
    data_stale=True,
)


def _screen(pdu: bytes) -> ExcCodes | None:
    """Why a request PDU must be refused, or None when pymodbus may handle it."""
    shape = _SERVED.get(pdu[0])
    if shape is None:
        return ExcCodes.ILLEGAL_FUNCTION
    length, limit = shape
    body = pdu[1:]
    if length is not None:
        if len(body) != length:
            return ExcCodes.ILLEGAL_VALUE
        if pdu[0] in (5, 6, 22):
            return None
        count = int.from_bytes(body[2:4])
        return None if 1 <= count <= limit else ExcCodes.ILLEGAL_VALUE
    # FC15/16: address, count, byte count, data. FC23 reads first, then writes like FC16.
    head = body[4:] if pdu[0] == 23 else body
    if pdu[0] == 23 and (len(body) < 4 or not 1 <= int.from_bytes(body[2:4]) <= 125):
        return ExcCodes.ILLEGAL_VALUE
    if len(head) < 5:
        return ExcCodes.ILLEGAL_VALUE
    count, size = int.from_bytes(head[2:4]), head[4]
    want = (count + 7) // 8 if pdu[0] == 15 else 2 * count
    if not 1 <= count <= limit or size != want or len(head) != 5 + size:
        return ExcCodes.ILLEGAL_VALUE
    return None


class _Handler(ServerRequestHandler):
    """One client connection: admits, screens, times out, filters unit ids and
    remembers who is asking."""

    server: _TcpServer
    _idle: asyncio.TimerHandle | None = None
    _heard = 0.0

    def callback_connected(self) -> None:
        super().callback_connected()
        # Counted here, not from pymodbus' connection list: asyncio creates a whole accept
        # batch before the first of them is connected, and the list holds them all.
        if len(self.server.admitted) >= self.server.max_clients:
            self._note(
                logging.WARNING,
                "max_clients",
                "%d clients connected (max_clients), closing %s",
                self.server.max_clients,
                self._peer(),
            )
            self._drop()
            return
        self.server.admitted.add(self)
        self._heard = self.loop.time()
        self._idle = self.loop.call_later(self.server.idle_timeout_s, self._check_idle)

    def callback_disconnected(self, exc: Exception | None) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self.server.admitted.discard(self)
        super().callback_disconnected(exc)

    def callback_data(self, data: bytes, addr: tuple[str, int] | None = None) -> int:
        """Answer refused frames here; pass the first acceptable one to pymodbus.

        pymodbus handles one request per call (it keeps it in `last_pdu` until the
        handler runs), so a pipelined request after it waits for the next call."""
        self._heard = self.loop.time()
        used = 0
        while len(data) - used >= _MBAP + 1:
            head = data[used : used + _MBAP + 1]
            size = 6 + int.from_bytes(head[4:6])
            if head[2:4] != b"\0\0" or size <= _MBAP or size > 260:
                self._refused(head[7], None, "dropped: not a Modbus TCP frame,")
                self._drop()  # no frame boundary to resynchronise on
                return len(data)
            if len(data) - used < size:
                break
            reason = _screen(data[used + _MBAP : used + size])
            if reason is None:
                return used + super().callback_data(data[used : used + size], addr)
            response = ExceptionResponse(
                head[7] & 0x7F,
                reason,
                device_id=head[6],
                transaction=int.from_bytes(head[0:2]),
            )
            self.server_send(response, addr)
            self._refused(head[7], reason, "refused")
            used += size
        return used

    def _refused(self, function_code: int, reason: ExcCodes | None, what: str) -> None:
        peer = self._peer()
        code = "" if reason is None else f" (exception {int(reason)})"
        self._note(
            logging.DEBUG, peer, "%s function code %d from %s%s", what, function_code, peer, code
        )

    def _note(self, level: int, source: str, msg: str, *args: object) -> None:
        """A line a LAN client provoked: rate-limited per `source`."""
        self.server.limiter.log(log, level, source, self.loop.time(), "Modbus TCP: " + msg, *args)

    def _check_idle(self) -> None:
        silent = self.loop.time() - self._heard
        if silent >= self.server.idle_timeout_s:
            peer = self._peer()
            self._note(logging.DEBUG, peer, "%s silent for %.0f s, disconnecting", peer, silent)
            self._drop()
        else:
            self._idle = self.loop.call_later(self.server.idle_timeout_s - silent, self._check_idle)

    def _drop(self) -> None:
        # abort: the descriptor is freed now, not after a lingering close.
        if self.transport:
            self.transport.abort()  # type: ignore[attr-defined]

    def _peer(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        return str(peer[0]) if peer else "?"

    async def handle_request(self) -> None:
        pdu = self.last_pdu
        if pdu is None:
            return
        if pdu.dev_id not in self.server.unit_ids:
            response = ExceptionResponse(pdu.function_code, ExcCodes.GATEWAY_NO_RESPONSE)
            response.transaction_id = pdu.transaction_id
            response.dev_id = pdu.dev_id
            self.server_send(response, self.last_addr)
            return
        _CLIENT.set(self._peer())
        await super().handle_request()


class _TcpServer(ModbusTcpServer):
    def __init__(self, device: SimDevice, config: ExportConfig, unit_ids: set[int]) -> None:
        super().__init__(device, address=(config.host, config.port))
        self.unit_ids = unit_ids
        self.max_clients = config.max_clients
        self.idle_timeout_s = config.idle_timeout_s
        self.limiter = RateLimiter()
        self.admitted: set[_Handler] = set()

    def callback_new_connection(self) -> _Handler:
        return _Handler(self, self.trace_packet, self.trace_pdu, self.trace_connect)


class ExportServer:
    def __init__(
        self,
        config: ExportConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        regmap: RegisterMap | None = None,
    ) -> None:
        self.config = config
        self._clock = clock
        self._map = regmap or load_map()
        self._builder = ImageBuilder(self._map, __version__)
        self._book = OverrideBook(config, self._map)
        self._state: ExportState | None = None
        self._image = self._builder.build(_NO_DATA, self._commands)
        self._server: _TcpServer | None = None

    @property
    def port(self) -> int:
        if self._server is None or not self._server.transport:
            raise RuntimeError("export server is not running")
        return int(self._server.transport.sockets[0].getsockname()[1])  # type: ignore[attr-defined]

    async def start(self) -> None:
        block = SimData(address=0, count=MAP_SIZE, datatype=DataType.REGISTERS)
        device = SimDevice(id=0, simdata=[block], action=self._action)
        units = {self.config.unit_id, 0, 255}
        self._server = _TcpServer(device, self.config, units)
        await self._server.serve_forever(background=True)
        log.info(
            "Modbus TCP export on %s:%d, unit id %d, writes %s",
            self.config.host,
            self.port,
            self.config.unit_id,
            "enabled" if self.config.writes_enabled else "disabled",
        )

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()
            self._server = None

    def publish(self, state: ExportState) -> None:
        """Swap in this cycle's image (one assignment: readers see the old or the new)."""
        self._state = state
        self._image = self._builder.build(state, self._commands)

    def overrides(self) -> Overrides:
        """Accepted, unexpired overrides at this moment; never blocks."""
        return self._book.overrides(self._clock())

    def _commands(self, charger_id: str) -> Mapping[str, Any]:
        now = self._clock()
        if charger_id:
            return self._book.register_values(charger_id, now)
        return self._book.command_values(now)

    async def _action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        if function_code in BIT_CODES:
            return ExcCodes.ILLEGAL_FUNCTION
        if values is None:  # FC3, FC4 and the read half of FC22/FC23
            offset = address - start_address
            registers[offset : offset + count] = self._image[address : address + count]
            return None
        client = _CLIENT.get()
        raw = [int(v) for v in values]
        result = self._book.write(address, raw, self._state, client, self._clock())
        # The image shows accepted values and the last result either way; a copy keeps
        # the swap-only rule for readers.
        image = self._image.copy()
        self._builder.render_commands(image, self._state or _NO_DATA, self._commands)
        self._image = image
        return None if result == ACCEPTED else ExcCodes(result)
