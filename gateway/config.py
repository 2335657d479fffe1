"""The gateway's TOML config -> frozen dataclasses.

Each area reads its own section with the `Table` reader (`gateway.schema`), so an error
anywhere names the file, the line and the key (`gateway.tomlfile`).
"""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from gateway.allocation.allocator import wired_lines
from gateway.allocation.snapshot import check_chargers, read_charger_settings, read_site
from gateway.allocation.timing import ControlSettings, Timing, read_control, read_timing
from gateway.export.config import ExportConfig, read_export
from gateway.logsetup import LogConfig, read_log
from gateway.meters.config import MeterConfig, read_meters
from gateway.model import PHASE_NAMES, Charger, Site
from gateway.mqtt.config import MqttConfig, read_mqtt
from gateway.ocpp.config import ChargerOcpp, OcppConfig, read_charger_ocpp, read_ocpp
from gateway.ocpp.profiles import wire_limit
from gateway.schema import SchemaError, SchemaErrors, Table
from gateway.tomlfile import TomlError, error_at, read_toml
from gateway.web.config import StateConfig, WebConfig, read_state, read_web

MAX_CHARGERS = 500

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ChargerConfig:
    charger: Charger
    # The current a charger falls back to when the gateway is gone or its data is stale
    # (the OCPP low-stack profile and the controller's stale-data failsafe share it).
    failsafe_a: float
    ocpp: ChargerOcpp = field(default_factory=ChargerOcpp)
    # The controller's timing for this charger: `[control]` with this entry's overrides.
    timing: Timing = field(default_factory=Timing)
    # 1-phase/3-phase switching by the controller (`gateway/allocation/phases.py`).
    phase_switching: bool = False

    @property
    def id(self) -> str:
        return self.charger.id


@dataclass(frozen=True, slots=True)
class Config:
    path: str
    site: Site
    chargers: tuple[ChargerConfig, ...]
    control: ControlSettings = field(default_factory=ControlSettings)
    export: ExportConfig = field(default_factory=ExportConfig)
    log: LogConfig = field(default_factory=LogConfig)
    ocpp: OcppConfig = field(default_factory=OcppConfig)
    meters: tuple[MeterConfig, ...] = ()
    web: WebConfig = field(default_factory=WebConfig)
    state: StateConfig = field(default_factory=StateConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)


def read_charger_config(t: Table, site: Site, control: ControlSettings) -> ChargerConfig:
    """One `[[chargers]]` entry (the simulator's scenarios read the same keys)."""
    charger = read_charger_settings(t, site)
    failsafe = t.number("failsafe_a", charger.min_a, lo=0, hi=charger.max_a)
    if 0 < failsafe < charger.min_a:
        raise SchemaError(t.at("failsafe_a"), f"must be 0 or >= min_a ({charger.min_a:g})")
    switching = t.boolean("phase_switching", False)
    if switching and min(charger.phases, site.phases, len(charger.phase_map)) != 3:
        raise SchemaError(t.at("phase_switching"), "needs a 3-phase charger on a 3-phase site")
    return ChargerConfig(
        charger=charger,
        failsafe_a=failsafe,
        ocpp=read_charger_ocpp(t),
        timing=read_timing(t, control.timing),
        phase_switching=switching,
    )


# What the house is assumed to draw per phase when every charger sits at its failsafe
# current (no gateway, or stale data): the failsafe currents must fit beside it.
HOUSEHOLD_RESERVE_A = 6.0


def _check_failsafe_fit(
    chargers: tuple[ChargerConfig, ...], site: Site, reserve: float, reserve_at: str
) -> None:
    load = dict.fromkeys(PHASE_NAMES[: site.phases], 0.0)
    for c in chargers:
        for k in range(wired_lines(c.charger, site.phases)):
            load[c.charger.phase_map[k]] += c.failsafe_a
    for phase, amps in load.items():
        if amps + reserve > site.main_breaker_a + 1e-9:
            raise SchemaError(
                reserve_at,
                f"the chargers' failsafe_a put {amps:g} A on phase {phase}; with this"
                f" household reserve ({reserve:g} A) that is over site.main_breaker_a"
                f" ({site.main_breaker_a:g} A): lower chargers[].failsafe_a",
            )


def _site_and_reserve(t: Table) -> tuple[Site, float, str]:
    site = read_site(t)
    reserve = t.number("household_reserve_a", HOUSEHOLD_RESERVE_A, lo=0, hi=site.main_breaker_a)
    return site, reserve, t.at("household_reserve_a")


def read_config(top: Table, path: str) -> Config:
    """Every section is read even after one fails, so one run names every error (sections
    that depend on a failed one, chargers on the site, are skipped)."""
    errors: list[SchemaError] = []

    def part(read: Callable[[], T]) -> T | None:
        try:
            return read()
        except SchemaError as exc:
            errors.append(exc)
            return None

    site_and_reserve = part(lambda: _finished(top.table("site"), _site_and_reserve))
    site = site_and_reserve[0] if site_and_reserve is not None else None
    control = part(lambda: read_control(top))
    tables = part(lambda: top.tables("chargers", [])) or []
    chargers: tuple[ChargerConfig, ...] = ()
    if site is not None and control is not None:
        read = [
            part(lambda t=t: _finished(t, lambda t: read_charger_config(t, site, control)))
            for t in tables
        ]
        chargers = tuple(c for c in read if c is not None)
        if len(chargers) == len(tables):
            part(lambda: check_chargers(tuple(c.charger for c in chargers), site, "chargers"))
            assert site_and_reserve is not None
            part(lambda: _check_failsafe_fit(chargers, *site_and_reserve))
    if len(tables) > MAX_CHARGERS:
        errors.append(
            SchemaError("chargers", f"at most {MAX_CHARGERS} (the register map's blocks)")
        )
    ids = tuple(str(t.data.get("id")) for t in tables)
    meters = part(lambda: read_meters(top, path, ids))
    if site is not None and site.battery is not None and any(m.control for m in meters or ()):
        site = site._replace(battery=site.battery._replace(held=True))
    if control is not None and control.stale_after_s < 2 * control.cycle_s:
        errors.append(
            SchemaError("control.stale_after_s", "must be at least twice control.cycle_s")
        )
    export = part(lambda: read_export(top))
    log = part(lambda: read_log(top))
    ocpp = part(lambda: read_ocpp(top))
    web = part(lambda: read_web(top))
    state = part(lambda: read_state(top))
    mqtt = part(lambda: read_mqtt(top))
    part(top.finish)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise SchemaErrors(errors)
    assert site and control and meters is not None and export and log and ocpp
    assert web and state and mqtt
    return Config(
        path=path,
        site=site,
        chargers=chargers,
        control=control,
        meters=meters,
        export=export,
        log=log,
        ocpp=ocpp,
        web=web,
        state=state,
        mqtt=mqtt,
    )


def _finished(t: Table, read: Callable[[Table], T]) -> T:
    value = read(t)
    t.finish()
    return value


def describe(
    config: Config, ocpp_port: int | None = None, export_port: int | None = None
) -> list[str]:
    """What a config sets up, one line per part (check-config and the daemon's start)."""
    site = config.site
    scheme = "wss" if config.ocpp.tls_cert else "ws"
    lines = [
        f"site: {site.phases}-phase, {site.main_breaker_a:g} A breaker"
        + (f", import cap {site.max_import_w:g} W" if site.max_import_w is not None else "")
        + f", distribution {site.distribution.value}, cycle {config.control.cycle_s:g} s"
    ]
    lines += [
        f"meter {m.name}: {m.role} ({m.model}) on {m.connection.describe()} unit {m.unit_id}"
        + (", battery hold (control = true)" if m.control else "")
        for m in config.meters
    ]
    port = config.ocpp.port if ocpp_port is None else ocpp_port
    host, listening = config.ocpp.host, ""
    if host in ("0.0.0.0", "::"):
        # What the installer types into the charger, not the wildcard it listens on.
        host, listening = this_machine_address(), f" (listening on {host}:{port})"
    lines.append(
        f"OCPP: {scheme}://{host}:{port}/<charger id>{listening}; the id is case-sensitive"
        " and is the Basic-auth user name"
    )
    export = config.export
    if export.enabled:
        lines.append(
            f"Modbus TCP registers: {export.host}:"
            f"{export.port if export_port is None else export_port} unit {export.unit_id}, "
            f"writes {'enabled' if export.writes_enabled else 'disabled'}"
        )
    for c in config.chargers:
        ch = c.charger
        lines.append(
            f"charger {ch.id}: {ch.mode.value}, {ch.min_a:g}-{ch.max_a:g} A, "
            f"{ch.phases}-phase on {ch.phase_map}, priority {ch.priority}, "
            f"failsafe {c.failsafe_a:g} A" + _failsafe_watts(c, site.voltage_v)
        )
    return lines


def _failsafe_watts(c: ChargerConfig, volts: float) -> str:
    """What a W-only charger's failsafe layer holds (gateway.ocpp.profiles.base_layer)."""
    if c.ocpp.rate_unit != "W":
        return ""
    watts = wire_limit(c.failsafe_a, "W", c.ocpp.limit_step_a, volts, c.charger.phases)
    return f" = {watts:g} W ({c.charger.phases} x {volts:g} V)"


def this_machine_address() -> str:
    """The IPv4 address other hosts on the LAN reach this machine at (its default route's
    source); the host name when there is no route."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET: a UDP connect sends nothing
            return str(s.getsockname()[0])
        except OSError:
            return socket.gethostname()


def load_config(path: str | Path) -> Config:
    """Load and validate a config file; raises `TomlError` naming file, line and key."""
    return read_toml(path, lambda top: read_config(top, str(path)))


def load_runnable_config(path: str | Path, offline: bool = False) -> Config:
    """A config the daemon can run: valid, one grid meter (the fuse's eye), no placeholder
    passwords, no two servers on one port; on this machine (unless `offline`: a desk
    check elsewhere) its serial ports exist and its TLS files load."""
    config = load_config(path)
    grids = [m.name for m in config.meters if m.role == "grid"]
    if len(grids) != 1:
        found = "none" if not grids else ", ".join(grids)
        raise TomlError(
            str(path),
            None,
            "meters",
            f'needs exactly one meter with role = "grid" to protect the fuse (found {found})',
        )
    try:
        check_runnable(config, offline)
    except SchemaError as exc:
        raise error_at(path, exc) from exc
    return config


# The example config's placeholder passwords: running with them would let anyone who
# read the example connect as a charger.
PLACEHOLDER = "change-me"


def check_runnable(config: Config, offline: bool) -> None:
    """What a well-formed config may still get wrong for running (on this machine)."""
    for i, m in enumerate(config.meters):
        device = m.connection.device
        if m.connection.transport == "rtu" and not offline and not os.path.exists(device):
            raise SchemaError(f"meters[{i}].port", f"serial port {device} does not exist")
    for i, c in enumerate(config.chargers):
        if c.ocpp.password is not None and c.ocpp.password.startswith(PLACEHOLDER):
            raise SchemaError(
                f"chargers[{i}].password",
                f"still the example's {c.ocpp.password!r}: set the password this charger "
                "is given in its OCPP settings (or remove the key for no password)",
            )
    export, ocpp = config.export, config.ocpp
    if export.enabled and export.port == ocpp.port and ocpp.port != 0:
        raise SchemaError("export.port", f"{export.port} is also ocpp.port: give each its own")
    if ocpp.tls_cert is not None and ocpp.tls_key is not None and not offline:
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
                ocpp.tls_cert, ocpp.tls_key
            )
        except (ssl.SSLError, OSError) as exc:
            raise SchemaError(
                "ocpp.tls_cert",
                f"{ocpp.tls_cert} with {ocpp.tls_key} does not load as a PEM certificate "
                f"and key: {exc.strerror or exc}",
            ) from exc
