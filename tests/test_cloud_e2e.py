"""The appliance against the real cloud side: `sensor-bridge run` -> Next.js routes -> PostgreSQL.

The collector polls a simulated camera and is SIGKILLed again and again,
some rounds with the internet "down" (the API unreachable); at the end the
`bridge_readings` table must hold exactly the camera's truth for every past
period, and the heartbeat must have landed.
"""

from __future__ import annotations

import json
import random
import signal
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from conftest import base_tables, closed_port_url, wait_for, write_config
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
