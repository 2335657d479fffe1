"""1-/3-phase switching on the OCPP side: the firmware's word, and what to send.

The controller decides the phase set (`gateway/allocation/phases.py`); the charger is
told with `numberPhases` in its schedule periods (`profiles.py`). Before that the
firmware is asked whether it can switch at all: 1.6 `ConnectorSwitch3to1PhaseSupported`
(GetConfiguration), 2.0.1 `SmartChargingCtrlr.Phases3to1` (GetVariables). Where it says
no, switching is refused for that charger with one log line and it stays on all its
phases; where it does not say, switching goes ahead and a charger that does not follow
is found from its measured draw (the controller).
"""

from __future__ import annotations

import logging

from ocpp.exceptions import OCPPError
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201

from gateway.ocpp.state import Live

log = logging.getLogger(__name__)

KEY_16 = "ConnectorSwitch3to1PhaseSupported"
COMPONENT_201, VARIABLE_201 = "SmartChargingCtrlr", "Phases3to1"


async def read_support(charger_id: str, session: object) -> bool | None:
    """The firmware's answer: True, False, or None where it gives none. Logs the outcome."""
    try:
        if getattr(session, "protocol", "1.6") == "2.0.1":
            value = await _ask_201(session)
            key = f"{COMPONENT_201}.{VARIABLE_201}"
        else:
            value = await _ask_16(session)
            key = KEY_16
    except (OCPPError, TimeoutError) as exc:
        log.warning("%s: could not read its phase switching key: %s", charger_id, exc)
        return None
    said = None if value is None else value.strip().lower() == "true"
    if said is False:
        log.warning(
            "%s: phase_switching = true, but the firmware says %s = %s: refused, the"
            " charger stays on all its phases",
            charger_id,
            key,
            value,
        )
    elif said is None:
        log.info(
            "%s: the firmware does not report %s: switching phases anyway; a charger that"
            " does not follow is found from its draw",
            charger_id,
            key,
        )
    else:
        log.info("%s: phase switching supported (%s = %s)", charger_id, key, value)
    return said


async def _ask_16(session: object) -> str | None:
    result = await session.call(call16.GetConfiguration(key=[KEY_16]), suppress=False)  # type: ignore[attr-defined]
    for entry in result.configuration_key or []:
        if isinstance(entry, dict) and entry.get("key") == KEY_16:
            return str(entry.get("value"))
    return None


async def _ask_201(session: object) -> str | None:
    wanted = [{"component": {"name": COMPONENT_201}, "variable": {"name": VARIABLE_201}}]
    request = call201.GetVariables(get_variable_data=wanted)
    result = await session.call(request, suppress=False)  # type: ignore[attr-defined]
    for entry in result.get_variable_result or []:
        if isinstance(entry, dict) and entry.get("attribute_status") == "Accepted":
            return str(entry.get("attribute_value"))
    return None


def phases_to_send(live: Live) -> int | None:
    """The phase set for the schedule periods: the hub's, unless the firmware said no."""
    return None if live.phase_switch is False else live.wanted_phases
