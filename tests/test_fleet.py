"""The fleet page (/bridges) over HTTP from `next start`: basic auth, state words and colours, no secrets.

A real browser looks at it in test_fleet_browser.py; the bench with a real
fleet's size is bench/fleet_page.py.
"""

from __future__ import annotations

import re

import requests
from cloud_helpers import CloudApi, CloudStack, contract_headers, encode_body, make_heartbeat

pytest_plugins = ["cloud_helpers"]

TIMEOUT = 30


def heartbeat(api: CloudApi, state: str = "ok", silent_minutes: int = 0) -> None:
    answer = requests.post(
        api.heartbeat_url,
        data=encode_body(make_heartbeat(api.bridge_id, state)),
        headers=contract_headers(api.api_key),
        timeout=TIMEOUT,
    )
    assert answer.status_code == 200, answer.text
    if silent_minutes:
        api.query(
            f"update bridges set last_heartbeat_at = now() - interval '{silent_minutes} minutes' "
            f"where id = '{api.bridge_id}' returning id"
        )


def row_of(html: str, bridge_id: str) -> str:
    match = re.search(rf'<tr[^>]*data-bridge="{re.escape(bridge_id)}".*?</tr>', html, re.S)
    assert match, f"no row for {bridge_id}"
    return match.group(0)


def test_fleet_page_asks_for_credentials_and_shows_each_bridge(
    cloud_stack: CloudStack, cloud_api: CloudApi
) -> None:
    url = f"{cloud_stack.base_url}/bridges"
    # signed out: sent to sign in (was a basic-auth challenge before issue 24's sign-in)
    asked = requests.get(url, timeout=TIMEOUT, allow_redirects=False)
    assert asked.status_code == 307 and asked.headers["Location"].endswith(
        "/sign-in?next=%2Fbridges"
    )
    assert cloud_api.bridge_id not in asked.text
    wrong = requests.get(url, auth=(cloud_stack.fleet_auth[0], "wrong"), timeout=TIMEOUT)
    assert wrong.status_code == 401 and cloud_api.bridge_id not in wrong.text

    silent = cloud_stack.api()
    heartbeat(cloud_api)
    heartbeat(silent, silent_minutes=37)
    cloud_api.query(
        f"update bridges set label = 'Lisbon <Rua Augusta>' where id = '{cloud_api.bridge_id}' returning id"
    )
    page = requests.get(url, auth=cloud_stack.fleet_auth, timeout=TIMEOUT)
    assert page.status_code == 200
    healthy_row, silent_row = (
        row_of(page.text, cloud_api.bridge_id),
        row_of(page.text, silent.bridge_id),
    )
    assert (
        'data-tone="green"' in healthy_row
        and ">ok<" in healthy_row
        and "Lisbon &lt;Rua Augusta&gt;" in healthy_row
    )
    assert (
        'data-tone="red"' in silent_row and ">silent<" in silent_row and "37 min ago" in silent_row
    )
    assert ">0.1.0<" in healthy_row  # the software version from the heartbeat
    keys = cloud_api.query("select api_key_sha256 from bridges")
    for (key_hash,) in keys:
        assert key_hash not in page.text
    assert cloud_api.api_key not in page.text

    detail = requests.get(
        f"{url}/{cloud_api.bridge_id}", auth=cloud_stack.fleet_auth, timeout=TIMEOUT
    )
    assert detail.status_code == 200 and 'data-sensor="entrance-1"' in detail.text
    assert all(key_hash not in detail.text for (key_hash,) in keys)


def test_fleet_page_is_off_without_its_environment(
    cloud_stack: CloudStack, cloud_api: CloudApi
) -> None:
    heartbeat(cloud_api)
    server = cloud_stack.start_server(
        {
            "FLEET_USER": "",
            "FLEET_PASSWORD": "",
            "NEXT_PUBLIC_SUPABASE_URL": "",
            "NEXT_PUBLIC_SUPABASE_ANON_KEY": "",
        }
    )
    try:
        for path in ("/bridges", f"/bridges/{cloud_api.bridge_id}"):
            for auth in (None, cloud_stack.fleet_auth):
                answer = requests.get(f"{server.base_url}{path}", auth=auth, timeout=TIMEOUT)
                assert answer.status_code == 404 and cloud_api.bridge_id not in answer.text, (
                    path,
                    auth,
                )
    finally:
        server.stop()


def test_basic_auth_alone_is_a_read_only_view(cloud_stack: CloudStack, cloud_api: CloudApi) -> None:
    """Without Supabase's variables, FLEET_USER/FLEET_PASSWORD still open the page, as a viewer."""
    heartbeat(cloud_api)
    server = cloud_stack.start_server(
        {"NEXT_PUBLIC_SUPABASE_URL": "", "NEXT_PUBLIC_SUPABASE_ANON_KEY": ""}
    )
    try:
        url = f"{server.base_url}/bridges"
        asked = requests.get(url, timeout=TIMEOUT)
        assert asked.status_code == 401 and asked.headers["WWW-Authenticate"].startswith("Basic ")
        page = requests.get(url, auth=cloud_stack.fleet_auth, timeout=TIMEOUT)
        html = page.text.replace("<!-- -->", "")  # React's markers between text pieces
        assert page.status_code == 200 and cloud_api.bridge_id in html
        assert f"basic auth ({cloud_stack.fleet_auth[0]})" in html and "(viewer)" in html
        assert 'id="claim-form"' not in html
    finally:
        server.stop()
