"""Benchmark: records/s ingested through the cloud route, next to a raw INSERT baseline.

    .venv/bin/python bench/cloud_ingest.py [--batches 20] [--batch-size 500] [--concurrency 1]

Starts its own throwaway PostgreSQL (fsync on, so commits cost what they cost)
and the routes under `next start` on loopback (tests/cloud_helpers.py does both), then
stores the same records three ways, each into an empty table:

- route:     POST /api/bridge/v1/ingest over HTTP (auth, body, validation, upsert)
- function:  ingest_bridge_batch() called through psql (validation + upsert, no HTTP)
- raw:       one INSERT ... ON CONFLICT DO UPDATE ... WHERE revision < excluded.revision
             per batch through psql: the floor any receiver pays

and then replays every batch (the "nothing changes" path). Needs what the
cloud tests need: PostgreSQL server binaries, psql, node and npm.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from cloud_helpers import (  # noqa: E402  (after the path above)
    API_ROLE,
    CloudApi,
    CloudStack,
    contract_headers,
    dollar_quoted,
    make_batch,
    make_series,
    missing_tools,
    recent_period_start,
    sql_literal,
)


def build_batches(bridge_id: str, batches: int, size: int) -> list[dict[str, Any]]:
    """Distinct 5-minute line_counts records: ``size`` sensors x ``batches`` periods, one period per batch."""
    first = recent_period_start(batches + 1)
    per_sensor = [make_series(f"bench-{s:04d}", batches, first=first) for s in range(size)]
    return [make_batch(bridge_id, [series[b] for series in per_sensor]) for b in range(batches)]


def raw_insert_sql(bridge_id: str, batch: dict[str, Any]) -> str:
    rows = ",\n".join(
        "({}, {}, {}, {}, {}, {}, {}, {}, {}, {}::jsonb, {}, now())".format(
            sql_literal(r["id"]),
            sql_literal(r["sensor_id"]),
            sql_literal(r["kind"]),
            sql_literal(r["period_start"]),
            sql_literal(r["period_end"]),
            "true" if r["final"] else "false",
            r["revision"],
            sql_literal(r["source"]),
            sql_literal(r["observed_at"]),
            sql_literal(json.dumps(r["values"])),
            sql_literal(bridge_id),
        )
        for r in batch["records"]
    )
    return (
        "insert into public.bridge_readings as cur (id, sensor_id, kind, period_start, period_end, final, "
        'revision, source, observed_at, "values", bridge_id, received_at) values\n'
        + rows
        + "\non conflict (bridge_id, id) do update set period_end = excluded.period_end, final = excluded.final, "
        "revision = excluded.revision, source = excluded.source, observed_at = excluded.observed_at, "
        '"values" = excluded."values", received_at = excluded.received_at '
        "where cur.revision < excluded.revision;\n"
    )


def timed(action: Callable[[], None]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def run_route(api: CloudApi, bodies: Sequence[tuple[str, bytes]], concurrency: int) -> None:
    failures: list[str] = []
    lock = threading.Lock()
    queue = list(bodies)

    def worker() -> None:
        with requests.Session() as session:
            while True:
                with lock:
                    if not queue:
                        return
                    batch_id, body = queue.pop(0)
                answer = session.post(
                    api.ingest_url,
                    data=body,
                    headers=contract_headers(api.api_key, batch_id),
                    timeout=120,
                )
                if answer.status_code != 200 or answer.json()["rejected"]:
                    failures.append(f"{answer.status_code} {answer.text[:200]}")

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise RuntimeError(f"route refused batches: {failures[:3]}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument(
        "--concurrency", type=int, default=1, help="parallel HTTP clients for the route"
    )
    args = parser.parse_args(argv)
    reason = missing_tools()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2

    # no request budget: the benchmark is one very busy bridge
    stack = CloudStack(fast=False, server_env={"BRIDGE_RATE_PER_MIN": "0"}).start()
    try:
        api = stack.api("bench-bridge")
        batches = build_batches(api.bridge_id, args.batches, args.batch_size)
        records = args.batches * args.batch_size
        bodies = [(b["batch_id"], json.dumps(b).encode()) for b in batches]
        function_script = "".join(
            f"select (public.ingest_bridge_batch({sql_literal(api.bridge_id)}, {dollar_quoted(body.decode())}::jsonb))"
            "->'changed';\n"
            for _, body in bodies
        )
        raw_script = "".join(raw_insert_sql(api.bridge_id, b) for b in batches)

        def empty() -> None:
            stack.pg.psql("truncate public.bridge_readings, public.bridge_sensors; checkpoint;")

        def psql_script(script: str) -> Callable[[], None]:
            def run() -> None:
                stack.pg.psql(script, user=API_ROLE, timeout=600)

            return run

        run_route(api, bodies[:2], 1)  # warm up Node's JIT and the connection pool
        results: dict[str, list[float]] = {}
        for name, action in [
            ("route", lambda: run_route(api, bodies, args.concurrency)),
            ("function", psql_script(function_script)),
            ("raw", psql_script(raw_script)),
        ]:
            empty()
            first = timed(action)
            count = stack.pg.query("select count(*) from public.bridge_readings")[0][0]
            if count != records:
                raise RuntimeError(f"{name}: stored {count} of {records} records")
            results[name] = [first, timed(action)]

        version = subprocess.run(
            ["node", "--version"], capture_output=True, text=True
        ).stdout.strip()
        server = stack.pg.query(
            "select split_part(current_setting('server_version'), ' ', 1) as v"
        )[0][0]
        print(
            f"cloud ingest: {args.batches} batches x {args.batch_size} records, one transaction per batch, "
            f"PostgreSQL {server} (fsync on), Node {version}, {args.concurrency} HTTP client(s)"
        )
        print(
            f"{'records/s':<12}{'route (HTTP)':>16}{'ingest fn (psql)':>20}{'raw INSERT (psql)':>20}"
        )
        for row, label in enumerate(["new rows", "replay"]):
            cells = [
                f"{records / results[name][row]:>,.0f}" for name in ("route", "function", "raw")
            ]
            print(f"{label:<12}{cells[0]:>16}{cells[1]:>20}{cells[2]:>20}")
        ms = [
            f"{results[name][0] / args.batches * 1000:.1f}" for name in ("route", "function", "raw")
        ]
        print(f"{'ms/batch':<12}{ms[0]:>16}{ms[1]:>20}{ms[2]:>20}   (new rows)")
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
