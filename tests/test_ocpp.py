"""The OCPP central system end to end: real websockets on 127.0.0.1, simulated chargers."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from gateway.config import ChargerConfig, Config
from gateway.model import Charger, Site
from gateway.ocpp.config import ChargerOcpp, OcppConfig
from gateway.ocpp.server import CentralSystem
from gateway.sim.chargepoint import SimChargePoint
from gateway.sim.ev import EV
from tests.waiting import until

VERSIONS = ["1.6", "2.0.1"]
FAST = OcppConfig(
    host="127.0.0.1",
    port=0,
    meter_interval_s=1,
    refresh_s=0.5,
    validity_s=30,
    boot_wait_s=0.3,
    response_timeout_s=3,
    obey_grace_s=1.0,
    obey_strikes=2,
)


def config(*chargers: ChargerConfig, **ocpp: Any) -> Config:
    return Config(
        path="test", site=Site(main_breaker_a=40), chargers=chargers, ocpp=replace(FAST, **ocpp)
    )


def charger(cid: str = "CP1", phases: int = 3, **ocpp: Any) -> ChargerConfig:
    return ChargerConfig(
        Charger(cid, min_a=6, max_a=16, phases=phases), failsafe_a=6.0, ocpp=ChargerOcpp(**ocpp)
    )


def run(scenario: Callable[..., Awaitable[None]], *args: Any) -> None:
    asyncio.run(asyncio.wait_for(scenario(*args), 40))


class Lab:
    """A started central system plus simulated chargers, stopped on exit."""

    def __init__(self, cfg: Config) -> None:
        self.cs = CentralSystem(cfg)
        self.sims: list[SimChargePoint] = []

    async def __aenter__(self) -> Lab:
        await self.cs.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for sim in self.sims:
            await sim.stop()
        await self.cs.stop()

    def url(self, scheme: str = "ws") -> str:
        return f"{scheme}://127.0.0.1:{self.cs.port}"

    async def sim(self, cid: str = "CP1", scheme: str = "ws", **kw: Any) -> SimChargePoint:
        kw.setdefault("ev", EV(lag_s=0.1))
        kw.setdefault("meter_interval_s", 1.0)
        sim = SimChargePoint(cid, f"{self.url(scheme)}/{cid}", **kw)
        self.sims.append(sim)
        await sim.start()
        await until(sim.connected.is_set, what=f"{cid} connected")
        return sim

    def state(self, cid: str = "CP1") -> Any:
        return self.cs.states()[cid]


@pytest.mark.parametrize("version", VERSIONS)
def test_session_limit_pause_resume(version: str) -> None:
    async def scenario() -> None:
        async with Lab(config(charger(password="pw"))) as site:
            sim = await site.sim(version=version, password="pw")
            await until(lambda: sim.effective_limit_a() == 6.0, what="failsafe layer")
            state = site.state()
            assert state.online and state.protocol == version and state.status == "Available"

            await sim.plug_in()
            site.cs.set_limit("CP1", 10)
            await until(lambda: sim.effective_limit_a() == 10.0, what="limit 10 A")
            await until(lambda: site.state().draw_a == (10.0, 10.0, 10.0), what="draw")
            state = site.state()
            assert state.status == "Charging" and state.active_phases == 3
            assert state.voltage_v == 230.0 and state.offered_a == 10.0
            assert state.power_w == pytest.approx(6900) and state.limit_a == 10.0
            await until(lambda: site.state().session_wh > 0, what="session energy")

            site.cs.set_limit("CP1", 0)
            await until(lambda: sim.effective_limit_a() == 0.0, what="pause")
            await until(lambda: site.state().status == "SuspendedEVSE", what="suspended")
            assert sim.transaction is not None  # paused, not stopped
            site.cs.set_limit("CP1", 13.37)
            await until(lambda: sim.effective_limit_a() == 13.3, what="resume, rounded down")
            await until(lambda: site.state().status == "Charging", what="charging again")
            site.cs.set_limit("CP1", float("nan"))  # a hub bug pauses, never unlimits
            await until(lambda: sim.effective_limit_a() == 0.0, what="invalid -> pause")

            await sim.unplug()
            await until(lambda: site.state().status in ("Available", "Finishing"), what="unplug")

    run(scenario)


@pytest.mark.parametrize("version", VERSIONS)
def test_watt_only_charger_gets_watts(version: str) -> None:
    async def scenario() -> None:
        async with Lab(config(charger(phases=1))) as site:
            sim = await site.sim(version=version, rate_units=("W",), ev=EV(phases=1, lag_s=0.1))
            await until(lambda: any(p.stack == 0 for p in sim.profiles), what="failsafe")
            base = next(p for p in sim.profiles if p.stack == 0)
            assert (base.unit, base.periods[0][1]) == ("W", 6 * 230)
            await sim.plug_in()
            site.cs.set_limit("CP1", 10)
            await until(lambda: sim.effective_limit_a() == pytest.approx(10.0), what="10 A in W")
            dynamic = max(sim.profiles, key=lambda p: p.stack)
            assert (dynamic.unit, dynamic.periods[0][1]) == ("W", 2300.0)
            await until(lambda: site.state().draw_a == (10.0, 0.0, 0.0), what="1-phase draw")
            assert site.state().active_phases == 1

    run(scenario)


def test_charger_refusing_high_stack_and_amps_unannounced() -> None:
    async def scenario() -> None:
        async with Lab(config(charger(phases=1))) as site:
            sim = SimChargePoint(
                "CP1",
                f"{site.url()}/CP1",
                max_stack_level=1,
                rate_units=("W",),
                ev=EV(phases=1, lag_s=0.1),
            )
            # It claims more than it takes, like chargers after a firmware update.
            sim.config["ChargeProfileMaxStackLevel"] = "5"
            sim.config["ChargingScheduleAllowedChargingRateUnit"] = "Current,Power"
            site.sims.append(sim)
            await sim.start()
            site.cs.set_limit("CP1", 10)
            await until(lambda: sim.effective_limit_a() == pytest.approx(10.0), what="limit")
            assert {(p.stack, p.unit) for p in sim.profiles} == {(0, "W"), (1, "W")}
            await until(lambda: site.state().limit_a == 10.0, what="accepted")
            assert site.state().problem == ""

    run(scenario)


def test_auth_refusals_name_the_reason(caplog: pytest.LogCaptureFixture) -> None:
    async def attempt(site: Lab, cid: str, user: str | None, password: str = "") -> int:
        headers = {}
        if user is not None:
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        try:
            async with connect(
                f"{site.url()}/{cid}", subprotocols=["ocpp1.6"], additional_headers=headers
            ):
                return 101
        except InvalidStatus as exc:
            return exc.response.status_code

    async def scenario() -> None:
        async with Lab(config(charger(password="secret"), charger("OPEN"))) as site:
            assert await attempt(site, "CP1", "CP1", "secret") == 101
            assert await attempt(site, "CP1", "CP1", "wrong") == 401
            assert await attempt(site, "CP1", None) == 401
            assert await attempt(site, "CP1", "OPEN", "secret") == 401
            assert await attempt(site, "NOPE", "NOPE", "x") == 404
            assert await attempt(site, "OPEN", None) == 101
        async with Lab(config(auto_accept=True)) as site:
            assert await attempt(site, "NEW1", None) == 101

    run(scenario)
    assert "refused 'CP1'" in caplog.text and "wrong user or password (401)" in caplog.text
    assert "refused 'NOPE'" in caplog.text and "unknown charge point id (404)" in caplog.text


def test_no_subprotocol_is_treated_as_16() -> None:
    async def scenario() -> None:
        async with Lab(config(charger())) as site, connect(f"{site.url()}/CP1") as ws:
            await ws.send(json.dumps([2, "b1", "Heartbeat", {}]))
            reply = json.loads(await ws.recv())
            assert reply[0] == 3 and "currentTime" in reply[2]
            assert site.state().protocol == "1.6"

    run(scenario)


def test_new_connection_replaces_the_old_one() -> None:
    async def scenario() -> None:
        async with Lab(config(charger())) as site:
            sim = await site.sim(reconnect_s=0.2)
            async with connect(f"{site.url()}/CP1", subprotocols=["ocpp1.6"]) as intruder:
                await until(lambda: sim.connections == 2, what="sim pushed out, back again")
                await asyncio.wait_for(intruder.wait_closed(), 5)
                assert intruder.close_code == 1000
                assert intruder.close_reason == "replaced by a new connection"
            site.cs.set_limit("CP1", 8)
            await until(lambda: sim.effective_limit_a() == 8.0, what="limit on the newest")
            assert site.state().online

    run(scenario)


def make_ca(tmp: Path) -> tuple[Path, Path, Path]:
    """A test CA and a server certificate for localhost/127.0.0.1: (ca, cert, key)."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=tmp, check=True, capture_output=True)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-subj",
        "/CN=Test OCPP CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    )
    (tmp / "ext.cnf").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
    )
    openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        "server.crt",
        "-extfile",
        "ext.cnf",
    )
    return tmp / "ca.crt", tmp / "server.crt", tmp / "server.key"


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return make_ca(tmp_path_factory.mktemp("ca"))


@pytest.mark.parametrize("version", VERSIONS)
def test_tls_with_test_ca(version: str, tls_files: tuple[Path, Path, Path]) -> None:
    ca, cert, key = tls_files
    trusting = ssl.create_default_context(cafile=str(ca))

    async def scenario() -> None:
        cfg = config(charger(password="pw"), tls_cert=str(cert), tls_key=str(key))
        async with Lab(cfg) as site:
            sim = await site.sim(version=version, password="pw", scheme="wss", ssl_context=trusting)
            site.cs.set_limit("CP1", 9)
            await until(lambda: sim.effective_limit_a() == 9.0, what="limit over TLS")
            with pytest.raises(ssl.SSLCertVerificationError):
                async with connect(f"{site.url('wss')}/CP1", ssl=ssl.create_default_context()):
                    pass

    run(scenario)


@pytest.mark.parametrize("version", VERSIONS)
def test_reconnect_and_reboot_reapply_profiles(version: str) -> None:
    async def scenario() -> None:
        async with Lab(config(charger())) as site:
            sim = await site.sim(version=version, boot_on_reconnect=False)
            site.cs.set_limit("CP1", 11)
            await until(lambda: sim.effective_limit_a() == 11.0, what="limit")
            # Like go-e: a network loss and the charger forgets its profiles.
            await sim.disconnect(offline_s=0.3, forget_profiles=True)
            assert sim.effective_limit_a() == sim.max_a
            await until(lambda: not site.state().online, what="seen offline")
            await until(
                lambda: sim.connections == 2 and sim.effective_limit_a() == 11.0,
                what="re-applied after reconnect",
            )
            assert sim.boots == 1 and len(sim.profiles) == 2
            await sim.reboot(keep_profiles=False)
            await until(
                lambda: sim.boots == 2 and sim.effective_limit_a() == 11.0,
                what="re-applied after reboot",
            )
            assert {p.stack for p in sim.profiles} == {0, 8}
            assert site.state().online

    run(scenario)


@pytest.mark.parametrize("version", VERSIONS)
def test_stopped_gateway_leaves_charger_at_failsafe(version: str) -> None:
    async def scenario() -> None:
        cs_cfg = config(charger(), validity_s=2.0, refresh_s=0.5)
        async with Lab(cs_cfg) as site:
            sim = await site.sim(version=version)
            await sim.plug_in()
            site.cs.set_limit("CP1", 14)
            await until(lambda: sim.effective_limit_a() == 14.0, what="limit")
            await site.cs.stop()
            await until(lambda: not sim.connected.is_set(), what="disconnected")
            stopped = time.monotonic()
            assert sim.effective_limit_a() == 14.0  # the dynamic layer still holds
            await until(lambda: sim.effective_limit_a() == 6.0, timeout=4, what="lapse")
            assert time.monotonic() - stopped > 0.5
            await until(lambda: sim.ev.draw_a == 6.0, what="car follows the failsafe")

    run(scenario)


def test_silent_hub_lets_the_dynamic_layer_lapse() -> None:
    async def scenario() -> None:
        async with Lab(config(charger(), validity_s=1.5, refresh_s=0.3)) as site:
            sim = await site.sim()
            site.cs.set_limit("CP1", 12)  # and never again
            await until(lambda: sim.effective_limit_a() == 12.0, what="limit")
            await until(lambda: sim.effective_limit_a() == 6.0, timeout=4, what="lapse")
            assert site.state().online

    run(scenario)


def test_stack_level_zero_charger_falls_back_by_schedule() -> None:
    async def scenario() -> None:
        cfg = config(charger(stack_level=0), validity_s=1.5, refresh_s=0.3)
        async with Lab(cfg) as site:
            sim = await site.sim(max_stack_level=0)
            site.cs.set_limit("CP1", 12)
            await until(lambda: sim.effective_limit_a() == 12.0, what="limit")
            assert [p.stack for p in sim.profiles] == [0]  # one profile replaced the base
            await site.cs.stop()
            await until(lambda: sim.effective_limit_a() == 6.0, timeout=4, what="tail period")

    run(scenario)


@pytest.mark.parametrize("version", VERSIONS)
def test_charger_ignoring_limits_is_detected(
    version: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with Lab(config(charger())) as site:
            sim = await site.sim(version=version, max_a=16.0)
            await sim.plug_in()
            site.cs.set_limit("CP1", 8)
            await until(lambda: site.state().draw_a[0] == 8.0, what="obeying draw")
            assert site.state().obeys
            sim.ignore_limits = True
            installs = sim.installs
            await until(lambda: not site.state().obeys, timeout=8, what="disobedience found")
            assert "ignores its limit" in site.state().problem
            await until(lambda: sim.clears > 0, timeout=8, what="profiles cleared, reinstalled")
            assert sim.installs > installs + 2  # re-sent, then base + dynamic again
            sim.ignore_limits = False
            await until(lambda: site.state().obeys, timeout=8, what="obeys again")
            assert site.state().problem == ""

    run(scenario)
    assert "does not obey" in caplog.text


MV16 = {"connectorId": 1, "meterValue": [{"timestamp": "2026-01-01T00:00:00Z", "sampledValue": []}]}
# (frame, expected reply type: 3 = CallResult, 4 = CallError)
ODD_16 = [
    ("not json at all", 4),
    ('{"an": "object"}', 4),
    ("[]", 4),
    ('[2, "m4"]', 4),
    ('[9, "m5", "Heartbeat", {}]', 4),
    ('[2, "m6", "NoSuchAction", {}]', 4),
    ('[2, "m7", "Heartbeat", ["payload", "as", "list"]]', 4),
    ('[2, "m8", "StatusNotification", {"connectorId": 1}]', 4),
    ('[2, "m9", "BootNotification", {}]', 4),
    ('[2, "m10", "Heartbeat", {"vendorFoo": 1}]', 3),
    (
        '[2, "m11", "StatusNotification", {"connectorId": 1, "errorCode": "NoError", '
        '"status": "charging", "vendorFoo": "x"}]',
        3,
    ),
    (
        '[2, "m12", "StatusNotification", {"connectorId": 1, "errorCode": "Error", '
        '"status": "Weird"}]',
        3,
    ),
    (
        '[2, "m13", "StatusNotification", {"connectorId": "one", "errorCode": "NoError", '
        '"status": "Charging"}]',
        3,
    ),
    ('[2, "m14", "MeterValues", {"connectorId": 1, "meterValue": "garbage"}]', 3),
    (
        '[2, "m15", "MeterValues", {"connectorId": 1, "meterValue": [{"timestamp": "x", '
        '"sampledValue": [{"value": "abc", "measurand": "Current.Import", "phase": "L1"}, '
        '{"value": "2.3", "measurand": "Power.Active.Import", "unit": "kW", '
        '"context": "Other.Vendor"}]}]}]',
        3,
    ),
    (
        '[2, "m16", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M", '
        '"chargePointSerialNumber": "0123456789012345678901234567890"}]',
        3,
    ),
    ('[2, "m17", "DataTransfer", {"vendorId": "acme"}]', 4),
    ('[2, "m18", "Authorize", {"idTag": "ABCDEFGHIJKLMNOPQRSTUVWXYZ"}]', 3),
    ('[2, "m19", "StopTransaction", {"transactionId": 1}]', 4),
    ("[2, 20, 21, 22]", 4),
    ('[2, "m21", ["action", "as", "list"], {}]', 4),
]

ODD_201 = [
    (
        '[2, "n1", "StatusNotification", {"timestamp": "2026-01-01T00:00:00Z", '
        '"connectorStatus": "occupied", "evseId": 1, "connectorId": 1, "vendorX": 1}]',
        3,
    ),
    ('[2, "n2", "StatusNotification", {"timestamp": "x", "evseId": 1, "connectorId": 1}]', 4),
    (
        '[2, "n3", "TransactionEvent", {"eventType": "Updated", "timestamp": "x", '
        '"triggerReason": "Whatever", "seqNo": 1, "transactionInfo": {"transactionId": "t1", '
        '"chargingState": "Charging"}, "meterValue": [{"timestamp": "x", '
        '"sampledValue": [{"value": "abc"}]}]}]',
        3,
    ),
    ('[2, "n4", "TransactionEvent", {"eventType": "Started"}]', 4),
    (
        '[2, "n5", "MeterValues", {"evseId": 1, "meterValue": [{"sampledValue": [{"value": 1.5, '
        '"measurand": "Current.Import", "phase": "L1", '
        '"unitOfMeasure": {"unit": "A", "multiplier": "x"}}]}]}]',
        3,
    ),
    ('[2, "n6", "BootNotification", {"reason": "PowerUp"}]', 4),
    ('[2, "n7", "NotifyEvent", {"generatedAt": "x", "seqNo": 0, "eventData": []}]', 3),
    ('[2, "n8", "Heartbeat", {"customData": {"vendorId": "acme", "x": 1}}]', 3),
]


def test_odd_frames_do_not_break_anything(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with Lab(config(charger(), charger("CP2"))) as site:
            sim = await site.sim()
            other = await site.sim("CP2", version="2.0.1")
            for frame, expected in ODD_16:
                reply = await sim.send_raw(frame, timeout=2)
                assert reply is not None and reply[0] == expected, (frame, reply)
            assert site.state().status == "Charging"  # the lenient "charging" was taken
            for frame, expected in ODD_201:
                reply = await other.send_raw(frame, timeout=2)
                assert reply is not None and reply[0] == expected, (frame, reply)
            assert site.state("CP2").status == "Charging"  # Occupied + Charging
            site.cs.set_limit("CP1", 7)
            site.cs.set_limit("CP2", 9)
            await until(lambda: sim.effective_limit_a() == 7.0, what="CP1 still controlled")
            await until(lambda: other.effective_limit_a() == 9.0, what="CP2 unaffected")
            assert site.state().online and site.state("CP2").online
            assert sim.connections == 1

    run(scenario)
    # One line per refused frame, no library tracebacks.
    csms = [r for r in caplog.records if r.name.startswith(("gateway.ocpp", "ocpp.csms"))]
    assert not [r for r in csms if r.exc_info], "tracebacks logged"
    assert len([r for r in csms if r.levelno == logging.WARNING]) >= 12


@pytest.mark.parametrize("version", VERSIONS)
def test_test_ocpp_tool_connects(version: str, tls_files: tuple[Path, Path, Path]) -> None:
    """The PyPI tool `test-ocpp` as an outside client: ws and wss, right and wrong password."""
    tool = shutil.which("test-ocpp") or str(Path(sys.executable).with_name("test-ocpp"))
    ca, cert, key = tls_files

    async def call_tool(url: str, password: str, *extra: str) -> subprocess.CompletedProcess:
        args = [tool, url, "CP1", "--password", password, "--ocpp", version, *extra]
        proc = await asyncio.create_subprocess_exec(
            *args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        out, _ = await proc.communicate()
        return subprocess.CompletedProcess(args, proc.returncode, out.decode(), "")

    async def scenario() -> None:
        async with Lab(config(charger(password="s3cret"))) as site:
            ok = await call_tool(site.url(), "s3cret")
            assert ok.returncode == 0, ok.stdout
            bad = await call_tool(site.url(), "wrong")
            assert bad.returncode == 1 and "401" in bad.stdout
        tls = config(charger(password="s3cret"), tls_cert=str(cert), tls_key=str(key))
        async with Lab(tls) as site:
            ok = await call_tool(site.url("wss"), "s3cret", "--ca", str(ca))
            assert ok.returncode == 0, ok.stdout
            assert "TLS" in ok.stdout
            bad = await call_tool(site.url("wss"), "nope", "--ca", str(ca))
            assert bad.returncode == 1 and "401" in bad.stdout

    run(scenario)
