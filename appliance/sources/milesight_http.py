"""Poll a Milesight camera over HTTP and turn its answers into readings.

Three things are read: hourly people counting per line (``dw=vcalogcsv``),
hourly counts per region (``dw=regionalcountlogcsv``) and the live counters
(``get.vca.alarmstatus``). Firmware differs, so columns are found by name,
never by position (``Tolal - In``, ``Total-In``, ``Line1 - In`` and
``Line1-In`` all work), and anything that does not parse whole is refused
rather than half-delivered.

Time: the camera speaks its own wall-clock time with no offset. A row's start
becomes UTC through the sensor's zone; its end second is inclusive, so the
exclusive ``period_end`` is one second later. A row starting in the
spring-forward gap cannot be real and is skipped. On the fall-back day the
camera has one row for the repeated wall-clock hour, holding both real hours:
it becomes one two-hour period (first occurrence to second), so periods stay
contiguous and never overlap.

A row is final once the clock has passed its end by ``FINAL_GRACE_S`` (the
camera's clock drifts a little from ours); before that it goes out with
``final = false`` and again, with a higher revision, as it grows. Rows that
start in the future (the camera answers zeros for them) are never stored.

Each (sensor, kind) keeps a cursor, the start of its last final period; the
next poll reads from there (at most the camera's ~7 days back), and the
readings and the cursor are committed together.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ..config import SensorConfig
from ..outbox import Outbox, PutResult
from ..records import (
    NonexistentLocalTime,
    Record,
    local_to_utc,
    now_utc,
    parse_utc,
    snapshot_period,
    utc_text,
)

log = logging.getLogger("sensor-bridge.milesight")

FINAL_GRACE_S = 120
HISTORY = timedelta(days=7)
WALL_FORMAT = "%Y-%m-%d-%H:%M:%S"

LINE_QUERY = {"dw": "vcalogcsv", "report_type": "0", "statistics_type": "3", "linetype": "31"}
REGION_QUERY = {"dw": "regionalcountlogcsv", "report_type": "0", "statistics_type": "3",
                "region1": "1", "region2": "1", "region3": "1", "region4": "1"}
LIVE_PATH = "/cgi-bin/operator/operator.cgi"


class SensorError(Exception):
    """The camera could not be read; the message is one line a person can act on."""


@dataclass(frozen=True)
class PollOutcome:
    sensor_id: str
    kind: str
    ok: bool
    at: datetime
    records: int = 0
    stored: PutResult | None = None
    error: str | None = None


# ---------------------------------------------------------------- talking to the camera


class CameraClient:
    """HTTP to one camera: Basic or Digest auth (``auto`` follows the 401 challenge)."""

    def __init__(self, sensor: SensorConfig) -> None:
        import requests

        self.sensor = sensor
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "sensor-bridge"
        self.scheme = "digest" if sensor.auth == "digest" else "basic"

    def _auth(self) -> Any:
        from requests.auth import HTTPBasicAuth, HTTPDigestAuth

        cls = HTTPDigestAuth if self.scheme == "digest" else HTTPBasicAuth
        return cls(self.sensor.username, self.sensor.password)

    def get(self, path: str, params: dict[str, str]) -> str:
        import requests

        url = self.sensor.url.rstrip("/") + path
        for _ in range(2):
            try:
                answer = self.session.get(url, params=params, auth=self._auth(), timeout=self.sensor.timeout_s)
            except requests.Timeout:
                raise SensorError(f"timed out after {self.sensor.timeout_s:g}s") from None
            except requests.ConnectionError as exc:
                raise SensorError(_connection_reason(exc)) from None
            except requests.RequestException as exc:
                raise SensorError(f"request failed: {type(exc).__name__}") from None
            challenge = answer.headers.get("WWW-Authenticate", "").lower()
            if answer.status_code == 401 and self.sensor.auth == "auto" and self.scheme == "basic" \
                    and challenge.startswith("digest"):
                self.scheme = "digest"  # this firmware wants Digest; remember it
                continue
            break
        if answer.status_code == 401:
            raise SensorError("401: username or password rejected")
        if answer.status_code != 200:
            raise SensorError(f"HTTP {answer.status_code} from the camera")
        try:
            return answer.content.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise SensorError("answer is not text (binary garbage)") from None


def _connection_reason(exc: Exception) -> str:
    text = str(exc)
    if "Connection refused" in text:
        return "connection refused"
    if "RemoteDisconnected" in text or "Connection reset" in text or "Connection aborted" in text:
        return "camera closed the connection without answering"
    if "Name or service not known" in text or "NameResolution" in text:
        return "camera's host name does not resolve"
    if "No route to host" in text:
        return "no route to the camera"
    return "cannot connect: " + text.splitlines()[0][:120]


# ---------------------------------------------------------------- parsing


def _normalise(column: str) -> str:
    """``Tolal - In`` -> ``total-in``, ``Line1-In`` -> ``line1-in``, ``REGION2`` -> ``region2``."""
    name = re.sub(r"\s+", "", column).lower()
    return name.replace("tolal", "total")


def _wall(text: str, row_no: int, column: str) -> datetime:
    try:
        return datetime.strptime(text.strip(), "%Y/%m/%d %H:%M:%S")
    except ValueError:
        try:
            return datetime.strptime(text.strip(), "%Y-%m-%d %H:%M:%S")
        except ValueError:
            raise SensorError(f"CSV row {row_no}: {column} {text.strip()!r} is not a time") from None


def _count(text: str, row_no: int, column: str) -> int:
    text = text.strip()
    if not text.isdigit():
        raise SensorError(f"CSV row {row_no}: {column} {text!r} is not a count")
    return int(text)


def parse_counts_csv(text: str, kind: str) -> list[tuple[datetime, datetime, dict[str, Any]]]:
    """Rows of a dataloader CSV as (wall start, wall end inclusive, values); raises SensorError."""
    stripped = text.lstrip("\ufeff").strip()
    if not stripped:
        raise SensorError("empty answer instead of CSV")
    if stripped.startswith("<") or "<html" in stripped[:500].lower():
        raise SensorError("answered an HTML page instead of CSV (camera busy?)")
    rows = list(csv.reader(io.StringIO(stripped)))
    header = [_normalise(c) for c in rows[0]]
    if "starttime" not in header or "endtime" not in header:
        raise SensorError("CSV header has no StartTime/EndTime columns (not a counting report)")
    index = {name: i for i, name in enumerate(header)}
    out = []
    for row_no, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise SensorError(f"CSV truncated: row {row_no} has {len(row)} fields, header has {len(header)}")
        start = _wall(row[index["starttime"]], row_no, "StartTime")
        end = _wall(row[index["endtime"]], row_no, "EndTime")
        if end < start:
            raise SensorError(f"CSV row {row_no}: EndTime before StartTime")
        if kind == "line_counts":
            values = _line_values(index, row, row_no)
        else:
            values = _region_values(index, row, row_no)
        out.append((start, end, values))
    return out


def _line_values(index: dict[str, int], row: list[str], row_no: int) -> dict[str, Any]:
    lines: dict[str, dict[str, int]] = {}
    for name, i in index.items():
        m = re.fullmatch(r"line(\d+)-(in|out)", name)
        if m:
            lines.setdefault(m.group(1), {})[m.group(2)] = _count(row[i], row_no, name)
    lines = {n: v for n, v in lines.items() if set(v) == {"in", "out"}}
    if "total-in" in index and "total-out" in index:
        total = {"in": _count(row[index["total-in"]], row_no, "Total-In"),
                 "out": _count(row[index["total-out"]], row_no, "Total-Out")}
    elif lines:
        total = {d: sum(v[d] for v in lines.values()) for d in ("in", "out")}
    else:
        raise SensorError("CSV header has no Total or Line columns (not a line counting report)")
    return {"total": total, "lines": dict(sorted(lines.items(), key=lambda kv: int(kv[0])))}


def _region_values(index: dict[str, int], row: list[str], row_no: int) -> dict[str, Any]:
    regions = {}
    for name, i in index.items():
        m = re.fullmatch(r"region(\d+)", name)
        if m:
            regions[m.group(1)] = _count(row[i], row_no, name)
    if not regions:
        raise SensorError("CSV header has no Region columns (not a regional counting report)")
    return {"regions": dict(sorted(regions.items(), key=lambda kv: int(kv[0])))}


LIVE_KEYS = {"in": "current_in_count", "out": "current_out_count", "sum": "current_sum_count",
             "capacity": "current_capacity_count"}


def parse_live(text: str) -> dict[str, int]:
    """``var current_in_count='2722';...`` -> ``{"in": 2722, ...}``; raises SensorError."""
    if "<html" in text[:500].lower():
        raise SensorError("answered an HTML page instead of live counters (camera busy?)")
    found = dict(re.findall(r"var\s+(\w+)\s*=\s*'([^']*)'", text))
    values = {}
    for key, var in LIVE_KEYS.items():
        raw = found.get(var)
        if raw is None:
            raise SensorError(f"live counters: {var} missing from the answer")
        if not raw.strip().isdigit():
            raise SensorError(f"live counters: {var} {raw!r} is not a count")
        values[key] = int(raw)
    return values


# ---------------------------------------------------------------- readings


def rows_to_records(
    rows: list[tuple[datetime, datetime, dict[str, Any]]], sensor: SensorConfig, kind: str, now: datetime
) -> tuple[list[Record], str | None]:
    """Readings for the rows that have begun, and the new cursor (last final period's start)."""
    zone = ZoneInfo(sensor.timezone)
    records: list[Record] = []
    cursor = None
    for wall_start, wall_end, values in rows:
        try:
            start = local_to_utc(wall_start, zone)
        except NonexistentLocalTime:
            if _any_count(values):
                log.warning("%s: %s row at %s lies in the DST gap; skipped", sensor.id, kind, wall_start)
            continue
        try:
            end = local_to_utc(wall_end + timedelta(seconds=1), zone)
        except NonexistentLocalTime:  # the period runs into the gap: it ends where the gap begins
            end = local_to_utc(wall_end, zone) + timedelta(seconds=1)
        if start > now:
            continue  # the camera answers zeros for hours to come: not data
        final = now >= end + timedelta(seconds=FINAL_GRACE_S)
        records.append(Record(sensor.id, kind, start, end, values, final, "poll", observed_at=now))
        if final:
            cursor = utc_text(start)
    return records, cursor


def _any_count(values: dict[str, Any]) -> bool:
    if "regions" in values:
        return any(values["regions"].values())
    return any(values["total"].values())


def _window(sensor: SensorConfig, cursor: str | None, now: datetime) -> tuple[str, str]:
    zone = ZoneInfo(sensor.timezone)
    if cursor:
        since = parse_utc(cursor)
    else:
        since = (now - timedelta(hours=sensor.backfill_h)).replace(minute=0, second=0)
    since = max(since, now - HISTORY)
    start = since.astimezone(zone).replace(tzinfo=None)
    end = now.astimezone(zone).replace(tzinfo=None)
    return start.strftime(WALL_FORMAT), end.strftime(WALL_FORMAT)


def _query(kind: str, start: str, end: str) -> dict[str, str]:
    base = LINE_QUERY if kind == "line_counts" else REGION_QUERY
    return {**base, "time_start": start, "time_end": end}


# ---------------------------------------------------------------- the poller


class CameraPoller:
    """Reads one camera and keeps what it says in the outbox; never raises for camera faults."""

    def __init__(self, sensor: SensorConfig, outbox: Outbox, clock: Callable[[], datetime] = now_utc) -> None:
        self.sensor = sensor
        self.outbox = outbox
        self.clock = clock
        self.client = CameraClient(sensor)
        self._busy = threading.Lock()

    def poll(self, kind: str) -> PollOutcome:
        now = self.clock()
        with self._busy:
            try:
                if kind == "live_counts":
                    records, cursors = self._live(now), []
                else:
                    records, cursors = self._history(kind, now)
                stored = self.outbox.put(records, cursors=cursors)
            except SensorError as exc:
                return PollOutcome(self.sensor.id, kind, False, now, error=str(exc))
        return PollOutcome(self.sensor.id, kind, True, now, records=len(records), stored=stored)

    def _history(self, kind: str, now: datetime) -> tuple[list[Record], list[tuple[str, str, str]]]:
        start, end = _window(self.sensor, self.outbox.cursor(self.sensor.id, kind), now)
        text = self.client.get("/dataloader.cgi", _query(kind, start, end))
        records, cursor = rows_to_records(parse_counts_csv(text, kind), self.sensor, kind, now)
        return records, [(self.sensor.id, kind, cursor)] if cursor else []

    def _live(self, now: datetime) -> list[Record]:
        text = self.client.get(LIVE_PATH, {"action": "get.vca.alarmstatus"})
        start, end = snapshot_period(now)
        return [Record(self.sensor.id, "live_counts", start, end, parse_live(text), True, "poll", observed_at=now)]


def read_sample(
    sensor: SensorConfig, kind: str, hours: int = 3, clock: Callable[[], datetime] = now_utc
) -> list[Record]:
    """One live read of the last ``hours`` for ``sensors test``; touches no outbox."""
    now = clock()
    client = CameraClient(sensor)
    if kind == "live_counts":
        start, end = snapshot_period(now)
        values = parse_live(client.get(LIVE_PATH, {"action": "get.vca.alarmstatus"}))
        return [Record(sensor.id, kind, start, end, values, True, "poll", observed_at=now)]
    since = utc_text((now - timedelta(hours=hours)).replace(minute=0, second=0))
    start, end = _window(sensor, since, now)
    text = client.get("/dataloader.cgi", _query(kind, start, end))
    records, _ = rows_to_records(parse_counts_csv(text, kind), sensor, kind, now)
    return records
