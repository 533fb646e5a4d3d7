"""VS133 / VS135 ToF people counters (LoRaWAN), from the vendor's protocol page "Payload".

Per line N (1..4): total in and out (uint32 each, running totals since the
device's reset) on channels 0x03/0x04 + 3(N-1), type 0xD2; the period's in/out
(uint16 + uint16) on 0x05 + 3(N-1), type 0xCC. Region counts 0x0F 0xE3 (four
uint8), dwell time 0x10 0xE4 (region uint8, average uint16, maximum uint16).
"""

from __future__ import annotations

import struct

from .frame import ATTRIBUTES, Channel, Layout, Values, simple


def _dwell(data: bytes) -> Values:
    region, avg, peak = struct.unpack("<BHH", data)
    return {f"region_{region}_avg_dwell": avg, f"region_{region}_max_dwell": peak}


def _layout() -> Layout:
    layout: Layout = dict(ATTRIBUTES)
    for line in range(1, 5):
        base = 0x03 + 3 * (line - 1)
        layout[(base, 0xD2)] = simple(f"line {line} total in", (f"line_{line}_total_in", "I", 1))
        layout[(base + 1, 0xD2)] = simple(
            f"line {line} total out", (f"line_{line}_total_out", "I", 1)
        )
        layout[(base + 2, 0xCC)] = simple(
            f"line {line} period in/out",
            (f"line_{line}_period_in", "H", 1),
            (f"line_{line}_period_out", "H", 1),
        )
    layout[(0x0F, 0xE3)] = simple(
        "region count", *((f"region_{r}_count", "B", 1) for r in range(1, 5))
    )
    layout[(0x10, 0xE4)] = Channel("dwell time", 5, _dwell)
    return layout


LAYOUT = _layout()
