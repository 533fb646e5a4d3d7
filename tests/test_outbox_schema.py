"""An outbox written by an older release is migrated in place on first open: nothing pending is
lost or sent twice, and delivery memory (what the cloud already has) is kept."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from receiver_helpers import KEY, drain, make_uplink, readings

from appliance.outbox import SCHEMA_VERSION, Outbox, _digest
from appliance.records import Record
from appliance.sim.receiver import SimReceiver

# Schema 1 exactly as releases before it wrote it (appliance/outbox.py then, SCHEMA_VERSION = 1).
SCHEMA_1 = """
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
DROP INDEX IF EXISTS readings_delivered;
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


def old_outbox(path: Path, delivered: list[Record], pending: list[Record]) -> None:
    """An outbox as schema 1 left it: delivered rows first, then pending ones at revision 2."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA auto_vacuum = INCREMENTAL")
    db.execute("PRAGMA journal_mode = WAL")
    db.executescript(SCHEMA_1)
    now = time.time()
    for seq, (record, state) in enumerate(
        [(r, "delivered") for r in delivered] + [(r, "pending") for r in pending], 1
    ):
        wire = record.wire()
        wire["revision"] = 1 if state == "delivered" else 2
        db.execute(
            "INSERT INTO readings (id, seq, sensor_id, kind, period_start, revision, final, digest,"
            " body, state, queued_at, delivered_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                wire["id"],
                seq,
                record.sensor_id,
                record.kind,
                wire["period_start"],
                wire["revision"],
                int(record.final),
                _digest(wire),
                json.dumps(wire),
                state,
                now,
                now if state == "delivered" else None,
            ),
        )
    db.execute(
        "INSERT INTO cursors VALUES ('cam-1', 'region_counts', '2025-07-22T12:00:00Z', ?)", (now,)
    )
    db.execute("INSERT INTO counters VALUES ('dropped', 3)")
    db.close()


def test_a_schema_1_outbox_is_migrated_with_every_pending_reading_delivered_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state" / "outbox.db"
    path.parent.mkdir()
    history = readings(30)
    old_outbox(path, delivered=history[:20], pending=history[20:])
    with SimReceiver(db_path=tmp_path / "cloud.db", api_key=KEY) as rx:
        uplink, box = make_uplink(tmp_path, rx.url, outbox=Outbox(path))
        file = sqlite3.connect(path)
        assert file.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        indexes = "SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'readings'"
        assert {name for (name,) in file.execute(indexes)} == {
            "readings_key",
            "readings_pending",
            "readings_dead",
        }
        file.close()
        assert box.stats().pending == 10 and box.stats().delivered_kept == 20
        assert box.cursor("cam-1", "region_counts") == "2025-07-22T12:00:00Z"
        assert box.counter("dropped") == 3
        drain(uplink)
        sent = [json.loads(body) for _, body in rx.db.execute("SELECT id, body FROM readings")]
        # Each pending reading once, at the revision it had; nothing delivered before sent again.
        assert sorted((r["id"], r["revision"]) for r in sent) == sorted(
            (r.id, 2) for r in history[20:]
        )
        # Delivery memory: a re-read of the camera's history changes nothing and sends nothing.
        assert box.put(history).unchanged == 30 and box.take(100) == []
        # A changed reading gets the next revision, in the same row.
        changed = readings(1, people=99, final=False)
        assert box.put(changed).ignored_final == 1  # hour 0 was final: never changes
        box.close()


def test_opening_a_migrated_outbox_again_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    old_outbox(path, delivered=readings(2), pending=readings(3, start=2))
    Outbox(path).close()
    again = Outbox(path)
    assert [p.id for p in again.take(10)] == [r.id for r in readings(3, start=2)]
    assert again.stats().delivered_kept == 2
