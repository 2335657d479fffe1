"""The battery hold's write side: a profile's [control] written through the bus owner.

Thin: the decision (which limit, when) is `gateway.allocation.hold`; this turns a limit
into the profile's register writes, hands them to the bus task that polls the device (so
a write never interleaves with a read on RS485), and keeps the result for the hub, the
registers and `status`. Every write is logged: hold and release always; a cap following
the house, re-writes and failures through a rate limiter (five lines an hour each, then
the count suppressed), since a wandering load or a device that keeps refusing would
otherwise fill the log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from gateway.allocation.hold import Written
from gateway.meters.bus import Bus, WriteJob
from gateway.meters.config import MeterConfig
from gateway.meters.decode import encode_raw
from gateway.meters.link import ReadError
from gateway.meters.profile import Control
from gateway.ratelimit import RateLimiter

log = logging.getLogger(__name__)
NO_ANSWER, NO_WRITE = 0xFFFE, 0xFFFF


def describe(limit_w: float | None) -> str:
    return "released" if limit_w is None else f"held at {limit_w:.0f} W"


def control_words(control: Control, limit_w: float | None) -> tuple[tuple[int, list[int]], ...]:
    """The (address, words) to write: the hold at `limit_w` (capped at max_w), or the release."""
    writes = control.release if limit_w is None else control.hold
    figure = control.max_w if limit_w is None else min(limit_w, control.max_w)
    return tuple(
        (
            w.address,
            encode_raw(w.value if w.value is not None else figure / w.scale, w.type, w.word_order),
        )
        for w in writes
    )


class BatteryControl:
    """One battery meter with `control = true`: its writes and their outcome."""

    def __init__(
        self, config: MeterConfig, bus: Bus, clock: Callable[[], float] = time.monotonic
    ) -> None:
        assert config.profile.control is not None
        self.name = config.name
        self.control: Control = config.profile.control
        self.rewrite_s = self.control.rewrite_s
        self._config = config
        self._bus = bus
        self._clock = clock
        self.last: Written | None = None  # the last write's outcome
        self.busy = False  # a write is queued or on the wire
        self.writes = 0  # accepted by the device
        self.failures = 0
        self.error: str | None = None  # the last failure, in words
        # As the command block's last_write_result: 0 accepted, else the Modbus exception
        # code; NO_ANSWER when the device did not answer, NO_WRITE before the first write.
        self.result = NO_WRITE
        self._limiter = RateLimiter(lines=5, window_s=3600.0)
        self._finished: asyncio.Event = asyncio.Event()

    def request(self, limit_w: float | None) -> bool:
        """Queue the hold at `limit_w` (None: release); False while a write is under way."""
        if self.busy:
            return False
        self.busy = True
        self._finished.clear()
        words = control_words(self.control, limit_w)
        previous = self.last

        def done(error: ReadError | None) -> None:
            self._done(limit_w, previous, error)

        self._bus.submit(WriteJob(self._config.unit_id, words, self._config.timeout_s, done))
        return True

    def _done(
        self, limit_w: float | None, previous: Written | None, error: ReadError | None
    ) -> None:
        now = self._clock()
        self.busy = False
        self.last = Written(limit_w, now, error is None)
        self._finished.set()
        if error is not None:
            self.failures += 1
            self.error = str(error)
            self.result = error.code if error.code is not None else NO_ANSWER
            self._limiter.log(
                log, logging.WARNING, "failed", now,
                "battery %s: %s refused: %s", self.name, describe(limit_w), error,
            )  # fmt: skip
            return
        self.writes += 1
        self.error = None
        self.result = 0
        # Hold and release always; a held cap following the house, or a re-write, as the
        # budget allows (the house load, not the owner, moves those).
        was_held = previous is not None and previous.ok and previous.limit_w is not None
        if previous is None or not previous.ok or was_held != (limit_w is not None):
            log.info("battery %s: %s (write %d)", self.name, describe(limit_w), self.writes)
        else:
            again = previous.limit_w == limit_w
            self._limiter.log(
                log, logging.INFO, "rewrite" if again else "follow", now,
                "battery %s: %s%s (write %d)",
                self.name, describe(limit_w), " again" if again else "", self.writes,
            )  # fmt: skip

    async def release(self, timeout_s: float) -> bool:
        """Release the battery and wait for the device's answer (stopping, reloading)."""
        async with asyncio.timeout(timeout_s):
            while self.busy:
                await self._finished.wait()
            self.request(None)
            await self._finished.wait()
        return self.last is not None and self.last.ok and self.last.limit_w is None
