"""The canonical quantities every profile decodes into, with their units and sign rules.

One sign convention for the whole gateway: grid import +, PV production +, battery
discharge +, charger consumption +. Per-phase currents are signed like power.
"""

from __future__ import annotations

ROLES = ("grid", "pv", "battery", "charger")

# name -> canonical unit
QUANTITIES: dict[str, str] = {
    "power_w": "W",
    "power_l1_w": "W",
    "power_l2_w": "W",
    "power_l3_w": "W",
    "current_l1_a": "A",
    "current_l2_a": "A",
    "current_l3_a": "A",
    "voltage_l1_v": "V",
    "voltage_l2_v": "V",
    "voltage_l3_v": "V",
    "frequency_hz": "Hz",
    "energy_import_wh": "Wh",
    "energy_export_wh": "Wh",
    "soc_pct": "%",
}

# A profile may state a register in a larger unit; the loader folds the factor into its scale.
UNIT_FACTORS: dict[str, dict[str, float]] = {
    "W": {"W": 1.0, "kW": 1000.0},
    "A": {"A": 1.0},
    "V": {"V": 1.0},
    "Hz": {"Hz": 1.0},
    "Wh": {"Wh": 1.0, "kWh": 1000.0},
    "%": {"%": 1.0},
}

INTERNAL_PREFIX = "_"


def unit_of(name: str) -> str | None:
    """Canonical unit of a quantity; internal names (`_grid_feed_w`) take their suffix's unit."""
    if name in QUANTITIES:
        return QUANTITIES[name]
    if name.startswith(INTERNAL_PREFIX):
        suffix = name.rsplit("_", 1)[-1]
        return {"w": "W", "a": "A", "v": "V", "hz": "Hz", "wh": "Wh", "pct": "%"}.get(suffix)
    return None


def is_flow(name: str) -> bool:
    """Quantities whose sign says the direction of energy flow (flipped with the role)."""
    return name.startswith(("power_", "current_"))


def flip(values: dict[str, float]) -> dict[str, float]:
    """Turn the other way round: negate flows, swap the import and export counters."""
    out = {k: (-v if is_flow(k) else v) for k, v in values.items()}
    imp, exp = values.get("energy_import_wh"), values.get("energy_export_wh")
    out.pop("energy_import_wh", None)
    out.pop("energy_export_wh", None)
    if exp is not None:
        out["energy_import_wh"] = exp
    if imp is not None:
        out["energy_export_wh"] = imp
    return out
