"""A bridge clock a day fast cannot corrupt counts (issue 15, finding 7).

The poller checks its clock against the camera's own (the Date header of
every answer) before it calls anything final or moves a cursor. Three
levels: the agreement rule alone; a poller and a simulated camera on
hand-moved clocks, in process; and `sensor-bridge run` started with its clock
a day ahead (the SENSOR_BRIDGE_TEST_CLOCK_OFFSET_S test hook), then again
with it corrected, delivering to the reference receiver.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from camera_helpers import Clock, sensor_for
from conftest import CLI, REPO, base_tables, wait_for, write_config
from hypothesis import given
from hypothesis import strategies as st

from appliance.outbox import Outbox
from appliance.records import now_utc, parse_utc, utc_text
from appliance.sim.camera import SimCamera
from appliance.sim.receiver import SimReceiver
from appliance.sources.milesight_clock import CLOCK_TOLERANCE, check_clocks, date_header_time
from appliance.sources.milesight_http import CameraPoller

NOON = datetime(2025, 7, 22, 12, 30, tzinfo=UTC)  # 13:30 in Lisbon
LISBON = ZoneInfo("Europe/Lisbon")
DAY = timedelta(days=1)

# ---------------------------------------------------------------- the rule


def test_clocks_within_ten_minutes_agree_and_the_earlier_one_judges() -> None:
    check = check_clocks(NOON, NOON - timedelta(minutes=4), None, LISBON)
    assert check.problem is None
    assert check.now == NOON - timedelta(minutes=4), (
        "a period is final only once both clocks passed its end"
    )


def test_a_bridge_a_day_ahead_is_named_and_the_cameras_time_judges() -> None:
    check = check_clocks(NOON + DAY - timedelta(minutes=1), NOON, None, LISBON)
    assert check.problem == (
        "bridge clock and camera clock disagree by 23h59m (bridge ahead); "
        "readings held as not final"
    )
    assert check.now == NOON
    behind = check_clocks(NOON - timedelta(hours=3), NOON, None, LISBON)
    assert behind.problem is not None and "3h00m (bridge behind)" in behind.problem


def test_a_date_header_in_local_time_points_at_the_cameras_time_zone_setting() -> None:
    local_as_gmt = NOON + timedelta(hours=1)  # Lisbon is UTC+1 in July
    check = check_clocks(NOON, local_as_gmt, None, LISBON)
    assert check.problem is not None and "check the camera's time zone setting" in check.problem


def test_without_a_date_header_counts_in_the_bridges_future_still_show_it_is_behind() -> None:
    assert check_clocks(NOON, None, NOON - timedelta(hours=1), LISBON).problem is None
    check = check_clocks(NOON - DAY, None, NOON, LISBON)
    assert check.problem is not None and "at least 24h00m behind" in check.problem
    assert check.now == NOON - DAY


@given(st.integers(min_value=-3 * 86400, max_value=3 * 86400))
def test_readings_are_held_exactly_when_the_clocks_are_over_ten_minutes_apart(skew_s: int) -> None:
    check = check_clocks(NOON + timedelta(seconds=skew_s), NOON, None, ZoneInfo("UTC"))
    assert (check.problem is None) == (abs(skew_s) <= CLOCK_TOLERANCE.total_seconds())
    assert (
        check.now <= NOON + timedelta(seconds=max(skew_s, 0))
        and check.now <= NOON + CLOCK_TOLERANCE
    )


@pytest.mark.parametrize(
    ("header", "moment"),
    [
        ("Tue, 22 Jul 2025 12:30:00 GMT", NOON),
        ("Tue, 22 Jul 2025 13:30:00 +0100", NOON),
        ("", None),
        ("yesterday", None),
        (None, None),
    ],
)
def test_the_date_header_is_read_as_utc(header: str | None, moment: datetime | None) -> None:
    assert date_header_time(header) == moment


# ---------------------------------------------------------------- a poller, in process


@pytest.fixture
def outbox(tmp_path: Path):
    box = Outbox(tmp_path / "outbox.db")
    yield box
    box.close()


def stored(outbox: Outbox) -> dict[tuple[str, str], dict[str, Any]]:
    return {(p.body["kind"], p.body["period_start"]): p.body for p in outbox.take(10_000)}


def test_a_bridge_jumping_a_day_ahead_holds_new_hours_then_fills_them_in_once_corrected(
    outbox: Outbox,
) -> None:
    camera_clock, bridge = Clock(NOON), Clock(NOON)
    with SimCamera(password="pw", lines=2, regions=2, seed=3, clock=camera_clock) as camera:
        poller = CameraPoller(sensor_for(camera.url, backfill_h=6), outbox, bridge)
        assert poller.poll("line_counts").ok
        cursor = outbox.cursor("entrance", "line_counts")
        outbox.delivered(outbox.take(10_000))
        camera_clock.advance(hours=3)
        bridge.moment = camera_clock.moment + DAY  # a reboot without NTP: the clock is a day fast
        outcome = poller.poll("line_counts")
        assert not outcome.ok
        assert outcome.error == (
            "bridge clock and camera clock disagree by 24h00m (bridge ahead); "
            "readings held as not final"
        )
        live = poller.poll("live_counts")
        assert not live.ok and live.records == 0, (
            "a snapshot stamped by a wrong clock is not stored"
        )
        held = stored(outbox)
        assert sorted(start for _, start in held) == [
            f"2025-07-22T{h}:00:00Z" for h in (12, 13, 14, 15)
        ], "the hours after the cursor, up to the camera's now (15:30Z), go out as not final"
        assert not [k for k, r in held.items() if r["final"]], (
            "nothing is final while the clocks disagree"
        )
        assert max(start for _, start in held) <= utc_text(camera_clock.moment), (
            "nothing from the future"
        )
        assert outbox.cursor("entrance", "line_counts") == cursor

        bridge.moment = camera_clock.moment = camera_clock.moment + timedelta(
            minutes=30
        )  # NTP gets through
        assert poller.poll("line_counts").ok and poller.poll("live_counts").ok
        since = (NOON - timedelta(hours=6)).replace(minute=0)
        truth = camera.expected("line_counts", since, bridge.moment)
        finals = {
            start: r["values"]
            for (kind, start), r in stored(outbox).items()
            if kind == "line_counts" and r["final"]
        }
        assert finals == {p: v for p, v in truth.items() if p > cursor}, (
            "the new hours, final, true counts"
        )
        assert outbox.cursor("entrance", "line_counts") == max(truth)


def test_a_cursor_left_a_day_ahead_is_pulled_back_and_the_hours_fill_in(outbox: Outbox) -> None:
    clock = Clock(NOON)
    ahead = utc_text(NOON + DAY - timedelta(hours=1))
    outbox.put([], cursors=[("entrance", "region_counts", ahead)])  # what a fast clock left behind
    with SimCamera(password="pw", lines=2, regions=2, clock=clock) as camera:
        poller = CameraPoller(sensor_for(camera.url, backfill_h=6), outbox, clock)
        assert poller.poll("region_counts").ok
        assert outbox.cursor("entrance", "region_counts") == utc_text(
            (NOON - timedelta(hours=6)).replace(minute=0)
        )
        assert poller.poll("region_counts").ok
        since = parse_utc(utc_text((NOON - timedelta(hours=6)).replace(minute=0)))
        truth = camera.expected("region_counts", since, NOON)
        finals = {start: r["values"] for (_, start), r in stored(outbox).items() if r["final"]}
        assert finals == truth
        assert parse_utc(outbox.cursor("entrance", "region_counts")) < NOON


# ---------------------------------------------------------------- `sensor-bridge run`, clock a day fast


BACKFILL_H = 6


def run_collector(config: Path, offset_s: float) -> subprocess.Popen[str]:
    env = {**os.environ, "SENSOR_BRIDGE_TEST_CLOCK_OFFSET_S": str(offset_s)}
    return subprocess.Popen(
        [*CLI, "-c", str(config), "run"],
        cwd=REPO,
        text=True,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    return out


def sensor_status(tmp_path: Path) -> dict[str, Any]:
    try:
        return json.loads((tmp_path / "run" / "collector.json").read_text())["sensors"][0]
    except (OSError, ValueError, KeyError, IndexError):
        return {}


def cursor_in(db: Path, kind: str) -> str | None:
    with sqlite3.connect(db) as con:
        row = con.execute(
            "SELECT position FROM cursors WHERE sensor_id = 'entrance' AND kind = ?", (kind,)
        ).fetchone()
    return row[0] if row else None


def test_collector_with_a_day_fast_clock_delivers_nothing_final_then_fills_in_once_corrected(
    tmp_path: Path,
) -> None:
    kinds = ["line_counts", "region_counts"]
    with (
        SimCamera(username="admin", password="pw", lines=2, regions=2, seed=11) as camera,
        SimReceiver(db_path=tmp_path / "cloud.db", api_key="test-key") as receiver,
    ):
        tables = base_tables(tmp_path, receiver.url)
        tables["sensors"] = [
            {
                "id": "entrance",
                "url": camera.url,
                "username": "admin",
                "password": "pw",
                "timezone": "Europe/Lisbon",
                "interval_s": 1,
                "live_interval_s": 1,
                "backfill_h": BACKFILL_H,
                "collect": [*kinds, "live_counts"],
                "timeout_s": 2,
            }
        ]
        config = write_config(tmp_path / "config.toml", tables)
        db = tmp_path / "state" / "outbox.db"
        db.parent.mkdir(parents=True)
        box = Outbox(db)  # an earlier run with the bad clock left its cursors a day ahead
        box.put(
            [],
            cursors=[
                ("entrance", k, utc_text(now_utc() + DAY - timedelta(hours=2))) for k in kinds
            ],
        )
        box.close()

        proc = run_collector(config, 86400)
        try:
            status = wait_for(
                lambda: (
                    "disagree" in (sensor_status(tmp_path).get("last_error") or "")
                    and sensor_status(tmp_path)
                ),
                timeout=20,
                what="status naming the clocks",
            )
            assert "24h00m (bridge ahead); readings held as not final" in status["last_error"], (
                status
            )
            assert status["state"] == "failing"
            wait_for(
                lambda: all((c := cursor_in(db, k)) and c < utc_text(now_utc()) for k in kinds),
                timeout=20,
                what="the cursors pulled back behind the camera's now",
            )
            wait_for(
                lambda: len(receiver.records()) >= BACKFILL_H,
                timeout=20,
                what="held readings delivered",
            )
        finally:
            stop(proc)
        delivered = list(receiver.records().values())
        assert not [r for r in delivered if r["final"]], "nothing final while the clocks disagree"
        assert not [r for r in delivered if r["kind"] == "live_counts"], (
            "no snapshot stamped a day ahead"
        )
        assert max(r["period_start"] for r in delivered) <= utc_text(now_utc()), (
            "nothing from the future"
        )
        assert max(r["observed_at"] for r in delivered) <= utc_text(
            now_utc() + timedelta(minutes=1)
        )

        since = {k: parse_utc(cursor_in(db, k)) for k in kinds}
        proc = run_collector(config, 0)
        try:
            wait_for(
                lambda: sensor_status(tmp_path).get("state") == "ok",
                timeout=20,
                what="the sensor ok",
            )
            wait_for(
                lambda: all(
                    _finals(receiver, k).keys() >= camera.expected(k, since[k], now_utc()).keys()
                    for k in kinds
                ),
                timeout=30,
                what="every past hour delivered as final",
            )
        finally:
            stop(proc)
        for kind in kinds:
            truth = camera.expected(kind, since[kind], now_utc())
            got = _finals(receiver, kind)
            assert {p: got[p] for p in truth} == truth, (
                f"{kind}: final values differ from the camera's"
            )
            assert max(got) <= utc_text(now_utc())


def _finals(receiver: SimReceiver, kind: str) -> dict[str, Any]:
    return {
        r["period_start"]: r["values"]
        for r in receiver.records().values()
        if r["kind"] == kind and r["final"]
    }
