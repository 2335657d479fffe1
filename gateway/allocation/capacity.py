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
from operator import add

INF = math.inf
SUBSETS = (1, 2, 3, 4, 5, 6, 7)
_POPCOUNT = tuple(bin(m).count("1") for m in range(8))
# For each charger mask: the subsets it touches and how many of its phases lie in each.
_TOUCHING = tuple(tuple((s, _POPCOUNT[s & m]) for s in SUBSETS if s & m) for m in range(8))
# For each charger mask: per phase bit in it, the subsets containing that phase.
_PER_PHASE = tuple(
    tuple(tuple(s for s in SUBSETS if s & bit) for bit in (1, 2, 4) if m & bit) for m in range(8)
)


def popcount(mask: int) -> int:
    return _POPCOUNT[mask]


class Capacity:
    __slots__ = ("cap",)

    def __init__(self, cap: list[float]) -> None:
        self.cap = cap  # index 0 unused; subsets absent on a 1-phase site are INF

    @classmethod
    def zero(cls) -> Capacity:
        return cls([0.0] * 8)

    @classmethod
    def per_phase(cls, values: Sequence[float]) -> Capacity:
        """Independent limits per phase (a breaker, or a symmetric source).

        Written out for the two site shapes: this runs several times per cycle.
        """
        if len(values) == 1:
            a = values[0] if values[0] > 0.0 else 0.0
            return cls([0.0, a, INF, INF, INF, INF, INF, INF])
        a, b, c = values
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
        total = max(0.0, total)
        cap = self.cap
        for s in SUBSETS:
            if cap[s] > total:
                cap[s] = total

    def copy(self) -> Capacity:
        return Capacity(self.cap.copy())

    def __add__(self, other: Capacity) -> Capacity:
        return Capacity(list(map(add, self.cap, other.cap)))  # both 8 long

    def available(self, mask: int) -> float:
        """The largest current that can flow on every phase of `mask` at once."""
        cap = self.cap
        if cap[7] <= 0.0:  # the all-phases total is used up: nothing anywhere
            return 0.0
        best = INF
        for s, k in _TOUCHING[mask]:
            v = cap[s] / k
            if v < best:
                best = v
        return best if best > 0.0 else 0.0

    def take(self, mask: int, amount: float) -> None:
        """Deduct `amount` on each phase of `mask` (the caller checked it fits)."""
        cap = self.cap
        for s, k in _TOUCHING[mask]:
            cap[s] -= amount * k

    def take_up_to(self, mask: int, amount: float) -> None:
        """Deduct as much of `amount` per phase of `mask` as this source still holds.

        Used for labelled pools (surplus, excess): a grant that came partly from the
        grid uses up only the part of the surplus there was.
        """
        cap = self.cap
        if cap[7] <= 0.0:
            return
        for containing in _PER_PHASE[mask]:
            give = amount
            for s in containing:
                if cap[s] < give:
                    give = cap[s]
            if give > 0.0:
                for s in containing:
                    cap[s] -= give

    def tight(self, mask: int, eps: float) -> bool:
        """Whether some subset touching `mask` is used up."""
        cap = self.cap
        for s, _ in _TOUCHING[mask]:  # noqa: SIM110 (a loop: no generator on a hot path)
            if cap[s] <= eps:
                return True
        return False
