"""Who sent a pushed message, and when a message without a time of its own was first seen.

Sensor id: an ``[[mqtt.devices]]`` entry whose ``topic`` (an MQTT filter;
matched against the URL path for HTTP pushes) and/or ``serial`` match, else the
serial the device sent, else the topic or path itself. LoRaWAN devices are
found by their DevEUI (``dev_eui``) in the same table.

The record id is fixed by the contract (sensor_id|kind|period_start), so the
period start must come from the message itself for a re-published identical
message to map to the same record. Only a message with no time at all is
stamped with its receive time; its first receive time is remembered per sensor
and content (:class:`FirstSeen`, kept in the outbox's first-seen memory, written in the
same transaction as the record), so a copy of it published again later maps to the
same record too.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from datetime import datetime
from typing import Any

from ..clock import parse_utc, utc_text
from ..config import MqttDevice
from ..outbox import FirstSighting, Outbox


def topic_matches(pattern: str, topic: str) -> bool:
    """MQTT filter matching (``+`` one level, ``#`` the rest), without importing paho."""
    pattern_levels, topic_levels = pattern.split("/"), topic.split("/")
    for i, level in enumerate(pattern_levels):
        if level == "#":
            return True
        if i >= len(topic_levels) or (level != "+" and level != topic_levels[i]):
            return False
    return len(pattern_levels) == len(topic_levels)


class FirstSeen:
    """When a message that carries no time of its own was first received.

    Kept in memory (bounded) and in the outbox's first-seen memory per sensor and
    digest, written in the same transaction as the message's records, so a
    redelivered or re-published copy gets the same period, and so the same id.
    """

    def __init__(self, outbox: Outbox | None = None, keep: int = 50_000) -> None:
        self.outbox = outbox
        self.keep = keep
        self._memory: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._lock = threading.Lock()

    def moment(
        self, sensor_id: str, digest: str, now: datetime
    ) -> tuple[datetime, list[FirstSighting]]:
        """The message's stamp, and the sighting to commit with it when it is new."""
        key = (sensor_id, digest)
        with self._lock:
            known = self._memory.get(key)
            if known is None and self.outbox is not None:
                known = self.outbox.first_seen.get(sensor_id, digest)
            fresh = known is None
            if fresh:
                known = utc_text(now)
            self._memory[key] = known
            self._memory.move_to_end(key)
            while len(self._memory) > self.keep:
                self._memory.popitem(last=False)
        return parse_utc(known), ([FirstSighting(sensor_id, digest, known)] if fresh else [])


class Senders:
    """The devices the config names, and the first-seen memory: what formats ask about senders."""

    def __init__(self, devices: list[MqttDevice], first_seen: FirstSeen) -> None:
        self.devices = devices
        self.first_seen = first_seen

    def sensor_for(self, topic: str, serial: str) -> str:
        """The sensor id of a device that sent ``serial`` on ``topic`` (by the rules above)."""
        for device in self.devices:
            if device.topic and not topic_matches(device.topic, topic):
                continue
            if device.serial and device.serial != serial:
                continue
            return device.sensor_id
        return serial or topic

    def first_stamp(
        self, sensor_id: str, payload: dict[str, Any], received: datetime
    ) -> tuple[datetime, list[FirstSighting]]:
        """A timeless message's stamp (its first receive time) and the sighting to commit with it."""
        import hashlib  # here, not at the top: OpenSSL's libcrypto costs the watchdog 3.7 MB

        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]
        return self.first_seen.moment(sensor_id, digest, received)
