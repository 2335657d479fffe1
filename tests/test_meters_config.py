"""The [[meters]] config section: good configs load, bad ones name file, line and key."""

from __future__ import annotations

import os

import pytest

from gateway.config import load_config

HEAD = """\
[site]
main_breaker_a = 25

[[chargers]]
id = "c1"
"""


@pytest.fixture
def serial_port():
    master, slave = os.openpty()
    yield os.ttyname(slave)
    os.close(master)
    os.close(slave)


def write(tmp_path, body: str):
    path = tmp_path / "gateway.toml"
    path.write_text(HEAD + body, encoding="utf-8")
    return path


def test_good_meters_load_with_defaults_and_shared_buses(tmp_path, serial_port):
    path = write(
        tmp_path,
        f"""
[[meters]]
name = "grid"
model = "sdm630"
role = "grid"
port = "{serial_port}"
baud = 19200
parity = "E"

[[meters]]
name = "wallbox"
model = "em340"
role = "charger"
charger = "c1"
port = "{serial_port}"
baud = 19200
parity = "E"
unit_id = 2

[[meters]]
name = "inverter"
model = "sunspec"
role = "pv"
host = "127.0.0.1"
interval_s = 2
""",
    )
    config = load_config(path)
    grid, wallbox, inverter = config.meters
    assert grid.connection == wallbox.connection
    assert (grid.connection.baud, grid.connection.parity, grid.unit_id) == (19200, "E", 1)
    assert (grid.timeout_s, grid.retries, grid.interval_s) == (0.5, 1, 1.0)
    assert grid.max_registers == 80  # the profile's cap
    assert wallbox.charger == "c1" and wallbox.unit_id == 2
    assert inverter.connection.key == ("tcp", "127.0.0.1", 502)
    assert inverter.interval_s == 2.0


BAD = [
    ('name = "g"\nmodel = "sdm999"\nrole = "grid"\nhost = "h"', 9, "meters[0].model"),
    ('name = "g"\nmodel = "sdm630"\nrole = "grid"\nhost = "h"\nbaud_rate = 1', 12, "baud_rate"),
    ('name = "g"\nmodel = "sdm630"\nrole = "grid"\nport = "/dev/ttyNOPE9"', 11, "meters[0].port"),
    ('name = "g"\nmodel = "sdm630"\nrole = "sun"\nhost = "h"', 10, "meters[0].role"),
    (
        'name = "g"\nmodel = "sdm630"\nrole = "charger"\ncharger = "c9"\nhost = "h"',
        11,
        "meters[0].charger",
    ),
    ('name = "g"\nmodel = "sdm630"\nrole = "grid"\nhost = "h"\ntimeout_s = 0', 12, "timeout_s"),
    ('name = "g"\nrole = "grid"\nhost = "h"', 7, "meters[0].model"),
    (
        'name = "g"\nmodel = "sdm630"\nrole = "grid"\nhost = "h"\ntransport = "udp"',
        12,
        "meters[0].transport",
    ),
]


@pytest.mark.parametrize(("body", "line", "key"), BAD)
def test_bad_meter_config_exits_2_naming_file_line_and_key(tmp_path, cli, body, line, key):
    path = write(tmp_path, "\n[[meters]]\n" + body + "\n")
    result = cli("check-config", str(path))
    assert result.returncode == 2, result.stdout
    assert result.stderr.startswith(f"error: {path}:{line}: "), result.stderr
    assert key in result.stderr


def test_meters_on_one_port_must_agree_on_line_settings(tmp_path, cli, serial_port):
    meters = "".join(
        f'\n[[meters]]\nname = "m{i}"\nmodel = "sdm120"\nrole = "grid"\n'
        f'port = "{serial_port}"\nunit_id = {i + 1}\nbaud = {baud}\n'
        for i, baud in enumerate((9600, 19200))
    )
    path = write(tmp_path, meters)
    result = cli("check-config", str(path))
    assert result.returncode == 2
    assert "meters[1].baud: differs from another meter" in result.stderr
    assert f"{path}:21:" in result.stderr


def test_duplicate_names_and_bad_custom_profiles_are_named(tmp_path, cli):
    (tmp_path / "mine.toml").write_text('title = "x"\n[meter]\npower_w = { address = -1 }\n')
    path = write(
        tmp_path,
        '\n[[meters]]\nname = "m"\nprofile_file = "mine.toml"\nrole = "grid"\nhost = "h"\n',
    )
    result = cli("check-config", str(path))
    assert result.returncode == 2
    assert f"{path}:9: meters[0].profile_file: bad profile: " in result.stderr
    assert "mine.toml:3: meter.power_w.address" in result.stderr

    two = '\n[[meters]]\nname = "m"\nmodel = "sdm120"\nrole = "grid"\nhost = "h"\n'
    result = cli("check-config", str(write(tmp_path, two + two)))
    assert result.returncode == 2 and "meters[1].name: duplicate meter name" in result.stderr


def test_custom_profile_file_is_found_next_to_the_config(tmp_path):
    (tmp_path / "mine.toml").write_text(
        'title = "my meter"\n[meter]\npower_w = { address = 0, type = "s16", unit = "W" }\n'
    )
    path = write(
        tmp_path,
        '\n[[meters]]\nname = "m"\nprofile_file = "mine.toml"\nrole = "grid"\nhost = "h"\n',
    )
    (only,) = load_config(path).meters
    assert only.profile.title == "my meter" and only.model == str(tmp_path / "mine.toml")
