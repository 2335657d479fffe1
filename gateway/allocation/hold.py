"""The battery hold decision: what discharge limit to ask of the home battery, and when.

Pure (no I/O, no clock: `now` comes in). A hybrid inverter in self-consumption covers any
load, cars included; the owner's policy (`gateway/allocation/battery.py`) says how much of
that a car of each mode may take. While cars charge (or are allowed to) and the smallest
allowance among their modes is below what the battery could give, the battery is held:
its discharge is capped at what the house itself draws beyond the sun plus that
allowance, so the battery goes on covering the house as if no car were charging (it ends
the night where it would have without the car) and gives the cars only their allowance.
Otherwise, and whenever control is in doubt (failsafe), it is released.

A held limit follows the house only in steps of `BAND_W` (each write costs a request, and
some inverters keep the register in EEPROM); it is re-written every `rewrite_s` so a
device with its own expiry never lapses while the gateway runs, and a device that refused
a write is asked again after `RETRY_S`. The first decision after a start is always
written, hold or release: a gateway that died holding a device without expiry releases
it as soon as it is back.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from gateway.allocation.battery import allowance_w
from gateway.model import Battery, Mode

RETRY_S = 5.0  # after a refused or unanswered write
BAND_W = 100.0  # a held limit is re-written for the house's sake only beyond this change


@dataclass(frozen=True, slots=True)
class Written:
    """The last write to the device: the limit asked (None: released), when, and if it took."""

    limit_w: float | None
    at: float
    ok: bool


def hold_limit(
    battery: Battery | None,
    soc: float | None,
    modes: Iterable[Mode],
    failsafe: bool,
    house_w: float = 0.0,
) -> float | None:
    """The discharge limit (W) to hold the battery at, or None to release it.

    `modes` are those of the cars charging or allowed to charge this cycle; `house_w` is
    what the house draws beyond its PV (grid + battery - cars), which the battery keeps
    covering while held.
    """
    if battery is None or failsafe:
        return None
    lowest = min((allowance_w(battery, m, soc) for m in modes), default=math.inf)
    if lowest >= battery.max_discharge_w:
        return None
    house = max(0.0, house_w) if math.isfinite(house_w) else 0.0
    return min(house + lowest, battery.max_discharge_w)


def due(
    last: Written | None,
    limit_w: float | None,
    now: float,
    rewrite_s: float,
    retry_s: float = RETRY_S,
    band_w: float = BAND_W,
) -> bool:
    """Whether to write `limit_w` (None: a release) now, given the last write."""
    if last is None:
        return True
    if not last.ok:
        return now - last.at >= retry_s
    if last.limit_w is None or limit_w is None:
        return last.limit_w != limit_w
    if abs(limit_w - last.limit_w) >= band_w:
        return True
    return now - last.at >= rewrite_s
