"""The OCPP central system: a websockets server chargers connect to as `ws[s]://host:port/<id>`.

Security profile 1 (HTTP Basic, user = charge point id) and 2 (TLS). The hub reads
`states()` and calls `set_limit()`; both return at once. Each connection gets a session
(1.6 or 2.0.1, by subprotocol; none offered = 1.6) and a control task that does all the
calling (`gateway.ocpp.control`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import http
import logging
import math
import ssl
import time
from collections.abc import Sequence
from urllib.parse import unquote, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, NegotiationError
from websockets.http11 import Request, Response

from gateway.config import Config
from gateway.ocpp.config import ChargerOcpp
from gateway.ocpp.control import Control
from gateway.ocpp.machine import Machine, Target
from gateway.ocpp.session import FRAMES, SESSIONS
from gateway.ocpp.state import ChargerState, Live
from gateway.ratelimit import RateLimiter

log = logging.getLogger(__name__)

# Log lines one charger may cause per minute (a connect with setup takes about ten).
CHARGER_LINES = 20
_SUBPROTOCOLS = {"1.6": "ocpp1.6", "2.0.1": "ocpp2.0.1"}


def charge_point_id(path: str) -> str:
    """`/ocpp/CP1?x=y` -> `CP1` (websockets' Request.path includes the query)."""
    return unquote(urlsplit(path).path.rstrip("/").rsplit("/", 1)[-1])


def _basic_credentials(headers: Headers) -> tuple[str, str] | None:
    value = headers.get("Authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(token, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


class CentralSystem:
    def __init__(self, config: Config) -> None:
        self.cfg = config.ocpp
        volts = config.site.voltage_v
        self.targets = {
            c.id: Target(c.id, c.failsafe_a, c.charger.phases, volts, c.ocpp, c.phase_switching)
            for c in config.chargers
        }
        self._volts = volts
        self._live: dict[str, Live] = {
            cid: Live(cid, failsafe_a=t.failsafe_a) for cid, t in self.targets.items()
        }
        # Control state outlives connections: what the charger holds does too.
        self._machines: dict[str, Machine] = {}
        # Log lines a charger can provoke, per charger id (shared by its sessions).
        self._limiter = RateLimiter(lines=CHARGER_LINES, window_s=60.0)
        self._connections: dict[str, ServerConnection] = {}
        self._server: Server | None = None
        self._closing: set[asyncio.Task] = set()

    # The hub's interface.

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return self._server.sockets[0].getsockname()[1]

    def states(self) -> dict[str, ChargerState]:
        return {cid: live.snapshot() for cid, live in self._live.items()}

    def set_limit(self, charger_id: str, amps: float, phases: int | None = None) -> None:
        """Ask for `amps` per phase (0 = pause), on `phases` lines for a charger that
        switches phases; the charger's control task sends it."""
        live = self._live[charger_id]
        live.wanted_phases = phases
        if not math.isfinite(amps) or amps < 0:
            log.error("%s: invalid limit %r from the hub; pausing instead", charger_id, amps)
            amps = 0.0
        live.wanted_a, live.wanted_at = float(amps), time.monotonic()
        live.wake.set()

    def phase_switch_refused(self, charger_id: str) -> bool:
        """The firmware said it cannot switch phases (see `phaseswitch.py`)."""
        return self._live[charger_id].phase_switch is False

    async def start(self) -> None:
        self._server = await serve(
            self._on_connect,
            self.cfg.host,
            self.cfg.port,
            process_request=self._check_request,
            select_subprotocol=self._select_subprotocol,
            ping_interval=self.cfg.ping_interval_s,
            ping_timeout=self.cfg.ping_interval_s,
            ssl=self._tls(),
        )
        scheme = "wss" if self.cfg.tls_cert else "ws"
        log.info("OCPP central system on %s://%s:%d/<id>", scheme, self.cfg.host, self.port)

    async def stop(self) -> None:
        """Close every connection; chargers keep their failsafe layer."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    # Connection handling.

    def _tls(self) -> ssl.SSLContext | None:
        if self.cfg.tls_cert is None or self.cfg.tls_key is None:
            return None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_cert_chain(self.cfg.tls_cert, self.cfg.tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"cannot load OCPP TLS certificate/key: {exc}") from exc
        return ctx

    def _target(self, cid: str) -> Target | None:
        target = self.targets.get(cid)
        if target is None and self.cfg.auto_accept:
            return Target(cid, self.cfg.auto_accept_a, 3, self._volts, ChargerOcpp())
        return target

    def _check_request(self, conn: ServerConnection, request: Request) -> Response | None:
        cid = charge_point_id(request.path)
        peer = conn.remote_address[0] if conn.remote_address else "?"
        target = self._target(cid)
        if target is None:
            log.warning("refused %r from %s: unknown charge point id (404)", cid, peer)
            return conn.respond(http.HTTPStatus.NOT_FOUND, "Unknown charge point\n")
        if target.ocpp.password is None:
            return None
        credentials = _basic_credentials(request.headers)
        if credentials == (cid, target.ocpp.password):
            return None
        why = "no credentials" if credentials is None else "wrong user or password"
        log.warning("refused %r from %s: %s (401)", cid, peer, why)
        response = conn.respond(http.HTTPStatus.UNAUTHORIZED, "Invalid credentials\n")
        response.headers["WWW-Authenticate"] = 'Basic realm="ocpp", charset="UTF-8"'
        return response

    def _select_subprotocol(self, conn: ServerConnection, offered: Sequence[str]) -> str | None:
        if not offered:
            return None  # treated as 1.6
        target = self._target(charge_point_id(conn.request.path if conn.request else ""))
        hint = target.ocpp.protocol if target else "auto"
        # 1.6 first: chargers' 2.0.1 smart charging is younger and less reliable.
        order = [_SUBPROTOCOLS[hint]] if hint in _SUBPROTOCOLS else []
        for name in (*order, "ocpp1.6", "ocpp2.0.1"):
            if name in offered:
                return name
        raise NegotiationError(f"no supported subprotocol in {', '.join(offered)}")

    async def _on_connect(self, ws: ServerConnection) -> None:
        cid = charge_point_id(ws.request.path if ws.request else "")
        target = self._target(cid)
        if target is None:  # the config cannot change under us, but be safe
            return
        live = self._live.setdefault(cid, Live(cid))
        old = self._connections.get(cid)
        self._connections[cid] = ws
        if old is not None:
            # A charger back from a network loss before we noticed: the old socket may be
            # dead, so its close (up to the close timeout) must not hold up the new one.
            log.info("%s: new connection replaces the old one", cid)
            closing = asyncio.create_task(old.close(1000, "replaced by a new connection"))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
        session_class = SESSIONS[ws.subprotocol or "ocpp1.6"]
        session = session_class(
            cid, ws, response_timeout=self.cfg.response_timeout_s, logger=FRAMES
        )
        session.setup_session(live, target.phases, self.cfg.heartbeat_interval_s, self._limiter)
        live.online, live.protocol = True, session.protocol
        live.state_known = False  # until it tells us (see Control._wait_for_boot)
        log.info("%s: connected (%s) from %s", cid, session.protocol, ws.remote_address)
        machine = self._machines.get(cid)
        if machine is None or machine.target != target:
            machine = self._machines[cid] = Machine(target, self.cfg)
        control = Control(session, live, machine, self._limiter)
        task = asyncio.create_task(control.run())
        try:
            await session.start()
        except ConnectionClosed as exc:
            log.info("%s: disconnected (%s)", cid, exc)
        finally:
            if self._connections.get(cid) is ws:
                del self._connections[cid]
                live.online = False
            # Python 3.11's wait_for can swallow a cancel; the flag ends the loop anyway.
            control.running = False
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
