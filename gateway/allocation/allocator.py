"""Every charger's current in one pass over one snapshot (the contract: ALLOCATION in docs).

Pure: no I/O, no clock. Steps: household = grid − measured charger draw; build the
pools once; serve active chargers in order (mode urgency, priority, config order) with
the site's distribution strategy; released SuspendedEV chargers get their minimum only
from what is left; idle chargers are told what they would get; round down to 0.1 A.

It runs every cycle, so the per-charger work is written for speed: what is fixed for a
cycle is worked out once per seat, what is fixed for a site once per site, and min()
and max() are written out where they run per charger (keeping their rule: on a tie
the first argument is returned, so an int maximum stays an int in the output).
"""

from __future__ import annotations

import math
from functools import lru_cache, partial
from itertools import groupby
from operator import attrgetter

from gateway.allocation.capacity import POPCOUNT, Capacity
from gateway.allocation.pools import Pools, battery_view, build_pools
from gateway.model import (
    ACTIVE_STATUSES,
    PHASE_NAMES,
    Allocation,
    Charger,
    ChargerAllocation,
    Circuit,
    Distribution,
    Mode,
    Reason,
    SiteSummary,
    Snapshot,
)

EPS = 1e-6
_ORDER = attrgetter("sort_key")
DRAWING_A = 1.0  # a line carrying more than this is in use
_INDEX = {name: i for i, name in enumerate(PHASE_NAMES)}
_URGENCY = {mode: mode.urgency for mode in Mode}  # (a property: read once here)
# Enum members read per charger per cycle, as globals: reading one off its class goes
# through EnumType.__getattr__, several times the cost.
_STANDARD, _ECO, _SOLAR, _EXCESS = Mode.STANDARD, Mode.ECO, Mode.SOLAR, Mode.EXCESS
_NOT_ACTIVE = Reason.NOT_ACTIVE
_SHARED, _PRIORITY, _OPTIMIZED = Distribution.SHARED, Distribution.PRIORITY, Distribution.OPTIMIZED
# A ChargerAllocation from its fields in order, built the way its Python-level __new__
# builds it (tuple.__new__), without that call: one per charger per cycle.
_new_result = partial(tuple.__new__, ChargerAllocation)
# Per site phase count: the site phases (indexes) in each mask.
_PHASES_IN = tuple(
    tuple(tuple(i for i in range(n) if m >> i & 1) for m in range(8)) for n in range(4)
)


def wired_lines(charger: Charger, site_phases: int) -> int:
    """Charger lines connected to site phases (on a 1-phase site only L1)."""
    # min(phases, len(phase_map), site_phases), written out: it runs per charger per cycle.
    wired = charger.phases
    mapped = len(charger.phase_map)
    if mapped < wired:
        wired = mapped
    return site_phases if site_phases < wired else wired


@lru_cache(maxsize=256)
def _wiring(phase_map: str, phases: int, site_phases: int) -> tuple[tuple[int, ...], int, int]:
    """A charger's site phase per line, its wired lines and the mask of their site phases
    (worked out once per wiring: a handful serve every charger every cycle)."""
    lines = tuple(_INDEX[name] for name in phase_map)
    wired = min(phases, len(phase_map), site_phases)  # wired_lines(), from its fields
    mask = 0
    for line in lines[:wired]:
        mask |= 1 << line
    return lines, wired, mask


@lru_cache(maxsize=64)
def _circuits_of(circuits: tuple[Circuit, ...]) -> dict[str, tuple[str, ...]]:
    """Charger id -> the circuits it is on (per site, not per cycle)."""
    of: dict[str, tuple[str, ...]] = {}
    for circuit in circuits:
        for member in circuit.chargers:
            of[member] = (*of.get(member, ()), circuit.name)
    return of


class Seat:
    """One charger during allocation, with what is fixed for the cycle worked out once."""

    __slots__ = (
        "active",
        "amount",
        "charger",
        "circuits",
        "lines",
        "mask",
        "max_a",
        "min_a",
        "mode",
        "released",
        "seated",
        "site_lines",
        "sort_key",
        "uncapped",
        "wired",
    )

    def __init__(
        self,
        charger: Charger,
        index: int,
        site_phases: int,
        release_after_s: float,
        circuits: tuple[str, ...],
        standard_waits: bool,
    ) -> None:
        self.charger = charger
        self.mode = mode = charger.mode
        self.min_a = charger.min_a
        self.max_a = charger.max_a
        self.circuits = circuits
        site_lines, wired, mask = _wiring(charger.phase_map, charger.phases, site_phases)
        self.site_lines = site_lines  # the site phase of each charger line
        self.wired = wired
        status = charger.status
        self.active = active = status in ACTIVE_STATUSES
        draw = charger.draw_a
        if active and wired > 1:
            drawing = used = 0
            for k in range(wired):
                if draw[k] > DRAWING_A:
                    drawing += 1
                    used |= 1 << site_lines[k]
            if 0 < drawing < wired:
                # A car using fewer lines than the charger has: leave the others free.
                mask = used
        self.mask = mask  # site phases it draws on (bits A=1, B=2, C=4)
        self.lines = POPCOUNT[mask]
        self.released = (
            status == "SuspendedEV" and sum(draw) < DRAWING_A and charger.idle_s >= release_after_s
        )
        # Order of service: mode urgency, priority, config order.
        self.sort_key = (_URGENCY[mode], charger.priority, index)
        # Its mode lets it take its max from any source: only the wires limit it.
        self.uncapped = mode is _STANDARD and not standard_waits
        self.amount = 0.0
        self.seated = False  # got its minimum in the first pass


def _urgency(seat: Seat) -> int:
    return seat.sort_key[0]


class _Allocator:
    def __init__(self, snapshot: Snapshot) -> None:
        site, m = snapshot.site, snapshot.measurements
        self.site = site
        voltage = m.voltage_v
        self.volts = volts = sum(voltage) / len(voltage) if voltage else site.voltage_v
        self.soc = m.battery_soc
        grid = m.grid_current_a
        self.battery = battery = battery_view(
            site, m.battery_soc, m.battery_power_w, volts, m.pv_power_w, sum(grid) * volts
        )
        circuits_of = _circuits_of(site.circuits) if site.circuits else {}
        phases, release_after_s = site.phases, site.release_after_s
        standard_waits = battery.standard_waits
        self.seats = seats = []
        # A reading on a line that is not wired to the site cannot be on its phases.
        household = list(grid)
        for i, c in enumerate(snapshot.chargers):
            seat = Seat(
                c, i, phases, release_after_s, circuits_of.get(c.id, ()), standard_waits
            )
            seats.append(seat)
            draw = c.draw_a
            if any(draw):  # (x - 0.0 is x: a charger drawing nothing changes nothing)
                site_lines = seat.site_lines
                for k in range(seat.wired):
                    if draw[k]:
                        household[site_lines[k]] -= draw[k]
        self.household = tuple(household)
        output_w = (m.pv_power_w or 0.0) + (m.battery_power_w or 0.0)
        if not output_w > 0.0:  # (max(0.0, output_w), written out)
            output_w = 0.0
        self.pools = build_pools(site, self.household, battery, volts, output_w)
        # The targets are what each mode would give from the sources before anyone is
        # served: the labelled pools the ceiling reads are kept as they were at the first
        # grant (until then `pools` holds them).
        self.fresh: tuple[Capacity, Capacity] | None = None

    # -- what a charger may take ---------------------------------------------------

    def ceiling(self, seat: Seat, surplus: Capacity, excess: Capacity, base: float) -> float:
        """The most its mode lets it take from the sources it may use."""
        mode = seat.mode
        battery = self.battery
        if mode is _STANDARD:
            if battery.standard_waits:
                # The battery would feed it against the policy: only the sun's surplus.
                return base + surplus.available(seat.mask)
            return seat.max_a
        below_target = not battery.at_target
        sun = base + surplus.available(seat.mask)
        if mode is _ECO:
            if battery.eco_waits:
                # The battery would feed its minimum: only the sun's surplus may.
                return 0.0 if below_target else sun
            if below_target:
                return seat.min_a
            return sun if sun > seat.min_a else seat.min_a  # max(min_a, sun)
        if mode is _SOLAR:
            return 0.0 if below_target else sun
        left = excess.available(seat.mask)
        if base <= 0.0 and left <= EPS:
            return 0.0
        # At least its minimum once there is excess, but never more than the site would
        # still export (or yield from the battery's redirected charge): it never imports.
        # (min(max(min_a, base + left), sun), written out.)
        want = base + left
        if not want > seat.min_a:
            want = seat.min_a
        return sun if sun < want else want

    @staticmethod
    def wires(seat: Seat, pools: Pools, base: float) -> float:
        """What the breaker, inverter and its circuits let it hold on its phases in total."""
        mask = seat.mask
        wires = pools.physical.available(mask)
        for name in seat.circuits:
            v = pools.circuits[name].available(mask)
            if v < wires:
                wires = v
        return base + wires

    def limit(self, seat: Seat, pools: Pools, base: float) -> float:
        """The most it can hold in total, given what it holds (`base`) already:
        min(max_a, ceiling, wires), written out."""
        wires = self.wires(seat, pools, base)
        best = seat.max_a
        if not seat.uncapped:
            ceiling = self.ceiling(seat, pools.surplus, pools.excess, base)
            if ceiling < best:
                best = ceiling
        return wires if wires < best else best

    def give(self, seat: Seat, amount: float, pools: Pools | None = None) -> None:
        if amount > 0.0:
            if pools is None:
                if self.fresh is None:
                    self.fresh = (self.pools.surplus.copy(), self.pools.excess.copy())
                seat.amount += amount
                pools = self.pools
            pools.grant(seat.mask, seat.circuits, amount)

    # -- distribution strategies ----------------------------------------------------

    def reserve_minimums(self, order: list[Seat]) -> None:
        for seat in order:
            if self.limit(seat, self.pools, 0.0) >= seat.min_a - EPS:
                self.give(seat, seat.min_a)
                seat.seated = True

    def fill_in_order(self, order: list[Seat]) -> None:
        """`priority`, second pass: the remainder to the first in order, then the next."""
        for seat in order:
            if seat.seated:
                self.give(seat, self.limit(seat, self.pools, seat.amount) - seat.amount)

    def fill_evenly(self, order: list[Seat]) -> None:
        """`shared`, second pass: water-filling within each urgency tier.

        All chargers still wanting rise together; one stops when it reaches its limit or
        a source on one of its phases runs out, the others keep rising. A phase that runs
        out therefore stops only the chargers that use it.
        """
        for _, tier in groupby(order, key=_urgency):  # `order` is sorted: tiers are runs
            rising = [s for s in tier if s.seated]
            while rising:
                room = [self.limit(s, self.pools, s.amount) - s.amount for s in rising]
                rising = [s for s, r in zip(rising, room, strict=True) if r > EPS]
                if not rising:
                    break
                step = min(min(r for r in room if r > EPS), self._even_step(rising))
                if step <= EPS:
                    break  # only rounding noise is left
                for seat in rising:
                    self.give(seat, step)

    def _even_step(self, rising: list[Seat]) -> float:
        """The largest equal rise all of `rising` can take together from shared sources."""
        step = math.inf
        sources = [(self.pools.physical, rising)]
        sources += [
            (cap, [s for s in rising if name in s.circuits])
            for name, cap in self.pools.circuits.items()
        ]
        mode = rising[0].mode
        if mode in (_ECO, _SOLAR):
            sources.append((self.pools.surplus, rising))
        elif mode is _EXCESS:
            sources.append((self.pools.excess, rising))
        for capacity, members in sources:
            if not members:
                continue
            masks = [0] * 8
            for seat in members:
                masks[seat.mask] += 1
            used = [(m, k) for m, k in enumerate(masks) if k]
            cap = capacity.cap
            for s in range(1, 8):
                count = 0
                for m, k in used:
                    count += k * POPCOUNT[s & m]
                if count and cap[s] < step * count:
                    step = cap[s] / count
        return step

    def take_in_order(self, order: list[Seat], trim_for_next: bool) -> None:
        """`strict` (and `optimized` with `trim_for_next`)."""
        for i, seat in enumerate(order):
            want = self.limit(seat, self.pools, 0.0)
            if want < seat.min_a - EPS:
                continue
            if trim_for_next and i + 1 < len(order):
                want = self._trimmed(seat, want, order[i + 1])
            self.give(seat, want)

    def _trimmed(self, seat: Seat, want: float, nxt: Seat) -> float:
        """Trim `want` (never below its minimum) so that `nxt` can reach its minimum."""
        need = nxt.min_a

        def next_gets(amount: float) -> float:
            trial = self.pools.copy()
            self.give(seat, amount, trial)
            return self.limit(nxt, trial, 0.0)

        if next_gets(want) >= need - EPS or next_gets(seat.min_a) < need - EPS:
            return want
        low, high = seat.min_a, want  # next fits at low, not at high
        for _ in range(40):
            mid = (low + high) / 2
            if next_gets(mid) >= need - EPS:
                low = mid
            else:
                high = mid
        return low

    # -- the pass -------------------------------------------------------------------

    def distribute(self, order: list[Seat]) -> None:
        """The site's distribution over `order` (sorted by order of service)."""
        distribution = self.site.distribution
        if distribution in (_SHARED, _PRIORITY):
            self.reserve_minimums(order)
            if distribution is _SHARED:
                self.fill_evenly(order)
            else:
                self.fill_in_order(order)
        else:
            self.take_in_order(order, trim_for_next=distribution is _OPTIMIZED)

    def run(self) -> Allocation:
        serving: list[Seat] = []
        released: list[Seat] = []
        for seat in self.seats:
            if seat.active:
                (released if seat.released else serving).append(seat)
        if serving:
            serving.sort(key=_ORDER)
            # Excess is what the site would export once every other car is served: those
            # cars get their whole share before an Excess car gets its minimum.
            excess = [s for s in serving if s.mode is _EXCESS]
            if len(excess) < len(serving):
                self.distribute([s for s in serving if s.mode is not _EXCESS])
            if excess:
                self.distribute(excess)
        if released:
            released.sort(key=_ORDER)
            # Released cars are offered their minimum only from what everyone else left.
            self.reserve_minimums(released)
        return self.result()

    def target(self, seat: Seat) -> float:
        """What its mode would give it from the sources before anyone is served."""
        max_a = seat.max_a
        if seat.uncapped:
            return _floor(max_a)
        surplus, excess = self.fresh or (self.pools.surplus, self.pools.excess)
        ceiling = self.ceiling(seat, surplus, excess, 0.0)
        return _floor(ceiling if ceiling < max_a else max_a)

    def idle_figures(self, seat: Seat) -> tuple[float, float]:
        """An idle charger's target, and what it could get now (0, or at least its minimum)."""
        if self.fresh is None:
            # Nothing granted: the pools are the fresh ones, so the target's ceiling is the
            # one limit() would work out again (limit(), written out around it).
            best = seat.max_a
            if not seat.uncapped:
                ceiling = self.ceiling(seat, self.pools.surplus, self.pools.excess, 0.0)
                if ceiling < best:
                    best = ceiling
            target = _floor(best)
            want = self.wires(seat, self.pools, 0.0)
            if not want < best:  # the limit is `best`: its floor is the target
                return target, (target if best >= seat.min_a - EPS else 0.0)
        else:
            target = self.target(seat)
            want = self.limit(seat, self.pools, 0.0)
        return target, (_floor(want) if want >= seat.min_a - EPS else 0.0)

    def result(self) -> Allocation:
        chargers = []
        phases = self.site.phases
        phases_in = _PHASES_IN[phases]
        drawn = [0.0] * phases
        # Chargers alike in mode, phases and limits have the same target, and idle ones
        # the same availability: worked out once each (most fleets repeat a few kinds).
        targets: dict[tuple, float] = {}
        idle: dict[tuple, tuple[float, float]] = {}
        for seat in self.seats:
            mode, mask, min_a, max_a = seat.mode, seat.mask, seat.min_a, seat.max_a
            if seat.active:
                allocated = _round_down(seat.amount, min_a) if seat.amount else 0.0
                if allocated:
                    for i in phases_in[mask]:
                        drawn[i] += allocated
                kind = (mode, mask, min_a, max_a)
                target = targets.get(kind)
                if target is None:
                    target = targets[kind] = self.target(seat)
                available = allocated
                reason = self.reason(seat, allocated, target)
            else:
                allocated = 0.0
                kind = (mode, mask, min_a, max_a, seat.circuits)
                figures = idle.get(kind)
                if figures is None:
                    figures = idle[kind] = self.idle_figures(seat)
                target, available = figures
                reason = _NOT_ACTIVE
            chargers.append(
                _new_result(
                    (seat.charger.id, allocated, target, seat.lines, mode, available, reason)
                )
            )
        household = self.household
        breaker = self.site.main_breaker_a
        export = 0.0
        for h in household:
            if h < 0.0:
                export -= h  # (x - h is x + -h: the sum of the exports, as sum() adds them)
        headroom = tuple([breaker - h - d for h, d in zip(household, drawn, strict=True)])
        # (Positional: keywords make the NamedTuple's __new__ slower.)
        summary = SiteSummary(household, export * self.volts, headroom, self.soc)
        return Allocation(summary, tuple(chargers))

    def _circuit_full(self, seat: Seat) -> bool:
        circuits = self.pools.circuits
        for name in seat.circuits:  # noqa: SIM110 (a loop: no generator per charger)
            if circuits[name].tight(seat.mask, 0.05):
                return True
        return False

    def reason(self, seat: Seat, allocated: float, target: float) -> Reason:
        """Why an active charger got `allocated`."""
        mode, min_a = seat.mode, seat.min_a
        if seat.released:
            return Reason.RELEASED
        if allocated <= 0.0:
            if target < min_a:
                if mode is _EXCESS:
                    return Reason.NO_EXCESS
                battery = self.battery
                if (mode is _ECO and battery.eco_waits) or (
                    mode is _STANDARD and battery.standard_waits
                ):
                    if battery.below_min:
                        return Reason.BATTERY_BELOW_MIN
                    return Reason.BATTERY_WOULD_DISCHARGE
                if not self.battery.at_target and mode is not _STANDARD:
                    return Reason.BATTERY_BELOW_TARGET
                return Reason.NO_SURPLUS
            # Its mode would have it, but others were served first or the wires are full.
            if mode is _SOLAR and self.pools.surplus.available(seat.mask) < min_a:
                return Reason.NO_SURPLUS
            if mode is _EXCESS and self.pools.excess.available(seat.mask) < min_a:
                return Reason.NO_EXCESS
            return Reason.CIRCUIT_LIMIT if self._circuit_full(seat) else Reason.NO_CAPACITY
        if allocated < target - 0.05:
            if seat.circuits and self._circuit_full(seat):
                return Reason.CIRCUIT_LIMIT
            if self.pools.physical.tight(seat.mask, 0.05):
                return Reason.BREAKER_LIMIT
            if mode is _STANDARD:
                return Reason.SHARED
        if mode is _ECO and allocated <= min_a + 0.05:
            return Reason.ECO_MINIMUM
        return _MODE_REASON[mode]


_MODE_REASON = {
    Mode.STANDARD: Reason.STANDARD,
    Mode.ECO: Reason.SOLAR_SURPLUS,
    Mode.SOLAR: Reason.SOLAR_SURPLUS,
    Mode.EXCESS: Reason.EXCESS_EXPORT,
}


def _floor(value: float) -> float:
    floored = math.floor(value * 10 + 1e-6) / 10
    return floored if floored > 0.0 else 0.0  # max(0.0, floored)


def _round_down(value: float, minimum: float) -> float:
    """0, or at least the minimum, in 0.1 A steps (never rounding a grant up past its pool)."""
    if value < minimum - EPS or value <= 0.0:
        return 0.0
    floored = _floor(value)
    return floored if floored > minimum else minimum  # max(minimum, floored)


def allocate(snapshot: Snapshot) -> Allocation:
    """Every charger's allocation for this snapshot."""
    return _Allocator(snapshot).run()
