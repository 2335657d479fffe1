"""The Modbus TCP server: serves the published image, hands accepted writes to the book.

pymodbus keeps its own register list; ours is the image built once per cycle. The
device's action callback copies the requested window out of the current image right
before pymodbus slices its list, with no await in between, so every response comes from
one image: `publish` swaps the whole list in one assignment and a reader never sees
half a cycle. FC3 and FC4 share the one image. Unit ids: the configured one, plus 0 and
255 which some TCP clients send; any other id gets exception 0x0B.

Call `publish` and `overrides` from the event loop the server runs on.
"""

from __future__ import annotations

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

log = logging.getLogger(__name__)

# Coils and discrete inputs are not part of the map.
BIT_CODES = frozenset({1, 2, 5, 15})
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


class _Handler(ServerRequestHandler):
    """One client connection: filters unit ids and remembers who is asking."""

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
        peer = self.transport.get_extra_info("peername") if self.transport else None
        _CLIENT.set(str(peer[0]) if peer else "?")
        await super().handle_request()


class _TcpServer(ModbusTcpServer):
    def __init__(self, device: SimDevice, address: tuple[str, int], unit_ids: set[int]) -> None:
        super().__init__(device, address=address)
        self.unit_ids = unit_ids

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
        self._server = _TcpServer(device, (self.config.host, self.config.port), units)
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
