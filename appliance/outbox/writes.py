"""The write path: what one put stores inside a transaction.

Records pass the door first (records.refusal: what the cloud would refuse is
kept as a dead letter instead), then revisions.py decides what storing each
does; cursors move and dead letters are kept in the same transaction, so
either everything of a put is on disk or nothing is. batcher.py decides which
puts share a transaction.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime

from ..records import Record, refusal
from .dead_letters import PREVIEW_CHARS, insert_dead
from .first_seen import FirstSeenMemory, FirstSighting
from .revisions import store
from .rows import DeadEntry, PutResult, Write
from .store import bump


def at_the_door(record: Record, now: float) -> DeadEntry | None:
    """The dead letter saying why the cloud would refuse ``record``, or None to store it."""
    problem = refusal(record, datetime.fromtimestamp(now, UTC))
    if problem is None:
        return None
    try:
        shown = json.dumps(record.wire())[:PREVIEW_CHARS]
    except Exception:  # not even writable as JSON: the dataclass's own text, if that works
        try:
            shown = repr(record)[:PREVIEW_CHARS]
        except Exception as exc:
            shown = f"(no preview: {type(exc).__name__})"
    # No record_id: nothing of it is in the readings table, so `retry` has nothing to requeue.
    return DeadEntry(f"outbox ({record.source})", problem, shown)


def put_in(db: sqlite3.Connection, item: Write, seq: int, now: float) -> int:
    """One caller's records, cursors (a poller's positions, the relay's first sightings) and dead
    letters, inside the open transaction; returns the last seq.

    Every record passes the door first (records.refusal): one the cloud would refuse is kept
    as a dead letter with the reason instead, so no source can queue a poison reading."""
    outcomes: Counter[str] = Counter()
    refused: list[DeadEntry] = []
    for record in item.records:
        if (entry := at_the_door(record, now)) is not None:
            refused.append(entry)
            continue
        outcome, seq = store(db, record, seq, now)
        outcomes[outcome] += 1
    move_cursors(db, [c for c in item.cursors if not isinstance(c, FirstSighting)], now)
    FirstSeenMemory.remember(db, [c for c in item.cursors if isinstance(c, FirstSighting)])
    insert_dead(db, [*item.dead, *refused], now)
    if outcomes["ignored_final"]:
        bump(db, "final_changes_ignored", outcomes["ignored_final"])
    item.refused = refused
    item.result = PutResult(
        outcomes["added"],
        outcomes["updated"],
        outcomes["unchanged"],
        outcomes["ignored_final"],
        len(refused),
    )
    return seq


def move_cursors(
    db: sqlite3.Connection, cursors: Iterable[tuple[str, str, str]], now: float
) -> None:
    for sensor_id, kind, position in cursors:
        db.execute(
            "INSERT INTO cursors (sensor_id, kind, position, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (sensor_id, kind) DO UPDATE SET position = excluded.position,"
            " updated_at = excluded.updated_at",
            (sensor_id, kind, position, now),
        )
