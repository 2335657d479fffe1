"""Every charger's current in one pass over one snapshot (the contract: ALLOCATION in docs).

Pure: no I/O, no clock. Steps: household = grid − measured charger draw; build the
pools once; serve active chargers in order (mode urgency, priority, config order) with
the site's distribution strategy; released SuspendedEV chargers get their minimum only
from what is left; idle chargers are told what they would get; round down to 0.1 A.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from itertools import groupby
from operator import attrgetter

from gateway.allocation.capacity import popcount
from gateway.allocation.pools import BatteryView, Pools, battery_view, build_pools
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


@dataclass(slots=True)
class Seat:
    """One charger during allocation."""

    charger: Charger
    index: int
    mask: int  # site phases it draws on (bits A=1, B=2, C=4)
    lines: int
    wired: int  # charger lines connected to site phases
    circuits: tuple[str, ...]
    active: bool
    released: bool
    sort_key: tuple[int, int, int]  # order of service: mode urgency, priority, config order
    amount: float = 0.0
    seated: bool = False  # got its minimum in the first pass


def wired_lines(charger: Charger, site_phases: int) -> int:
    """Charger lines connected to site phases (on a 1-phase site only L1)."""
    return min(charger.phases, len(charger.phase_map), site_phases)


@lru_cache(maxsize=64)
def _wiring(phase_map: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """A phase map's site phase per charger line, and the mask of its first k lines
    (worked out once per map: a handful of maps serve every charger every cycle)."""
    lines = tuple(_INDEX[name] for name in phase_map)
    masks = [0]
    for line in lines:
        masks.append(masks[-1] | 1 << line)
    return lines, tuple(masks)


@lru_cache(maxsize=64)
def _circuits_of(circuits: tuple[Circuit, ...]) -> dict[str, tuple[str, ...]]:
    """Charger id -> the circuits it is on (per site, not per cycle)."""
    of: dict[str, tuple[str, ...]] = {}
    for circuit in circuits:
        for member in circuit.chargers:
            of[member] = (*of.get(member, ()), circuit.name)
    return of


def _seat(
    charger: Charger,
    index: int,
    site_phases: int,
    release_after_s: float,
    circuits: tuple[str, ...],
) -> Seat:
    wired = wired_lines(charger, site_phases)
    lines, masks = _wiring(charger.phase_map)
    mask = masks[wired]
    status = charger.status
    active = status in ACTIVE_STATUSES
    draw = charger.draw_a
    if active and wired > 1:
        drawing = [k for k in range(wired) if draw[k] > DRAWING_A]
        if 0 < len(drawing) < wired:
            # A car using fewer lines than the charger has: leave the others free.
            mask = 0
            for k in drawing:
                mask |= 1 << lines[k]
    released = (
        status == "SuspendedEV" and sum(draw) < DRAWING_A and charger.idle_s >= release_after_s
    )
    order = (charger.mode.urgency, charger.priority, index)
    return Seat(charger, index, mask, popcount(mask), wired, circuits, active, released, order)


def _urgency(seat: Seat) -> int:
    return seat.sort_key[0]


class _Allocator:
    def __init__(self, snapshot: Snapshot) -> None:
        site, m = snapshot.site, snapshot.measurements
        self.site = site
        self.volts = sum(m.voltage_v) / len(m.voltage_v) if m.voltage_v else site.voltage_v
        circuits_of = _circuits_of(site.circuits) if site.circuits else {}
        self.soc = m.battery_soc
        phases, release_after_s = site.phases, site.release_after_s
        self.seats = seats = []
        # A reading on a line that is not wired to the site cannot be on its phases.
        household = list(m.grid_current_a)
        for i, c in enumerate(snapshot.chargers):
            seat = _seat(c, i, phases, release_after_s, circuits_of.get(c.id, ()))
            seats.append(seat)
            draw = c.draw_a
            lines = _wiring(c.phase_map)[0]
            for k in range(seat.wired):
                if draw[k]:  # (x - 0.0 is x: an idle charger changes nothing)
                    household[lines[k]] -= draw[k]
        self.household = tuple(household)
        grid_w = sum(m.grid_current_a) * self.volts
        self.battery: BatteryView = battery_view(
            site, m.battery_soc, m.battery_power_w, self.volts, m.pv_power_w, grid_w
        )
        output_w = max(0.0, (m.pv_power_w or 0.0) + (m.battery_power_w or 0.0))
        self.pools = build_pools(site, self.household, self.battery, self.volts, output_w)
        self.fresh = self.pools.copy()

    # -- what a charger may take ---------------------------------------------------

    def ceiling(self, seat: Seat, pools: Pools, base: float) -> float:
        """The most its mode lets it take from the sources it may use."""
        c = seat.charger
        mode = c.mode
        battery = self.battery
        if mode is Mode.STANDARD:
            if battery.standard_waits:
                # The battery would feed it against the policy: only the sun's surplus.
                return base + pools.surplus.available(seat.mask)
            return c.max_a
        below_target = not battery.at_target
        surplus = base + pools.surplus.available(seat.mask)
        if mode is Mode.ECO:
            if battery.eco_waits:
                # The battery would feed its minimum: only the sun's surplus may.
                return 0.0 if below_target else surplus
            return c.min_a if below_target else max(c.min_a, surplus)
        if mode is Mode.SOLAR:
            return 0.0 if below_target else surplus
        excess = pools.excess.available(seat.mask)
        if base <= 0.0 and excess <= EPS:
            return 0.0
        # At least its minimum once there is excess, but never more than the site would
        # still export (or yield from the battery's redirected charge): it never imports.
        return min(max(c.min_a, base + excess), surplus)

    def limit(self, seat: Seat, pools: Pools, base: float) -> float:
        """The most it can hold in total, given what it holds (`base`) already."""
        charger = seat.charger
        wires = base + pools.wires(seat.mask, seat.circuits)
        if charger.mode is Mode.STANDARD and not self.battery.standard_waits:
            return min(charger.max_a, wires)
        return min(charger.max_a, self.ceiling(seat, pools, base), wires)

    def give(self, seat: Seat, amount: float, pools: Pools | None = None) -> None:
        if amount > 0.0:
            (pools or self.pools).grant(seat.mask, seat.circuits, amount)
            if pools is None:
                seat.amount += amount

    # -- distribution strategies ----------------------------------------------------

    def reserve_minimums(self, order: list[Seat]) -> None:
        for seat in order:
            if self.limit(seat, self.pools, 0.0) >= seat.charger.min_a - EPS:
                self.give(seat, seat.charger.min_a)
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
        mode = rising[0].charger.mode
        if mode in (Mode.ECO, Mode.SOLAR):
            sources.append((self.pools.surplus, rising))
        elif mode is Mode.EXCESS:
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
                count = sum(k * popcount(s & m) for m, k in used)
                if count and cap[s] < step * count:
                    step = cap[s] / count
        return step

    def take_in_order(self, order: list[Seat], trim_for_next: bool) -> None:
        """`strict` (and `optimized` with `trim_for_next`)."""
        for i, seat in enumerate(order):
            want = self.limit(seat, self.pools, 0.0)
            if want < seat.charger.min_a - EPS:
                continue
            if trim_for_next and i + 1 < len(order):
                want = self._trimmed(seat, want, order[i + 1])
            self.give(seat, want)

    def _trimmed(self, seat: Seat, want: float, nxt: Seat) -> float:
        """Trim `want` (never below its minimum) so that `nxt` can reach its minimum."""
        need = nxt.charger.min_a

        def next_gets(amount: float) -> float:
            trial = self.pools.copy()
            self.give(seat, amount, trial)
            return self.limit(nxt, trial, 0.0)

        if next_gets(want) >= need - EPS or next_gets(seat.charger.min_a) < need - EPS:
            return want
        low, high = seat.charger.min_a, want  # next fits at low, not at high
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
        if distribution in (Distribution.SHARED, Distribution.PRIORITY):
            self.reserve_minimums(order)
            if distribution is Distribution.SHARED:
                self.fill_evenly(order)
            else:
                self.fill_in_order(order)
        else:
            self.take_in_order(order, trim_for_next=distribution is Distribution.OPTIMIZED)

    def run(self) -> Allocation:
        serving = sorted(
            (s for s in self.seats if s.active and not s.released), key=_ORDER
        )
        released = sorted(
            (s for s in self.seats if s.active and s.released), key=_ORDER
        )
        # Excess is what the site would export once every other car is served: those
        # cars get their whole share before an Excess car gets its minimum.
        self.distribute([s for s in serving if s.charger.mode is not Mode.EXCESS])
        self.distribute([s for s in serving if s.charger.mode is Mode.EXCESS])
        # Released cars are offered their minimum only from what everyone else left.
        self.reserve_minimums(released)
        return self.result()

    def result(self) -> Allocation:
        chargers = []
        phases = self.site.phases
        drawn = [0.0] * phases
        standard_full = not self.battery.standard_waits
        # Chargers alike in mode, phases and limits have the same target, and idle ones
        # the same availability: worked out once each (most fleets repeat a few kinds).
        targets: dict[tuple, float] = {}
        availability: dict[tuple, float] = {}
        for seat in self.seats:
            charger = seat.charger
            mode, mask = charger.mode, seat.mask
            allocated = _round_down(seat.amount, charger.min_a) if seat.amount else 0.0
            if allocated:
                for i in range(phases):
                    if mask >> i & 1:
                        drawn[i] += allocated
            kind = (mode, mask, charger.min_a, charger.max_a)
            target = targets.get(kind)
            if target is None:
                if mode is Mode.STANDARD and standard_full:
                    target = _floor(charger.max_a)
                else:
                    target = _floor(min(charger.max_a, self.ceiling(seat, self.fresh, 0.0)))
                targets[kind] = target
            if seat.active:
                available = allocated
                reason = self.reason(seat, allocated, target)
            else:
                idle_kind = (kind, seat.circuits)
                available = availability.get(idle_kind)
                if available is None:
                    want = self.limit(seat, self.pools, 0.0)
                    available = _floor(want) if want >= charger.min_a - EPS else 0.0
                    availability[idle_kind] = available
                reason = Reason.NOT_ACTIVE
            chargers.append(
                ChargerAllocation(
                    charger.id, allocated, target, seat.lines, mode, available, reason
                )
            )
        site = self.site
        household = self.household
        breaker = site.main_breaker_a
        summary = SiteSummary(
            household_a=household,
            export_w=sum([-h for h in household if h < 0.0], 0.0) * self.volts,
            headroom_a=tuple([breaker - h - d for h, d in zip(household, drawn, strict=True)]),
            battery_soc=self.soc,
        )
        return Allocation(site=summary, chargers=tuple(chargers))

    def _circuit_full(self, seat: Seat) -> bool:
        circuits = self.pools.circuits
        return any(circuits[name].tight(seat.mask, 0.05) for name in seat.circuits)

    def reason(self, seat: Seat, allocated: float, target: float) -> Reason:
        """Why an active charger got `allocated`."""
        c = seat.charger
        if seat.released:
            return Reason.RELEASED
        if allocated <= 0.0:
            if target < c.min_a:
                if c.mode is Mode.EXCESS:
                    return Reason.NO_EXCESS
                battery = self.battery
                if (c.mode is Mode.ECO and battery.eco_waits) or (
                    c.mode is Mode.STANDARD and battery.standard_waits
                ):
                    if battery.below_min:
                        return Reason.BATTERY_BELOW_MIN
                    return Reason.BATTERY_WOULD_DISCHARGE
                if not self.battery.at_target and c.mode is not Mode.STANDARD:
                    return Reason.BATTERY_BELOW_TARGET
                return Reason.NO_SURPLUS
            # Its mode would have it, but others were served first or the wires are full.
            if c.mode is Mode.SOLAR and self.pools.surplus.available(seat.mask) < c.min_a:
                return Reason.NO_SURPLUS
            if c.mode is Mode.EXCESS and self.pools.excess.available(seat.mask) < c.min_a:
                return Reason.NO_EXCESS
            return Reason.CIRCUIT_LIMIT if self._circuit_full(seat) else Reason.NO_CAPACITY
        if allocated < target - 0.05:
            if seat.circuits and self._circuit_full(seat):
                return Reason.CIRCUIT_LIMIT
            if self.pools.physical.tight(seat.mask, 0.05):
                return Reason.BREAKER_LIMIT
            if c.mode is Mode.STANDARD:
                return Reason.SHARED
        if c.mode is Mode.ECO and allocated <= c.min_a + 0.05:
            return Reason.ECO_MINIMUM
        return _MODE_REASON[c.mode]


_MODE_REASON = {
    Mode.STANDARD: Reason.STANDARD,
    Mode.ECO: Reason.SOLAR_SURPLUS,
    Mode.SOLAR: Reason.SOLAR_SURPLUS,
    Mode.EXCESS: Reason.EXCESS_EXPORT,
}


def _floor(value: float) -> float:
    return max(0.0, math.floor(value * 10 + 1e-6) / 10)


def _round_down(value: float, minimum: float) -> float:
    """0, or at least the minimum, in 0.1 A steps (never rounding a grant up past its pool)."""
    if value < minimum - EPS or value <= 0.0:
        return 0.0
    return max(minimum, _floor(value))


def allocate(snapshot: Snapshot) -> Allocation:
    """Every charger's allocation for this snapshot."""
    return _Allocator(snapshot).run()
