"""The ingest log in the database: every batch and heartbeat the cloud takes is on the record.

What each logged batch says (new, newer revision, unchanged, refused with
reasons), that a batch refused whole is not logged, that heartbeats are, the
retention an admin sets (`cloud/bin/bridges ingest-log keep`) and that pruning
removes only rows older than it, and `cloud/bin/bridges ingest-log BRIDGE`.
Plain PostgreSQL with the migrations applied; no Next.js build here (the
page is tested in test_ingest_log_app.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from cloud_helpers import (
    API_ROLE,
    CloudStack,
    PsqlError,
    dollar_quoted,
    make_batch,
    make_heartbeat,
    make_record,
    make_series,
    missing_tools,
    sql_literal,
)


@pytest.fixture(scope="module")
def db() -> Iterator[CloudStack]:
    """PostgreSQL with every migration, and the routes' role; no app server."""
    reason = missing_tools()
    if reason:
        pytest.skip(reason)
    stack = CloudStack()
    try:
        stack.pg.start()
        stack.pg.apply_migrations()
        stack.pg.psql(f"create role {API_ROLE} login in role service_role;")
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def bridge(db: CloudStack) -> str:
    """A fresh bridge in an emptied database, the retention back at its default."""
    db.reset()
    db.pg.psql(
        "update bridge_ingest_log_settings set keep_days = 90, changed_by = null, changed_at = null;"
    )
    db.add_bridge("store-042")
    return "store-042"


def log_rows(db: CloudStack, bridge_id: str) -> list[dict[str, Any]]:
    out = db.pg.psql(
        "select coalesce(json_agg(l order by l.id), '[]') from bridge_ingest_log l"
        f" where bridge_id = {sql_literal(bridge_id)};"
    ).stdout
    return json.loads(out)


def heartbeat_sql(db: CloudStack, bridge_id: str, state: str = "ok") -> None:
    body = json.dumps(make_heartbeat(bridge_id, state))
    db.pg.psql(
        f"select public.record_bridge_heartbeat({sql_literal(bridge_id)}, {dollar_quoted(body)}::jsonb);",
        user=API_ROLE,
    )


def test_a_batch_with_one_refused_reading_is_logged_with_its_counts_and_the_reason(
    db: CloudStack, bridge: str
) -> None:
    good = make_series("entrance-1", 3)
    bad = make_record("entrance-2")
    bad["kind"] = "people"
    batch = make_batch(bridge, [*good, bad])

    answer = db.ingest_sql(bridge, batch)

    assert [r["id"] for r in answer["rejected"]] == [bad["id"]]
    (row,) = log_rows(db, bridge)
    assert row["kind"] == "batch" and row["batch_id"] == batch["batch_id"]
    assert (row["records"], row["new_readings"], row["newer_revision"], row["unchanged"]) == (
        4,
        3,
        0,
        0,
    )
    assert row["refused"] == 1 and row["refused_more"] == 0
    assert row["refused_ids"] == answer["rejected"]
    assert row["refused_ids"][0]["error"].startswith("kind: must be one of")
    assert row["received_at"] is not None


def test_a_resent_batch_is_logged_as_unchanged_and_a_newer_revision_as_newer(
    db: CloudStack, bridge: str
) -> None:
    first = make_series("entrance-1", 4)
    batch = make_batch(bridge, first)
    assert db.ingest_sql(bridge, batch)["changed"] == 4
    # the same batch again (a retry): the answer is the same, nothing stored changes
    assert db.ingest_sql(bridge, batch)["changed"] == 0
    # Tuesday's count changed: two periods come again at revision 2
    corrected = make_series("entrance-1", 4, revision=2)[:2]
    newer = make_batch(bridge, [*corrected, first[3]])
    assert db.ingest_sql(bridge, newer)["changed"] == 2

    rows = log_rows(db, bridge)
    counts = [(r["new_readings"], r["newer_revision"], r["unchanged"], r["refused"]) for r in rows]
    assert counts == [(4, 0, 0, 0), (0, 0, 4, 0), (0, 2, 1, 0)]
    assert [r["batch_id"] for r in rows] == [batch["batch_id"]] * 2 + [newer["batch_id"]]


def test_a_batch_refused_whole_or_from_an_unknown_bridge_is_not_logged(
    db: CloudStack, bridge: str
) -> None:
    malformed = make_batch(bridge, make_series("entrance-1", 2))
    malformed["schema"] = "sensor-bridge/ingest/v9"
    with pytest.raises(PsqlError, match="schema"):
        db.ingest_sql(bridge, malformed)
    db.bridges("retire", bridge)
    with pytest.raises(PsqlError, match="unknown or disabled"):
        db.ingest_sql(bridge, make_batch(bridge, make_series("entrance-1", 2)))
    assert log_rows(db, bridge) == []


def test_refused_reasons_keep_the_first_50_and_count_the_rest(db: CloudStack, bridge: str) -> None:
    bad = []
    for i in range(57):
        record = make_record(f"door-{i}")
        record["revision"] = 0
        bad.append(record)

    db.ingest_sql(bridge, make_batch(bridge, [make_record("entrance-1"), *bad]))

    (row,) = log_rows(db, bridge)
    assert (row["new_readings"], row["refused"], row["refused_more"]) == (1, 57, 7)
    assert [r["id"] for r in row["refused_ids"]] == [r["id"] for r in bad[:50]]
    assert all(r["error"].startswith("revision") for r in row["refused_ids"])


def test_heartbeats_are_logged_with_the_state_the_bridge_reported(
    db: CloudStack, bridge: str
) -> None:
    heartbeat_sql(db, bridge, "ok")
    heartbeat_sql(db, bridge, "degraded")
    rows = log_rows(db, bridge)
    assert [(r["kind"], r["state"], r["batch_id"]) for r in rows] == [
        ("heartbeat", "ok", None),
        ("heartbeat", "degraded", None),
    ]


def backdate(db: CloudStack, bridge_id: str, days: dict[int, int]) -> None:
    """Make log row number n (1-based, oldest first) ``days[n]`` days old."""
    for n, age in days.items():
        db.pg.psql(
            f"update bridge_ingest_log set received_at = now() - interval '{age} days'"
            f" where id = (select id from bridge_ingest_log where bridge_id = {sql_literal(bridge_id)}"
            f" order by id offset {n - 1} limit 1);"
        )


def test_retention_prunes_only_rows_older_than_the_days_an_admin_set(
    db: CloudStack, bridge: str
) -> None:
    for _ in range(4):
        heartbeat_sql(db, bridge)
    backdate(db, bridge, {1: 40, 2: 31, 3: 29})

    # the default 90 days keeps all four
    assert db.pg.query("select public.prune_bridge_ingest_log(5000) as gone") == [(0,)]
    kept = db.bridges("ingest-log", "keep", "30")
    assert "kept 30 days" in kept.stderr and "30" in kept.stdout
    assert db.pg.query("select keep_days, changed_by from bridge_ingest_log_settings")[0][0] == 30
    assert db.pg.query("select changed_by from bridge_ingest_log_settings")[0][0].startswith(
        "shell ("
    )
    # a fleet-wide setting changed: in the audit log with who, from where, before and after
    audit = db.pg.query(
        "select actor, source, bridge_id, detail ->> 'before' as before, detail ->> 'after' as after"
        " from fleet_audit_log"
        " where action = 'ingest-log keep'"
    )
    assert len(audit) == 1
    assert audit[0][0].startswith("shell (") and audit[0][1].startswith("shell on ")
    assert audit[0][2:] == (None, "90", "30")

    # bounded: one row per call when asked for one
    assert db.pg.query("select public.prune_bridge_ingest_log(1) as gone", user=API_ROLE) == [(1,)]
    assert db.pg.query("select public.prune_bridge_ingest_log(5000) as gone") == [(1,)]
    ages = db.pg.query(
        "select round(extract(epoch from now() - received_at) / 86400)::int as d"
        f" from bridge_ingest_log where bridge_id = {sql_literal(bridge)} order by id"
    )
    assert ages == [(29,), (0,)]


def test_each_logged_heartbeat_prunes_a_few_old_rows_itself(db: CloudStack, bridge: str) -> None:
    for _ in range(12):
        heartbeat_sql(db, bridge)
    backdate(db, bridge, {n: 100 for n in range(1, 13)})
    heartbeat_sql(db, bridge)  # takes at most ten of the twelve old ones with it
    heartbeat_sql(db, bridge)
    rows = log_rows(db, bridge)
    assert len(rows) == 2 and all(r["kind"] == "heartbeat" for r in rows)


@pytest.mark.parametrize("days", ["0", "3651", "ninety", "-5"])
def test_retention_outside_1_to_3650_days_is_refused_naming_the_range(
    db: CloudStack, bridge: str, days: str
) -> None:
    run = db.bridges("ingest-log", "keep", days, check=False)
    assert run.returncode == 2 and "1 to 3650" in run.stderr
    with pytest.raises(PsqlError, match="keep_days: a whole number of days from 1 to 3650"):
        db.pg.psql("select public.set_bridge_ingest_log_keep(0, 'someone');", user=API_ROLE)
    assert db.pg.query("select keep_days from bridge_ingest_log_settings") == [(90,)]


def test_the_log_is_readable_but_not_writable_by_signed_in_readers(
    db: CloudStack, bridge: str
) -> None:
    heartbeat_sql(db, bridge)
    assert db.pg.query("select count(*) as n from bridge_ingest_log", user="postgres") == [(1,)]
    db.pg.psql("grant authenticated to postgres;")
    seen = db.pg.psql(
        "set role authenticated; select count(*) from bridge_ingest_log;"
    ).stdout.strip()
    assert seen == "1"
    for sql in (
        "set role authenticated; update bridge_ingest_log_settings set keep_days = 1;",
        "set role authenticated; delete from bridge_ingest_log;",
        "set role anon; select count(*) from bridge_ingest_log;",
    ):
        with pytest.raises(PsqlError, match="permission denied"):
            db.pg.psql(sql)


def test_cli_ingest_log_answers_why_a_days_count_changed(db: CloudStack, bridge: str) -> None:
    first = make_series("entrance-1", 2)
    db.ingest_sql(bridge, make_batch(bridge, first, batch_id="monday-batch"))
    heartbeat_sql(db, bridge)
    bad = make_record("entrance-2")
    bad["values"] = {"total": {"in": -1, "out": 0}, "lines": {}}
    corrected = make_series("entrance-1", 2, revision=2)[:1]
    db.ingest_sql(bridge, make_batch(bridge, [*corrected, bad], batch_id="tuesday-batch"))
    backdate(db, bridge, {1: 2, 2: 2})  # Monday's batch and heartbeat: two days ago

    everything = db.bridges("ingest-log", bridge).stdout
    lines = [line for line in everything.splitlines() if re.match(r"\s*\d{4}-\d\d-\d\d ", line)]
    assert len(lines) == 3
    assert "tuesday-batch" in lines[0] and "monday-batch" in lines[-1]  # newest first
    tuesday = lines[0]
    cells = [c.strip() for c in tuesday.split("|")]
    # received | what | batch id | records | new | newer | unchanged | refused | reasons
    assert cells[1:8] == ["batch", "tuesday-batch", "2", "0", "1", "0", "1"]
    assert bad["id"][:12] in cells[8] and "values" in cells[8]

    since = db.bridges("ingest-log", bridge, "--since", "now() - interval '1 day'", check=False)
    assert since.returncode == 2 and "not a time" in since.stderr
    recent = db.bridges(
        "ingest-log",
        bridge,
        "--since",
        db.pg.query("select (now() - interval '1 day')::text")[0][0],
    ).stdout
    assert "tuesday-batch" in recent and "monday-batch" not in recent and "heartbeat" not in recent
    batches = db.bridges("ingest-log", bridge, "--kind", "batch").stdout
    assert "heartbeat" not in batches and "monday-batch" in batches
    assert db.bridges("ingest-log", "nowhere", check=False).stderr.strip() == (
        "bridges: no bridge 'nowhere' (see: bridges list)"
    )
