"""The public `allocate` contract: reading a snapshot and writing an allocation.

The same readers serve the TOML config (`[site]`, `[[chargers]]`), so a key means the
same thing in a what-if snapshot and in the running gateway.
"""

from __future__ import annotations

from typing import Any

from gateway.model import (
    PHASE_NAMES,
    STATUSES,
    Allocation,
    Battery,
    Charger,
    Circuit,
    Distribution,
    Inverter,
    Measurements,
    Metering,
    Mode,
    Site,
    Snapshot,
)
from gateway.schema import SchemaError, Table


def read_modes(t: Table, key: str, default: tuple[Mode, ...]) -> frozenset[Mode]:
    names = t.strings(key, tuple(m.value for m in default))
    known = [m.value for m in Mode]
    for i, name in enumerate(names):
        if name not in known:
            message = f"must be one of {', '.join(known)}; got {name!r}"
            raise SchemaError(f"{t.at(key)}[{i}]", message)
    return frozenset(Mode(name) for name in names)


def read_battery(t: Table) -> Battery:
    battery = Battery(
        soc_min=t.number("soc_min", 20.0, lo=0, hi=100),
        soc_target=t.number("soc_target", 80.0, lo=0, hi=100),
        max_charge_w=t.number("max_charge_w", lo=0),
        max_discharge_w=t.number("max_discharge_w", lo=0),
        supply_modes=read_modes(t, "supply_modes", (Mode.STANDARD, Mode.ECO)),
        assist_soc=t.number("assist_soc", None, lo=0, hi=100),
        assist_w=t.number("assist_w", 0.0, lo=0),
    )
    if battery.soc_target < battery.soc_min:
        raise SchemaError(t.at("soc_target"), f"must be >= soc_min ({battery.soc_min:g})")
    if battery.assist_soc is not None and battery.assist_soc < battery.soc_min:
        raise SchemaError(t.at("assist_soc"), f"must be >= soc_min ({battery.soc_min:g})")
    return battery


def read_inverter(t: Table) -> Inverter:
    return Inverter(
        max_w=t.number("max_w", None, lo=0),
        max_phase_w=t.number("max_phase_w", None, lo=0),
        asymmetric=t.boolean("asymmetric", False),
    )


def read_circuit(t: Table) -> Circuit:
    return Circuit(
        name=t.string("name"),
        limit_a=t.number("limit_a", lo=0),
        chargers=t.strings("chargers"),
    )


def read_site(t: Table) -> Site:
    """Read a site table; the caller finishes it (the config adds keys of its own)."""
    battery = t.table("battery", None)
    inverter = t.table("inverter", None)
    site = Site(
        voltage_v=t.number("voltage_v", 230.0, lo=100, hi=300),
        phases=_site_phases(t),
        main_breaker_a=t.number("main_breaker_a", lo=1),  # 0 A would stop every car silently
        max_import_w=t.number("max_import_w", None, lo=0),
        distribution=Distribution(
            t.choice("distribution", [d.value for d in Distribution], "priority")
        ),
        excess_threshold_w=t.number("excess_threshold_w", 13000.0, lo=0),
        allow_grid_charging=t.boolean("allow_grid_charging", True),
        metering=Metering(t.choice("metering", [m.value for m in Metering], "per_phase")),
        battery=_finished(battery, read_battery),
        inverter=_finished(inverter, read_inverter),
        circuits=t.each("circuits", read_circuit, ()),
        release_after_s=t.number("release_after_s", 60.0, lo=0),
    )
    names = [c.name for c in site.circuits]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise SchemaError(t.at("circuits") + f"[{i}].name", f"duplicate circuit {name!r}")
    return site


def _site_phases(t: Table) -> int:
    phases = t.integer("phases", 3)
    if phases not in (1, 3):
        raise SchemaError(t.at("phases"), f"must be 1 or 3, not {phases}")
    return phases


def _finished(t: Table | None, read: Any) -> Any:
    if t is None:
        return None
    value = read(t)
    t.finish()
    return value


def read_charger_settings(t: Table, site: Site) -> Charger:
    """Read a charger's settings (no live state); the caller finishes the table."""
    charger_id = t.string("id")
    min_a = t.number("min_a", 6.0, lo=0)
    max_a = t.number("max_a", 16.0, lo=0)
    if max_a < min_a:
        raise SchemaError(t.at("max_a"), f"must be >= min_a ({min_a:g})")
    phases = t.integer("phases", 3)
    if phases not in (1, 2, 3):
        raise SchemaError(t.at("phases"), f"must be 1, 2 or 3, not {phases}")
    return Charger(
        id=charger_id,
        mode=Mode(t.choice("mode", [m.value for m in Mode], "standard")),
        min_a=min_a,
        max_a=max_a,
        phases=phases,
        priority=t.integer("priority", 1, lo=1),
        phase_map=_phase_map(t, site, phases),
    )


def _phase_map(t: Table, site: Site, phases: int) -> str:
    default = "ABC" if site.phases == 3 else "A"
    value = t.string("phase_map", default).upper()
    site_phases = PHASE_NAMES[: site.phases]
    if any(p not in site_phases for p in value) or len(set(value)) != len(value):
        raise SchemaError(
            t.at("phase_map"),
            f"must list distinct site phases from {site_phases!r} for L1, L2, L3; got {value!r}",
        )
    # On a 1-phase site only L1 is connected, whatever the charger could do.
    if len(value) < min(phases, site.phases):
        raise SchemaError(
            t.at("phase_map"), f"names {len(value)} phase(s) for a {phases}-phase charger"
        )
    return value


def read_charger(t: Table, site: Site) -> Charger:
    charger = read_charger_settings(t, site)
    status = t.choice("status", STATUSES, "Available")
    draw = t.numbers("draw_a", (0.0, 0.0, 0.0), lengths=(1, 2, 3), lo=0)
    return charger._replace(
        status=status,
        draw_a=tuple(draw) + (0.0,) * (3 - len(draw)),
        idle_s=t.number("idle_s", 0.0, lo=0),
    )


def read_measurements(t: Table, site: Site) -> Measurements:
    return Measurements(
        grid_current_a=t.numbers("grid_current_a", lengths=(site.phases,)),
        pv_power_w=t.number("pv_power_w", None, lo=0),
        battery_soc=t.number("battery_soc", None, lo=0, hi=100),
        battery_power_w=t.number("battery_power_w", None),
        voltage_v=t.numbers("voltage_v", None, lengths=(site.phases,), lo=0),
    )


def check_chargers(chargers: tuple[Charger, ...], site: Site, path: str) -> None:
    """Cross-field checks: unique ids, circuits naming known chargers."""
    ids = [c.id for c in chargers]
    for i, charger_id in enumerate(ids):
        if charger_id in ids[:i]:
            raise SchemaError(f"{path}[{i}].id", f"duplicate charger id {charger_id!r}")
    for i, circuit in enumerate(site.circuits):
        for j, member in enumerate(circuit.chargers):
            if member not in ids:
                raise SchemaError(
                    f"site.circuits[{i}].chargers[{j}]", f"no charger with id {member!r}"
                )


def read_snapshot(data: Any) -> Snapshot:
    top = Table(data)
    site_table = top.table("site")
    site = read_site(site_table)
    site_table.finish()
    measurements_table = top.table("measurements")
    measurements = read_measurements(measurements_table, site)
    measurements_table.finish()
    chargers = top.each("chargers", lambda t: read_charger(t, site), ())
    top.finish()
    check_chargers(chargers, site, "chargers")
    return Snapshot(site=site, measurements=measurements, chargers=chargers)


def _round(value: float) -> float:
    return round(value, 2)


def allocation_to_json(allocation: Allocation) -> dict[str, Any]:
    site = allocation.site
    return {
        "site": {
            "household_a": [_round(v) for v in site.household_a],
            "export_w": _round(site.export_w),
            "headroom_a": [_round(v) for v in site.headroom_a],
            "battery_soc": site.battery_soc,
        },
        "chargers": {
            c.id: {
                "allocated_a": c.allocated_a,
                "target_a": c.target_a,
                "phases": c.phases,
                "mode": c.mode.value,
                "available_a": c.available_a,
                "reason": c.reason.text,
            }
            for c in allocation.chargers
        },
    }
