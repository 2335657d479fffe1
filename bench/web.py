"""The web server under load: REST and page latency and the gateway's CPU with 10
clients polling (state, chargers, page) and the live stream open, at 4 and 200 chargers;
and the cycle's timing idle vs busy (the control loop must not notice the clients).

The gateway runs as its own process (`evse-gateway run`, bench/e2e.py's site and config
with the web server on), so its CPU time is its own; the simulated site and the HTTP
clients run here. Cycle timing is read from the stream: `cycle_time_ms` (the cycle's own
work) and the spacing of `updated_unix` (the 1 s tick, late if the loop was held up).

Run: python bench/web.py [--sizes 4 200] [--seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp

# bench/e2e.py puts the project root on the path (and takes bench/ off it): import it first.
from e2e import bench_site, config_text, cpu_seconds, free_port, pct, start_gateway, stop_gateway

from gateway.config import load_config

CLIENTS = 10
PATHS = ("/api/v1/state", "/api/v1/chargers", "/")


async def stream(base: str, cycles: list[tuple[float, float]], stop: asyncio.Event) -> None:
    async with aiohttp.ClientSession() as http, http.get(base + "/api/v1/stream") as r:
        async for line in r.content:
            if line.startswith(b"data: "):
                state = json.loads(line[6:])
                cycles.append((state["updated_unix"], state["cycle_time_ms"]))
            if stop.is_set():
                return


async def poller(base: str, latencies: dict[str, list[float]], stop: asyncio.Event) -> None:
    async with aiohttp.ClientSession() as http:
        while not stop.is_set():
            for path in PATHS:
                t = time.monotonic()
                async with http.get(base + path) as r:
                    await r.read()
                    assert r.status == 200
                latencies[path].append(time.monotonic() - t)
            await asyncio.sleep(1.0)


def timing(cycles: list[tuple[float, float]]) -> tuple[float, float, float]:
    """Median cycle work (ms), median and worst tick spacing (s)."""
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(cycles)]
    return statistics.median(c[1] for c in cycles), statistics.median(gaps), max(gaps)


async def measure(n: int, seconds: float, workdir: Path) -> dict[str, float]:
    ocpp_port, web_port = free_port(), free_port()
    path = workdir / f"web-{n}.toml"

    def write(grid_port: int) -> None:
        text = config_text(n, 16.0 * n + 20, grid_port, ocpp_port)
        path.write_text(text.replace("[web]\nenabled = false", f"[web]\nport = {web_port}"))

    write(1)
    config = load_config(path)
    live = bench_site(config)
    await live.start_meters()
    write(live.grid.port)
    daemon = start_gateway(path)
    base = f"http://127.0.0.1:{web_port}"
    stop = asyncio.Event()
    try:
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    async with http.get(base + "/api/v1/state") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert time.monotonic() < deadline, "the gateway did not start"
                await asyncio.sleep(0.1)
        await live.connect_chargers(ocpp_port)
        live.start_ticking(0.1)
        await asyncio.sleep(5)  # the chargers connect and settle
        idle: list[tuple[float, float]] = []
        watcher = asyncio.create_task(stream(base, idle, stop))
        cpu0, t0 = cpu_seconds(daemon.pid), time.monotonic()
        await asyncio.sleep(seconds)
        cpu_idle = (cpu_seconds(daemon.pid) - cpu0) / (time.monotonic() - t0)
        stop.set()
        await watcher
        stop = asyncio.Event()
        busy: list[tuple[float, float]] = []
        latencies: dict[str, list[float]] = {p: [] for p in PATHS}
        tasks = [asyncio.create_task(stream(base, busy, stop))]
        tasks += [asyncio.create_task(poller(base, latencies, stop)) for _ in range(CLIENTS)]
        cpu0, t0 = cpu_seconds(daemon.pid), time.monotonic()
        await asyncio.sleep(seconds)
        cpu_busy = (cpu_seconds(daemon.pid) - cpu0) / (time.monotonic() - t0)
        stop.set()
        await asyncio.gather(*tasks)
        out = {f"{p} p50": statistics.median(v) * 1000 for p, v in latencies.items()}
        out |= {f"{p} p95": pct(v, 0.95) * 1000 for p, v in latencies.items()}
        out["cpu idle"], out["cpu busy"] = cpu_idle, cpu_busy
        out["idle"], out["busy"] = timing(idle), timing(busy)  # type: ignore[assignment]
        return out
    finally:
        stop.set()
        await stop_gateway(daemon)
        await live.stop()


async def main(sizes: list[int], seconds: float) -> None:
    print(
        f"{'chargers':>8} {'state ms p50/p95':>17} {'chargers ms':>12} {'page ms':>10} "
        f"{'CPU idle/busy':>14} {'cycle ms idle/busy':>19} {'worst tick s idle/busy':>23}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            r = await measure(n, seconds, Path(tmp))
            lat = [f"{r[f'{p} p50']:.1f}/{r[f'{p} p95']:.1f}" for p in PATHS]
            idle, busy = r["idle"], r["busy"]
            print(
                f"{n:>8} {lat[0]:>17} {lat[1]:>12} {lat[2]:>10} "
                f"{r['cpu idle'] * 100:>6.1f}/{r['cpu busy'] * 100:.1f}% "
                f"{idle[0]:>9.2f}/{busy[0]:.2f} {idle[2]:>15.2f}/{busy[2]:.2f}",
                flush=True,
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4, 200])
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    asyncio.run(main(args.sizes, args.seconds))
