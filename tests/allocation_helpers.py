"""Small builders so allocation tests read like the contract's worked examples."""

from __future__ import annotations

from gateway.allocation.allocator import allocate
from gateway.model import (
    Allocation,
    Battery,
    Charger,
    Distribution,
    Measurements,
    Mode,
    Site,
    Snapshot,
)


def site(breaker: float = 25, phases: int = 3, distribution: str = "priority", **kw) -> Site:
    return Site(
        main_breaker_a=breaker, phases=phases, distribution=Distribution(distribution), **kw
    )


def charger(
    cid: str,
    mode: str = "standard",
    min_a: float = 6,
    max_a: float = 16,
    phases: int = 3,
    priority: int = 1,
    status: str = "Charging",
    **kw,
) -> Charger:
    return Charger(
        id=cid,
        mode=Mode(mode),
        min_a=min_a,
        max_a=max_a,
        phases=phases,
        priority=priority,
        status=status,
        **kw,
    )


def run(
    s: Site,
    grid: tuple[float, ...],
    *chargers: Charger,
    soc: float | None = None,
    battery_w: float | None = None,
    pv_w: float | None = None,
) -> Allocation:
    m = Measurements(
        grid_current_a=grid, battery_soc=soc, battery_power_w=battery_w, pv_power_w=pv_w
    )
    return allocate(Snapshot(site=s, measurements=m, chargers=chargers))


def amps(result: Allocation) -> list[float]:
    return [c.allocated_a for c in result.chargers]


BATTERY = Battery(max_charge_w=4140, max_discharge_w=4140, soc_min=20, soc_target=80)
