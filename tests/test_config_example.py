"""The shipped configs: every key documented in config/example.toml is accepted."""

from __future__ import annotations

import os

from tests.conftest import ROOT, run_cli


def test_example_config_passes_check_config_once_its_port_and_passwords_are_set(tmp_path):
    master, slave = os.openpty()
    try:
        text = (ROOT / "config" / "example.toml").read_text()
        assert '"/dev/ttyUSB0"' in text
        config = tmp_path / "config.toml"
        text = text.replace("/dev/ttyUSB0", os.ttyname(slave))
        config.write_text(text)
        unedited = run_cli("check-config", str(config))
        config.write_text(text.replace('"change-me', '"s3cret'))
        result = run_cli("check-config", str(config))
    finally:
        os.close(master)
        os.close(slave)
    # The example's placeholder passwords are refused, naming the line to edit.
    assert unedited.returncode == 2
    line = next(n for n, t in enumerate(text.splitlines(), 1) if '"change-me"' in t)
    assert unedited.stderr.startswith(
        f"error: {config}:{line}: chargers[0].password: still the example"
    )
    assert len(unedited.stderr.strip().splitlines()) == 1
    assert result.returncode == 0, result.stderr
    # The address an installer types into the charger, not the wildcard it listens on.
    ocpp = next(line for line in result.stdout.splitlines() if "OCPP: " in line)
    assert "ws://0.0.0.0" not in ocpp and "(listening on 0.0.0.0:9000)" in ocpp
    assert "the id is case-sensitive and is the Basic-auth user name" in ocpp
    for part in ("meter grid: grid (sdm630)", "charger carport: solar"):
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


def write(tmp_path, text: str, name: str = "c.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


RUNNABLE = """[site]
main_breaker_a = 25
[[meters]]
name = "grid"
model = "sdm630"
role = "grid"
host = "127.0.0.1"
[ocpp]
port = 9000
[[chargers]]
id = "c1"
"""


def one_line_error(result) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_typo_in_a_required_key_is_named_with_the_right_spelling(tmp_path):
    config = write(tmp_path, RUNNABLE.replace("main_breaker_a", "main_braker_a"))
    error = one_line_error(run_cli("check-config", str(config)))
    assert (
        error == f"error: {config}:2: site.main_braker_a: unknown key; did you mean main_breaker_a?"
    )


def test_an_unknown_key_gets_the_nearest_known_one(tmp_path):
    config = write(tmp_path, RUNNABLE + "priorty = 2\n")
    error = one_line_error(run_cli("check-config", str(config)))
    assert error == f"error: {config}:12: chargers[0].priorty: unknown key; did you mean priority?"


def test_a_config_that_is_not_utf8_is_one_line_naming_the_line(tmp_path):
    config = tmp_path / "c.toml"
    config.write_bytes(RUNNABLE.replace('"c1"', '"Gar\xe4ge"').encode("latin-1"))
    error = one_line_error(run_cli("check-config", str(config)))
    assert error == f"error: {config}:11: not UTF-8 (byte 0xe4): save it as UTF-8"


def test_ocpp_and_export_on_one_port_is_refused_by_check_config_and_run(tmp_path):
    config = write(tmp_path, RUNNABLE + "[export]\nport = 9000\n")
    for command in (["check-config"], ["run", "-c"]):
        error = one_line_error(run_cli(*command, str(config)))
        assert (
            error == f"error: {config}:13: export.port: 9000 is also ocpp.port: give each its own"
        )


def test_tls_files_that_are_not_pem_are_refused_naming_the_file(tmp_path):
    (tmp_path / "cert.pem").write_text("not a certificate\n")
    (tmp_path / "key.pem").write_text("not a key\n")
    text = RUNNABLE.replace(
        "port = 9000",
        f'port = 9000\ntls_cert = "{tmp_path}/cert.pem"\ntls_key = "{tmp_path}/key.pem"',
    )
    config = write(tmp_path, text)
    error = one_line_error(run_cli("check-config", str(config)))
    assert error.startswith(f"error: {config}:10: ocpp.tls_cert: {tmp_path}/cert.pem with ")
    assert "does not load as a PEM certificate and key" in error


def test_offline_desk_check_of_a_pi_config_needs_no_serial_port(tmp_path):
    text = (ROOT / "config" / "example.toml").read_text().replace('"change-me', '"s3cret')
    config = write(tmp_path, text)
    assert "/dev/ttyUSB0" in text and not os.path.exists("/dev/ttyUSB0")
    on_this_machine = run_cli("check-config", str(config))
    assert "serial port /dev/ttyUSB0 does not exist" in one_line_error(on_this_machine)
    offline = run_cli("check-config", "--offline", str(config))
    assert offline.returncode == 0, offline.stderr
    assert "meter grid: grid (sdm630)" in offline.stdout


def test_a_meter_host_with_a_port_in_it_is_refused(tmp_path):
    config = write(tmp_path, RUNNABLE.replace('"127.0.0.1"', '"192.168.1.60:502"'))
    error = one_line_error(run_cli("check-config", str(config)))
    assert error == (
        f"error: {config}:7: meters[0].host: '192.168.1.60:502' has a port: write it as port = N"
    )
    ipv6 = write(tmp_path, RUNNABLE.replace('"127.0.0.1"', '"fe80::1"'), "v6.toml")
    assert run_cli("check-config", str(ipv6)).returncode == 0


def test_check_config_names_every_error_in_one_run(tmp_path):
    text = (
        RUNNABLE.replace(
            'id = "c1"', 'id = "c1"\nmax_a = "16"\n[[chargers]]\nid = "c2"\npriorty = 2'
        ).replace("[ocpp]\nport = 9000", "[ocpp]\nport = 99999")
        + "[export]\nunit_id = 0\n[lgo]\nlevel = 'debug'\n"
    )
    config = write(tmp_path, text)
    result = run_cli("check-config", str(config))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    keys = [line.split(": ")[2] for line in lines]
    assert keys == [
        "ocpp.port",
        "chargers[0].max_a",
        "chargers[1].priorty",
        "export.unit_id",
        "lgo",
    ], lines
    assert all(line.startswith(f"error: {config}:") for line in lines)
    assert lines[-1].endswith("lgo: unknown key")
    # A failed [site] skips the chargers that depend on it; the rest is still checked.
    broken_site = write(tmp_path, text.replace("main_breaker_a = 25", "phases = 4"), "s.toml")
    lines = run_cli("check-config", str(broken_site)).stderr.strip().splitlines()
    assert [line.split(": ")[2] for line in lines] == [
        "site.phases",
        "ocpp.port",
        "export.unit_id",
        "lgo",
    ], lines
