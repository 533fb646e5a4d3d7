"""Milesight LoRaWAN uplinks: the vendor's published examples, what each network server wraps them in,
the readings they become, and generated frames (sources/lorawan, docs/milesight.md "LoRaWAN").

Vectors are data (tests/data/milesight_lorawan_vectors.json, each with its source). Generated frames
are built here from the documented layouts (a table in this file, written from the vendor's pages, not
imported from the decoders) and must decode to the values put in, and become records the cloud takes.
"""

from __future__ import annotations

import base64
import json
import struct
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.config import MqttDevice
from appliance.records import refusal
from appliance.sources.lorawan import MODELS, FrameError, decode
from appliance.sources.milesight_push import PushParser

VECTORS = json.loads(
    (Path(__file__).parent / "data" / "milesight_lorawan_vectors.json").read_text()
)["vectors"]
RECEIVED = datetime(2025, 7, 1, 12, 0, 0, tzinfo=UTC)
EUI = "24e124136b502217"


def parse(body: dict[str, Any], devices: list[MqttDevice] | None = None, source: str = "mqtt"):
    parser = PushParser(devices or [], "UTC")
    return parser.parse(
        json.dumps(body).encode(),
        source=source,
        topic="milesight/ug67/uplink",
        origin="milesight/ug67/uplink",
        received_at=RECEIVED,
    )


def by_kind(result) -> dict[str, dict[str, Any]]:
    assert not result.dead, result.dead
    return {r.kind: r.wire() for r in result.records}


def ug6x(frame: str, **extra: Any) -> dict[str, Any]:
    """What a UG65/UG67's embedded network server publishes (Data Transmission, MQTT or HTTP)."""
    return {
        "applicationID": "1",
        "applicationName": "store",
        "deviceName": "door",
        "devEUI": EUI,
        "time": "2025-07-01T11:59:58.123456Z",
        "fCnt": 7,
        "fPort": 85,
        "data": base64.b64encode(bytes.fromhex(frame)).decode(),
        **extra,
    }


# ---------------------------------------------------------------- the vendor's examples


@pytest.mark.parametrize(
    "vector", VECTORS, ids=[f"{v['model']}-{v['source'].split(', ')[-1]}" for v in VECTORS]
)
def test_vendor_published_example_decodes_to_the_published_values(vector):
    assert (
        decode(vector["model"], bytes.fromhex(vector["hex"].replace(" ", "")), 85)
        == vector["values"]
    )


def test_every_configurable_model_has_a_layout_and_vectors():
    # [[mqtt.devices]] model accepts exactly lorawan.MODELS (one list, relay_tables.py)
    assert {v["model"] for v in VECTORS} == set(MODELS)


# ---------------------------------------------------------------- envelopes -> readings


def test_ug6x_uplink_of_a_vs133_becomes_period_counts_and_running_totals():
    devices = [MqttDevice("door-1", dev_eui="24:E1:24:13:6B:50:22:17", model="vs133", period_s=300)]
    frame = "03D248000000 04D2C8000000 05CC03000200".replace(" ", "")
    kinds = by_kind(parse(ug6x(frame), devices))
    assert set(kinds) == {"line_counts", "line_totals"}
    counts, totals = kinds["line_counts"], kinds["line_totals"]
    assert counts["sensor_id"] == "door-1" and counts["source"] == "mqtt"
    assert (counts["period_start"], counts["period_end"]) == (
        "2025-07-01T11:54:58Z",
        "2025-07-01T11:59:58Z",
    )
    assert counts["values"] == {"total": {"in": 3, "out": 2}, "lines": {"1": {"in": 3, "out": 2}}}
    assert totals["period_start"] == totals["period_end"] == "2025-07-01T11:59:58Z"
    assert totals["values"] == {
        "total": {"in": 72, "out": 200},
        "lines": {"1": {"in": 72, "out": 200}},
    }


def test_ug6x_with_its_payload_codec_on_sends_decoded_values_that_map_the_same():
    decoded = {
        "devEUI": EUI,
        "time": "2025-07-01T11:59:58Z",
        "fPort": 85,
        "temperature": 23.8,
        "humidity": 62,
        "pir": "trigger",
        "co2": 936,
        "tvoc": 0.37,
    }
    kinds = by_kind(parse(decoded))  # no [[mqtt.devices]] entry: the sensor id is the DevEUI
    assert kinds["ambience"]["sensor_id"] == EUI
    assert kinds["ambience"]["values"] == {
        "temperature_c": 23.8,
        "humidity_pct": 62,
        "pir": 1,
        "co2_ppm": 936,
        "tvoc_iaq": 0.37,
    }


def test_chirpstack_v4_uplink_event_with_the_model_in_its_device_profile():
    body = {
        "deduplicationId": "3ac7e3c4",
        "time": "2025-07-01T11:59:58.987654321Z",
        "deviceInfo": {
            "tenantId": "t",
            "applicationId": "a",
            "deviceProfileName": "Milesight VS330",
            "deviceName": "stall-3",
            "devEui": EUI,
        },
        "devAddr": "00189440",
        "fCnt": 10,
        "fPort": 85,
        "data": base64.b64encode(bytes.fromhex("01756202820F00038E01")).decode(),
    }
    kinds = by_kind(parse(body))
    assert kinds["occupancy"]["values"] == {
        "current_total": 1,
        "max": None,
        "regions": {},
        "occupied": {"1": True},
    }
    assert kinds["ambience"]["values"] == {"battery_pct": 98, "distance_mm": 15}
    assert kinds["occupancy"]["period_start"] == "2025-07-01T11:59:58Z"


def test_the_things_stack_v3_uplink_with_history_dated_by_its_own_timestamps():
    body = {
        "end_device_ids": {
            "device_id": "passage",
            "application_ids": {"application_id": "store"},
            "dev_eui": EUI.upper(),
        },
        "received_at": "2025-07-01T11:59:59Z",
        "uplink_message": {
            "f_port": 85,
            "f_cnt": 3,
            "received_at": "2025-07-01T11:59:58Z",
            "frm_payload": base64.b64encode(
                bytes.fromhex("20CE7B3AF164000B00040020CEFF3DF16401070002001D000800")
            ).decode(),
            "version_ids": {"brand_id": "milesight-iot", "model_id": "vs350"},
        },
    }
    devices = [MqttDevice("passage-1", dev_eui=EUI, period_s=900)]
    result = parse(body, devices)
    assert not result.dead, result.dead
    records = {(r.kind, r.wire()["period_end"]): r.wire() for r in result.records}
    first = records[
        ("line_counts", "2023-09-01T01:12:27Z")
    ]  # 1693530747: its own time, not the uplink's
    assert first["period_start"] == "2023-09-01T00:57:27Z"  # the configured 900 s before it
    assert first["values"] == {"total": {"in": 11, "out": 4}, "lines": {"1": {"in": 11, "out": 4}}}
    assert records[("line_totals", "2023-09-01T01:27:27Z")]["values"]["total"] == {
        "in": 29,
        "out": 8,
    }
    stamps = {(r.kind, r.wire()["period_end"]) for r in result.records}
    assert stamps == {
        ("line_counts", "2023-09-01T01:12:27Z"),
        ("line_counts", "2023-09-01T01:27:27Z"),
        ("line_totals", "2023-09-01T01:27:27Z"),
    }


def test_vs121_people_count_with_region_flags_becomes_occupancy():
    devices = [MqttDevice("office", dev_eui=EUI, model="vs121")]
    kinds = by_kind(parse(ug6x("04C9030800A106CD05"), devices))
    assert kinds["occupancy"]["values"] == {
        "current_total": 3,
        "max": 5,
        "regions": {},
        "occupied": {str(n): n in (1, 6, 8) for n in range(1, 9)},
    }


def test_http_forwarding_is_the_same_json(tmp_path):
    devices = [MqttDevice("door-1", dev_eui=EUI, model="vs135")]
    result = parse(ug6x("0FE302100709"), devices, source="http-push")
    record = by_kind(result)["occupancy"]
    assert record["source"] == "http-push" and record["values"]["regions"] == {
        "1": 2,
        "2": 16,
        "3": 7,
        "4": 9,
    }
    assert record["values"]["current_total"] == 34


@pytest.mark.parametrize(
    "frame, model, reason",
    [
        ("03D24800", "vs133", "byte 0: line 1 total in needs 4 data bytes, the frame has 2 left"),
        ("0FE3021007090A", "vs133", "byte 6: a lone byte 0x0A"),
        ("7777010203", "vs350", "byte 0: channel 0x77 type 0x77 is not in the VS350 layout"),
        ("20CE7B3AF16402", "vs350", "history data type 2 is not 0 or 1"),
        ("", "am307", "carries no data"),
    ],
)
def test_a_frame_that_breaks_its_layout_is_dead_lettered_with_the_reason(frame, model, reason):
    result = parse(ug6x(frame), [MqttDevice("x", dev_eui=EUI, model=model)])
    assert not result.records and len(result.dead) == 1
    assert reason in result.dead[0].reason, result.dead[0].reason


@pytest.mark.parametrize(
    "body, reason",
    [
        (ug6x("017564"), "its model is not known"),  # no entry, no hint: cannot guess a layout
        (dict(ug6x("017564"), devEUI="24e1"), "is not 16 hex digits"),
        (dict(ug6x("017564"), data="***"), "is not base64"),
        (dict(ug6x("017564"), time="yesterday"), "not an RFC 3339 time"),
        (dict(ug6x("017564"), fPort=86), "fPort 86"),
    ],
)
def test_an_uplink_that_cannot_be_read_says_what_to_do(body, reason):
    devices = (
        [] if reason == "its model is not known" else [MqttDevice("x", dev_eui=EUI, model="am307")]
    )
    result = parse(body, devices)
    assert not result.records and reason in result.dead[0].reason, result.dead


# ---------------------------------------------------------------- generated frames

# (id, type) -> fields (name, struct code, divisor), written from the vendor's "Payload" tables.
U8, U16, I16, U32 = "B", "H", "h", "I"
BATTERY = {(0x01, 0x75): [("battery", U8, 1)]}
TEMPERATURE = {(0x03, 0x67): [("temperature", I16, 10)]}
SPEC: dict[str, dict[tuple[int, int], list[tuple[str, str, float]]]] = {
    "vs133": {
        **{(0x03 + 3 * (n - 1), 0xD2): [(f"line_{n}_total_in", U32, 1)] for n in range(1, 5)},
        **{(0x04 + 3 * (n - 1), 0xD2): [(f"line_{n}_total_out", U32, 1)] for n in range(1, 5)},
        **{
            (0x05 + 3 * (n - 1), 0xCC): [
                (f"line_{n}_period_in", U16, 1),
                (f"line_{n}_period_out", U16, 1),
            ]
            for n in range(1, 5)
        },
        (0x0F, 0xE3): [(f"region_{n}_count", U8, 1) for n in range(1, 5)],
    },
    "vs350": {
        **BATTERY,
        **TEMPERATURE,
        (0x04, 0xCC): [("total_in", U16, 1), ("total_out", U16, 1)],
        (0x05, 0xCC): [("period_in", U16, 1), ("period_out", U16, 1)],
    },
    "vs121": {
        (0x05, 0xCC): [("people_in", U16, 1), ("people_out", U16, 1)],
        (0x06, 0xCD): [("people_count_max", U8, 1)],
        (0x07, 0xD5): [(f"region_{n}_count", U8, 1) for n in range(1, 9)],
        (0x0D, 0xCC): [("people_total_in", U16, 1), ("people_total_out", U16, 1)],
        **{
            (0x09 + i, 0xDA): [(f"{a}_to_{b}", U16, 1) for b in "abcd"]
            for i, a in enumerate("abcd")
        },
    },
    "vs330": {**BATTERY, (0x02, 0x82): [("distance", U16, 1)]},
    "am307": {
        **BATTERY,
        **TEMPERATURE,
        (0x04, 0x68): [("humidity", U8, 2)],
        (0x06, 0xCB): [("light_level", U8, 1)],
        (0x07, 0x7D): [("co2", U16, 1)],
        (0x08, 0x7D): [("tvoc", U16, 100)],
        (0x09, 0x73): [("pressure", U16, 10)],
    },
    "am319": {
        **BATTERY,
        **TEMPERATURE,
        (0x04, 0x68): [("humidity", U8, 2)],
        (0x07, 0x7D): [("co2", U16, 1)],
        (0x0A, 0x7D): [("hcho", U16, 100)],
        (0x0B, 0x7D): [("pm2_5", U16, 1)],
        (0x0C, 0x7D): [("pm10", U16, 1)],
    },
}
SPEC["vs135"] = SPEC["vs133"]
LIMITS = {U8: (0, 255), U16: (0, 65535), I16: (-32768, 32767), U32: (0, 2**32 - 1)}
GENERATED: dict[str, int] = {}  # frames checked per model, for the closing report


@st.composite
def frames(draw: Any, model: str) -> tuple[bytes, dict[str, Any]]:
    """A valid frame of ``model`` (channels in any order, each once) and the values it must decode to."""
    keys = draw(st.lists(st.sampled_from(sorted(SPEC[model])), min_size=1, max_size=6, unique=True))
    frame, expected = b"", {}
    for key in keys:
        frame += bytes(key)
        for name, code, divisor in SPEC[model][key]:
            raw = draw(st.integers(*LIMITS[code]))
            frame += struct.pack("<" + code, raw)
            expected[name] = raw if divisor == 1 else round(raw / divisor, 2)
    return frame, expected


@pytest.mark.parametrize("model", sorted(SPEC))
def test_generated_frames_decode_to_their_values_and_become_records_the_cloud_takes(model):
    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(frames(model))
    def check(case: tuple[bytes, dict[str, Any]]) -> None:
        frame, expected = case
        assert decode(model, frame, 85) == expected
        result = parse(ug6x(frame.hex()), [MqttDevice("gen", dev_eui=EUI, model=model)])
        assert not result.dead, result.dead
        assert result.records and all(refusal(r, RECEIVED) is None for r in result.records)
        GENERATED[model] = GENERATED.get(model, 0) + 1

    check()


@pytest.mark.parametrize("model", sorted(MODELS))
def test_any_bytes_are_decoded_or_refused_never_a_crash(model):
    @settings(max_examples=150, deadline=None)
    @given(st.binary(max_size=40))
    def check(frame: bytes) -> None:
        try:
            decode(model, frame, 85)
        except FrameError:
            pass
        result = parse(ug6x(frame.hex()), [MqttDevice("fuzz", dev_eui=EUI, model=model)])
        assert bool(result.records) != bool(result.dead)  # stored, or dead-lettered with a reason

    check()
