"""`evse-gateway check-config FILE`: validate a config without starting anything."""

from __future__ import annotations

import argparse
import sys

from gateway.config import describe, load_runnable_config
from gateway.tomlfile import TomlError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="the TOML config, e.g. /etc/evse-gateway/config.toml")


def run(args: argparse.Namespace) -> int:
    try:
        config = load_runnable_config(args.file)
    except TomlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.file}: OK")
    for line in describe(config):
        print(f"  {line}")
    return 0
