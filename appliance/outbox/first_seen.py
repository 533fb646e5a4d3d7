"""First-seen memory: when a message that carries no time of its own was first received.

The relay dates such a message by its first arrival, per sensor and content
digest, so a redelivered or re-published copy maps to the same period, and so
to the same record id. That moment is committed with the message's records (a
:class:`FirstSighting` among a put's cursors) and kept in a table of its own
with its own expiry: forgotten once 8 days older than the newest (MQTT
redelivery and re-publishes come within hours, not weeks), at most 50,000
kept, and shed before any delivered or pending reading when the outbox is over
its limits. Read with ``outbox.first_seen.get(sensor_id, digest)``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import NamedTuple

from .store import Store

MAX_FIRST_SEEN = 50_000
KEEP_FIRST_SEEN_S = 8 * 24 * 3600  # MQTT redelivery and re-publishes come within hours, not weeks


class FirstSighting(NamedTuple):
    """A message's first receive time, to store with its records: pass it among ``cursors``."""

    sensor_id: str
    digest: str  # of the message's content
    seen_at: str  # RFC 3339 UTC, as records.utc_text writes it


class FirstSeenMemory:
    """The first-seen table: what the relay asks before dating a timeless message."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def get(self, sensor_id: str, digest: str) -> str | None:
        """When this content from ``sensor_id`` was first received, or None if never (or forgotten)."""
        with self.store.lock:
            row = self.store.db.execute(
                "SELECT seen_at FROM first_seen WHERE sensor_id = ? AND digest = ?",
                (sensor_id, digest),
            ).fetchone()
        return row[0] if row else None

    @staticmethod
    def remember(db: sqlite3.Connection, sightings: Iterable[FirstSighting]) -> None:
        """Inside the put's transaction; the first sighting stays the first."""
        db.executemany(
            "INSERT OR IGNORE INTO first_seen (sensor_id, digest, seen_at) VALUES (?, ?, ?)",
            sightings,
        )

    def extent(self, not_after: str) -> tuple[int, str | None]:
        """How many are kept, and the newest moment no later than ``not_after`` (a clock ahead
        stamped later ones)."""
        with self.store.lock:
            count, newest = self.store.db.execute(
                "SELECT COUNT(*), MAX(seen_at) FILTER (WHERE seen_at <= ?) FROM first_seen",
                (not_after,),
            ).fetchone()
        return count, newest

    @staticmethod
    def forget_before(db: sqlite3.Connection, stale: str) -> int:
        return db.execute("DELETE FROM first_seen WHERE seen_at < ?", (stale,)).rowcount

    @staticmethod
    def forget_oldest(db: sqlite3.Connection, rows: int) -> int:
        if rows <= 0:
            return 0
        return db.execute(
            "DELETE FROM first_seen WHERE rowid IN"
            " (SELECT rowid FROM first_seen ORDER BY seen_at LIMIT ?)",
            (rows,),
        ).rowcount
