"""Print the unit drop-in that lets evse-gateway listen below port 1024, if its config does.

install.sh writes the output to evse-gateway.service.d/low-port.conf, or removes that file
when nothing is printed. The service otherwise runs with no capabilities at all; only a
server port below 1024 (Modbus TCP's usual 502, or 443 for OCPP over TLS) needs
CAP_NET_BIND_SERVICE. Ports the gateway connects to (a meter's `port = 502`) need nothing.

Reads the TOML directly (install.sh has already run check-config), so it needs no imports
from the package. Usage: python low_port_dropin.py CONFIG.toml
"""

from __future__ import annotations

import sys
import tomllib
from typing import Any

# The config sections that run a server, and their defaults (gateway/export, gateway/ocpp).
LISTENERS = {"export": 1502, "ocpp": 9000}

DROPIN = """\
# Written by install.sh: the config listens below port 1024 ({ports}).
# Rerun install.sh after changing the ports, so this follows.
[Service]
CapabilityBoundingSet=CAP_NET_BIND_SERVICE
AmbientCapabilities=CAP_NET_BIND_SERVICE
"""


def low_ports(config: dict[str, Any]) -> list[str]:
    """`section.port=N` for every server the config runs below port 1024."""
    found = []
    for section, default in LISTENERS.items():
        table = config.get(section, {})
        port = table.get("port", default)
        if table.get("enabled", True) and 0 < port < 1024:
            found.append(f"{section}.port={port}")
    return found


def main(argv: list[str]) -> int:
    with open(argv[1], "rb") as f:
        ports = low_ports(tomllib.load(f))
    if ports:
        sys.stdout.write(DROPIN.format(ports=", ".join(ports)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
