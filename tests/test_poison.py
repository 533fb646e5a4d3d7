"""No single bad message stops the relay: a real mosquitto, real devices, a real `sensor-bridge relay`.

A report whose device serial is a lone surrogate ("\\ud800") used to fail the
outbox's write and be retried forever, jamming every message behind it; one
carrying U+0000 was stored and later refused by the cloud's PostgreSQL. Now
such a message is dead-lettered with its reason and acknowledged at once, and
everything behind it is stored.
"""

from __future__ import annotations

import json
import time

import requests
from conftest import wait_for
from mqtt_helpers import Device, OutboxReader, RelayProcess, broker, needs_mosquitto  # noqa: F401

pytestmark = needs_mosquitto
AUTH = ("milesight", "push-test-password")
# A JSON escape, as a device's firmware could send it: json.loads makes it a lone surrogate.
POISON = '{"device_info": {"device_sn": "\\ud800"}, "current_total": 3, "time_info": {"time": 1736496000}}'


def valid(i: int, serial: str = "SN-ENTRANCE") -> str:
    """A trigger report of ``serial`` at its own second (2025-01-10 08:00:00Z + i s)."""
    return json.dumps(
        {
            "device_info": {"device_sn": serial},
            "current_total": i % 40,
            "time_info": {"time": 1736496000 + i},
        }
    )


def start_relay(broker, tmp_path) -> tuple[RelayProcess, OutboxReader]:  # noqa: F811
    relay = (
        RelayProcess(broker.config, tmp_path / "run", tmp_path / "relay.log")
        .start()
        .wait_connected()
    )
    return relay, OutboxReader(tmp_path / "state" / "outbox.db")


def test_poison_push_over_http_is_refused_at_once_and_the_pushes_after_it_are_stored(
    broker,
    tmp_path,  # noqa: F811
):
    relay, box = start_relay(broker, tmp_path)
    url = f"http://127.0.0.1:{broker.push_port}/milesight/push"
    try:
        began = time.monotonic()
        poison = requests.post(url, data=POISON, auth=AUTH, timeout=10)
        assert poison.status_code == 400 and "surrogate" in poison.json()["error"], poison.text
        answers = [requests.post(url, data=valid(i), auth=AUTH, timeout=10) for i in range(25)]
        assert [a.status_code for a in answers] == [200] * 25, [
            a.text for a in answers if a.status_code != 200
        ]
        assert time.monotonic() - began < 10, "every push was answered promptly"
        assert box.count() == 25
        [dead] = box.dead()
        assert dead["origin"].startswith("http-push") and "lone surrogate U+D800" in dead["reason"]
        assert "device_sn" in dead["preview"]
    finally:
        relay.cleanup()


def test_poison_message_over_mqtt_is_dead_lettered_acknowledged_and_never_redelivered(
    broker,
    tmp_path,  # noqa: F811
):
    login = broker.add_device("entrance")
    relay, box = start_relay(broker, tmp_path)
    try:
        device = Device(login).wait_connected()
        device.publish(POISON)
        for i in range(25):
            device.publish(valid(i))
        wait_for(
            lambda: box.count() == 25 and len(box.dead()) == 1,
            20,
            f"25 readings and one dead letter (now {box.count()} and {len(box.dead())})",
        )
        [dead] = box.dead()
        assert dead["origin"] == login.topic and "lone surrogate U+D800" in dead["reason"]
        wait_for(
            lambda: relay.status().get("messages_received") == 26, 10, "the status to count all 26"
        )

        assert relay.terminate() == 0
        relay.start().wait_connected()  # an unacknowledged message would come back now, first in line
        device.publish(valid(99))
        wait_for(lambda: box.count() == 26, 20, "the reading published after the restart")
        time.sleep(0.3)
        assert len(box.dead()) == 1, "the poison message was delivered again after the restart"
        received = wait_for(
            lambda: relay.status().get("messages_received"), 10, "the status after the restart"
        )
        assert received == 1, "only the new message arrived after the restart"
        device.close()
    finally:
        relay.cleanup()


NUL_PUSHES = [
    {"device_info": {"device_sn": "SN\u0000-1"}, "current_total": 1},
    {
        "device_info": {"device_sn": "SN-1"},
        "current_total": 1,
        "numbering_regions": ["1\u0000"],
        "current_counted": [1],
    },
    {"device_info": {"device_sn": "SN-1"}, "event": "Tamper\u0000", "level": 2},
    {"device_info": {"device_sn": "SN-1"}, "event": "Tamper", "detail": {"note": "a\u0000b"}},
    {"device_info": {"device_sn": "SN-1"}, "event": "Tamper", "detail": {"k\u0000ey": 1}},
    {"device_info": {"device_sn": "SN-1"}, "event": "Tamper", "list": [[["\u0000"]]]},
    {
        "device_info": {"device_sn": "SN-1"},
        "line_periodic_data": [{"line": "\u0000", "in": 1, "out": 0}],
    },
    {
        "device_info": {"device_sn": "SN-1"},
        "line_periodic_data": [{"line": 1, "total": {"in": 1, "out": 0}}],
        "line_name": "Door\u0000",
    },
    {"device_info": {"device_sn": "SN-1"}, "event": "x", "\u0000": "\u0000"},
    {"device_info": {"device_sn": "SN-1"}, "region_data": {"\u0000": [1, 2]}, "current_total": 0},
]


def test_readings_with_nul_are_refused_with_the_reason_and_never_stored(broker, tmp_path):  # noqa: F811
    relay, box = start_relay(broker, tmp_path)
    url = f"http://127.0.0.1:{broker.push_port}/milesight/push"
    try:
        for i, body in enumerate(NUL_PUSHES):
            body = dict(body, time_info={"time": 1736496000 + i})
            answer = requests.post(url, data=json.dumps(body), auth=AUTH, timeout=10)
            assert answer.status_code == 400, (body, answer.text)
            assert "U+0000" in answer.json()["error"], answer.text
        assert box.count() == 0, [r["values"] for r in box.readings()]
        dead = box.dead()
        assert len(dead) == len(NUL_PUSHES) and all("U+0000" in d["reason"] for d in dead)
        assert requests.post(url, data=valid(1), auth=AUTH, timeout=10).status_code == 200
        assert box.count() == 1
    finally:
        relay.cleanup()
