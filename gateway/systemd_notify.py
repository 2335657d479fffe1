"""Tell systemd how the daemon is doing: sd_notify(3) in a few lines, no libsystemd.

systemd passes a unix datagram socket in `$NOTIFY_SOCKET` (a path, or an abstract
socket written with a leading '@'). The unit is `Type=notify` with `WatchdogSec=`:
the daemon says READY=1 once it serves, WATCHDOG=1 after every healthy cycle (so a
hung cycle gets the service restarted), STATUS=... as a one-line summary that
`systemctl status` shows, and STOPPING=1 on shutdown. Outside systemd every call is a
cheap no-op, so the daemon never has to ask whether it runs under systemd.

A failed notification is logged once and never raised: the gateway must keep the
chargers inside the fuse even if systemd's socket misbehaves.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


def socket_address(value: str | None) -> str | bytes | None:
    """`$NOTIFY_SOCKET` -> an AF_UNIX address; '@name' is the abstract socket '\\0name'."""
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    # sd_notify also ignores anything else (e.g. vsock:, which a Pi never gets).
    return None


def watchdog_timeout(environ: Mapping[str, str] | None = None) -> float | None:
    """The watchdog timeout in seconds from `$WATCHDOG_USEC`, or None if no watchdog is on.

    Follows sd_watchdog_enabled(3): `$WATCHDOG_PID`, when set, must be this process,
    otherwise the setting was meant for a parent. Ping at least twice per timeout.
    """
    env = os.environ if environ is None else environ
    pid = env.get("WATCHDOG_PID")
    if pid and pid.strip() != str(os.getpid()):
        return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 1_000_000 if usec > 0 else None


class Notifier:
    """One datagram socket to systemd; every method returns whether the message went out."""

    def __init__(self, address: str | bytes | None) -> None:
        self.address = address
        self._sock: socket.socket | None = None
        self._failed = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        return cls(socket_address(env.get("NOTIFY_SOCKET")))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """Send `KEY=VALUE` fields as one datagram (systemd reads them as lines)."""
        if self.address is None:
            return False
        message = "\n".join(fields).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                # A full receive queue must not stall the cycle; the next ping will do.
                self._sock.setblocking(False)
            self._sock.sendto(message, self.address)
        except OSError as exc:
            if not self._failed:
                log.warning("systemd notification failed (%s): %s", self._describe(), exc)
                self._failed = True
            return False
        if self._failed:
            log.info("systemd notifications work again")
            self._failed = False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1", *self._status_field(status))

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def status(self, text: str) -> bool:
        return self.send(*self._status_field(text))

    def reloading(self) -> bool:
        return self.send("RELOADING=1")

    def stopping(self, status: str | None = None) -> bool:
        return self.send("STOPPING=1", *self._status_field(status))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _status_field(text: str | None) -> tuple[str, ...]:
        # systemd reads one field per line, so a status must stay on one line.
        return () if text is None else ("STATUS=" + " ".join(text.splitlines()),)

    def _describe(self) -> str:
        if isinstance(self.address, bytes):
            return "@" + self.address[1:].decode(errors="replace")
        return str(self.address)
