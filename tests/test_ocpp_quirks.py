"""Real-firmware behaviour (reference/firmware-observed.md) over real websockets on
127.0.0.1: simulated chargers showing a named quirk against the central system."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
from dataclasses import replace
from pathlib import Path

import pytest
from ocpp.exceptions import InternalError

from gateway.model import ACTIVE_STATUSES
from gateway.ocpp.machine import START_READING_S
from gateway.ocpp.server import CHARGER_LINES, CentralSystem
from gateway.sim.chargepoint import SimChargePoint
from gateway.sim.demo_command import DEMO
from gateway.sim.ev import EV
from gateway.sim.scenario import load_scenario
from gateway.tomlfile import TomlError
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
            sim.profile_error = InternalError("busy\nrequest: {...}\n  more lines")
            site.cs.set_limit("CP1", 6)
            await until(lambda: "InternalError" in site.state().problem, what="send failed")
            assert "\n" not in site.state().problem  # a multi-line description, one line
            assert sim.effective_limit_a() == 16.0 and site.state().sent_a == 16.0
            assert not site.state().uncontrolled  # failed, not refused
            sim.profile_error = None
            site.cs.set_limit("CP1", 6)  # the hub's next cycle
            await until(lambda: sim.effective_limit_a() == 6.0, timeout=3, what="retried")
            await until(lambda: site.state().sent_a == 6.0, what="6 A acknowledged")

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


def gateway_lines(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith(("gateway.ocpp", "ocpp.csms")) and text in r.getMessage()
    ]


def test_a_charger_refusing_every_profile_is_uncontrolled_and_backed_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """MicroOcpp / SAP in 2.0.1: NotImplemented for every SetChargingProfile, down the
    whole fallback chain. Uncontrolled, said once; attempts back off; a limit taken ends it."""
    caplog.set_level(logging.INFO, logger="gateway.ocpp")

    async def scenario() -> None:
        async with Lab(config(charger())) as site:
            sim = await site.sim(version="2.0.1", quirks=frozenset({"set_profile_not_implemented"}))
            site.cs.set_limit("CP1", 8)
            await until(lambda: site.state().uncontrolled, what="uncontrolled")
            assert "uncontrolled: refuses every profile" in site.state().problem
            assert site.state().sent_a is None
            installs = sim.installs
            for _ in range(16):  # 4 s of hub cycles: 8 refreshes at refresh_s 0.5
                site.cs.set_limit("CP1", 8)
                await asyncio.sleep(0.25)
            # Backed off (1 s, 2 s, ...), not every refresh; each attempt is base + dynamic.
            assert sim.installs - installs <= 2 * 3
            sim.quirks.discard("set_profile_not_implemented")
            await until(
                lambda: (site.cs.set_limit("CP1", 8), not site.state().uncontrolled)[1],
                timeout=10,
                what="controlled again",
            )
            await until(lambda: sim.effective_limit_a() == 8.0, what="its limit")
            await until(lambda: site.state().problem == "", what="no problem left")

    run(scenario)
    assert len(gateway_lines(caplog, "uncontrolled")) == 1
    assert len(gateway_lines(caplog, "controlled again")) == 1
    assert not gateway_lines(caplog, "Received a CALLError")  # each refusal said once


def test_a_charger_that_keeps_disobeying_becomes_uncontrolled_and_recovers() -> None:
    async def scenario() -> None:
        async with Lab(config(charger())) as site:
            sim = await site.sim(max_a=16.0, quirks=frozenset({"ignores_limits"}))
            await sim.plug_in()
            await until(
                lambda: (site.cs.set_limit("CP1", 8), site.state().uncontrolled)[1],
                timeout=30,
                what="uncontrolled after re-send and reinstall",
            )
            assert sim.clears > 0  # the reinstall came first
            assert "ignores its limit" in site.state().problem
            sim.quirks.discard("ignores_limits")
            await until(
                lambda: (site.cs.set_limit("CP1", 8), not site.state().uncontrolled)[1],
                timeout=10,
                what="obeys again",
            )
            assert site.state().obeys

    run(scenario)


@pytest.mark.parametrize("version", VERSIONS)
def test_whole_amp_currents_are_refined_by_power(version: str) -> None:
    """MicroOcpp reports "7.00" at 7.6 A; the power / voltage figure is the finer one."""

    async def scenario() -> None:
        async with Lab(config(charger())) as site:
            sim = await site.sim(version=version, quirks=frozenset({"integer_currents"}))
            await sim.plug_in()
            site.cs.set_limit("CP1", 7.6)
            await until(lambda: sim.ev.draw_a == pytest.approx(7.6), what="7.6 A")
            await until(
                lambda: site.state().draw_a == pytest.approx((7.6, 7.6, 7.6), abs=0.01),
                what="the finer draw",
            )

    run(scenario)


@pytest.mark.parametrize("version", VERSIONS)
def test_watts_only_line_to_line_charger_gets_the_right_watts(version: str) -> None:
    """Failsafe watts count the charger's phases (a 3-phase car keeps 6 A, not 2 A), and
    the amps-to-watts voltage is line-to-neutral though the charger reports 398 V."""

    async def scenario() -> None:
        async with Lab(config(charger())) as site:
            quirks = frozenset({"watts_only", "line_to_line_voltage"})
            sim = await site.sim(version=version, quirks=quirks)
            await until(lambda: sim.effective_limit_a() == pytest.approx(6.0), what="failsafe")
            assert sim.profiles[0].unit == "W" and sim.profiles[0].periods[0][1] == 6 * 230 * 3
            await sim.plug_in()
            site.cs.set_limit("CP1", 10)
            await until(lambda: site.state().voltage_v is not None, what="a reading")
            assert site.state().voltage_v == pytest.approx(230.0, abs=0.01)
            await until(lambda: sim.ev.draw_a == pytest.approx(10.0, abs=0.05), what="10 A")
            await until(
                lambda: sim.effective_limit_a() == pytest.approx(10.0, abs=0.05),
                what="10 A in watts, at 230 V",
            )

    run(scenario)


@pytest.mark.parametrize("version", VERSIONS)
def test_refused_measurand_list_falls_back_to_the_core_list(version: str) -> None:
    """MicroOcpp refuses lists with Current.Offered (2.0.1: then no meter values at all)."""

    async def scenario() -> None:
        async with Lab(config(charger())) as site:
            sim = await site.sim(version=version, quirks=frozenset({"rejects_measurands"}))
            await sim.plug_in()
            site.cs.set_limit("CP1", 9)
            await until(lambda: site.state().draw_a == (9.0, 9.0, 9.0), what="draw reported")
            assert "Current.Offered" not in (sim.measurands() or {"Current.Offered"})

    run(scenario)


@pytest.mark.parametrize("version", VERSIONS)
def test_charger_without_stack_level_or_rate_unit_keys_is_controlled(version: str) -> None:
    async def scenario() -> None:
        async with Lab(config(charger())) as site:
            sim = await site.sim(
                version=version, max_stack_level=1, quirks=frozenset({"no_stack_level_key"})
            )
            site.cs.set_limit("CP1", 11)
            await until(lambda: sim.effective_limit_a() == 11.0, what="limit at stack 1, in A")
            await until(lambda: site.state().sent_a == 11.0, what="acknowledged")
            assert not site.state().uncontrolled
            assert {p.stack for p in sim.profiles} == {0, 1}

    run(scenario)


@pytest.mark.parametrize("version", VERSIONS)
def test_a_charging_start_asks_for_meter_values(version: str) -> None:
    """With a 60 s meter interval the draw of a starting car is known within seconds
    (once the car has followed the offer: `START_READING_S`)."""

    async def scenario() -> None:
        async with Lab(config(charger(), meter_interval_s=60)) as site:
            sim = await site.sim(version=version, meter_interval_s=60.0, ev=EV(lag_s=0.0))
            await until(lambda: sim.config, what="meter settings made")
            await sim.plug_in()
            # Before the plug-in every reading shows 0 A, and the next periodic one is a
            # minute away: a reading with the car's draw is the one asked for.
            await until(
                lambda: site.state().draw_a[0] > 0,
                timeout=START_READING_S + 3,
                what="a reading on the start",
            )

    run(scenario)


def test_charger_provoked_log_lines_are_rate_limited_per_charger(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        async with Lab(config(charger(), charger("CP2"))) as site:
            noisy = await site.sim()
            other = await site.sim("CP2")
            for i in range(60):
                reply = await noisy.send_raw(f'[2, "x{i}", "NoSuchAction", {{}}]', timeout=2)
                assert reply is not None and reply[0] == 4  # each still answered
            reply = await other.send_raw('[2, "y1", "NoSuchAction", {}]', timeout=2)
            assert reply is not None and reply[0] == 4

    run(scenario)
    assert len(gateway_lines(caplog, "CP1: unsupported action")) <= CHARGER_LINES
    assert len(gateway_lines(caplog, "CP2: unsupported action")) == 1


def test_scenario_sessions_select_quirks(tmp_path: Path) -> None:
    """A `[[sessions]]` table names its charge point's quirks (demo, live runs)."""
    for name in ("site.toml", "gateway.toml"):
        shutil.copy(DEMO / name, tmp_path / name)
    site = tmp_path / "site.toml"
    text = site.read_text()
    site.write_text(
        text.replace("max_a = 32\n", 'max_a = 32\nquirks = ["watts_only", "integer_currents"]\n')
    )
    sessions = {s.charger: s for s in load_scenario(site).sessions}
    assert sessions["van"].quirks == {"watts_only", "integer_currents"}
    assert sessions["garage"].quirks == frozenset()
    site.write_text(text.replace("max_a = 32\n", 'max_a = 32\nquirks = ["warp_drive"]\n'))
    with pytest.raises(TomlError, match=r"sessions\[3\]\.quirks\[0\]: must be one of"):
        load_scenario(site)


@pytest.mark.parametrize("version", VERSIONS)
def test_a_car_on_the_second_connector_is_controlled(version: str) -> None:
    """MicroOcpp has two connectors: a profile on connector 1 only left connector 2
    unlimited, and its car read as Available."""

    async def scenario() -> None:
        async with Lab(config(charger())) as site:
            sim = await site.sim(version=version, quirks=frozenset({"two_connectors"}))
            # 1.6 tells NumberOfConnectors; a 2.0.1 EVSE is known from its first status.
            share = 3.0 if version == "1.6" else 6.0
            await until(lambda: sim.effective_limit_a() == share, what="failsafe share")
            site.cs.set_limit("CP1", 10)
            await sim.plug_in(connector=2)
            await until(lambda: site.state().status == "Charging", what="Charging")
            site.cs.set_limit("CP1", 10)
            await until(lambda: sim.effective_limit_a() == 10.0, what="connector 2 limited")
            assert {p.connector for p in sim.profiles} == {1, 2}
            await until(lambda: site.state().draw_a == (10.0, 10.0, 10.0), what="its draw")

    run(scenario)
