"""Benchmark: readings per second into the outbox, and drained from it to a receiver.

(a) Outbox.put in batches of 500, against raw sqlite3 executemany inserts of
    the same rows, already serialised, into a table of the same shape with the
    same durability settings (WAL, synchronous=FULL, one transaction per 500).
(b) Uplink.deliver_once draining the outbox (batch 500, gzip on) to the
    reference receiver, against raw requests POSTs of the same batches, built
    and gzipped beforehand, to an identical receiver. The receiver runs in its
    own process (`sensor-bridge sim receiver`), as the cloud would, so its CPU
    is not charged to the uplink through the GIL.

Each figure is the best of a few rounds (the machine is shared). Run:
    .venv/bin/python bench/delivery.py
Target (2-core dev machine): drain >= 5,000 records/s.
"""

from __future__ import annotations

import gzip
import json
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from conftest import base_tables, free_port  # noqa: E402

from appliance import __version__  # noqa: E402
from appliance.config import parse_config  # noqa: E402
from appliance.outbox import SCHEMA as OUTBOX_SCHEMA  # noqa: E402
from appliance.outbox import Outbox  # noqa: E402
from appliance.records import Record  # noqa: E402
from appliance.uplink import GZIP_LEVEL, Uplink  # noqa: E402

N = 20_000
BATCH = 500
ROUNDS = 3
KEY = "bench-key"
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def make_readings(n: int) -> list[Record]:
    return [
        Record(
            f"cam-{i % 50:02d}",
            "line_counts",
            T0 + timedelta(hours=i),
            T0 + timedelta(hours=i + 1),
            {
                "total": {"in": i % 300, "out": i % 200},
                "lines": {"1": {"in": i % 300, "out": i % 200}},
            },
            True,
            "poll",
        )
        for i in range(n)
    ]


def best(rounds: int, measure: Callable[[int], float]) -> float:
    return max(measure(r) for r in range(rounds))


# ---------------------------------------------------------------- (a) into the outbox


def put_rate(records: list[Record], workdir: Path, round_: int) -> float:
    box = Outbox(workdir / f"outbox-{round_}.db")
    start = time.perf_counter()
    for i in range(0, len(records), BATCH):
        box.put(records[i : i + BATCH])
    rate = len(records) / (time.perf_counter() - start)
    box.close()
    return rate


def raw_insert_rate(records: list[Record], workdir: Path, round_: int) -> float:
    db = sqlite3.connect(workdir / f"raw-{round_}.db", isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.executescript(OUTBOX_SCHEMA)  # the same table and indexes
    rows = []
    for seq, r in enumerate(records, 1):
        wire = r.wire()
        rows.append(
            (
                wire["id"],
                seq,
                r.sensor_id,
                r.kind,
                wire["period_start"],
                1,
                1,
                "-",
                json.dumps(wire),
                "pending",
                0.0,
            )
        )
    start = time.perf_counter()
    for i in range(0, len(rows), BATCH):
        db.execute("BEGIN IMMEDIATE")
        db.executemany(
            "INSERT INTO readings (id, seq, sensor_id, kind, period_start, revision, final, digest,"
            " body, state, queued_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows[i : i + BATCH],
        )
        db.execute("COMMIT")
    rate = len(rows) / (time.perf_counter() - start)
    db.close()
    return rate


# ---------------------------------------------------------------- (b) drained to a receiver


@contextmanager
def receiver_process() -> Iterator[str]:
    """A fresh `sensor-bridge sim receiver` (in-memory) in its own process; yields its ingest URL."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "appliance",
            "sim",
            "receiver",
            "--port",
            str(port),
            "--api-key",
            KEY,
            "--max-records",
            str(BATCH),
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the receiver did not start") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/api/bridge/v1/ingest"
    finally:
        proc.terminate()
        proc.wait(10)


def drain_rate(records: list[Record], workdir: Path, round_: int) -> float:
    box = Outbox(workdir / f"drain-{round_}.db")
    box.put(records)
    with receiver_process() as url:
        tables = base_tables(workdir, url, api_key=KEY)
        tables["uplink"].update(batch_size=BATCH, gzip=True)
        uplink = Uplink(parse_config(tables), box)
        start = time.perf_counter()
        while uplink.deliver_once().delivered:
            pass
        rate = len(records) / (time.perf_counter() - start)
    assert box.stats().pending == 0, uplink.snapshot()
    box.close()
    return rate


def raw_post_rate(records: list[Record], workdir: Path, round_: int) -> float:
    bodies = []
    for i in range(0, len(records), BATCH):
        batch = {
            "schema": "sensor-bridge/ingest/v1",
            "bridge_id": "bench",
            "batch_id": f"b{round_}-{i}",
            "sent_at": "2025-01-01T00:00:00Z",
            "records": [r.wire() for r in records[i : i + BATCH]],
        }
        data = gzip.compress(json.dumps(batch, separators=(",", ":")).encode(), GZIP_LEVEL)
        bodies.append((batch["batch_id"], data))
    headers = {
        "Authorization": f"Bearer {KEY}",
        "Content-Type": "application/json",
        "Content-Encoding": "gzip",
        "User-Agent": f"sensor-bridge/{__version__}",
    }
    with receiver_process() as url, requests.Session() as session:
        start = time.perf_counter()
        for batch_id, data in bodies:
            answer = session.post(
                url, data=data, headers={**headers, "Idempotency-Key": batch_id}, timeout=30
            )
            assert answer.status_code == 200 and answer.json()["accepted"] == BATCH, answer.text
        return len(records) / (time.perf_counter() - start)


def main() -> None:
    records = make_readings(N)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        put = best(ROUNDS, lambda r: put_rate(records, work, r))
        put_raw = best(ROUNDS, lambda r: raw_insert_rate(records, work, r))
        drain = best(ROUNDS, lambda r: drain_rate(records, work, r))
        drain_raw = best(ROUNDS, lambda r: raw_post_rate(records, work, r))
    print(f"{N:,} readings, batches of {BATCH}, best of {ROUNDS}")
    print(f"{'records/s':30} {'sensor-bridge':>14} {'baseline':>10}  baseline is")
    print(
        f"{'into the outbox (put)':30} {put:>14,.0f} {put_raw:>10,.0f}  raw executemany of pre-serialised rows"
    )
    print(
        f"{'drained to a receiver (uplink)':30} {drain:>14,.0f} {drain_raw:>10,.0f}  raw POSTs of pre-built gzip"
        " bodies"
    )
    print(f"target: drain >= 5,000 records/s -> {'met' if drain >= 5000 else 'NOT met'}")


if __name__ == "__main__":
    main()
