"""An outbox written by an older release is migrated in place on first open: nothing pending is
lost or sent twice, and delivery memory (what the cloud already has) and the relay's first-seen
memory are kept."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

from receiver_helpers import KEY, drain, make_uplink, readings

from appliance.outbox import SCHEMA_VERSION, FirstSighting, Outbox, _digest
from appliance.push.parser import PushParser
from appliance.push.sender import FirstSeen
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


# Schema 2 exactly as releases before it wrote it (appliance/outbox.py, SCHEMA_VERSION = 2), where
# the relay's first-seen memory was cursors named 'first-seen:<digest>'.
SCHEMA_2 = """
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
CREATE UNIQUE INDEX IF NOT EXISTS readings_key ON readings(period_start, sensor_id, kind);
CREATE INDEX IF NOT EXISTS readings_pending ON readings(seq) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS readings_dead ON readings(id) WHERE state = 'dead';
DROP INDEX IF EXISTS readings_seq;
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
PRAGMA user_version = 2;
"""


def old_outbox(
    path: Path, delivered: list[Record], pending: list[Record], schema: str = SCHEMA_1
) -> None:
    """An outbox as an older schema left it: delivered rows first, then pending ones at revision 2."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA auto_vacuum = INCREMENTAL")
    db.execute("PRAGMA journal_mode = WAL")
    db.executescript(schema)
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


TIMELESS = {"event": "Heartbeat", "device_info": {"device_sn": "SN1"}, "uptime": 5}


def timeless_push(parser: PushParser, received_at: datetime):
    """A message with no time of its own, as the relay parses it (dated by its first arrival)."""
    return parser.parse(
        json.dumps(TIMELESS).encode(),
        source="mqtt",
        topic="milesight/door",
        origin="milesight/door",
        received_at=received_at,
    )


def test_a_schema_2_outbox_keeps_its_first_seen_memory_in_a_table_of_its_own(
    tmp_path: Path,
) -> None:
    """The first-seen cursors of schema 2 move to their own table in the one migration: a copy of
    a timeless message received before the update keeps its first arrival's period, and so its
    id; poll cursors, readings and delivery memory stay as they were."""
    first = datetime(2025, 7, 1, 9, tzinfo=UTC)
    [sighting] = timeless_push(PushParser(first_seen=FirstSeen()), first).cursors
    path = tmp_path / "outbox.db"
    old_outbox(path, delivered=readings(2), pending=readings(3, start=2), schema=SCHEMA_2)
    db = sqlite3.connect(path)
    db.executemany(
        "INSERT INTO cursors VALUES (?, ?, ?, 0)",
        [
            (sighting.sensor_id, f"first-seen:{sighting.digest}", "2025-07-01T09:00:00Z"),
            ("door", "first-seen:" + "ab" * 16, "2025-07-02T00:00:00Z"),
        ],
    )
    db.commit()
    db.close()

    box = Outbox(path)
    file = sqlite3.connect(path)
    assert file.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    assert file.execute(
        "SELECT sensor_id, digest, seen_at FROM first_seen ORDER BY seen_at"
    ).fetchall() == [
        (sighting.sensor_id, sighting.digest, "2025-07-01T09:00:00Z"),
        ("door", "ab" * 16, "2025-07-02T00:00:00Z"),
    ]
    assert file.execute("SELECT sensor_id, kind, position FROM cursors").fetchall() == [
        ("cam-1", "region_counts", "2025-07-22T12:00:00Z")
    ], "only the poll cursor is left among the cursors"
    file.close()
    assert box.stats().pending == 3 and box.stats().delivered_kept == 2
    assert box.counter("dropped") == 3

    later = timeless_push(PushParser(first_seen=FirstSeen(box)), datetime(2025, 7, 3, tzinfo=UTC))
    assert later.records[0].wire()["period_start"] == "2025-07-01T09:00:00Z"
    assert later.cursors == [], "already remembered: nothing new to write"
    box.close()


def test_first_seen_cursors_a_rolled_back_release_wrote_are_carried_over_at_the_next_open(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    box = Outbox(path)
    box.put([], cursors=[FirstSighting("SN1", "cd" * 16, "2025-07-01T09:00:00Z")])
    box.close()
    # A schema 2 release run on this file (an update rolled back by its health gate) keeps its
    # first-seen memory as cursors again.
    db = sqlite3.connect(path)
    db.execute(
        "INSERT INTO cursors VALUES ('SN2', 'first-seen:' || ?, ?, 0)",
        ("ef" * 16, "2025-07-02T00:00:00Z"),
    )
    db.commit()
    db.close()
    again = Outbox(path)
    assert again.first_seen.get("SN1", "cd" * 16) == "2025-07-01T09:00:00Z"
    assert again.first_seen.get("SN2", "ef" * 16) == "2025-07-02T00:00:00Z"
    assert again.cursor("SN2", "first-seen:" + "ef" * 16) is None
    again.close()
