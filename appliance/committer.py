"""The commit batcher: what the relay's doors receive -> outbox transactions -> acknowledgements.

Both doors (MQTT, appliance/push/mqtt_door.py; HTTP push, appliance/push/http_door.py)
hand each parsed message to :class:`Committer` with a ``done`` to run after
its commit: the MQTT acknowledgement, the HTTP answer. Nothing is acknowledged
before it is committed.

Messages are committed in batches (up to 500 messages, or what arrived within
50 ms), because every commit is an fsync; a batch's acknowledgements follow
its commit. The transaction is the outbox's write batcher's, the same as the
collector's polls (appliance/outbox/batcher.py), one put per message: only an
outbox that cannot be written at all (disk full, I/O error, locked too long,
damaged: the batcher's one rule) holds messages back for a retry; a message the
outbox refuses for any other reason is dead-lettered on its own, so the
messages behind it are stored. Unreadable messages, and messages with readings
the cloud would refuse, go to the dead-letter table too (they are acknowledged:
they were kept, and redelivery would not make them readable).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .clock import utc_text
from .outbox import DeadEntry, Outbox, PutResult, Write, cannot_write
from .push.format import Parsed

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

    @property
    def error(self) -> str | None:
        """Why the outbox cannot be written right now (the outbox's own verdict), or None."""
        return self.outbox.write_error

    @property
    def error_since(self) -> float | None:
        return self.outbox.write_error_since

    def commit(self, batch: list[Incoming]) -> list[Incoming]:
        """Commit ``batch`` (one outbox put per message, in one transaction where they can be)
        and run each message's ``done``; returns the messages that must wait because the outbox
        cannot be written at all (the batcher's rule: appliance/outbox/batcher.py).

        A message the outbox refused for any other reason is dead-lettered with the reason and
        answered (acknowledged: it was kept), so the messages behind it are stored, never
        blocked."""
        writes = self._store(batch)
        waiting = [item for item, w in zip(batch, writes, strict=True) if _waits(w)]
        poison = [
            (item, w.error)
            for item, w in zip(batch, writes, strict=True)
            if w.error is not None and not _waits(w)
        ]
        if poison:
            log.warning(
                "%d of %d message(s) could not be stored; dead-lettering them",
                len(poison),
                len(batch),
            )
        kept = {id(item): w for item, w in zip(batch, writes, strict=True) if w.error is None}
        for item, exc in poison:
            if (letter := self._dead_letter(item, exc)) is None:
                waiting.append(item)
            else:
                kept[id(item)] = letter
        for item in batch:  # in arrival order, each after the commit that kept it
            if id(item) in kept and item.done:
                item.done(kept[id(item)].result or PutResult(), None)
        if waiting:
            held = {id(item) for item in waiting}
            return self._cannot_write([item for item in batch if id(item) in held])
        return []

    def _dead_letter(self, item: Incoming, exc: BaseException) -> Write | None:
        """Keep the message that cannot be stored as a dead letter instead of its records; None
        when the outbox cannot be written now (the message waits)."""
        parsed = item.parsed
        reason = f"cannot be stored ({type(exc).__name__}: {exc})"
        parsed.records, parsed.cursors = [], []
        parsed.dead = [DeadEntry(parsed.origin or "relay", reason, parsed.preview)]
        [letter] = self._store([item])
        if letter.error is None:
            return letter
        if _waits(letter):
            return None
        # Not even its dead letter fits: answering beats redelivering it forever.
        log.error(
            "dropped a message from %s that cannot be kept (%s): %s",
            parsed.origin,
            letter.error,
            parsed.preview[:200],
        )
        return Write([], [], [], result=PutResult())

    def _store(self, items: list[Incoming]) -> list[Write]:
        """One outbox put per message, through the outbox's batcher; the counters follow what
        it kept."""
        writes = [
            Write(list(item.parsed.records), list(item.parsed.cursors), list(item.parsed.dead))
            for item in items
        ]
        self.outbox.put_each(writes)
        c = self.counters
        for w in writes:
            if w.error is not None or w.result is None:
                continue
            result = w.result
            c.received += 1
            c.records_stored += result.added + result.updated
            c.records_unchanged += result.unchanged + result.ignored_final
            c.last_message_at = utc_text(datetime.now(UTC))
            if w.dead or result.refused:
                c.dead_lettered += len(w.dead) + result.refused
                last = w.dead[-1] if w.dead else None
                c.last_dead = (
                    f"{last.origin}: {last.reason}" if last else "a reading the cloud would refuse"
                )
                c.last_dead_time = time.monotonic()
                for entry in w.dead:
                    log.warning("dead-lettered a message from %s: %s", entry.origin, entry.reason)
        return writes

    def _cannot_write(self, waiting: list[Incoming]) -> list[Incoming]:
        """The outbox cannot be written: keep ``waiting`` for a retry (the outbox says why)."""
        since = self.error_since
        if self.stopping and since and time.monotonic() - since > 10:
            for item in waiting:  # shutting down: give up; unacknowledged MQTT messages come back
                if item.done:
                    item.done(None, self.error)
            return []
        return waiting


def _waits(write: Write) -> bool:
    """The put failed because the outbox cannot be written now: worth waiting for."""
    return write.error is not None and cannot_write(write.error)
