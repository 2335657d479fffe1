"""One cycle's inputs -> the allocator's `Snapshot` (pure; `now` passed in).

The hub reads three things without waiting on any device: the meters' newest readings
(each with the time it was read), the chargers' live OCPP state, and the setpoints
written over Modbus. This module turns them into one `Snapshot`, plus what the status
needs to say about the data (its age, which meters are failing).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

from gateway.allocation.allocator import DRAWING_A, wired_lines
from gateway.allocation.guard import FOLLOW_S
from gateway.model import ACTIVE_STATUSES, PHASE_NAMES, Charger, Measurements, Mode, Site


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
    """What `CentralSystem.states()` gives per charger (`gateway.ocpp.state.ChargerState`)."""

    online: bool
    status: str | None
    draw_a: tuple[float, float, float]
    reading_mono: float | None  # the hub's clock when the last current reading arrived
    lines_reported: tuple[bool, bool, bool]
    sent_a: float | None
    sent_until_mono: float | None
    failsafe_a: float
    uncontrolled: bool


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
    # "meter key" of each reading outside physics this cycle (taken as not read).
    implausible: tuple[str, ...] = ()


# A reading beyond these is not a measurement (a decoding or device fault): the site's
# breaker or the device cannot carry it. Generous, so no real reading is refused.
_CURRENT_BEYOND_BREAKER = 4.0  # x the main breaker, per phase
_POWER_PER_PHASE_A = 4.0  # x breaker x nominal voltage, per phase present
_VOLTAGE_RANGE_V = (0.0, 500.0)


def _limits(site: Site) -> dict[str, float]:
    current = _CURRENT_BEYOND_BREAKER * max(site.main_breaker_a, 16.0)
    power = _POWER_PER_PHASE_A * max(site.main_breaker_a, 16.0) * site.voltage_v * site.phases
    return {"current": current, "power": power}


def _believed(key: str, value: float, site: Site) -> bool:
    """A value within what the site and device can physically carry."""
    if not math.isfinite(value):
        return False
    if key.startswith("voltage"):
        return _VOLTAGE_RANGE_V[0] <= value <= _VOLTAGE_RANGE_V[1]
    if key == "soc_pct":
        return -1.0 <= value <= 101.0
    kind = "current" if key.startswith("current") else "power" if key.startswith("power") else ""
    return not kind or abs(value) <= _limits(site)[kind]


@dataclass(frozen=True, slots=True)
class _BelievedView:
    """A meter's values with the implausible ones removed."""

    name: str
    role: str
    charger: str | None
    values: Mapping[str, Reading]
    ok: bool


def _believe(meter: MeterView, site: Site, implausible: list[str]) -> MeterView:
    bad = [k for k, r in meter.values.items() if not _believed(k, r.value, site)]
    if not bad:
        return meter
    implausible.extend(f"{meter.name} {k}" for k in bad)
    values = {k: r for k, r in meter.values.items() if k not in bad}
    return _BelievedView(meter.name, meter.role, meter.charger, values, meter.ok)


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
    implausible: list[str] = []
    meters = [_believe(m, site, implausible) for m in meters]
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
        implausible=tuple(implausible),
    )


# A reported line current above the charger's max by more than this is not believed.
DRAW_TOLERANCE_A = 2.0
_ROTATION = "ABCAB"


def _believed_lines(c: Charger, view: ChargerView) -> tuple[float, float, float]:
    """The charger's last reported draw per line, where it is believable (else 0)."""
    top = c.max_a + DRAW_TOLERANCE_A
    reported = view.lines_reported
    out = []
    for k, value in enumerate(view.draw_a):
        known = reported[k] or not any(reported)  # a view without line flags reports all
        believed = known and math.isfinite(value) and abs(value) <= top
        out.append(abs(value) if believed else 0.0)
    return (out[0], out[1], out[2])


def _line_draw(
    c: Charger, view: ChargerView | None, now: float, report_max_age_s: float
) -> tuple[float, float, float]:
    """What the allocator may subtract from the grid as this charger's draw.

    Only what is known is subtracted; anything unknown stays in the household (the grid
    measures it), which errs towards less for everyone, never more:
    - not Charging: nothing (chargers often stop sending MeterValues once suspended, so
      the last reading can be the full current of a car that stopped long ago);
    - offline or uncontrolled: nothing, its real draw is fixed load for the others
      (an offline charger keeps charging at its last limit, then at its failsafe);
    - a reading older than `report_max_age_s`: nothing (it may draw up to its last
      limit, which the grid sees);
    - a line it does not report, or a value that is not finite or beyond its max +
      DRAW_TOLERANCE_A: nothing on that line (clamping to the max would subtract more
      than a charger reporting 1000 A may really draw).
    """
    if view is None or view.status != "Charging" or not view.online or view.uncontrolled:
        return (0.0, 0.0, 0.0)
    if view.reading_mono is not None and now - view.reading_mono > report_max_age_s:
        return (0.0, 0.0, 0.0)
    return _believed_lines(c, view)


def undeclared_lines(c: Charger, draw: tuple[float, float, float], site_phases: int) -> Charger:
    """A car drawing on lines the charger is not configured for is counted on them: the
    charger is widened to those lines, assuming the usual rotation from its first phase."""
    wired = min(c.phases, len(c.phase_map), site_phases)
    if wired >= site_phases or all(a <= DRAWING_A for a in draw[wired:site_phases]):
        return c
    first = _ROTATION.index(c.phase_map[0])
    return c._replace(phases=site_phases, phase_map=_ROTATION[first : first + site_phases])


def charger_inputs(
    chargers: Sequence[Charger],
    live: Mapping[str, ChargerView],
    overrides: Overrides | None,
    submeters: Sequence[MeterView] = (),
    now: float = 0.0,
    stale_after_s: float = math.inf,
    site_phases: int = 3,
    report_max_age_s: float | None = None,
) -> tuple[Charger, ...]:
    """Configured chargers with this cycle's status, draw and written overrides.

    An offline charger counts as Unavailable (it takes no share). A charger sub-meter,
    where configured, is trusted over the charger's own MeterValues for the draw. A
    written max only lowers the configured max; `enabled = false` stops the charger.
    A charger drawing on lines beyond its configured `phases` is widened to them (the
    caller warns: `undeclared_lines` tells which). A charger's own reading counts for
    `report_max_age_s` (default `stale_after_s`), a sub-meter's for `stale_after_s`.
    """
    metered = {m.charger: m for m in submeters if m.role == "charger" and m.charger}
    out = []
    for c in chargers:
        view = live.get(c.id)
        status = view.status if view is not None and view.online and view.status else None
        draw = _line_draw(
            c, view, now, stale_after_s if report_max_age_s is None else report_max_age_s
        )
        meter = metered.get(c.id)
        uncontrolled = view is not None and view.uncontrolled
        if meter is not None and status == "Charging" and not uncontrolled:
            lines = [_fresh(meter.values, f"current_l{i}_a", now, stale_after_s) for i in (1, 2, 3)]
            if any(v is not None for v in lines):
                top = c.max_a + DRAW_TOLERANCE_A
                a, b, d = (abs(v) if v is not None and abs(v) <= top else 0.0 for v in lines)
                draw = (a, b, d)
        if uncontrolled:
            status = None  # not commanded; its measured draw stays in the household
        charger = undeclared_lines(c, draw, site_phases)
        charger = charger._replace(status=status or "Unavailable", draw_a=draw)
        if overrides is not None:
            o = overrides.charger(c.id)
            if o.mode is not None:
                charger = charger._replace(mode=o.mode)
            if o.max_a is not None:
                charger = charger._replace(max_a=max(charger.min_a, min(charger.max_a, o.max_a)))
            if o.enabled is False:
                charger = charger._replace(status="Unavailable")
        out.append(charger)
    return tuple(out)


class ControlState(IntEnum):
    """Whether the gateway controls a charger, and what it counts it at if not.

    The codes are public (register `control_state`)."""

    UNKNOWN = 0
    CONTROLLED = 1
    # Refuses every profile or keeps disobeying: its measured draw is fixed load.
    UNCONTROLLED = 2
    # Offline with a car: counted at its last acknowledged limit until that lapses...
    OFFLINE_AT_LIMIT = 3
    # ...then at its failsafe current, until it reconnects.
    OFFLINE_AT_FAILSAFE = 4
    # Offline without a car (or never connected): nothing assumed beyond what the grid shows.
    OFFLINE = 5

    @property
    def episode(self) -> str:
        """The kind of time out of control this state belongs to ("" for none): one log
        line opens each."""
        if self is ControlState.UNCONTROLLED:
            return "uncontrolled"
        if self in (ControlState.OFFLINE_AT_LIMIT, ControlState.OFFLINE_AT_FAILSAFE):
            return "offline with a car"
        return ""


def control_state(view: ChargerView | None, now: float) -> tuple[ControlState, float]:
    """A charger's control state and the current (A per line) assumed for it (NaN: none).

    An offline charger that had a car keeps charging on its own: at its last limit
    until the profile's validity ends, then at its failsafe current. From `FOLLOW_S`
    before that end the higher of the two is assumed, so the others have made room
    (their cars lag) by the time the charger changes by itself.
    """
    if view is None:
        return ControlState.OFFLINE, math.nan
    if view.uncontrolled:
        return ControlState.UNCONTROLLED, math.nan
    if view.online:
        return ControlState.CONTROLLED, math.nan
    if view.status not in ACTIVE_STATUSES:
        return ControlState.OFFLINE, math.nan
    sent, until = view.sent_a, view.sent_until_mono
    if sent is None or until is None or now >= until:
        return ControlState.OFFLINE_AT_FAILSAFE, view.failsafe_a
    if now >= until - FOLLOW_S:
        return ControlState.OFFLINE_AT_LIMIT, max(sent, view.failsafe_a)
    return ControlState.OFFLINE_AT_LIMIT, sent


def planning_measurements(
    m: Measurements,
    chargers: Sequence[Charger],
    live: Mapping[str, ChargerView],
    now: float,
    site_phases: int,
) -> Measurements:
    """The grid as the allocator and the guard must take it: the measured current plus,
    for every offline charger with a car, what it may draw beyond its last report.

    Its real draw is in the grid reading already (nothing of it is subtracted); what its
    last believed report does not show of the assumed current is added, so the others
    never take the share it may still use. Lines it did not report count as 0 there
    (the whole assumed current is added: doubt gives the others less)."""
    extra = [0.0] * len(m.grid_current_a)
    for c in chargers:
        view = live.get(c.id)
        _, amps = control_state(view, now)
        if view is None or math.isnan(amps):
            continue
        last = _believed_lines(c, view)
        for k in range(wired_lines(c, site_phases)):
            extra[PHASE_NAMES.index(c.phase_map[k])] += max(0.0, amps - last[k])
    if not any(extra):
        return m
    return m._replace(
        grid_current_a=tuple(a + e for a, e in zip(m.grid_current_a, extra, strict=True))
    )


def control_note(c: Charger, state: ControlState, amps: float, failsafe_a: float) -> str:
    """The log line that opens an episode out of control (empty: nothing to say)."""
    if state is ControlState.UNCONTROLLED:
        return (
            f"charger {c.id} is uncontrolled (refuses its limits or does not follow them):"
            f" its measured draw, up to its max {c.max_a:g} A, is fixed load for the others"
        )
    if state is ControlState.OFFLINE_AT_LIMIT:
        return (
            f"charger {c.id} is offline with a car: counted at {amps:g} A until its limit"
            f" lapses, then at its failsafe {failsafe_a:g} A, until it reconnects"
        )
    if state is ControlState.OFFLINE_AT_FAILSAFE:
        return f"charger {c.id} is offline with a car: counted at its failsafe {failsafe_a:g} A"
    return ""
