"""The daemon's HTTP server: the owner's page, the REST API under /api/v1/, a live stream.

aiohttp serves it in the daemon's event loop. The control loop never waits on it: the
hub's `on_cycle` hook only keeps a reference to the newest report and wakes the stream
(`cycle_done`); every figure is turned into JSON here, once per cycle however many
clients ask, and a slow client only slows its own handler.

Reads are open. Every change needs the owner's password (a session cookie from
`POST /api/v1/login`, HttpOnly and SameSite=Strict) or `Authorization: Bearer TOKEN`.
Cookie-authenticated changes must also carry `X-Requested-With: evse-gateway`, a header
a cross-site form cannot send and a cross-site script cannot without a CORS preflight
this server never answers. Failed logins are rate-limited per client and logged.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict
from enum import Enum
from importlib.resources import files
from typing import Any

from aiohttp import web

from gateway.export.state import ExportState
from gateway.hub import CycleReport, Hub
from gateway.sessionlog import SessionLog, write_csv
from gateway.settings import SettingError, SettingsStore
from gateway.web.auth import FailedLogins, check_secret
from gateway.web.config import WebConfig

log = logging.getLogger(__name__)
STATIC = files("gateway.web") / "static"
COOKIE = "evse_session"
CSRF_HEADER = "X-Requested-With"
CSRF_VALUE = "evse-gateway"
MAX_BODY = 64 * 1024


def plain(value: Any) -> Any:
    """JSON-ready: NaN -> null, enums by value, Reason as code and text, tuples as lists."""
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 3)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, Enum):
        if hasattr(value, "text"):
            return {"code": value.code, "text": value.text}
        return value.value
    return value


def state_json(state: ExportState, settings: SettingsStore) -> dict[str, Any]:
    """The site state: the registers' figures plus each charger's runtime setting."""
    body = plain(asdict(state))
    stored = settings.as_json()
    body["settings"] = stored
    for charger in body["chargers"]:
        charger["setting"] = stored["chargers"].get(charger["id"])
    return body


def _error(status: type[web.HTTPException], field: str, message: str) -> web.HTTPException:
    return status(
        text=json.dumps({"error": message, "field": field}), content_type="application/json"
    )


class WebServer:
    def __init__(
        self,
        config: Callable[[], WebConfig],
        hub: Hub,
        settings: SettingsStore,
        sessions: SessionLog,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config  # read per request: a SIGHUP reload takes a new password
        self.hub = hub
        self.settings = settings
        self.sessions = sessions
        self.clock = clock
        self.port: int | None = None
        self._report: CycleReport | None = None
        self._cached: tuple[int, dict[str, Any]] | None = None
        self._cycle = asyncio.Event()
        self._sessions: set[str] = set()
        self._failures = FailedLogins()
        self._runner: web.AppRunner | None = None
        settings.subscribe(lambda _: self._invalidate())

    # -- the hub's side: O(1), never waits --------------------------------------------

    def cycle_done(self, report: CycleReport) -> None:
        self._report = report
        self._cycle.set()
        self._cycle = asyncio.Event()

    def _invalidate(self) -> None:
        self._cached = None

    def state(self) -> dict[str, Any]:
        report = self._report
        if report is None:
            raise _error(web.HTTPServiceUnavailable, "state", "no cycle yet")
        if self._cached is None or self._cached[0] != report.number:
            self._cached = (report.number, state_json(self.hub.export_state(report), self.settings))
        return self._cached[1]

    # -- access -----------------------------------------------------------------------

    def _writable(self, request: web.Request) -> bool:
        config = self.config()
        bearer = request.headers.get("Authorization", "")
        if bearer.startswith("Bearer "):
            return check_secret(bearer[7:], config.token_hash)
        if request.cookies.get(COOKIE) not in self._sessions:
            return False
        return request.method == "GET" or request.headers.get(CSRF_HEADER) == CSRF_VALUE

    def _require_write(self, request: web.Request) -> None:
        if self.config().password_hash is None and self.config().token_hash is None:
            raise _error(
                web.HTTPForbidden, "auth", "read-only: no password set (evse-gateway passwd)"
            )
        if not self._writable(request):
            raise _error(web.HTTPUnauthorized, "auth", "log in or send a token to change this")

    async def _json_body(self, request: web.Request) -> Any:
        if request.content_type != "application/json":
            raise _error(web.HTTPUnsupportedMediaType, "body", "send application/json")
        try:
            return json.loads(await request.text())
        except ValueError as exc:
            raise _error(web.HTTPBadRequest, "body", f"not JSON: {exc}") from None

    # -- handlers ---------------------------------------------------------------------

    async def page(self, request: web.Request) -> web.StreamResponse:
        return web.Response(
            text=(STATIC / "index.html").read_text(), content_type="text/html", charset="utf-8"
        )

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        types = {"js": "application/javascript", "css": "text/css"}
        kind = types.get(name.rsplit(".", 1)[-1])
        resource = STATIC / name
        if kind is None or "/" in name or not resource.is_file():
            raise web.HTTPNotFound()
        return web.Response(text=resource.read_text(), content_type=kind, charset="utf-8")

    async def get_state(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.state())

    async def get_chargers(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.state()["chargers"])

    async def get_settings(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.settings.as_json())

    async def put_settings(self, request: web.Request) -> web.StreamResponse:
        self._require_write(request)
        body = await self._json_body(request)
        try:
            self.settings.update(body)
        except SettingError as exc:
            raise _error(web.HTTPUnprocessableEntity, exc.field, str(exc)) from None
        log.info("settings changed from %s", request.remote)
        return web.json_response(self.settings.as_json())

    async def get_sessions(self, request: web.Request) -> web.StreamResponse:
        """Sessions, newest first; `charger`, `since` and `until` (unix s), `format=csv`."""
        query = request.query
        times: dict[str, float | None] = {}
        for key in ("since", "until"):
            try:
                times[key] = float(query[key]) if key in query else None
            except ValueError:
                raise _error(web.HTTPBadRequest, key, f"{key}: not a unix time") from None
        if query.get("format", "json") not in ("json", "csv"):
            raise _error(web.HTTPBadRequest, "format", "format: json or csv")
        # In a thread: a locked database delays this reply, never the event loop.
        rows = await asyncio.to_thread(
            self.sessions.query, query.get("charger"), times["since"], times["until"]
        )
        if query.get("format") == "csv":
            out = io.StringIO()
            write_csv(rows, out)
            return web.Response(
                text=out.getvalue(),
                content_type="text/csv",
                headers={"Content-Disposition": 'attachment; filename="sessions.csv"'},
            )
        return web.json_response(plain(rows))

    async def get_access(self, request: web.Request) -> web.StreamResponse:
        config = self.config()
        return web.json_response(
            {
                "password_set": config.password_hash is not None,
                "writable": self._writable(request),
            }
        )

    async def login(self, request: web.Request) -> web.StreamResponse:
        client = request.remote or "?"
        now = self.clock()
        if self._failures.blocked(client, now):
            log.warning("login from %s refused: too many failed attempts", client)
            raise _error(web.HTTPTooManyRequests, "password", "too many failed logins; wait")
        body = await self._json_body(request)
        password = body.get("password") if isinstance(body, dict) else None
        if not isinstance(password, str) or not check_secret(
            password, self.config().password_hash
        ):
            self._failures.failed(client, now)
            log.warning("failed login from %s", client)
            raise _error(web.HTTPUnauthorized, "password", "wrong password")
        session = secrets.token_urlsafe(24)
        self._sessions.add(session)
        log.info("owner logged in from %s", client)
        response = web.json_response({"writable": True})
        response.set_cookie(COOKIE, session, httponly=True, samesite="Strict")
        return response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        self._sessions.discard(request.cookies.get(COOKIE, ""))
        response = web.json_response({"writable": False})
        response.del_cookie(COOKIE)
        return response

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: the site state after every cycle."""
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        try:
            while True:
                if self._report is not None:
                    await response.write(f"data: {json.dumps(self.state())}\n\n".encode())
                await self._cycle.wait()
        except ConnectionResetError:  # the page was closed: an ordinary end
            return response

    # -- lifetime ---------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        app.add_routes(
            [
                web.get("/", self.page),
                web.get("/static/{name}", self.static),
                web.get("/api/v1/state", self.get_state),
                web.get("/api/v1/chargers", self.get_chargers),
                web.get("/api/v1/settings", self.get_settings),
                web.put("/api/v1/settings", self.put_settings),
                web.get("/api/v1/sessions", self.get_sessions),
                web.get("/api/v1/access", self.get_access),
                web.post("/api/v1/login", self.login),
                web.post("/api/v1/logout", self.logout),
                web.get("/api/v1/stream", self.stream),
            ]
        )
        return app

    async def start(self) -> None:
        config = self.config()
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, config.host, config.port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
