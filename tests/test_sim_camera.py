"""The camera simulator as an integrator meets it: its HTTP API, its faults, its command.

The poller's own tests already read it end to end; these pin down what the
simulator promises on its own (firmware-like answers, a truth that grows with
the clock, faults switchable while it runs, a prompt stop).
"""

from __future__ import annotations

import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests
from camera_helpers import Clock
from conftest import CLI, REPO

from appliance.sim.camera import SimCamera
from appliance.sources.milesight_http import SensorError, parse_counts_csv

NOON = datetime(2025, 7, 22, 12, 30, tzinfo=UTC)  # 13:30 in Lisbon
LINES = "/dataloader.cgi?dw=vcalogcsv&report_type=0&statistics_type=3&linetype=31"


def report(camera: SimCamera, start: str, end: str, timeout: float = 5) -> requests.Response:
    return requests.get(
        f"{camera.url}{LINES}&time_start={start}&time_end={end}",
        auth=("admin", "pw"),
        timeout=timeout,
    )


def test_answers_like_the_firmware_and_the_truth_moves_with_the_clock() -> None:
    clock = Clock(NOON)
    with SimCamera(password="pw", lines=1, clock=clock) as cam:
        answer = report(cam, "2025-07-22-12:00:00", "2025-07-22-15:59:59")
        assert answer.status_code == 200
        lines = answer.text.split("\r\n")
        assert lines[0].startswith(
            "StartTime, EndTime, Tolal - In, Tolal - Out, Tolal - Sum, Line1 - In"
        )
        assert lines[0].endswith("Line4 - In, Line4 - Out, Line4 - Sum")
        rows = {
            start.isoformat(): values
            for start, _, values in parse_counts_csv(answer.text, "line_counts")
        }
        assert list(rows) == [f"2025-07-22T{h}:00:00" for h in (12, 13, 14, 15)]
        assert rows["2025-07-22T14:00:00"]["total"] == {"in": 0, "out": 0}, (
            "hours to come answer zeros"
        )
        assert rows["2025-07-22T13:00:00"]["lines"]["2"] == {"in": 0, "out": 0}, (
            "unused lines are zero"
        )
        growing = rows["2025-07-22T13:00:00"]["total"]
        clock.advance(minutes=20)
        later = parse_counts_csv(
            report(cam, "2025-07-22-13:00:00", "2025-07-22-13:59:59").text, "line_counts"
        )
        assert (
            later[0][2]["total"]["in"] >= growing["in"]
            and later[0][2]["total"]["out"] >= growing["out"]
        )
        clock.moment = datetime(2025, 7, 22, 13, tzinfo=UTC)  # the hour is over: its whole count
        done = parse_counts_csv(
            report(cam, "2025-07-22-13:00:00", "2025-07-22-13:59:59").text, "line_counts"
        )
        assert (
            done[0][2]
            == cam.expected("line_counts", NOON - timedelta(minutes=30), NOON, settled_s=0)[
                "2025-07-22T12:00:00Z"
            ]
        )
        people = [sum(t.values()) for t in (growing, later[0][2]["total"], done[0][2]["total"])]
        assert people[0] < people[1] < people[2], people
        clock.advance(days=8)
        old = report(cam, "2025-07-22-12:00:00", "2025-07-22-15:59:59")
        assert old.text.strip().count("\r\n") == 0, "history older than seven days is gone"
        assert requests.get(f"{cam.url}{LINES}", auth=("admin", "pw"), timeout=5).status_code == 404
        assert requests.get(f"{cam.url}{LINES}", timeout=5).status_code == 401


def test_expected_holds_only_final_periods_starting_in_the_range() -> None:
    clock = Clock(NOON)
    with SimCamera(password="pw", clock=clock) as cam:
        truth = cam.expected("region_counts", NOON - timedelta(hours=3, minutes=30), NOON)
        assert list(truth) == [
            "2025-07-22T09:00:00Z",
            "2025-07-22T10:00:00Z",
            "2025-07-22T11:00:00Z",
        ]
        clock.moment = datetime(
            2025, 7, 22, 13, 1, tzinfo=UTC
        )  # 12:00Z ended a minute ago: not yet settled
        assert "2025-07-22T12:00:00Z" not in cam.expected(
            "region_counts", NOON - timedelta(hours=1), clock()
        )
        with pytest.raises(ValueError, match="live_counts"):
            cam.expected("live_counts", NOON, NOON)


def test_every_answer_tells_the_cameras_own_time_in_its_date_header() -> None:
    clock = Clock(NOON)
    with SimCamera(password="pw", clock=clock) as cam:
        assert (
            report(cam, "2025-07-22-12:00:00", "2025-07-22-13:00:00").headers["Date"]
            == "Tue, 22 Jul 2025 12:30:00 GMT"
        )
        clock.advance(days=1, minutes=1)
        assert (
            requests.get(f"{cam.url}{LINES}", timeout=5).headers["Date"]
            == "Wed, 23 Jul 2025 12:31:00 GMT"
        ), "refusals carry it too"


@pytest.mark.parametrize("seed", range(6))
def test_truncated_answers_always_break_a_row_visibly(seed: int) -> None:
    clock = Clock(NOON + timedelta(minutes=7 * seed))
    with SimCamera(
        password="pw", seed=seed, fault="truncated", crlf=bool(seed % 2), clock=clock
    ) as cam:
        text = report(cam, "2025-07-22-00:00:00", "2025-07-22-13:59:59").text
    with pytest.raises(SensorError, match="CSV truncated"):
        parse_counts_csv(text, "line_counts")


def test_faults_switch_over_http_while_it_runs() -> None:
    with SimCamera(password="pw", clock=Clock(NOON)) as cam:
        assert requests.post(f"{cam.url}/_sim/fault", data="html", timeout=5).status_code == 200
        busy = report(cam, "2025-07-22-12:00:00", "2025-07-22-13:00:00")
        assert busy.status_code == 200 and busy.text.startswith("<html>")
        refused = requests.post(f"{cam.url}/_sim/fault", data="fire", timeout=5)
        assert refused.status_code == 400 and "html, unauthorized" in refused.text
        assert requests.get(f"{cam.url}/_sim/fault", timeout=5).text == "fault: html\n"
        requests.post(f"{cam.url}/_sim/fault", data="none", timeout=5)
        assert report(cam, "2025-07-22-12:00:00", "2025-07-22-13:00:00").text.startswith(
            "StartTime"
        )
        with pytest.raises(ValueError, match="one of none, html"):
            cam.set_fault("smoke")


def test_stop_ends_hanging_answers_and_kept_alive_connections_at_once() -> None:
    cam = SimCamera(password="pw", clock=Clock(NOON)).start()
    session = requests.Session()
    assert session.get(f"{cam.url}/_sim/fault", timeout=5).ok  # a kept-alive connection now exists
    cam.set_fault("slow")
    hanging: list[object] = []
    waiter = threading.Thread(
        target=lambda: hanging.append(_try(lambda: report(cam, "x", "y", timeout=30)))
    )
    waiter.start()
    deadline = time.monotonic() + 5
    while cam.requests_served == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    cam.stop()
    waiter.join(timeout=5)
    assert time.monotonic() - started < 2, "stop() must not wait for a hanging answer"
    assert not waiter.is_alive() and isinstance(hanging[0], requests.ConnectionError)
    with pytest.raises(requests.ConnectionError):
        session.get(f"{cam.url}/_sim/fault", timeout=5)


def _try(call: object) -> object:
    try:
        return call()  # type: ignore[operator]
    except requests.RequestException as exc:
        return exc


def test_sim_camera_command_serves_and_logs_each_request() -> None:
    proc = subprocess.Popen(
        [
            *CLI,
            "sim",
            "camera",
            "--port",
            "0",
            "--password",
            "pw",
            "--auth",
            "digest",
            "--header-style",
            "compact",
            "--lines",
            "2",
            "--timezone",
            "America/New_York",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        first = proc.stdout.readline()
        assert "simulated Milesight camera on http://127.0.0.1:" in first, first
        url = first.split(" on ", 1)[1].split()[0]
        live = requests.get(
            f"{url}/cgi-bin/operator/operator.cgi?action=get.vca.alarmstatus",
            auth=requests.auth.HTTPDigestAuth("admin", "pw"),
            timeout=5,
        )
        assert live.status_code == 200 and "current_in_count" in live.text
        seen = ""
        deadline = time.monotonic() + 10
        while "get.vca.alarmstatus -> 200" not in seen and time.monotonic() < deadline:
            seen += proc.stdout.readline()
        assert "get.vca.alarmstatus -> 401" in seen and "get.vca.alarmstatus -> 200" in seen, seen
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0, out
    assert "pw" not in first + seen + out, "the password is never printed"
