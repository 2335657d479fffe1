"""The register map: `registers.csv` read once, checked, and turned into encoders.

The CSV is the single source of truth for the server, the generated docs and the tests.
Addresses of the header, site and command blocks are absolute; charger rows hold the
offset inside a block of `CHARGER_STRIDE` registers, repeated `MAX_CHARGERS` times from
`CHARGER_BASE`. A register value is `round(value * scale)` for integer types; floats are
float32 big-endian (high word first) with NaN for unknown; integer sentinels (0xFFFF,
0x8000, 0xFFFFFFFF) mean unknown or "none".
"""

from __future__ import annotations

import csv
import io
import math
import re
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

MAP_VERSION = (1, 2)
MARKER = "EVGW"
SIGN_CONVENTION = 1
CHARGER_BASE = 1000
CHARGER_STRIDE = 100
MAX_CHARGERS = 500
SITE_BASE = 100
COMMAND_BASE = 500
MAP_SIZE = CHARGER_BASE + CHARGER_STRIDE * MAX_CHARGERS

FIXED_BLOCKS = ("header", "site", "command")
CHARGER_BLOCK = "charger"
COLUMNS = (
    "name",
    "block",
    "address",
    "type",
    "unit",
    "scale",
    "access",
    "range",
    "since",
    "description",
)

NONE16 = 0xFFFF
_SIZED = re.compile(r"^(string|reserved)\[(\d+)\]$")
_FLOAT32_MAX = 3.4028234663852886e38
_SIZES = {"uint16": 1, "int16": 1, "uint32": 2, "float32": 2}
_SENTINELS = {"uint16": [NONE16], "int16": [0x8000], "uint32": [NONE16, NONE16]}
_FLOAT = struct.Struct(">f")
_WORDS = struct.Struct(">HH")


class MapError(ValueError):
    """The map file itself is inconsistent (a bug in the release, caught by the tests)."""


@dataclass(frozen=True, slots=True)
class Register:
    name: str
    block: str
    address: int  # absolute, or the offset inside a charger block
    type: str
    unit: str
    scale: float
    access: str
    range: str
    since: str
    description: str
    size: int

    @property
    def writable(self) -> bool:
        return self.access == "RW"

    @property
    def reserved(self) -> bool:
        return self.type.startswith("reserved")

    def bounds(self, symbols: Mapping[str, float]) -> tuple[float, float]:
        """The `range` column as numbers; names (fuse, max...) are looked up in `symbols`."""
        lo, hi = self.range.split("..")
        return _bound(lo, symbols), _bound(hi, symbols)

    def encode(self, value: Any) -> list[int]:
        """Value -> registers; None (and NaN in integer types) -> the type's sentinel."""
        if self.type == "float32":
            number = math.nan if value is None else float(value)
            if abs(number) > _FLOAT32_MAX:  # e.g. a MeterValues 1e39: unknown, not a crash
                number = math.nan
            return list(_WORDS.unpack(_FLOAT.pack(number)))
        if self.type.startswith("string"):
            raw = (value or "").encode("ascii", "replace")[: 2 * self.size]
            raw = raw.ljust(2 * self.size, b"\0")
            return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
        if self.reserved:
            return [0] * self.size
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            return list(_SENTINELS[self.type])
        number = round(float(value) * self.scale)
        if self.type == "uint16":
            return [min(max(number, 0), NONE16 - 1)]
        if self.type == "int16":
            return [min(max(number, -0x7FFF), 0x7FFF) & 0xFFFF]
        number = min(max(number, 0), 0xFFFFFFFE)
        return [number >> 16, number & 0xFFFF]

    def decode(self, regs: list[int]) -> Any:
        """Registers -> value: float (NaN unknown), str, or int/float (None for a sentinel)."""
        if self.type == "float32":
            return _FLOAT.unpack(_WORDS.pack(regs[0], regs[1]))[0]
        if self.type.startswith("string"):
            raw = b"".join(r.to_bytes(2, "big") for r in regs[: self.size])
            return raw.rstrip(b"\0").decode("ascii", "replace")
        if self.reserved:
            return None
        if list(regs[: self.size]) == _SENTINELS[self.type]:
            return None
        if self.type == "uint32":
            number = (regs[0] << 16) | regs[1]
        elif self.type == "int16":
            number = regs[0] - 0x10000 if regs[0] & 0x8000 else regs[0]
        else:
            number = regs[0]
        return number if self.scale == 1 else number / self.scale


def _bound(text: str, symbols: Mapping[str, float]) -> float:
    text = text.strip()
    return symbols[text] if text in symbols else float(text)


def _size(type_: str) -> int:
    if type_ in _SIZES:
        return _SIZES[type_]
    sized = _SIZED.match(type_)
    if not sized:
        raise MapError(f"unknown type {type_!r}")
    return int(sized.group(2))


@dataclass(frozen=True, slots=True)
class RegisterMap:
    rows: tuple[Register, ...]
    source: str  # the CSV text, for the hash and the `registers --format csv` output
    # absolute address -> (row, charger slot or None), for validating writes
    by_address: dict[int, tuple[Register, int | None]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        for row in self.rows:
            if row.block != CHARGER_BLOCK:
                self.by_address.update({row.address + i: (row, None) for i in range(row.size)})
                continue
            for slot in range(MAX_CHARGERS):
                start = CHARGER_BASE + slot * CHARGER_STRIDE + row.address
                self.by_address.update({start + i: (row, slot) for i in range(row.size)})

    @property
    def hash(self) -> int:
        return zlib.crc32(self.source.encode("utf-8"))

    def block(self, name: str) -> tuple[Register, ...]:
        return tuple(r for r in self.rows if r.block == name)

    def values(self, block: str, regs: list[int], start: int = 0) -> dict[str, Any]:
        """Decode a block from registers read starting at address `start` (charger rows: the
        block's first register)."""
        return {
            r.name: r.decode(regs[r.address - start : r.address - start + r.size])
            for r in self.block(block)
            if not r.reserved and r.address - start + r.size <= len(regs)
        }

    def locate(self, address: int) -> tuple[Register, int | None] | None:
        """The row covering an absolute address, and the charger slot (None outside)."""
        return self.by_address.get(address)


def _row(record: dict[str, str], line: int) -> Register:
    if None in record or any(record[c] is None for c in COLUMNS):
        raise MapError(f"registers.csv:{line}: wrong number of columns")
    try:
        address = int(record["address"])
        scale = float(record["scale"] or 1)
    except ValueError as exc:
        raise MapError(f"registers.csv:{line}: {exc}") from exc
    if record["access"] not in ("R", "RW"):
        raise MapError(f"registers.csv:{line}: access must be R or RW")
    if record["access"] == "RW" and (record["type"] != "uint16" or ".." not in record["range"]):
        raise MapError(f"registers.csv:{line}: writable registers are uint16 with a lo..hi range")
    return Register(
        **{c: record[c] for c in COLUMNS if c not in ("address", "scale")},
        address=address,
        scale=scale,
        size=_size(record["type"]),
    )


def _check_contiguous(rows: tuple[Register, ...], start: int, end: int, what: str) -> None:
    """Every address from start to end is covered exactly once: no holes, no overlaps."""
    at = start
    for row in rows:
        if row.address != at:
            raise MapError(f"{what}: {row.name} at {row.address}, expected {at}")
        at += row.size
    if at != end:
        raise MapError(f"{what}: ends at {at}, expected {end}")


def parse_map(source: str) -> RegisterMap:
    reader = csv.DictReader(io.StringIO(source))
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise MapError(f"registers.csv: columns must be {','.join(COLUMNS)}")
    rows = tuple(_row(record, reader.line_num) for record in reader)
    fixed = tuple(r for r in rows if r.block in FIXED_BLOCKS)
    chargers = tuple(r for r in rows if r.block == CHARGER_BLOCK)
    if len(fixed) + len(chargers) != len(rows):
        raise MapError("registers.csv: unknown block (header, site, command, charger)")
    _check_contiguous(fixed, 0, CHARGER_BASE, "fixed blocks")
    _check_contiguous(chargers, 0, CHARGER_STRIDE, "charger block")
    for block in (*FIXED_BLOCKS, CHARGER_BLOCK):
        names = [r.name for r in rows if r.block == block and not r.reserved]
        if len(names) != len(set(names)):
            raise MapError(f"registers.csv: duplicate name in block {block}")
    return RegisterMap(rows=rows, source=source)


@cache
def load_map() -> RegisterMap:
    source = resources.files("gateway.export").joinpath("registers.csv").read_text("utf-8")
    return parse_map(source)
