"""Pure parts of the OCPP layer: profile builder, meter reading, status mapping, config,
and the simulated charger's profile arithmetic (no sockets needed)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gateway.config import describe, load_config
from gateway.ocpp.profiles import (
    BASE_STACK,
    base_layer,
    dynamic_layer,
    profile_16,
    profile_201,
    schedule_origin_s,
    wire_limit,
)
from gateway.ocpp.state import parse_meter_values, status_201
from gateway.sim.chargepoint import SimChargePoint, read_profile
from gateway.sim.ev import EV
from gateway.tomlfile import TomlError

NOW = 1_800_000_000.0


def test_wire_limit_rounds_down_to_what_the_charger_takes() -> None:
    assert wire_limit(13.37, "A", 0.1, 230, 3) == 13.3
    assert wire_limit(13.99, "A", 1.0, 230, 3) == 13.0
    assert wire_limit(6.3, "A", 0.1, 230, 3) == 6.3  # no float drift below 6.3
    assert wire_limit(10, "W", 0.1, 230, 3) == 6900.0
    assert wire_limit(10, "W", 0.1, 231.7, 1) == 2317.0
    assert wire_limit(0, "A", 0.1, 230, 3) == 0.0


def test_failsafe_in_watts_counts_the_chargers_phases() -> None:
    """A 3-phase car on a W-only charger gets the failsafe current on each line, not a
    third of it (below the 6 A minimum: in effect a stop)."""
    assert base_layer(6, "W", 0.1, 230, 3).limit == 4140.0
    assert base_layer(6, "W", 0.1, 230, 1).limit == 1380.0
    assert base_layer(6, "A", 0.1, 230, 3).limit == 6.0


def sim(**kw: object) -> SimChargePoint:
    clock = kw.pop("clock", lambda: NOW)
    return SimChargePoint("X", "ws://127.0.0.1:1/X", clock=clock, max_a=32, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
def test_layers_seen_by_the_simulated_charger(version: str) -> None:
    build = profile_16 if version == "1.6" else profile_201
    cp = sim()
    base = base_layer(6, "A", 0.1, 230, 3)
    dynamic = dynamic_layer(16, "A", 3, NOW, 60, base)
    for layer in (base, dynamic):
        assert cp.install(read_profile(build(layer, "absolute", NOW), 1, version, NOW)) == (
            "Accepted"
        )
    assert cp.effective_limit_a(NOW) == 16
    assert cp.effective_limit_a(NOW + 59) == 16
    assert cp.effective_limit_a(NOW + 60) == 6  # the dynamic layer lapsed
    assert cp.effective_limit_a(NOW - 400) == 32  # before any schedule starts


def test_stack_zero_puts_the_failsafe_in_a_tail_period() -> None:
    cp = sim(max_stack_level=0)
    base = base_layer(6, "A", 0.1, 230, 3)
    layer = dynamic_layer(16, "A", BASE_STACK, NOW, 60, base)
    assert layer.valid_to is None and layer.tail is not None
    for lay in (base, layer):
        assert cp.install(read_profile(profile_16(lay, "absolute", NOW), 1, "1.6", NOW)) == (
            "Accepted"
        )
    assert len(cp.profiles) == 1  # same stack and purpose: replaced
    assert cp.effective_limit_a(NOW + 59) == 16
    assert cp.effective_limit_a(NOW + 61) == 6


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
@pytest.mark.parametrize("unit", ["A", "W"])
@pytest.mark.parametrize("stack", [BASE_STACK, 3])
@pytest.mark.parametrize("kind", ["absolute", "relative"])
def test_failsafe_lives_in_the_schedule(version: str, unit: str, stack: int, kind: str) -> None:
    """A charger that never acts on validTo still ends at the failsafe when validity ends.

    Relative schedules count from the session start: a profile sent 20 min into a session
    still holds its limit for the full validity (not the failsafe from minute 7).
    """
    build = profile_16 if version == "1.6" else profile_201
    cp = sim(quirks=frozenset({"ignores_valid_to"}), ev=EV(phases=1))
    base = base_layer(6, unit, 0.1, 230, 1)
    limit = wire_limit(16, unit, 0.1, 230, 1)
    elapsed = 1200.0  # the session started 20 minutes before this send
    cp.session_start = NOW - elapsed
    origin = schedule_origin_s(kind, elapsed)
    layer = dynamic_layer(limit, unit, stack, NOW, 60, base, origin)
    for lay in (base, layer):
        assert cp.install(read_profile(build(lay, kind, NOW), 1, version, NOW)) == "Accepted"
    assert cp.effective_limit_a(NOW + 1) == pytest.approx(16)
    assert cp.effective_limit_a(NOW + 59) == pytest.approx(16)
    assert cp.effective_limit_a(NOW + 61) == pytest.approx(6)
    assert cp.effective_limit_a(NOW + 7200) == pytest.approx(6)


def test_relative_profile_has_no_start_schedule() -> None:
    base = base_layer(6, "A", 0.1, 230, 3)
    wire = profile_201(dynamic_layer(10, "A", 1, NOW, 60, base), "relative", NOW)
    assert wire["charging_profile_kind"] == "Relative"
    assert "start_schedule" not in wire["charging_schedule"][0]
    cp = sim()
    assert cp.install(read_profile(wire, 1, "2.0.1", NOW)) == "Accepted"
    assert cp.effective_limit_a(NOW + 1) == 10


def test_simulated_charger_follows_the_spec_rules() -> None:
    cp = sim(rate_units=("W",), max_stack_level=2, ev=EV(phases=1))
    amps_layer = base_layer(6, "A", 0.1, 230, 1)
    amps = read_profile(profile_16(amps_layer, "absolute", NOW), 1, "1.6", NOW)
    assert cp.install(amps) == "Rejected"  # W-only
    watts = base_layer(6, "W", 0.1, 230, 1)
    assert cp.install(read_profile(profile_16(watts, "absolute", NOW), 1, "1.6", NOW)) == (
        "Accepted"
    )
    assert cp.effective_limit_a(NOW) == pytest.approx(6.0)
    too_high = dynamic_layer(4600, "W", 3, NOW, 60, watts)
    assert cp.install(read_profile(profile_16(too_high, "absolute", NOW), 1, "1.6", NOW)) == (
        "Rejected"
    )
    cap = read_profile(profile_16(watts, "absolute", NOW), 0, "1.6", NOW)
    cap = replace(cap, id=7, periods=((0, 920.0),), purpose="ChargePointMaxProfile")
    assert cp.install(cap) == "Accepted"
    assert cp.effective_limit_a(NOW) == pytest.approx(4.0)  # the max profile caps
    assert cp.clear(7, None, None) == "Accepted" and cp.clear(7, None, None) == "Unknown"
    cp.ignore_limits = True
    assert cp.effective_limit_a(NOW) == 32


def test_meter_values_16_strings_units_and_garbage() -> None:
    reading = parse_meter_values(
        [
            {
                "timestamp": "x",
                "sampled_value": [
                    {"value": "15.5", "measurand": "Current.Import", "phase": "L1", "unit": "A"},
                    {"value": "15.0", "measurand": "Current.Import", "phase": "L2"},
                    {"value": "nope", "measurand": "Current.Import", "phase": "L3"},
                    {"value": "231", "measurand": "Voltage", "phase": "L1-N"},
                    {"value": "229", "measurand": "Voltage", "phase": "L2-N"},
                    {"value": "10.6", "measurand": "Power.Active.Import", "unit": "kW"},
                    {"value": "12.5", "unit": "kWh"},  # no measurand = energy register
                    {"value": "16", "measurand": "Current.Offered"},
                    "not a dict",
                ],
            },
            42,
        ],
        lines=3,
    )
    assert reading.current_a == (15.5, 15.0, None)
    assert reading.voltage_v == 230.0
    assert reading.power_w == 10600.0 and reading.energy_wh == 12500.0
    assert reading.offered_a == 16.0


def test_meter_values_201_multiplier_and_unphased_current() -> None:
    reading = parse_meter_values(
        [
            {
                "sampled_value": [
                    {"value": 7.2, "measurand": "Current.Import"},
                    {
                        "value": 3.5,
                        "measurand": "Energy.Active.Import.Register",
                        "unit_of_measure": {"unit": "Wh", "multiplier": 3},
                    },
                ]
            }
        ],
        lines=1,
    )
    assert reading.current_a == (7.2, 0.0, 0.0)
    assert reading.energy_wh == 3500.0
    assert parse_meter_values("garbage", 3).current_a == (None, None, None)


@pytest.mark.parametrize(
    ("connector", "state", "in_tx", "expected"),
    [
        ("Available", None, False, "Available"),
        ("Occupied", None, False, "Preparing"),
        ("Occupied", "Charging", True, "Charging"),
        ("Occupied", "SuspendedEV", True, "SuspendedEV"),
        ("Occupied", "SuspendedEVSE", True, "SuspendedEVSE"),
        ("Occupied", "EVConnected", True, "Preparing"),
        ("Faulted", "Charging", True, "Faulted"),
        ("Unavailable", None, False, "Unavailable"),
        ("Reserved", None, False, "Reserved"),
        ("Bogus", None, False, None),
    ],
)
def test_201_status_maps_to_16_names(
    connector: str, state: str | None, in_tx: bool, expected: str | None
) -> None:
    assert status_201(connector, state, in_tx) == expected


BASE_TOML = """
[site]
main_breaker_a = 25

[[chargers]]
id = "garage"
max_a = 16
password = "s3cret"
connector = 0
rate_unit = "W"
stack_level = 0
profile_kind = "relative"
change_availability = false
limit_step_a = 1
protocol = "2.0.1"
"""


def test_config_reads_ocpp_keys(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text(BASE_TOML + "\n[ocpp]\nport = 9443\nauto_accept = true\nvalidity_s = 90\n")
    cfg = load_config(path)
    o = cfg.chargers[0].ocpp
    assert (o.password, o.connector, o.rate_unit, o.stack_level) == ("s3cret", 0, "W", 0)
    assert (o.profile_kind, o.change_availability, o.limit_step_a, o.protocol) == (
        "relative",
        False,
        1.0,
        "2.0.1",
    )
    assert (cfg.ocpp.port, cfg.ocpp.auto_accept, cfg.ocpp.validity_s) == (9443, True, 90.0)
    assert cfg.ocpp.host == "0.0.0.0" and cfg.ocpp.refresh_s == 30.0


@pytest.mark.parametrize(
    ("extra", "line", "key", "message"),
    [
        ("[ocpp]\nprot = 1\n", 18, "ocpp.prot", "unknown key"),
        ('[ocpp]\ntls_cert = "a.pem"\n', 17, "ocpp.tls_key", "together"),
        ('[ocpp]\ntls_cert = "/nonexistent.pem"\ntls_key = "k"\n', 18, "ocpp.tls_cert", "no such"),
        ("[ocpp]\nrefresh_s = 60\nvalidity_s = 100\n", 19, "ocpp.validity_s", ">= 2 x"),
    ],
)
def test_bad_ocpp_config_names_line_and_key(
    tmp_path: Path, extra: str, line: int, key: str, message: str
) -> None:
    path = tmp_path / "gw.toml"
    path.write_text(BASE_TOML + "\n" + extra)
    with pytest.raises(TomlError) as err:
        load_config(path)
    assert err.value.key == key and message in err.value.message
    assert err.value.line == line  # an absent key points at its table


def test_bad_charger_ocpp_key(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text(BASE_TOML.replace('rate_unit = "W"', 'rate_unit = "kW"'))
    with pytest.raises(TomlError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}:10: chargers[0].rate_unit: must be one of")


def test_check_config_exits_2_naming_the_ocpp_key(tmp_path: Path, cli: Any) -> None:
    path = tmp_path / "gw.toml"
    path.write_text(BASE_TOML + "\n[ocpp]\nport = 99999\n")
    result = cli("check-config", str(path))
    assert result.returncode == 2
    assert f"{path}:18: ocpp.port: must be <= 65535" in result.stderr


def test_summary_shows_the_watts_a_watts_only_charger_gets(tmp_path: Path) -> None:
    """check-config and the start-up summary: the failsafe layer in W counts the phases."""
    path = tmp_path / "gw.toml"
    path.write_text(BASE_TOML + "phases = 3\nfailsafe_a = 7\n")
    lines = [line for line in describe(load_config(path)) if line.startswith("charger garage")]
    assert lines[0].endswith("failsafe 7 A = 4830 W (3 x 230 V)")
    path.write_text(BASE_TOML.replace('rate_unit = "W"', 'rate_unit = "A"'))
    assert any(line.endswith("failsafe 6 A") for line in describe(load_config(path)))


def _sample(value: float, measurand: str, phase: str | None = None) -> dict:
    sample: dict = {"value": str(value), "measurand": measurand}
    return sample | ({"phase": phase} if phase else {})


def test_line_to_line_voltages_are_told_apart() -> None:
    mixed = [
        _sample(230, "Voltage", "L1-N"),
        _sample(400, "Voltage", "L1-L2"),
        _sample(398, "Voltage"),  # unphased, but line-to-line by its size
    ]
    assert parse_meter_values([{"sampled_value": mixed}], 3).voltage_v == 230
    only_between = [_sample(400, "Voltage", "L1-L2"), _sample(400, "Voltage", "L2-L3")]
    reading = parse_meter_values([{"sampled_value": only_between}], 3)
    assert reading.voltage_v == pytest.approx(400 / 3**0.5)


def test_whole_amp_currents_take_the_finer_power_figure() -> None:
    def read(*currents: float, power: float) -> tuple:
        samples = [_sample(c, "Current.Import", f"L{i + 1}") for i, c in enumerate(currents)]
        samples += [_sample(230, "Voltage", "L1-N"), _sample(power, "Power.Active.Import")]
        return parse_meter_values([{"sampled_value": samples}], 3).current_a

    assert read(15, 15, 15, power=15.9 * 230 * 3) == pytest.approx((15.9, 15.9, 15.9))
    assert read(15, 0, 0, power=15.9 * 230) == pytest.approx((15.9, 0, 0))
    assert read(15.4, 15, 15, power=15.9 * 230 * 3) == (15.4, 15, 15)  # already fine
    assert read(15, 15, 15, power=3000) == (15, 15, 15)  # power is not this draw
