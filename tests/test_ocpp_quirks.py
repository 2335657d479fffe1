"""Real-firmware behaviour (reference/firmware-observed.md) over real websockets on
127.0.0.1: simulated chargers showing a named quirk against the central system."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import replace

import pytest

from gateway.model import ACTIVE_STATUSES
from gateway.ocpp.server import CentralSystem
from gateway.sim.chargepoint import SimChargePoint
from gateway.sim.ev import EV
from tests.test_ocpp import VERSIONS, Lab, charger, config, run
from tests.waiting import until

CARS = ("CP1", "CP2", "CP3", "CP4")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def hub(cs: CentralSystem) -> None:
    """What the allocator does with the states: 0 A without a car, 8 A with one."""
    while True:
        for cid, state in cs.states().items():
            cs.set_limit(cid, 8.0 if state.status in ACTIVE_STATUSES else 0.0)
        await asyncio.sleep(0.1)


LOWEST: dict[str, float] = {}


def watch_lowest(sims: list[SimChargePoint]) -> asyncio.Task:
    """Record the lowest limit each charger offers, at every physics tick."""

    async def watch() -> None:
        while True:
            for s in sims:
                LOWEST[s.id] = min(LOWEST.get(s.id, 99.0), s.effective_limit_a())
            await asyncio.sleep(0.01)

    LOWEST.clear()
    return asyncio.create_task(watch())


@pytest.mark.parametrize("version", VERSIONS)
def test_gateway_restart_with_four_cars_charging_stops_none(version: str) -> None:
    """No Boot, no status on the reconnect: the gateway asks, and holds until it knows."""

    async def scenario() -> None:
        port = free_port()
        cfg = config(*(charger(cid) for cid in CARS))
        cfg = replace(cfg, ocpp=replace(cfg.ocpp, port=port))
        cs = CentralSystem(cfg)
        await cs.start()
        feeding = asyncio.create_task(hub(cs))
        sims = [
            SimChargePoint(
                cid,
                f"ws://127.0.0.1:{port}/{cid}",
                version=version,
                ev=EV(lag_s=0.1, energy_wanted_wh=1e6),
                meter_interval_s=1.0,
                quirks=frozenset({"no_boot_on_reconnect"}),
            )
            for cid in CARS
        ]
        try:
            for sim in sims:
                await sim.start()
                await until(sim.connected.is_set, what=f"{sim.id} connected")
                await sim.plug_in()
            await until(
                lambda: all(s.effective_limit_a() == 8.0 and s.ev.draw_a == 8.0 for s in sims),
                what="four cars at 8 A",
            )
            feeding.cancel()
            await cs.stop()
            await until(lambda: all(not s.connected.is_set() for s in sims), what="dropped")
            cs = CentralSystem(cfg)  # a restarted gateway: no state at all
            await cs.start()
            feeding = asyncio.create_task(hub(cs))
            await until(lambda: all(s.connections == 2 for s in sims), what="reconnected")
            lowest = watch_lowest(sims)
            await until(
                lambda: all(st.online and st.status == "Charging" for st in cs.states().values()),
                what="sessions recognised",
            )
            # Several refreshes later: nobody was paused on ignorance, not even briefly.
            installs = [s.installs for s in sims]
            await until(
                lambda: all(s.installs >= n + 3 for s, n in zip(sims, installs, strict=True)),
                what="three more limit refreshes at every charger",
            )
            lowest.cancel()
            assert all(s.ev.draw_a == 8.0 for s in sims)
            assert min(LOWEST.values()) >= 6.0, LOWEST
            assert all(s.boots == 1 for s in sims)  # it really was a silent reconnect
            assert all(s.effective_limit_a() == 8.0 for s in sims)
        finally:
            feeding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeding
            for sim in sims:
                await sim.stop()
            await cs.stop()

    run(scenario)


def test_a_failed_reduction_is_retried_at_the_next_cycle() -> None:
    """A send without an Accepted reply is not 'sent': the old acknowledged limit stays in
    the state, and the hub's next cycle tries again (not the refresh 30 s later)."""

    async def scenario() -> None:
        async with Lab(config(charger(), refresh_s=30, validity_s=60)) as site:
            sim = await site.sim(version="2.0.1")
            site.cs.set_limit("CP1", 16)
            await until(lambda: sim.effective_limit_a() == 16.0, what="16 A")
            await until(lambda: site.state().sent_a == 16.0, what="16 A acknowledged")
            sim.quirks.add("set_profile_not_implemented")
            installs = sim.installs
            site.cs.set_limit("CP1", 6)
            await until(lambda: "NotImplemented" in site.state().problem, what="send failed")
            assert sim.effective_limit_a() == 16.0 and site.state().sent_a == 16.0
            assert sim.installs == installs  # refused before it was installed
            sim.quirks.discard("set_profile_not_implemented")
            site.cs.set_limit("CP1", 6)  # the hub's next cycle
            await until(lambda: sim.effective_limit_a() == 6.0, timeout=3, what="retried")
            assert site.state().sent_a == 6.0

    run(scenario)


@pytest.mark.parametrize("version", VERSIONS)
def test_vendor_extras_in_replies_are_accepted(version: str) -> None:
    """An extra field in a SetChargingProfile reply once closed the session 1011."""

    async def scenario() -> None:
        async with Lab(config(charger())) as site:
            sim = await site.sim(version=version, quirks=frozenset({"reply_extras"}))
            site.cs.set_limit("CP1", 11)
            await until(lambda: sim.effective_limit_a() == 11.0, what="limit")
            await until(lambda: site.state().sent_a == 11.0, what="acknowledged")
            assert sim.connections == 1 and site.state().online
            assert site.state().problem == ""

    run(scenario)


def test_nested_and_binary_frames_get_a_call_error_and_the_session_stays() -> None:
    async def scenario() -> None:
        async with Lab(config(charger())) as site:
            sim = await site.sim()
            nested = await sim.send_raw("[" * 1000 + "]" * 1000, timeout=2)
            assert nested is not None and nested[0] == 4 and nested[2] == "FormatViolation"
            binary = await sim.send_raw(b'[2,"b1","Heartbeat",{}]', timeout=2)
            assert binary is not None and binary[0] == 4 and binary[2] == "ProtocolError"
            site.cs.set_limit("CP1", 9)
            await until(lambda: sim.effective_limit_a() == 9.0, what="still controlled")
            assert sim.connections == 1 and site.state().online

    run(scenario)
