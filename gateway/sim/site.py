"""A site's physics over time: household load, PV, a home battery, and cars on chargers.

Pure and deterministic: the caller moves time forward. Each cycle `measure(now)` moves
every car and the battery to `now` and returns what the gateway's meters would read
(and the physical state behind it);
`apply(commands, now)` offers each charger's new limit to its car, which follows after
its lag. The battery runs in self-consumption mode on the site total: it charges from a
surplus and discharges to cover the load (cars included), within its power and SOC
limits. PV and battery sit behind one symmetric inverter, split evenly over the phases.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gateway.allocation.controller import Command
from gateway.allocation.hold import hold_limit
from gateway.model import PHASE_NAMES, Charger, Measurements, Site, Snapshot
from gateway.sim.ev import EV, IEC_MIN_A
from gateway.sim.series import Series


@dataclass(frozen=True, slots=True)
class Session:
    """A car at a charger from `arrive_s` until `leave_s` (or until it is full)."""

    charger: str
    arrive_s: float
    leave_s: float
    energy_wh: float
    phases: int = 3
    max_a: float = 32.0
    lag_s: float = 5.0
    # How its charger behaves while this car is there (`docs/simulation.md`):
    # "obeys", "ignores_limits" (offers the car its max whatever it is sent) or
    # "offline" (unreachable during `offline_s`, from and until: it keeps its last limit
    # for VALIDITY_S, then falls back to `failsafe_a`, and the gateway sees nothing).
    behaviour: str = "obeys"
    offline_s: tuple[float, float] = (0.0, 0.0)
    failsafe_a: float = 0.0
    # Named firmware behaviours of its simulated charge point (`demo`, live runs; see
    # gateway.sim.quirks.QUIRKS); the offline model has no OCPP to show them, but its car
    # keeps all its lines with "ignores_phase_switch".
    quirks: frozenset[str] = frozenset()


BEHAVIOURS = ("obeys", "ignores_limits", "offline")
# How long an unreachable charger keeps its last limit: the default `[ocpp] validity_s`.
VALIDITY_S = 120.0


@dataclass(slots=True)
class HomeBattery:
    capacity_wh: float
    soc: float  # %
    max_charge_w: float
    max_discharge_w: float
    reserve_soc: float = 5.0  # it does not discharge below this
    power_w: float = 0.0  # + discharge, − charge
    # A discharge cap written to its inverter (the battery hold); None: none. The grid
    # covers whatever the capped battery does not.
    limit_w: float | None = None
    # Its inverter takes the gateway's hold (a battery meter with control = true); in
    # `simulate` the SiteModel writes the hold straight into limit_w each cycle.
    controlled: bool = False

    def settle(self, net_w: float) -> None:
        """Cover a net load (+) or store a surplus (−), as far as limits allow."""
        if net_w > 0.0 and self.soc > self.reserve_soc:
            cap = self.max_discharge_w if self.limit_w is None else self.limit_w
            self.power_w = min(net_w, self.max_discharge_w, cap)
        elif net_w < 0.0 and self.soc < 100.0:
            self.power_w = max(net_w, -self.max_charge_w)
        else:
            self.power_w = 0.0

    def run(self, seconds: float) -> None:
        self.soc -= self.power_w * seconds / 3600 / self.capacity_wh * 100
        self.soc = min(100.0, max(0.0, self.soc))


class Bay:
    """One charger and the cars that visit it, one after the other."""

    def __init__(self, charger: Charger, sessions: Iterable[Session], site_phases: int) -> None:
        self.charger = charger
        self.sessions = sorted(sessions, key=lambda s: s.arrive_s)
        self.lines = min(charger.phases, len(charger.phase_map), site_phases)
        self.site_phase = [PHASE_NAMES.index(p) for p in charger.phase_map[: self.lines]]
        self.session: Session | None = None
        self.ev: EV | None = None
        self.limit_a = 0.0
        self.phases: int | None = None  # the phase set the charger was told, if any
        self.sent_at = 0.0  # when the charger last received a limit
        self.now = 0.0
        self.delivered_wh = 0.0  # by cars that have left
        self._seen = charger

    @property
    def offline(self) -> bool:
        s = self.session
        return (
            s is not None
            and s.behaviour == "offline"
            and s.offline_s[0] <= self.now < s.offline_s[1]
        )

    def advance(self, now: float, volts: float) -> None:
        self.now = now
        ev = self.ev
        if ev is not None:
            ev.advance(now, volts)
            if self.session is not None and now >= self.session.leave_s:
                self.delivered_wh += ev.delivered_wh
                self.ev = self.session = None
        while self.ev is None and self.sessions and self.sessions[0].arrive_s <= now:
            session = self.sessions.pop(0)
            if now < session.leave_s:
                self.session = session
                self.ev = EV(
                    max_a=session.max_a,
                    phases=min(session.phases, self.lines),
                    energy_wanted_wh=session.energy_wh,
                    lag_s=session.lag_s,
                    ignores_phase_switch="ignores_phase_switch" in session.quirks,
                )
                self.ev.advance(now, volts)
                self.ev.offer(self.limit_a, now, self.phases)

    def seen(self, lines: tuple[float, float, float]) -> Charger:
        """The charger as the gateway sees it now (status and draw; an offline one as
        the hub's inputs give it: Unavailable, nothing of its draw subtracted)."""
        status = self.status
        if self.offline:
            status, lines = "Unavailable", (0.0, 0.0, 0.0)
        if status != self._seen.status or lines != self._seen.draw_a:
            self._seen = self.charger._replace(status=status, draw_a=lines)
        return self._seen

    def offer(self, limit_a: float, now: float, phases: int | None = None) -> None:
        if self.offline:
            # Unreachable: the last limit holds until its profile lapses, then failsafe.
            if now - self.sent_at >= VALIDITY_S and self.session is not None:
                self.limit_a = self.session.failsafe_a
        else:
            self.limit_a, self.sent_at = limit_a, now
            if phases is not None:
                self.phases = phases
        if self.ev is not None:
            offered = self.limit_a
            if self.session is not None and self.session.behaviour == "ignores_limits":
                offered = self.charger.max_a
            self.ev.offer(offered, now, self.phases)

    @property
    def status(self) -> str:
        ev = self.ev
        if ev is None:
            return "Available"
        if ev.full:
            return "SuspendedEV"
        return "SuspendedEVSE" if self.limit_a < IEC_MIN_A else "Charging"

    def line_currents(self) -> tuple[float, float, float]:
        if self.ev is None:
            return (0.0, 0.0, 0.0)
        return self.ev.line_currents()

    def power_w(self, volts: float) -> float:
        ev = self.ev
        return 0.0 if ev is None else ev.draw_a * ev.lines * volts

    def room_w(self, volts: float) -> float:
        """What the car here could take at most (0 when none or full)."""
        ev = self.ev
        if ev is None or ev.full:
            return 0.0
        return min(self.charger.max_a, ev.max_a) * ev.phases * volts

    @property
    def energy_wh(self) -> float:
        return self.delivered_wh + (self.ev.delivered_wh if self.ev is not None else 0.0)


@dataclass(slots=True)
class Reading:
    """The physical state at one instant (also what the tally and the CSV record)."""

    household_w: tuple[float, ...]  # per site phase
    pv_w: float
    grid_a: tuple[float, ...]  # per site phase, + import
    battery_w: float
    battery_soc: float | None


class Premises:
    """Household, PV and a battery behind one symmetric inverter: what the grid meter sees.

    `extra_w` is a load added on top of the household series per phase (an oven switched
    on in a test or the demo).
    """

    def __init__(
        self,
        site: Site,
        household: Series,
        pv: Series | None = None,
        battery: HomeBattery | None = None,
    ) -> None:
        self.site = site
        self.household = household
        self.pv = pv
        self.battery = battery
        self.extra_w: tuple[float, ...] = (0.0,) * site.phases
        self._last_t: float | None = None

    def household_w(self, now: float) -> tuple[float, ...]:
        n = self.site.phases
        row = self.household.at(now)
        base = row if len(row) == n else (sum(row) / n,) * n
        if not any(self.extra_w):
            return base
        return tuple(b + e for b, e in zip(base, self.extra_w, strict=True))

    def read(self, now: float, ev_a: Sequence[float]) -> Reading:
        """Move the battery to `now` and balance the site with the cars drawing `ev_a`."""
        volts, n = self.site.voltage_v, self.site.phases
        if self.battery is not None and self._last_t is not None:
            self.battery.run(now - self._last_t)
        self._last_t = now
        household = self.household_w(now)
        pv = max(0.0, self.pv.at(now)[0]) if self.pv is not None else 0.0
        # The inverter's whole output (PV + battery discharge) is capped at its max_w.
        inverter = self.site.inverter
        cap_w = inverter.max_w if inverter is not None and inverter.max_w is not None else None
        if cap_w is not None:
            pv = min(pv, cap_w)
        battery_w = 0.0
        if self.battery is not None:
            self.battery.settle(sum(household) + sum(ev_a) * volts - pv)
            if cap_w is not None:
                self.battery.power_w = min(self.battery.power_w, cap_w - pv)
            battery_w = self.battery.power_w
        source_a = (pv + battery_w) / volts / n
        grid = tuple(household[p] / volts + ev_a[p] - source_a for p in range(n))
        soc = self.battery.soc if self.battery is not None else None
        return Reading(household, pv, grid, battery_w, soc)


class SiteModel:
    def __init__(
        self,
        site: Site,
        chargers: Iterable[Charger],
        sessions: Iterable[Session],
        household: Series,
        pv: Series | None = None,
        battery: HomeBattery | None = None,
    ) -> None:
        self.site = site
        self.premises = Premises(site, household, pv, battery)
        sessions = list(sessions)
        self.bays = [
            Bay(c, [s for s in sessions if s.charger == c.id], site.phases) for c in chargers
        ]

    @property
    def battery(self) -> HomeBattery | None:
        return self.premises.battery

    def measure(self, now: float) -> tuple[Snapshot, Reading]:
        site, volts = self.site, self.site.voltage_v
        ev_a = [0.0] * site.phases
        chargers = []
        for bay in self.bays:
            bay.advance(now, volts)
            lines = bay.line_currents()
            for k, p in enumerate(bay.site_phase):
                ev_a[p] += lines[k]
            chargers.append(bay.seen(lines))
        reading = self.premises.read(now, ev_a)
        measurements = Measurements(
            grid_current_a=reading.grid_a,
            pv_power_w=reading.pv_w if self.premises.pv is not None else None,
            battery_soc=reading.battery_soc,
            battery_power_w=reading.battery_w if self.battery is not None else None,
        )
        snapshot = Snapshot(site=site, measurements=measurements, chargers=tuple(chargers))
        return snapshot, reading

    def apply(self, commands: Iterable[Command], now: float) -> None:
        allowed = []
        for bay, command in zip(self.bays, commands, strict=True):
            bay.offer(command.limit_a, now, command.phases)
            if command.limit_a > 0:
                allowed.append(bay.charger.mode)
        battery = self.battery
        if battery is not None and battery.controlled:
            # The hub's rule (gateway.allocation.hold) on an inverter that obeys at once.
            premises = self.premises
            pv = max(0.0, premises.pv.at(now)[0]) if premises.pv is not None else 0.0
            house_w = sum(premises.household_w(now)) - pv
            battery.limit_w = hold_limit(self.site.battery, battery.soc, allowed, False, house_w)
