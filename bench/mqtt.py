"""MQTT under load: messages per second and the gateway's CPU at 4 and 200 chargers, with
MQTT off and on (the same site), and the burst sent on connecting (discovery + state).

The gateway runs as its own process (bench/e2e.py's site and config plus `[mqtt]`) against
a real Mosquitto started here on a free port; a subscriber to `#` counts what arrives.

Run: python bench/mqtt.py [--sizes 4 200] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import aiomqtt

# bench/e2e.py puts the project root on the path (and takes bench/ off it): import it first.
from e2e import bench_site, config_text, cpu_seconds, free_port, start_gateway, stop_gateway

from gateway.config import load_config


def start_broker(workdir: Path, port: int) -> subprocess.Popen:
    conf = workdir / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    broker = subprocess.Popen(["/usr/sbin/mosquitto", "-c", str(conf)], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return broker
        assert time.monotonic() < deadline, "mosquitto did not start"
        time.sleep(0.05)


async def measure(n: int, seconds: float, workdir: Path, mqtt_on: bool) -> dict[str, float]:
    ocpp_port, broker_port = free_port(), free_port()
    path = workdir / f"mqtt-{n}.toml"
    section = f'\n[mqtt]\nenabled = {str(mqtt_on).lower()}\nport = {broker_port}\nsite = "bench"\n'

    def write(grid_port: int) -> None:
        text = config_text(n, 16.0 * n + 20, grid_port, ocpp_port)
        path.write_text(text.replace("[log]", section + "\n[log]"))

    write(1)
    live = bench_site(load_config(path))
    await live.start_meters()
    write(live.grid.port)
    broker = start_broker(workdir, broker_port)
    counts = {"n": 0}
    ready = asyncio.Event()

    async def count() -> None:
        async with aiomqtt.Client("127.0.0.1", broker_port) as c:
            await c.subscribe("#")
            ready.set()
            async for _ in c.messages:
                counts["n"] += 1

    counter = asyncio.create_task(count())
    await asyncio.wait_for(ready.wait(), 10)
    daemon = start_gateway(path)
    try:
        await asyncio.sleep(3)
        await live.connect_chargers(ocpp_port)
        live.start_ticking(0.1)
        await asyncio.sleep(8)  # the chargers connect and settle; the connect burst is over
        burst = counts["n"]
        m0, cpu0, t0 = counts["n"], cpu_seconds(daemon.pid), time.monotonic()
        await asyncio.sleep(seconds)
        elapsed = time.monotonic() - t0
        return {
            "burst": burst,
            "msg/s": (counts["n"] - m0) / elapsed,
            "cpu": (cpu_seconds(daemon.pid) - cpu0) / elapsed,
        }
    finally:
        await stop_gateway(daemon)
        counter.cancel()
        await asyncio.gather(counter, return_exceptions=True)
        broker.terminate()
        broker.wait(5)
        await live.stop()


async def main(sizes: list[int], seconds: float) -> None:
    print(f"{'chargers':>8} {'CPU off':>8} {'CPU on':>8} {'msg/s':>8} {'first burst':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            off = await measure(n, seconds, Path(tmp), False)
            on = await measure(n, seconds, Path(tmp), True)
            print(
                f"{n:>8} {off['cpu'] * 100:>7.1f}% {on['cpu'] * 100:>7.1f}% "
                f"{on['msg/s']:>8.1f} {on['burst']:>12.0f}",
                flush=True,
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4, 200])
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    asyncio.run(main(args.sizes, args.seconds))
