"""VS330 bathroom occupancy sensor: the frame layout of vs-series/vs330/vs330-decoder.js.

Battery 0x01 0x75 (uint8 %), distance 0x02 0x82 (uint16 mm), occupancy 0x03
0x8E (0 vacant, 1 occupied), calibration 0x04 0x8E (0 failed, 1 success);
attributes on 0xFF and replies to downlinks on 0xFE/0xFF (docs/milesight.md).
"""

from __future__ import annotations

from .frame import (
    ENABLE,
    Channel,
    Layout,
    attributes,
    constant,
    enum,
    group,
    replies,
    simple,
    version_hex,
    version_hex_nibble,
)

REPLIES: dict[int, Channel] = {
    0x02: simple("collection interval", ("collection_interval", "H", 1)),
    0x03: simple("report interval", ("report_interval", "H", 1)),
    0x10: constant("reboot", "reboot", "yes"),
    0x70: simple("presence height", ("human_exist_height", "H", 1)),
    0x71: simple("test", ("test_enable", "B", ENABLE)),
    0x72: simple("test duration", ("test_duration", "H", 1)),
    0x7A: group("back test", "back_test_config", ("enable", "B", ENABLE), ("distance", "H", 1)),
}

LAYOUT: Layout = {
    **replies((0xFE, 0xFF), REPLIES),
    **attributes(version_hex_nibble, version_hex, "on"),
    (0x01, 0x75): simple("battery", ("battery", "B", 1)),
    (0x02, 0x82): simple("distance", ("distance", "H", 1)),
    (0x03, 0x8E): enum("occupancy", "occupancy", {0: "vacant", 1: "occupied"}),
    (0x04, 0x8E): enum("calibration", "calibration_status", {0: "failed", 1: "success"}),
}
