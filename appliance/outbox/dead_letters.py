"""Dead letters: what cannot be delivered, kept with why for a person to look at.

Refused readings, messages nobody can parse, records the cloud refused for good
and stored records that can no longer be read. ``sensor-bridge dead-letters``
lists them; ``retry`` queues the refused records again; ``purge`` forgets them.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterable
from typing import Any

from .rows import DeadEntry
from .store import Store

log = logging.getLogger("sensor-bridge.outbox")

PREVIEW_CHARS = 1000
PREVIEW_BYTES = 1000


def storable(text: Any) -> str:
    """``text`` as SQLite can keep it: NUL and lone surrogates written as escapes."""
    return str(text).encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def preview(raw: bytes) -> str:
    return raw[:PREVIEW_BYTES].decode("utf-8", "backslashreplace")


def insert_dead(db: sqlite3.Connection, entries: Iterable[DeadEntry], now: float) -> None:
    for entry in entries:
        db.execute(
            "INSERT INTO dead_letter (record_id, origin, reason, preview, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (
                entry.record_id,
                storable(entry.origin),
                storable(entry.reason),
                storable(entry.preview),
                now,
            ),
        )


def bury(
    db: sqlite3.Connection, row: int, rid: str, revision: int, entry: DeadEntry, now: float
) -> bool:
    """Move a pending reading (at that revision) to the dead letters; False when it has moved on."""
    changed = db.execute(
        "UPDATE readings SET state = 'dead'"
        " WHERE rowid = ? AND id = ? AND revision = ? AND state = 'pending'",
        (row, rid, revision),
    ).rowcount
    if changed:
        insert_dead(db, [entry], now)
    return bool(changed)


class DeadLetters:
    """The dead-letter table, as ``sensor-bridge dead-letters`` shows and changes it."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def add(self, entries: Iterable[DeadEntry]) -> None:
        with self.store.transaction() as db:
            insert_dead(db, entries, time.time())

    def newest(self, limit: int = 100) -> list[dict[str, Any]]:
        with self.store.lock:
            rows = self.store.db.execute(
                "SELECT seq, record_id, origin, CAST(reason AS BLOB), CAST(preview AS BLOB), created_at"
                " FROM dead_letter ORDER BY seq DESC LIMIT ?",
                (limit,),
            ).fetchall()
        keys = ("seq", "record_id", "origin", "reason", "preview", "created_at")
        return [
            dict(
                zip(
                    keys,
                    (*row[:3], preview(bytes(row[3])), preview(bytes(row[4])), row[5]),
                    strict=True,
                )
            )
            for row in rows
        ]

    def retry(self) -> int:
        """Queue every dead-lettered record again (raw messages cannot be retried)."""
        with self.store.transaction() as db:
            requeued = db.execute(
                "UPDATE readings SET state = 'pending', queued_at = ? WHERE state = 'dead'"
                " AND id IN (SELECT record_id FROM dead_letter WHERE record_id IS NOT NULL)",
                (time.time(),),
            ).rowcount
            db.execute("DELETE FROM dead_letter WHERE record_id IS NOT NULL")
        return requeued

    def purge(self) -> int:
        """Forget everything in the dead-letter table."""
        with self.store.transaction() as db:
            db.execute("DELETE FROM readings WHERE state = 'dead'")
            return db.execute("DELETE FROM dead_letter").rowcount

    @staticmethod
    def forget_oldest(db: sqlite3.Connection, rows: int) -> int:
        """The ``rows`` oldest dead letters (and the refused readings they hold)."""
        doomed = "SELECT seq FROM dead_letter ORDER BY seq LIMIT ?"
        db.execute(
            "DELETE FROM readings WHERE state = 'dead' AND id IN"
            f" (SELECT record_id FROM dead_letter WHERE seq IN ({doomed}))",
            (rows,),
        )
        forgot = db.execute(f"DELETE FROM dead_letter WHERE seq IN ({doomed})", (rows,)).rowcount
        if forgot:
            log.warning(
                "outbox: forgot the %d oldest dead letter(s) to keep junk within its cap", forgot
            )
        return forgot
