"""The register map file, value encoding and the `[export]` config section (pure)."""

from __future__ import annotations

import ipaddress
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import load_config
from gateway.export.config import ExportConfig
from gateway.export.overrides import OverrideBook, Overrides
from gateway.export.regmap import (
    CHARGER_BASE,
    CHARGER_STRIDE,
    MAP_SIZE,
    MAP_VERSION,
    MAX_CHARGERS,
    MapError,
    Register,
    load_map,
    parse_map,
)
from gateway.export.state import ChargerState, ExportState
from gateway.tomlfile import TomlError


def row(type_: str, scale: float = 1, size: int = 1) -> Register:
    return Register("x", "site", 0, type_, "", scale, "R", "", "1.0", "", size)


def test_map_has_fixed_addresses_room_for_500_chargers_and_no_holes() -> None:
    regmap = load_map()
    assert MAX_CHARGERS >= 500 and MAP_SIZE <= 0x10000
    for address in range(MAP_SIZE):
        assert regmap.locate(address) is not None, address
    assert regmap.locate(MAP_SIZE) is None
    names = {r.name: r.address for r in regmap.rows if not r.reserved}
    assert names["cycle_counter"] == 30 and names["grid_power"] == 100
    assert names["site_current_limit"] == 500 and names["max_current_override"] == 80
    last_id = regmap.locate(CHARGER_BASE + 499 * CHARGER_STRIDE + 2)
    assert last_id is not None and last_id[0].name == "charger_id" and last_id[1] == 499


def test_map_rows_are_versioned_and_writes_are_single_uint16() -> None:
    rows = load_map().rows
    assert {r.since for r in rows} <= {f"{MAP_VERSION[0]}.{m}" for m in range(MAP_VERSION[1] + 1)}
    writable = [r.name for r in rows if r.writable]
    assert writable == [
        "site_current_limit",
        "site_power_limit",
        "heartbeat",
        "max_current_override",
        "enable_override",
        "mode_override",
    ]
    assert all(r.type == "uint16" for r in rows if r.writable)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("grid_power_l1,site,102,", "grid_power_l1,site,103,", "expected 102"),
        ("reserved,site,168,reserved[332]", "reserved,site,168,reserved[331]", "expected 499"),
        ("reserved,charger,83,reserved[17]", "reserved,charger,83,reserved[16]", "ends at 99,"),
        ("power,charger,32,float32", "power,charger,32,float64", "unknown type"),
        ("enable_override,charger,81,uint16", "enable_override,charger,81,int16", "writable"),
        ("index,charger,0,uint16", "index,plug,0,uint16", "unknown block"),
    ],
)
def test_a_broken_map_file_is_refused(old: str, new: str, message: str) -> None:
    source = load_map().source
    assert old in source
    with pytest.raises(MapError, match=message.replace("[", r"\[")):
        parse_map(source.replace(old, new, 1))


def test_map_hash_follows_the_file() -> None:
    source = load_map().source
    edited = source.replace("Reads 0", "Reads zero", 1)
    assert parse_map(source).hash == load_map().hash != parse_map(edited).hash


def test_encode_decode_each_type() -> None:
    f32 = row("float32", size=2)
    assert f32.encode(230.5) == [0x4366, 0x8000]
    assert math.isnan(f32.decode(f32.encode(None))) and math.isnan(f32.decode(f32.encode(math.nan)))
    # Beyond float32 (a charger's MeterValues 1e39) is published as unknown, never a crash.
    assert math.isnan(f32.decode(f32.encode(1e39))) and math.isnan(f32.decode(f32.encode(-1e300)))
    u16 = row("uint16", scale=10)
    assert u16.encode(16.04) == [160] and u16.decode([160]) == 16.0
    assert u16.encode(None) == [0xFFFF] and u16.decode([0xFFFF]) is None
    assert u16.encode(1e9) == [0xFFFE]  # clamped below the sentinel
    i16 = row("int16")
    assert i16.encode(-2) == [0xFFFE] and i16.decode([0xFFFE]) == -2
    assert i16.encode(None) == [0x8000] and i16.decode([0x8000]) is None
    u32 = row("uint32", size=2)
    assert u32.encode(70000) == [1, 4464] and u32.decode([1, 4464]) == 70000
    assert u32.encode(math.nan) == [0xFFFF, 0xFFFF] and u32.decode([0xFFFF, 0xFFFF]) is None
    text = row("string[2]", size=2)
    assert text.encode("EVGW") == [0x4556, 0x4757] and text.decode([0x4556, 0x4757]) == "EVGW"
    assert text.encode("abcdef") == text.encode("abcd") and text.decode(text.encode("a")) == "a"
    assert text.encode(None) == [0, 0]


def test_range_column_names_site_and_charger_limits() -> None:
    rows = {r.name: r for r in load_map().rows}
    assert rows["site_current_limit"].bounds({"fuse": 25.0}) == (0.0, 25.0)
    assert rows["max_current_override"].bounds({"min": 6.0, "max": 16.0}) == (6.0, 16.0)


def test_state_codes_and_status_bits() -> None:
    assert ChargerState("c", status="Charging").status_code == 3
    assert ChargerState("c", status="Faulted").status_code == 9
    assert ChargerState("c", status="Nonsense").status_code == 0
    state = ExportState(0, 0, 0, 25, 17250, meters_ok=False, ocpp_ok=True, data_stale=True)
    assert state.status_bits == 0b10010


SITE = "[site]\nmain_breaker_a = 25\n"


def test_export_config_defaults_and_values(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text(SITE)
    assert load_config(path).export == ExportConfig()
    assert ExportConfig().port == 1502 and not ExportConfig().writes_enabled
    path.write_text(
        SITE
        + "[export]\nhost = '127.0.0.1'\nport = 502\nunit_id = 3\nwrites_enabled = true\n"
        + "allowed_clients = ['192.168.1.10', '10.0.0.0/8']\noverride_timeout_s = 30\n"
    )
    export = load_config(path).export
    assert (export.host, export.port, export.unit_id, export.override_timeout_s) == (
        "127.0.0.1",
        502,
        3,
        30.0,
    )
    assert export.allowed_clients == (
        ipaddress.ip_network("192.168.1.10/32"),
        ipaddress.ip_network("10.0.0.0/8"),
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("port = 70000", "export.port: must be <= 65535"),
        (
            "allowed_clients = ['10.0.0.300']",
            "export.allowed_clients[0]: not an IP address or network: '10.0.0.300'",
        ),
        ("override_timeout_s = 1", "export.override_timeout_s: must be >= 5"),
        ("write_enabled = true", "export.write_enabled: unknown key; did you mean writes_enabled?"),
        ("unit_id = 0", "export.unit_id: must be >= 1"),
    ],
)
def test_bad_export_config_names_file_line_and_key(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "gw.toml"
    path.write_text(SITE + "\n[export]\n" + body + "\n")
    with pytest.raises(TomlError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}:5: {message}"


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([500, 501, 502, 503, 1080, 1081, 1082, 1180, 1181, 1182, 1280]),
            st.lists(
                st.one_of(st.integers(0, 400), st.just(0xFFFF), st.integers(0, 0xFFFF)),
                min_size=1,
                max_size=3,
            ),
        ),
        max_size=20,
    )
)
def test_no_write_sequence_raises_a_limit_above_fuse_or_max(writes) -> None:
    """Pure write rules: whatever arrives, overrides stay within fuse and charger limits."""
    config = ExportConfig(writes_enabled=True)
    book = OverrideBook(config, load_map())
    chargers = (ChargerState("a", min_a=6, max_a=16), ChargerState("b", min_a=8, max_a=32))
    state = ExportState(1, 0, 0, breaker_limit_a=25, breaker_limit_w=17250, chargers=chargers)
    for address, values in writes:
        assert book.write(address, values, state, "127.0.0.1", now=0.0) in (0, 2, 3)
    got = book.overrides(now=1.0)
    assert got.site_current_a is None or 0 <= got.site_current_a <= 25
    assert got.site_power_w is None or 0 <= got.site_power_w <= 17250
    for c in chargers:
        cap = got.charger(c.id).max_a
        assert cap is None or c.min_a <= cap <= c.max_a
    assert set(got.chargers) <= {"a", "b"}
    assert book.overrides(now=config.override_timeout_s + 1) == Overrides()
