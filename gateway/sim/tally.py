"""What a simulated day did: energy, PV use, import, breaker excursions, start/stop cycles.

Definitions (also in docs/simulation.md):
- PV surplus = PV − household (cars and battery not counted), when positive.
- Cars' energy from PV: the part of their draw the surplus covers, split in proportion
  to each car's draw.
- Usable surplus: what the cars present and not full could have taken (each at
  min(charger max, car max)), after the battery's share while it is below its SOC
  target (the modes give it the surplus first).
- Exported while a car waited: export the cars present and not full had room for.
- Grid import during solar charging: net import, up to what Solar and Excess chargers draw.
- A breaker excursion is a stretch of time a phase imports more than the breaker.
  The gateway needs one cycle to see a change and a car up to its lag to follow a new
  limit: A·s are counted beyond the first cycle, and beyond that reaction time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from gateway.allocation.controller import Command
from gateway.model import Mode, Site
from gateway.sim.site import Bay, Reading

_SURPLUS_MODES = (Mode.SOLAR, Mode.EXCESS)


@dataclass(slots=True)
class ChargerTally:
    id: str
    mode: Mode
    pv_wh: float = 0.0
    changes: int = 0
    present_s: float = 0.0
    last_limit: float = 0.0
    energy_wh: float = 0.0  # filled in at the end
    starts: int = 0
    stops: int = 0
    switches: int = 0  # 1-/3-phase switches (phase_switching chargers)

    @property
    def changes_per_h(self) -> float:
        return self.changes / (self.present_s / 3600) if self.present_s > 0 else 0.0


@dataclass(slots=True)
class Excursion:
    peak_a: float = 0.0
    longest_s: float = 0.0
    beyond_cycle_as: float = 0.0  # A·s beyond the first cycle
    beyond_as: float = 0.0  # A·s beyond the reaction time
    since: float | None = None  # the stretch going on


@dataclass(slots=True)
class Tally:
    site: Site
    reaction_s: float
    chargers: list[ChargerTally]
    phases: list[Excursion] = field(default_factory=list)
    surplus_wh: float = 0.0
    usable_wh: float = 0.0
    used_wh: float = 0.0
    exported_wh: float = 0.0
    exported_waiting_wh: float = 0.0
    solar_import_wh: float = 0.0
    imported_wh: float = 0.0

    def __post_init__(self) -> None:
        self.phases = [Excursion() for _ in range(self.site.phases)]

    def add(
        self,
        now: float,
        dt: float,
        reading: Reading,
        bays: Sequence[Bay],
        commands: Sequence[Command],
    ) -> None:
        """Count the interval [now, now + dt], in which `reading` holds."""
        volts = self.site.voltage_v
        h = dt / 3600
        powers = [bay.power_w(volts) for bay in bays]
        ev_w = sum(powers)
        surplus = max(0.0, reading.pv_w - sum(reading.household_w))
        pv_to_ev = min(ev_w, surplus)
        room = 0.0
        solar_w = 0.0
        for bay, tally, power, command in zip(bays, self.chargers, powers, commands, strict=True):
            if pv_to_ev > 0.0 and power > 0.0:
                tally.pv_wh += pv_to_ev * power / ev_w * h
            if command.limit_a != tally.last_limit:
                tally.changes += 1
                tally.last_limit = command.limit_a
            if bay.ev is not None:
                tally.present_s += dt
            room += bay.room_w(volts)
            if tally.mode in _SURPLUS_MODES:
                solar_w += power
        battery = self.site.battery
        battery_first = 0.0
        soc = reading.battery_soc
        if battery is not None and soc is not None and soc < battery.soc_target:
            battery_first = min(surplus, battery.max_charge_w)
        usable = min(room, surplus - battery_first)
        net_w = sum(reading.grid_a) * volts
        export = max(0.0, -net_w)
        self.surplus_wh += surplus * h
        if usable > 0.0:
            self.usable_wh += usable * h
            self.used_wh += min(pv_to_ev, usable) * h
        self.exported_wh += export * h
        self.exported_waiting_wh += min(export, max(0.0, room - ev_w)) * h
        self.imported_wh += max(0.0, net_w) * h
        self.solar_import_wh += min(max(0.0, net_w), solar_w) * h
        self._excursions(now, dt, reading.grid_a)

    def _excursions(self, now: float, dt: float, grid_a: Sequence[float]) -> None:
        """Per phase: peak, longest stretch, and A·s beyond one cycle and beyond the
        reaction time (`now` is on the cycle grid, so the first cycle is [since, since + dt])."""
        breaker = self.site.main_breaker_a
        for excursion, current in zip(self.phases, grid_a, strict=True):
            over = current - breaker
            if over <= 1e-9:
                excursion.since = None
                continue
            if excursion.since is None:
                excursion.since = now
            excursion.peak_a = max(excursion.peak_a, over)
            lasted = now + dt - excursion.since
            excursion.longest_s = max(excursion.longest_s, lasted)
            if lasted > dt + 1e-9:
                excursion.beyond_cycle_as += over * dt
            beyond = min(dt, lasted - self.reaction_s)
            if beyond > 1e-9:
                excursion.beyond_as += over * beyond

    @property
    def used_pct(self) -> float | None:
        return 100 * self.used_wh / self.usable_wh if self.usable_wh > 0 else None

    @property
    def beyond_as(self) -> float:
        return sum(e.beyond_as for e in self.phases)
