"""The battery policy: how much of the home battery's discharge cars of a mode may use.

One rule for the allocator (what it counts as available to a car) and for the battery
hold (what it tells an inverter with a writable discharge control), so the two can never
disagree about what the owner set in `[site.battery]`.
"""

from __future__ import annotations

import math

from gateway.model import Battery, Mode

# A battery giving more than this is discharging (less is an idle inverter's own use or
# meter noise): a car drawing then draws from it.
DISCHARGING_W = 50.0
# Solar and Excess run on the sun; the others are what the owner asked to be charged.
_SUN_MODES = frozenset({Mode.SOLAR, Mode.EXCESS})
# Read every cycle, as globals: reading an enum member off its class costs several times more.
_STANDARD, _ECO = Mode.STANDARD, Mode.ECO


def allowance_w(battery: Battery, mode: Mode, soc: float | None) -> float:
    """Discharge power (W) the battery may give cars of `mode` at `soc` (inf: no limit).

    Below soc_min: nothing, for every mode. Solar/Excess: nothing, unless the owner opted
    in with assist_soc (then up to assist_w above that SOC). Other modes: unlimited above
    soc_min when listed in supply_modes, else nothing. An unknown SOC supplies nothing:
    the battery is distrusted until it reports.
    """
    if soc is None:
        return 0.0
    sun, standard, eco = allowances_w(battery, soc)
    if mode in _SUN_MODES:
        return sun
    return standard if mode is _STANDARD else eco


def allowances_w(battery: Battery, soc: float) -> tuple[float, float, float]:
    """allowance_w() for Solar (and Excess), Standard and Eco at once, for a known SOC:
    the allocator reads all three every cycle. The rule itself is here."""
    if not math.isfinite(soc) or soc < battery.soc_min:
        return 0.0, 0.0, 0.0
    sun = battery.assist_w if battery.assist_soc is not None and soc >= battery.assist_soc else 0.0
    modes = battery.supply_modes
    return (
        sun,
        math.inf if _STANDARD in modes else 0.0,
        math.inf if _ECO in modes else 0.0,
    )


def covers_load(power_w: float | None, grid_w: float) -> bool:
    """Whether the battery follows the site's load, so that a car starting now would draw
    from it: it is charging or discharging, or idle while the site exports (a car takes
    the export first, then the battery). Idle while the site imports (`grid_w` > 0), it
    is at its own reserve or held, and the grid would feed the car."""
    return abs(power_w or 0.0) > DISCHARGING_W or grid_w <= DISCHARGING_W


def discharge_to_cars_w(power_w: float | None, grid_w: float, cars_w: float) -> float:
    """The part of the battery's discharge that goes into cars: what it gives beyond the
    house's own deficit (`grid_w` net import, `cars_w` what the cars draw)."""
    return max(0.0, min(power_w or 0.0, cars_w - grid_w))
