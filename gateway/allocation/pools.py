"""The sources of one cycle, built once from the snapshot's household figures.

- physical: what the wires and inverter can carry for chargers = grid (breaker per
  phase, import cap) + the inverter's contribution (export, battery charge that can be
  redirected, battery discharge above SOC min);
- surplus: the part of that which is solar (export, redirectable battery charge at or
  above SOC target, battery discharge potential above SOC target);
- excess: export above the excess threshold.

Every grant is taken from physical and its circuits exactly, and from surplus and
excess as far as they reach, so no watt is given twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.allocation.capacity import INF, Capacity
from gateway.model import Site


@dataclass(frozen=True, slots=True)
class BatteryView:
    """What the battery may do this cycle (thresholds already carry any hysteresis)."""

    above_min: bool  # may discharge for Standard charging
    at_target: bool  # SOC >= target: its charge may be redirected; Solar may run
    above_target: bool  # SOC > target: its discharge counts as surplus
    charge_a: float  # present charge current (total amps over all phases)
    discharge_room_a: float  # extra discharge it could still give (total amps)


def battery_view(
    site: Site, soc: float | None, power_w: float | None, volts: float, pv_w: float | None = None
) -> BatteryView:
    battery = site.battery
    if battery is None or soc is None:
        # No battery, or its SOC unknown: never count on it, never block Solar on it.
        return BatteryView(False, True, False, 0.0, 0.0)
    power = power_w or 0.0
    charge = max(0.0, -power) / volts
    room = max(0.0, battery.max_discharge_w - max(0.0, power)) / volts
    inverter = site.inverter
    if inverter is not None and inverter.max_w is not None:
        # Redirected charge and extra discharge both raise the inverter's AC output,
        # which already carries the PV and the battery: the limit is on the whole output.
        output_w = (pv_w or 0.0) + power
        output_room = max(0.0, inverter.max_w - output_w) / volts
        charge = min(charge, output_room)
        room = min(room, output_room - charge)
    return BatteryView(
        above_min=soc >= battery.soc_min,
        at_target=soc >= battery.soc_target,
        above_target=soc > battery.soc_target,
        charge_a=charge if soc >= battery.soc_target else 0.0,
        discharge_room_a=room,
    )


class Pools:
    __slots__ = ("circuits", "excess", "physical", "surplus")

    def __init__(
        self,
        physical: Capacity,
        surplus: Capacity,
        excess: Capacity,
        circuits: dict[str, Capacity],
    ) -> None:
        self.physical = physical
        self.surplus = surplus
        self.excess = excess
        self.circuits = circuits

    def copy(self) -> Pools:
        return Pools(
            self.physical.copy(),
            self.surplus.copy(),
            self.excess.copy(),
            {name: c.copy() for name, c in self.circuits.items()},
        )

    def wires(self, mask: int, circuits: tuple[str, ...]) -> float:
        """What the breaker, inverter and the charger's circuits still carry on `mask`."""
        best = self.physical.available(mask)
        for name in circuits:
            v = self.circuits[name].available(mask)
            if v < best:
                best = v
        return best

    def grant(self, mask: int, circuits: tuple[str, ...], amount: float) -> None:
        self.physical.take(mask, amount)
        for name in circuits:
            self.circuits[name].take(mask, amount)
        self.surplus.take_up_to(mask, amount)
        self.excess.take_up_to(mask, amount)


def build_pools(
    site: Site,
    household: tuple[float, ...],
    battery: BatteryView,
    volts: float,
    output_w: float = 0.0,
) -> Pools:
    """`output_w`: the inverter's present AC output (PV + battery discharge)."""
    n = site.phases
    importing = [max(0.0, h) for h in household]
    export = [max(0.0, -h) for h in household]

    inverter = site.inverter
    asymmetric = inverter is not None and inverter.asymmetric
    # What each phase of the inverter can still add beyond its present output.
    phase_max = (
        max(0.0, inverter.max_phase_w - output_w / n) / volts
        if inverter is not None and inverter.max_phase_w
        else INF
    )

    def inverter_share(export_a: list[float], extra_a: float) -> Capacity:
        """Shape the inverter's contribution: split evenly, or one pool for any phase."""
        if asymmetric:
            limits = [max(0.0, phase_max - imp) for imp in importing]
            return Capacity.pool(limits, sum(export_a) + extra_a)
        per_phase_extra = min(extra_a / n, phase_max)
        return Capacity.per_phase([e + per_phase_extra for e in export_a])

    if site.allow_grid_charging:
        grid = Capacity.per_phase([site.main_breaker_a - imp for imp in importing])
        if site.max_import_w is not None:
            grid.limit_total(site.max_import_w / volts - sum(importing))
    else:
        grid = Capacity.zero()

    discharge_physical = battery.discharge_room_a if battery.above_min else 0.0
    discharge_surplus = battery.discharge_room_a if battery.above_target else 0.0
    physical = grid + inverter_share(export, battery.charge_a + discharge_physical)
    surplus = inverter_share(export, battery.charge_a + discharge_surplus)

    excess_a = max(0.0, sum(export) * volts - site.excess_threshold_w) / volts
    excess = inverter_share([0.0] * n, excess_a)

    circuits = {c.name: Capacity.per_phase([c.limit_a] * n) for c in site.circuits}
    return Pools(physical, surplus, excess, circuits)
