"""The export server over a real socket: a pymodbus client reads what the hub published."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from pymodbus.client import AsyncModbusTcpClient

from gateway.export.config import ExportConfig
from gateway.export.regmap import CHARGER_BASE, CHARGER_STRIDE, MAP_SIZE, load_map
from gateway.export.server import ExportServer
from gateway.export.state import ChargerState, ExportState, HoldState
from gateway.model import Mode, Reason

NAN = math.nan
DT = AsyncModbusTcpClient.DATATYPE


class FakeClock:
    """The server's injectable clock: tests move time instead of sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def charger(i: int, **kw: Any) -> ChargerState:
    values: dict[str, Any] = dict(
        id=f"wallbox-{i}",
        online=True,
        status="Charging",
        phases=3,
        mode=Mode.SOLAR,
        reason=Reason.SOLAR_SURPLUS,
        allocated_a=8.5 + i,
        target_a=9.25 + i,
        current_a=(8.0 + i, 8.25 + i, 8.5 + i),
        power_w=5600.0 + i,
        session_wh=12345 + i,
        min_a=6.0,
        max_a=16.0,
        control_state=1,
        assumed_a=4.0 + i,  # a codec check: published whatever the state says
    )
    values.update(kw)
    return ChargerState(**values)


def site_state(cycle: int = 7, chargers: int = 3, **kw: Any) -> ExportState:
    values: dict[str, Any] = dict(
        cycle=cycle,
        updated_unix=1_790_000_000.0,
        cycle_time_ms=250.0,
        breaker_limit_a=25.0,
        breaker_limit_w=17250.0,
        meters_ok=True,
        ocpp_ok=True,
        failsafe=False,
        external_limit=True,
        data_stale=False,
        grid_power_w=4321.5,
        grid_power_phase_w=(1000.0, 1500.0, 1821.5),
        grid_current_a=(4.5, -6.5, 8.0),
        voltage_v=(229.5, 231.0, 230.25),
        pv_power_w=3200.0,
        battery_power_w=-800.0,
        battery_soc=55.5,
        net_load_power_w=900.0,
        net_load_a=(1.0, 2.0, NAN),
        household_consumption_w=3300.0,
        ev_power_w=7400.0,
        headroom_a=(10.5, 11.5, 12.5),
        current_limit_a=20.0,
        power_limit_w=NAN,
        chargers=tuple(charger(i) for i in range(chargers)),
        battery_hold=HoldState(state=2, result=0, limit_w=0.0, writes=3, failures=1),
    )
    values.update(kw)
    return ExportState(**values)


@asynccontextmanager
async def running(config: ExportConfig | None = None, clock: FakeClock | None = None):
    server = ExportServer(
        config or ExportConfig(host="127.0.0.1", port=0), clock=clock or FakeClock()
    )
    await server.start()
    client = AsyncModbusTcpClient("127.0.0.1", port=server.port, timeout=3, retries=0)
    try:
        assert await client.connect()
        yield server, client
    finally:
        client.close()
        await server.stop()


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 30))


def writable(**kw: Any) -> ExportConfig:
    return ExportConfig(host="127.0.0.1", port=0, writes_enabled=True, **kw)


async def read_all(client: AsyncModbusTcpClient, start: int, count: int, fc: int = 4) -> list[int]:
    regs: list[int] = []
    read = client.read_input_registers if fc == 4 else client.read_holding_registers
    for at in range(start, start + count, 125):
        rr = await read(at, count=min(125, start + count - at), device_id=1)
        assert not rr.isError(), rr
        regs += rr.registers
    return regs


def decode(regs: list[int], base: int, block: str) -> dict[str, Any]:
    """Decode one block with the map, as SCADA would with the published docs."""
    return load_map().values(block, regs, base)


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


SITE_EXPECTED = {
    "marker": "EVGW",
    "map_version_major": 1,
    "map_version_minor": 2,
    "charger_count": 3,
    "charger_base": 1000,
    "charger_stride": 100,
    "site_base": 100,
    "command_base": 500,
    "max_chargers": 500,
    "cycle_counter": 7,
    "updated": 1_790_000_000,
    "cycle_time": 250,
    "status_bits": 0b01011,  # meters ok, OCPP ok, external limit
    "sign_convention": 1,
    "grid_power": 4321.5,
    "grid_power_l1": 1000.0,
    "grid_power_l2": 1500.0,
    "grid_power_l3": 1821.5,
    "grid_current_l1": 4.5,
    "grid_current_l2": -6.5,
    "grid_current_l3": 8.0,
    "voltage_l1": 229.5,
    "voltage_l2": 231.0,
    "voltage_l3": 230.25,
    "pv_power": 3200.0,
    "battery_power": -800.0,
    "battery_soc": 55.5,
    "net_load_power": 900.0,
    "net_load_current_l1": 1.0,
    "net_load_current_l2": 2.0,
    "net_load_current_l3": NAN,
    "household_consumption": 3300.0,
    "ev_power": 7400.0,
    "headroom_l1": 10.5,
    "headroom_l2": 11.5,
    "headroom_l3": 12.5,
    "breaker_limit": 25.0,
    "breaker_limit_power": 17250.0,
    "current_limit": 20.0,
    "power_limit": NAN,
    "battery_hold": 2,
    "battery_hold_result": 0,
    "battery_hold_limit": 0.0,
    "battery_hold_writes": 3,
    "battery_hold_failures": 1,
    "site_current_limit": None,
    "site_power_limit": None,
    "override_timeout": 60,
    "heartbeat": 0,
    "override_remaining": None,
    "last_write_result": None,
    "accepted_writes": 0,
    "writes_enabled": 0,
}


def charger_expected(i: int) -> dict[str, Any]:
    return {
        "index": i,
        "online": 1,
        "charger_id": f"wallbox-{i}",
        "ocpp_status": 3,
        "phases": 3,
        "mode": 2,
        "reason": 4,
        "allocated_current": 8.5 + i,
        "target_current": 9.25 + i,
        "current_l1": 8.0 + i,
        "current_l2": 8.25 + i,
        "current_l3": 8.5 + i,
        "power": 5600.0 + i,
        "session_energy": 12345 + i,
        "min_current": 6.0,
        "max_current": 16.0,
        "control_state": 1,
        "assumed_current": 4.0 + i,
        "max_current_override": None,
        "enable_override": None,
        "mode_override": None,
    }


def test_every_register_reads_back_what_was_published() -> None:
    async def body() -> None:
        async with running() as (server, client):
            server.publish(site_state())
            regs = await read_all(client, 0, CHARGER_BASE)
            fixed = {
                k: v for b in ("header", "site", "command") for k, v in decode(regs, 0, b).items()
            }
            assert fixed.pop("map_hash") == load_map().hash
            assert fixed.pop("firmware").startswith("0.")
            assert fixed.keys() == SITE_EXPECTED.keys()
            wrong = {
                k: (v, SITE_EXPECTED[k]) for k, v in fixed.items() if not same(v, SITE_EXPECTED[k])
            }
            assert not wrong
            for i in range(3):
                base = CHARGER_BASE + i * CHARGER_STRIDE
                got = decode(await read_all(client, base, CHARGER_STRIDE), 0, "charger")
                assert got == charger_expected(i)
            unused = decode(
                await read_all(client, CHARGER_BASE + 3 * CHARGER_STRIDE, 100), 0, "charger"
            )
            assert unused["index"] == 3 and unused["charger_id"] == ""
            assert unused["online"] is None and math.isnan(unused["allocated_current"])

    run(body)


def test_floats_and_strings_decode_with_the_client_own_converters() -> None:
    async def body() -> None:
        async with running() as (server, client):
            server.publish(site_state())
            rr = await client.read_holding_registers(108, count=6, device_id=1)
            amps = client.convert_from_registers(rr.registers, DT.FLOAT32, word_order="big")
            assert amps == [4.5, -6.5, 8.0]
            rr = await client.read_input_registers(CHARGER_BASE + 2, count=16, device_id=1)
            text = client.convert_from_registers(rr.registers, DT.STRING)
            assert text.rstrip("\0") == "wallbox-0"
            rr = await client.read_input_registers(0, count=2, device_id=1)
            assert rr.registers == [0x4556, 0x4757]
            rr = await client.read_input_registers(30, count=2, device_id=1)
            assert client.convert_from_registers(rr.registers, DT.UINT32) == 7

    run(body)


def test_any_125_register_window_reads_and_fc3_equals_fc4() -> None:
    async def body() -> None:
        async with running() as (server, client):
            server.publish(site_state(chargers=500))
            starts = [*range(0, MAP_SIZE - 124, 997), MAP_SIZE - 125]
            starts += random.Random(6).sample(range(MAP_SIZE - 124), 40)
            for start in starts:
                hr = await client.read_holding_registers(start, count=125, device_id=1)
                ir = await client.read_input_registers(start, count=125, device_id=1)
                assert not hr.isError() and hr.registers == ir.registers, start
            beyond = await client.read_input_registers(MAP_SIZE - 1, count=2, device_id=1)
            assert beyond.isError() and beyond.exception_code == 2
            last = decode(await read_all(client, MAP_SIZE - CHARGER_STRIDE, 100), 0, "charger")
            assert last["charger_id"] == "wallbox-499"

    run(body)


def test_unit_ids_1_0_255_answer_others_get_0b() -> None:
    async def body() -> None:
        async with running() as (server, client):
            server.publish(site_state())
            for unit in (1, 0, 255):
                rr = await client.read_input_registers(0, count=2, device_id=unit)
                assert not rr.isError() and rr.registers == [0x4556, 0x4757]
            rr = await client.read_input_registers(0, count=2, device_id=7)
            assert rr.isError() and rr.exception_code == 0x0B
        async with running(ExportConfig(host="127.0.0.1", port=0, unit_id=7)) as (server, client):
            rr = await client.read_input_registers(0, count=2, device_id=7)
            assert not rr.isError()
            rr = await client.read_input_registers(0, count=2, device_id=1)
            assert rr.exception_code == 0x0B

    run(body)


def test_before_the_first_cycle_the_map_says_stale() -> None:
    async def body() -> None:
        async with running() as (_, client):
            header = decode(await read_all(client, 0, 100), 0, "header")
            assert header["marker"] == "EVGW" and header["cycle_counter"] == 0
            assert header["status_bits"] == 1 << 4 and header["charger_count"] == 0

    run(body)


def test_cycle_counter_moves_and_concurrent_readers_see_whole_cycles() -> None:
    """10 clients read while the hub publishes; every reply comes from one cycle."""

    def cycle_state(n: int) -> ExportState:
        # every float in the site block carries the cycle number
        phase = (float(n),) * 3
        return site_state(
            cycle=n,
            grid_power_w=n,
            grid_power_phase_w=phase,
            grid_current_a=phase,
            voltage_v=phase,
            pv_power_w=n,
            battery_power_w=n,
            battery_soc=n,
            net_load_power_w=n,
            net_load_a=phase,
            ev_power_w=n,
            headroom_a=phase,
            breaker_limit_a=n,
            breaker_limit_w=n,
            current_limit_a=n,
            power_limit_w=n,
        )

    async def body() -> None:
        async with running() as (server, first):
            server.publish(cycle_state(1))
            seen: list[int] = []
            stop = asyncio.Event()

            async def reader() -> None:
                c = AsyncModbusTcpClient("127.0.0.1", port=server.port, timeout=3, retries=0)
                assert await c.connect()
                try:
                    while not stop.is_set():
                        rr = await c.read_input_registers(30, count=120, device_id=1)
                        assert not rr.isError()
                        cycle = (rr.registers[0] << 16) | rr.registers[1]
                        floats = c.convert_from_registers(rr.registers[70:120], DT.FLOAT32)
                        assert set(floats) == {float(cycle)}, (cycle, floats)
                        seen.append(cycle)
                finally:
                    c.close()

            async def publisher() -> None:
                for n in range(2, 400):
                    server.publish(cycle_state(n))
                    await asyncio.sleep(0)
                stop.set()

            await asyncio.gather(publisher(), *(reader() for _ in range(10)))
            assert len(seen) >= 10 and len(set(seen)) > 1  # readers saw the counter move
            rr = await first.read_input_registers(30, count=2, device_id=1)
            assert rr.registers == [0, 399]

    run(body)


async def write(client: AsyncModbusTcpClient, address: int, *values: int) -> int:
    """Write one (FC6) or more (FC16) registers; 0 or the exception code."""
    if len(values) == 1:
        rr = await client.write_register(address, values[0], device_id=1)
    else:
        rr = await client.write_registers(address, list(values), device_id=1)
    return rr.exception_code if rr.isError() else 0


async def read_reg(client: AsyncModbusTcpClient, address: int) -> int:
    rr = await client.read_holding_registers(address, count=1, device_id=1)
    return rr.registers[0]


def test_writes_refused_when_disabled_with_01() -> None:
    async def body() -> None:
        async with running() as (server, client):
            server.publish(site_state())
            assert await write(client, 500, 100) == 1
            assert server.overrides().site_current_a is None
            assert await read_reg(client, 505) == 1  # last write result
            assert await read_reg(client, 507) == 0  # writes_enabled

    run(body)


def test_writes_only_from_allowed_clients(caplog) -> None:
    async def body() -> None:
        import ipaddress

        others = (ipaddress.ip_network("10.0.0.0/8"),)
        async with running(writable(allowed_clients=others)) as (server, client):
            server.publish(site_state())
            assert await write(client, 500, 100) == 1
            assert server.overrides().site_current_a is None
        local = (ipaddress.ip_network("127.0.0.1/32"),)
        async with running(writable(allowed_clients=local)) as (server, client):
            server.publish(site_state())
            assert await write(client, 500, 100) == 0
            assert server.overrides().site_current_a == 10.0

    caplog.set_level("INFO", logger="gateway.export")
    run(body)
    assert "refused Modbus write from 127.0.0.1 to 500..500: exception 01" in caplog.text
    assert "Modbus write from 127.0.0.1: site_current_limit = 10 A for 60 s" in caplog.text


def test_read_only_reserved_and_unused_addresses_refused_with_02() -> None:
    async def body() -> None:
        async with running(writable()) as (server, client):
            server.publish(site_state(chargers=2))
            for address in (0, 30, 108, 502, 504, 520, 1022, 1050, 1083):
                assert await write(client, address, 1) == 2, address
            assert await write(client, CHARGER_BASE + 2 * CHARGER_STRIDE + 81, 1) == 2
            assert await write(client, 501, 100, 60) == 2  # 502 is read-only: nothing applied
            assert server.overrides().site_power_w is None
            rr = await client.read_input_registers(100, count=2, device_id=1)
            assert client.convert_from_registers(rr.registers, DT.FLOAT32) == 4321.5

    run(body)


def test_out_of_range_refused_with_03_and_nothing_above_fuse_or_max() -> None:
    async def body() -> None:
        async with running(writable()) as (server, client):
            server.publish(site_state())  # 25 A fuse = 17250 W; chargers 6..16 A
            assert await write(client, 500, 251) == 3
            assert await write(client, 501, 1726) == 3
            assert await write(client, 1080, 161) == 3
            assert await write(client, 1080, 59) == 3
            assert await write(client, 1081, 2) == 3
            assert await write(client, 1082, 4) == 3
            assert await write(client, 500, 250, 1726) == 3  # all or nothing
            assert server.overrides() == type(server.overrides())()
            assert await write(client, 500, 250, 1725) == 0
            assert await write(client, 1080, 160) == 0
            overrides = server.overrides()
            assert (overrides.site_current_a, overrides.site_power_w) == (25.0, 17250.0)
            assert overrides.charger("wallbox-0").max_a == 16.0

    run(body)


def test_accepted_writes_become_overrides_and_show_in_the_map() -> None:
    async def body() -> None:
        clock = FakeClock()
        async with running(writable(), clock) as (server, client):
            server.publish(site_state())
            assert await write(client, 500, 160) == 0
            assert await write(client, 501, 600) == 0
            base = CHARGER_BASE + CHARGER_STRIDE  # wallbox-1
            assert await write(client, base + 80, 100, 0, Mode.ECO.code) == 0
            got = server.overrides()
            assert (got.site_current_a, got.site_power_w) == (16.0, 6000.0)
            one = got.charger("wallbox-1")
            assert (one.max_a, one.enabled, one.mode) == (10.0, False, Mode.ECO)
            assert got.charger("wallbox-0") == type(one)()
            command = decode(await read_all(client, 0, CHARGER_BASE), 0, "command")
            assert command["site_current_limit"] == 16.0 and command["site_power_limit"] == 6000
            assert command["accepted_writes"] == 3 and command["last_write_result"] == 0
            assert command["override_remaining"] == 60
            block = decode(await read_all(client, base, 100), 0, "charger")
            assert (block["max_current_override"], block["enable_override"]) == (10.0, 0)
            assert await write(client, 500, 0xFFFF) == 0  # 65535 clears
            assert server.overrides().site_current_a is None

    run(body)


def test_overrides_expire_unless_refreshed() -> None:
    async def body() -> None:
        clock = FakeClock()
        config = writable(override_timeout_s=60)
        async with running(config, clock) as (server, client):
            server.publish(site_state())
            assert await write(client, 500, 160) == 0
            assert await write(client, 1081, 0) == 0
            clock.now += 59
            assert server.overrides().site_current_a == 16.0
            assert await write(client, 503, 1) == 0  # heartbeat refreshes both
            clock.now += 59
            assert server.overrides().charger("wallbox-0").enabled is False
            assert await write(client, 500, 170) == 0  # rewriting refreshes one
            clock.now += 2
            got = server.overrides()
            assert got.site_current_a == 17.0 and got.charger("wallbox-0").enabled is None
            clock.now += 60
            assert server.overrides().site_current_a is None
            server.publish(site_state(cycle=8))
            assert await read_reg(client, 500) == 0xFFFF
            assert await read_reg(client, 504) == 0xFFFF

    run(body)


def test_write_before_the_first_cycle_is_busy_and_bad_input_keeps_the_server_up() -> None:
    async def body() -> None:
        async with running(writable()) as (server, client):
            assert await write(client, 500, 100) == 6
            server.publish(site_state())
            for _ in range(20):
                assert await write(client, 600, 1) == 2
            rr = await client.read_input_registers(30, count=2, device_id=1)
            assert rr.registers == [0, 7]

    run(body)


def test_fc23_reads_the_image_and_coils_are_not_part_of_the_map() -> None:
    async def body() -> None:
        async with running(writable()) as (server, client):
            server.publish(site_state())
            rr = await client.readwrite_registers(
                read_address=30, read_count=2, write_address=500, values=[160], device_id=1
            )
            assert rr.registers == [0, 7] and server.overrides().site_current_a == 16.0
            rr = await client.readwrite_registers(
                read_address=30, read_count=2, write_address=100, values=[1], device_id=1
            )
            assert rr.isError() and rr.exception_code == 2
            assert (await client.read_coils(0, count=8, device_id=1)).exception_code == 1
            assert (await client.write_coil(500, True, device_id=1)).exception_code == 1
            assert server.overrides().site_current_a == 16.0

    run(body)


def test_allowed_clients_match_ipv4_mapped_client_addresses() -> None:
    """A dual-stack socket reports an IPv4 client as ::ffff:a.b.c.d."""
    import ipaddress

    from gateway.export.overrides import ACCEPTED, OverrideBook

    local = (ipaddress.ip_network("192.168.1.0/24"),)
    book = OverrideBook(writable(allowed_clients=local), load_map())
    state = site_state()
    assert book.write(500, [100], state, "::ffff:10.0.0.9", 1000.0) != ACCEPTED
    assert book.write(500, [100], state, "::ffff:192.168.1.20", 1000.0) == ACCEPTED
    assert book.overrides(1000.0).site_current_a == 10.0
