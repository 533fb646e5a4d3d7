"""Polling Milesight cameras: firmware quirks, bad answers, cursors, final periods, DST days.

Every test polls a real simulated camera over loopback into a real outbox,
with the clocks of both moved by hand where a test needs a particular day.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import closed_port_url

from appliance.config import SensorConfig
from appliance.outbox import Outbox
from appliance.records import utc_text
from appliance.sim.camera import SimCamera
from appliance.sources.milesight_http import CameraPoller, SensorError, parse_counts_csv, parse_live

FIRMWARE_HEADER = ("StartTime, EndTime, Tolal - In, Tolal - Out, Tolal - Sum, Line1 - In, Line1 - Out, Line1 - Sum, "
                   "Line2 - In, Line2 - Out, Line2 - Sum, Line3 - In, Line3 - Out, Line3 - Sum, Line4 - In, "
                   "Line4 - Out, Line4 - Sum")
FIRMWARE_ROW = "2025/07/22 10:00:00,2025/07/22 10:59:59,282,79,361,0,0,0,0,0,0,0,0,0,282,79,361"


class Clock:
    """A hand-moved clock shared by the camera and the poller."""

    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment

    def advance(self, **delta: float) -> None:
        self.moment += timedelta(**delta)


def sensor_for(camera_url: str, **extra: object) -> SensorConfig:
    settings: dict[str, object] = {"id": "entrance", "url": camera_url, "username": "admin", "password": "pw",
                                   "timezone": "Europe/Lisbon", "backfill_h": 6, "timeout_s": 2}
    settings.update(extra)
    return SensorConfig(**settings)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2025, 7, 22, 12, 30, tzinfo=UTC))


@pytest.fixture
def camera(clock: Clock):
    with SimCamera(timezone="Europe/Lisbon", username="admin", password="pw", lines=2, regions=3, clock=clock) as cam:
        yield cam


@pytest.fixture
def outbox(tmp_path: Path):
    box = Outbox(tmp_path / "outbox.db")
    yield box
    box.close()


def by_start(outbox: Outbox) -> dict[str, dict]:
    return {p.body["period_start"]: p.body for p in outbox.take(10_000)}


# ---------------------------------------------------------------- parsing quirks


@pytest.mark.parametrize(
    "text",
    [
        FIRMWARE_HEADER + "\n" + FIRMWARE_ROW + "\n",
        FIRMWARE_HEADER + "\r\n" + FIRMWARE_ROW + "\r\n",
        FIRMWARE_HEADER.replace(" - ", "-").replace(", ", ",").replace("Tolal", "Total") + "\n" + FIRMWARE_ROW,
        FIRMWARE_HEADER.replace("Tolal", "Total") + "\n" + FIRMWARE_ROW,
        "\ufeff" + FIRMWARE_HEADER + "\n" + FIRMWARE_ROW,
    ],
    ids=["firmware-verbatim", "crlf", "compact-Line1-In", "Total-spelled-right", "byte-order-mark"],
)
def test_line_csv_columns_are_found_by_name(text: str) -> None:
    [(start, end, values)] = parse_counts_csv(text, "line_counts")
    assert (start, end) == (datetime(2025, 7, 22, 10), datetime(2025, 7, 22, 10, 59, 59))
    assert values["total"] == {"in": 282, "out": 79}
    assert values["lines"]["4"] == {"in": 282, "out": 79} and values["lines"]["1"] == {"in": 0, "out": 0}


def test_fewer_lines_and_region_column_case() -> None:
    [(_, _, lines)] = parse_counts_csv("StartTime,EndTime,Line1-In,Line1-Out,Line1-Sum\n"
                                       "2025/07/22 10:00:00,2025/07/22 10:59:59,5,3,8\n", "line_counts")
    assert lines == {"total": {"in": 5, "out": 3}, "lines": {"1": {"in": 5, "out": 3}}}
    [(_, _, regions)] = parse_counts_csv("starttime, endtime, REGION1, region2\n"
                                         "2025/07/22 10:00:00,2025/07/22 10:59:59,4,0\n", "region_counts")
    assert regions == {"regions": {"1": 4, "2": 0}}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty answer"),
        ("<html><body>Server busy</body></html>", "HTML page"),
        ("Time,In\n10:00,5\n", "no StartTime"),
        (FIRMWARE_HEADER + "\n" + FIRMWARE_ROW[:40], "truncated: row 2 has"),
        (FIRMWARE_HEADER + "\n" + FIRMWARE_ROW.replace("282,79", "-3,79", 1), "is not a count"),
        (FIRMWARE_HEADER + "\n" + FIRMWARE_ROW.replace("282,79", "2.5,79", 1), "is not a count"),
        (FIRMWARE_HEADER + "\n" + FIRMWARE_ROW.replace("2025/07/22 10:00:00", "yesterday"), "is not a time"),
    ],
)
def test_malformed_csv_is_refused_whole_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(SensorError, match=reason):
        parse_counts_csv(text, "line_counts")


@pytest.mark.parametrize(
    "body",
    [
        "var current_in_count='2722';var current_out_count='1008';var current_sum_count='3730';"
        "var current_capacity_count='1714';var current_counter_alarm='0';",
        "var current_in_count='2722';\nvar current_out_count='1008';\nvar current_sum_count='3730';\n"
        "var current_capacity_count='1714';\nvar current_counter_alarm='5';\n",
    ],
    ids=["run-together", "one-per-line"],
)
def test_live_counters_both_layouts(body: str) -> None:
    assert parse_live(body) == {"in": 2722, "out": 1008, "sum": 3730, "capacity": 1714}


def test_live_counters_missing_or_garbled() -> None:
    with pytest.raises(SensorError, match="current_out_count missing"):
        parse_live("var current_in_count='1';")
    with pytest.raises(SensorError, match="is not a count"):
        parse_live(parse_live.__doc__ and "var current_in_count='x';var current_out_count='1';"
                   "var current_sum_count='1';var current_capacity_count='1';")


# ---------------------------------------------------------------- polling a camera


def test_first_poll_backfills_and_the_growing_hour_is_not_final(camera: SimCamera, outbox: Outbox,
                                                                clock: Clock) -> None:
    poller = CameraPoller(sensor_for(camera.url), outbox, clock)
    outcome = poller.poll("line_counts")
    assert outcome.ok, outcome.error
    held = by_start(outbox)
    # backfill_h = 6 from 12:30 UTC: the hours starting 06:00 .. 12:00 UTC
    assert sorted(held) == [f"2025-07-22T{h:02d}:00:00Z" for h in range(6, 13)]
    assert all(r["final"] for s, r in held.items() if s < "2025-07-22T12:00:00Z")
    growing = held["2025-07-22T12:00:00Z"]
    assert growing["final"] is False and growing["period_end"] == "2025-07-22T13:00:00Z"
    assert outbox.cursor("entrance", "line_counts") == "2025-07-22T11:00:00Z"
    expected = camera.expected("line_counts", datetime(2025, 7, 22, 6, tzinfo=UTC), clock())
    assert {s: r["values"] for s, r in held.items() if r["final"]} == expected


def test_the_current_hour_grows_then_goes_final_and_stays(camera: SimCamera, outbox: Outbox, clock: Clock) -> None:
    poller = CameraPoller(sensor_for(camera.url), outbox, clock)
    poller.poll("line_counts")
    outbox.delivered(outbox.take(1000))
    clock.advance(minutes=10)
    poller.poll("line_counts")
    [grown] = outbox.take(10)
    assert (grown.body["period_start"], grown.body["final"], grown.revision) == ("2025-07-22T12:00:00Z", False, 2)
    outbox.delivered([grown])
    clock.advance(minutes=23)  # 13:03: the hour ended more than the grace ago
    poller.poll("line_counts")
    sent = {p.body["period_start"]: p for p in outbox.take(10)}
    assert sent["2025-07-22T12:00:00Z"].body["final"] is True
    assert sent["2025-07-22T12:00:00Z"].revision == 3
    assert sent["2025-07-22T13:00:00Z"].body["final"] is False  # the next hour has begun
    outbox.delivered(list(sent.values()))
    clock.advance(hours=1)
    poller.poll("line_counts")
    assert "2025-07-22T12:00:00Z" not in {p.body["period_start"] for p in outbox.take(10)}


def test_future_rows_are_never_stored(camera: SimCamera, outbox: Outbox, clock: Clock) -> None:
    poller = CameraPoller(sensor_for(camera.url), outbox, clock)
    poller.poll("line_counts")
    poller.poll("region_counts")
    now_text = utc_text(clock())
    assert all(r["period_start"] <= now_text for r in by_start(outbox).values())


def test_after_downtime_the_poller_resumes_from_its_cursor(camera: SimCamera, outbox: Outbox, clock: Clock) -> None:
    poller = CameraPoller(sensor_for(camera.url), outbox, clock)
    poller.poll("region_counts")
    outbox.delivered(outbox.take(1000))
    clock.advance(hours=30)  # the bridge was off for more than a day
    CameraPoller(sensor_for(camera.url), outbox, clock).poll("region_counts")
    held = by_start(outbox)
    gap = camera.expected("region_counts", datetime(2025, 7, 22, 12, tzinfo=UTC), clock())
    assert {s: r["values"] for s, r in held.items() if r["final"]} == gap


def test_history_is_never_asked_for_beyond_seven_days(camera: SimCamera, outbox: Outbox, clock: Clock) -> None:
    CameraPoller(sensor_for(camera.url), outbox, clock).poll("line_counts")
    outbox.delivered(outbox.take(1000))
    clock.advance(days=20)
    CameraPoller(sensor_for(camera.url), outbox, clock).poll("line_counts")
    oldest = min(by_start(outbox))
    assert oldest >= utc_text(clock() - timedelta(days=7, hours=1))


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("html", "HTML page instead of CSV"),
        ("unauthorized", "401: username or password rejected"),
        ("garbage", "no StartTime"),
        ("truncated", "truncated"),
        ("slow", "timed out after 1s"),
        ("reset", "closed the connection"),
    ],
)
def test_a_misbehaving_camera_stores_nothing_and_recovers(camera: SimCamera, outbox: Outbox, clock: Clock,
                                                          fault: str, reason: str) -> None:
    poller = CameraPoller(sensor_for(camera.url, timeout_s=1), outbox, clock)
    camera.set_fault(fault)
    outcome = poller.poll("line_counts")
    assert not outcome.ok
    assert reason in outcome.error and "\n" not in outcome.error
    assert outbox.take(10) == [] and outbox.cursor("entrance", "line_counts") is None
    camera.set_fault("none")
    assert poller.poll("line_counts").ok
    assert outbox.take(10)


def test_refused_connection_and_wrong_password(camera: SimCamera, outbox: Outbox, clock: Clock) -> None:
    refused = CameraPoller(sensor_for(closed_port_url()), outbox, clock).poll("line_counts")
    assert (refused.ok, refused.error) == (False, "connection refused")
    wrong = CameraPoller(sensor_for(camera.url, password="nope"), outbox, clock).poll("live_counts")
    assert (wrong.ok, wrong.error) == (False, "401: username or password rejected")
    assert outbox.take(10) == []


@pytest.mark.parametrize("auth", ["auto", "digest"])
def test_digest_only_firmware(clock: Clock, outbox: Outbox, auth: str) -> None:
    with SimCamera(username="admin", password="pw", auth="digest", clock=clock) as cam:
        outcome = CameraPoller(sensor_for(cam.url, auth=auth), outbox, clock).poll("line_counts")
    assert outcome.ok, outcome.error
    with SimCamera(username="admin", password="pw", auth="digest", clock=clock) as cam:
        basic = CameraPoller(sensor_for(cam.url, auth="basic"), outbox, clock).poll("line_counts")
    assert not basic.ok and "401" in basic.error


def test_live_counts_snapshot(camera: SimCamera, outbox: Outbox, clock: Clock) -> None:
    assert CameraPoller(sensor_for(camera.url), outbox, clock).poll("live_counts").ok
    [snap] = outbox.take(10)
    body = snap.body
    assert body["kind"] == "live_counts" and body["final"] is True
    assert body["period_start"] == body["period_end"] == "2025-07-22T12:30:00Z"
    assert body["values"]["sum"] == body["values"]["in"] + body["values"]["out"] > 0


# ---------------------------------------------------------------- DST days


@pytest.mark.parametrize(
    ("zone", "day", "gap_wall_hour"),
    [("Europe/Lisbon", datetime(2025, 3, 30), 1), ("America/New_York", datetime(2025, 3, 9), 2)],
)
def test_spring_forward_day_has_no_row_for_the_skipped_hour(tmp_path: Path, zone: str, day: datetime,
                                                           gap_wall_hour: int) -> None:
    clock = Clock(day.replace(tzinfo=UTC) + timedelta(days=1, hours=12))
    with SimCamera(timezone=zone, username="admin", password="pw", clock=clock) as cam:
        box = Outbox(tmp_path / "o.db")
        CameraPoller(sensor_for(cam.url, timezone=zone, backfill_h=60), box, clock).poll("line_counts")
        periods = sorted((r["period_start"], r["period_end"]) for r in by_start(box).values())
    assert all(end == nxt for (_, end), (nxt, _) in zip(periods, periods[1:], strict=False)), "contiguous"
    assert all(_hours(s, e) == 1 for s, e in periods), "every period is one real hour"
    local_starts = [datetime.fromisoformat(s.replace("Z", "+00:00")).astimezone(_zone(zone)) for s, _ in periods]
    day_hours = [t.hour for t in local_starts if t.date() == day.date()]
    assert gap_wall_hour not in day_hours and len(day_hours) == 23


@pytest.mark.parametrize(
    ("zone", "day", "repeated_start_utc"),
    [("Europe/Lisbon", datetime(2025, 10, 26), "2025-10-26T00:00:00Z"),
     ("America/New_York", datetime(2025, 11, 2), "2025-11-02T05:00:00Z")],
)
def test_fall_back_day_delivers_the_repeated_hour_as_one_two_hour_period(
        tmp_path: Path, zone: str, day: datetime, repeated_start_utc: str) -> None:
    clock = Clock(day.replace(tzinfo=UTC) + timedelta(days=1, hours=12))
    with SimCamera(timezone=zone, username="admin", password="pw", clock=clock) as cam:
        box = Outbox(tmp_path / "o.db")
        CameraPoller(sensor_for(cam.url, timezone=zone, backfill_h=60), box, clock).poll("line_counts")
        held = by_start(box)
        truth = cam.expected("line_counts", clock() - timedelta(hours=60), clock())
    periods = sorted((r["period_start"], r["period_end"]) for r in held.values())
    assert all(end == nxt for (_, end), (nxt, _) in zip(periods, periods[1:], strict=False)), "no overlap, no gap"
    repeated = held[repeated_start_utc]
    assert _hours(repeated["period_start"], repeated["period_end"]) == 2
    assert sum(1 for s, e in periods if _hours(s, e) == 2) == 1
    assert {s: r["values"] for s, r in held.items() if r["final"]} == {s: v for s, v in truth.items() if s in held}


def _zone(name: str):
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


def _hours(start: str, end: str) -> float:
    parse = lambda t: datetime.fromisoformat(t.replace("Z", "+00:00"))  # noqa: E731
    return (parse(end) - parse(start)).total_seconds() / 3600
