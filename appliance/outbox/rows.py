"""What goes into the outbox and what comes out of it, as plain values.

A :class:`Write` is one caller's share of a transaction (records, cursors,
dead letters); :class:`PutResult` how it went; :class:`Pending` a stored record
as the uplink sends it; :class:`DeadEntry` something kept for a person to look
at; :class:`OutboxStats` what status, the heartbeat and /health report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..records import Record


@dataclass(frozen=True)
class DeadEntry:
    """Something that cannot be delivered: kept, with why, for a person to look at."""

    origin: str  # "uplink", an MQTT topic, "http-push", ...
    reason: str
    preview: str  # the record's JSON, or a hex/text preview of a raw message
    record_id: str | None = None


@dataclass(frozen=True)
class PutResult:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    ignored_final: int = 0
    refused: int = 0  # records the cloud would refuse: dead-lettered, never queued


@dataclass(frozen=True)
class Pending:
    """One record as the uplink sends it: ``body`` is the contract's record object."""

    id: str
    revision: int
    body: dict[str, Any]
    row: int = field(default=0, compare=False, repr=False)  # where it is kept (its rowid)


@dataclass(frozen=True)
class OutboxStats:
    pending: int
    oldest_pending_age_s: float
    dead_letter: int
    dropped: int
    delivered_kept: int
    size_mb: float
    junk_shed: int = 0  # dead letters and first-seen memory forgotten to respect the caps
    disk_full: bool = False

    def contract(self) -> dict[str, Any]:
        """The heartbeat's ``outbox`` object."""
        return {
            "pending": self.pending,
            "oldest_pending_age_s": round(self.oldest_pending_age_s),
            "dead_letter": self.dead_letter,
            "dropped": self.dropped,
        }


@dataclass
class Write:
    """One caller's put, waiting for its transaction: what to store, then how it went."""

    records: list[Record]
    cursors: list[tuple[str, str, str]]  # (sensor_id, kind, position), or a FirstSighting
    dead: list[DeadEntry]
    result: PutResult | None = None
    refused: list[DeadEntry] = field(default_factory=list)
    error: BaseException | None = None
    finished: bool = False

    def outcome(self) -> PutResult:
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result
