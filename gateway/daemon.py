"""`evse-gateway run -c CONFIG`: the daemon, and `Gateway`, every part built from a config.

Servers start before systemd hears READY, the hub's cycle runs until SIGTERM/SIGINT, and
parts stop in reverse order. Chargers keep their permanent failsafe profile when the
gateway goes away, so a clean stop sends them nothing special. SIGHUP re-reads the
config and takes new charger settings (mode, currents, priority, timing) when the set
of chargers, meters and servers is unchanged; otherwise the log says a restart is needed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import resource
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway import __version__
from gateway.allocation.controller import Controller
from gateway.config import Config, describe, load_runnable_config
from gateway.hub import CycleReport, Hub
from gateway.logsetup import add_log_arguments, setup_logging
from gateway.systemd_notify import Notifier, watchdog_timeout
from gateway.tomlfile import TomlError

if TYPE_CHECKING:
    from gateway.export.server import ExportServer
    from gateway.mqtt.client import MqttBridge
    from gateway.web.server import WebServer

log = logging.getLogger("gateway.daemon")
DEFAULT_CONFIG = "/etc/evse-gateway/config.toml"
RELEASE_TIMEOUT_S = 3.0  # a battery release on stop waits this long for the device


class Gateway:
    """Every part of a running gateway, built from one config."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_cycle: Callable[[CycleReport], None] | None = None,
    ) -> None:
        # The protocol stacks load only when a gateway is built, not for every command.
        from gateway.export.server import ExportServer
        from gateway.meters.poller import MeterSet
        from gateway.ocpp.server import CentralSystem
        from gateway.sessionlog import SessionLog, SessionTracker
        from gateway.settings import ChargerLimits, SettingsStore

        self.config = config
        limits = {c.id: ChargerLimits(c.charger.min_a, c.charger.max_a) for c in config.chargers}
        self.settings = SettingsStore(config.state.dir, limits, config.site.main_breaker_a)
        self.meters = MeterSet(config.meters, clock)
        self.central = CentralSystem(config)
        self.export: ExportServer | None = (
            ExportServer(config.export, clock=clock) if config.export.enabled else None
        )
        self.hub = Hub(
            config,
            Controller.for_chargers(config.control, config.chargers),
            self.meters,
            self.central,
            self.export,
            clock=clock,
            on_cycle=self._cycle_done,
            settings=self.settings,
            holds=self.meters.controls,
        )
        self._on_cycle = on_cycle
        self.sessions = SessionLog(config.state.dir, config.state.session_days)
        self.tracker = SessionTracker(self.sessions.open_rows())
        self.web: WebServer | None = None
        if config.web.enabled:
            from gateway.web.server import WebServer

            self.web = WebServer(
                lambda: self.config.web, self.hub, self.settings, self.sessions, clock
            )
        self.mqtt: MqttBridge | None = None
        if config.mqtt.enabled:
            from gateway.mqtt.client import MqttBridge

            self.mqtt = MqttBridge(
                config.mqtt,
                self.hub,
                self.settings,
                limits,
                config.site.main_breaker_a,
                lambda: [cid for cid, s in self.central.states().items() if s.uncontrolled],
                clock,
            )

    def _cycle_done(self, report: CycleReport) -> None:
        self.sessions.save(
            self.tracker.observe_report(report, self.central.states(), time.time())
        )
        if self.web is not None:
            self.web.cycle_done(report)
        if self.mqtt is not None:
            self.mqtt.cycle_done(report)
        if self._on_cycle is not None:
            self._on_cycle(report)

    async def start(self) -> None:
        """Listen first, then poll: chargers may connect while the meters warm up."""
        await self.central.start()
        try:
            if self.export is not None:
                await self.export.start()
            if self.web is not None:
                await self.web.start()
            if self.mqtt is not None:
                await self.mqtt.start()  # connects in the background: never holds up a start
            self.sessions.start()
            await self.meters.start()
        except BaseException:
            await self.stop()
            raise

    async def release_battery(self) -> None:
        """Release a held battery before the meters stop (the cycle has already ended)."""
        for hold in self.meters.controls:
            last = hold.last
            if not self.meters.running or (last is not None and last.ok and last.limit_w is None):
                continue  # nothing polls the bus, or it is released already
            try:
                released = await hold.release(RELEASE_TIMEOUT_S)
            except TimeoutError:
                released = False
            if not released:
                log.warning(
                    "battery %s: could not release it on stop (%s); %s",
                    hold.name,
                    hold.error or "no answer",
                    "its own expiry ends the hold"
                    if hold.control.expiry_s is not None
                    else "the next start releases it",
                )

    async def stop(self) -> None:
        await self.release_battery()
        await self.meters.stop()
        self.sessions.stop(self.tracker.open.values())  # rows left open: continued next start
        if self.mqtt is not None:
            await self.mqtt.stop()
        if self.web is not None:
            await self.web.stop()
        if self.export is not None:
            await self.export.stop()
        await self.central.stop()

    async def run(self, stop: asyncio.Event, on_healthy: Callable[[], None] = lambda: None) -> None:
        await self.hub.run(stop, self.config.control.cycle_s, on_healthy)

    def reload(self, new: Config) -> bool:
        """Take `new` charger settings if nothing structural changed; say what did."""
        old = self.config
        changed = [
            what
            for what, same in (
                ("charger ids", [c.id for c in old.chargers] == [c.id for c in new.chargers]),
                ("meters", old.meters == new.meters),
                ("site", old.site == new.site),
                ("[ocpp]", old.ocpp == new.ocpp),
                (
                    "OCPP charger settings",
                    [c.ocpp for c in old.chargers] == [c.ocpp for c in new.chargers],
                ),
                # Also in each charger's permanent OCPP failsafe profile, set on connect.
                (
                    "failsafe currents or charger phases",
                    [(c.failsafe_a, c.charger.phases) for c in old.chargers]
                    == [(c.failsafe_a, c.charger.phases) for c in new.chargers],
                ),
                ("[export]", old.export == new.export),
                ("[control]", old.control == new.control),
                # The password and token are read per request; the listener and files are not.
                (
                    "[web] enabled, host or port",
                    (old.web.enabled, old.web.host, old.web.port)
                    == (new.web.enabled, new.web.host, new.web.port),
                ),
                ("[state]", old.state == new.state),
                ("[mqtt]", old.mqtt == new.mqtt),
            )
            if not same
        ]
        if changed:
            log.warning("reload: %s changed; restart the service to apply", ", ".join(changed))
            return False
        self.config = new
        self.hub.config = new
        # The controller is stateless (its state lives in the hub): rebuild it.
        self.hub.controller = Controller.for_chargers(new.control, new.chargers)
        for hold in self.meters.controls:
            hold.request(None)  # released; the next cycle decides again under the new config
        log.info("reload: charger settings applied")
        return True

    def summary(self) -> list[str]:
        ports = (self.central.port, self.export.port if self.export is not None else None)
        lines = [f"evse-gateway {__version__}, config {self.config.path}"]
        lines += describe(self.config, *ports)
        for hold in self.meters.controls:
            expiry = hold.control.expiry_s
            lines.append(
                f"battery hold on meter {hold.name}: re-written every {hold.rewrite_s:g} s, "
                + (f"device expiry {expiry:g} s" if expiry is not None else "no device expiry")
                + ("" if hold.control.verified else "; its registers are UNVERIFIED on a device")
            )
        if self.web is not None:
            lines.append(f"owner's page: {self.page_url()}")
        if self.mqtt is not None:
            m = self.config.mqtt
            lines.append(
                f"MQTT: broker {m.host}:{m.port}{' (TLS)' if m.tls else ''}, topics "
                f"{m.topic_prefix}/, discovery {m.discovery_prefix}/, "
                f"commands {'on' if m.commands else 'off'}"
            )
        return lines

    def page_url(self) -> str:
        assert self.web is not None
        host = self.config.web.host
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{self.web.port}/"


async def serve(config: Config, notifier: Notifier) -> None:
    gateway = Gateway(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_hup() -> None:
        notifier.reloading()
        try:
            gateway.reload(load_runnable_config(config.path))
        except TomlError as exc:
            log.error("reload refused, keeping the running config: %s", exc)
        except Exception:  # a reload must never take control away or hang systemd
            log.exception("reload failed, keeping the running config")
        finally:
            notifier.ready("reloaded")

    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    await gateway.start()
    try:
        for line in gateway.summary():
            log.info("%s", line)
        watchdog = watchdog_timeout()
        if watchdog is not None and watchdog < 2 * config.control.cycle_s:
            log.warning(
                "systemd watchdog (%.0f s) is shorter than two cycles (%.1f s): expect restarts",
                watchdog,
                2 * config.control.cycle_s,
            )
        notifier.ready(f"{len(config.chargers)} chargers, {len(config.meters)} meters")
        await gateway.run(stop, notifier.watchdog)
        log.info("stopping; chargers keep their failsafe profile")
        notifier.stopping("stopping")
    finally:
        await gateway.stop()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="the TOML config")
    add_log_arguments(parser)


# The daemon's own descriptors (files, the loop, web clients), with room to spare.
_OWN_FDS = 64
# asyncio accepts up to 100 connections per wake-up of a listener (its backlog) before
# the export server's cap closes the extras, so a flood holds that many for a moment.
_ACCEPT_BATCH = 100


def descriptors_needed(config: Config) -> int:
    """One per charger, Modbus client (capped) and meter, plus the daemon's own."""
    per_device = len(config.chargers) + config.export.max_clients + len(config.meters)
    return per_device + _OWN_FDS + _ACCEPT_BATCH


def budget_descriptors(config: Config) -> None:
    """Raise the soft open-files limit to what the config needs, so a charger always
    finds a descriptor (the unit's LimitNOFILE sets the hard limit)."""
    need = descriptors_needed(config)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        soft = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if soft != resource.RLIM_INFINITY and soft < need:
        log.warning("only %d file descriptors for the %d this config needs", soft, need)


def run(args: argparse.Namespace) -> int:
    config = load_runnable_config(args.config)
    setup_logging(args.log_level or config.log.level, show_libraries=config.log.show_libraries)
    budget_descriptors(config)
    try:
        asyncio.run(serve(config, Notifier.from_environment()))
    except OSError as exc:  # a port in use, an address not on this machine
        log.error("cannot start: %s", exc)
        return 1
    return 0
