"""The sources of one cycle, built once from the snapshot's household figures.

- physical: what the wires and inverter can carry for chargers = grid (breaker per
  phase, import cap) + the inverter's contribution (export, battery charge that can be
  redirected, battery discharge the battery policy allows some car);
- surplus: the sun's part (export less the battery's measured discharge, redirectable
  battery charge at or above SOC target) and the owner's opt-in battery assist;
- excess: the sun's export above the excess threshold.
Per phase, or with `[site] metering = "net"` one total usable on any phase.

Every grant is taken from physical and its circuits exactly, and from surplus and
excess as far as they reach, so no watt is given twice.
"""

from __future__ import annotations

from typing import NamedTuple

from gateway.allocation.battery import allowances_w, covers_load
from gateway.allocation.capacity import INF, Capacity, positive
from gateway.model import Metering, Site


class BatteryView(NamedTuple):
    """What the battery does and may do this cycle (thresholds carry any hysteresis).

    A NamedTuple, like the allocation's per-charger results: one is built every cycle.
    """

    supplies: bool  # some mode may use its discharge (the physical pool counts its room)
    at_target: bool  # SOC >= target: its charge may be redirected; Solar may run
    below_min: bool  # SOC < soc_min: it supplies no car
    # It would cover a car's load, but the policy does not let it supply the mode's
    # minimum (Standard, Eco): such a car waits for the sun (or a battery that stops).
    standard_waits: bool
    eco_waits: bool
    charge_a: float  # redirectable charge current (total amps over all phases)
    discharge_room_a: float  # extra discharge it could still give (total amps)
    discharge_a: float  # its measured discharge (total amps): battery energy, never surplus
    assist_w: float  # what the owner lets Solar and Excess cars take from it (W)


_NO_BATTERY = BatteryView(False, True, False, False, False, 0.0, 0.0, 0.0, 0.0)


def battery_view(
    site: Site,
    soc: float | None,
    power_w: float | None,
    volts: float,
    pv_w: float | None = None,
    grid_w: float = 0.0,
) -> BatteryView:
    """`grid_w`: the site's net grid power (+ import), which tells whether the battery
    would cover a car's load."""
    battery = site.battery
    if battery is None:
        return _NO_BATTERY
    power = power_w or 0.0
    out = positive(power)  # its discharge (W)
    discharge = out / volts
    if soc is None:
        # SOC unknown: never count on it, never block Solar on it; what it measurably
        # discharges is still not the sun's.
        return _NO_BATTERY._replace(discharge_a=discharge)
    charge = positive(-power) / volts
    room = positive(battery.max_discharge_w - out) / volts
    inverter = site.inverter
    if inverter is not None and inverter.max_w is not None:
        # Redirected charge and extra discharge both raise the inverter's AC output,
        # which already carries the PV and the battery: the limit is on the whole output.
        output_w = (pv_w or 0.0) + power
        output_room = positive(inverter.max_w - output_w) / volts
        # (min(charge, output_room) and min(room, output_room - charge), written out.)
        if output_room < charge:
            charge = output_room
        if output_room - charge < room:
            room = output_room - charge
    assist, standard_w, eco_w = allowances_w(battery, soc)
    standard = standard_w > 0.0
    eco = eco_w > 0.0
    # A battery the gateway holds does not cover a car it may not supply: the hold caps
    # its discharge once the car charges (gateway/allocation/hold.py).
    covers = covers_load(power, grid_w) and not battery.held
    at_target = soc >= battery.soc_target
    # (Positional, in the fields' order: keywords make the NamedTuple's __new__ slower.)
    return BatteryView(
        assist > 0.0 or standard or eco,  # supplies
        at_target,
        soc < battery.soc_min,  # below_min
        covers and not standard,  # standard_waits
        covers and not eco,  # eco_waits
        charge if at_target else 0.0,  # charge_a
        room,  # discharge_room_a
        discharge,  # discharge_a
        assist,  # assist_w
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
    # (Conditional expressions and positive(), not min() and max(): this runs every cycle.)
    importing = [h if h > 0.0 else 0.0 for h in household]
    export = [-h if h < 0.0 else 0.0 for h in household]

    inverter = site.inverter
    asymmetric = inverter is not None and inverter.asymmetric
    # What each phase of the inverter can still add beyond its present output.
    phase_max = (
        positive(inverter.max_phase_w - output_w / n) / volts
        if inverter is not None and inverter.max_phase_w
        else INF
    )

    def inverter_share(export_a: list[float], extra_a: float) -> Capacity:
        """Shape the inverter's contribution: split evenly, or one pool for any phase."""
        if asymmetric:
            limits = [phase_max - imp if phase_max - imp > 0.0 else 0.0 for imp in importing]
            return Capacity.pool(limits, sum(export_a) + extra_a)
        per_phase_extra = extra_a / n
        if phase_max < per_phase_extra:
            per_phase_extra = phase_max
        return Capacity.per_phase(export_a, per_phase_extra)

    if site.allow_grid_charging:
        grid = Capacity.per_phase([site.main_breaker_a - imp for imp in importing])
        if site.max_import_w is not None:
            grid.limit_total(site.max_import_w / volts - sum(importing))
    else:
        grid = Capacity.zero()

    room = battery.discharge_room_a if battery.supplies else 0.0
    physical = grid + inverter_share(export, battery.charge_a + room)

    # The sun's export: what the grid would take from PV alone. The battery's measured
    # discharge covers load (a car's too), so it is taken off the export first; the
    # owner's assist, if any, is added back for Solar and Excess (and Eco's part above
    # its minimum, which follows the same surplus).
    assist_a = 0.0
    if battery.assist_w > 0.0:
        load = -sum(household)
        to_cars = positive(load if load < battery.discharge_a else battery.discharge_a)
        assist_a = battery.assist_w / volts
        if battery.discharge_room_a + to_cars < assist_a:
            assist_a = battery.discharge_room_a + to_cars
    if site.metering is Metering.NET:
        # Only the sum over the phases is billed: import on one phase is paid by export
        # on another, and a car on any phase can use the whole of it.
        sun_a = positive(-sum(household) - battery.discharge_a)
        anywhere = [INF] * n
        surplus = Capacity.pool(anywhere, sun_a + battery.charge_a + assist_a)
        excess_a = positive(sun_a * volts - site.excess_threshold_w) / volts
        excess = Capacity.pool(anywhere, excess_a)
    else:
        per_phase = battery.discharge_a / n
        sun = [-h - per_phase if -h - per_phase > 0.0 else 0.0 for h in household]
        surplus = inverter_share(sun, battery.charge_a + assist_a)
        excess_a = positive(sum(sun) * volts - site.excess_threshold_w) / volts
        excess = inverter_share([0.0] * n, excess_a)

    circuits = {c.name: Capacity.per_phase([c.limit_a] * n) for c in site.circuits}
    return Pools(physical, surplus, excess, circuits)
