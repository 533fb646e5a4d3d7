"""Polling Milesight cameras: firmware quirks, bad answers, cursors, final periods, DST days.

Every polling test reads a real simulated camera over loopback into a real
outbox, with the clocks of both moved by hand where a test needs a particular
day. Answers no simulator fault produces come from ``OddFirmware``, a real
HTTP server in front of the simulator.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from camera_helpers import Clock, OddFirmware, sensor_for
from conftest import closed_port_url, free_port

from appliance.outbox import Outbox
from appliance.records import parse_utc, utc_text
from appliance.sim.camera import SimCamera
from appliance.sources.milesight_http import (
    CameraPoller,
    SensorError,
    parse_counts_csv,
    parse_live,
    read_sample,
)

FIRMWARE_HEADER = (
    "StartTime, EndTime, Tolal - In, Tolal - Out, Tolal - Sum, Line1 - In, Line1 - Out, Line1 - Sum, "
    "Line2 - In, Line2 - Out, Line2 - Sum, Line3 - In, Line3 - Out, Line3 - Sum, Line4 - In, "
    "Line4 - Out, Line4 - Sum"
)
FIRMWARE_ROW = "2025/07/22 10:00:00,2025/07/22 10:59:59,282,79,361,0,0,0,0,0,0,0,0,0,282,79,361"
NOON = datetime(2025, 7, 22, 12, 30, tzinfo=UTC)  # 13:30 in Lisbon (summer time)


@pytest.fixture
def clock() -> Clock:
    return Clock(NOON)


@pytest.fixture
def camera(clock: Clock):
    with SimCamera(
        timezone="Europe/Lisbon", username="admin", password="pw", lines=2, regions=3, clock=clock
    ) as cam:
        yield cam


@pytest.fixture
def outbox(tmp_path: Path):
    box = Outbox(tmp_path / "outbox.db")
    yield box
    box.close()


def by_start(outbox: Outbox, kind: str | None = None) -> dict[str, dict]:
    return {
        p.body["period_start"]: p.body
        for p in outbox.take(10_000)
        if kind in (None, p.body["kind"])
    }


def finals(outbox: Outbox, kind: str) -> dict[str, Any]:
    return {s: r["values"] for s, r in by_start(outbox, kind).items() if r["final"]}


def held(outbox: Outbox) -> list[tuple[str, int, Any, bool]]:
    """Everything the outbox would send, with revisions: any store shows up here."""
    return sorted(
        (p.id, p.revision, repr(p.body["values"]), p.body["final"]) for p in outbox.take(10_000)
    )


def local_csv(header: str, *rows: tuple[str, str, str]) -> bytes:
    """A CSV answer from (start wall time, end wall time, counts) rows."""
    return (
        "\r\n".join([header, *(f"{s},{e},{counts}" for s, e, counts in rows)]) + "\r\n"
    ).encode()


# ---------------------------------------------------------------- parsing quirks


@pytest.mark.parametrize(
    "text",
    [
        FIRMWARE_HEADER + "\n" + FIRMWARE_ROW + "\n",
        FIRMWARE_HEADER + "\r\n" + FIRMWARE_ROW + "\r\n",
        FIRMWARE_HEADER.replace(" - ", "-").replace(", ", ",").replace("Tolal", "Total")
        + "\n"
        + FIRMWARE_ROW,
        FIRMWARE_HEADER.replace("Tolal", "Total") + "\n" + FIRMWARE_ROW,
        "\ufeff" + FIRMWARE_HEADER + "\n" + FIRMWARE_ROW,
        FIRMWARE_HEADER.replace("Line", "Line ") + "\n\n" + FIRMWARE_ROW + "\n\n",
    ],
    ids=[
        "firmware-verbatim",
        "crlf",
        "compact-Line1-In",
        "Total-spelled-right",
        "byte-order-mark",
        "Line-1-and-blank-lines",
    ],
)
def test_line_csv_columns_are_found_by_name(text: str) -> None:
    [(start, end, values)] = parse_counts_csv(text, "line_counts")
    assert (start, end) == (datetime(2025, 7, 22, 10), datetime(2025, 7, 22, 10, 59, 59))
    assert values["total"] == {"in": 282, "out": 79}
    assert values["lines"]["4"] == {"in": 282, "out": 79} and values["lines"]["1"] == {
        "in": 0,
        "out": 0,
    }


def test_columns_in_another_order_are_still_read_by_name() -> None:
    text = (
        "Line1-Out,Line1-In,EndTime,Total-Out,StartTime,Total-In\n"
        "3,5,2025/07/22 10:59:59,3,2025/07/22 10:00:00,5\n"
    )
    [(start, _, values)] = parse_counts_csv(text, "line_counts")
    assert start == datetime(2025, 7, 22, 10)
    assert values == {"total": {"in": 5, "out": 3}, "lines": {"1": {"in": 5, "out": 3}}}


def test_fewer_lines_and_region_column_case() -> None:
    [(_, _, lines)] = parse_counts_csv(
        "StartTime,EndTime,Line1-In,Line1-Out,Line1-Sum\n"
        "2025/07/22 10:00:00,2025/07/22 10:59:59,5,3,8\n",
        "line_counts",
    )
    assert lines == {"total": {"in": 5, "out": 3}, "lines": {"1": {"in": 5, "out": 3}}}
    [(_, _, regions)] = parse_counts_csv(
        "starttime, endtime, REGION1, region2, Region3\n"
        "2025/07/22 10:00:00,2025/07/22 10:59:59,4,0,7\n",
        "region_counts",
    )
    assert regions == {"regions": {"1": 4, "2": 0, "3": 7}}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty answer"),
        ("<html><body>Server busy</body></html>", "HTML page"),
        ("\x00\x01\x02", "binary data"),
        ("x" * 300_000, "not CSV"),
        ("Time,In\n10:00,5\n", "no StartTime"),
        (
            "StartTime,EndTime,Temperature\n2025/07/22 10:00:00,2025/07/22 10:59:59,21\n",
            "no Total or Line",
        ),
        (
            "StartTime,EndTime,Line1-In\n2025/07/22 10:00:00,2025/07/22 10:59:59,21\n",
            "no Line1 - Out",
        ),
        (
            FIRMWARE_HEADER + "\n" + FIRMWARE_ROW[:40],
            "truncated: row 2 has 3 fields, header has 17",
        ),
        (FIRMWARE_HEADER + "\n" + FIRMWARE_ROW + ",7", "row 2 has 18 fields"),
        (
            FIRMWARE_HEADER + "\n" + FIRMWARE_ROW.replace("282,79", "-3,79", 1),
            "Tolal - In '-3' is not a count",
        ),
        (
            FIRMWARE_HEADER + "\n" + FIRMWARE_ROW.replace("282,79", "2.5,79", 1),
            "'2.5' is not a count",
        ),
        (FIRMWARE_HEADER + "\n" + FIRMWARE_ROW.replace("282,79", "\u00b2,79", 1), "is not a count"),
        (FIRMWARE_HEADER + "\n" + FIRMWARE_ROW.replace("282,79", ",79", 1), "'' is not a count"),
        (
            FIRMWARE_HEADER + "\n" + FIRMWARE_ROW.replace("2025/07/22 10:00:00", "yesterday"),
            "is not a time",
        ),
    ],
    ids=[
        "empty",
        "html",
        "binary",
        "one-huge-field",
        "no-StartTime",
        "no-count-columns",
        "half-a-line",
        "truncated",
        "extra-field",
        "negative",
        "fraction",
        "unicode-digit",
        "blank-count",
        "bad-time",
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
        "var current_in_count = '2722';\r\nvar current_out_count = '1008';\r\nvar current_sum_count = '3730';\r\n"
        "var current_capacity_count = '1714';\r\n",
    ],
    ids=["run-together", "one-per-line", "crlf-and-blanks"],
)
def test_live_counters_both_layouts(body: str) -> None:
    assert parse_live(body) == {"in": 2722, "out": 1008, "sum": 3730, "capacity": 1714}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("var current_in_count='1';", "current_out_count missing"),
        (
            "var current_in_count='x';var current_out_count='1';var current_sum_count='1';"
            "var current_capacity_count='1';",
            "current_in_count 'x' is not a count",
        ),
        (
            "var current_in_count='5';var current_out_count='9';var current_sum_count='14';"
            "var current_capacity_count='-4';",
            "current_capacity_count '-4' is not a count",
        ),
        ("<html><body>busy</body></html>", "HTML page instead of live counters"),
        ("", "empty answer"),
    ],
)
def test_live_counters_missing_or_garbled(body: str, reason: str) -> None:
    with pytest.raises(SensorError, match=reason):
        parse_live(body)


# ---------------------------------------------------------------- polling a camera


def test_first_poll_backfills_and_the_growing_hour_is_not_final(
    camera: SimCamera, outbox: Outbox, clock: Clock
) -> None:
    poller = CameraPoller(sensor_for(camera.url), outbox, clock)
    outcome = poller.poll("line_counts")
    assert outcome.ok, outcome.error
    assert outcome.records == 7 and outcome.stored.added == 7
    stored = by_start(outbox)
    # backfill_h = 6 from 12:30 UTC: the hours starting 06:00 .. 12:00 UTC
    assert sorted(stored) == [f"2025-07-22T{h:02d}:00:00Z" for h in range(6, 13)]
    assert all(r["final"] for s, r in stored.items() if s < "2025-07-22T12:00:00Z")
    growing = stored["2025-07-22T12:00:00Z"]
    assert growing["final"] is False and growing["period_end"] == "2025-07-22T13:00:00Z"
    assert outbox.cursor("entrance", "line_counts") == "2025-07-22T11:00:00Z"
    expected = camera.expected("line_counts", datetime(2025, 7, 22, 6, tzinfo=UTC), clock())
    assert finals(outbox, "line_counts") == expected
    assert poller.poll("region_counts").ok
    assert finals(outbox, "region_counts") == camera.expected(
        "region_counts", datetime(2025, 7, 22, 6, tzinfo=UTC), clock()
    )


def test_the_camera_is_asked_in_its_own_wall_time_from_the_cursor(
    camera: SimCamera, outbox: Outbox, clock: Clock
) -> None:
    with OddFirmware(camera) as firmware:
        poller = CameraPoller(sensor_for(firmware.url), outbox, clock)
        assert poller.poll("line_counts").ok
        clock.advance(hours=2)
        assert poller.poll("line_counts").ok
    first, second = firmware.paths
    # 12:30 UTC is 13:30 in Lisbon; a 6 h backfill starts on the hour; colons as the firmware documents
    assert first.endswith("&time_start=2025-07-22-07:00:00&time_end=2025-07-22-13:30:00")
    # the next poll starts at the last final period (11:00 UTC, 12:00 local) and ends now, never later
    assert second.endswith("&time_start=2025-07-22-12:00:00&time_end=2025-07-22-15:30:00")


def test_the_current_hour_grows_then_goes_final_and_stays(
    camera: SimCamera, outbox: Outbox, clock: Clock
) -> None:
    poller = CameraPoller(sensor_for(camera.url), outbox, clock)
    poller.poll("line_counts")
    first = by_start(outbox)["2025-07-22T12:00:00Z"]
    outbox.delivered(outbox.take(1000))
    clock.advance(minutes=10)
    poller.poll("line_counts")
    [grown] = outbox.take(10)
    assert (grown.body["period_start"], grown.body["final"], grown.revision) == (
        "2025-07-22T12:00:00Z",
        False,
        2,
    )
    assert grown.body["values"]["total"]["in"] >= first["values"]["total"]["in"]
    outbox.delivered([grown])
    clock.advance(
        minutes=21
    )  # 13:01: the hour is over, but within the grace a late camera clock gets
    poller.poll("line_counts")
    sent = {p.body["period_start"]: p for p in outbox.take(10)}
    assert sent["2025-07-22T12:00:00Z"].body["final"] is False
    outbox.delivered(list(sent.values()))
    clock.advance(minutes=2)  # 13:03: more than the grace after the hour's end
    poller.poll("line_counts")
    sent = {p.body["period_start"]: p for p in outbox.take(10)}
    final = sent["2025-07-22T12:00:00Z"]
    assert final.body["final"] is True and final.revision > 2
    assert (
        final.body["values"]
        == camera.expected("line_counts", clock() - timedelta(hours=2), clock())[
            "2025-07-22T12:00:00Z"
        ]
    )
    assert sent["2025-07-22T13:00:00Z"].body["final"] is False  # the next hour has begun
    assert outbox.cursor("entrance", "line_counts") == "2025-07-22T12:00:00Z"
    outbox.delivered(list(sent.values()))
    clock.advance(hours=1)
    poller.poll("line_counts")
    assert "2025-07-22T12:00:00Z" not in {p.body["period_start"] for p in outbox.take(10)}


def test_future_rows_are_never_stored(camera: SimCamera, outbox: Outbox, clock: Clock) -> None:
    header = "StartTime,EndTime,Total-In,Total-Out,Line1-In,Line1-Out"
    with OddFirmware(camera) as firmware:
        firmware.body = local_csv(
            header,
            ("2025/07/22 12:00:00", "2025/07/22 12:59:59", "10,4,10,4"),
            ("2025/07/22 13:00:00", "2025/07/22 13:59:59", "5,1,5,1"),  # now: 13:30 local
            (
                "2025/07/22 14:00:00",
                "2025/07/22 14:59:59",
                "0,0,0,0",
            ),  # the firmware's zeros to come
            (
                "2025/07/22 15:00:00",
                "2025/07/22 15:59:59",
                "9,9,9,9",
            ),  # even with counts, the future is not data
        )
        outcome = CameraPoller(sensor_for(firmware.url), outbox, clock).poll("line_counts")
    assert outcome.ok and outcome.records == 2
    stored = by_start(outbox)
    assert sorted(stored) == ["2025-07-22T11:00:00Z", "2025-07-22T12:00:00Z"]
    assert stored["2025-07-22T12:00:00Z"]["final"] is False


def test_after_downtime_the_poller_resumes_from_its_cursor(
    camera: SimCamera, outbox: Outbox, clock: Clock
) -> None:
    CameraPoller(sensor_for(camera.url), outbox, clock).poll("region_counts")
    outbox.delivered(outbox.take(1000))
    clock.advance(hours=30)  # the bridge was off for more than a day
    outcome = CameraPoller(sensor_for(camera.url), outbox, clock).poll("region_counts")
    assert (
        outcome.ok and outcome.stored.unchanged == 1
    )  # the cursor's own period, read again: no change
    gap = camera.expected("region_counts", datetime(2025, 7, 22, 12, tzinfo=UTC), clock())
    assert finals(outbox, "region_counts") == gap and len(gap) == 30


def test_history_is_never_asked_for_beyond_seven_days(
    camera: SimCamera, outbox: Outbox, clock: Clock
) -> None:
    CameraPoller(sensor_for(camera.url), outbox, clock).poll("line_counts")
    outbox.delivered(outbox.take(1000))
    clock.advance(days=20)
    CameraPoller(sensor_for(camera.url), outbox, clock).poll("line_counts")
    oldest = min(by_start(outbox))
    assert oldest >= utc_text(clock() - timedelta(days=7, hours=1))
    assert finals(outbox, "line_counts") == camera.expected(
        "line_counts", clock() - timedelta(days=8), clock()
    )


# ---------------------------------------------------------------- bad answers: nothing stored, then recovery


def _poll_fails_cleanly_then_recovers(
    poller: CameraPoller,
    outbox: Outbox,
    clock: Clock,
    kind: str,
    reason: str,
    break_it: Any,
    heal: Any,
) -> None:
    assert poller.poll(kind).ok
    before, cursor = held(outbox), outbox.cursor("entrance", kind)
    clock.advance(hours=3)
    break_it()
    outcome = poller.poll(kind)
    assert not outcome.ok and outcome.stored is None
    assert reason in outcome.error, outcome.error
    assert "\n" not in outcome.error
    assert held(outbox) == before, "a bad answer stored something"
    assert outbox.cursor("entrance", kind) == cursor, "a bad answer moved the cursor"
    heal()
    healed = poller.poll(kind)
    assert healed.ok, healed.error
    if kind != "live_counts":
        assert parse_utc(outbox.cursor("entrance", kind)) == parse_utc(cursor) + timedelta(hours=3)


@pytest.mark.parametrize("kind", ["line_counts", "live_counts"])
@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("html", "answered an HTML page instead of"),
        ("unauthorized", "401: username or password rejected"),
        ("garbage", "answered binary data instead of"),
        ("truncated", ""),
        ("slow", "answer took longer than 0.5 s"),
        ("reset", "closed the connection without answering"),
    ],
)
def test_a_misbehaving_camera_stores_nothing_and_recovers(
    camera: SimCamera, outbox: Outbox, clock: Clock, fault: str, reason: str, kind: str
) -> None:
    if fault == "truncated":
        reason = (
            "CSV truncated: row 6 has 3 fields, header has 17"
            if kind == "line_counts"
            else "current_out_count missing"
        )
    poller = CameraPoller(sensor_for(camera.url, timeout_s=0.5), outbox, clock)
    _poll_fails_cleanly_then_recovers(
        poller,
        outbox,
        clock,
        kind,
        reason,
        lambda: camera.set_fault(fault),
        lambda: camera.set_fault("none"),
    )


GOOD = "2025/07/22 13:00:00,2025/07/22 13:59:59,"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "empty answer instead of CSV"),
        (b"<!DOCTYPE html><html><body>Please log in</body></html>", "HTML page instead of CSV"),
        (b"When,In,Out\r\n2025/07/22 13:00:00,5,3\r\n", "CSV header has no StartTime column"),
        (
            local_csv(
                "StartTime,EndTime,Line1-In,Line1-Out",
                (GOOD[:19], GOOD[20:39], "5,3"),
                ("2025/07/22 14:00:00", "2025/07/22 14:59:59", "-2,3"),
            ),
            "CSV row 3: Line1-In '-2' is not a count",
        ),
        (
            local_csv(
                "StartTime,EndTime,Line1-In,Line1-Out",
                (GOOD[:19], GOOD[20:39], "5,3"),
                ("2025/07/22 14:00:00", "2025/07/22 14:59:59", "4,3.5"),
            ),
            "Line1-Out '3.5' is not a count",
        ),
        (b"z" * 200_000, "answer is not CSV"),
    ],
    ids=["empty", "login-page", "no-StartTime", "negative", "fraction", "endless-field"],
)
def test_odd_firmware_answers_store_nothing_and_recovery_follows(
    camera: SimCamera, outbox: Outbox, clock: Clock, body: bytes, reason: str
) -> None:
    with OddFirmware(camera) as firmware:
        poller = CameraPoller(sensor_for(firmware.url), outbox, clock)

        def heal() -> None:
            firmware.body = None

        _poll_fails_cleanly_then_recovers(
            poller,
            outbox,
            clock,
            "line_counts",
            reason,
            lambda: setattr(firmware, "body", body),
            heal,
        )


def test_wrong_password_then_the_right_one(camera: SimCamera, outbox: Outbox, clock: Clock) -> None:
    wrong = CameraPoller(sensor_for(camera.url, password="nope"), outbox, clock)
    for kind in ("line_counts", "live_counts"):
        outcome = wrong.poll(kind)
        assert (outcome.ok, outcome.error) == (False, "401: username or password rejected")
    assert outbox.take(10) == [] and outbox.cursor("entrance", "line_counts") is None
    assert CameraPoller(sensor_for(camera.url), outbox, clock).poll("line_counts").ok


def test_a_camera_that_is_switched_off_then_on(outbox: Outbox, clock: Clock) -> None:
    port = free_port()
    poller = CameraPoller(sensor_for(f"http://127.0.0.1:{port}"), outbox, clock)
    refused = poller.poll("line_counts")
    assert (refused.ok, refused.error) == (False, "connection refused")
    with SimCamera(password="pw", clock=clock, port=port):
        assert poller.poll("line_counts").ok
    after = poller.poll("line_counts")  # switched off again: its kept-alive connection went with it
    assert not after.ok and after.error in (
        "connection refused",
        "camera closed the connection without answering",
    )
    assert not CameraPoller(sensor_for(closed_port_url()), outbox, clock).poll("live_counts").ok


# ---------------------------------------------------------------- authentication


@pytest.mark.parametrize("auth", ["auto", "digest"])
def test_digest_only_firmware(clock: Clock, outbox: Outbox, auth: str) -> None:
    with SimCamera(username="admin", password="pw", auth="digest", clock=clock) as cam:
        poller = CameraPoller(sensor_for(cam.url, auth=auth), outbox, clock)
        assert poller.poll("line_counts").ok
        challenged = cam.answers[401]
        assert challenged >= 1
        clock.advance(minutes=5)
        for kind in ("line_counts", "region_counts", "live_counts"):
            outcome = poller.poll(kind)
            assert outcome.ok, outcome.error
        assert cam.answers[401] == challenged, (
            "the poller should remember Digest, not be challenged again"
        )
        wrong = CameraPoller(sensor_for(cam.url, auth=auth, password="nope"), outbox, clock).poll(
            "line_counts"
        )
        assert wrong.error == "401: username or password rejected"


def test_an_auth_setting_that_does_not_match_the_firmware_says_so(
    clock: Clock, outbox: Outbox
) -> None:
    with SimCamera(password="pw", auth="digest", clock=clock) as digest_only:
        basic = CameraPoller(sensor_for(digest_only.url, auth="basic"), outbox, clock).poll(
            "line_counts"
        )
    assert (
        basic.error == '401: the camera wants Digest authentication; set auth = "auto" or "digest"'
    )
    with SimCamera(password="pw", auth="basic", clock=clock) as basic_only:
        digest = CameraPoller(sensor_for(basic_only.url, auth="digest"), outbox, clock).poll(
            "line_counts"
        )
        auto = CameraPoller(sensor_for(basic_only.url, auth="auto"), outbox, clock).poll(
            "line_counts"
        )
    assert (
        digest.error == '401: the camera wants Basic authentication; set auth = "auto" or "basic"'
    )
    assert auto.ok


# ---------------------------------------------------------------- firmware variants, end to end


@pytest.mark.parametrize(
    ("style", "crlf", "lines", "regions"),
    [
        ("tolal", True, 2, 3),
        ("tolal", False, 4, 4),
        ("fewer", True, 1, 2),
        ("compact", False, 3, 1),
        ("compact", True, 1, 4),
    ],
)
def test_every_firmware_variant_delivers_the_cameras_counts(
    clock: Clock, outbox: Outbox, style: str, crlf: bool, lines: int, regions: int
) -> None:
    with SimCamera(
        password="pw",
        header_style=style,
        crlf=crlf,
        lines=lines,
        regions=regions,
        seed=5,
        clock=clock,
    ) as cam:
        poller = CameraPoller(sensor_for(cam.url), outbox, clock)
        for kind in ("line_counts", "region_counts", "live_counts"):
            outcome = poller.poll(kind)
            assert outcome.ok, outcome.error
        since = clock() - timedelta(hours=7)
        for kind in ("line_counts", "region_counts"):
            assert finals(outbox, kind) == cam.expected(kind, since, clock())
        any_hour = next(iter(finals(outbox, "line_counts").values()))
        assert len(any_hour["lines"]) == (4 if style == "tolal" else lines)
        [live] = by_start(outbox, "live_counts").values()
        assert live["values"] == cam.live_values()


def test_live_counts_snapshot(camera: SimCamera, outbox: Outbox, clock: Clock) -> None:
    assert CameraPoller(sensor_for(camera.url), outbox, clock).poll("live_counts").ok
    [snap] = outbox.take(10)
    body = snap.body
    assert body["kind"] == "live_counts" and body["final"] is True
    assert (
        body["period_start"] == body["period_end"] == body["observed_at"] == "2025-07-22T12:30:00Z"
    )
    assert body["values"] == camera.live_values()
    assert body["values"]["sum"] == body["values"]["in"] + body["values"]["out"] > 0
    assert outbox.cursor("entrance", "live_counts") is None


def test_sensors_test_reads_a_sample_and_touches_no_outbox(camera: SimCamera, clock: Clock) -> None:
    records = read_sample(sensor_for(camera.url), "line_counts", hours=3, clock=clock)
    assert [utc_text(r.period_start) for r in records] == [
        f"2025-07-22T{h:02d}:00:00Z" for h in (9, 10, 11, 12)
    ]
    assert [r.final for r in records] == [True, True, True, False]
    [live] = read_sample(sensor_for(camera.url), "live_counts", clock=clock)
    assert live.values == camera.live_values()
    with pytest.raises(SensorError, match="401: username or password rejected"):
        read_sample(sensor_for(camera.url, password="nope"), "region_counts", clock=clock)
    with pytest.raises(SensorError, match="connection refused"):
        read_sample(sensor_for(closed_port_url()), "line_counts", clock=clock)


# ---------------------------------------------------------------- DST days


def _hours(start: str, end: str) -> float:
    return (parse_utc(end) - parse_utc(start)).total_seconds() / 3600


@pytest.mark.parametrize(
    ("zone", "day", "gap_wall_hour"),
    [("Europe/Lisbon", datetime(2025, 3, 30), 1), ("America/New_York", datetime(2025, 3, 9), 2)],
)
def test_spring_forward_day_has_no_row_for_the_skipped_hour(
    tmp_path: Path, zone: str, day: datetime, gap_wall_hour: int
) -> None:
    clock = Clock(day.replace(tzinfo=UTC) + timedelta(days=1, hours=12))
    with SimCamera(timezone=zone, username="admin", password="pw", clock=clock) as cam:
        box = Outbox(tmp_path / "o.db")
        for kind in ("line_counts", "region_counts"):
            assert (
                CameraPoller(sensor_for(cam.url, timezone=zone, backfill_h=60), box, clock)
                .poll(kind)
                .ok
            )
            periods = sorted(
                (r["period_start"], r["period_end"]) for r in by_start(box, kind).values()
            )
            assert all(
                end == nxt for (_, end), (nxt, _) in zip(periods, periods[1:], strict=False)
            ), "contiguous"
            assert all(_hours(s, e) == 1 for s, e in periods), "every period is one real hour"
            local_starts = [parse_utc(s).astimezone(ZoneInfo(zone)) for s, _ in periods]
            day_hours = [t.hour for t in local_starts if t.date() == day.date()]
            assert gap_wall_hour not in day_hours and len(day_hours) == 23
            truth = cam.expected(kind, clock() - timedelta(hours=60), clock())
            assert finals(box, kind) == {s: v for s, v in truth.items() if s in finals(box, kind)}
        box.close()


@pytest.mark.parametrize(
    ("zone", "day", "repeated_start_utc", "repeated_end_utc"),
    [
        ("Europe/Lisbon", datetime(2025, 10, 26), "2025-10-26T00:00:00Z", "2025-10-26T02:00:00Z"),
        ("America/New_York", datetime(2025, 11, 2), "2025-11-02T05:00:00Z", "2025-11-02T07:00:00Z"),
    ],
)
def test_fall_back_day_delivers_the_repeated_hour_as_one_two_hour_period(
    tmp_path: Path, zone: str, day: datetime, repeated_start_utc: str, repeated_end_utc: str
) -> None:
    clock = Clock(day.replace(tzinfo=UTC) + timedelta(days=1, hours=12))
    with SimCamera(timezone=zone, username="admin", password="pw", clock=clock) as cam:
        box = Outbox(tmp_path / "o.db")
        CameraPoller(sensor_for(cam.url, timezone=zone, backfill_h=60), box, clock).poll(
            "line_counts"
        )
        stored = by_start(box)
        truth = cam.expected("line_counts", clock() - timedelta(hours=60), clock())
        box.close()
    periods = sorted((r["period_start"], r["period_end"]) for r in stored.values())
    assert all(end == nxt for (_, end), (nxt, _) in zip(periods, periods[1:], strict=False)), (
        "no overlap, no gap"
    )
    repeated = stored[repeated_start_utc]
    assert repeated["period_end"] == repeated_end_utc
    assert sum(1 for s, e in periods if _hours(s, e) == 2) == 1
    day_periods = [
        p for p in periods if parse_utc(p[0]).astimezone(ZoneInfo(zone)).date() == day.date()
    ]
    assert sum(_hours(s, e) for s, e in day_periods) == 25 and len(day_periods) == 24
    assert {s: r["values"] for s, r in stored.items() if r["final"]} == {
        s: v for s, v in truth.items() if s in stored
    }


def test_the_repeated_hour_growing_is_not_final_until_its_second_occurrence_ends(
    tmp_path: Path,
) -> None:
    clock = Clock(
        datetime(2025, 10, 26, 1, 30, tzinfo=UTC)
    )  # 01:30 in Lisbon, the second time round
    with SimCamera(timezone="Europe/Lisbon", password="pw", clock=clock) as cam:
        box = Outbox(tmp_path / "o.db")
        poller = CameraPoller(sensor_for(cam.url, backfill_h=3), box, clock)
        assert poller.poll("line_counts").ok
        repeated = by_start(box)["2025-10-26T00:00:00Z"]
        assert (repeated["period_end"], repeated["final"]) == ("2025-10-26T02:00:00Z", False)
        clock.advance(minutes=33)
        assert poller.poll("line_counts").ok
        assert by_start(box)["2025-10-26T00:00:00Z"]["final"] is True
        box.close()


def test_odd_rows_on_dst_days_gap_row_skipped_repeated_rows_added(
    camera: SimCamera, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock(datetime(2025, 3, 30, 5, tzinfo=UTC))
    camera.clock = clock  # its Date header must agree with the poller's clock
    box = Outbox(tmp_path / "o.db")
    header = "StartTime,EndTime,Total-In,Total-Out,Line1-In,Line1-Out"
    with OddFirmware(camera) as firmware, caplog.at_level(logging.WARNING):
        poller = CameraPoller(sensor_for(firmware.url, backfill_h=5), box, clock)
        firmware.body = local_csv(
            header,  # Lisbon skips 01:00..02:00 on this day
            ("2025/03/30 00:00:00", "2025/03/30 00:59:59", "4,1,4,1"),
            ("2025/03/30 01:00:00", "2025/03/30 01:59:59", "7,7,7,7"),
            ("2025/03/30 02:00:00", "2025/03/30 02:59:59", "6,2,6,2"),
        )
        assert poller.poll("line_counts").ok and poller.poll("line_counts").ok
        stored = by_start(box)
        assert {s: (r["period_end"], r["values"]["total"]) for s, r in stored.items()} == {
            "2025-03-30T00:00:00Z": ("2025-03-30T01:00:00Z", {"in": 4, "out": 1}),
            "2025-03-30T01:00:00Z": ("2025-03-30T02:00:00Z", {"in": 6, "out": 2}),
        }
        assert sum("DST gap" in r.getMessage() for r in caplog.records) == 1, (
            "logged once, not every poll"
        )

        clock.moment = datetime(
            2025, 10, 26, 5, tzinfo=UTC
        )  # a firmware that sends the repeated hour twice
        firmware.body = local_csv(
            header,
            ("2025/10/26 01:00:00", "2025/10/26 01:59:59", "3,1,3,1"),
            ("2025/10/26 01:00:00", "2025/10/26 01:59:59", "5,2,5,2"),
        )
        assert poller.poll("line_counts").ok
    repeated = by_start(box)["2025-10-26T00:00:00Z"]
    assert repeated["period_end"] == "2025-10-26T02:00:00Z"
    assert repeated["values"] == {"total": {"in": 8, "out": 3}, "lines": {"1": {"in": 8, "out": 3}}}
    box.close()
