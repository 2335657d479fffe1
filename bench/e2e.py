"""Reaction time of the whole gateway: a change in the grid meter's registers until every
charger holds its new limit, with 4, 50 and 200 chargers at a 1 s cycle; and the gateway's
CPU share and resident memory at 200 chargers.

The gateway runs as its own process (`evse-gateway run`), so its CPU time and memory are
its own; the simulated site (an SDM630 on Modbus TCP, N OCPP charge points) runs here.
Every charger is a standard 3-phase one in `shared` distribution: stepping the household
load between two levels moves every charger between 10 A and 8 A. Cars take at most
6.5 A, so what they draw does not change with the limit and the steps stay clean. The
steps start once every charger holds its limit (steady state).

Run: python bench/e2e.py [--sizes 4 50 200] [--steps 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# bench/ocpp.py would hide the ocpp library: import from the project root, not this folder.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from gateway.config import Config, load_config  # noqa: E402
from gateway.sim.ev import EV  # noqa: E402
from gateway.sim.live import LiveSite  # noqa: E402
from gateway.sim.series import Series  # noqa: E402
from gateway.sim.site import Premises  # noqa: E402

HIGH_A, LOW_A = 10.0, 8.0  # per charger, in the two household states
CAR_A = 6.5  # what every car takes
# Meter floats and rounding down to 0.1 A can land one step below the exact share.
TOLERANCE_A = 0.15
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config_text(n: int, breaker: float, grid_port: int, ocpp_port: int) -> str:
    chargers = "".join(
        f'\n[[chargers]]\nid = "cp{i:03d}"\nmax_a = 16\nfailsafe_a = 6\n' for i in range(n)
    )
    return f"""
[site]
main_breaker_a = {breaker}
distribution = "shared"

[control]
cycle_s = 1.0
ramp_up_a_per_s = 1000
dead_band_a = 0.1
min_pause_s = 0

[[meters]]
name = "grid"
model = "sdm630"
role = "grid"
host = "127.0.0.1"
port = {grid_port}
interval_s = 0.2

[ocpp]
host = "127.0.0.1"
port = {ocpp_port}
meter_interval_s = 2
refresh_s = 10
validity_s = 30

[export]
enabled = false

[web]
enabled = false

[state]
dir = "{tempfile.gettempdir()}/evse-bench-state"

[log]
level = "warning"
{chargers}"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


async def wait(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the chargers did not settle")
        await asyncio.sleep(0.005)


def bench_site(config: Config) -> LiveSite:
    """The site for `config`: N cars that take 6.5 A, chargers alternately 1.6 and 2.0.1."""
    return LiveSite(
        config,
        Premises(config.site, Series([0.0, 86400.0], [(0.0,), (0.0,)])),
        versions={c.id: ("1.6", "2.0.1")[i % 2] for i, c in enumerate(config.chargers)},
        cars={c.id: EV(max_a=CAR_A, energy_wanted_wh=1e9, lag_s=0.2) for c in config.chargers},
        arrivals_s={c.id: 0.0 for c in config.chargers},
        meter_interval_s=2.0,
        car_tick_s=0.5,
    )


def start_gateway(config_path: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", "run", "-c", str(config_path)],
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )


async def stop_gateway(daemon: subprocess.Popen) -> None:
    # Wait without blocking this loop: our simulated chargers answer the gateway's
    # websocket close handshake from it.
    daemon.terminate()
    deadline = time.monotonic() + 20
    while daemon.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    if daemon.poll() is None:
        daemon.kill()


async def measure(n: int, steps: int, workdir: Path) -> dict[str, float]:
    breaker = 12.0 * n + 20
    household = {HIGH_A: breaker - HIGH_A * n, LOW_A: breaker - LOW_A * n}  # per phase, A
    ocpp_port = free_port()
    path = workdir / f"bench-{n}.toml"
    path.write_text(config_text(n, breaker, 1, ocpp_port))
    config = load_config(path)
    live = bench_site(config)
    live.add_load_w((household[HIGH_A] * 230.0,) * 3)
    await live.start_meters()
    path.write_text(config_text(n, breaker, live.grid.port, ocpp_port))
    daemon = start_gateway(path)
    try:
        with socket.socket() as probe:
            deadline = time.monotonic() + 30
            while probe.connect_ex(("127.0.0.1", ocpp_port)) != 0:
                assert time.monotonic() < deadline, "the gateway did not start"
                await asyncio.sleep(0.05)
        await live.connect_chargers(ocpp_port)
        live.start_ticking(0.1)

        def holding(amps: float) -> bool:
            return all(abs(s.point.effective_limit_a() - amps) < TOLERANCE_A for s in live.stations)

        await wait(lambda: holding(HIGH_A), 120)
        per_charger: list[float] = []
        per_step: list[float] = []
        target = HIGH_A
        for _ in range(steps):
            target = LOW_A if target == HIGH_A else HIGH_A
            live.add_load_w((household[target] * 230.0,) * 3)
            await live.tick()  # the registers change now
            changed = time.monotonic()
            pending = {s.charger_id: s for s in live.stations}
            while pending:
                now = time.monotonic()
                for cid, station in list(pending.items()):
                    if abs(station.point.effective_limit_a() - target) < TOLERANCE_A:
                        per_charger.append(now - changed)
                        del pending[cid]
                assert now - changed < 30, f"never got {target} A: " + ", ".join(
                    f"{c} at {s.point.effective_limit_a()} A" for c, s in pending.items()
                )
                await asyncio.sleep(0.002)
            per_step.append(time.monotonic() - changed)
            await asyncio.sleep(0.5)
        overload: list[float] = []
        over_w = (household[HIGH_A] + (HIGH_A - CAR_A) * n + 1.0) * 230.0
        for _ in range(steps):
            live.add_load_w((over_w,) * 3)
            await live.tick()
            changed = time.monotonic()
            pending = {s.charger_id: s for s in live.stations}
            while pending:
                now = time.monotonic()
                for cid, station in list(pending.items()):
                    if station.point.effective_limit_a() < HIGH_A - TOLERANCE_A:
                        overload.append(now - changed)
                        del pending[cid]
                assert now - changed < 30, "the chargers were not cut"
                await asyncio.sleep(0.002)
            live.add_load_w((household[HIGH_A] * 230.0,) * 3)
            await wait(lambda: holding(HIGH_A), 60)
        # Steady state: CPU and memory over 10 s of ordinary cycles.
        cpu0, t0 = cpu_seconds(daemon.pid), time.monotonic()
        await asyncio.sleep(10)
        cpu_share = (cpu_seconds(daemon.pid) - cpu0) / (time.monotonic() - t0)
        return {
            "p50": statistics.median(per_charger),
            "p99": pct(per_charger, 0.99),
            "max": max(per_charger),
            "step_max": max(per_step),
            "over_p50": statistics.median(overload),
            "over_p99": pct(overload, 0.99),
            "cpu": cpu_share,
            "rss": rss_mb(daemon.pid),
        }
    finally:
        await stop_gateway(daemon)
        await live.stop()


async def main(sizes: list[int], steps: int) -> None:
    print(
        f"{'chargers':>8} {'p50 s':>7} {'p99 s':>7} {'max s':>7} {'last of step':>12} "
        f"{'gateway CPU':>11} {'RSS MB':>7} {'overload p50 s':>14} {'p99 s':>7}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            r = await measure(n, steps, Path(tmp))
            print(
                f"{n:>8} {r['p50']:>7.2f} {r['p99']:>7.2f} {r['max']:>7.2f} "
                f"{r['step_max']:>12.2f} {r['cpu'] * 100:>10.1f}% {r['rss']:>7.1f} "
                f"{r['over_p50']:>14.2f} {r['over_p99']:>7.2f}",
                flush=True,
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4, 50, 200])
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    asyncio.run(main(args.sizes, args.steps))
