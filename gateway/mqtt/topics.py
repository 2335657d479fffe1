"""PURE: the topics, the state payloads and the Home Assistant discovery documents.

One gateway is one HA node (`<discovery>/<component>/evse-gateway-<site>/<object>/config`):
one device for the site, one per charger (`via_device` the site). State is one retained
JSON document per device; every entity picks its field with a `value_template`. Figures
are rounded to 0.1 so meter noise below that does not make a message every cycle.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway import __version__
from gateway.export.state import ExportState
from gateway.mqtt.config import MqttConfig, topic_word
from gateway.settings import MODE_NAMES, OFF, ChargerLimits, SettingsStore

ONLINE, OFFLINE = "online", "offline"
PHASES = ("l1", "l2", "l3")


@dataclass(frozen=True, slots=True)
class Entity:
    component: str  # sensor | binary_sensor | select | number
    key: str  # the field of the state document, and the object id's tail
    name: str
    device_class: str | None = None
    state_class: str | None = None
    unit: str | None = None


def _sensor(key: str, name: str, device_class: str | None, unit: str | None) -> Entity:
    return Entity("sensor", key, name, device_class, "measurement" if unit else None, unit)


SITE_ENTITIES = (
    _sensor("grid_power_w", "Grid power", "power", "W"),
    *(_sensor(f"grid_current_{p}_a", f"Grid current {p.upper()}", "current", "A") for p in PHASES),
    _sensor("pv_power_w", "PV power", "power", "W"),
    _sensor("battery_power_w", "Battery power", "power", "W"),
    _sensor("battery_soc", "Battery charge", "battery", "%"),
    _sensor("household_consumption_w", "Household consumption", "power", "W"),
    _sensor("ev_power_w", "EV power", "power", "W"),
    _sensor("current_limit_a", "Current limit in force", "current", "A"),
    Entity("binary_sensor", "failsafe", "Failsafe", "problem"),
    Entity("binary_sensor", "external_limit", "External limit"),
    Entity("binary_sensor", "data_stale", "Meter data stale", "problem"),
)
SITE_LIMIT = Entity("number", "site_limit_a", "Site current limit", "current", None, "A")
CHARGER_ENTITIES = (
    _sensor("power_w", "Power", "power", "W"),
    _sensor("allocated_a", "Allocated current", "current", "A"),
    *(_sensor(f"current_{p}_a", f"Current {p.upper()}", "current", "A") for p in PHASES),
    Entity("sensor", "session_wh", "Session energy", "energy", "total_increasing", "Wh"),
    Entity("sensor", "status", "Status"),
    Entity("sensor", "reason", "Reason"),
    Entity("binary_sensor", "online", "Online", "connectivity"),
    Entity("binary_sensor", "uncontrolled", "Uncontrolled", "problem"),
)
CHARGER_MODE = Entity("select", "mode", "Mode")
CHARGER_MAX = Entity("number", "max_current_a", "Max current", "current", None, "A")


def _figure(value: float | None) -> float | None:
    """JSON has no NaN: unknown is null."""
    return None if value is None or math.isnan(value) else round(value, 1)


def _phases(name: str, values: tuple[float, ...]) -> dict[str, float | None]:
    return {name.format(p): _figure(v) for p, v in zip(PHASES, values, strict=False)}


class Topics:
    """Every topic and document of one gateway; `chargers` in config order."""

    def __init__(
        self, config: MqttConfig, chargers: Mapping[str, ChargerLimits], breaker_a: float
    ) -> None:
        self.config = config
        self.chargers = dict(chargers)
        self.breaker_a = breaker_a
        self.prefix = config.topic_prefix
        self.node = topic_word(config.identity)
        self.availability = f"{self.prefix}/availability"
        self.site_state = f"{self.prefix}/site/state"
        self.site_limit_set = f"{self.prefix}/site/{SITE_LIMIT.key}/set"
        self.words = {topic_word(cid): cid for cid in chargers}

    # -- topics -----------------------------------------------------------------------

    def charger_base(self, charger_id: str) -> str:
        return f"{self.prefix}/charger/{topic_word(charger_id)}"

    def charger_state(self, charger_id: str) -> str:
        return f"{self.charger_base(charger_id)}/state"

    def command(self, charger_id: str, entity: Entity) -> str:
        return f"{self.charger_base(charger_id)}/{entity.key}/set"

    def subscriptions(self) -> list[str]:
        """Commands, and our own retained topics (to clear those of removed chargers)."""
        own = [f"{self.config.discovery_prefix}/+/{self.node}/+/config", self.charger_state("+")]
        if not self.config.commands:
            return own
        return [*own, self.site_limit_set, f"{self.prefix}/charger/+/+/set"]

    def parse_command(self, topic: str) -> tuple[str | None, str] | None:
        """A command topic -> (charger id or None for the site, field); None: not one."""
        if topic == self.site_limit_set:
            return None, SITE_LIMIT.key
        head = f"{self.prefix}/charger/"
        if not topic.startswith(head) or not topic.endswith("/set"):
            return None
        word, _, key = topic[len(head) : -len("/set")].partition("/")
        cid = self.words.get(word)
        if cid is None or key not in (CHARGER_MODE.key, CHARGER_MAX.key):
            return None
        return cid, key

    # -- state ------------------------------------------------------------------------

    def site_document(self, state: ExportState, settings: SettingsStore) -> dict[str, Any]:
        limit = settings.site_limit_a
        return {
            "grid_power_w": _figure(state.grid_power_w),
            **_phases("grid_current_{}_a", state.grid_current_a),
            "pv_power_w": _figure(state.pv_power_w),
            "battery_power_w": _figure(state.battery_power_w),
            "battery_soc": _figure(state.battery_soc),
            "household_consumption_w": _figure(state.household_consumption_w),
            "ev_power_w": _figure(state.ev_power_w),
            "current_limit_a": _figure(state.current_limit_a),
            "site_limit_a": limit if limit is not None else self.breaker_a,
            "failsafe": state.failsafe,
            "external_limit": state.external_limit,
            "data_stale": state.data_stale,
        }

    def charger_documents(
        self, state: ExportState, settings: SettingsStore, uncontrolled: Iterable[str]
    ) -> dict[str, dict[str, Any]]:
        stuck = set(uncontrolled)
        documents = {}
        for c in state.chargers:
            setting = settings.get(c.id)
            mode = OFF if setting.mode == OFF else (c.mode.value if c.mode is not None else None)
            documents[c.id] = {
                "online": c.online,
                "uncontrolled": c.id in stuck,
                "status": c.status,
                "mode": mode,
                "reason": c.reason.name.lower() if c.reason is not None else None,
                "allocated_a": _figure(c.allocated_a),
                **_phases("current_{}_a", c.current_a),
                "power_w": _figure(c.power_w),
                "session_wh": _figure(c.session_wh),
                "max_current_a": setting.max_a if setting.max_a is not None else c.max_a,
            }
        return documents

    # -- discovery --------------------------------------------------------------------

    def discovery(self) -> dict[str, dict[str, Any]]:
        """Config topic -> document, for every entity this config has."""
        site_device = {
            "identifiers": [self.node],
            "name": f"EV charging {self.config.site}",
            "manufacturer": "evse-gateway",
            "model": "evse-gateway",
            "sw_version": __version__,
        }
        documents = {}
        for entity in (*SITE_ENTITIES, SITE_LIMIT):
            documents.update(
                self._entity(entity, "site", self.site_state, site_device, self.site_limit_set)
            )
        for cid, limits in self.chargers.items():
            word = topic_word(cid)
            device = {
                "identifiers": [f"{self.node}_{word}"],
                "name": f"Charger {cid}",
                "manufacturer": "evse-gateway",
                "model": "OCPP charger",
                "via_device": self.node,
            }
            state = self.charger_state(cid)
            for entity in CHARGER_ENTITIES:
                documents.update(self._entity(entity, word, state, device))
            documents.update(
                self._entity(CHARGER_MODE, word, state, device, self.command(cid, CHARGER_MODE))
            )
            documents.update(
                self._entity(
                    CHARGER_MAX, word, state, device, self.command(cid, CHARGER_MAX), limits
                )
            )
        return documents

    def _entity(
        self,
        entity: Entity,
        owner: str,
        state_topic: str,
        device: dict[str, Any],
        command_topic: str | None = None,
        limits: ChargerLimits | None = None,
    ) -> dict[str, dict[str, Any]]:
        # With commands off a select or number is announced as the sensor it then is.
        component = entity.component if self.config.commands or not command_topic else "sensor"
        object_id = f"{owner}_{entity.key}"
        doc: dict[str, Any] = {
            "name": entity.name,
            "unique_id": f"{self.node}_{object_id}",
            "state_topic": state_topic,
            "value_template": "{{ value_json.%s }}" % entity.key,  # noqa: UP031  # Jinja braces
            "availability_topic": self.availability,
            "payload_available": ONLINE,
            "payload_not_available": OFFLINE,
            "device": device,
        }
        if entity.device_class is not None:
            doc["device_class"] = entity.device_class
        if entity.unit is not None:
            doc["unit_of_measurement"] = entity.unit
        if component == "sensor" and entity.state_class is not None:
            doc["state_class"] = entity.state_class
        if component == "binary_sensor":
            doc["value_template"] = "{{ 'ON' if value_json.%s else 'OFF' }}" % entity.key  # noqa: UP031
        if component == "select":
            doc["options"] = list(MODE_NAMES)
        if component == "number":
            lo, hi = (limits.min_a, limits.max_a) if limits is not None else (0, self.breaker_a)
            doc.update(min=float(lo), max=float(hi), step=0.5, mode="box")
        if component in ("select", "number"):
            doc["command_topic"] = command_topic
            doc["qos"] = self.config.qos
            doc["retain"] = False  # a command is done once, not replayed on every reconnect
        topic = f"{self.config.discovery_prefix}/{component}/{self.node}/{object_id}/config"
        return {topic: doc}


def payload(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()
