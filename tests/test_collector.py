"""`sensor-bridge run` end to end: simulated cameras -> collector -> receiver, on loopback.

The headline test kills the collector with SIGKILL again and again while it
polls and uploads (and while the receiver has an outage), then proves the
receiver holds exactly the simulator's truth for every past period: none
missing, none stale, none from the future.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import CLI, REPO, base_tables, closed_port_url, wait_for, write_config

from appliance.records import now_utc, utc_text
from appliance.sim.camera import SimCamera
from appliance.sim.receiver import SimReceiver

BACKFILL_H = 30


def sensor_table(sensor_id: str, url: str, **extra: Any) -> dict[str, Any]:
    table = {
        "id": sensor_id,
        "url": url,
        "username": "admin",
        "password": "pw",
        "timezone": "Europe/Lisbon",
        "interval_s": 1,
        "backfill_h": BACKFILL_H,
        "collect": ["line_counts", "region_counts"],
        "timeout_s": 2,
    }
    table.update(extra)
    return table


def start_collector(config: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, "-c", str(config), "run"],
        cwd=REPO,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )


def stop(
    proc: subprocess.Popen[str], sig: int = signal.SIGTERM, timeout: float = 30
) -> tuple[int, str]:
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def held(receiver: SimReceiver, sensor_id: str, kind: str) -> dict[str, dict[str, Any]]:
    return {
        r["period_start"]: r
        for r in receiver.records().values()
        if r["sensor_id"] == sensor_id and r["kind"] == kind
    }


def backfill_start() -> datetime:
    """Where a first poll starting now reaches back to: backfill_h, floored to the hour.

    Taken once, before the collector first runs: a test that crosses an hour
    boundary must still expect the hour the first poll fetched."""
    return (now_utc() - timedelta(hours=BACKFILL_H)).replace(minute=0, second=0)


def truth(camera: SimCamera, kind: str, since: datetime) -> dict[str, dict[str, Any]]:
    return camera.expected(kind, since, now_utc())


def assert_receiver_matches_truth(
    receiver: SimReceiver, camera: SimCamera, sensor_id: str, since: datetime
) -> None:
    now_text = utc_text(now_utc())
    for kind in ("line_counts", "region_counts"):
        expected = truth(camera, kind, since)
        got = held(receiver, sensor_id, kind)
        assert expected, "the simulator should have complete periods to compare"
        missing = sorted(set(expected) - set(got))
        assert not missing, f"{kind}: periods never delivered: {missing[:5]}"
        stale = [p for p in expected if got[p]["values"] != expected[p] or not got[p]["final"]]
        assert not stale, f"{kind}: delivered values differ from the camera's: {stale[:5]}"
        future = [p for p in got if p > now_text]
        assert not future, f"{kind}: periods from the future were delivered: {future}"
        extra = [p for p in got if p not in expected and got[p]["final"]]
        assert not extra, f"{kind}: final periods the camera never had: {extra[:5]}"


def test_sigkill_storm_and_outage_end_with_exactly_the_cameras_truth(
    tmp_path: Path, camera: SimCamera, receiver: SimReceiver
) -> None:
    tables = base_tables(tmp_path, receiver.url)
    tables["uplink"]["batch_size"] = 7  # many small batches: kills land between them
    tables["sensors"] = [sensor_table("entrance", camera.url)]
    config = write_config(tmp_path / "config.toml", tables)
    since = backfill_start()
    rng = random.Random(42)
    for round_ in range(8):
        receiver.set_down(round_ in (2, 3, 5))  # an outage across several kills
        proc = start_collector(config)
        time.sleep(rng.uniform(0.4, 1.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    receiver.set_down(False)
    proc = start_collector(config)
    try:
        wait_for(
            lambda: all(
                held(receiver, "entrance", k).keys() >= truth(camera, k, since).keys()
                for k in ("line_counts", "region_counts")
            ),
            timeout=60,
            what="every past period to reach the receiver",
        )
        time.sleep(1.5)  # one more poll cycle: nothing further may change
    finally:
        code, out = stop(proc)
    assert code == 0, out
    assert "stopped cleanly" in out
    assert_receiver_matches_truth(receiver, camera, "entrance", since)


def test_status_file_health_and_systemd_notifications(
    tmp_path: Path, camera: SimCamera, receiver: SimReceiver
) -> None:
    tables = base_tables(tmp_path, receiver.url)
    tables["sensors"] = [sensor_table("entrance", camera.url)]
    config = write_config(tmp_path / "config.toml", tables)
    health_url = f"http://{tables['health']['listen']}/health"
    notify_path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(notify_path)
    sock.settimeout(20)
    proc = start_collector(config, env={"NOTIFY_SOCKET": notify_path})
    try:
        messages = set()
        while not {"READY=1", "WATCHDOG=1"} <= messages:
            messages.update(sock.recv(4096).decode().splitlines())
        status_file = tmp_path / "run" / "collector.json"
        first = wait_for(
            lambda: json.loads(status_file.read_text()) if status_file.exists() else None,
            what="the status file",
        )
        second = wait_for(
            lambda: (
                (s := json.loads(status_file.read_text()))["written_at"] > first["written_at"] and s
            ),
            timeout=10,
            what="the status file to be rewritten",
        )
        assert second["sensors"][0]["id"] == "entrance"
        answer = wait_for(lambda: requests.get(health_url, timeout=2), what="/health")
        body = answer.json()
        for key in (
            "status",
            "uptime",
            "last_collection",
            "outbox",
            "sensors",
            "host",
            "bridge_id",
        ):
            assert key in body, key
        # no watchdog runs in this test: once the grace period is over the bridge reports it
        assert body["services"]["watchdog"] in ("starting", "error")
        assert "test-key" not in answer.text and "pw" not in json.dumps(body["sensors"])
    finally:
        code, out = stop(proc)
        sock.close()
    assert code == 0, out


def test_one_dead_camera_does_not_hold_up_the_others(
    tmp_path: Path, camera: SimCamera, receiver: SimReceiver
) -> None:
    with SimCamera(
        timezone="Europe/Lisbon", username="admin", password="pw", seed=9, fault="slow"
    ) as slow:
        tables = base_tables(tmp_path, receiver.url)
        tables["sensors"] = [
            sensor_table("slow-door", slow.url, timeout_s=3),
            sensor_table("unplugged", closed_port_url()),
            sensor_table("entrance", camera.url),
        ]
        config = write_config(tmp_path / "config.toml", tables)
        since = backfill_start()
        proc = start_collector(config)
        try:
            wait_for(
                lambda: (
                    held(receiver, "entrance", "line_counts").keys()
                    >= truth(camera, "line_counts", since).keys()
                ),
                timeout=30,
                what="the healthy camera's data",
            )
            status = wait_for(
                lambda: _failing(tmp_path, {"slow-door", "unplugged"}),
                timeout=20,
                what="both broken cameras to be reported failing",
            )
        finally:
            code, out = stop(proc)
    assert code == 0
    assert status["state"] == "degraded"
    errors = {s["id"]: s["last_error"] for s in status["sensors"]}
    assert "refused" in errors["unplugged"].lower()
    assert "timed out" in errors["slow-door"].lower()
    # a failure is logged when it starts, not on every poll
    assert out.count("sensor unplugged failing") == 1, out


def _failing(tmp_path: Path, ids: set[str]) -> dict[str, Any] | None:
    path = tmp_path / "run" / "collector.json"
    if not path.exists():
        return None
    status = json.loads(path.read_text())
    failing = {s["id"] for s in status["sensors"] if s["state"] == "failing"}
    return status if ids <= failing else None


def test_waits_for_clock_sync_before_polling(
    tmp_path: Path, camera: SimCamera, receiver: SimReceiver
) -> None:
    from appliance.clock import clock_synchronised

    if clock_synchronised():
        pytest.skip("this machine's clock is NTP-synchronised; nothing to wait for")
    tables = base_tables(tmp_path, receiver.url)
    tables["bridge"]["require_time_sync"] = True
    tables["sensors"] = [sensor_table("entrance", camera.url)]
    proc = start_collector(write_config(tmp_path / "config.toml", tables))
    try:
        status = wait_for(lambda: _status(tmp_path), what="the status file")
        time.sleep(2)
        status = _status(tmp_path)
    finally:
        stop(proc)
    assert status["state"] == "starting"
    assert "clock" in status["reason"]
    assert camera.requests_served == 0, "nothing may be stamped before the clock is right"


def _status(tmp_path: Path) -> dict[str, Any] | None:
    path = tmp_path / "run" / "collector.json"
    return json.loads(path.read_text()) if path.exists() else None


def test_maintenance_console_status_and_outbox(tmp_path: Path, camera: SimCamera) -> None:
    """With the cloud unreachable, `status` shows the backlog and the failing uplink."""
    tables = base_tables(tmp_path, closed_port_url())
    tables["sensors"] = [sensor_table("entrance", camera.url)]
    config = write_config(tmp_path / "config.toml", tables)
    proc = start_collector(config)
    try:
        wait_for(
            lambda: (
                (s := _status(tmp_path))
                and s["outbox"]["pending"] > 0
                and s["uplink"]["last_error"]
            ),
            timeout=30,
            what="readings buffered while the uplink fails",
        )
        shown = subprocess.run(
            [*CLI, "-c", str(config), "status"], capture_output=True, text=True, cwd=REPO
        )
        as_json = subprocess.run(
            [*CLI, "-c", str(config), "status", "--json"], capture_output=True, text=True, cwd=REPO
        )
        listed = subprocess.run(
            [*CLI, "-c", str(config), "outbox", "list"], capture_output=True, text=True, cwd=REPO
        )
    finally:
        stop(proc)
    assert "entrance" in shown.stdout and "pending" in shown.stdout, shown.stdout + shown.stderr
    report = json.loads(as_json.stdout)
    assert report["outbox"]["pending"] > 0
    assert report["uplink"]["state"] == "degraded"
    assert "entrance" in listed.stdout and "line_counts" in listed.stdout


def test_sensors_test_and_doctor_name_the_problem(
    tmp_path: Path, camera: SimCamera, receiver: SimReceiver
) -> None:
    tables = base_tables(tmp_path, receiver.url)
    tables["sensors"] = [
        sensor_table("entrance", camera.url),
        sensor_table("wrong-pass", camera.url, password="nope"),
        sensor_table("unplugged", closed_port_url()),
    ]
    config = write_config(tmp_path / "config.toml", tables)
    sample = subprocess.run(
        [*CLI, "-c", str(config), "sensors", "test", "entrance"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert sample.returncode == 0, sample.stdout + sample.stderr
    assert "line_counts" in sample.stdout and "final" in sample.stdout
    doctor = subprocess.run(
        [*CLI, "-c", str(config), "doctor"], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    out = doctor.stdout
    assert doctor.returncode == 1, out
    assert "PASS sensor entrance credentials and sample read" in out
    assert (
        "FAIL sensor wrong-pass credentials and sample read" in out and "username/password" in out
    )
    assert "FAIL sensor unplugged reachable" in out
    assert "PASS cloud API key accepted" in out
    bad_key = write_config(
        tmp_path / "bad.toml", {**tables, "uplink": {**tables["uplink"], "api_key": "wrong-key"}}
    )
    doctor = subprocess.run(
        [*CLI, "-c", str(bad_key), "doctor"], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert "FAIL cloud API key accepted" in doctor.stdout


def test_the_wait_for_the_clock_is_logged_once_when_it_starts_and_once_when_it_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 22: not "collector up", then silence while NTP has not set the clock."""
    from appliance import collector as collector_module
    from appliance.config import load_config

    tables = base_tables(tmp_path, closed_port_url())
    tables["bridge"]["require_time_sync"] = True
    collector = collector_module.Collector(load_config(write_config(tmp_path / "c.toml", tables)))
    synced = False
    monkeypatch.setattr(collector_module, "clock_synchronised", lambda: synced)
    caplog.set_level("INFO", logger="sensor-bridge.collector")
    try:
        for _ in range(5):
            collector.step()
        waiting = [
            r.getMessage() for r in caplog.records if "waiting for the clock" in r.getMessage()
        ]
        assert len(waiting) == 1 and "NTP" in waiting[0], caplog.text
        assert not collector.time_synced
        synced = True
        for _ in range(5):
            collector.step()
    finally:
        collector.outbox.close()
    assert collector.time_synced
    lines = [r.getMessage() for r in caplog.records]
    assert sum("waiting for the clock" in line for line in lines) == 1, lines
    assert sum("clock synchronised; polling starts" in line for line in lines) == 1, lines


def test_first_heartbeat_is_sent_at_start_not_after_heartbeat_s(
    tmp_path: Path, camera: SimCamera, receiver: SimReceiver
) -> None:
    """Issue 22: a fresh bridge is not "never heard from" on the fleet page for heartbeat_s."""
    tables = base_tables(tmp_path, receiver.url)
    tables["uplink"].update(heartbeat_url=receiver.heartbeat_url, heartbeat_s=3600)
    tables["sensors"] = [sensor_table("entrance", camera.url)]
    proc = start_collector(write_config(tmp_path / "config.toml", tables))
    try:
        beat = wait_for(
            lambda: receiver.last_heartbeat("store-test"),
            timeout=60,
            what="a heartbeat at start (heartbeat_s is an hour)",
        )
    finally:
        code, out = stop(proc)
    assert code == 0, out
    assert beat["bridge_id"] == "store-test" and beat["sensors"][0]["id"] == "entrance"
