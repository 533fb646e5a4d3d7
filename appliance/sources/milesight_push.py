"""Turn what Milesight AI sensors push (MQTT message or HTTP POST body) into Records.

One function of the bytes a device sent: :meth:`PushParser.parse` returns the
records to store, or a dead-letter entry saying why the message cannot be
read. It never raises for bad input, so one broken device cannot stop the
relay.

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
* Not JSON, not text, not an object, or a known report with unreadable values
  -> a dead-letter entry (origin, reason, preview).
* A message whose records the cloud would refuse (records.refusal: U+0000 or a
  lone surrogate anywhere, a sensor id over 256 characters, a time outside
  2000..2099, a final period in the future, counts beyond 64 bits, ...) -> one
  dead-letter entry naming the first problem; nothing of it is stored.

Time: a period or moment written with an explicit offset (``...+08:00``) is
taken as written. A naive wall time is converted with the device's own
``time_info.timezone`` / ``time_zone`` (``UTC+8:00``, ``UTC-3:30``,
``UTC+5:30 India Standard Time``) plus one hour when ``dst_status`` is true
(the zone names the standard offset; DST moves the wall clock forward), or with
an IANA zone if the field names one. Without any zone the bridge's timezone is
assumed. Epoch numbers (seconds or
milliseconds) are accepted too.

The record id is fixed by the contract (sensor_id|kind|period_start), so the
period start must come from the message itself for a re-published identical
message to map to the same record: periodic reports use ``start_time``,
trigger reports and events their own time (``time_info.time``,
``trigger_time``, ``report_time``, ``timestamp``, then ``end_time`` /
``start_time``; else a top-level ``timestamp``/``time``/``report_time`` that
reads as a time between 2000 and 2100). Only a message with no time at all is stamped with its
receive time; its first receive time is remembered per sensor and content
(:class:`FirstSeen`, kept as an outbox cursor in the same transaction as the
record), so a copy of it published again later maps to the same record too.

Sensor id: an ``[[mqtt.devices]]`` entry whose ``topic`` (an MQTT filter;
matched against the URL path for HTTP pushes) and/or ``serial`` match, else
``device_info.device_sn``, else the topic or path itself.

Lenient JSON (the vendor's own examples are annotated, not strict JSON). Accepted
and repaired: a UTF-8 byte order mark, NUL bytes after the document, ``//``
and ``/* */`` comments, trailing commas before ``}`` or ``]``, and a missing
comma between a value and a quoted key that starts the next line. Not
accepted (ambiguous, so dead-lettered): single-quoted strings, bare words like
``[Region1, Region2]``, NaN/Infinity. Snapshots (``snapshot*`` keys, base64
JPEG, HTTP only) are removed before anything is stored.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ..clock import parse_utc, plausible, utc_text
from ..config import MqttDevice
from ..errors import MessageError
from ..outbox import DeadEntry, Outbox
from ..records import (
    NonexistentLocalTime,
    Record,
    local_to_utc,
    refusal,
    sensor_id_problem,
)
from .lorawan.envelope import EnvelopeError, Uplink, read_envelope
from .lorawan.route import device_for, route

PREVIEW_CHARS = 1000
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
MOMENT_KEYS = ("time", "trigger_time", "report_time", "timestamp", "end_time", "start_time")
FIRST_SEEN_KIND = "first-seen:"


class BadMessage(MessageError):
    """The message cannot be turned into records; the text says what is wrong with it."""


@dataclass
class Parsed:
    """What one pushed message became."""

    records: list[Record] = field(default_factory=list)
    dead: list[DeadEntry] = field(default_factory=list)
    # Outbox cursors to commit with the records: first receive times of timeless messages.
    cursors: list[tuple[str, str, str]] = field(default_factory=list)
    # Where it came from and what it looked like, for a dead letter made later (at commit).
    origin: str = ""
    body: bytes = b""

    @property
    def preview(self) -> str:
        """What a person sees of the message in a dead letter: worked out only when one is made,
        from the body, without snapshot images."""
        try:
            payload = strip_snapshots(decode_payload(self.body))
        except Exception:  # unreadable: its text, or hex when it is binary
            return preview(self.body)
        return preview(json.dumps(payload, separators=(",", ":")).encode())


# ---------------------------------------------------------------- bytes -> JSON object


def _relaxed(text: str) -> str:
    """``text`` with the accepted leniencies repaired (comments, trailing and missing commas)."""
    out: list[str] = []
    last = ""  # last significant character outside strings and comments
    comma_at = -1  # index in out of a comma that may turn out to be trailing
    newline_since_value = False
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            if newline_since_value and (last in '"}]' or last.isalnum()):
                out.append(",")  # `"a": 1 <newline> "b": 2`, as in the vendor's examples
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            last, newline_since_value, i = '"', False, j + 1
            continue
        if text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        if text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise BadMessage("not JSON: unterminated /* comment")
            i = end + 2
            continue
        if c in " \t\r\n":
            newline_since_value |= c == "\n"
            out.append(c)
            i += 1
            continue
        if c in "}]" and last == "," and comma_at >= 0:
            out[comma_at] = ""
        if c == ",":
            comma_at = len(out)
        out.append(c)
        last, newline_since_value = c, False
        i += 1
    return "".join(out)


def _no_constants(name: str) -> Any:
    raise BadMessage(f"not JSON: {name} is not a number")


def _finite(text: str) -> float:
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise BadMessage(f"not JSON the cloud accepts: {text} is out of range")
    return value


def decode_payload(body: bytes) -> dict[str, Any]:
    """The JSON object in ``body``; raises :class:`BadMessage` naming what is wrong."""
    if not body or not body.strip(b"\x00 \t\r\n"):
        raise BadMessage("empty message")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadMessage(
            f"binary, not UTF-8 text (byte {exc.start} is 0x{body[exc.start]:02x})"
        ) from None
    text = text.lstrip("\ufeff").rstrip("\x00 \t\r\n")
    try:
        payload = json.loads(text, parse_constant=_no_constants, parse_float=_finite)
    except BadMessage:
        raise
    except json.JSONDecodeError as strict_error:
        try:
            payload = json.loads(_relaxed(text), parse_constant=_no_constants, parse_float=_finite)
        except BadMessage:
            raise
        except json.JSONDecodeError:
            raise BadMessage(_json_problem(text, strict_error)) from None
        except (RecursionError, ValueError) as exc:
            raise BadMessage(f"not JSON this bridge reads: {_why(exc)}") from None
    except (RecursionError, ValueError) as exc:  # nesting; Python's 4300-digit limit on integers
        raise BadMessage(f"not JSON this bridge reads: {_why(exc)}") from None
    if not isinstance(payload, dict):
        raise BadMessage(f"expected a JSON object, got {type(payload).__name__}")
    return payload


def _json_problem(text: str, error: json.JSONDecodeError) -> str:
    """What a person fixes: the vendor's examples fail on bare words and typographic quotes."""
    at = f"at byte {len(text[: error.pos].encode())} (line {error.lineno} column {error.colno})"
    curly = re.compile("[\u201c\u201d\u2018\u2019]")
    quote = curly.match(text, error.pos)
    if quote is None and error.msg.startswith("Unterminated string"):
        quote = curly.search(text, error.pos)  # a string closed by a typographic quote runs on
    if quote is not None:
        return (
            f"not JSON: typographic quote {quote.group()} at byte {len(text[: quote.start()].encode())};"
            " JSON needs straight quotes"
        )
    word = re.match(r"[A-Za-z_][\w.-]*", text[error.pos :])
    if word and word.group() not in ("true", "false", "null"):
        inside = "in array " if text[: error.pos].rstrip().endswith(("[", ",")) else ""
        return f"not JSON: bare word {word.group()} {inside}{at}; text needs quotes"
    return f"not JSON: {error.msg} {at}"


def _why(exc: BaseException) -> str:
    return "nested too deeply" if isinstance(exc, RecursionError) else str(exc)


def strip_snapshots(node: Any) -> Any:
    """``node`` without any ``snapshot*`` key at any depth (images never leave the bridge)."""
    if isinstance(node, dict):
        return {
            k: strip_snapshots(v)
            for k, v in node.items()
            if not str(k).lower().startswith("snapshot")
        }
    if isinstance(node, list):
        return [strip_snapshots(v) for v in node]
    return node


def may_hold_snapshots(body: bytes) -> bool:
    """Whether ``body`` can hold a ``snapshot*`` key: it would be written out in ASCII letters
    unless escaped, so most messages are let through without walking them."""
    return b"\\u" in body or b"snapshot" in body.lower()


def preview(body: bytes) -> str:
    """What a person sees of an unreadable message: its text, or hex when it is binary."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return f"hex ({len(body)} bytes): " + body[: PREVIEW_CHARS // 2].hex(" ")
    return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS] + f"... ({len(body)} bytes)"


def _ci(node: Any) -> dict[str, Any]:
    """A dict's keys lower-cased (firmware spells ``max_counted`` and ``Max_counted``)."""
    if not isinstance(node, dict):
        return {}
    folded: dict[str, Any] = {}
    for key, value in node.items():
        folded.setdefault(str(key).lower(), value)
    return folded


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


# ---------------------------------------------------------------- time


# A date with one-digit month or day, or slashes: "2022/1/5", "2022-1-05"; the rest is ISO 8601.
_DATE = re.compile(r"^(\d{4})([/-])(\d{1,2})\2(\d{1,2})(?!\d)")
_OFFSET = re.compile(r"^\s*(?:UTC|GMT)?\s*([+-])\s*(\d{1,2})(?::?(\d{2}))?(?!\d)", re.IGNORECASE)
_BARE_UTC = re.compile(r"^\s*(?:UTC|GMT|Z)(?:\s|$|\()", re.IGNORECASE)


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def device_zone(time_info: dict[str, Any]) -> timedelta | ZoneInfo | None:
    """The device's clock: a UTC offset from ``timezone``/``time_zone`` plus ``dst_status``, an
    IANA zone if it names one (``Asia/Shanghai``), or None when the message does not say."""
    zone = time_info.get("timezone", time_info.get("time_zone"))
    if zone is None or zone == "":
        return None
    text = str(zone)
    if "/" in text and not _OFFSET.match(text):
        try:
            return ZoneInfo(text.strip())
        except (ValueError, OSError, KeyError):
            raise BadMessage(
                f"time_info.timezone: {text!r} is not a UTC offset or a known zone"
            ) from None
    match = _OFFSET.match(text)
    if match:
        sign, hours, minutes = match.group(1), int(match.group(2)), int(match.group(3) or 0)
        if hours > 14 or minutes >= 60:
            raise BadMessage(f"time_info.timezone: {text!r} is not a UTC offset")
        offset = timedelta(hours=hours, minutes=minutes) * (-1 if sign == "-" else 1)
    elif _BARE_UTC.match(text):
        offset = timedelta(0)
    else:
        raise BadMessage(f"time_info.timezone: {text!r} is not a UTC offset like UTC+8:00")
    if _truthy(time_info.get("dst_status")):
        offset += timedelta(hours=1)
    return offset


class _Clock:
    """Reads a message's times and turns them into UTC, by the rules in the module docstring."""

    def __init__(self, top: dict[str, Any], default_zone: ZoneInfo) -> None:
        self.top = top
        self.times = _ci(top.get("time_info"))
        clock = device_zone(self.times or top)
        self.offset = clock if isinstance(clock, timedelta) else None
        self.zone = clock if isinstance(clock, ZoneInfo) else default_zone

    def read(self, key: str, value: Any = None) -> datetime | None:
        value = self.times.get(key) if value is None else value
        if value is None or value == "":
            return None
        where = f"time_info.{key}"
        if isinstance(value, int | float) and not isinstance(value, bool):
            seconds = value / 1000 if value > 1e11 else value
            try:
                return datetime.fromtimestamp(seconds, UTC).replace(microsecond=0)
            except (OverflowError, OSError, ValueError):
                raise BadMessage(f"{where}: {value!r} is not a time") from None
        if not isinstance(value, str):
            raise BadMessage(f"{where}: expected a time, got {value!r}")
        text = value.strip()
        # "2022/12/20 18:15:52" (VS121) and ISO 8601 with or without an offset (VS1xx counters)
        date = _DATE.match(text)
        candidate = text
        if date is not None:
            year, month, day = date.group(1, 3, 4)
            candidate = f"{year}-{int(month):02d}-{int(day):02d}{text[date.end() :]}"
        try:
            moment = datetime.fromisoformat(candidate)
        except ValueError:
            raise BadMessage(f"{where}: cannot read {text!r} as a time") from None
        if moment.tzinfo is not None:
            return moment.astimezone(UTC).replace(microsecond=0)
        moment = moment.replace(microsecond=0)
        if self.offset is not None:
            return (moment - self.offset).replace(tzinfo=UTC)
        try:
            return local_to_utc(moment, self.zone)
        except NonexistentLocalTime as exc:
            raise BadMessage(f"{where}: {exc}") from None

    def period(self) -> tuple[datetime, datetime] | None:
        start, end = self.read("start_time"), self.read("end_time")
        if start is None or end is None:
            return None
        if end < start:
            raise BadMessage(
                f"time_info: end_time {utc_text(end)} is before start_time {utc_text(start)}"
            )
        return start, end

    def moment(self) -> datetime | None:
        for key in MOMENT_KEYS:
            found = self.read(key)
            if found is not None:
                return found
        # Outside time_info, a "time" may be anything (a duration, a label): used only if it is one.
        for key in ("timestamp", "time", "report_time"):
            try:
                found = self.read(key, self.top.get(key))
            except BadMessage:
                continue
            if found is not None and plausible(found):
                return found
        return None


# ---------------------------------------------------------------- who sent it, and when first


def topic_matches(pattern: str, topic: str) -> bool:
    """MQTT filter matching (``+`` one level, ``#`` the rest), without importing paho."""
    pattern_levels, topic_levels = pattern.split("/"), topic.split("/")
    for i, level in enumerate(pattern_levels):
        if level == "#":
            return True
        if i >= len(topic_levels) or (level != "+" and level != topic_levels[i]):
            return False
    return len(pattern_levels) == len(topic_levels)


class FirstSeen:
    """When a message that carries no time of its own was first received.

    Kept in memory (bounded) and in the outbox as a cursor ``first-seen:<digest>``
    per sensor, written in the same transaction as the message's records, so a
    redelivered or re-published copy gets the same period, and so the same id.
    """

    def __init__(self, outbox: Outbox | None = None, keep: int = 50_000) -> None:
        self.outbox = outbox
        self.keep = keep
        self._memory: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._lock = threading.Lock()

    def moment(
        self, sensor_id: str, digest: str, now: datetime
    ) -> tuple[datetime, list[tuple[str, str, str]]]:
        """The message's stamp, and the cursor to commit with it when it is new."""
        key, kind = (sensor_id, digest), FIRST_SEEN_KIND + digest
        with self._lock:
            known = self._memory.get(key)
            if known is None and self.outbox is not None:
                known = self.outbox.cursor(sensor_id, kind)
            fresh = known is None
            if fresh:
                known = utc_text(now)
            self._memory[key] = known
            self._memory.move_to_end(key)
            while len(self._memory) > self.keep:
                self._memory.popitem(last=False)
        return parse_utc(known), ([(sensor_id, kind, known)] if fresh else [])


# ---------------------------------------------------------------- the parser


class PushParser:
    """Pushed bytes -> records; one instance serves every MQTT message and HTTP post."""

    def __init__(
        self,
        devices: list[MqttDevice] | None = None,
        default_zone: str = "UTC",
        first_seen: FirstSeen | None = None,
    ) -> None:
        self.devices = list(devices or [])
        self.zone = ZoneInfo(default_zone)
        self.first_seen = first_seen or FirstSeen()

    def sensor_for(self, topic: str, serial: str) -> str:
        for device in self.devices:
            if device.topic and not topic_matches(device.topic, topic):
                continue
            if device.serial and device.serial != serial:
                continue
            return device.sensor_id
        return serial or topic

    def parse(
        self, body: bytes, *, source: str, topic: str, origin: str, received_at: datetime
    ) -> Parsed:
        """Records for one message, or one dead-letter entry; never raises for bad input.

        The records pass the outbox's door here already (with the bridge's clock, like the outbox),
        so the dead letter carries the message's origin and the device hears why."""
        try:
            payload = decode_payload(body)
            if may_hold_snapshots(body):
                payload = strip_snapshots(payload)
            parsed = self._records(payload, source, topic, received_at)
            problem = next(filter(None, (refusal(r) for r in parsed.records)), None)
            if problem is not None:
                raise BadMessage(problem)
        except Exception as exc:  # a bug must not turn a message into one redelivered forever
            reason = (
                str(exc)
                if isinstance(exc, MessageError)  # its text says what is wrong
                else f"cannot be read ({type(exc).__name__}: {exc})"
            )
            parsed = Parsed(body=body)
            parsed.dead = [DeadEntry(origin, reason, parsed.preview)]
        parsed.origin, parsed.body = origin, body
        return parsed

    def _records(
        self, payload: dict[str, Any], source: str, topic: str, received_at: datetime
    ) -> Parsed:
        try:
            uplink = read_envelope(payload)
        except EnvelopeError as exc:
            raise BadMessage(f"LoRaWAN uplink: {exc}") from None
        if uplink is not None:
            return self._uplink(uplink, payload, source, received_at)
        top = _ci(payload)
        serial = _ci(top.get("device_info")).get("device_sn")
        serial = "" if serial is None or isinstance(serial, dict | list) else str(serial).strip()
        sensor_id = self.sensor_for(topic, serial) or "unknown"
        if problem := sensor_id_problem(sensor_id):  # before it is looked up in the outbox
            raise BadMessage(f"{problem} (from device_info.device_sn or the topic)")
        clock = _Clock(top, self.zone)
        period = clock.period()
        moment = clock.moment()
        parsed = Parsed()
        when = received_at.replace(microsecond=0)
        if moment is None and period is None:
            import hashlib  # here, not at the top: OpenSSL's libcrypto costs the watchdog 3.7 MB

            digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]
            when, parsed.cursors = self.first_seen.moment(sensor_id, digest, when)
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

    def _uplink(
        self, uplink: Uplink, payload: dict[str, Any], source: str, received_at: datetime
    ) -> Parsed:
        """A LoRaWAN uplink (UG6x, ChirpStack, The Things Stack): decoded and mapped by sources/lorawan."""
        parsed = Parsed()
        when = received_at.replace(microsecond=0)
        if uplink.time is None:  # dated by its first arrival, like any timeless message
            device = device_for(self.devices, uplink.dev_eui)
            sensor_id = device.sensor_id if device else uplink.dev_eui
            import hashlib  # here, not at the top: OpenSSL's libcrypto costs the watchdog 3.7 MB

            digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]
            when, parsed.cursors = self.first_seen.moment(sensor_id, digest, when)
        parsed.records = route(uplink, self.devices, at=when, source=source, observed=when).records
        observed = received_at.replace(microsecond=0)
        parsed.records = [replace(r, observed_at=observed) for r in parsed.records]
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
        line = _ci(raw)
        if not line:
            raise BadMessage(f"{section}[{index - 1}]: expected an object, got {raw!r}")
        label = _label(
            line.get("line", line.get("line_number", line.get("line_id", index))),
            f"{section}[{index - 1}].line",
        )
        counts = _ci(line.get("total")) or line
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
