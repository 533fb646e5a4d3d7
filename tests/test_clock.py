"""The bridge's one time module: stamps written and read back, network times, believable moments."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from appliance import clock, records
from appliance.sources.lorawan.route import RouteError, network_time


def test_a_stamp_reads_back_as_the_moment_it_was() -> None:
    moment = datetime(2025, 7, 22, 9, 0, 0, tzinfo=timezone(timedelta(hours=2)))
    assert clock.utc_text(moment) == "2025-07-22T07:00:00Z"
    assert clock.parse_utc(clock.utc_text(moment)) == moment
    with pytest.raises(ValueError, match="naive"):
        clock.utc_text(datetime(2025, 7, 22, 9))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-07-22T09:00:00.123456789Z", datetime(2025, 7, 22, 9, tzinfo=UTC)),
        ("2025-07-22T11:00:00.5+02:00", datetime(2025, 7, 22, 9, tzinfo=UTC)),
        ("2025-07-22t09:00:00z", datetime(2025, 7, 22, 9, tzinfo=UTC)),
    ],
)
def test_a_network_servers_rfc3339_time_is_read_to_the_second_in_utc(
    text: str, expected: datetime
) -> None:
    assert clock.parse_rfc3339(text) == expected
    assert network_time(text) == expected


@pytest.mark.parametrize(
    ("text", "why"),
    [("yesterday", "is not an RFC 3339 time"), ("2025-07-22T09:00:00", "has no UTC offset")],
)
def test_a_bad_network_time_is_named_in_the_routes_error(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        clock.parse_rfc3339(text)
    with pytest.raises(RouteError, match=why):
        network_time(text)


def test_believable_moments_are_years_2000_to_2099() -> None:
    assert clock.plausible(datetime(2000, 1, 1, tzinfo=UTC))
    assert clock.plausible(datetime(2099, 12, 31, 23, 59, 59, tzinfo=UTC))
    assert not clock.plausible(datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC))
    assert not clock.plausible(datetime(1970, 1, 1, tzinfo=UTC))
    assert not clock.plausible(datetime(2100, 1, 1, tzinfo=UTC))


def test_the_door_and_the_clock_agree_on_what_is_believable() -> None:
    """The door refuses exactly the moments the clock calls implausible."""
    for moment, believable in (
        (clock.EARLIEST, True),
        (clock.EARLIEST - timedelta(seconds=1), False),
        (clock.LATEST - timedelta(seconds=1), True),
    ):
        problem = records._moment_problem("period_start", clock.utc_text(moment))
        assert (problem is None) is believable, (moment, problem)
        assert clock.plausible(moment) is believable


def test_time_is_defined_once() -> None:
    """Every module tells the time with the clock's functions, not copies of them."""
    assert records.utc_text is clock.utc_text and records.parse_utc is clock.parse_utc
    assert records.now_utc is clock.now_utc and records.EARLIEST is clock.EARLIEST
