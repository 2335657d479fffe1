"""The `[mqtt]` section: off by default."""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass

from gateway.schema import SchemaError, Table

_NOT_IN_A_TOPIC = re.compile(r"[^A-Za-z0-9_-]+")


def topic_word(text: str) -> str:
    """`text` as one topic level and HA id part: no `/`, `+`, `#` or spaces."""
    return _NOT_IN_A_TOPIC.sub("_", text).strip("_") or "_"


@dataclass(frozen=True, slots=True)
class MqttConfig:
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str | None = None  # None: evse-gateway-<site>
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None  # None with tls: the system's CAs
    cert_file: str | None = None  # a client certificate, when the broker asks for one
    key_file: str | None = None
    # Names this gateway on a shared broker: the default prefix and every HA unique_id.
    site: str = "site"
    prefix: str | None = None  # None: evse-gateway/<site>
    discovery_prefix: str = "homeassistant"
    qos: int = 1
    publish_interval_s: float = 60.0  # unchanged state is republished this often
    commands: bool = True  # false: the mode and limits are shown, not settable

    @property
    def topic_prefix(self) -> str:
        return self.prefix if self.prefix is not None else f"evse-gateway/{self.site}"

    @property
    def identity(self) -> str:
        return self.client_id if self.client_id is not None else f"evse-gateway-{self.site}"


def read_mqtt(top: Table) -> MqttConfig:
    t = top.table("mqtt", None)
    if t is None:
        return MqttConfig()
    site = t.string("site", topic_word(socket.gethostname()))
    if topic_word(site) != site:
        raise SchemaError(t.at("site"), "only letters, digits, _ and - (it is a topic level)")
    prefix = t.string("prefix", None)
    if prefix is not None and (set(prefix) & {"+", "#"} or prefix.endswith("/")):
        raise SchemaError(t.at("prefix"), "no +, # or trailing /")
    config = MqttConfig(
        enabled=t.boolean("enabled", False),
        host=t.string("host", "127.0.0.1"),
        port=t.integer("port", 1883, lo=1, hi=65535),
        client_id=t.string("client_id", None),
        username=t.string("username", None),
        password=t.string("password", None, nonempty=False),
        tls=t.boolean("tls", False),
        ca_file=t.string("ca_file", None),
        cert_file=t.string("cert_file", None),
        key_file=t.string("key_file", None),
        site=site,
        prefix=prefix,
        discovery_prefix=t.string("discovery_prefix", "homeassistant"),
        qos=t.integer("qos", 1, lo=0, hi=2),
        publish_interval_s=t.number("publish_interval_s", 60.0, lo=1, hi=3600),
        commands=t.boolean("commands", True),
    )
    t.finish()
    return config
