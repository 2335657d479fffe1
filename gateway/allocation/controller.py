"""The controller: the allocator's answers held steady over time (ALLOCATION, "Over time").

Pure: state in, state out, `now` passed in. The hub calls `Controller.step` once per
cycle. It first tells the allocator what only time can know (how long a SuspendedEV car
has been idle, battery SOC with hysteresis, an external site limit capping the grid),
allocates once, then turns each allocation into a command: reductions at once, increases
ramped and dead-banded, surplus-driven starts and stops delayed, restarts paused, and
every active charger at its failsafe current while the grid data is stale.

A command above the allocation (a stop delay or an excess hold keeping a charger at its
minimum, a reduction within the dead band) is checked by a second allocation in which
every other charger is pinned at its command and the held ones ask for theirs last,
from any source: a hold never takes what the breaker, the import cap or a circuit does
not have, and never takes anything from another charger. Holds that fit in the breaker
headroom the allocation leaves, where the breaker is the only limit, need no check.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any, NamedTuple

from gateway.allocation import phases
from gateway.allocation.allocator import DRAWING_A, allocate, wired_lines
from gateway.allocation.battery import allowance_w, discharge_to_cars_w
from gateway.allocation.guard import FOLLOW_S, guard, measured_over
from gateway.allocation.phases import PhaseSettings, PhaseState
from gateway.allocation.timing import ControlSettings, Timing
from gateway.model import (
    ACTIVE_STATUSES,
    PHASE_NAMES,
    Allocation,
    Charger,
    ChargerAllocation,
    Metering,
    Mode,
    Reason,
    Site,
    Snapshot,
)

log = logging.getLogger(__name__)

EPS = 1e-6
# Held chargers are served after every pinned one in the feasibility check.
_LAST = 1_000_000
# What a Solar or Excess car held at its minimum may take from the battery (Excess: or
# the grid) beyond the owner's assist before the hold gives way: meter noise, a car's lag.
_HOLD_NOISE_W = 100.0
# Enum members read per cycle, as globals: reading one off its class costs several times
# as much (EnumType defines __getattr__).
_STANDARD, _ECO, _SOLAR, _EXCESS = Mode.STANDARD, Mode.ECO, Mode.SOLAR, Mode.EXCESS
_NOT_ACTIVE, _RELEASED, _RAMPING = Reason.NOT_ACTIVE, Reason.RELEASED, Reason.RAMPING
_NET = Metering.NET
# What the allocator says of a grid an external limit caps: the limit's doing.
_EXTERNAL_REASONS = (Reason.BREAKER_LIMIT, Reason.NO_CAPACITY)
_SUN_MODES = (_SOLAR, _EXCESS)
# The modes that read the balance (`_Balance`): on the sun, or Eco above its minimum.
_BALANCE_MODES = frozenset({_SOLAR, _EXCESS, _ECO})


class ExternalLimit(NamedTuple):
    """A site limit written from outside (Modbus); it caps the grid source until expiry."""

    expires_at: float
    current_a: float | None = None  # per phase
    power_w: float | None = None  # total import

    def active(self, now: float) -> bool:
        return now < self.expires_at


class Command(NamedTuple):
    id: str
    limit_a: float
    reason: Reason
    detail: str  # short text for status and registers, e.g. "solar: waiting 42 s to start"
    failsafe: bool = False
    phases: int | None = None  # the phase set to send (None: the charger does not switch)


class ChargerState(NamedTuple):
    limit_a: float = 0.0  # the last command
    ramp_since: float | None = None  # an increase pending since then may rise at the ramp rate
    surplus_since: float | None = None  # surplus has carried the minimum since (start delay)
    short_since: float | None = None  # surplus has fallen short since, while on (stop delay)
    stopped_at: float | None = None  # the last stop (minimum pause)
    hold_until: float | None = None  # excess hold expiry
    idle_since: float | None = None  # SuspendedEV and drawing < 1 A since
    lowered_at: float | None = None  # the last reduction of the command (the guard's patience)
    following: bool = False  # eco: following surplus above its minimum
    # Kept when a car leaves (the fields above are the session's: `_SESSION_END`).
    starts: int = 0
    stops: int = 0
    phase: PhaseState | None = None  # phase switching chargers only (kept across sessions)

    @property
    def switch_paused(self) -> bool:
        """The last command paused a charging car for a phase switch: the pause is not
        a stop, and the resume not a start."""
        return self.phase is not None and self.phase.paused and self.phase.interrupted


_FRESH = ChargerState()
_NOT_ACTIVE_TEXT = Reason.NOT_ACTIVE.text
# What a car leaving resets: the fields before the counters. A state's slice up to here
# tells at once (one C call) whether it has anything to reset.
_SESSION_END = ChargerState._fields.index("starts")
_SESSION_FRESH = _FRESH[:_SESSION_END]
_SESSION_DEFAULTS = tuple(zip(ChargerState._fields[:_SESSION_END], _SESSION_FRESH, strict=True))


class ControllerState(NamedTuple):
    chargers: Mapping[str, ChargerState]
    soc_above_min: bool = False
    soc_above_target: bool = False
    last_now: float | None = None
    failsafe: bool = False  # the last cycle was in failsafe
    external_limit: bool = False  # an external limit was in force in the last cycle
    guarding: bool = False  # the guard found the measured grid over the limit last cycle


class Decision(NamedTuple):
    commands: tuple[Command, ...]
    # The allocation the commands were derived from (None while in failsafe).
    allocation: Allocation | None
    failsafe: bool
    external_limit: bool  # an external site limit was in force this cycle


class _Plan:
    """One charger's command being worked out, and its state changes (applied once)."""

    __slots__ = ("changes", "detail", "limit", "reason", "state")

    def __init__(self, state: ChargerState) -> None:
        self.limit = 0.0
        self.reason = _NOT_ACTIVE
        self.detail = _NOT_ACTIVE_TEXT
        self.state = state
        self.changes: dict[str, Any] = {}

    def get(self, name: str) -> Any:
        changes = self.changes
        return changes[name] if name in changes else getattr(self.state, name)

    def set(self, name: str, value: Any) -> None:
        """Record a change: one from the state, or of a change already recorded."""
        if name in self.changes or value != getattr(self.state, name):
            self.changes[name] = value

    def new_state(self) -> ChargerState:
        changes = self.changes
        if not changes:
            return self.state
        # `_replace`, written out: its keyword handling costs more than the fields.
        return ChargerState._make(map(changes.get, _FIELDS, self.state))


_FIELDS = ChargerState._fields
# The plan of every settled charger: no car, and nothing of a session left to forget
# (most chargers most of the day). Its command is 0, its state stays as it is, and there
# is nothing to work out: one plan serves them all, and nothing changes it (a limit of 0
# is never above an allocation, nor cut by the guard). Its state has the session fields
# of every settled charger's (all fresh).
_SETTLED = _Plan(_FRESH)


def _floor(value: float) -> float:
    return max(0.0, math.floor(value * 10 + EPS) / 10)


def _since(start: float | None, now: float) -> float:
    return now if start is None else start


class Controller:
    def __init__(
        self,
        settings: ControlSettings,
        timings: Mapping[str, Timing] | None = None,
        failsafe_a: Mapping[str, float] | None = None,
        phase_switching: Mapping[str, PhaseSettings] | None = None,
    ) -> None:
        """`timings`, `failsafe_a` and `phase_switching` by charger id; absent ids use
        the site timing and the charger's minimum, and do not switch phases."""
        self.settings = settings
        self.timings = dict(timings or {})
        self.failsafe_a = dict(failsafe_a or {})
        self.phase_switching = dict(phase_switching or {})
        # A settled charger's command, by id: out of failsafe, in failsafe (always the
        # same immutable value, built once).
        self._settled_commands: tuple[dict[str, Command], dict[str, Command]] = ({}, {})

    @classmethod
    def for_chargers(cls, settings: ControlSettings, chargers: Iterable[Any]) -> Controller:
        """From the config's (or a scenario's) `ChargerConfig` entries: each has `id`,
        `charger`, `timing`, `failsafe_a` and `phase_switching`."""
        chargers = list(chargers)
        return cls(
            settings,
            timings={c.id: c.timing for c in chargers},
            failsafe_a={c.id: c.failsafe_a for c in chargers},
            phase_switching={
                c.id: PhaseSettings(c.charger.phases, c.charger.min_a, c.timing.phase_dwell_s)
                for c in chargers
                if c.phase_switching
            },
        )

    def initial_state(self) -> ControllerState:
        return ControllerState(chargers={})

    def refuse_phase_switching(self, charger_id: str) -> None:
        """The charger cannot switch (its firmware says so): all its phases from now on."""
        self.phase_switching.pop(charger_id, None)

    def timing(self, charger_id: str) -> Timing:
        return self.timings.get(charger_id, self.settings.timing)

    # -- the cycle --------------------------------------------------------------------

    def step(
        self,
        state: ControllerState,
        snapshot: Snapshot,
        now: float,
        grid_age_s: float,
        external_limit: ExternalLimit | None = None,
    ) -> tuple[ControllerState, Decision]:
        """One cycle: the new state and every charger's command.

        `grid_age_s` is the age of the newest grid meter reading (inf if none yet).
        """
        known = state.chargers
        switching = self.phase_switching
        plans = []
        chargers = []
        # Only the surplus rules of an active Solar or Excess car and the dead band of a
        # car on the sun (those, or Eco above its minimum) read the balance.
        sun_cars = False
        for c in snapshot.chargers:
            s = known.get(c.id, _FRESH)
            active = c.status in ACTIVE_STATUSES
            if (
                not active
                and s.phase is None
                and c.id not in switching
                and s[:_SESSION_END] == _SESSION_FRESH
            ):
                chargers.append(c if c.idle_s == 0.0 else _with_idle_s(c, 0.0))
                plans.append(_SETTLED)
                continue
            if active and c.mode in _BALANCE_MODES:
                sun_cars = True
            plan = _Plan(s)
            idle_since = _idle_since(c, s, now)
            plan.set("idle_since", idle_since)
            idle_s = 0.0 if idle_since is None else now - idle_since
            if c.id in switching:
                c = phases.in_force(c, s.phase, snapshot.site.phases)
            elif s.phase is not None:
                plan.set("phase", None)  # switching refused since: all its phases
            chargers.append(c if c.idle_s == idle_s else _with_idle_s(c, idle_s))
            plans.append(plan)
        external = external_limit if external_limit and external_limit.active(now) else None

        if grid_age_s > self.settings.stale_after_s:
            for c, plan in zip(chargers, plans, strict=True):
                if plan is not _SETTLED:
                    self._failsafe(plan, c, grid_age_s)
            return self._finish(state, chargers, plans, now, None, external, failsafe=True)

        above_min, above_target = self._soc_flags(state, snapshot)
        site = _adjusted_site(
            snapshot.site, external, above_min, above_target, self.settings.soc_hysteresis_pct
        )
        adjusted = Snapshot(site, snapshot.measurements, tuple(chargers))
        allocation = allocate(adjusted)
        balance = _balance(adjusted) if sun_cars else None
        last_now = state.last_now
        for c, plan, a in zip(chargers, plans, allocation.chargers, strict=True):
            if plan is not _SETTLED:
                self._plan(plan, c, a, balance, now, last_now)
        if self.phase_switching:
            for i, (c, plan) in enumerate(zip(chargers, plans, strict=True)):
                if c.id in self.phase_switching:
                    self._switch_phases(plan, i, adjusted, allocation, now)
        self._check_holds(adjusted, allocation, plans)
        over = _guard(adjusted, chargers, plans, now)
        if bool(over) != state.guarding:  # one line per episode, not per cycle
            if over:
                log.warning("guard: %s; chargers on it cut", over)
            else:
                log.info("guard: measured grid current back under the limit")
            state = state._replace(guarding=bool(over))
        if above_min != state.soc_above_min or above_target != state.soc_above_target:
            state = state._replace(soc_above_min=above_min, soc_above_target=above_target)
        return self._finish(state, chargers, plans, now, allocation, external, failsafe=False)

    def _finish(
        self,
        state: ControllerState,
        chargers: list[Charger],
        plans: list[_Plan],
        now: float,
        allocation: Allocation | None,
        external: ExternalLimit | None,
        failsafe: bool,
    ) -> tuple[ControllerState, Decision]:
        commands = []
        states = {}
        known = state.chargers
        settled = self._settled_commands[failsafe]
        for charger, plan in zip(chargers, plans, strict=True):
            cid = charger.id
            if plan is _SETTLED:
                states[cid] = known.get(cid, _FRESH)
                command = settled.get(cid)
                if command is None:
                    command = Command(cid, 0.0, _NOT_ACTIVE, _NOT_ACTIVE_TEXT, failsafe)
                    settled[cid] = command
                commands.append(command)
                continue
            _count(plan, now)
            states[cid] = plan.new_state()
            reason, detail = plan.reason, plan.detail
            if external is not None and reason in _EXTERNAL_REASONS:
                reason, detail = Reason.EXTERNAL_LIMIT, _external_text(external, now)
            phase = plan.get("phase")
            sent = None if phase is None else phase.phases
            commands.append(Command(cid, plan.limit, reason, detail, failsafe, sent))
        limited = external is not None
        if failsafe != state.failsafe or limited != state.external_limit:
            _log_transitions(state, failsafe, limited, len(chargers), external, now)
        # Built positionally: `_replace` costs several times as much.
        new_state = ControllerState(
            states,
            state.soc_above_min,
            state.soc_above_target,
            now,
            failsafe,
            limited,
            state.guarding,
        )
        return new_state, Decision(tuple(commands), allocation, failsafe, limited)

    # -- site adjustments ---------------------------------------------------------------

    def _soc_flags(self, state: ControllerState, snapshot: Snapshot) -> tuple[bool, bool]:
        """Sticky "above" flags. Target: set at the threshold, kept until SOC falls by the
        hysteresis. Min is a floor for cars (issue #13): kept down to it, set again only
        once SOC has recovered by the hysteresis above it."""
        battery, soc = snapshot.site.battery, snapshot.measurements.battery_soc
        if battery is None or soc is None:
            return False, False
        h = self.settings.soc_hysteresis_pct
        above_min = soc >= battery.soc_min + h or (state.soc_above_min and soc >= battery.soc_min)
        above_target = soc >= battery.soc_target or (
            state.soc_above_target and soc >= battery.soc_target - h
        )
        return above_min, above_target

    # -- one charger ----------------------------------------------------------------------

    def _failsafe(self, plan: _Plan, charger: Charger, age: float) -> None:
        if charger.status not in ACTIVE_STATUSES:
            _reset(plan)
            return
        # Never above the last command: a charger the breaker had at 0 A stays there.
        plan.limit = min(plan.state.limit_a, self.failsafe_a.get(charger.id, charger.min_a))
        plan.reason = Reason.FAILSAFE_STALE
        age_text = "no meter data" if math.isinf(age) else f"meter data {age:.0f} s old"
        plan.detail = f"failsafe {plan.limit:g} A: {age_text}"

    def _plan(
        self,
        plan: _Plan,
        c: Charger,
        a: ChargerAllocation,
        balance: _Balance | None,
        now: float,
        last_now: float | None,
    ) -> None:
        """`balance`: None when no Solar, Excess or Eco car is active (nothing reads it)."""
        if c.status not in ACTIVE_STATUSES:
            _reset(plan)
            return
        reason = a.reason
        plan.limit, plan.reason, plan.detail = a.allocated_a, reason, reason.text
        if reason is _RELEASED:
            return  # the car is not drawing: no start, stop or pause to manage
        t = self.timing(c.id)
        if balance is not None and c.mode in _SUN_MODES:
            self._surplus_rules(plan, c, t, balance, now)
        elif c.mode is _ECO:
            self._eco_rules(plan, c, t, now)
        self._pause(plan, c, t, now)
        on_battery = balance is not None and balance.feeds_sun(c, plan.state.limit_a)
        self._ramp(plan, c, t, now, last_now, on_battery)

    def _surplus_rules(
        self, plan: _Plan, c: Charger, t: Timing, balance: _Balance, now: float
    ) -> None:
        """Solar and Excess: start delay, stop delay (Solar), excess hold (Excess).

        Neither holds a car's minimum on the battery (beyond the owner's assist), and an
        Excess hold never imports: a hold that would is a stop."""
        on = plan.state.limit_a > 0.0 or plan.state.switch_paused
        carried = plan.limit > 0.0  # the allocator gives 0 or at least the minimum
        if c.mode is _EXCESS and (carried or balance.refreshes(c)):
            plan.set("hold_until", now + t.excess_hold_s)
        if carried:
            since = _since(plan.get("surplus_since"), now)
            plan.set("surplus_since", since)
            plan.set("short_since", None)
            wait = t.start_delay_s - (now - since)
            if not on and wait > EPS:
                plan.limit, plan.reason = 0.0, Reason.START_DELAY
                plan.detail = f"{c.mode}: waiting {wait:.0f} s to start"
            return
        short = _since(plan.get("short_since"), now) if on else None
        plan.set("surplus_since", None)
        plan.set("short_since", short)
        if short is None:
            return
        if balance.battery_to_sun_cars_w > balance.assist_w + _HOLD_NOISE_W:
            plan.reason = Reason.BATTERY_WOULD_DISCHARGE
            plan.detail = f"{c.mode}: stopped, the battery would discharge for it"
            return
        if c.mode is _SOLAR:
            left = t.stop_delay_s - (now - short)
            if left > EPS:
                plan.limit, plan.reason = c.min_a, Reason.STOP_DELAY
                plan.detail = f"solar: holding {c.min_a:g} A, stopping in {left:.0f} s"
            return
        hold_until = plan.get("hold_until")
        if hold_until is not None and now < hold_until:
            if balance.taken_w(c) > balance.assist_w + _HOLD_NOISE_W:
                plan.detail = "excess: stopped, the site would import for it"
                return
            plan.limit, plan.reason = c.min_a, Reason.EXCESS_HOLD
            plan.detail = f"excess: holding {c.min_a:g} A for {hold_until - now:.0f} s"

    def _eco_rules(self, plan: _Plan, c: Charger, t: Timing, now: float) -> None:
        """Eco above its minimum follows surplus only after the start delay, and keeps
        doing so until surplus has stayed short for the stop delay."""
        if plan.limit > c.min_a + EPS:
            since = _since(plan.get("surplus_since"), now)
            following = plan.get("following") or now - since >= t.start_delay_s - EPS
            plan.set("surplus_since", since)
            plan.set("short_since", None)
            plan.set("following", following)
            if not following:
                wait = t.start_delay_s - (now - since)
                plan.limit, plan.reason = c.min_a, Reason.START_DELAY
                plan.detail = f"eco: minimum, waiting {wait:.0f} s to follow surplus"
            return
        short = _since(plan.get("short_since"), now) if plan.get("following") else None
        following = short is not None and now - short < t.stop_delay_s - EPS
        plan.set("surplus_since", None)
        plan.set("short_since", short if following else None)
        plan.set("following", following)

    def _pause(self, plan: _Plan, c: Charger, t: Timing, now: float) -> None:
        stopped_at = plan.state.stopped_at
        if plan.state.limit_a > 0.0 or plan.limit <= 0.0 or stopped_at is None:
            return
        left = t.min_pause_s - (now - stopped_at)
        if left > EPS:
            plan.limit, plan.reason = 0.0, Reason.MIN_PAUSE
            plan.detail = f"{c.mode}: paused after stop, {left:.0f} s left"

    def _ramp(
        self,
        plan: _Plan,
        c: Charger,
        t: Timing,
        now: float,
        last_now: float | None,
        on_battery: bool,
    ) -> None:
        """Down at once; up at the ramp rate, and only by at least the dead band.

        `ramp_since` is the time an increase became pending (the previous cycle), or the
        time of the last step up; it is None while no increase is pending. `on_battery`:
        what the dead band would hold back of a reduction is the battery's
        (`_Balance.feeds_sun`).
        """
        last, want = plan.state.limit_a, plan.limit
        if want <= last or (last > 0.0 and want - last < t.dead_band_a - EPS):
            # A change within the dead band is not sent, a reduction included: the
            # check of holds cuts it at once if the breaker or import cap needs it.
            within = want > 0.0 and abs(want - last) < t.dead_band_a - EPS
            if within and want < last and on_battery:
                # Sent, and half a dead band further down: the next cut is then due
                # only once the sun has fallen that far again, not every cycle of a
                # falling afternoon (a whole dead band and the ramp would raise it
                # straight back).
                plan.limit = min(want, max(c.min_a, _floor(want - t.dead_band_a / 2)))
            else:
                plan.limit = last if within else want
            plan.set("ramp_since", None)
            return
        since = plan.get("ramp_since")
        if since is None:
            since = now if last_now is None else last_now
        allowed = last + t.ramp_up_a_per_s * (now - since)
        if last <= 0.0:
            allowed = max(allowed, c.min_a)  # a start goes straight to the minimum
        step = _floor(min(want, allowed))
        if step - last >= t.dead_band_a - EPS or (last <= 0.0 and step >= c.min_a and step > 0):
            plan.limit = step
            plan.set("ramp_since", now)
        else:
            plan.limit = last
            plan.set("ramp_since", since)
        if plan.limit < want:
            plan.reason = _RAMPING
            plan.detail = f"ramping up to {want:g} A"

    # -- phase switching ------------------------------------------------------------------

    def _switch_phases(
        self, plan: _Plan, index: int, snapshot: Snapshot, allocation: Allocation, now: float
    ) -> None:
        """Decide the charger's phase set (`phases.py`) from what it gets on the set in
        force and what it would get on the other; 0 A while pausing for a switch."""
        c = snapshot.chargers[index]
        settings = self.phase_switching[c.id]
        old = plan.state.phase or phases.initial(settings)
        a = allocation.by_id[c.id]
        if c.status not in ACTIVE_STATUSES or a.reason is _RELEASED:
            if c.status not in ACTIVE_STATUSES:
                plan.set("phase", phases.leave(settings, old))
            return
        charging = plan.state.limit_a > 0.0
        new = phases.observe(settings, old, snapshot, index, a.allocated_a, charging, now)
        plan.set("phase", new)
        if new.ignored and not old.ignored:
            log.warning(
                "charger %s: told %d phase(s) but draws on %s A: it ignores phase switching;"
                " counted on the lines it uses, switching off until the car leaves",
                c.id,
                old.phases,
                "/".join(f"{x:.1f}" for x in c.draw_a),
            )
        elif new.switches != old.switches:
            log.info("charger %s: switched to %d phase(s)", c.id, new.phases)
        elif old.step is phases.Step.PAUSING and new.step is phases.Step.STEADY:
            log.warning("charger %s: still drawing, phase switch given up", c.id)
        if new.paused:
            plan.limit, plan.reason, plan.detail = 0.0, Reason.PHASE_SWITCH, phases.detail(new)

    # -- holds ------------------------------------------------------------------------

    def _check_holds(self, snapshot: Snapshot, allocation: Allocation, plans: list[_Plan]) -> None:
        """Cut holds above the allocation to what is left once everyone else is served."""
        for p, a in zip(plans, allocation.chargers, strict=True):
            if p.limit > a.allocated_a + EPS:
                break
        else:
            return  # nothing held: the usual cycle
        held = {
            c.id
            for c, p, a in zip(snapshot.chargers, plans, allocation.chargers, strict=True)
            if p.limit > a.allocated_a + EPS
        }
        if not held or _fits_the_breaker(snapshot, allocation, plans):
            return
        pinned = []
        for c, p in zip(snapshot.chargers, plans, strict=True):
            if c.id in held:
                pinned.append(
                    c._replace(mode=_STANDARD, max_a=p.limit, priority=c.priority + _LAST)
                )
            elif p.limit > 0.0:
                pinned.append(c._replace(mode=_STANDARD, min_a=p.limit, max_a=p.limit))
            else:
                pinned.append(c._replace(status="Available"))
        check = allocate(snapshot._replace(chargers=tuple(pinned)))
        for c, p in zip(snapshot.chargers, plans, strict=True):
            granted = check.by_id[c.id].allocated_a
            if c.id in held and granted < p.limit - EPS:
                p.reason = Reason.BREAKER_LIMIT if granted > 0.0 else Reason.NO_CAPACITY
                p.detail = f"{c.mode}: breaker cannot carry {p.limit:g} A"
                p.limit = granted


def _fits_the_breaker(snapshot: Snapshot, allocation: Allocation, plans: list[_Plan]) -> bool:
    """Whether every command above its allocation fits in the breaker headroom the
    allocation leaves, on every line each such charger is wired to. Only where the
    breaker is the one limit (no import cap, no circuits, grid charging allowed): then
    the second allocation of the hold check is not needed."""
    site = snapshot.site
    if site.max_import_w is not None or site.circuits or not site.allow_grid_charging:
        return False
    room = list(allocation.site.headroom_a)
    for c, p in zip(snapshot.chargers, plans, strict=True):
        extra = p.limit - allocation.by_id[c.id].allocated_a
        if extra > EPS:
            for phase in c.phase_map[: wired_lines(c, site.phases)]:
                room[PHASE_NAMES.index(phase)] -= extra
    return min(room) >= -EPS


def _guard(snapshot: Snapshot, chargers: list[Charger], plans: list[_Plan], now: float) -> str:
    """The measured-current guard over this cycle's plans (see `guard.py`): what is over
    ("" when nothing is)."""
    m = snapshot.measurements
    volts = sum(m.voltage_v) / len(m.voltage_v) if m.voltage_v else snapshot.site.voltage_v
    over_a, over_w = measured_over(snapshot.site, m.grid_current_a, volts)
    if not any(over_a) and over_w <= 0.0:
        return ""  # the usual cycle: nothing to guard, no lists to build
    result = guard(
        snapshot.site,
        m.grid_current_a,
        volts,
        chargers,
        [p.limit for p in plans],
        [p.state.limit_a for p in plans],
        [p.state.lowered_at is not None and now - p.state.lowered_at <= FOLLOW_S for p in plans],
    )
    parts = [f"phase {PHASE_NAMES[i]} +{a:.1f} A" for i, a in enumerate(result.over) if a > 0]
    if result.import_over_w > 0.0:
        parts.append(f"import +{result.import_over_w:.0f} W")
    over = ", ".join(parts)
    for plan, limit, cut in zip(plans, result.limits, result.cut, strict=True):
        if cut:
            plan.limit = limit
            plan.reason = Reason.GUARD_CUT
            plan.detail = f"guard: {over} over the limit"
    return f"measured {over} over the limit" if over else ""


def _log_transitions(
    state: ControllerState,
    failsafe: bool,
    limited: bool,
    chargers: int,
    external: ExternalLimit | None,
    now: float,
) -> None:
    """One line when failsafe or an external limit starts or ends."""
    if failsafe and not state.failsafe:
        log.warning("grid data stale: %d charger(s) at their failsafe current", chargers)
    elif state.failsafe and not failsafe:
        log.info("grid data fresh again: normal control resumes")
    if external is not None and not state.external_limit:
        log.info("%s", _external_text(external, now))
    elif state.external_limit and not limited:
        log.info("external site limit ended")


_IDLE_S = Charger._fields.index("idle_s")


def _with_idle_s(c: Charger, idle_s: float) -> Charger:
    """`c._replace(idle_s=idle_s)`, written out (half the cost): it runs every cycle for
    every idle car."""
    return Charger._make((*c[:_IDLE_S], idle_s, *c[_IDLE_S + 1 :]))


def _idle_since(c: Charger, s: ChargerState, now: float) -> float | None:
    if c.status == "SuspendedEV" and sum(c.draw_a) < DRAWING_A:
        return _since(s.idle_since, now)
    return None


def limited_site(site: Site, external: ExternalLimit | None) -> Site:
    """The site's grid limits with an external limit in force (it never raises them)."""
    if external is None:
        return site
    breaker = site.main_breaker_a
    if external.current_a is not None:
        breaker = min(breaker, external.current_a)
    cap = site.max_import_w
    if external.power_w is not None:
        cap = external.power_w if cap is None else min(cap, external.power_w)
    return site._replace(main_breaker_a=breaker, max_import_w=cap)


@lru_cache(maxsize=64)
def _adjusted_site(
    site: Site, external: ExternalLimit | None, above_min: bool, above_target: bool, h: float
) -> Site:
    """The site as the allocator should see it: the grid capped by an external limit
    (never raised by it), soc_target lowered by the hysteresis while SOC is "above" it,
    and soc_min raised by it until SOC has recovered above it."""
    site = limited_site(site, external)
    battery = site.battery
    if battery is not None and (not above_min or above_target):
        battery = battery._replace(
            soc_min=battery.soc_min if above_min else min(100.0, battery.soc_min + h),
            soc_target=max(0.0, battery.soc_target - h) if above_target else battery.soc_target,
        )
        site = site._replace(battery=battery)
    return site


def _external_text(external: ExternalLimit, now: float) -> str:
    parts = []
    if external.current_a is not None:
        parts.append(f"{external.current_a:g} A")
    if external.power_w is not None:
        parts.append(f"{external.power_w:g} W")
    left = "" if math.isinf(external.expires_at) else f", {external.expires_at - now:.0f} s left"
    return f"external site limit {' / '.join(parts)}{left}"


class _Balance(NamedTuple):
    """What the sun and the battery do this cycle, for the holds of Solar and Excess and
    the dead band of cars on the sun."""

    site: Site
    volts: float
    # Per site phase: what the PV alone exports (+), or the grid and battery give (−), W.
    sun_w: tuple[float, ...]
    # Battery discharge into cars beyond what the battery policy lets Standard/Eco take.
    battery_to_sun_cars_w: float
    battery_to_cars_w: float  # all the battery's discharge into cars
    assist_w: float  # what the owner lets Solar/Excess cars take from the battery

    def feeds_sun(self, c: Charger, last_a: float) -> bool:
        """Whether the battery discharges into the cars (beyond the owner's assist) while
        `c`, commanded `last_a`, runs on the sun: Solar, Excess, or Eco above its minimum.
        Such a car is allocated exactly the sun's surplus, and a battery that follows the
        load covers whatever it draws beyond that: a reduction the dead band held back
        would be the battery's (with net metering nothing else is left to cover it)."""
        on_sun = c.mode in _SUN_MODES or (c.mode is _ECO and last_a > c.min_a + EPS)
        return on_sun and self.battery_to_cars_w > self.assist_w

    def refreshes(self, c: Charger) -> bool:
        """The excess hold is renewed while the sun's export plus the car's own draw
        exceeds the threshold (the car's draw is its own, not export it has used up)."""
        if self.site.metering is _NET:
            export_w = max(0.0, sum(self.sun_w))
        else:
            export_w = sum(max(0.0, w) for w in self.sun_w)
        own_w = sum(c.draw_a[: wired_lines(c, self.site.phases)]) * self.volts
        return export_w + own_w > self.site.excess_threshold_w

    def taken_w(self, c: Charger) -> float:
        """What the grid and the battery give on the car's phases (net: on the site)."""
        if self.site.metering is _NET:
            return max(0.0, -sum(self.sun_w))
        phases = c.phase_map[: wired_lines(c, self.site.phases)]
        return sum(max(0.0, -self.sun_w[PHASE_NAMES.index(p)]) for p in phases)


def _balance(snapshot: Snapshot) -> _Balance:
    m, site = snapshot.measurements, snapshot.site
    volts = sum(m.voltage_v) / len(m.voltage_v) if m.voltage_v else site.voltage_v
    # max(0.0, ...) written out, and no generator: this runs every cycle a car is on the sun.
    power_w = m.battery_power_w or 0.0
    discharge_w = power_w if power_w > 0.0 else 0.0
    share_w = discharge_w / site.phases
    sun_w = tuple([-a * volts - share_w for a in m.grid_current_a])
    battery, soc = site.battery, m.battery_soc
    if battery is None or discharge_w <= 0.0:
        return _Balance(site, volts, sun_w, 0.0, 0.0, 0.0)
    cars_w = allowed_w = 0.0
    for c in snapshot.chargers:
        draw_w = sum(c.draw_a[: wired_lines(c, site.phases)]) * volts
        cars_w += draw_w
        if c.mode not in _SUN_MODES:
            allowed_w += min(draw_w, allowance_w(battery, c.mode, soc))
    to_cars_w = discharge_to_cars_w(m.battery_power_w, sum(m.grid_current_a) * volts, cars_w)
    return _Balance(
        site,
        volts,
        sun_w,
        max(0.0, to_cars_w - allowed_w),
        to_cars_w,
        allowance_w(battery, _SOLAR, soc),
    )


def _reset(plan: _Plan) -> None:
    """No car: command 0, forget the session's timers, keep the counters."""
    plan.limit, plan.reason, plan.detail = 0.0, _NOT_ACTIVE, _NOT_ACTIVE_TEXT
    s = plan.state
    if s[:_SESSION_END] == _SESSION_FRESH:  # idle for a while: the usual case
        plan.changes = {}
    else:
        plan.changes = {n: fresh for n, fresh in _SESSION_DEFAULTS if getattr(s, n) != fresh}


_UNCOUNTED = (Reason.RELEASED, Reason.NOT_ACTIVE, Reason.PHASE_SWITCH)


def _count(plan: _Plan, now: float) -> None:
    """Note the command sent: count starts and stops (not of a released car), and the
    stop time."""
    last, limit = plan.state.limit_a, plan.limit
    plan.set("limit_a", limit)
    if limit < last:
        plan.set("lowered_at", now)
    if plan.reason in _UNCOUNTED or plan.state.switch_paused:
        return  # a pause for a phase switch, and the resume after it, are not stops/starts
    if limit > 0.0 and last <= 0.0:
        plan.set("starts", plan.state.starts + 1)
        plan.set("short_since", None)
    elif limit <= 0.0 < last:
        plan.set("stops", plan.state.stops + 1)
        plan.set("stopped_at", now)
        plan.set("short_since", None)
