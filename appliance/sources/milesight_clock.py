"""Whose clock to believe: the bridge's against a camera's, from one of its answers.

Every answer carries the camera's own time (its HTTP Date header; without
one, its newest counted hour at least). When the two clocks disagree by more
than ``CLOCK_TOLERANCE`` (a bridge whose NTP is blocked, a camera never set),
the camera source (milesight_http.py) holds what it read as not final and the
sensor fails with the disagreement, in these words, as its reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from zoneinfo import ZoneInfo

# Further apart than this, the bridge's and the camera's clocks are not trusted
# to say a period is over (NTP blocked, a Pi without RTC, a camera never set).
CLOCK_TOLERANCE = timedelta(minutes=10)


def date_header_time(header: str | None) -> datetime | None:
    """The HTTP Date header (always GMT) as aware UTC, or None when absent or unreadable."""
    if not header:
        return None
    try:
        moment = parsedate_to_datetime(header)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:  # "-0000": UTC, source unknown
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(microsecond=0)


@dataclass(frozen=True)
class ClockCheck:
    """The bridge's clock against the camera's, from one answer.

    ``now`` is the moment the answer's rows are judged at: the earlier of the
    two clocks when they agree (a period is final only once both have passed
    its end), the camera's own time when they do not (rows after it are the
    camera's zeros for hours to come). ``problem`` says why readings are held
    as not final, or is None.
    """

    now: datetime
    problem: str | None = None


def check_clocks(
    bridge_now: datetime,
    camera_time: datetime | None,
    newest_counted: datetime | None,
    zone: ZoneInfo,
) -> ClockCheck:
    """Compare the clocks: the camera's Date header when it sends one, else its newest counted hour.

    Without a Date header only a bridge clock behind the camera shows (counts
    in hours the bridge thinks are still to come); one ahead cannot be told
    from a quiet store.
    """
    if camera_time is None:
        if newest_counted is not None and newest_counted - bridge_now > CLOCK_TOLERANCE:
            behind = newest_counted - bridge_now
            return ClockCheck(
                bridge_now,
                f"bridge clock is at least {_span(behind)} behind the camera's "
                "counts; readings held as not final",
            )
        return ClockCheck(bridge_now)
    skew = bridge_now - camera_time
    if abs(skew) <= CLOCK_TOLERANCE:
        return ClockCheck(min(bridge_now, camera_time))
    local_offset = bridge_now.astimezone(zone).utcoffset() or timedelta(0)
    if local_offset and abs(skew + local_offset) <= CLOCK_TOLERANCE:
        # Rows are local wall time whatever the camera's zone setting says; a
        # Date header off by exactly the zone's offset is that setting, not the
        # bridge, and only a person can tell which clock to fix.
        problem = (
            f"camera's Date header is {_span(abs(skew))} off the bridge clock, as if it sent local time "
            f"as GMT (check the camera's time zone setting); readings held as not final"
        )
    else:
        side = "ahead" if skew > timedelta(0) else "behind"
        problem = (
            f"bridge clock and camera clock disagree by {_span(abs(skew))} (bridge {side}); "
            "readings held as not final"
        )
    return ClockCheck(camera_time, problem)


def _span(delta: timedelta) -> str:
    minutes = round(delta.total_seconds() / 60)
    return f"{minutes // 60}h{minutes % 60:02d}m"
