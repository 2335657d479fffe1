"""The `[export]` config section: the Modbus TCP server SCADA, inverters and HA read.

Port 1502 by default, not 502: the daemon runs as an unprivileged service user, and
binding below 1024 needs root or CAP_NET_BIND_SERVICE. Every Modbus client can be told
the port; installers who need 502 set `port = 502` and grant the capability.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from gateway.schema import SchemaError, Table, join

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class ExportConfig:
    enabled: bool = True
    host: str = "0.0.0.0"
    port: int = 1502
    unit_id: int = 1
    writes_enabled: bool = False
    # Empty: any client may write (when writes are enabled).
    allowed_clients: tuple[IPNetwork, ...] = ()
    override_timeout_s: float = 60.0
    # Bounded so a LAN flood cannot take the file descriptors OCPP chargers need.
    max_clients: int = 16
    # Silent connections (half-open ones included) are dropped after this.
    idle_timeout_s: float = 120.0


def _network(text: str, path: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise SchemaError(path, f"not an IP address or network: {text!r}") from None


def read_export(top: Table) -> ExportConfig:
    """Read `[export]` (optional: defaults when absent) and finish it."""
    t = top.table("export", None)
    if t is None:
        return ExportConfig()
    clients = t.strings("allowed_clients", ())
    config = ExportConfig(
        enabled=t.boolean("enabled", True),
        host=t.string("host", "0.0.0.0"),
        port=t.integer("port", 1502, lo=1, hi=65535),
        unit_id=t.integer("unit_id", 1, lo=1, hi=247),
        writes_enabled=t.boolean("writes_enabled", False),
        allowed_clients=tuple(
            _network(c, join(t.at("allowed_clients"), i)) for i, c in enumerate(clients)
        ),
        override_timeout_s=t.number("override_timeout_s", 60.0, lo=5, hi=3600),
        max_clients=t.integer("max_clients", 16, lo=1, hi=256),
        idle_timeout_s=t.number("idle_timeout_s", 120.0, lo=5, hi=3600),
    )
    t.finish()
    return config
