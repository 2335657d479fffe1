"""The measured-current guard: the last word on every cycle's commands (pure).

The allocator plans from a model (household = grid - reported charger draw). The model
is only as good as what chargers report: a charger that ignores its limit, draws on
lines it does not report, or is offline still loads the breaker. The guard does not
trust the model. It compares the *measured* grid current per phase (and the import
power against the cap) with the limit in force; where a phase is over, it cuts the
chargers drawing on that phase by at least the excess plus `GUARD_MARGIN_A`, least
urgent and lowest priority first, and lets no command on that phase rise above the
last one sent until the phase is back under.

A charger drawing above its last command is counted on to come down to it while its
car may still be following (`FOLLOW_S` after the command was lowered); after that it
is taken to disobey: it is cut but not counted on, and the next charger is cut too.

Reaction bound: a measured overload is answered in the same cycle; the physical
current is back under the breaker one car lag later; where a charger does not obey,
the others are cut `FOLLOW_S` later and follow one car lag after that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.allocation.allocator import DRAWING_A, wired_lines
from gateway.model import PHASE_NAMES, Charger, Site

# Cut below the breaker by this much, so a car settling a little above its limit or
# rounding in the meter does not leave the phase at the edge.
GUARD_MARGIN_A = 1.0
# A charger drawing more than this above its last command is not following it.
FOLLOW_TOLERANCE_A = 1.0
# A car is given this long to follow a lowered limit (IEC 61851: 5 s, plus a cycle);
# meanwhile its pending reduction is counted on, after that it is not.
FOLLOW_S = 6.0
_INDEX = {name: i for i, name in enumerate(PHASE_NAMES)}


@dataclass(frozen=True, slots=True)
class GuardResult:
    limits: tuple[float, ...]  # the guarded command per charger, in input order
    cut: tuple[bool, ...]  # the guard lowered or held this charger's command
    over: tuple[float, ...]  # measured excess per site phase over the breaker (0 if under)
    import_over_w: float  # measured import over the cap (0 if under or no cap)


def _line_phases(charger: Charger, site_phases: int) -> list[int]:
    """Site phase index of each wired charger line."""
    return [_INDEX[charger.phase_map[k]] for k in range(wired_lines(charger, site_phases))]


def measured_over(
    site: Site, grid_current_a: Sequence[float], volts: float
) -> tuple[tuple[float, ...], float]:
    """The measured excess per site phase over the breaker, and the import over the cap
    (zeros: nothing to guard, the usual cycle)."""
    # max(0.0, ...) written out, and no generator: this runs every cycle.
    grid = grid_current_a[: site.phases]
    breaker = site.main_breaker_a
    over = tuple([a - breaker if a > breaker else 0.0 for a in grid])
    cap = site.max_import_w
    if cap is None:
        return over, 0.0
    import_w = sum(grid) * volts
    return over, import_w - cap if import_w > cap else 0.0


def guard(
    site: Site,
    grid_current_a: Sequence[float],
    volts: float,
    chargers: Sequence[Charger],
    planned: Sequence[float],
    last: Sequence[float],
    following: Sequence[bool],
) -> GuardResult:
    """Guard `planned` commands (A/phase per charger) against the measured grid.

    `site` is the site as limited this cycle (an external limit lowers its breaker),
    `last` the commands sent in the previous cycle, `following[i]` whether charger i's
    command was lowered within `FOLLOW_S` (its car may still be following it),
    `chargers` carry this cycle's believed draw per charger line.
    """
    n = site.phases
    limits = list(planned)
    cut = [False] * len(chargers)
    over, import_over = measured_over(site, grid_current_a, volts)
    if not any(over) and import_over <= 0.0:
        return GuardResult(tuple(limits), tuple(cut), over, import_over)

    # Least urgent, lowest priority, last configured first: the reverse order of service.
    order = sorted(
        range(len(chargers)),
        key=lambda i: (chargers[i].mode.urgency, chargers[i].priority, i),
        reverse=True,
    )
    phases_of = [_line_phases(c, n) for c in chargers]
    draw_on = [
        [sum(c.draw_a[k] for k, p in enumerate(phases_of[i]) if p == phase) for phase in range(n)]
        for i, c in enumerate(chargers)
    ]

    def lower(i: int, draw: float, by: float) -> float:
        """Lower charger i's command to at most `draw - by` A/phase (0 below its minimum);
        return how much less it can be counted on to draw.

        A charger drawing above its last command has not followed it (it disobeys, or
        its car still lags): its cut is sent, but not counted on, so the next charger
        is cut too.
        """
        before = limits[i]
        new = max(0.0, draw - by)
        if new < chargers[i].min_a:
            new = 0.0
        if new < limits[i]:
            limits[i] = new
            cut[i] = True
        return credit(i, draw, limits[i]) - credit(i, draw, before)

    def credit(i: int, draw: float, limit: float) -> float:
        """How much less than `draw` charger i can be counted on to draw at `limit`."""
        if draw > last[i] + FOLLOW_TOLERANCE_A and not following[i]:
            return 0.0
        return max(0.0, draw - limit)

    def hold(i: int) -> None:
        if limits[i] > last[i]:
            limits[i] = last[i]
            cut[i] = True

    for phase in range(n):
        if over[phase] <= 0.0:
            continue
        for i in range(len(chargers)):
            if phase in phases_of[i]:
                hold(i)
        remaining = over[phase] + GUARD_MARGIN_A
        # The model's own reductions this cycle count first.
        remaining -= sum(credit(i, d[phase], limits[i]) for i, d in enumerate(draw_on))
        for i in order:
            draw = draw_on[i][phase]
            if remaining <= 0.0:
                break
            if draw > DRAWING_A:
                remaining -= lower(i, draw, remaining)
        # Excess nobody is seen drawing: a charger whose draw is unknown there (a line
        # it does not report, an unbelievable value, wired otherwise than configured)
        # may carry it. Cut those too, without counting on it.
        for i in order:
            if remaining <= 0.0:
                break
            if limits[i] > 0.0 and draw_on[i][phase] <= DRAWING_A:
                lower(i, limits[i], remaining)

    if import_over > 0.0:
        for i in range(len(chargers)):
            hold(i)
        remaining_w = import_over + GUARD_MARGIN_A * volts
        for i in order:
            if remaining_w <= 0.0:
                break
            drawing = [d for d in draw_on[i] if d > DRAWING_A]
            if drawing:
                per_line = max(drawing)
                by = remaining_w / (volts * len(drawing))
                remaining_w -= lower(i, per_line, by) * volts * len(drawing)

    return GuardResult(tuple(limits), tuple(cut), over, import_over)
