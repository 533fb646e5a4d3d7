"""A reading as the cloud sees it: one sensor, one kind, one period.

Every source (polled cameras, pushed MQTT/HTTP reports) turns what a device
said into Records; the outbox stores them and the uplink sends them as the
ingest contract's record objects. The id depends only on
``sensor_id|kind|period_start``, so reading the same period twice can never
create a second reading in the cloud.

Everything leaving this module is UTC with a ``Z`` (appliance/clock.py writes
and reads the stamps), and a camera's local wall-clock time is turned into UTC
explicitly, DST gap and repeated hour included.

The door is here as well: :func:`contract_problem` says why the cloud would
refuse a record object (docs/ingest-contract.md plus what the cloud's
PostgreSQL can store), and :func:`refusal` applies it to a Record. The outbox
runs it on everything it is given, so nothing the cloud refuses is ever queued.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property, lru_cache
from typing import Any
from zoneinfo import ZoneInfo

# The time rules are the clock's; importers of these names from here keep working.
from .clock import EARLIEST, LATEST, UTC_TEXT_PATTERN, now_utc, parse_utc, utc_text
from .errors import BridgeError
from .kinds import KINDS, TABLE

SOURCES = ("poll", "mqtt", "http-push")


def record_id(sensor_id: str, kind: str, period_start: str) -> str:
    """The contract's id: SHA-256 of ``sensor_id|kind|period_start`` as sent."""
    import hashlib  # here, not at the top: OpenSSL's libcrypto costs the watchdog 3.7 MB

    return hashlib.sha256(f"{sensor_id}|{kind}|{period_start}".encode()).hexdigest()


class NonexistentLocalTime(BridgeError, ValueError):
    """A wall-clock time that did not happen (skipped by a DST spring-forward)."""


def local_to_utc(wall: datetime, zone: ZoneInfo, *, later: bool = False) -> datetime:
    """Turn a camera's naive local wall time into UTC.

    A time inside the spring-forward gap never happened on that clock, so it
    raises :class:`NonexistentLocalTime` instead of silently shifting by an
    hour. A time in the repeated fall-back hour is ambiguous; ``later=False``
    (the default) picks its first occurrence, ``later=True`` its second. Both
    period starts and exclusive period ends take the first occurrence, so the
    camera's one row for the repeated wall-clock hour spans both real hours and
    the periods around it stay contiguous.
    """
    if wall.tzinfo is not None:
        raise ValueError("local_to_utc wants a naive wall-clock time")
    first = wall.replace(tzinfo=zone, fold=0)
    second = wall.replace(tzinfo=zone, fold=1)
    for candidate in (first, second):
        back = candidate.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
        if back != wall:
            raise NonexistentLocalTime(f"{wall:%Y-%m-%d %H:%M:%S} does not exist in {zone.key}")
    chosen = second if later else first
    return chosen.astimezone(UTC)


@dataclass(frozen=True)
class Record:
    """One reading: what ``sensor_id`` measured of ``kind`` over a period.

    ``period_end`` is exclusive. ``final`` says the sensor will not change the
    period again. ``revision`` is assigned by the outbox (a later send of the
    same id carries a higher one), so sources leave it at 1.
    """

    sensor_id: str
    kind: str
    period_start: datetime
    period_end: datetime
    values: dict[str, Any]
    final: bool
    source: str
    observed_at: datetime = field(default_factory=now_utc)
    revision: int = 1

    def __post_init__(self) -> None:
        if not self.sensor_id:
            raise ValueError("a record needs a sensor_id")
        if self.kind not in KINDS:
            raise ValueError(f"kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.source not in SOURCES:
            raise ValueError(f"source {self.source!r} is not one of {', '.join(SOURCES)}")
        for name in ("period_start", "period_end", "observed_at"):
            if getattr(self, name).tzinfo is None:
                raise ValueError(f"{name} must be timezone-aware")
        if self.period_end < self.period_start:
            raise ValueError("period_end is before period_start")
        if self.revision < 1:
            raise ValueError("revision must be >= 1")

    # Worked out once per reading (a Record never changes): the relay checks and stores
    # thousands a second, and each is looked at by the parser, the door and the outbox.
    @property
    def id(self) -> str:
        return self._wire["id"]

    @cached_property
    def _wire(self) -> dict[str, Any]:
        start = utc_text(self.period_start)
        return {
            "id": record_id(self.sensor_id, self.kind, start),
            "sensor_id": self.sensor_id,
            "kind": self.kind,
            "period_start": start,
            "period_end": utc_text(self.period_end),
            "final": self.final,
            "revision": self.revision,
            "source": self.source,
            "observed_at": utc_text(self.observed_at),
            "values": self.values,
        }

    def wire(self) -> dict[str, Any]:
        """The contract's record object (docs/ingest-contract.md); a new dict each call."""
        return dict(self._wire)

    @cached_property
    def shape_problem(self) -> str | None:
        """Why the cloud would refuse this reading whatever the clock says, or None."""
        if problem := sensor_id_problem(self.sensor_id):
            return problem  # before wire(): the id is a hash of the sensor id's UTF-8
        try:
            return _shape_problem(self._wire)
        except Exception as exc:  # a record that cannot even be written out is refused
            return f"cannot be written as a record ({type(exc).__name__}: {exc})"


def snapshot_period(moment: datetime) -> tuple[datetime, datetime]:
    """A snapshot's period: start == end == the sample time, to the second."""
    moment = moment.astimezone(UTC).replace(microsecond=0)
    return moment, moment


ONE_SECOND = timedelta(seconds=1)


# ---------------------------------------------------------------- the door

RECORD_FIELDS = (
    "id",
    "sensor_id",
    "kind",
    "period_start",
    "period_end",
    "final",
    "revision",
    "source",
    "observed_at",
    "values",
)
SENSOR_ID_MAX = 256  # bridge_record_error() in the cloud's migration: 1..256 characters
BIGINT = (-(2**63), 2**63 - 1)  # PostgreSQL bigint: revision, and what a reader casts counts to
VALUES_MAX_BYTES = (
    256 * 1024
)  # one record must fit a batch the cloud accepts (4 MB) many times over
NESTING_MAX = 32
# A period a device calls final cannot end later than now; devices' clocks drift a little.
FINAL_FUTURE_GRACE = timedelta(minutes=10)
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
# PostgreSQL text and jsonb cannot hold U+0000; UTF-8 (SQLite, PostgreSQL) cannot hold a lone surrogate.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored as text (NUL, lone surrogate), or None."""
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    char = found.group()
    what = "U+0000 (NUL)" if char == "\x00" else f"a lone surrogate U+{ord(char):04X}"
    return f"contains {what} at character {found.start()}, which the cloud cannot store"


def shown(text: str, limit: int = 40) -> str:
    """``text`` quoted for a reason: ASCII only, so a message about bad text is itself storable."""
    quoted = json.dumps(text)
    return quoted if len(quoted) <= limit else quoted[: limit - 4] + '..."'


def _plain_json(node: Any, depth: int = 0) -> bool:
    """True when ``node`` is certainly JSON the cloud stores; False sends it to
    :func:`_json_problem` for the exact reason. The relay checks every reading it commits,
    so this common case is kept to exact-type tests, inline for leaves, building no names."""
    kind = type(node)
    if kind is dict:
        if depth >= NESTING_MAX:
            return False
        for key, value in node.items():
            if type(key) is not str or _UNSTORABLE.search(key) is not None:
                return False
            if not _plain_leaf(value) and not _plain_json(value, depth + 1):
                return False
        return True
    if kind is list:
        if depth >= NESTING_MAX:
            return False
        return all(_plain_leaf(value) or _plain_json(value, depth + 1) for value in node)
    return _plain_leaf(node)


def _plain_leaf(value: Any) -> bool:
    kind = type(value)
    if kind is str:
        return _UNSTORABLE.search(value) is None
    if kind is int:
        return BIGINT[0] <= value <= BIGINT[1]
    if kind is bool or value is None:
        return True
    return kind is float and math.isfinite(value)


def _json_problem(node: Any) -> str | None:
    """Why ``node`` is not JSON the cloud stores: types, text, integer range, depth."""
    stack: list[tuple[Any, str, int]] = [(node, "record", 0)]
    while stack:
        item, where, depth = stack.pop()
        if depth > NESTING_MAX:
            return f"{where}: nested deeper than {NESTING_MAX} levels"
        if item is None or isinstance(item, bool):
            continue
        if isinstance(item, str):
            if problem := text_problem(item):
                return f"{where}: {problem}"
        elif isinstance(item, int):
            if not BIGINT[0] <= item <= BIGINT[1]:
                return f"{where}: an integer of {item.bit_length()} bits is beyond the cloud's 64-bit integers"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return f"{where}: {item} is not a JSON number"
        elif isinstance(item, dict):
            for key, value in item.items():
                if not isinstance(key, str):
                    return f"{where}: key {type(key).__name__} is not a string"
                if problem := text_problem(key):
                    return f"{where}: key {shown(key)} {problem}"
                name = key if _PLAIN_KEY.match(key) else shown(key)
                stack.append((value, name if where == "record" else f"{where}.{name}", depth + 1))
        elif isinstance(item, list | tuple):
            stack.extend((value, f"{where}[{i}]", depth + 1) for i, value in enumerate(item))
        else:
            return f"{where}: a {type(item).__name__} is not JSON"
    return None


def _moment_problem(name: str, text: Any, whole_seconds: bool = False) -> str | None:
    """Why ``text`` is not RFC 3339 UTC (``Z``, four-digit year, a real date) within 2000..2099."""
    if isinstance(text, str) and len(text) <= 30:  # as long as a stamp can be: worth remembering
        return _stamp_problem(name, text, whole_seconds)
    return _stamp_problem.__wrapped__(name, str(text), whole_seconds)


@lru_cache(maxsize=1024)  # readings of one period share their stamps, and a batch its observed_at
def _stamp_problem(name: str, text: str, whole_seconds: bool) -> str | None:
    match = UTC_TEXT_PATTERN.match(text)
    if match is None or (whole_seconds and match.group(7)):
        precision = " and whole seconds" if whole_seconds else ""
        return f"{name}: must be RFC 3339 UTC with Z{precision}, e.g. 2025-07-22T09:00:00Z, not {shown(text)}"
    year, month, day, hour, minute, second = map(int, match.group(1, 2, 3, 4, 5, 6))
    try:
        moment = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        return f"{name}: {text} is not a real date and time"
    if not EARLIEST <= moment < LATEST:
        return f"{name}: {text} is not a plausible time (years {EARLIEST.year}..{LATEST.year - 1})"
    return None


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= BIGINT[1]


def _count_map(value: Any, per_entry: Any) -> bool:
    return isinstance(value, dict) and all(k != "" and per_entry(v) for k, v in value.items())


def _in_out(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and set(value) == {"in", "out"}
        and _count(value["in"])
        and _count(value["out"])
    )


def _number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and abs(value) <= BIGINT[1]
    )


def _dwell(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and set(value) == {"avg", "max"}
        and _count(value["avg"])
        and _count(value["max"])
    )


def _ambience_problem(v: dict[str, Any]) -> str | None:
    if not v:
        return "values: ambience needs at least one measurement"
    if unknown := sorted(set(v) - TABLE["ambience"].allowed):
        return f"values: ambience does not know {', '.join(shown(k) for k in unknown)}"
    if bad := sorted(k for k, x in v.items() if not _number(x)):
        return f"values.{bad[0]}: must be a finite number"
    return None


def _occupancy_extras_problem(v: dict[str, Any]) -> str | None:
    if "occupied" in v and not _count_map(v["occupied"], lambda x: isinstance(x, bool)):
        return "values.occupied: must map each region to true or false"
    if "region_names" in v and not _count_map(
        v["region_names"], lambda x: isinstance(x, str) and x != ""
    ):
        return "values.region_names: must map each region to a non-empty name"
    return None


def values_problem(kind: str, v: Any) -> str | None:
    """Why ``v`` is not the contract's ``values`` for ``kind`` (counts: integers >= 0), or None."""
    if not isinstance(v, dict):
        return "values: must be an object"
    spec = TABLE[kind]
    if spec.measurements:
        return _ambience_problem(v)
    required, optional = spec.required, spec.optional
    if not required <= set(v) <= spec.allowed:
        extra = f" (optionally {', '.join(sorted(optional))})" if optional else ""
        return f"values: {kind} needs exactly the keys {', '.join(sorted(required))}{extra}"
    if kind in ("line_counts", "line_totals") and not _in_out(v["total"]):
        return 'values.total: must be {"in": int >= 0, "out": int >= 0}'
    if kind in ("line_counts", "line_totals") and not _count_map(v["lines"], _in_out):
        return 'values.lines: must map each line to {"in": int >= 0, "out": int >= 0}'
    if kind == "live_counts" and not all(_count(x) for x in v.values()):
        return "values: in, out, sum and capacity must be ints >= 0"
    if kind == "occupancy" and not _count(v["current_total"]):
        return "values.current_total: must be an int >= 0"
    if kind == "occupancy" and v["max"] is not None and not _count(v["max"]):
        return "values.max: must be an int >= 0 or null"
    if kind in ("region_counts", "occupancy") and not _count_map(v["regions"], _count):
        return "values.regions: must map each region to an int >= 0"
    if kind == "occupancy":
        return _occupancy_extras_problem(v)
    if kind == "dwell" and not _count_map(v["regions"], _dwell):
        return 'values.regions: must map each region to {"avg": int >= 0, "max": int >= 0}'
    if kind == "event" and not isinstance(v["event"], str):
        return "values.event: must be a string"
    if kind == "event" and not isinstance(v["payload"], dict):
        return "values.payload: must be an object"
    return None


def sensor_id_problem(sensor_id: Any) -> str | None:
    """Why ``sensor_id`` cannot name a sensor in the cloud, or None."""
    if not isinstance(sensor_id, str) or not 1 <= len(sensor_id) <= SENSOR_ID_MAX:
        size = f" (got {len(sensor_id)})" if isinstance(sensor_id, str) else ""
        return f"sensor_id: must be a non-empty string of at most {SENSOR_ID_MAX} characters{size}"
    if problem := text_problem(sensor_id):
        return f"sensor_id {shown(sensor_id)}: {problem}"
    return None


def _fields_problem(r: dict[str, Any]) -> str | None:
    """The contract's per-field rules, in the order the cloud checks them."""
    if not isinstance(r["id"], str) or not _HEX64.match(r["id"]):
        return "id: must be 64 lowercase hex characters"
    if problem := sensor_id_problem(r["sensor_id"]):
        return problem
    if r["kind"] not in KINDS:
        return f"kind: must be one of {', '.join(KINDS)}"
    if problem := _moment_problem("period_start", r["period_start"], whole_seconds=True):
        return problem
    if r["id"] != record_id(r["sensor_id"], r["kind"], r["period_start"]):
        return "id: is not sha256(sensor_id|kind|period_start)"
    if problem := _moment_problem("period_end", r["period_end"]):
        return problem
    if not isinstance(r["final"], bool):
        return "final: must be true or false"
    if not isinstance(r["revision"], int) or isinstance(r["revision"], bool) or r["revision"] < 1:
        return "revision: must be an integer >= 1"
    if r["source"] not in SOURCES:
        return f"source: must be one of {', '.join(SOURCES)}"
    return _moment_problem("observed_at", r["observed_at"])


def contract_problem(r: Any, now: datetime | None = None) -> str | None:
    """Why the cloud would refuse the record object ``r`` (docs/ingest-contract.md and the
    cloud's SQL), or None when it accepts it. ``now`` is the bridge's clock: a period that ends
    after it (beyond a small grace) cannot be final yet."""
    return _shape_problem(r) or _clock_problem(r, now)


def _shape_problem(r: Any) -> str | None:
    """Every rule of :func:`contract_problem` but the clock's."""
    if not isinstance(r, dict):
        return "record: must be an object"
    if unknown := sorted(set(r) - set(RECORD_FIELDS), key=str):
        return f"record: unknown key(s) {', '.join(shown(str(k)) for k in unknown)}"
    if missing := [k for k in RECORD_FIELDS if k not in r]:
        return f"record: missing key(s) {', '.join(missing)}"
    if not _plain_json(r) and (problem := _json_problem(r)):
        return problem
    if problem := _fields_problem(r):
        return problem
    start, end = parse_utc(r["period_start"]), parse_utc(r["period_end"])
    if end < start:
        return "period_end: is before period_start"
    if r["kind"] == "live_counts" and (end != start or not r["final"]):
        return "live_counts: a snapshot needs period_start == period_end and final true"
    if problem := values_problem(r["kind"], r["values"]):
        return problem
    size = len(json.dumps(r["values"]))
    if size > VALUES_MAX_BYTES:
        return f"values: {size} bytes of JSON, over the limit of {VALUES_MAX_BYTES}"
    return None


def _clock_problem(r: dict[str, Any], now: datetime | None) -> str | None:
    """A final period must have ended by ``now`` (the bridge's clock), give or take a little."""
    if r["final"] and parse_utc(r["period_end"]) > (now or now_utc()) + FINAL_FUTURE_GRACE:
        return f"final: the period ends at {r['period_end']}, after the bridge's clock; it cannot be final yet"
    return None


def refusal(record: Record, now: datetime | None = None) -> str | None:
    """Why the outbox must not keep ``record`` (the cloud would refuse it), or None."""
    return record.shape_problem or _clock_problem(record._wire, now)
