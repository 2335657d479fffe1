"""A scenario file: the gateway's own `[site]`, `[control]` and `[[chargers]]` keys (or
`simulation.config` naming a gateway config file to take them from), plus the day to
simulate (household load, PV, home battery, car sessions, cycle, duration).

Errors name the file, the line and the key (`gateway.tomlfile`), like the config's.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from gateway.allocation.snapshot import check_chargers, read_site
from gateway.allocation.timing import ControlSettings, read_control
from gateway.config import ChargerConfig, load_config, read_charger_config
from gateway.model import Site
from gateway.schema import SchemaError, Table
from gateway.sim.quirks import QUIRKS
from gateway.sim.series import Series, read_series, read_time
from gateway.sim.site import BEHAVIOURS, HomeBattery, Session
from gateway.tomlfile import TomlError, read_toml


@dataclass(frozen=True, slots=True)
class Scenario:
    path: str
    site: Site
    control: ControlSettings
    chargers: tuple[ChargerConfig, ...]
    start_s: float
    duration_s: float
    cycle_s: float
    household: Series
    pv: Series | None
    battery: HomeBattery | None
    sessions: tuple[Session, ...]


def load_scenario(path: str | Path) -> Scenario:
    """Read a scenario file; raises `TomlError` naming file, line and key."""
    base = Path(path).parent
    return read_toml(path, lambda top: read_scenario(top, str(path), base))


def read_scenario(top: Table, path: str, base_dir: Path) -> Scenario:
    sim = top.table("simulation")
    start = read_time(sim, "start", 0.0)
    duration = sim.number("duration_h", lo=0.001, hi=24 * 14) * 3600
    cycle = sim.number("cycle_s", None, lo=0.1, hi=60)
    config_name = sim.string("config", None)
    sim.finish()
    if config_name is None:
        # The gateway's cycle, when [control] writes it, is the one simulated.
        control_table = top.data.get("control")
        written = isinstance(control_table, dict) and "cycle_s" in control_table
        site, control, chargers = _inline_setup(top)
    else:
        written = True  # a gateway config runs at its cycle, written or the default
        site, control, chargers = _config_setup(top, base_dir / config_name, sim.at("config"))
    if written and cycle is not None and cycle != control.cycle_s:
        raise SchemaError(
            sim.at("cycle_s"),
            f"is {cycle:g} s but the gateway's control.cycle_s is {control.cycle_s:g} s: "
            "give the cycle once",
        )
    if cycle is None:
        cycle = control.cycle_s if written else 1.0
    control = replace(control, cycle_s=cycle)

    per_phase = sorted({1, site.phases})
    household = _series(top, "household", base_dir, per_phase, "W")
    if household is None:
        raise SchemaError("household", "is required")
    pv = _series(top, "pv", base_dir, [1], "W")
    battery = _battery(top, site, "site.battery" if config_name is None else sim.at("config"))
    if battery is not None and battery.controlled and site.battery is not None:
        site = site._replace(battery=site.battery._replace(held=True))
    ids = [c.id for c in chargers]
    sessions = top.each("sessions", lambda t: _session(t, chargers, ids), ())
    return Scenario(
        path=path,
        site=site,
        control=control,
        chargers=chargers,
        start_s=start,
        duration_s=duration,
        cycle_s=cycle,
        household=household,
        pv=pv,
        battery=battery,
        sessions=sessions,
    )


def _inline_setup(top: Table) -> tuple[Site, ControlSettings, tuple[ChargerConfig, ...]]:
    """`[site]`, `[control]` and `[[chargers]]` written in the scenario itself."""
    site_table = top.table("site")
    site = read_site(site_table)
    site_table.finish()
    control = read_control(top)
    chargers = top.each("chargers", lambda t: read_charger_config(t, site, control))
    if not chargers:
        raise SchemaError("chargers", "needs at least one charger")
    check_chargers(tuple(c.charger for c in chargers), site, "chargers")
    return site, control, chargers


def _config_setup(
    top: Table, config_path: Path, key: str
) -> tuple[Site, ControlSettings, tuple[ChargerConfig, ...]]:
    """The site, control and chargers of a gateway config file (`simulation.config`)."""
    for section in ("site", "control", "chargers"):
        if top.has(section):
            raise SchemaError(section, "comes from simulation.config; give one or the other")
    try:
        config = load_config(config_path)
    except TomlError as exc:
        raise SchemaError(key, str(exc)) from None
    if not config.chargers:
        raise SchemaError(key, f"{config_path} has no [[chargers]]")
    return config.site, config.control, config.chargers


def _series(top: Table, key: str, base_dir: Path, columns: list[int], unit: str) -> Series | None:
    t = top.table(key, None)
    if t is None:
        return None
    series = read_series(t, base_dir, columns, unit)
    t.finish()
    return series


def _battery(top: Table, site: Site, site_key: str) -> HomeBattery | None:
    """The simulated battery: `[battery]` (its capacity and SOC) and `[site.battery]`
    (its power limits and the gateway's SOC settings) come together or not at all."""
    t = top.table("battery", None)
    if t is None and site.battery is None:
        return None
    if site.battery is None:
        raise SchemaError("battery", "needs [site.battery] (its power limits and SOC settings)")
    if t is None:
        raise SchemaError(
            site_key, "needs a [battery] to simulate (capacity_kwh, soc, reserve_soc)"
        )
    reserve = t.number("reserve_soc", 5.0, lo=0, hi=100)
    battery = HomeBattery(
        capacity_wh=t.number("capacity_kwh", 10.0, lo=0.1) * 1000,
        soc=t.number("soc", 50.0, lo=reserve, hi=100),
        max_charge_w=site.battery.max_charge_w,
        max_discharge_w=site.battery.max_discharge_w,
        reserve_soc=reserve,
        controlled=t.boolean("hold", False),  # the gateway holds it (gateway/allocation/hold.py)
    )
    t.finish()
    return battery


def _session(t: Table, chargers: tuple[ChargerConfig, ...], ids: list[str]) -> Session:
    charger_id = t.string("charger")
    if charger_id not in ids:
        raise SchemaError(t.at("charger"), f"no charger with id {charger_id!r}")
    configured = chargers[ids.index(charger_id)]
    charger = configured.charger
    arrive = read_time(t, "arrive")
    leave = read_time(t, "leave")
    if leave <= arrive:
        raise SchemaError(t.at("leave"), "must be after arrive")
    phases = t.integer("phases", charger.phases)
    if phases not in (1, 2, 3):
        raise SchemaError(t.at("phases"), f"must be 1, 2 or 3, not {phases}")
    return Session(
        charger=charger_id,
        arrive_s=arrive,
        leave_s=leave,
        energy_wh=t.number("energy_kwh", lo=0) * 1000,
        phases=phases,
        max_a=t.number("max_a", 32.0, lo=0),
        lag_s=t.number("lag_s", 5.0, lo=0, hi=60),
        quirks=_quirks(t),
        **_behaviour(t, arrive, leave, configured.failsafe_a),
    )


def _behaviour(t: Table, arrive: float, leave: float, failsafe_a: float) -> dict:
    """The charger's behaviour during the session (`docs/simulation.md`)."""
    behaviour = t.string("behaviour", "obeys")
    if behaviour not in BEHAVIOURS:
        raise SchemaError(t.at("behaviour"), f"must be one of {', '.join(BEHAVIOURS)}")
    if behaviour != "offline":
        return {"behaviour": behaviour}
    offline = read_time(t, "offline_at", arrive)
    online = read_time(t, "online_at", leave)
    if online <= offline:
        raise SchemaError(t.at("online_at"), "must be after offline_at")
    return {"behaviour": behaviour, "offline_s": (offline, online), "failsafe_a": failsafe_a}


def _quirks(t: Table) -> frozenset[str]:
    names = t.strings("quirks", ())
    for i, name in enumerate(names):
        if name not in QUIRKS:
            raise SchemaError(
                f"{t.at('quirks')}[{i}]", f"must be one of {', '.join(sorted(QUIRKS))}"
            )
    return frozenset(names)
