"""What the outbox writes to the SD card per poll round: one transaction for a round's readings and
the previous round's deliveries, never one per kind or per confirmation; and what a cut loses."""

from __future__ import annotations

import errno
import sqlite3
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from receiver_helpers import readings

from appliance.committer import Committer, Counters, Incoming
from appliance.lanes import PollLanes
from appliance.outbox import Outbox, OutboxFull, cannot_write
from appliance.push.format import Parsed


def commits(path: Path) -> int:
    """Transactions in the write-ahead log since it was last restarted (commit frames)."""
    data = Path(f"{path}-wal").read_bytes()
    if len(data) < 32:
        return 0
    page_size = struct.unpack(">I", data[8:12])[0]
    salt = data[16:24]
    count, at = 0, 32
    while at + 24 <= len(data):
        header = data[at : at + 24]
        if header[8:16] != salt:  # frames of an earlier generation of the log
            break
        count += struct.unpack(">I", header[4:8])[0] != 0
        at += 24 + page_size
    return count


def test_a_sensors_polls_due_together_are_stored_in_one_transaction(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    before = commits(box.path)
    with box.together():
        box.put(readings(2), cursors=[("cam-1", "region_counts", "2025-07-22T10:00:00Z")])
        box.put(readings(1, sensor="cam-1", start=5))
        assert box.take(10) == [], "nothing is stored before the block ends"
    assert commits(box.path) == before + 1
    assert len(box.take(10)) == 3 and box.cursor("cam-1", "region_counts") is not None


def test_deliveries_ride_with_the_next_rounds_transaction(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    box.hold_deliveries(60)
    box.put(readings(3, final=False))
    before = commits(box.path)
    assert box.delivered(box.take(10)) == 3
    assert commits(box.path) == before, "the confirmation alone writes nothing"
    assert box.take(10) == [] and box.stats().pending == 0  # yet it counts as delivered
    box.put(readings(3, people=9, final=False))  # the next round: the camera's counts grew
    assert commits(box.path) == before + 1
    assert [p.revision for p in box.take(10)] == [2, 2, 2]  # queued again, not coalesced
    box.close()
    assert Outbox(tmp_path / "o.db").stats().delivered_kept == 0  # every row was requeued


def test_held_deliveries_are_written_on_close_and_once_held_long_enough(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    box.hold_deliveries(60)
    box.put(readings(2))
    box.delivered(box.take(10))
    box.close()
    assert Outbox(tmp_path / "o.db").stats().pending == 0
    soon = Outbox(tmp_path / "soon.db")
    soon.hold_deliveries(0.0)  # no poll coming (a relay-only bridge): written at once
    soon.put(readings(2))
    before = commits(soon.path)
    soon.delivered(soon.take(10))
    assert commits(soon.path) == before + 1


KILLED = """
import os, sys
sys.path[:0] = [{tests!r}]
from receiver_helpers import readings
from appliance.outbox import Outbox
box = Outbox({path!r})
box.hold_deliveries(60)
box.put(readings(4))
box.delivered(box.take(10))
os._exit(0)  # as a power cut: nothing more is written
"""


def test_a_cut_loses_held_deliveries_never_a_reading(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    script = KILLED.format(tests=str(Path(__file__).parent), path=str(path))
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    again = Outbox(path).take(10)
    # Sent again with the same ids and revisions: the cloud counts each once.
    assert [(p.id, p.revision) for p in again] == [(r.id, 1) for r in readings(4)]


def test_the_kinds_a_tick_submits_run_as_one_batch() -> None:
    batches: list[list[str]] = []
    ran = threading.Event()
    lanes = PollLanes(
        ["cam-1"],
        lambda sensor, kind: None,
        lambda sensor, kinds: _noting(batches, kinds, ran),
    )
    with lanes.submitting():
        for kind in ("line_counts", "region_counts", "live_counts"):
            lanes.submit("cam-1", kind)
    assert ran.wait(5) and lanes.wait_idle(5)
    assert batches == [["line_counts", "region_counts", "live_counts"]]
    lanes.close(1, lambda: None)


class _noting:
    def __init__(self, batches: list[list[str]], kinds: list[str], ran: threading.Event) -> None:
        self.batches, self.kinds, self.ran = batches, kinds, ran

    def __enter__(self) -> None:
        self.batches.append(self.kinds)

    def __exit__(self, *exc: object) -> None:
        self.ran.set()


# ---------------------------------------------------------------- one batcher, one verdict (issue 20)


def test_the_collectors_polls_and_the_relays_messages_share_one_transaction(
    tmp_path: Path,
) -> None:
    """Both writers go through the outbox's one batcher: gathered together, one commit."""
    box = Outbox(tmp_path / "o.db")
    box.put(readings(1))  # the log exists, so commit frames can be counted from here
    before = commits(box.path)
    committer = Committer(box, Counters())
    box.group_with(lambda: 4, 10.0)  # a poll and three messages are expected together
    polled = threading.Thread(target=box.put, args=(readings(2, start=1),))
    polled.start()
    answers: list[str | None] = []
    messages = [
        Incoming(Parsed(records=readings(1, start=10 + i)), lambda _r, e: answers.append(e))
        for i in range(3)
    ]
    assert committer.commit(messages) == []
    polled.join(10)
    assert answers == [None, None, None], "each message answered after its commit"
    assert box.stats().pending == 6
    assert commits(box.path) == before + 1, "one transaction, one fsync, for both writers"
    box.close()


def test_an_outbox_that_cannot_be_written_stops_both_writers_alike(tmp_path: Path) -> None:
    """The same verdict for the collector (its put raises, its cursors stay) and the relay (its
    messages wait, unacknowledged), the same reason for both, and both go on once it passes."""
    box = Outbox(tmp_path / "o.db")
    committer = Committer(box, Counters())
    answers: list[str | None] = []
    batch = [Incoming(Parsed(records=readings(1)), lambda _r, e: answers.append(e))]
    holder = sqlite3.connect(tmp_path / "o.db", timeout=0)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the file...
    box._db.execute("PRAGMA busy_timeout = 50")  # ...longer than the outbox waits
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            box.put(readings(1, start=5), cursors=[("cam-1", "line_counts", "x")])
        assert committer.commit(batch) == batch and answers == []
        assert box.write_error and "locked" in box.write_error
        assert committer.error == box.write_error
    finally:
        holder.rollback()
        holder.close()
    assert box.cursor("cam-1", "line_counts") is None, "the poll's cursor did not move"
    assert committer.commit(batch) == [] and answers == [None]
    assert box.put(readings(1, start=5)).added == 1
    assert box.write_error is None and committer.error is None
    box.close()


@pytest.mark.parametrize(
    ("exc", "waits"),
    [
        (sqlite3.OperationalError("database is locked"), True),
        (sqlite3.OperationalError("disk I/O error"), True),
        (OutboxFull("disk full"), True),
        (OSError(errno.ENOSPC, "No space left on device"), True),
        (sqlite3.DatabaseError("database disk image is malformed"), True),
        (sqlite3.IntegrityError("UNIQUE constraint failed"), False),
        (UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"), False),
        (ValueError("not a reading"), False),
    ],
)
def test_one_definition_of_an_outbox_that_cannot_be_written(exc: BaseException, waits: bool):
    """Disk full, OperationalError and damage make every writer wait; one caller's bad data
    fails only that caller (the relay dead-letters it, the collector's poll reports it)."""
    assert cannot_write(exc) is waits
