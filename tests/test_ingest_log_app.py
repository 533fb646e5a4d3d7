"""The ingest log in the real app (`next start` on loopback, PostgreSQL, Debian's chromium).

Batches and heartbeats sent through the routes appear under "Data received"
on the bridge's page with their counts and refused reasons; the page pages
back 100 at a time; an admin sets the retention with the page's form, and a
forged post of that form's action changes nothing; the action itself asks
for the admin role first, on the server; the alert cron prunes what is past
it.
The database side is in test_ingest_log.py.
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess

import pytest
import requests
from cloud_helpers import (
    NEXTJS,
    CloudApi,
    CloudStack,
    contract_headers,
    encode_body,
    make_batch,
    make_record,
    make_series,
)
from test_fleet import heartbeat

pytest_plugins = ["cloud_helpers"]

CHROMIUM = "/usr/bin/chromium"
TIMEOUT = 30


def send(api: CloudApi, batch: dict) -> dict:
    answer = requests.post(
        api.ingest_url,
        data=encode_body(batch),
        headers=contract_headers(api.api_key, batch["batch_id"]),
        timeout=TIMEOUT,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def deliver_a_story(api: CloudApi) -> tuple[dict, dict, dict]:
    """A batch with one refused reading, the same batch re-sent, a newer revision; a heartbeat."""
    good = make_series("entrance-1", 3)
    bad = make_record("entrance-2")
    bad["values"] = {"total": {"in": 1.5, "out": 0}, "lines": {}}
    first = make_batch(api.bridge_id, [*good, bad], batch_id="first-batch")
    assert send(api, first)["rejected"][0]["id"] == bad["id"]
    assert send(api, first)["accepted"] == 3  # the retry: answered the same, nothing changes
    newer = make_batch(
        api.bridge_id, make_series("entrance-1", 3, revision=2)[:1], batch_id="newer-batch"
    )
    send(api, newer)
    heartbeat(api, state="degraded")
    return first, newer, bad


def log_rows(page: str) -> list[dict[str, str]]:
    section = re.search(r'<section id="data-received".*?</section>', page, re.S)
    assert section, "no Data received section"
    rows = []
    for tr in re.findall(r"<tr [^>]*data-log-kind=.*?</tr>", section.group(0), re.S):
        attrs = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', tr.split(">", 1)[0]))
        attrs["text"] = html.unescape(re.sub(r"<[^>]+>", " ", tr))
        rows.append(attrs)
    return rows


def test_data_received_on_the_bridge_page_shows_counts_and_reasons(
    cloud_stack: CloudStack, cloud_api: CloudApi
) -> None:
    first, newer, bad = deliver_a_story(cloud_api)
    url = f"{cloud_stack.base_url}/bridges/{cloud_api.bridge_id}"

    page = requests.get(url, auth=cloud_stack.fleet_auth, timeout=TIMEOUT)

    assert page.status_code == 200
    rows = log_rows(page.text)
    summary = [
        (r["log-kind"], r["batch"], r["new"], r["newer"], r["unchanged"], r["refused"])
        for r in rows
    ]
    assert summary == [  # newest first
        ("heartbeat", "", "0", "0", "0", "0"),
        ("batch", "newer-batch", "0", "1", "0", "0"),
        ("batch", "first-batch", "0", "0", "3", "1"),
        ("batch", "first-batch", "3", "0", "0", "1"),
    ]
    assert "heartbeat (degraded)" in rows[0]["text"]
    assert bad["id"][:12] in rows[3]["text"] and "values" in rows[3]["text"]
    assert "Kept 90 days" in html.unescape(re.sub(r"<[^>]+>", "", page.text))

    batches_only = requests.get(
        url, params={"log_kind": "batch"}, auth=cloud_stack.fleet_auth, timeout=TIMEOUT
    )
    assert [r["log-kind"] for r in log_rows(batches_only.text)] == ["batch"] * 3
    # signed out: sent to sign in, no log shown
    signed_out = requests.get(f"{url}?log_kind=batch", timeout=TIMEOUT, allow_redirects=False)
    assert signed_out.status_code in (302, 303, 307), signed_out.status_code
    assert "/sign-in" in signed_out.headers["Location"]


def test_data_received_pages_back_100_at_a_time(
    cloud_stack: CloudStack, cloud_api: CloudApi
) -> None:
    cloud_api.query(
        "insert into bridge_ingest_log (bridge_id, kind, state, received_at)"
        f" select '{cloud_api.bridge_id}', 'heartbeat', 'ok', now() - n * interval '1 minute'"
        " from generate_series(130, 1, -1) n returning id"
    )
    url = f"{cloud_stack.base_url}/bridges/{cloud_api.bridge_id}"
    newest = requests.get(url, auth=cloud_stack.fleet_auth, timeout=TIMEOUT).text
    assert len(log_rows(newest)) == 100
    older = re.search(r'href="([^"]*log_before=\d+[^"]*)"', newest)
    assert older, "no link to older rows"
    rest = requests.get(
        f"{cloud_stack.base_url}{html.unescape(older.group(1))}",
        auth=cloud_stack.fleet_auth,
        timeout=TIMEOUT,
    ).text
    assert len(log_rows(rest)) == 30 and "log_before=" not in rest.split('id="data-received"')[1]


def test_the_alert_cron_prunes_rows_past_the_retention(
    cloud_stack: CloudStack, cloud_api: CloudApi
) -> None:
    cloud_api.query(
        "insert into bridge_ingest_log (bridge_id, kind, state, received_at)"
        f" select '{cloud_api.bridge_id}', 'heartbeat', 'ok', now() - n * interval '1 day'"
        " from generate_series(1, 120) n returning id"
    )
    run = requests.get(
        f"{cloud_stack.base_url}/api/bridge/v1/cron/alerts",
        headers={"Authorization": f"Bearer {cloud_stack.cron_secret}"},
        timeout=TIMEOUT,
    )
    assert run.status_code == 200 and run.json()["ingest_log_pruned"] == 31, run.text  # 90..120
    assert cloud_api.query(
        "select max(extract(day from now() - received_at))::int as oldest from bridge_ingest_log"
    ) == [(89,)]


def test_an_admin_sets_the_retention_in_chromium_and_a_forged_post_changes_nothing(
    cloud_stack: CloudStack, cloud_api: CloudApi
) -> None:
    if not os.path.exists(CHROMIUM):
        pytest.skip("chromium is not installed (./provision.sh --dev --test-tools installs it)")
    deliver_a_story(cloud_api)
    user, password = cloud_stack.person("admin@chain.example", "admin")
    viewer_user, viewer_password = cloud_stack.fleet_auth  # basic auth: the read-only view
    env = {
        **os.environ,
        "BASE_URL": cloud_stack.base_url,
        "EMAIL": user,
        "PASSWORD": password,
        "FLEET_USER": viewer_user,
        "FLEET_PASSWORD": viewer_password,
        "BRIDGE": cloud_api.bridge_id,
        "CHROMIUM": CHROMIUM,
    }
    if os.environ.get("SENSOR_BRIDGE_SCREENSHOTS"):
        env["SCREENSHOT_DIR"] = os.environ["SENSOR_BRIDGE_SCREENSHOTS"]
    try:
        run = subprocess.run(
            ["node", "scripts/ingest-log-browser.mjs"],
            cwd=NEXTJS,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert run.returncode == 0, run.stderr
        seen = json.loads(run.stdout.strip().splitlines()[-1])

        assert seen["heading"] == "Data received"
        assert [(r["kind"], r["new"], r["unchanged"], r["refused"]) for r in seen["rows"]] == [
            ("heartbeat", 0, 0, 0),
            ("batch", 0, 0, 0),
            ("batch", 0, 3, 1),
            ("batch", 3, 0, 1),
        ]
        assert "values" in seen["rows"][3]["text"]
        assert seen["keepDays"] == "30" and "now kept 30 days" in seen["keepText"]
        assert "keep_days: a whole number of days from 1 to 3650" in seen["keepError"]
        assert seen["keepDaysAfterError"] == "30"
        # the admin's action replayed by hand by a viewer is refused on the server, changes nothing
        assert seen["actionCaptured"] and seen["bodyEdited"]
        assert seen["forgedStatus"] in (200, 303) and seen["keepDaysAfterForged"] == "30", seen
        assert seen["forgedLocation"].startswith("/bridges/refused?"), seen
        assert cloud_api.query("select keep_days, changed_by from bridge_ingest_log_settings") == [
            (30, user)
        ]
        assert seen["consoleErrors"] == []
    finally:
        cloud_stack.pg.psql("update bridge_ingest_log_settings set keep_days = 90;")


def test_the_retention_action_asks_for_the_admin_role_before_anything_else() -> None:
    """Today's sign-in makes every fleet user an admin, so no viewer can be
    signed in to try: pin that the action's first statement is the role check
    (requireRole, cloud/nextjs/lib/fleet/guard.ts), whatever sign-in fills it."""
    source = (NEXTJS / "app" / "bridges" / "ingest-log-actions.ts").read_text()
    actions = re.findall(r"export async function (\w+)\([^)]*\)[^{]*\{\n\s*([^\n]+)", source)
    assert actions, "no server action found"
    for name, first in actions:
        assert re.match(r'const \{[^}]*\} = await requireRole\("admin"\);', first), (name, first)
