"""A car on a charger: follows the offered current after a lag, stops when full.

Pure: time is passed in. IEC 61851 gives a car up to 5 s to follow a new PWM duty cycle,
and a car draws nothing when offered less than 6 A. A phase set offered with the current
(OCPP `numberPhases`) is switched by the charger at once: the car then draws on that
many lines, unless the charger ignores the switch (`ignores_phase_switch`). A switch
while the car draws is counted in `switched_under_load` (what IEC 61851 forbids).
"""

from __future__ import annotations

from dataclasses import dataclass, field

IEC_MIN_A = 6.0


@dataclass
class EV:
    max_a: float = 16.0  # what the car's onboard charger takes per phase
    phases: int = 3  # lines the car draws on (1 for most small cars)
    energy_wanted_wh: float = 20_000.0
    lag_s: float = 5.0
    ignores_phase_switch: bool = False
    # Its battery fills this much faster than `now` runs: a live day (`evse-gateway demo`)
    # runs its sun and house faster than the wall clock its charger keeps.
    speed: float = 1.0
    delivered_wh: float = 0.0
    switched_under_load: int = 0
    offered_phases: int = 3  # the phase set the charger was told (3: all it has)
    draw_a: float = 0.0
    _pending: list[tuple[float, float]] = field(default_factory=list)  # (due time, target A)
    _offered_a: float = 0.0
    _last_t: float | None = None
    # Read several times a cycle, so kept as plain attributes: set here and wherever what
    # they follow changes (offer: the phase set; advance: the energy and the draw).
    lines: int = field(init=False)  # lines the car draws on now
    full: bool = field(init=False)  # it has all it wanted
    currents: tuple[float, float, float] = field(init=False)  # line_currents()

    def __post_init__(self) -> None:
        self.lines = self._lines()
        self.full = self.delivered_wh >= self.energy_wanted_wh
        self.currents = self.line_currents()

    def _lines(self) -> int:
        if self.ignores_phase_switch:
            return self.phases
        return min(self.phases, self.offered_phases)

    def offer(self, limit_a: float, now: float, phases: int | None = None) -> None:
        """The charger offers `limit_a` from `now` on (on `phases` lines, where given);
        the car reacts `lag_s` later."""
        if phases is not None and phases != self.offered_phases:
            lines = self.lines
            self.offered_phases = phases
            self.lines = self._lines()
            if self.lines != lines:
                self.currents = self.line_currents()
                if self.draw_a >= 1.0:
                    self.switched_under_load += 1
        if limit_a == self._offered_a:
            return
        self._offered_a = limit_a
        target = 0.0 if limit_a < IEC_MIN_A else min(limit_a, self.max_a)
        self._pending.append((now + self.lag_s, target))

    def advance(self, now: float, voltage_v: float = 230.0) -> float:
        """Move to `now`, counting energy at the draw held since the last call."""
        last, draw = self._last_t, self.draw_a
        # Not drawing adds nothing (+ 0.0 leaves the count as it is): most cycles of a
        # day, as cars wait, are full or have gone.
        if draw and last is not None and now > last:
            hours = (now - last) * self.speed / 3600
            self.delivered_wh += draw * voltage_v * self.lines * hours
            self.full = self.delivered_wh >= self.energy_wanted_wh
        self._last_t = now
        was, pending = draw, self._pending
        while pending and pending[0][0] <= now:
            draw = self.draw_a = pending.pop(0)[1]
        if draw and self.full:
            draw = self.draw_a = 0.0
        if draw != was:
            self.currents = self.line_currents()
        return draw

    def line_currents(self) -> tuple[float, float, float]:
        """Draw per charger line L1..L3 (a 1-phase car draws on L1 only)."""
        a, lines = self.draw_a, self.lines
        return (a, a if lines > 1 else 0.0, a if lines > 2 else 0.0)
