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

import math
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
# The line currents of a charger drawing nothing: one shared tuple, so that the cycle can
# tell it by identity and skip it.
NO_DRAW = (0.0, 0.0, 0.0)
# The offline window of a session that is never offline.
_NEVER = (math.inf, math.inf)
# As in gateway.sim.tally: every cycle's min and max of two values are written out as
# comparisons (`b if b < a else a` is exactly min(a, b)), the builtins costing ~30 times
# as much in Python 3.11.


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
            power = net_w  # min(net_w, max_discharge_w, limit_w)
            if self.max_discharge_w < power:
                power = self.max_discharge_w
            if self.limit_w is not None and self.limit_w < power:
                power = self.limit_w
            self.power_w = power
        elif net_w < 0.0 and self.soc < 100.0:
            most = -self.max_charge_w
            self.power_w = most if most > net_w else net_w
        else:
            self.power_w = 0.0

    def run(self, seconds: float) -> None:
        soc = self.soc - self.power_w * seconds / 3600 / self.capacity_wh * 100
        soc = soc if soc > 0.0 else 0.0
        self.soc = soc if soc < 100.0 else 100.0


class Bay:
    """One charger and the cars that visit it, one after the other.

    `advance(now)` works out once what the cycle asks of it at `now` (its car's draw,
    whether it is reachable, how the gateway sees it); `offer` and the tally read that.
    """

    def __init__(self, charger: Charger, sessions: Iterable[Session], site_phases: int) -> None:
        self.charger = charger
        self.sessions = sorted(sessions, key=lambda s: s.arrive_s)
        self.lines = min(charger.phases, len(charger.phase_map), site_phases)
        # (line, site phase) of each line it has wired (distinct phases: the config checks
        # phase_map).
        self.wiring = tuple(
            (line, PHASE_NAMES.index(p)) for line, p in enumerate(charger.phase_map[: self.lines])
        )
        self.session: Session | None = None
        self.ev: EV | None = None
        self.limit_a = 0.0
        self.phases: int | None = None  # the phase set the charger was told, if any
        self.sent_at = 0.0  # when the charger last received a limit
        self.delivered_wh = 0.0  # by cars that have left
        # As of `now` (set by advance):
        self.draw = NO_DRAW  # the car's line currents; NO_DRAW itself while it draws nothing
        self.offline = False  # unreachable (an "offline" session in its window)
        self.seen = charger  # the charger as the gateway sees it
        # The session's behaviour, worked out once at its arrival: when it is unreachable
        # (from, until), and what its car is offered instead of the limit (None: the limit).
        self._offline_s = _NEVER
        self._offers_a: float | None = None
        self.room_a = 0.0  # what its car could take at most, in A summed over its lines
        # Nothing changes before then: no car here and none due, or a full car that will
        # not leave nor its charger go offline or come back before then; advance has
        # nothing to work out (most cycles of a charger). -inf until the first advance.
        self._idle_until = -math.inf

    def advance(self, now: float, volts: float) -> Charger:
        """Move to `now` (the car charges, leaves, the next one arrives); the charger as
        the gateway sees it then: status and draw, an offline one as the hub's inputs give
        it (Unavailable, nothing of its draw subtracted)."""
        if now < self._idle_until:
            return self.seen
        ev, session = self.ev, self.session
        if ev is not None:
            ev.advance(now, volts)
            if session is not None and now >= session.leave_s:
                self.delivered_wh += ev.delivered_wh
                self._leave()
                ev = None
        sessions = self.sessions
        while ev is None and sessions and sessions[0].arrive_s <= now:
            session = sessions.pop(0)
            if now < session.leave_s:
                ev = self._arrive(session)
                ev.advance(now, volts)
                ev.offer(self.limit_a, now, self.phases)
        if ev is None:
            status, draw = "Available", NO_DRAW
        else:
            draw = ev.currents
            if ev.full:
                status = "SuspendedEV"
            else:
                status = "SuspendedEVSE" if self.limit_a < IEC_MIN_A else "Charging"
        if draw != self.draw:
            self.draw = draw if any(draw) else NO_DRAW
        off_from, off_until = self._offline_s
        if ev is None:
            self._idle_until = sessions[0].arrive_s if sessions else math.inf
        elif ev.full and session is not None:
            # A full car draws nothing (EV.advance) and its charger shows SuspendedEV
            # until it leaves: skipping its advances until then leaves its energy as it is.
            until = session.leave_s
            edge = off_from if now < off_from else off_until
            self._idle_until = edge if now < edge and edge < until else until
        self.offline = off_from <= now < off_until
        if self.offline:
            status, draw = "Unavailable", NO_DRAW
        seen = self.seen
        if status != seen.status or draw != seen.draw_a:
            seen = self.seen = self.charger._replace(status=status, draw_a=draw)
        return seen

    def _leave(self) -> None:
        self.ev = self.session = None
        self._offline_s, self._offers_a = _NEVER, None

    def _arrive(self, session: Session) -> EV:
        """`session`'s car is here from now on; that car."""
        self.session = session
        ev = self.ev = EV(
            max_a=session.max_a,
            phases=min(session.phases, self.lines),
            energy_wanted_wh=session.energy_wh,
            lag_s=session.lag_s,
            ignores_phase_switch="ignores_phase_switch" in session.quirks,
        )
        self._offline_s = session.offline_s if session.behaviour == "offline" else _NEVER
        self._offers_a = self.charger.max_a if session.behaviour == "ignores_limits" else None
        # min(charger max, car max) on each of its phases.
        self.room_a = min(self.charger.max_a, ev.max_a) * ev.phases
        return ev

    def offer(self, limit_a: float, now: float, phases: int | None = None) -> None:
        if self.offline:
            # Unreachable: the last limit holds until its profile lapses, then failsafe.
            if now - self.sent_at >= VALIDITY_S and self.session is not None:
                self.limit_a = self.session.failsafe_a
        else:
            self.limit_a, self.sent_at = limit_a, now
            if phases is not None:
                self.phases = phases
        ev = self.ev
        if ev is not None:
            offered = self.limit_a if self._offers_a is None else self._offers_a
            ev.offer(offered, now, self.phases)

    def line_currents(self) -> tuple[float, float, float]:
        if self.ev is None:
            return NO_DRAW
        return self.ev.line_currents()

    def power_w(self, volts: float) -> float:
        ev = self.ev
        return 0.0 if ev is None else ev.draw_a * ev.lines * volts

    def room_w(self, volts: float) -> float:
        """What the car here could take at most (0 when none or full)."""
        ev = self.ev
        if ev is None or ev.full:
            return 0.0
        return self.room_a * volts

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
        # The site's figures read every cycle, kept as plain attributes: a NamedTuple
        # field costs about four times as much to read in Python 3.11.
        self._phases, self._volts = site.phases, site.voltage_v
        # The inverter's whole output (PV + battery discharge) is capped at its max_w.
        self._cap_w = site.inverter.max_w if site.inverter is not None else None

    def household_w(self, now: float) -> tuple[float, ...]:
        n = self._phases
        row = self.household.at(now)
        base = row if len(row) == n else (sum(row) / n,) * n
        if not any(self.extra_w):
            return base
        return tuple(b + e for b, e in zip(base, self.extra_w, strict=True))

    def pv_w(self, now: float) -> float:
        if self.pv is None:
            return 0.0
        pv = self.pv.at(now)[0]
        return pv if pv > 0.0 else 0.0

    def read(self, now: float, ev_a: Sequence[float]) -> Reading:
        """Move the battery to `now` and balance the site with the cars drawing `ev_a`
        (per site phase)."""
        battery, volts = self.battery, self._volts
        if battery is not None and self._last_t is not None:
            battery.run(now - self._last_t)
        self._last_t = now
        household = self.household_w(now)
        pv = self.pv_w(now)
        cap_w = self._cap_w
        if cap_w is not None:
            pv = cap_w if cap_w < pv else pv
        battery_w = 0.0
        soc = None
        if battery is not None:
            battery.settle(sum(household) + sum(ev_a) * volts - pv)
            if cap_w is not None and cap_w - pv < battery.power_w:
                battery.power_w = cap_w - pv
            battery_w, soc = battery.power_w, battery.soc
        n = self._phases
        source_a = (pv + battery_w) / volts / n
        if n == 3:  # written out: the comprehension costs 2.5 times as much, every cycle
            h1, h2, h3 = household
            a1, a2, a3 = ev_a
            grid = (
                h1 / volts + a1 - source_a,
                h2 / volts + a2 - source_a,
                h3 / volts + a3 - source_a,
            )
        else:
            grid = tuple([household[p] / volts + ev_a[p] - source_a for p in range(n)])
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
        premises = self.premises
        volts = premises._volts
        ev_a = [0.0] * premises._phases
        chargers = []
        for bay in self.bays:
            # Nothing to work out (Bay._idle_until): advance would return at once.
            chargers.append(bay.seen if now < bay._idle_until else bay.advance(now, volts))
            draw = bay.draw
            if draw is not NO_DRAW:  # a charger drawing nothing adds nothing
                for line, p in bay.wiring:
                    ev_a[p] += draw[line]
        reading = premises.read(now, ev_a)
        # Built positionally: NamedTuple keywords cost more, every cycle.
        measurements = Measurements(
            reading.grid_a,  # grid_current_a
            reading.pv_w if premises.pv is not None else None,  # pv_power_w
            reading.battery_soc,
            reading.battery_w if premises.battery is not None else None,  # battery_power_w
        )
        return Snapshot(self.site, measurements, tuple(chargers)), reading

    def apply(self, commands: Sequence[Command], now: float) -> None:
        if len(commands) != len(self.bays):
            raise ValueError(f"{len(commands)} commands for {len(self.bays)} chargers")
        # Checked above, once: zip's strict= keyword is parsed on every call (~1.6k
        # instructions in Python 3.11).
        for bay, command in zip(self.bays, commands):  # noqa: B905
            if bay.ev is None and not bay.offline:
                # Bay.offer written out for most cycles of a charger: no car there, it
                # keeps the limit for the next (the call would cost more than the work).
                bay.limit_a, bay.sent_at = command.limit_a, now
                if command.phases is not None:
                    bay.phases = command.phases
            else:
                bay.offer(command.limit_a, now, command.phases)
        battery = self.premises.battery
        if battery is not None and battery.controlled:
            # The hub's rule (gateway.allocation.hold) on an inverter that obeys at once,
            # for the cars charging or allowed to.
            allowed = [
                bay.charger.mode
                for bay, command in zip(self.bays, commands, strict=True)
                if command.limit_a > 0
            ]
            premises = self.premises
            house_w = sum(premises.household_w(now)) - premises.pv_w(now)
            battery.limit_w = hold_limit(self.site.battery, battery.soc, allowed, False, house_w)
