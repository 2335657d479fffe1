"""The figures of every shipped scenario, as rows of docs/simulation.md's table.

Each scenario runs at its own cycle (a few minutes in all); paste the rows into
"Their figures" when the control or a scenario changes. Run: python bench/scenarios.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.sim.scenario import load_scenario
from gateway.sim.simulation import Result, simulate

ROOT = Path(__file__).resolve().parent.parent

SHIPPED = [
    *sorted((ROOT / "gateway" / "sim" / "scenarios").glob("*.toml")),
    ROOT / "gateway" / "sim" / "demo" / "site.toml",
]


def row(name: str, result: Result) -> str:
    t = result.tally
    got = sum(c.energy_wh for c in t.chargers) / 1000
    wanted = sum(c.needed_wh for c in t.chargers) / 1000
    visits = [v for c in t.chargers for v in c.visits]
    full = sum(v.full_s is not None for v in visits)
    starts = max(c.starts_per_h for c in t.chargers)
    changes = max(c.changes_per_h for c in t.chargers)
    battery = (
        "-"
        if t.battery_min_soc is None
        else f"{t.battery_min_soc:.0f} %, {t.below_soc_min_s / 60:.0f} min"
    )
    house = max(0.0, t.imported_wh - t.grid_to_cars_wh) / 1000
    cells = [
        f"`{name}`",
        f"{got:.1f} / {wanted:.1f}",
        f"{t.pv_to_cars_wh / 1000:.1f} / {t.battery_to_cars_wh / 1000:.1f} / "
        f"{t.grid_to_cars_wh / 1000:.1f}",
        f"{full} of {len(visits)}",
        f"{starts:.1f}",
        f"{changes:.1f}",
        f"{t.grid_to_cars_wh / 1000:.1f} / {house:.1f}",
        battery,
        f"{t.beyond_as:.1f}",
    ]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    for path in SHIPPED:
        print(row(path.name, simulate(load_scenario(path))), flush=True)


if __name__ == "__main__":
    main()
