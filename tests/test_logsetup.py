"""Log lines for journald and for a terminal; the level and the chatty libraries."""

from __future__ import annotations

import argparse
import io
import logging
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import logsetup
from gateway.config import load_config
from gateway.logsetup import LIBRARIES, LogConfig, add_log_arguments, setup_logging
from gateway.tomlfile import TomlError

ROOT = Path(__file__).resolve().parent.parent
SITE = '[site]\nmain_breaker_a = 25\n\n[[chargers]]\nid = "garage"\n'


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    libraries = {name: logging.getLogger(name).level for name in LIBRARIES}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, lib_level in libraries.items():
        logging.getLogger(name).setLevel(lib_level)
    logsetup._installed = None
    logging.captureWarnings(False)


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_terminal_lines_carry_the_time():
    out = io.StringIO()
    setup_logging(stream=out, environ={})
    logging.getLogger("gateway.ocpp").info("charger garage connected (OCPP 1.6J)")
    (line,) = lines(out)
    stamp, event = line[:19], line[20:]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", stamp)
    assert event == "INFO gateway.ocpp: charger garage connected (OCPP 1.6J)"


@pytest.mark.parametrize("env", [{"INVOCATION_ID": "abc"}, {"JOURNAL_STREAM": "1:2"}])
def test_under_systemd_journald_adds_the_time(env):
    # stderr redirected to a file by the unit (JOURNAL_STREAM not matching): no <N> either.
    out = io.StringIO()
    setup_logging(stream=out, environ=env)
    logging.getLogger("gateway.meters").warning("meter grid lost: no answer for 5 s")
    assert lines(out) == ["WARNING gateway.meters: meter grid lost: no answer for 5 s"]


def test_on_the_journal_stream_every_line_has_its_priority():
    """As systemd runs it: stderr is a unix stream socket named by $JOURNAL_STREAM."""
    journal, service_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    info = os.fstat(service_end.fileno())
    code = (
        "import logging\n"
        "from gateway.logsetup import setup_logging\n"
        "setup_logging()\n"
        "log = logging.getLogger('gateway.hub')\n"
        "log.info('limit garage 16 -> 10 A: household load')\n"
        "log.debug('not asked for')\n"
        "try:\n"
        "    1 / 0\n"
        "except ZeroDivisionError:\n"
        "    log.exception('cycle failed')\n"
    )
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        INVOCATION_ID="0123",
        JOURNAL_STREAM=f"{info.st_dev}:{info.st_ino}",
    )
    with journal, service_end:
        child = subprocess.run(
            [sys.executable, "-c", code], stderr=service_end, env=env, timeout=30, check=True
        )
        assert child.returncode == 0
        service_end.close()
        received = b""
        while chunk := journal.recv(65536):
            received += chunk
    got = received.decode().splitlines()
    assert got[0] == "<6>INFO gateway.hub: limit garage 16 -> 10 A: household load"
    assert got[1] == "<3>ERROR gateway.hub: cycle failed"
    assert got[2] == "<3>Traceback (most recent call last):"
    assert got[-1] == "<3>ZeroDivisionError: division by zero"
    assert all(line.startswith("<3>") for line in got[1:])


def test_debug_only_when_asked():
    out = io.StringIO()
    setup_logging("info", stream=out, environ={"INVOCATION_ID": "x"})
    logging.getLogger("gateway.hub").debug("allocation inputs ...")
    assert lines(out) == []
    setup_logging("debug", stream=out, environ={"INVOCATION_ID": "x"})
    logging.getLogger("gateway.hub").debug("allocation inputs ...")
    # Set up twice: still one handler, so one line per event.
    assert lines(out) == ["DEBUG gateway.hub: allocation inputs ..."]


def test_protocol_libraries_pass_only_warnings_unless_named():
    out = io.StringIO()
    setup_logging("debug", stream=out, environ={"INVOCATION_ID": "x"})
    logging.getLogger("ocpp").info("send [2, ...]")
    logging.getLogger("pymodbus.logging").debug("frame 01 04 ...")
    logging.getLogger("websockets.server").warning("connection rejected")
    assert lines(out) == ["WARNING websockets.server: connection rejected"]

    out = io.StringIO()
    setup_logging("info", show_libraries=["ocpp"], stream=out, environ={"INVOCATION_ID": "x"})
    logging.getLogger("ocpp").info("send [2, ...]")
    logging.getLogger("ocpp").debug("below the chosen level")
    assert lines(out) == ["INFO ocpp: send [2, ...]"]


def test_a_wrong_level_is_refused():
    with pytest.raises(ValueError, match="must be one of debug, info, warning, error"):
        setup_logging("verbose", stream=io.StringIO(), environ={})


def test_log_section_in_the_config(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(SITE)
    assert load_config(path).log == LogConfig()
    path.write_text(SITE + '\n[log]\nlevel = "debug"\nshow_libraries = ["ocpp", "pymodbus"]\n')
    assert load_config(path).log == LogConfig("debug", ("ocpp", "pymodbus"))


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ('level = "verbose"', ":8: log.level: must be one of"),
        ('show_libraries = ["ocpp", "requests"]', ":8: log.show_libraries[1]: must be one of"),
        ("colour = true", ":8: log.colour: unknown key"),
    ],
)
def test_log_section_errors_name_line_and_key(tmp_path, section, message):
    path = tmp_path / "config.toml"
    path.write_text(SITE + "\n[log]\n" + section + "\n")
    with pytest.raises(TomlError) as caught:
        load_config(path)
    assert message in str(caught.value)


def test_check_config_reports_a_bad_level(tmp_path, cli):
    path = tmp_path / "config.toml"
    path.write_text(SITE + '\n[log]\nlevel = "loud"\n')
    result = cli("check-config", str(path))
    assert result.returncode == 2
    assert f"{path}:8: log.level" in result.stderr


def test_log_level_argument():
    parser = argparse.ArgumentParser()
    add_log_arguments(parser)
    assert parser.parse_args([]).log_level is None
    assert parser.parse_args(["--log-level", "debug"]).log_level == "debug"
    with pytest.raises(SystemExit):
        parser.parse_args(["--log-level", "loud"])
