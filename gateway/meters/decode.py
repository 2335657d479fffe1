"""Registers -> values in canonical units and sign (pure), and the inverse for simulators.

"Not implemented" sentinels (SunSpec's, which SMA, ABB and most others share: 0x8000,
0xFFFF, 0x80000000, all-ones, NaN) give no value rather than a made-up number.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence

from gateway.meters.blocks import Block
from gateway.meters.profile import Derived, Register
from gateway.meters.quantities import INTERNAL_PREFIX, flip

_FORMATS = {
    "u16": ">H",
    "s16": ">h",
    "u32": ">I",
    "s32": ">i",
    "u64": ">Q",
    "s64": ">q",
    "f32": ">f",
    "f64": ">d",
}
_SENTINELS = {
    "u16": 0xFFFF,
    "s16": -0x8000,
    "u32": 0xFFFFFFFF,
    "s32": -0x80000000,
    "u64": 0xFFFFFFFFFFFFFFFF,
    "s64": -0x8000000000000000,
}
_SF_MISSING = -0x8000


def _words(words: Sequence[int], word_order: str) -> bytes:
    ordered = words if word_order == "big" else list(reversed(words))
    return b"".join(w.to_bytes(2, "big") for w in ordered)


def decode_raw(words: Sequence[int], kind: str, word_order: str = "big") -> float | None:
    """One raw value, or None for a sentinel."""
    (value,) = struct.unpack(_FORMATS[kind], _words(words, word_order))
    if kind[0] == "f":
        return None if math.isnan(value) or math.isinf(value) else float(value)
    return None if value == _SENTINELS[kind] else value


def encode_raw(value: float, kind: str, word_order: str = "big") -> list[int]:
    """Inverse of `decode_raw` (raw device units)."""
    packed = struct.pack(_FORMATS[kind], value if kind[0] == "f" else round(value))
    words = [int.from_bytes(packed[i : i + 2], "big") for i in range(0, len(packed), 2)]
    return words if word_order == "big" else list(reversed(words))


def decode_register(r: Register, words: Sequence[int], sf_word: int | None = None) -> float | None:
    raw = decode_raw(words, r.type, r.word_order)
    if raw is None:
        return None
    value = raw * r.scale
    if r.scale_sf is not None:
        sf = int.from_bytes((sf_word or 0).to_bytes(2, "big"), "big", signed=True)
        if sf_word is None or sf == _SF_MISSING:
            return None
        value *= 10.0**sf
    return -value if r.negate else value


def decode_block(block: Block, words: Sequence[int]) -> dict[str, float]:
    """Values of every register in a block whose words were just read."""
    out: dict[str, float] = {}
    for r in block.registers:
        at = r.address - block.start
        sf = None if r.scale_sf is None else words[r.scale_sf - block.start]
        value = decode_register(r, words[at : at + r.size], sf)
        if value is not None:
            out[r.name] = value
    return out


def _derive(d: Derived, values: Mapping[str, float]) -> float | None:
    if any(i not in values for i in d.inputs):
        return None
    args = [values[i] for i in d.inputs]
    if d.op == "sum":
        return sum(args)
    if d.op == "difference":
        return args[0] - args[1]
    return args[0] / args[1] if abs(args[1]) > 1e-9 else None


def finish(
    values: Mapping[str, float],
    registers: Sequence[Register],
    derived: Sequence[Derived],
    turn_round: bool,
) -> dict[str, float]:
    """Signs from other quantities, derived quantities, role turn-round; internals dropped."""
    out = dict(values)
    for r in registers:
        if r.sign_of is not None and r.name in out:
            if r.sign_of not in out:
                del out[r.name]  # a magnitude without its sign is not a signed value
            elif out[r.sign_of] < 0:
                out[r.name] = -abs(out[r.name])
            else:
                out[r.name] = abs(out[r.name])
    for d in derived:
        if d.name not in out:
            value = _derive(d, out)
            if value is not None:
                out[d.name] = value
    out = {k: v for k, v in out.items() if not k.startswith(INTERNAL_PREFIX)}
    return flip(out) if turn_round else out
