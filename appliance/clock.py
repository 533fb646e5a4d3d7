"""Is the Pi's clock trustworthy yet?

A Raspberry Pi has no real-time clock: until NTP has set it, it boots with
whatever time it last saved, hours or days in the past. Readings stamped then
would land in the wrong periods, so the collector asks here before it polls.
"""

from __future__ import annotations

import ctypes
import os

_TIME_ERROR = 5  # adjtimex(2): "clock not synchronized"
_TIMESYNCD_FLAG = "/run/systemd/timesync/synchronized"


def clock_synchronised() -> bool:
    """True once an NTP client (timesyncd, chrony, ntpd) has disciplined the kernel clock."""
    if os.path.exists(_TIMESYNCD_FLAG):
        return True
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        timex = ctypes.create_string_buffer(512)  # struct timex, zeroed: modes = 0 reads only
        return libc.adjtimex(timex) not in (-1, _TIME_ERROR)
    except (OSError, AttributeError):
        return False
