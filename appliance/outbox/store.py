"""The open outbox file and its one kind of write transaction, shared by every room.

Every change to the outbox goes through :meth:`Store.transaction`: one
``BEGIN IMMEDIATE`` ... ``COMMIT`` under this process's lock, which also writes
the deliveries held for it (:class:`HeldMarks`) and the readings counted as
lost while the disk was full. ``synchronous=FULL`` makes each commit one fsync
in WAL mode, which the callers amortise by batching (batcher.py).

A full disk is a state, not a crash: a transaction that finds no room raises
:class:`OutboxFull`, and the outbox says so (``disk_full``) until one succeeds.
Any failure that means the file cannot be written (damage.cannot_write) is
kept as ``write_error`` until a transaction succeeds again.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .damage import OutboxFull, cannot_write, is_disk_full
from .rows import Pending

log = logging.getLogger("sensor-bridge.outbox")

MAX_HELD_MARKS = 5000  # deliveries held for the next transaction; beyond, they are written at once


class HeldMarks:
    """Deliveries the cloud confirmed, not written yet: they ride along with the next write
    transaction (the next poll round's, usually) instead of one of their own, so the pages they
    change are written once. Held at most ``hold_s`` (0, the default: written at once)."""

    def __init__(self) -> None:
        self.rows: dict[int, tuple[str, int, float]] = {}  # rowid -> (id, revision, delivered_at)
        self.since = 0.0
        self.hold_s = 0.0

    def add(self, items: Iterable[Pending], now: float) -> None:
        if not self.rows:
            self.since = time.monotonic()
        for item in items:
            self.rows[item.row] = (item.id, item.revision, now)

    def due(self) -> bool:
        """Time (or room) to write them in a transaction of their own."""
        return bool(self.rows) and (
            time.monotonic() - self.since >= self.hold_s or len(self.rows) >= MAX_HELD_MARKS
        )

    def hides(self, item: Pending) -> bool:
        """``item`` is delivered, only not written so yet."""
        held = self.rows.get(item.row)
        return held is not None and held[:2] == (item.id, item.revision)

    @staticmethod
    def write(db: sqlite3.Connection, rows: dict[int, tuple[str, int, float]]) -> None:
        for row, (rid, revision, at) in rows.items():
            db.execute(
                "UPDATE readings SET state = 'delivered', delivered_at = ?"
                " WHERE rowid = ? AND id = ? AND revision = ? AND state = 'pending'",
                (at, row, rid, revision),
            )


class Store:
    """The open outbox file shared by every room: its connection, its lock, its transactions."""

    def __init__(self, path: Path, db: sqlite3.Connection, readonly: bool) -> None:
        self.path = path
        self.db = db
        self.readonly = readonly
        self.lock = threading.RLock()
        self.held = HeldMarks()
        self.full_since: float | None = None
        self.lost = 0  # readings callers could not store, not yet in the dropped counter
        # Why the outbox cannot be written (damage.cannot_write), since when (monotonic); None
        # once a write succeeds again. Every writer of this process sees the same state.
        self.write_error: str | None = None
        self.write_error_since: float | None = None

    @contextmanager
    def transaction(self, marks: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction; the lock keeps this process's threads in line. It also writes
        the held deliveries, unless ``marks`` is False (housekeeping that could wait).

        No room on the disk raises :class:`OutboxFull` (nothing of the transaction is
        kept) and sets ``full_since`` until a later write succeeds; that write also
        adds the readings counted as lost to ``dropped``.
        """
        if self.readonly:
            raise sqlite3.OperationalError(f"outbox {self.path} is open read-only")
        held: dict[int, tuple[str, int, float]] = {}
        with self.lock:
            try:
                self.db.execute("BEGIN IMMEDIATE")
                try:
                    if marks:
                        held = dict(self.held.rows)
                        self.held.write(self.db, held)
                    yield self.db
                    lost = self.lost
                    if lost:
                        bump(self.db, "dropped", lost)
                    self.db.execute("COMMIT")
                except BaseException:
                    if self.db.in_transaction:
                        self.db.execute("ROLLBACK")
                    raise
            except Exception as exc:
                if not cannot_write(exc):
                    raise  # one caller's data, not the file: the outbox itself is fine
                self._cannot_write(exc)
                if not is_disk_full(exc):
                    raise
                if self.full_since is None:
                    self.full_since = time.time()
                    log.error("disk full: the outbox %s cannot store anything (%s)", self.path, exc)
                raise OutboxFull(f"disk full: {exc}") from exc
            self.lost -= lost
            for row in held:
                self.held.rows.pop(row, None)
            if self.full_since is not None:
                log.info("disk has room again: the outbox stores readings")
                self.full_since = None
            if self.write_error is not None:
                log.info("outbox %s writable again", self.path)
                self.write_error = self.write_error_since = None
            if lost:
                log.error(
                    "%d reading(s) could not be stored while the disk was full; counted as dropped",
                    lost,
                )

    def _cannot_write(self, exc: BaseException) -> None:
        if self.write_error is None:
            log.error("the outbox %s cannot be written: %s", self.path, exc)
            self.write_error_since = time.monotonic()
        self.write_error = f"{type(exc).__name__}: {exc}"

    def write_held(self) -> None:
        """The held deliveries in a transaction of their own (``transaction`` writes them)."""
        with self.transaction():
            pass

    def counter(self, name: str) -> int:
        with self.lock:
            row = self.db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return row[0] if row else 0

    def live_bytes(self) -> int:
        page_size = self.db.execute("PRAGMA page_size").fetchone()[0]
        pages = self.db.execute("PRAGMA page_count").fetchone()[0]
        free = self.db.execute("PRAGMA freelist_count").fetchone()[0]
        return (pages - free) * page_size


def bump(db: sqlite3.Connection, name: str, by: int) -> None:
    db.execute(
        "INSERT INTO counters (name, value) VALUES (?, ?)"
        " ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
        (name, by),
    )
