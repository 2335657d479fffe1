"""The shipped configs: every key documented in config/example.toml is accepted."""

from __future__ import annotations

import os

from tests.conftest import ROOT, run_cli


def test_example_config_passes_check_config_once_its_serial_port_exists(tmp_path):
    master, slave = os.openpty()
    try:
        text = (ROOT / "config" / "example.toml").read_text()
        assert '"/dev/ttyUSB0"' in text
        config = tmp_path / "config.toml"
        config.write_text(text.replace("/dev/ttyUSB0", os.ttyname(slave)))
        result = run_cli("check-config", str(config))
    finally:
        os.close(master)
        os.close(slave)
    assert result.returncode == 0, result.stderr
    for part in ("meter grid: grid (sdm630)", "OCPP: ws://0.0.0.0:9000", "charger carport: solar"):
        assert part in result.stdout


def test_example_config_without_the_adapter_names_file_line_and_key():
    result = run_cli("check-config", "config/example.toml")
    assert result.returncode == 2
    assert "config/example.toml:" in result.stderr
    assert "meters[0].port: serial port /dev/ttyUSB0 does not exist" in result.stderr


def test_a_config_without_a_grid_meter_cannot_run(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[site]\nmain_breaker_a = 25\n[[chargers]]\nid = "c1"\n')
    result = run_cli("check-config", str(config))
    assert result.returncode == 2
    assert 'meters: needs exactly one meter with role = "grid"' in result.stderr
