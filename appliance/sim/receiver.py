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
import json
import sqlite3
import ssl
import threading
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config.model import HEARTBEAT_PATH
from ..service import Background, run_service
from .adoption import Adoption
from .contract_rules import (  # noqa: F401 - the rules' names, as callers have imported them from here
    BATCH_FIELDS,
    BIGGEST,
    BRIDGE_STATES,
    HEARTBEAT_FIELDS,
    HEARTBEAT_OPTIONAL,
    HEARTBEAT_SCHEMA,
    INGEST_PATH,
    RECORD_ID,
    SCHEMA,
    batch_problem,
    heartbeat_problem,
    record_problem,
    utc_problem,
    values_problem,
)
from .http_handler import HttpProblem, Reply, Server, handler_for
from .scans import MAX_BYTES as MAX_SCAN_BYTES
from .scans import Scans

SEEN_KEPT = 10_000  # requests_seen() memory, so a receiver left running for days stays small


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
        self._server = Server((host, port), handler_for(self))
        if tls:  # (certificate file, key file): an https cloud, e.g. to test certificate checks
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        base = f"{'https' if tls else 'http'}://{host}:{self._server.server_address[1]}"
        self.url = base + INGEST_PATH
        self.heartbeat_url = base + HEARTBEAT_PATH
        self.origin = base  # a [fleet] url
        self.adoption = Adoption()
        self.scans = Scans()

    # ------------------------------------------------------------ adoption (appliance/sim/adoption.py)

    def new_enroll_token(self, label: str = "") -> str:
        """A fleet enroll token this receiver accepts on /enroll (and nowhere else)."""
        return self.adoption.new_enroll_token(label)

    def revoke_enroll_token(self, token: str) -> None:
        self.adoption.revoke_enroll_token(token)

    def claim(
        self, code: str, label: str = "", timezone: str = "UTC", id: str | None = None
    ) -> str:
        """Claim the bridge showing ``code`` (the fleet page's form); returns its bridge id."""
        return self.adoption.claim(code, label=label, timezone=timezone, id=id)

    def set_config(self, bridge_id: str, document: dict[str, Any]) -> int:
        """Give ``bridge_id`` a new config version (the store's part as JSON); returns the version."""
        return self.adoption.set_config(bridge_id, document)

    def enroll(self, headers: Any, raw: bytes, source: str) -> Reply:
        try:
            body = self._json_body(headers, raw)
        except HttpProblem as problem:
            return Reply(problem.status, {"error": problem.error})
        return self.adoption.enroll(headers, body, source)

    def config_for(self, headers: Any) -> Reply:
        if self.down:
            return Reply(503, {"error": "receiver is down (simulated outage)"})
        reply = self.adoption.config_for(headers)
        bridge_id = headers.get("X-Bridge-Id", "")
        if reply.status != 401 and (scan := self.scans.wanted(bridge_id)) is not None:
            reply.headers["X-Scan-Wanted"] = str(scan)  # a bridge with no config yet learns here
        return reply

    def ask_scan(self, bridge_id: str) -> int:
        """The fleet page's "Scan the store's network" for ``bridge_id``; returns the scan id."""
        return self.scans.ask(bridge_id)

    def scan_report(self, headers: Any, raw: bytes) -> Reply:
        """POST /scan: an adopted bridge's scan result (appliance/sim/scans.py)."""
        if self.down:
            return Reply(503, {"error": "receiver is down (simulated outage)"})
        if len(raw) > MAX_SCAN_BYTES:
            return Reply(413, {"error": f"body larger than {MAX_SCAN_BYTES} bytes"})
        scheme, _, key = headers.get("Authorization", "").strip().partition(" ")
        bridge_id = self.adoption.bridge_of_key(key.strip()) if scheme.lower() == "bearer" else None
        if bridge_id is None:
            return Reply(401, {"error": "missing or wrong key"})
        try:
            body = self._json_body(headers, raw)
        except HttpProblem as problem:
            return Reply(problem.status, {"error": problem.error})
        return self.scans.report(bridge_id, body)

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
        if scheme.lower() != "bearer" or (
            key.strip() != self.api_key and self.adoption.bridge_of_key(key.strip()) is None
        ):
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
        self.adoption.note_heartbeat(body)
        wanted = self.adoption.wanted_version(body["bridge_id"])
        scan = self.scans.wanted(body["bridge_id"])
        return Reply(
            200,
            {"ok": True, **({"config_version": wanted} if wanted else {}), "scan_wanted": scan},
        )


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
