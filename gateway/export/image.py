"""Building the register image (pure): ExportState + command values -> list of registers.

The keys of the value dicts are the names in `registers.csv`; a name the map has and
this module does not fill raises KeyError, so the map and the code cannot drift apart
without a failing test.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from gateway.export.regmap import (
    CHARGER_BASE,
    CHARGER_BLOCK,
    CHARGER_STRIDE,
    COMMAND_BASE,
    MAP_SIZE,
    MAP_VERSION,
    MARKER,
    MAX_CHARGERS,
    SIGN_CONVENTION,
    SITE_BASE,
    Register,
    RegisterMap,
)
from gateway.export.state import ChargerState, ExportState

# charger id ("" for the site) -> values of its writable and command-status registers
CommandValues = Callable[[str], Mapping[str, Any]]


def per_phase(prefix: str, values: Sequence[float]) -> dict[str, float | None]:
    return {f"{prefix}_l{i + 1}": values[i] if i < len(values) else None for i in range(3)}


def site_values(s: ExportState) -> dict[str, Any]:
    return {
        "cycle_counter": s.cycle & 0xFFFFFFFF,
        "updated": s.updated_unix,
        "cycle_time": s.cycle_time_ms,
        "status_bits": s.status_bits,
        "charger_count": min(len(s.chargers), MAX_CHARGERS),
        "grid_power": s.grid_power_w,
        **per_phase("grid_power", s.grid_power_phase_w),
        **per_phase("grid_current", s.grid_current_a),
        **per_phase("voltage", s.voltage_v),
        "pv_power": s.pv_power_w,
        "battery_power": s.battery_power_w,
        "battery_soc": s.battery_soc,
        "net_load_power": s.net_load_power_w,
        **per_phase("net_load_current", s.net_load_a),
        "household_consumption": s.household_consumption_w,
        "ev_power": s.ev_power_w,
        **per_phase("headroom", s.headroom_a),
        "breaker_limit": s.breaker_limit_a,
        "breaker_limit_power": s.breaker_limit_w,
        "current_limit": s.current_limit_a,
        "power_limit": s.power_limit_w,
        "battery_hold": s.battery_hold.state,
        "battery_hold_result": s.battery_hold.result,
        "battery_hold_limit": s.battery_hold.limit_w,
        "battery_hold_writes": s.battery_hold.writes & 0xFFFFFFFF,
        "battery_hold_failures": s.battery_hold.failures & 0xFFFFFFFF,
    }


def charger_values(slot: int, c: ChargerState) -> dict[str, Any]:
    return {
        "index": slot,
        "online": c.online,
        "charger_id": c.id,
        "ocpp_status": c.status_code,
        "phases": c.phases,
        "mode": None if c.mode is None else c.mode.code,
        "reason": None if c.reason is None else c.reason.code,
        "allocated_current": c.allocated_a,
        "target_current": c.target_a,
        **per_phase("current", c.current_a),
        "power": c.power_w,
        "session_energy": c.session_wh,
        "min_current": c.min_a,
        "max_current": c.max_a,
        "control_state": c.control_state,
        "assumed_current": c.assumed_a,
    }


def render(
    image: list[int], rows: Iterable[Register], values: Mapping[str, Any], base: int
) -> None:
    for row in rows:
        start = base + row.address
        image[start : start + row.size] = row.encode(values[row.name])


class ImageBuilder:
    """Holds the map split into blocks and a template with every constant filled in."""

    def __init__(self, regmap: RegisterMap, firmware: str) -> None:
        live = [r for r in regmap.rows if not r.reserved]
        self._fixed = [r for r in live if r.block != CHARGER_BLOCK]
        self._charger = [r for r in live if r.block == CHARGER_BLOCK and not r.writable]
        self._charger_commands = [r for r in live if r.block == CHARGER_BLOCK and r.writable]
        self._template = [0] * MAP_SIZE
        constants = {
            "marker": MARKER,
            "map_version_major": MAP_VERSION[0],
            "map_version_minor": MAP_VERSION[1],
            "map_hash": regmap.hash,
            "firmware": firmware,
            "charger_base": CHARGER_BASE,
            "charger_stride": CHARGER_STRIDE,
            "site_base": SITE_BASE,
            "command_base": COMMAND_BASE,
            "max_chargers": MAX_CHARGERS,
            "sign_convention": SIGN_CONVENTION,
        }
        self._constants = [r for r in self._fixed if r.name in constants]
        self._command = [r for r in self._fixed if r.block == "command"]
        self._fixed = [r for r in self._fixed if r.name not in constants and r.block != "command"]
        render(self._template, self._constants, constants, 0)
        for slot in range(MAX_CHARGERS):
            unused: defaultdict[str, Any] = defaultdict(lambda: None, index=slot)
            render(self._template, self._charger + self._charger_commands, unused, _base(slot))

    def build(self, state: ExportState, commands: CommandValues) -> list[int]:
        """A fresh image for one cycle (the template is copied, never changed)."""
        image = self._template.copy()
        render(image, self._fixed, site_values(state), 0)
        for slot, charger in enumerate(state.chargers[:MAX_CHARGERS]):
            render(image, self._charger, charger_values(slot, charger), _base(slot))
        self.render_commands(image, state, commands)
        return image

    def render_commands(
        self, image: list[int], state: ExportState, commands: CommandValues
    ) -> None:
        """Refresh only what a write changes: the command block and the charger setpoints."""
        render(image, self._command, commands(""), 0)
        for slot, charger in enumerate(state.chargers[:MAX_CHARGERS]):
            render(image, self._charger_commands, commands(charger.id), _base(slot))


def _base(slot: int) -> int:
    return CHARGER_BASE + slot * CHARGER_STRIDE
