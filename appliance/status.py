"""Status files and states: how the appliance's services tell each other how they are.

Each running service rewrites ``<run_dir>/<service>.json`` every
``WRITE_EVERY_S`` (appliance/service.py). The file's ``written_at`` is its heartbeat: the LED, the
watchdog, ``/health`` and ``sensor-bridge status`` treat a stale or missing
file of an enabled service as that service being down. Writes are atomic
(temp file + rename) so a reader never sees half a file; reads are tolerant
(a missing or garbled file reads as ``None``, never an exception).

Reading a state is here too, once: :func:`service_state` says what a reader
believes of one service from its file, and the named predicates say what each
reader makes of a state: :func:`health_answers_200` (/health),
:func:`update_gate_accepts` (the update's health gate), :func:`status_succeeds`
(``sensor-bridge status``'s exit code), :func:`doctor_passes`
(``sensor-bridge doctor``) and :func:`counted_by_the_bridge` (a service's state
in the bridge's overall state, which the LED shows).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .files import write_atomic

# Worst last. The overall state of the bridge is the worst of its services'.
STATES = ("ok", "starting", "degraded", "error", "no-config")
MAINTENANCE = "maintenance"
# [fleet] alone, not claimed yet (appliance/adoption/): the bridge's state, never a service's.
UNCLAIMED = "unclaimed"

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
    "fleet": "sensor-bridge-fleet.service",
}


# What each reader makes of a state. Named once so /health, the update gate, `status`, `doctor`
# and the LED cannot drift apart; the tests of each reader pin its set.
_HEALTH_200 = frozenset({"ok", "degraded", "starting", UNCLAIMED})
_UPDATE_GATE = frozenset({"ok", "degraded"})
_STATUS_SUCCEEDS = frozenset({"ok", "degraded", "starting", MAINTENANCE, UNCLAIMED})
_DOCTOR_PASSES = frozenset({"ok", "starting", MAINTENANCE})


def health_answers_200(state: str) -> bool:
    """/health answers 200 for the bridge in ``state`` (503 otherwise: error, no-config, maintenance)."""
    return state in _HEALTH_200


def update_gate_accepts(state: str) -> bool:
    """The update's health gate counts a service in ``state`` as healthy on the new version."""
    return state in _UPDATE_GATE


def status_succeeds(state: str) -> bool:
    """``sensor-bridge status`` exits 0 for the bridge in ``state`` (1 otherwise)."""
    return state in _STATUS_SUCCEEDS


def doctor_passes(state: str) -> bool:
    """``sensor-bridge doctor`` says PASS for a service in ``state`` (degraded is a WARN)."""
    return state in _DOCTOR_PASSES


def counted_by_the_bridge(state: str) -> str:
    """A service's state as the bridge's overall state (the LED, /health, the heartbeat) counts it:
    a service still saying ``maintenance`` counts as ``ok`` (maintenance just ended; it catches up
    within seconds), a state no one knows as ``error``."""
    if state == MAINTENANCE:
        return "ok"
    return state if state in STATES else "error"


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


@dataclass(frozen=True)
class ServiceState:
    """One service as a reader sees it: its effective state, why, and when it last wrote."""

    state: str
    reason: str
    written_at: float | None = None


def service_state(
    status: dict[str, Any] | None,
    now: float | None = None,
    in_grace: bool = False,
    stale_after_s: float = STALE_AFTER_S,
) -> ServiceState:
    """What a reader should believe of one service from its status file (None: no file).

    A missing file is ``starting`` while ``in_grace`` (the services start together at boot),
    else ``error``; a stale file, or a state no one knows, is ``error``; ``maintenance`` is kept.
    """
    if status is None:
        if in_grace:
            return ServiceState("starting", "not started yet")
        return ServiceState("error", "not running (no status file)")
    written = status.get("written_at")
    written_at = float(written) if isinstance(written, int | float) else None
    age = age_s(status, now)
    if age is None or age > stale_after_s:
        return ServiceState("error", "status file stale", written_at)
    state = status.get("state")
    if state not in STATES and state != MAINTENANCE:
        return ServiceState("error", f"unknown state {state!r} in its status file", written_at)
    return ServiceState(str(state), str(status.get("reason") or state), written_at)


def effective_state(
    status: dict[str, Any] | None, stale_after_s: float = STALE_AFTER_S, now: float | None = None
) -> str:
    """What a reader should believe: a missing or stale file means the service is down."""
    return service_state(status, now, stale_after_s=stale_after_s).state
