"""The commit batcher: what the relay's doors receive -> outbox transactions -> acknowledgements.

Both doors (MQTT, appliance/sources/mqtt_in.py; HTTP push, appliance/relay.py)
hand each parsed message to :class:`Committer` with a ``done`` to run after
its commit: the MQTT acknowledgement, the HTTP answer. Nothing is acknowledged
before it is committed.

Messages are committed in batches (up to 500 messages, or what arrived within
50 ms), because every commit is an fsync; a batch's acknowledgements follow
its commit. Unreadable messages, and messages with readings the cloud would
refuse, go to the dead-letter table (they are acknowledged too: they were kept,
and redelivery would not make them readable). Only an outbox that cannot be
written at all (disk full, I/O error, locked too long) holds messages back for
a retry; a message the outbox refuses for any other reason is dead-lettered on
its own, so the messages behind it are stored.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .clock import utc_text
from .outbox import DeadEntry, Outbox, PutResult
from .sources.milesight_push import Parsed

log = logging.getLogger("sensor-bridge.relay")  # its lines are the relay's, as before the split

BATCH_MAX = 500
BATCH_WAIT_S = 0.05


@dataclass
class Incoming:
    """One parsed message waiting for its commit; ``done`` runs after it (ack, HTTP reply)."""

    parsed: Parsed
    done: Callable[[PutResult | None, str | None], None] | None = None
    at: float = field(default_factory=time.monotonic)


@dataclass
class Counters:
    received: int = 0
    records_stored: int = 0
    records_unchanged: int = 0
    dead_lettered: int = 0
    last_message_at: str | None = None
    last_dead: str | None = None
    last_dead_time: float = 0.0


class Committer:
    """Turns arriving messages into outbox transactions, then runs each message's ``done``."""

    def __init__(self, outbox: Outbox, counters: Counters) -> None:
        self.outbox = outbox
        self.counters = counters
        self.pending: list[Incoming] = []
        self.cond = threading.Condition()
        self.stopping = False
        self.stopped = threading.Event()  # cuts a retry pause short at shutdown
        self.error: str | None = None
        self.error_since: float | None = None

    def add(self, item: Incoming) -> None:
        with self.cond:
            self.pending.append(item)
            if len(self.pending) == 1 or len(self.pending) >= BATCH_MAX:
                self.cond.notify()

    def oldest_age(self) -> float:
        with self.cond:
            return time.monotonic() - self.pending[0].at if self.pending else 0.0

    def run(self) -> None:
        """Commit batches until stopped and nothing is left."""
        backoff = 0.5
        while True:
            with self.cond:
                while not self.pending and not self.stopping:
                    self.cond.wait(1.0)
                if not self.pending:
                    return
                deadline = self.pending[0].at + BATCH_WAIT_S
                while len(self.pending) < BATCH_MAX and not self.stopping:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self.cond.wait(left)
                batch, self.pending = self.pending[:BATCH_MAX], self.pending[BATCH_MAX:]
            waiting = self.commit(batch)
            if not waiting:
                backoff = 0.5
            else:
                with self.cond:
                    self.pending[:0] = waiting  # keep them first in line; nothing was acknowledged
                self.stopped.wait(backoff)  # new arrivals do not shorten it: the outbox needs time
                backoff = min(backoff * 2, 10.0)

    def stop(self) -> None:
        """Commit what is waiting, then let :meth:`run` return."""
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        self.stopped.set()

    def commit(self, batch: list[Incoming]) -> list[Incoming]:
        """Commit ``batch`` and run each message's ``done``; returns the messages that must wait
        because the outbox cannot be written at all (disk full, I/O error, locked too long).

        Any other failure is one message's fault: the batch is then committed message by
        message, and a message that still fails is dead-lettered with the reason and answered
        (acknowledged: it was kept), so the messages behind it are stored, never blocked."""
        try:
            result = self._put(batch)
        except Exception as exc:
            if outbox_unwritable(exc):
                return self._cannot_write(batch, exc)
            log.warning(
                "committing %d message(s) failed (%s: %s); committing them one by one",
                len(batch),
                type(exc).__name__,
                exc,
            )
            return self._one_by_one(batch)
        self._wrote()
        for item in batch:
            if item.done:
                item.done(result, None)
        return []

    def _one_by_one(self, batch: list[Incoming]) -> list[Incoming]:
        for index, item in enumerate(batch):
            try:
                result = self._put([item])
            except Exception as exc:
                if outbox_unwritable(exc):
                    return self._cannot_write(batch[index:], exc)
                try:
                    result = self._dead_letter(item, exc)
                except Exception as again:
                    if outbox_unwritable(again):
                        return self._cannot_write(batch[index:], again)
                    # Not even its dead letter fits: answering beats redelivering it forever.
                    log.error(
                        "dropped a message from %s that cannot be kept (%s): %s",
                        item.parsed.origin,
                        again,
                        item.parsed.preview[:200],
                    )
                    result = PutResult()
            self._wrote()
            if item.done:
                item.done(result, None)
        return []

    def _dead_letter(self, item: Incoming, exc: Exception) -> PutResult:
        """Keep the message that cannot be stored as a dead letter instead of its records."""
        parsed = item.parsed
        reason = f"cannot be stored ({type(exc).__name__}: {exc})"
        parsed.records, parsed.cursors = [], []
        parsed.dead = [DeadEntry(parsed.origin or "relay", reason, parsed.preview)]
        return self._put([item])

    def _put(self, items: list[Incoming]) -> PutResult:
        """One outbox transaction for ``items``; the counters follow what it kept."""
        records = [r for item in items for r in item.parsed.records]
        cursors = [c for item in items for c in item.parsed.cursors]
        dead = [d for item in items for d in item.parsed.dead]
        result = self.outbox.put(records, cursors=cursors, dead=dead)
        c = self.counters
        c.received += len(items)
        c.records_stored += result.added + result.updated
        c.records_unchanged += result.unchanged + result.ignored_final
        c.last_message_at = utc_text(datetime.now(UTC))
        if dead or result.refused:
            c.dead_lettered += len(dead) + result.refused
            last = dead[-1] if dead else None
            c.last_dead = (
                f"{last.origin}: {last.reason}" if last else "a reading the cloud would refuse"
            )
            c.last_dead_time = time.monotonic()
            for entry in dead:
                log.warning("dead-lettered a message from %s: %s", entry.origin, entry.reason)
        return result

    def _wrote(self) -> None:
        if self.error:
            log.info("outbox writable again")
        self.error = self.error_since = None

    def _cannot_write(self, waiting: list[Incoming], exc: Exception) -> list[Incoming]:
        """The outbox cannot be written: keep ``waiting`` for a retry, and say so."""
        if self.error is None:
            log.error("cannot commit %d message(s) to the outbox: %s", len(waiting), exc)
            self.error_since = time.monotonic()
        self.error = f"{type(exc).__name__}: {exc}"
        if self.stopping and self.error_since and time.monotonic() - self.error_since > 10:
            for item in waiting:  # shutting down: give up; unacknowledged MQTT messages come back
                if item.done:
                    item.done(None, self.error)
            return []
        return waiting


def outbox_unwritable(exc: BaseException) -> bool:
    """The outbox file cannot be written at all (disk full, I/O error, locked too long, damaged),
    as opposed to one message the outbox cannot take: only this is worth waiting for."""
    if isinstance(exc, sqlite3.OperationalError | sqlite3.InternalError):
        return True
    return type(exc) is sqlite3.DatabaseError  # "database disk image is malformed"
