"""VS121 AI workplace occupancy sensor (LoRaWAN): the frame layout of vs-series/vs121/vs121-decoder.js.

People count 0x04 0xC9: everyone seen (uint8), the number of regions (uint8)
and a region mask (uint16, big-endian: bit 0 is region 1; the vendor's example
04C9030800A1 gives regions 1, 6 and 8 occupied). In/out 0x05 0xCC (int16 +
int16) and total in/out 0x0D 0xCC (uint16 + uint16), maximum 0x06 0xCD
(uint8), region counts 0x07 0xD5 (regions 1-8) and 0x08 0xD5 (9-16, uint8
each), flows between areas A..D 0x09..0x0C 0xDA (four uint16), dwell time 0x0E
0xE4 (region uint8, average uint16, maximum uint16), timestamp 0x0F 0x85
(uint32 s), line crossing in/out 0x10 0xF7 (uint16 + uint16, firmware
7.0.85), history 0x20 0xCE (timestamp uint32, a data type 1..0x12 naming one
part of the above, then its data). The serial is 6 bytes (0xFF 0x08), the
protocol version one byte printed as a number (0xFF 0x01), hardware and
firmware versions dotted numbers (0xFF 0x09, 0xFF 0x1F). Replies to downlinks
on 0xFE/0xFF and 0xF8/0xF9 (settings, see docs/milesight.md).
"""

from __future__ import annotations

import struct

from .frame import (
    ENABLE,
    YES_NO,
    Channel,
    Layout,
    Values,
    answered,
    constant,
    group,
    history_record,
    listed,
    replies,
    simple,
    version_dotted,
)


def _people(data: bytes) -> Values:
    total, regions, mask = struct.unpack(">BBH", data)
    values: Values = {"people_count_all": total, "region_count": regions}
    for index in range(regions):  # the vendor shifts a 32-bit number: beyond 16 regions reads 0
        values[f"region_{index + 1}"] = (mask >> (index % 32)) & 1
    return values


def _dwell(data: bytes) -> Values:
    region, avg, peak = struct.unpack("<BHH", data)
    return {f"region_{region}_avg_dwell": avg, f"region_{region}_max_dwell": peak}


def _flows(area: str, to: str) -> Channel:
    return simple(f"{area} flow", *((f"{area}_to_{t}", "H", 1) for t in to))


# History data types: each one part of a data channel, in the vendor's numbering.
HISTORY_DATA: dict[int, Channel] = {
    0x01: Channel("people count", 4, _people),
    0x02: simple("people in/out", ("people_in", "H", 1), ("people_out", "H", 1)),
    0x03: simple("people max", ("people_count_max", "B", 1)),
    **{
        0x04 + i: simple(
            "region count", *((f"region_{r}_count", "B", 1) for r in range(4 * i + 1, 4 * i + 5))
        )
        for i in range(4)
    },
    **{
        0x08 + 2 * i + half: _flows(a, "ab" if half == 0 else "cd")
        for i, a in enumerate("abcd")
        for half in (0, 1)
    },
    0x10: simple("people total in/out", ("people_total_in", "H", 1), ("people_total_out", "H", 1)),
    0x11: Channel("dwell time", 5, _dwell),
    0x12: simple("line in/out", ("line_in", "H", 1), ("line_out", "H", 1)),
}


def _d2d_command(value: int) -> str:
    return f"{value:04x}"


def _plus_one(value: int) -> int:
    """Regions, periods and schedule entries travel counted from 0 and print counted from 1."""
    return value + 1


WEEK = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _reset_schedule(data: bytes) -> Values:
    mode, index, week = data[0], data[1], data[2]
    (time_of_day,) = struct.unpack("<I", data[3:6] + b"\x00")
    entry = {
        "mode": {0: "modify", 1: "add", 2: "delete"}.get(mode, "unknown"),
        "index": index + 1,
        "week_cycle": {day: ENABLE[(week >> bit) & 1] for bit, day in enumerate(WEEK)},
        "time": time_of_day,
    }
    return {"reset_cumulative_schedule": [entry]}


COUNTING = {0: "region_people_counting", 1: "line_crossing_counting", 2: "people_flow_analysis"}
REPLIES: dict[int, Channel] = {
    0x03: simple("report interval", ("from_now_on_report_interval", "H", 1)),
    0x04: simple("confirm mode", ("confirm_mode_enable", "B", ENABLE)),
    0x10: constant("reboot", "reboot", "yes"),
    0x35: Channel("d2d key", 8, lambda d: {"d2d_key": d.hex()}),
    0x40: simple("adr", ("adr_enable", "B", ENABLE)),
    0x43: simple("regular report", ("report_regularly_enable", "B", ENABLE)),
    0x44: simple("change report", ("people_count_change_report_enable", "B", ENABLE)),
    0x45: simple(
        "report mode",
        ("people_counting_report_mode", "B", {0: "zero_to_nonzero", 1: "once_result_change"}),
    ),
    0x46: group("jitter", "people_count_jitter_config", ("enable", "B", ENABLE), ("time", "H", 1)),
    0x48: simple("line detection", ("line_detect_enable", "B", ENABLE)),
    0x50: simple("region counting", ("region_people_counting_enable", "B", ENABLE)),
    0x51: constant("clear cumulative count", "clear_cumulative_count", "yes"),
    0x84: simple("d2d", ("d2d_enable", "B", ENABLE)),
}
ANSWERED: dict[int, Channel] = {
    0x10: simple(
        "report scheme", ("periodic_report_scheme", "B", {0: "on_the_dot", 1: "from_now_on"})
    ),
    0x11: simple(
        "on-the-dot interval",
        (
            "on_the_dot_report_interval",
            "B",
            dict(enumerate(("5min", "10min", "15min", "30min", "1h", "4h", "6h", "8h", "12h"))),
        ),
    ),
    0x3D: simple("line report", ("line_detect_report_enable", "B", ENABLE)),
    0x85: group("rejoin", "rejoin_config", ("enable", "B", ENABLE), ("max_count", "B", 1)),
    0x86: simple("data rate", ("data_rate", "B", 1)),
    0x87: simple("tx power", ("tx_power_level", "B", 1)),
    0x88: simple("log level", ("log_level", "B", {2: "error", 4: "debug"})),
    0x8B: simple("lorawan version", ("lorawan_version", "B", {1: "v1.0.2", 2: "v1.0.3"})),
    0x8C: simple("rx2 data rate", ("rx2_data_rate", "B", 1)),
    0x8D: simple("rx2 frequency", ("rx2_frequency", "I", 1)),
    0x8E: group(
        "d2d occupied",
        "d2d_occupied_config",
        ("region", "B", _plus_one),
        ("enable", "B", ENABLE),
        ("command", "H", _d2d_command),
    ),
    0x90: group(
        "d2d vacant",
        "d2d_vacant_config",
        ("region", "B", _plus_one),
        ("enable", "B", ENABLE),
        ("command", "H", _d2d_command),
        ("delay_time", "H", 1),
    ),
    0x91: group(
        "time",
        "time_config",
        ("mode", "B", {0: "sync_from_gateway", 1: "manual"}),
        ("timestamp", "I", 1),
    ),
    0x92: group(
        "dwell settings",
        "region_people_counting_dwell_config",
        ("enable", "B", ENABLE),
        ("min_dwell_time", "H", 1),
    ),
    0x93: simple("report with timestamp", ("report_with_timestamp", "B", YES_NO)),
    0x94: simple("timed reset", ("timed_reset_cumulative_enable", "B", ENABLE)),
    0x95: Channel("reset schedule", 6, _reset_schedule),
    0x96: group(
        "detection region",
        "detect_region_config",
        ("enable", "B", ENABLE),
        ("detection_type", "B", {0: "mapped_region", 1: "unmapped_region"}),
        ("reporting_type", "B", {0: "occupancy", 1: "region_people_counting"}),
    ),
    0x97: group(
        "time schedule settings",
        "time_schedule_config",
        ("enable", "B", ENABLE),
        ("people_counting_type", "B", COUNTING),
    ),
    0x98: simple("u-turn filter", ("filter_u_turn_enable", "B", ENABLE)),
    0x99: listed(
        "time schedule",
        "time_schedule",
        ("people_counting_type", "B", COUNTING),
        ("period", "B", _plus_one),
        ("weekday", "B", dict(enumerate(WEEK))),
        ("start_hour", "B", 1),
        ("start_minute", "B", 1),
        ("end_hour", "B", 1),
        ("end_minute", "B", 1),
    ),
}


def _layout() -> Layout:
    layout: Layout = {**replies((0xFE, 0xFF), REPLIES), **answered(ANSWERED)}
    layout[(0xFF, 0x01)] = simple("protocol version", ("protocol_version", "B", 1))
    layout[(0xFF, 0x08)] = Channel("serial number", 6, lambda d: {"sn": d.hex()})
    layout[(0xFF, 0x09)] = Channel(
        "hardware version", 2, lambda d: {"hardware_version": version_dotted(d)}
    )
    layout[(0xFF, 0x1F)] = Channel(
        "firmware version", 4, lambda d: {"firmware_version": version_dotted(d)}
    )
    layout[(0x04, 0xC9)] = Channel("people count", 4, _people)
    layout[(0x05, 0xCC)] = simple("people in/out", ("people_in", "h", 1), ("people_out", "h", 1))
    layout[(0x06, 0xCD)] = simple("people max", ("people_count_max", "B", 1))
    layout[(0x07, 0xD5)] = simple(
        "region count 1-8", *((f"region_{r}_count", "B", 1) for r in range(1, 9))
    )
    layout[(0x08, 0xD5)] = simple(
        "region count 9-16", *((f"region_{r}_count", "B", 1) for r in range(9, 17))
    )
    for offset, area in enumerate("abcd"):
        layout[(0x09 + offset, 0xDA)] = _flows(area, "abcd")
    layout[(0x0D, 0xCC)] = simple(
        "people total in/out", ("people_total_in", "H", 1), ("people_total_out", "H", 1)
    )
    layout[(0x0E, 0xE4)] = Channel("dwell time", 5, _dwell)
    layout[(0x0F, 0x85)] = simple("timestamp", ("timestamp", "I", 1))
    layout[(0x10, 0xF7)] = simple("line in/out", ("line_in", "H", 1), ("line_out", "H", 1))
    layout[(0x20, 0xCE)] = history_record("VS121", HISTORY_DATA)
    return layout


LAYOUT = _layout()
