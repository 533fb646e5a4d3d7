"""Delivery to the cloud API, answer by answer, as the ingest contract prescribes.

A real receiver on loopback answers; the uplink's own decisions (what it
deletes, dead-letters, keeps, and how long it waits) are what is checked.
"""

from __future__ import annotations

import gzip
import json
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from conftest import base_tables, closed_port_url

from appliance.config import parse_config
from appliance.outbox import Outbox
from appliance.records import Record
from appliance.sim.receiver import SimReceiver
from appliance.uplink import Uplink, parse_retry_after

T0 = datetime(2025, 7, 22, 0, tzinfo=UTC)
KEY = "test-key"


def readings(n: int, sensor: str = "cam-1", people: int = 3) -> list[Record]:
    return [
        Record(sensor, "region_counts", T0 + timedelta(hours=h), T0 + timedelta(hours=h + 1),
               {"regions": {"1": people + h}}, True, "poll")
        for h in range(n)
    ]


@pytest.fixture
def receiver(tmp_path: Path):
    with SimReceiver(db_path=tmp_path / "cloud.db", api_key=KEY) as rx:
        yield rx


def make(tmp_path: Path, url: str, **uplink: object) -> tuple[Uplink, Outbox]:
    tables = base_tables(tmp_path, url)
    tables["uplink"].update(uplink)
    config = parse_config(tables)
    outbox = Outbox(tmp_path / "outbox.db")
    return Uplink(config, outbox), outbox


def drain(uplink: Uplink, limit: int = 200) -> None:
    for _ in range(limit):
        if not uplink.outbox.take(1):
            return
        uplink.deliver_once()
    raise AssertionError("outbox did not drain")


@pytest.mark.parametrize("gzip_on", [True, False])
def test_batches_carry_the_contract_headers_and_fields(tmp_path: Path, receiver: SimReceiver, gzip_on: bool) -> None:
    uplink, outbox = make(tmp_path, receiver.url, gzip=gzip_on, batch_size=4)
    outbox.put(readings(10))
    drain(uplink)
    seen = receiver.requests_seen()
    assert [len(s["ids"]) for s in seen] == [4, 4, 2]
    headers = seen[0]["headers"]
    assert headers["Authorization"] == f"Bearer {KEY}"
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"].startswith("sensor-bridge/")
    assert headers.get("Content-Encoding") == ("gzip" if gzip_on else None)
    assert len({s["headers"]["Idempotency-Key"] for s in seen}) == 3
    assert len(receiver.records()) == 10 and outbox.stats().pending == 0
    assert uplink.snapshot()["state"] == "ok"


def test_a_retry_keeps_its_idempotency_key_and_a_replay_changes_nothing(tmp_path: Path,
                                                                         receiver: SimReceiver) -> None:
    uplink, outbox = make(tmp_path, receiver.url)
    outbox.put(readings(3))
    receiver.script(503)
    first = uplink.deliver_once()
    assert first.delivered == 0 and first.wait_s <= 2 and uplink.snapshot()["state"] == "degraded"
    assert outbox.stats().pending == 3
    assert uplink.deliver_once().delivered == 3
    keys = [s["headers"]["Idempotency-Key"] for s in receiver.requests_seen()]
    assert keys[0] == keys[1]
    before = receiver.records()
    # the cloud stored it but the answer was lost: the same batch again changes nothing
    outbox.put(readings(3, people=3))
    assert receiver.records() == before


def test_backoff_grows_with_full_jitter_and_honours_retry_after(tmp_path: Path, receiver: SimReceiver) -> None:
    uplink, outbox = make(tmp_path, receiver.url)
    outbox.put(readings(1))
    receiver.set_down(True)
    waits = [uplink.deliver_once().wait_s for _ in range(8)]
    assert all(0 <= w <= min(300, 2 * 2 ** i) for i, w in enumerate(waits))
    assert max(waits[4:]) > max(waits[:2]), "the ceiling grows"
    receiver.set_down(False)
    receiver.script((429, {"Retry-After": "7"}))
    assert uplink.deliver_once().wait_s >= 7
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=40), usegmt=True)
    receiver.script((503, {"Retry-After": later}))
    assert 30 <= uplink.deliver_once().wait_s <= 41
    assert uplink.deliver_once().delivered == 1
    assert uplink.snapshot()["consecutive_failures"] == 0


def test_retry_after_forms() -> None:
    assert parse_retry_after("120") == 120
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480 - 60) == 60
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_an_unreachable_api_keeps_everything(tmp_path: Path) -> None:
    uplink, outbox = make(tmp_path, closed_port_url())
    outbox.put(readings(5))
    result = uplink.deliver_once()
    assert result.delivered == 0 and "connection refused" in result.error
    assert outbox.stats().pending == 5 and uplink.snapshot()["state"] == "degraded"


def test_413_halves_until_it_fits(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    with SimReceiver(api_key=KEY, max_records=3) as small:
        uplink, outbox = make(tmp_path, small.url, batch_size=16)
        outbox.put(readings(16))
        drain(uplink)
        sizes = [len(s["ids"]) for s in small.requests_seen()]
        assert sizes[:3] == [16, 8, 4] and max(sizes[3:]) <= 3
        assert len(small.records()) == 16 and outbox.stats().dead_letter == 0


def test_400_bisects_and_dead_letters_only_the_bad_records(tmp_path: Path, receiver: SimReceiver) -> None:
    uplink, outbox = make(tmp_path, receiver.url, batch_size=8)
    outbox.put(readings(6, sensor="good") + readings(2, sensor="broken"))
    receiver.malformed_sensors.add("broken")
    drain(uplink)
    stored = {r["sensor_id"] for r in receiver.records().values()}
    assert stored == {"good"} and len(receiver.records()) == 6
    dead = outbox.dead_letters()
    assert len(dead) == 2 and all("malformed" in d["reason"] for d in dead)
    assert len(receiver.requests_seen()) < 20, "bisection is bounded"


def test_records_the_cloud_refuses_go_to_dead_letter(tmp_path: Path, receiver: SimReceiver) -> None:
    uplink, outbox = make(tmp_path, receiver.url)
    outbox.put(readings(4))
    poisoned = outbox.take(4)[1]
    receiver.poison_ids.add(poisoned.id)
    assert uplink.deliver_once().delivered == 3
    [dead] = outbox.dead_letters()
    assert dead["record_id"] == poisoned.id and "poisoned" in dead["reason"]
    assert outbox.stats().pending == 0


def test_a_rejected_key_keeps_everything_and_says_error(tmp_path: Path, receiver: SimReceiver,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    tables = base_tables(tmp_path, receiver.url, api_key="wrong-key-s3cret")
    uplink = Uplink(parse_config(tables), Outbox(tmp_path / "outbox.db"))
    uplink.outbox.put(readings(3))
    result = uplink.deliver_once()
    assert result.wait_s >= 60, "a rejected key is retried slowly"
    snap = uplink.snapshot()
    assert snap["state"] == "error" and "401" in snap["last_error"]
    assert uplink.outbox.stats().pending == 3
    assert "wrong-key-s3cret" not in json.dumps(snap) + caplog.text


def test_the_run_loop_delivers_new_readings_when_woken_and_stops_cleanly(tmp_path: Path,
                                                                         receiver: SimReceiver) -> None:
    uplink, outbox = make(tmp_path, receiver.url)
    stop = threading.Event()
    thread = threading.Thread(target=uplink.run, args=(stop,))
    thread.start()
    try:
        time.sleep(0.3)
        outbox.put(readings(5))
        uplink.wake()
        deadline = time.monotonic() + 5
        while len(receiver.records()) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(timeout=5)
    assert len(receiver.records()) == 5 and not thread.is_alive()


def test_heartbeat_reaches_the_receiver(tmp_path: Path, receiver: SimReceiver) -> None:
    uplink, _ = make(tmp_path, receiver.url, heartbeat_url=receiver.heartbeat_url)
    body = {"schema": "sensor-bridge/heartbeat/v1", "bridge_id": "store-test", "state": "ok"}
    assert uplink.send_heartbeat(body)
    assert receiver.last_heartbeat("store-test")["state"] == "ok"


def test_gzip_body_is_really_compressed(tmp_path: Path, receiver: SimReceiver) -> None:
    uplink, outbox = make(tmp_path, receiver.url)
    outbox.put(readings(50))
    batch = uplink._batch(outbox.take(50))
    raw = json.dumps(batch).encode()
    assert len(gzip.compress(raw)) < len(raw) / 3
