"""Time on the bridge: what time it is, how a moment is written and read back, and which are believable.

* :func:`now_utc` is the bridge's clock (UTC, whole seconds);
  :func:`utc_text` writes a moment as the ingest contract's RFC 3339 UTC
  with ``Z``, and :func:`parse_utc` reads it back; :func:`parse_rfc3339`
  reads the RFC 3339 a network server stamps an uplink with (nanoseconds,
  ``Z`` or an offset).
* :data:`EARLIEST` .. :data:`LATEST` is the span of believable readings:
  outside it a device's clock was never set or is wildly wrong.
* :func:`clock_synchronised`: a Raspberry Pi has no real-time clock; until
  NTP has set it, it boots with whatever time it last saved, hours or days in
  the past. Readings stamped then would land in the wrong periods, so the
  collector asks here before it polls.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache

_TIME_ERROR = 5  # adjtimex(2): "clock not synchronized"
_TIMESYNCD_FLAG = "/run/systemd/timesync/synchronized"

# Readings outside these years come from a device whose clock was never set (1970, 2000 after a
# reset is kept) or is wildly wrong; the cloud's dashboards and the stale-sensor check would be
# misled by them for good, because a final period never changes again.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
# The contract's stamps: RFC 3339 UTC with Z (fractions of a second only where the contract allows).
UTC_TEXT_PATTERN = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?Z$")

# Test hook, never set on a bridge: tests start the collector with its clock
# skewed by this many seconds (no faketime on the image). Read once, here only.
_TEST_CLOCK_OFFSET = timedelta(
    seconds=float(os.environ.get("SENSOR_BRIDGE_TEST_CLOCK_OFFSET_S") or 0)
)


def now_utc() -> datetime:
    """The bridge's clock, in UTC, to the second."""
    return (datetime.now(UTC) + _TEST_CLOCK_OFFSET).replace(microsecond=0)


@lru_cache(maxsize=1024)  # readings of one period, and of one poll, share their stamps
def utc_text(moment: datetime) -> str:
    """RFC 3339 UTC with a ``Z`` suffix, second precision: ``2025-07-22T09:00:00Z``."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: every stamp must carry its zone")
    m = moment.astimezone(UTC)
    # Not strftime: glibc's %Y writes year 5 as "5", and RFC 3339 needs four digits.
    return f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}Z"


def parse_utc(text: str) -> datetime:
    """Read back what :func:`utc_text` wrote (also accepts ``+00:00``)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset")
    return moment.astimezone(UTC)


def parse_rfc3339(text: str) -> datetime:
    """An RFC 3339 time (nanoseconds, ``Z`` or an offset) to the second, in UTC.

    ``ValueError`` names the text when it is not RFC 3339 or carries no offset.
    """
    trimmed = (
        re.sub(r"(\.\d{1,6})\d*", r"\1", text.strip()).replace("Z", "+00:00").replace("z", "+00:00")
    )
    try:
        moment = datetime.fromisoformat(trimmed)
    except ValueError:
        raise ValueError(f"time {text!r} is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        raise ValueError(f"time {text!r} has no UTC offset")
    return moment.astimezone(UTC).replace(microsecond=0)


def plausible(moment: datetime) -> bool:
    """True when a reading could really have been taken at ``moment`` (:data:`EARLIEST` ..
    :data:`LATEST`)."""
    return EARLIEST <= moment < LATEST


def clock_synchronised() -> bool:
    """True once an NTP client (timesyncd, chrony, ntpd) has disciplined the kernel clock."""
    if os.path.exists(_TIMESYNCD_FLAG):
        return True
    import ctypes  # here, not at the top: only the collector asks, every service tells the time

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        timex = ctypes.create_string_buffer(512)  # struct timex, zeroed: modes = 0 reads only
        return libc.adjtimex(timex) not in (-1, _TIME_ERROR)
    except (OSError, AttributeError):
        return False
