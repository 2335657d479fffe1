"""Limit changes in flight: what a charger draws between a new limit and the reading
that shows it.

The grid meter is read every second; a charger reports its draw every
`meter_interval_s` (10 s by default). After a limit change the grid shows the car
following it long before the charger's next MeterValues do, so counting the old reading
as its draw puts the change into the household a second time. On a site with 9 A free
a car started at 6 A then sees 3 A free and is stopped (into its minimum pause) by its
own draw; a charger held by the breaker hunts up and down by the ramp step.

So, while a charger's last reading is older than its last change by less than a car's
follow time (the guard's `FOLLOW_S`), the grid's move on its lines since the change is taken as its
car following: a rise for a raise, a fall for a reduction, at most the change and never
past the new limit. Chargers whose changes share a phase share its move in proportion
to their changes. A move the other way is not theirs (it is the household's), and a
newer reading always counts where it shows more (raise) or less (reduction) than that.

What this can get wrong: a household rise while a raise is in flight is counted as the
car's, by at most the raise, until the charger's next reading; the measured-current
guard keeps the breaker meanwhile. A fall while a reduction is in flight counts as the
car's, which only ever leaves the others less.

Pure: the hub keeps the changes (`record`) and applies them each cycle (`attribute`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gateway.allocation.allocator import wired_lines
from gateway.allocation.guard import FOLLOW_S  # a reading sooner after may not show it
from gateway.model import PHASE_NAMES, Charger

# A car drawing within this of its limit is held by it (it would follow a raise).
AT_LIMIT_A = 1.0


@dataclass(frozen=True, slots=True)
class Change:
    """A charger's limit change, with what the cycle that made it saw."""

    at: float  # the hub's clock when the change was decided
    before_a: float  # the limit before (A per phase)
    limit_a: float  # the new limit
    draw_a: tuple[float, ...]  # the draw counted for it then, per charger line
    grid_a: tuple[float, ...]  # the measured grid then, per site phase

    def room(self, line: int) -> float:
        """How far the car on `line` may move by this change: > 0 up, < 0 down."""
        base = self.draw_a[line]
        if self.limit_a > self.before_a:  # a raise moves a car that its old limit held
            return self.limit_a - base if base >= self.before_a - AT_LIMIT_A else 0.0
        return min(0.0, self.limit_a - base)


def record(
    changes: Mapping[str, Change],
    chargers: Sequence[Charger],
    before: Mapping[str, float],
    after: Mapping[str, tuple[float, bool]],
    grid_a: tuple[float, ...],
    now: float,
) -> dict[str, Change]:
    """The changes in flight after this cycle's commands.

    `chargers`: as this cycle counted them; `before`: each charger's previous command;
    `after`: this cycle's command and whether it switches phases (its lines change:
    nothing to attribute). A charger whose command is unchanged keeps its change."""
    out: dict[str, Change] = {}
    for c in chargers:
        limit, switching = after.get(c.id, (0.0, True))  # not commanded: nothing to follow
        if switching:
            continue
        old = before.get(c.id, 0.0)
        if limit != old:
            out[c.id] = Change(now, old, limit, tuple(c.draw_a), grid_a)
        elif c.id in changes:
            out[c.id] = changes[c.id]
    return out


def expired(change: Change, reading_mono: float | None, now: float, stale_after_s: float) -> bool:
    """The charger's reading shows the change (taken a follow time after it), or its
    reading is stale (its draw then stays in the household: nothing to add to it), or
    the reading that should show the change is overdue."""
    if now - change.at > FOLLOW_S + stale_after_s:
        return True
    if reading_mono is None:
        return False
    return reading_mono >= change.at + FOLLOW_S or now - reading_mono > stale_after_s


def attribute(
    chargers: Sequence[Charger],
    changes: Mapping[str, Change],
    grid_a: tuple[float, ...],
    site_phases: int,
) -> tuple[Charger, ...]:
    """`chargers` with the draw of their changes in flight (see the module docstring).

    Only Charging chargers count (the others' draw is 0 by the inputs' rules)."""
    if not changes:
        return tuple(chargers)
    # phase -> (charger, line, its change, its room: > 0 up, < 0 down)
    takers: dict[int, list[tuple[int, int, Change, float]]] = {}
    for i, c in enumerate(chargers):
        change = changes.get(c.id)
        if change is None or c.status != "Charging":
            continue
        for k in range(min(wired_lines(c, site_phases), len(change.draw_a))):
            p = PHASE_NAMES.index(c.phase_map[k])
            room = change.room(k)
            if room != 0 and p < min(len(grid_a), len(change.grid_a)):
                takers.setdefault(p, []).append((i, k, change, room))
    draws = [list(c.draw_a) for c in chargers]
    for p, entries in takers.items():
        # The move since the oldest change on the phase: rises go to the raises, falls to
        # the reductions, in proportion to their room, each at most its own.
        move = grid_a[p] - min(entries, key=lambda e: e[2].at)[2].grid_a[p]
        mine = [e for e in entries if (e[3] > 0) == (move > 0)]
        total = sum(abs(room) for *_, room in mine)
        if move == 0 or total == 0:
            continue
        for i, k, change, room in mine:
            share = min(abs(move), total) * room / total  # signed like the room
            moved = change.draw_a[k] + share
            reported = draws[i][k]
            draws[i][k] = max(reported, moved) if share > 0 else min(reported, moved)
    return tuple(
        c._replace(draw_a=tuple(d)) if tuple(d) != tuple(c.draw_a) else c
        for c, d in zip(chargers, draws, strict=True)
    )
