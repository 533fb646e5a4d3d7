"""The relay's tables: ``[mqtt]`` with its ``[[mqtt.devices]]``, and ``[push]`` (HTTP).

The relay (appliance/relay.py) receives what devices push; broker_files.py writes
mosquitto's password file and ACL from ``[mqtt]``, so its username and topic
filters follow MQTT's own rules (MQTT 3.1.1 section 4.7; v5 the same) and a
conservative charset that no line of those files can misread. A LoRaWAN
device's ``model`` is one of the decoders of ``sources/lorawan`` (its
``MODELS``: the one list).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .config_keys import REQUIRED, check_listen, number, secret, tables, text, texts
from .sources.lorawan import MODELS

MAX_MQTT_DEVICES = 500
MAX_MQTT_BYTES = 65535  # MQTT's longest string (a two-byte length)
_TOPIC_CHARS = re.compile(r"[A-Za-z0-9._/+#-]+")
_USERNAME_CHARS = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # a letter or digit first


def check_topic_filter(topic: str) -> str | None:
    """Why ``topic`` is not an MQTT topic filter the bridge takes, or None.

    MQTT's rules: not empty, at most 65535 bytes, no NUL, ``+`` and ``#`` only as a
    whole level, ``#`` only as the last; the charset: letters, digits and ``. _ - / + #``."""
    if not topic:
        return "empty; a topic filter such as milesight/#"
    if len(topic.encode("utf-8")) > MAX_MQTT_BYTES:
        return f"{len(topic.encode('utf-8'))} bytes; MQTT allows at most {MAX_MQTT_BYTES}"
    if not _TOPIC_CHARS.fullmatch(topic):
        return (
            f"{topic!r} has a character outside letters, digits and . _ - / + # "
            "(the charset a topic filter may use here)"
        )
    levels = topic.split("/")
    for n, level in enumerate(levels):
        if "#" in level and (level != "#" or n != len(levels) - 1):
            return f"{topic!r}: # must be a whole level and the last one (milesight/#)"
        if "+" in level and level != "+":
            return f"{topic!r}: + must be a whole level (milesight/+/uplink)"
    return None


def check_mqtt_username(name: str) -> str | None:
    """Why ``name`` cannot be a broker account here: 1-64 letters, digits, ``.``, ``_`` or ``-``,
    a letter or digit first (the broker's writer checks the same, appliance/broker_files.py)."""
    if not name or len(name) > 64 or not _USERNAME_CHARS.fullmatch(name):
        return (
            f"expected 1 to 64 letters, digits, '.', '_' or '-', a letter or digit first (a line of "
            f"mosquitto's password file and ACL), got {name!r}"
        )
    return None


def _client_id(client_id: str) -> str | None:
    if not client_id or len(client_id) > 64 or not _USERNAME_CHARS.fullmatch(client_id):
        return f"expected 1 to 64 letters, digits, '.', '_' or '-', a letter or digit first, got {client_id!r}"
    return None


def _device_topic(topic: str) -> str | None:
    return check_topic_filter(topic) if topic else None


def _dev_eui(value: str) -> str | None:
    if not value or re.fullmatch(r"[0-9A-Fa-f]{16}", value.replace(":", "").replace("-", "")):
        return None
    return f"expected 16 hex digits such as 24E124136B502217, got {value!r}"


def _lorawan_model(value: str) -> str | None:
    if not value or value.lower() in MODELS:
        return None
    return f"expected one of {', '.join(MODELS)}, got {value!r}"


@dataclass
class MqttDevice:
    sensor_id: str = text(REQUIRED, "the id its readings get")
    serial: str = text("", "the device's serial (`device_info.device_sn`)")
    topic: str = text(
        "", "an MQTT topic filter (for HTTP pushes: the URL path)", check=_device_topic
    )
    dev_eui: str = text(
        "",
        "a LoRaWAN device's DevEUI, 16 hex digits (uplinks via a UG6x, ChirpStack or "
        "The Things Stack)",
        check=_dev_eui,
    )
    model: str = text(
        "",
        "the LoRaWAN device's model, to decode its raw uplinks: "
        + ", ".join(f"`{m}`" for m in MODELS),
        check=_lorawan_model,
    )
    period_s: float = number(
        600,
        "a LoRaWAN counter's reporting interval: its period counts cover this "
        "long before each uplink (set it as on the device)",
        minimum=1,
    )

    def problem(self) -> str | None:
        if self.serial or self.topic or self.dev_eui:
            return None
        return "set serial, topic or dev_eui to say which device this is"


@dataclass
class MqttConfig:
    host: str = text("127.0.0.1", "the broker (the bridge's own mosquitto)")
    port: int = number(1883, "the broker's port", minimum=1, integer=True)
    username: str = text(
        "sensor-bridge",
        "the relay's broker account: letters, digits, `.`, `_`, `-`",
        check=check_mqtt_username,
    )
    password: str = secret("the relay's broker password")
    topics: list[str] = texts(
        ["milesight/#"],
        "topic filters to subscribe to (MQTT's rules; letters, digits and `. _ - / + #`)",
        each=check_topic_filter,
    )
    client_id: str = text(
        "sensor-bridge-relay",
        "the relay's MQTT client id: letters, digits, `.`, `_`, `-`",
        check=_client_id,
    )
    devices: list[MqttDevice] = tables(
        MqttDevice,
        "Which sensor id a pushed message gets. Without a matching entry it is the message's "
        "`device_info.device_sn` (a LoRaWAN uplink's: its DevEUI), else its topic. Set `serial`, `topic`, "
        "`dev_eui` or several.",
        limit=MAX_MQTT_DEVICES,
    )


@dataclass
class PushConfig:
    listen: str = text("0.0.0.0:8090", "`host:port` devices POST to", check=check_listen)
    username: str = text("milesight", "devices authenticate with HTTP Basic")
    password: str = secret("the password devices send", required=True)
    max_body_kb: int = number(512, "largest body accepted", minimum=1, integer=True)
