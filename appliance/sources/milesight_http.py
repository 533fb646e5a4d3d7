"""Poll a Milesight camera over HTTP and turn its answers into readings.

Three things are read: hourly people counting per line (``dw=vcalogcsv``),
hourly counts per region (``dw=regionalcountlogcsv``) and the live counters
(``get.vca.alarmstatus``). Firmware differs, so columns are found by name,
never by position (``Tolal - In``, ``Total-In``, ``Line1 - In`` and
``Line1-In`` all work), and an answer that does not parse whole is refused
rather than half-delivered: nothing is stored, the cursor stays, and the poll
returns one line saying what was wrong ("answered an HTML page instead of CSV
(camera busy?)", "CSV truncated: row 3 has 7 fields, header has 17").

Time: the camera speaks its own wall-clock time with no offset. A row's start
becomes UTC through the sensor's zone; its end second is inclusive, so the
exclusive ``period_end`` is one second after it.

- Spring forward: a row starting in the skipped hour cannot be real and is
  skipped (logged once if it holds counts); the periods around the gap meet.
- Fall back: the camera has ONE row for the repeated wall-clock hour, holding
  both real hours. It becomes one two-hour period from the first occurrence's
  start to the second occurrence's end (Lisbon, 2025-10-26: 00:00Z..02:00Z),
  so periods stay contiguous and never overlap. Should a camera send that hour
  as two rows, they are added up into the same period.

The clock is checked, not trusted. Every answer carries the camera's own
time (its HTTP Date header; without one, its newest counted hour at least).
A row is final once both clocks have passed its end by ``FINAL_GRACE_S``;
before that it goes out with ``final = false`` and again, with a higher
revision, as it grows. Rows that start after the camera's own now (it answers
zeros for them) are never stored. When the clocks disagree by more than
``CLOCK_TOLERANCE`` (milesight_clock.py: a bridge whose NTP is blocked, a
camera never set), nothing is final, no cursor moves, live counters are not stored, and the
sensor fails with the disagreement as its reason; the hours read meanwhile
go out as not final and fill in as final once the clocks agree again.

Each (sensor, kind) keeps a cursor, the start of its last final period; the
next poll reads from there (at most the camera's ~7 days back; on a first
start ``backfill_h`` back, on the hour), and the readings and the cursor are
committed in one outbox transaction. A cursor ahead of the camera's own time
(left by a bad clock) is pulled back ``backfill_h`` before the camera's now.

Every request, connect to last body byte, has ``timeout_s`` in all: a camera
trickling its answer is cut at that deadline rather than holding a poll
(appliance/http_client.py, the bridge's one HTTP client).
"""

from __future__ import annotations

import csv
import io
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from .. import __version__
from ..clock import now_utc, parse_utc, utc_text
from ..device_text import printable
from ..http_client import Deadline, HttpClient, Late, TooLarge
from ..outbox import Outbox
from ..records import (
    ONE_SECOND,
    NonexistentLocalTime,
    Record,
    local_to_utc,
    snapshot_period,
)
from .base import PollOutcome, SensorConfig, SensorError, Source
from .milesight_clock import ClockCheck, check_clocks, date_header_time
from .milesight_table import KINDS, CameraConfig

log = logging.getLogger("sensor-bridge.milesight")

FINAL_GRACE_S = 120
HISTORY = timedelta(days=7)
WALL_FORMAT = "%Y-%m-%d-%H:%M:%S"
# A week of hourly rows is about 20 kB; an answer near this size is not a report.
MAX_ANSWER_BYTES = 4_000_000

# Built by hand: the firmware's own examples put the colons of the times in
# the query verbatim, and not every camera decodes %3A.
LINE_QUERY = "/dataloader.cgi?dw=vcalogcsv&report_type=0&statistics_type=3&linetype=31"
REGION_QUERY = (
    "/dataloader.cgi?dw=regionalcountlogcsv&report_type=0&statistics_type=3"
    "&region1=1&region2=1&region3=1&region4=1"
)
LIVE_QUERY = "/cgi-bin/operator/operator.cgi?action=get.vca.alarmstatus"

_COUNT = re.compile(r"[0-9]+")
_LINE_COLUMN = re.compile(r"(?:(?P<total>total)|line(?P<line>\d+))[-_]?(?P<dir>in|out|sum)")
_REGION_COLUMN = re.compile(r"region[-_]?(?P<region>\d+)")
_ASSIGNMENT = re.compile(r"""(\w+)\s*=\s*(['"]?)([^'";\r\n]*)\2""")


# ---------------------------------------------------------------- talking to the camera


@dataclass(frozen=True)
class CameraAnswer:
    """What one request brought back: the text, and the camera's own time from its Date header."""

    text: str
    camera_time: datetime | None


class CameraClient:
    """HTTP to one camera over one session: Basic or Digest auth (``auto`` follows the 401 challenge).

    Every request, connect to last body byte, must finish within the sensor's
    ``timeout_s`` and stay under ``MAX_ANSWER_BYTES`` (appliance/http_client.py);
    past either it is cut and the poll fails with a reason ("answer took
    longer than 10 s").
    """

    def __init__(self, sensor: CameraConfig) -> None:
        self.sensor = sensor
        # Cameras sit on the LAN: never a proxy, never ~/.netrc.
        self.http = HttpClient({"User-Agent": f"sensor-bridge/{__version__}"}, trust_env=False)
        self.session = self.http.session
        self.scheme = "digest" if sensor.auth == "digest" else "basic"
        self._use(self.scheme)

    def _use(self, scheme: str) -> None:
        from requests.auth import HTTPBasicAuth, HTTPDigestAuth

        # One auth object for the session, so Digest reuses its nonce instead
        # of costing every request a 401 round trip.
        cls = HTTPDigestAuth if scheme == "digest" else HTTPBasicAuth
        self.scheme = scheme
        self.session.auth = cls(self.sensor.username, self.sensor.password)

    def close(self) -> None:
        """Cut any request in flight (it fails at once) and refuse new ones: the bridge is stopping."""
        self.http.close()

    def get(self, path_and_query: str, what: str) -> CameraAnswer:
        """The answer, or SensorError naming what went wrong, within ``timeout_s`` in all."""
        import requests

        timeout = self.sensor.timeout_s
        if self.http.closed:
            raise SensorError("not polled: the bridge is stopping")
        try:
            with self.http.deadline(timeout) as deadline:
                return self._fetch(path_and_query, what, deadline)
        except requests.ConnectTimeout:
            raise SensorError(
                f"no connection within {timeout:g} s (camera off or unreachable?)"
            ) from None
        except TooLarge:
            raise SensorError(
                f"answer larger than {MAX_ANSWER_BYTES // 1_000_000} MB; not a report"
            ) from None
        except (Late, requests.Timeout):
            raise SensorError(self._late_reason()) from None
        except requests.RequestException as exc:
            raise SensorError(_connection_reason(exc)) from None

    def _late_reason(self) -> str:
        if self.http.closed:
            return "poll cut short: the bridge is stopping"
        return f"timed out: answer took longer than {self.sensor.timeout_s:g} s (camera busy or trickling?)"

    def _fetch(self, path_and_query: str, what: str, deadline: Deadline) -> CameraAnswer:
        url = self.sensor.url.rstrip("/") + path_and_query
        answer = self.http.send(deadline, "GET", url)
        if (
            answer.status_code == 401
            and self.sensor.auth == "auto"
            and self.scheme == "basic"
            and _challenge(answer) == "digest"
        ):
            answer.close()
            log.info(
                "%s: the camera wants Digest authentication; using it from now on", self.sensor.id
            )
            self._use("digest")
            answer = self.http.send(deadline, "GET", url)
        with answer:
            self._check_status(answer, what)
            body = self.http.read(answer, deadline, MAX_ANSWER_BYTES)
            return CameraAnswer(
                body.decode("utf-8", errors="replace"),
                date_header_time(answer.headers.get("Date")),
            )

    def _check_status(self, answer: Any, what: str) -> None:
        code = answer.status_code
        if 200 <= code < 300:
            return
        if code == 401:
            wanted = _challenge(answer)
            if self.sensor.auth == "basic" and wanted == "digest":
                raise SensorError(
                    '401: the camera wants Digest authentication; set auth = "auto" or "digest"'
                )
            if self.sensor.auth == "digest" and wanted == "basic":
                raise SensorError(
                    '401: the camera wants Basic authentication; set auth = "auto" or "basic"'
                )
            raise SensorError("401: username or password rejected")
        if code == 403:
            raise SensorError(f"403: user {self.sensor.username!r} may not read the {what}")
        if code == 404:
            raise SensorError(
                f"404: the camera has no {what} (feature off, or not a Milesight camera?)"
            )
        reason = printable(answer.reason or "", 100)  # the camera's own words: shown, not obeyed
        raise SensorError(f"HTTP {code} {reason} from the camera".replace("  ", " "))


def _challenge(answer: Any) -> str:
    """The auth scheme a 401 asks for: ``basic``, ``digest`` or ``""``."""
    header = answer.headers.get("WWW-Authenticate", "").lower()
    if "digest" in header:
        return "digest"
    return "basic" if "basic" in header else ""


def _connection_reason(exc: Exception) -> str:
    import requests

    text = repr(exc).lower()
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "answer cut off: the camera closed the connection mid-answer"
    if "refused" in text:
        return "connection refused"
    if any(
        s in text
        for s in ("remotedisconnected", "reset by peer", "connection aborted", "badstatusline")
    ):
        return "camera closed the connection without answering"
    if any(s in text for s in ("name or service not known", "nameresolution", "failed to resolve")):
        return "camera's host name does not resolve"
    if "no route to host" in text or "network is unreachable" in text:
        return "no route to the camera"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS handshake with the camera failed (its certificate?)"
    first = printable(str(exc), 120) if str(exc) else type(exc).__name__
    return "cannot connect: " + first


# ---------------------------------------------------------------- parsing


def _refuse_non_text(text: str, what: str) -> None:
    """Answers that are not text of the expected sort at all."""
    if not text.strip():
        raise SensorError(f"empty answer instead of {what}")
    head = text.lstrip()[:500].lower()
    if head.startswith("<") or "<html" in head:
        raise SensorError(f"answered an HTML page instead of {what} (camera busy?)")
    if "\x00" in text or "\ufffd" in text:
        raise SensorError(f"answered binary data instead of {what}")


def _normalise(column: str) -> str:
    """``Tolal - In`` -> ``total-in``, ``Line1-In`` -> ``line1-in``, ``REGION2`` -> ``region2``."""
    return re.sub(r"\s+", "", column).lower().replace("tolal", "total")


def _wall(text: str, row_no: int, column: str) -> datetime:
    for pattern in ("%Y/%m/%d %H:%M:%S", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.strptime(text.strip(), pattern)
        except ValueError:
            pass
    raise SensorError(f"CSV row {row_no}: {column} {text.strip()[:30]!r} is not a time")


class _Columns:
    """Where each count of one CSV header lives, found by name; SensorError if it is no report."""

    def __init__(self, header: list[str], kind: str) -> None:
        self.header = [c.strip() for c in header]
        names = [_normalise(c) for c in header]
        for needed, title in (("starttime", "StartTime"), ("endtime", "EndTime")):
            if needed not in names:
                raise SensorError(f"CSV header has no {title} column (not a counting report)")
        self.start, self.end = names.index("starttime"), names.index("endtime")
        self.kind = kind
        self.lines: dict[str, dict[str, int]] = {}  # "total", "1", .. -> {"in": col, "out": col}
        self.regions: dict[str, int] = {}
        for i, name in enumerate(names):
            if kind == "line_counts" and (m := _LINE_COLUMN.fullmatch(name)) and m["dir"] != "sum":
                self.lines.setdefault("total" if m["total"] else str(int(m["line"])), {})[
                    m["dir"]
                ] = i
            elif kind == "region_counts" and (m := _REGION_COLUMN.fullmatch(name)):
                self.regions.setdefault(str(int(m["region"])), i)
        if kind == "region_counts":
            if not self.regions:
                raise SensorError(
                    "CSV header has no Region columns (not a regional counting report)"
                )
            return
        for who, cols in self.lines.items():
            for direction in ("in", "out"):
                if direction not in cols:
                    label = "Total" if who == "total" else f"Line{who}"
                    raise SensorError(
                        f"CSV header has {label} columns but no {label} - {direction.title()}"
                    )
        if not self.lines:
            raise SensorError(
                "CSV header has no Total or Line columns (not a line counting report)"
            )

    def _count(self, row: list[str], col: int, row_no: int) -> int:
        text = row[col].strip()
        if not _COUNT.fullmatch(text):
            raise SensorError(f"CSV row {row_no}: {self.header[col]} {text[:20]!r} is not a count")
        return int(text)

    def values(self, row: list[str], row_no: int) -> dict[str, Any]:
        if self.kind == "region_counts":
            return {"regions": {n: self._count(row, c, row_no) for n, c in _numbered(self.regions)}}
        lines = {
            n: {d: self._count(row, cols[d], row_no) for d in ("in", "out")}
            for n, cols in _numbered({k: v for k, v in self.lines.items() if k != "total"})
        }
        if "total" in self.lines:
            total = {d: self._count(row, self.lines["total"][d], row_no) for d in ("in", "out")}
        else:
            total = {d: sum(v[d] for v in lines.values()) for d in ("in", "out")}
        return {"total": total, "lines": lines}


def _numbered(items: dict[str, Any]) -> list[tuple[str, Any]]:
    return sorted(items.items(), key=lambda kv: int(kv[0]))


def parse_counts_csv(text: str, kind: str) -> list[tuple[datetime, datetime, dict[str, Any]]]:
    """Rows of a dataloader CSV as (wall start, wall end inclusive, values); raises SensorError."""
    _refuse_non_text(text, "CSV")
    try:
        rows = [
            r
            for r in csv.reader(io.StringIO(text.lstrip("\ufeff").strip()))
            if any(c.strip() for c in r)
        ]
    except csv.Error as exc:
        raise SensorError(f"answer is not CSV ({exc})") from None
    columns = _Columns(rows[0], kind)
    width = len(rows[0])
    out = []
    for row_no, row in enumerate(rows[1:], start=2):
        if len(row) != width:
            problem = "CSV truncated" if len(row) < width else "CSV"
            raise SensorError(f"{problem}: row {row_no} has {len(row)} fields, header has {width}")
        start = _wall(row[columns.start], row_no, "StartTime")
        end = _wall(row[columns.end], row_no, "EndTime")
        if end < start:
            raise SensorError(f"CSV row {row_no}: EndTime before StartTime")
        out.append((start, end, columns.values(row, row_no)))
    return out


def parse_live(text: str) -> dict[str, int]:
    """``var current_in_count='2722';...`` -> ``{"in": 2722, "out": .., "sum": .., "capacity": ..}``."""
    what = "live counters"
    _refuse_non_text(text, what)
    found = {name.lower(): value.strip() for name, _, value in _ASSIGNMENT.findall(text)}
    values = {}
    for key in ("in", "out", "sum", "capacity"):
        var = f"current_{key}_count"
        raw = found.get(var)
        if raw is None:
            raise SensorError(f"{what}: {var} missing from the answer")
        if not _COUNT.fullmatch(raw):
            raise SensorError(f"{what}: {var} {raw[:20]!r} is not a count")
        values[key] = int(raw)
    return values


# ---------------------------------------------------------------- readings


def _any_count(values: dict[str, Any]) -> bool:
    return any(_any_count(v) if isinstance(v, dict) else v for v in values.values())


def _add(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two rows' counts added up, key by key."""
    return {
        k: _add(v, b.get(k, {})) if isinstance(v, dict) else v + b.get(k, 0) for k, v in a.items()
    }


def rows_to_records(
    rows: list[tuple[datetime, datetime, dict[str, Any]]],
    sensor: CameraConfig,
    kind: str,
    now: datetime,
    gaps_logged: set[datetime] | None = None,
    hold: bool = False,
) -> tuple[list[Record], str | None]:
    """Readings for the rows that have begun by ``now``, and the last final period's start (the new
    cursor); with ``hold`` (clocks in doubt) nothing is final and there is no new cursor."""
    zone = ZoneInfo(sensor.timezone)
    periods: dict[datetime, tuple[datetime, dict[str, Any]]] = {}
    for wall_start, wall_end, values in rows:
        try:
            start = local_to_utc(wall_start, zone)
            end = local_to_utc(wall_end, zone, later=True) + ONE_SECOND
        except NonexistentLocalTime:
            if _any_count(values) and (gaps_logged is None or wall_start not in gaps_logged):
                log.warning(
                    "%s: %s row at %s lies in the DST gap of %s; its counts are skipped",
                    sensor.id,
                    kind,
                    wall_start,
                    zone.key,
                )
                if gaps_logged is not None:
                    gaps_logged.add(wall_start)
            continue
        if start > now:
            continue  # the camera answers zeros for hours to come: not data
        if start in periods:  # the repeated fall-back hour sent as two rows: one period
            end, values = max(end, periods[start][0]), _add(periods[start][1], values)
        periods[start] = (end, values)
    grace = timedelta(seconds=FINAL_GRACE_S)
    records = [
        Record(
            sensor.id,
            kind,
            start,
            end,
            values,
            not hold and now >= end + grace,
            "poll",
            observed_at=now,
        )
        for start, (end, values) in sorted(periods.items())
    ]
    finals = [r.period_start for r in records if r.final]
    return records, utc_text(finals[-1]) if finals else None


def _window(sensor: CameraConfig, cursor: str | None, now: datetime) -> tuple[str, str]:
    """The query's ``time_start``/``time_end``: local wall time, never before the camera's history."""
    zone = ZoneInfo(sensor.timezone)
    if cursor:
        since = parse_utc(cursor)
    else:
        since = (now - timedelta(hours=sensor.backfill_h)).replace(
            minute=0, second=0, microsecond=0
        )
    since = max(since, now - HISTORY)
    start = since.astimezone(zone).replace(tzinfo=None)
    end = now.astimezone(zone).replace(tzinfo=None)
    return start.strftime(WALL_FORMAT), end.strftime(WALL_FORMAT)


def _query(kind: str, start: str, end: str) -> str:
    base = LINE_QUERY if kind == "line_counts" else REGION_QUERY
    return f"{base}&time_start={start}&time_end={end}"


def _what(kind: str) -> str:
    return {
        "line_counts": "line counting report",
        "region_counts": "regional counting report",
        "live_counts": "live counters",
    }[kind]


def _live_record(sensor: CameraConfig, text: str, now: datetime) -> Record:
    start, end = snapshot_period(now)
    return Record(
        sensor.id, "live_counts", start, end, parse_live(text), True, "poll", observed_at=start
    )


# ---------------------------------------------------------------- whose clock to believe


def newest_counted(
    rows: list[tuple[datetime, datetime, dict[str, Any]]], zone: ZoneInfo
) -> datetime | None:
    """UTC start of the newest row holding any count: the camera's clock had reached at least that."""
    for wall_start, _, values in reversed(sorted(rows, key=lambda row: row[0])):
        if _any_count(values):
            try:
                return local_to_utc(wall_start, zone)
            except NonexistentLocalTime:
                continue
    return None


# ---------------------------------------------------------------- the poller


class CameraPoller(Source):
    """Reads one camera and keeps what it says in the outbox; never raises for camera faults.

    Different sensors poll concurrently (each poller has its own session);
    polls of one sensor (say its line and live counts) take turns.
    """

    config = CameraConfig
    kinds = KINDS
    snapshots = ("live_counts",)
    sensor: CameraConfig

    @classmethod
    def sample(cls, sensor: SensorConfig, kind: str, hours: int) -> list[Record]:
        assert isinstance(sensor, CameraConfig)
        return read_sample(sensor, kind, hours=hours)

    def __init__(
        self, sensor: CameraConfig, outbox: Outbox, clock: Callable[[], datetime] = now_utc
    ) -> None:
        super().__init__(sensor, outbox)
        self.clock = clock
        self.client = CameraClient(sensor)
        from ..discover.identity import CameraFinder  # found again by serial/MAC if it moves

        self.finder = CameraFinder.for_sensor(sensor, CameraClient)
        self.zone = ZoneInfo(sensor.timezone)
        self._busy = threading.Lock()
        self._gaps_logged: set[datetime] = set()

    def close(self) -> None:
        """Cut a poll in flight and refuse new ones (the bridge is stopping)."""
        self.client.close()

    def schedule(self) -> list[tuple[str, float]]:
        """History reports every ``interval_s``, live counters every ``live_interval_s``."""
        sensor = self.sensor
        return [
            (kind, sensor.live_interval_s if kind == "live_counts" else sensor.interval_s)
            for kind in sensor.collect
        ]

    def poll(self, kind: str) -> PollOutcome:
        """Read ``kind`` once; store what is new and move the cursor, or say what went wrong.

        When the bridge's and the camera's clocks disagree, what was read is
        stored as not final, the cursor stays, live counters are not stored,
        and the outcome fails with the disagreement as its reason.
        """
        if kind not in KINDS:
            raise ValueError(f"cannot poll {kind!r}; one of {', '.join(KINDS)}")
        with self._busy:
            now = self.clock().astimezone(UTC).replace(microsecond=0)
            try:
                if self.finder:  # a camera named by serial/MAC: never a different device
                    self.client = self.finder.place(self.client)
                if kind == "live_counts":
                    records, cursors, problem = self._live(now)
                else:
                    records, cursors, problem = self._history(kind, now)
            except SensorError as exc:  # may quote the camera: kept printable and short
                return PollOutcome(self.sensor.id, kind, False, now, error=printable(str(exc)))
            stored = self.outbox.put(records, cursors=cursors)
        return PollOutcome(
            self.sensor.id,
            kind,
            problem is None,
            now,
            records=len(records),
            stored=stored,
            error=problem,
            note=self.finder.note if self.finder else None,
        )

    def _judge(self, now: datetime, answer: CameraAnswer, rows: list[Any]) -> ClockCheck:
        return check_clocks(now, answer.camera_time, newest_counted(rows, self.zone), self.zone)

    def _live(self, now: datetime) -> tuple[list[Record], list[tuple[str, str, str]], str | None]:
        answer = self.client.get(LIVE_QUERY, _what("live_counts"))
        clocks = self._judge(now, answer, [])
        record = _live_record(self.sensor, answer.text, clocks.now)
        # A snapshot is final by nature: with the clocks in doubt its stamp is too.
        return ([] if clocks.problem else [record]), [], clocks.problem

    def _history(
        self, kind: str, now: datetime
    ) -> tuple[list[Record], list[tuple[str, str, str]], str | None]:
        cursor = self.outbox.cursor(self.sensor.id, kind)
        start, end = _window(self.sensor, cursor, now)
        answer = self.client.get(_query(kind, start, end), _what(kind))
        rows = parse_counts_csv(answer.text, kind)
        clocks = self._judge(now, answer, rows)
        records, newest = rows_to_records(
            rows, self.sensor, kind, clocks.now, self._gaps_logged, hold=clocks.problem is not None
        )
        if cursor and parse_utc(cursor) > clocks.now:
            cursor = self._pull_back(kind, cursor, clocks.now)
            return (
                [r for r in records if r.period_start > parse_utc(cursor)],
                [(self.sensor.id, kind, cursor)],
                clocks.problem,
            )
        if (
            clocks.problem and cursor
        ):  # the cursor's period is final already: keep it out of the held ones
            records = [r for r in records if r.period_start > parse_utc(cursor)]
        if newest and (cursor is None or parse_utc(newest) > parse_utc(cursor)):
            return records, [(self.sensor.id, kind, newest)], clocks.problem
        return records, [], clocks.problem

    def _pull_back(self, kind: str, cursor: str, camera_now: datetime) -> str:
        """A cursor ahead of the camera's own time (left by a bad clock) goes back ``backfill_h``."""
        since = (camera_now - timedelta(hours=self.sensor.backfill_h)).replace(minute=0, second=0)
        log.warning(
            "%s: the %s cursor %s lies ahead of the camera's clock (%s); reading again from %s",
            self.sensor.id,
            kind,
            cursor,
            utc_text(camera_now),
            utc_text(since),
        )
        return utc_text(since)


def read_sample(
    sensor: CameraConfig, kind: str, hours: int = 3, clock: Callable[[], datetime] = now_utc
) -> list[Record]:
    """One live read of the last ``hours`` for ``sensors test``; touches no outbox.

    Raises :class:`SensorError` with a one-line reason when the camera cannot be read.
    """
    if kind not in KINDS:
        raise ValueError(f"cannot read {kind!r}; one of {', '.join(KINDS)}")
    now = clock().astimezone(UTC).replace(microsecond=0)
    client = CameraClient(sensor)
    try:
        if kind == "live_counts":
            return [_live_record(sensor, client.get(LIVE_QUERY, _what(kind)).text, now)]
        since = utc_text((now - timedelta(hours=hours)).replace(minute=0, second=0))
        start, end = _window(sensor, since, now)
        text = client.get(_query(kind, start, end), _what(kind)).text
        return rows_to_records(parse_counts_csv(text, kind), sensor, kind, now)[0]
    finally:
        client.close()
