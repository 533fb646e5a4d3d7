"""Retention and shedding: what the outbox forgets, and in which order.

Delivery memory (delivered rows, so a re-read of a camera's history is known
as already delivered) is kept by the readings' own periods, never by the wall
clock alone, and not forgotten at all while the clock looks wrong.

Beyond ``max_mb`` of live data, or with less than ``min_free_disk_mb`` free on
its disk (when the outbox itself is big enough to make up the shortfall), the
outbox forgets, in this order: the oldest junk (dead letters, first-seen
memory), delivered rows, and only then the oldest pending readings. Every
forgotten thing is counted; a dropped reading in the ``dropped`` counter that
status, heartbeat and /health report. Junk also has caps of its own, so it can
never crowd out readings.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from datetime import timedelta
from pathlib import Path

from ..clock import parse_utc, utc_text
from ..outbox_damage import epoch_text
from .damage import OutboxFull
from .dead_letters import DeadLetters
from .first_seen import KEEP_FIRST_SEEN_S, MAX_FIRST_SEEN, FirstSeenMemory
from .store import Store, bump

log = logging.getLogger("sensor-bridge.outbox")

# Delivered rows are kept until their period is this much older than the newest period of
# the same sensor and kind, so a re-read of the camera's history (about 7 days) is
# recognised as "already delivered" and not sent again.
KEEP_DELIVERED_S = 8 * 24 * 3600
# Data stamped further ahead of the bridge's clock than this does not count as "newest
# period"; and a clock this far behind the outbox's newest write looks wrong.
CLOCK_SLACK_S = 24 * 3600
# Junk has caps of its own, whatever max_mb says.
DEAD_LETTER_SHARE = 0.1  # of max_mb
MAX_DEAD_LETTERS = 10_000


def _shift(stamp: str, seconds: float) -> str:
    return utc_text(parse_utc(stamp) + timedelta(seconds=seconds))


class Retention:
    """Keeps the outbox within ``max_mb`` and the disk's ``min_free_disk_mb``."""

    def __init__(
        self, store: Store, first_seen: FirstSeenMemory, max_mb: float, min_free_disk_mb: float
    ) -> None:
        self.store = store
        self.first_seen = first_seen
        self.max_mb = max_mb
        self.min_free_disk_mb = min_free_disk_mb
        self._clock_warned = False

    def enforce(self, now: float | None = None) -> int:
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

    def clock_looks_wrong(self, now: float) -> bool:
        """The clock is well behind the outbox's own newest write: it jumped back (or was ahead)."""
        with self.store.lock:
            newest = self.store.db.execute(
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
        if self.clock_looks_wrong(now):
            return
        with self.store.transaction(marks=False) as db:
            db.execute(
                "WITH newest AS (SELECT sensor_id, kind, strftime('%Y-%m-%dT%H:%M:%SZ', MAX(period_start), ?)"
                " AS cutoff FROM readings WHERE period_start <= ? GROUP BY sensor_id, kind)"
                " DELETE FROM readings WHERE state = 'delivered' AND period_start < (SELECT cutoff FROM newest"
                " WHERE newest.sensor_id = readings.sensor_id AND newest.kind = readings.kind)",
                (f"-{KEEP_DELIVERED_S} seconds", epoch_text(now + CLOCK_SLACK_S)),
            )

    def _cap_junk(self, now: float) -> None:
        """Dead letters and first-seen memory within their own caps, oldest forgotten first."""
        store = self.store
        with store.lock:
            count, size = store.db.execute(
                "SELECT COUNT(*), COALESCE(SUM(length(CAST(preview AS BLOB)) + length(CAST(reason AS BLOB))"
                " + 100), 0) FROM dead_letter"
            ).fetchone()
        seen, newest = self.first_seen.extent(epoch_text(now + CLOCK_SLACK_S))
        budget = DEAD_LETTER_SHARE * self.max_mb * 1e6
        over = max(
            count - MAX_DEAD_LETTERS,
            int((size - budget) / (size / count)) + 1 if size > budget else 0,
        )
        if over > 0:
            with store.transaction(marks=False) as db:
                bump(db, "junk_shed", DeadLetters.forget_oldest(db, over))
        if seen:
            wrong = newest is None or self.clock_looks_wrong(now)
            stale = "" if wrong else _shift(newest, -KEEP_FIRST_SEEN_S)
            with store.transaction(marks=False) as db:
                forgot = FirstSeenMemory.forget_before(db, stale)
                forgot += FirstSeenMemory.forget_oldest(db, seen - forgot - MAX_FIRST_SEEN)
                bump(db, "junk_shed", forgot)

    def _free_disk_mb(self) -> float:
        st = os.statvfs(self.store.path.parent)
        return st.f_bavail * st.f_frsize / 1e6

    def _file_bytes(self) -> int:
        path = self.store.path
        return sum(
            Path(f"{path}{s}").stat().st_size for s in ("", "-wal") if Path(f"{path}{s}").exists()
        )

    def _target_bytes(self) -> tuple[int, bool]:
        """How many live bytes the outbox may hold now, and whether the disk is low."""
        live = self.store.live_bytes()
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
        store = self.store
        with store.lock:
            target, low_disk = self._target_bytes()
        dropped = shed_any = 0
        for _ in range(1000):  # bounded: each round frees a chunk
            with store.lock:
                excess = store.live_bytes() - target
            if excess <= 0:
                break
            with store.transaction() as db:
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
                for t in ("readings", "dead_letter", "cursors", "first_seen")
            )
            or 1
        )
        per_row = (
            self.store.live_bytes() / everything
        )  # a row costs at least its share of the pages

        def rows(table: str, where: str, size: str) -> int:
            n, total = db.execute(
                f"SELECT COUNT(*), COALESCE(SUM({size}), 0) FROM {table} WHERE {where}"
            ).fetchone()
            return max(1, min(500, int(excess / max(per_row, total / n + 1)) + 1)) if n else 0

        if n := rows("dead_letter", "1", "length(CAST(preview AS BLOB)) + 100"):
            forgot = DeadLetters.forget_oldest(db, n)
            bump(db, "junk_shed", forgot)
            return "dead", forgot
        if n := rows("first_seen", "1", "100"):
            forgot = FirstSeenMemory.forget_oldest(db, n)
            bump(db, "junk_shed", forgot)
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
                    bump(db, "dropped", forgot)
                return state, forgot
        return "", 0

    def _give_back_space(self) -> None:
        """Freed pages stay inside the file; give them back to the disk if that needs no room."""
        store = self.store
        with store.lock:
            db = store.db
            incremental = db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
            try:
                if incremental:
                    db.execute("PRAGMA incremental_vacuum")
                elif self._free_disk_mb() * 1e6 > 2 * self._file_bytes():
                    db.execute("VACUUM")
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.OperationalError as exc:
                log.warning("outbox: cannot give freed space back to the disk now: %s", exc)
