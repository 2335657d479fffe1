"""The `[ocpp]` section and the per-charger OCPP keys of `[[chargers]]` tables."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gateway.schema import SchemaError, Table

RATE_UNITS = ("auto", "A", "W")
PROFILE_KINDS = ("absolute", "relative")
PROTOCOLS = ("auto", "1.6", "2.0.1")


@dataclass(frozen=True, slots=True)
class ChargerOcpp:
    """How to talk to one charger; the defaults suit most chargers, the rest are quirks."""

    # HTTP Basic password (OCPP security profile 1); None = the charger may connect without.
    password: str | None = None
    # 1.6 connectorId / 2.0.1 evseId the profiles go to (some chargers only obey 0 or 1).
    connector: int = 1
    rate_unit: str = "auto"
    # Stack level of the dynamic profile; None = the charger's advertised maximum.
    # 0 puts both layers in one profile (see gateway.ocpp.profiles).
    stack_level: int | None = None
    profile_kind: str = "absolute"
    change_availability: bool = True
    # Limits are rounded down to a multiple of this (some chargers take whole amps only).
    limit_step_a: float = 0.1
    # Subprotocol to pick when the charger offers both.
    protocol: str = "auto"


@dataclass(frozen=True, slots=True)
class OcppConfig:
    host: str = "0.0.0.0"
    port: int = 9000
    tls_cert: str | None = None
    tls_key: str | None = None
    # Accept charge point ids not listed in [[chargers]]; they only get auto_accept_a.
    auto_accept: bool = False
    auto_accept_a: float = 6.0
    heartbeat_interval_s: int = 60
    meter_interval_s: int = 10
    # The dynamic profile is re-sent every refresh_s and lapses validity_s after it was sent.
    refresh_s: float = 30.0
    validity_s: float = 120.0
    # How long after connecting to wait for a BootNotification before setting up anyway.
    boot_wait_s: float = 5.0
    response_timeout_s: float = 10.0
    ping_interval_s: float = 30.0
    # Obedience: after grace_s, a draw or offer above the command + tolerance is a strike.
    obey_tolerance_a: float = 2.0
    obey_grace_s: float = 20.0
    obey_strikes: int = 3


def read_ocpp(top: Table) -> OcppConfig:
    """Read the optional `[ocpp]` section (absent = all defaults) and finish it."""
    t = top.table("ocpp", None)
    if t is None:
        return OcppConfig()
    d = OcppConfig()
    cfg = OcppConfig(
        host=t.string("host", d.host),
        port=t.integer("port", d.port, lo=0, hi=65535),
        tls_cert=t.string("tls_cert", None),
        tls_key=t.string("tls_key", None),
        auto_accept=t.boolean("auto_accept", d.auto_accept),
        auto_accept_a=t.number("auto_accept_a", d.auto_accept_a, lo=0),
        heartbeat_interval_s=t.integer("heartbeat_interval_s", d.heartbeat_interval_s, lo=1),
        meter_interval_s=t.integer("meter_interval_s", d.meter_interval_s, lo=1),
        refresh_s=t.number("refresh_s", d.refresh_s, lo=0.1),
        validity_s=t.number("validity_s", d.validity_s, lo=1),
        boot_wait_s=t.number("boot_wait_s", d.boot_wait_s, lo=0),
        response_timeout_s=t.number("response_timeout_s", d.response_timeout_s, lo=0.1),
        ping_interval_s=t.number("ping_interval_s", d.ping_interval_s, lo=1),
        obey_tolerance_a=t.number("obey_tolerance_a", d.obey_tolerance_a, lo=0),
        obey_grace_s=t.number("obey_grace_s", d.obey_grace_s, lo=0),
        obey_strikes=t.integer("obey_strikes", d.obey_strikes, lo=1),
    )
    if (cfg.tls_cert is None) != (cfg.tls_key is None):
        key = "tls_key" if cfg.tls_key is None else "tls_cert"
        raise SchemaError(t.at(key), "tls_cert and tls_key must be given together")
    for key in ("tls_cert", "tls_key"):
        name = getattr(cfg, key)
        if name is not None and not Path(name).is_file():
            raise SchemaError(t.at(key), f"no such file: {name}")
    # Two refreshes may get lost before the dynamic layer lapses.
    if cfg.validity_s < 2 * cfg.refresh_s:
        raise SchemaError(t.at("validity_s"), f"must be >= 2 x refresh_s ({cfg.refresh_s:g})")
    t.finish()
    return cfg


def read_charger_ocpp(t: Table) -> ChargerOcpp:
    """Read the OCPP keys of one `[[chargers]]` table (the caller finishes it)."""
    d = ChargerOcpp()
    return ChargerOcpp(
        password=t.string("password", None),
        connector=t.integer("connector", d.connector, lo=0, hi=1),
        rate_unit=t.choice("rate_unit", RATE_UNITS, d.rate_unit),
        stack_level=t.integer("stack_level", None, lo=0),
        profile_kind=t.choice("profile_kind", PROFILE_KINDS, d.profile_kind),
        change_availability=t.boolean("change_availability", d.change_availability),
        limit_step_a=t.number("limit_step_a", d.limit_step_a, lo=0.1, hi=10),
        protocol=t.choice("protocol", PROTOCOLS, d.protocol),
    )
