"""VS350 passage people counter: the frame layout of vs-series/vs350/vs350-decoder.js.

Battery 0x01 0x75 (uint8 %), temperature 0x03 0x67 (int16 / 10 °C), total
in/out 0x04 0xCC and period in/out 0x05 0xCC (uint16 + uint16), timestamp
0x0A 0xEF (uint32 s), current radar sensitivity 0x81 0xEE (uint8, V3
hardware), alarms 0x83 0x67 / 0x84 0xCC / 0x85 0xCC (the same data plus an
alarm byte), history 0x20 0xCE: timestamp uint32, data type uint8 (0: period
in/out; 1: period and total in/out), then uint16 counts. Install settings
0xFF 0xAC and 0xFF 0xAD, and replies to downlinks on 0xFE/0xFF and 0xF8/0xF9.
"""

from __future__ import annotations

import struct

from .frame import (
    ENABLE,
    Channel,
    FrameError,
    Layout,
    Values,
    answered,
    attributes,
    constant,
    fields,
    group,
    interval,
    listed,
    replies,
    simple,
    utc_offsets,
    version_hex,
    version_hex_nibble,
)

ALARM = {
    0: "threshold alarm release",
    1: "threshold alarm",
    3: "high temperature alarm",
    4: "high temperature alarm release",
}
CONDITION = {0: "disable", 1: "below", 2: "above", 3: "between", 4: "outside"}
D2D_MODE = {
    1: "someone_enter",
    2: "someone_leave",
    3: "counting_threshold_alarm",
    4: "temperature_threshold_alarm",
    5: "temperature_threshold_alarm_release",
}


def _history(data: bytes) -> Values:
    stamp, kind = struct.unpack("<IB", data[:5])
    entry: Values = {"timestamp": stamp}
    entry.update(fields(("period_in", "H", 1), ("period_out", "H", 1))(data[5:9]))
    if kind == 1:
        entry.update(fields(("total_in", "H", 1), ("total_out", "H", 1))(data[9:13]))
    return entry


def _history_size(data: bytes) -> int:
    if len(data) < 5:
        return 5  # walk() reports the frame as too short
    if data[4] not in (0, 1):
        raise FrameError(f"history data type {data[4]} is not 0 or 1")
    return 9 if data[4] == 0 else 13


def _alarm(spec: tuple[tuple[str, str, float], ...], field: str) -> Channel:
    return simple(field.replace("_", " "), *spec, (field, "B", ALARM))


def _alarm_setting(data: bytes) -> Values:
    """Which alarm (bits 3-5 of the first byte), its condition (bits 0-2) and two thresholds."""
    source, condition = (data[0] >> 3) & 0x07, data[0] & 0x07
    low, high = struct.unpack("<HH", data[1:5])
    word = CONDITION.get(condition, "unknown")
    if source in (1, 2):
        key = "people_period_alarm_config" if source == 1 else "people_cumulative_alarm_config"
        return {key: {"condition": word, "threshold_out": low, "threshold_in": high}}
    if source == 3:
        return {
            "temperature_alarm_config": {
                "condition": word,
                "threshold_min": low / 10,
                "threshold_max": high / 10,
            }
        }
    return {}


def _reset_counts(data: bytes) -> Values:
    return {1: {"reset_cumulative_in": "yes"}, 2: {"reset_cumulative_out": "yes"}}.get(data[0], {})


def _d2d_command(value: int) -> str:
    """Two bytes little-endian, printed as four hex digits most significant first."""
    return f"{value:04x}"


REPLIES: dict[int, Channel] = {
    0x06: Channel("alarm settings", 9, _alarm_setting),
    0x10: constant("reboot", "reboot", "yes"),
    0x28: constant("report status", "report_status", "yes"),
    0x35: Channel("d2d key", 8, lambda d: {"d2d_key": d.hex()}),
    0x4A: constant("sync time", "sync_time", "yes"),
    0x68: simple("history", ("history_enable", "B", ENABLE)),
    0x69: simple("retransmit", ("retransmit_enable", "B", ENABLE)),
    0x6A: Channel("retransmit interval", 3, interval),
    0x6B: constant("stop transmit", "stop_transmit", "yes"),
    0x6D: constant("stop transmit", "stop_transmit", "yes"),
    0x84: simple("d2d", ("d2d_enable", "B", ENABLE)),
    0x8E: simple("report interval", ("", "B", 1), ("report_interval", "H", 1)),
    0x96: listed(
        "d2d master",
        "d2d_master_config",
        ("mode", "B", D2D_MODE),
        ("enable", "B", ENABLE),
        ("lora_uplink_enable", "B", ENABLE),
        ("d2d_cmd", "H", _d2d_command),
        ("time", "H", 1),
        ("time_enable", "B", ENABLE),
    ),
    0xA6: simple("reset cumulative", ("reset_cumulative_enable", "B", ENABLE)),
    0xA7: simple("reset interval", ("reset_cumulative_interval", "H", 1)),
    0xA8: Channel("reset counts", 1, _reset_counts),
    0xA9: simple("report cumulative", ("report_cumulative_enable", "B", ENABLE)),
    0xAA: simple("report temperature", ("report_temperature_enable", "B", ENABLE)),
    0xAB: group(
        "temperature calibration",
        "temperature_calibration_settings",
        ("enable", "B", ENABLE),
        ("calibration_value", "h", 10),
    ),
    0xBD: simple("time zone", ("time_zone", "h", utc_offsets(1))),
    0xEF: group(
        "reset schedule",
        "reset_cumulative_config",
        ("enable", "B", ENABLE),
        ("hour", "B", 1),
        ("minute", "B", 1),
    ),
}
ANSWERED = {0x10: simple("report type", ("report_type", "B", {0: "period", 1: "immediately"}))}

LAYOUT: Layout = {
    **replies((0xFE, 0xFF), REPLIES),
    **answered(ANSWERED),
    **attributes(version_hex_nibble, version_hex, "on"),
    (0xFF, 0xAC): group(
        "install settings",
        "install_config",
        ("install_method", "B", {0: "side", 1: "top"}),
        ("install_height", "B", 10),
        ("compensation", "b", 1),
        ("sensitivity_report_enable", "B", ENABLE),
        ("manual_gain", "B", 1),
    ),
    (0xFF, 0xAD): simple(
        "trigger mode", ("people_threshold_trigger_mode", "B", {0: "threshold", 1: "multiple"})
    ),
    (0x01, 0x75): simple("battery", ("battery", "B", 1)),
    (0x03, 0x67): simple("temperature", ("temperature", "h", 10)),
    (0x04, 0xCC): simple("total in/out", ("total_in", "H", 1), ("total_out", "H", 1)),
    (0x05, 0xCC): simple("period in/out", ("period_in", "H", 1), ("period_out", "H", 1)),
    (0x0A, 0xEF): simple("timestamp", ("timestamp", "I", 1)),
    (0x81, 0xEE): simple("sensitivity", ("current_sensitivity", "B", 1)),
    (0x83, 0x67): _alarm((("temperature", "h", 10),), "temperature_alarm"),
    (0x84, 0xCC): _alarm((("total_in", "H", 1), ("total_out", "H", 1)), "total_count_alarm"),
    (0x85, 0xCC): _alarm((("period_in", "H", 1), ("period_out", "H", 1)), "period_count_alarm"),
    (0x20, 0xCE): Channel("history", 13, _history, history=True, size_of=_history_size),
}
