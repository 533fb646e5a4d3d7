"""Benchmark: what the ingest log costs (migration 20261203102000_sensor_bridge_ingest_log.sql).

1. Time per call of ingest_bridge_batch and record_bridge_heartbeat without
   the log (the functions as the earlier migrations define them) and with it,
   alternating rounds on the same throwaway PostgreSQL; batches of 12 records
   (a store's few sensors every ~5 minutes) and of 500 (a backlog draining).
2. The log's size: 40 stores at a heartbeat a minute and a batch every 5
   minutes for --days days (default 90, the default retention), made with
   generate_series; bytes per bridge per day and in total (table + indexes),
   then the bridge page's query (newest 100 of one bridge) and one bounded
   prune (5000 rows) at that size.

PostgreSQL runs with fsync off (as in the tests), so the times are the
functions' work; on a real server each call's commit costs the same with or
without the log row.

Run: .venv/bin/python bench/ingest_log.py [--days 90] [--rounds 5] [--calls 200]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from cloud_helpers import (  # noqa: E402
    API_ROLE,
    MIGRATIONS,
    ThrowawayPostgres,
    dollar_quoted,
    make_batch,
    make_heartbeat,
    make_series,
    missing_tools,
)

STORES = 40
LOG_MIGRATION = MIGRATIONS / "20261203102000_sensor_bridge_ingest_log.sql"


def function_sql(path: Path, name: str) -> str:
    """The `create or replace function public.<name>` statement of a migration."""
    text = path.read_text()
    match = re.search(
        rf"create or replace function public\.{name}\(.*?\n\$\$;\n", text, re.S | re.IGNORECASE
    )
    if not match:
        raise SystemExit(f"{path.name} defines no {name}")
    return match.group(0)


def without_log_sql() -> str:
    """The two functions as they were before the log: the newest earlier definitions."""
    ingest = function_sql(
        MIGRATIONS / "20261203070000_sensor_bridge_readings_per_bridge.sql", "ingest_bridge_batch"
    )
    heartbeat = function_sql(
        MIGRATIONS / "20261126210000_sensor_bridge.sql", "record_bridge_heartbeat"
    )
    return ingest + heartbeat


def with_log_sql() -> str:
    return function_sql(LOG_MIGRATION, "ingest_bridge_batch") + function_sql(
        LOG_MIGRATION, "record_bridge_heartbeat"
    )


def load_batches(pg: ThrowawayPostgres, size: int, calls: int) -> None:
    """`calls` batches of `size` records for store-001, each new readings (later rounds: re-sends)."""
    rows = []
    for n in range(calls):
        records = make_series(f"door-{n}", size)
        rows.append(f"({n}, {dollar_quoted(json.dumps(make_batch('store-001', records)))}::jsonb)")
    pg.psql(
        f"drop table if exists bench_batches; create table bench_batches (n int, b jsonb);"
        f" insert into bench_batches values {', '.join(rows)}; grant select on bench_batches to {API_ROLE};"
    )


def timed_calls(pg: ThrowawayPostgres, what: str) -> float:
    """Milliseconds per call, each call its own transaction (as the route does)."""
    if what == "batch":
        call = "select public.ingest_bridge_batch('store-001', b) from bench_batches where n = {n};"
        count = pg.query("select count(*) from bench_batches")[0][0]
    else:
        body = dollar_quoted(json.dumps(make_heartbeat("store-001")))
        call = f"select public.record_bridge_heartbeat('store-001', {body}::jsonb);"
        count = 200
    script = "\n".join(call.replace("{n}", str(n)) for n in range(count))
    start = time.perf_counter()
    pg.psql(script, user=API_ROLE, timeout=600)
    return (time.perf_counter() - start) * 1000 / count


def per_call(pg: ThrowawayPostgres, rounds: int, calls: int) -> None:
    pg.psql(
        "insert into bridges (id, api_key_sha256) values ('store-001', repeat('0', 64)) on conflict do nothing;"
    )
    print("time per call (ms, median of rounds; each call its own transaction, through psql):")
    for label, size in (
        ("batch of 12 records", 12),
        ("batch of 500 records", 500),
        ("heartbeat", 0),
    ):
        if size:
            load_batches(pg, size, calls if size < 100 else max(calls // 10, 5))
        taken: dict[str, list[float]] = {"without log": [], "with log": []}
        pair = [("without log", without_log_sql()), ("with log", with_log_sql())]
        for r in range(rounds):
            # each goes first in every other round: the first of a pair pays for a cold start
            for name, sql in pair if r % 2 == 0 else pair[::-1]:
                pg.psql("truncate bridge_readings, bridge_sensors, bridge_ingest_log;" + sql)
                taken[name].append(timed_calls(pg, "batch" if size else "heartbeat"))
        before, after = (statistics.median(taken[k]) for k in ("without log", "with log"))
        print(
            f"  {label:<22} without log {before:7.2f}   with log {after:7.2f}"
            f"   (+{after - before:.2f} ms, {100 * (after - before) / before:+.0f}%)"
        )


def fill_log(pg: ThrowawayPostgres, days: int) -> float:
    start = time.perf_counter()
    pg.psql(
        f"""
truncate bridge_ingest_log;
insert into bridges (id, api_key_sha256)
select format('store-%s', lpad(s::text, 3, '0')), encode(sha256(s::text::bytea), 'hex')
  from generate_series(1, {STORES}) s on conflict do nothing;
-- in time order, as the routes write it: a heartbeat every minute, a batch of 12 every 5
insert into bridge_ingest_log (bridge_id, kind, received_at, batch_id, state, records, new_readings,
                               newer_revision, unchanged)
select format('store-%s', lpad(s::text, 3, '0')),
       case when m % 5 = 0 then 'batch' else 'heartbeat' end,
       now() - make_interval(mins => m, secs => s),
       case when m % 5 = 0 then md5(format('%s-%s', s, m)) end,
       case when m % 5 = 0 then null else 'ok' end,
       case when m % 5 = 0 then 12 else 0 end, case when m % 5 = 0 then 11 else 0 end,
       case when m % 5 = 0 then 1 else 0 end, 0
  from generate_series({days * 1440} - 1, 0, -1) m, generate_series(1, {STORES}) s;
-- the 5-minute batches above stand in for both kinds' rows at the same minute: add the heartbeats
insert into bridge_ingest_log (bridge_id, kind, received_at, state)
select format('store-%s', lpad(s::text, 3, '0')), 'heartbeat', now() - make_interval(mins => m, secs => s + 30), 'ok'
  from generate_series({days * 1440} - 5, 0, -5) m, generate_series(1, {STORES}) s;
vacuum analyze bridge_ingest_log;
""",
        timeout=7200,
    )
    return time.perf_counter() - start


def size(pg: ThrowawayPostgres, days: int) -> None:
    made = fill_log(pg, days)
    rows, total, table = pg.query(
        "select count(*) as n, pg_total_relation_size('bridge_ingest_log') as total,"
        " pg_relation_size('bridge_ingest_log') as heap from bridge_ingest_log"
    )[0]
    parts = pg.query(
        "select c.relname as name, pg_relation_size(c.oid) as bytes from pg_index i"
        " join pg_class c on c.oid = i.indexrelid where i.indrelid = 'bridge_ingest_log'::regclass"
        " order by c.relname"
    )
    per_bridge_day = total / STORES / days
    print(
        f"log size: {STORES} stores x {days} days = {rows:,} rows (made in {made:.0f}s):"
        f" {total / 2**20:.0f} MiB with indexes ({table / 2**20:.0f} MiB table),"
        f" {per_bridge_day / 2**10:.0f} KiB per bridge per day,"
        f" {per_bridge_day * 90 * STORES / 2**20:.0f} MiB at 90 days for {STORES} stores"
    )
    print(
        f"  bytes per row: table {table / rows:.0f}, "
        + ", ".join(f"{name} {bytes_ / rows:.0f}" for name, bytes_ in parts)
    )
    page_sql = (
        "select id, kind, received_at, batch_id, records, refused_ids from bridge_ingest_log"
        " where bridge_id = 'store-020' order by id desc limit 101"
    )
    plan = pg.psql(f"explain (analyze, buffers) {page_sql};").stdout
    took = re.search(r"Execution Time: ([\d.]+) ms", plan)
    uses = "bridge_ingest_log_bridge_newest" in plan
    print(
        f"  the bridge page's query (newest 100 of one bridge): {took.group(1) if took else '?'} ms,"
        f" {'by the index bridge_ingest_log_bridge_newest' if uses else 'WITHOUT its index'}"
    )
    if days < 2:
        return
    pg.psql(f"update bridge_ingest_log_settings set keep_days = {days - 1};")  # a day past it
    start = time.perf_counter()
    gone = pg.query("select public.prune_bridge_ingest_log(5000) as gone")[0][0]
    print(
        f"  one bounded prune: {gone} rows in {(time.perf_counter() - start) * 1000:.0f} ms (psql round trip included)"
    )
    pg.psql("update bridge_ingest_log_settings set keep_days = 90;")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    reason = missing_tools()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    pg = ThrowawayPostgres().start()
    try:
        pg.apply_migrations()
        pg.psql(f"create role {API_ROLE} login in role service_role;")
        per_call(pg, args.rounds, args.calls)
        size(pg, args.days)
    finally:
        pg.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
