"""AM307 / AM319 ambience sensors, from the vendor's protocol pages "Payload".

Battery 0x01 0x75 (uint8 %), temperature 0x03 0x67 (int16 / 10 °C), humidity
0x04 0x68 (uint8 / 2 %), PIR 0x05 0x00 (0 idle, 1 trigger), light level 0x06
0xCB (uint8), CO2 0x07 0x7D (uint16 ppm), TVOC 0x08 0x7D (uint16 / 100, IAQ)
or 0x08 0xE6 (uint16 µg/m³), pressure 0x09 0x73 (uint16 / 10 hPa), buzzer
0x0E 0x01. AM319 adds HCHO 0x0A 0x7D (uint16 / 100 mg/m³), PM2.5 0x0B 0x7D
and PM10 0x0C 0x7D (uint16 µg/m³). History 0x20 0xCE (TVOC as IAQ) and 0x21
0xCE (TVOC in µg/m³): timestamp uint32, temperature int16/10, humidity
uint16/2, PIR, light level, CO2, TVOC, pressure uint16/10, and on the AM319
PM2.5, PM10, HCHO.

One deviation from the vendor's decoder, on purpose: TVOC in µg/m³ is named
``tvoc_ugm3`` (the vendor calls both units ``tvoc``), so the unit is never
guessed.
"""

from __future__ import annotations

from .frame import ATTRIBUTES, Layout, enum, simple

PIR = {0: "idle", 1: "trigger"}
_COMMON: Layout = {
    **ATTRIBUTES,
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
_HISTORY = (
    ("timestamp", "I", 1),
    ("temperature", "h", 10),
    ("humidity", "H", 2),
    ("pir", "B", 1),
    ("light_level", "B", 1),
    ("co2", "H", 1),
)
_PRESSURE = (("pressure", "H", 10),)
_AIR = (("pm2_5", "H", 1), ("pm10", "H", 1), ("hcho", "H", 100))

AM307: Layout = {
    **_COMMON,
    (0x20, 0xCE): simple("history", *_HISTORY, ("tvoc", "H", 100), *_PRESSURE, history=True),
    (0x21, 0xCE): simple("history", *_HISTORY, ("tvoc_ugm3", "H", 1), *_PRESSURE, history=True),
}
AM319: Layout = {
    **_COMMON,
    (0x0A, 0x7D): simple("hcho", ("hcho", "H", 100)),
    (0x0B, 0x7D): simple("pm2.5", ("pm2_5", "H", 1)),
    (0x0C, 0x7D): simple("pm10", ("pm10", "H", 1)),
    (0x20, 0xCE): simple("history", *_HISTORY, ("tvoc", "H", 100), *_PRESSURE, *_AIR, history=True),
    (0x21, 0xCE): simple(
        "history", *_HISTORY, ("tvoc_ugm3", "H", 1), *_PRESSURE, *_AIR, history=True
    ),
}
