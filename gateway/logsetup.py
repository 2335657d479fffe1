"""Logging that reads well in `journalctl -u evse-gateway` and in a terminal.

One line per event, as `LEVEL logger: message`. Under systemd journald stamps every line
itself, so no timestamp is added there; when stderr is the journal's own stream, each line
also starts with its syslog priority (`<4>`), so `journalctl -p warning` filters by level
and warnings show in colour. In a terminal, lines start with the local time.

The level comes from `[log] level` in the config or `--log-level` on the command line
(the command line wins); "info" unless asked. The protocol libraries (pymodbus,
websockets, ocpp, asyncio) log every frame, so they only pass warnings unless named in
`[log] show_libraries`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TextIO

from gateway.schema import SchemaError, Table

LEVELS = ("debug", "info", "warning", "error")
LIBRARIES = ("pymodbus", "websockets", "ocpp", "asyncio")

# logging level -> syslog priority (sd-daemon(3) prefixes that journald understands)
_PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))

_installed: logging.Handler | None = None  # ours, so a second setup replaces it


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: str = "info"
    show_libraries: tuple[str, ...] = ()


def read_log(top: Table) -> LogConfig:
    """Read the optional `[log]` section and finish it."""
    t = top.table("log", None)
    if t is None:
        return LogConfig()
    config = LogConfig(
        level=t.choice("level", LEVELS, "info"),
        show_libraries=tuple(t.strings("show_libraries", ())),
    )
    for i, name in enumerate(config.show_libraries):
        if name not in LIBRARIES:
            raise SchemaError(
                f"{t.at('show_libraries')}[{i}]", f"must be one of {', '.join(LIBRARIES)}"
            )
    t.finish()
    return config


def add_log_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level",
        choices=LEVELS,
        help="override [log] level from the config (default: info)",
    )


def under_systemd(environ: Mapping[str, str]) -> bool:
    """Started by systemd (which sets both for every service): the journal adds timestamps."""
    return "INVOCATION_ID" in environ or "JOURNAL_STREAM" in environ


def is_journal_stream(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """Whether `stream` is the journal stream systemd connected (`$JOURNAL_STREAM` = dev:inode).

    Checking the inode, as systemd.exec(5) advises, tells a redirected stderr (to a file or
    a pipe) from the journal, so the `<N>` prefixes never end up in a file.
    """
    value = environ.get("JOURNAL_STREAM", "")
    try:
        device, inode = (int(part) for part in value.split(":"))
        info = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (info.st_dev, info.st_ino) == (device, inode)


class JournalFormatter(logging.Formatter):
    """Prefix every line of a record (a traceback too) with its syslog priority."""

    def format(self, record: logging.LogRecord) -> str:
        priority = next((p for level, p in _PRIORITIES if record.levelno >= level), 7)
        prefix = f"<{priority}>"
        return "\n".join(prefix + line for line in super().format(record).splitlines())


def setup_logging(
    level: str = "info",
    *,
    show_libraries: Sequence[str] = (),
    stream: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> logging.Handler:
    """Configure the root logger once for the daemon; calling it again replaces the setup."""
    if level not in LEVELS:
        raise ValueError(f"log level {level!r}: must be one of {', '.join(LEVELS)}")
    env = os.environ if environ is None else environ
    out = sys.stderr if stream is None else stream
    handler = logging.StreamHandler(out)
    body = "%(levelname)s %(name)s: %(message)s"
    if is_journal_stream(out, env):
        handler.setFormatter(JournalFormatter(body))
    elif under_systemd(env):
        handler.setFormatter(logging.Formatter(body))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s " + body, datefmt="%Y-%m-%d %H:%M:%S"))
    global _installed
    root = logging.getLogger()
    if _installed is not None:
        root.removeHandler(_installed)
    root.addHandler(handler)
    _installed = handler
    root.setLevel(level.upper())
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(
            logging.NOTSET if name in show_libraries else logging.WARNING
        )
    logging.captureWarnings(True)
    return handler
