"""The outbox keeps every reading until the cloud has it: revisions, kills, limits, corruption."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from appliance.outbox import DeadEntry, FirstSighting, Outbox
from appliance.records import Record

T0 = datetime(2025, 7, 22, 9, tzinfo=UTC)


def reading(hour: int = 0, people_in: int = 5, final: bool = True, sensor: str = "cam-1") -> Record:
    start = T0 + timedelta(hours=hour)
    values = {"total": {"in": people_in, "out": 1}, "lines": {"1": {"in": people_in, "out": 1}}}
    return Record(sensor, "line_counts", start, start + timedelta(hours=1), values, final, "poll")


def test_a_growing_period_is_coalesced_while_pending_and_requeued_once_delivered(
    tmp_path: Path,
) -> None:
    box = Outbox(tmp_path / "o.db")
    assert box.put([reading(people_in=3, final=False)]).added == 1
    assert box.put([reading(people_in=3, final=False)]).unchanged == 1  # same values: nothing new
    assert box.put([reading(people_in=7, final=False)]).updated == 1
    [pending] = box.take(10)  # one row, not two: the newer values replaced the older
    assert (pending.revision, pending.body["values"]["total"]["in"]) == (2, 7)
    box.delivered([pending])
    assert box.take(10) == []
    box.put([reading(people_in=9, final=True)])
    [again] = box.take(10)
    assert (again.revision, again.body["final"]) == (3, True)


def test_a_final_period_never_changes(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    box.put([reading(people_in=4, final=True)])
    box.delivered(box.take(10))
    result = box.put([reading(people_in=99, final=True)])
    assert result.ignored_final == 1 and box.take(10) == []
    assert box.counter("final_changes_ignored") == 1


def test_a_record_updated_while_in_flight_stays_pending(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    box.put([reading(people_in=1, final=False)])
    in_flight = box.take(10)
    box.put([reading(people_in=2, final=False)])  # the camera's row grew meanwhile
    assert box.delivered(in_flight) == 0
    [still] = box.take(10)
    assert still.revision == 2 and still.body["values"]["total"]["in"] == 2


def test_oldest_first_and_cursor_moves_with_the_records(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    box.put(
        [reading(hour=h) for h in range(5)],
        cursors=[("cam-1", "line_counts", "2025-07-22T13:00:00Z")],
    )
    assert [p.body["period_start"][11:13] for p in box.take(3)] == ["09", "10", "11"]
    assert box.cursor("cam-1", "line_counts") == "2025-07-22T13:00:00Z"
    assert box.cursor("cam-2", "line_counts") is None


def test_rejected_records_go_to_dead_letter_and_can_be_retried(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    box.put([reading(hour=0), reading(hour=1)])
    first, second = box.take(10)
    assert box.reject([(first, "values.total.in: must be >= 0")]) == 1
    box.add_dead([DeadEntry("milesight/door", "not JSON", "ff d8 ff e0")])
    assert [p.id for p in box.take(10)] == [second.id]
    dead = box.dead_letters()
    assert {d["reason"] for d in dead} == {"values.total.in: must be >= 0", "not JSON"}
    assert box.retry_dead() == 1
    assert {p.id for p in box.take(10)} == {first.id, second.id}
    assert box.stats().dead_letter == 1  # the raw message cannot be retried, only purged
    assert box.purge_dead() == 1 and box.stats().dead_letter == 0


def test_over_the_size_cap_the_oldest_are_shed_and_counted(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", max_mb=1)
    big = {
        "total": {"in": 1, "out": 1},
        "lines": {str(i): {"in": i, "out": i} for i in range(1, 60)},
    }
    records = [
        Record(
            "cam-1",
            "line_counts",
            T0 + timedelta(hours=h),
            T0 + timedelta(hours=h + 1),
            big,
            True,
            "poll",
        )
        for h in range(3000)
    ]
    box.put(records)
    dropped = box.enforce_limits()
    stats = box.stats()
    assert dropped > 0 and stats.dropped == dropped
    assert stats.size_mb <= 1.0
    assert stats.pending == 3000 - dropped
    oldest_left = box.take(1)[0].body["period_start"]
    assert oldest_left > "2025-07-22T09:00:00Z"  # the newest readings were kept


def test_a_corrupt_file_is_moved_aside_and_a_fresh_outbox_starts(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    box = Outbox(path)
    box.put([reading()])
    box.close()
    with open(path, "r+b") as f:  # scribble over the header, as a failing SD card might
        f.write(b"\xde\xad\xbe\xef" * 64)
    fresh = Outbox(path)
    assert fresh.reset_reason and "corrupt" in fresh.reset_reason
    assert fresh.stats().pending == 0
    assert list(tmp_path.glob("outbox.db.corrupt-*")), (
        "the damaged file is kept for a person to inspect"
    )
    fresh.put([reading()])
    assert len(fresh.take(5)) == 1


WRITER = """
import sys
from datetime import UTC, datetime, timedelta
from appliance.outbox import Outbox
from appliance.records import Record
box = Outbox(sys.argv[1])
t0 = datetime(2025, 1, 1, tzinfo=UTC)
i = 0
while True:
    batch = [Record(sys.argv[2], "line_counts", t0 + timedelta(hours=i + k), t0 + timedelta(hours=i + k + 1),
             {"total": {"in": i + k, "out": 0}, "lines": {}}, True, "poll") for k in range(20)]
    box.put(batch, cursors=[(sys.argv[2], "line_counts", str(i + 19))])
    print(i + 19, flush=True)
    i += 20
"""


def test_sigkill_at_any_instant_loses_nothing_committed(tmp_path: Path) -> None:
    """Two writer processes share the file; each is killed mid-stream, several times."""
    path = tmp_path / "outbox.db"
    acknowledged: dict[str, int] = {}
    for round_ in range(4):
        procs = {
            name: subprocess.Popen(
                [sys.executable, "-c", WRITER, str(path), name], stdout=subprocess.PIPE, text=True
            )
            for name in (f"a{round_}", f"b{round_}")
        }
        time.sleep(0.3 + 0.1 * round_)
        for name, proc in procs.items():
            proc.send_signal(signal.SIGKILL)
            out, _ = proc.communicate()
            lines = out.split()
            acknowledged[name] = int(lines[-1]) if lines else -1
    box = Outbox(path)
    assert box.reset_reason is None
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    for name, last in acknowledged.items():
        cursor = box.cursor(name, "line_counts")
        assert last < 0 or int(cursor) >= last, f"{name}: acknowledged {last}, cursor {cursor}"
        rows = (
            sqlite3.connect(path)
            .execute("SELECT COUNT(*) FROM readings WHERE sensor_id = ?", (name,))
            .fetchone()[0]
        )
        # the cursor and the records moved together: exactly the records up to the cursor exist
        assert rows == (int(cursor) + 1 if cursor else 0)


# ---------------------------------------------------------------- junk, clocks, damage (issue 15)


def test_a_junk_flood_never_evicts_a_real_reading(tmp_path: Path) -> None:
    """3,000 refused pushes (4 MB of dead letters) and thousands of first-seen moments under
    max_mb = 1: the junk is shed, oldest first and counted, and every reading stays."""
    box = Outbox(tmp_path / "o.db", max_mb=1)
    box.put([reading(hour=h) for h in range(800)])
    raw = "7b 22 62 6f 67 75 73 22 " * 170  # a hex preview of a 1.4 kB message nobody can parse
    for burst in range(30):
        box.add_dead(
            [DeadEntry("milesight/door", f"not JSON (#{burst}-{i})", raw) for i in range(100)]
        )
    moments = [
        (T0 + timedelta(minutes=m)).strftime("%Y-%m-%dT%H:%M:%SZ")
        for m in range(0, 30 * 24 * 60, 10)
    ]
    box.put([], cursors=[FirstSighting("door", f"{i:08x}", at) for i, at in enumerate(moments)])
    assert box.stats().size_mb > 4, "the junk alone is four times the cap"

    assert box.enforce_limits() == 0
    stats = box.stats()
    assert stats.pending == 800 and stats.dropped == 0, "no real reading was dropped"
    assert stats.size_mb <= 1.0
    assert 0 < stats.dead_letter < 3000 and stats.junk_shed >= 3000 - stats.dead_letter
    newest_dead = box.dead_letters(1)[0]["reason"]
    assert newest_dead == "not JSON (#29-99)", "the oldest dead letters went first"
    newest_seen = moments[-1]
    kept = (
        sqlite3.connect(tmp_path / "o.db")
        .execute("SELECT MIN(seen_at), COUNT(*) FROM first_seen")
        .fetchone()
    )
    assert kept[1] > 0 and kept[0] >= (
        datetime.fromisoformat(newest_seen) - timedelta(days=8)
    ).strftime("%Y-%m-%dT%H:%M:%SZ"), "stale first-seen cursors are forgotten, recent ones kept"


def test_first_seen_memory_keeps_its_newest_50000_and_its_own_expiry(tmp_path: Path) -> None:
    """Its own cap and age, whatever max_mb says: the oldest moments go first, and what is
    forgotten counts as junk shed; the relay then dates a copy as a new message."""
    box = Outbox(tmp_path / "o.db")
    at = [(T0 + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ") for i in range(50_010)]
    box.put([], cursors=[FirstSighting("door", f"{i:08x}", t) for i, t in enumerate(at)])
    assert box.enforce_limits() == 0
    assert box.first_seen.get("door", f"{9:08x}") is None, "the ten oldest are forgotten"
    assert box.first_seen.get("door", f"{10:08x}") == at[10]
    assert box.stats().junk_shed == 10
    box.put([], cursors=[FirstSighting("door", "new", "2025-08-05T00:00:00Z")])
    box.enforce_limits()
    assert box.first_seen.get("door", f"{50_009:08x}") is None, "older than 8 days: forgotten"
    assert box.first_seen.get("door", "new") == "2025-08-05T00:00:00Z"
    box.close()


def test_a_clock_a_year_ahead_and_back_keeps_the_delivery_memory(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    week = [reading(hour=h) for h in range(7 * 24)]
    box.put(week)
    now = time.time()
    assert box.delivered(box.take(1000)) == len(week)

    for clock in (
        now + 365 * 86400,
        now,
        now - 365 * 86400,
        now + 3600,
    ):  # ahead, corrected, behind, right
        box.enforce_limits(now=clock)
        assert box.stats(now=clock).delivered_kept == len(week), (
            f"delivery memory kept at clock {clock}"
        )
    again = box.put(week)  # the camera's history read again after the clock was put right
    assert again.unchanged == len(week) and box.take(10) == [], "nothing is sent twice"

    later = [reading(hour=9 * 24)]  # the camera's own time moved on 9 days
    box.put(later)
    box.enforce_limits(now=now)
    assert box.stats().delivered_kept == len(week) - 24, (
        "a delivered period 8 days older than the newest is forgotten"
    )


def flip_body_byte(path: Path, record_id: str) -> None:
    """Damage one byte inside a stored record's JSON, as a failing SD card sector might."""
    data = bytearray(path.read_bytes())
    at = data.find(b'{"id":"' + record_id.encode())
    assert at >= 0, "the record's body is in the file"
    data[at] = 0xFF
    path.write_bytes(bytes(data))


def test_a_damaged_byte_in_a_stored_reading_costs_that_reading_only(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    box = Outbox(path)
    box.put([reading(hour=h) for h in range(20)])
    victim = box.take(20)[7]
    box.close()
    flip_body_byte(path, victim.id)
    assert sqlite3.connect(path).execute("PRAGMA quick_check").fetchone()[0] == "ok"

    box = Outbox(path)
    taken = box.take(100)
    assert len(taken) == 19 and victim.id not in {p.id for p in taken}
    [dead] = box.dead_letters()
    assert dead["record_id"] == victim.id and "cannot be read" in dead["reason"]
    assert '"id":"' + victim.id in dead["preview"], "the raw bytes are kept for a person to look at"
    assert box.delivered(taken) == 19 and box.stats().pending == 0


def test_a_torn_write_ahead_log_is_reported_until_acknowledged(tmp_path: Path) -> None:
    live = Outbox(tmp_path / "live" / "outbox.db")
    live.put([reading(hour=h) for h in range(30)])
    card = tmp_path / "card"
    card.mkdir()
    for suffix in (
        "",
        "-wal",
    ):  # the card as a power cut left it: the log's last frame half written
        (card / f"outbox.db{suffix}").write_bytes(
            (tmp_path / "live" / f"outbox.db{suffix}").read_bytes()
        )
    live.close()
    wal = card / "outbox.db-wal"
    assert wal.stat().st_size > 4096
    with open(wal, "r+b") as f:
        f.truncate(wal.stat().st_size - 1000)

    box = Outbox(card / "outbox.db")
    assert (
        box.reset_reason
        and "write-ahead log" in box.reset_reason
        and "cut short" in box.reset_reason
    )
    box.close()
    assert "cut short" in (Outbox(card / "outbox.db").reset_reason or ""), (
        "still reported after a restart"
    )
