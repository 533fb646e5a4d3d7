"""One set of contract cases, run against every receiver the project ships (docs/ingest-contract.md).

The receivers are independent implementations of the same contract: the
simulated cloud (``sensor-bridge sim receiver``, started as its own process on
loopback) and the cloud routes (the Next.js handlers on Node, in front of a
real PostgreSQL with the migration applied). Each case sends the same bytes to
both and pins down one answer; where the contract lets a receiver choose (400
or 422, 401 or 403) the case accepts either, and says which each one uses
today in the expected values.

Payloads come from cloud_helpers (built from the contract, not from the
appliance's code). The cloud half skips, naming what is missing, on a machine
without PostgreSQL or Node.
"""

from __future__ import annotations

import json
import queue
import sqlite3
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from cloud_helpers import (
    CloudApi,
    FakeAdoptee,
    contract_headers,
    dollar_quoted,
    encode_body,
    make_batch,
    make_heartbeat,
    make_record,
    make_series,
    recent_period_start,
    record_id,
)
from conftest import CLI, REPO, free_port

pytest_plugins = ["cloud_helpers"]

TIMEOUT = 30
SIM_KEY = "conformance-key"
MALFORMED = (400, 422)
KEY_REJECTED = (401, 403)


@dataclass
class Receiver:
    """Where to send, with which key and bridge id, and what the receiver holds for that bridge."""

    name: str
    ingest_url: str
    heartbeat_url: str
    api_key: str
    bridge_id: str
    stored: Callable[[], dict[str, tuple[int, Any, str]]]  # id -> (revision, values, when stored)

    def post(
        self,
        batch: Any,
        *,
        gzipped: bool = False,
        headers: dict[str, str] | None = None,
        data: bytes | None = None,
    ) -> requests.Response:
        batch_id = batch.get("batch_id") if isinstance(batch, dict) else None
        sent = contract_headers(self.api_key, batch_id, gzipped=gzipped)
        sent.update(headers or {})
        body = data if data is not None else encode_body(batch, gzipped=gzipped)
        return requests.post(self.ingest_url, data=body, headers=sent, timeout=TIMEOUT)

    def batch(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        return make_batch(self.bridge_id, records)


# --------------------------------------------------------------------------
# The receivers
# --------------------------------------------------------------------------


class SimProcess:
    """``sensor-bridge sim receiver`` as a process on a loopback port, keeping readings in a SQLite file."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                *CLI,
                "sim",
                "receiver",
                "--port",
                str(self.port),
                "--api-key",
                SIM_KEY,
                "--db",
                str(db),
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self._wait_ready()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def _wait_ready(self) -> None:
        seen = []
        while True:
            try:
                line = self.lines.get(timeout=20)
            except queue.Empty:
                self.stop()
                raise AssertionError(f"sim receiver did not start: {''.join(seen)}") from None
            seen.append(line)
            if "Ctrl-C stops" in line:
                return

    def stored(self, bridge_id: str) -> dict[str, tuple[int, Any, str]]:
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as db:
            rows = db.execute(
                "SELECT id, revision, body, received_at FROM readings WHERE bridge_id = ?",
                (bridge_id,),
            ).fetchall()
        return {
            rid: (revision, json.loads(body)["values"], repr(at))
            for rid, revision, body, at in rows
        }

    def receiver(self) -> Receiver:
        base = f"http://127.0.0.1:{self.port}/api/bridge/v1"
        bridge_id = f"sim-{uuid.uuid4().hex[:12]}"
        return Receiver(
            "sim",
            f"{base}/ingest",
            f"{base}/heartbeat",
            SIM_KEY,
            bridge_id,
            lambda: self.stored(bridge_id),
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture(scope="module")
def sim_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimProcess]:
    sim = SimProcess(tmp_path_factory.mktemp("sim-receiver") / "readings.db")
    try:
        yield sim
    finally:
        sim.stop()


def cloud_receiver(api: CloudApi) -> Receiver:
    def stored() -> dict[str, tuple[int, Any, str]]:
        rows = api.query(
            f'select id, revision, "values" as vals, received_at::text || xmin::text as mark '
            f"from bridge_readings where bridge_id = '{api.bridge_id}'"
        )
        return {row[0]: (row[1], row[2], row[3]) for row in rows}

    return Receiver("cloud", api.ingest_url, api.heartbeat_url, api.api_key, api.bridge_id, stored)


@pytest.fixture(params=["sim", "cloud"])
def receiver(request: pytest.FixtureRequest) -> Receiver:
    """Each receiver the project ships, with a bridge of its own that has stored nothing yet."""
    if request.param == "sim":
        return request.getfixturevalue("sim_process").receiver()
    return cloud_receiver(request.getfixturevalue("cloud_api"))


@pytest.fixture(params=["sim", "cloud"])
def two_bridges(request: pytest.FixtureRequest) -> tuple[Receiver, Receiver]:
    """Two bridges (two stores) of the same receiver, each with a key of its own where the receiver has keys."""
    if request.param == "sim":
        sim = request.getfixturevalue("sim_process")
        return sim.receiver(), sim.receiver()
    api = request.getfixturevalue("cloud_api")
    return cloud_receiver(api), cloud_receiver(request.getfixturevalue("cloud_stack").api())


def unique_sensor() -> str:
    """A sensor id no other test uses, so one test's readings never meet another's."""
    return f"door-{uuid.uuid4().hex[:8]}"


# --------------------------------------------------------------------------
# Batches that are fine
# --------------------------------------------------------------------------


def test_good_batch_is_stored_and_answered_with_counts(receiver: Receiver) -> None:
    sensor = unique_sensor()
    records = [
        make_record(sensor, kind)
        for kind in ("line_counts", "region_counts", "live_counts", "occupancy", "event")
    ]
    answer = receiver.post(receiver.batch(records))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"accepted": 5, "rejected": []}
    held = receiver.stored()
    assert {rid: held[rid][:2] for rid in held} == {r["id"]: (1, r["values"]) for r in records}


NEW_KINDS: dict[str, dict[str, Any]] = {
    "line_totals": {"total": {"in": 120, "out": 99}, "lines": {"1": {"in": 120, "out": 99}}},
    "dwell": {"regions": {"1": {"avg": 4105, "max": 8465}}},
    "ambience": {
        "temperature_c": 23.8,
        "humidity_pct": 62,
        "co2_ppm": 936,
        "tvoc_iaq": 0.37,
        "pir": 1,
    },
    "occupancy": {
        "current_total": 10,
        "max": 12,
        "regions": {},
        "occupied": {"1": True, "2": False},
        "region_names": {"1": "Desk A", "2": "Desk B"},
    },
}
BAD_NEW_KINDS: list[tuple[str, dict[str, Any], str]] = [
    ("line_totals", {"total": {"in": 1, "out": -1}, "lines": {}}, "values.total:"),
    ("dwell", {"regions": {"1": {"avg": 1}}}, "values.regions:"),
    ("ambience", {}, "values:"),
    ("ambience", {"temperature_c": 21.5, "mood": 3}, "values:"),
    ("ambience", {"co2_ppm": "high"}, "values"),
    (
        "occupancy",
        {"current_total": 1, "max": None, "regions": {}, "occupied": {"1": 1}},
        "values.occupied:",
    ),
    ("occupancy", {"current_total": 1, "max": None, "regions": {}, "seats": 4}, "values:"),
]


def test_kinds_added_for_lorawan_and_totals_are_stored_and_checked(receiver: Receiver) -> None:
    """line_totals, dwell, ambience and occupancy's optional keys (docs/ingest-contract.md)."""
    sensor = unique_sensor()
    good = [make_record(sensor, kind, values=values) for kind, values in NEW_KINDS.items()]
    bad = [
        make_record(f"{sensor}-bad{i}", kind, values=values)
        for i, (kind, values, _) in enumerate(BAD_NEW_KINDS)
    ]
    answer = receiver.post(receiver.batch(good + bad))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["accepted"] == len(good), body
    assert [r["id"] for r in body["rejected"]] == [r["id"] for r in bad]
    for (_, _, field), rejected in zip(BAD_NEW_KINDS, body["rejected"], strict=True):
        assert rejected["error"].startswith(field), (receiver.name, rejected)
    held = receiver.stored()
    assert {rid: held[rid][1] for rid in held} == {r["id"]: r["values"] for r in good}


def test_two_bridges_may_name_their_sensors_alike(two_bridges: tuple[Receiver, Receiver]) -> None:
    """Every store may call its door entrance-1: a record id is scoped by the bridge that sent it.

    The id is sha256(sensor_id|kind|period_start), the same for both stores'
    readings of one hour; each bridge's is its own reading: stored, replayed
    and revised without touching the other's.
    """
    lisbon, porto = two_bridges
    start = recent_period_start(2)
    mine = make_record(
        "entrance-1", start=start, revision=1, values={"total": {"in": 7, "out": 6}, "lines": {}}
    )
    theirs = {**mine, "values": {"total": {"in": 70, "out": 60}, "lines": {}}}
    for bridge, record in ((lisbon, mine), (porto, theirs)):
        answer = bridge.post(bridge.batch([record]))
        assert (answer.status_code, answer.json()) == (200, {"accepted": 1, "rejected": []}), (
            bridge.name,
            answer.text,
        )
    assert lisbon.stored()[mine["id"]][:2] == (1, mine["values"])
    assert porto.stored()[mine["id"]][:2] == (1, theirs["values"])
    # the same bridge re-sending the same id is the same reading: nothing changes
    before = lisbon.stored(), porto.stored()
    again = porto.post(porto.batch([theirs]))
    assert (again.status_code, again.json()) == (200, {"accepted": 1, "rejected": []})
    assert (lisbon.stored(), porto.stored()) == before
    # a higher revision from one store replaces that store's reading only
    revised = {**theirs, "revision": 2, "values": {"total": {"in": 71, "out": 60}, "lines": {}}}
    assert porto.post(porto.batch([revised])).status_code == 200
    assert porto.stored()[mine["id"]][:2] == (2, revised["values"])
    assert lisbon.stored() == before[0]


def test_gzip_body_is_the_same_batch(receiver: Receiver) -> None:
    records = make_series(unique_sensor(), 3)
    answer = receiver.post(receiver.batch(records), gzipped=True)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"accepted": 3, "rejected": []}
    assert set(receiver.stored()) == {r["id"] for r in records}


def test_replayed_batch_gets_the_same_answer_and_changes_nothing(receiver: Receiver) -> None:
    batch = receiver.batch(make_series(unique_sensor(), 4))
    first = receiver.post(batch)
    assert first.status_code == 200, first.text
    before = receiver.stored()
    again = receiver.post(batch)  # a retry after a lost answer: same batch_id, same bytes
    assert (again.status_code, again.json()) == (200, first.json())
    assert receiver.stored() == before  # not even rewritten: the stored-at marks are the same


def test_lower_revision_after_a_higher_one_keeps_the_higher(receiver: Receiver) -> None:
    sensor, start = unique_sensor(), recent_period_start(3)
    higher = make_record(
        sensor, start=start, revision=3, values={"total": {"in": 30, "out": 3}, "lines": {}}
    )
    lower = make_record(
        sensor, start=start, revision=2, values={"total": {"in": 20, "out": 2}, "lines": {}}
    )
    assert receiver.post(receiver.batch([higher])).status_code == 200
    late = receiver.post(receiver.batch([lower]))
    # accepted (so the appliance forgets it) but stored nowhere
    assert (late.status_code, late.json()) == (200, {"accepted": 1, "rejected": []})
    assert receiver.stored()[higher["id"]][:2] == (3, higher["values"])
    newest = {**higher, "revision": 4, "values": {"total": {"in": 40, "out": 4}, "lines": {}}}
    assert receiver.post(receiver.batch([newest, lower])).json() == {"accepted": 2, "rejected": []}
    assert receiver.stored()[higher["id"]][:2] == (4, newest["values"])


# --------------------------------------------------------------------------
# Bad records inside a well-formed batch: 200, each named in "rejected"
# --------------------------------------------------------------------------

BAD_RECORDS: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("upper-case id", lambda r: r.update(id=r["id"].upper()), "id:"),
    (
        "id of another period",
        lambda r: r.update(id=record_id("x", "line_counts", r["period_start"])),
        "id:",
    ),
    ("unknown kind", lambda r: r.update(kind="people"), "kind:"),
    (
        "offset instead of Z",
        lambda r: r.update(period_start=r["period_start"].replace("Z", "+00:00")),
        "period_start:",
    ),
    (
        "fractional period_start",
        lambda r: r.update(period_start=r["period_start"].replace("Z", ".5Z")),
        "period_start:",
    ),
    ("end before start", lambda r: r.update(period_end="2000-01-01T00:00:00Z"), "period_end:"),
    ("final as text", lambda r: r.update(final="true"), "final:"),
    ("revision 0", lambda r: r.update(revision=0), "revision:"),
    ("unknown source", lambda r: r.update(source="ftp"), "source:"),
    ("observed_at local", lambda r: r.update(observed_at="2025-07-22 10:00:00"), "observed_at:"),
    ("extra record key", lambda r: r.update(tz="Europe/Lisbon"), "record: unknown key"),
    ("missing record key", lambda r: r.pop("source"), "record: missing key"),
    ("negative count", lambda r: r["values"]["total"].update({"in": -1}), "values.total:"),
    ("float count", lambda r: r["values"]["lines"]["1"].update({"out": 1.5}), "values.lines:"),
    ("values not an object", lambda r: r.update(values=[1, 2]), "values:"),
    (
        "line without a name",
        lambda r: r["values"].update(lines={"": {"in": 1, "out": 1}}),
        "values.lines:",
    ),
    ("revision beyond 64 bits", lambda r: r.update(revision=2**63), "revision:"),
    ("count beyond 64 bits", lambda r: r["values"]["total"].update({"in": 2**63}), "values.total:"),
    ("empty sensor_id", lambda r: r.update(sensor_id=""), "sensor_id:"),
]


def test_bad_records_are_rejected_by_id_and_the_good_ones_stored(receiver: Receiver) -> None:
    sensor = unique_sensor()
    good = make_record(sensor)
    records, expected = [good], []
    for i, (_, spoil, field) in enumerate(BAD_RECORDS):
        record = make_record(f"{sensor}-bad{i}")
        spoil(record)
        records.append(record)
        expected.append((record["id"], field))
    snapshot = make_record(sensor, "live_counts")
    snapshot["final"] = False
    records.append(snapshot)
    expected.append((snapshot["id"], "live_counts:"))

    answer = receiver.post(receiver.batch(records))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["accepted"] == 1
    assert [r["id"] for r in body["rejected"]] == [rid for rid, _ in expected]
    for (rid, field), rejected in zip(expected, body["rejected"], strict=True):
        assert rejected["error"].startswith(field), (receiver.name, rid, rejected)
    assert list(receiver.stored()) == [good["id"]]


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda b: b["records"][0].pop("id"), id="record without id"),
        pytest.param(lambda b: b["records"][0].update(id=7), id="id not a string"),
        pytest.param(lambda b: b["records"].append("not an object"), id="record not an object"),
    ],
)
def test_a_record_that_cannot_be_named_fails_the_whole_batch(
    receiver: Receiver, spoil: Callable[[dict[str, Any]], None]
) -> None:
    batch = receiver.batch(make_series(unique_sensor(), 2))
    spoil(batch)
    answer = receiver.post(batch)
    assert answer.status_code in MALFORMED, answer.text
    assert "records:" in answer.json()["error"]
    assert receiver.stored() == {}


# --------------------------------------------------------------------------
# Malformed batches, keys, sizes
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spoil", "field"),
    [
        pytest.param(
            lambda b: b.update(schema="sensor-bridge/ingest/v2"), "schema:", id="wrong schema"
        ),
        pytest.param(lambda b: b.pop("sent_at"), "", id="no sent_at"),
        pytest.param(lambda b: b.pop("schema"), "", id="no schema"),
        pytest.param(lambda b: b.update(sent_at="yesterday"), "sent_at:", id="sent_at not UTC"),
        pytest.param(lambda b: b.update(batch_id=""), "", id="empty batch_id"),
        pytest.param(lambda b: b.update(records=[]), "records:", id="no records"),
        pytest.param(lambda b: b.update(records={"a": 1}), "records:", id="records not an array"),
        pytest.param(lambda b: b.update(extra=1), "batch: unknown key", id="unknown envelope key"),
    ],
)
def test_malformed_batch_is_refused_whole(
    receiver: Receiver, spoil: Callable[[dict[str, Any]], None], field: str
) -> None:
    batch = receiver.batch(make_series(unique_sensor(), 2))
    spoil(batch)
    answer = receiver.post(batch)
    assert answer.status_code in MALFORMED, answer.text
    assert answer.json()["error"].startswith(field), answer.text
    assert receiver.stored() == {}


@pytest.mark.parametrize(
    ("data", "headers"),
    [
        pytest.param(b"{not json", {}, id="not JSON"),
        pytest.param(b"[]", {}, id="a JSON array"),
        pytest.param(None, {"Content-Type": "text/plain"}, id="text/plain"),
        pytest.param(b"\x1f\x8b\x08garbage", {"Content-Encoding": "gzip"}, id="broken gzip"),
        pytest.param(None, {"Content-Encoding": "br"}, id="brotli"),
        pytest.param(None, {"Idempotency-Key": ""}, id="no Idempotency-Key"),
        pytest.param(None, {"User-Agent": "curl/8"}, id="not sent by sensor-bridge"),
        pytest.param(
            None, {"Idempotency-Key": "another-batch"}, id="Idempotency-Key not the batch_id"
        ),
    ],
)
def test_malformed_request_is_refused_whole(
    receiver: Receiver, data: bytes | None, headers: dict[str, str]
) -> None:
    batch = receiver.batch(make_series(unique_sensor(), 1))
    answer = receiver.post(batch, data=data, headers=headers)
    assert answer.status_code in MALFORMED, (answer.status_code, answer.text)
    assert answer.json()["error"]
    assert receiver.stored() == {}


@pytest.mark.parametrize("authorization", ["", "Basic a2V5", "Bearer wrong-key", "Bearer"])
def test_missing_or_wrong_key_is_refused_and_nothing_stored(
    receiver: Receiver, authorization: str
) -> None:
    answer = receiver.post(
        receiver.batch(make_series(unique_sensor(), 1)), headers={"Authorization": authorization}
    )
    assert answer.status_code in KEY_REJECTED, answer.text
    assert receiver.api_key not in answer.text
    assert receiver.stored() == {}


def test_key_is_checked_before_the_batch(receiver: Receiver) -> None:
    # A wrong key must read as "key rejected" (keep everything, retry slowly), never as
    # "malformed" or "rejected" (which would make the appliance dead-letter good readings).
    # (A body that is not JSON at all is 400 on the cloud: it needs the body's bridge_id to
    # know whose key to check. The appliance never sends one.)
    batch = receiver.batch(make_series(unique_sensor(), 1))
    batch["schema"] = "sensor-bridge/ingest/v2"
    answer = receiver.post(batch, headers={"Authorization": "Bearer wrong-key"})
    assert answer.status_code in KEY_REJECTED, answer.text
    spoiled = receiver.batch(make_series(unique_sensor(), 1))
    spoiled["records"][0]["kind"] = "people"
    answer = receiver.post(spoiled, headers={"Authorization": "Bearer wrong-key"})
    assert answer.status_code in KEY_REJECTED, answer.text


def test_bearer_scheme_is_case_insensitive(receiver: Receiver) -> None:
    answer = receiver.post(
        receiver.batch(make_series(unique_sensor(), 1)),
        headers={"Authorization": f"bearer {receiver.api_key}"},
    )
    assert answer.status_code == 200, answer.text


def test_oversize_body_is_413(receiver: Receiver) -> None:
    padding = b'{"schema": "' + b"x" * (5 * 1024 * 1024) + b'"}'
    answer = receiver.post({"batch_id": "big"}, data=padding)
    assert answer.status_code == 413, answer.text
    streamed = requests.post(
        receiver.ingest_url,
        data=(b" " * (1024 * 1024) for _ in range(5)),
        timeout=TIMEOUT,
        headers=contract_headers(receiver.api_key, "chunked"),
    )  # no Content-Length
    assert streamed.status_code == 413, streamed.text
    bomb = encode_body(
        {"schema": "0" * (17 * 1024 * 1024)}, gzipped=True
    )  # small sent, huge inflated
    answer = receiver.post({"batch_id": "bomb"}, data=bomb, headers={"Content-Encoding": "gzip"})
    assert answer.status_code == 413, answer.text
    assert receiver.stored() == {}


def test_chunked_body_is_read_like_any_other(receiver: Receiver) -> None:
    batch = receiver.batch(make_series(unique_sensor(), 2))
    data = encode_body(batch)
    answer = requests.post(
        receiver.ingest_url,
        data=(data[i : i + 100] for i in range(0, len(data), 100)),
        headers=contract_headers(receiver.api_key, batch["batch_id"]),
        timeout=TIMEOUT,
    )
    assert (answer.status_code, answer.json()) == (200, {"accepted": 2, "rejected": []})


def test_too_many_records_is_413_so_the_appliance_halves(receiver: Receiver) -> None:
    # Both receivers take at most 2000 records; the appliance sends 500 by default.
    many = receiver.batch(make_series(unique_sensor(), 2001, first=recent_period_start(3000)))
    answer = receiver.post(many, gzipped=True)
    assert answer.status_code == 413, answer.text
    assert receiver.stored() == {}
    assert receiver.post(receiver.batch(many["records"][:1000]), gzipped=True).status_code == 200


# --------------------------------------------------------------------------
# Heartbeat
# --------------------------------------------------------------------------


def test_heartbeat_is_accepted_with_or_without_content_type(receiver: Receiver) -> None:
    heartbeat = make_heartbeat(receiver.bridge_id, state="degraded")
    for headers in (
        contract_headers(receiver.api_key),
        {"Authorization": f"Bearer {receiver.api_key}"},
        contract_headers(receiver.api_key, gzipped=True),
    ):
        answer = requests.post(
            receiver.heartbeat_url,
            headers=headers,
            timeout=TIMEOUT,
            data=encode_body(heartbeat, gzipped="Content-Encoding" in headers),
        )
        assert answer.status_code == 200, (headers, answer.text)
        assert answer.json()["ok"] is True


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"state": "sleepy"}, "state:"),
        ({"schema": "sensor-bridge/heartbeat/v2"}, "schema:"),
        ({"uptime_s": "long"}, "uptime_s:"),
        ({"outbox": {"pending": "many"}}, "outbox:"),
        ({"wireguard_public_key": 42}, "wireguard_public_key:"),
        ({"last_update": ["rolled back"]}, "last_update:"),
    ],
)
def test_malformed_heartbeat_is_refused(
    receiver: Receiver, change: dict[str, Any], field: str
) -> None:
    heartbeat = {**make_heartbeat(receiver.bridge_id), **change}
    answer = requests.post(
        receiver.heartbeat_url,
        data=encode_body(heartbeat),
        timeout=TIMEOUT,
        headers=contract_headers(receiver.api_key),
    )
    assert answer.status_code in MALFORMED, answer.text
    assert answer.json()["error"].startswith(field), answer.text


def test_heartbeat_with_the_optional_fleet_keys_is_accepted(receiver: Receiver) -> None:
    heartbeat = {
        **make_heartbeat(receiver.bridge_id),
        "wireguard_public_key": "x" * 43 + "=",
        "last_update": "update to 0.3.0 failed: the collector has not reported; rolled back to 0.2.0",
    }
    answer = requests.post(
        receiver.heartbeat_url,
        data=encode_body(heartbeat),
        timeout=TIMEOUT,
        headers=contract_headers(receiver.api_key),
    )
    assert answer.status_code == 200, answer.text


def test_heartbeat_with_wrong_key_is_refused(receiver: Receiver) -> None:
    answer = requests.post(
        receiver.heartbeat_url,
        data=encode_body(make_heartbeat(receiver.bridge_id)),
        headers=contract_headers("wrong-key"),
        timeout=TIMEOUT,
    )
    assert answer.status_code in KEY_REJECTED, answer.text


# --------------------------------------------------------------------------
# Adoption and config from the cloud (docs/ingest-contract.md, "Adoption")
# --------------------------------------------------------------------------


@dataclass
class Adopter:
    """A receiver's adoption side: its origin, and the cloud-only actions (mint a token, claim, set a config)."""

    name: str
    origin: str
    new_token: Callable[[], str]
    revoke_token: Callable[[str], None]
    claim: Callable[[str, str, str], str]  # code, label, timezone -> bridge id
    set_config: Callable[[str, dict[str, Any]], int]

    def enroll(self, token: str, body: Any) -> requests.Response:
        return requests.post(
            f"{self.origin}/api/bridge/v1/enroll",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
            timeout=TIMEOUT,
        )

    def config(self, bridge_id: str, key: str, etag: str | None = None) -> requests.Response:
        headers = {"Authorization": f"Bearer {key}", "X-Bridge-Id": bridge_id}
        if etag is not None:
            headers["If-None-Match"] = etag
        return requests.get(f"{self.origin}/api/bridge/v1/config", headers=headers, timeout=TIMEOUT)

    def heartbeat(self, bridge_id: str, key: str, **extra: Any) -> requests.Response:
        return requests.post(
            f"{self.origin}/api/bridge/v1/heartbeat",
            data=encode_body({**make_heartbeat(bridge_id), **extra}),
            headers=contract_headers(key),
            timeout=TIMEOUT,
        )


def _sim_adopter() -> Iterator[Adopter]:
    from appliance.sim.receiver import SimReceiver

    if not hasattr(SimReceiver, "claim"):
        pytest.skip(
            "the Python reference receiver (appliance/sim/receiver.py) has no adoption routes yet "
            "(helper fleet-bridge adds enroll/config there)"
        )
    sim = SimReceiver().start()
    try:
        yield Adopter(
            "sim",
            sim.origin,
            sim.new_enroll_token,
            sim.revoke_enroll_token,
            lambda code, label, zone: sim.claim(code, label=label, timezone=zone),
            sim.set_config,
        )
    finally:
        sim.stop()


def _cloud_adopter(stack: Any) -> Adopter:
    def revoke(token: str) -> None:
        stack.bridges("enroll-token", "revoke", token)

    def claim(code: str, label: str, zone: str) -> str:
        return stack.bridges("claim", code, "--label", label, "--timezone", zone).stdout.strip()

    def set_config(bridge_id: str, document: dict[str, Any]) -> int:
        rows = stack.pg.query(
            f"select public.set_bridge_config('{bridge_id}', {dollar_quoted(json.dumps(document))}::jsonb,"
            " 'conformance') as version"
        )
        return int(rows[0][0])

    return Adopter(
        "cloud",
        stack.base_url,
        lambda: stack.bridges("enroll-token", "new").stdout.strip(),
        revoke,
        claim,
        set_config,
    )


@pytest.fixture(params=["sim", "cloud"])
def adopter(request: pytest.FixtureRequest) -> Iterator[Adopter]:
    """Each receiver's adoption routes, with nothing enrolled or claimed yet."""
    if request.param == "sim":
        yield from _sim_adopter()
        return
    stack = request.getfixturevalue("cloud_stack")
    stack.reset()
    yield _cloud_adopter(stack)


def test_enroll_then_claim_then_the_bridge_learns_its_id(adopter: Adopter) -> None:
    token = adopter.new_token()
    bridge = FakeAdoptee()
    first = adopter.enroll(token, bridge.body())
    assert first.status_code == 202, first.text
    assert first.json()["state"] == "unclaimed" and first.json()["retry_after_s"] > 0
    assert adopter.enroll(token, bridge.body()).status_code == 202  # a refresh
    bridge_id = adopter.claim(bridge.code, "Lisbon Chiado", "Europe/Lisbon")
    claimed = adopter.enroll(token, bridge.body())
    assert claimed.status_code == 200, claimed.text
    assert claimed.json() == {
        "state": "claimed",
        "bridge_id": bridge_id,
        "timezone": "Europe/Lisbon",
        "label": "Lisbon Chiado",
    }


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"schema": "sensor-bridge/enroll/v2"}, "schema"),
        ({"serial": ""}, "serial"),
        ({"macs": ["dc:a6:32"]}, "macs"),
        ({"credential_sha256": "not-a-hash"}, "credential_sha256"),
        ({"claim_code_sha256": 7}, "claim_code_sha256"),
    ],
)
def test_malformed_enroll_is_refused_naming_the_key(
    adopter: Adopter, change: dict[str, Any], key: str
) -> None:
    answer = adopter.enroll(adopter.new_token(), FakeAdoptee().body(**change))
    assert answer.status_code == 400, answer.text
    assert key in answer.json()["error"], answer.text


def test_revoked_enroll_token_is_refused(adopter: Adopter) -> None:
    token = adopter.new_token()
    adopter.revoke_token(token)
    assert adopter.enroll(token, FakeAdoptee().body()).status_code == 401
    assert adopter.enroll("sbe_unknown", FakeAdoptee().body()).status_code == 401


def test_config_route_etag_and_who_may_read_it(adopter: Adopter) -> None:
    token = adopter.new_token()
    bridge = FakeAdoptee()
    assert adopter.enroll(token, bridge.body()).status_code == 202
    bridge_id = adopter.claim(bridge.code, "Porto", "Europe/Lisbon")
    assert adopter.config(bridge_id, bridge.credential).status_code == 404
    document = {"bridge": {"timezone": "Europe/Lisbon"}, "sensors": []}
    version = adopter.set_config(bridge_id, document)
    served = adopter.config(bridge_id, bridge.credential)
    assert served.status_code == 200, served.text
    assert served.headers["ETag"] == f'"{version}"'
    body = served.json()
    assert body["schema"] == "sensor-bridge/config/v1" and body["bridge_id"] == bridge_id
    assert body["version"] == version and body["config"] == document
    assert adopter.config(bridge_id, bridge.credential, f'"{version}"').status_code == 304
    assert adopter.config(bridge_id, token).status_code in KEY_REJECTED
    assert adopter.heartbeat(bridge_id, token).status_code in KEY_REJECTED


def test_heartbeat_names_the_wanted_version_never_a_refused_one(adopter: Adopter) -> None:
    token = adopter.new_token()
    bridge = FakeAdoptee()
    assert adopter.enroll(token, bridge.body()).status_code == 202
    bridge_id = adopter.claim(bridge.code, "Faro", "Europe/Lisbon")
    first = adopter.set_config(bridge_id, {"sensors": []})
    second = adopter.set_config(bridge_id, {"sensors": [], "update": {"window": "03:00-05:00"}})
    answer = adopter.heartbeat(
        bridge_id,
        bridge.credential,
        config_source="cloud",
        config={"version": first, "status": "applied", "running": first},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["config_version"] == second
    refused = adopter.heartbeat(
        bridge_id,
        bridge.credential,
        config_source="cloud",
        config={
            "version": second,
            "status": "rolled_back",
            "running": first,
            "error": "camera 401",
        },
    )
    assert refused.json()["config_version"] == first
    assert adopter.config(bridge_id, bridge.credential).json()["version"] == first
