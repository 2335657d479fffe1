"""How fast does a new limit reach N chargers, and what does the central system cost?

    python bench/ocpp.py [--sizes 10 100 500]

For each N the central system runs in this process; N simulated chargers (1.6) run in a
child process on 127.0.0.1, so the CPU and memory figures are the gateway's alone. It
prints, per N: the time from `set_limit` to each charger having the new limit (p50, p99,
max), the gateway's CPU time for that push cycle and per steady cycle (the hub calling
`set_limit` with unchanged values every second while meter values flow), and its RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

# Python puts this script's folder first on sys.path, where this file would shadow the
# `ocpp` library: swap it for the checkout root.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from gateway.config import ChargerConfig, Config  # noqa: E402
from gateway.model import Charger, Site  # noqa: E402
from gateway.ocpp.config import OcppConfig  # noqa: E402
from gateway.ocpp.server import CentralSystem  # noqa: E402
from gateway.sim.chargepoint import Profile, SimChargePoint  # noqa: E402
from gateway.sim.ev import EV  # noqa: E402

LIMIT_A = 11.0
STEADY_CYCLES = 5


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class TimedSim(SimChargePoint):
    """Notes when the new limit first takes effect."""

    got_at: float | None = None

    def install(self, profile: Profile) -> str:
        status = super().install(profile)
        if self.got_at is None and self.effective_limit_a() == LIMIT_A:
            self.got_at = time.time()
        return status


async def run_sims(n: int, port: int) -> None:
    sims = [
        TimedSim(f"B{i}", f"ws://127.0.0.1:{port}/B{i}", ev=EV(), meter_interval_s=10, tick_s=0.5)
        for i in range(n)
    ]
    for sim in sims:
        await sim.start()
    while not all(sim.connected.is_set() and sim.profiles for sim in sims):
        await asyncio.sleep(0.05)
    print("ready", flush=True)
    deadline = time.monotonic() + 60
    while any(sim.got_at is None for sim in sims) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    print(json.dumps([sim.got_at for sim in sims]), flush=True)
    await asyncio.sleep(STEADY_CYCLES + 1)  # keep meter values flowing for the steady phase
    for sim in sims:
        await sim.stop()


async def bench(n: int) -> dict:
    rss_before = rss_mb()
    chargers = tuple(
        ChargerConfig(Charger(f"B{i}", min_a=6, max_a=16), failsafe_a=6.0) for i in range(n)
    )
    ocpp = OcppConfig(host="127.0.0.1", port=0, boot_wait_s=1.0, refresh_s=30, validity_s=120)
    cs = CentralSystem(
        Config(path="bench", site=Site(main_breaker_a=63), chargers=chargers, ocpp=ocpp)
    )
    await cs.start()
    child = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--child", str(n), str(cs.port), stdout=subprocess.PIPE
    )
    assert child.stdout is not None
    line = await child.stdout.readline()
    assert line.strip() == b"ready", line
    await asyncio.sleep(0.5)  # let the setups finish

    cpu0, t0 = time.process_time(), time.time()
    for cid in cs.targets:
        cs.set_limit(cid, LIMIT_A)
    while any(s.limit_a != LIMIT_A for s in cs.states().values()):
        await asyncio.sleep(0.001)
    push_cpu = time.process_time() - cpu0
    got = json.loads(await child.stdout.readline())
    latencies = sorted((g - t0) * 1000 for g in got if g is not None)

    cpu0 = time.process_time()
    for _ in range(STEADY_CYCLES):
        for cid in cs.targets:
            cs.set_limit(cid, LIMIT_A)
        cs.states()
        await asyncio.sleep(1.0)
    steady_cpu = (time.process_time() - cpu0) / STEADY_CYCLES
    rss_after = rss_mb()
    await child.wait()
    await cs.stop()
    return {
        "n": n,
        "missing": len(got) - len(latencies),
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "max_ms": latencies[-1],
        "push_cpu_ms": push_cpu * 1000,
        "steady_cpu_ms": steady_cpu * 1000,
        "rss_mb": rss_after,
        "rss_growth_mb": rss_after - rss_before,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 500])
    parser.add_argument("--child", type=int, nargs=2, metavar=("N", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(run_sims(*args.child))
        return
    print(f"{'N':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'push CPU ms':>12} "
          f"{'CPU ms/cycle':>13} {'RSS MB':>7} {'+MB':>6} missing")  # fmt: skip
    for n in args.sizes:
        r = asyncio.run(bench(n))
        print(f"{r['n']:>5} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['max_ms']:>8.1f} "
              f"{r['push_cpu_ms']:>12.1f} {r['steady_cpu_ms']:>13.2f} {r['rss_mb']:>7.1f} "
              f"{r['rss_growth_mb']:>6.1f} {r['missing']}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
