"""The outbox's door: only readings the cloud accepts are ever queued; the rest are dead letters with reasons.

The checker below is written from the ingest contract's text and the cloud's
migration (cloud/supabase/migrations/*.sql), independently of
appliance.records, and is cross-checked with the reference receiver's own
rules. Every reading found in the outbox must pass both.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.committer import Committer, Counters, Incoming
from appliance.outbox import DeadEntry, Outbox
from appliance.push.format import Parsed
from appliance.push.parser import PushParser
from appliance.records import Record, utc_text
from appliance.sim.receiver import record_problem as receiver_problem

T0 = datetime(2025, 7, 22, 9, tzinfo=UTC)

# ---------------------------------------------------------------- an independent checker

STAMP = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?Z$")
KIND_KEYS = {
    "line_counts": {"total", "lines"},
    "region_counts": {"regions"},
    "live_counts": {"in", "out", "sum", "capacity"},
    "occupancy": {"current_total", "max", "regions"},
    "event": {"event", "payload"},
}


def stamp(text: Any, whole: bool = False) -> datetime:
    match = STAMP.match(text)
    assert match and not (whole and match.group(7)), text
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert 2000 <= moment.year <= 2099, text  # plausible: no never-set clocks, no year 9999
    return moment


def count(value: Any) -> None:
    assert type(value) is int and 0 <= value < 2**63, value  # PostgreSQL bigint, >= 0


def every_leaf(node: Any) -> None:
    """PostgreSQL text/jsonb: UTF-8 without U+0000; integers within bigint; finite numbers."""
    if isinstance(node, str):
        node.encode("utf-8")  # raises on a lone surrogate
        assert "\x00" not in node
    elif isinstance(node, dict):
        for key, value in node.items():
            every_leaf(key)
            every_leaf(value)
    elif isinstance(node, list):
        for value in node:
            every_leaf(value)
    elif isinstance(node, bool) or node is None:
        pass
    elif isinstance(node, int):
        assert -(2**63) <= node < 2**63
    else:
        assert isinstance(node, float) and node == node and abs(node) != float("inf")


def check_reading(r: dict[str, Any], now: datetime) -> None:
    """One record object as the cloud's bridge_record_error() accepts it."""
    assert set(r) == {
        "id",
        "sensor_id",
        "kind",
        "period_start",
        "period_end",
        "final",
        "revision",
        "source",
        "observed_at",
        "values",
    }
    every_leaf(r)
    assert isinstance(r["sensor_id"], str) and 1 <= len(r["sensor_id"]) <= 256
    assert r["kind"] in KIND_KEYS and r["source"] in ("poll", "mqtt", "http-push")
    start, end = stamp(r["period_start"], whole=True), stamp(r["period_end"])
    stamp(r["observed_at"])
    assert (
        r["id"]
        == hashlib.sha256(f"{r['sensor_id']}|{r['kind']}|{r['period_start']}".encode()).hexdigest()
    )
    assert (
        end >= start
        and type(r["final"]) is bool
        and type(r["revision"]) is int
        and r["revision"] >= 1
    )
    assert not r["final"] or end <= now + timedelta(minutes=10), (
        "final, yet the period has not ended"
    )
    v = r["values"]
    assert isinstance(v, dict) and set(v) == KIND_KEYS[r["kind"]]
    numbers: list[Any] = []
    if r["kind"] == "line_counts":
        assert "" not in v["lines"]
        for pair in [v["total"], *v["lines"].values()]:
            assert set(pair) == {"in", "out"}
            numbers += pair.values()
    if r["kind"] in ("region_counts", "occupancy"):
        assert "" not in v["regions"]
        numbers += v["regions"].values()
    if r["kind"] == "occupancy":
        numbers += [v["current_total"]] + ([] if v["max"] is None else [v["max"]])
    if r["kind"] == "live_counts":
        numbers += v.values()
        assert start == end and r["final"]
    for number in numbers:
        count(number)
    if r["kind"] == "event":
        assert isinstance(v["event"], str) and isinstance(v["payload"], dict)
    assert receiver_problem(r) is None, receiver_problem(r)


def stored(box: Outbox) -> list[dict[str, Any]]:
    db = sqlite3.connect(box.path)
    try:
        return [
            json.loads(body) for (body,) in db.execute("SELECT body FROM readings ORDER BY seq")
        ]
    finally:
        db.close()


# ---------------------------------------------------------------- the malformed-readings table


def counts(n: Any = 3) -> dict[str, Any]:
    return {"total": {"in": n, "out": 1}, "lines": {"1": {"in": n, "out": 1}}}


def hourly(
    sensor: str = "cam-1",
    start: datetime = T0,
    values: Any = None,
    final: bool = True,
    kind: str = "line_counts",
) -> Record:
    return Record(
        sensor,
        kind,
        start,
        start + timedelta(hours=1),
        counts() if values is None else values,
        final,
        "poll",
    )


FAR_FUTURE = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
MALFORMED = [
    (
        "sensor id of 257 characters",
        hourly("c" * 257),
        "sensor_id: must be a non-empty string of at most 256",
    ),
    (
        "year 5",
        hourly(start=datetime(5, 1, 1, tzinfo=UTC)),
        "period_start: 0005-01-01T00:00:00Z is not a plausible",
    ),
    (
        "year 1653",
        hourly(start=datetime(1653, 5, 1, tzinfo=UTC)),
        "period_start: 1653-05-01T00:00:00Z is not",
    ),
    (
        "year 9999, final",
        hourly(start=datetime(9999, 1, 1, tzinfo=UTC), final=True),
        "9999-01-01T00:00:00Z",
    ),
    ("final, ending in two days", hourly(start=FAR_FUTURE), "cannot be final yet"),
    ("beyond bigint", hourly(values=counts(2**63)), "beyond the cloud's 64-bit integers"),
    ("negative count", hourly(values=counts(-1)), 'values.total: must be {"in": int >= 0'),
    ("a float count", hourly(values=counts(2.0)), "values.total"),
    (
        "U+0000 in a line name",
        hourly(values={"total": {"in": 1, "out": 1}, "lines": {"a\x00": {"in": 1, "out": 1}}}),
        "U+0000",
    ),
    ("U+0000 in the sensor id", hourly("cam\x00"), "U+0000"),
    ("lone surrogate in the sensor id", hourly("cam\ud800"), "lone surrogate U+D800"),
    (
        "lone surrogate in an event",
        hourly(kind="event", values={"event": "x", "payload": {"k": "\udfff"}}),
        "values.payload.k: contains a lone surrogate U+DFFF",
    ),
    (
        "a set in an event",
        hourly(kind="event", values={"event": "x", "payload": {"k": {1}}}),
        "set is not JSON",
    ),
    (
        "nested 40 deep",
        hourly(
            kind="event",
            values={"event": "x", "payload": json.loads('{"a":' * 40 + "1" + "}" * 40)},
        ),
        "nested deeper than 32",
    ),
    (
        "values too big",
        hourly(kind="event", values={"event": "x", "payload": {"k": "x" * 300_000}}),
        "over the limit",
    ),
    (
        "unknown values key",
        hourly(values={**counts(), "extra": 1}),
        "needs exactly the keys lines, total",
    ),
]


def test_utc_text_pads_years_to_four_digits():
    assert utc_text(datetime(5, 1, 1, tzinfo=UTC)) == "0005-01-01T00:00:00Z"
    assert (
        utc_text(datetime(999, 12, 31, 23, 59, 59, 900_000, tzinfo=UTC)) == "0999-12-31T23:59:59Z"
    )


def test_malformed_readings_are_dead_letters_with_reasons_and_valid_ones_in_the_same_batch_are_stored(
    tmp_path,
):
    box = Outbox(tmp_path / "outbox.db")
    good = [hourly("cam-ok", T0), hourly("cam-ok", T0 + timedelta(hours=1))]
    result = box.put([good[0], *(record for _, record, _ in MALFORMED), good[1]])
    assert (result.added, result.refused) == (2, len(MALFORMED))
    assert [r["id"] for r in stored(box)] == [g.id for g in good]
    dead = list(reversed(box.dead_letters()))
    assert len(dead) == len(MALFORMED)
    for (name, _, reason), entry in zip(MALFORMED, dead, strict=True):
        assert reason in entry["reason"], (name, entry["reason"])
        assert (
            entry["origin"] == "outbox (poll)" and entry["preview"] and entry["record_id"] is None
        )
    assert box.stats().dead_letter == len(MALFORMED) and box.stats().pending == 2
    box.close()


HUGE = b'{"device_info": {"device_sn": "SN1"}, "current_total": ' + b"9" * 5000 + b"}"


@pytest.mark.parametrize(
    "fields, reason",
    [
        (
            {"time_info": {"time": "0005-01-01T00:00:00Z"}},
            "0005-01-01T00:00:00Z is not a plausible time",
        ),
        (
            {"time_info": {"time": "1653-06-01T12:00:00Z"}},
            "1653-06-01T12:00:00Z is not a plausible time",
        ),
        (
            {"time_info": {"time": "9999-12-31T23:59:59Z"}},
            "9999-12-31T23:59:59Z is not a plausible time",
        ),
        ({"time_info": {"time": "2099-12-31T23:59:59Z"}}, "cannot be final yet"),
        ({"current_total": 2**63}, "beyond the cloud's 64-bit integers"),
        (HUGE, "not JSON this bridge reads"),
        ({"device_info": {"device_sn": "S" * 300}}, "at most 256 characters (got 300)"),
        ({"device_info": {"device_sn": "\ud800"}}, "lone surrogate U+D800"),
        ({"device_info": {"device_sn": "SN\x00"}}, "U+0000"),
        ({"note": "\x00"}, "U+0000"),
    ],
)
def test_pushes_with_malformed_readings_are_dead_lettered_naming_the_problem(
    tmp_path, fields, reason
):
    body = {
        "device_info": {"device_sn": "SN1"},
        "current_total": 3,
        "time_info": {"time": 1736496000},
    }
    raw = fields if isinstance(fields, bytes) else json.dumps({**body, **fields}).encode()
    parsed = PushParser().parse(
        raw, source="mqtt", topic="milesight/a", origin="milesight/a", received_at=datetime.now(UTC)
    )
    assert not parsed.records and len(parsed.dead) == 1
    assert reason in parsed.dead[0].reason, parsed.dead[0].reason
    box = Outbox(tmp_path / "outbox.db")
    box.put(
        parsed.records, cursors=parsed.cursors, dead=parsed.dead
    )  # the dead letter itself is storable
    assert box.stats().dead_letter == 1 and stored(box) == []
    box.close()


# ---------------------------------------------------------------- the relay's commit path


def test_one_message_the_outbox_cannot_take_does_not_block_the_ones_behind_it(tmp_path):
    """A failure that is not the outbox's (here: a cursor with a lone surrogate) is that message's."""
    box = Outbox(tmp_path / "outbox.db")
    committer = Committer(box, Counters())
    answers: list[tuple[int, Any, str | None]] = []

    def incoming(n: int, parsed: Parsed) -> Incoming:
        return Incoming(parsed, lambda result, error: answers.append((n, result, error)))

    poison = Parsed(
        records=[hourly("cam-p")],
        cursors=[("cam\ud800", "first-seen:x", "2025")],
        origin="milesight/p",
        body=b'{"device_sn": "\\ud800"}',
    )
    batch = [
        incoming(0, poison),
        *(
            incoming(i, Parsed(records=[hourly("cam-1", T0 + timedelta(hours=i))]))
            for i in range(1, 26)
        ),
    ]
    assert committer.commit(batch) == []
    assert [n for n, _, error in answers if error is None] == list(range(26)), (
        "every message was answered"
    )
    assert len(stored(box)) == 25 and "cam-p" not in json.dumps(stored(box))
    [dead] = box.dead_letters()
    assert dead["origin"] == "milesight/p" and "UnicodeEncodeError" in dead["reason"]
    assert poison.dead and not poison.records, "an HTTP device hears the dead letter's reason"
    assert committer.error is None and committer.counters.dead_lettered == 1
    box.close()


def test_an_outbox_that_cannot_be_written_keeps_the_batch_waiting(tmp_path):
    box = Outbox(tmp_path / "outbox.db")
    committer = Committer(box, Counters())
    answers: list[Any] = []
    batch = [Incoming(Parsed(records=[hourly()]), lambda result, error: answers.append(error))]
    holder = sqlite3.connect(tmp_path / "outbox.db", timeout=0)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock...
    box._db.execute("PRAGMA busy_timeout = 50")  # ...for longer than the outbox waits
    try:
        assert committer.commit(batch) == batch and answers == []
        assert committer.error and "locked" in committer.error
    finally:
        holder.rollback()
        holder.close()
    assert committer.commit(batch) == [] and answers == [None] and committer.error is None
    box.close()


# ---------------------------------------------------------------- fuzzing the parser and the door

ODD = st.sampled_from(
    [
        "\x00",
        "\ud800",
        "a\udfffb",
        "",
        " ",
        "S" * 300,
        "0005-01-01T00:00:00Z",
        "1653-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "2025/01/10 08:00:00",
        "UTC+8:00",
        "Asia/Shanghai",
        "snapshot",
        "current_total",
        "1",
    ]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(2**62, 2**70)
    | st.integers(-(2**70), -1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | ODD
)
JSONISH = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6) | ODD, inner, max_size=4)
    ),
    max_leaves=16,
)
WALL = st.datetimes(datetime(1990, 1, 1), datetime(2110, 1, 1))


def mostly(good: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Plausible device data most of the time, so that readings get as far as the outbox too."""
    return st.one_of(good, good, good, odd)


TIMES = mostly(
    st.integers(1_500_000_000, 1_900_000_000)
    | WALL.map(lambda t: t.strftime("%Y/%m/%d %H:%M:%S"))
    | WALL.map(lambda t: t.isoformat() + "Z"),
    st.integers(-(10**13), 10**14) | ODD | JSONISH,
)
COUNTS = mostly(st.integers(0, 500), st.integers(-5, 2**64) | JSONISH)
REPORTS = st.fixed_dictionaries(
    {
        "device_info": st.fixed_dictionaries(
            {"device_sn": mostly(st.sampled_from(["SN-1", "6767E2183"]), JSONISH)}
        ),
        "time_info": st.fixed_dictionaries(
            {"time": TIMES},
            optional={
                "timezone": mostly(st.sampled_from(["UTC+8:00", "UTC-3:30", "Europe/Lisbon"]), ODD),
                "dst_status": st.booleans(),
                "start_time": TIMES,
                "end_time": TIMES,
            },
        ),
    },
    optional={
        "current_total": COUNTS,
        "max_counted": COUNTS,
        "numbering_regions": st.lists(COUNTS, max_size=3),
        "current_counted": st.lists(COUNTS, max_size=3),
        "line_periodic_data": mostly(
            st.lists(
                st.fixed_dictionaries(
                    {"line": COUNTS, "total": st.fixed_dictionaries({"in": COUNTS, "out": COUNTS})}
                ),
                max_size=3,
            ),
            JSONISH,
        ),
        "event": mostly(st.sampled_from(["Tamper", "Dwell"]), JSONISH),
        "extra": JSONISH,
        "timestamp": TIMES,
    },
)
BODIES = (
    REPORTS.map(lambda m: json.dumps(m).encode())
    | REPORTS.map(lambda m: json.dumps(m).encode())
    | st.dictionaries(st.text(max_size=8) | ODD, JSONISH).map(lambda m: json.dumps(m).encode())
    | JSONISH.map(lambda m: json.dumps(m).encode())
    | st.binary(max_size=200)
)
TOPICS = st.sampled_from(["milesight/entrance", "milesight/entrance", "t" * 300, "milesight/a\x00"])


@pytest.fixture(scope="module")
def fuzz_box(tmp_path_factory):
    """One outbox for all examples: a fresh file per example would only add fsyncs."""
    box = Outbox(tmp_path_factory.mktemp("fuzz") / "outbox.db")
    yield box
    box.close()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=BODIES, topic=TOPICS, source=st.sampled_from(["mqtt", "http-push"]))
def test_fuzz_the_push_parser_and_the_door_never_raise_and_store_only_valid_readings(
    fuzz_box, body, topic, source
):
    parsed = PushParser().parse(
        body, source=source, topic=topic, origin=topic, received_at=datetime.now(UTC)
    )
    assert parsed.records or parsed.dead
    assert all(isinstance(entry, DeadEntry) and entry.reason for entry in parsed.dead)
    result = fuzz_box.put(parsed.records, cursors=parsed.cursors, dead=parsed.dead)
    assert result.refused == 0, "the parser already refused what the door refuses"
    now = datetime.now(UTC)
    for reading in stored(fuzz_box):
        check_reading(reading, now)
