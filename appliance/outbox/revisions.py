"""Revisions: what storing a record that may already be there does.

A record id never seen gets revision 1; the same values again change nothing;
new values for a pending record replace it in place (coalescing) and a
delivered one is queued again, each with the next revision. A period once
stored as final never changes again.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from ..records import Record

COMPACT = (",", ":")  # a stored body without JSON's optional spaces: more readings per page
DIGEST_CHARS = 16


def digest(wire: dict[str, Any]) -> str:
    """What makes two versions of a record the same reading."""
    meaningful = {k: wire[k] for k in ("period_end", "final", "values")}
    import hashlib  # here, not at the top: OpenSSL's libcrypto costs the watchdog 3.7 MB

    # 64 bits tell one record's versions apart; the full 256 would make every row 48 bytes wider.
    text = hashlib.sha256(json.dumps(meaningful, sort_keys=True).encode()).hexdigest()
    return text[:DIGEST_CHARS]


def last_seq(db: sqlite3.Connection) -> int:
    """The queue's last place; both maxima come from the ends of a b-tree (no scan)."""
    return db.execute(
        "SELECT MAX(COALESCE((SELECT MAX(rowid) FROM readings), 0),"
        " COALESCE((SELECT MAX(seq) FROM readings WHERE state = 'pending'), 0))"
    ).fetchone()[0]


def store(db: sqlite3.Connection, record: Record, seq: int, now: float) -> tuple[str, int]:
    """Queue one record that passed the door: (added | updated | unchanged | ignored_final, last seq).

    A new id is added at revision 1; a changed one gets the next revision (and a new place at
    the end of the queue if it had left it); the same values again, or a change to a period
    already final, change nothing."""
    wire = record.wire()
    mark = digest(wire)
    row = db.execute(
        "SELECT revision, digest, final, state, seq, queued_at, rowid FROM readings"
        " WHERE period_start = ? AND sensor_id = ? AND kind = ?",
        (wire["period_start"], record.sensor_id, record.kind),
    ).fetchone()
    if row is None:
        wire["revision"] = 1
        db.execute(
            "INSERT INTO readings (id, seq, sensor_id, kind, period_start, revision, final,"
            " digest, body, state, queued_at) VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?, 'pending', ?)",
            (
                wire["id"],
                seq + 1,
                record.sensor_id,
                record.kind,
                wire["period_start"],
                int(record.final),
                mark,
                json.dumps(wire, separators=COMPACT),
                now,
            ),
        )
        return "added", seq + 1
    revision, old_mark, was_final, state, old_seq, queued_at, rowid = row
    if old_mark == mark:
        return "unchanged", seq
    if was_final:
        return "ignored_final", seq
    wire["revision"] = revision + 1
    if state != "pending":
        seq += 1
        old_seq, queued_at = seq, now
    db.execute(
        "UPDATE readings SET seq = ?, revision = ?, final = ?, digest = ?, body = ?,"
        " state = 'pending', queued_at = ? WHERE rowid = ?",
        (
            old_seq,
            revision + 1,
            int(record.final),
            mark,
            json.dumps(wire, separators=COMPACT),
            queued_at,
            rowid,
        ),
    )
    return "updated", seq
