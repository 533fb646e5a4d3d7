"""A reading as the cloud sees it: one sensor, one kind, one period.

Every source (polled cameras, pushed MQTT/HTTP reports) turns what a device
said into Records; the outbox stores them and the uplink sends them as the
ingest contract's record objects. The id depends only on
``sensor_id|kind|period_start``, so reading the same period twice can never
create a second reading in the cloud.

Time rules live here too: everything leaving this module is UTC with a ``Z``,
and a camera's local wall-clock time is turned into UTC explicitly, DST gap
and repeated hour included.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

KINDS = ("line_counts", "region_counts", "live_counts", "occupancy", "event")
SOURCES = ("poll", "mqtt", "http-push")


def utc_text(moment: datetime) -> str:
    """RFC 3339 UTC with a ``Z`` suffix, second precision: ``2025-07-22T09:00:00Z``."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: every stamp must carry its zone")
    return moment.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_utc(text: str) -> datetime:
    """Read back what :func:`utc_text` wrote (also accepts ``+00:00``)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset")
    return moment.astimezone(UTC)


# Test hook, never set on a bridge: tests start the collector with its clock
# skewed by this many seconds (no faketime on the image). Read once, here only.
_TEST_CLOCK_OFFSET = timedelta(seconds=float(os.environ.get("SENSOR_BRIDGE_TEST_CLOCK_OFFSET_S") or 0))


def now_utc() -> datetime:
    return (datetime.now(UTC) + _TEST_CLOCK_OFFSET).replace(microsecond=0)


def record_id(sensor_id: str, kind: str, period_start: str) -> str:
    """The contract's id: SHA-256 of ``sensor_id|kind|period_start`` as sent."""
    return hashlib.sha256(f"{sensor_id}|{kind}|{period_start}".encode()).hexdigest()


class NonexistentLocalTime(ValueError):
    """A wall-clock time that did not happen (skipped by a DST spring-forward)."""


def local_to_utc(wall: datetime, zone: ZoneInfo, *, later: bool = False) -> datetime:
    """Turn a camera's naive local wall time into UTC.

    A time inside the spring-forward gap never happened on that clock, so it
    raises :class:`NonexistentLocalTime` instead of silently shifting by an
    hour. A time in the repeated fall-back hour is ambiguous; ``later=False``
    (the default) picks its first occurrence, ``later=True`` its second. Both
    period starts and exclusive period ends take the first occurrence, so the
    camera's one row for the repeated wall-clock hour spans both real hours and
    the periods around it stay contiguous.
    """
    if wall.tzinfo is not None:
        raise ValueError("local_to_utc wants a naive wall-clock time")
    first = wall.replace(tzinfo=zone, fold=0)
    second = wall.replace(tzinfo=zone, fold=1)
    for candidate in (first, second):
        back = candidate.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
        if back != wall:
            raise NonexistentLocalTime(f"{wall:%Y-%m-%d %H:%M:%S} does not exist in {zone.key}")
    chosen = second if later else first
    return chosen.astimezone(UTC)


@dataclass(frozen=True)
class Record:
    """One reading: what ``sensor_id`` measured of ``kind`` over a period.

    ``period_end`` is exclusive. ``final`` says the sensor will not change the
    period again. ``revision`` is assigned by the outbox (a later send of the
    same id carries a higher one), so sources leave it at 1.
    """

    sensor_id: str
    kind: str
    period_start: datetime
    period_end: datetime
    values: dict[str, Any]
    final: bool
    source: str
    observed_at: datetime = field(default_factory=now_utc)
    revision: int = 1

    def __post_init__(self) -> None:
        if not self.sensor_id:
            raise ValueError("a record needs a sensor_id")
        if self.kind not in KINDS:
            raise ValueError(f"kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.source not in SOURCES:
            raise ValueError(f"source {self.source!r} is not one of {', '.join(SOURCES)}")
        for name in ("period_start", "period_end", "observed_at"):
            if getattr(self, name).tzinfo is None:
                raise ValueError(f"{name} must be timezone-aware")
        if self.period_end < self.period_start:
            raise ValueError("period_end is before period_start")
        if self.revision < 1:
            raise ValueError("revision must be >= 1")

    @property
    def id(self) -> str:
        return record_id(self.sensor_id, self.kind, utc_text(self.period_start))

    def wire(self) -> dict[str, Any]:
        """The contract's record object (ingest-contract.md)."""
        return {
            "id": self.id,
            "sensor_id": self.sensor_id,
            "kind": self.kind,
            "period_start": utc_text(self.period_start),
            "period_end": utc_text(self.period_end),
            "final": self.final,
            "revision": self.revision,
            "source": self.source,
            "observed_at": utc_text(self.observed_at),
            "values": self.values,
        }

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> Record:
        return cls(
            sensor_id=body["sensor_id"],
            kind=body["kind"],
            period_start=parse_utc(body["period_start"]),
            period_end=parse_utc(body["period_end"]),
            values=body["values"],
            final=bool(body["final"]),
            source=body["source"],
            observed_at=parse_utc(body["observed_at"]),
            revision=int(body.get("revision", 1)),
        )


def snapshot_period(moment: datetime) -> tuple[datetime, datetime]:
    """A snapshot's period: start == end == the sample time, to the second."""
    moment = moment.astimezone(UTC).replace(microsecond=0)
    return moment, moment


ONE_SECOND = timedelta(seconds=1)
