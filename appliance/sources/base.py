"""What every polled sensor source provides; docs/sources.md walks through adding one.

A source is one family of sensors the collector polls (``milesight-camera``).
For each ``[[sensors]]`` table whose ``type`` names it, the collector makes one
instance and, at the intervals :meth:`Source.schedule` gives, calls
:meth:`Source.poll` with one of the source's ``kinds``; the poll reads the
device, puts the readings and its cursor in the outbox in one transaction and
says how it went in a :class:`PollOutcome`. A poll never raises for a device
fault: the outcome carries the one line a person reads in ``sensor-bridge
status`` ("401: username or password rejected").
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from ..config_keys import ConfigError
from ..errors import BridgeError
from ..outbox import Outbox, PutResult
from ..records import Record
from . import SOURCES, load
from .table import SensorConfig


class SensorError(BridgeError):
    """The device could not be read; the message is one line a person can act on."""


@dataclass(frozen=True)
class PollOutcome:
    """How one poll went: what it stored, or why it failed (``error``, shown per sensor in status)."""

    sensor_id: str
    kind: str
    ok: bool
    at: datetime
    records: int = 0
    stored: PutResult | None = None
    error: str | None = None
    note: str | None = None  # worth knowing while it works, e.g. "found at a new address ..."


class Source(ABC):
    """One configured sensor the collector polls: reads it, keeps its readings in the outbox."""

    config: ClassVar[
        type[SensorConfig]
    ]  # its [[sensors]] table: a SensorConfig subclass, documented
    kinds: ClassVar[tuple[str, ...]]  # the reading kinds it can collect (each one of kinds.KINDS)
    # Kinds read as a moment (a live count): one the outbox has no room for never comes back, so it is
    # counted as lost. A history kind is read again from its cursor once there is room.
    snapshots: ClassVar[tuple[str, ...]] = ()

    def __init__(self, sensor: SensorConfig, outbox: Outbox) -> None:
        self.sensor = sensor
        self.outbox = outbox

    @abstractmethod
    def schedule(self) -> list[tuple[str, float]]:
        """``(kind, every_s)`` for each kind this sensor's table asks for."""

    @abstractmethod
    def poll(self, kind: str) -> PollOutcome:
        """Read ``kind`` once, store what is new and move its cursor; never raises for a device fault."""

    def close(self) -> None:  # noqa: B027 - a source without connections has nothing to cut
        """Cut a poll in flight and refuse new ones: the bridge is stopping."""

    @classmethod
    def address(cls, sensor: SensorConfig) -> str | None:
        """Where ``doctor`` checks the device answers at all (a URL), or None when there is no such place."""
        return getattr(sensor, "url", None)

    @classmethod
    def sample_kinds(cls, sensor: SensorConfig) -> list[str]:
        """The kinds ``sensors test`` reads: every kind the table asks for."""
        return list(getattr(sensor, "collect", cls.kinds))

    @classmethod
    def sample(cls, sensor: SensorConfig, kind: str, hours: int) -> list[Record]:
        """One live read of the last ``hours`` of ``kind``, touching no outbox (``sensors test``,
        ``doctor``); raises SensorError with a one-line reason when the device cannot be read."""
        raise SensorError(f"{sensor.type} sensors cannot be read on demand")


def source_class(sensor: SensorConfig) -> type[Source]:
    """The source family of ``sensor``; a type without one is a config error naming the known types."""
    family = SOURCES.get(sensor.type)
    if family is None:
        raise ConfigError(
            [f"sensor {sensor.id}: type {sensor.type!r} is not one of {', '.join(SOURCES)}"]
        )
    source: type[Source] = load(family.source)
    return source


def source_for(sensor: SensorConfig, outbox: Outbox) -> Source:
    """The source that polls ``sensor``."""
    return source_class(sensor)(sensor, outbox)
