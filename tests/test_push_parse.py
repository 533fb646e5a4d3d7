"""What pushed Milesight messages become: the parsing table of push/ (milesight.py, lorawan.py).

Each case is bytes as a device sends them, in, and the records (or the
dead-letter entry) a person would find in the outbox, out.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from appliance.config import MqttDevice
from appliance.outbox import Outbox
from appliance.push.parser import PushParser
from appliance.push.sender import FirstSeen

RECEIVED = datetime(2025, 7, 1, 12, 0, 0, 500_000, tzinfo=UTC)

# The vendor's documented periodic report, annotations and all (comments, a missing comma,
# a trailing comma, `Max_counted` capitalised, an HTTP-only snapshot).
VENDOR_PERIODIC = b"""{
"event":"Region People Counting",
"report_type": "interval",
"device_info":{
    "device":"Workplace Sensor",
    "device_sn":"369362028335",
    "device_mac":"00:16:28:FA:8E:68",
    "ip_address":"192.0.2.99",
},
"time_info":{
    "timezone":"UTC+8:00",
    "dst_status":false,
    "start_time":"2022/12/20 18:15:52",        //Period start time
    "end_time":"2022/12/20 19:15:52"         //Period end time
},
"current_total":10,
"Max_counted":12, //Maximum number of people during the reporting interval
"total_mapped_regions":2,
"numbering_regions":[1,2],
"current_counted":[5,5],
"occupancy": [1, 0] /* Do not send this information if no region is specified */
"snapshot": "/9j/4AAQSkZJRgABAQAAAQABAAD/2wDFABALDA4MChAODQ4SERATGCgaGBY"
}"""


def parse(
    body: bytes | str | dict,
    topic: str = "milesight/entrance",
    parser: PushParser | None = None,
    source: str = "mqtt",
    received: datetime = RECEIVED,
):
    if isinstance(body, dict):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    parser = parser or PushParser(default_zone="Europe/Lisbon")
    return parser.parse(body, source=source, topic=topic, origin=topic, received_at=received)


def only(result):
    assert not result.dead, result.dead
    assert len(result.records) == 1, [r.wire() for r in result.records]
    return result.records[0].wire()


def dead_reason(result) -> str:
    assert not result.records and len(result.dead) == 1
    return result.dead[0].reason


def report(time_info: dict, **fields) -> dict:
    return {
        "event": "Region People Counting",
        "device_info": {"device_sn": "SN1"},
        "time_info": time_info,
        "current_total": 3,
        **fields,
    }


# ---------------------------------------------------------------- occupancy


def test_vendor_periodic_report_becomes_one_occupancy_period_without_the_snapshot():
    record = only(parse(VENDOR_PERIODIC, source="http-push"))
    assert record["kind"] == "occupancy" and record["sensor_id"] == "369362028335"
    assert (record["period_start"], record["period_end"]) == (
        "2022-12-20T10:15:52Z",
        "2022-12-20T11:15:52Z",
    )
    assert record["values"] == {
        "current_total": 10,
        "max": 12,
        "regions": {"1": 5, "2": 5},
        "occupied": {"1": True, "2": False},
    }
    assert record["final"] is True and record["source"] == "http-push"
    assert record["observed_at"] == "2025-07-01T12:00:00Z"
    assert "4AAQ" not in json.dumps(record)


def test_trigger_report_is_a_snapshot_at_its_own_time():
    record = only(
        parse(
            report(
                {"timezone": "UTC+8:00", "dst_status": False, "time": "2022/12/20 18:20:07"},
                current_counted=[2, 1],
                numbering_regions=[1, 2],
            )
        )
    )
    assert record["period_start"] == record["period_end"] == "2022-12-20T10:20:07Z"
    assert record["final"] is True
    assert record["values"] == {"current_total": 3, "max": None, "regions": {"1": 2, "2": 1}}


@pytest.mark.parametrize(
    "zone, dst, wall, utc",
    [
        ("UTC+8:00", False, "2025/01/10 08:00:00", "2025-01-10T00:00:00Z"),
        ("UTC+5:30", False, "2025/01/10 08:00:00", "2025-01-10T02:30:00Z"),  # India: half an hour
        ("UTC+5:45", False, "2025/01/10 08:00:00", "2025-01-10T02:15:00Z"),  # Nepal
        ("UTC-3:30", False, "2025/01/10 08:00:00", "2025-01-10T11:30:00Z"),  # Newfoundland
        ("UTC-03:30", True, "2025/07/10 08:00:00", "2025-07-10T10:30:00Z"),  # ... on summer time
        ("UTC+1:00", True, "2025/07/10 08:00:00", "2025-07-10T06:00:00Z"),  # Central Europe, DST on
        ("UTC+1:00", "true", "2025/07/10 08:00:00", "2025-07-10T06:00:00Z"),
        ("UTC-0:00", False, "2025-07-10 08:00:00", "2025-07-10T08:00:00Z"),
        (
            "UTC+8:00 China Standard Time (CT/CST)",
            False,
            "2025-07-10 08:00:00",
            "2025-07-10T00:00:00Z",
        ),
        ("UTC", False, "2025-07-10 08:00:00", "2025-07-10T08:00:00Z"),
        ("Asia/Kolkata", False, "2025-07-10 08:00:00", "2025-07-10T02:30:00Z"),
        (
            "America/St_Johns",
            True,
            "2025-07-10 08:00:00",
            "2025-07-10T10:30:00Z",
        ),  # DST: the zone knows
        # An explicit offset in the time wins over the zone field (it already includes DST).
        ("UTC+8:00", True, "2025-07-10T08:00:00+08:00", "2025-07-10T00:00:00Z"),
        ("UTC+8:00", False, "2025-07-10T08:00:00Z", "2025-07-10T08:00:00Z"),
    ],
)
def test_device_times_are_converted_to_utc(zone, dst, wall, utc):
    for key in ("timezone", "time_zone"):  # VS121 and VS13x spell it differently
        record = only(parse(report({key: zone, "dst_status": dst, "time": wall})))
        assert record["period_start"] == utc, (key, zone, dst, wall)


def test_without_a_device_zone_the_bridges_timezone_applies():
    record = only(parse(report({"time": "2025/07/10 08:00:00"})))  # Lisbon in summer: UTC+1
    assert record["period_start"] == "2025-07-10T07:00:00Z"
    gap = parse(report({"time": "2025/03/30 01:30:00"}))  # Lisbon springs forward past 01:30
    assert "does not exist" in dead_reason(gap)


def test_epoch_times_in_seconds_or_milliseconds():
    assert only(parse(report({"timestamp": 1736496000})))["period_start"] == "2025-01-10T08:00:00Z"
    assert (
        only(parse(report({"timestamp": 1736496000123})))["period_start"] == "2025-01-10T08:00:00Z"
    )


def test_a_top_level_time_counts_only_when_it_is_one():
    event = {
        "event": "Dwell",
        "device_info": {"device_sn": "SN1"},
        "timestamp": "2025-01-10T08:00:00Z",
    }
    assert only(parse(event))["period_start"] == "2025-01-10T08:00:00Z"
    duration = {
        "event": "Dwell",
        "device_info": {"device_sn": "SN1"},
        "time": 35,
    }  # seconds, not 1970
    assert only(parse(duration))["period_start"] == "2025-07-01T12:00:00Z"  # received then


def test_key_case_does_not_matter():
    body = {
        "Device_Info": {"Device_SN": "SN9"},
        "Time_Info": {"TimeZone": "UTC+2:00", "Time": "2025/01/10 10:00:00"},
        "CURRENT_TOTAL": 4,
        "MAX_COUNTED": "6",
        "Numbering_Regions": [3],
        "Current_Counted": [4],
    }
    record = only(parse(body))
    assert record["sensor_id"] == "SN9" and record["period_start"] == "2025-01-10T08:00:00Z"
    assert record["values"] == {"current_total": 4, "max": 6, "regions": {"3": 4}}


@pytest.mark.parametrize(
    "fields, reason",
    [
        ({"current_total": -1}, "current_total: expected a count >= 0"),
        ({"current_total": "many"}, "current_total: expected a count >= 0"),
        ({"current_counted": [1, 2], "numbering_regions": [1]}, "does not match"),
        ({"max_counted": 2.5}, "max_counted"),
        (
            {"time_info": {"timezone": "Mars/Olympus", "time": "2025/01/10 10:00:00"}},
            "not a UTC offset or a known zone",
        ),
        (
            {"time_info": {"timezone": "UTC+25:00", "time": "2025/01/10 10:00:00"}},
            "is not a UTC offset",
        ),
        (
            {"time_info": {"timezone": "UTC+1", "time": "yesterday"}},
            "cannot read 'yesterday' as a time",
        ),
    ],
)
def test_a_known_report_with_bad_values_is_dead_lettered_naming_the_field(fields, reason):
    body = report({"timezone": "UTC+0:00", "time": "2025/01/10 10:00:00"})
    body.update(fields)
    assert reason in dead_reason(parse(body))


def test_period_ending_before_it_starts_is_dead_lettered():
    body = report(
        {
            "timezone": "UTC+0:00",
            "start_time": "2025/01/10 10:00:00",
            "end_time": "2025/01/10 09:00:00",
        }
    )
    assert "before start_time" in dead_reason(parse(body))


# ---------------------------------------------------------------- line crossing (VS125/VS133/VS135)


TOF_PERIODIC = {
    "device_info": {
        "device_name": "People Counter",
        "device_sn": "6767E21831900021",
        "firmware_version": "V_135.1.0.7",
    },
    "line_periodic_data": [
        {
            "line": 1,
            "line_name": "Door",
            "line_uuid": "9a04",
            "total": {"in": 7, "out": 5},
            "group": {"in": 1, "out": 0},
        },
        {"line": 2, "line_name": "Side", "line_uuid": "b138", "total": {"in": 2, "out": 0}},
    ],
    "line_total_data": [
        {"line": 1, "total": {"in_counted": 120, "out_counted": 99, "capacity_counted": 21}}
    ],
    "time_info": {
        "dst_status": False,
        "enable_dst": False,
        "time_zone": "UTC+8:00 China Standard Time (CT/CST)",
        "start_time": "2024-05-30T20:20:00+08:00",
        "end_time": "2024-05-30T20:21:00+08:00",
    },
}


def test_periodic_line_crossing_report_becomes_line_counts():
    record = only(parse({k: v for k, v in TOF_PERIODIC.items() if k != "line_total_data"}))
    assert record["kind"] == "line_counts" and record["sensor_id"] == "6767E21831900021"
    assert (record["period_start"], record["period_end"]) == (
        "2024-05-30T12:20:00Z",
        "2024-05-30T12:21:00Z",
    )
    assert record["values"] == {
        "total": {"in": 9, "out": 5},
        "lines": {"1": {"in": 7, "out": 5}, "2": {"in": 2, "out": 0}},
    }


def test_running_totals_become_line_totals_at_the_reports_end():
    """VS125 `line_total_data`: the day's figure since the device's daily reset (docs/milesight.md)."""
    result = parse(TOF_PERIODIC)
    assert not result.dead and sorted(r.kind for r in result.records) == [
        "line_counts",
        "line_totals",
    ]
    totals = next(r for r in result.records if r.kind == "line_totals").wire()
    assert totals["period_start"] == totals["period_end"] == "2024-05-30T12:21:00Z"
    assert totals["values"] == {
        "total": {"in": 120, "out": 99},
        "lines": {"1": {"in": 120, "out": 99}},
    }
    alone = {k: v for k, v in TOF_PERIODIC.items() if k != "line_periodic_data"}
    assert only(parse(alone))["kind"] == "line_totals"  # kept even without periodic data


def test_occupancy_status_report_keeps_each_regions_flag_and_name():
    """VS121-P "Occupancy Status" (no current_counted): the per-region flags were dropped before."""
    body = report(
        {
            "timezone": "UTC+8:00",
            "start_time": "2022/12/20 18:15:52",
            "end_time": "2022/12/20 19:15:52",
        },
        max_counted=12,
        total_mapped_regions=2,
        regions_name=["Region1", "Region2"],
        numbering_regions=[1, 2],
        occupancy=[1, 0],
    )
    assert only(parse(body))["values"] == {
        "current_total": 3,
        "max": 12,
        "regions": {},
        "occupied": {"1": True, "2": False},
        "region_names": {"1": "Region1", "2": "Region2"},
    }
    assert "occupancy[0]" in dead_reason(parse(dict(body, occupancy=[7, 0])))


def test_flat_line_counts_from_older_firmware():
    body = {
        "device_info": {"device_sn": "VS133-1"},
        "line_periodic_data": {"in": 4, "out": "3"},
        "time_info": {
            "timezone": "UTC+0:00",
            "start_time": "2025/01/10 10:00:00",
            "end_time": "2025/01/10 11:00:00",
        },
    }
    assert only(parse(body))["values"] == {
        "total": {"in": 4, "out": 3},
        "lines": {"1": {"in": 4, "out": 3}},
    }


def test_line_trigger_report_is_kept_as_an_event():
    body = {
        "device_info": {"device_sn": "6384E16179950009"},
        "line_trigger_data": [{"line": 1, "total": {"in": 27, "out": 27}}],
        "time_info": {"time": "2024-05-30T20:11:32+08:00", "time_zone": "UTC+8:00"},
    }
    record = only(parse(body))
    assert record["kind"] == "event" and record["period_start"] == "2024-05-30T12:11:32Z"
    assert record["values"] == {"event": "unknown", "payload": body}


def test_sections_not_mapped_travel_as_an_event_too():
    body = dict(
        TOF_PERIODIC,
        region_data={"region_count_data": [{"region": 1, "total": {"current_total": 2}}]},
    )
    result = parse(body)
    assert sorted(r.kind for r in result.records) == ["event", "line_counts", "line_totals"]
    event = next(r for r in result.records if r.kind == "event").wire()
    assert event["values"]["payload"] == body and event["period_start"] == "2024-05-30T12:20:00Z"


# ---------------------------------------------------------------- anything else


def test_unknown_json_object_is_an_event_kept_verbatim():
    body = {
        "event": "Tamper Alarm",
        "device_info": {"device_sn": "SN1"},
        "alarm": {"level": 2, "zones": [1, 3]},
        "time_info": {"timezone": "UTC+1:00", "time": "2025/01/10 10:00:00"},
    }
    record = only(parse(body))
    assert (
        record["kind"] == "event"
        and record["period_start"] == record["period_end"] == "2025-01-10T09:00:00Z"
    )
    assert record["values"] == {"event": "Tamper Alarm", "payload": body}


@pytest.mark.parametrize(
    "body, reason",
    [
        (b"\x89PNG\r\n\x1a\n\x00\x01", "binary, not UTF-8"),
        (b"", "empty message"),
        (b"  \n", "empty message"),
        (b'{"current_total": 3', "not JSON"),
        (b"{'current_total': 3}", "not JSON"),  # single quotes: not guessed at
        (b'{"regions_name": [Region1, Region2]}', "not JSON"),  # bare words: not guessed at
        (b'{"current_total": NaN}', "NaN is not a number"),
        (b'{"current_total": 1e400}', "1e400 is out of range"),
        (b'{"a": ' * 100_000 + b"1" + b"}" * 100_000, "nested too deeply"),
        (b"[1, 2, 3]", "expected a JSON object, got list"),
        (b'"just a string"', "expected a JSON object, got str"),
    ],
)
def test_unreadable_messages_are_dead_lettered_with_a_reason_and_preview(body, reason):
    result = parse(body, topic="milesight/lobby")
    assert reason in dead_reason(result)
    entry = result.dead[0]
    assert entry.origin == "milesight/lobby"
    if reason.startswith("binary"):
        assert entry.preview.startswith("hex (10 bytes): 89 50 4e 47")


def test_accepted_leniencies():
    lenient = (
        b'\xef\xbb\xbf{"device_info": {"device_sn": "SN1",}, // comment\n "current_total": 2,\n'
        b' "time_info": {"time": 1736496000},}\x00'
    )
    assert only(parse(lenient))["values"]["current_total"] == 2
    # A comma inside a string is data, not a trailing comma; comment markers in strings too.
    text = b'{"event": "a,}//b", "device_info": {"device_sn": "SN1"}, "time_info": {"time": 1736496000},}'
    assert only(parse(text))["values"]["event"] == "a,}//b"


def test_snapshots_are_removed_at_any_depth():
    body = {
        "event": "Face",
        "device_info": {"device_sn": "SN1"},
        "time_info": {"time": 1736496000},
        "snapshot": "AAAA",
        "detail": {"Snapshot_Base64": "BBBB", "box": [1, 2], "items": [{"snapshot": "C"}]},
    }
    payload = only(parse(body))["values"]["payload"]
    assert payload == {
        "event": "Face",
        "device_info": {"device_sn": "SN1"},
        "time_info": {"time": 1736496000},
        "detail": {"box": [1, 2], "items": [{}]},
    }


def test_a_snapshot_key_spelled_with_json_escapes_is_removed_too():
    """The quick look for "snapshot" in the raw bytes must not let an escaped key through."""
    body = (
        b'{"event": "Face", "device_info": {"device_sn": "SN1"}, "time_info": {"time": 1736496000},'
        b' "\\u0053NAPSHOT": "AAAA"}'
    )
    payload = only(parse(body))["values"]["payload"]
    assert "SNAPSHOT" not in payload and "AAAA" not in json.dumps(payload)


# ---------------------------------------------------------------- who, and the stable id


def test_sensor_id_from_mapping_then_serial_then_topic():
    parser = PushParser(
        [
            MqttDevice("front-door", topic="milesight/+/door"),
            MqttDevice("back-office", serial="SN-OFFICE"),
        ],
        "UTC",
    )
    timed = {"time_info": {"time": 1736496000}, "current_total": 1}
    by_topic = dict(timed, device_info={"device_sn": "SN-X"})
    assert only(parse(by_topic, "milesight/shop/door", parser))["sensor_id"] == "front-door"
    assert (
        only(parse(dict(timed, device_info={"device_sn": "SN-OFFICE"}), "milesight/x", parser))[
            "sensor_id"
        ]
        == "back-office"
    )
    assert only(parse(by_topic, "milesight/x", parser))["sensor_id"] == "SN-X"
    assert only(parse(timed, "milesight/no-serial", parser))["sensor_id"] == "milesight/no-serial"


def test_timeless_message_keeps_its_first_receive_time_across_restarts(tmp_path: Path):
    """Its id depends on that time; a re-published copy must map to the same record."""
    timeless = {"event": "Heartbeat", "device_info": {"device_sn": "SN1"}, "uptime": 5}
    box = Outbox(tmp_path / "outbox.db")
    first = parse(timeless, parser=PushParser(first_seen=FirstSeen(box)))
    box.put(first.records, cursors=first.cursors)
    assert first.records[0].wire()["period_start"] == "2025-07-01T12:00:00Z"

    later = RECEIVED + timedelta(hours=3)
    again = parse(
        timeless, parser=PushParser(first_seen=FirstSeen(box)), received=later
    )  # a new process
    assert again.records[0].id == first.records[0].id and again.cursors == []
    assert box.put(again.records, cursors=again.cursors).unchanged == 1
    different = parse(
        dict(timeless, uptime=6), parser=PushParser(first_seen=FirstSeen(box)), received=later
    )
    assert different.records[0].wire()["period_start"] == "2025-07-01T15:00:00Z"
    box.close()
