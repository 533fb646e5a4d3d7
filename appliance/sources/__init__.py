"""Where readings come from: one row of :data:`SOURCES` per family of polled sensors.

A ``[[sensors]]`` table's ``type`` is a key of :data:`SOURCES`. Its row names,
as ``"module:Class"``, the family's table (a small module declaring the
table's keys: ``sources/milesight_table.py``) and its source class (the poller:
the kinds it collects and how a poll reads the device, appliance/sources/base.py).
Both are imported only when asked for: reading the config loads the tables,
only the collector (and ``doctor``, ``sensors test``) loads a poller, through
``base.source_for``. This module imports no poller and no outbox. Adding a
family is a table file, a source file and one row below: docs/sources.md.

What devices push (MQTT, HTTP) is not polled: appliance/push/ has its doors
and formats.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from .table import SensorConfig


@dataclass(frozen=True)
class Family:
    """One family of polled sensors: where its ``[[sensors]]`` table and its source class live."""

    table: str  # "module:Class" of its SensorConfig subclass
    source: str  # "module:Class" of its Source subclass


SOURCES: dict[str, Family] = {
    "milesight-camera": Family(
        table="appliance.sources.milesight_table:CameraConfig",
        source="appliance.sources.milesight_http:CameraPoller",
    ),
}


def load(where: str) -> Any:
    """The object ``"module:Name"`` names, importing its module now."""
    module, _, name = where.partition(":")
    return getattr(importlib.import_module(module), name)


def sensor_models() -> dict[str, type[SensorConfig]]:
    """Each type's ``[[sensors]]`` model, as the config reads and documents them."""
    return {name: load(family.table) for name, family in SOURCES.items()}
