"""Print the unit drop-in that lets evse-gateway listen below port 1024, if its config does.

install.sh writes the output to evse-gateway.service.d/low-port.conf, or removes that file
when nothing is printed. The service otherwise runs with no capabilities at all; only
ports below 1024 (Modbus TCP's usual 502) need CAP_NET_BIND_SERVICE.

Any key named `port` or ending in `_port` counts, wherever it sits, so this keeps working
as sections are added to the config. Usage: python low_port_dropin.py CONFIG.toml
"""

from __future__ import annotations

import sys
import tomllib
from collections.abc import Iterator
from typing import Any

DROPIN = """\
# Written by install.sh: the config listens below port 1024 ({ports}).
# Rerun install.sh after changing the ports, so this follows.
[Service]
CapabilityBoundingSet=CAP_NET_BIND_SERVICE
AmbientCapabilities=CAP_NET_BIND_SERVICE
"""


def low_ports(node: Any, path: str = "", key: str = "") -> Iterator[str]:
    """`path=port` for every port key below 1024 in a parsed TOML document."""
    if isinstance(node, dict):
        for k, value in node.items():
            yield from low_ports(value, f"{path}.{k}" if path else k, k)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from low_ports(item, f"{path}[{i}]", key)
    elif (key == "port" or key.endswith("_port")) and type(node) is int and 0 < node < 1024:
        yield f"{path}={node}"


def main(argv: list[str]) -> int:
    with open(argv[1], "rb") as f:
        ports = list(low_ports(tomllib.load(f)))
    if ports:
        sys.stdout.write(DROPIN.format(ports=", ".join(ports)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
