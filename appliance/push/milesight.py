"""The Milesight JSON format: what Milesight AI sensors (VS121, VS125, VS13x...) push as reports.

What becomes what:

* ``current_total`` (VS121-P and relatives) -> ``occupancy``: ``current_total``,
  ``max`` (``max_counted`` in any key case, else null) and ``regions`` keyed by
  ``numbering_regions`` with the ``current_counted`` values (empty when absent).
  A report with ``time_info.start_time`` and ``end_time`` covers that period; a
  trigger report is a snapshot at its own time (start == end). Both are final.
* ``line_periodic_data`` (VS125/VS133/VS135 people counters) -> ``line_counts``
  for the report's period: per line ``total.in``/``total.out`` (or flat
  ``in``/``out``), keyed by ``line``; ``total`` is the sum over the lines. Group
  (staff) counts are ignored.
* ``line_total_data`` (VS125 and relatives: running totals since the device's
  daily reset) -> ``line_totals``, shaped like ``line_counts``, a snapshot at the
  report's end (or its own time): the day's figure even when periodic reports
  were missed.
* ``occupancy`` flags and ``regions_name`` (VS121-P "Occupancy Status") ->
  the occupancy reading's ``occupied`` (region -> true/false) and
  ``region_names``, keyed like ``regions``.
* Anything else that is a JSON object -> ``event`` with ``{"event": <its
  "event" field or "unknown">, "payload": <the object>}``. That includes line
  *trigger* reports: a snapshot ``line_counts`` at the trigger's second would
  take the id of the periodic record that starts in the same second (the id is
  sensor|kind|period_start), and the periodic report is the count to rely on.
  A message that maps to records but also carries sections not mapped above
  (region or dwell data, ...) is additionally kept whole as an ``event``, so
  nothing a device said is dropped.
* A known report with unreadable values -> BadMessage (dead-lettered).

Being the catch-all, this format comes last in ``formats.FORMATS``. Times:
device_time.py; sensor id (``device_info.device_sn``, else the topic) and
first-seen stamps: sender.py.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..records import Record, sensor_id_problem
from .device_time import DeviceClock
from .format import Parsed, PushFormat
from .json_text import folded
from .message import BadMessage, Pushed
from .sender import Senders

# Keys every Milesight report carries around its data; they never make a message "unmapped".
ENVELOPE = {"event", "report_type", "device_info", "time_info", "network_info"}
OCCUPANCY_KEYS = {
    "current_total",
    "max_counted",
    "total_mapped_regions",
    "numbering_regions",
    "current_counted",
    "occupancy",
    "regions_name",
}


class MilesightJson(PushFormat):
    """Reports of Milesight's AI sensors; any other JSON object becomes an ``event``."""

    name = "milesight"

    def accepts(self, payload: dict[str, Any]) -> bool:
        return True  # the catch-all: what no other format took is kept as an event

    def parse(self, message: Pushed, senders: Senders) -> Parsed:
        payload, source, received_at = message.payload, message.source, message.received_at
        top = folded(payload)
        serial = folded(top.get("device_info")).get("device_sn")
        serial = "" if serial is None or isinstance(serial, dict | list) else str(serial).strip()
        sensor_id = senders.sensor_for(message.topic, serial) or "unknown"
        if problem := sensor_id_problem(sensor_id):  # before it is looked up in the outbox
            raise BadMessage(f"{problem} (from device_info.device_sn or the topic)")
        clock = DeviceClock(top, message.zone)
        period = clock.period()
        moment = clock.moment()
        parsed = Parsed()
        when = received_at.replace(microsecond=0)
        if moment is None and period is None:
            when, parsed.cursors = senders.first_stamp(sensor_id, payload, when)
        # A snapshot's time: the message's own moment, else (timeless) its first receive time.
        at = moment or when
        span = period or (at, at)
        observed = received_at.replace(microsecond=0)

        def record(
            kind: str, start_end: tuple[datetime, datetime], values: dict[str, Any]
        ) -> Record:
            return Record(
                sensor_id, kind, start_end[0], start_end[1], values, True, source, observed
            )

        consumed: set[str] = set()
        if "current_total" in top:
            parsed.records.append(record("occupancy", span, _occupancy(top)))
            consumed |= OCCUPANCY_KEYS
        if "line_periodic_data" in top:
            parsed.records.append(
                record("line_counts", span, _line_counts(top["line_periodic_data"]))
            )
            consumed.add("line_periodic_data")
        if "line_total_data" in top:  # running totals as of the report's end: a snapshot then
            totals = _line_counts(top["line_total_data"], "line_total_data")
            parsed.records.append(record("line_totals", (span[1], span[1]), totals))
            consumed.add("line_total_data")
        unmapped = [key for key in top if key not in ENVELOPE and key not in consumed]
        if not parsed.records or unmapped:
            name = top.get("event")
            name = name if isinstance(name, str) and name.strip() else "unknown"
            parsed.records.append(record("event", span, {"event": name, "payload": payload}))
        return parsed


def _occupancy(top: dict[str, Any]) -> dict[str, Any]:
    total = _count(top["current_total"], "current_total")
    peak = top.get("max_counted")
    counted = top.get("current_counted")
    numbers = top.get("numbering_regions")
    regions: dict[str, int] = {}
    if counted is not None:
        if not isinstance(counted, list):
            raise BadMessage(f"current_counted: expected a list of counts, got {counted!r}")
        if numbers is None:
            numbers = list(range(1, len(counted) + 1))
        if not isinstance(numbers, list) or len(numbers) != len(counted):
            raise BadMessage(
                f"numbering_regions {numbers!r} does not match current_counted {counted!r}"
            )
        for number, value in zip(numbers, counted, strict=True):
            label = _label(number, "numbering_regions")
            regions[label] = _count(value, f"current_counted[{label}]")
    values: dict[str, Any] = {
        "current_total": total,
        "max": None if peak is None else _count(peak, "max_counted"),
        "regions": regions,
    }
    values.update(_region_flags(top))
    return values


def _region_flags(top: dict[str, Any]) -> dict[str, Any]:
    """``occupied`` (region -> true/false) from ``occupancy`` and ``region_names`` from
    ``regions_name``, keyed like ``regions``: by ``numbering_regions``, else 1, 2, ..."""
    extra: dict[str, Any] = {}
    for key, name, read in (
        ("occupancy", "occupied", _flag),
        ("regions_name", "region_names", _name),
    ):
        items = top.get(key)
        if items is None:
            continue
        if not isinstance(items, list):
            raise BadMessage(f"{key}: expected a list, got {items!r}")
        numbers = top.get("numbering_regions")
        if not isinstance(numbers, list) or len(numbers) != len(items):
            numbers = list(range(1, len(items) + 1))
        extra[name] = {
            _label(n, "numbering_regions"): read(v, f"{key}[{i}]")
            for i, (n, v) in enumerate(zip(numbers, items, strict=True))
        }
    return extra


def _flag(value: Any, where: str) -> bool:
    """An occupancy flag: 1/0, true/false, or the words the vendor's decoders print."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("occupied", "vacant", "free", "1", "0"):
        return value.strip().lower() in ("occupied", "1")
    raise BadMessage(f"{where}: expected 1 (occupied) or 0 (vacant), got {value!r}")


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str | int) or isinstance(value, bool) or str(value).strip() == "":
        raise BadMessage(f"{where}: expected a region name, got {value!r}")
    return str(value).strip()


def _line_counts(lines: Any, section: str = "line_periodic_data") -> dict[str, Any]:
    if isinstance(lines, dict):
        lines = [lines]
    if not isinstance(lines, list) or not lines:
        raise BadMessage(f"{section}: expected a list of lines, got {lines!r}")
    per_line: dict[str, dict[str, int]] = {}
    for index, raw in enumerate(lines, start=1):
        line = folded(raw)
        if not line:
            raise BadMessage(f"{section}[{index - 1}]: expected an object, got {raw!r}")
        label = _label(
            line.get("line", line.get("line_number", line.get("line_id", index))),
            f"{section}[{index - 1}].line",
        )
        counts = folded(line.get("total")) or line
        where = f"{section}[{index - 1}]"
        per_line[label] = {
            "in": _count(counts.get("in", counts.get("in_counted")), f"{where}.in"),
            "out": _count(counts.get("out", counts.get("out_counted")), f"{where}.out"),
        }
    return {
        "total": {
            "in": sum(c["in"] for c in per_line.values()),
            "out": sum(c["out"] for c in per_line.values()),
        },
        "lines": per_line,
    }


def _count(value: Any, where: str) -> int:
    """A count as the contract wants it: an integer >= 0 (``"12"`` and ``12.0`` are fine)."""
    number: Any = value
    if isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    if isinstance(number, float) and number.is_integer():
        number = int(number)
    if isinstance(number, bool) or not isinstance(number, int) or number < 0:
        raise BadMessage(f"{where}: expected a count >= 0, got {value!r}")
    return number


def _label(value: Any, where: str) -> str:
    """A region or line number as a values key: ``1`` and ``"1"`` both become ``"1"``."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int | str) or str(value).strip() == "":
        raise BadMessage(f"{where}: expected a number or name, got {value!r}")
    return str(value).strip()
