"""The whole gateway against a simulated site, everything over real sockets on 127.0.0.1.

The site's grid meter is a real Modbus TCP server (SDM630 registers) driven by the
premises physics; its chargers are simulated OCPP clients holding cars. The gateway is
the real one: meter polling, hub, controller, allocator, OCPP sessions, register export.
Timings are shortened (0.5 s cycle, 2 s stale limit, 3 s profile validity) so that each
test takes seconds, not minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import AsyncModbusTcpClient

from gateway.config import load_config
from gateway.daemon import Gateway
from gateway.hub import CycleReport
from gateway.sim.ev import EV
from gateway.sim.live import LiveSite
from gateway.sim.series import Series
from gateway.sim.site import HomeBattery, Premises
from tests.conftest import ROOT
from tests.waiting import until

BREAKER_A = 25.0
CYCLE_S = 0.5
CAR_LAG_S = 0.2
METER_INTERVAL_S = 0.2

CONFIG = """
[site]
main_breaker_a = 25
phases = 3
distribution = "{distribution}"

[control]
cycle_s = 0.5
stale_after_s = 2
ramp_up_a_per_s = {ramp}
start_delay_s = 0
stop_delay_s = {stop_delay}
min_pause_s = {min_pause}

[[meters]]
name = "grid"
model = "sdm630"
role = "grid"
host = "127.0.0.1"
port = {grid_port}
interval_s = 0.2
timeout_s = 0.3

[ocpp]
host = "127.0.0.1"
port = {ocpp_port}
meter_interval_s = {meter_interval}
refresh_s = 1
validity_s = 3

[[chargers]]
id = "c1"
mode = "{mode}"
max_a = 16
failsafe_a = 8
priority = 1
{charger_keys}

[[chargers]]
id = "c2"
mode = "{mode}"
max_a = 16
failsafe_a = 8
priority = 2
protocol = "2.0.1"
{charger_keys}

[export]
host = "127.0.0.1"
port = {export_port}
writes_enabled = {writes}

[web]
host = "127.0.0.1"
port = 0

[state]
dir = "{state_dir}"
{extra}"""


def run(scenario: Callable[..., Awaitable[None]], *args: Any) -> None:
    asyncio.run(asyncio.wait_for(scenario(*args), 60))


def flat(watts: float) -> Series:
    return Series(times=[0.0, 86400.0], rows=[(watts,), (watts,)])


def per_phase_w(amps: float) -> float:
    return amps * 230.0 * 3


@dataclass
class Site:
    live: LiveSite
    gateway: Gateway
    reports: list[CycleReport] = field(default_factory=list)

    def limits(self) -> dict[str, float]:
        """What each simulated charger offers its car right now."""
        return {s.charger_id: s.point.effective_limit_a() for s in self.live.stations}

    def last_commands(self) -> dict[str, float]:
        return {c.id: c.limit_a for c in self.reports[-1].decision.commands}


def write_config(path: Path, **values: Any) -> Path:
    # The product's ramp by default: "up slow" is what keeps the loop stable while the
    # chargers' MeterValues lag the grid meter.
    defaults = {"distribution": "priority", "mode": "standard", "grid_port": 1, "ramp": 0.5}
    defaults |= {"ocpp_port": 9000, "export_port": 1502, "writes": "false", "extra": ""}
    defaults |= {"stop_delay": 5, "min_pause": 0, "meter_interval": 1}
    defaults["charger_keys"] = ""  # keys added to every [[chargers]] entry
    defaults["state_dir"] = path.parent / "state"
    path.write_text(CONFIG.format(**(defaults | values)))
    return path


def live_site(
    config_path: Path,
    household_w: float,
    pv_w: float | None = None,
    battery: HomeBattery | None = None,
) -> LiveSite:
    config = load_config(config_path)
    cars = {
        c.id: EV(max_a=16, phases=3, energy_wanted_wh=1e6, lag_s=CAR_LAG_S) for c in config.chargers
    }
    return LiveSite(
        config,
        Premises(config.site, flat(household_w), flat(pv_w) if pv_w is not None else None, battery),
        versions={
            c.id: c.ocpp.protocol if c.ocpp.protocol != "auto" else "1.6" for c in config.chargers
        },
        cars=cars,
        arrivals_s={c.id: 0.0 for c in config.chargers},
        meter_interval_s=1.0,
    )


@contextlib.asynccontextmanager
async def running(
    tmp_path: Path,
    household_w: float,
    pv_w: float | None = None,
    battery: HomeBattery | None = None,
    **config: Any,
) -> AsyncIterator[Site]:
    path = write_config(tmp_path / "gateway.toml", **config)
    live = live_site(path, household_w, pv_w, battery)
    await live.start_meters()
    site = Site(live, Gateway(live.gateway_config(), on_cycle=lambda r: site.reports.append(r)))
    stop = asyncio.Event()
    cycling: asyncio.Task | None = None
    try:
        await site.gateway.start()
        await live.connect_chargers(site.gateway.central.port)
        live.start_ticking(0.05)
        cycling = asyncio.create_task(site.gateway.run(stop))
        yield site
    finally:
        stop.set()
        if cycling is not None:
            await cycling
        await live.stop()
        await site.gateway.stop()


def near(values: dict[str, float], expected: dict[str, float], tol: float = 0.5) -> bool:
    """Within the controller's dead band (0.5 A): smaller moves are not sent on purpose."""
    return all(abs(values[k] - v) <= tol for k, v in expected.items())


def test_a_load_step_reduces_every_charger_in_the_next_cycle_and_the_breaker_holds(tmp_path):
    async def scenario() -> None:
        # 9 A of household per phase: 16 A free, shared gives 8 / 8.
        async with running(tmp_path, household_w=per_phase_w(9), distribution="shared") as site:
            # Commanded by the gateway (the chargers' 8 A failsafe profile looks the same).
            await until(
                lambda: (
                    site.reports
                    and near(site.last_commands(), {"c1": 8, "c2": 8})
                    and near(site.limits(), {"c1": 8, "c2": 8})
                ),
                15,
                "8/8 commanded and at the chargers",
            )
            # The cars have followed their limits (near 8 A: within the dead band).
            await until(
                lambda: all(
                    abs(s.point.ev.draw_a - s.point.effective_limit_a()) < 0.01
                    for s in site.live.stations
                ),
                15,
                "cars at their limits",
            )
            grid_before = site.live.reading.grid_a[0]
            over_since: list[float] = []
            longest = 0.0

            def watch() -> None:
                nonlocal longest
                reading = site.live.reading
                assert reading is not None
                if max(reading.grid_a) > BREAKER_A + 0.01:
                    over_since.append(site.live.elapsed_s)
                    longest = max(longest, over_since[-1] - over_since[0])
                else:
                    over_since.clear()

            site.live.add_load_w((4 * 230.0,) * 3)  # +4 A per phase: 12 A free, 6 / 6
            stepped_at = len(site.reports)
            while not near(site.limits(), {"c1": 6, "c2": 6}):
                watch()
                await asyncio.sleep(0.01)
                assert len(site.reports) - stepped_at < 20, "no reduction within 20 cycles"
            # The first cycle whose grid reading shows the step already cuts the chargers to
            # what is free now (12 A): none goes up, together they fit.
            before = {c.id: c.limit_a for c in site.reports[stepped_at - 1].decision.commands}
            seen = next(
                r
                for r in site.reports[stepped_at:]
                if r.snapshot.measurements.grid_current_a[0] > grid_before + 3
            )
            assert all(c.limit_a <= before[c.id] for c in seen.decision.commands)
            assert sum(c.limit_a for c in seen.decision.commands) <= 12.05, seen.decision.commands
            for _ in range(100):  # and the site stays inside the breaker afterwards
                watch()
                await asyncio.sleep(0.01)
            # Over the breaker only while the news travels: a meter poll, one cycle, the car's lag.
            assert longest <= METER_INTERVAL_S + CYCLE_S + CAR_LAG_S + 0.5, longest
            assert max(site.live.reading.grid_a) <= BREAKER_A + 0.01

    run(scenario)


def test_two_solar_chargers_share_the_surplus_and_it_is_never_given_twice(tmp_path):
    async def scenario() -> None:
        # No household, 14 A of PV per phase: 14 A of surplus for two cars.
        async with running(
            tmp_path, household_w=0.0, pv_w=per_phase_w(14), mode="solar", distribution="shared"
        ) as site:
            # The second car may start a cycle after the first and ramp behind it: wait
            # until both run and the ramp has brought them level.
            await until(
                lambda: (
                    site.reports
                    and min(site.last_commands().values()) >= 6
                    and len(set(site.last_commands().values())) == 1
                ),
                20,
                lambda: f"both solar cars started and level: {site.last_commands()}",
            )
            start = len(site.reports)
            await until(lambda: len(site.reports) >= start + 12, 15, "twelve more cycles")
            for report in site.reports[start:]:
                commands = [c.limit_a for c in report.decision.commands]
                # Shared evenly, within a step: since the guard merge a car is sometimes
                # 0.7 A behind the other for a cycle (open in the closing note).
                assert abs(commands[0] - commands[1]) <= 1.0, commands
                assert commands[0] >= 6 and sum(commands) <= 14.0 + 1e-6, commands  # never twice
            # The cars take the surplus, not the grid: no phase imports more than a reading's lag.
            assert max(site.live.reading.grid_a) <= 2.0

    run(scenario)


async def read_registers(port: int, address: int, count: int) -> list[int]:
    client = AsyncModbusTcpClient("127.0.0.1", port=port)
    await client.connect()
    try:
        response = await client.read_holding_registers(address, count=count, device_id=1)
        assert not response.isError(), response
        return response.registers
    finally:
        client.close()


def as_float(words: list[int]) -> float:
    return struct.unpack(">f", struct.pack(">HH", *words))[0]


def test_a_silent_meter_sends_every_charger_to_failsafe_and_control_comes_back(tmp_path):
    async def scenario() -> None:
        async with running(tmp_path, household_w=per_phase_w(9), ramp=20) as site:
            await until(lambda: near(site.limits(), {"c1": 10, "c2": 6}), 15, "normal control")
            site.live.set_meter_dead(True)
            silenced = site.live.elapsed_s
            await until(lambda: site.reports[-1].decision.failsafe, 5, "failsafe")
            # Within the stale limit (2 s) plus a cycle, every charger is at its failsafe current.
            assert site.live.elapsed_s - silenced <= 2 + CYCLE_S + 0.5
            await until(lambda: near(site.limits(), {"c1": 8, "c2": 8}), 5, "8/8 failsafe")
            bits = (await read_registers(site.gateway.export.port, 35, 1))[0]
            assert bits & 0b10100 == 0b10100  # failsafe active, data stale
            assert not bits & 0b1  # meters not ok

            site.live.set_meter_dead(False)
            await until(lambda: not site.reports[-1].decision.failsafe, 10, "recovery")
            await until(lambda: near(site.limits(), {"c1": 10, "c2": 6}), 10, "10/6 again")
            bits = (await read_registers(site.gateway.export.port, 35, 1))[0]
            assert bits & 0b10100 == 0 and bits & 0b1

    run(scenario)


def test_a_charger_that_reconnects_gets_its_profiles_again(tmp_path):
    async def scenario() -> None:
        async with running(tmp_path, household_w=per_phase_w(9), ramp=20) as site:
            await until(lambda: near(site.limits(), {"c1": 10, "c2": 6}), 15, "normal control")
            point = site.live.station("c1").point
            connections, installs = point.connections, point.installs
            await point.disconnect(offline_s=0.5, forget_profiles=True)
            assert point.effective_limit_a() == point.max_a  # nothing limits it now
            await until(lambda: point.connections > connections, 10, "reconnect")
            await until(
                lambda: near(site.limits(), {"c1": 10}),
                15,
                lambda: f"limit re-applied: {site.limits()} sent {site.last_commands()}",
            )
            assert point.installs >= installs + 2  # the failsafe layer and the dynamic one

    run(scenario)


def test_the_register_image_matches_what_the_chargers_were_sent(tmp_path):
    async def scenario() -> None:
        async with running(tmp_path, household_w=per_phase_w(9), ramp=20) as site:
            await until(lambda: near(site.limits(), {"c1": 10, "c2": 6}), 15, "normal control")
            port = site.gateway.export.port
            for slot, station in enumerate(site.live.stations):
                words = await read_registers(port, 1000 + 100 * slot + 22, 2)
                assert as_float(words) == station.point.effective_limit_a()
            cycle = await read_registers(port, 30, 2)
            seen = len(site.reports)
            await until(lambda: len(site.reports) > seen + 1, 5, "two more cycles")
            assert await read_registers(port, 30, 2) != cycle  # the image moves every cycle

    run(scenario)


def test_a_site_limit_written_over_modbus_caps_the_chargers_and_is_published(tmp_path):
    async def scenario() -> None:
        async with running(tmp_path, household_w=per_phase_w(9), ramp=20, writes="true") as site:
            await until(lambda: near(site.limits(), {"c1": 10, "c2": 6}), 15, "normal control")
            port = site.gateway.export.port
            client = AsyncModbusTcpClient("127.0.0.1", port=port)
            await client.connect()
            try:
                # 18 A per phase (register 500, 0.1 A steps): 9 A left after the household.
                written = await client.write_register(500, 180, device_id=1)
                assert not written.isError(), written
            finally:
                client.close()
            await until(lambda: near(site.limits(), {"c1": 9, "c2": 0}), 10, "capped 9/0")
            await until(lambda: len(site.reports) > 0 and site.reports[-1].external is not None, 5)
            limit = as_float(await read_registers(port, 146, 2))
            assert limit == 18.0  # "site current limit in force", not the 25 A fuse
            assert (await read_registers(port, 35, 1))[0] & 0b1000  # external limit active

    run(scenario)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("version", "quirks"),
    [("1.6", frozenset()), ("1.6", {"ignores_valid_to"}), ("2.0.1", {"ignores_valid_to"})],
)
def test_killing_the_gateway_leaves_the_chargers_at_their_failsafe_current(
    tmp_path, version, quirks
):
    async def scenario() -> None:
        config_path = write_config(tmp_path / "probe.toml")
        live = live_site(config_path, household_w=per_phase_w(0))
        # MicroOcpp 1.2.0 never acts on validTo: only the schedule's final period saves it.
        live.versions = {cid: version for cid in live.versions}
        live.quirks = {cid: frozenset(quirks) for cid in live.versions}
        await live.start_meters()
        ocpp_port = free_port()
        config = write_config(
            tmp_path / "gateway.toml",
            grid_port=live.grid.port,
            ocpp_port=ocpp_port,
            export_port=free_port(),
            ramp=20,  # this test is about the failsafe, not the loop: get to 16/9 fast
        )
        daemon = subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", "-c", str(config)],
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            await until(lambda: _listening(ocpp_port), 20, "the daemon's OCPP port")
            await live.connect_chargers(ocpp_port)
            live.start_ticking(0.05)
            limits = lambda: {s.charger_id: s.point.effective_limit_a() for s in live.stations}  # noqa: E731
            # No household load: 25 A free, priority gives 16 / 9.
            await until(lambda: near(limits(), {"c1": 16, "c2": 9}), 20, "16/9 from the daemon")
            daemon.send_signal(signal.SIGKILL)
            daemon.wait(5)
            # The dynamic layer ends (validity 3 s) by its schedule's final period and by
            # validTo: the failsafe current rules.
            await until(lambda: near(limits(), {"c1": 8, "c2": 8}), 10, "failsafe 8/8")
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait(5)
            await live.stop()

    run(scenario)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_a_charger_that_ignores_its_limits_cannot_hold_the_grid_over_the_breaker(tmp_path):
    """Issue 11: c2 charges at its max whatever it is sent. The model alone would give c1
    16 A beside it (37 A on a 25 A fuse); the measured guard cuts c1 instead."""

    async def scenario() -> None:
        async with running(tmp_path, household_w=per_phase_w(5), ramp=100) as site:
            site.live.stations[1].point.quirks.add("ignores_limits")
            samples: list[tuple[float, float]] = []
            start = len(site.reports)

            def sampled() -> bool:
                samples.append((time.monotonic(), max(site.live.reading.grid_a)))
                return len(site.reports) >= start + 40

            await until(sampled, 40, "forty cycles")
            # Over the breaker at most for the guard's reaction (2 cycles + FOLLOW_S +
            # the car's lag + a meter interval) at a time, and not at the end.
            reaction_s = 2 * CYCLE_S + 6.0 + CAR_LAG_S + METER_INTERVAL_S + 1.0
            longest, since = 0.0, None
            for at, amps in samples:
                if amps > BREAKER_A + 0.5:
                    since = at if since is None else since
                    longest = max(longest, at - since)
                else:
                    since = None
            assert longest <= reaction_s, (longest, reaction_s)
            assert any(c.reason.code == 27 for r in site.reports for c in r.decision.commands)

    run(scenario)
