"""The battery policy: how much of the home battery's discharge cars of a mode may use.

One rule for the allocator (what it counts as available to a car) and for the battery
hold (what it tells an inverter with a writable discharge control), so the two can never
disagree about what the owner set in `[site.battery]`.
"""

from __future__ import annotations

import math

from gateway.model import Battery, Mode

# Solar and Excess run on the sun; the others are what the owner asked to be charged.
_SUN_MODES = frozenset({Mode.SOLAR, Mode.EXCESS})


def allowance_w(battery: Battery, mode: Mode, soc: float | None) -> float:
    """Discharge power (W) the battery may give cars of `mode` at `soc` (inf: no limit).

    Below soc_min: nothing, for every mode. Solar/Excess: nothing, unless the owner opted
    in with assist_soc (then up to assist_w above that SOC). Other modes: unlimited above
    soc_min when listed in supply_modes, else nothing. An unknown SOC supplies nothing:
    the battery is distrusted until it reports.
    """
    if soc is None or not math.isfinite(soc) or soc < battery.soc_min:
        return 0.0
    if mode in _SUN_MODES:
        if battery.assist_soc is not None and soc >= battery.assist_soc:
            return battery.assist_w
        return 0.0
    return math.inf if mode in battery.supply_modes else 0.0
