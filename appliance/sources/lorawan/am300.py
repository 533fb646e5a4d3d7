"""AM307 / AM319 ambience sensors: the frame layouts of am-series/am307/am307-decoder.js,
am-series/am319-hcho/am319-hcho-decoder.js (model ``am319``, which also reads the O3 variant's
ozone channel) and am-series/am319-o3/am319-o3-decoder.js (model ``am319-o3``).

Battery 0x01 0x75 (uint8 %), temperature 0x03 0x67 (int16 / 10 °C), humidity
0x04 0x68 (uint8 / 2 %), PIR 0x05 0x00 (0 idle, 1 trigger), light level 0x06
0xCB (uint8), CO2 0x07 0x7D (uint16 ppm), TVOC 0x08 0x7D (uint16 / 100, IAQ)
or 0x08 0xE6 (uint16 µg/m³), pressure 0x09 0x73 (uint16 / 10 hPa), buzzer
0x0E 0x01. AM319 adds HCHO 0x0A 0x7D (uint16 / 100 mg/m³), PM2.5 0x0B 0x7D
and PM10 0x0C 0x7D (uint16 µg/m³), O3 0x0D 0x7D (uint16 / 100 ppm, the O3
variant). History 0x20 0xCE (TVOC as IAQ) and 0x21 0xCE (TVOC in µg/m³):
timestamp uint32, temperature int16/10, humidity uint16/2, PIR, light level,
CO2, TVOC, pressure uint16/10, and on the AM319 PM2.5, PM10 and HCHO (the O3
variant sends its O3 there: model ``am319-o3`` reads it as O3, ``am319`` as HCHO).

The AM307's codec example (am307-codec.json) carries PIR activity 0x05 0x6A
(uint16 count) and illumination 0x06 0x65 (three uint16: lux, infrared and
visible, infrared), an earlier firmware's channels that the current AM307
decoder stops at; their layout is the AM107's (am107-decoder.js).

One deviation from the vendor's decoder, on purpose: TVOC in µg/m³ is named
``tvoc_ugm3`` (the vendor calls both units ``tvoc``), so the unit is never
guessed.
"""

from __future__ import annotations

import struct

from .frame import (
    ENABLE,
    Channel,
    Field,
    Layout,
    Values,
    attributes,
    constant,
    enum,
    interval,
    replies,
    simple,
    utc_offsets,
    version_hex,
    version_hex_nibble,
)

PIR = {0: "idle", 1: "trigger"}
CALIBRATION = {0: "factory", 1: "abc", 2: "manual", 3: "background", 4: "zero"}
SCREEN_AM307 = ("temperature", "humidity", "co2", "light", "tvoc", "smile", "letter")
# The AM319 HCHO decoder names bit 9 both hcho and o3.
SCREEN_AM319 = (*SCREEN_AM307, "pm2_5", "pm10", "hcho", "o3")
SCREEN_AM319_O3 = (*SCREEN_AM307, "pm2_5", "pm10", "o3")


def _co2_calibration(name: str, code: str) -> Channel:
    """The calibration mode; in manual mode (2) the value follows, named and signed per model."""

    def read(data: bytes) -> Values:
        settings: Values = {"mode": CALIBRATION.get(data[0], "unknown")}
        if data[0] == 2:
            (settings[name],) = struct.unpack("<" + code, data[1:3])
        return {"co2_calibration_settings": settings}

    return Channel("co2 calibration", 1, read, size_of=_co2_calibration_size)


def _co2_calibration_size(data: bytes) -> int:
    return 3 if data[:1] == b"\x02" else 1


CO2_CALIBRATION = _co2_calibration("calibration_value", "H")


def _screen(names: tuple[str, ...]) -> Channel:
    """Which readings the screen shows: a mask of the bits set, then each bit's state."""

    def read(data: bytes) -> Values:
        mask, state = struct.unpack("<HH", data)
        bits = {name: min(index, 9) for index, name in enumerate(names)}
        return {
            "screen_display_element_settings": {
                name: ENABLE[(state >> bit) & 1] for name, bit in bits.items() if (mask >> bit) & 1
            }
        }

    return Channel("screen elements", 4, read)


def _child_lock(data: bytes) -> Values:
    buttons = ("off_button", "on_button", "collection_button")
    return {"child_lock_settings": {b: ENABLE[(data[0] >> i) & 1] for i, b in enumerate(buttons)}}


def _replies(abc_size: int, screen: tuple[str, ...], calibration: Channel) -> dict[int, Channel]:
    return {
        0x03: simple("report interval", ("report_interval", "H", 1)),
        0x10: constant("reboot", "reboot", "yes"),
        0x17: simple("time zone", ("time_zone", "h", utc_offsets(6))),
        0x1A: calibration,
        0x25: Channel("child lock", 1, _child_lock),
        0x27: constant("clear history", "clear_history", "yes"),
        0x2C: constant("query status", "query_status", "yes"),
        0x2D: simple("screen", ("screen_display_enable", "B", ENABLE)),
        0x2E: simple("led", ("led_indicator_mode", "B", {0: "off", 1: "on", 2: "blink"})),
        0xEB: simple("tvoc unit", ("tvoc_unit", "B", {0: "iaq", 1: "µg/m³"})),
        0x39: Channel(
            "co2 abc calibration",
            abc_size,
            lambda d: {"co2_abc_calibration_enable": ENABLE.get(d[0], "unknown")},
        ),
        0x3A: simple("report interval", ("report_interval", "H", 1)),
        0x3B: simple("time sync", ("time_sync_enable", "B", ENABLE)),
        0x3C: simple("screen pattern", ("screen_display_pattern", "B", 1)),
        0x3D: constant("stop buzzer", "stop_buzzer", "yes"),
        0x3E: simple("buzzer", ("buzzer_enable", "B", ENABLE)),
        0x66: simple("screen alarm", ("screen_display_alarm_enable", "B", ENABLE)),
        0x68: simple("history", ("history_enable", "B", ENABLE)),
        0x69: simple("retransmit", ("retransmit_enable", "B", ENABLE)),
        0x6A: Channel("retransmit interval", 3, interval),
        0x6D: constant("stop transmit", "stop_transmit", "yes"),
        0xF0: _screen(screen),
        0xF4: simple("co2 calibration", ("co2_calibration_enable", "B", ENABLE)),
    }


def _common(
    status: dict[int, str],
    abc_size: int,
    screen: tuple[str, ...],
    calibration: Channel = CO2_CALIBRATION,
) -> Layout:
    layout: Layout = {
        **replies((0xFE, 0xFF), _replies(abc_size, screen, calibration)),
        **attributes(version_hex_nibble, version_hex, status),
        (0x01, 0x75): simple("battery", ("battery", "B", 1)),
        (0x03, 0x67): simple("temperature", ("temperature", "h", 10)),
        (0x04, 0x68): simple("humidity", ("humidity", "B", 2)),
        (0x05, 0x00): enum("pir", "pir", PIR),
        (0x06, 0xCB): simple("light level", ("light_level", "B", 1)),
        (0x07, 0x7D): simple("co2", ("co2", "H", 1)),
        (0x08, 0x7D): simple("tvoc (iaq)", ("tvoc", "H", 100)),
        (0x08, 0xE6): simple("tvoc (µg/m³)", ("tvoc_ugm3", "H", 1)),
        (0x09, 0x73): simple("pressure", ("pressure", "H", 10)),
        (0x0E, 0x01): enum("buzzer", "buzzer_status", {0: "off", 1: "on"}),
    }
    del layout[(0xFF, 0xFE)]  # the AM300 decoders know no reset event: 0xFF 0xFE stops them
    return layout


_HISTORY = (
    ("timestamp", "I", 1),
    ("temperature", "h", 10),
    ("humidity", "H", 2),
    ("pir", "B", PIR),
    ("light_level", "B", 1),
    ("co2", "H", 1),
)
_PRESSURE = (("pressure", "H", 10),)
_AIR = (("pm2_5", "H", 1), ("pm10", "H", 1), ("hcho", "H", 100))
_AIR_O3 = (("pm2_5", "H", 1), ("pm10", "H", 1), ("o3", "H", 100))

AM307: Layout = {
    **_common({0: "off", 1: "on"}, 5, SCREEN_AM307),
    (0x05, 0x6A): simple("pir activity", ("activity", "H", 1)),
    (0x06, 0x65): simple(
        "illumination",
        ("illumination", "H", 1),
        ("infrared_and_visible", "H", 1),
        ("infrared", "H", 1),
    ),
    (0x20, 0xCE): simple("history", *_HISTORY, ("tvoc", "H", 100), *_PRESSURE, history=True),
    (0x21, 0xCE): simple("history", *_HISTORY, ("tvoc_ugm3", "H", 1), *_PRESSURE, history=True),
}
_PM: Layout = {
    **replies(
        (0xFE, 0xFF), {0x65: simple("pm2.5 interval", ("pm2_5_collection_interval", "H", 1))}
    ),
    (0x0B, 0x7D): simple("pm2.5", ("pm2_5", "H", 1)),
    (0x0C, 0x7D): simple("pm10", ("pm10", "H", 1)),
    (0x0D, 0x7D): simple("o3", ("o3", "H", 100)),
}


def _history(air: tuple[Field, ...]) -> Layout:
    return {
        (0x20, 0xCE): simple(
            "history", *_HISTORY, ("tvoc", "H", 100), *_PRESSURE, *air, history=True
        ),
        (0x21, 0xCE): simple(
            "history", *_HISTORY, ("tvoc_ugm3", "H", 1), *_PRESSURE, *air, history=True
        ),
    }


AM319: Layout = {
    **_common({0: "offline", 1: "online"}, 1, SCREEN_AM319),
    **_PM,
    (0x0A, 0x7D): simple("hcho", ("hcho", "H", 100)),
    **_history(_AIR),
}
AM319_O3: Layout = {
    **_common({0: "off", 1: "on"}, 1, SCREEN_AM319_O3, _co2_calibration("value", "h")),
    **_PM,
    **_history(_AIR_O3),
}
