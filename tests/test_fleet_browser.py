"""The fleet page in a real browser: Debian's chromium driven by playwright-core (cloud/nextjs devDependency).

Runs cloud/nextjs/scripts/fleet-browser.mjs against `next start` and judges
what it saw: a signed-out visitor is sent to /sign-in (a viewer then signs
in through the Supabase Auth stand-in), a silent bridge is red with its age, a
healthy one green, the bridge page's chart has one point per hour of the
last 7 days, and the console stays clean. SENSOR_BRIDGE_SCREENSHOTS=<dir>
also writes the README's screenshots there.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
import requests
from cloud_helpers import (
    NEXTJS,
    CloudApi,
    CloudStack,
    contract_headers,
    encode_body,
    make_batch,
    make_series,
)
from test_fleet import heartbeat

pytest_plugins = ["cloud_helpers"]

CHROMIUM = "/usr/bin/chromium"


def test_fleet_pages_in_chromium(cloud_stack: CloudStack, cloud_api: CloudApi) -> None:
    if not os.path.exists(CHROMIUM):
        pytest.skip("chromium is not installed (./provision.sh --dev --test-tools installs it)")
    cloud_api.query(
        f"update bridges set label = 'Lisbon, Rua Augusta' where id = '{cloud_api.bridge_id}' returning id"
    )
    heartbeat(cloud_api)
    silent = cloud_stack.api()
    cloud_api.query(
        f"update bridges set label = 'Porto, Santa Catarina' where id = '{silent.bridge_id}' returning id"
    )
    heartbeat(silent, state="ok", silent_minutes=95)
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    readings = make_series(
        "entrance-1", 600, first=now - timedelta(hours=49)
    )  # 50 hours of 5-minute counts
    batch = make_batch(cloud_api.bridge_id, readings)
    answer = requests.post(
        cloud_api.ingest_url,
        data=encode_body(batch),
        headers=contract_headers(cloud_api.api_key, batch["batch_id"]),
        timeout=30,
    )
    assert answer.status_code == 200 and answer.json()["accepted"] == 600, answer.text

    user, password = cloud_stack.person("viewer@example.com", "viewer")
    env = {
        **os.environ,
        "BASE_URL": cloud_stack.base_url,
        "EMAIL": user,
        "PASSWORD": password,
        "BRIDGE": cloud_api.bridge_id,
        "CHROMIUM": CHROMIUM,
    }
    shots = os.environ.get("SENSOR_BRIDGE_SCREENSHOTS")
    if shots:
        env["SCREENSHOT_DIR"] = shots
    run = subprocess.run(
        ["node", "scripts/fleet-browser.mjs"],
        cwd=NEXTJS,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout.strip().splitlines()[-1])

    # was a basic-auth challenge (401); since issue 24 sign-in is Supabase Auth's page
    assert seen["anonymous"]["url"] == f"{cloud_stack.base_url}/sign-in?next=%2Fbridges", seen
    assert "Sign in" in seen["anonymous"]["text"]
    assert cloud_api.bridge_id not in seen["anonymous"]["text"]
    assert seen["fleetStatus"] == 200 and seen["bridgeStatus"] == 200
    rows = {r["id"]: r for r in seen["rows"]}
    assert (
        rows[silent.bridge_id]["word"] == "silent"
        and rows[silent.bridge_id]["colour"] == "rgb(207, 34, 46)"
    )
    assert rows[silent.bridge_id]["age"] == "1 h 35 min ago"
    assert (
        rows[cloud_api.bridge_id]["word"] == "ok"
        and rows[cloud_api.bridge_id]["colour"] == "rgb(26, 127, 55)"
    )
    [chart] = seen["charts"]
    assert chart["hours"] == 168 and chart["points"] == 168, chart
    assert "Lisbon, Rua Augusta" in seen["bridgeText"] and "entrance-1" in seen["bridgeText"]
    assert seen["consoleErrors"] == []
