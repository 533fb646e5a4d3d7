"""Benchmark: readings per second into the outbox, and drained from it to a receiver.

Baselines, measured in the same run: raw sqlite3 inserts into a similar table
with the same durability settings (WAL, synchronous=FULL, one transaction per
500), and raw HTTP POSTs of the same pre-built batches to the same receiver.

Run: .venv/bin/python bench/delivery.py
Target (2-core dev machine): drain >= 5,000 records/s.
"""

from __future__ import annotations

import gzip
import json
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import base_tables  # noqa: E402

from appliance.config import parse_config  # noqa: E402
from appliance.outbox import Outbox  # noqa: E402
from appliance.records import Record  # noqa: E402
from appliance.sim.receiver import SimReceiver  # noqa: E402
from appliance.uplink import Uplink  # noqa: E402

N = 20_000
BATCH = 500
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def make_readings(n: int) -> list[Record]:
    return [
        Record(f"cam-{i % 50:02d}", "line_counts", T0 + timedelta(hours=i), T0 + timedelta(hours=i + 1),
               {"total": {"in": i % 300, "out": i % 200}, "lines": {"1": {"in": i % 300, "out": i % 200}}},
               True, "poll")
        for i in range(n)
    ]


def bench_put(records: list[Record], workdir: Path) -> tuple[float, float]:
    box = Outbox(workdir / "outbox.db")
    start = time.perf_counter()
    for i in range(0, len(records), BATCH):
        box.put(records[i:i + BATCH])
    ours = len(records) / (time.perf_counter() - start)
    box.close()

    db = sqlite3.connect(workdir / "raw.db", isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.execute("CREATE TABLE r (id TEXT PRIMARY KEY, body TEXT)")
    rows = [(r.id, json.dumps(r.wire())) for r in records]
    start = time.perf_counter()
    for i in range(0, len(rows), BATCH):
        db.execute("BEGIN")
        db.executemany("INSERT INTO r VALUES (?, ?)", rows[i:i + BATCH])
        db.execute("COMMIT")
    raw = len(rows) / (time.perf_counter() - start)
    return ours, raw


def bench_drain(records: list[Record], workdir: Path, receiver: SimReceiver) -> tuple[float, float]:
    tables = base_tables(workdir, receiver.url)
    tables["uplink"]["batch_size"] = BATCH
    box = Outbox(workdir / "drain.db")
    box.put(records)
    uplink = Uplink(parse_config(tables), box)
    start = time.perf_counter()
    while box.take(1):
        result = uplink.deliver_once()
        assert result.delivered, result
    ours = len(records) / (time.perf_counter() - start)

    with SimReceiver(api_key="test-key") as fresh:
        session = requests.Session()
        bodies = []
        for i in range(0, len(records), BATCH):
            batch = {"schema": "sensor-bridge/ingest/v1", "bridge_id": "bench", "batch_id": f"b{i}",
                     "sent_at": "2025-01-01T00:00:00Z", "records": [r.wire() for r in records[i:i + BATCH]]}
            bodies.append((f"b{i}", gzip.compress(json.dumps(batch, separators=(",", ":")).encode(), 5)))
        headers = {"Authorization": "Bearer test-key", "Content-Type": "application/json",
                   "Content-Encoding": "gzip", "User-Agent": "sensor-bridge/bench"}
        start = time.perf_counter()
        for key, body in bodies:
            answer = session.post(fresh.url, data=body, headers={**headers, "Idempotency-Key": key}, timeout=30)
            assert answer.status_code == 200, answer.text
        raw = len(records) / (time.perf_counter() - start)
    return ours, raw


def main() -> None:
    records = make_readings(N)
    with tempfile.TemporaryDirectory() as tmp, SimReceiver(api_key="test-key") as receiver:
        put, put_raw = bench_put(records, Path(tmp))
        drain, drain_raw = bench_drain(records, Path(tmp), receiver)
    print(f"{N} readings, batches of {BATCH}")
    print(f"{'':28} {'sensor-bridge':>14} {'baseline':>10}")
    print(f"{'into the outbox, records/s':28} {put:>14,.0f} {put_raw:>10,.0f}   (baseline: raw sqlite inserts)")
    print(f"{'drained to receiver, rec/s':28} {drain:>14,.0f} {drain_raw:>10,.0f}   (baseline: raw HTTP posts)")
    print(f"target: drain >= 5,000 records/s -> {'met' if drain >= 5000 else 'NOT met'}")


if __name__ == "__main__":
    main()
