"""`MeterSet`: every configured meter, polled by one owner task per bus.

The hub calls `latest()` once per cycle and never awaits a device: it gets the newest
value of every quantity with the time it was read, plus each device's health.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from gateway.meters.bus import MAX_BACKOFF_S, Bus, Device, Reading
from gateway.meters.config import MeterConfig
from gateway.meters.control import BatteryControl

log = logging.getLogger(__name__)

__all__ = ["MeterSet", "MeterState", "Reading"]


@dataclass(frozen=True, slots=True)
class MeterState:
    name: str
    role: str  # grid, pv, battery, charger
    charger: str | None  # the charger id, for role "charger"
    values: Mapping[str, Reading]  # canonical quantity -> newest value and when it was read
    ok: bool  # the last poll read everything
    error: str | None  # why not, in words


class MeterSet:
    def __init__(
        self, meters: Iterable[MeterConfig], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.devices = [Device(m, clock) for m in meters]
        by_bus: dict[tuple, list[Device]] = {}
        for d in self.devices:
            by_bus.setdefault(d.config.connection.key, []).append(d)
        self.buses = [Bus(ds[0].config.connection, ds) for ds in by_bus.values()]
        # The battery hold's writers, one per meter with `control = true`, on its bus.
        self.controls = [
            BatteryControl(d.config, bus, clock)
            for bus in self.buses
            for d in bus.devices
            if d.config.control
        ]
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        for bus in self.buses:
            name = f"meters {bus.connection.describe()}"
            self._tasks.append(asyncio.create_task(self._supervise(bus), name=name))
            log.info("polling %d meter(s) on %s", len(bus.devices), bus.connection.describe())

    async def _supervise(self, bus: Bus) -> None:
        """Keep one bus polled for good.

        A bus task that meets an exception nobody expected (a bug, or a device answering
        what the decoder cannot take) must not end silently: that would leave the last
        values standing with "meters ok" true. It is logged once per episode with the
        bus, its devices read as failed meanwhile (their values age, so stale data puts
        the chargers at their failsafe), and the task restarts with backoff.
        """
        loop = asyncio.get_running_loop()
        where = bus.connection.describe()
        failures = 0
        while True:
            started = loop.time()
            try:
                await bus.run()
            except Exception as exc:  # anything: the bus must go on
                if loop.time() - started > MAX_BACKOFF_S:
                    failures = 0  # it polled well for a while: a new episode
                failures += 1
                delay = min(0.5 * 2 ** (failures - 1), MAX_BACKOFF_S)
                if failures == 1:
                    log.exception("bus %s: poll task failed; restarting with backoff", where)
                else:
                    log.debug("bus %s: poll task failed again (%r)", where, exc)
                for d in bus.devices:
                    d.record({}, [f"poll task failed: {exc!r}"])
                await asyncio.sleep(delay)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    @property
    def running(self) -> bool:
        return bool(self._tasks)

    def latest(self) -> tuple[MeterState, ...]:
        return tuple(
            MeterState(
                name=d.config.name,
                role=d.config.role,
                charger=d.config.charger,
                values=MappingProxyType(dict(d.values)),
                ok=d.ok,
                error=d.error,
            )
            for d in self.devices
        )

    @property
    def requests(self) -> int:
        """Requests put on the wire so far, over all buses."""
        return sum(b.link.requests for b in self.buses)
