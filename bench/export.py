"""Modbus export speed: register reads per second from 1 and 10 clients, publish cost.

Reads are 125-register FC4 windows (the protocol maximum) spread over the map, against
a real server on 127.0.0.1 while the image is republished 4 times a second as in
service. Publish cost is the median time to build and swap one cycle's image.
Run: python bench/export.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pymodbus.client import AsyncModbusTcpClient

from gateway.export.config import ExportConfig
from gateway.export.regmap import MAP_SIZE
from gateway.export.server import ExportServer
from gateway.export.state import ChargerState, ExportState
from gateway.model import Mode, Reason


def state(cycle: int, chargers: int) -> ExportState:
    return ExportState(
        cycle=cycle,
        updated_unix=time.time(),
        cycle_time_ms=250,
        breaker_limit_a=63,
        breaker_limit_w=43470,
        grid_power_w=1234.5,
        grid_current_a=(5.0, 6.0, 7.0),
        chargers=tuple(
            ChargerState(
                id=f"wallbox-{i:03d}",
                online=True,
                status="Charging",
                phases=3,
                mode=Mode.SOLAR,
                reason=Reason.SOLAR_SURPLUS,
                allocated_a=8.0,
                target_a=9.0,
                current_a=(7.9, 8.0, 8.1),
                power_w=5500.0,
                session_wh=4321,
                min_a=6,
                max_a=16,
            )
            for i in range(chargers)
        ),
    )


def publish_cost(server: ExportServer, chargers: int, runs: int = 200) -> float:
    samples = []
    for n in range(runs):
        s = state(n, chargers)
        start = time.perf_counter()
        server.publish(s)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


async def reads_per_second(server: ExportServer, clients: int, seconds: float) -> float:
    count = 0
    deadline = time.perf_counter() + seconds

    async def reader(offset: int) -> None:
        nonlocal count
        client = AsyncModbusTcpClient("127.0.0.1", port=server.port, timeout=3, retries=0)
        await client.connect()
        address = offset
        while time.perf_counter() < deadline:
            rr = await client.read_input_registers(address, count=125, device_id=1)
            assert not rr.isError()
            count += 125
            address = (address + 997) % (MAP_SIZE - 125)
        client.close()

    async def publisher() -> None:
        cycle = 0
        while time.perf_counter() < deadline:
            cycle += 1
            server.publish(state(cycle, 100))
            await asyncio.sleep(0.25)

    start = time.perf_counter()
    await asyncio.gather(publisher(), *(reader(i * 4000) for i in range(clients)))
    return count / (time.perf_counter() - start)


async def main(seconds: float) -> None:
    server = ExportServer(ExportConfig(host="127.0.0.1", port=0))
    await server.start()
    try:
        for chargers in (10, 100, 500):
            ms = publish_cost(server, chargers)
            print(f"publish one cycle, {chargers:3d} chargers: {ms:6.2f} ms (median)")
        for clients in (1, 10):
            rate = await reads_per_second(server, clients, seconds)
            print(
                f"reads, {clients:2d} client(s): {rate:9.0f} registers/s"
                f" ({rate / 125:6.0f} requests of 125/s)"
            )
    finally:
        await server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="per read measurement")
    asyncio.run(main(parser.parse_args().seconds))
