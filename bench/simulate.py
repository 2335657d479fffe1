"""Simulated seconds per wall second: a 24 h day at a 1 s cycle, 4 and 100 chargers.

The sunny scenario's house, PV and battery, scaled with the fleet; mixed modes, 1- and
3-phase cars arriving through the day. Also prints the CPU time (the wall time of a shared
machine varies) and the shares of the time spent in the allocator, in the whole controller
step (allocator included) and in the simulation's own site model and tally.
Run: python bench/simulate.py [--hours H] [--chargers N ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gateway.allocation.controller as controller_module
from gateway.config import ChargerConfig
from gateway.model import Charger, Mode
from gateway.sim.scenario import Scenario, load_scenario
from gateway.sim.simulation import simulate
from gateway.sim.site import Session

ROOT = Path(__file__).resolve().parent.parent
MODES = list(Mode)
MAPS = ["ABC", "BCA", "CAB"]


def fleet(n: int, hours: float) -> Scenario:
    base = load_scenario(ROOT / "gateway" / "sim" / "scenarios" / "sunny-two-cars.toml")
    chargers = tuple(
        ChargerConfig(
            charger=Charger(
                id=f"c{i}",
                mode=MODES[i % 4],
                min_a=6,
                max_a=16,
                phases=1 if i % 3 == 2 else 3,
                priority=1 + i % 3,
                phase_map=MAPS[i % 3],
            ),
            failsafe_a=6,
        )
        for i in range(n)
    )
    sessions = tuple(
        Session(
            charger=f"c{i}",
            arrive_s=(6 + (i * 7) % 12) * 3600,
            leave_s=(12 + (i * 5) % 12) * 3600,
            energy_wh=8000 + 1000 * (i % 20),
            phases=1 if i % 3 == 2 else 3,
        )
        for i in range(n)
    )
    site = base.site._replace(main_breaker_a=35 + 6 * n)
    return replace(
        base,
        site=site,
        chargers=chargers,
        sessions=sessions,
        start_s=0.0,
        duration_s=hours * 3600,
        cycle_s=1.0,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--chargers", type=int, nargs="+", default=[4, 100])
    args = parser.parse_args()

    # Time spent in the allocator, and in the whole controller step around it: the rest
    # is the simulation's own (site model, tally).
    spent = {"allocator": 0.0, "controller": 0.0}

    def timed(key, function):  # type: ignore[no-untyped-def]
        def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[key] += time.perf_counter() - started

        return wrapper

    controller_module.allocate = timed("allocator", controller_module.allocate)
    Controller = controller_module.Controller
    Controller.step = timed("controller", Controller.step)  # type: ignore[method-assign]
    print(
        f"{'chargers':>8} {'cycles':>7} {'wall s':>8} {'cpu s':>7} {'sim s / wall s':>15} "
        f"{'allocator':>10} {'controller':>11} {'simulation':>11}"
    )
    for n in args.chargers:
        spent["allocator"] = spent["controller"] = 0.0
        cpu = time.process_time()
        result = simulate(fleet(n, args.hours))
        cpu = time.process_time() - cpu
        wall = result.wall_s
        print(
            f"{n:>8} {result.cycles:>7} {wall:>8.1f} {cpu:>7.1f} "
            f"{result.scenario.duration_s / wall:>15,.0f} "
            f"{100 * spent['allocator'] / wall:>9.0f}% {100 * spent['controller'] / wall:>10.0f}% "
            f"{100 * (1 - spent['controller'] / wall):>10.0f}%"
        )


if __name__ == "__main__":
    main()
