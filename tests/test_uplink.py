"""Delivery to the cloud API, answer by answer, as the ingest contract prescribes.

A real reference receiver on loopback answers (and misbehaves on cue); a real
outbox in tmp_path holds the readings; what is checked is what a person would
notice: what reached the cloud, what is still pending, what sits in the
dead-letter table, what the bridge says about itself, and how long it waits.
The receiver's own contract checks are tested at the end, with raw requests.
"""

from __future__ import annotations

import gzip
import json
import logging
import queue
import random
import re
import shutil
import subprocess
import threading
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import CLI, REPO, free_port, wait_for
from receiver_helpers import KEY, Clock, drain, make_uplink, readings

from appliance import __version__
from appliance.records import Record, record_id
from appliance.sim.receiver import Answer, SimReceiver
from appliance.uplink import (
    AUTH_RETRY_S,
    GROW_AFTER,
    MALFORMED_STREAK,
    TOO_LARGE_MEMORY_S,
    parse_retry_after,
)

Z_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


@pytest.fixture
def receiver_key() -> str:
    """conftest's receiver, with the key these tests send."""
    return KEY


def keys(receiver: SimReceiver) -> list[str]:
    return [s["headers"]["Idempotency-Key"] for s in receiver.requests_seen()]


# ---------------------------------------------------------------- the happy path


@pytest.mark.parametrize("gzip_on", [True, False], ids=["gzip", "plain"])
def test_batches_carry_the_contract_headers_and_fields(
    tmp_path: Path, receiver: SimReceiver, gzip_on: bool
) -> None:
    uplink, outbox = make_uplink(tmp_path, receiver.url, gzip=gzip_on, batch_size=4)
    outbox.put(readings(10))
    sent = {p.id: p.body for p in outbox.take(100)}
    drain(uplink)

    seen = receiver.requests_seen()
    assert [len(s["ids"]) for s in seen] == [4, 4, 2]
    assert [s["status"] for s in seen] == [200, 200, 200]
    for s in seen:
        headers, batch = s["headers"], s["batch"]
        assert headers["Authorization"] == f"Bearer {KEY}"
        assert headers["Content-Type"] == "application/json"
        assert headers["User-Agent"] == f"sensor-bridge/{__version__}"
        assert headers.get("Content-Encoding") == ("gzip" if gzip_on else None)
        assert headers["Idempotency-Key"] == batch["batch_id"]
        assert batch["schema"] == "sensor-bridge/ingest/v1" and batch["bridge_id"] == "store-test"
        assert Z_TIME.match(batch["sent_at"])
    assert len(set(keys(receiver))) == 3, "every new batch gets a new batch_id"
    assert receiver.records() == sent, "the cloud holds exactly the outbox's records"
    assert outbox.stats().pending == 0
    snap = uplink.snapshot()
    assert (
        snap["state"] == "ok"
        and snap["delivered_total"] == 10
        and Z_TIME.match(snap["last_success"])
    )


def test_batches_never_exceed_batch_size_and_go_oldest_first(
    tmp_path: Path, receiver: SimReceiver
) -> None:
    uplink, outbox = make_uplink(tmp_path, receiver.url, batch_size=7)
    outbox.put(readings(50))
    order = [p.id for p in outbox.take(50)]
    drain(uplink)
    sizes = [len(s["ids"]) for s in receiver.requests_seen()]
    assert max(sizes) == 7 and sum(sizes) == 50
    assert [i for s in receiver.requests_seen() for i in s["ids"]] == order
    assert uplink.deliver_once().wait_s > 0, "nothing pending: the uplink idles"
    assert len(receiver.requests_seen()) == len(sizes), "and sends nothing"


def test_a_2xx_without_a_usable_body_means_all_accepted(
    tmp_path: Path, receiver: SimReceiver
) -> None:
    uplink, outbox = make_uplink(tmp_path, receiver.url, batch_size=2)
    outbox.put(readings(4))
    receiver.script(Answer(200, body=b""), Answer(202, body=b"<html>thanks</html>"))
    assert uplink.deliver_once().delivered == 2
    assert uplink.deliver_once().delivered == 2
    assert outbox.stats().pending == 0 and outbox.stats().dead_letter == 0


# ---------------------------------------------------------------- try later


def test_a_retry_keeps_its_idempotency_key_and_a_new_batch_gets_a_new_one(
    tmp_path: Path, receiver: SimReceiver
) -> None:
    uplink, outbox = make_uplink(tmp_path, receiver.url)
    outbox.put(readings(3))
    receiver.script(503)
    first = uplink.deliver_once()
    assert first.delivered == 0 and 0 <= first.wait_s <= 2, "first backoff: up to the 2 s base"
    assert uplink.snapshot()["state"] == "degraded" and "503" in uplink.snapshot()["last_error"]
    assert outbox.stats().pending == 3 and receiver.records() == {}
    assert uplink.deliver_once().delivered == 3
    assert uplink.snapshot()["state"] == "ok" and uplink.snapshot()["consecutive_failures"] == 0
    outbox.put(readings(3, start=3))
    uplink.deliver_once()
    first_key, retry_key, next_key = keys(receiver)
    assert first_key == retry_key != next_key


def test_a_lost_answer_is_replayed_with_the_same_key_and_changes_nothing(
    tmp_path: Path, receiver: SimReceiver
) -> None:
    """The cloud stored the batch but the answer never came back (timeout): the replay is harmless."""
    uplink, outbox = make_uplink(tmp_path, receiver.url, timeout_s=0.3)
    outbox.put(readings(3))
    answered = threading.Event()
    receiver.script(Answer(200, hold=answered))  # stores, then sits on the answer
    result = uplink.deliver_once()
    answered.set()
    assert "no answer within 0.3 s" in result.error and uplink.snapshot()["state"] == "degraded"
    assert outbox.stats().pending == 3, "no answer: nothing is deleted"
    stored = receiver.records()
    assert len(stored) == 3
    receiver.script(Answer(504, store=True))  # stored again, answer lost again
    uplink.deliver_once()
    assert uplink.deliver_once().delivered == 3
    assert len(set(keys(receiver))) == 1, "every retry of the batch carries one Idempotency-Key"
    assert receiver.records() == stored, "replays changed nothing in the cloud"


def test_backoff_grows_with_full_jitter_up_to_the_cap(
    tmp_path: Path, receiver: SimReceiver
) -> None:
    random.seed(7)
    uplink, outbox = make_uplink(tmp_path, receiver.url)
    outbox.put(readings(1))
    receiver.set_down(True)
    waits = [uplink.deliver_once().wait_s for _ in range(12)]
    assert all(0 <= w <= min(300, 2 * 2**i) for i, w in enumerate(waits))
    assert max(waits[6:]) > 4 * max(waits[:2]), "the ceiling grows"
    assert len({round(w, 3) for w in waits}) == len(waits), "jittered, not a fixed ladder"
    snap = uplink.snapshot()
    assert snap["consecutive_failures"] == 12 and snap["state"] == "degraded"
    assert snap["next_try_in_s"] == pytest.approx(waits[-1], abs=0.2)
    receiver.set_down(False)
    assert uplink.deliver_once().delivered == 1
    assert (
        uplink.snapshot()["consecutive_failures"] == 0 and uplink.snapshot()["next_try_in_s"] == 0
    )


def test_retry_after_in_seconds_and_as_an_http_date_is_honoured(
    tmp_path: Path, receiver: SimReceiver
) -> None:
    clock = Clock()
    uplink, outbox = make_uplink(tmp_path, receiver.url, clock=clock)
    outbox.put(readings(2))
    receiver.script((429, {"Retry-After": "7"}))
    assert 7 <= uplink.deliver_once().wait_s <= 8
    assert 7 <= uplink.snapshot()["next_try_in_s"] <= 8
    in_40_s = format_datetime(datetime.fromtimestamp(clock.now + 40, UTC), usegmt=True)
    receiver.script((503, {"Retry-After": in_40_s}))
    assert 40 <= uplink.deliver_once().wait_s <= 41
    receiver.script(
        (503, {"Retry-After": "Tue, 01 Jan 2019 00:00:00 GMT"})
    )  # already past: no extra wait
    assert uplink.deliver_once().wait_s <= 1
    assert uplink.deliver_once().delivered == 2


def test_the_run_loop_waits_as_long_as_retry_after_says(
    tmp_path: Path, receiver: SimReceiver
) -> None:
    uplink, outbox = make_uplink(tmp_path, receiver.url)
    outbox.put(readings(2))
    receiver.script((503, {"Retry-After": "1"}))
    stop = threading.Event()
    thread = threading.Thread(target=uplink.run, args=(stop,))
    thread.start()
    try:
        wait_for(lambda: uplink.snapshot()["consecutive_failures"] == 1, timeout=10, what="the 503")
        uplink.wake()  # new readings arrive during the backoff: the wait still holds
        wait_for(lambda: len(receiver.records()) == 2, timeout=10, what="the retry to deliver")
    finally:
        stop.set()
        thread.join(5)
    first, retry = receiver.requests_seen()
    assert retry["at"] - first["at"] >= 1.0
    assert not thread.is_alive()


def test_retry_after_forms() -> None:
    assert parse_retry_after("120") == 120
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480 - 60) == 60
    assert parse_retry_after("-5") == 0
    assert (
        parse_retry_after("soon") is None
        and parse_retry_after(None) is None
        and parse_retry_after("") is None
    )


def test_an_unreachable_api_keeps_everything_until_it_is_back(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there yet: connection refused, on loopback
    uplink, outbox = make_uplink(tmp_path, f"http://127.0.0.1:{port}/api/bridge/v1/ingest")
    outbox.put(readings(5))
    for _ in range(3):
        result = uplink.deliver_once()
        assert result.delivered == 0 and "connection refused" in result.error
    snap = uplink.snapshot()
    assert snap["state"] == "degraded" and snap["consecutive_failures"] == 3
    assert outbox.stats().pending == 5
    with SimReceiver(api_key=KEY, port=port) as back:
        assert uplink.deliver_once().delivered == 5
        assert len(back.records()) == 5
    assert uplink.snapshot()["state"] == "ok" and outbox.stats().pending == 0


# ---------------------------------------------------------------- too large


def test_413_halves_until_it_fits_then_grows_back_slowly(tmp_path: Path) -> None:
    clock = Clock()
    with SimReceiver(api_key=KEY, max_records=3) as small:
        uplink, outbox = make_uplink(tmp_path, small.url, batch_size=16, clock=clock)
        outbox.put(readings(16))
        drain(uplink)
        sizes = [len(s["ids"]) for s in small.requests_seen()]
        assert sizes[:4] == [16, 8, 4, 2] and [s["status"] for s in small.requests_seen()][:4] == [
            413
        ] * 3 + [200]
        assert len(small.records()) == 16 and outbox.stats().dead_letter == 0
        assert uplink.snapshot()["batch_size"] == 2

        outbox.put(readings(2 * GROW_AFTER + 3 * 3, start=16))
        drain(uplink)
        later = [len(s["ids"]) for s in small.requests_seen()][len(sizes) :]
        assert 3 in later and max(later) == 3, "grows back, but not to the size that got 413 (4)"
        assert {s["status"] for s in small.requests_seen()[len(sizes) :]} == {200}

        small.max_records = 100  # the cloud raised its limit; an hour later the bridge finds out
        clock.now += TOO_LARGE_MEMORY_S + 1
        outbox.put(readings((3 + 6 + 12) * GROW_AFTER + 16, start=100))
        drain(uplink)
        assert uplink.snapshot()["batch_size"] == 16
        assert max(len(s["ids"]) for s in small.requests_seen()) == 16
        assert outbox.stats().pending == 0 and outbox.stats().dead_letter == 0


def test_a_single_reading_too_large_for_the_api_is_dead_lettered(tmp_path: Path) -> None:
    big = Record(
        "door-7",
        "event",
        datetime(2025, 7, 22, 9, tzinfo=UTC),
        datetime(2025, 7, 22, 9, tzinfo=UTC),
        {"event": "snapshot", "payload": {"jpeg": "ab" * 3000}},
        True,
        "mqtt",
    )
    with SimReceiver(api_key=KEY, max_body_kb=4) as rx:
        uplink, outbox = make_uplink(tmp_path, rx.url, gzip=False, batch_size=4)
        outbox.put(readings(3) + [big])
        drain(uplink)
        assert len(rx.records()) == 3 and big.id not in rx.records()
        [dead] = outbox.dead_letters()
        assert dead["record_id"] == big.id and "too large" in dead["reason"]
        assert outbox.stats().pending == 0


# ---------------------------------------------------------------- refused records


def test_400_bisects_and_dead_letters_exactly_the_bad_records(
    tmp_path: Path, receiver: SimReceiver
) -> None:
    uplink, outbox = make_uplink(tmp_path, receiver.url, batch_size=16)
    good, broken = readings(14, sensor="good"), readings(2, sensor="broken")
    outbox.put(good[:5] + broken[:1] + good[5:11] + broken[1:] + good[11:])
    receiver.malformed_sensors.add("broken")
    drain(uplink)
    assert set(receiver.records()) == {r.id for r in good}
    dead = outbox.dead_letters()
    assert {d["record_id"] for d in dead} == {r.id for r in broken}
    assert all("malformed" in d["reason"] and "broken" in d["reason"] for d in dead), dead
    assert len(receiver.requests_seen()) <= 2 * 2 * 4 + 1, "bisection is bounded: about 2k*log2(n)"
    assert outbox.stats().pending == 0 and uplink.snapshot()["state"] == "ok"
    before = len(receiver.requests_seen())
    uplink.deliver_once()
    assert len(receiver.requests_seen()) == before, "a dead-lettered reading is never sent again"


def test_when_the_cloud_calls_every_reading_malformed_the_rest_is_held(
    tmp_path: Path, receiver: SimReceiver
) -> None:
    """E.g. bridge.id does not match the key's bridge: no reading is bad, so do not dead-letter them all."""
    uplink, outbox = make_uplink(tmp_path, receiver.url, batch_size=8)
    outbox.put(readings(40))
    receiver.malformed_sensors.add("cam-1")
    result = uplink.deliver_once()
    for _ in range(MALFORMED_STREAK):
        if result.wait_s:
            break
        result = uplink.deliver_once()
    assert result.wait_s >= AUTH_RETRY_S
    snap = uplink.snapshot()
    assert snap["state"] == "error" and "refuses every reading as malformed" in snap["last_error"]
    assert (
        outbox.stats().dead_letter == MALFORMED_STREAK
        and outbox.stats().pending == 40 - MALFORMED_STREAK
    )
    receiver.malformed_sensors.clear()  # fixed in the cloud (or in the config)
    drain(uplink)
    assert outbox.retry_dead() == MALFORMED_STREAK
    drain(uplink)
    assert len(receiver.records()) == 40 and uplink.snapshot()["state"] == "ok"


@pytest.mark.parametrize("arrival", ["one by one", "all at once"])
def test_refused_readings_ahead_of_good_ones_never_hold_the_queue(
    tmp_path: Path, receiver: SimReceiver, arrival: str
) -> None:
    """A device pushing junk the cloud refuses (400) ahead of the cameras' readings: the junk goes to
    the dead letters, every camera reading reaches the cloud, and the uplink says ok."""
    uplink, outbox = make_uplink(tmp_path, receiver.url, batch_size=16)
    receiver.malformed_sensors.add("door-junk")
    junk = readings(MALFORMED_STREAK + 2, sensor="door-junk")
    good = readings(120, sensor="entrance")
    if arrival == "one by one":  # each push is sent, and refused, before the next arrives
        for record in junk[:MALFORMED_STREAK]:
            outbox.put([record])
            assert uplink.deliver_once().rejected == 1
        outbox.put(junk[MALFORMED_STREAK:] + good)
    else:
        outbox.put(junk + good)
    drain(uplink)
    assert set(receiver.records()) == {r.id for r in good}, "every camera reading reached the cloud"
    assert {d["record_id"] for d in outbox.dead_letters()} == {r.id for r in junk}
    assert outbox.stats().pending == 0 and uplink.snapshot()["state"] == "ok"


def test_a_restart_does_not_dead_letter_more_of_a_wholesale_refused_outbox(
    tmp_path: Path, receiver: SimReceiver
) -> None:
    uplink, outbox = make_uplink(tmp_path, receiver.url, batch_size=8)
    outbox.put(readings(40))
    receiver.malformed_sensors.add("cam-1")
    for _ in range(MALFORMED_STREAK):
        if uplink.deliver_once().wait_s:
            break
    assert outbox.stats().dead_letter == MALFORMED_STREAK
    restarted, _ = make_uplink(tmp_path, receiver.url, batch_size=8, outbox=outbox)
    assert restarted.deliver_once().wait_s >= AUTH_RETRY_S
    assert (
        outbox.stats().dead_letter == MALFORMED_STREAK and restarted.snapshot()["state"] == "error"
    )


def test_records_the_cloud_refuses_one_by_one_go_to_dead_letter(
    tmp_path: Path, receiver: SimReceiver
) -> None:
    uplink, outbox = make_uplink(tmp_path, receiver.url)
    outbox.put(readings(4))
    poisoned = outbox.take(4)[1]
    receiver.poison_ids.add(poisoned.id)
    result = uplink.deliver_once()
    assert (result.delivered, result.rejected) == (3, 1)
    [dead] = outbox.dead_letters()
    assert dead["record_id"] == poisoned.id and "poisoned" in dead["reason"]
    assert json.loads(dead["preview"]) == poisoned.body, "the dead letter keeps the whole reading"
    assert poisoned.id not in receiver.records() and len(receiver.records()) == 3
    assert outbox.stats().pending == 0


def test_a_batch_with_a_final_answer_never_reuses_its_batch_id(
    tmp_path: Path, receiver: SimReceiver
) -> None:
    uplink, outbox = make_uplink(tmp_path, receiver.url)
    outbox.put(readings(1))
    [only] = outbox.take(1)
    receiver.poison_ids.add(only.id)
    assert uplink.deliver_once().rejected == 1
    receiver.poison_ids.clear()  # the cloud fixed its validation; a person retries the dead letters
    assert outbox.retry_dead() == 1
    assert uplink.deliver_once().delivered == 1
    first, second = keys(receiver)
    assert first != second, (
        "the same records, but a new batch: the cloud must not take it for a replay"
    )


# ---------------------------------------------------------------- keys and secrets


def test_a_rejected_key_keeps_everything_says_error_and_never_shows_the_key(
    tmp_path: Path, receiver: SimReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-key-0xDEADBEEF"
    uplink, outbox = make_uplink(tmp_path, receiver.url, api_key=wrong)
    outbox.put(readings(3))
    result = uplink.deliver_once()
    assert result.wait_s >= AUTH_RETRY_S, "a rejected key is retried slowly"
    snap = uplink.snapshot()
    assert snap["state"] == "error" and snap["last_error"] == "API key rejected (401)"
    receiver.script(
        Answer(403, body={"error": f"key {wrong} is disabled"})
    )  # an API that echoes the key
    uplink.deliver_once()
    assert uplink.snapshot()["last_error"] == "API key rejected (403)"
    assert outbox.stats().pending == 3 and receiver.records() == {}
    assert len(set(keys(receiver))) == 1, "the same batch, retried"
    assert wrong not in json.dumps(uplink.snapshot()) + caplog.text

    fixed, _ = make_uplink(
        tmp_path, receiver.url, outbox=outbox
    )  # a person puts the right key in the config
    assert fixed.deliver_once().delivered == 3
    assert fixed.snapshot()["state"] == "ok" and len(receiver.records()) == 3


def test_an_echoed_key_is_masked_in_every_error(
    tmp_path: Path, receiver: SimReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    uplink, outbox = make_uplink(tmp_path, receiver.url)
    outbox.put(readings(2))
    receiver.script(
        Answer(503, body={"error": f"overloaded while checking {KEY}\nline two"}),
        Answer(200, body={"rejected": [{"id": outbox.take(1)[0].id, "error": f"bad {KEY}"}]}),
    )
    uplink.deliver_once()
    assert "***" in uplink.snapshot()["last_error"] and "\n" not in uplink.snapshot()["last_error"]
    uplink.deliver_once()
    assert KEY not in json.dumps(uplink.snapshot()) + caplog.text + json.dumps(
        outbox.dead_letters()
    )


def test_an_answer_the_contract_does_not_know_is_an_error_for_a_person(
    tmp_path: Path, receiver: SimReceiver
) -> None:
    uplink, outbox = make_uplink(tmp_path, receiver.url.replace("/ingest", "/ingets"))
    outbox.put(readings(2))
    result = uplink.deliver_once()
    snap = uplink.snapshot()
    assert (
        snap["state"] == "error" and "404" in snap["last_error"] and "/ingets" in snap["last_error"]
    )
    assert 0 <= result.wait_s <= 2 and outbox.stats().pending == 2


# ---------------------------------------------------------------- revisions in flight, the thread


def test_a_reading_updated_while_its_batch_is_in_flight_is_sent_again(
    tmp_path: Path, receiver: SimReceiver
) -> None:
    uplink, outbox = make_uplink(tmp_path, receiver.url)
    outbox.put(readings(3, final=False))
    release = threading.Event()
    receiver.script(Answer(200, hold=release))
    results: list[Any] = []
    worker = threading.Thread(target=lambda: results.append(uplink.deliver_once()))
    worker.start()
    try:
        wait_for(
            lambda: receiver.requests_seen(), timeout=10, what="the batch to reach the receiver"
        )
        [updated] = readings(1, people=50, final=False)  # the camera corrected hour 0 meanwhile
        assert outbox.put([updated]).updated == 1
    finally:
        release.set()
        worker.join(10)
    assert results[0].delivered == 2
    [still] = outbox.take(10)
    assert (still.id, still.revision) == (updated.id, 2)
    assert receiver.records()[updated.id]["revision"] == 1
    assert uplink.deliver_once().delivered == 1
    held = receiver.records()[updated.id]
    assert held["revision"] == 2 and held["values"] == {"regions": {"1": 50}}
    assert outbox.stats().pending == 0


def test_the_run_loop_delivers_when_woken_and_stops_cleanly_mid_batch(
    tmp_path: Path, receiver: SimReceiver
) -> None:
    uplink, outbox = make_uplink(tmp_path, receiver.url)
    stop = threading.Event()
    thread = threading.Thread(target=uplink.run, args=(stop,))
    thread.start()
    try:
        outbox.put(readings(5))
        uplink.wake()
        wait_for(lambda: len(receiver.records()) == 5, timeout=3, what="the readings to arrive")

        release = threading.Event()
        receiver.script(Answer(200, hold=release))
        outbox.put(readings(5, start=5))
        uplink.wake()
        wait_for(
            lambda: len(receiver.requests_seen()) == 2,
            timeout=3,
            what="the second batch to be in flight",
        )
        stop.set()  # the service is stopping while the cloud still holds the batch
        release.set()
        thread.join(10)
    finally:
        stop.set()
        release.set()
    assert not thread.is_alive()
    assert outbox.stats().pending == 0 and len(receiver.records()) == 10, (
        "the in-flight batch was marked"
    )
    assert len(receiver.requests_seen()) == 2, "nothing new started after stop"


def test_stop_ends_a_long_backoff_at_once(tmp_path: Path, receiver: SimReceiver) -> None:
    uplink, outbox = make_uplink(tmp_path, receiver.url)
    outbox.put(readings(1))
    receiver.script((503, {"Retry-After": "600"}))
    stop = threading.Event()
    thread = threading.Thread(target=uplink.run, args=(stop,))
    thread.start()
    wait_for(lambda: uplink.snapshot()["consecutive_failures"] == 1, timeout=10, what="the 503")
    stop.set()
    thread.join(2)
    assert not thread.is_alive() and outbox.stats().pending == 1


def test_tls_certificates_are_verified_unless_switched_off(tmp_path: Path) -> None:
    if not shutil.which("openssl"):
        pytest.skip("needs the openssl command (Debian package openssl) to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    with SimReceiver(api_key=KEY, tls=(cert, key)) as rx:
        assert rx.url.startswith("https://")
        checking, outbox = make_uplink(tmp_path, rx.url)
        outbox.put(readings(2))
        result = checking.deliver_once()
        assert (
            "certificate not trusted" in result.error and checking.snapshot()["state"] == "degraded"
        )
        assert outbox.stats().pending == 2 and rx.records() == {}
        trusting, _ = make_uplink(tmp_path, rx.url, verify_tls=False, outbox=outbox)
        assert trusting.deliver_once().delivered == 2 and len(rx.records()) == 2


# ---------------------------------------------------------------- heartbeat


def heartbeat_body(state: str = "degraded") -> dict[str, Any]:
    return {
        "schema": "sensor-bridge/heartbeat/v1",
        "bridge_id": "store-test",
        "version": __version__,
        "sent_at": "2025-07-22T09:00:00Z",
        "uptime_s": 12,
        "state": state,
        "outbox": {"pending": 3, "oldest_pending_age_s": 40, "dead_letter": 0, "dropped": 0},
        "sensors": [
            {"id": "entrance-1", "state": "failing", "last_success": None, "last_error": "timeout"}
        ],
        "host": {"disk_free_mb": 900, "mem_used_pct": 31.5, "cpu_temp_c": None, "load1": 0.2},
    }


def test_heartbeat_reaches_the_receiver(tmp_path: Path, receiver: SimReceiver) -> None:
    uplink, _ = make_uplink(tmp_path, receiver.url, heartbeat_url=receiver.heartbeat_url)
    assert uplink.send_heartbeat(heartbeat_body())
    assert receiver.last_heartbeat("store-test") == heartbeat_body()
    assert not uplink.send_heartbeat({**heartbeat_body(), "state": "sleepy"}), (
        "the receiver refuses a bad body"
    )
    wrong, _ = make_uplink(
        tmp_path,
        receiver.url,
        api_key="wrong-key",  # a key's shape (config check refuses 4 characters), not this bridge's
        heartbeat_url=receiver.heartbeat_url,
        outbox=uplink.outbox,
    )
    assert not wrong.send_heartbeat(heartbeat_body("ok"))
    assert receiver.last_heartbeat()["state"] == "degraded"
    silent, _ = make_uplink(tmp_path, receiver.url, outbox=uplink.outbox, heartbeat_url="")
    assert not silent.send_heartbeat(heartbeat_body()), 'heartbeat_url = "": nothing is sent'
    # Left out, heartbeats go to the uplink's origin, at the contract's path (issue 22).
    derived, _ = make_uplink(tmp_path, receiver.url, outbox=uplink.outbox)
    assert derived.send_heartbeat(heartbeat_body("ok"))
    assert receiver.last_heartbeat()["state"] == "ok"


# ---------------------------------------------------------------- the receiver's side of the contract


def wire(n: int = 1, **change: Any) -> list[dict[str, Any]]:
    return [{**r.wire(), **change} for r in readings(n)]


def post(
    receiver: SimReceiver,
    records: Any,
    *,
    key: str = KEY,
    batch_id: str = "b-1",
    compress: bool = False,
    headers: dict[str, str] | None = None,
    **envelope: Any,
) -> requests.Response:
    body = {
        "schema": "sensor-bridge/ingest/v1",
        "bridge_id": "store-test",
        "batch_id": batch_id,
        "sent_at": "2025-07-22T09:00:00Z",
        "records": records,
        **envelope,
    }
    data = json.dumps(body).encode()
    sent = {
        "Authorization": f"Bearer {key}",
        "Content-Type": "application/json",
        "Idempotency-Key": batch_id,
        "User-Agent": "sensor-bridge/test",
    }
    if compress:
        data = gzip.compress(data)
        sent["Content-Encoding"] = "gzip"
    return requests.post(receiver.url, data=data, headers={**sent, **(headers or {})}, timeout=10)


@pytest.mark.parametrize(
    ("change", "status", "error"),
    [
        ({"key": "other"}, 401, "API key"),
        ({"headers": {"Content-Type": "text/plain"}}, 400, "Content-Type"),
        ({"headers": {"Idempotency-Key": "b-2"}}, 400, "Idempotency-Key must equal"),
        ({"headers": {"Content-Encoding": "br"}}, 400, "Content-Encoding br"),
        ({"headers": {"User-Agent": "curl/8"}}, 400, "User-Agent"),
        ({"schema": "sensor-bridge/ingest/v2"}, 400, "schema"),
        ({"sent_at": "2025-07-22T09:00:00+00:00"}, 400, "sent_at"),
        ({"records": []}, 400, "records"),
        ({"records": [{"sensor_id": "x"}]}, 400, "every record needs a string id"),
        ({"extra": 1}, 400, "unknown key(s) extra"),
        ({"bridge_id": ""}, 400, "bridge_id"),
    ],
)
def test_the_receiver_refuses_a_malformed_batch_whole(
    receiver: SimReceiver, change: dict[str, Any], status: int, error: str
) -> None:
    records = change.pop("records", wire(2))
    answer = post(receiver, records, **change)
    assert answer.status_code == status and error in answer.json()["error"]
    assert receiver.records() == {}


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"id": "0" * 64}, "id: is not sha256"),
        ({"id": "ABC"}, "id: must be 64 lowercase hex"),
        ({"kind": "footfall"}, "kind"),
        ({"period_start": "2025-07-22T00:00:00.5Z"}, "whole seconds"),
        ({"period_end": "2025-07-21T23:00:00Z"}, "period_end: is before period_start"),
        ({"period_end": "2025-02-30T00:00:00Z"}, "not a real date"),
        ({"observed_at": "2025-07-22T09:00:00"}, "observed_at"),
        ({"revision": 0}, "revision"),
        ({"revision": True}, "revision"),
        ({"final": "yes"}, "final"),
        ({"source": "ftp"}, "source"),
        ({"values": {"regions": {"1": -1}}}, "values.regions"),
        ({"values": {"regions": {"1": 2}, "total": 2}}, "exactly the keys regions"),
        ({"colour": "red"}, "unknown key(s) colour"),
    ],
)
def test_the_receiver_refuses_bad_records_one_by_one(
    receiver: SimReceiver, change: dict[str, Any], error: str
) -> None:
    good, bad = wire(2)
    bad.update(change)
    answer = post(receiver, [good, bad])
    assert answer.status_code == 200
    [refused] = answer.json()["rejected"]
    assert refused["id"] == bad["id"] and error in refused["error"], refused
    assert answer.json()["accepted"] == 1 and list(receiver.records()) == [good["id"]]


def test_the_receiver_accepts_every_kind_and_keeps_the_highest_revision(
    receiver: SimReceiver,
) -> None:
    at, later = "2025-07-22T09:00:00Z", "2025-07-22T10:00:00Z"

    def record(
        kind: str, values: dict[str, Any], end: str = later, source: str = "poll"
    ) -> dict[str, Any]:
        return {
            "id": record_id("s1", kind, at),
            "sensor_id": "s1",
            "kind": kind,
            "period_start": at,
            "period_end": end,
            "final": True,
            "revision": 2,
            "source": source,
            "observed_at": later,
            "values": values,
        }

    kinds = [
        record("line_counts", {"total": {"in": 3, "out": 1}, "lines": {"1": {"in": 3, "out": 1}}}),
        record("region_counts", {"regions": {"1": 4, "2": 0}}),
        record("live_counts", {"in": 1, "out": 0, "sum": 1, "capacity": 40}, end=at),
        record(
            "occupancy", {"current_total": 5, "max": None, "regions": {}}, end=at, source="mqtt"
        ),
        record(
            "event", {"event": "tamper", "payload": {"raw": [1, 2]}}, end=at, source="http-push"
        ),
    ]
    answer = post(receiver, kinds, compress=True)
    assert answer.json() == {"accepted": 5, "rejected": []}
    older = [{**kinds[0], "revision": 1, "values": {"total": {"in": 0, "out": 0}, "lines": {}}}]
    same = [{**kinds[1], "values": {"regions": {"1": 99}}}]
    assert post(receiver, older, batch_id="b-2").json()["accepted"] == 1
    assert post(receiver, same, batch_id="b-3").json()["accepted"] == 1
    assert receiver.records() == {r["id"]: r for r in kinds}, (
        "an older or equal revision changes nothing"
    )
    newer = [
        {
            **kinds[0],
            "revision": 3,
            "values": {"total": {"in": 9, "out": 1}, "lines": {"1": {"in": 9, "out": 1}}},
        }
    ]
    post(receiver, newer, batch_id="b-4")
    assert receiver.records()[kinds[0]["id"]]["revision"] == 3


def test_the_receiver_limits_sizes_with_413(tmp_path: Path) -> None:
    with SimReceiver(api_key=KEY, max_records=2, max_body_kb=64, max_json_kb=256) as rx:
        assert post(rx, wire(3)).status_code == 413
        assert "at most 2 records" in post(rx, wire(3)).json()["error"]
        bloated = wire(1, values={"regions": {"1": 1}, "padding": "x" * 400_000})
        answer = post(rx, bloated, compress=True)  # small on the wire, huge inflated
        assert answer.status_code == 413 and "inflates" in answer.json()["error"]
        assert post(rx, bloated).status_code == 413
        assert post(rx, wire(2)).status_code == 200, "the connection and receiver are still fine"


def test_sim_receiver_command_prints_each_batch(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            *CLI,
            "sim",
            "receiver",
            "--port",
            str(port),
            "--api-key",
            KEY,
            "--db",
            str(tmp_path / "rx.db"),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()

    def next_line_with(text: str) -> str:
        while True:
            line = lines.get(timeout=15)
            if text in line:
                return line

    try:
        next_line_with(f'url = "http://127.0.0.1:{port}/api/bridge/v1/ingest"')
        next_line_with("Ctrl-C stops")
        uplink, outbox = make_uplink(tmp_path, f"http://127.0.0.1:{port}/api/bridge/v1/ingest")
        outbox.put(readings(3, final=False))
        assert uplink.deliver_once().delivered == 3
        assert (
            "stored 3 readings (3 new, 0 newer revisions, 0 unchanged) from store-test; holding 3"
            in next_line_with("stored")
        )
        outbox.put(readings(1, people=9, final=False))
        assert uplink.deliver_once().delivered == 1
        assert (
            "(0 new, 1 newer revisions, 0 unchanged) from store-test; holding 3"
            in next_line_with("stored")
        )
    finally:
        proc.terminate()
        proc.wait(10)
