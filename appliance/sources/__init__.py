"""Where readings come from: one row of :data:`SOURCES` per family of polled sensors.

A ``[[sensors]]`` table's ``type`` is a key of :data:`SOURCES`; its source
class declares the table's other keys (``config``), the kinds it collects and
how a poll reads the device (appliance/sources/base.py). Adding a family is one
new file here and one row below: docs/sources.md.

What devices push (MQTT, HTTP) is not polled: appliance/push/ has its doors
and formats.
"""

from __future__ import annotations

from ..config_keys import ConfigError
from ..outbox import Outbox
from .base import SensorConfig, Source
from .milesight_http import CameraPoller

SOURCES: dict[str, type[Source]] = {
    "milesight-camera": CameraPoller,
}


def sensor_models() -> dict[str, type[SensorConfig]]:
    """Each type's ``[[sensors]]`` model, as the config reads and documents them."""
    return {name: source.config for name, source in SOURCES.items()}


def source_class(sensor: SensorConfig) -> type[Source]:
    """The source family of ``sensor``; a type without one is a config error naming the known types."""
    source = SOURCES.get(sensor.type)
    if source is None:
        raise ConfigError(
            [f"sensor {sensor.id}: type {sensor.type!r} is not one of {', '.join(SOURCES)}"]
        )
    return source


def source_for(sensor: SensorConfig, outbox: Outbox) -> Source:
    """The source that polls ``sensor``."""
    return source_class(sensor)(sensor, outbox)
