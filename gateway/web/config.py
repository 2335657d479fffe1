"""The `[web]` (the owner's page and REST API) and `[state]` (where runtime data lives) sections."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.schema import Table

DEFAULT_STATE_DIR = "/var/lib/evse-gateway"


@dataclass(frozen=True, slots=True)
class WebConfig:
    enabled: bool = True
    host: str = "0.0.0.0"
    port: int = 8080
    # `evse-gateway passwd` writes these (gateway.web.auth); unset: the page is read-only.
    password_hash: str | None = None
    token_hash: str | None = None


@dataclass(frozen=True, slots=True)
class StateConfig:
    dir: str | None = DEFAULT_STATE_DIR  # None: nothing persisted (tests, simulations)
    session_days: float = 730.0  # session log rows older than this are pruned


def read_web(top: Table) -> WebConfig:
    t = top.table("web", None)
    if t is None:
        return WebConfig()
    config = WebConfig(
        enabled=t.boolean("enabled", True),
        host=t.string("host", "0.0.0.0"),
        port=t.integer("port", 8080, lo=0, hi=65535),
        password_hash=t.string("password_hash", None),
        token_hash=t.string("token_hash", None),
    )
    t.finish()
    return config


def read_state(top: Table) -> StateConfig:
    t = top.table("state", None)
    if t is None:
        return StateConfig()
    config = StateConfig(
        dir=t.string("dir", DEFAULT_STATE_DIR),
        session_days=t.number("session_days", 730.0, lo=1, hi=36500),
    )
    t.finish()
    return config
