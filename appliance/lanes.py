"""One lane per sensor: its due polls run one at a time on its own thread.

A camera that answers slowly (or trickles its answer until the deadline cuts
it) can only ever hold its own lane, so every other sensor keeps its cadence
however many cameras misbehave. A poll that falls due while the same kind of
the same sensor is still waiting or running is skipped and counted, never
queued twice, so a slow camera is not handed an ever-growing backlog.

The polls a lane finds waiting together (a sensor's kinds fall due at the
same tick) are one batch: ``together`` wraps them, so the collector stores
them in one outbox transaction when the last one ends (a page written to the
SD card once per batch, not once per kind).

Lane threads are daemons: on shutdown the collector cuts the polls in flight
and waits a few seconds at most, and a thread stuck beyond that cannot keep
the service from stopping.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

log = logging.getLogger("sensor-bridge.collector")

SKIP_LOG_EVERY_S = 300.0
GATE_MAX_S = 1.0  # a lane waits at most this long for the tick that is submitting its polls

# What wraps one batch of a sensor's polls: (sensor_id, kinds) -> a context.
Together = Callable[[str, list[str]], AbstractContextManager[Any]]


def _apart(sensor_id: str, kinds: list[str]) -> AbstractContextManager[Any]:
    return nullcontext()


class SensorLane:
    """The due polls of one sensor, in the order they fell due, and the thread that runs them."""

    def __init__(
        self,
        sensor_id: str,
        run: Callable[[str, str], None],
        together: Together,
        gate: threading.Event,
    ) -> None:
        self.sensor_id = sensor_id
        self.run = run
        self.together = together
        self.gate = gate  # clear while a tick submits: its kinds form one batch
        self.waiting: list[str] = []
        self.batch: list[str] = []  # the kinds taken together, running or about to
        self.running: str | None = None
        self.skipped = 0
        self.started = 0.0  # monotonic start of the batch running now
        self.closed = False
        self._skip_logged_at = float("-inf")
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._work, name=f"poll-{sensor_id}", daemon=True)

    def submit(self, kind: str) -> bool:
        """Queue ``kind``; False (and counted) when it is already waiting or running, or the lane is closed."""
        with self._changed:
            if self.closed:
                return False
            if kind in self.batch or kind in self.waiting:
                self.skipped += 1
                self._log_skip(kind)
                return False
            self.waiting.append(kind)
            if not self._thread.is_alive():
                self._thread.start()
            self._changed.notify_all()
            return True

    def _log_skip(self, kind: str) -> None:
        now = time.monotonic()
        if now - self._skip_logged_at >= SKIP_LOG_EVERY_S:
            self._skip_logged_at = now
            log.warning(
                "sensor %s: %s poll skipped, the camera is still busy with an earlier one "
                "(%d skipped so far)",
                self.sensor_id,
                kind,
                self.skipped,
            )

    def _work(self) -> None:
        while True:
            with self._changed:
                while not self.waiting and not self.closed:
                    self._changed.wait()
                if self.closed:
                    return
            self.gate.wait(GATE_MAX_S)
            with self._changed:
                if self.closed:
                    return
                self.batch, self.waiting = self.waiting, []
                self.started = time.monotonic()
            try:
                with self.together(self.sensor_id, list(self.batch)):
                    for kind in list(self.batch):
                        with self._changed:
                            if self.closed:  # stopping: the rest of the batch is dropped
                                break
                            self.running = kind
                        self.run(self.sensor_id, kind)
            finally:
                with self._changed:
                    self.running = None
                    self.batch = []
                    self._changed.notify_all()

    def close(self) -> None:
        """Drop what waits and take nothing new; a poll in flight runs on."""
        with self._changed:
            self.closed = True
            self.waiting.clear()
            self._changed.notify_all()

    def idle(self) -> bool:
        with self._changed:
            return not self.batch and not self.waiting

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the lane's thread to end; True when it has."""
        if self._thread.is_alive():
            self._thread.join(max(0.0, timeout))
        return not self._thread.is_alive()


class PollLanes:
    """Every sensor's lane; ``submit`` is what the schedule calls."""

    def __init__(
        self, sensor_ids: list[str], run: Callable[[str, str], None], together: Together = _apart
    ) -> None:
        self.gate = threading.Event()  # one for all lanes: a tick submits to every sensor
        self.gate.set()
        self.lanes = {
            sensor_id: SensorLane(sensor_id, run, together, self.gate) for sensor_id in sensor_ids
        }

    @contextmanager
    def submitting(self) -> Iterator[None]:
        """Polls submitted inside start when the block ends, so the kinds of a sensor that
        fall due at one tick run as one batch."""
        self.gate.clear()
        try:
            yield
        finally:
            self.gate.set()

    def submit(self, sensor_id: str, kind: str) -> bool:
        return self.lanes[sensor_id].submit(kind)

    def skipped(self) -> dict[str, int]:
        return {sensor_id: lane.skipped for sensor_id, lane in self.lanes.items()}

    def polling(self, started_within_s: float) -> int:
        """How many sensors are in a batch of polls that began within ``started_within_s``: each
        may be about to store what it read. A batch running longer (a slow camera) is not waited
        for."""
        since = time.monotonic() - started_within_s
        return sum(1 for lane in self.lanes.values() if lane.batch and lane.started >= since)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no poll waits or runs (for benchmarks and tests); True when that happened."""
        deadline = time.monotonic() + timeout
        while not all(lane.idle() for lane in self.lanes.values()):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self, grace_s: float, cut: Callable[[], None]) -> list[str]:
        """Stop every lane: drop waiting polls, ``cut`` those in flight, wait ``grace_s`` in all.

        Returns the sensors whose poll had still not ended (their threads are
        left behind; they are daemons)."""
        for lane in self.lanes.values():
            lane.close()
        cut()
        deadline = time.monotonic() + grace_s
        return [
            sensor_id
            for sensor_id, lane in self.lanes.items()
            if not lane.join(deadline - time.monotonic())
        ]
