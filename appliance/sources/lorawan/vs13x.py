"""VS133 / VS135 ToF people counters (LoRaWAN): the frame layout of vs-series/vs133 and vs135
(vs133-decoder.js, vs135-decoder.js: one layout for both).

Per line N (1..4), adults: total in and out (uint32 each, running totals since
the device's reset) on channels 0x03/0x04 + 3(N-1), type 0xD2; the period's
in/out (uint16 + uint16) on 0x05 + 3(N-1), type 0xCC. Children, the same on
0x11/0x12/0x13 + 3(N-1) (``line_N_child_...``). Region counts 0x0F 0xE3 (four
uint8; children 0x1D 0xE3), dwell time 0x10 0xE4 (region uint8, average
uint16, maximum uint16, seconds; children 0x1E 0xE4). Occlusion alarm 0x50
0xFC (a byte, the node: 0 the master, the alarm). History 0x20 0xCE (firmware
1.0.9): timestamp uint32, a data type naming which of the channels above
follows (its number is that channel's id; 0x20 / 0x3C the maximum dwell of
adults / children), then that channel's data. Versions: ipso 0xFF 0x01,
hardware 0xFF 0x09 (v1.1), firmware 0xFF 0x1F (four bytes, v1.0.0.3). Replies
to downlinks on 0xFE/0xFF and 0xF8/0xF9 (settings, see docs/milesight.md).
"""

from __future__ import annotations

import struct

from .frame import (
    ENABLE,
    Channel,
    Layout,
    Values,
    answered,
    constant,
    group,
    history_record,
    interval,
    ipso_version,
    replies,
    simple,
    version_v,
)

ALARM = {0: "alarm_released", 1: "alarm_triggered"}
LOG_LEVEL = {1: "fatal", 2: "error", 3: "warning", 4: "debug", 5: "trace"}


def _dwell(child: str) -> Channel:
    def read(data: bytes) -> Values:
        region, avg, peak = struct.unpack("<BHH", data)
        return {f"region_{region}{child}_avg_dwell": avg, f"region_{region}{child}_max_dwell": peak}

    return Channel("dwell time", 5, read)


def _occlusion(data: bytes) -> Values:
    node = "master" if data[1] == 0 else f"node_{data[1]}"
    return {f"{node}_occlusion_alarm": ALARM.get(data[2], "unknown")}


def _counts() -> dict[int, tuple[str, Channel]]:
    """Data channels by id (each with its type), the ones a history record may carry too."""
    table: dict[int, tuple[str, Channel]] = {}
    for child, first in (("", 0x03), ("_child", 0x11)):
        for line in range(1, 5):
            base = first + 3 * (line - 1)
            name = f"line_{line}{child}"
            label = f"line {line}{child.replace('_', ' ')}"
            table[base] = ("total", simple(f"{label} total in", (f"{name}_total_in", "I", 1)))
            table[base + 1] = ("total", simple(f"{label} total out", (f"{name}_total_out", "I", 1)))
            table[base + 2] = (
                "period",
                simple(
                    f"{label} period", (f"{name}_period_in", "H", 1), (f"{name}_period_out", "H", 1)
                ),
            )
    for child, cid in (("", 0x0F), ("_child", 0x1D)):
        table[cid] = (
            "region",
            simple("region count", *((f"region_{r}{child}_count", "B", 1) for r in range(1, 5))),
        )
    return table


COUNTS = _counts()
TYPE = {"total": 0xD2, "period": 0xCC, "region": 0xE3}


def _one_dwell(which: str) -> Channel:
    def read(data: bytes) -> Values:
        region, value = struct.unpack("<BH", data)
        child = "_child" if "child" in which else ""
        return {f"region_{region}{child}_{which.split('_')[-1]}_dwell": value}

    return Channel("dwell time", 3, read)


# History data types: the data channel of that id, and one half of a dwell channel each.
HISTORY_DATA: dict[int, Channel] = {cid: channel for cid, (_, channel) in COUNTS.items()}
HISTORY_DATA.update(
    {
        0x10: _one_dwell("avg"),
        0x20: _one_dwell("max"),
        0x1E: _one_dwell("child_avg"),
        0x3C: _one_dwell("child_max"),
    }
)


REPLIES: dict[int, Channel] = {
    0x03: simple("report interval", ("report_interval", "H", 1)),
    0x04: simple("confirm mode", ("confirm_mode_enable", "B", ENABLE)),
    0x10: constant("reboot", "reboot", "yes"),
    0x11: simple("time", ("timestamp", "I", 1)),
    0x27: constant("clear history", "clear_history", "yes"),
    0x40: simple("adr", ("adr_enable", "B", ENABLE)),
    0x42: simple("wifi", ("wifi_enable", "B", ENABLE)),
    0x43: simple("periodic report", ("periodic_report_enable", "B", ENABLE)),
    0x44: simple("trigger report", ("trigger_report_enable", "B", ENABLE)),
    0x51: constant("clear total count", "clear_total_count", "yes"),
    0x68: simple("history", ("history_enable", "B", ENABLE)),
    0x69: simple("retransmit", ("retransmit_enable", "B", ENABLE)),
    0x6A: Channel("retransmit interval", 3, interval),
    0x6D: constant("stop transmit", "stop_transmit", "yes"),
}
ANSWERED: dict[int, Channel] = {
    0x84: group(
        "time sync",
        "sync_time_from_gateway_config",
        ("enable", "B", ENABLE),
        ("period", "H", 1),
    ),
    0x85: group("rejoin", "rejoin_config", ("enable", "B", ENABLE), ("max_count", "B", 1)),
    0x86: simple("data rate", ("data_rate", "B", 1)),
    0x87: simple("tx power", ("tx_power_level", "B", 1)),
    0x88: group(
        "log levels",
        "log_config",
        ("console_log_level", "B", LOG_LEVEL),
        ("file_log_level", "B", LOG_LEVEL),
    ),
}


def _layout() -> Layout:
    layout: Layout = {**replies((0xFE, 0xFF), REPLIES), **answered(ANSWERED)}
    layout.update(
        {
            (0xFF, 0x01): simple("ipso version", ("ipso_version", "B", ipso_version)),
            (0xFF, 0x09): Channel(
                "hardware version", 2, lambda d: {"hardware_version": version_v(d)}
            ),
            (0xFF, 0x1F): Channel(
                "firmware version", 4, lambda d: {"firmware_version": version_v(d)}
            ),
            (0xFF, 0x16): Channel("serial number", 8, lambda d: {"sn": d.hex()}),
        }
    )
    for cid, (what, channel) in COUNTS.items():
        layout[(cid, TYPE[what])] = channel
    layout[(0x10, 0xE4)] = _dwell("")
    layout[(0x1E, 0xE4)] = _dwell("_child")
    layout[(0x50, 0xFC)] = Channel("occlusion alarm", 3, _occlusion)
    layout[(0x20, 0xCE)] = history_record("VS13x", HISTORY_DATA)
    return layout


LAYOUT = _layout()
