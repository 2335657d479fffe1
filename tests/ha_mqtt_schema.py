"""Home Assistant's documented MQTT discovery options for the components the gateway
announces (home-assistant.io/integrations/<component>.mqtt/, "Configuration Variables"):
each key and its type, the required keys, and the enumerations used. Only the options
the gateway may send are listed; any other key in a payload fails the test."""

from __future__ import annotations

from typing import Any

STR, NUM, BOOL, INT, LIST, MAP = str, (int, float), bool, int, list, dict

COMMON: dict[str, Any] = {
    "name": STR,
    "unique_id": STR,
    "object_id": STR,
    "state_topic": STR,
    "value_template": STR,
    "availability_topic": STR,
    "payload_available": STR,
    "payload_not_available": STR,
    "device": MAP,
    "device_class": STR,
    "entity_category": STR,
    "icon": STR,
    "qos": INT,
    "enabled_by_default": BOOL,
}
COMPONENTS: dict[str, dict[str, Any]] = {
    "sensor": {
        **COMMON,
        "state_class": STR,
        "unit_of_measurement": STR,
        "suggested_display_precision": INT,
        "expire_after": INT,
        "force_update": BOOL,
    },
    "binary_sensor": {**COMMON, "payload_on": STR, "payload_off": STR, "expire_after": INT},
    "select": {
        **COMMON,
        "command_topic": STR,
        "command_template": STR,
        "options": LIST,
        "retain": BOOL,
        "optimistic": BOOL,
    },
    "number": {
        **COMMON,
        "command_topic": STR,
        "command_template": STR,
        "min": NUM,
        "max": NUM,
        "step": NUM,
        "mode": STR,
        "unit_of_measurement": STR,
        "retain": BOOL,
        "optimistic": BOOL,
    },
}
REQUIRED = {
    "sensor": {"state_topic"},
    "binary_sensor": {"state_topic"},
    "select": {"command_topic", "options"},
    "number": {"command_topic"},
}
DEVICE = {
    "identifiers": (LIST, STR),
    "name": STR,
    "manufacturer": STR,
    "model": STR,
    "sw_version": STR,
    "via_device": STR,
    "connections": LIST,
}
DEVICE_CLASSES = {
    "sensor": {"power", "current", "energy", "battery", "voltage"},
    "binary_sensor": {"problem", "connectivity", "running", "plug"},
    "number": {"current", "power"},
}
STATE_CLASSES = {"measurement", "total", "total_increasing"}
NUMBER_MODES = {"auto", "box", "slider"}
# The units HA accepts for a device class (its sensor docs).
UNITS = {"power": {"W", "kW"}, "current": {"A", "mA"}, "energy": {"Wh", "kWh"}, "battery": {"%"}}


def problems(component: str, doc: dict[str, Any]) -> list[str]:
    """What in `doc` HA's schema for `component` would reject (empty: valid)."""
    schema = COMPONENTS[component]
    out = [f"missing {k}" for k in REQUIRED[component] - set(doc)]
    for key, value in doc.items():
        if key not in schema:
            out.append(f"unknown key {key}")
        elif not isinstance(value, schema[key]) or (schema[key] is INT and value is True):
            out.append(f"{key}: {type(value).__name__}")
    for key, value in doc.get("device", {}).items():
        if key not in DEVICE or not isinstance(value, DEVICE[key]):
            out.append(f"device.{key}")
    if "device_class" in doc and doc["device_class"] not in DEVICE_CLASSES.get(component, ()):
        out.append(f"device_class {doc['device_class']}")
    if "state_class" in doc and doc["state_class"] not in STATE_CLASSES:
        out.append(f"state_class {doc['state_class']}")
    unit = doc.get("unit_of_measurement")
    if doc.get("device_class") in UNITS and unit not in UNITS[doc["device_class"]]:
        out.append(f"unit {unit} for {doc['device_class']}")
    number_ok = doc.get("mode", "auto") in NUMBER_MODES and doc.get("min", 1) < doc.get("max", 100)
    if component == "number" and not number_ok:
        out.append("number range or mode")
    if component == "select" and not all(isinstance(o, str) for o in doc["options"]):
        out.append("options must be strings")
    return out
