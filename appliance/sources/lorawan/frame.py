"""Milesight's LoRaWAN frame layout, read from a table: channel id, channel type, data.

Every Milesight uplink is a run of ``[channel id][channel type][data]``
entries; the pair says how long the data is and what it holds (the vendor's
protocol pages, "Payload" section of each model). There is no length byte, so
an entry this bridge does not know cannot be skipped: the frame is refused
whole with the byte it stopped at, never half-read.

A model's layout is a dict ``(id, type) -> Channel``. A Channel has a fixed
size and a function of its data bytes giving named values (the vendor's own
field names, so a person can compare with the vendor's decoder). History
channels return their fields under ``history``; :func:`walk` collects them as
a list of entries, each dated by its own ``timestamp``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...errors import MessageError

Values = dict[str, Any]


class FrameError(MessageError):
    """The bytes do not follow the model's documented layout; the text says where and why."""


@dataclass(frozen=True)
class Channel:
    """One ``(id, type)`` entry of a layout: ``size`` data bytes read by ``read``.

    ``sizes`` lists other allowed sizes for an entry whose length depends on a
    byte of its own data (VS350 history); ``size_of`` picks one from that data."""

    name: str
    size: int
    read: Callable[[bytes], Values]
    history: bool = False
    size_of: Callable[[bytes], int] | None = None


Layout = dict[tuple[int, int], Channel]


def fields(*spec: tuple[str, str, float]) -> Callable[[bytes], Values]:
    """A reader of little-endian fields: (name, struct code, divisor); divisor 1 keeps integers."""
    codes = "<" + "".join(code for _, code, _ in spec)

    def read(data: bytes) -> Values:
        raw = struct.unpack(codes, data)
        return {
            name: (value if div == 1 else round(value / div, 2))
            for (name, _, div), value in zip(spec, raw, strict=True)
        }

    return read


def size_of(codes: str) -> int:
    return struct.calcsize("<" + codes)


def simple(name: str, *spec: tuple[str, str, float], history: bool = False) -> Channel:
    return Channel(name, size_of("".join(code for _, code, _ in spec)), fields(*spec), history)


def enum(name: str, field: str, words: dict[int, str]) -> Channel:
    """A one-byte state printed as the vendor's word for it; an undocumented value stays a number."""
    return Channel(name, 1, lambda data: {field: words.get(data[0], data[0])})


def walk(payload: bytes, layout: Layout, model: str) -> Values:
    """The values in ``payload``; raises :class:`FrameError` naming the first byte that breaks the layout."""
    if not payload:
        raise FrameError("empty frame")
    values: Values = {}
    history: list[Values] = []
    at = 0
    while at < len(payload):
        if at + 2 > len(payload):
            raise FrameError(
                f"byte {at}: a lone byte 0x{payload[at]:02X} where a channel id and type belong"
            )
        key = (payload[at], payload[at + 1])
        channel = layout.get(key)
        if channel is None:
            raise FrameError(
                f"byte {at}: channel 0x{key[0]:02X} type 0x{key[1]:02X} is not in the {model} layout"
            )
        start = at + 2
        size = channel.size_of(payload[start:]) if channel.size_of else channel.size
        data = payload[start : start + size]
        if len(data) < size:
            raise FrameError(
                f"byte {at}: {channel.name} needs {size} data bytes, the frame has {len(data)} left"
            )
        read = channel.read(data)
        if channel.history:
            history.append(read)
        else:
            values.update(read)
        at = start + size
    if history:
        values["history"] = history
    return values


# ---------------------------------------------------------------- attributes every model sends


def _version(data: bytes) -> str:
    """Hardware 0x0110 reads 1.1; firmware 0x0110 reads 1.10 (vendor's examples)."""
    return f"{data[0]}.{data[1] >> 4}"


ATTRIBUTES: Layout = {
    (0xFF, 0x01): simple("ipso version", ("ipso_version", "B", 1)),
    (0xFF, 0x09): Channel("hardware version", 2, lambda d: {"hardware_version": _version(d)}),
    (0xFF, 0x0A): Channel("firmware version", 2, lambda d: {"firmware_version": f"{d[0]}.{d[1]}"}),
    (0xFF, 0xFF): Channel("tsl version", 2, lambda d: {"tsl_version": f"{d[0]}.{d[1]}"}),
    (0xFF, 0x16): Channel("serial number", 8, lambda d: {"sn": d.hex()}),
    (0xFF, 0x0F): enum(
        "lorawan class",
        "lorawan_class",
        {0: "Class A", 1: "Class B", 2: "Class C", 3: "Class CtoB"},
    ),
    (0xFF, 0xFE): simple("reset event", ("reset_event", "B", 1)),
    (0xFF, 0x0B): simple("device status", ("device_status", "B", 1)),
}
