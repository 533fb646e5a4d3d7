"""Status files: how the appliance's services tell each other how they are.

Each running service rewrites ``<run_dir>/<service>.json`` every
``WRITE_EVERY_S`` (appliance/service.py). The file's ``written_at`` is its heartbeat: the LED, the
watchdog, ``/health`` and ``sensor-bridge status`` treat a stale or missing
file of an enabled service as that service being down. Writes are atomic
(temp file + rename) so a reader never sees half a file; reads are tolerant
(a missing or garbled file reads as ``None``, never an exception).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from .files import write_atomic

# Worst last. The overall state of the bridge is the worst of its services'.
STATES = ("ok", "starting", "degraded", "error", "no-config")
MAINTENANCE = "maintenance"

# Every service rewrites its file this often (appliance/service.py); readers allow slack.
WRITE_EVERY_S = 2.0
STALE_AFTER_S = 30.0

# Each service and the systemd unit that runs it (appliance/units/). The LED shares the
# watchdog's process (appliance/watchdog.py): one interpreter less on a Pi Zero 2 W.
UNITS = {
    "collector": "sensor-bridge.service",
    "relay": "sensor-bridge-relay.service",
    "watchdog": "sensor-bridge-watchdog.service",
    "led": "sensor-bridge-watchdog.service",
}


def worst(states: list[str] | tuple[str, ...]) -> str:
    """The most serious of ``states`` (an unknown state counts as error)."""
    rank = {name: i for i, name in enumerate(STATES)}
    if not states:
        return "starting"
    return max(states, key=lambda s: rank.get(s, rank["error"]))


def status_path(run_dir: str | Path, service: str) -> Path:
    return Path(run_dir) / f"{service}.json"


def write_json_atomic(path: str | Path, body: dict[str, Any], mode: int = 0o644) -> None:
    """Replace ``path`` with ``body`` so that readers see the old or the new file, whole."""
    write_atomic(path, json.dumps(body, indent=1, sort_keys=True, default=str) + "\n", mode)


def write_status(run_dir: str | Path, service: str, state: str, **details: Any) -> dict[str, Any]:
    """Publish ``service``'s state; ``written_at`` (epoch seconds) is the heartbeat."""
    body = {"service": service, "state": state, "pid": os.getpid(), "written_at": time.time()}
    body.update(details)
    write_json_atomic(status_path(run_dir, service), body)
    return body


def read_json(path: str | Path) -> dict[str, Any] | None:
    try:
        with open(path) as f:
            body = json.load(f)
    except (OSError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def read_status(run_dir: str | Path, service: str) -> dict[str, Any] | None:
    """The service's last status, or None when it has never written a readable one."""
    return read_json(status_path(run_dir, service))


def age_s(status: dict[str, Any] | None, now: float | None = None) -> float | None:
    """Seconds since the status was written; None when there is no status."""
    if not status or not isinstance(status.get("written_at"), int | float):
        return None
    return max(0.0, (time.time() if now is None else now) - float(status["written_at"]))


def effective_state(
    status: dict[str, Any] | None, stale_after_s: float = STALE_AFTER_S, now: float | None = None
) -> str:
    """What a reader should believe: a missing or stale file means the service is down."""
    age = age_s(status, now)
    if status is None or age is None or age > stale_after_s:
        return "error"
    state = status.get("state")
    return state if state in STATES or state == MAINTENANCE else "error"
