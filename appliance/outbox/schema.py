"""The outbox file's tables, and how a file an older release wrote is brought up to date.

Opening is the only place that creates or changes tables. A new file gets
every table; a file of an older schema is migrated in place, in one
transaction, on first open (a cut or a full disk leaves it as it was, migrated
at the next start). Read-only tools open the file without changing it.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from .damage import OutboxFull, _Corrupt, is_corruption, is_disk_full, torn_wal

log = logging.getLogger("sensor-bridge.outbox")

# Bumped when SCHEMA changes so that older code cannot read the file: `sensor-bridge update`
# refuses to go back to a release of a lower number (image/release.py reads it from this file).
# The file says which schema it holds in PRAGMA user_version (0: schema 1, before it was kept).
SCHEMA_VERSION = 3
# A reading's state is 'pending', 'delivered' or 'dead', written as literals in the SQL: a
# partial index (readings_pending) only serves a query that names its state the same way.
#
# Readings are kept in the table's own row order (rowid, appended): a new reading lands on the
# last page and a revision is written where its row already is, so a poll round rewrites a few
# pages at the table's end instead of one page per reading (schema 1's random 64-hex primary key
# put every new reading on a page of its own once the table was large). Found by its key
# (period_start first, so new keys append too); the id is sha256 of that same key (records.py).
READINGS = """
CREATE TABLE IF NOT EXISTS readings (
    seq INTEGER NOT NULL,
    id TEXT NOT NULL,
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
"""
READING_INDEXES = """
CREATE UNIQUE INDEX IF NOT EXISTS readings_key ON readings(period_start, sensor_id, kind);
CREATE INDEX IF NOT EXISTS readings_pending ON readings(seq) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS readings_dead ON readings(id) WHERE state = 'dead';
-- A schema 1 release run on this file (an update rolled back by its health gate) makes its seq
-- index again; it works without it (lookups by id scan the table), and this release drops it.
DROP INDEX IF EXISTS readings_seq;
"""
SCHEMA = (
    READINGS
    + READING_INDEXES
    + """
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
CREATE TABLE IF NOT EXISTS first_seen (
    sensor_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    seen_at TEXT NOT NULL,
    PRIMARY KEY (sensor_id, digest)
);
CREATE INDEX IF NOT EXISTS first_seen_at ON first_seen(seen_at);
"""
)
# Schema 1 -> 2, in place and in one transaction: every row keeps its place, state and revision.
MIGRATE_FROM_1 = (
    READINGS.replace("readings", "readings_v2")
    + """
INSERT INTO readings_v2 (rowid, seq, id, sensor_id, kind, period_start, revision, final, digest,
    body, state, queued_at, delivered_at)
    SELECT rowid, seq, id, sensor_id, kind, period_start, revision, final,
    substr(digest, 1, 16), body, state, queued_at, delivered_at FROM readings ORDER BY rowid;
DROP TABLE readings;
ALTER TABLE readings_v2 RENAME TO readings;
"""
    + READING_INDEXES
)


# Schema 2 -> 3: the relay's first-seen memory, kept until then as cursors named
# 'first-seen:<digest>', moves to its own table (first_seen.py), each moment as it was. Run at
# every open, not only once: a schema 2 release run on this file (an update rolled back by its
# health gate) writes such cursors again, and this release carries them over.
CARRY_FIRST_SEEN = """
INSERT OR IGNORE INTO first_seen (sensor_id, digest, seen_at)
    SELECT sensor_id, substr(kind, 12), position FROM cursors WHERE kind LIKE 'first-seen:%';
DELETE FROM cursors WHERE kind LIKE 'first-seen:%';
"""


def run_script(db: sqlite3.Connection, script: str) -> None:
    """Each statement of ``script`` inside the open transaction (executescript would commit it)."""
    for statement in script.split(";\n"):
        if statement.strip():
            db.execute(statement)


def open_writable(path: Path) -> sqlite3.Connection:
    """``path`` checked and brought up to date; a damaged file raises (the caller moves it aside)."""
    db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA busy_timeout = 30000")
        # Only takes effect on a new file: lets shedding give space back without a VACUUM.
        db.execute("PRAGMA auto_vacuum = INCREMENTAL")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        verdict = db.execute("PRAGMA quick_check").fetchone()[0]
        if verdict != "ok":
            raise _Corrupt(f"quick_check: {verdict}")
        bring_up_to_date(db, path)
    except BaseException:
        db.close()
        raise
    return db


def bring_up_to_date(db: sqlite3.Connection, path: Path) -> None:
    """A new file gets the tables; one an older release wrote is migrated in place, in one
    transaction (a cut or a full disk leaves it as it was, to be migrated at the next start)."""
    db.execute("BEGIN IMMEDIATE")  # the relay may open the same file at the same moment
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        schema_1 = (
            version < 2
            and db.execute(
                "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'readings'"
            ).fetchone()
        )
        if schema_1:
            count = db.execute("SELECT COUNT(*) FROM readings").fetchone()[0]
            log.warning(
                "outbox %s: moving its %d reading(s) to schema %d (once)",
                path,
                count,
                SCHEMA_VERSION,
            )
            run_script(db, MIGRATE_FROM_1)
        run_script(db, SCHEMA)
        run_script(db, CARRY_FIRST_SEEN)
        if version < SCHEMA_VERSION:
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException as exc:
        if db.in_transaction:
            db.execute("ROLLBACK")
        if is_disk_full(exc):
            raise OutboxFull(
                f"no room on the disk to bring the outbox {path} to schema"
                f" {SCHEMA_VERSION} (it needs about its own size free once): {exc}"
            ) from exc
        raise


def open_readonly(path: Path) -> tuple[sqlite3.Connection, str | None]:
    """The file as it is, never changed, and why it cannot be trusted (None when it can).

    A damaged or missing file reads as an empty outbox (in memory)."""
    damage = None
    if path.exists():
        torn = torn_wal(path)
        try:
            db = sqlite3.connect(
                f"file:{path}?mode=ro",
                uri=True,
                timeout=30,
                isolation_level=None,
                check_same_thread=False,
            )
            try:
                verdict = db.execute("PRAGMA quick_check").fetchone()[0]
                if verdict != "ok":
                    raise _Corrupt(f"quick_check: {verdict}")
                db.execute(
                    "SELECT COUNT(*) FROM readings, counters, dead_letter LIMIT 1"
                ).fetchone()
            except BaseException:
                db.close()
                raise
            return db, torn and f"outbox {path}: {torn}"
        except sqlite3.DatabaseError as exc:
            verb = "is damaged" if is_corruption(exc) else "cannot be read"
            damage = f"outbox {path} {verb} ({exc}); the collector moves it aside when it starts"
    db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    db.executescript(SCHEMA)
    return db, damage
