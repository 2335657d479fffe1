"""The charging-profile builder: the failsafe layer and the dynamic layer, as payload dicts.

Pure: time comes in as `now` (epoch seconds). Dicts use snake_case keys; the ocpp library
turns them into the camelCase wire format.

Two layers, both TxDefaultProfile on the configured connector / EVSE:
- the base profile (stack `BASE_STACK`, no end) holds the charger's failsafe current;
- the dynamic profile (higher stack) holds the allocated current until the validity ends,
  then the failsafe current: its schedule carries a final period at the failsafe limit
  starting where the validity ends, besides `valid_to`. Some firmware (MicroOcpp 1.2.0)
  never acts on `valid_to` but does follow schedule periods, so the failsafe must live in
  the schedule; a gateway that stops refreshing leaves the charger at the failsafe current.
Chargers that only take stack level 0 get the same one profile without `valid_to` (it
would end the failsafe too): the final period is their fallback.

A charger that switches phases (`phase_switching`) gets `numberPhases` in every period
of the dynamic layer, the failsafe period included: a gateway that goes quiet must not
make the charger switch under load. In 2.0.1 a 1-phase period also names
`phaseToUse` = 1 (L1), the line the allocator counts a 1-phase car on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

BASE_ID = 1001
DYNAMIC_ID = 1002
BASE_STACK = 0
PURPOSE = "TxDefaultProfile"
# Charger clocks come from our BootNotification at 1 s resolution and may run ahead;
# a start in the past keeps "now" inside the schedule (reference/ocpp.md §0.5).
START_BACKDATE_S = 300


def iso(t: float) -> str:
    """Epoch seconds -> OCPP dateTime (UTC, milliseconds)."""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True, slots=True)
class Layer:
    """One profile to install: what it limits to, in the unit the charger takes."""

    profile_id: int
    stack_level: int
    limit: float
    unit: str  # "A" | "W"
    valid_to: float | None = None
    # (seconds after the schedule start, limit) appended after the first period.
    tail: tuple[float, float] | None = None
    phases: int | None = None  # numberPhases in each period (None: not sent)


def wire_limit(amps: float, unit: str, step_a: float, volts: float, phases: int) -> float:
    """The number to send: amps rounded down to `step_a`, or watts for W-only chargers."""
    steps = math.floor(amps / step_a + 1e-9)
    rounded = round(steps * step_a, 1)
    if unit == "A":
        return rounded
    return float(math.floor(rounded * volts * phases))


def base_layer(failsafe_a: float, unit: str, step_a: float, volts: float, phases: int) -> Layer:
    # In W the charger divides by the phases the car uses: count the charger's phases so
    # that a car on all of them gets the failsafe current (a 1-phase car on a 3-phase
    # W-only charger may then draw up to phases x failsafe_a, capped by the charger).
    return Layer(BASE_ID, BASE_STACK, wire_limit(failsafe_a, unit, step_a, volts, phases), unit)


def schedule_origin_s(kind: str, session_elapsed_s: float | None) -> float:
    """How long before now the charger's schedule clock started.

    Absolute schedules start `START_BACKDATE_S` ago; relative ones count from the start of
    the session (or from receipt when there is none), which the gateway only knows to its
    own message timing.
    """
    if kind == "absolute":
        return START_BACKDATE_S
    return max(0.0, session_elapsed_s or 0.0)


def dynamic_layer(
    limit: float,
    unit: str,
    stack_level: int,
    now: float,
    validity_s: float,
    base: Layer,
    origin_s: float = START_BACKDATE_S,
    phases: int | None = None,
) -> Layer:
    """The allocated limit until `validity_s` from now, then the failsafe (see module doc)."""
    tail = (math.ceil(origin_s + validity_s), base.limit)
    # At the base's stack level this profile replaces the base: no valid_to then.
    valid_to = now + validity_s if stack_level > base.stack_level else None
    return Layer(DYNAMIC_ID, stack_level, limit, unit, valid_to=valid_to, tail=tail, phases=phases)


def _periods(layer: Layer, version: str) -> list[dict]:
    periods = [{"start_period": 0, "limit": layer.limit}]
    if layer.tail is not None:
        periods.append({"start_period": int(layer.tail[0]), "limit": layer.tail[1]})
    if layer.phases is not None:
        for period in periods:
            period["number_phases"] = layer.phases
            if version == "2.0.1" and layer.phases == 1:
                period["phase_to_use"] = 1
    return periods


def _schedule(layer: Layer, kind: str, now: float, version: str) -> dict:
    periods = _periods(layer, version)
    schedule: dict = {"charging_rate_unit": layer.unit, "charging_schedule_period": periods}
    if kind == "absolute":
        schedule["start_schedule"] = iso(now - START_BACKDATE_S)
    return schedule


def _profile(layer: Layer, kind: str, id_key: str, schedule: dict | list) -> dict:
    profile = {
        id_key: layer.profile_id,
        "stack_level": layer.stack_level,
        "charging_profile_purpose": PURPOSE,
        "charging_profile_kind": kind.capitalize(),
        "charging_schedule": schedule,
    }
    if layer.valid_to is not None:
        profile["valid_to"] = iso(layer.valid_to)
    return profile


def profile_16(layer: Layer, kind: str, now: float) -> dict:
    """A 1.6 `csChargingProfiles` value."""
    return _profile(layer, kind, "charging_profile_id", _schedule(layer, kind, now, "1.6"))


def profile_201(layer: Layer, kind: str, now: float) -> dict:
    """A 2.0.1 `chargingProfile` value (its schedule is a list)."""
    schedule = [{"id": layer.profile_id, **_schedule(layer, kind, now, "2.0.1")}]
    return _profile(layer, kind, "id", schedule)
