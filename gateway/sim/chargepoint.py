"""A simulated charge point (OCPP 1.6 or 2.0.1) on a real websocket, holding an `EV`.

It honours charging profiles the way the specs say: purposes (ChargePointMax /
ChargingStationMax caps, TxProfile over TxDefaultProfile), the highest valid stack level
wins, validFrom/validTo and schedule periods count, limits come in A or W (W divided by
voltage x the car's phases). It reports status changes and periodic meter values, and
can be told to disconnect, reboot, ignore its limits or send arbitrary frames.

Times come from `clock` (epoch seconds) so tests can move it; the socket stays real.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import ssl
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from ocpp.exceptions import NotImplementedError as NotImplementedCallError
from ocpp.exceptions import OCPPError
from ocpp.routing import on
from ocpp.v16 import ChargePoint as CP16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as res16
from ocpp.v201 import ChargePoint as CP201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as res201
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from gateway.ocpp.profiles import iso, parse_iso
from gateway.sim.ev import EV, IEC_MIN_A
from gateway.sim.quirks import QUIRKS

log = logging.getLogger(__name__)

MAX_PURPOSES = ("ChargePointMaxProfile", "ChargingStationMaxProfile")
_CHARGING_STATES = ("Charging", "SuspendedEV", "SuspendedEVSE")


@dataclass(frozen=True, slots=True)
class Profile:
    """An installed charging profile, version-neutral."""

    id: int
    stack: int
    purpose: str
    connector: int
    kind: str
    unit: str
    start: float | None
    periods: tuple[tuple[float, float], ...]  # (start_period s, limit)
    # Each period's numberPhases (None: not given, all the charger has).
    period_phases: tuple[int | None, ...] = ()
    valid_from: float | None = None
    valid_to: float | None = None
    duration: float | None = None
    # Set when the profile arrived: where a Relative schedule counts from without a session.
    received: float = 0.0

    def limit_at(self, now: float, session_start: float | None) -> float | None:
        """The limit this profile sets at `now`, or None when it does not apply."""
        period = self._period_at(now, session_start)
        return None if period is None else self.periods[period][1]

    def phases_at(self, now: float, session_start: float | None) -> int | None:
        """The numberPhases of the period in force at `now` (None: not given)."""
        period = self._period_at(now, session_start)
        if period is None or period >= len(self.period_phases):
            return None
        return self.period_phases[period]

    def _period_at(self, now: float, session_start: float | None) -> int | None:
        if self.valid_from is not None and now < self.valid_from:
            return None
        if self.valid_to is not None and now >= self.valid_to:
            return None
        origin = self.start if self.kind == "Absolute" else session_start or self.received
        elapsed = now - (origin if origin is not None else now)
        if elapsed < 0 or (self.duration is not None and elapsed >= self.duration):
            return None
        period = None
        for i, (start, _) in enumerate(self.periods):
            if start <= elapsed:
                period = i
        return period


def _time(text: Any) -> float | None:
    return parse_iso(str(text)) if text else None


def read_profile(p: dict, connector: int, version: str, now: float) -> Profile:
    """A received 1.6 `csChargingProfiles` or 2.0.1 `chargingProfile` (snake_case dict)."""
    schedule = p["charging_schedule"]
    if version == "2.0.1":
        schedule = schedule[0]
    return Profile(
        id=int(p["charging_profile_id"] if version == "1.6" else p["id"]),
        stack=int(p["stack_level"]),
        purpose=str(p["charging_profile_purpose"]),
        connector=connector,
        kind=str(p["charging_profile_kind"]),
        unit=str(schedule["charging_rate_unit"]),
        start=_time(schedule.get("start_schedule")),
        periods=tuple(
            (float(x["start_period"]), float(x["limit"]))
            for x in schedule["charging_schedule_period"]
        ),
        period_phases=tuple(
            int(x["number_phases"]) if x.get("number_phases") else None
            for x in schedule["charging_schedule_period"]
        ),
        valid_from=_time(p.get("valid_from")),
        valid_to=_time(p.get("valid_to")),
        duration=float(schedule["duration"]) if schedule.get("duration") else None,
        received=now,
    )




class SimChargePoint:
    def __init__(
        self,
        cp_id: str,
        url: str,
        *,
        version: str = "1.6",
        password: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        ev: EV | None = None,
        clock: Callable[[], float] = time.time,
        max_a: float = 32.0,
        voltage_v: float = 230.0,
        rate_units: tuple[str, ...] = ("A", "W"),
        max_stack_level: int = 8,
        meter_interval_s: float = 10.0,
        boot_on_reconnect: bool = True,
        reconnect_s: float = 0.3,
        tick_s: float = 0.05,
        quirks: frozenset[str] = frozenset(),
    ) -> None:
        if version not in ("1.6", "2.0.1"):
            raise ValueError(f"version must be 1.6 or 2.0.1, not {version!r}")
        if unknown := set(quirks) - QUIRKS:
            raise ValueError(f"unknown quirks {sorted(unknown)}; known: {sorted(QUIRKS)}")
        self.quirks = set(quirks)
        self.id, self.version = cp_id, version
        self.url = _with_credentials(url, cp_id, password)
        self.ssl_context = ssl_context
        self.ev = ev or EV()
        self.clock = clock
        self.max_a, self.voltage_v = max_a, voltage_v
        if "watts_only" in self.quirks:
            rate_units = ("W",)
        self.rate_units, self.max_stack_level = rate_units, max_stack_level
        self.meter_interval_s = meter_interval_s
        self.boot_on_reconnect, self.reconnect_s, self.tick_s = (
            boot_on_reconnect,
            reconnect_s,
            tick_s,
        )
        self.ignore_limits = False
        # Connectors (1.6) / EVSEs (2.0.1); the car is at `connector`, the others stay free.
        self.connectors = 2 if "two_connectors" in self.quirks else 1
        self.connector = 1
        # Tests: answer every SetChargingProfile with this CallError (a send that fails).
        self.profile_error: OCPPError | None = None
        self.profiles: list[Profile] = []
        self.installs = 0  # SetChargingProfile requests seen
        self.clears = 0  # ClearChargingProfile requests seen
        self.config: dict[str, str] = {}
        self.plugged = False
        self.transaction: str | None = None
        self.session_start: float | None = None
        self.status = "Available"
        self.boots = 0
        self.boots_pending = False
        self.connections = 0
        self.last_error: Exception | None = None
        self.connected = asyncio.Event()
        self._cp: _Sim16 | _Sim201 | None = None
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task | None = None
        self._physics: asyncio.Task | None = None
        self._stopping = False
        self._offline_until = 0.0
        self._seq = 0
        self._meter_sent = 0.0
        self._raw_replies: dict[str, asyncio.Future] = {}
        self.triggered: set[str] = set()  # TriggerMessage requests, sent on the next tick

    # Control from tests, the demo and the bench.

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())
        self._physics = asyncio.create_task(self._drive())

    async def _drive(self) -> None:
        """The car charges whether or not the charger is online."""
        while True:
            now = self.clock()
            self.ev.offer(
                self.effective_limit_a(now) if self.plugged else 0.0,
                now,
                self.effective_phases(now),
            )
            self.ev.advance(now, self.voltage_v)
            await asyncio.sleep(self.tick_s)

    async def stop(self) -> None:
        self._stopping = True
        if self._ws is not None:
            await self._ws.close()
        for task in (self._task, self._physics):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def disconnect(self, offline_s: float = 0.0, forget_profiles: bool = False) -> None:
        """Drop the connection (like a network loss); reconnect after `offline_s`."""
        self._offline_until = time.monotonic() + offline_s
        if forget_profiles:
            self.profiles.clear()
        if self._ws is not None:
            await self._ws.close()

    async def reboot(self, keep_profiles: bool = True) -> None:
        """Restart: drop the connection, maybe lose profiles, boot again."""
        self.boots_pending = True
        await self.disconnect(forget_profiles=not keep_profiles)

    def effective_limit_a(self, now: float | None = None) -> float:
        """The current the charger offers now, from its profiles (or its max without one)."""
        now = self.clock() if now is None else now
        if self.ignore_limits or "ignores_limits" in self.quirks:
            return self.max_a
        limit = self.max_a
        caps = [self._amps(p, now) for p in self._valid(now, MAX_PURPOSES)]
        for purpose in ("TxProfile", "TxDefaultProfile"):
            chosen = self._valid(now, (purpose,))
            if purpose == "TxProfile" and self.transaction is None:
                chosen = []
            if chosen:
                caps.append(self._amps(chosen[0], now))
                break
        return min([limit, *caps])

    def effective_phases(self, now: float) -> int | None:
        """The phase set the charger switches to from its profiles (None: not told)."""
        if self.quirks & {"ignores_phase_switch", "no_phase_switch"}:
            return None
        for purpose in ("TxProfile", "TxDefaultProfile"):
            chosen = self._valid(now, (purpose,))
            if purpose == "TxProfile" and self.transaction is None:
                chosen = []
            if chosen:
                return chosen[0].phases_at(now, self.session_start) or 3
        return 3

    @property
    def switches_phases(self) -> bool:
        """What it reports as ConnectorSwitch3to1PhaseSupported (1.6) / Phases3to1 (2.0.1)."""
        return "no_phase_switch" not in self.quirks

    async def plug_in(self, connector: int = 1) -> None:
        """Plug the car in (at `connector`: 2 needs `two_connectors`) and start a transaction."""
        if connector > self.connectors:
            raise ValueError(f"{self.id} has {self.connectors} connector(s), not {connector}")
        self.connector = connector
        self.plugged = True
        self.session_start = self.clock()
        cp = self._require()
        if self.version == "1.6":
            await self._status_16(cp, "Preparing")
            await cp.call(call16.Authorize(id_tag="SIMTAG"))
            result = await cp.call(
                call16.StartTransaction(
                    connector_id=self.connector,
                    id_tag="SIMTAG",
                    meter_start=int(self.ev.delivered_wh),
                    timestamp=iso(self.clock()),
                )
            )
            self.transaction = str(result.transaction_id)
        else:
            self.transaction = uuid.uuid4().hex[:16]
            await self._tx_event("Started", "CablePluggedIn", meter=True)
        await self._report_status()

    async def unplug(self) -> None:
        cp = self._require()
        transaction, self.transaction, self.plugged = self.transaction, None, False
        if transaction is not None and self.version == "1.6":
            await cp.call(
                call16.StopTransaction(
                    meter_stop=int(self.ev.delivered_wh),
                    timestamp=iso(self.clock()),
                    transaction_id=int(transaction),
                    reason="EVDisconnected",
                )
            )
        elif transaction is not None:
            self.transaction = transaction
            await self._tx_event("Ended", "EVCommunicationLost", meter=True)
            self.transaction = None
        await self._report_status()

    async def send_raw(self, frame: str | bytes, timeout: float = 5.0) -> list | None:
        """Send any frame (bytes: a binary one); return the reply for its message id ("-1"
        if it has none, or the gateway cannot read it)."""
        ws = self._ws
        if ws is None:
            raise RuntimeError(f"{self.id} is not connected")
        try:
            msg = json.loads(frame)
            key = str(msg[1]) if isinstance(msg, list) and len(msg) > 1 else "-1"
        except (ValueError, TypeError, RecursionError):
            key = "-1"
        waiter = asyncio.get_running_loop().create_future()
        self._raw_replies[key] = waiter
        await ws.send(frame)
        try:
            return await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            return None
        finally:
            self._raw_replies.pop(key, None)

    # Profile logic (called by the protocol handlers).

    def _valid(self, now: float, purposes: tuple[str, ...]) -> list[Profile]:
        """Applicable profiles, best first: highest stack, then connector-specific over 0."""
        found = [
            p
            for p in self.profiles
            if p.purpose in purposes
            and p.connector in (0, self.connector)
            and p.limit_at(now, self.session_start) is not None
        ]
        return sorted(found, key=lambda p: (p.stack, p.connector), reverse=True)

    def _amps(self, p: Profile, now: float) -> float:
        limit = p.limit_at(now, self.session_start) or 0.0
        return limit if p.unit == "A" else limit / (self.voltage_v * self.ev.lines)

    def answer_profile(self) -> None:
        """Count a SetChargingProfile request; raise the CallError it is answered with."""
        self.installs += 1
        if self.profile_error is not None:
            raise self.profile_error
        if "set_profile_not_implemented" in self.quirks and self.version == "2.0.1":
            # MicroOcpp / SAP in 2.0.1
            raise NotImplementedCallError(details={"cause": "smart charging not built in"})

    def install(self, profile: Profile) -> str:
        if "ignores_valid_to" in self.quirks:
            profile = replace(profile, valid_to=None)  # never re-evaluated at validTo
        if profile.unit not in self.rate_units:
            return "Rejected"
        if profile.stack > self.max_stack_level or profile.connector > self.connectors:
            return "Rejected"
        if profile.purpose == "TxProfile" and self.transaction is None:
            return "Rejected"
        if profile.purpose in MAX_PURPOSES and profile.connector != 0:
            return "Rejected"
        if (profile.kind == "Absolute") != (profile.start is not None):
            return "Rejected"
        self.profiles = [
            p
            for p in self.profiles
            if p.id != profile.id
            and (p.stack, p.purpose, p.connector)
            != (profile.stack, profile.purpose, profile.connector)
        ]
        self.profiles.append(profile)
        return "Accepted"

    def clear(self, profile_id: int | None, purpose: str | None, stack: int | None) -> str:
        self.clears += 1
        keep = [
            p
            for p in self.profiles
            if not (
                (profile_id is None or p.id == profile_id)
                and (purpose is None or p.purpose == purpose)
                and (stack is None or p.stack == stack)
            )
        ]
        cleared = len(keep) != len(self.profiles)
        self.profiles = keep
        return "Accepted" if cleared else "Unknown"

    # The connection and its ticker.

    def _require(self) -> _Sim16 | _Sim201:
        if self._cp is None:
            raise RuntimeError(f"{self.id} is not connected")
        return self._cp

    async def _run(self) -> None:
        while not self._stopping:
            wait = self._offline_until - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                await self._session()
            except (OSError, InvalidHandshake, ConnectionClosed, TimeoutError) as exc:
                # Once per outage at INFO: a charger retries every reconnect_s.
                level = logging.DEBUG if repr(exc) == repr(self.last_error) else logging.INFO
                log.log(level, "%s: connection ended: %r", self.id, exc)
                self.last_error = exc
            finally:
                self._cp, self._ws = None, None
                self.connected.clear()
            if not self._stopping:
                await asyncio.sleep(self.reconnect_s)

    async def _session(self) -> None:
        subprotocol = "ocpp1.6" if self.version == "1.6" else "ocpp2.0.1"
        async with connect(
            self.url, subprotocols=[subprotocol], ssl=self.ssl_context, open_timeout=5
        ) as ws:
            cls = _Sim16 if self.version == "1.6" else _Sim201
            cp = cls(self.id, ws, response_timeout=10)
            cp.sim = self
            self._ws, self._cp = ws, cp
            self.connections += 1
            # A call in flight when the socket closes would wait for its reply until the
            # response timeout: whichever of reading and talking ends first ends both.
            tasks = {asyncio.create_task(cp.start()), asyncio.create_task(self._talk(cp))}
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            for task in done:
                task.result()  # raises what ended the session

    async def _talk(self, cp: _Sim16 | _Sim201) -> None:
        # Real firmware: a plain reconnect (the central system restarted) is silent.
        silent = "no_boot_on_reconnect" in self.quirks and not self.boots_pending
        if self.connections == 1 or self.boots_pending or (self.boot_on_reconnect and not silent):
            await self._boot(cp)
        if self.connections == 1 or not silent:
            await self._report_status(force=True)
        self.connected.set()
        while True:
            triggered, self.triggered = self.triggered, set()
            await self._report_status(force="StatusNotification" in triggered)
            if "MeterValues" in triggered:
                await self._meter_values()
            if time.monotonic() >= self._meter_sent + self._interval():
                self._meter_sent = time.monotonic()
                await self._meter_values()
            await asyncio.sleep(self.tick_s)

    async def _boot(self, cp: _Sim16 | _Sim201) -> None:
        self.boots_pending = False
        self.boots += 1
        if self.version == "1.6":
            await cp.call(
                call16.BootNotification(charge_point_model="SimCP", charge_point_vendor="evse-gw")
            )
        else:
            await cp.call(
                call201.BootNotification(
                    charging_station={"model": "SimCP", "vendor_name": "evse-gw"},
                    reason="PowerUp",
                )
            )

    def _interval(self) -> float:
        key = "MeterValueSampleInterval" if self.version == "1.6" else "TxUpdatedInterval"
        try:
            return max(0.05, float(self.config.get(key, self.meter_interval_s)))
        except ValueError:
            return self.meter_interval_s

    def _derived_status(self) -> str:
        if not self.plugged:
            return "Available"
        if self.effective_limit_a() < IEC_MIN_A:
            return "SuspendedEVSE"
        return "SuspendedEV" if self.ev.full else "Charging"

    async def _report_status(self, force: bool = False) -> None:
        status = self._derived_status()
        if status == self.status and not force:
            return
        self.status = status
        cp = self._require()
        if self.version == "1.6":
            await self._status_16(cp, status)
            return
        connector = "Occupied" if self.plugged else "Available"
        await cp.call(
            call201.StatusNotification(
                timestamp=iso(self.clock()),
                connector_status=connector,
                evse_id=self.connector,
                connector_id=1,
            )
        )
        if self.transaction is not None:
            await self._tx_event("Updated", "ChargingStateChanged")

    async def _status_16(self, cp: _Sim16 | _Sim201, status: str) -> None:
        await cp.call(
            call16.StatusNotification(
                connector_id=self.connector, error_code="NoError", status=status
            )
        )

    def _samples(self) -> list[dict]:
        """Sampled values in snake_case; 1.6 wants strings, 2.0.1 numbers and unitOfMeasure."""
        draw = self.ev.line_currents()
        offered = self.effective_limit_a() if self.plugged else 0.0
        reported = draw
        if "absurd_current" in self.quirks:
            reported = (1000.0, 1000.0, 1000.0)
        if "integer_currents" in self.quirks:
            reported = tuple(float(int(c)) for c in reported)  # type: ignore[assignment]
        lines = 1 if "l1_only_currents" in self.quirks else 3
        rows: list[tuple[str, float, str, str | None]] = [
            ("Current.Import", reported[i], "A", f"L{i + 1}") for i in range(lines)
        ]
        voltage = ("Voltage", self.voltage_v, "V", "L1-N")
        if "line_to_line_voltage" in self.quirks:
            voltage = ("Voltage", self.voltage_v * math.sqrt(3), "V", "L1-L2")
        rows += [
            ("Current.Offered", offered, "A", None),
            voltage,
            ("Power.Active.Import", sum(draw) * self.voltage_v, "W", None),
            ("Energy.Active.Import.Register", self.ev.delivered_wh, "Wh", None),
        ]
        measurands = self.measurands()
        out = []
        for measurand, value, unit, phase in rows:
            if measurands is not None and measurand not in measurands:
                continue
            if self.version == "1.6":
                sample: dict = {"value": f"{value:.2f}", "measurand": measurand, "unit": unit}
            else:
                sample = {
                    "value": round(value, 2),
                    "measurand": measurand,
                    "unit_of_measure": {"unit": unit},
                }
            if phase:
                sample["phase"] = phase
            out.append(sample)
        return out

    def measurands(self) -> frozenset[str] | None:
        """The measurands set by the central system, if it set a list we took."""
        key = "MeterValuesSampledData" if self.version == "1.6" else "TxUpdatedMeasurands"
        if key not in self.config:
            return None
        return frozenset(m.strip() for m in self.config[key].split(","))

    def takes_measurands(self, value: str) -> bool:
        """MicroOcpp: `could not find metering device` for a list with Current.Offered."""
        return "rejects_measurands" not in self.quirks or "Current.Offered" not in value

    async def _meter_values(self) -> None:
        cp = self._require()
        if (
            "rejects_measurands" in self.quirks
            and self.version == "2.0.1"
            and self.measurands() is None
        ):
            return  # MicroOcpp 2.0.1 with its measurand list refused: nothing at all
        meter_value = [{"timestamp": iso(self.clock()), "sampled_value": self._samples()}]
        if self.version == "1.6":
            tx = int(self.transaction) if self.transaction else None
            await cp.call(
                call16.MeterValues(
                    connector_id=self.connector, transaction_id=tx, meter_value=meter_value
                )
            )
        elif self.transaction is not None:
            await self._tx_event("Updated", "MeterValuePeriodic", meter=True)
        else:
            await cp.call(call201.MeterValues(evse_id=self.connector, meter_value=meter_value))

    async def _tx_event(self, event: str, trigger: str, meter: bool = False) -> None:
        self._seq += 1
        state = self.status if self.status in _CHARGING_STATES else "EVConnected"
        if not self.plugged:
            state = "Idle"
        meter_value = (
            [{"timestamp": iso(self.clock()), "sampled_value": self._samples()}] if meter else None
        )
        await self._require().call(
            call201.TransactionEvent(
                event_type=event,
                timestamp=iso(self.clock()),
                trigger_reason=trigger,
                seq_no=self._seq,
                transaction_info={"transaction_id": self.transaction, "charging_state": state},
                evse={"id": self.connector, "connector_id": 1},
                meter_value=meter_value,
                # As real stations do: the token that authorised the session, when it starts.
                id_token={"id_token": "SIMTAG", "type": "ISO14443"} if event == "Started" else None,
            )
        )

    def take_raw_reply(self, raw: str) -> bool:
        """Hand a reply to `send_raw`'s waiter; False if nobody waits for it."""
        if not self._raw_replies:
            return False
        try:
            msg = json.loads(raw)
        except ValueError:
            return False
        waiter = (
            self._raw_replies.get(str(msg[1])) if isinstance(msg, list) and len(msg) > 1 else None
        )
        if waiter is None or waiter.done() or msg[0] not in (3, 4):
            return False
        waiter.set_result(msg)
        return True

    def configuration(self) -> dict[str, str]:
        units = {"A": "Current", "W": "Power"}
        smart = {
            "ChargingScheduleAllowedChargingRateUnit": ",".join(units[u] for u in self.rate_units),
            "ChargeProfileMaxStackLevel": str(self.max_stack_level),
        }
        if "no_stack_level_key" in self.quirks:  # SAP 4.11 in 1.6
            smart = {}
        return {
            **smart,
            "NumberOfConnectors": str(self.connectors),
            "SupportedFeatureProfiles": "Core,SmartCharging",
            "MeterValueSampleInterval": str(self.meter_interval_s),
            "ConnectorSwitch3to1PhaseSupported": str(self.switches_phases).lower(),
            **self.config,
        }

    def variables(self) -> dict[str, str]:
        """2.0.1 SmartChargingCtrlr variables (and whatever was set)."""
        smart = {
            "RateUnit": ",".join(self.rate_units),
            "ProfileStackLevel": str(self.max_stack_level),
        }
        if "no_stack_level_key" in self.quirks:
            smart = {}
        smart["Phases3to1"] = str(self.switches_phases).lower()
        return {**smart, "Available": "true", **self.config}


def _with_credentials(url: str, user: str, password: str | None) -> str:
    if password is None:
        return url
    parts = urlsplit(url)
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{parts.netloc}"
    return urlunsplit(parts._replace(netloc=netloc))


class _RawReplies:
    """Lets `send_raw` see the replies to frames the library did not send."""

    sim: SimChargePoint

    async def route_message(self, raw_msg: Any) -> None:
        if not self.sim.take_raw_reply(raw_msg):
            await super().route_message(raw_msg)  # type: ignore[misc]

    async def _send(self, message: str) -> None:
        if "reply_extras" in self.sim.quirks:  # vendor fields in every reply
            frame = json.loads(message)
            if frame[0] == 3 and isinstance(frame[2], dict):
                frame[2]["vendorInfo"] = {"firmware": "1.2.0", "note": "extra"}
                message = json.dumps(frame)
        await super()._send(message)  # type: ignore[misc]


class _Sim16(_RawReplies, CP16):
    @on("SetChargingProfile")
    def on_set_profile(self, connector_id: int, cs_charging_profiles: dict, **kw: Any) -> Any:
        self.sim.answer_profile()
        profile = read_profile(cs_charging_profiles, connector_id, "1.6", self.sim.clock())
        return res16.SetChargingProfile(status=self.sim.install(profile))

    @on("ClearChargingProfile")
    def on_clear_profile(self, **kw: Any) -> Any:
        status = self.sim.clear(
            kw.get("id"), kw.get("charging_profile_purpose"), kw.get("stack_level")
        )
        return res16.ClearChargingProfile(status=status)

    @on("GetConfiguration")
    def on_get_configuration(self, key: list | None = None, **kw: Any) -> Any:
        config = self.sim.configuration()
        wanted = key or list(config)
        return res16.GetConfiguration(
            configuration_key=[
                {"key": k, "readonly": False, "value": config[k]} for k in wanted if k in config
            ],
            unknown_key=[k for k in wanted if k not in config] or None,
        )

    @on("ChangeConfiguration")
    def on_change_configuration(self, key: str, value: str, **kw: Any) -> Any:
        if key == "MeterValuesSampledData" and not self.sim.takes_measurands(value):
            return res16.ChangeConfiguration(status="Rejected")
        self.sim.config[key] = value
        return res16.ChangeConfiguration(status="Accepted")

    @on("ChangeAvailability")
    def on_change_availability(self, connector_id: int, type: str, **kw: Any) -> Any:
        return res16.ChangeAvailability(status="Accepted")

    @on("TriggerMessage")
    def on_trigger(self, requested_message: str, **kw: Any) -> Any:
        self.sim.triggered.add(requested_message)
        return res16.TriggerMessage(status="Accepted")


class _Sim201(_RawReplies, CP201):
    @on("SetChargingProfile")
    def on_set_profile(self, evse_id: int, charging_profile: dict, **kw: Any) -> Any:
        self.sim.answer_profile()
        profile = read_profile(charging_profile, evse_id, "2.0.1", self.sim.clock())
        return res201.SetChargingProfile(status=self.sim.install(profile))

    @on("ClearChargingProfile")
    def on_clear_profile(self, **kw: Any) -> Any:
        criteria = kw.get("charging_profile_criteria") or {}
        status = self.sim.clear(
            kw.get("charging_profile_id"),
            criteria.get("charging_profile_purpose"),
            criteria.get("stack_level"),
        )
        return res201.ClearChargingProfile(status=status)

    @on("GetVariables")
    def on_get_variables(self, get_variable_data: list, **kw: Any) -> Any:
        values = self.sim.variables()
        results = []
        for item in get_variable_data:
            name = item["variable"]["name"]
            result = {"component": item["component"], "variable": item["variable"]}
            if name in values:
                result |= {"attribute_status": "Accepted", "attribute_value": values[name]}
            else:
                result["attribute_status"] = "UnknownVariable"
            results.append(result)
        return res201.GetVariables(get_variable_result=results)

    @on("SetVariables")
    def on_set_variables(self, set_variable_data: list, **kw: Any) -> Any:
        results = []
        for item in set_variable_data:
            name, value = item["variable"]["name"], str(item["attribute_value"])
            status = "Accepted"
            if "rejects_measurands" in self.sim.quirks and item["component"]["name"] == (
                "AlignedDataCtrlr"
            ):
                status = "UnknownVariable"  # as MicroOcpp 2.0.1
            elif name == "TxUpdatedMeasurands" and not self.sim.takes_measurands(value):
                status = "Rejected"
            if status == "Accepted":
                self.sim.config[name] = value
            results.append(
                {
                    "attribute_status": status,
                    "component": item["component"],
                    "variable": item["variable"],
                }
            )
        return res201.SetVariables(set_variable_result=results)

    @on("ChangeAvailability")
    def on_change_availability(self, operational_status: str, **kw: Any) -> Any:
        return res201.ChangeAvailability(status="Accepted")

    @on("TriggerMessage")
    def on_trigger(self, requested_message: str, **kw: Any) -> Any:
        self.sim.triggered.add(requested_message)
        return res201.TriggerMessage(status="Accepted")
