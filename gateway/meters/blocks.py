"""Merging a device's registers into as few read requests as possible (pure).

Registers of one function code that sit close together are read in one request, up to
the profile's cap. A value and its SunSpec scale factor always land in the same request,
so both come from the same snapshot. On RS485 a gap is worth bridging while its wire time
costs less than one more transaction (request, response header, two frame gaps and the
meter's turnaround); on TCP a transaction costs a round trip, so any gap that fits is bridged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gateway.meters.profile import MAX_READ, Register

# Assumed turnaround of a good meter (modbus.md §2: 10-30 ms); only used to size gaps.
TURNAROUND_S = 0.02
# 8-byte request + 5-byte response frame + two 3.5-character silences
TRANSACTION_CHARS = 8 + 5 + 7


@dataclass(frozen=True, slots=True)
class Block:
    function: int
    start: int
    count: int
    registers: tuple[Register, ...]

    @property
    def end(self) -> int:
        return self.start + self.count


def _span(r: Register) -> tuple[int, int]:
    lo, hi = r.address, r.address + r.size
    if r.scale_sf is not None:
        lo, hi = min(lo, r.scale_sf), max(hi, r.scale_sf + 1)
    return lo, hi


def plan_blocks(registers: Iterable[Register], max_registers: int, max_gap: int) -> list[Block]:
    """Greedy merge in address order, per function code."""
    blocks: list[Block] = []
    by_function: dict[int, list[Register]] = {}
    for r in registers:
        by_function.setdefault(r.function, []).append(r)
    for function in sorted(by_function):
        start = end = -1
        members: list[Register] = []
        for r in sorted(by_function[function], key=_span):
            lo, hi = _span(r)
            if members and lo - end <= max_gap and max(hi, end) - start <= max_registers:
                end = max(end, hi)
                members.append(r)
                continue
            if members:
                blocks.append(Block(function, start, end - start, tuple(members)))
            start, end, members = lo, hi, [r]
        if members:
            blocks.append(Block(function, start, end - start, tuple(members)))
    return blocks


def char_time_s(baud: int, parity: str, stopbits: int, bytesize: int = 8) -> float:
    bits = 1 + bytesize + (0 if parity == "N" else 1) + stopbits
    return bits / baud


def rtu_max_gap(char_s: float) -> int:
    """Registers of gap whose wire time equals one extra transaction's cost."""
    chars = TRANSACTION_CHARS + TURNAROUND_S / char_s
    return min(MAX_READ, int(chars / 2))


def wire_time_s(blocks: Iterable[Block], char_s: float) -> float:
    """The RS485 floor for these reads: frames plus 3.5-character gaps, no turnaround."""
    return sum((TRANSACTION_CHARS + 2 * b.count) * char_s for b in blocks)
