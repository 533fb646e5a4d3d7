"""The relay's tables: ``[mqtt]`` with its ``[[mqtt.devices]]``, and ``[push]`` (HTTP).

The relay (appliance/relay.py) receives what devices push; broker.py writes
mosquitto's accounts and ACL from ``[mqtt]``. A LoRaWAN device's ``model`` is
one of the decoders of ``sources/lorawan`` (its ``MODELS``: the one list).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .config_keys import REQUIRED, check_listen, number, secret, tables, text, texts
from .sources.lorawan import MODELS

MAX_MQTT_DEVICES = 500


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
    topic: str = text("", "an MQTT topic filter (for HTTP pushes: the URL path)")
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
    username: str = text("sensor-bridge", "the relay's broker account")
    password: str = secret("the relay's broker password")
    topics: list[str] = texts(["milesight/#"], "topic filters to subscribe to")
    client_id: str = text("sensor-bridge-relay", "the relay's MQTT client id")
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
