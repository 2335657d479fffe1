"""`evse-gateway COMMAND ...`: one table of commands, each in the module that owns it.

A command module provides `add_arguments(parser)` and `run(args) -> int`, and keeps its
heavy imports (pymodbus, websockets) inside `run`, so every command starts fast on a Pi;
a command run imports no other command's module.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from gateway import __version__

PROG = "evse-gateway"
# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "allocate": ("gateway.allocation.command", "one-shot allocation: snapshot JSON in, JSON out"),
    "run": ("gateway.daemon", "run the gateway (the systemd service runs this)"),
    "demo": ("gateway.sim.demo_command", "the gateway against a simulated site on 127.0.0.1"),
    "check-config": ("gateway.check_config", "validate a config file without starting anything"),
    "simulate": ("gateway.sim.command", "simulate a day of control from a scenario file"),
    "registers": ("gateway.export.registers_command", "print the Modbus register map"),
    "status": ("gateway.export.status_command", "read a running gateway's registers"),
    "probe": ("gateway.meters.probe", "find meters and inverters on a serial port or host"),
    "sessions": ("gateway.sessionlog", "print the charging session log"),
    "passwd": ("gateway.web.auth", "set the owner's password (or make a token) for the web page"),
    "settings": ("gateway.web.settings_command", "read or change a running gateway's settings"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Every command's parser, or (`only`) that command's alone: a command run imports
    only its own module and builds only its own parser, and `--help` has them all."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Keeps a site's EV chargers inside the fuse and on solar.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        if only is None or only == name:
            command = sub.add_parser(name, help=help_text, description=help_text)
            command.set_defaults(_module=module)
            importlib.import_module(module).add_arguments(command)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    only = argv[0] if argv and argv[0] in COMMANDS else None
    args = build_parser(only).parse_args(argv)
    try:
        return int(importlib.import_module(args._module).run(args))
    except Exception as exc:
        # The error classes are imported only once something failed (whatever raised
        # one has imported its module): a command that reads no TOML, `allocate`, does
        # not load tomllib and the schema to start.
        from gateway.schema import SchemaError
        from gateway.tomlfile import TomlError

        if not isinstance(exc, TomlError | SchemaError):
            raise
        # Bad input anywhere: one line naming file, line and key (or the field), exit 2.
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
