"""VS330 bathroom occupancy sensor, from the vendor's protocol page "Payload".

Battery 0x01 0x75 (uint8 %), distance 0x02 0x82 (uint16 mm), occupancy 0x03
0x8E (0 vacant, 1 occupied), calibration 0x04 0x8E (0 failed, 1 success).
"""

from __future__ import annotations

from .frame import ATTRIBUTES, Layout, enum, simple

LAYOUT: Layout = {
    **ATTRIBUTES,
    (0x01, 0x75): simple("battery", ("battery", "B", 1)),
    (0x02, 0x82): simple("distance", ("distance", "H", 1)),
    (0x03, 0x8E): enum("occupancy", "occupancy", {0: "vacant", 1: "occupied"}),
    (0x04, 0x8E): enum("calibration", "calibration_status", {0: "failed", 1: "success"}),
}
