"""Milesight's LoRaWAN frame layout, read from a table: channel id, channel type, data.

Every Milesight uplink is a run of ``[channel id][channel type][data]``
entries; the pair says how long the data is and what it holds (the vendor's
decoders in github.com/Milesight-IoT/SensorDecoders, read as facts about the
layout). There is no length byte, so an entry this bridge does not know cannot
be skipped: the walk stops there, keeps what it read before, and says at which
byte and why (:class:`Decoded`). A frame whose very first entry breaks the
layout holds nothing readable and is refused with :class:`FrameError`.

A model's layout is a dict ``(id, type) -> Channel``. A Channel has a size and
a function of its data bytes giving named values (the vendor's own field
names, so a person can compare with the vendor's decoder). History channels
return their fields under ``history``; :func:`walk` collects them as a list
of entries, each dated by its own ``timestamp``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ...errors import MessageError

Values = dict[str, Any]
# How one field's number becomes its value: 1 keeps it, another number divides it,
# a dict names it (the vendor prints "unknown" for a number it does not name), a
# function renders it.
Convert = float | dict[int, str] | Callable[[int], Any]
Field = tuple[str, str, Convert]


class FrameError(MessageError):
    """The bytes do not follow the model's documented layout; the text says where and why."""


@dataclass(frozen=True)
class Channel:
    """One ``(id, type)`` entry of a layout: ``size`` data bytes read by ``read``.

    ``size_of`` gives the size from the entry's own data when it varies (a
    history record's data type, a setting's mode); it raises FrameError for a
    data type the layout does not know."""

    name: str
    size: int
    read: Callable[[bytes], Values]
    history: bool = False
    size_of: Callable[[bytes], int] | None = None


Layout = dict[tuple[int, int], Channel]


@dataclass(frozen=True)
class Unread:
    """Where a walk stopped before the frame's end: the byte and why."""

    at: int
    reason: str  # as FrameError words it: "byte 6: ..."

    def __str__(self) -> str:
        return self.reason


@dataclass
class Decoded:
    """A frame's values, and the part it could not read (None when it read every byte)."""

    values: Values
    unread: Unread | None = None


def word(words: dict[int, str]) -> Callable[[int], str]:
    return lambda value: words.get(value, "unknown")


def _convert(how: Convert) -> Callable[[int], Any]:
    if isinstance(how, dict):
        return word(how)
    if callable(how):
        return how
    if how == 1:
        return lambda value: value
    return lambda value: value / how


def fields(*spec: Field) -> Callable[[bytes], Values]:
    """A reader of little-endian fields: (name, struct code, how); a name "" skips the field."""
    codes = "<" + "".join(code for _, code, _ in spec)
    named = [(name, _convert(how)) for name, _, how in spec]

    def read(data: bytes) -> Values:
        raw = struct.unpack(codes, data)
        return {name: conv(value) for (name, conv), value in zip(named, raw, strict=True) if name}

    return read


def size_of(codes: str) -> int:
    return struct.calcsize("<" + codes)


def simple(name: str, *spec: Field, history: bool = False) -> Channel:
    return Channel(name, size_of("".join(code for _, code, _ in spec)), fields(*spec), history)


def enum(name: str, field: str, words: dict[int, str]) -> Channel:
    """A one-byte state printed as the vendor's word for it ("unknown" for a number it does not name)."""
    return simple(name, (field, "B", words))


def constant(name: str, field: str, value: Any, size: int = 1) -> Channel:
    """An entry whose data byte the vendor ignores: it always prints ``value`` (a reboot reply)."""
    return Channel(name, size, lambda data: {field: value})


def group(name: str, key: str, *spec: Field) -> Channel:
    """Fields gathered under one key, as the vendor prints a setting with several parts."""
    read = fields(*spec)
    return Channel(name, size_of("".join(code for _, code, _ in spec)), lambda d: {key: read(d)})


def listed(name: str, key: str, *spec: Field) -> Channel:
    """Each entry one item of a list under ``key`` (several of them in a frame add up)."""
    read = fields(*spec)
    return Channel(name, size_of("".join(code for _, code, _ in spec)), lambda d: {key: [read(d)]})


def history_record(model: str, table: dict[int, Channel]) -> Channel:
    """The 0x20 0xCE entry a VS121/VS13x re-sends after an outage: a uint32 timestamp, a data
    type (one of ``table``'s channel ids) and that channel's data, read as its own reading."""

    def size(data: bytes) -> int:
        if len(data) < 5:
            return 5  # walk() reports the frame as too short
        if data[4] not in table:
            raise FrameError(f"history data type 0x{data[4]:02X} is not one the {model} sends")
        return 5 + table[data[4]].size

    def read(data: bytes) -> Values:
        (stamp,) = struct.unpack("<I", data[:4])
        return {"timestamp": stamp, **table[data[4]].read(data[5:])}

    return Channel("history", 9, read, history=True, size_of=size)


def replies(ids: Iterable[int], table: dict[int, Channel]) -> Layout:
    """The device's replies to downlinks: the same types under each of the channel ids."""
    return {(cid, kind): channel for cid in ids for kind, channel in table.items()}


def interval(data: bytes) -> Values:
    """A retransmit (type 0) or resend (type 1) interval in seconds; another type names nothing."""
    kind, seconds = struct.unpack("<BH", data)
    return {0: {"retransmit_interval": seconds}, 1: {"resend_interval": seconds}}.get(kind, {})


RESULT = {0: "success", 1: "forbidden", 2: "invalid parameter"}


def answered(table: dict[int, Channel]) -> Layout:
    """Replies of the 0xF9 channel, and of 0xF8: the same data plus a result byte; a reply
    that did not succeed prints as ``device_response_result`` holding the request."""
    layout: Layout = {(0xF9, kind): channel for kind, channel in table.items()}
    for kind, channel in table.items():
        layout[(0xF8, kind)] = _with_result(kind, channel)
    return layout


def _with_result(kind: int, channel: Channel) -> Channel:
    def read(data: bytes) -> Values:
        request = channel.read(data[:-1])
        if data[-1] == 0:
            return request
        result = {"channel_type": kind, "result": RESULT.get(data[-1], "unknown")}
        return {"device_response_result": {**result, "request": request}}

    return Channel(channel.name + " (answered)", channel.size + 1, read)


def _merge(values: Values, read: Values) -> None:
    """Later entries win, except lists, which add up (several schedule entries in one frame)."""
    for key, value in read.items():
        if isinstance(value, list) and isinstance(values.get(key), list):
            values[key] = values[key] + value
        else:
            values[key] = value


def walk(payload: bytes, layout: Layout, model: str) -> Decoded:
    """The values in ``payload`` up to the first byte that breaks the layout.

    Raises :class:`FrameError` when that is the first entry (nothing is readable)."""
    if not payload:
        raise FrameError("empty frame")
    values: Values = {}
    history: list[Values] = []
    at = 0
    while at < len(payload):
        try:
            at = _entry(payload, at, layout, model, values, history)
        except FrameError as exc:
            if at == 0:
                raise
            unread = Unread(at, str(exc))
            break
    else:
        unread = None
    if history:
        values["history"] = history
    return Decoded(values, unread)


def _entry(
    payload: bytes, at: int, layout: Layout, model: str, values: Values, history: list[Values]
) -> int:
    """Reads the entry at ``at`` into ``values`` / ``history``; returns where the next one starts."""
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
    try:
        size = channel.size_of(payload[start:]) if channel.size_of else channel.size
    except FrameError as exc:
        raise FrameError(f"byte {at}: {channel.name}: {exc}") from None
    data = payload[start : start + size]
    if len(data) < size:
        raise FrameError(
            f"byte {at}: {channel.name} needs {size} data bytes, the frame has {len(data)} left"
        )
    read = channel.read(data)
    if channel.history:
        history.append(read)
    else:
        _merge(values, read)
    return start + size


# ---------------------------------------------------------------- how the vendor prints versions


def ipso_version(value: int) -> str:
    """One byte, a nibble each: 0x13 prints v1.3."""
    return f"v{value >> 4}.{value & 0x0F}"


def version_hex_nibble(data: bytes) -> str:
    """Hardware 0x0110 prints v1.1 (major in hex, minor the high nibble): VS350, VS330, AM300."""
    return f"v{data[0]:x}.{data[1] >> 4}"


def version_hex(data: bytes) -> str:
    """Firmware 0x0114 prints v1.14 (both bytes in hex): VS350, VS330, AM300."""
    return f"v{data[0]:x}.{data[1]:x}"


def version_v(data: bytes) -> str:
    """Each byte in decimal after a v: 0x0103 prints v1.3 (VS13x versions, every TSL version)."""
    return "v" + ".".join(str(b) for b in data)


def version_dotted(data: bytes) -> str:
    """Each byte in decimal, no v: 0x01000000 prints 1.0.0.0 (VS121)."""
    return ".".join(str(b) for b in data)


CLASS = {0: "Class A", 1: "Class B", 2: "Class C", 3: "Class CtoB"}
ENABLE = {0: "disable", 1: "enable"}
YES_NO = {0: "no", 1: "yes"}


def attributes(
    hardware: Callable[[bytes], str],
    firmware: Callable[[bytes], str],
    status: dict[int, str] | str,
) -> Layout:
    """The 0xFF attributes a model sends when it joins, printed the model's way; ``status``
    names the device status byte, or is the one word the model's decoder prints whatever
    the byte holds (the VS350 and VS330 decoders print "on")."""
    return {
        (0xFF, 0x01): simple("ipso version", ("ipso_version", "B", ipso_version)),
        (0xFF, 0x09): Channel("hardware version", 2, lambda d: {"hardware_version": hardware(d)}),
        (0xFF, 0x0A): Channel("firmware version", 2, lambda d: {"firmware_version": firmware(d)}),
        (0xFF, 0xFF): Channel("tsl version", 2, lambda d: {"tsl_version": version_v(d)}),
        (0xFF, 0x16): Channel("serial number", 8, lambda d: {"sn": d.hex()}),
        (0xFF, 0x0F): enum("lorawan class", "lorawan_class", CLASS),
        (0xFF, 0xFE): constant("reset event", "reset_event", "reset"),
        (0xFF, 0x0B): (
            constant("device status", "device_status", status)
            if isinstance(status, str)
            else simple("device status", ("device_status", "B", status))
        ),
    }


def utc_offsets(unit_minutes: int) -> dict[int, str]:
    """The time zones the vendor names, keyed by the offset in its unit (minutes, or tenths of an hour)."""
    names = {}
    for text in (
        "-12 -11 -10 -9:30 -9 -8 -7 -6 -5 -4 -3:30 -3 -2 -1 0 +1 +2 +3 +3:30 +4 +4:30 +5 +5:30"
        " +5:45 +6 +6:30 +7 +8 +9 +9:30 +10 +10:30 +11 +12 +12:45 +13 +14"
    ).split():
        hours, _, mins = text.partition(":")
        sign = -1 if hours.startswith("-") else 1
        total = int(hours) * 60 + sign * int(mins or 0)
        key = total if unit_minutes == 1 else _tenths(total)
        names[key] = "UTC" if total == 0 else f"UTC{text}"
    return names


def _tenths(minutes: int) -> int:
    """An offset in tenths of an hour, as the AM300 decoders key them (5:45 is 57, 12:45 is 127)."""
    sign = -1 if minutes < 0 else 1
    return sign * int(abs(minutes) / 6)
