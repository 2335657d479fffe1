"""`evse-gateway allocate SNAPSHOT.json|-`: the one-shot what-if contract."""

from __future__ import annotations

import argparse
import json
import sys

from gateway.allocation.allocator import allocate
from gateway.allocation.snapshot import allocation_to_json, read_snapshot


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("snapshot", help="snapshot JSON file, or - for standard input")
    parser.add_argument("--indent", type=int, default=2, help="JSON indent (0: one line)")


def run(args: argparse.Namespace) -> int:
    name = "stdin" if args.snapshot == "-" else args.snapshot
    try:
        if args.snapshot == "-":
            text = sys.stdin.read()
        else:
            with open(args.snapshot, encoding="utf-8") as f:
                text = f.read()
    except OSError as exc:
        print(f"error: {name}: cannot read: {exc.strerror or exc}", file=sys.stderr)
        return 2
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        print(f"error: {name}:{exc.lineno}: not valid JSON: {exc.msg}", file=sys.stderr)
        return 2
    result = allocation_to_json(allocate(read_snapshot(data)))
    print(json.dumps(result, indent=args.indent or None))
    return 0
