"""The one loop every long-running program of the appliance runs.

The collector, the relay, the watchdog, the LED, the simulators and the demo
all start, beat and stop the same way:

1. SIGTERM/SIGINT handlers go in first (:func:`run_service`), so a stop that
   arrives while a service is still opening its files ends it cleanly too;
2. ``start()`` opens servers and threads; a first status write follows, then
   ``READY=1`` (before the first ``step()``: a first step that takes long, a
   watchdog probing a slow network, must not look like a service that never
   came up);
3. ``step()`` does the service's own work as often as it asks; the status file
   is rewritten, and systemd gets ``WATCHDOG=1`` with a one-line ``STATUS=``,
   every :data:`~appliance.status.WRITE_EVERY_S` (sooner if systemd's
   watchdog wants it, and at once when a step sets ``report_due``);
4. on the stop: ``STOPPING=1``, then ``shutdown()``, whose every wait is bounded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from .notify import notify, stop_on_signals, watchdog_interval_s
from .status import WRITE_EVERY_S


class Service:
    """A long-running service; subclasses fill in the four hooks, :meth:`run` drives them."""

    step_every_s = 1.0

    def __init__(self, stop_event: threading.Event | None = None) -> None:
        self.stop_event = stop_event or threading.Event()
        self.started = time.time()  # epoch seconds; uptime and the start grace count from here
        self.report_due = False  # a step that changed what the status file says sets this
        self._status_line: str | None = None

    def start(self) -> None:
        """Open servers and threads (the signal handlers are already in place)."""

    def step(self) -> float | None:
        """One round of the service's own work; returns seconds until the next (None: step_every_s)."""
        return None

    def report(self) -> str | None:
        """Rewrite the status file; the one line ``systemctl status`` shows (None: nothing to say)."""
        return None

    def shutdown(self) -> None:
        """Let go of servers, threads and files; every wait bounded."""

    def run(self) -> int:
        """Run until :attr:`stop_event` is set (SIGTERM/SIGINT under :func:`run_service`)."""
        stop = self.stop_event
        beat = min(WRITE_EVERY_S, watchdog_interval_s() or WRITE_EVERY_S)
        try:
            self.start()
            self._report()
            notify("READY=1")
            self._beat()
            next_step = time.monotonic()
            next_report = next_step + beat
            while not stop.is_set():
                now = time.monotonic()
                if now >= next_step:
                    next_step = now + self._step()
                if now >= next_report or self.report_due:
                    self._report()
                    self._beat()
                    next_report = now + beat
                stop.wait(max(0.0, min(next_step, next_report) - time.monotonic()))
        finally:
            notify("STOPPING=1")
            self.shutdown()
        return 0

    def _step(self) -> float:
        wait = self.step()
        return self.step_every_s if wait is None else wait

    def _report(self) -> None:
        self.report_due = False
        self._status_line = self.report()

    def _beat(self) -> None:
        notify("WATCHDOG=1", *([f"STATUS={self._status_line}"[:200]] if self._status_line else []))


class Background(Service):
    """A program whose work runs in its own threads (a simulator's server): the loop only beats."""

    step_every_s = WRITE_EVERY_S

    def __init__(
        self,
        start: Callable[[], object],
        stop: Callable[[], object],
        stop_event: threading.Event | None = None,
    ) -> None:
        super().__init__(stop_event)
        self._start, self._stop = start, stop

    def start(self) -> None:
        self._start()

    def shutdown(self) -> None:
        self._stop()


def run_service(
    make: Callable[[threading.Event], Service], stop: threading.Event | None = None
) -> int:
    """Install the signal handlers, then make the service (it may open files) and run it."""
    stop = stop_on_signals(stop)
    return make(stop).run()
