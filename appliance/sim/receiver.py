"""A reference receiver for the ingest contract: the cloud side, on one machine.

Integrators point a bridge at it to see exactly what arrives; the demo prints
each batch as it lands; the tests check the bridge against it. It validates
every header and field as ingest-contract.md says, stores records in SQLite
keeping the highest revision per id (a replay changes nothing), rejects bad
records one by one, and can be told to misbehave: a script of answers
(503, 429 with Retry-After, 413, 401 ...), a full outage, a record-count limit
that answers 413, or a sensor whose batches it calls malformed.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import re
import sqlite3
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SCHEMA = "sensor-bridge/ingest/v1"
HEARTBEAT_SCHEMA = "sensor-bridge/heartbeat/v1"
INGEST_PATH = "/api/bridge/v1/ingest"
HEARTBEAT_PATH = "/api/bridge/v1/heartbeat"
UTC_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
UTC_Z_SECONDS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
KINDS = ("line_counts", "region_counts", "live_counts", "occupancy", "event")
SOURCES = ("poll", "mqtt", "http-push")
RECORD_FIELDS = {"id", "sensor_id", "kind", "period_start", "period_end", "final", "revision", "source",
                 "observed_at", "values"}


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _in_out(v: Any) -> bool:
    return isinstance(v, dict) and set(v) == {"in", "out"} and all(_count(x) for x in v.values())


def _counts_by_number(v: Any) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) and _count(x) for k, x in v.items())


def values_problem(kind: str, v: Any) -> str | None:
    """Why ``v`` is not a valid ``values`` object for ``kind`` (None when it is)."""
    if not isinstance(v, dict):
        return "values: expected an object"
    if kind == "line_counts":
        lines = v.get("lines")
        ok = set(v) == {"total", "lines"} and _in_out(v["total"]) and isinstance(lines, dict) \
            and all(_in_out(x) for x in lines.values())
        return None if ok else "values: expected {total: {in, out}, lines: {n: {in, out}}} with counts >= 0"
    if kind == "region_counts":
        return None if set(v) == {"regions"} and _counts_by_number(v["regions"]) else \
            "values: expected {regions: {n: count}}"
    if kind == "live_counts":
        return None if set(v) == {"in", "out", "sum", "capacity"} and all(_count(x) for x in v.values()) else \
            "values: expected {in, out, sum, capacity} counts"
    if kind == "occupancy":
        ok = set(v) == {"current_total", "max", "regions"} and _count(v["current_total"]) \
            and (v["max"] is None or _count(v["max"])) and _counts_by_number(v["regions"])
        return None if ok else "values: expected {current_total, max, regions}"
    ok = set(v) == {"event", "payload"} and isinstance(v["event"], str) and isinstance(v["payload"], dict)
    return None if ok else "values: expected {event: string, payload: object}"


def record_problem(r: Any) -> str | None:
    """Why record ``r`` breaks the contract (None when it does not)."""
    if not isinstance(r, dict):
        return "record: expected an object"
    if set(r) != RECORD_FIELDS:
        missing, extra = RECORD_FIELDS - set(r), set(r) - RECORD_FIELDS
        return f"record fields: missing {sorted(missing)}, unknown {sorted(extra)}"
    for name in ("sensor_id", "kind", "source", "id"):
        if not isinstance(r[name], str) or not r[name]:
            return f"{name}: expected a non-empty string"
    if r["kind"] not in KINDS:
        return f"kind: {r['kind']!r} is not one of {', '.join(KINDS)}"
    if r["source"] not in SOURCES:
        return f"source: {r['source']!r} is not one of {', '.join(SOURCES)}"
    for name in ("period_start", "period_end"):
        if not isinstance(r[name], str) or not UTC_Z_SECONDS.match(r[name]):
            return f"{name}: expected RFC 3339 UTC with Z, second precision"
    if not isinstance(r["observed_at"], str) or not UTC_Z.match(r["observed_at"]):
        return "observed_at: expected RFC 3339 UTC with Z"
    if r["period_end"] < r["period_start"]:
        return "period_end is before period_start"
    if not isinstance(r["final"], bool):
        return "final: expected true or false"
    if not isinstance(r["revision"], int) or isinstance(r["revision"], bool) or r["revision"] < 1:
        return "revision: expected an integer >= 1"
    want = hashlib.sha256(f"{r['sensor_id']}|{r['kind']}|{r['period_start']}".encode()).hexdigest()
    if r["id"] != want:
        return "id: not SHA-256 of sensor_id|kind|period_start"
    if r["kind"] == "live_counts" and (r["period_start"] != r["period_end"] or not r["final"]):
        return "live_counts: period_start must equal period_end and final must be true"
    return values_problem(r["kind"], r["values"])


class SimReceiver:
    """The contract's receiving side on ``127.0.0.1`` (port 0 = free); use as a context manager."""

    def __init__(self, db_path: str | Path | None = None, api_key: str = "demo-key", max_records: int = 1000,
                 max_body_kb: int = 4096, host: str = "127.0.0.1", port: int = 0, announce: bool = False) -> None:
        self.api_key = api_key
        self.max_records = max_records
        self.max_body = max_body_kb * 1024
        self.announce = announce
        self.db = sqlite3.connect(str(db_path) if db_path else ":memory:", check_same_thread=False)
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS readings (id TEXT PRIMARY KEY, revision INTEGER, body TEXT)")
        self.db.execute("CREATE TABLE IF NOT EXISTS heartbeats (bridge_id TEXT PRIMARY KEY, body TEXT)")
        self.lock = threading.Lock()
        self._script: deque[Any] = deque()
        self.down = False
        self.poison_ids: set[str] = set()
        self.malformed_sensors: set[str] = set()
        self.seen: list[dict[str, Any]] = []
        self._server = _Server((host, port), _handler(self))
        base = f"http://{host}:{self._server.server_address[1]}"
        self.url = base + INGEST_PATH
        self.heartbeat_url = base + HEARTBEAT_PATH

    # ------------------------------------------------------------ lifecycle

    def start(self) -> SimReceiver:
        threading.Thread(target=self._server.serve_forever, name="sim-receiver", daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> SimReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ misbehaving on purpose

    def script(self, *answers: int | tuple[int, dict[str, str]]) -> None:
        """Answer the next ingest requests with these statuses (optionally with headers), in order."""
        with self.lock:
            self._script.extend(answers)

    def set_down(self, down: bool) -> None:
        """While down, every ingest request gets 503."""
        self.down = down

    # ------------------------------------------------------------ looking inside

    def records(self) -> dict[str, dict[str, Any]]:
        with self.lock:
            rows = self.db.execute("SELECT id, body FROM readings").fetchall()
        return {rid: json.loads(body) for rid, body in rows}

    def requests_seen(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.seen)

    def last_heartbeat(self, bridge_id: str | None = None) -> dict[str, Any] | None:
        with self.lock:
            row = self.db.execute(
                "SELECT body FROM heartbeats" + (" WHERE bridge_id = ?" if bridge_id else ""),
                (bridge_id,) if bridge_id else (),
            ).fetchone()
        return json.loads(row[0]) if row else None

    # ------------------------------------------------------------ the contract

    def ingest(self, headers: Any, raw: bytes) -> tuple[int, dict[str, Any], dict[str, str]]:
        """Status, JSON body and extra headers for one POST to the ingest path."""
        with self.lock:
            scripted = self._script.popleft() if self._script else None
        if scripted is not None:
            code, extra = scripted if isinstance(scripted, tuple) else (scripted, {})
            return code, {"error": f"scripted {code}"}, extra
        if self.down:
            return 503, {"error": "receiver is down"}, {}
        if headers.get("Authorization") != f"Bearer {self.api_key}":
            return 401, {"error": "missing or wrong API key"}, {}
        body, problem = self._body(headers, raw)
        if problem:
            return (413 if problem.startswith("too large") else 400), {"error": problem}, {}
        batch_problem = self._batch_problem(headers, body)
        if batch_problem:
            return (413 if batch_problem.startswith("too many") else 400), {"error": batch_problem}, {}
        records = body["records"]
        if any(isinstance(r, dict) and r.get("sensor_id") in self.malformed_sensors for r in records):
            return 400, {"error": "batch contains a record this receiver calls malformed"}, {}
        rejected, good = [], []
        for r in records:
            why = record_problem(r) or ("poisoned by the test" if isinstance(r, dict) and r.get("id") in self.poison_ids
                                        else None)
            if why:
                rejected.append({"id": r.get("id") if isinstance(r, dict) else None, "error": why})
            else:
                good.append(r)
        new, newer = self._store(good)
        if self.announce:
            print(f"receiver: stored {len(good)} readings ({new} new, {newer} newer revisions) from "
                  f"{body['bridge_id']}; holding {self._count()}", flush=True)
        return 200, {"accepted": len(good), "rejected": rejected}, {}

    def _body(self, headers: Any, raw: bytes) -> tuple[Any, str | None]:
        if len(raw) > self.max_body:
            return None, f"too large: {len(raw)} bytes"
        if headers.get("Content-Encoding", "").lower() == "gzip":
            try:
                raw = gzip.decompress(raw)
            except (OSError, EOFError):
                return None, "Content-Encoding says gzip but the body is not"
        if not headers.get("Content-Type", "").startswith("application/json"):
            return None, "Content-Type must be application/json"
        try:
            return json.loads(raw), None
        except ValueError:
            return None, "body is not JSON"

    def _batch_problem(self, headers: Any, body: Any) -> str | None:
        if not isinstance(body, dict):
            return "body: expected a JSON object"
        if body.get("schema") != SCHEMA:
            return f"schema: expected {SCHEMA}"
        for name in ("bridge_id", "batch_id"):
            if not isinstance(body.get(name), str) or not body[name]:
                return f"{name}: expected a non-empty string"
        if headers.get("Idempotency-Key") != body["batch_id"]:
            return "Idempotency-Key header must equal batch_id"
        if not isinstance(body.get("sent_at"), str) or not UTC_Z.match(body["sent_at"]):
            return "sent_at: expected RFC 3339 UTC with Z"
        records = body.get("records")
        if not isinstance(records, list) or not records:
            return "records: expected 1 or more records"
        if len(records) > self.max_records:
            return f"too many records: {len(records)} > {self.max_records}"
        if not headers.get("User-Agent", "").startswith("sensor-bridge/"):
            return "User-Agent: expected sensor-bridge/<version>"
        return None

    def _store(self, records: list[dict[str, Any]]) -> tuple[int, int]:
        new = newer = 0
        with self.lock:
            for r in records:
                row = self.db.execute("SELECT revision FROM readings WHERE id = ?", (r["id"],)).fetchone()
                if row is None:
                    new += 1
                elif row[0] < r["revision"]:
                    newer += 1
                else:
                    continue  # a replay or an older revision changes nothing
                self.db.execute("INSERT OR REPLACE INTO readings (id, revision, body) VALUES (?, ?, ?)",
                                (r["id"], r["revision"], json.dumps(r)))
            self.db.commit()
        return new, newer

    def _count(self) -> int:
        with self.lock:
            return self.db.execute("SELECT COUNT(*) FROM readings").fetchone()[0]

    def heartbeat(self, headers: Any, raw: bytes) -> tuple[int, dict[str, Any]]:
        if headers.get("Authorization") != f"Bearer {self.api_key}":
            return 401, {"error": "missing or wrong API key"}
        body, problem = self._body(headers, raw)
        if problem or not isinstance(body, dict) or body.get("schema") != HEARTBEAT_SCHEMA:
            return 400, {"error": problem or f"schema: expected {HEARTBEAT_SCHEMA}"}
        with self.lock:
            self.db.execute("INSERT OR REPLACE INTO heartbeats (bridge_id, body) VALUES (?, ?)",
                            (str(body.get("bridge_id")), json.dumps(body)))
            self.db.commit()
        return 200, {"ok": True}


class _Server(ThreadingHTTPServer):
    daemon_threads = True


def _handler(receiver: SimReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            extra: dict[str, str] = {}
            if self.path == INGEST_PATH:
                code, body, extra = receiver.ingest(self.headers, raw)
                try:
                    parsed = json.loads(gzip.decompress(raw) if self.headers.get("Content-Encoding") == "gzip"
                                        else raw)
                    ids = [r.get("id") for r in parsed.get("records", []) if isinstance(r, dict)]
                except (ValueError, OSError, EOFError, AttributeError):
                    ids = []
                with receiver.lock:
                    receiver.seen.append({"headers": dict(self.headers), "ids": ids, "status": code})
            elif self.path == HEARTBEAT_PATH:
                code, body = receiver.heartbeat(self.headers, raw)
            else:
                code, body = 404, {"error": "not found"}
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in extra.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

    return Handler


def _serve(args: argparse.Namespace) -> int:
    receiver = SimReceiver(db_path=args.db, api_key=args.api_key, max_records=args.max_records,
                           host=args.host, port=args.port, announce=True)
    receiver.start()
    print(f"ingest receiver on {receiver.url} (heartbeat {receiver.heartbeat_url}), api key {args.api_key!r}; "
          "Ctrl-C stops", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        receiver.stop()
    return 0


def add_command(sim_commands: argparse._SubParsersAction) -> None:
    rx = sim_commands.add_parser("receiver", help="serve a reference cloud receiver (the ingest contract)")
    rx.add_argument("--host", default="127.0.0.1")
    rx.add_argument("--port", type=int, default=8088)
    rx.add_argument("--db", help="SQLite file to keep readings in (default: memory)")
    rx.add_argument("--api-key", default="demo-key")
    rx.add_argument("--max-records", type=int, default=1000, help="answer 413 to larger batches")
    rx.set_defaults(func=_serve)
