"""The per-charger control task: the thin asyncio layer around `gateway.ocpp.machine`.

One task per connection. It is the only place that calls the charger, so message
handlers never wait on a reply (which would stall the library's receive loop). It reads
the clocks, asks the machine what to do, does it, tells the machine the replies, and
logs the machine's notes (rate-limited per charger). An exception escaping a step is
logged once with the charger id and the loop goes on after a pause; the connection
stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ocpp.exceptions import OCPPError
from websockets.exceptions import ConnectionClosed

from gateway.model import ACTIVE_STATUSES
from gateway.ocpp import phaseswitch
from gateway.ocpp.machine import Machine, Seen
from gateway.ocpp.profiles import BASE_ID, DYNAMIC_ID, Layer
from gateway.ocpp.session import Capabilities, Session16, Session201, one_line
from gateway.ocpp.state import Live
from gateway.ratelimit import RateLimiter

log = logging.getLogger(__name__)

T = TypeVar("T")
# After an unexpected exception in a step, wait this long before the next one.
STEP_PAUSE_S = 1.0


class Control:
    def __init__(
        self,
        session: Session16 | Session201,
        live: Live,
        machine: Machine,
        limiter: RateLimiter,
    ) -> None:
        self.session = session
        self.live = live
        self.m = machine
        self.id = machine.target.id
        self.cfg = machine.cfg
        self.limiter = limiter
        self.boots_seen = -1  # forces the first setup
        self.running = True
        self.failed: str | None = None  # the last unexpected exception, logged once
        self.base_said: str | None = "Accepted"  # the last base-layer reply logged

    def say(self, level: int, text: str) -> None:
        self.limiter.log(log, level, self.id, time.monotonic(), "%s: %s", self.id, text)

    async def run(self) -> None:
        self.m.connected()
        try:
            await self._guarded(self._wait_for_boot)
            while self.running:
                self.live.wake.clear()
                wait = STEP_PAUSE_S
                if await self._guarded(self.step):
                    wait = self.m.next_due(time.monotonic())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.live.wake.wait(), wait)
        except ConnectionClosed:
            pass

    async def _guarded(self, step: Callable[[], Awaitable[None]]) -> bool:
        """Run one step; False if it failed unexpectedly (logged once per kind of failure).

        A bug or a reply we cannot read must not leave the charger without control: the
        loop carries on after a pause, the connection stays."""
        try:
            await step()
            self.failed = None
            return True
        except ConnectionClosed:
            raise
        except Exception as exc:
            if repr(exc) != self.failed:
                log.exception("%s: control step failed; going on", self.id)
            self.failed = repr(exc)
            return False
        finally:
            self._publish()

    async def step(self) -> None:
        if self.live.boots != self.boots_seen or self.m.reinstall:
            await self.setup()
        await self.send_if_due()
        seen = self.seen(time.monotonic())
        if self.m.observe(time.monotonic(), seen):
            self.live.wake.set()
        self.m.started_charging(time.monotonic(), seen)
        for connector in self.m.readings_due(time.monotonic()):
            await self._try("asking for meter values", self.session.ask_meter_values(connector))

    def seen(self, now: float) -> Seen:
        live = self.live
        in_session = live.session_mono if live.transaction is not None else None
        return Seen(
            wanted_a=live.wanted_a,
            wanted_at=live.wanted_at,
            state_known=live.state_known,
            active_phases=live.active_phases,
            voltage_v=live.voltage_v,
            session_age_s=None if in_session is None else now - in_session,
            reading_at=live.reading_at,
            car=live.status in ACTIVE_STATUSES,
            charging_on=frozenset(c for c, s in live.statuses.items() if c and s == "Charging"),
            cars=sum(1 for c, s in live.statuses.items() if c != 0 and s in ACTIVE_STATUSES),
            last_connector=max(live.statuses, default=0),
            measured_a=max(*live.draw_a, live.offered_a or 0.0),
            switch_phases=phaseswitch.phases_to_send(live),
        )

    def _publish(self) -> None:
        for level, text in self.m.take_notes():
            self.say(level, text)
        m, live = self.m, self.live
        live.applied_a, live.sent_until_mono = m.applied_a, m.applied_until
        live.obeys, live.problem = m.obeys, m.problem
        live.uncontrolled = m.uncontrolled is not None

    async def _wait_for_boot(self) -> None:
        """A fresh charger boots first; one that only reconnected may never send a boot."""
        deadline = time.monotonic() + self.cfg.boot_wait_s
        boots = self.live.boots
        while self.live.boots == boots and time.monotonic() < deadline:
            self.live.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.live.wake.wait(), deadline - time.monotonic())
        if self.live.boots == boots:
            # Real firmware sends neither Boot nor status on a plain reconnect, and a
            # session may be running: ask, and hold its limit until it answers.
            connectors = max(1, len([c for c in self.live.statuses if c != 0]))
            await self._try("asking for its state", self.session.ask_state(connectors))

    async def _try(self, what: str, call: Awaitable[T]) -> T | None:
        try:
            return await call
        except (OCPPError, TimeoutError) as exc:
            why = _describe(exc)
            self.say(logging.WARNING, f"{what} failed: {why}")
            self.m.problem = f"{what} failed: {why}"
            return None

    async def setup(self) -> None:
        """Discover, configure meter values, install the failsafe layer (after every boot)."""
        self.boots_seen = self.live.boots
        caps = await self._try("reading capabilities", self.session.read_capabilities())
        caps = caps or Capabilities()
        smart = "SmartCharging" in caps.profiles or not caps.profiles
        self.m.choose(caps.rate_units, caps.max_stack, smart, caps.connectors)
        if self.m.target.phase_switching:
            self.live.phase_switch = await phaseswitch.read_support(self.m.target.id, self.session)
        if not await self._try(
            "meter setup", self.session.configure_meter(self.cfg.meter_interval_s)
        ):
            self.say(logging.INFO, "charger did not take all meter settings")
        if self.m.target.ocpp.change_availability:
            await self._try("ChangeAvailability", self.session.make_available())
        if self.m.reinstall:
            for connector in self.m.profile_connectors():
                for layer_id in (DYNAMIC_ID, BASE_ID):
                    profile_id = self.m.profile_id(layer_id, connector)
                    await self._try("clearing profiles", self.session.clear_profile(profile_id))
        await self._install_base()
        self.m.set_up(time.monotonic())

    async def _install_base(self) -> None:
        status, detail = await self._set_profile(self.m.base)
        unit = self.m.unit
        if status == "Accepted":
            self.say(logging.INFO, f"failsafe profile {self.m.base.limit:g} {unit} installed")
        elif self.base_said != status:  # once per connection and reply, not per attempt
            why = f"{status or 'no reply'}{': ' + detail if detail else ''}"
            self.say(logging.WARNING, f"failsafe profile not installed: {why}")
        self.m.base_ok, self.base_said = status == "Accepted", status

    async def _set_profile(self, layer: Layer) -> tuple[str | None, str]:
        """Send `layer` to each connector it goes to; the first reply other than Accepted
        (a status, or the CallError code with its description; None: no reply), else
        Accepted."""
        kind = self.m.target.ocpp.profile_kind
        for connector in self.m.profile_connectors():
            try:
                status = await self.session.set_profile(
                    connector, self.m.on_connector(layer, connector), kind, time.time()
                )
            except OCPPError as exc:
                return exc.code, one_line(exc.description)
            except TimeoutError:
                return None, ""
            if status != "Accepted":
                return status, ""
        return "Accepted", ""

    async def send_if_due(self) -> None:
        while (send := self.m.due(time.monotonic(), self.seen(time.monotonic()))) is not None:
            if not self.m.base_ok:
                await self._install_base()  # refused before (or in another unit): again
            status, detail = await self._set_profile(self.m.layer(send, time.time()))
            if not self.m.result(send, status, time.monotonic(), detail):
                return


def _describe(exc: OCPPError | TimeoutError) -> str:
    if isinstance(exc, OCPPError):
        return f"{exc.code}: {one_line(exc.description)}"
    return "no reply"
