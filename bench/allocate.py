"""Median time of one allocation for 1, 10, 100 and 1000 chargers.

Mixed modes, 1- and 3-phase chargers, a battery, an asymmetric inverter and two
circuits, for each distribution strategy. Run: python bench/allocate.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.allocation.allocator import allocate
from gateway.model import (
    Battery,
    Charger,
    Circuit,
    Distribution,
    Inverter,
    Measurements,
    Mode,
    Site,
    Snapshot,
)

MODES = list(Mode)
MAPS = ["ABC", "BCA", "CAB"]


def snapshot(n: int, distribution: Distribution) -> Snapshot:
    chargers = tuple(
        Charger(
            id=f"c{i}",
            mode=MODES[i % 4],
            min_a=6,
            max_a=16 if i % 3 else 32,
            phases=1 if i % 2 else 3,
            priority=1 + i % 5,
            phase_map=MAPS[i % 3],
            status="Charging" if i % 7 else "Available",
            draw_a=(4.0, 4.0 if i % 2 == 0 else 0.0, 4.0 if i % 2 == 0 else 0.0),
        )
        for i in range(n)
    )
    ids = [c.id for c in chargers]
    # Scale the site with the fleet so every strategy has real work at every size.
    breaker = 25 + 8 * n
    site = Site(
        main_breaker_a=breaker,
        max_import_w=230 * breaker * 2,
        distribution=distribution,
        excess_threshold_w=3000,
        battery=Battery(max_charge_w=5000, max_discharge_w=5000, soc_min=20, soc_target=80),
        inverter=Inverter(max_w=15000 + 500 * n, max_phase_w=6000 + 200 * n, asymmetric=True),
        circuits=(
            Circuit("garage", 6 * n + 10, tuple(ids[0::2])),
            Circuit("carport", 4 * n + 10, tuple(ids[1::3])),
        ),
    )
    grid = tuple(4.0 * n * (1 if n % 2 else 0.9) - 12 for _ in range(3))
    return Snapshot(
        site=site,
        measurements=Measurements(
            grid_current_a=grid, pv_power_w=9000, battery_soc=85, battery_power_w=-2000
        ),
        chargers=chargers,
    )


def median_seconds(snap: Snapshot, budget_s: float = 1.0) -> float:
    times = []
    deadline = time.perf_counter() + budget_s
    while len(times) < 5 or (time.perf_counter() < deadline and len(times) < 2000):
        start = time.perf_counter()
        allocate(snap)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    sizes = [1, 10, 100, 1000]
    print(f"python {sys.version.split()[0]}; median of one allocation, milliseconds")
    print(f"{'distribution':<12}" + "".join(f"{n:>10}" for n in sizes))
    for distribution in Distribution:
        cells = [median_seconds(snapshot(n, distribution)) * 1000 for n in sizes]
        print(f"{distribution.value:<12}" + "".join(f"{c:>10.3f}" for c in cells))


if __name__ == "__main__":
    main()
