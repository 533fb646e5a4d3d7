"""Dead letters a person can act on: grouped by device and reason, with counts.

``sensor-bridge outbox list --dead`` shows one line per device and kind of
problem (how many, when first and last, one full reason and a preview), and
``status`` says "door-1: 3 messages not understood today (first: ...)". The
device is the sensor id the message would have had: from the LoRaWAN DevEUI
or the serial in the preview (mapped through ``[[mqtt.devices]]``), else the
topic or HTTP path it came on.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from .config import MqttDevice

# Parts of a reason that differ between otherwise equal problems: quoted values, numbers, hex.
_VARIABLE = re.compile(r"'[^']*'|\"[^\"]*\"|\b0x[0-9A-Fa-f]+\b|\b[0-9a-f]{8,}\b|\d+")
_EUI = re.compile(r'"(?:devEUI|devEui|dev_eui)"\s*:\s*"([0-9A-Fa-f:-]{16,23})"')
_SERIAL = re.compile(r'"device_sn"\s*:\s*"([^"]{1,64})"', re.IGNORECASE)


@dataclass
class Group:
    device: str
    reason: str  # the first (oldest) reason of the group, verbatim
    count: int
    first_at: float
    last_at: float
    preview: str


def device_of(entry: dict[str, Any], devices: list[MqttDevice] | None = None) -> str:
    """Which device a dead letter came from, as a person names it."""
    preview = str(entry.get("preview") or "")
    eui = _EUI.search(preview)
    if eui:
        plain = re.sub(r"[:-]", "", eui.group(1)).lower()
        named = next(
            (d.sensor_id for d in devices or [] if re.sub(r"[:-]", "", d.dev_eui).lower() == plain),
            None,
        )
        return named or plain
    serial = _SERIAL.search(preview)
    if serial:
        return next(
            (d.sensor_id for d in devices or [] if d.serial == serial.group(1)), serial.group(1)
        )
    origin = str(entry.get("origin") or "unknown")
    if origin.startswith("http-push "):
        return origin.rsplit(" ", 1)[-1].lstrip("/") or origin
    return origin


def reason_key(reason: str) -> str:
    return _VARIABLE.sub("…", reason)


def group(entries: list[dict[str, Any]], devices: list[MqttDevice] | None = None) -> list[Group]:
    """``entries`` (any order) by device and kind of reason, the largest groups first."""
    groups: dict[tuple[str, str], Group] = {}
    for entry in sorted(entries, key=lambda e: e.get("seq", 0)):
        device, at = device_of(entry, devices), float(entry.get("created_at") or 0)
        key = (device, reason_key(str(entry.get("reason"))))
        found = groups.get(key)
        if found is None:
            groups[key] = Group(
                device, str(entry.get("reason")), 1, at, at, str(entry.get("preview") or "")
            )
        else:
            found.count += 1
            found.last_at = max(found.last_at, at)
    return sorted(groups.values(), key=lambda g: (-g.count, g.device))


def listing(
    entries: list[dict[str, Any]],
    devices: list[MqttDevice] | None = None,
    everything: list[dict[str, Any]] | None = None,
) -> list[str]:
    """The lines ``outbox list --dead`` prints.

    ``everything``: all dead letters, when ``entries`` are only the latest of
    them; a group then says how many of its own it shows ("50 shown of 676").
    """
    totals = {(g.device, reason_key(g.reason)): g.count for g in group(everything or [], devices)}
    lines = []
    for g in group(entries, devices):
        span = _when(g.first_at) if g.count == 1 else f"{_when(g.first_at)} .. {_when(g.last_at)}"
        total = totals.get((g.device, reason_key(g.reason)), g.count)
        count = f"{g.count} x" if total == g.count else f"{g.count} shown of {total} x"
        lines.append(
            f"{g.device}: {count} {g.reason}  ({span})\n    {' '.join(g.preview.split())[:200]}"
        )
    return lines


def not_understood_today(
    entries: list[dict[str, Any]], devices: list[MqttDevice] | None = None, now: float | None = None
) -> list[str]:
    """One line per device whose messages were dead-lettered since local midnight."""
    midnight = local_midnight(now)
    recent = [
        e
        for e in entries
        if float(e.get("created_at") or 0) >= midnight and e.get("origin") != "uplink"
    ]
    per_device: dict[str, list[Group]] = {}
    for g in group(recent, devices):
        per_device.setdefault(g.device, []).append(g)
    lines = []
    for device, groups in sorted(per_device.items()):
        count = sum(g.count for g in groups)
        first = min(groups, key=lambda g: g.first_at)
        noun = "message" if count == 1 else "messages"
        lines.append(f"{device}: {count} {noun} not understood today (first: {first.reason})")
    return lines


def local_midnight(now: float | None = None) -> float:
    today = time.localtime(now if now is not None else time.time())
    return time.mktime((today.tm_year, today.tm_mon, today.tm_mday, 0, 0, 0, 0, 0, -1))


def partly_decoded_today(events: list[dict[str, Any]]) -> list[str]:
    """One line per device whose LoRaWAN frames were decoded only in part (``Outbox.events_since``):
    their readings were stored, the rest of each frame went to the cloud as an event."""
    per_device: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        per_device.setdefault(event["sensor_id"], []).append(event)
    lines = []
    for device, found in sorted(per_device.items()):
        first = min(found, key=lambda e: e["queued_at"])
        undecoded = (first["values"].get("payload") or {}).get("undecoded") or {}
        noun = "frame" if len(found) == 1 else "frames"
        lines.append(
            f"{device}: {len(found)} LoRaWAN {noun} not fully understood today, the rest kept"
            f" as an event (first: {undecoded.get('model', '?')} frame"
            f" {undecoded.get('frame', '?')}, {undecoded.get('reason', '?')})"
        )
    return lines


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))
