"""`evse-gateway registers [--format md|csv]`: print the Modbus register map."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        choices=("md", "csv"),
        default="md",
        help="md: the documentation (docs/registers.md); csv: the map file itself",
    )


def run(args: argparse.Namespace) -> int:
    from gateway.export.mapdoc import to_markdown
    from gateway.export.regmap import load_map

    regmap = load_map()
    sys.stdout.write(regmap.source if args.format == "csv" else to_markdown(regmap))
    return 0
