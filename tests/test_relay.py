"""The relay for real: mosquitto on a loopback port, devices publishing, `sensor-bridge relay` processes.

The broker runs with the config `sensor-bridge mqtt setup` wrote; devices
publish with paho and `mosquitto_pub` as real sensors do; the relay is a real
subprocess that gets SIGKILLed mid-stream and the broker is restarted
mid-stream. What must hold: every message's reading is in the outbox exactly
once, a bad message is kept in the dead-letter table, a device cannot speak for
another, and an HTTP device hears 2xx only for what was stored.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from conftest import wait_for, write_config
from mqtt_helpers import (
    Device,
    OutboxReader,
    RelayProcess,
    broker,  # noqa: F401 - the fixture
    mosquitto_pub,
    needs_mosquitto,
    relay_tables,
)

from appliance.records import record_id, utc_text

pytestmark = needs_mosquitto
T0 = datetime(2025, 3, 1, 8, 0)  # device wall time; the devices below say UTC+1:00


def periodic(i: int, serial: str = "SN-ENTRANCE") -> str:
    """A VS121-P periodic report for minute ``i`` after T0, as the device sends it."""
    start = T0 + timedelta(minutes=i)
    return json.dumps(
        {
            "event": "Region People Counting",
            "report_type": "interval",
            "device_info": {
                "device": "Workplace Sensor",
                "device_sn": serial,
                "ip_address": "192.0.2.99",
            },
            "time_info": {
                "timezone": "UTC+1:00",
                "dst_status": False,
                "start_time": start.strftime("%Y/%m/%d %H:%M:%S"),
                "end_time": (start + timedelta(minutes=1)).strftime("%Y/%m/%d %H:%M:%S"),
            },
            "current_total": i % 40,
            "max_counted": i % 40 + 3,
            "total_mapped_regions": 2,
            "numbering_regions": [1, 2],
            "current_counted": [i % 40 // 2, i % 40 - i % 40 // 2],
        }
    )


def periodic_id(i: int, serial: str = "SN-ENTRANCE") -> str:
    start = (T0 + timedelta(minutes=i) - timedelta(hours=1)).replace(tzinfo=UTC)
    return record_id(serial, "occupancy", utc_text(start))


@pytest.fixture
def relay(broker, tmp_path: Path):  # noqa: F811
    process = RelayProcess(broker.config, tmp_path / "run", tmp_path / "relay.log")
    yield process
    process.cleanup()


def outbox_of(tmp_path: Path) -> OutboxReader:
    return OutboxReader(tmp_path / "state" / "outbox.db")


def publish_in_bursts(
    device: Device, payloads: list[str], burst: int = 250, pause: float = 0.03
) -> threading.Thread:
    def run() -> None:
        for start in range(0, len(payloads), burst):
            for payload in payloads[start : start + burst]:
                device.publish(payload)
            time.sleep(pause)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_sigkill_mid_stream_of_10000_messages_stores_each_exactly_once(broker, relay, tmp_path):  # noqa: F811
    box = outbox_of(tmp_path)
    device = Device(broker.add_device("entrance")).wait_connected()
    relay.start().wait_connected()
    n = 10_000
    publisher = publish_in_bursts(device, [periodic(i) for i in range(n)])

    kills = 0
    for threshold in (1_500, 5_000):
        wait_for(lambda t=threshold: box.count() >= t, 60, f"{threshold} readings in the outbox")
        relay.kill()  # between receive and commit, between commit and ack: wherever it is
        kills += 1
        time.sleep(0.3)  # the device goes on publishing into the broker meanwhile
        relay.start().wait_connected()
    publisher.join(60)
    wait_for(lambda: box.count() >= n, 120, f"all {n} readings in the outbox")
    time.sleep(0.5)  # anything still redelivered must not add a row

    readings = box.readings()
    assert kills == 2
    assert len(readings) == n
    assert {r["id"] for r in readings} == {periodic_id(i) for i in range(n)}
    assert set(box.revisions()) == {1}, "a redelivered message changed a stored reading"
    assert len(device.acks) == n and all(not rc.is_failure for rc in device.acks.values())
    sample = {r["id"]: r for r in readings}[periodic_id(4321)]
    assert sample["values"] == {
        "current_total": 4321 % 40,
        "max": 4321 % 40 + 3,
        "regions": {"1": 0, "2": 1},
    }
    assert sample["period_start"] == "2025-03-04T07:01:00Z" and sample["source"] == "mqtt"
    device.close()
    assert relay.terminate() == 0


def test_messages_wait_in_the_broker_while_the_relay_is_down_even_across_a_broker_restart(
    broker,
    relay,
    tmp_path,  # noqa: F811
):
    box = outbox_of(tmp_path)
    device = Device(broker.add_device("entrance")).wait_connected()
    relay.start().wait_connected()
    assert relay.terminate() == 0  # the session stays with the broker
    for i in range(1500):  # more than mosquitto's default queue of 1000 per client
        device.publish(periodic(i))
    wait_for(lambda: len(device.acks) == 1500, 30, "the broker to accept every message")
    device.close()
    broker.stop()  # and the broker restarts meanwhile: the queue is on its disk
    broker.start()
    assert box.count() == 0
    relay.start()
    wait_for(lambda: box.count() == 1500, 60, "the queued messages in the outbox")
    status = relay.wait_state("ok")
    wait_for(
        lambda: relay.status().get("messages_received") == 1500, 10, "the status to count them"
    )
    status = relay.status()
    assert status["records_stored"] == 1500 and status["dead_lettered"] == 0
    assert status["broker"]["connected"] is True and status["last_message_at"]


def test_broker_restart_mid_stream_loses_nothing(broker, relay, tmp_path):  # noqa: F811
    box = outbox_of(tmp_path)
    device = Device(broker.add_device("entrance")).wait_connected()
    relay.start().wait_connected()
    n = 3_000
    publisher = publish_in_bursts(device, [periodic(i) for i in range(n)], burst=100, pause=0.03)
    wait_for(lambda: box.count() >= 500, 60, "the stream to be flowing")
    broker.stop()
    wait_for(
        lambda: relay.status().get("state") == "degraded", 10, "the relay to report the lost broker"
    )
    broker.start()
    publisher.join(60)
    wait_for(lambda: box.count() >= n, 90, f"all {n} readings after the broker restart")
    time.sleep(0.5)
    assert box.count() == n
    assert {r["id"] for r in box.readings()} == {periodic_id(i) for i in range(n)}
    assert set(box.revisions()) == {1}
    relay.wait_state("ok")
    device.close()


def test_bad_messages_are_dead_lettered_and_the_stream_goes_on(broker, relay, tmp_path):  # noqa: F811
    box = outbox_of(tmp_path)
    login = broker.add_device("entrance")
    relay.start().wait_connected()
    device = Device(login).wait_connected()
    device.publish(b"\x89PNG\r\n\x1a\n\x00\x00binary")
    assert mosquitto_pub(login, "{not json at all").returncode == 0
    device.publish(periodic(1))
    wait_for(
        lambda: box.count() == 1 and len(box.dead()) == 2, 20, "one reading and two dead letters"
    )
    dead = box.dead()
    assert {d["origin"] for d in dead} == {login.topic}
    assert "binary" in dead[0]["reason"] and dead[0]["preview"].startswith("hex")
    assert "not JSON" in dead[1]["reason"] and "{not json" in dead[1]["preview"]
    status = relay.wait_state("degraded")
    assert status["dead_lettered"] == 2 and "dead-lettered" in status["reason"]
    device.close()


def test_republished_identical_message_is_one_reading(broker, relay, tmp_path):  # noqa: F811
    """Even a message without any time of its own: its first receive time is remembered."""
    box = outbox_of(tmp_path)
    login = broker.add_device("entrance")
    relay.start().wait_connected()
    timeless = json.dumps(
        {"event": "Tamper Alarm", "device_info": {"device_sn": "SN-ENTRANCE"}, "level": 2}
    )
    for payload in (periodic(7), timeless):
        assert mosquitto_pub(login, payload).returncode == 0
    wait_for(lambda: box.count() == 2, 20, "two readings")
    time.sleep(1.1)  # a later second: a receive-time stamp would now differ
    relay.kill()
    relay.start().wait_connected()  # and the relay's memory is gone
    for payload in (periodic(7), timeless):
        assert mosquitto_pub(login, payload).returncode == 0
    wait_for(lambda: relay.status().get("messages_received") == 2, 20, "the copies to arrive")
    assert box.count() == 2 and set(box.revisions()) == {1}
    event = next(r for r in box.readings() if r["kind"] == "event")
    assert event["values"] == {"event": "Tamper Alarm", "payload": json.loads(timeless)}


def test_wrong_password_is_refused_for_devices_and_the_relay(broker, relay, tmp_path):  # noqa: F811
    login = broker.add_device("entrance")
    refused = mosquitto_pub(login, periodic(1), password="not-" + login.password)
    assert refused.returncode != 0 and "not authori" in refused.stderr.lower()
    device = Device(login, password="wrong")
    wait_for(lambda: device.refused is not None, 10, "the broker to refuse the device")
    device.close()

    config = write_config(
        tmp_path / "wrong.toml", relay_tables(tmp_path, broker.port, password="wrong")
    )
    wrong = RelayProcess(config, tmp_path / "run", tmp_path / "wrong.log").start()
    try:
        status = wrong.wait_state("error")
        assert "refused" in status["reason"] and status["broker"]["connected"] is False
    finally:
        wrong.cleanup()


def test_a_device_cannot_publish_or_read_another_devices_topic(broker, relay, tmp_path):  # noqa: F811
    box = outbox_of(tmp_path)
    a, b = broker.add_device("entrance"), broker.add_device("checkout")
    relay.start().wait_connected()
    device = Device(a, protocol="5").wait_connected()
    forged = device.publish(periodic(1, serial="SN-CHECKOUT"), topic=b.topic)
    own = device.publish(periodic(2, serial="SN-ENTRANCE"))
    wait_for(lambda: forged in device.acks and own in device.acks, 10, "both PUBACKs")
    assert device.acks[forged].is_failure and "not authori" in str(device.acks[forged]).lower()
    assert not device.acks[own].is_failure
    wait_for(lambda: box.count() >= 1, 10, "the device's own reading")
    time.sleep(0.3)  # per-client order: the forged one would have arrived first
    assert [r["sensor_id"] for r in box.readings()] == ["SN-ENTRANCE"]

    snooper = Device(a, protocol="5", client_id="snooper").wait_connected()  # entrance's login
    snooper.client.subscribe([("milesight/#", 1), ("#", 1)])
    wait_for(lambda: len(snooper.granted) == 2, 10, "the SUBACK")
    assert mosquitto_pub(b, periodic(3, serial="SN-CHECKOUT")).returncode == 0
    wait_for(lambda: box.count() == 2, 10, "checkout's reading through its own login")
    time.sleep(0.3)
    assert snooper.received == [], "only the relay may read what devices publish"
    snooper.close()
    device.close()


# ---------------------------------------------------------------- HTTP push


def push_url(broker) -> str:  # noqa: F811
    return f"http://127.0.0.1:{broker.push_port}/milesight/push"


AUTH = ("milesight", "push-test-password")


def test_http_push_happy_path_strips_the_snapshot_and_answers_after_commit(broker, relay, tmp_path):  # noqa: F811
    box = outbox_of(tmp_path)
    relay.start().wait_connected()
    report = json.loads(periodic(5, serial="SN-HALL"))
    report["snapshot"] = base64.b64encode(b"\xff\xd8\xff\xe0 a JPEG of the shop floor").decode()
    answer = requests.post(push_url(broker), json=report, auth=AUTH, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"stored": 1}
    readings = box.readings()  # the 200 came after the commit: no waiting needed
    assert [r["id"] for r in readings] == [periodic_id(5, "SN-HALL")]
    assert readings[0]["source"] == "http-push"
    assert "snapshot" not in json.dumps(readings) and "JPEG" not in json.dumps(readings)

    again = requests.post(push_url(broker), json=report, auth=AUTH, timeout=10)
    assert again.status_code == 200
    assert box.count() == 1 and box.revisions() == [1]


def test_http_push_refuses_bad_auth_oversize_and_malformed(broker, relay, tmp_path):  # noqa: F811
    box = outbox_of(tmp_path)
    relay.start().wait_connected()
    url, body = push_url(broker), periodic(6)
    assert requests.post(url, data=body, timeout=10).status_code == 401
    wrong = requests.post(url, data=body, auth=("milesight", "guess"), timeout=10)
    assert wrong.status_code == 401 and "WWW-Authenticate" in wrong.headers

    big = json.dumps({"device_info": {"device_sn": "X"}, "pad": "x" * 70_000})  # max_body_kb = 64
    oversize = requests.post(url, data=big, auth=AUTH, timeout=10)
    assert oversize.status_code == 413 and "64 KB" in oversize.json()["error"]

    malformed = requests.post(url, data=b'{"current_total": 3', auth=AUTH, timeout=10)
    assert malformed.status_code == 400 and "not JSON" in malformed.json()["error"]
    bad_value = requests.post(url, data=json.dumps({"current_total": -2}), auth=AUTH, timeout=10)
    assert bad_value.status_code == 400 and "current_total" in bad_value.json()["error"]

    assert box.count() == 0
    assert [d["origin"].split()[0] for d in box.dead()] == ["http-push", "http-push"]
    assert requests.post(url, data=body, auth=AUTH, timeout=10).status_code == 200
    assert box.count() == 1


def test_relay_without_a_broker_says_so_and_stops_cleanly(tmp_path):
    """No broker listening: degraded then error with the reason; SIGTERM still exits 0."""
    from conftest import free_port

    config = write_config(tmp_path / "config.toml", relay_tables(tmp_path, free_port()))
    relay = RelayProcess(config, tmp_path / "run", tmp_path / "relay.log").start()
    try:
        status = relay.wait_state("degraded", 20)
        assert status["broker"]["connected"] is False and "unreachable" in status["reason"]
        assert relay.terminate() == 0
    finally:
        relay.cleanup()
