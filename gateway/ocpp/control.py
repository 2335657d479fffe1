"""The per-charger control task: set the charger up, keep its limit fresh, check it obeys.

One task per connection. It is the only place that calls the charger, so message
handlers never wait on a reply (which would stall the library's receive loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

from ocpp.exceptions import OCPPError
from websockets.exceptions import ConnectionClosed

from gateway.model import ACTIVE_STATUSES
from gateway.ocpp import phaseswitch
from gateway.ocpp.config import ChargerOcpp, OcppConfig
from gateway.ocpp.profiles import (
    DYNAMIC_ID,
    Layer,
    base_layer,
    dynamic_layer,
    schedule_origin_s,
    wire_limit,
)
from gateway.ocpp.session import Capabilities, Session16, Session201
from gateway.ocpp.state import Live

log = logging.getLogger(__name__)

T = TypeVar("T")
# Dynamic stack level when the charger does not advertise its maximum.
DEFAULT_STACK = 1


@dataclass(frozen=True, slots=True)
class Target:
    """What the control task needs to know about one charger from the config."""

    id: str
    failsafe_a: float
    phases: int
    voltage_v: float
    ocpp: ChargerOcpp
    phase_switching: bool = False


class Control:
    def __init__(
        self, session: Session16 | Session201, live: Live, target: Target, cfg: OcppConfig
    ) -> None:
        self.session = session
        self.live = live
        self.target = target
        self.cfg = cfg
        self.unit = "A"
        self.stack = DEFAULT_STACK
        self.base: Layer = base_layer(target.failsafe_a, "A", target.ocpp.limit_step_a, 230.0)
        self.boots_seen = -1  # forces the first setup
        self.sent_key: tuple[float, int] | None = None
        self.sent_at = 0.0
        self.applied_until = 0.0  # when the last accepted dynamic layer lapses
        self.changed_at = 0.0
        self.checked_reading: float | None = None
        self.strikes = 0
        self.reinstall = False
        self.running = True

    async def run(self) -> None:
        try:
            await self._run()
        except ConnectionClosed:
            pass
        except Exception:
            # A charger left without control must not stay connected: make it reconnect.
            log.exception("%s: control task failed; dropping the connection", self.target.id)
            await self.session._connection.close(1011, "internal error")

    async def _run(self) -> None:
        await self._wait_for_boot()
        while self.running:
            self.live.wake.clear()
            if self.live.boots != self.boots_seen or self.reinstall:
                await self.setup()
            now = time.time()
            await self.send_if_due(now)
            self.check_obedience(now)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.live.wake.wait(), self._next_due(time.time()))

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

    def _next_due(self, now: float) -> float:
        if self.sent_key is None:
            return self.cfg.refresh_s
        return max(0.05, self.sent_at + self.cfg.refresh_s - now)

    async def _try(self, what: str, call: Awaitable[T]) -> T | None:
        try:
            return await call
        except (OCPPError, TimeoutError) as exc:
            log.warning("%s: %s failed: %s", self.target.id, what, _describe(exc))
            self.live.problem = f"{what} failed: {_describe(exc)}"
            return None

    async def setup(self) -> None:
        """Discover, configure meter values, install the failsafe layer (after every boot)."""
        self.boots_seen = self.live.boots
        caps = await self._try("reading capabilities", self.session.read_capabilities())
        self._choose(caps or Capabilities())
        if self.target.phase_switching:
            self.live.phase_switch = await phaseswitch.read_support(self.target.id, self.session)
        if not await self._try(
            "meter setup", self.session.configure_meter(self.cfg.meter_interval_s)
        ):
            log.info("%s: charger did not take all meter settings", self.target.id)
        if self.target.ocpp.change_availability:
            await self._try("ChangeAvailability", self.session.make_available())
        if self.reinstall:
            await self._try("clearing profiles", self.session.clear_profile(DYNAMIC_ID))
            await self._try("clearing profiles", self.session.clear_profile(self.base.profile_id))
            self.reinstall = False
        await self._install_base()
        self.sent_key = None  # the dynamic layer goes out again right after
        self.changed_at = time.time()  # readings from before our profiles prove nothing

    def _choose(self, caps: Capabilities) -> None:
        wanted = self.target.ocpp.rate_unit
        if wanted == "auto":
            wanted = "W" if caps.rate_units == {"W"} else "A"
        self.unit = wanted
        if self.target.ocpp.stack_level is not None:
            self.stack = self.target.ocpp.stack_level
        elif caps.max_stack is not None:
            self.stack = caps.max_stack
        log.info(
            "%s: limits in %s, dynamic stack level %d%s",
            self.target.id,
            self.unit,
            self.stack,
            "" if "SmartCharging" in caps.profiles or not caps.profiles else " (no SmartCharging?)",
        )

    async def _install_base(self) -> None:
        step, volts = self.target.ocpp.limit_step_a, self.target.voltage_v
        self.base = base_layer(self.target.failsafe_a, self.unit, step, volts)
        status = await self._send(self.base, "failsafe profile")
        if status == "Accepted":
            log.info(
                "%s: failsafe profile %g %s installed", self.target.id, self.base.limit, self.unit
            )

    async def _send(self, layer: Layer, what: str) -> str | None:
        o = self.target.ocpp
        status = await self._try(
            what, self.session.set_profile(o.connector, layer, o.profile_kind, time.time())
        )
        if status is not None and status != "Accepted":
            log.warning("%s: %s %s", self.target.id, what, status)
            self.live.problem = f"{what} {status}"
        return status

    def wanted(self, now: float) -> float | None:
        """The hub's limit, unless the hub went quiet: then the dynamic layer must lapse."""
        if self.live.wanted_at is None or now - self.live.wanted_at > self.cfg.validity_s:
            return None
        return self.live.wanted_a

    async def send_if_due(self, now: float, force: bool = False) -> None:
        amps = self.wanted(now)
        if amps is None or not self.live.state_known:
            return  # the hub's limit may rest on a state we have not heard yet
        switch = phaseswitch.phases_to_send(self.live)
        phases = switch or self.live.active_phases or self.target.phases
        key = (amps, phases if self.unit == "W" or switch else 0)
        if not force and key == self.sent_key and now < self.sent_at + self.cfg.refresh_s:
            return
        volts = self.live.voltage_v or self.target.voltage_v
        limit = wire_limit(amps, self.unit, self.target.ocpp.limit_step_a, volts, phases)
        kind = self.target.ocpp.profile_kind
        in_session = self.live.session_mono if self.live.transaction is not None else None
        elapsed = None if in_session is None else time.monotonic() - in_session
        origin = schedule_origin_s(kind, elapsed)
        layer = dynamic_layer(
            limit, self.unit, self.stack, now, self.cfg.validity_s, self.base, origin, switch
        )
        status = await self._send(layer, "limit")
        if status == "Rejected" and self._fall_back():
            await self._install_base()
            return await self.send_if_due(now, force=True)
        if status is None:
            return  # no reply: not sent; the hub's next cycle wakes us to try again
        if key != self.sent_key:
            self.changed_at = now
            log.debug("%s: limit %g A (%g %s)", self.target.id, amps, limit, self.unit)
        self.sent_key, self.sent_at = key, now
        if status == "Accepted":
            self.live.applied_a = amps
            self.applied_until = now + self.cfg.validity_s
            self.live.sent_until_mono = time.monotonic() + self.cfg.validity_s
            if self.live.obeys:
                self.live.problem = ""

    def _fall_back(self) -> bool:
        """After a refused limit, drop what real chargers refuse: a high stack, then amps."""
        o = self.target.ocpp
        if o.stack_level is None and self.stack > DEFAULT_STACK:
            log.warning(
                "%s: stack level %d refused, trying %d", self.target.id, self.stack, DEFAULT_STACK
            )
            self.stack = DEFAULT_STACK
            return True
        if o.rate_unit == "auto" and self.unit == "A":
            log.warning("%s: amps refused, switching to watts", self.target.id)
            self.unit = "W"
            return True
        return False

    def expected_a(self, now: float) -> float:
        """What the charger should offer now: the dynamic layer while it lasts."""
        if self.live.applied_a is None or now >= self.applied_until:
            return self.target.failsafe_a
        return self.live.applied_a

    def check_obedience(self, now: float) -> None:
        """Count readings above the command; resend, then reinstall, and say so."""
        reading_at = self.live.reading_at
        if reading_at is None or reading_at == self.checked_reading:
            return
        self.checked_reading = reading_at
        # Without a car an idle charger may offer its hardware maximum: nothing to check.
        if self.live.status not in ACTIVE_STATUSES:
            return
        if reading_at < self.changed_at + self.cfg.obey_grace_s:
            return
        expected = self.expected_a(now)
        measured = max(*self.live.draw_a, self.live.offered_a or 0.0)
        if measured <= expected + self.cfg.obey_tolerance_a:
            if not self.live.obeys:
                log.info("%s: obeys its limit again", self.target.id)
                self.live.obeys, self.live.problem = True, ""
            self.strikes = 0
            return
        self.strikes += 1
        if self.strikes < self.cfg.obey_strikes:
            return
        if self.live.obeys:
            log.warning(
                "%s: does not obey: at %.1f A, limit %.1f A", self.target.id, measured, expected
            )
        self.live.obeys = False
        self.live.problem = f"ignores its limit: at {measured:.1f} A, limit {expected:.1f} A"
        if self.strikes == self.cfg.obey_strikes:
            self.sent_key = None  # re-send
        elif self.strikes >= 2 * self.cfg.obey_strikes:
            log.warning("%s: clearing and reinstalling its profiles", self.target.id)
            self.reinstall = True
            self.strikes = 0
        else:
            return
        self.changed_at = now  # give the charger the grace time again
        self.live.wake.set()


def _describe(exc: Any) -> str:
    if isinstance(exc, OCPPError):
        return f"{exc.code}: {exc.description}"
    return "no reply"
