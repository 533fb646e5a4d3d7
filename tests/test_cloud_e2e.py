"""The appliance against the real cloud side: `sensor-bridge run` -> Next.js routes -> PostgreSQL.

The collector polls a simulated camera and is SIGKILLed again and again,
some rounds with the internet "down" (the API unreachable); at the end the
`bridge_readings` table must hold exactly the camera's truth for every past
period, and the heartbeat must have landed.
"""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import time
import tomllib
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from conftest import CLI, REPO, base_tables, closed_port_url, free_port, wait_for, write_config
from test_collector import sensor_table, start_collector, stop

from appliance.records import now_utc
from appliance.sim.camera import SimCamera

pytest_plugins = ["cloud_helpers"]

BACKFILL_H = 30
KINDS = ("line_counts", "region_counts")


def table_holds(api: Any, sensor_id: str, kind: str) -> dict[str, tuple[dict[str, Any], bool]]:
    rows = api.query(
        'select to_char(period_start at time zone \'UTC\', \'YYYY-MM-DD"T"HH24:MI:SS"Z"\'), "values"::text, final'
        f" from public.bridge_readings where sensor_id = '{sensor_id}' and kind = '{kind}'"
    )
    return {start: (json.loads(values), final in (True, "t")) for start, values, final in rows}


def truth(camera: SimCamera, kind: str, since: datetime) -> dict[str, dict[str, Any]]:
    return camera.expected(kind, since, now_utc())


def test_kills_and_outages_end_with_exactly_the_cameras_truth_in_postgres(
    tmp_path: Path, cloud_api: Any
) -> None:
    sensor_id = f"{cloud_api.bridge_id}-entrance"
    with SimCamera(
        timezone="Europe/Lisbon", username="admin", password="pw", lines=2, regions=2, seed=3
    ) as camera:
        tables = base_tables(tmp_path, cloud_api.ingest_url, api_key=cloud_api.api_key)
        tables["bridge"]["id"] = cloud_api.bridge_id
        tables["uplink"].update(batch_size=9, heartbeat_url=cloud_api.heartbeat_url)
        tables["sensors"] = [sensor_table(sensor_id, camera.url)]
        online = write_config(tmp_path / "online.toml", tables)
        offline = write_config(
            tmp_path / "offline.toml",
            {**tables, "uplink": {**tables["uplink"], "url": closed_port_url()}},
        )
        since = (now_utc() - timedelta(hours=BACKFILL_H)).replace(
            minute=0, second=0
        )  # the first poll's reach
        rng = random.Random(5)
        for round_ in range(6):
            proc = start_collector(offline if round_ in (1, 2) else online)
            time.sleep(rng.uniform(0.5, 1.5))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        started = time.monotonic()
        proc = start_collector(online)
        try:
            status = tmp_path / "run" / "collector.json"
            wait_for(
                lambda: status.exists() and json.loads(status.read_text())["pid"] == proc.pid,
                what="the last collector to start",
            )
            wait_for(
                lambda: all(
                    table_holds(cloud_api, sensor_id, k).keys() >= truth(camera, k, since).keys()
                    for k in KINDS
                ),
                timeout=90,
                what="every past period in bridge_readings",
            )
            took = time.monotonic() - started
            wait_for(
                lambda: cloud_api.query(
                    f"select last_heartbeat_at from public.bridges where id = '{cloud_api.bridge_id}'"
                )[0][0],
                timeout=10,
                what="a heartbeat",
            )
        finally:
            code, out = stop(proc)
        assert code == 0, out
        for kind in KINDS:
            expected = truth(camera, kind, since)
            held = table_holds(cloud_api, sensor_id, kind)
            wrong = [p for p, values in expected.items() if held[p] != (values, True)]
            assert not wrong, f"{kind}: rows differ from the camera: {wrong[:3]}"
            extra = [p for p, (_, final) in held.items() if final and p not in expected]
            assert not extra, f"{kind}: final rows the camera never had: {extra[:3]}"
    count = sum(len(table_holds(cloud_api, sensor_id, k)) for k in KINDS)
    print(f"\nend to end: {count} readings reached PostgreSQL {took:.1f}s after the last restart")


def bridge_holds(api: Any, bridge_id: str, kind: str) -> dict[str, tuple[dict[str, Any], bool]]:
    rows = api.query(
        'select to_char(period_start at time zone \'UTC\', \'YYYY-MM-DD"T"HH24:MI:SS"Z"\'), "values"::text, final'
        f" from public.bridge_readings where bridge_id = '{bridge_id}' and sensor_id = 'entrance-1'"
        f" and kind = '{kind}'"
    )
    return {start: (json.loads(values), final in (True, "t")) for start, values, final in rows}


def fleet_row(html: str, bridge_id: str) -> str:
    match = re.search(rf'<tr[^>]*data-bridge="{re.escape(bridge_id)}".*?</tr>', html, re.S)
    return match.group(0) if match else ""


# A bridge is green only while all its services report, the watchdog too: run
# one beside each collector, acting on nothing (as the demo does).
WATCHDOG_ACTS_ON_NOTHING = {
    "reboot": False
}  # and it runs with --dry-run: no command comes from the config


def start_watchdog(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, "-c", str(config), "watchdog", "--dry-run", "--network-probe", "true"],
        cwd=REPO,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def all_green(cloud_stack: Any, stores: list[Any]) -> str | None:
    """The fleet page's HTML once every one of ``stores`` is green on it."""
    html = requests.get(
        f"{cloud_stack.base_url}/bridges", auth=cloud_stack.fleet_auth, timeout=30
    ).text
    return (
        html if all('data-tone="green"' in fleet_row(html, a.bridge_id) for a in stores) else None
    )


def test_two_stores_with_the_same_camera_names_both_reach_postgres_and_the_fleet_page(
    tmp_path: Path, cloud_api: Any, cloud_stack: Any
) -> None:
    """Issue 22: two bridges whose configs both call their camera entrance-1 (as the example
    config does) each deliver their own store's counts; the fleet page shows both."""
    stores = [cloud_api, cloud_stack.api()]
    with (
        SimCamera(timezone="Europe/Lisbon", username="admin", password="pw", seed=11) as lisbon,
        SimCamera(timezone="Europe/Lisbon", username="admin", password="pw", seed=12) as porto,
    ):
        cameras = [lisbon, porto]
        procs = []
        since = (now_utc() - timedelta(hours=BACKFILL_H)).replace(minute=0, second=0)
        try:
            for api, camera in zip(stores, cameras, strict=True):
                home = tmp_path / api.bridge_id
                home.mkdir()
                tables = base_tables(home, api.ingest_url, api_key=api.api_key)
                tables["bridge"]["id"] = api.bridge_id
                tables["uplink"].update(heartbeat_url=api.heartbeat_url)
                tables["watchdog"] = WATCHDOG_ACTS_ON_NOTHING
                tables["sensors"] = [sensor_table("entrance-1", camera.url)]
                config = write_config(home / "config.toml", tables)
                procs += [start_collector(config), start_watchdog(config)]
            wait_for(
                lambda: all(
                    bridge_holds(api, api.bridge_id, k).keys() >= truth(camera, k, since).keys()
                    for api, camera in zip(stores, cameras, strict=True)
                    for k in KINDS
                ),
                timeout=120,
                what="both stores' entrance-1 periods in bridge_readings",
            )
            page = wait_for(
                lambda: all_green(cloud_stack, stores),
                timeout=90,
                what="both bridges green on the fleet page",
            )
        finally:
            outs = [stop(proc) for proc in procs]
        assert all(code == 0 for code, _ in outs), outs
        for api, camera in zip(stores, cameras, strict=True):
            row = fleet_row(page, api.bridge_id)
            assert ">entrance-1<" in row, row
            for kind in KINDS:
                expected = truth(camera, kind, since)
                held = bridge_holds(api, api.bridge_id, kind)
                wrong = [p for p, values in expected.items() if held[p] != (values, True)]
                assert not wrong, (
                    f"{api.bridge_id} {kind}: rows differ from its camera: {wrong[:3]}"
                )
            # the bridge's page charts its own entrance-1, not the other store's
            people_in = api.query(
                "select coalesce(sum((\"values\" -> 'total' ->> 'in')::bigint), 0)::int"
                f" from bridge_readings where bridge_id = '{api.bridge_id}' and kind = 'line_counts'"
                " and period_start >= date_trunc('hour', now()) - interval '167 hours'"
            )[0][0]
            detail = requests.get(
                f"{cloud_stack.base_url}/bridges/{api.bridge_id}",
                auth=cloud_stack.fleet_auth,
                timeout=30,
            ).text
            assert 'data-sensor="entrance-1"' in detail
            assert "entrance-1: people in per hour since" in detail
            assert f", {people_in} in all" in detail, (api.bridge_id, people_in)
        assert lisbon.expected("line_counts", since, now_utc()) != porto.expected(
            "line_counts", since, now_utc()
        ), "the two stores must count differently for the test to tell them apart"


def test_a_bridge_set_up_from_the_example_config_heartbeats_from_its_start_and_is_green(
    tmp_path: Path, cloud_stack: Any
) -> None:
    """Issue 22: the example config with its key and URL filled in; no heartbeat_s wait first."""
    cloud_stack.reset()
    tables = tomllib.loads((REPO / "image" / "sensor-bridge.example.toml").read_text())
    api = cloud_stack.api(tables["bridge"]["id"])  # the example's own bridge id
    tables["uplink"].update(url=api.ingest_url, api_key=api.api_key)
    # Until helper "config"'s work is merged, heartbeat_url is not yet derived from
    # the uplink URL: set here to what it derives (same origin, /api/bridge/v1/heartbeat).
    tables["uplink"]["heartbeat_url"] = api.heartbeat_url
    # Only a heartbeat at start can land before the deadline below.
    tables["uplink"]["heartbeat_s"] = 3600
    # What a test must change besides: no store network, no NTP, no GPIO, no systemd.
    with SimCamera(timezone="Europe/Lisbon", username="admin", password="pw", seed=4) as camera:
        tables["sensors"][0].update(url=camera.url, password="pw")
        tables["bridge"]["require_time_sync"] = False
        tables["paths"] = {"state_dir": str(tmp_path / "state"), "run_dir": str(tmp_path / "run")}
        tables["health"] = {"listen": f"127.0.0.1:{free_port()}"}
        tables["led"] = {"backend": "none"}
        tables["watchdog"] = WATCHDOG_ACTS_ON_NOTHING
        config = write_config(tmp_path / "sensor-bridge.toml", tables)
        procs = [start_collector(config), start_watchdog(config)]
        try:
            wait_for(
                lambda: api.query(
                    f"select last_heartbeat_at from bridges where id = '{api.bridge_id}'"
                )[0][0],
                timeout=120,
                what="a heartbeat from the bridge's start (heartbeat_s is an hour)",
            )
            page = wait_for(
                lambda: all_green(cloud_stack, [api]),
                timeout=120,
                what="the bridge green on the fleet page",
            )
        finally:
            outs = [stop(proc) for proc in procs]
    assert all(code == 0 for code, _ in outs), outs
    assert ">ok<" in fleet_row(page, api.bridge_id)
