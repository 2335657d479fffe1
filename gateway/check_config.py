"""`evse-gateway check-config FILE`: validate a config without starting anything."""

from __future__ import annotations

import argparse
import sys

from gateway.config import load_config
from gateway.tomlfile import TomlError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="the TOML config, e.g. /etc/evse-gateway/config.toml")


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file)
    except TomlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    site = config.site
    print(f"{args.file}: OK")
    print(
        f"  site: {site.phases}-phase, {site.main_breaker_a:g} A breaker, "
        f"distribution {site.distribution.value}"
    )
    for c in config.chargers:
        ch = c.charger
        print(
            f"  charger {ch.id}: {ch.mode.value}, {ch.min_a:g}-{ch.max_a:g} A, "
            f"{ch.phases}-phase, priority {ch.priority}"
        )
    return 0
