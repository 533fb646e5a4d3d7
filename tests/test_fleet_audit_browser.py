"""Retiring and rotating a bridge from its page, and the audit log, in a real browser.

Debian's chromium driven by playwright-core runs
cloud/nextjs/scripts/audit-browser.mjs against `next start`: an admin retires
one bridge (after a confirm step) and rotates another's key (shown once); both
changes appear, with the person's email, in each bridge's audit section and on /bridges/audit, newest first.
A label from a bridge is shown as text, never as HTML. The database and the
ingest routes are then checked: the retired bridge's key is refused, the
rotated bridge's old key is refused and its new one works.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import subprocess

import pytest
import requests
from cloud_helpers import (
    NEXTJS,
    CloudStack,
    FakeAdoptee,
    contract_headers,
    encode_body,
    make_heartbeat,
    sha256_hex,
)

pytest_plugins = ["cloud_helpers"]

CHROMIUM = "/usr/bin/chromium"
LABEL = 'Faro <img src=x onerror="document.title=1"> Marina'


def heartbeat(stack: CloudStack, bridge_id: str, key: str) -> int:
    return requests.post(
        f"{stack.base_url}/api/bridge/v1/heartbeat",
        data=encode_body(make_heartbeat(bridge_id)),
        headers=contract_headers(key),
        timeout=30,
    ).status_code


def test_admin_retires_and_rotates_and_both_are_in_the_audit_log(cloud_stack: CloudStack) -> None:
    if not os.path.exists(CHROMIUM):
        pytest.skip("chromium is not installed (./provision.sh --dev --test-tools installs it)")
    cloud_stack.reset()
    start = cloud_stack.pg.query("select coalesce(max(id), 0) from fleet_audit_log")[0][0]
    retire_key = cloud_stack.add_bridge("audit-retire")
    token = cloud_stack.bridges("enroll-token", "new").stdout.strip()
    adoptee = FakeAdoptee()
    enrolled = requests.post(
        f"{cloud_stack.base_url}/api/bridge/v1/enroll",
        json=adoptee.body(),
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert enrolled.status_code == 202, enrolled.text
    rotate_id = cloud_stack.bridges(
        "claim",
        adoptee.code,
        "--label",
        LABEL,
        "--timezone",
        "Europe/Lisbon",
        "--id",
        "audit-rotate",
    ).stdout.strip()
    assert heartbeat(cloud_stack, "audit-retire", retire_key) == 200
    assert heartbeat(cloud_stack, rotate_id, adoptee.credential) == 200

    user, password = cloud_stack.person("ops@chain.example", "admin")
    viewer_user, viewer_password = cloud_stack.fleet_auth  # basic auth: the read-only view
    env = {
        **os.environ,
        "BASE_URL": cloud_stack.base_url,
        "EMAIL": user,
        "PASSWORD": password,
        "FLEET_USER": viewer_user,
        "FLEET_PASSWORD": viewer_password,
        "RETIRE": "audit-retire",
        "ROTATE": rotate_id,
        "CHROMIUM": CHROMIUM,
    }
    if os.environ.get("SENSOR_BRIDGE_SCREENSHOTS"):
        env["SCREENSHOT_DIR"] = os.environ["SENSOR_BRIDGE_SCREENSHOTS"]
    run = subprocess.run(
        ["node", "scripts/audit-browser.mjs"],
        cwd=NEXTJS,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout.strip().splitlines()[-1])

    # retire: behind a confirm step, said in words, shown on the page
    assert seen["retireButtonHiddenFirst"]
    assert "audit-retire retired" in seen["retireDone"]
    assert "retired" in seen["retiredBadge"]
    assert [(r["action"], r["actor"]) for r in seen["retireAudit"]] == [("retire", user)]
    assert "retired: no → yes" in seen["retireAudit"][0]["summary"]

    # rotate: the key is shown once, in no URL, not again after a reload
    new_key = seen["newKey"]
    assert new_key.startswith("sbk_") and len(new_key) == 47
    assert new_key not in seen["urlAfterRotate"]
    assert new_key not in seen["rotateHtmlAfterReload"]
    assert [(r["action"], r["actor"]) for r in seen["rotateAudit"]] == [
        ("rotate", user),
        ("claim", f"shell ({os.environ.get('USER') or getpass.getuser()})"),
    ]
    assert "key: changed" in seen["rotateAudit"][0]["summary"]
    # the action replayed by a viewer is refused on the server and rotates nothing
    assert seen["forgedStatus"] in (200, 303) and not seen["forgedGotKey"], seen
    assert seen["forgedLocation"].startswith("/bridges/refused?"), seen
    # the bridge's label is text in the page, never markup
    claim_row = seen["rotateAudit"][1]
    assert LABEL in claim_row["summary"] and claim_row["summaryElements"] == 0

    # fleet-wide: newest first, both with the person
    fleet = [(r["action"], r["actor"], r["bridge"]) for r in seen["fleetAudit"]]
    assert fleet[:2] == [("rotate", user, rotate_id), ("retire", user, "audit-retire")]
    assert any(a == "enroll-token new" and b == "" for a, _, b in fleet)  # fleet-wide: no bridge
    assert seen["consoleErrors"] == []

    rows = cloud_stack.pg.query(
        "select actor, action, bridge_id, source, detail::text from fleet_audit_log"
        f" where id > {start} and actor = '{user}' order by id"
    )
    assert [(r[0], r[1], r[2]) for r in rows] == [
        (user, "retire", "audit-retire"),
        (user, "rotate", rotate_id),
    ]
    assert all(r[3] for r in rows)  # where from: the client's address as the server saw it
    assert new_key not in rows[1][4] and sha256_hex(new_key) not in rows[1][4]

    # what the bridges see: the retired one and the old key are refused, the new key works
    assert heartbeat(cloud_stack, "audit-retire", retire_key) == 401
    assert heartbeat(cloud_stack, rotate_id, adoptee.credential) == 401
    assert heartbeat(cloud_stack, rotate_id, new_key) == 200


def test_the_fleet_audit_page_is_paged_newest_first_and_shows_bridge_text_as_text(
    cloud_stack: CloudStack,
) -> None:
    marker = "page-" + os.urandom(4).hex()
    cloud_stack.pg.psql(
        "select public.fleet_audit_record('ops@chain.example', '203.0.113.9', 'member add', null,"
        f" jsonb_build_object('member', '{marker}-' || n)) from generate_series(1, 60) n;"
        "select public.fleet_audit_record('ops@chain.example', '203.0.113.9', 'member role', null,"
        " jsonb_build_object('member', '<script>alert(1)</script>'));"
    )
    auth = cloud_stack.fleet_auth
    first = requests.get(f"{cloud_stack.base_url}/bridges/audit", auth=auth, timeout=60)
    assert first.status_code == 200
    assert first.text.count("data-audit-row=") == 50
    # newest first: the markup row, then the 60th, 59th... member
    assert (
        "&lt;script&gt;alert(1)&lt;/script&gt;" in first.text
        and "<script>alert(1)" not in first.text
    )
    assert first.text.index(f"{marker}-60<") < first.text.index(f"{marker}-59<")
    # 50 rows: the markup row and members 60 down to 12
    assert f"{marker}-12<" in first.text and f"{marker}-11<" not in first.text
    older = re.search(r'href="(/bridges/audit\?before=\d+)"', first.text)
    assert older, "no link to older rows"
    second = requests.get(f"{cloud_stack.base_url}{older.group(1)}", auth=auth, timeout=60)
    assert second.status_code == 200
    assert f"{marker}-11<" in second.text and f"{marker}-1<" in second.text
    assert f"{marker}-12<" not in second.text
    # signed out: sent to sign in, nothing shown
    signed_out = requests.get(
        f"{cloud_stack.base_url}/bridges/audit", timeout=60, allow_redirects=False
    )
    assert signed_out.status_code in (302, 303, 307), signed_out.status_code
    assert "/sign-in" in signed_out.headers["Location"] and marker not in signed_out.text
