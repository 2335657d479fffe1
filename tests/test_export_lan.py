"""A hostile LAN against `evse-gateway run`: floods, odd function codes, bad counts.

The gateway runs as a real process; the attacker is raw sockets on 127.0.0.1 and the
charger the OCPP simulator. What is asserted is what a LAN device sees (replies, closed
connections, a charger that still gets in) and what the journal gets (bounded lines).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import resource
import socket
import struct
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from gateway.meters.profile import builtin
from gateway.meters.served import ServedBus, Unit, image
from gateway.sim.chargepoint import SimChargePoint
from tests.conftest import ROOT
from tests.test_daemon import CONFIG as DAEMON_CONFIG
from tests.test_meters_helpers import METER_VALUES
from tests.waiting import until

MAX_CLIENTS = 4
# The daemon test's site, meter and charger, with the servers on known ports and the
# export on with a small cap.
CONFIG = (
    DAEMON_CONFIG.replace("port = 0", "port = {ocpp_port}", 1)  # [ocpp]; [web] stays on 0
    .replace(
        "[export]\nenabled = false",
        '[export]\nhost = "127.0.0.1"\nport = {export_port}\n'
        "max_clients = {max_clients}\nidle_timeout_s = 5",
    )
    .replace("max_a = {max_a}", "max_a = 16")
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class Gateway:
    def __init__(self, log: Path, ocpp_port: int, export_port: int) -> None:
        self.log, self.ocpp_port, self.export_port = log, ocpp_port, export_port
        self.pid = 0

    def text(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.asynccontextmanager
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    registers = builtin("sdm630").parts["meter"].registers
    meter = ServedBus([Unit(1, image(registers, METER_VALUES))])
    grid_port = await meter.start_tcp()
    ocpp_port, export_port = free_port(), free_port()
    config = tmp_path / "config.toml"
    config.write_text(
        CONFIG.format(
            grid_port=grid_port,
            ocpp_port=ocpp_port,
            export_port=export_port,
            max_clients=MAX_CLIENTS,
            state_dir=tmp_path / "state",
        )
    )
    gw = Gateway(tmp_path / "daemon.log", ocpp_port, export_port)
    with open(gw.log, "w") as log:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", "-c", str(config), "--log-level", "debug"],
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
            stdout=subprocess.DEVNULL,
            stderr=log,
            # Started with fewer descriptors than the config needs: the daemon raises it.
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (40, 4096)),
        )
    gw.pid = daemon.pid
    try:
        await until(lambda: _listening(export_port), 20, "the export port")
        yield gw
        assert daemon.poll() is None, gw.text()[-2000:]
    finally:
        daemon.terminate()
        try:
            daemon.wait(10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(5)
        await meter.stop()


def frame(pdu: bytes, tid: int = 1, unit: int = 1) -> bytes:
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu


async def ask(port: int, pdu: bytes) -> bytes:
    """One request on a fresh connection; the reply PDU."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(frame(pdu))
        head = await asyncio.wait_for(reader.readexactly(7), 5)
        return await asyncio.wait_for(reader.readexactly(struct.unpack(">H", head[4:6])[0] - 1), 5)
    finally:
        writer.close()


async def closed(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(1), 0.5) == b""
    except (TimeoutError, ConnectionError):
        return False


def test_a_connection_flood_is_capped_idlers_dropped_and_a_charger_still_connects(tmp_path):
    async def scenario() -> None:
        async with gateway(tmp_path) as gw:
            flood = [await asyncio.open_connection("127.0.0.1", gw.export_port) for _ in range(200)]
            kept = [r for r, _ in flood if not await closed(r)]
            # The first MAX_CLIENTS stay; everyone over the cap is closed at once.
            assert len(kept) == MAX_CLIENTS
            point = SimChargePoint("c1", f"ws://127.0.0.1:{gw.ocpp_port}/c1")
            await point.start()
            try:
                await asyncio.wait_for(point.connected.wait(), 10)
            finally:
                await point.stop()
            # The silent ones (half-open ones look the same) go after idle_timeout_s.
            await until(lambda: all(r.at_eof() for r in kept), 15, "idle connections to be dropped")
            for r in kept:
                assert await r.read() == b""
            for _, w in flood:
                w.close()
            assert "Traceback" not in gw.text()
            # 1 charger + 4 Modbus clients + 1 meter + 64 of its own + 100 being accepted.
            limits = Path(f"/proc/{gw.pid}/limits").read_text()
            assert re.search(r"Max open files\s+170\s+4096", limits), limits
            # The cap's warning is rate-limited too: 196 refusals, a handful of lines.
            assert gw.text().count("(max_clients)") <= 5

    asyncio.run(asyncio.wait_for(scenario(), 90))


def test_odd_function_codes_and_counts_get_exceptions_and_a_bounded_log(tmp_path):
    async def scenario() -> None:
        async with gateway(tmp_path) as gw:
            port = gw.export_port
            # Reads still work.
            reply = await ask(port, bytes([3, 0, 0, 0, 2]))
            assert reply[:2] == bytes([3, 4])
            # Diagnostics (7, 8, 11, 12, 17, 24, 43) and >= 0x80 codes: illegal function.
            for code in (7, 8, 11, 12, 17, 24, 43, 0x80, 0x83, 0xFF):
                pdu = bytes([code, 0, 0, 0, 0])
                assert await ask(port, pdu) == bytes([0x80 | code, 1]), code
            # Counts outside 1..125: illegal data value, not illegal function.
            for count in (0, 126, 2000):
                pdu = bytes([3, 0, 0]) + count.to_bytes(2)
                assert await ask(port, pdu) == bytes([0x83, 3]), count
            before = gw.text().count("Modbus TCP: refused")
            size = len(gw.text())
            # 300 frames of >= 0x80 on one connection, as the attacker sent,
            # pipelined ten at a time.
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            for batch in range(30):
                writer.write(
                    b"".join(
                        frame(bytes([0x81, 0, 0, 0, 1]), tid=batch * 10 + i) for i in range(10)
                    )
                )
                for i in range(10):
                    reply = await asyncio.wait_for(reader.readexactly(9), 5)
                    assert struct.unpack(">H", reply[:2])[0] == batch * 10 + i
                    assert reply[7:] == bytes([0x81, 1])
            writer.close()
            text = gw.text()
            assert "Traceback" not in text
            assert "ERROR" not in text
            # Rate-limited per client: a few lines a minute, whatever the flood.
            assert text.count("Modbus TCP: refused") - before <= 5
            refused = [ln for ln in text[size:].splitlines() if "refused" in ln]
            assert len(refused) <= 5, refused

    asyncio.run(asyncio.wait_for(scenario(), 90))
