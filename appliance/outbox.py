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
transaction, which the callers amortise by batching. NORMAL would survive
SIGKILL but could lose the last commits on a power cut; a Pi in a back office
loses power, and by then the relay has already acknowledged those MQTT
messages and the poller has moved its cursor past those rows, so they would be
gone for good. What a power cut can lose, per write path:

* ``put`` from the collector's polls: a sensor's polls that fall due together
  are stored in one transaction when the last of them ends
  (:meth:`Outbox.together`), and the batches of several sensors gathered by
  ``group_with()`` share it (:class:`_GroupCommit`). A cut loses at most the
  readings of batches not yet committed, each with its cursor, so the next
  poll reads them again (a live count of that moment is lost, as one taken
  just before any cut); never a reading whose cursor moved.
* ``put`` from the relay (appliance/committer.py): a batch of messages is one
  transaction and is acknowledged after it. A cut loses only unacknowledged
  messages, which the broker or the device sends again.
* ``delivered``: the cloud's confirmations are held in memory and written with
  the collector's next write transaction (the next poll round's), or in one of
  their own once held a poll interval (``hold_deliveries``; 90 s at most, and
  at once where nothing polls). A cut or a kill can lose the marking, never a
  reading: those readings are sent again with the same ids and revisions,
  which the cloud counts once (docs/ingest-contract.md). Until written, other
  processes (``status``, ``outbox list``) still count them as pending.
* the schema migration of an older release's file: one transaction on first
  open; a cut leaves the file as it was, migrated at the next start.
* shedding, dead letters, counters: one transaction each; a cut loses the
  change as a whole (a shed is done again, a counter misses that step).

Shedding: beyond ``max_mb`` of live data, or with less than
``min_free_disk_mb`` free on its disk (when the outbox itself is big enough to
make up the shortfall), the outbox forgets, in this order: the oldest dead
letters and first-seen cursors (junk), delivered rows, and only then the
oldest pending readings. Every forgotten thing is counted; a dropped reading
in the ``dropped`` counter that status, heartbeat and /health report. Dead
letters and first-seen cursors also have caps of their own, so junk can never
crowd out readings.

Delivery memory (delivered rows, so a re-read of a camera's history is known
as already delivered) is kept by the readings' own periods, never by the wall
clock alone, and not forgotten at all while the clock looks wrong.

A full disk is a state, not a crash: a write that finds no room raises
:class:`OutboxFull` and the outbox says so (``disk_full``) until a write
succeeds again; readings a caller could not keep are counted as dropped once
the counter can be written.

Damage: a corrupt file is moved aside (``outbox.db.corrupt-<time>``) and a
fresh outbox started, so a damaged SD card sector can never put the service
into a crash loop; a write-ahead log cut short is reported. Both stay visible
(``damage.json`` beside the outbox, read by every service's status) until a
person runs ``sensor-bridge outbox ack-corrupt``. A stored record that cannot
be read is moved to the dead-letter table and delivery goes on. Read-only
tools open the file with ``readonly=True`` and never change it.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import sqlite3
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .outbox_damage import OutboxDamage, epoch_text
from .records import Record, parse_utc, refusal, utc_text

if TYPE_CHECKING:
    from .config import Config

log = logging.getLogger("sensor-bridge.outbox")

# Delivered rows are kept until their period is this much older than the newest period of
# the same sensor and kind, so a re-read of the camera's history (about 7 days) is
# recognised as "already delivered" and not sent again.
KEEP_DELIVERED_S = 8 * 24 * 3600
PREVIEW_CHARS = 1000
# Data stamped further ahead of the bridge's clock than this does not count as "newest
# period"; and a clock this far behind the outbox's newest write looks wrong.
CLOCK_SLACK_S = 24 * 3600
# Junk has caps of its own, whatever max_mb says.
DEAD_LETTER_SHARE = 0.1  # of max_mb
MAX_DEAD_LETTERS = 10_000
FIRST_SEEN = "first-seen:"  # the relay's cursor kind prefix (sources.milesight_push)
MAX_FIRST_SEEN = 50_000
KEEP_FIRST_SEEN_S = 8 * 24 * 3600  # MQTT redelivery and re-publishes come within hours, not weeks
PREVIEW_BYTES = 1000
MAX_HELD_MARKS = 5000  # deliveries held for the next transaction; beyond, they are written at once
TAKE_ROUNDS = 20  # bounded: each round moves at least one unreadable record out of the way
COMPACT = (",", ":")  # a stored body without JSON's optional spaces: more readings per page
DIGEST_CHARS = 16

# A reading's state is 'pending', 'delivered' or 'dead', written as literals in the SQL: a
# partial index (readings_pending) only serves a query that names its state the same way.

# Bumped when SCHEMA changes so that older code cannot read the file: `sensor-bridge update`
# refuses to go back to a release of a lower number (image/release.py puts it in the manifest).
# The file says which schema it holds in PRAGMA user_version (0: schema 1, before it was kept).
SCHEMA_VERSION = 2
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
    row: int = field(default=0, compare=False, repr=False)  # where it is kept (its rowid)


@dataclass(frozen=True)
class OutboxStats:
    pending: int
    oldest_pending_age_s: float
    dead_letter: int
    dropped: int
    delivered_kept: int
    size_mb: float
    junk_shed: int = 0  # dead letters and first-seen cursors forgotten to respect the caps
    disk_full: bool = False

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


class OutboxFull(sqlite3.OperationalError):
    """The disk has no room for this write; nothing of it was stored."""


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


def _is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return exc.errno == errno.ENOSPC
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF == sqlite3.SQLITE_FULL:
        return True
    return "disk is full" in str(exc)


def _digest(wire: dict[str, Any]) -> str:
    """What makes two versions of a record the same reading."""
    meaningful = {k: wire[k] for k in ("period_end", "final", "values")}
    import hashlib  # here, not at the top: OpenSSL's libcrypto costs the watchdog 3.7 MB

    # 64 bits tell one record's versions apart; the full 256 would make every row 48 bytes wider.
    digest = hashlib.sha256(json.dumps(meaningful, sort_keys=True).encode()).hexdigest()
    return digest[:DIGEST_CHARS]


def _shift(stamp: str, seconds: float) -> str:
    return utc_text(parse_utc(stamp) + timedelta(seconds=seconds))


def torn_wal(path: str | Path) -> str | None:
    """Why ``path``'s write-ahead log was cut short, or None when it is whole (or absent).

    A WAL is a 32-byte header and frames of 24 bytes plus one page; anything
    else means its tail was lost (a power cut on a card that reorders writes, a
    copy cut short). SQLite would silently ignore the torn tail.
    """
    wal = Path(f"{path}-wal")
    try:
        size = wal.stat().st_size
        with open(wal, "rb") as f:
            header = f.read(32)
    except OSError:
        return None
    if size == 0:
        return None
    if len(header) < 32:
        return f"its write-ahead log {wal.name} is only {size} bytes, less than a header"
    page_size = struct.unpack(">I", header[8:12])[0]
    frame = 24 + page_size
    # A writer killed between a frame's header and its page (two writes) leaves exactly a
    # header behind: that transaction never committed, so nothing acknowledged is missing.
    if (size - 32) % frame in (0, 24):
        return None
    time.sleep(0.2)  # a writer in another process may be appending this very moment
    try:
        if wal.stat().st_size != size:
            return None
    except OSError:
        return None
    return (
        f"its write-ahead log {wal.name} was cut short ({size} bytes is not a whole number of"
        f" {frame}-byte frames): the last writes before the cut may be lost"
    )


def _run_script(db: sqlite3.Connection, script: str) -> None:
    """Each statement of ``script`` inside the open transaction (executescript would commit it)."""
    for statement in script.split(";\n"):
        if statement.strip():
            db.execute(statement)


def _decode(rid: str, raw: bytes) -> dict[str, Any]:
    """A stored record's body, or ValueError saying why it cannot be read."""
    body = json.loads(raw.decode())
    if not isinstance(body, dict) or body.get("id") != rid:
        raise ValueError("the stored body is not this record")
    return body


def _preview(raw: bytes) -> str:
    return raw[:PREVIEW_BYTES].decode("utf-8", "backslashreplace")


@dataclass
class _Put:
    """One caller's put, waiting in the commit queue: what to store, then how it went."""

    records: list[Record]
    cursors: list[tuple[str, str, str]]
    dead: list[DeadEntry]
    result: PutResult | None = None
    refused: list[DeadEntry] = field(default_factory=list)
    error: BaseException | None = None
    finished: bool = False

    def outcome(self) -> PutResult:
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


class _GroupCommit:
    """Puts of several threads (the collector's poll lanes) in one transaction, one fsync.

    The first caller leads: it waits up to ``window_s`` for others to join, but only while
    ``expected()`` (how many callers may put now: the sensors in a poll) says more are coming,
    so a lone sensor's poll commits at once; it commits everything queued by then, and wakes
    them; callers arriving meanwhile wait for the next leader, who is one of them. Nobody
    returns before the transaction holding its put committed, so a put is exactly as durable
    as before; it may take ``window_s`` longer.
    """

    def __init__(self, commit: Any, window_s: float = 0.0) -> None:
        self.commit = commit
        self.window_s = window_s
        self.expected: Callable[[], int] = lambda: 0
        self.cond = threading.Condition()
        self.queue: list[_Put] = []
        self.leading = False

    def put(self, mine: _Put) -> PutResult:
        with self.cond:
            self.queue.append(mine)
            while self.leading and not mine.finished:
                self.cond.wait()
            if mine.finished:
                return mine.outcome()
            self.leading = True
        batch: list[_Put] = []
        try:
            self._gather()
            with self.cond:
                batch, self.queue = self.queue, []
            self.commit(batch)
        except BaseException as exc:  # even an interrupt must not leave the others waiting
            for item in batch:
                item.error = item.error or exc
            with self.cond:  # interrupted before taking the queue: its own put is not stored later
                self.queue = [item for item in self.queue if item is not mine]
            raise
        finally:
            with self.cond:
                for item in batch:
                    item.finished = True
                self.leading = False
                self.cond.notify_all()
        return mine.outcome()

    def _gather(self) -> None:
        """Wait (at most ``window_s``) while callers that are expected have not queued yet."""
        deadline = time.monotonic() + self.window_s
        while time.monotonic() < deadline:
            with self.cond:
                if len(self.queue) >= self.expected():
                    return
            time.sleep(0.01)


class _HeldMarks:
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
        self.max_mb = max_mb
        self.min_free_disk_mb = min_free_disk_mb
        self.readonly = readonly
        self.damage: str | None = None
        self.notes = OutboxDamage(self.path)
        self.full_since: float | None = None
        self._lost = 0  # readings callers could not store, not yet in the dropped counter
        self._clock_warned = False
        self._lock = threading.RLock()
        # group_with() (the collector calls it) gathers concurrent puts into one commit.
        self._group = _GroupCommit(self._commit_group)
        self._local = threading.local()  # together(): this thread's puts, held for one commit
        self._held = _HeldMarks()
        if readonly:
            self._db = self._open_readonly()
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        torn = torn_wal(self.path)
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as exc:
            if not _is_corruption(exc):
                raise  # locked, busy, I/O: the file is fine, let the service retry
            self._move_aside(str(exc))
            self._db = self._open()
        if torn:
            reason = f"outbox {self.path}: {torn}"
            log.error("%s", reason)
            self.notes.add("torn-wal", reason)

    @classmethod
    def of(cls, config: Config, readonly: bool = False) -> Outbox:
        """The outbox ``config`` names, with its limits."""
        return cls(
            config.outbox_path,
            config.outbox.max_mb,
            config.outbox.min_free_disk_mb,
            readonly=readonly,
        )

    def group_with(self, expected: Callable[[], int], window_s: float) -> None:
        """Gather puts into one commit for up to ``window_s`` while ``expected()`` callers may
        still come (the collector: the sensors in a poll)."""
        self._group.expected, self._group.window_s = expected, window_s

    def hold_deliveries(self, seconds: float) -> None:
        """Write the cloud's confirmations with the next transaction (a poll round's) instead of
        one of their own, holding them ``seconds`` at most (the collector: its shortest interval)."""
        self._held.hold_s = seconds

    def _write_held(self) -> None:
        """The held deliveries in a transaction of their own (``_write`` writes them)."""
        with self._write():
            pass

    @property
    def reset_reason(self) -> str | None:
        """The unacknowledged damage or reset of this outbox, in one line; None when there is none."""
        return self.notes.summary()

    # ------------------------------------------------------------ opening

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA busy_timeout = 30000")
            # Only takes effect on a new file: lets shedding give space back without a VACUUM.
            db.execute("PRAGMA auto_vacuum = INCREMENTAL")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")
            verdict = db.execute("PRAGMA quick_check").fetchone()[0]
            if verdict != "ok":
                raise _Corrupt(f"quick_check: {verdict}")
            self._bring_up_to_date(db)
        except BaseException:
            db.close()
            raise
        return db

    def _bring_up_to_date(self, db: sqlite3.Connection) -> None:
        """A new file gets the tables; one an older release wrote is migrated in place, in one
        transaction (a cut or a full disk leaves it as it was, to be migrated at the next start)."""
        db.execute("BEGIN IMMEDIATE")  # the relay may open the same file at the same moment
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            older = (
                version < SCHEMA_VERSION
                and db.execute(
                    "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'readings'"
                ).fetchone()
            )
            if older:
                count = db.execute("SELECT COUNT(*) FROM readings").fetchone()[0]
                log.warning(
                    "outbox %s: moving its %d reading(s) to schema %d (once)",
                    self.path,
                    count,
                    SCHEMA_VERSION,
                )
                _run_script(db, MIGRATE_FROM_1)
            _run_script(db, SCHEMA)
            if version < SCHEMA_VERSION:
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            if _is_disk_full(exc):
                raise OutboxFull(
                    f"no room on the disk to bring the outbox {self.path} to schema"
                    f" {SCHEMA_VERSION} (it needs about its own size free once): {exc}"
                ) from exc
            raise

    def _open_readonly(self) -> sqlite3.Connection:
        if self.path.exists():
            torn = torn_wal(self.path)
            try:
                db = sqlite3.connect(
                    f"file:{self.path}?mode=ro",
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
                self.damage = torn and f"outbox {self.path}: {torn}"
                return db
            except sqlite3.DatabaseError as exc:
                verb = "is damaged" if _is_corruption(exc) else "cannot be read"
                self.damage = f"outbox {self.path} {verb} ({exc}); the collector moves it aside when it starts"
        db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        db.executescript(SCHEMA)
        return db

    def _move_aside(self, why: str) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self.path) + suffix)
            if src.exists():
                os.replace(src, Path(str(aside) + suffix))
        reason = f"outbox {self.path} was corrupt ({why}); moved to {aside}, started empty"
        log.error("%s", reason)
        self.notes.add("corrupt", reason)

    def close(self) -> None:
        with self._lock:
            if self._held.rows and not self.readonly:
                try:
                    self._write_held()
                except sqlite3.Error as exc:  # they are sent again, and counted once by the cloud
                    log.warning("outbox: cannot write the last deliveries (%s)", exc)
            self._db.close()

    @contextmanager
    def _write(self, marks: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction; the lock keeps this process's threads in line. It also writes
        the held deliveries, unless ``marks`` is False (housekeeping that could wait).

        No room on the disk raises :class:`OutboxFull` (nothing of the transaction is
        kept) and sets :attr:`disk_full` until a later write succeeds; that write also
        adds the readings counted by :meth:`count_lost` to ``dropped``.
        """
        if self.readonly:
            raise sqlite3.OperationalError(f"outbox {self.path} is open read-only")
        held: dict[int, tuple[str, int, float]] = {}
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    if marks:
                        held = dict(self._held.rows)
                        self._held.write(self._db, held)
                    yield self._db
                    lost = self._lost
                    if lost:
                        self._bump(self._db, "dropped", lost)
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
            except (sqlite3.OperationalError, OSError) as exc:
                if not _is_disk_full(exc):
                    raise
                if self.full_since is None:
                    self.full_since = time.time()
                    log.error("disk full: the outbox %s cannot store anything (%s)", self.path, exc)
                raise OutboxFull(f"disk full: {exc}") from exc
            self._lost -= lost
            for row in held:
                self._held.rows.pop(row, None)
            if self.full_since is not None:
                log.info("disk has room again: the outbox stores readings")
                self.full_since = None
            if lost:
                log.error(
                    "%d reading(s) could not be stored while the disk was full; counted as dropped",
                    lost,
                )

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
        kept as a dead letter with the reason instead, so no source can queue a poison reading.

        Puts of several threads are committed together (:class:`_GroupCommit`); each caller
        returns only once its own records and cursors are on disk. Inside :meth:`together` it
        returns at once (an empty PutResult): the block's end stores it."""
        held: _Put | None = getattr(self._local, "held", None)
        if held is not None:
            held.records += records
            held.cursors += cursors
            held.dead += dead
            return PutResult()
        return self._group.put(_Put(list(records), list(cursors), list(dead)))

    @contextmanager
    def together(self) -> Iterator[_Put]:
        """This thread's puts inside the block are stored in one transaction when it ends (what
        it yields is what they hold); an error storing them is raised there. A block that raises
        stores nothing: its cursors did not move, so its readings are read again."""
        held = _Put([], [], [])
        self._local.held = held
        try:
            yield held
        finally:
            self._local.held = None
        if held.records or held.cursors or held.dead:
            self._group.put(held)

    def _put_in(self, db: sqlite3.Connection, item: _Put, seq: int, now: float) -> int:
        """One caller's records, cursors and dead letters, inside the open transaction; returns the last seq."""
        outcomes: Counter[str] = Counter()
        refused: list[DeadEntry] = []
        for record in item.records:
            if (entry := _at_the_door(record, now)) is not None:
                refused.append(entry)
                continue
            outcome, seq = self._store(db, record, seq, now)
            outcomes[outcome] += 1
        self._move_cursors(db, item.cursors, now)
        self._insert_dead(db, [*item.dead, *refused], now)
        if outcomes["ignored_final"]:
            self._bump(db, "final_changes_ignored", outcomes["ignored_final"])
        item.refused = refused
        item.result = PutResult(
            outcomes["added"],
            outcomes["updated"],
            outcomes["unchanged"],
            outcomes["ignored_final"],
            len(refused),
        )
        return seq

    def _commit_group(self, batch: list[_Put]) -> None:
        """One transaction for every put in ``batch``; if it fails, each put alone, so that
        one caller's fault is never another's (a disk that cannot be written fails them all)."""
        now = time.time()
        try:
            with self._write() as db:
                # Both maxima come from the ends of a b-tree (the table, readings_pending): no scan.
                seq = db.execute(
                    "SELECT MAX(COALESCE((SELECT MAX(rowid) FROM readings), 0),"
                    " COALESCE((SELECT MAX(seq) FROM readings WHERE state = 'pending'), 0))"
                ).fetchone()[0]
                for item in batch:
                    seq = self._put_in(db, item, seq, now)
        except Exception as exc:
            if len(batch) == 1 or isinstance(exc, sqlite3.OperationalError | OSError):
                for item in batch:
                    item.error = exc
                return
            for item in batch:
                self._commit_group([item])
            return
        for item in batch:
            for entry in item.refused:
                log.warning("refused a reading (%s): %s", entry.origin, entry.reason)

    @staticmethod
    def _store(db: sqlite3.Connection, record: Record, seq: int, now: float) -> tuple[str, int]:
        """Queue one record that passed the door: (added | updated | unchanged | ignored_final, last seq).

        A new id is added at revision 1; a changed one gets the next revision (and a new place at
        the end of the queue if it had left it); the same values again, or a change to a period
        already final, change nothing."""
        wire = record.wire()
        digest = _digest(wire)
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
                    digest,
                    json.dumps(wire, separators=COMPACT),
                    now,
                ),
            )
            return "added", seq + 1
        revision, old_digest, was_final, state, old_seq, queued_at, rowid = row
        if old_digest == digest:
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
                digest,
                json.dumps(wire, separators=COMPACT),
                queued_at,
                rowid,
            ),
        )
        return "updated", seq

    @staticmethod
    def _move_cursors(
        db: sqlite3.Connection, cursors: Iterable[tuple[str, str, str]], now: float
    ) -> None:
        for sensor_id, kind, position in cursors:
            db.execute(
                "INSERT INTO cursors (sensor_id, kind, position, updated_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (sensor_id, kind) DO UPDATE SET position = excluded.position,"
                " updated_at = excluded.updated_at",
                (sensor_id, kind, position, now),
            )

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
                (
                    entry.record_id,
                    _storable(entry.origin),
                    _storable(entry.reason),
                    _storable(entry.preview),
                    now,
                ),
            )

    @staticmethod
    def _bump(db: sqlite3.Connection, name: str, by: int) -> None:
        db.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
            (name, by),
        )

    def set_counter(self, name: str, value: int) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO counters (name, value) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (name, value),
            )

    # ------------------------------------------------------------ a full disk

    @property
    def disk_full(self) -> bool:
        """The last write found no room on the disk (and none has succeeded since)."""
        return self.full_since is not None

    def count_lost(self, readings: int) -> None:
        """``readings`` a caller could not store and cannot get again (a live count):
        they join ``dropped`` with the next write that succeeds."""
        with self._lock:
            self._lost += readings

    def check_room(self) -> bool:
        """Try one small write: True when the disk has room (again); flushes the lost count."""
        try:
            with self._write() as db:
                self._bump(db, "room_checks", 1)
        except OutboxFull:
            return False
        return True

    # ------------------------------------------------------------ delivering

    def _read_pending(
        self, sql: str, args: tuple[Any, ...]
    ) -> tuple[list[Pending], list[tuple[str, int, bytes, str, int]]]:
        """Rows (id, revision, body bytes, rowid) -> readable records, and the unreadable ones
        (id, revision, body bytes, why, rowid)."""
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        good, bad = [], []
        for rid, revision, raw, row in rows:
            try:
                good.append(Pending(rid, revision, _decode(rid, bytes(raw)), row))
            except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
                why = f"stored record cannot be read ({exc})"
                bad.append((rid, revision, bytes(raw), why, row))
        return good, bad

    def take(self, limit: int) -> list[Pending]:
        """The ``limit`` oldest pending records, oldest first (they stay pending).

        A stored record that cannot be read (a damaged byte on the card) is moved to
        the dead-letter table with its raw bytes and why, so it never stops delivery.
        """
        if self._held.due() and not self.readonly:
            self._write_held()
        good: list[Pending] = []
        for _ in range(TAKE_ROUNDS):
            good, bad = self._read_pending(
                "SELECT id, revision, CAST(body AS BLOB), rowid FROM readings WHERE state = 'pending'"
                " ORDER BY seq LIMIT ?",
                (limit + len(self._held.rows),),
            )
            if not bad or self.readonly:
                break
            self._bury(bad)
        return [p for p in good if not self._held.hides(p)][:limit]

    def _bury(self, bad: list[tuple[str, int, bytes, str, int]]) -> None:
        now = time.time()
        with self._write() as db:
            for rid, revision, raw, reason, row in bad:
                db.execute(
                    "UPDATE readings SET state = 'dead'"
                    " WHERE rowid = ? AND id = ? AND revision = ? AND state = 'pending'",
                    (row, rid, revision),
                )
                self._insert_dead(db, [DeadEntry("outbox", reason, _preview(raw), rid)], now)
                log.error("outbox: reading %s %s; moved to the dead-letter table", rid[:12], reason)

    def newest_pending(self, avoid_sensors: set[str], avoid_ids: set[str]) -> Pending | None:
        """A recent pending record for the uplink's probe: preferably of a sensor not in
        ``avoid_sensors``, then preferably not in ``avoid_ids``."""
        good, _ = self._read_pending(
            "SELECT id, revision, CAST(body AS BLOB), rowid FROM readings WHERE state = 'pending'"
            " ORDER BY seq DESC LIMIT ?",
            (200 + len(self._held.rows),),
        )
        good = [p for p in good if not self._held.hides(p)]
        good.sort(key=lambda p: (p.body.get("sensor_id") in avoid_sensors, p.id in avoid_ids))
        return good[0] if good else None

    def delivered(self, sent: Iterable[Pending], now: float | None = None) -> int:
        """The cloud has these; a record that got a newer revision meanwhile stays pending.

        Written with the next transaction, or on their own once held long enough
        (:meth:`hold_deliveries`); meanwhile ``take`` and ``stats`` treat them as delivered."""
        now = time.time() if now is None else now
        with self._lock:
            done = [
                item
                for item in sent
                if not self._held.hides(item)
                and self._db.execute(
                    "SELECT 1 FROM readings WHERE rowid = ? AND id = ? AND revision = ?"
                    " AND state = 'pending'",
                    (item.row, item.id, item.revision),
                ).fetchone()
            ]
            self._held.add(done, now)
            if self._held.due():
                self._write_held()
        return len(done)

    def reject(self, rejected: Iterable[tuple[Pending, str]]) -> int:
        """The cloud refused these records for good: keep them in the dead-letter table."""
        rejected = list(rejected)
        if not rejected:  # no transaction: it would write the held deliveries before their time
            return 0
        now = time.time()
        moved = 0
        with self._write() as db:
            for item, reason in rejected:
                changed = db.execute(
                    "UPDATE readings SET state = 'dead'"
                    " WHERE rowid = ? AND id = ? AND revision = ? AND state = 'pending'",
                    (item.row, item.id, item.revision),
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
                "SELECT seq, record_id, origin, CAST(reason AS BLOB), CAST(preview AS BLOB), created_at"
                " FROM dead_letter ORDER BY seq DESC LIMIT ?",
                (limit,),
            ).fetchall()
        keys = ("seq", "record_id", "origin", "reason", "preview", "created_at")
        return [
            dict(
                zip(
                    keys,
                    (*row[:3], _preview(bytes(row[3])), _preview(bytes(row[4])), row[5]),
                    strict=True,
                )
            )
            for row in rows
        ]

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

    def _file_bytes(self) -> int:
        return sum(
            Path(f"{self.path}{s}").stat().st_size
            for s in ("", "-wal")
            if Path(f"{self.path}{s}").exists()
        )

    def enforce_limits(self, now: float | None = None) -> int:
        """Forget old delivery memory and junk beyond its caps; shed when over a limit.

        Returns how many pending records were dropped (also added to ``dropped``).
        A full disk is not an error here: what cannot be freed now is freed next time.
        """
        now = time.time() if now is None else now
        try:
            self._forget_old_deliveries(now)
            self._cap_junk(now)
            return self._shed()
        except OutboxFull:
            log.warning("outbox: the disk is full; shedding waits until there is room to write")
            return 0

    def _clock_looks_wrong(self, now: float) -> bool:
        """The clock is well behind the outbox's own newest write: it jumped back (or was ahead)."""
        with self._lock:
            newest = self._db.execute(
                "SELECT MAX(MAX(queued_at), COALESCE(MAX(delivered_at), 0)) FROM readings"
            ).fetchone()[0]
        wrong = newest is not None and now < newest - CLOCK_SLACK_S
        if wrong and not self._clock_warned:
            log.warning(
                "outbox: the clock reads %s, before the outbox's newest write (%s);"
                " delivery memory is kept until it is right",
                epoch_text(now),
                epoch_text(newest),
            )
        self._clock_warned = wrong
        return wrong

    def _forget_old_deliveries(self, now: float) -> None:
        """Delivered rows whose period is KEEP_DELIVERED_S older than their sensor's newest period.

        Periods come from the data, so a jump of the bridge's clock does not age them;
        periods stamped in the future of the clock (a camera's clock ahead) are ignored.
        """
        if self._clock_looks_wrong(now):
            return
        with self._write(marks=False) as db:
            db.execute(
                "WITH newest AS (SELECT sensor_id, kind, strftime('%Y-%m-%dT%H:%M:%SZ', MAX(period_start), ?)"
                " AS cutoff FROM readings WHERE period_start <= ? GROUP BY sensor_id, kind)"
                " DELETE FROM readings WHERE state = 'delivered' AND period_start < (SELECT cutoff FROM newest"
                " WHERE newest.sensor_id = readings.sensor_id AND newest.kind = readings.kind)",
                (f"-{KEEP_DELIVERED_S} seconds", epoch_text(now + CLOCK_SLACK_S)),
            )

    def _cap_junk(self, now: float) -> None:
        """Dead letters and first-seen cursors within their own caps, oldest forgotten first."""
        with self._lock:
            count, size = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(length(CAST(preview AS BLOB)) + length(CAST(reason AS BLOB))"
                " + 100), 0) FROM dead_letter"
            ).fetchone()
            seen, newest = self._db.execute(
                "SELECT COUNT(*), MAX(position) FROM cursors WHERE kind LIKE 'first-seen:%'"
                " AND position <= ?",
                (epoch_text(now + CLOCK_SLACK_S),),
            ).fetchone()
        budget = DEAD_LETTER_SHARE * self.max_mb * 1e6
        over = max(
            count - MAX_DEAD_LETTERS,
            int((size - budget) / (size / count)) + 1 if size > budget else 0,
        )
        if over > 0:
            with self._write(marks=False) as db:
                self._forget_dead(db, over)
        if seen:
            stale = "" if self._clock_looks_wrong(now) else _shift(newest, -KEEP_FIRST_SEEN_S)
            with self._write(marks=False) as db:
                forgot = db.execute(
                    "DELETE FROM cursors WHERE kind LIKE 'first-seen:%' AND position < ?", (stale,)
                ).rowcount
                forgot += self._forget_first_seen(db, seen - forgot - MAX_FIRST_SEEN)
                self._bump(db, "junk_shed", forgot)

    def _forget_dead(self, db: sqlite3.Connection, rows: int) -> int:
        """The ``rows`` oldest dead letters (and the refused readings they hold)."""
        doomed = "SELECT seq FROM dead_letter ORDER BY seq LIMIT ?"
        db.execute(
            "DELETE FROM readings WHERE state = 'dead' AND id IN"
            f" (SELECT record_id FROM dead_letter WHERE seq IN ({doomed}))",
            (rows,),
        )
        forgot = db.execute(f"DELETE FROM dead_letter WHERE seq IN ({doomed})", (rows,)).rowcount
        self._bump(db, "junk_shed", forgot)
        if forgot:
            log.warning(
                "outbox: forgot the %d oldest dead letter(s) to keep junk within its cap", forgot
            )
        return forgot

    def _forget_first_seen(self, db: sqlite3.Connection, rows: int) -> int:
        if rows <= 0:
            return 0
        return db.execute(
            "DELETE FROM cursors WHERE rowid IN (SELECT rowid FROM cursors WHERE kind LIKE 'first-seen:%'"
            " ORDER BY position LIMIT ?)",
            (rows,),
        ).rowcount

    def _target_bytes(self) -> tuple[int, bool]:
        """How many live bytes the outbox may hold now, and whether the disk is low."""
        live = self._live_bytes()
        cap = self.max_mb * 1e6
        target = (
            live if live <= cap else int(0.95 * cap)
        )  # 95%: one new reading must not shed again
        shortfall = (self.min_free_disk_mb - self._free_disk_mb()) * 1e6
        # Shedding helps a low disk only when the outbox is what fills it: readings are never
        # dropped to make room for someone else's files.
        if 0 < shortfall <= self._file_bytes():
            target = min(target, int(live - shortfall))
        return target, shortfall > 0

    def _shed(self) -> int:
        """Junk first, then delivered rows, then the oldest pending readings (counted as dropped)."""
        with self._lock:
            target, low_disk = self._target_bytes()
        dropped = shed_any = 0
        for _ in range(1000):  # bounded: each round frees a chunk
            with self._lock:
                excess = self._live_bytes() - target
            if excess <= 0:
                break
            with self._write() as db:
                what, count = self._shed_step(db, excess)
            if not count:
                break
            shed_any += count
            if what == "pending":
                dropped += count
        if low_disk and shed_any:
            self._give_back_space()
        if dropped:
            log.error("outbox over its limits: dropped the %d oldest undelivered records", dropped)
        return dropped

    def _shed_step(self, db: sqlite3.Connection, excess: int) -> tuple[str, int]:
        """Forget one chunk of the least valuable rows there are."""

        everything = (
            sum(
                db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                for t in ("readings", "dead_letter", "cursors")
            )
            or 1
        )
        per_row = self._live_bytes() / everything  # a row costs at least its share of the pages

        def rows(table: str, where: str, size: str) -> int:
            n, total = db.execute(
                f"SELECT COUNT(*), COALESCE(SUM({size}), 0) FROM {table} WHERE {where}"
            ).fetchone()
            return max(1, min(500, int(excess / max(per_row, total / n + 1)) + 1)) if n else 0

        if n := rows("dead_letter", "1", "length(CAST(preview AS BLOB)) + 100"):
            return "dead", self._forget_dead(db, n)
        if n := rows("cursors", "kind LIKE 'first-seen:%'", "100"):
            forgot = self._forget_first_seen(db, n)
            self._bump(db, "junk_shed", forgot)
            return "first-seen", forgot
        for state in ("delivered", "pending"):
            if n := rows("readings", f"state = '{state}'", "length(CAST(body AS BLOB)) + 150"):
                # Delivered rows oldest first by their place in the table; pending ones by queue.
                order = "seq" if state == "pending" else "rowid"
                forgot = db.execute(
                    "DELETE FROM readings WHERE rowid IN (SELECT rowid FROM readings"
                    f" WHERE state = '{state}' ORDER BY {order} LIMIT ?)",
                    (n,),
                ).rowcount
                if state == "pending":
                    self._bump(db, "dropped", forgot)
                return state, forgot
        return "", 0

    def _give_back_space(self) -> None:
        """Freed pages stay inside the file; give them back to the disk if that needs no room."""
        with self._lock:
            incremental = self._db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
            try:
                if incremental:
                    self._db.execute("PRAGMA incremental_vacuum")
                elif self._free_disk_mb() * 1e6 > 2 * self._file_bytes():
                    self._db.execute("VACUUM")
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.OperationalError as exc:
                log.warning("outbox: cannot give freed space back to the disk now: %s", exc)

    # ------------------------------------------------------------ reading

    def counter(self, name: str) -> int:
        with self._lock:
            row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return row[0] if row else 0

    def stats(self, now: float | None = None) -> OutboxStats:
        now = time.time() if now is None else now
        with self._lock:
            held = self._held_rows()
            pending, oldest = self._db.execute(
                "SELECT COUNT(*), MIN(queued_at) FROM readings WHERE state = 'pending'"
                f" AND rowid NOT IN ({','.join('?' * len(held))})",
                held,
            ).fetchone()
            dead = self._db.execute("SELECT COUNT(*) FROM dead_letter").fetchone()[0]
            kept = (
                len(held)
                + self._db.execute(
                    "SELECT COUNT(*) FROM readings WHERE state = 'delivered'"
                ).fetchone()[0]
            )
            size = self._live_bytes()
            lost = self._lost
        return OutboxStats(
            pending=pending,
            oldest_pending_age_s=max(0.0, now - oldest) if oldest else 0.0,
            dead_letter=dead,
            dropped=self.counter("dropped") + lost,
            delivered_kept=kept,
            size_mb=round(size / 1e6, 2),
            junk_shed=self.counter("junk_shed"),
            disk_full=self.disk_full,
        )

    def _held_rows(self) -> list[int]:
        """The rows whose delivery is held, as pending on disk still at the delivered revision."""
        rows = list(self._held.rows)
        found = []
        for i in range(0, len(rows), 500):
            chunk = rows[i : i + 500]
            found += [
                Pending(rid, revision, {}, row)
                for row, rid, revision in self._db.execute(
                    "SELECT rowid, id, revision FROM readings WHERE state = 'pending'"
                    f" AND rowid IN ({','.join('?' * len(chunk))})",
                    chunk,
                )
            ]
        return [p.row for p in found if self._held.hides(p)]

    def pending_list(self, limit: int = 50) -> list[dict[str, Any]]:
        """The oldest pending records, for ``sensor-bridge outbox list``; an unreadable one
        is ``{"id": ..., "unreadable": why}`` (the services move it to the dead letters)."""
        good, bad = self._read_pending(
            "SELECT id, revision, CAST(body AS BLOB), rowid FROM readings WHERE state = 'pending'"
            " ORDER BY seq LIMIT ?",
            (limit,),
        )
        listed = {p.id: p.body for p in good} | {
            rid: {"id": rid, "unreadable": why} for rid, _, _, why, _ in bad
        }
        with self._lock:
            order = [
                r[0]
                for r in self._db.execute(
                    "SELECT id FROM readings WHERE state = 'pending' ORDER BY seq LIMIT ?", (limit,)
                )
            ]
        return [listed[i] for i in order if i in listed]
