"""Claiming a bridge and editing its config on the fleet page, in a real browser.

Debian's chromium driven by playwright-core runs
cloud/nextjs/scripts/adoption-browser.mjs against `next start`: a wrong code is
refused with a message, the right one claims the bridge, a camera is added
with a password, a second save without retyping it keeps it (the field is
write-only: never filled back, never in the page), and a bad update window is
refused naming the field. The database is then checked for what was saved.
The installer signs in through the Supabase Auth stand-in (tests/auth_standin.py).
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import requests
from cloud_helpers import NEXTJS, CloudStack, FakeAdoptee

pytest_plugins = ["cloud_helpers"]

CHROMIUM = "/usr/bin/chromium"


def test_claim_and_config_edit_in_chromium(cloud_stack: CloudStack) -> None:
    if not os.path.exists(CHROMIUM):
        pytest.skip("chromium is not installed (./provision.sh --dev --test-tools installs it)")
    cloud_stack.reset()
    token = cloud_stack.bridges("enroll-token", "new").stdout.strip()
    bridge = FakeAdoptee()
    enrolled = requests.post(
        f"{cloud_stack.base_url}/api/bridge/v1/enroll",
        json=bridge.body(),
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert enrolled.status_code == 202, enrolled.text
    camera_password = "cam-pw-" + os.urandom(6).hex()
    user, password = cloud_stack.person("installer@example.com", "installer")
    env = {
        **os.environ,
        "BASE_URL": cloud_stack.base_url,
        "EMAIL": user,
        "PASSWORD": password,
        "CODE": bridge.code,
        "CAMERA_PASSWORD": camera_password,
        "CHROMIUM": CHROMIUM,
    }
    if os.environ.get("SENSOR_BRIDGE_SCREENSHOTS"):
        env["SCREENSHOT_DIR"] = os.environ["SENSOR_BRIDGE_SCREENSHOTS"]
    run = subprocess.run(
        ["node", "scripts/adoption-browser.mjs"],
        cwd=NEXTJS,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout.strip().splitlines()[-1])

    assert bridge.serial in seen["pendingText"] and bridge.code not in seen["pendingText"]
    assert "no unclaimed bridge shows this code" in seen["claimError"]
    assert seen["claimed"] == "lisbon-chiado"
    assert seen["firstSave"] == "1" and seen["secondSave"] == "2"
    assert seen["passwordFieldAfterSave"] == "" and seen["passwordPlaceholder"] == "unchanged"
    assert "update window" in seen["configError"]
    assert camera_password not in seen["html"]
    assert seen["consoleErrors"] == []

    rows = cloud_stack.pg.query(
        "select version, made_by, document from bridge_config_versions order by version"
    )
    assert [(v, by) for v, by, _ in rows] == [
        (1, f"fleet page ({user})"),
        (2, f"fleet page ({user})"),
    ]
    first, second = rows[0][2]["sensors"][0], rows[1][2]["sensors"][0]
    assert first["password"] == camera_password == second["password"]
    assert (first["url"], second["url"]) == ("http://127.0.0.1:9", "http://127.0.0.1:10")
    assert second["timezone"] == "Europe/Lisbon" and second["collect"]
    assert rows[1][2]["update"] == {"window": "Sun 03:00-05:00"}
    attempts = cloud_stack.pg.query("select outcome, who from bridge_claim_attempts order by id")
    assert attempts == [("wrong", f"fleet page ({user})"), ("claimed", f"fleet page ({user})")]
    logs = cloud_stack.server.output() if cloud_stack.server else ""
    assert camera_password not in logs
