"""A pushed message's times, as the device wrote them, in UTC.

A period or moment written with an explicit offset (``...+08:00``) is taken as
written. A naive wall time is converted with the device's own
``time_info.timezone`` / ``time_zone`` (``UTC+8:00``, ``UTC-3:30``,
``UTC+5:30 India Standard Time``) plus one hour when ``dst_status`` is true
(the zone names the standard offset; DST moves the wall clock forward), or with
an IANA zone if the field names one. Without any zone the bridge's timezone is
assumed. Epoch numbers (seconds or milliseconds) are accepted too; dates with
slashes or one-digit months and days (``2022/1/5 18:15:52``) as well.

A message's own moment is, in this order, ``time_info.time``,
``trigger_time``, ``report_time``, ``timestamp``, then ``end_time`` /
``start_time``; else a top-level ``timestamp``/``time``/``report_time`` that
reads as a time between 2000 and 2100 (outside ``time_info`` a "time" may be a
duration or a label).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ..clock import plausible, utc_text
from ..records import NonexistentLocalTime, local_to_utc
from .json_text import folded
from .message import BadMessage

MOMENT_KEYS = ("time", "trigger_time", "report_time", "timestamp", "end_time", "start_time")


# A date with one-digit month or day, or slashes: "2022/1/5", "2022-1-05"; the rest is ISO 8601.
_DATE = re.compile(r"^(\d{4})([/-])(\d{1,2})\2(\d{1,2})(?!\d)")
_OFFSET = re.compile(r"^\s*(?:UTC|GMT)?\s*([+-])\s*(\d{1,2})(?::?(\d{2}))?(?!\d)", re.IGNORECASE)
_BARE_UTC = re.compile(r"^\s*(?:UTC|GMT|Z)(?:\s|$|\()", re.IGNORECASE)


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def device_zone(time_info: dict[str, Any]) -> timedelta | ZoneInfo | None:
    """The device's clock: a UTC offset from ``timezone``/``time_zone`` plus ``dst_status``, an
    IANA zone if it names one (``Asia/Shanghai``), or None when the message does not say."""
    zone = time_info.get("timezone", time_info.get("time_zone"))
    if zone is None or zone == "":
        return None
    text = str(zone)
    if "/" in text and not _OFFSET.match(text):
        try:
            return ZoneInfo(text.strip())
        except (ValueError, OSError, KeyError):
            raise BadMessage(
                f"time_info.timezone: {text!r} is not a UTC offset or a known zone"
            ) from None
    match = _OFFSET.match(text)
    if match:
        sign, hours, minutes = match.group(1), int(match.group(2)), int(match.group(3) or 0)
        if hours > 14 or minutes >= 60:
            raise BadMessage(f"time_info.timezone: {text!r} is not a UTC offset")
        offset = timedelta(hours=hours, minutes=minutes) * (-1 if sign == "-" else 1)
    elif _BARE_UTC.match(text):
        offset = timedelta(0)
    else:
        raise BadMessage(f"time_info.timezone: {text!r} is not a UTC offset like UTC+8:00")
    if _truthy(time_info.get("dst_status")):
        offset += timedelta(hours=1)
    return offset


class DeviceClock:
    """Reads a message's times and turns them into UTC, by the rules in the module docstring."""

    def __init__(self, top: dict[str, Any], default_zone: ZoneInfo) -> None:
        self.top = top
        self.times = folded(top.get("time_info"))
        clock = device_zone(self.times or top)
        self.offset = clock if isinstance(clock, timedelta) else None
        self.zone = clock if isinstance(clock, ZoneInfo) else default_zone

    def read(self, key: str, value: Any = None) -> datetime | None:
        value = self.times.get(key) if value is None else value
        if value is None or value == "":
            return None
        where = f"time_info.{key}"
        if isinstance(value, int | float) and not isinstance(value, bool):
            seconds = value / 1000 if value > 1e11 else value
            try:
                return datetime.fromtimestamp(seconds, UTC).replace(microsecond=0)
            except (OverflowError, OSError, ValueError):
                raise BadMessage(f"{where}: {value!r} is not a time") from None
        if not isinstance(value, str):
            raise BadMessage(f"{where}: expected a time, got {value!r}")
        text = value.strip()
        # "2022/12/20 18:15:52" (VS121) and ISO 8601 with or without an offset (VS1xx counters)
        date = _DATE.match(text)
        candidate = text
        if date is not None:
            year, month, day = date.group(1, 3, 4)
            candidate = f"{year}-{int(month):02d}-{int(day):02d}{text[date.end() :]}"
        try:
            moment = datetime.fromisoformat(candidate)
        except ValueError:
            raise BadMessage(f"{where}: cannot read {text!r} as a time") from None
        if moment.tzinfo is not None:
            return moment.astimezone(UTC).replace(microsecond=0)
        moment = moment.replace(microsecond=0)
        if self.offset is not None:
            return (moment - self.offset).replace(tzinfo=UTC)
        try:
            return local_to_utc(moment, self.zone)
        except NonexistentLocalTime as exc:
            raise BadMessage(f"{where}: {exc}") from None

    def period(self) -> tuple[datetime, datetime] | None:
        start, end = self.read("start_time"), self.read("end_time")
        if start is None or end is None:
            return None
        if end < start:
            raise BadMessage(
                f"time_info: end_time {utc_text(end)} is before start_time {utc_text(start)}"
            )
        return start, end

    def moment(self) -> datetime | None:
        for key in MOMENT_KEYS:
            found = self.read(key)
            if found is not None:
                return found
        # Outside time_info, a "time" may be anything (a duration, a label): used only if it is one.
        for key in ("timestamp", "time", "report_time"):
            try:
                found = self.read(key, self.top.get(key))
            except BadMessage:
                continue
            if found is not None and plausible(found):
                return found
        return None
