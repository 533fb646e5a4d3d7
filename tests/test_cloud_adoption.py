"""Adoption and config from the cloud (issue 23), against `next start` on a real PostgreSQL.

A bridge enrolls with the fleet's enroll token (POST /api/bridge/v1/enroll),
a person claims it with its code (cloud/bin/bridges claim, or the fleet page:
test_fleet_browser.py), then it authenticates with its own credential and
fetches its config (GET /api/bridge/v1/config). docs/ingest-contract.md,
"Adoption" and "Config from the cloud", is what these tests hold the cloud to.
The same routes against both receivers: test_contract_conformance.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests
from cloud_helpers import (
    ADD_BRIDGE,
    BRIDGES_CLI,
    CloudStack,
    FakeAdoptee,
    cloud_tool,
    contract_headers,
    encode_body,
    make_batch,
    make_heartbeat,
    make_record,
)

pytest_plugins = ["cloud_helpers"]

TIMEOUT = 30


@pytest.fixture
def stack(cloud_stack: CloudStack) -> CloudStack:
    cloud_stack.reset()
    return cloud_stack


def new_token(stack: CloudStack, label: str = "test") -> str:
    return stack.bridges("enroll-token", "new", "--label", label).stdout.strip()


def enroll(
    base_url: str, token: str, body: Any, headers: dict[str, str] | None = None
) -> requests.Response:
    sent = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    sent.update(headers or {})
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(
        f"{base_url}/api/bridge/v1/enroll", data=data, headers=sent, timeout=TIMEOUT
    )


def get_config(
    stack: CloudStack, bridge_id: str, key: str, etag: str | None = None
) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}", "X-Bridge-Id": bridge_id}
    if etag is not None:
        headers["If-None-Match"] = etag
    return requests.get(f"{stack.base_url}/api/bridge/v1/config", headers=headers, timeout=TIMEOUT)


def heartbeat(stack: CloudStack, bridge_id: str, key: str, **extra: Any) -> requests.Response:
    body = {**make_heartbeat(bridge_id), **extra}
    return requests.post(
        f"{stack.base_url}/api/bridge/v1/heartbeat",
        data=encode_body(body),
        headers=contract_headers(key),
        timeout=TIMEOUT,
    )


def claim(stack: CloudStack, code: str, label: str = "Lisbon Chiado", *extra: str) -> str:
    return stack.bridges(
        "claim", code, "--label", label, "--timezone", "Europe/Lisbon", *extra
    ).stdout.strip()


def adopted(stack: CloudStack, label: str = "Lisbon Chiado") -> tuple[FakeAdoptee, str]:
    bridge = FakeAdoptee()
    assert enroll(stack.base_url, new_token(stack), bridge.body()).status_code == 202
    return bridge, claim(stack, bridge.code, label)


def toml_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "store.toml"
    path.write_text(text)
    return str(path)


TWO_CAMERAS = """
[bridge]
timezone = "Europe/Lisbon"

[[sensors]]
id = "entrance-1"
url = "http://127.0.0.1:9"
username = "admin"
password = "door-secret-1"

[[sensors]]
id = "entrance-2"
url = "http://127.0.0.1:10"
password = "door-secret-2"
collect = ["line_counts"]

[alerts]
ping_url = "https://hc-ping.example/secret-ping"
"""


# --------------------------------------------------------------------------
# Enroll
# --------------------------------------------------------------------------


def test_enroll_is_recorded_once_and_refreshed(stack: CloudStack) -> None:
    token = new_token(stack)
    bridge = FakeAdoptee()
    first = enroll(stack.base_url, token, bridge.body())
    assert first.status_code == 202, first.text
    assert first.json() == {"state": "unclaimed", "retry_after_s": 30}
    again = enroll(stack.base_url, token, bridge.body(version="0.2.0", lan_address="192.0.2.21"))
    assert again.status_code == 202
    rows = stack.pg.query(
        "select serial, version, lan_address, last_seen > first_seen as refreshed, reflashed_from "
        "from bridge_enrollments"
    )
    assert rows == [(bridge.serial, "0.2.0", "192.0.2.21", True, None)]
    pending = stack.bridges("pending").stdout
    assert bridge.serial in pending and "re-flashed" not in pending


def test_revoked_or_unknown_enroll_token_is_401(stack: CloudStack) -> None:
    token = new_token(stack)
    listed = stack.bridges("enroll-token", "list").stdout
    assert token not in listed and "test" in listed
    prefix = re.search(r"\|\s*([0-9a-f]{12})\s*\|", listed)
    assert prefix, listed
    stack.bridges("enroll-token", "revoke", prefix.group(1))
    refused = enroll(stack.base_url, token, FakeAdoptee().body())
    assert refused.status_code == 401
    assert enroll(stack.base_url, "sbe_" + "x" * 43, FakeAdoptee().body()).status_code == 401
    assert enroll(stack.base_url, "", FakeAdoptee().body()).status_code == 401
    assert stack.pg.query("select count(*) from bridge_enrollments") == [(0,)]


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"schema": "sensor-bridge/enroll/v0"}, "schema"),
        ({"serial": ""}, "serial"),
        ({"serial": "s" * 65}, "serial"),
        ({"macs": ["not-a-mac"]}, "macs"),
        ({"macs": [f"dc:a6:32:01:02:{i:02x}" for i in range(9)]}, "macs"),
        ({"credential_sha256": "ABC"}, "credential_sha256"),
        ({"claim_code_sha256": None}, "claim_code_sha256"),
        ({"hostname": "h" * 65}, "hostname"),
        ({"version": 1}, "version"),
        ({"colour": "red"}, "enroll"),  # "enroll: unknown key(s) colour"
    ],
)
def test_bad_enroll_body_is_400_naming_the_key(
    stack: CloudStack, change: dict[str, Any], key: str
) -> None:
    answer = enroll(stack.base_url, new_token(stack), FakeAdoptee().body(**change))
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"].startswith(f"{key}:")
    assert stack.pg.query("select count(*) from bridge_enrollments") == [(0,)]


def test_enroll_body_too_large_or_not_json_is_refused(stack: CloudStack) -> None:
    token = new_token(stack)
    assert enroll(stack.base_url, token, b"{not json").status_code == 400
    huge = FakeAdoptee().body(padding="x" * 20_000)
    assert enroll(stack.base_url, token, huge).status_code == 413
    incomplete = FakeAdoptee().body()
    del incomplete["hostname"]
    missing = enroll(stack.base_url, token, incomplete)
    assert (
        missing.status_code == 400 and missing.json()["error"] == "enroll: missing key(s) hostname"
    )


def test_enroll_is_rate_limited_per_token_and_per_address(stack: CloudStack) -> None:
    server = stack.start_server(env={"BRIDGE_ENROLL_PER_MIN": "3"})
    try:
        token = new_token(stack)
        answers = [
            enroll(server.base_url, token, FakeAdoptee().body()).status_code for _ in range(4)
        ]
        assert answers[:3] == [202, 202, 202]
        limited = enroll(server.base_url, token, FakeAdoptee().body())
        assert limited.status_code == 429, answers
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        # another token from the same address is limited too (per source address)
        other = new_token(stack, "second")
        assert enroll(server.base_url, other, FakeAdoptee().body()).status_code == 429
    finally:
        server.stop()


def test_a_reflashed_bridge_is_a_new_enrollment_never_merged(stack: CloudStack) -> None:
    old, bridge_id = adopted(stack)
    reflashed = FakeAdoptee(serial=old.serial)  # same board, new card: new credential and code
    assert enroll(stack.base_url, new_token(stack), reflashed.body()).status_code == 202
    rows = stack.pg.query(
        "select reflashed_from, claimed_at is null as pending from bridge_enrollments order by id"
    )
    assert rows == [(None, False), (bridge_id, True)]
    # the old bridge still has its old key: the new card cannot write under it
    assert stack.pg.query(f"select api_key_sha256 from bridges where id = '{bridge_id}'") == [
        (old.body()["credential_sha256"],)
    ]
    page = requests.get(f"{stack.base_url}/bridges", auth=stack.fleet_auth, timeout=TIMEOUT)
    row = re.search(rf'<tr[^>]*data-serial="{old.serial}".*?</tr>', page.text, re.S)
    assert row and "re-flashed" in row.group(0) and bridge_id in row.group(0)
    assert reflashed.code not in page.text and old.code not in page.text
    second = claim(stack, reflashed.code, "Lisbon Chiado")
    assert second != bridge_id


def test_expired_enrollments_are_gone(stack: CloudStack) -> None:
    token = new_token(stack)
    stale, fresh = FakeAdoptee(), FakeAdoptee()
    assert enroll(stack.base_url, token, stale.body()).status_code == 202
    stack.pg.psql("update bridge_enrollments set expires_at = now() - interval '1 second'")
    assert enroll(stack.base_url, token, fresh.body()).status_code == 202
    assert stack.pg.query("select serial from bridge_enrollments") == [(fresh.serial,)]
    assert (
        "no unclaimed bridge"
        in stack.bridges(
            "claim", stale.code, "--label", "x", "--timezone", "UTC", check=False
        ).stderr
    )
    # a bridge still calling after its entry expired is simply recorded again
    assert enroll(stack.base_url, token, stale.body()).status_code == 202
    assert len(stack.pg.query("select serial from bridge_enrollments")) == 2


# --------------------------------------------------------------------------
# Claim
# --------------------------------------------------------------------------


def test_claim_works_once_prints_the_id_and_is_logged(stack: CloudStack) -> None:
    bridge = FakeAdoptee()
    token = new_token(stack)
    assert enroll(stack.base_url, token, bridge.body()).status_code == 202
    bridge_id = claim(stack, bridge.code.lower())
    assert bridge_id == "lisbon-chiado"
    row = stack.pg.query(
        "select label, timezone, serial, claimed_by like 'shell (%)' as by_shell, api_key_sha256"
        f" from bridges where id = '{bridge_id}'"
    )
    assert row == [
        ("Lisbon Chiado", "Europe/Lisbon", bridge.serial, True, bridge.body()["credential_sha256"])
    ]
    again = stack.bridges(
        "claim", bridge.code, "--label", "Lisbon", "--timezone", "UTC", check=False
    )
    assert again.returncode != 0 and "no unclaimed bridge shows this code" in again.stderr
    claimed = enroll(stack.base_url, token, bridge.body())
    assert claimed.status_code == 200
    assert claimed.json() == {
        "state": "claimed",
        "bridge_id": "lisbon-chiado",
        "timezone": "Europe/Lisbon",
        "label": "Lisbon Chiado",
    }
    # a second store with the same label gets a unique id; --id chooses one
    other, _ = adopted(stack, "Lisbon Chiado")
    assert stack.pg.query("select id from bridges order by id") == [
        ("lisbon-chiado",),
        ("lisbon-chiado-2",),
    ]
    third = FakeAdoptee()
    assert enroll(stack.base_url, token, third.body()).status_code == 202
    assert claim(stack, third.code, "Porto", "--id", "porto-1") == "porto-1"
    attempts = stack.pg.query(
        "select outcome, who like 'shell (%' from bridge_claim_attempts order by id"
    )
    assert [a[0] for a in attempts] == ["claimed", "wrong", "claimed", "claimed"]
    assert all(a[1] for a in attempts)


def test_claim_refuses_bad_input_without_guessing(stack: CloudStack) -> None:
    bridge = FakeAdoptee()
    assert enroll(stack.base_url, new_token(stack), bridge.body()).status_code == 202
    bad_zone = stack.bridges(
        "claim", bridge.code, "--label", "X", "--timezone", "Mars/Olympus", check=False
    )
    assert bad_zone.returncode != 0 and "timezone: unknown time zone" in bad_zone.stderr
    not_a_code = stack.bridges(
        "claim", "0OIL-1234", "--label", "X", "--timezone", "UTC", check=False
    )
    assert not_a_code.returncode != 0 and "is not a claim code" in not_a_code.stderr
    assert stack.pg.query("select count(*) from bridges") == [(0,)]


def test_five_wrong_codes_lock_claiming(stack: CloudStack) -> None:
    bridge = FakeAdoptee()
    assert enroll(stack.base_url, new_token(stack), bridge.body()).status_code == 202
    for _ in range(5):
        wrong = stack.bridges(
            "claim", FakeAdoptee().code, "--label", "X", "--timezone", "UTC", check=False
        )
        assert wrong.returncode != 0
    assert "locked until" in wrong.stderr
    right = stack.bridges("claim", bridge.code, "--label", "X", "--timezone", "UTC", check=False)
    assert right.returncode != 0 and "claiming is locked" in right.stderr
    assert stack.pg.query("select count(*) from bridges") == [(0,)]
    outcomes = stack.pg.query(
        "select outcome, count(*) as n from bridge_claim_attempts group by 1 order by 1"
    )
    assert outcomes == [("locked", 1), ("wrong", 5)]
    # 15 minutes later it works (the attempts are moved back in time)
    stack.pg.psql("update bridge_claim_attempts set at = at - interval '16 minutes'")
    assert claim(stack, bridge.code, "X") == "x"


# --------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------


def test_config_is_served_with_etag_and_never_a_refused_version(
    stack: CloudStack, tmp_path: Path
) -> None:
    bridge, bridge_id = adopted(stack)
    key = bridge.credential
    none_yet = get_config(stack, bridge_id, key)
    assert none_yet.status_code == 404 and none_yet.json() == {"error": "no config yet"}
    assert heartbeat(stack, bridge_id, key).json()["config_version"] is None

    version = stack.bridges("config", "set", bridge_id, toml_file(tmp_path, TWO_CAMERAS))
    assert version.stdout.strip() == "1"
    served = get_config(stack, bridge_id, key)
    assert served.status_code == 200 and served.headers["ETag"] == '"1"'
    body = served.json()
    assert body["schema"] == "sensor-bridge/config/v1" and body["bridge_id"] == bridge_id
    assert body["version"] == 1 and body["made_by"].startswith("shell (")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["made_at"])
    assert [s["id"] for s in body["config"]["sensors"]] == ["entrance-1", "entrance-2"]
    assert body["config"]["sensors"][0]["password"] == "door-secret-1"
    assert "uplink" not in body["config"]
    assert get_config(stack, bridge_id, key, etag='"1"').status_code == 304
    assert get_config(stack, bridge_id, key, etag='W/"0", "1"').status_code == 304
    assert get_config(stack, bridge_id, key, etag='"0"').status_code == 200

    stack.bridges("config", "set", bridge_id, toml_file(tmp_path, TWO_CAMERAS))
    answer = heartbeat(
        stack,
        bridge_id,
        key,
        config_source="cloud",
        config={"version": 1, "status": "applied", "running": 1},
    )
    assert answer.status_code == 200 and answer.json()["config_version"] == 2
    refused = heartbeat(
        stack,
        bridge_id,
        key,
        config_source="cloud",
        config={
            "version": 2,
            "status": "rolled_back",
            "running": 1,
            "error": "sensor entrance-1: 401 username or password rejected",
        },
    )
    assert refused.json()["config_version"] == 1
    assert get_config(stack, bridge_id, key).json()["version"] == 1
    assert get_config(stack, bridge_id, key, etag='"1"').status_code == 304
    shown = stack.bridges("config", "show", bridge_id).stdout
    assert "rolled_back" in shown and "401 username or password rejected" in shown
    assert "door-secret" not in shown and "secret-ping" not in shown and "********" in shown
    # every version refused: nothing to offer
    heartbeat(
        stack,
        bridge_id,
        key,
        config_source="cloud",
        config={"version": 1, "status": "invalid", "running": 0, "error": "bad"},
    )
    assert get_config(stack, bridge_id, key).status_code == 404


def test_config_needs_the_bridge_credential(stack: CloudStack, tmp_path: Path) -> None:
    bridge, bridge_id = adopted(stack)
    stack.bridges("config", "set", bridge_id, toml_file(tmp_path, TWO_CAMERAS))
    assert get_config(stack, bridge_id, "sbk_wrong").status_code == 401
    assert get_config(stack, "someone-else", bridge.credential).status_code == 401
    no_id = requests.get(
        f"{stack.base_url}/api/bridge/v1/config",
        headers={"Authorization": f"Bearer {bridge.credential}"},
        timeout=TIMEOUT,
    )
    assert no_id.status_code == 400 and "X-Bridge-Id" in no_id.json()["error"]


def test_the_enroll_token_can_do_nothing_else(stack: CloudStack, tmp_path: Path) -> None:
    token = new_token(stack)
    bridge = FakeAdoptee()
    assert enroll(stack.base_url, token, bridge.body()).status_code == 202
    bridge_id = claim(stack, bridge.code)
    stack.bridges("config", "set", bridge_id, toml_file(tmp_path, TWO_CAMERAS))
    assert get_config(stack, bridge_id, token).status_code == 401
    assert heartbeat(stack, bridge_id, token).status_code == 401
    batch = make_batch(bridge_id, [make_record("entrance-1")])
    ingest = requests.post(
        f"{stack.base_url}/api/bridge/v1/ingest",
        data=encode_body(batch),
        headers=contract_headers(token, batch["batch_id"]),
        timeout=TIMEOUT,
    )
    assert ingest.status_code == 401
    # nor can an unclaimed bridge's own credential
    waiting = FakeAdoptee()
    assert enroll(stack.base_url, token, waiting.body()).status_code == 202
    hostname = waiting.body()["hostname"]
    assert get_config(stack, hostname, waiting.credential).status_code == 401


def test_a_claimed_bridge_delivers_under_its_claimed_id(stack: CloudStack) -> None:
    bridge, bridge_id = adopted(stack)
    record = make_record("entrance-1")
    batch = make_batch(bridge_id, [record])
    answer = requests.post(
        f"{stack.base_url}/api/bridge/v1/ingest",
        data=encode_body(batch),
        headers=contract_headers(bridge.credential, batch["batch_id"]),
        timeout=TIMEOUT,
    )
    assert answer.status_code == 200 and answer.json()["accepted"] == 1
    assert stack.pg.query("select bridge_id, id from bridge_readings") == [
        (bridge_id, record["id"])
    ]


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ({"config_source": "card"}, "config_source"),
        ({"config": {"version": 1, "status": "done"}}, "config.status"),
        ({"config": {"version": -1, "status": "applied"}}, "config.version"),
        ({"config": {"version": 1, "status": "invalid", "error": "x" * 501}}, "config.error"),
        ({"config": {"version": 1, "status": "invalid", "error": "a\nb"}}, "config.error"),
        ({"config": {"version": 1, "status": "applied", "mood": 1}}, "config"),
    ],
)
def test_heartbeat_config_report_is_checked(
    stack: CloudStack, extra: dict[str, Any], key: str
) -> None:
    bridge, bridge_id = adopted(stack)
    answer = heartbeat(stack, bridge_id, bridge.credential, **extra)
    assert answer.status_code == 400 and answer.json()["error"].startswith(f"{key}:"), answer.text


def test_a_bridge_managed_on_site_refuses_cloud_edits(stack: CloudStack, tmp_path: Path) -> None:
    bridge, bridge_id = adopted(stack)
    assert heartbeat(stack, bridge_id, bridge.credential, config_source="local").status_code == 200
    refused = stack.bridges(
        "config", "set", bridge_id, toml_file(tmp_path, TWO_CAMERAS), check=False
    )
    assert refused.returncode != 0 and "managed on site" in refused.stderr
    # as an admin, who is offered the editor where the bridge is managed from the cloud
    admin = stack.signed_in("admin@example.com", "admin")
    page = admin.get(f"{stack.base_url}/bridges/{bridge_id}", timeout=TIMEOUT)
    assert "Managed on site" in page.text and 'id="config-form"' not in page.text


def test_fleet_page_shows_desired_running_and_the_reason_never_a_password(
    stack: CloudStack, tmp_path: Path
) -> None:
    bridge, bridge_id = adopted(stack)
    stack.bridges("config", "set", bridge_id, toml_file(tmp_path, TWO_CAMERAS))
    stack.bridges("config", "set", bridge_id, toml_file(tmp_path, TWO_CAMERAS))
    heartbeat(
        stack,
        bridge_id,
        bridge.credential,
        config_source="cloud",
        config={
            "version": 2,
            "status": "rolled_back",
            "running": 1,
            "error": "sensor entrance-1: 401 username or password rejected",
        },
    )
    # an installer, who may edit (the basic-auth view is read-only since issue 24)
    installer = stack.signed_in("installer@example.com", "installer")
    page = installer.get(f"{stack.base_url}/bridges/{bridge_id}", timeout=TIMEOUT).text.replace(
        "<!-- -->", ""
    )  # React's markers between text pieces
    assert "401 username or password rejected" in page
    assert "version 2 rolled back by the bridge" in page
    assert re.search(r"data-desired[^>]*>version 1<", page)
    assert re.search(r"data-running[^>]*>version 1<", page)
    assert "door-secret" not in page and "secret-ping" not in page
    assert 'id="config-form"' in page


def test_config_set_checks_what_the_cloud_can(stack: CloudStack, tmp_path: Path) -> None:
    _, bridge_id = adopted(stack)
    cases = {
        '[uplink]\nurl = "x"\n': "[uplink]: is the bridge's own",
        "[cameras]\nx = 1\n": "[cameras]: unknown table",
        '[[sensors]]\nurl = "http://127.0.0.1:9"\n': "sensors[0].id: required",
        '[[sensors]]\nid = "a"\n': "sensors[0].url: required",
        '[[sensors]]\nid = "a"\ntype = "toaster"\nurl = "http://127.0.0.1:9"\n': "sensors[0].type",
        "[bridge]\nid = 'x'\n": "[bridge]: only timezone",
        "not toml [": "",
    }
    for text, error in cases.items():
        run = stack.bridges("config", "set", bridge_id, toml_file(tmp_path, text), check=False)
        assert run.returncode != 0 and error in run.stderr, (text, run.stderr)
    assert stack.pg.query("select count(*) from bridge_config_versions") == [(0,)]


def test_bridges_help_needs_no_database() -> None:
    run = subprocess.run(
        ["bash", str(BRIDGES_CLI), "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        env={k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
    )
    assert run.returncode == 0
    for words in ("enroll-token new", "claim CODE", "config set BRIDGE FILE.toml", "config show"):
        assert words in run.stdout


def test_no_new_bridge_takes_the_name_of_a_fleet_page(stack: CloudStack) -> None:
    # /bridges/audit, /bridges/people and /bridges/refused are the fleet page's own
    # pages: a bridge with such an id could never have its page opened
    _, from_label = adopted(stack, "Audit")
    assert from_label == "audit-2"
    bridge = FakeAdoptee()
    assert enroll(stack.base_url, new_token(stack), bridge.body()).status_code == 202
    named = stack.bridges(
        "claim",
        bridge.code,
        "--label",
        "Back office",
        "--timezone",
        "Europe/Lisbon",
        "--id",
        "people",
        check=False,
    )
    assert named.returncode != 0 and "bridges_id_is_not_a_fleet_page" in named.stderr
    by_hand = cloud_tool(stack.pg, ADD_BRIDGE, "refused", check=False)
    assert by_hand.returncode == 2 and "is the name of a fleet page" in by_hand.stderr
    assert stack.pg.query(
        "select count(*) from bridges where id in ('audit', 'people', 'refused')"
    ) == [(0,)]
