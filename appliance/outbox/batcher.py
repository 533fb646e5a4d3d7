"""The write batcher: every put of the outbox, whoever makes it, committed in batches.

Every commit is an fsync, so puts that arrive together are committed together:
a poll round's sensors (the collector's lanes, :meth:`Batcher.put`) share one
transaction, and so does a batch of the relay's messages (appliance/committer.py,
:meth:`Batcher.put_each`, one put per message). One rule for both when a
transaction fails: if the outbox cannot be written at all
(damage.cannot_write: disk full, I/O error, locked too long, damaged), every
put of it fails with that error and nothing is stored; the writer keeps what it
has (the collector its cursors, the relay its unacknowledged messages) and the
outbox says so (``write_error``) until a write succeeds. Any other failure is
one put's fault: each put is then committed alone, so the others are stored.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .damage import cannot_write
from .revisions import last_seq
from .rows import PutResult, Write
from .store import Store
from .writes import put_in

log = logging.getLogger("sensor-bridge.outbox")


class Batcher:
    """Puts of several threads (the collector's poll lanes, the relay's committer) in one
    transaction, one fsync.

    The first caller leads: it waits up to ``window_s`` for others to join, but only while
    ``expected()`` (how many callers may put now: the sensors in a poll) says more are coming,
    so a lone sensor's poll commits at once; it commits everything queued by then, and wakes
    them; callers arriving meanwhile wait for the next leader, who is one of them. Nobody
    returns before the transaction holding its put committed, so a put is exactly as durable
    as before; it may take ``window_s`` longer.
    """

    def __init__(self, store: Store, window_s: float = 0.0) -> None:
        self.store = store
        self.window_s = window_s
        self.expected: Callable[[], int] = lambda: 0
        self.cond = threading.Condition()
        self.queue: list[Write] = []
        self.leading = False

    def put(self, mine: Write) -> PutResult:
        """Store ``mine``; raises what kept it from being stored."""
        self.put_each([mine])
        return mine.outcome()

    def put_each(self, mine: list[Write]) -> None:
        """Store every put of ``mine``, in as few transactions as the rule above allows; each
        then holds its result or its error (nothing is raised for a put that failed)."""
        with self.cond:
            self.queue.extend(mine)
            while self.leading and not all(item.finished for item in mine):
                self.cond.wait()
            if all(item.finished for item in mine):
                return
            self.leading = True
        batch: list[Write] = []
        try:
            self._gather()
            with self.cond:
                batch, self.queue = self.queue, []
            self.commit(batch)
        except BaseException as exc:  # even an interrupt must not leave the others waiting
            for item in batch:
                item.error = item.error or exc
            ours = {id(item) for item in mine}
            with (
                self.cond
            ):  # interrupted before taking the queue: its own puts are not stored later
                self.queue = [item for item in self.queue if id(item) not in ours]
            raise
        finally:
            with self.cond:
                for item in batch:
                    item.finished = True
                self.leading = False
                self.cond.notify_all()

    def _gather(self) -> None:
        """Wait (at most ``window_s``) while callers that are expected have not queued yet."""
        deadline = time.monotonic() + self.window_s
        while time.monotonic() < deadline:
            with self.cond:
                if len(self.queue) >= self.expected():
                    return
            time.sleep(0.01)

    def commit(self, batch: list[Write]) -> None:
        """One transaction for every put in ``batch``; if it fails for one put's fault, each put
        alone, so that one caller's fault is never another's."""
        now = time.time()
        try:
            with self.store.transaction() as db:
                seq = last_seq(db)
                for item in batch:
                    seq = put_in(db, item, seq, now)
        except Exception as exc:
            if len(batch) == 1 or cannot_write(exc):
                for item in batch:
                    item.error = exc
                return
            for index, item in enumerate(batch):
                self.commit([item])
                if item.error is not None and cannot_write(item.error):
                    for rest in batch[index + 1 :]:  # the file, not a put: the rest wait too
                        rest.error = item.error
                    return
            return
        for item in batch:
            for entry in item.refused:
                log.warning("refused a reading (%s): %s", entry.origin, entry.reason)
