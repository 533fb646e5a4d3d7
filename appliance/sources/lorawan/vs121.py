"""VS121 AI workplace occupancy sensor (LoRaWAN), from the vendor's protocol page "Payload".

People count 0x04 0xC9: everyone seen (uint8), the number of regions (uint8)
and a region mask (uint16, big-endian: bit 0 is region 1; the vendor's example
04C9030800A1 gives regions 1, 6 and 8 occupied). In/out 0x05 0xCC and total
in/out 0x0D 0xCC (uint16 + uint16), maximum 0x06 0xCD (uint8), region counts
0x07 0xD5 (regions 1-8) and 0x08 0xD5 (9-16, uint8 each), flows between areas
A..D 0x09..0x0C 0xDA (four uint16), dwell time 0x0E 0xE4 (region uint8,
average uint16, maximum uint16), timestamp 0x0F 0x85 (uint32 s). The serial is
6 bytes (0xFF 0x08) and the firmware version 4 (0xFF 0x1F).
"""

from __future__ import annotations

import struct

from .frame import ATTRIBUTES, Channel, Layout, Values, simple


def _people(data: bytes) -> Values:
    total, regions, mask = struct.unpack(">BBH", data)
    values: Values = {"people_count_all": total, "region_count": regions}
    for region in range(1, min(regions, 16) + 1):
        values[f"region_{region}"] = (mask >> (region - 1)) & 1
    return values


def _dwell(data: bytes) -> Values:
    region, avg, peak = struct.unpack("<BHH", data)
    return {f"region_{region}_avg_dwell": avg, f"region_{region}_max_dwell": peak}


def _layout() -> Layout:
    layout: Layout = dict(ATTRIBUTES)
    layout[(0xFF, 0x08)] = Channel("serial number", 6, lambda d: {"sn": d.hex()})
    layout[(0xFF, 0x1F)] = Channel(
        "firmware version", 4, lambda d: {"firmware_version": ".".join(map(str, d))}
    )
    layout[(0x04, 0xC9)] = Channel("people count", 4, _people)
    layout[(0x05, 0xCC)] = simple("people in/out", ("people_in", "H", 1), ("people_out", "H", 1))
    layout[(0x06, 0xCD)] = simple("people max", ("people_count_max", "B", 1))
    layout[(0x07, 0xD5)] = simple(
        "region count 1-8", *((f"region_{r}_count", "B", 1) for r in range(1, 9))
    )
    layout[(0x08, 0xD5)] = simple(
        "region count 9-16", *((f"region_{r}_count", "B", 1) for r in range(9, 17))
    )
    for offset, area in enumerate("abcd"):
        layout[(0x09 + offset, 0xDA)] = simple(
            f"{area.upper()} flow", *((f"{area}_to_{to}", "H", 1) for to in "abcd")
        )
    layout[(0x0D, 0xCC)] = simple(
        "people total in/out", ("people_total_in", "H", 1), ("people_total_out", "H", 1)
    )
    layout[(0x0E, 0xE4)] = Channel("dwell time", 5, _dwell)
    layout[(0x0F, 0x85)] = simple("timestamp", ("timestamp", "I", 1))
    return layout


LAYOUT = _layout()
