"""Milesight LoRaWAN uplinks: the vendor's published examples, what each network server wraps them in,
the readings they become, and generated frames (sources/lorawan, docs/milesight.md "LoRaWAN").

Vectors are data (tests/data/milesight_lorawan_vectors.json, each with its source). Generated frames
are built here from the documented layouts (a table in this file, written from the vendor's pages, not
imported from the decoders) and must decode to the values put in, and become records the cloud takes.
"""

from __future__ import annotations

import base64
import json
import re
import struct
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.config import MqttDevice
from appliance.push.parser import PushParser
from appliance.records import refusal
from appliance.sources.lorawan import MODELS, FrameError, decode

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


def vendor_names(model: str, values: dict[str, Any]) -> dict[str, Any]:
    """This project's names mapped back to the vendor decoder's (docs/milesight.md, "Names that
    differ"): TVOC in µg/m³ is ``tvoc`` there; the VS121's dwell times carry no region there."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        dwell = re.fullmatch(r"region_\d+_(avg|max)_dwell", key)
        if key == "tvoc_ugm3":
            out["tvoc"] = value
        elif model == "vs121" and dwell:
            out[f"dwell_time_{dwell.group(1)}"] = value
        elif key == "history":
            out[key] = [vendor_names(model, entry) for entry in value]
        else:
            out[key] = value
    return out


@pytest.mark.parametrize(
    "vector", VECTORS, ids=[f"{v['model']}-{v['source'].replace(' ', '')}" for v in VECTORS]
)
def test_vendor_published_example_decodes_to_the_vendor_decoders_values(vector):
    decoded = decode(vector["model"], bytes.fromhex(vector["hex"].replace(" ", "")), 85)
    assert vendor_names(vector["model"], decoded) == {
        **vector["values"],
        **vector.get("beyond_vendor", {}),
    }


def test_every_published_example_of_every_model_is_a_vector_with_its_source():
    sources = {(v["model"], v["source"].split(",")[0]) for v in VECTORS}
    for model in MODELS:
        assert any(m == model and s.endswith("README.md") for m, s in sources), model
        assert any(m == model and s.endswith("-codec.json") for m, s in sources), model
    assert all(re.fullmatch(r"[0-9a-f]{40}", v["commit"]) for v in VECTORS)


def test_versions_print_as_the_vendor_prints_them():
    assert decode("vs133", bytes.fromhex("FF0113 FF090101 FF1F01000003".replace(" ", ""))) == {
        "ipso_version": "v1.3",
        "hardware_version": "v1.1",
        "firmware_version": "v1.0.0.3",
    }
    assert decode("am307", bytes.fromhex("FF0101 FF090110 FF0A0114 FFFF0100".replace(" ", ""))) == {
        "ipso_version": "v0.1",
        "hardware_version": "v1.1",
        "firmware_version": "v1.14",
        "tsl_version": "v1.0",
    }
    assert decode("vs121", bytes.fromhex("FF0101FF090100FF1F1F07004B"))["firmware_version"] == (
        "31.7.0.75"
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
        ("7777010203", "vs350", "byte 0: channel 0x77 type 0x77 is not in the VS350 layout"),
        ("20CE7B3AF16402", "vs350", "history data type 2 is not 0 or 1"),
        ("", "am307", "carries no data"),
    ],
)
def test_a_frame_that_breaks_its_layout_at_its_first_entry_is_dead_lettered(frame, model, reason):
    result = parse(ug6x(frame), [MqttDevice("x", dev_eui=EUI, model=model)])
    assert not result.records and len(result.dead) == 1
    assert reason in result.dead[0].reason, result.dead[0].reason


@pytest.mark.parametrize(
    "frame, model, byte, reason",
    [
        ("0FE3021007090A", "vs133", 6, "a lone byte 0x0A where a channel id and type belong"),
        (
            "05CC03000200 7777010203",
            "vs135",
            6,
            "channel 0x77 type 0x77 is not in the VS135 layout",
        ),
        ("017564 20CE7B3AF16402", "vs350", 3, "history: history data type 2 is not 0 or 1"),
        ("0367EE00 087D25", "am307", 4, "tvoc (iaq) needs 2 data bytes, the frame has 1 left"),
    ],
)
def test_a_frame_with_an_unknown_entry_keeps_what_came_before_and_sends_the_rest_as_an_event(
    frame, model, byte, reason
):
    frame = frame.replace(" ", "")
    result = parse(ug6x(frame), [MqttDevice("x", dev_eui=EUI, model=model)])
    kinds = by_kind(result)  # nothing dead-lettered
    assert set(kinds) - {"event"}, "the readings before the unknown entry are stored"
    event = kinds["event"]["values"]
    assert event["event"] == "lorawan frame partly decoded"
    assert event["payload"]["undecoded"] == {
        "model": model,
        "frame": frame.lower(),
        "byte": byte,
        "rest": frame.lower()[2 * byte :],
        "reason": f"byte {byte}: {reason}",
    }
    assert event["payload"]["dev_eui"] == EUI
    assert all(refusal(r, RECEIVED) is None for r in result.records)


def test_the_partial_frame_stores_the_same_readings_as_its_known_part_alone():
    devices = [MqttDevice("door-1", dev_eui=EUI, model="vs133")]
    alone = by_kind(parse(ug6x("0FE302100709"), devices))
    partial = by_kind(parse(ug6x("0FE302100709" + "7701"), devices))
    assert partial["occupancy"] == alone["occupancy"]


def test_vs13x_child_counts_are_lines_and_regions_beside_the_adults():
    devices = [MqttDevice("door-1", dev_eui=EUI, model="vs133", period_s=300)]
    frame = "05CC03000200 13CC01000000 03D248000000 04D2C8000000 11D205000000 12D206000000"
    frame += " 0FE302100709 1DE301000200 10E40109101121 1EE4010A000B00 50FC000001"
    kinds = by_kind(parse(ug6x(frame.replace(" ", "")), devices))
    assert kinds["line_counts"]["values"] == {
        "total": {"in": 4, "out": 2},
        "lines": {"1": {"in": 3, "out": 2}, "1_child": {"in": 1, "out": 0}},
    }
    assert kinds["line_totals"]["values"]["lines"] == {
        "1": {"in": 72, "out": 200},
        "1_child": {"in": 5, "out": 6},
    }
    occupancy = kinds["occupancy"]["values"]
    assert occupancy["regions"] == {
        "1": 2, "2": 16, "3": 7, "4": 9, "1_child": 1, "2_child": 0, "3_child": 2, "4_child": 0
    }  # fmt: skip
    assert occupancy["current_total"] == 37
    assert kinds["dwell"]["values"]["regions"] == {
        "1": {"avg": 4105, "max": 8465},
        "1_child": {"avg": 10, "max": 11},
    }
    assert kinds["event"]["values"]["payload"]["master_occlusion_alarm"] == "alarm_triggered"


def test_vs13x_history_records_are_the_readings_of_their_own_moment():
    """Firmware 1.0.9 re-sends one channel per history record after an outage; the in and out of
    a line, and a region's average and maximum dwell, meet again by their timestamp."""
    stamp = (1693530747).to_bytes(4, "little").hex()
    frame = (
        "".join(
            f"20CE{stamp}{data}"
            for data in ("03" + "48000000", "04" + "C8000000", "05" + "03000200", "10" + "010900")
        )
        + f"20CE{stamp}20011021"
    )
    devices = [MqttDevice("door-1", dev_eui=EUI, model="vs135", period_s=600)]
    records = {
        (r.kind, r.wire()["period_end"]): r.wire() for r in parse(ug6x(frame), devices).records
    }
    at = "2023-09-01T01:12:27Z"
    assert set(records) == {("line_totals", at), ("line_counts", at), ("dwell", at)}
    assert records[("line_counts", at)]["period_start"] == "2023-09-01T01:02:27Z"
    assert records[("line_totals", at)]["values"]["lines"] == {"1": {"in": 72, "out": 200}}
    assert records[("dwell", at)]["values"]["regions"] == {"1": {"avg": 9, "max": 8464}}


def test_vs121_history_and_line_crossing_counts():
    stamp = (1693530747).to_bytes(4, "little").hex()
    frame = f"20CE{stamp}02" + "05000300" + f"20CE{stamp}10" + "0A000B00" + "10F704000100"
    devices = [MqttDevice("office", dev_eui=EUI, model="vs121")]
    records = {
        (r.kind, r.wire()["period_end"]): r.wire() for r in parse(ug6x(frame), devices).records
    }
    assert records[("line_counts", "2023-09-01T01:12:27Z")]["values"]["lines"] == {
        "1": {"in": 5, "out": 3}
    }
    assert records[("line_totals", "2023-09-01T01:12:27Z")]["values"]["total"] == {
        "in": 10,
        "out": 11,
    }
    assert records[("line_counts", "2025-07-01T11:59:58Z")]["values"]["lines"] == {
        "1": {"in": 4, "out": 1}
    }


HISTORY_350 = {
    "history": [
        {"period_in": 7, "period_out": 2, "total_in": 29, "total_out": 8, "timestamp": 1693531647}
    ]
}


@pytest.mark.parametrize(
    "body",
    [
        {"devEUI": EUI, "fPort": 85, **HISTORY_350},  # UG6x, payload codec on
        {"devEUI": EUI, "fPort": 85, "metadata": {"mqtt_topic": "ug67/uplink"}, **HISTORY_350},
        {"devEUI": EUI, "fPort": 85, "time": "2025-07-01T11:59:58Z", "object": HISTORY_350},
        ug6x("20CEFF3DF16401070002001D000800", metadata={"mqtt_topic": "ug67/uplink"}),
    ],
    ids=["codec", "codec+metadata", "object", "raw+metadata"],
)
def test_a_vs350_history_record_in_any_form_is_a_reading_at_its_own_time(body):
    result = parse(body, [MqttDevice("passage-1", dev_eui=EUI, model="vs350", period_s=900)])
    records = {(r.kind, r.wire()["period_end"]): r.wire()["values"] for r in result.records}
    assert records == {
        ("line_counts", "2023-09-01T01:27:27Z"): {
            "total": {"in": 7, "out": 2},
            "lines": {"1": {"in": 7, "out": 2}},
        },
        ("line_totals", "2023-09-01T01:27:27Z"): {
            "total": {"in": 29, "out": 8},
            "lines": {"1": {"in": 29, "out": 8}},
        },
    }


@pytest.mark.parametrize("metadata", [None, {"mqtt_topic": "milesight/ug67/uplink"}])
def test_the_codec_decoded_form_reaches_the_same_readings_as_the_raw_frame(metadata):
    """What a UG6x with its payload codec on publishes: the vendor decoder's object for the frame."""
    extra = {} if metadata is None else {"metadata": metadata}
    devices = [MqttDevice("door-1", dev_eui=EUI, model="vs133")]
    frame = "03D248000000 04D2C8000000 05CC03000200 13CC01000000 0FE302100709".replace(" ", "")
    raw = by_kind(parse(ug6x(frame, **extra), devices))
    decoded = decode("vs133", bytes.fromhex(frame))
    codec = {k: v for k, v in ug6x(frame, **extra).items() if k != "data"} | decoded
    assert by_kind(parse(codec, devices)) == raw


@pytest.mark.parametrize(
    "vector",
    [v for v in VECTORS if "beyond_vendor" not in v],
    ids=[
        f"{v['model']}-{v['source'].replace(' ', '')}" for v in VECTORS if "beyond_vendor" not in v
    ],
)
@pytest.mark.parametrize("metadata", [False, True], ids=["plain", "metadata"])
def test_each_example_in_its_codec_decoded_form_becomes_the_raw_frames_readings(vector, metadata):
    """A UG6x with the vendor's codec publishes the decoder's object beside devEUI (no data)."""
    devices = [MqttDevice("dev", dev_eui=EUI, model=vector["model"])]
    extra = {"metadata": {"mqtt_topic": "milesight/ug67/uplink"}} if metadata else {}
    raw = parse(ug6x(vector["hex"].replace(" ", ""), **extra), devices)
    envelope = {k: v for k, v in ug6x("00", **extra).items() if k != "data"}
    codec = parse({**envelope, **vector["values"]}, devices)
    readings = {r.id: r.wire() for r in raw.records if r.kind != "event"}
    assert readings == {r.id: r.wire() for r in codec.records if r.kind != "event"}
    assert not raw.dead and not codec.dead


def test_am319_history_records_are_ambience_readings_at_their_own_time():
    stamp = (1693530747).to_bytes(4, "little")
    # temperature 23.8, humidity 62 (124 / 2), pir trigger, light 2, co2 936, tvoc, pressure 1008.6,
    # pm2.5 32, pm10 48, hcho 0.07
    tail = struct.pack("<hHBBHHHHHH", 238, 124, 1, 2, 936, 37, 10086, 32, 48, 7)
    frame = (
        b"\x20\xce" + stamp + tail + b"\x21\xce" + (1693531647).to_bytes(4, "little") + tail
    ).hex()
    devices = [MqttDevice("room", dev_eui=EUI, model="am319")]
    records = {r.wire()["period_end"]: r.wire() for r in parse(ug6x(frame), devices).records}
    assert records["2023-09-01T01:12:27Z"]["values"] == {
        "temperature_c": 23.8,
        "humidity_pct": 62,
        "pir": 1,
        "light_level": 2,
        "co2_ppm": 936,
        "tvoc_iaq": 0.37,
        "pressure_hpa": 1008.6,
        "pm2_5_ugm3": 32,
        "pm10_ugm3": 48,
        "hcho_mgm3": 0.07,
    }
    assert records["2023-09-01T01:27:27Z"]["values"]["tvoc_ugm3"] == 37  # 0x21: µg/m³
    o3 = [MqttDevice("room", dev_eui=EUI, model="am319-o3")]
    o3_records = {r.wire()["period_end"]: r.wire() for r in parse(ug6x(frame), o3).records}
    assert o3_records["2023-09-01T01:12:27Z"]["values"]["o3_ppm"] == 0.07  # the O3 variant's field
    assert "hcho_mgm3" not in o3_records["2023-09-01T01:12:27Z"]["values"]


@pytest.mark.parametrize("frame", ["FF6A020000", "0AEF7B3AF164"], ids=["no-value", "time-alone"])
def test_an_uplink_that_holds_no_reading_is_still_kept_as_an_event(frame):
    """A reply whose type names no value (0xFF 0x6A type 2), or a frame with nothing mapped, is
    neither lost nor a dead letter."""
    model = "vs133" if frame.startswith("FF6A") else "vs350"
    result = parse(ug6x(frame), [MqttDevice("x", dev_eui=EUI, model=model)])
    assert [r.kind for r in result.records] == ["event"] and not result.dead


@pytest.mark.parametrize(
    "model, frame, values",
    [
        ("am307", "FF1A02E803 FE1A01", {"co2_calibration_settings": {"mode": "abc"}}),
        ("am319", "FF1A02E803", {"co2_calibration_settings": {"mode": "manual", "calibration_value": 1000}}),
        ("am319-o3", "FF1A0218FC", {"co2_calibration_settings": {"mode": "manual", "value": -1000}}),
        ("vs350", "FF9601010102010A0001 FF960201000301050000", None),
        ("vs121", "F8110100 F88B0201", {"on_the_dot_report_interval": "10min", "device_response_result": {"channel_type": 0x8B, "result": "forbidden", "request": {"lorawan_version": "v1.0.3"}}}),
        ("vs133", "FF6A003C00 FF6A011E00", {"retransmit_interval": 60, "resend_interval": 30}),
        ("vs350", "FFBDE001", {"time_zone": "UTC+8"}),  # minutes
        ("vs350", "FFBDC6FD", {"time_zone": "UTC-9:30"}),
        ("am307", "FE173900", {"time_zone": "UTC+5:45"}),  # tenths of an hour, truncated
        ("am319", "FF17A1FF", {"time_zone": "UTC-9:30"}),
    ],
)  # fmt: skip
def test_replies_to_downlinks_read_as_the_vendor_prints_them(model, frame, values):
    decoded = decode(model, bytes.fromhex(frame.replace(" ", "")))
    if values is None:  # two entries of a list-valued setting add up, as the vendor's do
        assert [entry["mode"] for entry in decoded["d2d_master_config"]] == [
            "someone_enter",
            "someone_leave",
        ]
        assert decoded["d2d_master_config"][0]["d2d_cmd"] == "0102"
    else:
        assert decoded == values


def test_an_unknown_device_without_a_codec_gets_the_dead_letter_that_says_what_to_add():
    body = ug6x("017564", metadata={"mqtt_topic": "milesight/ug67/uplink"})
    result = parse(body)
    assert not result.records
    assert "its model is not known" in result.dead[0].reason
    assert "[[mqtt.devices]]" in result.dead[0].reason


def test_values_decoded_upstream_keep_the_raw_frame_with_what_is_left():
    body = ug6x("017564", flow="odd")  # a codec's value this bridge has no reading for
    event = by_kind(parse(body))["event"]["values"]["payload"]
    assert event["frame"] == "017564" and event["flow"] == "odd"


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

# (id, type) -> fields (name, struct code, how), written from the vendor decoders' layouts: how is 1
# (the number), a divisor, or the vendor's words for each number ("unknown" for others).
U8, U16, I16, U32, I8 = "B", "H", "h", "I", "b"
ENABLE = {0: "disable", 1: "enable"}
ALARM = {
    0: "threshold alarm release",
    1: "threshold alarm",
    3: "high temperature alarm",
    4: "high temperature alarm release",
}
PIR = {0: "idle", 1: "trigger"}
BATTERY = {(0x01, 0x75): [("battery", U8, 1)]}
TEMPERATURE = {(0x03, 0x67): [("temperature", I16, 10)]}
Spec = dict[tuple[int, int], list[tuple[str, str, Any]]]


def _lines(child: str, first: int) -> Spec:
    spec: Spec = {}
    for n in range(1, 5):
        name, base = f"line_{n}{child}", first + 3 * (n - 1)
        spec[(base, 0xD2)] = [(f"{name}_total_in", U32, 1)]
        spec[(base + 1, 0xD2)] = [(f"{name}_total_out", U32, 1)]
        spec[(base + 2, 0xCC)] = [(f"{name}_period_in", U16, 1), (f"{name}_period_out", U16, 1)]
    return spec


AMBIENCE: Spec = {
    **BATTERY,
    **TEMPERATURE,
    (0x04, 0x68): [("humidity", U8, 2)],
    (0x05, 0x00): [("pir", U8, PIR)],
    (0x06, 0xCB): [("light_level", U8, 1)],
    (0x07, 0x7D): [("co2", U16, 1)],
    (0x08, 0x7D): [("tvoc", U16, 100)],
    (0x08, 0xE6): [("tvoc_ugm3", U16, 1)],
    (0x09, 0x73): [("pressure", U16, 10)],
    (0x0E, 0x01): [("buzzer_status", U8, {0: "off", 1: "on"})],
    (0xFF, 0x3A): [("report_interval", U16, 1)],
    (0xFE, 0x3B): [("time_sync_enable", U8, ENABLE)],
}
SPEC: dict[str, Spec] = {
    "vs133": {
        **_lines("", 0x03),
        **_lines("_child", 0x11),
        (0x0F, 0xE3): [(f"region_{n}_count", U8, 1) for n in range(1, 5)],
        (0x1D, 0xE3): [(f"region_{n}_child_count", U8, 1) for n in range(1, 5)],
        (0xFF, 0x03): [("report_interval", U16, 1)],
        (0xFE, 0x04): [("confirm_mode_enable", U8, ENABLE)],
    },
    "vs350": {
        **BATTERY,
        **TEMPERATURE,
        (0x04, 0xCC): [("total_in", U16, 1), ("total_out", U16, 1)],
        (0x05, 0xCC): [("period_in", U16, 1), ("period_out", U16, 1)],
        (0x81, 0xEE): [("current_sensitivity", U8, 1)],
        (0x0A, 0xEF): [("timestamp", U32, 1)],
        (0x83, 0x67): [("temperature", I16, 10), ("temperature_alarm", U8, ALARM)],
        (0x84, 0xCC): [
            ("total_in", U16, 1),
            ("total_out", U16, 1),
            ("total_count_alarm", U8, ALARM),
        ],
        (0x85, 0xCC): [
            ("period_in", U16, 1),
            ("period_out", U16, 1),
            ("period_count_alarm", U8, ALARM),
        ],
        (0xFF, 0xA7): [("reset_cumulative_interval", U16, 1)],
    },
    "vs121": {
        (0x05, 0xCC): [("people_in", I16, 1), ("people_out", I16, 1)],
        (0x06, 0xCD): [("people_count_max", U8, 1)],
        (0x07, 0xD5): [(f"region_{n}_count", U8, 1) for n in range(1, 9)],
        (0x08, 0xD5): [(f"region_{n}_count", U8, 1) for n in range(9, 17)],
        (0x0D, 0xCC): [("people_total_in", U16, 1), ("people_total_out", U16, 1)],
        (0x10, 0xF7): [("line_in", U16, 1), ("line_out", U16, 1)],
        (0x0F, 0x85): [("timestamp", U32, 1)],
        **{
            (0x09 + i, 0xDA): [(f"{a}_to_{b}", U16, 1) for b in "abcd"]
            for i, a in enumerate("abcd")
        },
        (0xFF, 0x40): [("adr_enable", U8, ENABLE)],
    },
    "vs330": {
        **BATTERY,
        (0x02, 0x82): [("distance", U16, 1)],
        (0x03, 0x8E): [("occupancy", U8, {0: "vacant", 1: "occupied"})],
        (0x04, 0x8E): [("calibration_status", U8, {0: "failed", 1: "success"})],
        (0xFF, 0x02): [("collection_interval", U16, 1)],
    },
    "am307": {
        **AMBIENCE,
        (0x05, 0x6A): [("activity", U16, 1)],
        (0x06, 0x65): [
            ("illumination", U16, 1),
            ("infrared_and_visible", U16, 1),
            ("infrared", U16, 1),
        ],
    },
    "am319": {
        **AMBIENCE,
        (0x0A, 0x7D): [("hcho", U16, 100)],
        (0x0B, 0x7D): [("pm2_5", U16, 1)],
        (0x0C, 0x7D): [("pm10", U16, 1)],
        (0x0D, 0x7D): [("o3", U16, 100)],
        (0xFF, 0x65): [("pm2_5_collection_interval", U16, 1)],
    },
    "am319-o3": {
        **AMBIENCE,
        (0x0B, 0x7D): [("pm2_5", U16, 1)],
        (0x0C, 0x7D): [("pm10", U16, 1)],
        (0x0D, 0x7D): [("o3", U16, 100)],
        (0xFE, 0x65): [("pm2_5_collection_interval", U16, 1)],
    },
}
SPEC["vs135"] = SPEC["vs133"]
LIMITS = {U8: (0, 255), U16: (0, 65535), I16: (-32768, 32767), U32: (0, 2**32 - 1), I8: (-128, 127)}


def expect(raw: int, how: Any) -> Any:
    if isinstance(how, dict):
        return how.get(raw, "unknown")
    return raw if how == 1 else raw / how


GENERATED: dict[str, int] = {}  # frames checked per model, for the closing report


@st.composite
def frames(draw: Any, model: str) -> tuple[bytes, dict[str, Any]]:
    """A valid frame of ``model`` (channels in any order, each once) and the values it must decode to."""
    keys = draw(st.lists(st.sampled_from(sorted(SPEC[model])), min_size=1, max_size=8, unique=True))
    frame, expected = b"", {}
    for key in keys:
        frame += bytes(key)
        for name, code, how in SPEC[model][key]:
            # A device's clock ahead of the bridge's is refused at the door (not this test's matter).
            low, high = LIMITS[code] if name != "timestamp" else (0, int(RECEIVED.timestamp()))
            raw = draw(st.integers(low, high))
            frame += struct.pack("<" + code, raw)
            expected[name] = expect(raw, how)
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


# Data channels whose names depend on their data (a region number, a node, a history data type):
# tested one by one above (children, occlusion, history) and in the vendor's examples.
BY_EXAMPLE = {
    "vs133": {(0x10, 0xE4), (0x1E, 0xE4), (0x50, 0xFC), (0x20, 0xCE)},
    "vs350": {(0x20, 0xCE)},
    "vs121": {(0x04, 0xC9), (0x0E, 0xE4), (0x20, 0xCE)},
    "vs330": set(),
    "am307": {(0x20, 0xCE), (0x21, 0xCE)},
    "am319": {(0x20, 0xCE), (0x21, 0xCE)},
    "am319-o3": {(0x20, 0xCE), (0x21, 0xCE)},
}
BY_EXAMPLE["vs135"] = BY_EXAMPLE["vs133"]


@pytest.mark.parametrize("model", sorted(MODELS))
def test_the_generated_frames_mix_every_data_channel_of_the_model(model):
    data = {key for key in MODELS[model] if key[0] not in (0xFE, 0xFF, 0xF8, 0xF9)}
    assert data <= set(SPEC[model]) | BY_EXAMPLE[model], data - set(SPEC[model])


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
