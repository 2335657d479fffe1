"""Profiles, block planning and decoding, without a wire."""

from __future__ import annotations

import math

import pytest

from gateway.meters.blocks import char_time_s, plan_blocks, rtu_max_gap, wire_time_s
from gateway.meters.decode import decode_block, decode_raw, encode_raw, finish
from gateway.meters.profile import Register, builtin, builtin_names, load_profile
from gateway.meters.served import image
from gateway.tomlfile import TomlError
from tests.test_meters_helpers import METER_VALUES

PLAIN_METERS = ("sdm630", "sdm72", "sdm120", "em24", "em340", "abb-b23")


def test_every_builtin_profile_loads_and_names_its_roles():
    names = builtin_names()
    for name in (*PLAIN_METERS, "sunspec"):
        assert name in names
    for name in names:
        profile = builtin(name)
        assert profile.title
        assert profile.roles(), name


@pytest.mark.parametrize("model", PLAIN_METERS)
def test_meter_profile_round_trips_through_its_registers(model):
    part = builtin(model).parts["meter"]
    words = image(part.registers, METER_VALUES)
    blocks = plan_blocks(part.registers, 125, 125)
    raw: dict[str, float] = {}
    for b in blocks:
        raw.update(decode_block(b, [words.get(a, 0) for a in range(b.start, b.end)]))
    values = finish(raw, part.registers, part.derived, turn_round=False)
    expected = {r.name: METER_VALUES[r.name] for r in part.registers}
    if model == "sdm120":  # single phase: total power is the L1 power
        expected["power_w"] = METER_VALUES["power_l1_w"]
    assert values == pytest.approx(expected, rel=1e-5)
    assert values["current_l1_a"] < 0  # an unsigned current register takes the power's sign


def test_word_orders_and_types_decode_known_words():
    assert decode_raw([0x4366, 0x8000], "f32") == 230.5
    assert decode_raw([0x8000, 0x4366], "f32", "little") == 230.5
    assert decode_raw([0xFFFF, 0xFB2E], "s32") == -1234
    assert decode_raw([0xFB2E, 0xFFFF], "s32", "little") == -1234
    assert decode_raw([0, 0, 0x0001, 0x0000], "u64") == 65536
    assert encode_raw(-1234, "s32", "little") == [0xFB2E, 0xFFFF]


@pytest.mark.parametrize(
    ("words", "kind"),
    [([0x8000], "s16"), ([0xFFFF], "u16"), ([0x8000, 0], "s32"), ([0x7FC0, 0], "f32")],
)
def test_not_implemented_sentinels_give_no_value(words, kind):
    assert decode_raw(words, kind) is None


def test_scale_factor_applies_and_missing_factor_gives_no_value():
    r = Register("power_w", 3, 10, "s16", scale_sf=11)
    block = plan_blocks([r], 125, 125)[0]
    assert (block.start, block.count) == (10, 2)  # value and its SF in one request
    assert decode_block(block, [1234, 0xFFFE]) == {"power_w": pytest.approx(12.34)}
    assert decode_block(block, [1234, 0x8000]) == {}


def test_pv_and_battery_roles_turn_a_meter_round():
    values = {"power_w": -3000.0, "current_l1_a": -4.0, "energy_export_wh": 10.0, "soc_pct": 50}
    turned = finish(values, (), (), turn_round=True)
    assert turned == {
        "power_w": 3000.0,
        "current_l1_a": 4.0,
        "energy_import_wh": 10.0,
        "soc_pct": 50,
    }


def test_current_without_its_power_is_dropped_not_guessed():
    r = Register("current_l1_a", 4, 6, "f32", sign_of="power_l1_w")
    assert finish({"current_l1_a": 5.0}, (r,), (), False) == {}


def test_current_derived_from_power_and_voltage_keeps_the_power_sign(tmp_path):
    path = tmp_path / "no-current.toml"
    path.write_text(
        'title = "meter without current registers"\n'
        "[meter]\n"
        'power_l1_w = { address = 0, type = "s16", unit = "W" }\n'
        'voltage_l1_v = { address = 1, type = "u16", unit = "V" }\n'
        "[meter.derived]\n"
        'current_l1_a = { divide = ["power_l1_w", "voltage_l1_v"] }\n'
    )
    part = load_profile(path).parts["meter"]
    (block,) = plan_blocks(part.registers, 125, 125)
    raw = decode_block(block, [*encode_raw(-2300, "s16"), 230])
    assert finish(raw, part.registers, part.derived, False)["current_l1_a"] == -10.0
    assert "current_l1_a" not in finish({"power_l1_w": 5.0}, part.registers, part.derived, False)


def test_blocks_merge_close_registers_and_respect_the_cap():
    regs = [Register(f"_r{i}_w", 4, a, "f32") for i, a in enumerate((0, 2, 10, 60, 200))]
    assert [(b.start, b.count) for b in plan_blocks(regs, 125, 125)] == [(0, 62), (200, 2)]
    assert [(b.start, b.count) for b in plan_blocks(regs, 125, 19)] == [(0, 12), (60, 2), (200, 2)]
    assert [(b.start, b.count) for b in plan_blocks(regs, 8, 125)] == [
        (0, 4),
        (10, 2),
        (60, 2),
        (200, 2),
    ]
    by_fc = plan_blocks([Register("_a_w", 3, 0, "u16"), Register("_b_w", 4, 1, "u16")], 125, 125)
    assert [(b.function, b.start) for b in by_fc] == [(3, 0), (4, 1)]


def test_rtu_gap_and_wire_time_follow_the_line_speed():
    slow, fast = char_time_s(9600, "N", 1), char_time_s(115200, "E", 1)
    assert math.isclose(slow, 10 / 9600)
    assert rtu_max_gap(slow) < rtu_max_gap(char_time_s(19200, "N", 1)) < rtu_max_gap(fast)
    block = plan_blocks([Register("_a_w", 4, 0, "f32")], 125, 0)
    # 8-byte request + 5 + 4 response bytes + two 3.5-char gaps = 24 characters
    assert wire_time_s(block, slow) == pytest.approx(24 * slow)


def test_sdm630_is_one_request_on_tcp_and_two_at_9600():
    part = builtin("sdm630").parts["meter"]
    assert len(plan_blocks(part.registers, 80, 125)) == 1
    assert len(plan_blocks(part.registers, 80, rtu_max_gap(char_time_s(9600, "N", 1)))) == 2


def test_custom_profile_errors_name_file_line_and_key(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(
        'title = "mine"\n[meter]\npower_w = { address = 1, unit = "kWh" }\n', encoding="utf-8"
    )
    with pytest.raises(TomlError) as err:
        load_profile(path)
    assert str(err.value).startswith(f"{path}:3: meter.power_w.unit:")
    path.write_text('title = "mine"\n[meter]\nwatts = { address = 1, unit = "W" }\n')
    with pytest.raises(TomlError, match=r":3: meter.watts: unknown quantity"):
        load_profile(path)


def test_custom_profile_can_extend_a_builtin(tmp_path):
    path = tmp_path / "slow-sdm.toml"
    path.write_text('extends = "sdm630"\ntitle = "picky SDM"\nmax_registers = 10\n')
    profile = load_profile(path)
    assert profile.max_registers == 10
    assert profile.parts == builtin("sdm630").parts
