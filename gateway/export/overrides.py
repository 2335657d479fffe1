"""Setpoints written over Modbus: the write rules and the expiring overrides (pure).

Every decision takes `now` (seconds on the server's clock), so expiry is testable
without waiting. A write is all-or-nothing: every register it covers is checked before
any is applied. Ranges come from the map's `range` column; `fuse` and `fuse_w` are the
site breaker, `min` and `max` the charger's configured limits, so no written value can
raise a limit above the fuse or a charger's maximum.
"""

from __future__ import annotations

import ipaddress
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.export.config import ExportConfig
from gateway.export.regmap import NONE16, Register, RegisterMap
from gateway.export.state import ChargerState, ExportState
from gateway.model import Mode

log = logging.getLogger(__name__)

# Modbus exception codes a write can be answered with (0: accepted).
ACCEPTED = 0
ILLEGAL_FUNCTION = 1
ILLEGAL_ADDRESS = 2
ILLEGAL_VALUE = 3
BUSY = 6

_MODES = {m.code: m for m in Mode}
_HEARTBEAT = "heartbeat"


@dataclass(frozen=True, slots=True)
class ChargerOverride:
    max_a: float | None = None
    enabled: bool | None = None
    mode: Mode | None = None


NO_OVERRIDE = ChargerOverride()


@dataclass(frozen=True, slots=True)
class Overrides:
    """The accepted, unexpired overrides; each one only ever lowers what config allows."""

    site_current_a: float | None = None
    site_power_w: float | None = None
    chargers: Mapping[str, ChargerOverride] = field(default_factory=dict)

    def charger(self, charger_id: str) -> ChargerOverride:
        return self.chargers.get(charger_id, NO_OVERRIDE)


@dataclass(slots=True)
class _Entry:
    value: float
    expires: float
    client: str


# register name -> (ChargerOverride field, or Overrides field for the site)
_FIELDS = {
    "site_current_limit": "site_current_a",
    "site_power_limit": "site_power_w",
    "max_current_override": "max_a",
    "enable_override": "enabled",
    "mode_override": "mode",
}
_SITE_ROWS = ("site_current_limit", "site_power_limit")
_CHARGER_ROWS = ("max_current_override", "enable_override", "mode_override")


def _typed(name: str, value: float) -> Any:
    if name == "enable_override":
        return bool(value)
    if name == "mode_override":
        return _MODES[int(value)]
    return value


class OverrideBook:
    """Applies the write rules and keeps what was accepted until it expires."""

    def __init__(self, config: ExportConfig, regmap: RegisterMap) -> None:
        self.config = config
        self._map = regmap
        # (charger id or "" for the site, register name) -> entry
        self._entries: dict[tuple[str, str], _Entry] = {}
        self.accepted = 0
        self.last_result: int | None = None

    def write(
        self, address: int, raw: list[int], state: ExportState | None, client: str, now: float
    ) -> int:
        """Check and apply one client write; returns 0 or the Modbus exception code."""
        result = self._check(address, raw, state, client)
        if isinstance(result, int):
            self.last_result = result
            log.warning(
                "refused Modbus write from %s to %d..%d: exception %02d",
                client,
                address,
                address + len(raw) - 1,
                result,
            )
            return result
        for (row, charger), value in zip(result, raw, strict=True):
            self._apply(row, "" if charger is None else charger.id, value, client, now)
        self.accepted += 1
        self.last_result = ACCEPTED
        return ACCEPTED

    def _check(
        self, address: int, raw: list[int], state: ExportState | None, client: str
    ) -> int | list[tuple[Register, ChargerState | None]]:
        if not self.config.writes_enabled or not self._allowed(client):
            return ILLEGAL_FUNCTION
        if state is None:
            return BUSY
        targets: list[tuple[Register, ChargerState | None]] = []
        for at in range(address, address + len(raw)):
            found = self._map.locate(at)
            if found is None or not found[0].writable:
                return ILLEGAL_ADDRESS
            row, slot = found
            if slot is not None and slot >= len(state.chargers):
                return ILLEGAL_ADDRESS
            targets.append((row, None if slot is None else state.chargers[slot]))
        for (row, charger), value in zip(targets, raw, strict=True):
            if value != NONE16 and not self._in_range(row, value, state, charger):
                return ILLEGAL_VALUE
        return targets

    def _allowed(self, client: str) -> bool:
        if not self.config.allowed_clients:
            return True
        try:
            ip = ipaddress.ip_address(client)
        except ValueError:
            return False
        # A server listening on "::" sees IPv4 clients as ::ffff:a.b.c.d.
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.config.allowed_clients)

    @staticmethod
    def _in_range(
        row: Register, value: int, state: ExportState, charger: ChargerState | None
    ) -> bool:
        if charger is not None:
            symbols = {"min": charger.min_a, "max": charger.max_a}
        else:
            symbols = {"fuse": state.breaker_limit_a, "fuse_w": state.breaker_limit_w}
        lo, hi = row.bounds(symbols)
        # NaN limits (unknown fuse or max) compare false: refused, never waved through.
        return lo <= value / row.scale <= hi

    def _apply(self, row: Register, charger_id: str, value: int, client: str, now: float) -> None:
        expires = now + self.config.override_timeout_s
        if row.name == _HEARTBEAT:
            for entry in self._entries.values():
                entry.expires = expires
            log.info(
                "Modbus heartbeat from %s: %d override(s) refreshed", client, len(self._entries)
            )
            return
        key = (charger_id, row.name)
        where = f"charger {charger_id} " if charger_id else ""
        if value == NONE16:
            self._entries.pop(key, None)
            log.info("Modbus write from %s: %s%s cleared", client, where, row.name)
            return
        physical = value / row.scale
        self._entries[key] = _Entry(physical, expires, client)
        log.info(
            "Modbus write from %s: %s%s = %g%s for %g s",
            client,
            where,
            row.name,
            physical,
            f" {row.unit}" if row.unit else "",
            self.config.override_timeout_s,
        )

    def overrides(self, now: float) -> Overrides:
        """The overrides in force at `now`; expired ones are dropped (and logged) here."""
        for key, entry in list(self._entries.items()):
            if entry.expires <= now:
                del self._entries[key]
                charger_id, name = key
                where = f"charger {charger_id} " if charger_id else ""
                log.warning("Modbus override %s%s from %s expired", where, name, entry.client)
        site: dict[str, Any] = {}
        chargers: dict[str, dict[str, Any]] = {}
        for (charger_id, name), entry in self._entries.items():
            target = chargers.setdefault(charger_id, {}) if charger_id else site
            target[_FIELDS[name]] = _typed(name, entry.value)
        return Overrides(
            **site, chargers={cid: ChargerOverride(**v) for cid, v in chargers.items()}
        )

    def register_values(self, charger_id: str, now: float) -> dict[str, float | None]:
        """Values of the writable registers of the site ("") or one charger, for the image."""
        out: dict[str, float | None] = {}
        for name in _CHARGER_ROWS if charger_id else _SITE_ROWS:
            entry = self._entries.get((charger_id, name))
            out[name] = entry.value if entry and entry.expires > now else None
        return out

    def command_values(self, now: float) -> dict[str, float | None]:
        """The command block's status registers."""
        remaining = [e.expires - now for e in self._entries.values() if e.expires > now]
        return {
            **self.register_values("", now),
            "override_timeout": self.config.override_timeout_s,
            _HEARTBEAT: 0,
            "override_remaining": math.ceil(min(remaining)) if remaining else None,
            "last_write_result": self.last_result,
            "accepted_writes": self.accepted % 0xFFFF,
            "writes_enabled": self.config.writes_enabled,
        }
