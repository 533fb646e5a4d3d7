"""Benchmark: readings per second from the appliance's outbox into the cloud's table.

The appliance's own Uplink drains an outbox through the cloud app, built
with `next build` and served by `next start`, into PostgreSQL's
bridge_readings. In the same run, side by side: the same records as raw HTTP
POSTs of pre-built gzip batches to the same `next start`, and as one raw
INSERT ... ON CONFLICT per batch through psql (no HTTP, no validation: the
floor any receiver pays).

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
from cloud_helpers import API_ROLE, NEXTJS, CloudStack  # noqa: E402
from cloud_ingest import raw_insert_sql  # noqa: E402
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
        headers = {
            "Authorization": f"Bearer {api.api_key}",
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "User-Agent": "sensor-bridge/bench",
        }
        bodies = []
        for i in range(0, N, BATCH):
            batch = {
                "schema": "sensor-bridge/ingest/v1",
                "bridge_id": api.bridge_id,
                "batch_id": f"b{i}",
                "sent_at": "2025-01-01T00:00:00Z",
                "records": [r.wire() for r in records[i : i + BATCH]],
            }
            bodies.append((f"b{i}", gzip.compress(json.dumps(batch).encode(), 5)))
        session = requests.Session()
        start = time.perf_counter()
        for key, body in bodies:
            answer = session.post(
                api.ingest_url, data=body, headers={**headers, "Idempotency-Key": key}, timeout=60
            )
            assert answer.status_code == 200, answer.text
        raw = N / (time.perf_counter() - start)

        stack.reset()
        api = stack.api("bench-bridge")
        script = "".join(
            raw_insert_sql(api.bridge_id, {"records": [r.wire() for r in records[i : i + BATCH]]})
            for i in range(0, N, BATCH)
        )
        start = time.perf_counter()
        stack.pg.psql(script, user=API_ROLE, timeout=600)
        insert = N / (time.perf_counter() - start)
        held = stack.pg.query("select count(*) from public.bridge_readings")[0][0]
        assert int(held) == N, held
    finally:
        stack.stop()
    version = json.loads((NEXTJS / "node_modules" / "next" / "package.json").read_text())["version"]
    print(
        f"{N} readings, batches of {BATCH}, into PostgreSQL; HTTP through `next start` (Next.js {version})"
    )
    print(f"{'':26} {'sensor-bridge uplink':>21} {'raw HTTP posts':>15} {'raw INSERT (psql)':>18}")
    print(f"{'records/s outbox->table':26} {ours:>21,.0f} {raw:>15,.0f} {insert:>18,.0f}")


if __name__ == "__main__":
    main()
