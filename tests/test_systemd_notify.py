"""sd_notify over a real unix datagram socket, as systemd would listen on it."""

from __future__ import annotations

import logging
import os
import socket
import struct
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.systemd_notify import Notifier, socket_address, watchdog_timeout

ROOT = Path(__file__).resolve().parent.parent


def _receiver(address: str | bytes) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    # Like systemd: ask the kernel for the sender's pid, which NotifyAccess=main checks.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    sock.settimeout(5)
    return sock


def _receive(sock: socket.socket) -> tuple[str, int]:
    """One datagram and its sender's pid."""
    data, ancillary, _flags, _addr = sock.recvmsg(4096, socket.CMSG_SPACE(12))
    pids = [
        struct.unpack("3i", cdata[:12])[0]
        for level, kind, cdata in ancillary
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS
    ]
    return data.decode(), pids[0]


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # AF_UNIX paths are limited to 108 bytes: pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="sdn-", dir="/tmp") as d:
        yield Path(d)


@pytest.fixture
def path_socket(short_dir: Path) -> Iterator[tuple[str, socket.socket]]:
    path = str(short_dir / "notify")
    with _receiver(path) as sock:
        yield path, sock


@pytest.fixture
def abstract_socket() -> Iterator[tuple[str, socket.socket]]:
    name = f"evse-gateway-test-{uuid.uuid4().hex}"
    with _receiver(b"\0" + name.encode()) as sock:
        yield "@" + name, sock


def test_ready_and_watchdog_reach_a_path_socket(path_socket):
    env_value, sock = path_socket
    with Notifier.from_environment({"NOTIFY_SOCKET": env_value}) as notifier:
        assert notifier.enabled
        assert notifier.ready("3 chargers, meter ok")
        assert _receive(sock) == ("READY=1\nSTATUS=3 chargers, meter ok", os.getpid())
        assert notifier.watchdog()
        assert _receive(sock)[0] == "WATCHDOG=1"


def test_abstract_socket_written_with_at(abstract_socket):
    env_value, sock = abstract_socket
    with Notifier.from_environment({"NOTIFY_SOCKET": env_value}) as notifier:
        assert notifier.watchdog()
        assert _receive(sock)[0] == "WATCHDOG=1"
        assert notifier.stopping("SIGTERM: chargers keep their failsafe")
        assert _receive(sock)[0] == "STOPPING=1\nSTATUS=SIGTERM: chargers keep their failsafe"
        assert notifier.reloading()
        assert _receive(sock)[0] == "RELOADING=1"


def test_status_stays_on_one_line(path_socket):
    env_value, sock = path_socket
    with Notifier(env_value) as notifier:
        notifier.status("meter lost\nfailsafe on")
        assert _receive(sock)[0] == "STATUS=meter lost failsafe on"


def test_a_child_process_notifies_as_itself(path_socket):
    # What systemd sees with NotifyAccess=main: the datagram comes from the daemon's pid.
    env_value, sock = path_socket
    code = "from gateway.systemd_notify import Notifier; Notifier.from_environment().watchdog()"
    env = dict(os.environ, NOTIFY_SOCKET=env_value, PYTHONPATH=str(ROOT))
    child = subprocess.Popen([sys.executable, "-c", code], env=env)
    assert child.wait(timeout=30) == 0
    assert _receive(sock) == ("WATCHDOG=1", child.pid)


def test_without_notify_socket_nothing_is_sent():
    notifier = Notifier.from_environment({})
    assert not notifier.enabled
    assert not notifier.ready()
    assert not notifier.watchdog()


@pytest.mark.parametrize(
    ("value", "address"),
    [
        ("/run/systemd/notify", "/run/systemd/notify"),
        ("@abc", b"\0abc"),
        ("", None),
        (None, None),
        ("vsock:2:1234", None),
    ],
)
def test_socket_address(value, address):
    assert socket_address(value) == address


def test_a_missing_listener_is_logged_once_and_recovers(short_dir, caplog):
    path = str(short_dir / "later")
    notifier = Notifier(path)
    with caplog.at_level(logging.INFO, logger="gateway.systemd_notify"):
        assert not notifier.watchdog()
        assert not notifier.watchdog()
        failures = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(failures) == 1
        assert path in failures[0].getMessage()
        with _receiver(path) as sock:
            assert notifier.watchdog()
            assert _receive(sock)[0] == "WATCHDOG=1"
        assert caplog.records[-1].getMessage() == "systemd notifications work again"
    notifier.close()


@pytest.mark.parametrize(
    ("env", "seconds"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "1500000", "WATCHDOG_PID": str(os.getpid())}, 1.5),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_timeout(env, seconds):
    assert watchdog_timeout(env) == seconds
