"""The per-charger control rules, without I/O: what to send when, what came of it, and
whether the charger obeys.

Pure: no I/O, no asyncio, no clock. `now` is monotonic seconds, passed in; the wall
clock enters only `layer()`, for the timestamps written into a profile, so a step of the
wall clock (NTP on a Pi without a real-time clock) changes no timing here. The control
task (`gateway.ocpp.control`) asks `due()` what to send, does the sending, and tells
`result()` the reply; it passes each reading to `observe()`. What is worth a log line is
queued in `notes` for the caller (who knows the charger id and rate-limits them).

The rules:
- The hub's wish is sent when it changes and re-sent every `refresh_s`; a wish older than
  `validity_s` (a hub that went quiet) is not sent, so the dynamic layer lapses.
- Nothing is sent until the charger's state is known (it holds what it has).
- A limit is *sent* only when acknowledged; a timeout or another CallError leaves the
  last acknowledged one, and the next wake (the hub's next cycle) tries again.
- A refusal (Rejected, NotImplemented, NotSupported) drops, in turn, a high stack level
  and amps (the fallback chain; the base layer must then be installed again). With
  nothing left to drop the charger is *uncontrolled*: one note, and attempts back off
  from 2 x `refresh_s`, doubling up to `BACKOFF_MAX_S`. An acknowledged limit ends it.
- Obedience: a reading with a car, `obey_grace_s` after a change, above the layer in
  force by more than `obey_tolerance_a` is a strike. `obey_strikes` strikes: re-send;
  twice that: clear and reinstall the profiles; twice that again after a reinstall:
  uncontrolled (backing off as above). A reading that agrees ends it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace

from gateway.ocpp.config import ChargerOcpp, OcppConfig
from gateway.ocpp.profiles import Layer, base_layer, dynamic_layer, schedule_origin_s, wire_limit

# Dynamic stack level when the charger does not advertise its maximum.
DEFAULT_STACK = 1
# Replies that say the charger will not take the profile (as opposed to a lost one).
REFUSALS = ("Rejected", "NotImplemented", "NotSupported")
# The longest pause between attempts at an uncontrolled charger.
BACKOFF_MAX_S = 600.0
# Profile ids of connector n > 1: the layer's id + (n - 1) x this.
CONNECTOR_ID_STEP = 100
# A car follows a new offer within this (IEC 61851): then its first reading shows its draw.
START_READING_S = 5.0
REFUSES = "refuses every profile"
DISOBEYS = "ignores its limit"


@dataclass(frozen=True, slots=True)
class Target:
    """What the control needs to know about one charger from the config."""

    id: str
    failsafe_a: float
    phases: int
    voltage_v: float
    ocpp: ChargerOcpp
    phase_switching: bool = False


@dataclass(frozen=True, slots=True)
class Seen:
    """What the hub and the charger have told us, as the rules need it (monotonic times)."""

    wanted_a: float | None = None
    wanted_at: float | None = None
    state_known: bool = True
    active_phases: int = 0
    voltage_v: float | None = None  # line-to-neutral
    session_age_s: float | None = None  # None: no session in progress
    reading_at: float | None = None  # when the last MeterValues arrived
    car: bool = False  # a car is connected (an active status)
    charging_on: frozenset[int] = frozenset()  # the connectors / EVSEs that charge
    cars: int = 0  # connectors with a car
    last_connector: int = 0  # the highest connector / EVSE id it told a status for
    measured_a: float = 0.0  # the highest line current or offer in the last reading
    switch_phases: int | None = None  # the phase set to send (a charger that switches)


@dataclass(frozen=True, slots=True)
class Send:
    """One dynamic-layer send the rules ask for."""

    amps: float  # for the whole charger
    key: tuple[float, int, int]  # what must change for a send before the refresh
    limit: float  # per connector, in the charger's unit
    origin_s: float  # how long before the send the charger's schedule clock started
    phases: int | None = None  # numberPhases for the periods (None: not sent)


class Machine:
    """One charger's control state, kept across its reconnects."""

    def __init__(self, target: Target, cfg: OcppConfig) -> None:
        self.target = target
        self.cfg = cfg
        self.unit = "A"
        self.stack = DEFAULT_STACK
        self.connectors = 1
        self.base: Layer = self.base_layer()
        self.sent_key: tuple[float, int, int] | None = None
        self.sent_at = -math.inf
        self.tried_at = -math.inf
        self.applied_a: float | None = None  # the last acknowledged limit
        self.applied_until = -math.inf  # when that layer ends in the charger
        self.changed_at = -math.inf  # readings before this + grace prove nothing
        self.failing = False  # the last send got no answer or an error
        self.base_ok = False  # the charger took the base layer as it is now
        self.checked_reading: float | None = None
        self.strikes = 0
        self.reinstalls = 0
        self.reinstall = False
        self.obeys = True
        self.uncontrolled: str | None = None  # REFUSES | DISOBEYS
        self.backoff_s = 0.0
        self.problem = ""
        self.was_charging: frozenset[int] = frozenset()
        self.readings_wanted: dict[int, float] = {}  # connector -> when to ask
        self.notes: list[tuple[int, str]] = []

    def note(self, level: int, text: str) -> None:
        self.notes.append((level, text))

    def take_notes(self) -> list[tuple[int, str]]:
        notes, self.notes = self.notes, []
        return notes

    # Setup.

    def connected(self) -> None:
        """A new connection: everything goes out again, the charger gets a fresh look."""
        self.sent_key = None
        self.tried_at = -math.inf
        self.reinstall = False
        self.strikes = 0
        self.checked_reading = None
        self.was_charging = frozenset()
        self.readings_wanted = {}

    def choose(
        self,
        rate_units: frozenset[str],
        max_stack: int | None,
        smart_charging: bool,
        connectors: int | None = None,
    ) -> None:
        """Unit and stack level from the config, else from what the charger reports."""
        o = self.target.ocpp
        self.connectors = max(1, connectors or 1)
        wanted = o.rate_unit
        if wanted == "auto":
            wanted = "W" if rate_units == {"W"} else "A"
        self.unit = wanted
        if o.stack_level is not None:
            self.stack = o.stack_level
        elif max_stack is not None:
            self.stack = max_stack
        else:
            self.stack = DEFAULT_STACK
        self.base, self.base_ok = self.base_layer(), False
        self.note(
            logging.INFO,
            f"limits in {self.unit}, dynamic stack level {self.stack}"
            + ("" if smart_charging else " (no SmartCharging?)"),
        )

    def base_layer(self) -> Layer:
        # Each connector gets the layer: their share of the charger's failsafe current.
        t = self.target
        share = t.failsafe_a / self.connectors
        return base_layer(share, self.unit, t.ocpp.limit_step_a, t.voltage_v, t.phases)

    def profile_id(self, profile_id: int, connector: int) -> int:
        """A layer's id on `connector`: an id is the charger's, not the connector's (the
        same id would replace the other connector's), so connectors past 1 get their own."""
        return profile_id + CONNECTOR_ID_STEP * max(0, connector - 1)

    def on_connector(self, layer: Layer, connector: int) -> Layer:
        return replace(layer, profile_id=self.profile_id(layer.profile_id, connector))

    def profile_connectors(self) -> tuple[int, ...]:
        """Where the layers go: 0 (the charger-wide setting), else every connector, so a car
        on any of them is controlled."""
        if self.target.ocpp.connector == 0:
            return (0,)
        return tuple(range(1, self.connectors + 1))

    def set_up(self, now: float) -> None:
        """Setup done (after a boot or a reinstall): the dynamic layer goes out right after."""
        self.sent_key = None
        self.reinstall = False
        self.changed_at = now  # readings from before our profiles prove nothing

    # Sending.

    def wanted(self, now: float, seen: Seen) -> float | None:
        """The hub's limit, unless the hub went quiet: then the dynamic layer must lapse."""
        if seen.wanted_at is None or now - seen.wanted_at > self.cfg.validity_s:
            return None
        return seen.wanted_a

    def due(self, now: float, seen: Seen) -> Send | None:
        """The send to make now, if any."""
        if seen.last_connector > self.connectors:  # a connector it did not report
            self.connectors = seen.last_connector
            self.base, self.base_ok = self.base_layer(), False
        amps = self.wanted(now, seen)
        if amps is None or not seen.state_known:
            return None  # the hub's limit may rest on a state we have not heard yet
        switch = seen.switch_phases
        phases = switch or seen.active_phases or self.target.phases
        # Each connector's layer limits it alone: the cars share the charger's limit.
        cars = max(1, seen.cars) if self.connectors > 1 else 1
        key = (amps, phases if self.unit == "W" or switch else 0, cars)
        if self.uncontrolled is not None:
            if now < self.tried_at + self.backoff_s:
                return None
        elif key == self.sent_key and now < self.sent_at + self.cfg.refresh_s:
            return None
        volts = seen.voltage_v or self.target.voltage_v
        limit = wire_limit(amps / cars, self.unit, self.target.ocpp.limit_step_a, volts, phases)
        origin = schedule_origin_s(self.target.ocpp.profile_kind, seen.session_age_s)
        return Send(amps, key, limit, origin, switch)

    def layer(self, send: Send, wall: float) -> Layer:
        """The dynamic layer for `send`; `wall` (epoch s) dates it for the charger's clock."""
        return dynamic_layer(
            send.limit,
            self.unit,
            self.stack,
            wall,
            self.cfg.validity_s,
            self.base,
            send.origin_s,
            send.phases,
        )

    def result(self, send: Send, status: str | None, now: float, detail: str = "") -> bool:
        """The charger's reply to `send`: a status, a CallError code, or None (no reply).

        True: a fallback was taken; install the base layer again and send again now.
        """
        self.tried_at = now
        if status == "Accepted":
            if self.uncontrolled == REFUSES:
                self._controlled_again("takes its limit")
            if send.key != self.sent_key:
                self.changed_at = now
            self.sent_key, self.sent_at = send.key, now
            self.applied_a = send.amps
            self.applied_until = now + self.cfg.validity_s
            self.failing = False
            if self.obeys and self.uncontrolled is None:
                self.problem = ""
            return False
        why = f"{status}{': ' + detail if detail else ''}" if status else "no reply"
        if status not in REFUSALS:
            # Lost, not refused: the next wake tries again. One line per streak.
            if not self.failing:
                self.note(logging.WARNING, f"limit failed: {why}")
            self.failing = True
            self.problem = f"limit failed: {why}"
            return False
        self.failing = False
        if self._fall_back(why):
            self.sent_key, self.tried_at = None, -math.inf  # try the fallback at once
            return True
        self._uncontrolled(REFUSES, why, now)
        return False

    def _fall_back(self, why: str) -> bool:
        """Drop what real chargers refuse: a high stack level, then amps."""
        o = self.target.ocpp
        if o.stack_level is None and self.stack > DEFAULT_STACK:
            self.note(
                logging.WARNING,
                f"limit at stack level {self.stack} refused ({why}), trying {DEFAULT_STACK}",
            )
            self.stack = DEFAULT_STACK
            return True
        if o.rate_unit == "auto" and self.unit == "A":
            self.note(logging.WARNING, f"limit in amps refused ({why}), switching to watts")
            self.unit = "W"
            self.base, self.base_ok = self.base_layer(), False
            return True
        return False

    def _uncontrolled(self, reason: str, why: str, now: float) -> None:
        self.tried_at = now
        if self.uncontrolled is None:
            self.uncontrolled = reason
            self.backoff_s = 2 * self.cfg.refresh_s
            self.note(
                logging.WARNING,
                f"uncontrolled: {reason} ({why}); trying again every"
                f" {self.backoff_s:g} s and less often",
            )
        else:
            self.backoff_s = min(BACKOFF_MAX_S, 2 * self.backoff_s)
        self.problem = f"uncontrolled: {reason} ({why})"

    def _controlled_again(self, how: str) -> None:
        self.note(logging.INFO, f"controlled again: {how}")
        self.uncontrolled = None
        self.backoff_s = 0.0
        self.problem = ""
        self.sent_key = None  # back to the refresh rhythm from the next send

    def next_due(self, now: float) -> float:
        """Seconds until the rules want to look again without being woken."""
        if self.uncontrolled is not None:
            due = self.tried_at + self.backoff_s
        elif self.sent_key is None:
            due = now + self.cfg.refresh_s  # the hub's next wish wakes us sooner
        else:
            due = self.sent_at + self.cfg.refresh_s
        due = min([due, *self.readings_wanted.values()])
        return max(0.05, due - now)

    # What the charger does.

    def started_charging(self, now: float, seen: Seen) -> None:
        """A car started charging: its draw counts as household load until its first
        reading, so ask for one once the car has followed the offer (`START_READING_S`)."""
        for connector in seen.charging_on - self.was_charging:
            # A car that stops and starts again before the reading keeps the first time.
            self.readings_wanted.setdefault(connector, now + START_READING_S)
        self.was_charging = seen.charging_on

    def readings_due(self, now: float) -> list[int]:
        """The connectors to ask for a reading now (each once per start)."""
        due = sorted(c for c, at in self.readings_wanted.items() if now >= at)
        for connector in due:
            del self.readings_wanted[connector]
        return due

    def expected_a(self, now: float) -> float:
        """What the charger should offer now: the dynamic layer while it lasts."""
        if self.applied_a is None or now >= self.applied_until:
            return self.target.failsafe_a
        return self.applied_a

    def observe(self, now: float, seen: Seen) -> bool:
        """Check a new reading against the layer in force. True: something to send."""
        if seen.reading_at is None or seen.reading_at == self.checked_reading:
            return False
        self.checked_reading = seen.reading_at
        # Without a car an idle charger may offer its hardware maximum: nothing to check.
        if not seen.car or seen.reading_at < self.changed_at + self.cfg.obey_grace_s:
            return False
        expected = self.expected_a(now)
        measured = seen.measured_a
        if measured <= expected + self.cfg.obey_tolerance_a:
            if not self.obeys:
                self.note(logging.INFO, "obeys its limit again")
                self.obeys, self.problem = True, ""
            if self.uncontrolled == DISOBEYS:
                self._controlled_again("obeys its limit")
            self.strikes = self.reinstalls = 0
            return False
        self.strikes += 1
        if self.strikes < self.cfg.obey_strikes:
            return False
        why = f"at {measured:.1f} A, limit {expected:.1f} A"
        if self.obeys:
            self.note(logging.WARNING, f"does not obey: {why}")
        self.obeys = False
        if self.uncontrolled is None:
            self.problem = f"{DISOBEYS}: {why}"
        if self.strikes == self.cfg.obey_strikes:
            self.sent_key = None  # re-send
        elif self.strikes >= 2 * self.cfg.obey_strikes:
            self.strikes = 0
            if self.uncontrolled is not None:
                return False
            if self.reinstalls >= 1:
                self._uncontrolled(DISOBEYS, why, now)
                return False
            self.note(logging.WARNING, "clearing and reinstalling its profiles")
            self.reinstall = True
            self.reinstalls += 1
        else:
            return False
        self.changed_at = now  # give the charger the grace time again
        return True
