"""The cloud side of the ingest contract against a real PostgreSQL and the real route handlers.

The SQL function is driven directly (valid, invalid, replayed, reordered and
concurrent batches) and through HTTP on loopback (auth, gzip, size limits,
malformed bodies, rate limit, heartbeat, staleness). Fixtures and payload
builders live in cloud_helpers.py; nothing here imports the appliance.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import os
import re
import select
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from cloud_helpers import (
    API_ROLE,
    CloudApi,
    CloudStack,
    NextServer,
    PsqlError,
    built_app,
    contract_headers,
    dollar_quoted,
    encode_body,
    free_port,
    make_batch,
    make_heartbeat,
    make_record,
    make_series,
    migration_files,
    recent_period_start,
    record_id,
    utc_text,
)
from conftest import base_tables

from appliance.config import parse_config
from appliance.outbox import Outbox
from appliance.records import Record
from appliance.uplink import Uplink

# cloud_stack and cloud_api are fixtures of cloud_helpers, loaded as a plugin
pytest_plugins = ["cloud_helpers"]

TIMEOUT = 30


def post_batch(
    api: CloudApi,
    batch: dict[str, Any],
    *,
    gzipped: bool = False,
    headers: dict[str, str] | None = None,
    url: str | None = None,
) -> requests.Response:
    sent = contract_headers(api.api_key, batch.get("batch_id"), gzipped=gzipped)
    sent.update(headers or {})
    return requests.post(
        url or api.ingest_url,
        data=encode_body(batch, gzipped=gzipped),
        headers=sent,
        timeout=TIMEOUT,
    )


def stored(api: CloudApi) -> dict[str, tuple[Any, ...]]:
    """id -> (revision, values, final, xmin) of the bridge's rows."""
    rows = api.query(
        f'select id, revision, "values" as vals, final, xmin::text as x from bridge_readings '
        f"where bridge_id = '{api.bridge_id}'"
    )
    return {row[0]: row[1:] for row in rows}


# --------------------------------------------------------------------------
# Migration
# --------------------------------------------------------------------------


def test_migration_applies_on_plain_postgres_and_reapplies(cloud_stack: CloudStack) -> None:
    # The session cluster started without Supabase's roles: the migration made them.
    roles = cloud_stack.pg.query(
        "select rolname from pg_roles where rolname in ('service_role', 'authenticated', 'anon') order by 1"
    )
    assert roles == [("anon",), ("authenticated",), ("service_role",)]
    # Now the roles exist (as on Supabase): a fresh database takes it twice.
    cloud_stack.pg.psql("create database migration_twice;")
    cloud_stack.pg.apply_migrations("migration_twice")
    cloud_stack.pg.apply_migrations("migration_twice")
    tables = cloud_stack.pg.query(
        "select c.relname, c.relrowsecurity from pg_class c where c.relname in "
        "('bridges', 'bridge_readings', 'bridge_sensors') order by 1",
        database="migration_twice",
    )
    assert tables == [("bridge_readings", True), ("bridge_sensors", True), ("bridges", True)]
    cloud_stack.pg.psql("drop database migration_twice;")


# --------------------------------------------------------------------------
# ingest_bridge_batch, called directly
# --------------------------------------------------------------------------


def test_valid_batch_of_every_kind_is_stored_typed(
    cloud_api: CloudApi, cloud_stack: CloudStack
) -> None:
    records = [
        make_record("entrée-1", kind)
        for kind in ("line_counts", "region_counts", "live_counts", "occupancy", "event")
    ]
    result = cloud_stack.ingest_sql(cloud_api.bridge_id, make_batch(cloud_api.bridge_id, records))
    assert result == {"accepted": [r["id"] for r in records], "rejected": [], "changed": 5}

    rows = cloud_api.query(
        "select id, sensor_id, kind, period_start, period_end, final, revision, source, observed_at, "
        f"\"values\" as vals, bridge_id from bridge_readings where bridge_id = '{cloud_api.bridge_id}' order by kind"
    )
    by_kind = {row[2]: row for row in rows}
    assert sorted(by_kind) == ["event", "line_counts", "live_counts", "occupancy", "region_counts"]
    for record in records:
        row = by_kind[record["kind"]]
        assert row[0] == record["id"] and row[1] == "entrée-1"
        assert datetime.fromisoformat(row[3]) == datetime.fromisoformat(record["period_start"])
        assert datetime.fromisoformat(row[4]) == datetime.fromisoformat(record["period_end"])
        assert row[5] is True and row[6] == 1 and row[7] == "poll"
        assert row[9] == record["values"] and row[10] == cloud_api.bridge_id


INVALID_CASES: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("upper-case id", lambda r: r.update(id=r["id"].upper()), "id: must be 64 lowercase hex"),
    (
        "id of another period",
        lambda r: r.update(id=record_id("x", "line_counts", r["period_start"])),
        "id: is not sha256(sensor_id|kind|period_start)",
    ),
    ("unknown kind", lambda r: r.update(kind="people"), "kind: must be one of"),
    (
        "offset instead of Z",
        lambda r: r.update(period_start=r["period_start"].replace("Z", "+00:00")),
        "period_start: must be RFC 3339 UTC",
    ),
    (
        "fractional period_start",
        lambda r: r.update(period_start=r["period_start"].replace("Z", ".5Z")),
        "period_start: must be RFC 3339 UTC",
    ),
    (
        "no such day",
        lambda r: r.update(period_start="2025-02-29T00:00:00Z"),
        "period_start: must be RFC 3339",
    ),
    (
        "end before start",
        lambda r: r.update(period_end="2000-01-01T00:00:00Z"),
        "period_end: is before",
    ),
    (
        "period_end without zone",
        lambda r: r.update(period_end=r["period_end"][:-1]),
        "period_end: must be RFC",
    ),
    ("final as string", lambda r: r.update(final="true"), "final: must be true or false"),
    ("revision 0", lambda r: r.update(revision=0), "revision: must be an integer >= 1"),
    ("revision 1.5", lambda r: r.update(revision=1.5), "revision: must be an integer >= 1"),
    ("revision as string", lambda r: r.update(revision="2"), "revision: must be an integer >= 1"),
    (
        "revision as object",
        lambda r: r.update(revision={"n": 2}),
        "revision: must be an integer >= 1",
    ),
    (
        "revision beyond bigint",
        lambda r: r.update(revision=2**70),
        "revision: must be an integer >= 1",
    ),
    ("unknown source", lambda r: r.update(source="ftp"), "source: must be one of"),
    (
        "observed_at local",
        lambda r: r.update(observed_at="2025-07-22 10:00:00"),
        "observed_at: must be RFC",
    ),
    ("extra record key", lambda r: r.update(tz="Europe/Lisbon"), 'record: unknown key(s) ["tz"]'),
    (
        "missing keys",
        lambda r: (r.pop("source"), r.pop("values")),
        "record: missing key(s) source, values",
    ),
    ("negative count", lambda r: r["values"]["total"].update({"in": -1}), "values.total: must be"),
    (
        "float count",
        lambda r: r["values"]["lines"]["1"].update({"out": 1.0}),
        "values.lines: must map",
    ),
    ("line without out", lambda r: r["values"]["lines"]["2"].pop("out"), "values.lines: must map"),
    (
        "extra values key",
        lambda r: r["values"].update(capacity=3),
        "values: line_counts needs exactly",
    ),
    ("values not object", lambda r: r.update(values=[1, 2]), "values: must be an object"),
]


def test_invalid_records_are_rejected_with_reasons_and_the_rest_stored(
    cloud_api: CloudApi, cloud_stack: CloudStack
) -> None:
    good = make_record("good-1")
    records = [good]
    expected: dict[int, str] = {}
    for i, (_, mutate, _error) in enumerate(INVALID_CASES):
        record = make_record(f"bad-{i}")
        mutate(record)
        expected[len(records)] = _error
        records.append(record)
    other_kinds = [
        (
            make_record("r", "region_counts", values={"regions": {"1": "3"}}),
            "values.regions: must map",
        ),
        (
            make_record("l", "live_counts", values={"in": 1, "out": 1, "sum": 0}),
            "values: live_counts needs",
        ),
        (
            make_record("o", "occupancy", values={"current_total": 1, "max": -2, "regions": {}}),
            "values.max:",
        ),
        (
            make_record("e", "event", values={"event": "x", "payload": "text"}),
            "values.payload: must be an object",
        ),
    ]
    snapshot = make_record("snap", "live_counts")
    snapshot["period_end"] = utc_text(
        datetime.fromisoformat(snapshot["period_start"]) + timedelta(minutes=1)
    )
    other_kinds.append((snapshot, "live_counts: a snapshot needs period_start == period_end"))
    for record, error in other_kinds:
        expected[len(records)] = error
        records.append(record)

    result = cloud_stack.ingest_sql(cloud_api.bridge_id, make_batch(cloud_api.bridge_id, records))
    assert result["accepted"] == [good["id"]]
    assert result["changed"] == 1
    rejected = result["rejected"]
    assert [r["id"] for r in rejected] == [records[i]["id"] for i in sorted(expected)]
    for position, entry in zip(sorted(expected), rejected, strict=True):
        assert expected[position] in entry["error"], (position, entry)
    assert list(stored(cloud_api)) == [good["id"]]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b: b.update(schema="sensor-bridge/ingest/v2"), "schema: must be"),
        (lambda b: b.update(bridge_id="someone-else"), "bridge_id: does not match"),
        (lambda b: b.update(records=[]), "records: must be a non-empty array"),
        (lambda b: b.update(sent_at="yesterday"), "sent_at: must be RFC 3339"),
        (lambda b: b.update(extra=1), 'batch: unknown key(s) ["extra"]'),
        (lambda b: b["records"][0].pop("id"), "records: every record needs a string id"),
    ],
)
def test_malformed_envelope_raises_for_a_400(
    cloud_api: CloudApi,
    cloud_stack: CloudStack,
    change: Callable[[dict[str, Any]], None],
    message: str,
) -> None:
    batch = make_batch(cloud_api.bridge_id, [make_record()])
    change(batch)
    with pytest.raises(PsqlError) as raised:
        cloud_stack.ingest_sql(cloud_api.bridge_id, batch)
    assert message in raised.value.stderr
    assert stored(cloud_api) == {}


def test_replay_changes_nothing_not_even_physically(
    cloud_api: CloudApi, cloud_stack: CloudStack
) -> None:
    batch = make_batch(cloud_api.bridge_id, make_series("door", 20))
    first = cloud_stack.ingest_sql(cloud_api.bridge_id, batch)
    assert first["changed"] == 20 and first["rejected"] == []
    before = stored(cloud_api)
    received = cloud_api.query(
        f"select max(received_at) from bridge_readings where bridge_id = '{cloud_api.bridge_id}'"
    )
    again = cloud_stack.ingest_sql(cloud_api.bridge_id, batch)
    assert again == {"accepted": first["accepted"], "rejected": [], "changed": 0}
    assert stored(cloud_api) == before  # same xmin: not even rewritten
    assert (
        cloud_api.query(
            f"select max(received_at) from bridge_readings where bridge_id = '{cloud_api.bridge_id}'"
        )
        == received
    )


def test_lower_revision_never_overwrites_a_higher_one(
    cloud_api: CloudApi, cloud_stack: CloudStack
) -> None:
    start = recent_period_start(3)
    v3 = make_record(
        "door",
        start=start,
        revision=3,
        final=True,
        values={"total": {"in": 30, "out": 3}, "lines": {}},
    )
    v2 = make_record(
        "door",
        start=start,
        revision=2,
        final=False,
        values={"total": {"in": 20, "out": 2}, "lines": {}},
    )
    v4 = make_record(
        "door",
        start=start,
        revision=4,
        final=True,
        values={"total": {"in": 40, "out": 4}, "lines": {}},
    )
    assert (
        cloud_stack.ingest_sql(cloud_api.bridge_id, make_batch(cloud_api.bridge_id, [v3]))[
            "changed"
        ]
        == 1
    )
    late = cloud_stack.ingest_sql(cloud_api.bridge_id, make_batch(cloud_api.bridge_id, [v2]))
    # accepted, so the appliance forgets it, but the stored row keeps revision 3
    assert late == {"accepted": [v2["id"]], "rejected": [], "changed": 0}
    assert stored(cloud_api)[v3["id"]][:3] == (3, v3["values"], True)
    newer = cloud_stack.ingest_sql(cloud_api.bridge_id, make_batch(cloud_api.bridge_id, [v4]))
    assert newer["changed"] == 1
    assert stored(cloud_api)[v3["id"]][:2] == (4, v4["values"])
    # Both revisions of one period in one batch, newest first: the newest wins.
    other = recent_period_start(4)
    r5 = make_record(
        "door", start=other, revision=5, values={"total": {"in": 5, "out": 5}, "lines": {}}
    )
    r1 = make_record(
        "door", start=other, revision=1, values={"total": {"in": 1, "out": 1}, "lines": {}}
    )
    both = cloud_stack.ingest_sql(cloud_api.bridge_id, make_batch(cloud_api.bridge_id, [r5, r1]))
    assert both["accepted"] == [r5["id"], r1["id"]] and both["changed"] == 1
    assert stored(cloud_api)[r5["id"]][:2] == (5, r5["values"])


def test_two_bridges_with_the_same_sensor_ids_keep_their_own_readings(
    cloud_stack: CloudStack,
) -> None:
    # Issue 22: every store may call its door entrance-1. The record id does
    # not hold the bridge (it is computed on bridges already in the field), so
    # the cloud scopes it by bridge: another bridge's reading with the same id
    # is another reading, never an overwrite nor a refusal.
    lisbon, porto = cloud_stack.api(), cloud_stack.api()
    record = make_record("entrance-1", revision=1)
    first = cloud_stack.ingest_sql(lisbon.bridge_id, make_batch(lisbon.bridge_id, [record]))
    assert first == {"accepted": [record["id"]], "rejected": [], "changed": 1}
    higher = {**record, "revision": 9, "values": {"total": {"in": 999, "out": 0}, "lines": {}}}
    result = cloud_stack.ingest_sql(porto.bridge_id, make_batch(porto.bridge_id, [higher]))
    assert result == {"accepted": [record["id"]], "rejected": [], "changed": 1}
    assert stored(lisbon)[record["id"]][:2] == (1, record["values"]), "Lisbon's reading untouched"
    assert stored(porto)[record["id"]][:2] == (9, higher["values"])
    # the same bridge sending the same id again is the same reading
    again = cloud_stack.ingest_sql(porto.bridge_id, make_batch(porto.bridge_id, [higher]))
    assert again == {"accepted": [record["id"]], "rejected": [], "changed": 0}
    assert stored(porto)[record["id"]][:2] == (9, higher["values"])
    sensors = cloud_stack.pg.query(
        "select bridge_id, sensor_id from bridge_sensors where bridge_id in "
        f"('{lisbon.bridge_id}', '{porto.bridge_id}') order by 1"
    )
    assert sorted(sensors) == sorted(
        [(lisbon.bridge_id, "entrance-1"), (porto.bridge_id, "entrance-1")]
    )


def test_migration_scopes_an_existing_databases_readings_by_bridge(
    cloud_stack: CloudStack,
) -> None:
    """A database made by the earlier migrations keeps every row and id; running the new one twice is harmless."""
    pg, db = cloud_stack.pg, "readings_per_bridge"
    pg.psql(f"create database {db};")
    try:
        earlier = [p for p in migration_files() if p.name < "20261203070000"]
        for path in earlier:
            pg.psql(f"\\set ON_ERROR_STOP 1\n\\i {path}\n", database=db)
        record = make_record("entrance-1", revision=2)
        pg.psql(
            "insert into bridges (id, api_key_sha256) values ('old-store', repeat('a', 64));\n"
            f"select public.ingest_bridge_batch('old-store', {dollar_quoted(json.dumps(make_batch('old-store', [record])))}::jsonb);",
            database=db,
        )
        before = pg.query(
            'select id, bridge_id, revision, "values"::text from bridge_readings', database=db
        )
        pkey = (
            "select pg_get_constraintdef(oid) from pg_constraint "
            "where conrelid = 'public.bridge_readings'::regclass and contype = 'p'"
        )
        assert pg.query(pkey, database=db) == [("PRIMARY KEY (id)",)]
        for _ in range(2):
            pg.apply_migrations(db)
        assert pg.query(pkey, database=db) == [("PRIMARY KEY (bridge_id, id)",)]
        assert (
            pg.query(
                'select id, bridge_id, revision, "values"::text from bridge_readings',
                database=db,
            )
            == before
        )
        # a second store with the same camera name now delivers the same id
        pg.psql(
            "insert into bridges (id, api_key_sha256) values ('new-store', repeat('b', 64));",
            database=db,
        )
        out = pg.psql(
            f"select public.ingest_bridge_batch('new-store', {dollar_quoted(json.dumps(make_batch('new-store', [record])))}::jsonb);",
            database=db,
        ).stdout
        assert json.loads(out)["accepted"] == [record["id"]]
        assert pg.query("select count(*) from bridge_readings", database=db) == [(2,)]
    finally:
        pg.psql(f"drop database {db};")


def test_concurrent_overlapping_batches_keep_the_highest_revision(
    cloud_api: CloudApi, cloud_stack: CloudStack
) -> None:
    first = recent_period_start(60)
    workers = 6
    batches = []
    for revision in range(1, workers + 1):
        records = make_series("busy", 60, revision=revision, first=first)
        if revision % 2:
            records.reverse()  # opposite lock order: must not deadlock
        batches.append(make_batch(cloud_api.bridge_id, records))
    results: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def send(batch: dict[str, Any]) -> None:
        try:
            results.append(cloud_stack.ingest_sql(cloud_api.bridge_id, batch))
        except BaseException as exc:  # collected: an assert in a thread would be lost
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert errors == []
    assert (
        all(len(r["accepted"]) == 60 and r["rejected"] == [] for r in results)
        and len(results) == workers
    )
    rows = stored(cloud_api)
    assert len(rows) == 60
    assert {row[0] for row in rows.values()} == {workers}
    assert sorted(row[1]["total"]["in"] for row in rows.values()) == [
        i + workers for i in range(60)
    ]


def test_service_role_only_writes_and_readers_never_see_key_hashes(
    cloud_api: CloudApi, cloud_stack: CloudStack
) -> None:
    record = make_record()
    cloud_stack.ingest_sql(cloud_api.bridge_id, make_batch(cloud_api.bridge_id, [record]))
    pg = cloud_stack.pg

    def as_role(role: str, sql: str) -> subprocess.CompletedProcess[str]:
        return pg.psql(f"set role {role};\n{sql}", check=False)

    read = as_role(
        "authenticated",
        f"select count(*) from bridge_readings where bridge_id = '{cloud_api.bridge_id}';",
    )
    assert read.returncode == 0 and read.stdout.strip() == "1"
    assert (
        as_role("authenticated", "select id, last_heartbeat_at from bridges limit 1;").returncode
        == 0
    )
    for role, sql in [
        ("authenticated", "select api_key_sha256 from bridges;"),
        ("authenticated", "delete from bridge_readings;"),
        ("authenticated", f"select ingest_bridge_batch('{cloud_api.bridge_id}', '{{}}');"),
        ("authenticated", f"update bridges set label = 'x' where id = '{cloud_api.bridge_id}';"),
        ("anon", "select count(*) from bridge_readings;"),
    ]:
        denied = as_role(role, sql)
        assert denied.returncode != 0 and "permission denied" in denied.stderr, (role, sql)
    # The organisation hook decides what readers see.
    hidden = pg.psql(
        "begin;\ncreate or replace function public.bridge_reader_can_see(p_bridge_id text) returns boolean "
        "language sql stable as $$ select false $$;\nset local role authenticated;\n"
        "select count(*) from bridge_readings;\nrollback;"
    )
    assert hidden.stdout.strip() == "0"
    # The routes' login role (a member of service_role) writes without being the owner.
    owner = pg.query(
        f"select r.rolsuper, r.rolbypassrls from pg_roles r where r.rolname = '{API_ROLE}'"
    )
    assert owner == [(False, False)]


# --------------------------------------------------------------------------
# The routes over HTTP
# --------------------------------------------------------------------------


def test_ingest_route_stores_plain_and_gzip_batches(cloud_api: CloudApi) -> None:
    plain = make_batch(cloud_api.bridge_id, make_series("cam", 5))
    answer = post_batch(cloud_api, plain)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"accepted": 5, "rejected": []}

    unknown_kind = make_record("x")
    unknown_kind["kind"] = "people"
    zipped = make_batch(cloud_api.bridge_id, make_series("cam", 5, revision=2) + [unknown_kind])
    answer = post_batch(cloud_api, zipped, gzipped=True)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["accepted"] == 5
    assert body["rejected"] == [
        {"id": zipped["records"][-1]["id"], "error": body["rejected"][0]["error"]}
    ]
    assert body["rejected"][0]["error"].startswith("kind:")
    assert {row[0] for row in stored(cloud_api).values()} == {2}
    # the same batch again (a retry after a lost response): same answer, nothing changes
    before = stored(cloud_api)
    assert post_batch(cloud_api, zipped, gzipped=True).json() == body
    assert stored(cloud_api) == before


def test_ingest_route_rejects_bad_credentials_with_401(
    cloud_api: CloudApi, cloud_stack: CloudStack
) -> None:
    batch = make_batch(cloud_api.bridge_id, [make_record()])
    other = cloud_stack.api()
    cases = {
        "no header": {"Authorization": ""},
        "not bearer": {"Authorization": f"Basic {cloud_api.api_key}"},
        "wrong key": {"Authorization": "Bearer sbk_wrong"},
        "another bridge's key": {"Authorization": f"Bearer {other.api_key}"},
    }
    for name, header in cases.items():
        answer = post_batch(cloud_api, batch, headers=header)
        assert answer.status_code == 401, name
        assert cloud_api.api_key not in answer.text
    unknown = make_batch("no-such-bridge", [make_record()])
    assert post_batch(cloud_api, unknown).status_code == 401
    # a rotated key replaces the old one at once; a disabled bridge is refused
    new_key = cloud_stack.add_bridge(cloud_api.bridge_id, "--rotate")
    assert post_batch(cloud_api, batch).status_code == 401
    assert (
        post_batch(cloud_api, batch, headers={"Authorization": f"Bearer {new_key}"}).status_code
        == 200
    )
    cloud_api.query(
        f"update bridges set disabled_at = now() where id = '{cloud_api.bridge_id}' returning id"
    )
    assert (
        post_batch(cloud_api, batch, headers={"Authorization": f"Bearer {new_key}"}).status_code
        == 401
    )
    assert stored(cloud_api) != {}  # what it sent before stays


def test_ingest_route_answers_413_for_oversize_bodies(cloud_api: CloudApi) -> None:
    headers = contract_headers(cloud_api.api_key, "big")
    padding = b'{"schema": "' + b"x" * (5 * 1024 * 1024) + b'"}'
    declared = requests.post(cloud_api.ingest_url, data=padding, headers=headers, timeout=TIMEOUT)
    assert declared.status_code == 413

    def chunks() -> Iterator[bytes]:  # chunked: no Content-Length to refuse up front
        for _ in range(5):
            yield b" " * (1024 * 1024)

    streamed = requests.post(cloud_api.ingest_url, data=chunks(), headers=headers, timeout=TIMEOUT)
    assert streamed.status_code == 413

    bomb = gzip.compress(b'{"schema": "' + b"0" * (17 * 1024 * 1024) + b'"}')
    assert len(bomb) < 100_000
    inflated = requests.post(
        cloud_api.ingest_url,
        data=bomb,
        timeout=TIMEOUT,
        headers={**headers, "Content-Encoding": "gzip"},
    )
    assert inflated.status_code == 413

    many = make_batch(cloud_api.bridge_id, make_series("m", 2001, first=recent_period_start(3000)))
    assert post_batch(cloud_api, many, gzipped=True).status_code == 413
    assert stored(cloud_api) == {}


def test_ingest_route_answers_400_for_malformed_requests(cloud_api: CloudApi) -> None:
    batch = make_batch(cloud_api.bridge_id, [make_record()])
    url, key, bid = cloud_api.ingest_url, cloud_api.api_key, batch["batch_id"]
    base = contract_headers(key, bid)

    def send(data: bytes, **headers: str) -> requests.Response:
        return requests.post(url, data=data, headers={**base, **headers}, timeout=TIMEOUT)

    good = json.dumps(batch).encode()
    cases: dict[str, requests.Response] = {
        "not json": send(b"{not json"),
        "json array": send(b"[]"),
        "no bridge_id": send(json.dumps({**batch, "bridge_id": None}).encode()),
        "text/plain": send(good, **{"Content-Type": "text/plain"}),
        "broken gzip": send(b"\x1f\x8b\x08garbage", **{"Content-Encoding": "gzip"}),
        "brotli": send(good, **{"Content-Encoding": "br"}),
        "not utf-8": send(good.replace(b'"poll"', b'"p\xffll"')),
        "NUL in a string": send(good.replace(b'"poll"', b'"p\\u0000ll"')),
        "Idempotency-Key missing": requests.post(
            url,
            data=good,
            timeout=TIMEOUT,
            headers={k: v for k, v in base.items() if k != "Idempotency-Key"},
        ),
        "Idempotency-Key not batch_id": send(good, **{"Idempotency-Key": "other"}),
        "wrong schema": send(json.dumps({**batch, "schema": "v0"}).encode()),
        "record without id": send(json.dumps({**batch, "records": [{"kind": "event"}]}).encode()),
    }
    for name, answer in cases.items():
        assert answer.status_code == 400, (name, answer.status_code, answer.text)
        assert answer.json()["error"], name
    assert stored(cloud_api) == {}


def test_heartbeat_is_stored_and_clears_staleness(cloud_api: CloudApi) -> None:
    heartbeat = make_heartbeat(cloud_api.bridge_id, state="degraded")
    stale_sql = f"select bridge_id, last_state from stale_bridges(interval '5 minutes') where bridge_id = '{cloud_api.bridge_id}'"
    cloud_api.query(
        f"update bridges set created_at = now() - interval '1 hour' where id = '{cloud_api.bridge_id}' returning id"
    )
    assert cloud_api.query(stale_sql) == [(cloud_api.bridge_id, None)]  # never heard from

    answer = requests.post(
        cloud_api.heartbeat_url,
        data=encode_body(heartbeat, gzipped=True),
        timeout=TIMEOUT,
        headers=contract_headers(cloud_api.api_key, gzipped=True),
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["ok"] is True
    row = cloud_api.query(
        f"select last_heartbeat_at, last_heartbeat from bridges where id = '{cloud_api.bridge_id}'"
    )
    assert row[0][0] is not None and row[0][1] == heartbeat
    assert cloud_api.query(stale_sql) == []

    cloud_api.query(
        f"update bridges set last_heartbeat_at = now() - interval '10 minutes' "
        f"where id = '{cloud_api.bridge_id}' returning id"
    )
    assert cloud_api.query(stale_sql) == [(cloud_api.bridge_id, "degraded")]

    for change, error in [
        ({"state": "sleepy"}, "state:"),
        ({"uptime_s": "long"}, "uptime_s:"),
        ({"outbox": {"pending": "many"}}, "outbox:"),
        ({"extra": 1}, "unknown key(s)"),
    ]:
        answer = requests.post(
            cloud_api.heartbeat_url,
            data=encode_body({**heartbeat, **change}),
            timeout=TIMEOUT,
            headers=contract_headers(cloud_api.api_key),
        )
        assert answer.status_code == 400 and error in answer.json()["error"], (change, answer.text)
    # the contract names only the auth header for heartbeats: no Content-Type is fine, a wrong one is not
    bare = {"Authorization": f"Bearer {cloud_api.api_key}"}
    assert (
        requests.post(
            cloud_api.heartbeat_url, data=encode_body(heartbeat), headers=bare, timeout=TIMEOUT
        ).status_code
        == 200
    )
    assert (
        requests.post(
            cloud_api.heartbeat_url,
            data=encode_body(heartbeat),
            timeout=TIMEOUT,
            headers={**bare, "Content-Type": "text/plain"},
        ).status_code
        == 400
    )
    wrong_key = requests.post(
        cloud_api.heartbeat_url,
        data=encode_body(heartbeat),
        timeout=TIMEOUT,
        headers=contract_headers("sbk_nope"),
    )
    assert wrong_key.status_code == 401


def test_stale_sensors_and_the_stale_route(cloud_api: CloudApi, cloud_stack: CloudStack) -> None:
    old = make_record(
        "quiet-cam", start=datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    )
    fresh = make_record("busy-cam")
    assert post_batch(cloud_api, make_batch(cloud_api.bridge_id, [old, fresh])).status_code == 200
    stale_sql = (
        "select sensor_id, kind from stale_bridge_sensors(interval '2 hours') "
        f"where bridge_id = '{cloud_api.bridge_id}'"
    )
    assert cloud_api.query(stale_sql) == [("quiet-cam", "line_counts")]
    # an unfinished newer period does not count as fresh data; a final one does
    newer = make_record("quiet-cam", final=False)
    post_batch(cloud_api, make_batch(cloud_api.bridge_id, [newer]))
    assert cloud_api.query(stale_sql) == [("quiet-cam", "line_counts")]
    post_batch(
        cloud_api, make_batch(cloud_api.bridge_id, [{**newer, "final": True, "revision": 2}])
    )
    assert cloud_api.query(stale_sql) == []

    cloud_api.query(
        f"update bridges set created_at = now() - interval '1 hour' where id = '{cloud_api.bridge_id}' returning id"
    )
    cron = {"Authorization": f"Bearer {cloud_stack.cron_secret}"}
    answer = requests.get(cloud_api.stale_url, headers=cron, timeout=TIMEOUT)
    assert answer.status_code == 503
    assert cloud_api.bridge_id in [b["bridge_id"] for b in answer.json()["stale_bridges"]]
    relaxed = requests.get(
        f"{cloud_api.stale_url}?bridge_minutes=5000000&sensor_hours=80000",
        headers=cron,
        timeout=TIMEOUT,
    )
    assert relaxed.status_code == 200 and relaxed.json()["ok"] is True
    assert (
        requests.get(
            f"{cloud_api.stale_url}?sensor_hours=1e9", headers=cron, timeout=TIMEOUT
        ).status_code
        == 400
    )
    assert (
        requests.get(
            cloud_api.stale_url, headers={"Authorization": "Bearer nope"}, timeout=TIMEOUT
        ).status_code
        == 401
    )


def test_concurrent_requests_through_the_route(cloud_api: CloudApi) -> None:
    first = recent_period_start(40)
    batches = [
        make_batch(cloud_api.bridge_id, make_series("door", 40, revision=r, first=first))
        for r in range(1, 9)
    ]
    answers: list[requests.Response] = []

    def send(batch: dict[str, Any]) -> None:
        answers.append(post_batch(cloud_api, batch, gzipped=True))

    threads = [threading.Thread(target=send, args=(b,)) for b in reversed(batches)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert [a.status_code for a in answers] == [200] * 8
    assert all(a.json() == {"accepted": 40, "rejected": []} for a in answers)
    assert {row[0] for row in stored(cloud_api).values()} == {8}


@pytest.fixture(scope="module")
def limited_servers(cloud_stack: CloudStack) -> Iterator[tuple[NextServer, NextServer]]:
    """A server with a tiny request budget, and one whose database is unreachable."""
    limited = cloud_stack.start_server({"BRIDGE_RATE_PER_MIN": "6", "BRIDGE_RATE_BURST": "3"})
    try:
        dead = cloud_stack.start_server(
            database_url=f"postgresql://{API_ROLE}@127.0.0.1:{free_port()}/postgres"
        )
        try:
            yield limited, dead
        finally:
            dead.stop()
    finally:
        limited.stop()


def test_rate_limit_answers_429_with_retry_after(
    cloud_api: CloudApi, limited_servers: tuple[NextServer, NextServer]
) -> None:
    limited, _ = limited_servers
    url = f"{limited.base_url}/api/bridge/v1/heartbeat"
    codes = []
    for _ in range(4):
        answer = requests.post(
            url,
            data=encode_body(make_heartbeat(cloud_api.bridge_id)),
            timeout=TIMEOUT,
            headers=contract_headers(cloud_api.api_key),
        )
        codes.append(answer.status_code)
    assert codes == [200, 200, 200, 429]
    assert int(answer.headers["Retry-After"]) >= 1


def test_database_down_answers_503_with_retry_after(
    cloud_api: CloudApi, limited_servers: tuple[NextServer, NextServer]
) -> None:
    _, dead = limited_servers
    batch = make_batch(cloud_api.bridge_id, [make_record()])
    answer = post_batch(cloud_api, batch, url=f"{dead.base_url}/api/bridge/v1/ingest")
    assert answer.status_code == 503
    assert int(answer.headers["Retry-After"]) > 0


def test_contract_helpers_follow_the_contract() -> None:
    # the id rule against a value computed by hand, so helpers and SQL cannot drift together
    assert (
        record_id("entrance-1", "line_counts", "2025-07-22T09:00:00Z")
        == hashlib.sha256(b"entrance-1|line_counts|2025-07-22T09:00:00Z").hexdigest()
    )
    snapshot = make_record("entrance-1", "live_counts")
    assert snapshot["period_start"] == snapshot["period_end"] and snapshot["final"] is True


def test_build_prints_no_errors_and_prerenders_no_route(cloud_stack: CloudStack) -> None:
    log = built_app().log
    assert "unexpected error" not in log and "Error" not in log, log
    for route in ("/api/bridge/v1/stale", "/api/bridge/v1/cron/alerts", "/bridges"):
        assert re.search(rf"ƒ {re.escape(route)}\n", log), (
            f"{route} is not rendered on demand:\n{log}"
        )


def test_gzip_bodies_beyond_the_inflation_slots_get_503_with_retry_after(
    cloud_api: CloudApi, cloud_stack: CloudStack
) -> None:
    server = cloud_stack.start_server({"BRIDGE_MAX_INFLATING": "1"})
    try:
        url = f"{server.base_url}/api/bridge/v1/ingest"
        other = make_batch(cloud_api.bridge_id, make_series("busy", 3))
        held, busy = hold_the_only_slot(cloud_api, server.base_url, other)
        try:
            assert int(busy.headers["Retry-After"]) >= 1 and "busy" in busy.json()["error"]
            plain = post_batch(
                cloud_api, make_batch(cloud_api.bridge_id, make_series("plain", 2)), url=url
            )
            assert plain.status_code == 200  # an uncompressed body needs no slot
            finished = held.finish()
            assert finished.status == 200, finished.read()
        finally:
            held.close()
        assert (
            post_batch(cloud_api, other, gzipped=True, url=url).status_code == 200
        )  # the retry goes through
    finally:
        server.stop()


class TricklingBatch:
    """A gzip batch sent chunked: its first bytes now, the rest when ``finish`` is called."""

    def __init__(self, api: CloudApi, base_url: str) -> None:
        batch = make_batch(api.bridge_id, make_series("slow", 3))
        self.body = encode_body(batch, gzipped=True)
        parts = urlsplit(base_url)
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=TIMEOUT)
        self.connection.putrequest("POST", "/api/bridge/v1/ingest")
        for name, value in contract_headers(api.api_key, batch["batch_id"], gzipped=True).items():
            self.connection.putheader(name, value)
        self.connection.putheader("Transfer-Encoding", "chunked")
        self.connection.endheaders()
        self._send_chunk(self.body[:10])

    def _send_chunk(self, data: bytes) -> None:
        self.connection.send(b"%x\r\n%s\r\n" % (len(data), data))

    def answered_early(self) -> bool:
        """True when the server answered before the body was whole: it was refused a slot."""
        sock = self.connection.sock
        return sock is not None and bool(select.select([sock], [], [], 0)[0])

    def finish(self) -> http.client.HTTPResponse:
        self._send_chunk(self.body[10:])
        self.connection.send(b"0\r\n\r\n")
        return self.connection.getresponse()

    def close(self) -> None:
        self.connection.close()


def hold_the_only_slot(
    api: CloudApi, base_url: str, other: dict[str, Any], within_s: float = 60
) -> tuple[TricklingBatch, requests.Response]:
    """Start a trickling gzip batch that owns the server's one inflation slot.

    Proven by ``other`` (gzip too) being answered 503. Until then ``other``
    may win the slot itself, which refuses the trickling batch at once: that
    one is started again.
    """
    url = f"{base_url}/api/bridge/v1/ingest"
    deadline = time.monotonic() + within_s
    held = TricklingBatch(api, base_url)
    while True:
        answer = post_batch(api, other, gzipped=True, url=url)
        if answer.status_code == 503:
            return held, answer
        assert answer.status_code == 200, answer.text
        if time.monotonic() > deadline:
            held.close()
            raise AssertionError("a second gzip batch was never refused while one trickled in")
        if held.answered_early():
            held.close()
            held = TricklingBatch(api, base_url)
        time.sleep(0.05)


def self_signed_tls(pg_root: Path) -> str:
    """Turn TLS on in the session's PostgreSQL with a self-signed certificate for 127.0.0.1; its PEM."""
    cert, key = pg_root / "data" / "server.crt", pg_root / "data" / "server.key"
    if not cert.exists():
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
                "-keyout",
                str(key),
                "-out",
                str(cert),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        if os.geteuid() == 0:
            shutil.chown(cert, "postgres", "postgres")
            shutil.chown(key, "postgres", "postgres")
        key.chmod(0o600)
    return cert.read_text()


def test_tls_failures_to_the_database_answer_503_and_name_the_setting(
    cloud_api: CloudApi, cloud_stack: CloudStack
) -> None:
    pem = self_signed_tls(cloud_stack.pg.root)
    cloud_stack.pg.psql("alter system set ssl = on; select pg_reload_conf();")
    batch = make_batch(cloud_api.bridge_id, [make_record()])
    url = cloud_stack.pg.url(API_ROLE)
    cases = [
        ({}, f"{url}?sslmode=require", "DATABASE_CA_CERT"),  # Supabase's CA is not a system CA
        ({"DATABASE_CA_CERT": pem}, url, None),
    ]  # what the README says to do: verified TLS
    try:
        for env, database_url, fix in cases:
            server = cloud_stack.start_server(env, database_url=database_url)
            try:
                answer = post_batch(cloud_api, batch, url=f"{server.base_url}/api/bridge/v1/ingest")
                if fix is None:
                    assert answer.status_code == 200, answer.text
                    continue
                assert answer.status_code == 503 and int(answer.headers["Retry-After"]) > 0, (
                    answer.text
                )
                logged = server.output()
                assert (
                    "database TLS failed" in logged
                    and fix in logged
                    and "unexpected error" not in logged
                ), logged
            finally:
                server.stop()
    finally:
        cloud_stack.pg.psql("alter system set ssl = off; select pg_reload_conf();")
    no_tls = cloud_stack.start_server(database_url=f"{url}?sslmode=require")
    try:
        assert (
            post_batch(cloud_api, batch, url=f"{no_tls.base_url}/api/bridge/v1/ingest").status_code
            == 503
        )
        assert "does not speak TLS" in no_tls.output() and "sslmode" in no_tls.output()
    finally:
        no_tls.stop()


def test_a_redirecting_auth_middleware_is_named_in_the_uplink_error(tmp_path: Path) -> None:
    class Login(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - what Supabase's starter middleware does to every request
            self.send_response(307)
            self.send_header("Location", "/login")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Login)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        tables = base_tables(
            tmp_path, f"http://127.0.0.1:{server.server_address[1]}/api/bridge/v1/ingest"
        )
        box = Outbox(tmp_path / "outbox.db")
        start = datetime(2025, 1, 1, tzinfo=UTC)
        box.put(
            [
                Record(
                    "door",
                    "line_counts",
                    start,
                    start + timedelta(minutes=5),
                    {"total": {"in": 1, "out": 0}, "lines": {}},
                    True,
                    "poll",
                )
            ]
        )
        uplink = Uplink(parse_config(tables), box)
        uplink.deliver_once()
        error = uplink.snapshot()["last_error"]
    finally:
        server.shutdown()
    assert "HTTP 307" in error and "auth middleware" in error and "/api/bridge/" in error, error
    assert "put that URL in the config" not in error
