"""What a simulated day did: energy and where it came from, PV use, import, the battery,
breaker excursions, start/stop cycles.

Definitions (also in docs/simulation.md):
- PV surplus = PV − household (cars and battery not counted), when positive.
- Where the cars' energy came from, each cycle: PV serves the household first and the
  cars next (so the cars' PV is the part of their draw the surplus covers); battery
  discharge serves what is left of the household first and the cars next; the rest of
  the cars' draw is grid import. Each part is split over the cars in proportion to their
  draw, so a car's `pv_wh + battery_wh + grid_wh` is its energy. Charging the battery
  takes no car energy: the site model charges it only from what the cars leave.
  `grid_to_cars_wh` is at most the net import, and the rest of the import is the house's.
- Usable surplus: what the cars present and not full could have taken (each at
  min(charger max, car max)), after the battery's share while it is below its SOC
  target (the modes give it the surplus first).
- Exported while a car waited: export the cars present and not full had room for.
- Grid import during solar charging: net import, up to what Solar and Excess chargers draw.
- Battery: the lowest SOC seen, and the time spent below `[site.battery] soc_min`.
- A visit is one car at one charger: the energy it wanted, what it got, and when it was
  full (the end of the cycle in which it got what it wanted; None when it left, or the
  run ended, before).
- A breaker excursion is a stretch of time a phase imports more than the breaker.
  The gateway needs one cycle to see a change and a car up to its lag to follow a new
  limit: A·s are counted beyond the first cycle, and beyond that reaction time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from gateway.allocation.controller import Command
from gateway.model import Battery, Mode, Site
from gateway.sim.site import Bay, Reading, Session

_SURPLUS_MODES = (Mode.SOLAR, Mode.EXCESS)
# Every cycle's min and max of two values are written out as comparisons: in Python 3.11
# the builtins parse keyword arguments on every call, ~30 times the cost of the
# comparison. `b if b < a else a` is exactly min(a, b) and `b if b > a else a` max(a, b)
# (the first argument wins a tie, a NaN compares False), so the figures stay the same.


@dataclass(slots=True)
class Visit:
    session: Session
    delivered_wh: float = 0.0
    full_s: float | None = None  # when the car was first seen full

    @property
    def needed_wh(self) -> float:
        return self.session.energy_wh


@dataclass(slots=True)
class ChargerTally:
    id: str
    mode: Mode
    pv_wh: float = 0.0
    battery_wh: float = 0.0
    grid_wh: float = 0.0
    changes: int = 0
    present_s: float = 0.0
    last_limit: float = 0.0
    energy_wh: float = 0.0  # filled in at the end
    starts: int = 0
    stops: int = 0
    switches: int = 0  # 1-/3-phase switches (phase_switching chargers)
    visits: list[Visit] = field(default_factory=list)

    @property
    def changes_per_h(self) -> float:
        return self.changes / (self.present_s / 3600) if self.present_s > 0 else 0.0

    @property
    def starts_per_h(self) -> float:
        return self.starts / (self.present_s / 3600) if self.present_s > 0 else 0.0

    @property
    def needed_wh(self) -> float:
        return sum(v.needed_wh for v in self.visits)


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
    battery_to_cars_wh: float = 0.0
    grid_to_cars_wh: float = 0.0
    battery_min_soc: float | None = None
    below_soc_min_s: float = 0.0
    _within: bool = field(default=True, init=False, repr=False)  # no phase over, last cycle
    # The site's figures read every cycle, kept as plain attributes (as in Premises).
    _volts: float = field(default=0.0, init=False, repr=False, compare=False)
    _breaker_a: float = field(default=0.0, init=False, repr=False, compare=False)
    _battery: Battery | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.phases = [Excursion() for _ in range(self.site.phases)]
        self._volts, self._breaker_a = self.site.voltage_v, self.site.main_breaker_a
        self._battery = self.site.battery

    @property
    def pv_to_cars_wh(self) -> float:
        return sum(c.pv_wh for c in self.chargers)

    def add(
        self,
        now: float,
        dt: float,
        reading: Reading,
        bays: Sequence[Bay],
        commands: Sequence[Command],
    ) -> None:
        """Count the interval [now, now + dt], in which `reading` holds."""
        volts = self._volts
        h = dt / 3600
        room = 0.0
        ev_w = 0.0  # adding only the cars that draw: + 0.0 would leave it as it is
        drawing: list[tuple[ChargerTally, Visit, float]] = []  # and what each draws
        if not len(bays) == len(self.chargers) == len(commands):
            raise ValueError("a bay, a tally and a command per charger")
        # Checked above: as in SiteModel.apply, without zip's strict= keyword.
        for bay, tally, command in zip(bays, self.chargers, commands):  # noqa: B905
            if command.limit_a != tally.last_limit:
                tally.changes += 1
                tally.last_limit = command.limit_a
            ev = bay.ev
            if ev is None:
                continue
            tally.present_s += dt
            # Written out, with the car's room (Bay.room_w) and power (Bay.power_w): in
            # Python 3.11 the calls would cost most of this loop, every cycle.
            visits = tally.visits
            if not visits or visits[-1].session is not bay.session:  # a new car is here
                assert bay.session is not None
                visits.append(Visit(bay.session))
            visit = visits[-1]
            if ev.full:  # no room, and it draws nothing (EV.advance)
                if visit.full_s is None:
                    visit.full_s = now  # wanted nothing
                continue
            room += bay.room_a * volts
            power = ev.draw_a * ev.lines * volts
            if power > 0.0:
                ev_w += power
                drawing.append((tally, visit, power))
        house_w = sum(reading.household_w)
        surplus = reading.pv_w - house_w
        surplus = surplus if surplus > 0.0 else 0.0
        net_w = sum(reading.grid_a) * volts
        export = -net_w
        export = export if export > 0.0 else 0.0
        imported = net_w if net_w > 0.0 else 0.0
        self.surplus_wh += surplus * h
        self.exported_wh += export * h
        self.imported_wh += imported * h
        battery = self._battery
        soc = reading.battery_soc
        if soc is not None:
            if self.battery_min_soc is None or soc < self.battery_min_soc:
                self.battery_min_soc = soc
            if battery is not None and soc < battery.soc_min:
                self.below_soc_min_s += dt
        # With no car that has room or draws (a third of a bench day), every figure of
        # the cars' below is 0 and adding it would leave the counts as they are.
        if room > 0.0 or ev_w > 0.0:
            pv_to_ev = surplus if surplus < ev_w else ev_w
            house_short_w = house_w - reading.pv_w  # what the battery serves first
            house_short_w = house_short_w if house_short_w > 0.0 else 0.0
            battery_left_w = reading.battery_w - house_short_w
            battery_left_w = battery_left_w if battery_left_w > 0.0 else 0.0
            cars_left_w = ev_w - pv_to_ev
            battery_to_ev = battery_left_w if battery_left_w < cars_left_w else cars_left_w
            grid_to_ev = ev_w - pv_to_ev - battery_to_ev
            solar_w = 0.0
            for tally, visit, power in drawing:
                share = power / ev_w * h
                tally.pv_wh += pv_to_ev * share
                tally.battery_wh += battery_to_ev * share
                tally.grid_wh += grid_to_ev * share
                if tally.mode in _SURPLUS_MODES:
                    solar_w += power
                visit.delivered_wh += power * h
                if visit.full_s is None and visit.delivered_wh >= visit.session.energy_wh:
                    visit.full_s = now + dt  # the car stops at the end of this interval
            self.battery_to_cars_wh += battery_to_ev * h
            self.grid_to_cars_wh += grid_to_ev * h
            battery_first = 0.0
            if battery is not None and soc is not None and soc < battery.soc_target:
                charge_w = battery.max_charge_w
                battery_first = charge_w if charge_w < surplus else surplus
            left_w = surplus - battery_first
            usable = left_w if left_w < room else room
            if usable > 0.0:
                self.usable_wh += usable * h
                self.used_wh += (usable if usable < pv_to_ev else pv_to_ev) * h
            spare_w = room - ev_w  # what the cars present had room for beyond their draw
            spare_w = spare_w if spare_w > 0.0 else 0.0
            self.exported_waiting_wh += (spare_w if spare_w < export else export) * h
            self.solar_import_wh += (solar_w if solar_w < imported else imported) * h
        within = max(reading.grid_a) - self._breaker_a <= 1e-9
        if not (within and self._within):  # most cycles: no phase over, none was
            self._excursions(now, dt, reading.grid_a)
        self._within = within

    def finish(self, bays: Sequence[Bay]) -> None:
        """After the last cycle: each charger's energy as the cars counted it."""
        for tally, bay in zip(self.chargers, bays, strict=True):
            tally.energy_wh = bay.energy_wh

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
