"""The write batcher: puts of several threads in one transaction, one fsync.

Every commit is an fsync, so puts that arrive together are committed together:
a poll round's sensors (the collector's lanes) share one transaction.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from .rows import PutResult, Write


class Batcher:
    """Puts of several threads (the collector's poll lanes) in one transaction, one fsync.

    The first caller leads: it waits up to ``window_s`` for others to join, but only while
    ``expected()`` (how many callers may put now: the sensors in a poll) says more are coming,
    so a lone sensor's poll commits at once; it commits everything queued by then, and wakes
    them; callers arriving meanwhile wait for the next leader, who is one of them. Nobody
    returns before the transaction holding its put committed, so a put is exactly as durable
    as before; it may take ``window_s`` longer.
    """

    def __init__(self, commit: Callable[[list[Write]], None], window_s: float = 0.0) -> None:
        self.commit = commit
        self.window_s = window_s
        self.expected: Callable[[], int] = lambda: 0
        self.cond = threading.Condition()
        self.queue: list[Write] = []
        self.leading = False

    def put(self, mine: Write) -> PutResult:
        with self.cond:
            self.queue.append(mine)
            while self.leading and not mine.finished:
                self.cond.wait()
            if mine.finished:
                return mine.outcome()
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
