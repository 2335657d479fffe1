"""The runtime settings store: what the owner changed while the gateway runs.

Per charger a mode (a `Mode`, or `off`: the charger gets 0 A) and an optional max
current; per site an owner's current limit. The TOML config stays the default: a field
left unset here means "as configured". A Modbus override (the SCADA watchdog kind) wins
over a runtime setting while it is in force (`layered`).

This module is the one owner of the store; the web page, the REST API, the CLI and MQTT
all go through `SettingsStore`:

    store.get(charger_id) -> ChargerSetting       store.site_limit_a -> float | None
    store.set_charger(charger_id, mode=..., max_a=...)   (all-or-nothing, validated)
    store.set_site_limit(amps | None)
    store.subscribe(callback)                     called with the store after each change

The store is a small JSON file in the state directory, written atomically (a temp file,
fsync, rename), so a power cut leaves the old file or the new one, never half of one. A
corrupt or unreadable file is reported in the log and ignored: the gateway then runs on
its config.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from gateway.model import Mode

log = logging.getLogger(__name__)

OFF = "off"
RuntimeMode = Mode | Literal["off"]
MODE_NAMES = (*(m.value for m in Mode), OFF)
FILE_NAME = "settings.json"
_UNSET: Any = object()


class SettingError(ValueError):
    """A refused change; `field` names what was wrong (nothing was applied)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class ChargerSetting:
    mode: RuntimeMode | None = None  # None: the configured mode
    max_a: float | None = None  # None: the configured max; never raises it


@dataclass(frozen=True, slots=True)
class ChargerLimits:
    """What a runtime max current is checked against (the charger's configured range)."""

    min_a: float
    max_a: float


def parse_mode(value: Any, field: str = "mode") -> RuntimeMode | None:
    if value is None:
        return None
    if value == OFF:
        return OFF
    try:
        return Mode(value)
    except ValueError:
        raise SettingError(field, f"must be one of {', '.join(MODE_NAMES)} or null") from None


def _number(value: Any, field: str, lo: float, hi: float) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise SettingError(field, f"must be a number from {lo:g} to {hi:g} or null")
    return float(value)


@dataclass(frozen=True, slots=True)
class _Override:
    """One charger's layered override, shaped as `gateway.inputs.ChargerOverride`."""

    max_a: float | None
    enabled: bool | None
    mode: Mode | None


@dataclass(frozen=True, slots=True)
class _Layered:
    """The Modbus overrides over the runtime settings, shaped as `gateway.inputs.Overrides`."""

    site_current_a: float | None
    site_power_w: float | None
    chargers: Mapping[str, _Override]

    def charger(self, charger_id: str) -> _Override:
        return self.chargers.get(charger_id, _Override(None, None, None))


class SettingsStore:
    def __init__(
        self,
        state_dir: str | Path | None,
        chargers: Mapping[str, ChargerLimits],
        site_breaker_a: float,
    ) -> None:
        """`state_dir` None keeps the settings in memory only (tests, simulations)."""
        self.path = Path(state_dir) / FILE_NAME if state_dir is not None else None
        self._limits = dict(chargers)
        self._breaker_a = site_breaker_a
        self._chargers: dict[str, ChargerSetting] = {}
        self.site_limit_a: float | None = None
        self._listeners: list[Callable[[SettingsStore], None]] = []
        self._load()

    # -- reading ----------------------------------------------------------------------

    def get(self, charger_id: str) -> ChargerSetting:
        return self._chargers.get(charger_id, ChargerSetting())

    def as_json(self) -> dict[str, Any]:
        """The stored settings with stable key names (the file's and the REST API's)."""
        return {
            "site": {"current_limit_a": self.site_limit_a},
            "chargers": {
                cid: {"mode": _mode_name(self.get(cid).mode), "max_current_a": self.get(cid).max_a}
                for cid in self._limits
            },
        }

    def layered(self, modbus: Any) -> _Layered:
        """These settings with the Modbus overrides (`gateway.inputs.Overrides`) on top."""
        chargers = {}
        for cid in self._limits:
            mine = self.get(cid)
            theirs = modbus.charger(cid) if modbus is not None else None
            mode = mine.mode if mine.mode != OFF else None
            enabled = False if mine.mode == OFF else None
            max_a = mine.max_a
            if theirs is not None:
                mode = theirs.mode if theirs.mode is not None else mode
                enabled = theirs.enabled if theirs.enabled is not None else enabled
                max_a = theirs.max_a if theirs.max_a is not None else max_a
            chargers[cid] = _Override(max_a, enabled, mode)
        site_a = modbus.site_current_a if modbus is not None else None
        return _Layered(
            site_current_a=site_a if site_a is not None else self.site_limit_a,
            site_power_w=modbus.site_power_w if modbus is not None else None,
            chargers=chargers,
        )

    # -- changing ---------------------------------------------------------------------

    def subscribe(self, callback: Callable[[SettingsStore], None]) -> None:
        self._listeners.append(callback)

    def set_charger(self, charger_id: str, *, mode: Any = _UNSET, max_a: Any = _UNSET) -> None:
        """Change one charger's mode and/or max current (None: back to the config)."""
        limits = self._limits.get(charger_id)
        if limits is None:
            raise SettingError("charger", f"no charger {charger_id!r}")
        new = self.get(charger_id)
        if mode is not _UNSET:
            new = replace(new, mode=parse_mode(mode))
        if max_a is not _UNSET:
            new = replace(new, max_a=_number(max_a, "max_current_a", limits.min_a, limits.max_a))
        self._chargers[charger_id] = new
        self._changed(f"charger {charger_id}: mode {_mode_name(new.mode)}, max {new.max_a}")

    def set_site_limit(self, amps: Any) -> None:
        self.site_limit_a = _number(amps, "current_limit_a", 0, self._breaker_a)
        self._changed(f"site current limit {self.site_limit_a}")

    def update(self, body: Any) -> None:
        """Apply a settings document (the shape of `as_json`, any part of it) all-or-nothing."""
        self._apply(body)
        self._changed("settings updated")

    def _apply(self, body: Any) -> None:
        if not isinstance(body, dict) or set(body) - {"site", "chargers"}:
            raise SettingError("body", 'must be an object with "site" and/or "chargers"')
        # Every change is made on a copy first, so a bad field anywhere applies nothing.
        trial = SettingsStore(None, self._limits, self._breaker_a)
        trial._changed = lambda what: None  # type: ignore[method-assign]  # copies stay quiet
        trial._chargers = dict(self._chargers)
        trial.site_limit_a = self.site_limit_a
        site = body.get("site", {})
        if not isinstance(site, dict) or set(site) - {"current_limit_a"}:
            raise SettingError("site", 'must be an object with "current_limit_a"')
        if "current_limit_a" in site:
            trial.set_site_limit(site["current_limit_a"])
        chargers = body.get("chargers", {})
        if not isinstance(chargers, dict):
            raise SettingError("chargers", "must be an object of charger id -> settings")
        for cid, change in chargers.items():
            if not isinstance(change, dict) or set(change) - {"mode", "max_current_a"}:
                raise SettingError(
                    f"chargers.{cid}", 'must be an object with "mode" and/or "max_current_a"'
                )
            try:
                trial.set_charger(cid, **{_KWARGS[k]: v for k, v in change.items()})
            except SettingError as exc:
                where = f"chargers.{cid}" + ("" if exc.field == "charger" else f".{exc.field}")
                raise SettingError(where, exc.message) from None
        self._chargers, self.site_limit_a = trial._chargers, trial.site_limit_a

    def _changed(self, what: str) -> None:
        log.info("runtime setting: %s", what)
        self._save()
        for callback in self._listeners:
            callback(self)

    # -- the file ---------------------------------------------------------------------

    def _save(self) -> None:
        if self.path is None:
            return
        data = json.dumps(self.as_json(), indent=1).encode()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".settings-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError as exc:  # in force until restart; the log says it will not last
            log.error("cannot save runtime settings to %s: %s", self.path, exc)

    def _load(self) -> None:
        if self.path is None or not self.path.exists():
            return
        try:
            body = json.loads(self.path.read_text())
            known = {k: v for k, v in body.get("chargers", {}).items() if k in self._limits}
            self._apply({"site": body.get("site", {}), "chargers": known})
            log.info("runtime settings from %s: %s", self.path, self.as_json())
        except (OSError, ValueError, AttributeError) as exc:
            log.error("ignoring runtime settings %s (running on the config): %s", self.path, exc)
            self._chargers, self.site_limit_a = {}, None


_KWARGS = {"mode": "mode", "max_current_a": "max_a"}


def _mode_name(mode: RuntimeMode | None) -> str | None:
    return None if mode is None else str(mode)
