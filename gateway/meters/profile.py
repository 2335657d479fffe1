"""Device profiles: register maps as TOML data files, read strictly into frozen dataclasses.

A profile has one or more *parts*. The part `meter` is a plain meter usable in any role;
its flows are + when energy flows from the supply side to the load side, so the gateway
turns it round for the pv and battery roles. The parts `grid`, `pv` and `battery` belong
to hybrid inverters and are already in that role's convention (profile authors apply the
vendor's sign fix with `negate`). SunSpec profiles describe models instead of fixed
addresses; `gateway.meters.sunspec` turns them into parts once the model chain is walked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from gateway.meters.quantities import INTERNAL_PREFIX, QUANTITIES, ROLES, UNIT_FACTORS, unit_of
from gateway.schema import SchemaError, Table
from gateway.tomlfile import read_toml

PROFILE_DIR = Path(__file__).with_name("profiles")
PARTS = ("meter", "grid", "pv", "battery")
MAX_READ = 125  # registers per FC3/FC4 request (Modbus spec; pymodbus raises above it)

# type -> registers it occupies
TYPES: dict[str, int] = {
    "u16": 1,
    "s16": 1,
    "u32": 2,
    "s32": 2,
    "u64": 4,
    "s64": 4,
    "f32": 2,
    "f64": 4,
}
WORD_ORDERS = ("big", "little")
OPERATIONS = ("sum", "difference", "divide")


@dataclass(frozen=True, slots=True)
class Register:
    name: str
    function: int  # 3 holding, 4 input
    address: int
    type: str
    word_order: str = "big"
    scale: float = 1.0
    # SunSpec: address of the int16 scale-factor register (value = raw * scale * 10**sf)
    scale_sf: int | None = None
    negate: bool = False
    # Unsigned magnitude that takes its sign from another quantity (e.g. current from power)
    sign_of: str | None = None

    @property
    def size(self) -> int:
        return TYPES[self.type]

    def moved(self, base: int) -> Register:
        """The same register with address (and SF address) counted from `base`."""
        sf = None if self.scale_sf is None else base + self.scale_sf
        return Register(
            self.name,
            self.function,
            base + self.address,
            self.type,
            self.word_order,
            self.scale,
            sf,
            self.negate,
            self.sign_of,
        )


@dataclass(frozen=True, slots=True)
class Derived:
    name: str
    op: str  # one of OPERATIONS
    inputs: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Part:
    registers: tuple[Register, ...]
    derived: tuple[Derived, ...] = ()


@dataclass(frozen=True, slots=True)
class SunSpecModel:
    ids: tuple[int, ...]
    part: str
    # addresses are offsets from the model's ID register
    layout: Part


@dataclass(frozen=True, slots=True)
class ControlWrite:
    """One register written to hold or release a battery: a constant, or the limit in W."""

    address: int
    type: str
    word_order: str = "big"
    value: float | None = None  # the raw constant; None: the discharge limit goes here
    scale: float = 1.0  # W per raw unit of the limit


@dataclass(frozen=True, slots=True)
class Control:
    """A battery's writable discharge control (FC16 writes), from the profile's [control].

    `hold` is written with the discharge limit (W, at most `max_w`) and `release` with
    `max_w` itself (a cap register set back to the device's full power). `expiry_s` is the
    device's own revert time after the last write (None: it keeps a hold for good, so
    only the gateway's release ends it); the gateway re-writes a hold every `rewrite_s`.
    """

    hold: tuple[ControlWrite, ...]
    release: tuple[ControlWrite, ...]
    max_w: float
    rewrite_s: float
    expiry_s: float | None = None
    verified: bool = False


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    title: str
    unit_id: int = 1
    max_registers: int = MAX_READ
    # Devices that refuse reads spanning unmapped addresses (Victron) set this to 0.
    max_gap: int = MAX_READ
    gap_s: float = 0.0
    connect_delay_s: float = 0.0
    parts: dict[str, Part] = field(default_factory=dict)
    sunspec_bases: tuple[int, ...] = ()
    sunspec_models: tuple[SunSpecModel, ...] = ()
    control: Control | None = None

    @property
    def is_sunspec(self) -> bool:
        return bool(self.sunspec_models)

    def roles(self) -> tuple[str, ...]:
        """Roles this profile can fill: a plain meter fills any role."""
        parts = {m.part for m in self.sunspec_models} | set(self.parts)
        if "meter" in parts:
            return ROLES
        return tuple(r for r in ROLES if r in parts)


def _read_register(t: Table, name: str, defaults: dict, address_key: str) -> Register:
    path = t.path
    if not (name in QUANTITIES or name.startswith(INTERNAL_PREFIX)):
        raise SchemaError(path, f"unknown quantity (known: {', '.join(QUANTITIES)})")
    canonical = unit_of(name)
    if canonical is None:
        raise SchemaError(path, "internal names must end in _w, _a, _v, _hz, _wh or _pct")
    address = t.integer(address_key, lo=0, hi=0xFFFF)
    function = t.integer("function", defaults.get("function", 4), lo=3, hi=4)
    kind = t.choice("type", tuple(TYPES), defaults.get("type", "u16"))
    order = t.choice("word_order", WORD_ORDERS, defaults.get("word_order", "big"))
    unit = t.string("unit")
    factors = UNIT_FACTORS[canonical]
    if unit not in factors:
        raise SchemaError(
            t.at("unit"), f"{name} is in {canonical}; use one of {', '.join(factors)}"
        )
    scale = t.number("scale", 1.0)
    if scale == 0:
        raise SchemaError(t.at("scale"), "must not be 0")
    scale_sf = t.integer("scale_sf", None, lo=0, hi=0xFFFF)
    negate = t.boolean("negate", False)
    sign_of = t.string("sign_of", None)
    t.string("note", "")
    return Register(
        name, function, address, kind, order, scale * factors[unit], scale_sf, negate, sign_of
    )


def _read_part(t: Table, defaults: dict, address_key: str = "address") -> Part:
    registers: list[Register] = []
    derived: list[Derived] = []
    for name in list(t.data):
        if name == "derived":
            d = t.table("derived")
            for dname in list(d.data):
                derived.append(_read_derived(d.table(dname), dname))
            d.finish()
            continue
        r = t.table(name)
        registers.append(_read_register(r, name, defaults, address_key))
        r.finish()
    names = {r.name for r in registers} | {d.name for d in derived}
    for r in registers:
        if r.sign_of is not None and r.sign_of not in names:
            raise SchemaError(t.at(f"{r.name}.sign_of"), f"{r.sign_of!r} is not in this part")
    for d in derived:
        for i in d.inputs:
            if i not in names:
                raise SchemaError(t.at(f"derived.{d.name}"), f"{i!r} is not in this part")
    return Part(tuple(registers), tuple(derived))


def _read_derived(t: Table, name: str) -> Derived:
    if name not in QUANTITIES and not name.startswith(INTERNAL_PREFIX):
        raise SchemaError(t.path, "unknown quantity")
    ops = [op for op in OPERATIONS if t.has(op)]
    if len(ops) != 1:
        raise SchemaError(t.path, f"needs exactly one of {', '.join(OPERATIONS)}")
    inputs = t.strings(ops[0])
    if ops[0] != "sum" and len(inputs) != 2:
        raise SchemaError(t.at(ops[0]), "needs exactly two names")
    t.finish()
    return Derived(name, ops[0], inputs)


def _read_sunspec_model(t: Table, defaults: dict) -> SunSpecModel:
    ids = tuple(int(v) for v in t.numbers("ids"))
    part = t.choice("part", PARTS)
    registers = t.table("registers")
    layout = _read_part(registers, defaults, address_key="offset")
    registers.finish()
    return SunSpecModel(ids, part, layout)


def _read_write(t: Table, defaults: dict) -> ControlWrite:
    address = t.integer("address", lo=0, hi=0xFFFF)
    kind = t.choice("type", tuple(TYPES), defaults.get("type", "u16"))
    order = t.choice("word_order", WORD_ORDERS, defaults.get("word_order", "big"))
    t.string("note", "")
    if t.has("value") == t.has("limit"):
        raise SchemaError(t.at("value"), "give exactly one of value or limit = true")
    if t.has("value"):
        return ControlWrite(address, kind, order, value=t.number("value"))
    if not t.boolean("limit"):
        raise SchemaError(t.at("limit"), "must be true (or give value)")
    unit = t.choice("unit", ("W", "kW"))
    scale = t.number("scale", 1.0)
    if scale <= 0:
        raise SchemaError(t.at("scale"), "must be > 0")
    return ControlWrite(address, kind, order, scale=scale * UNIT_FACTORS["W"][unit])


def _fits(raw: float, kind: str) -> bool:
    """Whether an integer register of `kind` can hold `raw` (floats hold anything here)."""
    if kind[0] == "f":
        return True
    bits = TYPES[kind] * 16
    lo, hi = (0, 2**bits - 1) if kind[0] == "u" else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    return lo <= round(raw) <= hi


def _read_control(t: Table, defaults: dict) -> Control:
    t.string("sources")
    hold = t.each("hold", lambda w: _read_write(w, defaults))
    release = t.each("release", lambda w: _read_write(w, defaults))
    if not hold or not release:
        raise SchemaError(t.at("hold" if not hold else "release"), "needs at least one write")
    expiry = t.number("expiry_s", None, lo=1, hi=86400)
    rewrite = t.number("rewrite_s", 30.0 if expiry is None else expiry / 2, lo=1, hi=3600)
    if expiry is not None and rewrite >= expiry:
        raise SchemaError(t.at("rewrite_s"), f"must be below expiry_s ({expiry:g})")
    max_w = t.number("max_w", lo=0)
    for key, writes in (("hold", hold), ("release", release)):
        for i, w in enumerate(writes):
            raw = w.value if w.value is not None else max_w / w.scale
            if not _fits(raw, w.type):
                raise SchemaError(t.at(f"{key}[{i}]"), f"{raw:g} does not fit a {w.type}")
    return Control(
        hold=hold,
        release=release,
        max_w=max_w,
        rewrite_s=rewrite,
        expiry_s=expiry,
        verified=t.boolean("verified", False),
    )


def read_profile(top: Table, name: str) -> Profile:
    # `extends = "sdm630"`: same registers as a built-in profile, own title and limits
    base = None
    if top.has("extends"):
        base_name = top.choice("extends", builtin_names())
        base = builtin(base_name)
    title = top.string("title")
    top.string("sources", "")
    defaults = {
        "function": top.integer("function", 4, lo=3, hi=4),
        "type": top.choice("type", tuple(TYPES), "u16"),
        "word_order": top.choice("word_order", WORD_ORDERS, "big"),
    }
    parts: dict[str, Part] = dict(base.parts) if base else {}
    for key in PARTS:
        if top.has(key):
            part_table = top.table(key)
            parts[key] = _read_part(part_table, defaults)
            part_table.finish()
    bases = base.sunspec_bases if base else ()
    models = base.sunspec_models if base else ()
    if top.has("sunspec"):
        s = top.table("sunspec")
        bases = tuple(int(v) for v in s.numbers("bases", (40000.0, 0.0, 50000.0)))
        models = s.each("models", lambda m: _read_sunspec_model(m, defaults))
        s.finish()
    # A control is the device's own: `extends` takes registers, never writes.
    control = None
    if top.has("control"):
        c = top.table("control")
        control = _read_control(c, defaults)
        c.finish()
        if "battery" not in parts and not any(m.part == "battery" for m in models):
            raise SchemaError(top.at("control"), "only for a profile with a [battery] part")
    if not parts and not models:
        raise SchemaError("", f"needs at least one of [{'], ['.join(PARTS)}] or [sunspec]")
    fallback = base or Profile(name="", title="")
    return Profile(
        name=name,
        title=title,
        unit_id=top.integer("unit_id", fallback.unit_id, lo=0, hi=255),
        max_registers=top.integer("max_registers", fallback.max_registers, lo=4, hi=MAX_READ),
        max_gap=top.integer("max_gap", fallback.max_gap, lo=0, hi=MAX_READ),
        gap_s=top.number("gap_s", fallback.gap_s, lo=0, hi=10),
        connect_delay_s=top.number("connect_delay_s", fallback.connect_delay_s, lo=0, hi=10),
        parts=parts,
        sunspec_bases=bases,
        sunspec_models=models,
        control=control,
    )


def load_profile(path: str | Path) -> Profile:
    """Read a profile file; raises `TomlError` naming file, line and key."""
    return read_toml(path, lambda top: read_profile(top, Path(path).stem))


def builtin_names() -> tuple[str, ...]:
    return tuple(sorted(p.stem for p in PROFILE_DIR.glob("*.toml")))


@cache
def builtin(name: str) -> Profile:
    return load_profile(PROFILE_DIR / f"{name}.toml")
