"""The Outbox: opens the file and gives each room its share of it.

One object per process, shared by its threads: it opens (and if need be
migrates or moves aside) the file (schema.py, damage.py), then hands the open
connection to the rooms: the write path (writes.py, batcher.py, revisions.py),
delivery (delivery.py), dead letters (dead_letters.py), first-seen memory
(first_seen.py), retention (retention.py) and stats (stats.py). Its methods
(and ``first_seen``) are the outbox's whole public face.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..records import Record
from .batcher import Batcher
from .damage import OutboxDamage, OutboxFull, is_corruption, move_aside, torn_wal
from .dead_letters import DeadLetters
from .delivery import Delivery
from .first_seen import FirstSeenMemory
from .retention import Retention
from .rows import DeadEntry, OutboxStats, Pending, PutResult, Write
from .schema import open_readonly, open_writable
from .stats import stats
from .store import Store, bump

if TYPE_CHECKING:
    from ..config import Config

log = logging.getLogger("sensor-bridge.outbox")


class Outbox:
    """The durable store-and-forward queue; safe to share between threads and processes.

    ``readonly=True`` (status, ``outbox list``, doctor) opens the file read-only and
    never moves or changes it; a damaged or missing file reads as an empty outbox
    with :attr:`damage` saying why.
    """

    def __init__(
        self,
        path: str | Path,
        max_mb: float = 256,
        min_free_disk_mb: float = 200,
        readonly: bool = False,
    ) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self.damage: str | None = None
        self.notes = OutboxDamage(self.path)
        if readonly:
            db, self.damage = open_readonly(self.path)
        else:
            db = self._open()
        self._store = Store(self.path, db, readonly)
        # group_with() (the collector calls it) gathers concurrent puts into one commit.
        self._batcher = Batcher(self._store)
        self._local = threading.local()  # together(): this thread's puts, held for one commit
        self._dead = DeadLetters(self._store)
        self._delivery = Delivery(self._store)
        self.first_seen = FirstSeenMemory(self._store)
        self._retention = Retention(self._store, self.first_seen, max_mb, min_free_disk_mb)

    def _open(self) -> sqlite3.Connection:
        """The file brought up to date; a corrupt one moved aside and started afresh."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        torn = torn_wal(self.path)
        try:
            db = open_writable(self.path)
        except sqlite3.DatabaseError as exc:
            if not is_corruption(exc):
                raise  # locked, busy, I/O: the file is fine, let the service retry
            move_aside(self.path, str(exc), self.notes)
            db = open_writable(self.path)
        if torn:
            reason = f"outbox {self.path}: {torn}"
            log.error("%s", reason)
            self.notes.add("torn-wal", reason)
        return db

    @classmethod
    def of(cls, config: Config, readonly: bool = False) -> Outbox:
        """The outbox ``config`` names, with its limits."""
        return cls(
            config.outbox_path,
            config.outbox.max_mb,
            config.outbox.min_free_disk_mb,
            readonly=readonly,
        )

    @property
    def _db(self) -> sqlite3.Connection:
        return self._store.db

    @property
    def reset_reason(self) -> str | None:
        """The unacknowledged damage or reset of this outbox, in one line; None when there is none."""
        return self.notes.summary()

    def close(self) -> None:
        store = self._store
        with store.lock:
            if store.held.rows and not self.readonly:
                try:
                    store.write_held()
                except sqlite3.Error as exc:  # they are sent again, and counted once by the cloud
                    log.warning("outbox: cannot write the last deliveries (%s)", exc)
            store.db.close()

    # ------------------------------------------------------------ writing

    def group_with(self, expected: Callable[[], int], window_s: float) -> None:
        """Gather puts into one commit for up to ``window_s`` while ``expected()`` callers may
        still come (the collector: the sensors in a poll)."""
        self._batcher.expected, self._batcher.window_s = expected, window_s

    def hold_deliveries(self, seconds: float) -> None:
        """Write the cloud's confirmations with the next transaction (a poll round's) instead of
        one of their own, holding them ``seconds`` at most (the collector: its shortest interval)."""
        self._store.held.hold_s = seconds

    def put(
        self,
        records: Iterable[Record],
        cursors: Iterable[tuple[str, str, str]] = (),
        dead: Iterable[DeadEntry] = (),
    ) -> PutResult:
        """Store ``records``, move ``cursors`` (sensor_id, kind, position) and keep ``dead``
        entries, all in one transaction: either everything is on disk or nothing is.

        Every record passes the door first (records.refusal): one the cloud would refuse is
        kept as a dead letter with the reason instead, so no source can queue a poison reading.

        Puts of several threads are committed together (batcher.py); each caller returns only
        once its own records and cursors are on disk. Inside :meth:`together` it returns at
        once (an empty PutResult): the block's end stores it."""
        held: Write | None = getattr(self._local, "held", None)
        if held is not None:
            held.records += records
            held.cursors += cursors
            held.dead += dead
            return PutResult()
        return self._batcher.put(Write(list(records), list(cursors), list(dead)))

    def put_each(self, writes: list[Write]) -> None:
        """Several puts (the relay: one per message) in one transaction where they can be;
        each then holds its result or its error (batcher.py says which error fails which)."""
        self._batcher.put_each(writes)

    @property
    def write_error(self) -> str | None:
        """Why the outbox cannot be written right now (disk full, I/O error, locked too long,
        damaged); None once a write succeeded again."""
        return self._store.write_error

    @property
    def write_error_since(self) -> float | None:
        """Since when (time.monotonic) :attr:`write_error` has held."""
        return self._store.write_error_since

    @contextmanager
    def together(self) -> Iterator[Write]:
        """This thread's puts inside the block are stored in one transaction when it ends (what
        it yields is what they hold); an error storing them is raised there. A block that raises
        stores nothing: its cursors did not move, so its readings are read again."""
        held = Write([], [], [])
        self._local.held = held
        try:
            yield held
        finally:
            self._local.held = None
        if held.records or held.cursors or held.dead:
            self._batcher.put(held)

    def cursor(self, sensor_id: str, kind: str) -> str | None:
        """Where ``sensor_id``'s ``kind`` left off (the start of its last final period)."""
        with self._store.lock:
            row = self._store.db.execute(
                "SELECT position FROM cursors WHERE sensor_id = ? AND kind = ?", (sensor_id, kind)
            ).fetchone()
        return row[0] if row else None

    def set_counter(self, name: str, value: int) -> None:
        with self._store.transaction() as db:
            db.execute(
                "INSERT INTO counters (name, value) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (name, value),
            )

    # ------------------------------------------------------------ a full disk

    @property
    def disk_full(self) -> bool:
        """The last write found no room on the disk (and none has succeeded since)."""
        return self._store.full_since is not None

    def count_lost(self, readings: int) -> None:
        """``readings`` a caller could not store and cannot get again (a live count):
        they join ``dropped`` with the next write that succeeds."""
        with self._store.lock:
            self._store.lost += readings

    def check_room(self) -> bool:
        """Try one small write: True when the disk has room (again); flushes the lost count."""
        try:
            with self._store.transaction() as db:
                bump(db, "room_checks", 1)
        except OutboxFull:
            return False
        return True

    # ------------------------------------------------------------ delivering

    def take(self, limit: int) -> list[Pending]:
        """The ``limit`` oldest pending records, oldest first (they stay pending).

        A stored record that cannot be read (a damaged byte on the card) is moved to
        the dead-letter table with its raw bytes and why, so it never stops delivery.
        """
        return self._delivery.take(limit)

    def newest_pending(self, avoid_sensors: set[str], avoid_ids: set[str]) -> Pending | None:
        """A recent pending record for the uplink's probe (delivery.py)."""
        return self._delivery.newest_pending(avoid_sensors, avoid_ids)

    def delivered(self, sent: Iterable[Pending], now: float | None = None) -> int:
        """The cloud has these; a record that got a newer revision meanwhile stays pending.

        Written with the next transaction, or on their own once held long enough
        (:meth:`hold_deliveries`); meanwhile ``take`` and ``stats`` treat them as delivered."""
        return self._delivery.delivered(sent, now)

    def reject(self, rejected: Iterable[tuple[Pending, str]]) -> int:
        """The cloud refused these records for good: keep them in the dead-letter table."""
        return self._delivery.reject(rejected)

    def pending_list(self, limit: int = 50) -> list[dict[str, Any]]:
        """The oldest pending records, for ``sensor-bridge outbox list``."""
        return self._delivery.pending_list(limit)

    def events_since(self, name: str, since: float, limit: int = 5000) -> list[dict[str, Any]]:
        """The newest ``event`` readings named ``name`` queued since ``since`` (``status``)."""
        return self._delivery.events_since(name, since, limit)

    # ------------------------------------------------------------ the dead-letter table

    def add_dead(self, entries: Iterable[DeadEntry]) -> None:
        self._dead.add(entries)

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        return self._dead.newest(limit)

    def retry_dead(self) -> int:
        """Queue every dead-lettered record again (raw messages cannot be retried)."""
        return self._dead.retry()

    def purge_dead(self) -> int:
        """Forget everything in the dead-letter table."""
        return self._dead.purge()

    # ------------------------------------------------------------ limits and numbers

    def enforce_limits(self, now: float | None = None) -> int:
        """Forget old delivery memory and junk beyond its caps; shed when over a limit
        (retention.py). Returns how many pending records were dropped."""
        return self._retention.enforce(now)

    def counter(self, name: str) -> int:
        return self._store.counter(name)

    def stats(self, now: float | None = None) -> OutboxStats:
        return stats(self._store, now)
