"""MQTT against a real Mosquitto on 127.0.0.1: discovery valid for Home Assistant, state,
a mode command reaching the charger's OCPP limit, a broker restart, auth + TLS, fleets.

Each test starts its own broker (`/usr/sbin/mosquitto -c <generated conf>`, a free port,
no persistence: a restarted broker has forgotten every retained message, so what is there
afterwards the gateway published again).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import replace
from pathlib import Path

import aiomqtt
import pytest

from gateway.config import Config, load_config
from gateway.daemon import Gateway
from gateway.mqtt.config import MqttConfig
from gateway.settings import OFF
from gateway.sim.ev import EV
from gateway.sim.live import LiveSite
from gateway.sim.site import Premises
from gateway.tomlfile import TomlError
from tests.conftest import ROOT
from tests.ha_mqtt_schema import problems
from tests.test_e2e import flat, free_port
from tests.test_web import CONFIG as WEB_CONFIG
from tests.waiting import until

MOSQUITTO = "/usr/sbin/mosquitto"

# test_web's site (a grid meter, fast control, OCPP on a free port) without the web page.
CONFIG = (
    WEB_CONFIG.split("[web]")[0].format(grid_port=1, ocpp_port=0)
    + """[web]
enabled = false

[[chargers]]
id = "c1"
mode = "standard"
max_a = 16

[[chargers]]
id = "c2"
mode = "standard"
max_a = 16
"""
)


class Broker:
    """A real mosquitto process; `kill` then `start` keeps the port, not the retained messages."""

    def __init__(self, directory: Path, extra: str = "") -> None:
        self.port = free_port()
        self.conf = directory / f"mosquitto-{self.port}.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\npersistence false\n"
            + (extra or "allow_anonymous true\n")
        )
        self.log = directory / f"mosquitto-{self.port}.log"
        self.process: subprocess.Popen | None = None

    async def start(self) -> None:
        with open(self.log, "a") as out:
            self.process = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.conf)], stdout=out, stderr=subprocess.STDOUT
            )
        await until(self._listening, 10, lambda: f"mosquitto up: {self.log.read_text()}")

    def _listening(self) -> bool:
        assert self.process is not None and self.process.poll() is None, self.log.read_text()
        import socket

        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(5)


@asynccontextmanager
async def broker(directory: Path, extra: str = "") -> AsyncIterator[Broker]:
    b = Broker(directory, extra)
    await b.start()
    try:
        yield b
    finally:
        b.kill()


class Watcher:
    """An MQTT client that keeps the newest payload of every topic and counts messages."""

    def __init__(self, port: int, **client: object) -> None:
        self.port = port
        self.client = client
        self.last: dict[str, bytes] = {}
        self.count: dict[str, int] = {}
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> Watcher:
        ready = asyncio.Event()

        async def run() -> None:
            async with aiomqtt.Client("127.0.0.1", self.port, **self.client) as c:
                await c.subscribe("#")
                ready.set()
                async for m in c.messages:
                    topic = m.topic.value
                    self.last[topic] = bytes(m.payload)
                    self.count[topic] = self.count.get(topic, 0) + 1

        self._task = asyncio.create_task(run())
        await asyncio.wait_for(ready.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        # A watcher of a broker the test killed ended with that broker.
        with suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await self._task

    def doc(self, topic: str) -> dict:
        body = self.last.get(topic)
        return json.loads(body) if body else {}

    def discovery(self, node: str) -> dict[str, dict]:
        return {
            t: json.loads(p)
            for t, p in self.last.items()
            if t.startswith("homeassistant/") and f"/{node}/" in t and p
        }


async def send(port: int, topic: str, body: str) -> None:
    async with aiomqtt.Client("127.0.0.1", port) as c:
        await c.publish(topic, body, qos=1)


def mqtt(port: int, **kw: object) -> MqttConfig:
    return MqttConfig(enabled=True, port=port, publish_interval_s=2, **kw)  # type: ignore[arg-type]


def test_discovery_state_mode_command_and_a_broker_restart(tmp_path, caplog):
    caplog.set_level(logging.INFO, "gateway.mqtt")

    async def scenario() -> None:
        config_path = tmp_path / "gateway.toml"
        config_path.write_text(CONFIG)
        config = load_config(config_path)
        live = LiveSite(
            config,
            Premises(config.site, flat(1000.0)),
            versions={"c1": "2.0.1", "c2": "1.6"},
            cars={"c1": EV(max_a=16, phases=3, energy_wanted_wh=1e6)},
            arrivals_s={"c1": 0.0},
            meter_interval_s=0.5,
        )
        cycles: list[int] = []
        async with broker(tmp_path) as b, Watcher(b.port) as w:
            await live.start_meters()
            gateway = Gateway(
                replace(live.gateway_config(), mqtt=mqtt(b.port, site="house1")),
                on_cycle=lambda r: cycles.append(r.number),
            )
            stop = asyncio.Event()
            prefix = "evse-gateway/house1"
            c1_state = f"{prefix}/charger/c1/state"
            try:
                await gateway.start()
                await live.connect_chargers(gateway.central.port)
                live.start_ticking(0.05)
                cycling = asyncio.create_task(gateway.run(stop))
                point = live.station("c1").point

                # Discovery: every entity valid against HA's documented schema.
                # 14 site entities, 12 per charger.
                await until(
                    lambda: len(w.discovery("evse-gateway-house1")) == 38,
                    10,
                    lambda: (
                        f"38 discovery documents, not {sorted(w.discovery('evse-gateway-house1'))}"
                    ),
                )
                found = w.discovery("evse-gateway-house1")
                bad = {t: p for t, d in found.items() if (p := problems(t.split("/")[1], d))}
                assert bad == {}
                ids = [d["unique_id"] for d in found.values()]
                assert len(ids) == len(set(ids))
                by_id = {d["unique_id"]: (t.split("/")[1], d) for t, d in found.items()}
                component, power = by_id["evse-gateway-house1_c1_power_w"]
                assert component == "sensor"
                assert (power["device_class"], power["state_class"]) == ("power", "measurement")
                assert power["unit_of_measurement"] == "W"
                assert by_id["evse-gateway-house1_c1_session_wh"][1]["state_class"] == (
                    "total_increasing"
                )
                component, mode = by_id["evse-gateway-house1_c1_mode"]
                assert component == "select" and OFF in mode["options"]
                assert by_id["evse-gateway-house1_site_site_limit_a"][0] == "number"
                assert by_id["evse-gateway-house1_c2_max_current_a"][1]["max"] == 16
                for key in ("failsafe", "external_limit", "c1_online", "c1_uncontrolled"):
                    assert (
                        by_id[
                            f"evse-gateway-house1_{key.replace('c1_', 'c1_')}"
                            if key.startswith("c1")
                            else f"evse-gateway-house1_site_{key}"
                        ][0]
                        == "binary_sensor"
                    )
                devices = {json.dumps(d["device"]["identifiers"]) for d in found.values()}
                assert len(devices) == 3  # the site and two chargers
                assert w.last[f"{prefix}/availability"] == b"online"

                # State: the car charges at 16 A and the retained document says so.
                await until(lambda: w.doc(c1_state).get("status") == "Charging", 15)
                await until(lambda: w.doc(c1_state).get("allocated_a") == 16, 15)
                assert w.doc(f"{prefix}/site/state")["grid_power_w"] is not None
                await until(lambda: point.effective_limit_a() == 16, 10, "16 A in standard")

                # Nothing changes on c2 (no car): no message each cycle, one per interval.
                c2_state = f"{prefix}/charger/c2/state"
                seen, first = w.count.get(c2_state, 0), len(cycles)
                await until(lambda: len(cycles) >= first + 8, 10, "eight cycles")
                assert w.count.get(c2_state, 0) - seen <= 3

                # The mode select: off over MQTT -> the settings store -> 0 A over OCPP.
                await send(b.port, f"{prefix}/charger/c1/mode/set", "off")
                await until(lambda: point.effective_limit_a() == 0, 10, "0 A when off")
                assert gateway.settings.get("c1").mode == OFF
                await until(lambda: w.doc(c1_state).get("mode") == OFF, 5)

                # A bad payload changes nothing, and the state is sent again.
                before = w.count[c1_state]
                await send(b.port, f"{prefix}/charger/c1/mode/set", "turbo")
                await send(b.port, f"{prefix}/charger/c1/max_current_a/set", "lots")
                await until(lambda: w.count[c1_state] > before, 5, "state republished")
                assert gateway.settings.get("c1").mode == OFF
                assert gateway.settings.get("c1").max_a is None

                # The broker dies: control goes on; it comes back: everything is republished.
                b.kill()
                during = len(cycles)
                await until(lambda: len(cycles) >= during + 6, 10, "cycles while it is down")
                assert point.effective_limit_a() == 0
                await b.start()
                async with Watcher(b.port) as again:
                    await until(lambda: again.last.get(f"{prefix}/availability") == b"online", 15)
                    await until(
                        lambda: len(again.discovery("evse-gateway-house1")) == len(found), 10
                    )
                    await until(lambda: again.doc(c1_state).get("mode") == OFF, 10)
                    await send(b.port, f"{prefix}/charger/c1/mode/set", "standard")
                    await until(lambda: point.effective_limit_a() == 16, 10, "16 A again")
                    stop.set()
                    await cycling
                    await gateway.stop()
                    await until(lambda: again.last[f"{prefix}/availability"] == b"offline", 5)
            finally:
                stop.set()
                await live.stop()
                await gateway.stop()

    asyncio.run(asyncio.wait_for(scenario(), 120))
    outage = [r for r in caplog.records if "retrying with backoff" in r.getMessage()]
    assert len(outage) == 1  # one line for the outage, however many retries it took
    assert any("reconnected to broker" in r.getMessage() for r in caplog.records)


def bare(config_path: Path) -> Config:
    """A gateway with no meters (discovery needs no cycle) and nothing persisted."""
    config = load_config(config_path)
    return replace(config, meters=(), state=replace(config.state, dir=None))


def test_two_gateways_share_a_broker_and_a_removed_charger_loses_its_entities(tmp_path):
    async def scenario() -> None:
        config_path = tmp_path / "gateway.toml"
        config_path.write_text(CONFIG)
        config = bare(config_path)
        async with broker(tmp_path) as b, Watcher(b.port) as w:
            a = Gateway(replace(config, mqtt=mqtt(b.port, site="house-a")))
            one = replace(config, chargers=config.chargers[:1])
            other = Gateway(replace(one, mqtt=mqtt(b.port, site="house-b")))
            try:
                await a.start()
                await other.start()
                await until(lambda: len(w.discovery("evse-gateway-house-a")) == 38, 10)
                await until(lambda: len(w.discovery("evse-gateway-house-b")) == 26, 10)
                ids = [
                    {d["unique_id"] for d in w.discovery(f"evse-gateway-house-{x}").values()}
                    for x in "ab"
                ]
                assert not ids[0] & ids[1]
                assert (
                    f"MQTT: broker 127.0.0.1:{b.port}, topics evse-gateway/house-a/"
                    in "\n".join(a.summary())
                )
                assert w.last["evse-gateway/house-a/availability"] == b"online"
                assert w.last["evse-gateway/house-b/availability"] == b"online"
                # A command for one site reaches that site only.
                await send(b.port, "evse-gateway/house-b/charger/c1/mode/set", "eco")
                await until(lambda: other.settings.get("c1").mode is not None, 5)
                assert a.settings.get("c1").mode is None
                # House A restarts with c2 gone from its config: c2's entities are removed.
                await a.stop()
                assert w.last["evse-gateway/house-a/availability"] == b"offline"
                # A retained command is not replayed when the gateway subscribes.
                async with aiomqtt.Client("127.0.0.1", b.port) as c:
                    await c.publish("evse-gateway/house-a/charger/c1/mode/set", "off", retain=True)
                a = Gateway(replace(one, mqtt=mqtt(b.port, site="house-a")))
                await a.start()
                await until(lambda: len(w.discovery("evse-gateway-house-a")) == 26, 10)
                await send(b.port, "evse-gateway/house-a/charger/c1/max_current_a/set", "10")
                await until(lambda: a.settings.get("c1").max_a == 10, 5)
                assert a.settings.get("c1").mode is None  # the retained "off" came first
                assert not [t for t in w.discovery("evse-gateway-house-a") if "/c2_" in t]
                assert len(w.discovery("evse-gateway-house-b")) == 26
            finally:
                await a.stop()
                await other.stop()

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_user_password_and_tls_to_the_broker(tmp_path, caplog):
    cert, key, passwords = tmp_path / "broker.crt", tmp_path / "broker.key", tmp_path / "pw"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(passwords), "gw", "s3cret"],
        check=True,
        capture_output=True,
    )
    extra = (
        f"allow_anonymous false\npassword_file {passwords}\n"
        f"certfile {cert}\nkeyfile {key}\nuser root\n"
    )
    tls = aiomqtt.TLSParameters(ca_certs=str(cert))

    async def scenario() -> None:
        config_path = tmp_path / "gateway.toml"
        config_path.write_text(CONFIG)
        config = bare(config_path)
        secure = dict(tls=True, ca_file=str(cert), username="gw")
        async with broker(tmp_path, extra) as b:
            good = Gateway(
                replace(config, mqtt=mqtt(b.port, site="s", password="s3cret", **secure))
            )
            wrong = Gateway(
                replace(config, mqtt=mqtt(b.port, site="t", password="guess", **secure))
            )
            try:
                await good.start()
                await wrong.start()
                async with Watcher(b.port, username="gw", password="s3cret", tls_params=tls) as w:
                    await until(lambda: w.last.get("evse-gateway/s/availability") == b"online", 10)
                    await until(lambda: len(w.discovery("evse-gateway-s")) == 38, 10)
                    assert good.mqtt is not None and good.mqtt.connected
                    assert wrong.mqtt is not None and not wrong.mqtt.connected
                    assert "evse-gateway/t/availability" not in w.last
                # Without TLS the broker does not talk to us at all.
                with pytest.raises(aiomqtt.MqttError):
                    async with aiomqtt.Client("127.0.0.1", b.port, username="gw",
                                              password="s3cret", timeout=3):  # fmt: skip
                        pass
            finally:
                await good.stop()
                await wrong.stop()

    asyncio.run(asyncio.wait_for(scenario(), 60))
    refused = [r for r in caplog.records if "retrying with backoff" in r.getMessage()]
    assert refused and all("127.0.0.1" in r.getMessage() for r in refused)


@pytest.mark.parametrize(
    ("line", "key"),
    [('site = "a/b"', "mqtt.site"), ('prefix = "x/#"', "mqtt.prefix"), ("qos = 3", "mqtt.qos")],
)
def test_a_bad_mqtt_key_is_named_with_its_line(tmp_path, line, key):
    path = tmp_path / "gateway.toml"
    path.write_text(CONFIG + f"\n[mqtt]\nenabled = true\n{line}\n")
    with pytest.raises(TomlError) as error:
        load_config(path)
    assert f"{path}:" in str(error.value) and f"{key}:" in str(error.value)


def test_mqtt_is_off_by_default_and_names_the_site_in_its_topics(tmp_path):
    path = tmp_path / "gateway.toml"
    path.write_text(CONFIG)
    assert not load_config(path).mqtt.enabled
    path.write_text(CONFIG + '\n[mqtt]\nsite = "house-9"\n')
    assert load_config(path).mqtt.topic_prefix == "evse-gateway/house-9"


def test_a_killed_gateway_shows_as_unavailable_by_its_last_will(tmp_path):
    async def scenario() -> None:
        async with broker(tmp_path) as b, Watcher(b.port) as w:
            path = tmp_path / "gateway.toml"
            mqtt_section = f'\n[mqtt]\nenabled = true\nport = {b.port}\nsite = "crash"\n'
            path.write_text(CONFIG + '\n[state]\ndir = "' + str(tmp_path) + '"\n' + mqtt_section)
            with open(tmp_path / "log", "a") as out:
                daemon = subprocess.Popen(
                    [sys.executable, "-m", "gateway", "run", "-c", str(path)],
                    env=dict(os.environ, PYTHONPATH=str(ROOT)),
                    stderr=out,
                )
            try:
                topic = "evse-gateway/crash/availability"
                await until(lambda: w.last.get(topic) == b"online", 15, "the daemon online")
                daemon.kill()  # no clean stop: only the broker can say it is gone
                await until(lambda: w.last.get(topic) == b"offline", 10, "the last will")
            finally:
                daemon.kill()
                daemon.wait(10)

    asyncio.run(asyncio.wait_for(scenario(), 60))
