"""The outbox: every reading waits here, on disk, until the cloud API has it.

One SQLite file (WAL) shared by the collector and the relay. Sources ``put``
records (and move their cursors in the same transaction, so a crash between
the two re-reads rather than loses); the uplink ``take``s the oldest pending
ones and marks them ``delivered`` only after a 2xx.

Revisions are the outbox's job: a record id never seen gets revision 1; the
same values again change nothing; new values for a pending record replace it
in place (coalescing) and a delivered one is queued again, each with the next
revision. A period once stored as final never changes again.

Durability: ``synchronous=FULL``. In WAL mode that costs one fsync per
transaction, which the callers amortise by batching (a poll, an uplink batch,
a burst of MQTT messages is one transaction). NORMAL would survive SIGKILL but
could lose the last commits on a power cut; a Pi in a back office loses power,
and by then the relay has already acknowledged those MQTT messages and the
poller has moved its cursor past those rows, so they would be gone for good.

Shedding: beyond ``max_mb`` of live data, or with less than
``min_free_disk_mb`` free on its disk, the outbox first forgets delivered rows
and then drops the oldest pending ones, counting every dropped record in the
``dropped`` counter that status, heartbeat and /health report.

A corrupt file is moved aside (``outbox.db.corrupt-<time>``) with a loud
error and a fresh outbox started, so a damaged SD card sector can never put
the service into a crash loop.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .records import Record, refusal

log = logging.getLogger("sensor-bridge.outbox")

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"

# Delivered rows are kept this long so a re-read of the camera's history
# (about 7 days) is recognised as "already delivered" and not sent again.
KEEP_DELIVERED_S = 8 * 24 * 3600
PREVIEW_CHARS = 1000

SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    sensor_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    period_start TEXT NOT NULL,
    revision INTEGER NOT NULL,
    final INTEGER NOT NULL,
    digest TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL,
    queued_at REAL NOT NULL,
    delivered_at REAL
);
CREATE INDEX IF NOT EXISTS readings_seq ON readings(seq);
CREATE INDEX IF NOT EXISTS readings_pending ON readings(seq) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS readings_delivered ON readings(delivered_at) WHERE state = 'delivered';
CREATE TABLE IF NOT EXISTS cursors (
    sensor_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    position TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (sensor_id, kind)
);
CREATE TABLE IF NOT EXISTS dead_letter (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    record_id TEXT,
    origin TEXT NOT NULL,
    reason TEXT NOT NULL,
    preview TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""


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


@dataclass(frozen=True)
class OutboxStats:
    pending: int
    oldest_pending_age_s: float
    dead_letter: int
    dropped: int
    delivered_kept: int
    size_mb: float

    def contract(self) -> dict[str, Any]:
        """The heartbeat's ``outbox`` object."""
        return {
            "pending": self.pending,
            "oldest_pending_age_s": round(self.oldest_pending_age_s),
            "dead_letter": self.dead_letter,
            "dropped": self.dropped,
        }


class _Corrupt(sqlite3.DatabaseError):
    """quick_check found damage."""


def _is_corruption(exc: sqlite3.DatabaseError) -> bool:
    """Damage to the file itself, as opposed to a lock or a transient I/O error."""
    if isinstance(exc, _Corrupt):
        return True
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
    return "malformed" in str(exc) or "not a database" in str(exc)


def _at_the_door(record: Record, now: float) -> DeadEntry | None:
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


def _storable(text: Any) -> str:
    """``text`` as SQLite can keep it: NUL and lone surrogates written as escapes."""
    return str(text).encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def _digest(wire: dict[str, Any]) -> str:
    """What makes two versions of a record the same reading."""
    meaningful = {k: wire[k] for k in ("period_end", "final", "values")}
    return hashlib.sha256(json.dumps(meaningful, sort_keys=True).encode()).hexdigest()


class Outbox:
    """The durable store-and-forward queue; safe to share between threads and processes."""

    def __init__(self, path: str | Path, max_mb: float = 256, min_free_disk_mb: float = 200) -> None:
        self.path = Path(path)
        self.max_mb = max_mb
        self.min_free_disk_mb = min_free_disk_mb
        self.reset_reason: str | None = None
        self._lock = threading.RLock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as exc:
            if not _is_corruption(exc):
                raise  # locked, busy, I/O: the file is fine, let the service retry
            self._move_aside(str(exc))
            self._db = self._open()

    # ------------------------------------------------------------ opening

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA busy_timeout = 30000")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")
            verdict = db.execute("PRAGMA quick_check").fetchone()[0]
            if verdict != "ok":
                raise _Corrupt(f"quick_check: {verdict}")
            db.executescript(SCHEMA)
        except BaseException:
            db.close()
            raise
        return db

    def _move_aside(self, why: str) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self.path) + suffix)
            if src.exists():
                os.replace(src, Path(str(aside) + suffix))
        self.reset_reason = f"outbox {self.path} was corrupt ({why}); moved to {aside}, started empty"
        log.error("%s", self.reset_reason)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; the lock keeps this process's threads in line."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # ------------------------------------------------------------ writing

    def put(
        self,
        records: Iterable[Record],
        cursors: Iterable[tuple[str, str, str]] = (),
        dead: Iterable[DeadEntry] = (),
    ) -> PutResult:
        """Store ``records``, move ``cursors`` (sensor_id, kind, position) and keep ``dead``
        entries, all in one transaction: either everything is on disk or nothing is.

        Every record passes the door first (records.refusal): one the cloud would refuse is
        kept as a dead letter with the reason instead, so no source can queue a poison reading."""
        added = updated = unchanged = ignored = 0
        refused: list[DeadEntry] = []
        now = time.time()
        with self._write() as db:
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) FROM readings").fetchone()[0]
            for record in records:
                if (entry := _at_the_door(record, now)) is not None:
                    refused.append(entry)
                    continue
                wire = record.wire()
                digest = _digest(wire)
                row = db.execute(
                    "SELECT revision, digest, final, state, seq, queued_at FROM readings WHERE id = ?",
                    (wire["id"],),
                ).fetchone()
                if row is None:
                    seq += 1
                    wire["revision"] = 1
                    db.execute(
                        "INSERT INTO readings (id, seq, sensor_id, kind, period_start, revision, final,"
                        " digest, body, state, queued_at) VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?)",
                        (wire["id"], seq, record.sensor_id, record.kind, wire["period_start"],
                         int(record.final), digest, json.dumps(wire), PENDING, now),
                    )
                    added += 1
                    continue
                revision, old_digest, was_final, state, old_seq, queued_at = row
                if old_digest == digest:
                    unchanged += 1
                    continue
                if was_final:
                    ignored += 1
                    continue
                wire["revision"] = revision + 1
                if state != PENDING:
                    seq += 1
                    old_seq, queued_at = seq, now
                db.execute(
                    "UPDATE readings SET seq = ?, revision = ?, final = ?, digest = ?, body = ?,"
                    " state = ?, queued_at = ? WHERE id = ?",
                    (old_seq, revision + 1, int(record.final), digest, json.dumps(wire),
                     PENDING, queued_at, wire["id"]),
                )
                updated += 1
            for sensor_id, kind, position in cursors:
                db.execute(
                    "INSERT INTO cursors (sensor_id, kind, position, updated_at) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (sensor_id, kind) DO UPDATE SET position = excluded.position,"
                    " updated_at = excluded.updated_at",
                    (sensor_id, kind, position, now),
                )
            self._insert_dead(db, [*dead, *refused], now)
            if ignored:
                self._bump(db, "final_changes_ignored", ignored)
        for entry in refused:
            log.warning("refused a reading (%s): %s", entry.origin, entry.reason)
        return PutResult(added, updated, unchanged, ignored, len(refused))

    def cursor(self, sensor_id: str, kind: str) -> str | None:
        """Where ``sensor_id``'s ``kind`` left off (the start of its last final period)."""
        with self._lock:
            row = self._db.execute(
                "SELECT position FROM cursors WHERE sensor_id = ? AND kind = ?", (sensor_id, kind)
            ).fetchone()
        return row[0] if row else None

    def add_dead(self, entries: Iterable[DeadEntry]) -> None:
        with self._write() as db:
            self._insert_dead(db, entries, time.time())

    @staticmethod
    def _insert_dead(db: sqlite3.Connection, entries: Iterable[DeadEntry], now: float) -> None:
        for entry in entries:
            db.execute(
                "INSERT INTO dead_letter (record_id, origin, reason, preview, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (entry.record_id, _storable(entry.origin), _storable(entry.reason), _storable(entry.preview), now),
            )

    @staticmethod
    def _bump(db: sqlite3.Connection, name: str, by: int) -> None:
        db.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
            (name, by),
        )

    # ------------------------------------------------------------ delivering

    def take(self, limit: int) -> list[Pending]:
        """The ``limit`` oldest pending records, oldest first (they stay pending)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, revision, body FROM readings WHERE state = 'pending' ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
        return [Pending(rid, rev, json.loads(body)) for rid, rev, body in rows]

    def delivered(self, sent: Iterable[Pending]) -> int:
        """The cloud has these; a record that got a newer revision meanwhile stays pending."""
        now = time.time()
        with self._write() as db:
            done = 0
            for item in sent:
                done += db.execute(
                    "UPDATE readings SET state = 'delivered', delivered_at = ?"
                    " WHERE id = ? AND revision = ? AND state = 'pending'",
                    (now, item.id, item.revision),
                ).rowcount
        return done

    def reject(self, rejected: Iterable[tuple[Pending, str]]) -> int:
        """The cloud refused these records for good: keep them in the dead-letter table."""
        now = time.time()
        moved = 0
        with self._write() as db:
            for item, reason in rejected:
                changed = db.execute(
                    "UPDATE readings SET state = 'dead' WHERE id = ? AND revision = ? AND state = 'pending'",
                    (item.id, item.revision),
                ).rowcount
                if changed:
                    moved += 1
                    self._insert_dead(
                        db, [DeadEntry("uplink", reason, json.dumps(item.body), item.id)], now
                    )
        return moved

    # ------------------------------------------------------------ the dead-letter table

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, record_id, origin, reason, preview, created_at FROM dead_letter"
                " ORDER BY seq DESC LIMIT ?",
                (limit,),
            ).fetchall()
        keys = ("seq", "record_id", "origin", "reason", "preview", "created_at")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def retry_dead(self) -> int:
        """Queue every dead-lettered record again (raw messages cannot be retried)."""
        with self._write() as db:
            requeued = db.execute(
                "UPDATE readings SET state = 'pending', queued_at = ? WHERE state = 'dead'"
                " AND id IN (SELECT record_id FROM dead_letter WHERE record_id IS NOT NULL)",
                (time.time(),),
            ).rowcount
            db.execute("DELETE FROM dead_letter WHERE record_id IS NOT NULL")
        return requeued

    def purge_dead(self) -> int:
        """Forget everything in the dead-letter table."""
        with self._write() as db:
            db.execute("DELETE FROM readings WHERE state = 'dead'")
            return db.execute("DELETE FROM dead_letter").rowcount

    # ------------------------------------------------------------ limits

    def _live_bytes(self) -> int:
        page_size = self._db.execute("PRAGMA page_size").fetchone()[0]
        pages = self._db.execute("PRAGMA page_count").fetchone()[0]
        free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
        return (pages - free) * page_size

    def _free_disk_mb(self) -> float:
        st = os.statvfs(self.path.parent)
        return st.f_bavail * st.f_frsize / 1e6

    def enforce_limits(self, now: float | None = None) -> int:
        """Forget old delivered rows; shed the oldest pending when over a limit.

        Returns how many pending records were dropped (also added to ``dropped``).
        """
        now = time.time() if now is None else now
        with self._write() as db:
            db.execute(
                "DELETE FROM readings WHERE state = 'delivered' AND delivered_at < ?",
                (now - KEEP_DELIVERED_S,),
            )
        dropped = 0
        for _ in range(1000):  # bounded: each round frees a chunk
            cap = self.max_mb * 1e6
            live = self._live_bytes()
            low_disk = self._free_disk_mb() < self.min_free_disk_mb
            if live <= cap and not low_disk:
                break
            chunk = 500
            if not low_disk:
                # Shed down to 95% of the cap so one new reading does not shed again at once.
                with self._lock:
                    rows = self._db.execute("SELECT COUNT(*) FROM readings").fetchone()[0] or 1
                chunk = max(1, min(chunk, int((live - 0.95 * cap) / (live / rows)) + 1))
            with self._write() as db:
                forgot = db.execute(
                    "DELETE FROM readings WHERE id IN (SELECT id FROM readings"
                    " WHERE state != 'pending' ORDER BY seq LIMIT ?)", (chunk,)
                ).rowcount
                if forgot:
                    continue
                shed = db.execute(
                    "DELETE FROM readings WHERE id IN (SELECT id FROM readings"
                    " WHERE state = 'pending' ORDER BY seq LIMIT ?)", (chunk,)
                ).rowcount
                if not shed:
                    break
                self._bump(db, "dropped", shed)
                dropped += shed
            if low_disk and live <= cap:
                # Freed pages stay inside the file; give them back to the disk.
                with self._lock:
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                    self._db.execute("VACUUM")
        if dropped:
            log.error("outbox over its limits: dropped the %d oldest undelivered records", dropped)
        return dropped

    # ------------------------------------------------------------ reading

    def counter(self, name: str) -> int:
        with self._lock:
            row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return row[0] if row else 0

    def stats(self, now: float | None = None) -> OutboxStats:
        now = time.time() if now is None else now
        with self._lock:
            pending, oldest = self._db.execute(
                "SELECT COUNT(*), MIN(queued_at) FROM readings WHERE state = 'pending'"
            ).fetchone()
            dead = self._db.execute("SELECT COUNT(*) FROM dead_letter").fetchone()[0]
            kept = self._db.execute(
                "SELECT COUNT(*) FROM readings WHERE state = 'delivered'"
            ).fetchone()[0]
            size = self._live_bytes()
        return OutboxStats(
            pending=pending,
            oldest_pending_age_s=max(0.0, now - oldest) if oldest else 0.0,
            dead_letter=dead,
            dropped=self.counter("dropped"),
            delivered_kept=kept,
            size_mb=round(size / 1e6, 2),
        )

    def pending_list(self, limit: int = 50) -> list[dict[str, Any]]:
        """The oldest pending records, for ``sensor-bridge outbox list``."""
        return [p.body for p in self.take(limit)]
