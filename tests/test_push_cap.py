"""Every pushed message has a bounded cost: at most MAX_READINGS readings, the rest dead-lettered.

Issue 19, item 7: an already decoded LoRaWAN ``object.history`` of 780 KB became
20,000 records. Now the first 500 are stored, one dead letter names the cap and
what was left, and the messages after it are stored as always.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

from appliance.committer import Committer, Counters, Incoming
from appliance.outbox import Outbox
from appliance.push.format import MAX_READINGS
from appliance.push.parser import PushParser

RECEIVED = datetime(2025, 7, 22, 9, 30, tzinfo=UTC)
START = int(datetime(2025, 7, 1, tzinfo=UTC).timestamp())
DEV_EUI = "24e124128c140001"


def chirpstack_uplink(history: int, dev_eui: str = DEV_EUI) -> bytes:
    """A ChirpStack v4 uplink whose codec already decoded ``history`` humidity entries."""
    return json.dumps(
        {
            "deviceInfo": {"devEui": dev_eui, "deviceName": "am307 shop floor"},
            "fPort": 85,
            "time": "2025-07-22T09:29:58Z",
            "object": {
                "temperature": 22.5,
                "history": [{"timestamp": START + 60 * i, "humidity": 45} for i in range(history)],
            },
        },
        separators=(",", ":"),
    ).encode()


def push(parser: PushParser, body: bytes):
    return parser.parse(body, source="mqtt", topic="gw/up", origin="gw/up", received_at=RECEIVED)


def test_a_history_of_20000_entries_stores_the_cap_and_dead_letters_the_rest(
    tmp_path: Path,
) -> None:
    hostile = chirpstack_uplink(20_000)
    assert 760_000 < len(hostile) < 800_000, "the size of the message in the report"
    box = Outbox(tmp_path / "outbox.db")
    committer = Committer(box, Counters())
    parser = PushParser()
    answers: list[str | None] = []

    started = time.monotonic()
    big = push(parser, hostile)
    after = push(parser, chirpstack_uplink(2, "24e124128c140002"))  # another, right behind it
    assert (
        committer.commit(
            [Incoming(p, lambda result, error: answers.append(error)) for p in (big, after)]
        )
        == []
    )
    took = time.monotonic() - started
    # Generous for a loaded machine; mapping all 20,000 entries took seconds here.
    assert took < 20, f"one hostile message took {took:.1f} s"

    assert len(big.records) == MAX_READINGS
    [dead] = big.dead
    assert f"over the cap of {MAX_READINGS} readings per pushed message" in dead.reason
    assert "19500 more history entries are not" in dead.reason
    assert answers == [None, None], "both messages were answered (acknowledged)"
    assert box.stats().pending == MAX_READINGS + len(after.records)
    stored = {p.id for p in box.take(10_000)}
    assert {r.id for r in after.records} <= stored, "the message after it is stored whole"
    [letter] = box.dead_letters()
    assert letter["origin"] == "gw/up" and letter["reason"] == dead.reason
    box.close()


def test_a_message_within_the_cap_is_stored_whole() -> None:
    within = push(PushParser(), chirpstack_uplink(MAX_READINGS - 1))
    assert within.dead == [] and len(within.records) == MAX_READINGS  # the entries and its own


def test_readings_past_the_cap_are_cut_whatever_makes_them(monkeypatch) -> None:
    """The cap holds for any format, not only for LoRaWAN histories."""
    from appliance.push import format as push_format

    monkeypatch.setattr("appliance.push.parser.MAX_READINGS", 1)
    monkeypatch.setattr(push_format, "MAX_READINGS", 1)
    report = {
        "device_info": {"device_sn": "6789"},
        "time_info": {"start_time": "2025-07-22T08:00:00Z", "end_time": "2025-07-22T09:00:00Z"},
        "current_total": 3,
        "line_periodic_data": [{"line": 1, "total": {"in": 3, "out": 1}}],
    }
    parsed = push(PushParser(), json.dumps(report).encode())
    assert [r.kind for r in parsed.records] == ["occupancy"]
    assert "1 more reading(s) are not" in parsed.dead[0].reason


def test_an_http_device_hears_what_was_stored_and_what_was_not(tmp_path: Path) -> None:
    """200, not 400: the first 500 are kept, and posting the message again would change nothing."""
    import threading

    from appliance.config import PushConfig
    from appliance.push.http_door import HttpDoor

    box = Outbox(tmp_path / "outbox.db")
    committer = Committer(box, Counters())
    worker = threading.Thread(target=committer.run, daemon=True)
    worker.start()
    door = HttpDoor(PushConfig(password="pw"), PushParser(), committer, lambda: True)
    try:
        code, answer = door.receive(chirpstack_uplink(MAX_READINGS + 10), "/gw", "127.0.0.1")
        assert code == 200 and answer["stored"] == MAX_READINGS
        assert f"over the cap of {MAX_READINGS}" in answer["not_stored"]
        code, answer = door.receive(b"{not json", "/gw", "127.0.0.1")
        assert code == 400 and "not JSON" in answer["error"], "nothing stored: still a 400"
    finally:
        committer.stop()
        worker.join(timeout=30)
        box.close()
