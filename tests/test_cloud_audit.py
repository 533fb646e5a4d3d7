"""The fleet's audit log (issue 24, "Every change is recorded"), on a real PostgreSQL.

Claims, config versions, retire, rotate and enroll tokens are recorded by the
database functions that make them, so cloud/bin/bridges (here) and the fleet
page (test_fleet_audit_browser.py) record alike: who, from where, what, which
bridge, before/after, and for a config version which keys changed, never a
secret. The table is append-only for the app's role and for its owner.
No Next.js here: these run against the migrations alone.
"""

from __future__ import annotations

import getpass
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cloud_helpers import (
    ADD_BRIDGE,
    API_ROLE,
    BRIDGES_CLI,
    FakeAdoptee,
    PsqlError,
    ThrowawayPostgres,
    cloud_tool,
    dollar_quoted,
    missing_tools,
    sha256_hex,
    sql_literal,
)

SHELL_ACTOR = f"shell ({os.environ.get('USER') or getpass.getuser()})"

TWO_CAMERAS = """
[[sensors]]
id = "entrance-1"
url = "http://127.0.0.1:9"
username = "admin"
password = "door-secret-1"

[alerts]
ping_url = "https://hc-ping.example/secret-ping-1"
"""

CHANGED = """
[[sensors]]
id = "entrance-1"
url = "http://127.0.0.1:9"
username = "admin"
password = "door-secret-2"

[[sensors]]
id = "entrance-2"
url = "http://127.0.0.1:10"

[alerts]
ping_url = "https://hc-ping.example/secret-ping-2"

[update]
window = "Sun 03:00-05:00"
"""


class AuditDb:
    """A throwaway PostgreSQL with the migrations, the app's login role and the shell tools."""

    def __init__(self, pg: ThrowawayPostgres) -> None:
        self.pg = pg

    def tool(
        self, script: Path, *args: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return cloud_tool(self.pg, script, *args, check=check)

    def bridges(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.tool(BRIDGES_CLI, *args, check=check)

    def as_app(self, sql: str) -> list[tuple[Any, ...]]:
        return self.pg.query(sql, user=API_ROLE)

    def newest_id(self) -> int:
        return self.pg.query("select coalesce(max(id), 0) from fleet_audit_log")[0][0]

    def rows_since(self, start: int) -> list[tuple[Any, ...]]:
        """(actor, source, action, bridge_id, detail) of the rows written after ``start``, oldest first."""
        return self.pg.query(
            "select actor, source, action, bridge_id, detail from fleet_audit_log"
            f" where id > {start} order by id"
        )

    def all_text(self) -> str:
        return "\n".join(r[0] for r in self.pg.query("select a::text from fleet_audit_log a"))


@pytest.fixture(scope="module")
def audit_db() -> Iterator[AuditDb]:
    reason = missing_tools()
    if reason:
        pytest.skip(reason)
    pg = ThrowawayPostgres().start()
    try:
        pg.apply_migrations()
        pg.psql(f"create role {API_ROLE} login in role service_role;")
        yield AuditDb(pg)
    finally:
        pg.stop()


def enrolled(db: AuditDb) -> FakeAdoptee:
    """A bridge waiting to be claimed (enroll_bridge as the route calls it)."""
    token = db.bridges("enroll-token", "new").stdout.strip()
    bridge = FakeAdoptee()
    answer = db.as_app(
        f"select public.enroll_bridge({sql_literal(sha256_hex(token))},"
        f" {dollar_quoted(json.dumps(bridge.body()))}::jsonb, '127.0.0.1', 0) as a"
    )
    assert answer[0][0]["status"] == 202
    return bridge


def claimed(db: AuditDb, label: str) -> str:
    bridge = enrolled(db)
    return db.bridges(
        "claim", bridge.code, "--label", label, "--timezone", "Europe/Lisbon"
    ).stdout.strip()


def test_a_claim_is_recorded_with_who_and_where_and_a_wrong_code_is_not(audit_db: AuditDb) -> None:
    bridge = enrolled(audit_db)
    start = audit_db.newest_id()
    wrong = audit_db.bridges(
        "claim", "2222-2222", "--label", "Porto", "--timezone", "Europe/Lisbon", check=False
    )
    assert wrong.returncode != 0
    assert audit_db.rows_since(start) == []

    bridge_id = audit_db.bridges(
        "claim", bridge.code, "--label", "Porto <b>Baixa</b>", "--timezone", "Europe/Lisbon"
    ).stdout.strip()
    [(actor, source, action, row_bridge, detail)] = audit_db.rows_since(start)
    assert (actor, action, row_bridge) == (SHELL_ACTOR, "claim", bridge_id)
    assert source.startswith("shell on ")
    assert detail == {
        "after": {
            "label": "Porto <b>Baixa</b>",
            "timezone": "Europe/Lisbon",
            "serial": bridge.serial,
        }
    }


def test_a_config_version_records_which_keys_changed_and_never_a_secret(
    audit_db: AuditDb, tmp_path: Path
) -> None:
    bridge_id = claimed(audit_db, "Braga")
    first, second = tmp_path / "first.toml", tmp_path / "second.toml"
    first.write_text(TWO_CAMERAS)
    second.write_text(CHANGED)
    start = audit_db.newest_id()
    assert audit_db.bridges("config", "set", bridge_id, str(first)).stdout.strip() == "1"
    assert audit_db.bridges("config", "set", bridge_id, str(second)).stdout.strip() == "2"
    # the page's call: the person and the client's address
    version = audit_db.as_app(
        f"select public.set_bridge_config({sql_literal(bridge_id)},"
        f" (select document - 'update' from bridge_config_versions where bridge_id = {sql_literal(bridge_id)}"
        " and version = 2), 'ops@chain.example', '203.0.113.7') as v"
    )
    assert version == [(3,)]

    rows = audit_db.rows_since(start)
    assert [(r[0], r[2], r[3], r[4]["version"]) for r in rows] == [
        (SHELL_ACTOR, "config", bridge_id, 1),
        (SHELL_ACTOR, "config", bridge_id, 2),
        ("ops@chain.example", "config", bridge_id, 3),
    ]
    assert rows[0][4]["changes"] == ["alerts: added", "sensors: added"]
    assert rows[1][4]["changes"] == [
        "alerts.ping_url: changed",
        "sensors[entrance-1].password: changed",
        "sensors[entrance-2]: added",
        "update: added",
    ]
    assert rows[2][1] == "203.0.113.7" and rows[2][4]["changes"] == ["update: removed"]
    text = audit_db.all_text()
    for secret in ("door-secret-1", "door-secret-2", "secret-ping-1", "secret-ping-2"):
        assert secret not in text


def test_retire_and_rotate_from_the_shell_are_recorded_without_the_key(audit_db: AuditDb) -> None:
    bridge_id = "audit-retire-1"
    audit_db.tool(ADD_BRIDGE, bridge_id, "--key-only")
    start = audit_db.newest_id()
    assert audit_db.bridges("retire", bridge_id).returncode == 0
    assert audit_db.bridges("retire", bridge_id).returncode == 0  # already retired: nothing new
    key = audit_db.bridges("rotate", bridge_id, "--key-only").stdout.strip()
    assert key.startswith("sbk_")
    unknown = audit_db.bridges("retire", "no-such-bridge", check=False)
    assert unknown.returncode == 2 and "no bridge 'no-such-bridge'" in unknown.stderr

    rows = audit_db.rows_since(start)
    assert [(r[0], r[2], r[3], r[4]) for r in rows] == [
        (
            SHELL_ACTOR,
            "retire",
            bridge_id,
            {"before": {"retired": False}, "after": {"retired": True}},
        ),
        (
            SHELL_ACTOR,
            "rotate",
            bridge_id,
            {"key": "changed", "before": {"retired": True}, "after": {"retired": False}},
        ),
    ]
    assert all(r[1].startswith("shell on ") for r in rows)
    # the bridge is back with the new key: its hash is the stored one
    assert audit_db.pg.query(
        f"select api_key_sha256, disabled_at from bridges where id = {sql_literal(bridge_id)}"
    ) == [(sha256_hex(key), None)]
    text = audit_db.all_text()
    assert key not in text and sha256_hex(key) not in text


def test_page_retire_and_rotate_functions_record_the_person(audit_db: AuditDb) -> None:
    bridge_id = "audit-retire-2"
    audit_db.tool(ADD_BRIDGE, bridge_id, "--key-only")
    start = audit_db.newest_id()
    answer = audit_db.as_app(
        f"select public.retire_bridge({sql_literal(bridge_id)}, 'admin@chain.example', '198.51.100.4') as a"
    )
    assert answer == [({"ok": True, "already": False},)]
    assert audit_db.as_app(
        "select public.retire_bridge('nope', 'admin@chain.example', '') as a"
    ) == [({"ok": False, "error": "no bridge 'nope'"},)]
    new_hash = sha256_hex("sbk_page-rotated")
    assert audit_db.as_app(
        f"select public.rotate_bridge_key({sql_literal(bridge_id)}, {sql_literal(new_hash)}, '',"
        " 'admin@chain.example', '198.51.100.4') as id"
    ) == [(bridge_id,)]
    rows = audit_db.rows_since(start)
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("admin@chain.example", "198.51.100.4", "retire"),
        ("admin@chain.example", "198.51.100.4", "rotate"),
    ]
    assert new_hash not in audit_db.all_text()


def test_enroll_tokens_made_and_revoked_are_recorded_fleet_wide_without_the_token(
    audit_db: AuditDb,
) -> None:
    start = audit_db.newest_id()
    token = audit_db.bridges("enroll-token", "new", "--label", "spring rollout").stdout.strip()
    token_id = audit_db.pg.query(
        f"select id from bridge_enroll_tokens where token_sha256 = {sql_literal(sha256_hex(token))}"
    )[0][0]
    audit_db.bridges("enroll-token", "revoke", token)
    audit_db.bridges("enroll-token", "revoke", str(token_id))  # again: nothing new
    wrong = audit_db.bridges("enroll-token", "revoke", "ffffff0000", check=False)
    assert wrong.returncode == 2 and "names 0 tokens" in wrong.stderr

    rows = audit_db.rows_since(start)
    assert [(r[0], r[2], r[3], r[4]) for r in rows] == [
        (
            SHELL_ACTOR,
            "enroll-token new",
            None,
            {"token_id": token_id, "after": {"label": "spring rollout"}},
        ),
        (
            SHELL_ACTOR,
            "enroll-token revoke",
            None,
            {
                "token_id": token_id,
                "label": "spring rollout",
                "before": {"revoked": False},
                "after": {"revoked": True},
            },
        ),
    ]
    text = audit_db.all_text()
    assert token not in text and sha256_hex(token) not in text


def test_fleet_audit_record_takes_a_member_change_and_refuses_bad_rows(audit_db: AuditDb) -> None:
    start = audit_db.newest_id()
    detail = {"member": "installer@chain.example", "after": {"role": "installer"}}
    [(row_id,)] = audit_db.as_app(
        "select public.fleet_audit_record('ops@chain.example', '203.0.113.9', 'member add', null,"
        f" {dollar_quoted(json.dumps(detail))}::jsonb) as id"
    )
    assert row_id == start + 1
    assert audit_db.rows_since(start) == [
        ("ops@chain.example", "203.0.113.9", "member add", None, detail)
    ]
    for call, message in [
        ("'', '', 'member add', null, '{}'", "actor is required"),
        ("'ops@chain.example', '', 'Member; drop', null, '{}'", "must be lower-case words"),
        ("'ops@chain.example', '', 'member add', null, '[1]'", "detail must be a JSON object"),
    ]:
        with pytest.raises(PsqlError, match=message):
            audit_db.as_app(f"select public.fleet_audit_record({call}) as id")
    assert audit_db.newest_id() == start + 1


@pytest.mark.parametrize(
    "statement",
    ["update fleet_audit_log set actor = 'someone else'", "delete from fleet_audit_log"],
)
def test_the_log_refuses_update_and_delete_from_the_app_and_the_owner(
    audit_db: AuditDb, statement: str
) -> None:
    audit_db.as_app(
        "select public.fleet_audit_record('ops@chain.example', '', 'member remove', null, '{}') as id"
    )
    before = audit_db.pg.query("select count(*), max(actor) from fleet_audit_log")
    with pytest.raises(PsqlError, match="permission denied for table fleet_audit_log"):
        audit_db.as_app(f"{statement} returning id")
    with pytest.raises(PsqlError, match="append-only"):
        audit_db.pg.query(f"{statement} returning id")  # postgres: superuser and owner
    # On Supabase the app logs in as the tables' owner (no superuser): an owner
    # may grant itself the rights back, and then the triggers still refuse.
    with pytest.raises(PsqlError, match="append-only"):
        audit_db.pg.psql(
            f"begin; alter table fleet_audit_log owner to {API_ROLE}; set role {API_ROLE};"
            f" grant update, delete on fleet_audit_log to {API_ROLE}; {statement}; commit;"
        )
    assert audit_db.pg.query("select count(*), max(actor) from fleet_audit_log") == before


def test_the_log_refuses_truncate(audit_db: AuditDb) -> None:
    audit_db.as_app(
        "select public.fleet_audit_record('ops@chain.example', '', 'member role', null, '{}') as id"
    )
    count = audit_db.newest_id()
    with pytest.raises(PsqlError, match="permission denied for table fleet_audit_log"):
        audit_db.pg.psql("truncate fleet_audit_log;", user=API_ROLE)
    with pytest.raises(PsqlError, match="append-only: truncate refused"):
        audit_db.pg.psql("truncate fleet_audit_log;")
    assert audit_db.pg.query("select count(*) > 0, max(id) from fleet_audit_log") == [(True, count)]


def test_the_shell_shows_the_log_newest_first(audit_db: AuditDb) -> None:
    bridge_id = "audit-list-1"
    audit_db.tool(ADD_BRIDGE, bridge_id, "--key-only")
    audit_db.bridges("retire", bridge_id)
    audit_db.bridges("rotate", bridge_id, "--key-only")
    out = audit_db.bridges("audit", bridge_id).stdout
    lines = [line for line in out.splitlines() if bridge_id in line]
    assert len(lines) == 2
    assert "rotate" in lines[0] and "retire" in lines[1]
    assert SHELL_ACTOR in lines[0]


def test_the_shell_records_a_sensor_retired_and_watched_and_a_time_zone(audit_db: AuditDb) -> None:
    bridge_id = "audit-sensor-1"
    audit_db.tool(ADD_BRIDGE, bridge_id, "--key-only")
    start = audit_db.newest_id()
    audit_db.bridges("retire-sensor", bridge_id, "entrance-1")
    audit_db.bridges("retire-sensor", bridge_id, "entrance-1")  # already: nothing new
    audit_db.bridges("unretire-sensor", bridge_id, "entrance-1")
    audit_db.bridges("set-timezone", bridge_id, "Europe/Lisbon")
    assert audit_db.bridges("set-timezone", "no-such-bridge", "UTC", check=False).returncode == 2
    rows = audit_db.rows_since(start)
    assert [(r[0], r[2], r[3], r[4]) for r in rows] == [
        (
            SHELL_ACTOR,
            "sensor retire",
            bridge_id,
            {"sensor": "entrance-1", "before": {"retired": False}, "after": {"retired": True}},
        ),
        (
            SHELL_ACTOR,
            "sensor watch",
            bridge_id,
            {"sensor": "entrance-1", "before": {"retired": True}, "after": {"retired": False}},
        ),
        (
            SHELL_ACTOR,
            "timezone",
            bridge_id,
            {"before": {"timezone": None}, "after": {"timezone": "Europe/Lisbon"}},
        ),
    ]


def test_a_tokens_id_never_also_names_a_token_whose_hash_starts_with_it(
    audit_db: AuditDb,
) -> None:
    # make tokens until one's hash starts with the digits of another's id: a short
    # number is an id only (the old rule read it as a hash prefix too, and refused)
    made: dict[int, str] = {}
    for _ in range(200):
        token = audit_db.bridges("enroll-token", "new").stdout.strip()
        row = audit_db.pg.query(
            "select id, token_sha256 from bridge_enroll_tokens"
            f" where token_sha256 = {sql_literal(sha256_hex(token))}"
        )[0]
        made[row[0]] = row[1]
        clash = [i for i in made if any(h.startswith(str(i)) for j, h in made.items() if j != i)]
        if clash:
            break
    assert clash, "no hash began with another token's id in 200 tokens"
    target = clash[0]
    audit_db.bridges("enroll-token", "revoke", str(target))
    revoked = audit_db.pg.query(
        "select id from bridge_enroll_tokens where revoked_at is not null"
        f" and id = any(array[{','.join(str(i) for i in made)}])"
    )
    assert revoked == [(target,)]
