"""The MQTT client task: publishes what changed, takes commands, survives the broker.

The hub's cycle only hands over its report (`cycle_done`, O(1)); building documents and
talking to the broker happen in this task, so a broker that is down, slow or refusing
changes nothing in the control loop. An outage is logged once when it starts and once
when it ends; reconnects back off from 1 s to 30 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import aiomqtt

from gateway.mqtt.config import MqttConfig
from gateway.mqtt.topics import CHARGER_MODE, OFFLINE, ONLINE, Topics, payload
from gateway.settings import ChargerLimits, SettingError, SettingsStore

if TYPE_CHECKING:
    from gateway.hub import CycleReport, Hub

log = logging.getLogger(__name__)
BACKOFF_S = (1, 2, 5, 10, 30)
BAD_COMMAND_LOG_S = 10.0  # at most one line per this long about refused commands


class MqttBridge:
    def __init__(
        self,
        config: MqttConfig,
        hub: Hub,
        settings: SettingsStore,
        chargers: dict[str, ChargerLimits],
        breaker_a: float,
        uncontrolled: Callable[[], list[str]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.hub = hub
        self.settings = settings
        self.topics = Topics(config, chargers, breaker_a)
        self.uncontrolled = uncontrolled
        self.clock = clock
        self.connected = False
        self._report: CycleReport | None = None
        self._wake = asyncio.Event()
        self._sent: dict[str, tuple[bytes, float]] = {}  # topic -> (payload, when)
        self._task: asyncio.Task[None] | None = None
        self._bad_logged_at = -BAD_COMMAND_LOG_S
        settings.subscribe(lambda _: self._wake.set())

    # -- the hub's side ---------------------------------------------------------------

    def cycle_done(self, report: CycleReport) -> None:
        self._report = report
        self._wake.set()

    # -- lifetime ---------------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="mqtt")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _client(self) -> aiomqtt.Client:
        c = self.config
        tls = None
        if c.tls:
            tls = aiomqtt.TLSParameters(
                ca_certs=c.ca_file, certfile=c.cert_file, keyfile=c.key_file
            )
        return aiomqtt.Client(
            c.host,
            c.port,
            identifier=c.identity,
            username=c.username,
            password=c.password,
            tls_params=tls,
            keepalive=30,
            timeout=10,
            will=aiomqtt.Will(self.topics.availability, OFFLINE, qos=1, retain=True),
        )

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                async with self._client() as client:
                    log.info(
                        "MQTT %s broker %s:%d, topics %s",
                        "reconnected to" if failures else "connected to",
                        self.config.host,
                        self.config.port,
                        self.topics.prefix,
                    )
                    failures = 0
                    self.connected = True
                    await self._session(client)
            except aiomqtt.MqttError as exc:
                if self.connected or failures == 0:
                    log.warning(
                        "MQTT broker %s:%d: %s; retrying with backoff",
                        self.config.host,
                        self.config.port,
                        exc,
                    )
                self.connected = False
                await asyncio.sleep(BACKOFF_S[min(failures, len(BACKOFF_S) - 1)])
                failures += 1
            except asyncio.CancelledError:
                if self.connected:
                    await self._say_offline()
                raise

    async def _say_offline(self) -> None:
        """A clean stop says offline itself (the will is only sent for a lost connection)."""
        with contextlib.suppress(aiomqtt.MqttError, OSError, asyncio.TimeoutError):
            async with asyncio.timeout(2), self._client() as client:
                await client.publish(self.topics.availability, OFFLINE, qos=1, retain=True)

    async def _session(self, client: aiomqtt.Client) -> None:
        self._sent.clear()  # a new connection: everything is sent again
        for topic in self.topics.subscriptions():
            await client.subscribe(topic, qos=self.config.qos)
        await client.publish(self.topics.availability, ONLINE, qos=1, retain=True)
        for topic, doc in self.topics.discovery().items():
            await client.publish(topic, payload(doc), qos=self.config.qos, retain=True)
        # Either half failing (a lost connection) ends the session with its MqttError.
        halves = [
            asyncio.create_task(self._listen(client)),
            asyncio.create_task(self._publish_loop(client)),
        ]
        try:
            done, _ = await asyncio.wait(halves, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in halves:
                task.cancel()
            await asyncio.gather(*halves, return_exceptions=True)
        for task in done:
            task.result()

    # -- state ------------------------------------------------------------------------

    async def _publish_loop(self, client: aiomqtt.Client) -> None:
        interval = self.config.publish_interval_s
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval)
            self._wake.clear()
            await self._publish_state(client)

    def documents(self) -> dict[str, bytes]:
        """State topic -> payload for the newest cycle (empty before the first)."""
        report = self._report
        if report is None:
            return {}
        state = self.hub.export_state(report)
        out = {self.topics.site_state: payload(self.topics.site_document(state, self.settings))}
        chargers = self.topics.charger_documents(state, self.settings, self.uncontrolled())
        for cid, doc in chargers.items():
            out[self.topics.charger_state(cid)] = payload(doc)
        return out

    async def _publish_state(self, client: aiomqtt.Client) -> None:
        now = self.clock()
        for topic, body in self.documents().items():
            sent = self._sent.get(topic)
            fresh = sent is not None and now - sent[1] < self.config.publish_interval_s
            if fresh and sent[0] == body:
                continue
            await client.publish(topic, body, qos=self.config.qos, retain=True)
            self._sent[topic] = (body, now)

    # -- what comes in ----------------------------------------------------------------

    async def _listen(self, client: aiomqtt.Client) -> None:
        ours = {*self.topics.discovery(), *map(self.topics.charger_state, self.topics.chargers)}
        async for message in client.messages:
            topic = message.topic.value
            if topic.endswith("/config") or topic.endswith("/state"):
                # Our retained topic that this config no longer has: a removed charger.
                if message.retain and message.payload and topic not in ours:
                    await client.publish(topic, b"", qos=self.config.qos, retain=True)
                continue
            if not message.retain:  # a retained command would be replayed on every reconnect
                self._command(topic, message.payload)

    def _command(self, topic: str, body: Any) -> None:
        target = self.topics.parse_command(topic)
        if target is None:
            return
        cid, key = target
        text = body.decode(errors="replace").strip() if isinstance(body, bytes) else str(body)
        try:
            if key == CHARGER_MODE.key:
                assert cid is not None
                self.settings.set_charger(cid, mode=text)
            else:
                amps = _amps(text, key)
                if cid is None:
                    self.settings.set_site_limit(amps)
                else:
                    self.settings.set_charger(cid, max_a=amps)
        except SettingError as exc:
            now = self.clock()
            if now - self._bad_logged_at >= BAD_COMMAND_LOG_S:
                self._bad_logged_at = now
                log.warning("MQTT command on %s refused: %s", topic, exc)
            # The state is sent again so a dashboard that showed the refused value snaps back.
            self._sent.clear()
            self._wake.set()


def _amps(text: str, key: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise SettingError(key, f"must be a number, not {text[:20]!r}") from None
