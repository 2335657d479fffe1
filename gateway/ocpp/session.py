"""One connected charger: the 1.6 and 2.0.1 message handlers and the commands we send.

Handlers only record what the charger says into its `Live` record; they never call the
charger (that would block the library's receive loop). Commands are coroutines the
per-charger control task (`gateway.ocpp.control`) awaits.

Chargers send vendor extras and slightly off values, so handlers skip the library's
schema check and read leniently: an odd value is logged and the message accepted; a
missing field we need, or an unparsable frame, gets a CallError. Nothing a charger sends
escapes as an exception.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ocpp.exceptions import FormatViolationError, OCPPError, ProtocolError
from ocpp.messages import Call, unpack
from ocpp.routing import on
from ocpp.v16 import ChargePoint as CP16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as res16
from ocpp.v201 import ChargePoint as CP201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as res201
from websockets.exceptions import ConnectionClosed

from gateway.ocpp.profiles import Layer, iso, profile_16, profile_201
from gateway.ocpp.state import Live, Reading, parse_meter_values, status_16, status_201
from gateway.ratelimit import RateLimiter

log = logging.getLogger(__name__)

MEASURANDS = (
    "Current.Import",
    "Current.Offered",
    "Voltage",
    "Power.Active.Import",
    "Energy.Active.Import.Register",
)
# What we fall back to when a charger refuses the full list.
CORE_MEASURANDS = ("Current.Import", "Power.Active.Import", "Energy.Active.Import.Register")
_UNITS = {"current": "A", "a": "A", "power": "W", "w": "W"}
# SetChargingProfile goes to every charger every refresh, so it skips the library's schema
# check (two thread-pool hops per call; halves the push CPU at 500 chargers). The builder's
# output is schema-checked by the simulated chargers in the tests.
SKIP_CHECK = True


# What the library logs at a charger's will and we log ourselves, once and rate-limited:
# a CallError reply (the control task's line names the refusal) and a reply to no call.
_OURS = ("Received a CALLError", "Ignoring response with unknown unique id")


class _DropChargerProvoked(logging.Filter):
    """Drop the library's tracebacks for each CallError we answer (`lenient` logged a
    line) and its lines about replies (see `_OURS`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], OCPPError):
            return False
        return not str(record.msg).startswith(_OURS)


# The library's own logger for our sessions: frames at INFO (shown only when `[log]
# show_libraries` names "ocpp"), without what a charger provokes (see above).
FRAMES = logging.getLogger("ocpp.csms")
FRAMES.addFilter(_DropChargerProvoked())
# A charger's text in a log line is cut to this.
TEXT_MAX = 200


def one_line(text: object) -> str:
    """A charger's text for a log line: whitespace runs (newlines too) become one space,
    and it is cut to `TEXT_MAX` characters."""
    flat = " ".join(str(text or "").split())
    return flat if len(flat) <= TEXT_MAX else flat[: TEXT_MAX - 3] + "..."


@dataclass(frozen=True, slots=True)
class Capabilities:
    rate_units: frozenset[str] = frozenset()  # {"A", "W"} subset; empty = not reported
    max_stack: int | None = None
    connectors: int | None = None
    profiles: tuple[str, ...] = ()


def _rate_units(text: str | None) -> frozenset[str]:
    parts = (p.strip().lower() for p in str(text or "").split(","))
    return frozenset(_UNITS[p] for p in parts if p in _UNITS)


def _tag(value: Any) -> str | None:
    """An id tag / token as given (bounded: it is the charger's text)."""
    return str(value)[:64] if value is not None else None


def _int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def lenient(handler: Callable) -> Callable:
    """Turn any failure in a handler into one log line and a CallError with a fitting code."""

    @functools.wraps(handler)
    async def wrapper(self: Session, **kw: Any) -> Any:
        try:
            result = handler(self, **kw)
            return await result if inspect.isawaitable(result) else result
        except OCPPError as exc:
            self.say(logging.WARNING, f"{handler.__name__} refused: {one_line(exc.description)}")
            raise
        except TypeError as exc:  # a required field missing
            self.say(logging.WARNING, f"{handler.__name__} refused: {one_line(exc)}")
            raise ProtocolError(str(exc)) from exc
        except Exception as exc:
            self.say(logging.WARNING, f"{handler.__name__} refused: {one_line(repr(exc))}")
            raise FormatViolationError(f"cannot read message: {exc}") from exc

    return wrapper


def _message_id(raw: Any) -> str:
    try:
        msg = json.loads(raw)
        return str(msg[1]) if isinstance(msg, list) and len(msg) > 1 else "-1"
    except (ValueError, TypeError, RecursionError):
        return "-1"


class _LenientResults:
    """The library builds each reply's dataclass from every field the charger sent, so a
    vendor extra raises TypeError (schema checks, skipped for speed, would not catch it
    either). Keep the fields the dataclass knows; drop the rest."""

    def __init__(self, module: Any) -> None:
        self.module = module

    def __getattr__(self, name: str) -> Callable[..., Any]:
        result_class = getattr(self.module, name)
        known = {f.name for f in dataclasses.fields(result_class)}

        def build(**fields: Any) -> Any:
            return result_class(**{k: v for k, v in fields.items() if k in known})

        return build


class Session:
    """What both versions share: the record, the frame guard, time, heartbeat."""

    id: str
    protocol: str
    _send: Callable
    route_map: dict
    _call_result: Any

    def setup_session(self, live: Live, lines: int, heartbeat_s: int, limiter: RateLimiter) -> None:
        self.live = live
        self.lines = lines
        self.heartbeat_s = heartbeat_s
        self.limiter = limiter
        self._call_result = _LenientResults(self._call_result)

    def say(self, level: int, text: str) -> None:
        """A log line about this charger; rate-limited, since the charger can provoke it."""
        self.limiter.log(log, level, self.id, time.monotonic(), "%s: %s", self.id, text)

    async def route_message(self, raw_msg: Any) -> None:
        """The library drops unparsable frames silently; answer them with a CallError."""
        self.live.seen(time.time())
        try:
            if not isinstance(raw_msg, str):
                raise ProtocolError("binary frames are not OCPP-J")
            msg = unpack(raw_msg)
        except (OCPPError, RecursionError) as exc:
            if isinstance(exc, RecursionError):  # json gives up on `[` x 1000
                exc = FormatViolationError("JSON nested too deeply")
            self.say(logging.WARNING, f"malformed frame ({exc.code}): {one_line(repr(raw_msg))}")
            error = [4, _message_id(raw_msg), exc.code, exc.description or "", {}]
            await self._send(json.dumps(error))
            return
        if isinstance(msg, Call):
            if not isinstance(msg.action, str) or not isinstance(msg.payload, dict):
                self.say(
                    logging.WARNING, f"call {one_line(repr(msg.action))} is not action + object"
                )
                error = ProtocolError("a call needs an action name and a JSON object")
                await self._send(msg.create_call_error(error).to_json())
                return
            if msg.action not in self.route_map:
                self.say(logging.WARNING, f"unsupported action {one_line(repr(msg.action))}")
        try:
            await super().route_message(raw_msg)  # type: ignore[misc]
        except ConnectionClosed:
            raise
        except Exception as exc:  # the library's own trouble must not end the session
            self.say(logging.WARNING, f"frame not handled ({exc!r}): {one_line(repr(raw_msg))}")

    def set_status(self, connector: Any, status: str | None, raw: Any) -> None:
        number = _int(connector)
        if status is None or number is None:
            self.say(logging.WARNING, f"ignoring status {raw!r:.60} on connector {connector!r:.20}")
            return
        if self.live.statuses.get(number) != status:
            self.say(logging.INFO, f"connector {number} {status}")
        self.live.statuses[number] = status
        self.live.learnt()

    def read_meter_values(self, meter_value: Any) -> Reading:
        reading = parse_meter_values(meter_value, self.lines)
        if reading.skipped:
            self.say(logging.INFO, f"skipped {reading.skipped} meter value(s): not a number")
        return reading

    def take_meter_values(self, meter_value: Any) -> None:
        self.live.apply(self.read_meter_values(meter_value), time.time(), time.monotonic())

    def boot(self, vendor: str, model: str) -> None:
        self.say(logging.INFO, f"boot {one_line(vendor)} {one_line(model)} ({self.protocol})")
        self.live.booted(vendor, model)


class Session16(Session, CP16):
    protocol = "1.6"

    @on("BootNotification", skip_schema_validation=True)
    @lenient
    def on_boot(self, charge_point_vendor: str, charge_point_model: str, **kw: Any) -> Any:
        self.boot(str(charge_point_vendor), str(charge_point_model))
        return res16.BootNotification(
            current_time=iso(time.time()), interval=self.heartbeat_s, status="Accepted"
        )

    @on("Heartbeat", skip_schema_validation=True)
    @lenient
    def on_heartbeat(self, **kw: Any) -> Any:
        return res16.Heartbeat(current_time=iso(time.time()))

    @on("StatusNotification", skip_schema_validation=True)
    @lenient
    def on_status(self, connector_id: Any, status: Any, **kw: Any) -> Any:
        self.set_status(connector_id, status_16(status), status)
        return res16.StatusNotification()

    @on("Authorize", skip_schema_validation=True)
    @lenient
    def on_authorize(self, id_tag: Any, **kw: Any) -> Any:
        return res16.Authorize(id_tag_info={"status": "Accepted"})

    @on("StartTransaction", skip_schema_validation=True)
    @lenient
    def on_start(self, connector_id: Any, meter_start: Any, **kw: Any) -> Any:
        transaction = int(time.time() * 1000) % 2_000_000_000
        meter = _int(meter_start)
        self.live.start_session(
            str(transaction), None if meter is None else float(meter), time.monotonic()
        )
        self.live.id_tag = _tag(kw.get("id_tag"))
        self.say(
            logging.INFO, f"transaction {transaction} started on connector {connector_id!r:.20}"
        )
        return res16.StartTransaction(
            transaction_id=transaction, id_tag_info={"status": "Accepted"}
        )

    @on("StopTransaction", skip_schema_validation=True)
    @lenient
    def on_stop(self, meter_stop: Any, transaction_id: Any, **kw: Any) -> Any:
        meter = _int(meter_stop)
        self.live.stop_session(None if meter is None else float(meter))
        self.say(logging.INFO, f"transaction {transaction_id!r:.40} stopped")
        return res16.StopTransaction(id_tag_info={"status": "Accepted"})

    @on("MeterValues", skip_schema_validation=True)
    @lenient
    def on_meter_values(self, connector_id: Any, meter_value: Any, **kw: Any) -> Any:
        transaction = kw.get("transaction_id")
        if transaction is not None:  # proof of a session, also one from before our restart
            self.live.join_session(str(transaction), time.monotonic())
        self.take_meter_values(meter_value)
        return res16.MeterValues()

    # Commands (called from the control task only).

    async def read_capabilities(self) -> Capabilities:
        result = await self.call(call16.GetConfiguration(), suppress=False)
        keys = {
            str(k.get("key")): k.get("value")
            for k in (result.configuration_key or [])
            if isinstance(k, dict)
        }
        return Capabilities(
            rate_units=_rate_units(keys.get("ChargingScheduleAllowedChargingRateUnit")),
            max_stack=_int(keys.get("ChargeProfileMaxStackLevel")),
            connectors=_int(keys.get("NumberOfConnectors")),
            profiles=tuple(
                p.strip() for p in str(keys.get("SupportedFeatureProfiles") or "").split(",")
            ),
        )

    async def configure_meter(self, interval_s: int) -> bool:
        await self._change("MeterValueSampleInterval", str(interval_s))
        if await self._change("MeterValuesSampledData", ",".join(MEASURANDS)):
            return True
        return await self._change("MeterValuesSampledData", ",".join(CORE_MEASURANDS))

    async def _change(self, key: str, value: str) -> bool:
        result = await self.call(call16.ChangeConfiguration(key=key, value=value), suppress=False)
        return result.status in ("Accepted", "RebootRequired")

    async def make_available(self) -> str:
        request = call16.ChangeAvailability(connector_id=0, type="Operative")
        return (await self.call(request, suppress=False)).status

    async def set_profile(self, connector: int, layer: Layer, kind: str, now: float) -> str:
        request = call16.SetChargingProfile(
            connector_id=connector, cs_charging_profiles=profile_16(layer, kind, now)
        )
        return (await self.call(request, suppress=False, skip_schema_validation=SKIP_CHECK)).status

    async def clear_profile(self, profile_id: int) -> str:
        request = call16.ClearChargingProfile(id=profile_id)
        return (await self.call(request, suppress=False)).status

    async def ask_state(self, connectors: int) -> None:
        """After a connect without Boot: the status of each connector, and meter values."""
        for connector in range(1, connectors + 1):
            request = call16.TriggerMessage(
                requested_message="StatusNotification", connector_id=connector
            )
            await self.call(request, suppress=False)
        await self.ask_meter_values(1)

    async def ask_meter_values(self, connector: int) -> None:
        request = call16.TriggerMessage(requested_message="MeterValues", connector_id=connector)
        await self.call(request, suppress=False)


def _variable(component: str, variable: str, value: str | None = None) -> dict:
    entry: dict = {"component": {"name": component}, "variable": {"name": variable}}
    if value is not None:
        entry["attribute_value"] = value
    return entry


def _names(result: dict) -> tuple[str, str]:
    """(component, variable) of a GetVariables / SetVariables result, read leniently."""
    names = []
    for key in ("component", "variable"):
        part = result.get(key)
        names.append(str(part.get("name", "")) if isinstance(part, dict) else "")
    return names[0], names[1]


class Session201(Session, CP201):
    protocol = "2.0.1"

    def setup_session(self, live: Live, lines: int, heartbeat_s: int, limiter: RateLimiter) -> None:
        super().setup_session(live, lines, heartbeat_s, limiter)
        self._connector_status: dict[int, str] = {}

    def _status_of(self, evse: int) -> None:
        raw = self._connector_status.get(evse)
        if raw is not None:
            in_tx = self.live.transaction is not None
            self.set_status(evse, status_201(raw, self.live.charging_state, in_tx), raw)

    @on("BootNotification", skip_schema_validation=True)
    @lenient
    def on_boot(self, charging_station: Any, **kw: Any) -> Any:
        station = charging_station if isinstance(charging_station, dict) else {}
        self.boot(str(station.get("vendor_name", "")), str(station.get("model", "")))
        return res201.BootNotification(
            current_time=iso(time.time()), interval=self.heartbeat_s, status="Accepted"
        )

    @on("Heartbeat", skip_schema_validation=True)
    @lenient
    def on_heartbeat(self, **kw: Any) -> Any:
        return res201.Heartbeat(current_time=iso(time.time()))

    @on("StatusNotification", skip_schema_validation=True)
    @lenient
    def on_status(self, connector_status: Any, evse_id: Any, **kw: Any) -> Any:
        evse = _int(evse_id)
        if evse is None or status_201(connector_status, None, False) is None:
            self.say(
                logging.WARNING,
                f"ignoring status {connector_status!r:.60} on evse {evse_id!r:.20}",
            )
        else:
            self._connector_status[evse] = str(connector_status)
            self._status_of(evse)
        return res201.StatusNotification()

    @on("Authorize", skip_schema_validation=True)
    @lenient
    def on_authorize(self, id_token: Any, **kw: Any) -> Any:
        return res201.Authorize(id_token_info={"status": "Accepted"})

    @on("TransactionEvent", skip_schema_validation=True)
    @lenient
    def on_transaction_event(self, event_type: Any, transaction_info: Any, **kw: Any) -> Any:
        info = transaction_info if isinstance(transaction_info, dict) else {}
        event = str(event_type)
        reading = self.read_meter_values(kw.get("meter_value"))
        if event == "Started":
            self.live.start_session(
                str(info.get("transaction_id", "")), reading.energy_wh, time.monotonic()
            )
            self.say(logging.INFO, f"transaction {info.get('transaction_id')!r:.40} started")
        elif event == "Updated":  # also a session from before our restart
            self.live.join_session(str(info.get("transaction_id", "")), time.monotonic())
        token = kw.get("id_token")
        if isinstance(token, dict) and event != "Ended":
            self.live.id_tag = _tag(token.get("id_token"))
        if info.get("charging_state") is not None:
            self.live.charging_state = str(info["charging_state"])
        self.live.apply(reading, time.time(), time.monotonic())
        evse_field = kw.get("evse")
        evse = _int(evse_field.get("id")) if isinstance(evse_field, dict) else None
        if event == "Ended":
            self.live.stop_session(reading.energy_wh)
            self.say(logging.INFO, f"transaction {info.get('transaction_id')!r:.40} ended")
            self.set_status(evse or 1, "Finishing", event)
        else:
            self._status_of(evse or 1)
        return res201.TransactionEvent()

    @on("MeterValues", skip_schema_validation=True)
    @lenient
    def on_meter_values(self, evse_id: Any, meter_value: Any, **kw: Any) -> Any:
        self.take_meter_values(meter_value)
        return res201.MeterValues()

    @on("NotifyEvent", skip_schema_validation=True)
    def on_notify_event(self, **kw: Any) -> Any:
        return res201.NotifyEvent()

    @on("NotifyReport", skip_schema_validation=True)
    def on_notify_report(self, **kw: Any) -> Any:
        return res201.NotifyReport()

    # Commands (called from the control task only).

    async def read_capabilities(self) -> Capabilities:
        wanted = [
            _variable("SmartChargingCtrlr", "RateUnit"),
            _variable("SmartChargingCtrlr", "ProfileStackLevel"),
            _variable("SmartChargingCtrlr", "Available"),
        ]
        result = await self.call(call201.GetVariables(get_variable_data=wanted), suppress=False)
        values = {
            _names(r)[1]: r.get("attribute_value")
            for r in result.get_variable_result or []
            if isinstance(r, dict) and r.get("attribute_status") == "Accepted"
        }
        available = str(values.get("Available", "true")).lower() == "true"
        return Capabilities(
            rate_units=_rate_units(values.get("RateUnit")),
            max_stack=_int(values.get("ProfileStackLevel")),
            profiles=("SmartCharging",) if available else (),
        )

    async def configure_meter(self, interval_s: int) -> bool:
        """As 1.6: the full measurand list, else the core one (chargers reject lists with
        members they lack, and MicroOcpp then sends no meter values at all). The aligned
        data is a bonus: chargers without it answer UnknownVariable."""
        for measurands in (MEASURANDS, CORE_MEASURANDS):
            listed = ",".join(measurands)
            data = [
                _variable("SampledDataCtrlr", "TxUpdatedInterval", str(interval_s)),
                _variable("SampledDataCtrlr", "TxUpdatedMeasurands", listed),
                _variable("AlignedDataCtrlr", "Interval", str(interval_s)),
                _variable("AlignedDataCtrlr", "Measurands", listed),
            ]
            result = await self.call(call201.SetVariables(set_variable_data=data), suppress=False)
            taken = {
                _names(r)
                for r in result.set_variable_result or []
                if isinstance(r, dict)
                and r.get("attribute_status") in ("Accepted", "RebootRequired")
            }
            if ("SampledDataCtrlr", "TxUpdatedMeasurands") in taken:
                return ("SampledDataCtrlr", "TxUpdatedInterval") in taken
        return False

    async def make_available(self) -> str:
        request = call201.ChangeAvailability(operational_status="Operative")
        return (await self.call(request, suppress=False)).status

    async def set_profile(self, connector: int, layer: Layer, kind: str, now: float) -> str:
        request = call201.SetChargingProfile(
            evse_id=connector, charging_profile=profile_201(layer, kind, now)
        )
        return (await self.call(request, suppress=False, skip_schema_validation=SKIP_CHECK)).status

    async def clear_profile(self, profile_id: int) -> str:
        request = call201.ClearChargingProfile(charging_profile_id=profile_id)
        return (await self.call(request, suppress=False)).status

    async def ask_state(self, connectors: int) -> None:
        """After a connect without Boot: the status of each EVSE, and meter values."""
        for evse in range(1, connectors + 1):
            request = call201.TriggerMessage(
                requested_message="StatusNotification", evse={"id": evse, "connector_id": 1}
            )
            await self.call(request, suppress=False)
        await self.ask_meter_values(1)

    async def ask_meter_values(self, evse: int) -> None:
        request = call201.TriggerMessage(requested_message="MeterValues", evse={"id": evse})
        await self.call(request, suppress=False)


SESSIONS: dict[str, type[Session16] | type[Session201]] = {
    "ocpp1.6": Session16,
    "ocpp2.0.1": Session201,
}
