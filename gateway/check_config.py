"""`evse-gateway check-config FILE`: validate a config without starting anything."""

from __future__ import annotations

import argparse
import sys

from gateway.config import describe, load_runnable_config
from gateway.tomlfile import TomlErrors


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="the TOML config, e.g. /etc/evse-gateway/config.toml")
    parser.add_argument(
        "--offline",
        action="store_true",
        help="desk check on another machine: serial ports need not exist, TLS files not load",
    )


def run(args: argparse.Namespace) -> int:
    try:
        config = load_runnable_config(args.file, args.offline)
    except TomlErrors as exc:  # every error of the file, one line each
        for error in exc.errors:
            print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{args.file}: OK")
    for line in describe(config):
        print(f"  {line}")
    return 0
