"""Dead letters a person can act on: `outbox list --dead` grouped by device and reason with counts, and
`status` naming each device whose messages were not understood today (dead_letters.py)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

from conftest import base_tables, closed_port_url, run_cli, write_config

from appliance.config import MqttDevice
from appliance.outbox import Outbox
from appliance.push.parser import PushParser

EUI = "24e124136b502217"
VENDOR_OCCUPANCY_STATUS = b"""{"event":"Region People Counting", "device_info":{"device_sn":"369362028335"},
"time_info":{"timezone":"UTC+8:00","time":"2022/12/20 18:15:52"}, "current_total":10,
"regions_name": [Region1, Region2], "numbering_regions":[1,2], "occupancy":[1,0]}"""


def bad_messages() -> list[tuple[bytes, str]]:
    lorawan = json.dumps(
        {
            "devEUI": EUI,
            "fPort": 85,
            "time": "2025-07-01T10:00:00Z",
            "data": base64.b64encode(bytes.fromhex("7777")).decode(),
        }
    ).encode()
    return (
        [(VENDOR_OCCUPANCY_STATUS, "milesight/door")] * 3
        + [(lorawan, "milesight/ug67/uplink")] * 2
        + [(b"\x89PNG", "milesight/door")]
    )


def setup(tmp_path: Path) -> Path:
    config = write_config(tmp_path / "config.toml", base_tables(tmp_path, closed_port_url()))
    with config.open("a") as f:
        f.write(
            f'\n[mqtt]\npassword = "x"\n\n[[mqtt.devices]]\nsensor_id = "door-1"\nserial = "369362028335"\n'
            f'\n[[mqtt.devices]]\nsensor_id = "stall-3"\ndev_eui = "{EUI}"\nmodel = "vs330"\n'
        )
    parser = PushParser(
        [
            MqttDevice("door-1", serial="369362028335"),
            MqttDevice("stall-3", dev_eui=EUI, model="vs330"),
        ],
        "UTC",
    )
    box = Outbox(tmp_path / "state" / "outbox.db")
    for body, topic in bad_messages():
        parsed = parser.parse(
            body, source="mqtt", topic=topic, origin=topic, received_at=datetime.now(UTC)
        )
        assert parsed.dead and not parsed.records
        box.add_dead(parsed.dead)
    box.close()
    return config


def test_outbox_list_dead_groups_by_device_and_reason_with_counts(tmp_path: Path):
    config = setup(tmp_path)
    done = run_cli("-c", str(config), "outbox", "list", "--dead")
    assert done.returncode == 0, done.stderr
    heads = [line for line in done.stdout.splitlines() if not line.startswith(" ")]
    assert heads[0].startswith("door-1: 3 x not JSON: bare word Region1 in array at byte"), heads
    assert heads[1].startswith(
        "stall-3: 2 x vs330 frame 7777 from 24e124136b502217: byte 0: channel 0x77"
    ), heads
    assert heads[2].startswith("milesight/door: 1 x binary, not UTF-8 text"), (
        heads
    )  # no serial to go by
    assert "pending 0, dead-letter 6" in done.stdout


def test_status_says_which_devices_were_not_understood_today(tmp_path: Path):
    config = setup(tmp_path)
    out = run_cli("-c", str(config), "status").stdout
    assert (
        "door-1: 3 messages not understood today (first: not JSON: bare word Region1 in array at byte"
        in out
    )
    assert "stall-3: 2 messages not understood today (first: vs330 frame 7777" in out
    assert "milesight/door: 1 message not understood today (first: binary, not UTF-8 text" in out
