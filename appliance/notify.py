"""Tell systemd how a service is doing (sd_notify), without libsystemd.

``READY=1`` once a service is up, ``WATCHDOG=1`` from its main loop so
systemd restarts it if the loop hangs (``WatchdogSec=`` in the unit), and
``STATUS=...`` so ``systemctl status`` shows a one-line state. Outside
systemd (no ``$NOTIFY_SOCKET``) every call does nothing.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading


def notify(*assignments: str) -> bool:
    """Send ``assignments`` (e.g. ``"READY=1"``); False when not under systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto("\n".join(assignments).encode(), address)
    except OSError:
        return False
    return True


def watchdog_interval_s() -> float | None:
    """Half of systemd's ``WatchdogSec`` for this process, or None when not armed."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 1e6 / 2


def stop_on_signals(event: threading.Event | None = None) -> threading.Event:
    """An event that SIGTERM (systemctl stop) and SIGINT (Ctrl-C) set, for a clean shutdown.

    Install it first thing: a stop that arrives while a service is still
    opening its files must end it cleanly too.
    """
    event = event or threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        logging.getLogger("sensor-bridge").info("received %s", signal.Signals(signum).name)
        event.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return event
