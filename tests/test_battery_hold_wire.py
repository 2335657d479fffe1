"""The battery hold's writes over Modbus TCP to simulated Deye, Huawei, SMA and Victron
inverters, and the simulated battery obeying what they were told (physics: the grid
covers what the capped battery does not)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest

from gateway.meters.profile import builtin
from gateway.meters.served import ServedBus, SimControl, Unit, image, release_image
from gateway.model import Site
from gateway.sim.series import Series
from gateway.sim.site import HomeBattery, Premises
from tests.test_meters_helpers import meter, polling, tcp
from tests.waiting import until

MODELS = ("deye", "huawei-sun2000", "sma", "victron-gx")
# What each device can express of an 800 W allowance: Deye counts whole amps at 51.2 V
# (16 A), Huawei's forcible discharge can only be held at 0.
AT_800_W = {"deye": 16 * 51.2, "huawei-sun2000": 0.0, "sma": 800.0, "victron-gx": 800.0}
SITE = Site(main_breaker_a=25, phases=3, voltage_v=230.0)
HOUSE_W = 600.0
CAR_A = 6.0  # per phase, three phases: 4140 W


def served_battery(model: str) -> tuple[ServedBus, Unit]:
    profile = builtin(model)
    assert profile.control is not None
    words = image(profile.parts["battery"].registers, {"soc_pct": 60.0, "power_w": 0.0})
    unit = Unit(profile.unit_id, words | release_image(profile.control))
    return ServedBus([unit]), unit


def grid_a(battery: HomeBattery) -> float:
    """The grid current per phase with the house and a car on, the battery as told."""
    house = Series([0.0], [(HOUSE_W / 3,) * 3])
    reading = Premises(SITE, house, battery=battery).read(0.0, [CAR_A] * 3)
    return reading.grid_a[0]


async def written(control, limit_w: float | None) -> None:
    assert control.request(limit_w)
    await until(lambda: not control.busy, 5, "the write's answer")
    assert control.last.ok, control.error
    assert control.last.limit_w == limit_w


@pytest.mark.parametrize("model", MODELS)
def test_hold_and_release_reach_the_inverter_and_the_battery_obeys(model: str) -> None:
    async def scenario() -> None:
        bus, unit = served_battery(model)
        port = await bus.start_tcp()
        profile = builtin(model)
        config = meter("battery", model, tcp(port), profile.unit_id, "battery", control=True)
        async with polling([config], bus) as meters:
            (control,) = meters.controls
            device = SimControl(profile.control, unit)
            battery = HomeBattery(10_000, 60.0, 5000, 5000)
            free = grid_a(battery)
            assert free == pytest.approx(0.0)  # the battery covers house and car
            assert device.limit_w() is None

            await written(control, 0.0)
            assert device.limit_w() == 0.0
            battery.limit_w = device.limit_w()
            # Held: the battery gives nothing, the grid carries house and car.
            assert grid_a(battery) == pytest.approx(HOUSE_W / 3 / 230 + CAR_A)
            assert battery.power_w == 0.0

            await written(control, 800.0)
            assert device.limit_w() == pytest.approx(AT_800_W[model])
            battery.limit_w = device.limit_w()
            assert battery.power_w == 0.0 or grid_a(battery) > 0
            assert grid_a(battery) == pytest.approx(
                HOUSE_W / 3 / 230 + CAR_A - AT_800_W[model] / 3 / 230
            )

            await written(control, None)
            assert device.limit_w() is None
            battery.limit_w = device.limit_w()
            assert grid_a(battery) == pytest.approx(free)
            assert control.writes == 3 and control.failures == 0
            # The polls go on between the writes on the same connection.
            await until(lambda: meters.latest()[0].ok, 5, "a good poll")
            assert meters.latest()[0].values["soc_pct"].value == pytest.approx(60.0)

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_a_device_with_an_expiry_stops_obeying_when_the_writes_stop() -> None:
    async def scenario() -> None:
        bus, unit = served_battery("huawei-sun2000")
        port = await bus.start_tcp()
        profile = builtin("huawei-sun2000")
        short = replace(profile.control, expiry_s=0.5, rewrite_s=0.2)
        config = meter("battery", "huawei-sun2000", tcp(port), 1, "battery", control=True)
        async with polling([config], bus) as meters:
            (control,) = meters.controls
            device = SimControl(short, unit)
            await written(control, 0.0)
            assert device.limit_w() == 0.0
            started = time.monotonic()
            await until(lambda: device.limit_w() is None, 5, "the device's own expiry")
            assert time.monotonic() - started >= 0.4
            await written(control, 0.0)  # a re-write holds it again
            assert device.limit_w() == 0.0

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_a_refused_write_is_reported_and_counted() -> None:
    async def scenario() -> None:
        # A unit whose image lacks the control registers: the server answers exception 2.
        profile = builtin("sma")
        words = image(profile.parts["battery"].registers, {"soc_pct": 60.0})
        bus = ServedBus([Unit(3, words)])
        port = await bus.start_tcp()
        config = meter("battery", "sma", tcp(port), 3, "battery", control=True)
        async with polling([config], bus) as meters:
            (control,) = meters.controls
            assert control.request(0.0)
            await until(lambda: not control.busy, 5, "the refusal")
            assert not control.last.ok
            assert control.failures == 1 and control.writes == 0
            assert "exception 2" in control.error

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_every_write_is_logged_and_re_writes_within_a_budget(caplog) -> None:
    async def scenario() -> None:
        bus, _ = served_battery("sma")
        port = await bus.start_tcp()
        config = meter("battery", "sma", tcp(port), 3, "battery", control=True)
        async with polling([config], bus) as meters:
            (control,) = meters.controls
            for limit in (0.0, *[0.0] * 8, 300.0, None):
                await written(control, limit)

    with caplog.at_level("INFO", logger="gateway.meters.control"):
        asyncio.run(asyncio.wait_for(scenario(), 30))
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "battery battery: held at 0 W (write 1)"
    again = [line for line in lines if "again" in line]
    assert len(again) == 5  # of 8 re-writes: the hour's budget
    assert "battery battery: held at 300 W (write 10)" in lines  # its own budget
    assert lines[-1] == "battery battery: released (write 11)"
