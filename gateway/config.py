"""The gateway's TOML config -> frozen dataclasses.

Each area reads its own section with the `Table` reader (`gateway.schema`), so an error
anywhere names the file, the line and the key (`gateway.tomlfile`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gateway.allocation.allocator import wired_lines
from gateway.allocation.snapshot import check_chargers, read_charger_settings, read_site
from gateway.allocation.timing import ControlSettings, Timing, read_control, read_timing
from gateway.export.config import ExportConfig, read_export
from gateway.logsetup import LogConfig, read_log
from gateway.meters.config import MeterConfig, read_meters
from gateway.model import PHASE_NAMES, Charger, Site
from gateway.ocpp.config import ChargerOcpp, OcppConfig, read_charger_ocpp, read_ocpp
from gateway.schema import SchemaError, Table
from gateway.tomlfile import TomlError, read_toml

MAX_CHARGERS = 500


@dataclass(frozen=True, slots=True)
class ChargerConfig:
    charger: Charger
    # The current a charger falls back to when the gateway is gone or its data is stale
    # (the OCPP low-stack profile and the controller's stale-data failsafe share it).
    failsafe_a: float
    ocpp: ChargerOcpp = field(default_factory=ChargerOcpp)
    # The controller's timing for this charger: `[control]` with this entry's overrides.
    timing: Timing = field(default_factory=Timing)

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


def read_charger_config(t: Table, site: Site, control: ControlSettings) -> ChargerConfig:
    """One `[[chargers]]` entry (the simulator's scenarios read the same keys)."""
    charger = read_charger_settings(t, site)
    failsafe = t.number("failsafe_a", charger.min_a, lo=0, hi=charger.max_a)
    if 0 < failsafe < charger.min_a:
        raise SchemaError(t.at("failsafe_a"), f"must be 0 or >= min_a ({charger.min_a:g})")
    return ChargerConfig(
        charger=charger,
        failsafe_a=failsafe,
        ocpp=read_charger_ocpp(t),
        timing=read_timing(t, control.timing),
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


def read_config(top: Table, path: str) -> Config:
    site_table = top.table("site")
    site = read_site(site_table)
    reserve = site_table.number(
        "household_reserve_a", HOUSEHOLD_RESERVE_A, lo=0, hi=site.main_breaker_a
    )
    reserve_at = site_table.at("household_reserve_a")
    site_table.finish()
    control = read_control(top)
    chargers = top.each("chargers", lambda t: read_charger_config(t, site, control), ())
    check_chargers(tuple(c.charger for c in chargers), site, "chargers")
    _check_failsafe_fit(chargers, site, reserve, reserve_at)
    if len(chargers) > MAX_CHARGERS:
        raise SchemaError("chargers", f"at most {MAX_CHARGERS} (the register map's blocks)")
    meters = read_meters(top, path, tuple(c.id for c in chargers))
    if control.stale_after_s < 2 * control.cycle_s:
        raise SchemaError("control.stale_after_s", "must be at least twice control.cycle_s")
    return Config(
        path=path,
        site=site,
        chargers=chargers,
        control=control,
        meters=meters,
        export=read_export(top),
        log=read_log(top),
        ocpp=read_ocpp(top),
    )


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
        for m in config.meters
    ]
    port = config.ocpp.port if ocpp_port is None else ocpp_port
    lines.append(f"OCPP: {scheme}://{config.ocpp.host}:{port}/<charger id>")
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
            f"failsafe {c.failsafe_a:g} A"
        )
    return lines


def load_config(path: str | Path) -> Config:
    """Load and validate a config file; raises `TomlError` naming file, line and key."""
    return read_toml(path, lambda top: read_config(top, str(path)))


def load_runnable_config(path: str | Path) -> Config:
    """A config the daemon can run: valid, and with exactly one grid meter (the fuse's eye)."""
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
    return config
