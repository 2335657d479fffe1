"""SunSpec discovery: find the "SunS" marker, walk the model chain, place the profile's models.

Discovery reads through a callback so the bus owner keeps pacing, timeouts and retries.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.meters.profile import Derived, Part, Profile, Register

SUNS = (0x5375, 0x6E53)  # "SunS"
END = 0xFFFF
MAX_MODELS = 64  # a chain longer than this is garbage, not a device

_PARTS_FOR_ROLE = {
    "grid": ("meter",),
    "charger": ("meter",),
    "pv": ("pv", "meter"),
    "battery": ("battery",),
}

ReadFn = Callable[[int, int], Awaitable[list[int]]]


class NotSunSpec(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Model:
    id: int
    address: int  # of its ID register
    length: int  # registers after ID and L


async def discover(read: ReadFn, bases: tuple[int, ...]) -> list[Model]:
    """The device's model chain; raises NotSunSpec when no base holds the marker."""
    for base in bases:
        try:
            marker = await read(base, 2)
        except NotSunSpec:
            continue
        if tuple(marker) == SUNS:
            return await _walk(read, base + 2)
    raise NotSunSpec(f"no SunS marker at {', '.join(str(b) for b in bases)}")


async def _walk(read: ReadFn, address: int) -> list[Model]:
    models: list[Model] = []
    for _ in range(MAX_MODELS):
        model_id, length = await read(address, 2)
        if model_id == END:
            return models
        models.append(Model(model_id, address, length))
        address += 2 + length
    raise NotSunSpec(f"model chain does not end within {MAX_MODELS} models")


def place(profile: Profile, models: list[Model], role: str) -> tuple[str, Part]:
    """Concrete registers for `role` from the models found: (part name, part).

    Parts are tried in order (a pv role prefers inverter models, then a meter). Within a
    part several models can serve (storage 124 and battery 802): the first model in profile
    order that provides a quantity wins it, and parts are never mixed.
    """
    found = {m.id: m for m in models}
    for part_name in _PARTS_FOR_ROLE[role]:
        registers: list[Register] = []
        derived: list[Derived] = []
        names: set[str] = set()
        for spec in profile.sunspec_models:
            model = next((found[i] for i in spec.ids if i in found), None)
            if spec.part != part_name or model is None:
                continue
            for r in spec.layout.registers:
                if r.name not in names and r.address < 2 + model.length:
                    registers.append(r.moved(model.address))
                    names.add(r.name)
            for d in spec.layout.derived:
                if d.name not in names:
                    derived.append(d)
                    names.add(d.name)
        if registers:
            return part_name, Part(tuple(registers), tuple(derived))
    ids = ", ".join(str(m.id) for m in models)
    raise NotSunSpec(f"no model for role {role} among the models found ({ids})")
