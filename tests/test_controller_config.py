"""`[control]` and the per-charger timing overrides in the gateway config."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.allocation.timing import ControlSettings, Timing
from gateway.config import load_config
from gateway.tomlfile import TomlError

CONFIG = """\
[site]
main_breaker_a = 25

[control]
start_delay_s = 30
stale_after_s = 20
soc_hysteresis_pct = 5

[[chargers]]
id = "garage"
stop_delay_s = 60
ramp_up_a_per_s = 1.5

[[chargers]]
id = "street"
"""


def test_control_defaults_when_the_section_is_absent(tmp_path: Path):
    path = tmp_path / "c.toml"
    path.write_text('[site]\nmain_breaker_a = 25\n[[chargers]]\nid = "a"\n')
    config = load_config(path)
    assert config.control == ControlSettings()
    assert config.chargers[0].timing == Timing(
        ramp_up_a_per_s=0.5,
        dead_band_a=0.5,
        start_delay_s=60,
        stop_delay_s=180,
        min_pause_s=180,
        excess_hold_s=900,
    )


def test_site_timing_with_per_charger_overrides(tmp_path: Path):
    path = tmp_path / "c.toml"
    path.write_text(CONFIG)
    config = load_config(path)
    assert config.control.stale_after_s == 20
    assert config.control.soc_hysteresis_pct == 5
    garage, street = config.chargers
    assert (garage.timing.start_delay_s, garage.timing.stop_delay_s) == (30, 60)
    assert garage.timing.ramp_up_a_per_s == 1.5
    assert (street.timing.start_delay_s, street.timing.stop_delay_s) == (30, 180)


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        ("start_delay_s = 30", "start_delay = 30", ":5: control.start_delay: unknown key"),
        ("stop_delay_s = 60", "stop_delay_s = -1", ":11: chargers[0].stop_delay_s: must be >= 0"),
        (
            "stale_after_s = 20",
            'stale_after_s = "soon"',
            ":6: control.stale_after_s: must be a number",
        ),
        (
            '[[chargers]]\nid = "street"',
            '[[chargers]]\nid = "street"\nstale_after_s = 5',
            ":16: chargers[1].stale_after_s: unknown key",
        ),
    ],
)
def test_bad_control_keys_name_file_line_and_key(tmp_path: Path, cli, old, new, where):
    path = tmp_path / "c.toml"
    path.write_text(CONFIG.replace(old, new))
    with pytest.raises(TomlError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}{where}")
    result = cli("check-config", str(path))
    assert result.returncode == 2
    assert f"{path}{where}" in result.stderr


def test_failsafe_currents_that_cannot_fit_under_the_breaker_are_refused(tmp_path: Path, cli):
    """Five default chargers (failsafe = min 6 A) on a 25 A fuse: 30 A before the house."""
    path = tmp_path / "c.toml"
    chargers = "".join(f'[[chargers]]\nid = "c{i}"\n' for i in range(5))
    path.write_text("[site]\nmain_breaker_a = 25\n" + chargers)
    result = cli("check-config", str(path))
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert f"{path}:1: site.household_reserve_a:" in line
    assert "30 A on phase A" in line and "failsafe_a" in line
    # Two chargers without a failsafe current: 18 A + the 6 A reserve fit.
    fits = "[site]\nmain_breaker_a = 25\n" + chargers.replace('"\n', '"\nfailsafe_a = 0\n', 2)
    path.write_text(fits)
    assert load_config(path).chargers[0].failsafe_a == 0
