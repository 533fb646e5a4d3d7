"""What the outbox holds, as status, the heartbeat and /health report it.

Deliveries held for the next transaction (writes.HeldMarks) count as
delivered here already, so the numbers never lag behind what the cloud has.
"""

from __future__ import annotations

import time

from .rows import OutboxStats, Pending
from .store import Store


def held_rows(store: Store) -> list[int]:
    """The rows whose delivery is held, as pending on disk still at the delivered revision."""
    rows = list(store.held.rows)
    found = []
    for i in range(0, len(rows), 500):
        chunk = rows[i : i + 500]
        found += [
            Pending(rid, revision, {}, row)
            for row, rid, revision in store.db.execute(
                "SELECT rowid, id, revision FROM readings WHERE state = 'pending'"
                f" AND rowid IN ({','.join('?' * len(chunk))})",
                chunk,
            )
        ]
    return [p.row for p in found if store.held.hides(p)]


def stats(store: Store, now: float | None = None) -> OutboxStats:
    now = time.time() if now is None else now
    db = store.db
    with store.lock:
        held = held_rows(store)
        pending, oldest = db.execute(
            "SELECT COUNT(*), MIN(queued_at) FROM readings WHERE state = 'pending'"
            f" AND rowid NOT IN ({','.join('?' * len(held))})",
            held,
        ).fetchone()
        dead = db.execute("SELECT COUNT(*) FROM dead_letter").fetchone()[0]
        kept = (
            len(held)
            + db.execute("SELECT COUNT(*) FROM readings WHERE state = 'delivered'").fetchone()[0]
        )
        size = store.live_bytes()
        lost = store.lost
    return OutboxStats(
        pending=pending,
        oldest_pending_age_s=max(0.0, now - oldest) if oldest else 0.0,
        dead_letter=dead,
        dropped=store.counter("dropped") + lost,
        delivered_kept=kept,
        size_mb=round(size / 1e6, 2),
        junk_shed=store.counter("junk_shed"),
        disk_full=store.full_since is not None,
    )
