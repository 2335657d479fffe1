"""SunSpec: marker search, model-chain walk, int+SF and float models, over TCP."""

from __future__ import annotations

import asyncio

import pytest

from gateway.meters.poller import MeterSet
from gateway.meters.profile import builtin
from gateway.meters.served import Image, ServedBus, Unit, image
from tests.test_meters_helpers import METER_VALUES, by_name, meter, polling, tcp
from tests.waiting import until as wait_until

PV = {
    "power_w": 3000.5,
    "current_l1_a": 4.3,
    "voltage_l1_v": 230.1,
    "frequency_hz": 50.0,
    "energy_import_wh": 9876500.0,
}
# int16 with SF -1 carries one decimal
GRID = {**METER_VALUES, "current_l3_a": 2.5}
BATTERY = {"power_w": -1500.0, "soc_pct": 55.5}
LENGTHS = {1: 66, 103: 50, 113: 60, 203: 105, 213: 124, 802: 62, 124: 24}


def chain(base: int, models: list[tuple[int, dict[str, float]]], sf: int) -> Image:
    """A SunSpec device: "SunS", then each model's ID, L and registers, then the end mark."""
    layouts = {i: m.layout for m in builtin("sunspec").sunspec_models for i in m.ids}
    words: Image = {base: 0x5375, base + 1: 0x6E53}
    address = base + 2
    for model_id, values in models:
        words[address], words[address + 1] = model_id, LENGTHS[model_id]
        for a in range(address + 2, address + 2 + LENGTHS[model_id]):
            words[a] = 0
        if model_id in layouts:
            moved = [r.moved(address) for r in layouts[model_id].registers]
            words.update(image(moved, values, sf=sf))
        address += 2 + LENGTHS[model_id]
    words[address], words[address + 1] = 0xFFFF, 0
    return words


def values_of(meters: MeterSet, name: str) -> dict[str, float]:
    return {k: r.value for k, r in by_name(meters, name).values.items()}


def test_int_sf_models_at_40000_fill_pv_grid_and_battery_roles():
    async def scenario():
        words = chain(
            40000,
            [(1, {}), (103, PV), (203, GRID), (802, BATTERY), (124, {"soc_pct": 60})],
            sf=-1,
        )
        bus = ServedBus([Unit(1, words)])
        port = await bus.start_tcp()
        async with polling(
            [
                meter("inverter", "sunspec", tcp(port), role="pv"),
                meter("grid", "sunspec", tcp(port), role="grid"),
                meter("battery", "sunspec", tcp(port), role="battery"),
            ],
            bus,
        ) as meters:
            await wait_until(lambda: all(m.ok for m in meters.latest()))
            assert values_of(meters, "inverter") == pytest.approx(
                {**PV, "current_l2_a": 0, "current_l3_a": 0, "voltage_l2_v": 0, "voltage_l3_v": 0}
            )
            grid = values_of(meters, "grid")
            assert grid == pytest.approx(GRID)
            assert grid["current_l1_a"] < 0  # exporting on L1
            # 802 is listed before 124, so its SoC wins; W is + while discharging
            assert values_of(meters, "battery") == pytest.approx(BATTERY)
            assert (3, 40000, 2) in bus.units[1].requests

    asyncio.run(scenario())


def test_float_models_found_at_base_0_after_40000_is_refused():
    async def scenario():
        bus = ServedBus([Unit(1, chain(0, [(1, {}), (113, PV), (213, GRID)], sf=0))])
        port = await bus.start_tcp()
        async with polling(
            [
                meter("inverter", "sunspec", tcp(port), role="pv"),
                meter("grid", "sunspec", tcp(port), role="grid"),
            ],
            bus,
        ) as meters:
            await wait_until(lambda: all(m.ok for m in meters.latest()))
            assert values_of(meters, "inverter")["power_w"] == pytest.approx(3000.5)
            assert values_of(meters, "grid") == pytest.approx(GRID, rel=1e-6)
            sent = bus.units[1].requests
            assert sent.index((3, 40000, 2)) < sent.index((3, 0, 2))

    asyncio.run(scenario())


def test_non_sunspec_device_and_missing_model_are_reported():
    async def scenario():
        sdm = image(builtin("sdm630").parts["meter"].registers, METER_VALUES)
        only_pv = chain(40000, [(1, {}), (103, PV)], sf=0)
        bus = ServedBus([Unit(1, sdm), Unit(2, only_pv)])
        port = await bus.start_tcp()
        async with polling(
            [
                meter("plain", "sunspec", tcp(port), unit_id=1, role="grid"),
                meter("nobattery", "sunspec", tcp(port), unit_id=2, role="battery"),
            ],
            bus,
        ) as meters:
            await wait_until(lambda: all(m.error != "not read yet" for m in meters.latest()))
            assert "no SunS marker" in (by_name(meters, "plain").error or "")
            assert "no model for role battery" in (by_name(meters, "nobattery").error or "")
            assert "models found (1, 103)" in (by_name(meters, "nobattery").error or "")

    asyncio.run(scenario())


def test_a_bus_task_that_fails_is_logged_once_restarted_and_its_meter_reads_as_failed(caplog):
    """A scale factor of 10^400 (a device answering garbage where the SF belongs) makes
    the decoder raise inside the bus task. The task must not end silently: one log line
    with the bus, the meter reads as failed (its values age: stale data, failsafe), the
    task restarts with backoff and reads again once the device answers sensibly."""

    async def scenario():
        models = [(1, {}), (203, GRID)]
        good = chain(40000, models, sf=-1)
        # The meter model's scale factor registers (after "SunS", model 1) read 400.
        at = 40000 + 2 + 2 + LENGTHS[1]
        layout = next(m.layout for m in builtin("sunspec").sunspec_models if 203 in m.ids)
        sfs = {r.moved(at).scale_sf for r in layout.registers} - {None}
        bad = good | dict.fromkeys(sfs, 400)
        bus = ServedBus([Unit(1, bad)])
        port = await bus.start_tcp()
        config = meter("grid", "sunspec", tcp(port), role="grid", interval_s=0.05)
        async with polling([config], bus) as meters:
            await wait_until(lambda: "poll task failed" in (by_name(meters, "grid").error or ""))
            failed_at = len(bus.units[1].requests)
            await wait_until(lambda: len(bus.units[1].requests) > failed_at, 5)  # restarted
            grid = by_name(meters, "grid")
            assert not grid.ok and "poll task failed" in grid.error
            assert grid.values == {}  # nothing believed from it
            for address, word in good.items():
                if bad.get(address) != word:
                    await bus.set(1, address, [word])
            await wait_until(lambda: by_name(meters, "grid").ok, timeout=15)
            assert values_of(meters, "grid")["current_l3_a"] == pytest.approx(2.5)

    with caplog.at_level("DEBUG", logger="gateway.meters"):
        asyncio.run(scenario())
    failed = [r for r in caplog.records if "poll task failed; restarting" in r.getMessage()]
    assert len(failed) == 1 and "tcp" in failed[0].getMessage().lower()
    assert failed[0].exc_info is not None  # the traceback, once
