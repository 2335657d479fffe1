"""The hold's configuration: `control = true` on a battery meter and a profile's [control];
bad ones exit 2 naming file, line and key."""

from __future__ import annotations

import pytest

from gateway.config import load_config
from gateway.meters.profile import builtin

HEAD = """\
[site]
main_breaker_a = 25

[[chargers]]
id = "c1"

[[meters]]
name = "grid"
model = "sdm630"
role = "grid"
host = "127.0.0.1"
"""


def write(tmp_path, body: str):
    path = tmp_path / "gateway.toml"
    path.write_text(HEAD + body, encoding="utf-8")
    return path


def battery(model: str = "deye", role: str = "battery", name: str = "inverter") -> str:
    return f'\n[[meters]]\nname = "{name}"\nmodel = "{model}"\nrole = "{role}"\nhost = "h"\n'


def test_control_is_off_unless_asked_and_on_with_the_profile_s_control(tmp_path, cli):
    path = write(tmp_path, battery() + "control = true\n" + battery(name="b2"))
    config = load_config(path)
    assert [m.control for m in config.meters] == [False, True, False]
    assert config.meters[1].profile.control is builtin("deye").control
    result = cli("check-config", str(path))
    assert result.returncode == 0, result.stderr
    assert "meter inverter: battery (deye) on tcp://h:502 unit 1, battery hold" in result.stdout
    assert "meter b2: battery (deye) on tcp://h:502 unit 1\n" in result.stdout


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        (battery(role="pv") + "control = true\n", 18, 'only for role = "battery"'),
        (battery("sunspec") + "control = true\n", 18, "model sunspec has no writable battery"),
        (battery("deye") + "control = 1\n", 18, "must be true or false"),
        (
            battery() + "control = true\n" + battery("sma", name="b2") + "control = true\n",
            25,
            "only one battery can be held",
        ),
    ],
)
def test_bad_control_settings_are_named(tmp_path, cli, body, line, message):
    path = write(tmp_path, body)
    result = cli("check-config", str(path))
    assert result.returncode == 2, result.stdout
    assert result.stderr.startswith(f"error: {path}:{line}: "), result.stderr
    assert "control" in result.stderr and message in result.stderr


PROFILE = """\
title = "my hybrid"
sources = "me"
function = 3
[battery]
soc_pct = {{ address = 10, unit = "%" }}
[control]
sources = "the manual"
max_w = {max_w}
hold = [{hold}]
release = [{{ address = 20, value = 0 }}]
"""


@pytest.mark.parametrize(
    ("max_w", "hold", "message"),
    [
        (5000, '{ address = 20, value = 1, limit = true, unit = "W" }', "exactly one of value"),
        (5000, '{ address = 20, limit = true, unit = "A" }', "must be one of W, kW"),
        (70000, '{ address = 21, limit = true, unit = "W" }', "70000 does not fit a u16"),
        (5000, '{ address = 21, limit = true, unit = "W", scale = 0 }', "must be > 0"),
        (5000, '{ address = 21, limit = false }', "must be true"),
    ],
)
def test_bad_profile_controls_are_named_in_the_profile_file(tmp_path, cli, max_w, hold, message):
    (tmp_path / "mine.toml").write_text(PROFILE.format(max_w=max_w, hold=hold))
    body = '\n[[meters]]\nname = "b"\nprofile_file = "mine.toml"\nrole = "battery"\nhost = "h"\n'
    result = cli("check-config", str(write(tmp_path, body)))
    assert result.returncode == 2, result.stdout
    assert "mine.toml:" in result.stderr and "control." in result.stderr
    assert message in result.stderr, result.stderr


def test_a_control_needs_a_battery_part_and_is_not_inherited(tmp_path, cli):
    text = PROFILE.format(max_w=5000, hold='{ address = 21, limit = true, unit = "W" }')
    (tmp_path / "mine.toml").write_text(text.replace("[battery]", "[pv]"))
    body = '\n[[meters]]\nname = "b"\nprofile_file = "mine.toml"\nrole = "pv"\nhost = "h"\n'
    result = cli("check-config", str(write(tmp_path, body)))
    assert result.returncode == 2 and "only for a profile with a [battery] part" in result.stderr
    # deye-hv extends deye: registers yes, the LV pack's amps-per-watt control no.
    assert builtin("deye").control is not None and builtin("deye-hv").control is None
