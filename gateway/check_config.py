"""`evse-gateway check-config FILE`: validate a config without starting anything."""

from __future__ import annotations

import argparse

from gateway.config import describe, load_runnable_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="the TOML config, e.g. /etc/evse-gateway/config.toml")


def run(args: argparse.Namespace) -> int:
    config = load_runnable_config(args.file)
    print(f"{args.file}: OK")
    for line in describe(config):
        print(f"  {line}")
    return 0
