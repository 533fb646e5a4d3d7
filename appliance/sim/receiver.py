"""A reference receiver for the ingest contract: the cloud side, on one machine.

Integrators point a bridge at it to see exactly what arrives; the demo prints
each batch as it lands; the tests check the bridge against it. It checks every
header and field as docs/ingest-contract.md says (the same rules, in the same
order, as the cloud's Next.js routes), stores records in SQLite keeping the
highest revision per id (a replay changes nothing), refuses bad records one by
one while storing the good ones, and can be told to misbehave: a script of
answers (503, 429 with Retry-After, 413, 401, a slow or lost answer), a full
outage, a record-count limit that answers 413, poisoned record ids, or a
sensor whose batches it calls malformed.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import re
import sqlite3
import ssl
import threading
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# The contract's vocabulary (kinds, fields, sources, time format) has one home; how a receiver
# checks a batch against it stays its own, so the conformance suite compares two readings of it.
from ..clock import UTC_TEXT_PATTERN as UTC_TEXT
from ..config.model import HEARTBEAT_PATH
from ..kinds import KINDS, TABLE
from ..records import RECORD_FIELDS, SOURCES
from ..service import Background, run_service

SCHEMA = "sensor-bridge/ingest/v1"
HEARTBEAT_SCHEMA = "sensor-bridge/heartbeat/v1"
INGEST_PATH = "/api/bridge/v1/ingest"

BRIDGE_STATES = ("ok", "degraded", "error", "starting", "no-config", "maintenance")
BATCH_FIELDS = ("schema", "bridge_id", "batch_id", "sent_at", "records")
HEARTBEAT_FIELDS = (
    "schema",
    "bridge_id",
    "version",
    "sent_at",
    "uptime_s",
    "state",
    "outbox",
    "sensors",
    "host",
)
# Optional heartbeat keys (strings): the bridge's WireGuard public key, what its last update did.
HEARTBEAT_OPTIONAL = ("wireguard_public_key", "last_update")
RECORD_ID = re.compile(r"^[0-9a-f]{64}$")
SEEN_KEPT = 10_000  # requests_seen() memory, so a receiver left running for days stays small
BIGGEST = 2**63 - 1  # counts and revisions are stored as 64-bit integers, here and in the cloud


# ---------------------------------------------------------------- the contract's rules


def utc_problem(name: str, value: Any, whole_seconds: bool = False) -> str | None:
    """Why ``value`` is not RFC 3339 UTC with ``Z`` (and a real date), or None."""
    example = "e.g. 2025-07-22T09:00:00Z"
    match = UTC_TEXT.match(value) if isinstance(value, str) else None
    if not match or (whole_seconds and match.group(7)):
        precision = ", whole seconds" if whole_seconds else ""
        return f"{name}: must be RFC 3339 UTC with Z{precision}, {example}"
    try:
        datetime(*(int(g) for g in match.groups()[:6]))
    except ValueError:
        return f"{name}: {value} is not a real date and time"
    return None


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= BIGGEST


def _named(v: Any, each: Any) -> bool:
    """A map of lines or regions: every name non-empty, every value passing ``each``."""
    return isinstance(v, dict) and all(name and each(x) for name, x in v.items())


def _in_out(v: Any) -> bool:
    return isinstance(v, dict) and set(v) == {"in", "out"} and _count(v["in"]) and _count(v["out"])


def _exact_keys(v: dict[str, Any], kind: str) -> str | None:
    """The keys appliance/kinds.py gives ``kind``: all it requires, none it does not allow."""
    spec = TABLE[kind]
    if not spec.required <= set(v) <= spec.allowed:
        extra = f" (optionally {', '.join(sorted(spec.optional))})" if spec.optional else ""
        return f"values: {kind} needs exactly the keys {', '.join(sorted(spec.required))}{extra}"
    return None


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and x == x and abs(x) <= BIGGEST


def _ambience_problem(v: dict[str, Any]) -> str | None:
    if not v:
        return "values: ambience needs at least one measurement"
    unknown = sorted(set(v) - TABLE["ambience"].allowed)
    if unknown:
        return f"values: ambience does not know {', '.join(json.dumps(k) for k in unknown)}"
    bad = sorted(k for k, x in v.items() if not _finite(x))
    return f"values.{bad[0]}: must be a finite number" if bad else None


def _occupancy_problem(v: dict[str, Any]) -> str | None:
    if problem := _exact_keys(v, "occupancy"):
        return problem
    if not _count(v["current_total"]):
        return "values.current_total: must be an int >= 0"
    if v["max"] is not None and not _count(v["max"]):
        return "values.max: must be an int >= 0 or null"
    if not _named(v["regions"], _count):
        return "values.regions: must map each region to an int >= 0"
    if "occupied" in v and not _named(v["occupied"], lambda x: isinstance(x, bool)):
        return "values.occupied: must map each region to true or false"
    if "region_names" in v and not _named(
        v["region_names"], lambda x: isinstance(x, str) and x != ""
    ):
        return "values.region_names: must map each region to a non-empty name"
    return None


def _dwell(x: Any) -> bool:
    return (
        isinstance(x, dict) and set(x) == {"avg", "max"} and _count(x["avg"]) and _count(x["max"])
    )


def values_problem(kind: str, v: Any) -> str | None:
    """Why ``v`` is not a valid ``values`` object for ``kind`` (None when it is)."""
    if not isinstance(v, dict):
        return "values: must be an object"
    if kind in ("line_counts", "line_totals"):
        if problem := _exact_keys(v, kind):
            return problem
        if not _in_out(v["total"]):
            return 'values.total: must be {"in": int >= 0, "out": int >= 0}'
        if not _named(v["lines"], _in_out):
            return 'values.lines: must map each line to {"in": int >= 0, "out": int >= 0}'
    elif kind == "occupancy":
        return _occupancy_problem(v)
    elif kind == "region_counts":
        if problem := _exact_keys(v, kind):
            return problem
        if not _named(v["regions"], _count):
            return "values.regions: must map each region to an int >= 0"
    elif kind == "dwell":
        if problem := _exact_keys(v, kind):
            return problem
        if not _named(v["regions"], _dwell):
            return 'values.regions: must map each region to {"avg": int >= 0, "max": int >= 0}'
    elif kind == "ambience":
        return _ambience_problem(v)
    elif kind == "live_counts":
        if problem := _exact_keys(v, kind):
            return problem
        if not all(_count(x) for x in v.values()):
            return "values: in, out, sum and capacity must be ints >= 0"
    else:
        if problem := _exact_keys(v, kind):
            return problem
        if not isinstance(v["event"], str):
            return "values.event: must be a string"
        if not isinstance(v["payload"], dict):
            return "values.payload: must be an object"
    return None


def _keys_problem(what: str, body: dict[str, Any], fields: tuple[str, ...]) -> str | None:
    """Keys the contract does not know (a typo must not pass silently), then keys it needs."""
    unknown = sorted(set(body) - set(fields))
    if unknown:
        return f"{what}: unknown key(s) {', '.join(unknown)}"
    missing = [k for k in fields if k not in body]
    if missing:
        return f"{what}: missing key(s) {', '.join(missing)}"
    return None


def record_problem(r: Any) -> str | None:
    """Why record ``r`` breaks the contract (None when it is valid); the message names the field."""
    if not isinstance(r, dict):
        return "record: must be an object"
    if problem := _keys_problem("record", r, RECORD_FIELDS):
        return problem
    if not isinstance(r["id"], str) or not RECORD_ID.match(r["id"]):
        return "id: must be 64 lowercase hex characters"
    if not isinstance(r["sensor_id"], str) or not 1 <= len(r["sensor_id"]) <= 256:
        return "sensor_id: must be a non-empty string of at most 256 characters"
    if r["kind"] not in KINDS:
        return f"kind: must be one of {', '.join(KINDS)}"
    if problem := utc_problem("period_start", r["period_start"], whole_seconds=True):
        return problem
    want = hashlib.sha256(f"{r['sensor_id']}|{r['kind']}|{r['period_start']}".encode()).hexdigest()
    if r["id"] != want:
        return "id: is not sha256(sensor_id|kind|period_start)"
    if problem := utc_problem("period_end", r["period_end"]):
        return problem
    if _moment(r["period_end"]) < _moment(r["period_start"]):
        return "period_end: is before period_start"
    if not isinstance(r["final"], bool):
        return "final: must be true or false"
    if not _count(r["revision"]) or r["revision"] < 1:
        return "revision: must be an integer >= 1"
    if r["source"] not in SOURCES:
        return f"source: must be one of {', '.join(SOURCES)}"
    if problem := utc_problem("observed_at", r["observed_at"]):
        return problem
    if r["kind"] == "live_counts" and (
        _moment(r["period_end"]) != _moment(r["period_start"]) or not r["final"]
    ):
        return "live_counts: a snapshot needs period_start == period_end and final true"
    return values_problem(r["kind"], r["values"])


def batch_problem(body: Any, idempotency_key: str | None) -> str | None:
    """Why the batch envelope breaks the contract (the whole batch is refused with 400), or None."""
    if not isinstance(body, dict):
        return "body must be a JSON object"
    if problem := _keys_problem("batch", body, BATCH_FIELDS):
        return problem
    if body["schema"] != SCHEMA:
        return f'schema: must be "{SCHEMA}"'
    if not isinstance(body["bridge_id"], str) or not 1 <= len(body["bridge_id"]) <= 128:
        return "bridge_id: must be a non-empty string"
    if not isinstance(body["batch_id"], str) or not body["batch_id"]:
        return "batch_id: must be a non-empty string"
    if not idempotency_key:
        return "Idempotency-Key header is required (the batch_id)"
    if idempotency_key != body["batch_id"]:
        return "Idempotency-Key must equal the body's batch_id"
    if problem := utc_problem("sent_at", body["sent_at"]):
        return problem
    if not isinstance(body["records"], list) or not body["records"]:
        return "records: must be a non-empty array"
    # A record without a string id cannot be named in "rejected": the bridge must split to find it.
    if any(not isinstance(r, dict) or not isinstance(r.get("id"), str) for r in body["records"]):
        return "records: every record needs a string id"
    return None


def heartbeat_problem(b: Any) -> str | None:
    """Why a heartbeat body breaks the contract, or None."""
    if not isinstance(b, dict):
        return "heartbeat: must be a JSON object"
    unknown = sorted(set(b) - set(HEARTBEAT_FIELDS) - set(HEARTBEAT_OPTIONAL))
    missing = [k for k in HEARTBEAT_FIELDS if k not in b]
    if unknown or missing:
        return f"heartbeat: unknown key(s) {', '.join(unknown) or '-'}; missing key(s) {', '.join(missing) or '-'}"
    for name in HEARTBEAT_OPTIONAL:
        if name in b and not isinstance(b[name], str):
            return f"{name}: must be a string"
    if b["schema"] != HEARTBEAT_SCHEMA:
        return f'schema: must be "{HEARTBEAT_SCHEMA}"'
    for name in ("bridge_id", "version"):
        if not isinstance(b[name], str):
            return f"{name}: must be a string"
    if problem := utc_problem("sent_at", b["sent_at"]):
        return problem
    if not _number(b["uptime_s"]) or b["uptime_s"] < 0:
        return "uptime_s: must be a number >= 0"
    if b["state"] not in BRIDGE_STATES:
        return f"state: must be one of {', '.join(BRIDGE_STATES)}"
    outbox = b["outbox"]
    keys = ("pending", "oldest_pending_age_s", "dead_letter", "dropped")
    if not isinstance(outbox, dict) or not all(
        _number(outbox.get(k)) and outbox[k] >= 0 for k in keys
    ):
        return "outbox: must hold pending, oldest_pending_age_s, dead_letter and dropped as numbers >= 0"
    sensors = b["sensors"]
    if not isinstance(sensors, list) or not all(
        isinstance(s, dict)
        and isinstance(s.get("id"), str)
        and s.get("state") in ("ok", "failing", "unknown")
        and all(s.get(k) is None or isinstance(s[k], str) for k in ("last_success", "last_error"))
        for s in sensors
    ):
        return 'sensors: must be a list of {"id": string, "state": "ok|failing|unknown", "last_success", "last_error"}'
    host = b["host"]
    keys = ("disk_free_mb", "mem_used_pct", "cpu_temp_c", "load1")
    if not isinstance(host, dict) or not all(
        k in host and (host[k] is None or _number(host[k])) for k in keys
    ):
        return "host: must hold disk_free_mb, mem_used_pct, cpu_temp_c and load1 as numbers or null"
    return None


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text)  # already checked to be UTC with Z


# ---------------------------------------------------------------- the receiver


@dataclass(frozen=True)
class Answer:
    """A scripted answer to one ingest request.

    ``store``: handle the batch as usual first (default: only for a 2xx), so
    ``Answer(504, store=True)`` is a batch the cloud kept while the answer got lost.
    ``body``: the JSON (or raw bytes) to answer; None = the usual body.
    ``hold``: keep the request open until this event is set (at most 30 s), e.g. to
    change the outbox while a batch is in flight or to make the bridge time out.
    """

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    store: bool | None = None
    hold: threading.Event | None = None


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class HttpProblem(Exception):
    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


class SimReceiver:
    """The contract's receiving side on ``127.0.0.1`` (port 0 = a free one); a context manager.

    ``url`` is the ingest endpoint, ``heartbeat_url`` the heartbeat's. Readings
    live in SQLite at ``db_path`` (default: in memory). ``tls`` = (certificate
    file, key file) serves https.
    """

    def __init__(
        self,
        db_path: str | Path | None = None,
        api_key: str = "demo-key",
        max_records: int = 2000,
        max_body_kb: int = 4096,
        max_json_kb: int = 16384,
        host: str = "127.0.0.1",
        port: int = 0,
        announce: bool = False,
        tls: tuple[str | Path, str | Path] | None = None,
    ) -> None:
        self.api_key = api_key
        self.max_records = max_records
        self.max_body = max_body_kb * 1024
        self.max_json = max_json_kb * 1024
        self.announce = announce
        self.lock = threading.Lock()
        self.db = sqlite3.connect(str(db_path) if db_path else ":memory:", check_same_thread=False)
        self.db.executescript("""
            PRAGMA journal_mode = WAL;
            CREATE TABLE IF NOT EXISTS readings (id TEXT NOT NULL, revision INTEGER NOT NULL,
                bridge_id TEXT NOT NULL, body TEXT NOT NULL, received_at REAL NOT NULL,
                PRIMARY KEY (bridge_id, id));
            CREATE TABLE IF NOT EXISTS heartbeats (bridge_id TEXT PRIMARY KEY, body TEXT NOT NULL,
                received_at REAL NOT NULL);
        """)
        _scope_readings_by_bridge(self.db)
        self._script: deque[Answer] = deque()
        self.down = False
        self.poison_ids: set[str] = set()  # records refused one by one (in "rejected")
        self.malformed_sensors: set[str] = set()  # any batch holding one of these sensors gets 400
        self._seen: deque[dict[str, Any]] = deque(maxlen=SEEN_KEPT)
        self._server = _Server((host, port), _handler(self))
        if tls:  # (certificate file, key file): an https cloud, e.g. to test certificate checks
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        base = f"{'https' if tls else 'http'}://{host}:{self._server.server_address[1]}"
        self.url = base + INGEST_PATH
        self.heartbeat_url = base + HEARTBEAT_PATH

    # ------------------------------------------------------------ lifecycle

    def start(self) -> SimReceiver:
        # A short poll interval: stop() waits for it, and tests start and stop many receivers.
        threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="sim-receiver", daemon=True
        ).start()
        return self

    def stop(self) -> None:
        """Stop answering; what it stored stays readable through :meth:`records`."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> SimReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ misbehaving on purpose

    def script(self, *answers: int | tuple[int, dict[str, str]] | Answer) -> None:
        """Answer the next ingest requests with these, one each, in order, before anything else.

        ``script(503, (429, {"Retry-After": "2"}), 401, Answer(200, body=b""))``
        """
        with self.lock:
            for a in answers:
                self._script.append(
                    a
                    if isinstance(a, Answer)
                    else Answer(a[0], dict(a[1]))
                    if isinstance(a, tuple)
                    else Answer(a)
                )

    def set_down(self, down: bool) -> None:
        """While down, every ingest request gets 503."""
        self.down = down

    # ------------------------------------------------------------ looking inside

    def records(self, bridge_id: str | None = None) -> dict[str, dict[str, Any]]:
        """Every stored reading of ``bridge_id`` by id, as the bridge sent it (its highest revision).

        Without ``bridge_id``, every bridge's: name the bridge when several
        deliver, since two stores' ``entrance-1`` readings share their ids.
        """
        with self.lock:
            rows = self.db.execute(
                "SELECT id, body FROM readings"
                + (" WHERE bridge_id = ?" if bridge_id else "")
                + " ORDER BY bridge_id",
                (bridge_id,) if bridge_id else (),
            ).fetchall()
        return {rid: json.loads(body) for rid, body in rows}

    def requests_seen(self) -> list[dict[str, Any]]:
        """Ingest requests, oldest first: method, path, headers, batch (the envelope without
        records), ids, status (None while the answer is still pending), error, at (monotonic)."""
        with self.lock:
            return [dict(s) for s in self._seen]

    def last_heartbeat(self, bridge_id: str | None = None) -> dict[str, Any] | None:
        with self.lock:
            row = self.db.execute(
                "SELECT body FROM heartbeats"
                + (" WHERE bridge_id = ?" if bridge_id else "")
                + " ORDER BY received_at DESC LIMIT 1",
                (bridge_id,) if bridge_id else (),
            ).fetchone()
        return json.loads(row[0]) if row else None

    # ------------------------------------------------------------ the contract

    def ingest(self, headers: Any, raw: bytes, seen: dict[str, Any]) -> Reply:
        """One POST to the ingest path: scripted answer, outage, then the contract."""
        with self.lock:
            scripted = self._script.popleft() if self._script else None
        if scripted is None:
            return self._ingest(headers, raw, seen)
        store = scripted.store if scripted.store is not None else 200 <= scripted.status < 300
        usual = self._ingest(headers, raw, seen) if store else None
        if scripted.hold is not None:
            scripted.hold.wait(30)
        if scripted.body is not None:
            body = scripted.body
        elif usual is not None and 200 <= scripted.status < 300:
            body = usual.body
        else:
            body = {"error": f"scripted {scripted.status}"}
        return Reply(scripted.status, body, dict(scripted.headers))

    def _ingest(self, headers: Any, raw: bytes, seen: dict[str, Any]) -> Reply:
        if self.down:
            return Reply(503, {"error": "receiver is down (simulated outage)"})
        try:
            self._check_auth(headers)
            body = self._json_body(headers, raw)
            seen["batch"] = (
                {k: v for k, v in body.items() if k != "records"}
                if isinstance(body, dict)
                else None
            )
            if problem := batch_problem(body, headers.get("Idempotency-Key")):
                raise HttpProblem(400, problem)
            if not headers.get("User-Agent", "").startswith("sensor-bridge/"):
                raise HttpProblem(400, "User-Agent: must be sensor-bridge/<version>")
            records = body["records"]
            if len(records) > self.max_records:
                raise HttpProblem(
                    413, f"at most {self.max_records} records per batch; send smaller batches"
                )
            bad_sensor = next(
                (
                    r["sensor_id"]
                    for r in records
                    if isinstance(r.get("sensor_id"), str)
                    and r["sensor_id"] in self.malformed_sensors
                ),
                None,
            )
            if bad_sensor is not None:
                raise HttpProblem(
                    400,
                    f"batch holds a reading of {bad_sensor}, which this receiver calls malformed",
                )
        except HttpProblem as problem:
            return Reply(problem.status, {"error": problem.error})
        rejected, good = [], []
        for r in records:
            why = record_problem(r) or (
                "poisoned for this test run" if r["id"] in self.poison_ids else None
            )
            if why:
                rejected.append({"id": r["id"], "error": why})
            else:
                good.append(r)
        new, newer, holding = self._store(body["bridge_id"], good)
        if self.announce:
            refused = f"; refused {len(rejected)} ({rejected[0]['error']})" if rejected else ""
            noun = "reading" if len(good) == 1 else "readings"
            print(
                f"receiver: stored {len(good)} {noun} ({new} new, {newer} newer revisions, "
                f"{len(good) - new - newer} unchanged) from {body['bridge_id']}{refused}; holding {holding}",
                flush=True,
            )
        return Reply(200, {"accepted": len(good), "rejected": rejected})

    def _check_auth(self, headers: Any) -> None:
        scheme, _, key = headers.get("Authorization", "").strip().partition(" ")
        if scheme.lower() != "bearer" or key.strip() != self.api_key:
            raise HttpProblem(401, "missing or wrong API key")

    def _json_body(self, headers: Any, raw: bytes, content_type_optional: bool = False) -> Any:
        if headers.get("Content-Type") is None and content_type_optional:
            pass  # a heartbeat: the contract names only the auth header for it, a wrong type is still refused
        elif headers.get("Content-Type", "").split(";")[0].strip().lower() != "application/json":
            raise HttpProblem(400, "Content-Type must be application/json")
        encoding = headers.get("Content-Encoding", "identity").strip().lower()
        if encoding in ("gzip", "x-gzip"):
            inflater = zlib.decompressobj(wbits=31)
            try:
                raw = inflater.decompress(raw, self.max_json + 1)
            except zlib.error:
                raise HttpProblem(400, "body is not valid gzip") from None
            if len(raw) > self.max_json:
                raise HttpProblem(
                    413, f"body inflates beyond {self.max_json} bytes; send smaller batches"
                )
            if not inflater.eof:
                raise HttpProblem(400, "body is not valid gzip (truncated)")
        elif encoding != "identity":
            raise HttpProblem(
                400, f"Content-Encoding {encoding} is not supported (use gzip or none)"
            )
        try:
            return json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise HttpProblem(400, "body is not UTF-8") from None
        except ValueError:
            raise HttpProblem(400, "body is not valid JSON") from None

    def _store(self, bridge_id: str, records: list[dict[str, Any]]) -> tuple[int, int, int]:
        """Upsert keeping the highest revision: (new ids, newer revisions, readings held)."""
        best: dict[str, dict[str, Any]] = {}
        for r in records:  # one batch may hold an id twice; its highest revision counts
            if r["id"] not in best or r["revision"] > best[r["id"]]["revision"]:
                best[r["id"]] = r
        now = time.time()
        with self.lock:
            known: dict[str, int] = {}
            ids = list(best)
            for i in range(0, len(ids), 500):  # SQLite's bound-parameter limit
                chunk = ids[i : i + 500]
                known.update(
                    self.db.execute(
                        "SELECT id, revision FROM readings"
                        f" WHERE bridge_id = ? AND id IN ({','.join('?' * len(chunk))})",
                        [bridge_id, *chunk],
                    )
                )
            changes = [r for r in best.values() if known.get(r["id"], 0) < r["revision"]]
            self.db.executemany(
                "INSERT INTO readings (id, revision, bridge_id, body, received_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (bridge_id, id) DO UPDATE SET revision = excluded.revision,"
                " body = excluded.body, received_at = excluded.received_at WHERE excluded.revision > revision",
                [(r["id"], r["revision"], bridge_id, json.dumps(r), now) for r in changes],
            )
            self.db.commit()
            holding = (
                self.db.execute("SELECT COUNT(*) FROM readings").fetchone()[0]
                if self.announce
                else 0
            )
        new = sum(1 for r in changes if r["id"] not in known)
        return new, len(changes) - new, holding

    def heartbeat(self, headers: Any, raw: bytes) -> Reply:
        try:
            self._check_auth(headers)
            body = self._json_body(headers, raw, content_type_optional=True)
            if problem := heartbeat_problem(body):
                raise HttpProblem(400, problem)
        except HttpProblem as problem:
            return Reply(problem.status, {"error": problem.error})
        with self.lock:
            self.db.execute(
                "INSERT OR REPLACE INTO heartbeats (bridge_id, body, received_at) VALUES (?, ?, ?)",
                (body["bridge_id"], json.dumps(body), time.time()),
            )
            self.db.commit()
        if self.announce:
            print(
                f"receiver: heartbeat from {body['bridge_id']}: {body['state']}, "
                f"{body['outbox']['pending']} pending",
                flush=True,
            )
        return Reply(200, {"ok": True})


def _scope_readings_by_bridge(db: sqlite3.Connection) -> None:
    """Re-key a readings file from before issue 22 (id alone) by (bridge_id, id); rows keep their ids.

    The same bridge sending an id again is the same reading; another bridge
    sending it (both call their door ``entrance-1``) is another one, as in the
    cloud (migration 20261203070000_sensor_bridge_readings_per_bridge.sql).
    """
    keyed = [row[1] for row in db.execute("PRAGMA table_info(readings)") if row[5]]
    if keyed != ["id"]:
        return
    db.executescript("""
        BEGIN;
        ALTER TABLE readings RENAME TO readings_by_id;
        CREATE TABLE readings (id TEXT NOT NULL, revision INTEGER NOT NULL,
            bridge_id TEXT NOT NULL, body TEXT NOT NULL, received_at REAL NOT NULL,
            PRIMARY KEY (bridge_id, id));
        INSERT INTO readings SELECT id, revision, bridge_id, body, received_at FROM readings_by_id;
        DROP TABLE readings_by_id;
        COMMIT;
    """)


class _Server(ThreadingHTTPServer):
    daemon_threads = True


class _Handler(BaseHTTPRequestHandler):
    receiver: SimReceiver  # set on the subclass _handler() makes

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        seen: dict[str, Any] = {
            "method": "POST",
            "path": self.path,
            "headers": dict(self.headers),
            "batch": None,
            "ids": [],
            "status": None,
            "error": None,
            "at": time.monotonic(),
        }
        ingest = self.path == INGEST_PATH
        if ingest:
            with self.receiver.lock:
                self.receiver._seen.append(seen)
        raw, reply = self._read_body()
        try:
            if reply is not None:
                pass
            elif ingest:
                seen["ids"] = _ids(self.headers, raw)
                reply = self.receiver.ingest(self.headers, raw, seen)
            elif self.path == HEARTBEAT_PATH:
                reply = self.receiver.heartbeat(self.headers, raw)
            else:
                reply = Reply(404, {"error": f"nothing at {self.path}; ingest is {INGEST_PATH}"})
        except Exception as exc:  # a receiver bug still answers, as a real API would (5xx)
            reply = Reply(500, {"error": f"receiver fault: {type(exc).__name__}: {exc}"})
        with self.receiver.lock:
            seen["status"] = reply.status
            seen["error"] = reply.body.get("error") if isinstance(reply.body, dict) else None
        if self.receiver.announce and reply.status >= 300:
            print(
                f"receiver: answered {reply.status} to {self.client_address[0]} {self.path}: "
                f"{seen['error']}",
                flush=True,
            )
        self._answer(reply)

    def _read_body(self) -> tuple[bytes, Reply | None]:
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        if not chunked and self.headers.get("Content-Length") is None:
            return b"", None  # no body at all: the checks below say what is missing
        try:
            raw = (
                self._read_chunked()
                if chunked
                else self._read_sized(int(self.headers["Content-Length"]))
            )
        except ValueError:
            self.close_connection = True
            return b"", Reply(400, {"error": "Content-Length or a chunk size is not a number"})
        if raw is None:
            self.close_connection = True
            return b"", Reply(
                413,
                {"error": f"body larger than {self.receiver.max_body} bytes; send smaller batches"},
            )
        return raw, None

    def _read_sized(self, length: int) -> bytes | None:
        """The body, or None when it is over the limit (read away all the same: closing on
        unread bytes makes the kernel reset the connection, and the sender could lose the 413)."""
        if length < 0:
            raise ValueError(length)
        if length <= self.receiver.max_body:
            return self.rfile.read(length)
        while length > 0 and (chunk := self.rfile.read(min(length, 1 << 16))):
            length -= len(chunk)
        return None

    def _read_chunked(self) -> bytes | None:
        """A chunked body (no Content-Length to refuse up front), or None when it grows over the limit."""
        parts, total = [], 0
        while True:
            size = int(self.rfile.readline(1024).split(b";")[0].strip(), 16)
            if size == 0:
                while self.rfile.readline(1024).strip():  # trailers, up to the blank line
                    pass
                return b"".join(parts) if total <= self.receiver.max_body else None
            total += size
            data = self._read_sized(size) if total <= self.receiver.max_body else None
            if data is None:  # over the limit: keep reading, keep nothing
                self._read_sized(size)
            else:
                parts.append(data)
            self.rfile.readline(1024)  # the CRLF after each chunk

    def _answer(self, reply: Reply) -> None:
        data = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in reply.headers.items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)


def _handler(receiver: SimReceiver) -> type[BaseHTTPRequestHandler]:
    return type("Handler", (_Handler,), {"receiver": receiver})


def _ids(headers: Any, raw: bytes) -> list[Any]:
    """The record ids of a batch, for requests_seen(), whatever else is wrong with it."""
    try:
        if headers.get("Content-Encoding", "").lower() in ("gzip", "x-gzip"):
            raw = gzip.decompress(raw)
        records = json.loads(raw).get("records", [])
        return [r.get("id") for r in records if isinstance(r, dict)]
    except (ValueError, OSError, EOFError, AttributeError, TypeError):
        return []


# ---------------------------------------------------------------- sensor-bridge sim receiver


class _CannotServe(Exception):
    pass


def _open(args: argparse.Namespace) -> SimReceiver:
    try:
        return SimReceiver(
            db_path=args.db,
            api_key=args.api_key,
            max_records=args.max_records,
            host=args.host,
            port=args.port,
            announce=True,
        )
    except sqlite3.Error as exc:
        raise _CannotServe(f"sim receiver: cannot keep readings in --db {args.db}: {exc}") from None
    except OSError as exc:
        raise _CannotServe(
            f"sim receiver: cannot listen on {args.host}:{args.port}: {exc.strerror};"
            " pick another --port"
        ) from None


def _announce(receiver: SimReceiver, args: argparse.Namespace) -> None:
    print(
        f"ingest receiver listening; readings kept in {args.db or 'memory'}. Point a bridge at it with:\n"
        f'  [uplink]\n  url = "{receiver.url}"\n  api_key = "{args.api_key}"\n'
        f'  heartbeat_url = "{receiver.heartbeat_url}"\nCtrl-C stops.',
        flush=True,
    )


def _serve(args: argparse.Namespace) -> int:
    def make(stop: threading.Event) -> Background:
        receiver = _open(args)
        return Background(lambda: _announce(receiver.start(), args), receiver.stop, stop)

    try:
        return run_service(make)
    except _CannotServe as exc:
        print(exc)
        return 1


def add_command(sim_commands: argparse._SubParsersAction) -> None:
    rx = sim_commands.add_parser(
        "receiver", help="serve a reference cloud receiver (the ingest contract)"
    )
    rx.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    rx.add_argument("--port", type=int, default=8088, help="port to listen on (default 8088)")
    rx.add_argument("--db", help="SQLite file to keep readings in (default: memory)")
    rx.add_argument(
        "--api-key", default="demo-key", help="the key a bridge must send (default demo-key)"
    )
    rx.add_argument(
        "--max-records", type=int, default=2000, help="answer 413 to larger batches (default 2000)"
    )
    rx.set_defaults(func=_serve)
