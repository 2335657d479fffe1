"""Inverter profiles read over TCP from registers in the vendor's own units and signs."""

from __future__ import annotations

import asyncio

import pytest

from gateway.meters.decode import encode_raw
from gateway.meters.served import Image, ServedBus, Unit
from tests.test_meters_helpers import by_name, meter, polling, tcp
from tests.waiting import until as wait_until


def words(*entries: tuple[int, float, str] | tuple[int, float, str, str]) -> Image:
    """(address, raw value, type[, word order]) -> an image, holes filled with 0."""
    out: Image = {}
    for address, raw, kind, *order in entries:
        for i, w in enumerate(encode_raw(raw, kind, *(order or ["big"]))):
            out[address + i] = w
    lo, hi = min(out), max(out)
    return {a: out.get(a, 0) for a in range(lo, hi + 1)}


# unit id -> (model, vendor registers, {role: expected canonical values})
DEVICES = {
    1: (
        "huawei-sun2000",
        {
            **words(
                (37107, -650, "s32"),  # 6.5 A on L1, sent negative because importing
                (37113, -1500, "s32"),  # export + in Huawei's convention: importing 1500 W
                (37119, 12345, "u32"),
                (37121, 67890, "u32"),
                (37132, -1500, "s32"),
            ),
            **words((32064, 4200, "s32")),
            **words((37760, 555, "u16"), (37765, 800, "s32"), (37782, 5, "u32")),  # charging
        },
        {
            "grid": {"power_w": 1500, "current_l1_a": 6.5, "energy_import_wh": 678900},
            "pv": {"power_w": 4200},
            "battery": {"soc_pct": 55.5, "power_w": -800, "energy_import_wh": 50},
        },
    ),
    3: (
        "sma",
        {
            **words((30513, 9876543, "u64"), (30775, 5000, "s32")),
            **words((30845, 80, "u32"), (30865, 0, "u32"), (30867, 2500, "u32")),
            **words((31393, 0, "u32"), (31395, 700, "u32")),
        },
        {
            "grid": {"power_w": -2500},
            "pv": {"power_w": 5000, "energy_import_wh": 9876543},
            "battery": {"soc_pct": 80, "power_w": 700},
        },
    ),
    100: (
        "victron-gx",
        words(
            (808, 100, "u16"),
            (811, 200, "u16"),
            (820, -300, "s16"),
            (821, 400, "s16"),
            (822, 500, "s16"),
            (842, 900, "s16"),  # charging 900 W
            (843, 71, "u16"),
            (850, 1000, "u16"),
        ),
        {
            "grid": {"power_w": 600, "power_l1_w": -300},
            "pv": {"power_w": 1300},
            "battery": {"power_w": -900, "soc_pct": 71},
        },
    ),
    4: (
        "deye",
        words(
            (516, 1000, "u32", "little"),
            (518, 2000, "u32", "little"),
            (522, 123456, "u32", "little"),
            (588, 64, "u16"),
            (590, -1200, "s16"),  # charging: Deye is discharge +
            (613, 512, "s16"),
            (616, -1180, "s16"),
            (625, -900, "s16"),
            (672, 1500, "u16"),
            (673, 1400, "u16"),
        ),
        {
            "grid": {
                "power_w": -900,
                "current_l1_a": -5.12,
                "energy_import_wh": 12345600,
            },
            "pv": {"power_w": 2900},
            "battery": {"power_w": -1200, "soc_pct": 64, "energy_import_wh": 200000},
        },
    ),
    5: (
        "growatt-sph",
        {
            **words((1, 31000, "u32")),
            **words((1009, 0, "u32"), (1011, 15000, "u32"), (1014, 42, "u16")),
            **words((1021, 0, "u32"), (1029, 23000, "u32"), (1046, 7, "u32")),
        },
        {
            "grid": {"power_w": -2300, "energy_import_wh": 700},
            "pv": {"power_w": 3100},
            "battery": {"power_w": -1500, "soc_pct": 42},
        },
    ),
}


def test_vendor_profiles_bring_every_value_to_one_convention():
    async def scenario():
        bus = ServedBus(Unit(u, image) for u, (_, image, _) in DEVICES.items())
        port = await bus.start_tcp()
        configs = [
            meter(f"{model}-{role}", model, tcp(port), unit_id=u, role=role)
            for u, (model, _, roles) in DEVICES.items()
            for role in roles
        ]
        async with polling(configs, bus) as meters:
            await wait_until(lambda: all(m.ok for m in meters.latest()))
            for u, (model, _, roles) in DEVICES.items():
                for role, want in roles.items():
                    state = by_name(meters, f"{model}-{role}")
                    got = {k: state.values[k].value for k in want}
                    assert got == pytest.approx(want), (u, model, role)
                    assert not any(k.startswith("_") for k in state.values)

    asyncio.run(scenario())


def test_inverter_profiles_refuse_roles_they_do_not_have():
    from gateway.meters.profile import builtin

    assert "charger" not in builtin("huawei-sun2000").roles()
    assert builtin("victron-gx").unit_id == 100 and builtin("sma").unit_id == 3
