"""Meters on a real wire: pymodbus servers on 127.0.0.1 and RTU frames through ptys."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time

import pytest
from pymodbus import FramerType

from gateway.meters.blocks import char_time_s, plan_blocks, rtu_max_gap
from gateway.meters.config import Connection
from gateway.meters.poller import MeterSet
from gateway.meters.profile import builtin
from gateway.meters.served import PtyLine, ServedBus, Unit, image
from tests.test_meters_helpers import METER_VALUES, by_name, meter, polling, tcp
from tests.waiting import until as wait_until

PLAIN_METERS = ("sdm630", "sdm72", "sdm120", "em24", "em340", "abb-b23")


def served_unit(unit_id: int, model: str, values=METER_VALUES, dead: bool = False) -> Unit:
    return Unit(unit_id, image(builtin(model).parts["meter"].registers, values), dead=dead)


def expected(model: str) -> dict[str, float]:
    names = {r.name for r in builtin(model).parts["meter"].registers}
    out = {n: METER_VALUES[n] for n in names}
    if model == "sdm120":
        out["power_w"] = METER_VALUES["power_l1_w"]
    return out


def plain(meters: MeterSet, name: str) -> dict[str, float]:
    return {k: r.value for k, r in by_name(meters, name).values.items()}


def test_every_meter_profile_over_tcp_decodes_and_costs_one_request_per_block():
    async def scenario():
        bus = ServedBus(served_unit(i + 1, m) for i, m in enumerate(PLAIN_METERS))
        port = await bus.start_tcp()
        configs = [
            meter(m, m, tcp(port), unit_id=i + 1, interval_s=60) for i, m in enumerate(PLAIN_METERS)
        ]
        async with polling(configs, bus) as meters:
            await wait_until(lambda: all(m.ok for m in meters.latest()))
            for i, model in enumerate(PLAIN_METERS):
                assert plain(meters, model) == pytest.approx(expected(model), rel=1e-5), model
                profile = builtin(model)
                blocks = plan_blocks(profile.parts["meter"].registers, profile.max_registers, 125)
                sent = bus.units[i + 1].requests
                assert sent == [(b.function, b.start, b.count) for b in blocks], model
            # a three-phase meter with 13 values costs one transaction per cycle on TCP
            assert len(bus.units[1].requests) == 1
            assert meters.requests == bus.request_count()

    asyncio.run(scenario())


def test_roles_give_one_sign_convention():
    async def scenario():
        bus = ServedBus([served_unit(1, "sdm630")])
        port = await bus.start_tcp()
        configs = [
            meter("grid", "sdm630", tcp(port), role="grid"),
            meter("pv", "sdm630", tcp(port), role="pv"),
            meter("reversed", "sdm630", tcp(port), role="grid", invert=True),
            meter("wallbox", "sdm630", tcp(port), role="charger"),
        ]
        async with polling(configs, bus) as meters:
            await wait_until(lambda: all(m.ok for m in meters.latest()))
            grid, pv = plain(meters, "grid"), plain(meters, "pv")
            assert grid["power_w"] == pytest.approx(-519) and grid["current_l1_a"] == -10
            assert pv["power_w"] == pytest.approx(519) and pv["current_l1_a"] == 10
            assert pv["energy_import_wh"] == pytest.approx(678900)  # produced = meter export
            assert plain(meters, "reversed")["power_w"] == pytest.approx(519)
            state = by_name(meters, "wallbox")
            assert (state.role, state.charger) == ("charger", "c1")
            assert state.values["power_w"].value == pytest.approx(-519)

    asyncio.run(scenario())


def test_rtu_frames_through_a_pty_and_a_dead_unit_costs_only_its_timeout():
    async def scenario():
        line = PtyLine()
        line.start()
        bus = ServedBus(
            [
                served_unit(1, "sdm630"),
                served_unit(2, "em340"),
                served_unit(9, "sdm120", dead=True),
            ]
        )
        await bus.start_serial(line.server_path, baud=9600)
        rtu = Connection("rtu", device=line.client_path, baud=9600)
        timeout, retries, interval = 0.25, 1, 0.2
        configs = [
            meter("grid", "sdm630", rtu, 1, interval_s=interval),
            meter("charger", "em340", rtu, 2, role="charger", interval_s=interval),
            meter("dead", "sdm120", rtu, 9, interval_s=interval, timeout_s=timeout),
        ]
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(line.close)
            meters = await stack.enter_async_context(polling(configs, bus))
            await wait_until(lambda: by_name(meters, "grid").ok and by_name(meters, "charger").ok)
            assert plain(meters, "grid") == pytest.approx(expected("sdm630"), rel=1e-5)
            assert plain(meters, "charger") == pytest.approx(expected("em340"), rel=1e-5)
            # At 9600 baud the SDM630 reads are split where a gap costs more than a request.
            profile = builtin("sdm630")
            gap = rtu_max_gap(char_time_s(9600, "N", 1))
            blocks = plan_blocks(profile.parts["meter"].registers, 80, gap)
            first = bus.units[1].requests[: len(blocks)]
            assert first == [(b.function, b.start, b.count) for b in blocks]
            assert len(blocks) == 2
            # Watch the grid meter's timestamps while the dead unit keeps timing out.
            stamps: list[float] = []
            end = time.monotonic() + 2.0
            while time.monotonic() < end:
                at = by_name(meters, "grid").values["power_w"].at
                if not stamps or at != stamps[-1]:
                    stamps.append(at)
                await asyncio.sleep(0.005)
            worst = max(b - a for a, b in itertools.pairwise(stamps))
            assert worst < interval + (retries + 1) * timeout + 0.25, stamps
            dead = by_name(meters, "dead")
            assert not dead.ok and "no answer" in (dead.error or "")
            assert dead.values == {}
            assert line.bytes_relayed > 0

    asyncio.run(scenario())


def test_readings_carry_the_injected_clock():
    async def scenario():
        ticks = iter(range(1000, 100000))
        bus = ServedBus([served_unit(1, "sdm120")])
        port = await bus.start_tcp()
        configs = [meter("house", "sdm120", tcp(port), interval_s=0.05)]
        async with polling(configs, bus, clock=lambda: float(next(ticks))) as meters:
            await wait_until(lambda: by_name(meters, "house").ok)
            first = by_name(meters, "house").values["power_w"].at
            await wait_until(lambda: by_name(meters, "house").values["power_w"].at > first)
            values = by_name(meters, "house").values
            assert first >= 1000 and len({r.at for r in values.values()}) == 1

    asyncio.run(scenario())


def test_rtu_over_tcp_bridge():
    async def scenario():
        bus = ServedBus([served_unit(5, "sdm120")])
        port = await bus.start_tcp(framer=FramerType.RTU)
        async with polling(
            [meter("house", "sdm120", tcp(port, "rtu-over-tcp"), unit_id=5)], bus
        ) as meters:
            await wait_until(lambda: by_name(meters, "house").ok)
            assert plain(meters, "house") == pytest.approx(expected("sdm120"), rel=1e-5)

    asyncio.run(scenario())


def test_failed_reads_keep_old_values_and_reconnect_after_server_restart():
    async def scenario():
        bus = ServedBus([served_unit(1, "sdm630")])
        port = await bus.start_tcp()
        async with polling(
            [meter("grid", "sdm630", tcp(port), interval_s=0.05, timeout_s=0.2)], bus
        ) as meters:
            await wait_until(lambda: by_name(meters, "grid").ok)
            await bus.stop()
            await wait_until(lambda: not by_name(meters, "grid").ok)
            before = by_name(meters, "grid").values["power_w"]
            bus_owner = meters.buses[0]
            failures = bus_owner.connect_failures
            await wait_until(lambda: bus_owner.connect_failures >= failures + 2, timeout=10)
            after = by_name(meters, "grid").values["power_w"]
            assert after == before  # same value, same (old) timestamp: staleness is visible
            assert by_name(meters, "grid").error

            changed = dict(METER_VALUES, power_w=4321.0)
            bus = ServedBus([served_unit(1, "sdm630", changed)])
            await bus.start_tcp(port=port)
            await wait_until(lambda: by_name(meters, "grid").ok, timeout=10)
            await wait_until(lambda: by_name(meters, "grid").values["power_w"].value == 4321.0)
            assert by_name(meters, "grid").values["power_w"].at > before.at

    asyncio.run(scenario())


def test_exception_replies_split_merged_reads_and_keep_what_answers():
    async def scenario():
        # This unit only has the registers 0x00-0x11 (V, I, P): merged reads are refused.
        part = builtin("sdm630").parts["meter"]
        words = image([r for r in part.registers if r.address < 0x12], METER_VALUES)
        bus = ServedBus([Unit(1, words)])
        port = await bus.start_tcp()
        async with polling([meter("grid", "sdm630", tcp(port), interval_s=0.05)], bus) as meters:
            await wait_until(lambda: "current_l3_a" in by_name(meters, "grid").values)
            state = by_name(meters, "grid")
            assert not state.ok
            assert "exception 2 (illegal data address)" in (state.error or "")
            assert state.values["current_l1_a"].value == -10.0
            assert "frequency_hz" not in state.values
            assert bus.units[1].requests[0] == (4, 0, 76)
            assert (4, 0, 18) in bus.units[1].requests  # the smaller read after the refusal
            # A device that still delivers values keeps its interval (no failure back-off).
            await wait_until(lambda: bus.units[1].requests.count((4, 0, 18)) >= 8, timeout=1.5)

    asyncio.run(scenario())


async def _garbage_server(reply: bytes | None) -> tuple[asyncio.Server, int]:
    """A TCP peer that answers every request with `reply` (None: echo a short frame)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while request := await reader.read(260):
                if reply is None:  # well-formed MBAP frame, FC4, but 1 register instead of N
                    writer.write(request[:2] + b"\x00\x00\x00\x05\x01\x04\x02\x00\x07")
                else:
                    writer.write(reply)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.mark.parametrize(
    ("reply", "message"),
    [(b"\xde\xad\xbe\xef garbage \x00\x01", "no answer"), (None, "asked for 76 registers")],
)
def test_garbage_and_short_responses_are_errors_not_values(reply, message):
    async def scenario():
        server, port = await _garbage_server(reply)
        meters = MeterSet([meter("grid", "sdm630", tcp(port), timeout_s=0.1, retries=0)])
        await meters.start()
        try:
            await wait_until(lambda: message in (by_name(meters, "grid").error or ""))
            state = by_name(meters, "grid")
            assert not state.ok and state.values == {}
            assert not any(t.done() for t in meters._tasks)  # the bus owner keeps running
        finally:
            await meters.stop()
            server.close()
            await server.wait_closed()

    asyncio.run(scenario())


def test_stop_is_prompt_while_requests_are_in_flight():
    async def scenario():
        bus = ServedBus([served_unit(1, "sdm630")])
        port = await bus.start_tcp()
        try:
            for i in range(40):
                meters = MeterSet([meter("grid", "sdm630", tcp(port), interval_s=0.001)])
                await meters.start()
                await wait_until(lambda: meters.requests > 3)  # noqa: B023
                await asyncio.sleep(i * 0.0002)  # land the cancel at varied moments
                await asyncio.wait_for(meters.stop(), timeout=2)
        finally:
            await bus.stop()

    asyncio.run(scenario())


def test_unreachable_endpoint_is_reported_and_stop_is_clean():
    async def scenario():
        server, port = await _garbage_server(b"")
        server.close()
        await server.wait_closed()  # nothing listens on this port any more
        meters = MeterSet([meter("grid", "sdm630", tcp(port))])
        await meters.start()
        await wait_until(lambda: "cannot connect" in (by_name(meters, "grid").error or ""))
        tasks = list(meters._tasks)
        await meters.stop()
        assert all(t.done() for t in tasks)
        assert not meters.buses[0].link.connected

    asyncio.run(scenario())
