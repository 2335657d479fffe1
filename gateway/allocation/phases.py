"""1-phase/3-phase switching for one charger (issue #15): which phase set, and when.

Pure: state in, state out, `now` passed in. The controller calls `observe` once per
cycle for each charger with `phase_switching = true`, after the allocator has answered,
and gives the charger `in_force` (the phase set, widened to the lines it really draws
on) in the next allocation, so the breaker and circuit accounting follows at once.

The rule: 1 phase when 3 phases cannot carry the charger's minimum but 1 phase can; 3
phases again once 3 phases would get `HYSTERESIS_A` above the minimum (so surplus
hovering at the 3-phase minimum does not flip it), and never sooner than `dwell_s`
after the last switch. A car is never switched under load (IEC 61851: contactors must
not open under current, and a car may fault on lines vanishing mid-charge): it is paused
to 0 A, switched once the pause has lasted `PAUSE_S` and it draws < 1 A, held at 0 A
for `SETTLE_S`, then resumed. The pause comes first even when the car is seen not
drawing: its draw is known only from its last reading, which may predate a start.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum

from gateway.allocation.allocator import allocate, wired_lines
from gateway.inputs import undeclared_lines
from gateway.model import PHASE_NAMES, Charger, Snapshot

# A car drawing less than this in total is taken as not drawing (the allocator's figure).
DRAWING_A = 1.0
# A paused car is switched no sooner than this: IEC 61851 gives a car 5 s to follow a
# lower PWM duty cycle, and the 0 A command takes up to a cycle to reach the charger.
PAUSE_S = 6.0
# 3 phases again only once they would carry this much above the minimum.
HYSTERESIS_A = 1.0
# After the switch, 0 A this long before resuming: the charger's contactors and the
# car's own phase detection settle (SmartEVSE and openWB wait a few seconds too).
SETTLE_S = 5.0
# A car still drawing this long after being paused to switch is not going to stop:
# the switch is given up (and retried no sooner than the dwell time).
PAUSE_LIMIT_S = 60.0


class Step(Enum):
    STEADY = "steady"  # charging (or not) on the phase set in force
    PAUSING = "pausing"  # command 0 A until the car draws < 1 A
    SWITCHED = "switched"  # the new phase set is in force, 0 A until SETTLE_S has passed


@dataclass(frozen=True, slots=True)
class PhaseState:
    phases: int  # the phase set in force: what the allocator counts and the charger is sent
    step: Step = Step.STEADY
    target: int = 0  # while PAUSING: the phase set being switched to
    since: float = 0.0  # when the present step began
    switched_at: float | None = None  # the last switch or given-up attempt (dwell)
    switches: int = 0
    # The pause interrupted a charging command: its resume is not a start.
    interrupted: bool = False
    # The car kept drawing on lines outside the phase set: switching is off for it
    # until it leaves, and it is counted on the lines it really uses.
    ignored: bool = False

    @property
    def paused(self) -> bool:
        """The command must be 0 A this cycle (pausing for, or settling after, a switch)."""
        return self.step is not Step.STEADY


@dataclass(frozen=True, slots=True)
class PhaseSettings:
    full: int  # the charger's configured phases (its phase set without switching)
    min_a: float
    dwell_s: float


def initial(settings: PhaseSettings) -> PhaseState:
    return PhaseState(phases=settings.full)


def wanted(settings: PhaseSettings, phases: int, one_a: float, full_a: float) -> int:
    """The phase set the allocation asks for: `one_a` / `full_a` are what 1 phase and
    the full phase set would be allocated now."""
    if phases == settings.full:
        return 1 if full_a < settings.min_a and one_a >= settings.min_a else phases
    return settings.full if full_a >= settings.min_a + HYSTERESIS_A else phases


def decide(
    settings: PhaseSettings,
    state: PhaseState,
    one_a: float,
    full_a: float,
    draw_a: tuple[float, ...],
    charging: bool,
    now: float,
) -> PhaseState:
    """The phase state for this cycle, from what 1 and the full phase set would get
    (`one_a`, `full_a`), the car's measured draw per charger line, and whether its last
    command let it charge (`charging`)."""
    drawing = sum(draw_a) >= DRAWING_A
    if state.step is Step.PAUSING:
        paused_s = now - state.since
        if not drawing and paused_s >= PAUSE_S:
            return _switch(state, state.target, now)
        if paused_s >= PAUSE_LIMIT_S:
            return replace(
                state, step=Step.STEADY, target=0, since=now, switched_at=now, interrupted=False
            )
        return state
    if state.step is Step.SWITCHED:
        if now - state.since >= SETTLE_S:
            return replace(state, step=Step.STEADY, since=now, interrupted=False)
        return state
    if state.ignored:
        return state
    if state.phases < settings.full and any(a > DRAWING_A for a in draw_a[state.phases :]):
        # Told fewer phases, the car draws on more: the charger did not switch.
        return replace(state, phases=settings.full, ignored=True, since=now)
    want = wanted(settings, state.phases, one_a, full_a)
    if want == state.phases:
        return state
    if state.switched_at is not None and now - state.switched_at < settings.dwell_s:
        return state
    return replace(state, step=Step.PAUSING, target=want, since=now, interrupted=charging)


def observe(
    settings: PhaseSettings,
    state: PhaseState,
    snapshot: Snapshot,
    index: int,
    allocated_a: float,
    charging: bool,
    now: float,
) -> PhaseState:
    """`decide` for charger `index` of the cycle's snapshot (on the phase set in force),
    allocated `allocated_a` there: what the other phase set would get comes from a second
    allocation, made only when it can change the answer."""
    c = snapshot.chargers[index]
    if state.paused or state.ignored:
        one_a = full_a = 0.0  # not looked at in these steps: no probe
    elif c.phases == 1:
        one_a, full_a = allocated_a, probe(snapshot, index, settings.full)
    elif allocated_a >= settings.min_a:
        one_a, full_a = 0.0, allocated_a  # the full set carries its minimum: 1 phase is moot
    else:
        one_a, full_a = probe(snapshot, index, 1), allocated_a
    return decide(settings, state, one_a, full_a, c.draw_a, charging, now)


def in_force(c: Charger, phase: PhaseState | None, site_phases: int) -> Charger:
    """The charger on the phase set in force, widened to the lines it really draws on."""
    if phase is None or phase.phases == c.phases:
        return c
    return undeclared_lines(c._replace(phases=phase.phases), c.draw_a, site_phases)


def probe(snapshot: Snapshot, index: int, phases: int) -> float:
    """What charger `index` would be allocated on `phases` lines. Its draw is taken out
    of the grid reading and the charger alike, so the household stays as measured."""
    c = snapshot.chargers[index]
    grid = list(snapshot.measurements.grid_current_a)
    for k in range(wired_lines(c, snapshot.site.phases)):
        grid[PHASE_NAMES.index(c.phase_map[k])] -= c.draw_a[k]
    chargers = list(snapshot.chargers)
    chargers[index] = c._replace(phases=phases, draw_a=(0.0, 0.0, 0.0))
    probe = snapshot._replace(
        measurements=snapshot.measurements._replace(grid_current_a=tuple(grid)),
        chargers=tuple(chargers),
    )
    return allocate(probe).by_id[c.id].allocated_a


def leave(settings: PhaseSettings, state: PhaseState) -> PhaseState:
    """No car: back to the full phase set for the next one; the count stays."""
    return PhaseState(phases=settings.full, switched_at=state.switched_at, switches=state.switches)


def _switch(state: PhaseState, phases: int, now: float) -> PhaseState:
    return PhaseState(
        phases=phases,
        step=Step.SWITCHED,
        since=now,
        switched_at=now,
        switches=state.switches + 1,
        interrupted=state.interrupted,
        ignored=state.ignored,
    )


def detail(state: PhaseState) -> str:
    """The command's detail text while paused for a switch."""
    if state.step is Step.PAUSING:
        return f"pausing to switch to {state.target} phase(s)"
    return f"switched to {state.phases} phase(s), resuming"
