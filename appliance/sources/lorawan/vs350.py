"""VS350 passage people counter, from the vendor's protocol page "Payload".

Battery 0x01 0x75 (uint8 %), temperature 0x03 0x67 (int16 / 10 °C), total
in/out 0x04 0xCC and period in/out 0x05 0xCC (uint16 + uint16), timestamp
0x0A 0xEF (uint32 s), alarms 0x83 0x67 / 0x84 0xCC / 0x85 0xCC (the same data
plus an alarm byte), history 0x20 0xCE: timestamp uint32, data type uint8
(0: period in/out; 1: period and total in/out), then uint16 counts.
"""

from __future__ import annotations

import struct

from .frame import ATTRIBUTES, Channel, FrameError, Layout, Values, fields, simple

TEMPERATURE_ALARM = {
    0: "threshold alarm release",
    1: "threshold alarm",
    3: "high temperature alarm",
    4: "high temperature alarm release",
}
COUNT_ALARM = {1: "threshold alarm"}


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


def _alarm(spec: tuple[tuple[str, str, float], ...], field: str, words: dict[int, str]) -> Channel:
    read = fields(*spec)
    size = sum(struct.calcsize("<" + code) for _, code, _ in spec)

    def both(data: bytes) -> Values:
        return {**read(data[:size]), field: words.get(data[size], data[size])}

    return Channel(field.replace("_", " "), size + 1, both)


LAYOUT: Layout = {
    **ATTRIBUTES,
    (0x01, 0x75): simple("battery", ("battery", "B", 1)),
    (0x03, 0x67): simple("temperature", ("temperature", "h", 10)),
    (0x04, 0xCC): simple("total in/out", ("total_in", "H", 1), ("total_out", "H", 1)),
    (0x05, 0xCC): simple("period in/out", ("period_in", "H", 1), ("period_out", "H", 1)),
    (0x0A, 0xEF): simple("timestamp", ("timestamp", "I", 1)),
    (0x83, 0x67): _alarm((("temperature", "h", 10),), "temperature_alarm", TEMPERATURE_ALARM),
    (0x84, 0xCC): _alarm(
        (("total_in", "H", 1), ("total_out", "H", 1)), "total_count_alarm", COUNT_ALARM
    ),
    (0x85, 0xCC): _alarm(
        (("period_in", "H", 1), ("period_out", "H", 1)), "period_count_alarm", COUNT_ALARM
    ),
    (0x20, 0xCE): Channel("history", 13, _history, history=True, size_of=_history_size),
}
