"""A scan of the store's network asked on the fleet page, reported by the bridge, picked with a tick.

The cloud app under ``next start`` on real PostgreSQL (tests/cloud_helpers.py). A bridge is
enrolled and claimed and has no config yet, so, as a real one, it learns of the scan only from
its config poll's ``X-Scan-Wanted``; the fleet agent's own report code (appliance/adoption/
scan_job.py) posts a realistic discovery document. In chromium
(cloud/nextjs/scripts/scan-browser.mjs) an installer starts the scan, sees the devices, and
adds a camera with its user and password; the database then holds a new config version whose
sensor has the url, the camera's identity and the password, which the page never shows.
The route's rules (docs/ingest-contract.md, "A scan of the store's network") are checked
against the same server.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from typing import Any

import pytest
import requests
from cloud_helpers import NEXTJS, CloudStack, FakeAdoptee, make_heartbeat

from appliance.adoption.agent import _scan_id
from appliance.adoption.scan_job import ScanJob

pytest_plugins = ["cloud_helpers"]

CHROMIUM = "/usr/bin/chromium"
# TEST-NET-1 addresses: config data shown on the page, never contacted.
CAMERA, INACTIVE, ROUTER = "192.0.2.64", "192.0.2.65", "192.0.2.1"
HOSTILE = '<img src=x onerror="document.title=1">'


def discovery_document() -> dict[str, Any]:
    """What ``sensor-bridge discover --json`` prints for a store with two cameras and a router."""

    def device(address: str, **keys: Any) -> dict[str, Any]:
        base = {
            "address": address,
            "addresses": [address],
            "mac": None,
            "identity": None,
            "serial": None,
            "model": None,
            "firmware": None,
            "found_by": ["neighbours"],
            "milesight": False,
            "activated": None,
            "needs_credentials": False,
            "onvif_endpoint": None,
            "onvif_xaddrs": [],
            "mdns_name": None,
            "http": True,
            "note": "",
        }
        return {**base, **keys}

    return {
        "schema": "sensor-bridge/discovery/v1",
        "interfaces": ["eth0"],
        "skipped_interfaces": {
            "wg-bridge": "not the store LAN (loopback, tunnel or container network)"
        },
        "subnets": ["192.0.2.0/24"],
        "seconds": 8.6,
        "devices": [
            device(ROUTER, model=HOSTILE),
            device(
                CAMERA,
                mac="1c:c3:16:00:00:01",
                identity="mac:1c:c3:16:00:00:01",
                model="MS-C2964-RFLPC",
                found_by=["mdns", "neighbours", "ws-discovery"],
                milesight=True,
                activated=True,
                needs_credentials=True,
                onvif_endpoint="urn:uuid:5f0c2d4e-0000-4000-8000-000000000001",
                note="needs credentials",
            ),
            device(
                INACTIVE,
                mac="1c:c3:16:00:00:02",
                identity="serial:6C0123456789",
                serial="6C0123456789",
                model="MS-C2964-RFLPC",
                firmware="46.1.0.1",
                found_by=["neighbours", "ws-discovery"],
                milesight=True,
                activated=False,
                note="not activated: set its password in its web page first",
            ),
        ],
    }


def claimed_bridge(stack: CloudStack, label: str) -> tuple[str, FakeAdoptee]:
    token = stack.bridges("enroll-token", "new").stdout.strip()
    bridge = FakeAdoptee()
    enrolled = requests.post(
        f"{stack.base_url}/api/bridge/v1/enroll",
        json=bridge.body(),
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert enrolled.status_code == 202, enrolled.text
    claimed = stack.bridges("claim", bridge.code, "--label", label, "--timezone", "Europe/Lisbon")
    return claimed.stdout.strip().splitlines()[-1], bridge


def config_answer(stack: CloudStack, bridge_id: str, credential: str) -> requests.Response:
    return requests.get(
        f"{stack.base_url}/api/bridge/v1/config",
        headers={"Authorization": f"Bearer {credential}", "X-Bridge-Id": bridge_id},
        timeout=30,
    )


def report(stack: CloudStack, credential: str, body: Any) -> requests.Response:
    return requests.post(
        f"{stack.base_url}/api/bridge/v1/scan",
        data=body if isinstance(body, bytes) else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {credential}", "Content-Type": "application/json"},
        timeout=30,
    )


def act_as_the_bridge(stack: CloudStack, bridge_id: str, credential: str, done: dict) -> None:
    """Poll GET /config as the fleet agent does until a scan is named, then report it."""
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            answer = config_answer(stack, bridge_id, credential)
            done["status"] = answer.status_code
            scan_id = _scan_id(answer.headers)
            if scan_id is not None:
                done["scan_id"] = scan_id
                job = ScanJob(discovery_document)
                job.offer(scan_id, stack.base_url, credential, bridge_id)
                job.wait(60)
                done["job_error"] = job.last_error
                return
            time.sleep(0.5)
    except Exception as exc:  # noqa: BLE001 - the test reports it
        done["exception"] = repr(exc)


def test_a_scan_asked_on_the_page_shows_its_devices_and_a_tick_adds_a_camera(
    cloud_stack: CloudStack,
) -> None:
    if not os.path.exists(CHROMIUM):
        pytest.skip("chromium is not installed (./provision.sh --dev --test-tools installs it)")
    cloud_stack.reset()
    bridge_id, bridge = claimed_bridge(cloud_stack, "Porto Baixa")
    nothing = config_answer(cloud_stack, bridge_id, bridge.credential)
    assert nothing.status_code == 404 and "x-scan-wanted" not in nothing.headers

    done: dict[str, Any] = {}
    agent = threading.Thread(
        target=act_as_the_bridge, args=(cloud_stack, bridge_id, bridge.credential, done)
    )
    agent.start()
    camera_password = "cam-pw-" + os.urandom(6).hex()
    user, password = cloud_stack.person("installer@chain.example", "installer")
    env = {
        **os.environ,
        "BASE_URL": cloud_stack.base_url,
        "EMAIL": user,
        "PASSWORD": password,
        "BRIDGE": bridge_id,
        "CAMERA": CAMERA,
        "OTHER": INACTIVE,
        "CAMERA_PASSWORD": camera_password,
        "CHROMIUM": CHROMIUM,
    }
    if os.environ.get("SENSOR_BRIDGE_SCREENSHOTS"):
        env["SCREENSHOT_DIR"] = os.environ["SENSOR_BRIDGE_SCREENSHOTS"]
    try:
        run = subprocess.run(
            ["node", "scripts/scan-browser.mjs"],
            cwd=NEXTJS,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        agent.join(180)
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout.strip().splitlines()[-1])

    # The bridge, with no config yet, learned of the scan from its config poll's 404.
    assert done.get("status") == 404 and done.get("scan_id") == int(seen["asked"]), done
    assert done.get("job_error") == ""
    assert seen["stateBefore"] == "none" and seen["stateAsked"] == "waiting"
    assert "waiting for the bridge" in seen["statusAsked"]
    assert (
        f"Scan {seen['asked']} done at" in seen["statusDone"] and "3 devices" in seen["statusDone"]
    )
    rows = {r["address"]: r for r in seen["rows"]}
    assert set(rows) == {CAMERA, INACTIVE, ROUTER}
    assert (
        "mac:1c:c3:16:00:00:01" in rows[CAMERA]["text"] and "MS-C2964-RFLPC" in rows[CAMERA]["text"]
    )
    assert "needs credentials" in rows[CAMERA]["text"] and rows[CAMERA]["milesight"] == "yes"
    assert "ws-discovery" in rows[CAMERA]["text"]
    assert "not activated" in rows[INACTIVE]["text"] and "46.1.0.1" in rows[INACTIVE]["text"]
    assert rows[ROUTER]["milesight"] == "no" and not rows[ROUTER]["tick"]
    assert HOSTILE in rows[ROUTER]["text"] and seen["injected"] == 0  # text, never markup
    assert f"camera {INACTIVE}: enter the camera's password" in seen["noPasswordError"]
    assert seen["added"] == "1" and seen["inConfig"] == "entrance-1"
    assert "version 1" in seen["desired"]
    assert camera_password not in seen["html"]
    assert seen["consoleErrors"] == []

    rows_db = cloud_stack.pg.query(
        f"select version, made_by, document from bridge_config_versions where bridge_id = '{bridge_id}'"
    )
    assert len(rows_db) == 1, rows_db  # the refused first try saved nothing
    version, made_by, document = rows_db[0]
    assert (version, made_by) == (1, f"fleet page ({user})")
    assert document["sensors"] == [
        {
            "id": "entrance-1",
            "type": "milesight-camera",
            "url": f"http://{CAMERA}",
            "mac": "1c:c3:16:00:00:01",
            "username": "admin",
            "password": camera_password,
            "collect": ["line_counts"],
        }
    ]
    asked = cloud_stack.pg.query("select requested_by from bridge_scan_requests")
    assert asked == [(f"fleet page ({user})",)]
    # Reported: the cloud names no scan any more, and the bridge gets the new version.
    after = config_answer(cloud_stack, bridge_id, bridge.credential)
    assert after.status_code == 200 and "x-scan-wanted" not in after.headers
    assert after.json()["config"]["sensors"][0]["password"] == camera_password
    logs = cloud_stack.server.output() if cloud_stack.server else ""
    assert camera_password not in logs


def test_the_scan_route_refuses_a_bad_report_naming_what_is_wrong(cloud_stack: CloudStack) -> None:
    cloud_stack.reset()
    bridge_id, bridge = claimed_bridge(cloud_stack, "Faro Centro")
    first = cloud_stack.pg.query(f"select public.request_bridge_scan('{bridge_id}', 'test')")[0][0]
    second = cloud_stack.pg.query(f"select public.request_bridge_scan('{bridge_id}', 'test')")[0][0]
    wanted = config_answer(cloud_stack, bridge_id, bridge.credential)
    assert wanted.headers.get("x-scan-wanted") == str(second)  # the newest asked
    beat = requests.post(
        f"{cloud_stack.base_url}/api/bridge/v1/heartbeat",
        json=make_heartbeat(bridge_id),
        headers={"Authorization": f"Bearer {bridge.credential}"},
        timeout=30,
    )
    assert beat.status_code == 200 and beat.json()["scan_wanted"] == second

    def body(**changes: Any) -> dict[str, Any]:
        return {
            "schema": "sensor-bridge/scan-report/v1",
            "bridge_id": bridge_id,
            "scan_id": second,
            "scan": discovery_document(),
            "error": None,
            **changes,
        }

    many = discovery_document()
    many["devices"] = [{"address": f"192.0.2.{i % 250}"} for i in range(257)]  # config data
    nameless = discovery_document()
    nameless["devices"][1]["address"] = 7
    for bad, named in (
        (body(schema="v0"), "schema"),
        (body(scan_id=0), "scan_id"),
        (body(scan_id=second + 100), "scan_id: no scan"),
        (body(scan=None), "exactly one of them"),
        (body(error="x"), "exactly one of them"),
        (body(scan=many), "scan.devices: at most 256"),
        (body(scan=nameless), "scan.devices[1].address"),
        (body(scan={**discovery_document(), "schema": "x"}), "scan.schema"),
    ):
        answer = report(cloud_stack, bridge.credential, bad)
        assert answer.status_code == 400 and named in answer.json()["error"], (named, answer.text)
    big = body()
    big["scan"]["devices"][0]["note"] = "x" * 300_000
    assert report(cloud_stack, bridge.credential, big).status_code == 413
    assert report(cloud_stack, "sbk_" + "w" * 43, body()).status_code == 401
    assert cloud_stack.pg.query("select count(*) from bridge_scan_results") == [(0,)]

    stored = report(cloud_stack, bridge.credential, body())
    assert stored.status_code == 200 and stored.json() == {
        "ok": True,
        "scan_id": second,
        "devices": 3,
    }
    # A late report of the older scan never replaces the newer one's result.
    late = report(cloud_stack, bridge.credential, body(scan_id=first, scan=None, error="late"))
    assert late.status_code == 200
    assert cloud_stack.pg.query("select scan_id, error from bridge_scan_results") == [
        (second, None)
    ]
    assert "x-scan-wanted" not in config_answer(cloud_stack, bridge_id, bridge.credential).headers

    # From a shell: ask for a scan, and read the newest result (control characters escaped).
    third = int(cloud_stack.bridges("scan", bridge_id).stdout.strip())
    assert third > second
    assert config_answer(cloud_stack, bridge_id, bridge.credential).headers["x-scan-wanted"] == str(
        third
    )
    assert cloud_stack.pg.query(
        f"select requested_by from bridge_scan_requests where id = {third}"
    ) == [(f"shell ({os.environ.get('USER') or 'root'})",)]
    escaped = body(scan_id=third)
    escaped["scan"]["devices"][0]["model"] = "evil\x1b]0;owned\x07"
    assert report(cloud_stack, bridge.credential, escaped).status_code == 200
    shown = cloud_stack.bridges("scan", "show", bridge_id).stdout
    assert CAMERA in shown and "\x1b" not in shown and "evil?]0;owned?" in shown
    refused = cloud_stack.bridges("scan", "no-such-bridge", check=False)
    assert refused.returncode == 2 and "no bridge" in refused.stderr
