"""The `[[meters]]` sections of the daemon config -> `MeterConfig` (no I/O beyond checks).

Devices that name the same serial port or the same host:port share one bus, so they must
agree on the line settings; the reader says which key disagrees.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from gateway.meters.profile import Profile, builtin, builtin_names, load_profile
from gateway.meters.quantities import ROLES
from gateway.schema import SchemaError, Table
from gateway.tomlfile import TomlError

TRANSPORTS = ("tcp", "rtu-over-tcp")
PARITIES = ("N", "E", "O")


@dataclass(frozen=True, slots=True)
class Connection:
    transport: str  # "rtu", "tcp" or "rtu-over-tcp"
    device: str = ""  # serial port path (rtu)
    host: str = ""
    port: int = 502
    baud: int = 9600
    parity: str = "N"
    stopbits: int = 1
    bytesize: int = 8

    @property
    def key(self) -> tuple:
        """Devices with the same key share one bus owner."""
        if self.transport == "rtu":
            return ("rtu", self.device)
        return (self.transport, self.host, self.port)

    def describe(self) -> str:
        if self.transport == "rtu":
            return f"{self.device} {self.baud} {self.bytesize}{self.parity}{self.stopbits}"
        return f"{self.transport}://{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class MeterConfig:
    name: str
    model: str
    profile: Profile
    role: str
    connection: Connection
    unit_id: int
    charger: str | None = None
    interval_s: float = 1.0
    timeout_s: float = 0.5
    retries: int = 1
    gap_s: float = 0.0
    max_registers: int = 125
    invert: bool = False
    control: bool = False  # the gateway may write the profile's battery control (the hold)


def builtin_meter(
    name: str,
    model: str,
    role: str,
    connection: Connection,
    unit_id: int | None = None,
    **options,
) -> MeterConfig:
    """A meter on a built-in profile with that profile's defaults (probe, bench, tests)."""
    profile = builtin(model)
    options.setdefault("gap_s", profile.gap_s)
    options.setdefault("max_registers", profile.max_registers)
    return MeterConfig(
        name=name,
        model=model,
        profile=profile,
        role=role,
        connection=connection,
        unit_id=profile.unit_id if unit_id is None else unit_id,
        **options,
    )


def _read_profile(t: Table, base_dir: Path) -> tuple[str, Profile]:
    if t.has("model") == t.has("profile_file"):
        raise SchemaError(t.at("model"), "give exactly one of model or profile_file")
    if t.has("model"):
        name = t.choice("model", builtin_names())
        return name, builtin(name)
    path = base_dir / t.string("profile_file")
    try:
        return str(path), load_profile(path)
    except TomlError as exc:
        raise SchemaError(t.at("profile_file"), f"bad profile: {exc}") from exc


def _with_port(host: str) -> bool:
    """True for "192.168.1.60:502" or "meter.local:502" (an IPv6 address has colons)."""
    _, colon, port = host.rpartition(":")
    if not colon or not port.isdigit():
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return True
    return False


def read_connection(t: Table) -> Connection:
    if t.has("host"):
        host = t.string("host")
        if _with_port(host):
            raise SchemaError(t.at("host"), f"{host!r} has a port: write it as port = N")
        transport = t.choice("transport", TRANSPORTS, "tcp")
        return Connection(transport, host=host, port=t.integer("port", 502, lo=1, hi=65535))
    if t.has("transport"):
        raise SchemaError(t.at("transport"), "only with host (a serial port is always RTU)")
    # Whether the serial port exists is a question about this machine, asked before
    # running (gateway.config.check_runnable), so a config can be desk-checked elsewhere.
    device = t.string("port")
    return Connection(
        "rtu",
        device=device,
        baud=t.integer("baud", 9600, lo=1200, hi=921600),
        parity=t.choice("parity", PARITIES, "N"),
        stopbits=t.integer("stopbits", 1, lo=1, hi=2),
        bytesize=t.integer("bytesize", 8, lo=7, hi=8),
    )


def read_meter(t: Table, base_dir: Path) -> MeterConfig:
    name = t.string("name")
    model, profile = _read_profile(t, base_dir)
    role = t.choice("role", ROLES)
    if role not in profile.roles():
        raise SchemaError(t.at("role"), f"model {model} offers only {', '.join(profile.roles())}")
    charger = t.string("charger") if role == "charger" else None
    if role != "charger" and t.has("charger"):
        raise SchemaError(t.at("charger"), 'only for role = "charger"')
    connection = read_connection(t)
    interval = t.number("interval_s", 1.0, lo=0.05, hi=3600)
    return MeterConfig(
        name=name,
        model=model,
        profile=profile,
        role=role,
        connection=connection,
        unit_id=t.integer("unit_id", profile.unit_id, lo=0, hi=255),
        charger=charger,
        interval_s=interval,
        timeout_s=t.number("timeout_s", 0.5, lo=0.05, hi=10),
        retries=t.integer("retries", 1, lo=0, hi=5),
        gap_s=t.number("gap_s", profile.gap_s, lo=0, hi=10),
        max_registers=t.integer(
            "max_registers", profile.max_registers, lo=4, hi=profile.max_registers
        ),
        invert=t.boolean("invert", False),
        control=_read_control(t, model, profile, role),
    )


def _read_control(t: Table, model: str, profile: Profile, role: str) -> bool:
    if not t.boolean("control", False):
        return False
    if role != "battery":
        raise SchemaError(t.at("control"), 'only for role = "battery"')
    if profile.control is None:
        raise SchemaError(t.at("control"), f"model {model} has no writable battery control")
    return True


def read_meters(
    top: Table, config_path: str, charger_ids: tuple[str, ...]
) -> tuple[MeterConfig, ...]:
    base_dir = Path(config_path).parent
    meters: tuple[MeterConfig, ...] = top.each("meters", lambda t: read_meter(t, base_dir), ())
    seen_names: set[str] = set()
    buses: dict[tuple, Connection] = {}
    for i, m in enumerate(meters):
        at = f"meters[{i}]"
        if m.name in seen_names:
            raise SchemaError(f"{at}.name", f"duplicate meter name {m.name!r}")
        seen_names.add(m.name)
        if m.charger is not None and m.charger not in charger_ids:
            raise SchemaError(f"{at}.charger", f"no charger with id {m.charger!r}")
        if m.control and any(o.control for o in meters[:i]):
            raise SchemaError(f"{at}.control", "only one battery can be held")
        first = buses.setdefault(m.connection.key, m.connection)
        for key in ("baud", "parity", "stopbits", "bytesize"):
            if getattr(first, key) != getattr(m.connection, key):
                raise SchemaError(
                    f"{at}.{key}", f"differs from another meter on {m.connection.device}"
                )
    return meters
