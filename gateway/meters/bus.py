"""The bus owner: one task per serial port / TCP endpoint, polling its devices one by one.

Requests on one bus never overlap. Each device has its own interval, timeout and retries;
a device that stops answering costs one timeout per (backed-off) poll and skips its
remaining blocks, so the other devices on the bus keep their pace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from gateway.meters import sunspec
from gateway.meters.blocks import Block, char_time_s, plan_blocks, rtu_max_gap
from gateway.meters.config import Connection, MeterConfig
from gateway.meters.decode import decode_block, finish
from gateway.meters.link import Link, ReadError
from gateway.meters.profile import MAX_READ, Part

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 10.0
CONNECT_TIMEOUT_S = 2.0
# Exception codes a meter gives for a query it finds too long or spanning a hole.
_SPLIT_CODES = (2, 3)


@dataclass(frozen=True, slots=True)
class Reading:
    value: float
    at: float  # when it was read, on the MeterSet's clock


@dataclass(frozen=True, slots=True)
class Plan:
    part_name: str
    part: Part
    turn_round: bool
    blocks: tuple[Block, ...]


def max_gap(connection: Connection) -> int:
    if connection.transport == "tcp":
        return MAX_READ
    if connection.transport == "rtu":
        return rtu_max_gap(char_time_s(connection.baud, connection.parity, connection.stopbits))
    return rtu_max_gap(char_time_s(9600, "N", 1))  # unknown line behind the bridge: assume slow


def silence_s(connection: Connection) -> float:
    """The 3.5-character silence RTU needs between frames (fixed 1.75 ms above 19200 baud)."""
    if connection.transport != "rtu":
        return 0.0
    if connection.baud > 19200:
        return 0.00175
    return 3.5 * char_time_s(connection.baud, connection.parity, connection.stopbits)


@dataclass(frozen=True, slots=True)
class WriteJob:
    """Registers to write to one unit, in order; `done` gets None or the first error."""

    unit_id: int
    writes: tuple[tuple[int, list[int]], ...]  # (address, words)
    timeout_s: float
    done: Callable[[ReadError | None], None]


class Device:
    """One configured meter: its plan, its latest values and its health."""

    def __init__(self, config: MeterConfig, clock: Callable[[], float]) -> None:
        self.config = config
        self.clock = clock
        self.values: dict[str, Reading] = {}
        self.ok = False
        self.error: str | None = "not read yet"
        self.failures = 0  # polls in a row that read nothing
        self.next_due = 0.0
        self.split = False  # merged reads were refused: read each run of registers alone
        self.timed_out = False  # the last poll got no answer at all
        self._max_gap = min(max_gap(config.connection), config.profile.max_gap)
        # SunSpec devices get their plan once the model chain has been walked
        self.plan: Plan | None = self.fixed_plan()

    def make_plan(self, part_name: str, part: Part) -> Plan:
        turn_round = part_name == "meter" and self.config.role in ("pv", "battery")
        gap = 0 if self.split else self._max_gap
        blocks = plan_blocks(part.registers, self.config.max_registers, gap)
        return Plan(part_name, part, turn_round != self.config.invert, tuple(blocks))

    def fixed_plan(self) -> Plan | None:
        parts = self.config.profile.parts
        role = self.config.role
        if role in parts:
            return self.make_plan(role, parts[role])
        if "meter" in parts:
            return self.make_plan("meter", parts["meter"])
        return None

    def record(self, fresh: dict[str, float], errors: list[str]) -> None:
        now = self.clock()
        for name, value in fresh.items():
            self.values[name] = Reading(value, now)
        was_ok, first = self.ok, self.error == "not read yet"
        self.ok = not errors
        self.error = "; ".join(errors) if errors else None
        if self.ok and not was_ok:
            log.info("meter %s: reading (%d values)", self.config.name, len(fresh))
        elif not self.ok and (was_ok or first):
            log.warning("meter %s: %s", self.config.name, self.error)
        # Only a device that gave nothing backs off: one refused block must not slow the rest.
        self.failures = 0 if fresh else self.failures + 1

    def schedule(self, now: float) -> None:
        interval = self.config.interval_s
        if self.failures:
            interval = max(interval, min(interval * 2 ** (self.failures - 1), MAX_BACKOFF_S))
        self.next_due = max(self.next_due + interval, now)


class Bus:
    """Owns one Link and polls its devices in due order, paced by each device's gap."""

    def __init__(self, connection: Connection, devices: list[Device]) -> None:
        self.connection = connection
        self.devices = devices
        self.link = Link(connection)
        self._min_gap = silence_s(connection)
        self._last_request_end = 0.0
        self.connect_failures = 0
        # Writes wait here for the owner task, so they never interleave with a poll.
        self._jobs: list[WriteJob] = []
        self._wake = asyncio.Event()

    def submit(self, job: WriteJob) -> None:
        self._jobs.append(job)
        self._wake.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for d in self.devices:
            d.next_due = loop.time()
        task = asyncio.current_task()
        try:
            while True:
                if task is not None and task.cancelling():
                    # asyncio.wait_for inside pymodbus (Python < 3.12) can swallow a cancel
                    # that lands as a response arrives; honour it here instead of hanging stop().
                    raise asyncio.CancelledError
                if self._jobs:
                    await self.write(self._jobs.pop(0))
                    continue
                device = min(self.devices, key=lambda d: d.next_due)
                delay = device.next_due - loop.time()
                if delay > 0:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), delay)
                    continue  # a write may have come in: it goes first
                if not await self.ensure_connected():
                    continue
                await self.poll(device)
                device.schedule(loop.time())
        finally:
            self.link.close()

    async def ensure_connected(self) -> bool:
        if self.link.connected:
            return True
        if await self.link.connect(CONNECT_TIMEOUT_S):
            if self.connect_failures:
                log.info("bus %s: connected again", self.connection.describe())
            self.connect_failures = 0
            delay = max(d.config.profile.connect_delay_s for d in self.devices)
            await asyncio.sleep(delay)
            return True
        self.connect_failures += 1
        message = f"cannot connect to {self.connection.describe()}"
        if self.connect_failures == 1:
            log.warning("bus %s", message)
        for d in self.devices:
            d.record({}, [message])
        await asyncio.sleep(min(0.5 * 2 ** (self.connect_failures - 1), MAX_BACKOFF_S))
        return False

    async def write(self, job: WriteJob) -> None:
        """Carry out one write job between polls; the first failure ends it."""
        if not await self.ensure_connected():
            job.done(ReadError(f"cannot connect to {self.connection.describe()}", timeout=True))
            return
        loop = asyncio.get_running_loop()
        error = None
        for address, words in job.writes:
            wait = self._last_request_end + self._min_gap - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                await self.link.write(address, words, job.unit_id, job.timeout_s)
            except ReadError as exc:
                error = ReadError(
                    f"FC16 {address}+{len(words)}: {exc}", timeout=exc.timeout, code=exc.code
                )
                break
            finally:
                self._last_request_end = loop.time()
        job.done(error)

    async def _request(self, device: Device, function: int, address: int, count: int) -> list[int]:
        """One read with the device's gap, timeout and retries (no retries while it is failing)."""
        cfg = device.config
        tries = 1 + (cfg.retries if device.failures == 0 else 0)
        loop = asyncio.get_running_loop()
        for attempt in range(tries):
            wait = self._last_request_end + max(cfg.gap_s, self._min_gap) - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                return await self.link.read(function, address, count, cfg.unit_id, cfg.timeout_s)
            except ReadError as exc:
                if not exc.timeout or attempt == tries - 1:
                    raise
            finally:
                self._last_request_end = loop.time()
        raise AssertionError("unreachable")

    async def _discover(self, device: Device) -> Plan:
        async def read(address: int, count: int) -> list[int]:
            try:
                return await self._request(device, 3, address, count)
            except ReadError as exc:
                if exc.timeout:
                    raise
                raise sunspec.NotSunSpec(str(exc)) from exc

        profile = device.config.profile
        models = await sunspec.discover(read, profile.sunspec_bases)
        part_name, part = sunspec.place(profile, models, device.config.role)
        log.info(
            "meter %s: SunSpec models %s",
            device.config.name,
            ", ".join(f"{m.id}@{m.address}" for m in models),
        )
        return device.make_plan(part_name, part)

    async def poll(self, device: Device) -> None:
        """Read every block of one device once and record the result."""
        if device.plan is None:
            try:
                device.plan = await self._discover(device)
            except (ReadError, sunspec.NotSunSpec) as exc:
                device.timed_out = isinstance(exc, ReadError) and exc.timeout
                device.record({}, [f"SunSpec discovery: {exc}"])
                return
        plan = device.plan
        raw: dict[str, float] = {}
        errors: list[str] = []
        device.timed_out = False
        for block in plan.blocks:
            try:
                words = await self._request(device, block.function, block.start, block.count)
            except ReadError as exc:
                errors.append(f"FC{block.function} {block.start}+{block.count}: {exc}")
                if exc.timeout:
                    device.timed_out = not raw
                    break  # a silent device would cost a timeout per block
                if exc.code in _SPLIT_CODES and len(block.registers) > 1 and not device.split:
                    log.warning(
                        "meter %s: merged read refused, reading smaller blocks", device.config.name
                    )
                    device.split = True
                    device.plan = device.make_plan(plan.part_name, plan.part)
                continue
            raw.update(decode_block(block, words))
        fresh = finish(raw, plan.part.registers, plan.part.derived, plan.turn_round)
        device.record(fresh, errors)
