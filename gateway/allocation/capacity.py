"""How much current a source can still give on any set of site phases.

A source is described by one limit per non-empty subset of the site's phases (7 subsets
on a 3-phase site, indexed by bit mask A=1, B=2, C=4): "the currents drawn on the phases
of S may add up to at most cap[S]". A breaker is per phase (cap[S] = sum of its phases);
an import cap or an asymmetric inverter is a pool (cap[S] limited by one total). Sources
add subset by subset, so grid + inverter is exact, and a grant is taken from every
source it touches: surplus is never handed out twice.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from operator import add, itemgetter

INF = math.inf
SUBSETS = (1, 2, 3, 4, 5, 6, 7)
POPCOUNT = tuple(bin(m).count("1") for m in range(8))
# For each charger mask: the subsets it touches and how many of its phases lie in each.
_TOUCHING = tuple(tuple((s, POPCOUNT[s & m]) for s in SUBSETS if s & m) for m in range(8))
# For each charger mask: per phase bit in it, the subsets containing that phase (and
# an itemgetter reading their caps).
_PER_PHASE = tuple(
    tuple(
        (itemgetter(*subsets), subsets)
        for subsets in (tuple(s for s in SUBSETS if s & bit) for bit in (1, 2, 4) if m & bit)
    )
    for m in range(8)
)


def _getter(subsets: tuple[int, ...]) -> itemgetter | None:
    return itemgetter(*subsets) if subsets else None


# For each charger mask: the subsets holding exactly one of its phases, and those holding
# two (only mask 7 has a subset holding three: 7 itself).
_ONE_SUBSETS = tuple(tuple(s for s, k in _TOUCHING[m] if k == 1) for m in range(8))
_TWO_SUBSETS = tuple(tuple(s for s, k in _TOUCHING[m] if k == 2) for m in range(8))
# An itemgetter reading the caps of all the subsets a mask touches at once.
_ALL = tuple(_getter(tuple(s for s, _ in touching)) for touching in _TOUCHING)


def positive(value: float) -> float:
    """max(0.0, value), for what runs every cycle: in Python 3.11 a call of max() costs
    several times a call of this (it parses its arguments like keywords)."""
    return value if value > 0.0 else 0.0


class Capacity:
    __slots__ = ("cap",)

    def __init__(self, cap: list[float]) -> None:
        self.cap = cap  # index 0 unused; subsets absent on a 1-phase site are INF

    @classmethod
    def zero(cls) -> Capacity:
        return cls([0.0] * 8)

    @classmethod
    def per_phase(cls, values: Sequence[float], extra: float = 0.0) -> Capacity:
        """Independent limits per phase (a breaker, or a symmetric source), each value
        raised by `extra` first (x + 0.0 is x, once clamped at 0).

        Written out for the two site shapes: this runs several times per cycle.
        """
        if len(values) == 1:
            a = values[0] + extra
            return cls([0.0, a if a > 0.0 else 0.0, INF, INF, INF, INF, INF, INF])
        a, b, c = values
        a += extra
        b += extra
        c += extra
        a = a if a > 0.0 else 0.0
        b = b if b > 0.0 else 0.0
        c = c if c > 0.0 else 0.0
        return cls([0.0, a, b, a + b, c, a + c, b + c, a + b + c])

    @classmethod
    def pool(cls, phase_limits: Sequence[float], total: float) -> Capacity:
        """One amount usable on any phase, each phase limited on its own too."""
        capacity = cls.per_phase(phase_limits)
        capacity.limit_total(total)
        return capacity

    def limit_total(self, total: float) -> None:
        if not total > 0.0:  # (max(0.0, total), written out)
            total = 0.0
        cap = self.cap
        for s in SUBSETS:
            if cap[s] > total:
                cap[s] = total

    def copy(self) -> Capacity:
        return Capacity(self.cap.copy())

    def __add__(self, other: Capacity) -> Capacity:
        return Capacity(list(map(add, self.cap, other.cap)))  # both 8 long

    def available(self, mask: int) -> float:
        """The largest current that can flow on every phase of `mask` at once: the least
        cap[S] / k over the subsets S it touches, k its phases in S.

        Written out (the hottest call of a cycle): per k the least cap[S] is divided
        once (dividing by k > 0 keeps the order), and no min(), which in Python 3.11
        costs as much as the rest of this together.
        """
        cap = self.cap
        if cap[7] <= 0.0:  # the all-phases total is used up: nothing anywhere
            return 0.0
        if mask == 7:  # k = 1: A, B, C; k = 2: AB, AC, BC; k = 3: ABC
            best = cap[1]
            if cap[2] < best:
                best = cap[2]
            if cap[4] < best:
                best = cap[4]
            pair = cap[3]
            if cap[5] < pair:
                pair = cap[5]
            if cap[6] < pair:
                pair = cap[6]
            pair /= 2
            if pair < best:
                best = pair
            pair = cap[7] / 3
            if pair < best:
                best = pair
        elif mask:  # one or two phases: four subsets hold one of them (k = 1)
            a, b, c, d = _ONE_SUBSETS[mask]
            best = cap[a]
            if cap[b] < best:
                best = cap[b]
            if cap[c] < best:
                best = cap[c]
            if cap[d] < best:
                best = cap[d]
            if _TWO_SUBSETS[mask]:  # two phases: the pair and ABC hold both (k = 2)
                pair = cap[mask]
                if cap[7] < pair:
                    pair = cap[7]
                pair /= 2
                if pair < best:
                    best = pair
        else:
            return INF  # no phases: nothing limits it
        return best if best > 0.0 else 0.0

    def take(self, mask: int, amount: float) -> None:
        """Deduct `amount` on each phase of `mask` (the caller checked it fits)."""
        cap = self.cap
        for s in _ONE_SUBSETS[mask]:
            cap[s] -= amount
        if _TWO_SUBSETS[mask]:
            twice = amount * 2
            for s in _TWO_SUBSETS[mask]:
                cap[s] -= twice
            if mask == 7:
                cap[7] -= amount * 3

    def take_up_to(self, mask: int, amount: float) -> None:
        """Deduct as much of `amount` per phase of `mask` as this source still holds.

        Used for labelled pools (surplus, excess): a grant that came partly from the
        grid uses up only the part of the surplus there was.
        """
        cap = self.cap
        if cap[7] <= 0.0:
            return
        for caps_of, containing in _PER_PHASE[mask]:
            give = amount
            for v in caps_of(cap):
                if v < give:
                    give = v
            if give > 0.0:
                for s in containing:
                    cap[s] -= give

    def tight(self, mask: int, eps: float) -> bool:
        """Whether some subset touching `mask` is used up."""
        caps_of = _ALL[mask]
        if caps_of is not None:
            for v in caps_of(self.cap):  # (a loop: no generator on a hot path)
                if v <= eps:
                    return True
        return False
