"""`evse-gateway check-config FILE`: validate a config without starting anything."""

from __future__ import annotations

import argparse

from gateway.config import describe, load_runnable_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="the TOML config, e.g. /etc/evse-gateway/config.toml")
    parser.add_argument(
        "--offline",
        action="store_true",
        help="desk check on another machine: serial ports need not exist, TLS files not load",
    )


def run(args: argparse.Namespace) -> int:
    config = load_runnable_config(args.file, args.offline)
    print(f"{args.file}: OK")
    for line in describe(config):
        print(f"  {line}")
    return 0
