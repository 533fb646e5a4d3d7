"""Benchmark: readings per second from the appliance's outbox into the cloud's table.

The appliance's own Uplink drains an outbox through the Next.js routes (run by
Node around the exported handlers) into PostgreSQL's bridge_readings. The
baseline is the same records sent by raw HTTP POSTs of pre-built batches to
the same route, in the same run.

Run: .venv/bin/python bench/cloud_e2e.py   (needs postgresql and node, as the tests do)
"""

from __future__ import annotations

import gzip
import json
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from cloud_helpers import CloudStack  # noqa: E402
from conftest import base_tables  # noqa: E402
from delivery import make_readings  # noqa: E402

from appliance.config import parse_config  # noqa: E402
from appliance.outbox import Outbox  # noqa: E402
from appliance.uplink import Uplink  # noqa: E402

N = 10_000
BATCH = 500


def main() -> None:
    stack = CloudStack(server_env={"BRIDGE_RATE_PER_MIN": "0"}).start()
    try:
        api = stack.api("bench-bridge")
        records = make_readings(N)
        with tempfile.TemporaryDirectory() as tmp:
            tables = base_tables(Path(tmp), api.ingest_url, api_key=api.api_key)
            tables["bridge"]["id"] = api.bridge_id
            tables["uplink"]["batch_size"] = BATCH
            box = Outbox(Path(tmp) / "outbox.db")
            box.put(records)
            uplink = Uplink(parse_config(tables), box)
            start = time.perf_counter()
            while box.take(1):
                assert uplink.deliver_once().delivered, uplink.snapshot()
            ours = N / (time.perf_counter() - start)
        held = stack.pg.query("select count(*) from public.bridge_readings")[0][0]
        assert int(held) == N, held

        stack.reset()
        api = stack.api("bench-bridge")
        headers = {"Authorization": f"Bearer {api.api_key}", "Content-Type": "application/json",
                   "Content-Encoding": "gzip", "User-Agent": "sensor-bridge/bench"}
        bodies = []
        for i in range(0, N, BATCH):
            batch = {"schema": "sensor-bridge/ingest/v1", "bridge_id": api.bridge_id, "batch_id": f"b{i}",
                     "sent_at": "2025-01-01T00:00:00Z", "records": [r.wire() for r in records[i:i + BATCH]]}
            bodies.append((f"b{i}", gzip.compress(json.dumps(batch).encode(), 5)))
        session = requests.Session()
        start = time.perf_counter()
        for key, body in bodies:
            answer = session.post(api.ingest_url, data=body, headers={**headers, "Idempotency-Key": key}, timeout=60)
            assert answer.status_code == 200, answer.text
        raw = N / (time.perf_counter() - start)
    finally:
        stack.stop()
    print(f"{N} readings, batches of {BATCH}, into PostgreSQL through the Next.js ingest route")
    print(f"{'':26} {'sensor-bridge uplink':>21} {'raw HTTP posts':>15}")
    print(f"{'records/s outbox->table':26} {ours:>21,.0f} {raw:>15,.0f}")


if __name__ == "__main__":
    main()
