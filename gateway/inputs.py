"""One cycle's inputs -> the allocator's `Snapshot` (pure; `now` passed in).

The hub reads three things without waiting on any device: the meters' newest readings
(each with the time it was read), the chargers' live OCPP state, and the setpoints
written over Modbus. This module turns them into one `Snapshot`, plus what the status
needs to say about the data (its age, which meters are failing).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from gateway.model import Charger, Measurements, Mode, Site


class Reading(Protocol):
    value: float
    at: float


class MeterView(Protocol):
    name: str
    role: str
    charger: str | None
    values: Mapping[str, Reading]
    ok: bool


class ChargerView(Protocol):
    online: bool
    status: str | None
    draw_a: tuple[float, float, float]


class ChargerOverride(Protocol):
    max_a: float | None
    enabled: bool | None
    mode: Mode | None


class Overrides(Protocol):
    site_current_a: float | None
    site_power_w: float | None

    def charger(self, charger_id: str) -> ChargerOverride: ...


@dataclass(frozen=True, slots=True)
class SiteInputs:
    measurements: Measurements
    grid_age_s: float  # age of the oldest grid current used; inf before the first reading
    grid_power_w: float  # NaN if unknown
    failing_meters: tuple[str, ...]  # names of meters whose last poll failed


def _phase_keys(n: int, kind: str, unit: str) -> list[str]:
    return [f"{kind}_l{i}_{unit}" for i in range(1, n + 1)]


def _fresh(values: Mapping[str, Reading], key: str, now: float, max_age_s: float) -> float | None:
    reading = values.get(key)
    if reading is None or now - reading.at > max_age_s:
        return None
    return reading.value


def _every(values: Mapping[str, Reading], keys: list[str]) -> list[Reading] | None:
    """The readings of all `keys`, or None if any is missing."""
    found = [r for k in keys if (r := values.get(k)) is not None]
    return found if len(found) == len(keys) else None


def _grid_currents(values: Mapping[str, Reading], n: int) -> tuple[tuple[float, ...], float] | None:
    """Signed per-phase grid current and the time of its oldest reading."""
    currents = _every(values, _phase_keys(n, "current", "a"))
    if currents is not None:
        return tuple(r.value for r in currents), min(r.at for r in currents)
    powers = _every(values, _phase_keys(n, "power", "w"))
    if powers is None:
        return None
    volts = [values.get(k) for k in _phase_keys(n, "voltage", "v")]
    derived = tuple(
        p.value / (v.value if v is not None and v.value > 50 else 230.0)
        for p, v in zip(powers, volts, strict=True)
    )
    return derived, min(p.at for p in powers)


def read_site(
    meters: Sequence[MeterView], site: Site, now: float, stale_after_s: float
) -> SiteInputs:
    n = site.phases
    grid = next((m for m in meters if m.role == "grid"), None)
    currents: tuple[float, ...] = (0.0,) * n
    age = math.inf
    grid_power = math.nan
    voltages = None
    if grid is not None:
        found = _grid_currents(grid.values, n)
        if found is not None:
            currents, at = found
            age = max(0.0, now - at)
        power = _fresh(grid.values, "power_w", now, stale_after_s)
        grid_power = math.nan if power is None else power
        volts = [_fresh(grid.values, k, now, stale_after_s) for k in _phase_keys(n, "voltage", "v")]
        plausible = [v for v in volts if v is not None and v > 50]
        if len(plausible) == n:
            voltages = tuple(plausible)

    pv = [_fresh(m.values, "power_w", now, stale_after_s) for m in meters if m.role == "pv"]
    pv_known = [p for p in pv if p is not None]
    battery = next((m for m in meters if m.role == "battery"), None)
    soc = power_b = None
    if battery is not None:
        soc = _fresh(battery.values, "soc_pct", now, stale_after_s)
        power_b = _fresh(battery.values, "power_w", now, stale_after_s)
        if soc is None or power_b is None:
            soc = power_b = None  # half a battery reading is no reading: do not count on it
    measurements = Measurements(
        grid_current_a=currents,
        pv_power_w=max(0.0, sum(pv_known)) if pv_known else None,
        battery_soc=None if soc is None else min(100.0, max(0.0, soc)),
        battery_power_w=power_b,
        voltage_v=voltages,
    )
    return SiteInputs(
        measurements=measurements,
        grid_age_s=age,
        grid_power_w=grid_power,
        failing_meters=tuple(m.name for m in meters if not m.ok),
    )


def _line_draw(view: ChargerView | None) -> tuple[float, float, float]:
    """What the charger draws: only while Charging; otherwise a reading is left over.

    Chargers often stop sending MeterValues once suspended, so the last reading can be
    the full current of a car that stopped long ago; subtracting it from a fresh grid
    reading would hide that much household load.
    """
    if view is None or view.status != "Charging":
        return (0.0, 0.0, 0.0)
    return (abs(view.draw_a[0]), abs(view.draw_a[1]), abs(view.draw_a[2]))


def charger_inputs(
    chargers: Sequence[Charger],
    live: Mapping[str, ChargerView],
    overrides: Overrides | None,
    submeters: Sequence[MeterView] = (),
    now: float = 0.0,
    stale_after_s: float = math.inf,
) -> tuple[Charger, ...]:
    """Configured chargers with this cycle's status, draw and written overrides.

    An offline charger counts as Unavailable (it takes no share). A charger sub-meter,
    where configured, is trusted over the charger's own MeterValues for the draw. A
    written max only lowers the configured max; `enabled = false` stops the charger.
    """
    metered = {m.charger: m for m in submeters if m.role == "charger" and m.charger}
    out = []
    for c in chargers:
        view = live.get(c.id)
        status = view.status if view is not None and view.online and view.status else None
        draw = _line_draw(view)
        meter = metered.get(c.id)
        if meter is not None:
            lines = [_fresh(meter.values, f"current_l{i}_a", now, stale_after_s) for i in (1, 2, 3)]
            if any(v is not None for v in lines):
                draw = (abs(lines[0] or 0.0), abs(lines[1] or 0.0), abs(lines[2] or 0.0))
        charger = replace(c, status=status or "Unavailable", draw_a=draw)
        if overrides is not None:
            o = overrides.charger(c.id)
            if o.mode is not None:
                charger = replace(charger, mode=o.mode)
            if o.max_a is not None:
                charger = replace(charger, max_a=max(charger.min_a, min(charger.max_a, o.max_a)))
            if o.enabled is False:
                charger = replace(charger, status="Unavailable")
        out.append(charger)
    return tuple(out)
