"""The keys every ``[[sensors]]`` table has (``id``, ``type``); a family's table adds its own.

Light on purpose: the config reader imports it (and each family's table) to
check a file, and every service reads the file, the watchdog too, which must
not load a poller, the outbox or sqlite3 to do so.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config_keys import REQUIRED, text

DEFAULT_TYPE = (
    "milesight-camera"  # a [[sensors]] table without ``type`` (every config before there were two)
)


@dataclass(kw_only=True)
class SensorConfig:
    """The keys of a ``[[sensors]]`` table that every type has; a source's model adds its own."""

    id: str = text(
        REQUIRED,
        "the sensor's id in readings; unique in the file (other stores may use the same ids)",
    )
    type: str = text(
        DEFAULT_TYPE,
        "which kind of device, one of the types below; it decides the table's other keys",
    )
