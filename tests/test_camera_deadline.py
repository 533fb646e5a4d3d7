"""Cameras that never finish answering cannot stop a store's polling (issue 15, finding 5).

`sensor-bridge run` polls four hostile cameras written here (one trickling
its answer a byte every 2 s from the status line on, one trickling its body,
one streaming an endless body, one that reads the request and never answers)
beside a healthy simulated camera, all on loopback. Every request has
``timeout_s`` in all, and each sensor polls in its own lane, so the healthy
camera keeps its cadence, the hostile ones fail with the deadline as their
reason, and SIGTERM ends the collector within seconds with polls in flight.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import CLI, REPO, base_tables, wait_for, write_config

from appliance.sim.camera import SimCamera
from appliance.sim.receiver import SimReceiver

TIMEOUT_S = 2
KINDS = ["line_counts", "region_counts", "live_counts"]


class HostileCamera:
    """A loopback server that accepts camera requests and answers in one bad way (``mode``).

    ``connections`` holds, per request, the bytes sent and how long the
    bridge kept the connection open (None while it still does).
    """

    HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\nContent-Length: 100000\r\n\r\n"
    ENDLESS_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\nConnection: close\r\n\r\n"
    ROW = b"2025/07/22 10:00:00,2025/07/22 10:59:59,282,79,361,0,0,0,0,0,0,0,0,0,282,79,361\r\n"

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.connections: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def __enter__(self) -> HostileCamera:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._listener.close()

    def open_now(self) -> int:
        with self._lock:
            return sum(1 for c in self.connections if c["held_s"] is None)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        record: dict[str, Any] = {"sent": 0, "held_s": None}
        with self._lock:
            self.connections.append(record)
        started = time.monotonic()
        with conn:
            conn.recv(65536)  # the request; its headers fit one read on loopback
            try:
                self._misbehave(conn, record)
            except OSError:
                pass  # the bridge cut the connection
        record["held_s"] = time.monotonic() - started

    def _gone(self, conn: socket.socket, wait_s: float) -> bool:
        """Wait up to ``wait_s``; True when the bridge closed its end meanwhile."""
        if self._stop.wait(0) or not select.select([conn], [], [], wait_s)[0]:
            return self._stop.is_set()
        return conn.recv(1) == b""

    def _misbehave(self, conn: socket.socket, record: dict[str, Any]) -> None:
        if self.mode == "silent":
            while not self._gone(conn, 0.5):
                pass
            return
        if self.mode == "trickle-body":
            conn.sendall(self.HEAD)
            record["sent"] += len(self.HEAD)
        if self.mode == "endless":
            conn.sendall(self.ENDLESS_HEAD)
            while not self._gone(conn, 0.05):  # ~1.7 kB/s: far under the size cap, forever
                conn.sendall(self.ROW)
                record["sent"] += len(self.ROW)
            return
        answer = self.HEAD + self.ROW * 1000
        for byte in answer[record["sent"] :]:
            conn.sendall(bytes([byte]))
            record["sent"] += 1
            if self._gone(conn, 2.0):
                return


def sensor_table(sensor_id: str, url: str) -> dict[str, Any]:
    return {
        "id": sensor_id,
        "url": url,
        "username": "admin",
        "password": "pw",
        "timezone": "Europe/Lisbon",
        "interval_s": 1,
        "live_interval_s": 1,
        "backfill_h": 2,
        "collect": KINDS,
        "timeout_s": TIMEOUT_S,
    }


def sensors_in(status_file: Path) -> dict[str, dict[str, Any]]:
    try:
        return {s["id"]: s for s in json.loads(status_file.read_text())["sensors"]}
    except (OSError, ValueError, KeyError):
        return {}


@pytest.fixture
def receiver(tmp_path: Path):
    with SimReceiver(db_path=tmp_path / "cloud.db", api_key="test-key") as rx:
        yield rx


def test_trickling_cameras_are_cut_and_the_healthy_one_keeps_its_cadence(
    tmp_path: Path, receiver: SimReceiver
) -> None:
    modes = ["trickle", "trickle-body", "endless", "silent", "trickle"]
    hostile = [HostileCamera(m) for m in modes]
    with SimCamera(username="admin", password="pw", lines=2, regions=2) as healthy:
        for cam in hostile:
            cam.__enter__()
        try:
            tables = base_tables(tmp_path, receiver.url)
            tables["sensors"] = [sensor_table("healthy", healthy.url)] + [
                sensor_table(f"bad-{i}-{cam.mode}", cam.url) for i, cam in enumerate(hostile)
            ]
            config = write_config(tmp_path / "config.toml", tables)
            proc = subprocess.Popen(
                [*CLI, "-c", str(config), "run"],
                cwd=REPO,
                text=True,
                env=dict(os.environ),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            try:
                _assert_cadence_and_reasons(tmp_path / "run" / "collector.json", healthy, hostile)
                wait_for(
                    lambda: all(cam.open_now() for cam in hostile[:3]),
                    timeout=10,
                    what="polls in flight on the trickling cameras",
                )
                began = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                out, _ = proc.communicate(timeout=30)
                took = time.monotonic() - began
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate()
        finally:
            for cam in hostile:
                cam.__exit__()
    assert proc.returncode == 0, out
    assert took < 5, f"SIGTERM took {took:.1f} s with polls in flight"
    assert "stopped cleanly" in out
    assert "poll skipped, the camera is still busy with an earlier one" in out, (
        "skips are counted and said"
    )
    for cam in hostile:
        held = [c["held_s"] for c in cam.connections if c["held_s"] is not None]
        assert held and max(held) < TIMEOUT_S + 1.5, (
            f"{cam.mode}: a connection was held {max(held):.1f} s"
        )
        rate = sum(c["sent"] for c in cam.connections) / sum(held)
        print(
            f"{cam.mode}: {len(held)} requests, held at most {max(held):.2f} s, {rate:.0f} bytes/s while held"
        )
    print(f"SIGTERM to exit: {took:.2f} s")


def _assert_cadence_and_reasons(
    status_file: Path, healthy: SimCamera, hostile: list[HostileCamera]
) -> None:
    def settled() -> bool:
        sensors = sensors_in(status_file)
        bad = [s for i, s in sensors.items() if i.startswith("bad-")]
        return (
            sensors.get("healthy", {}).get("state") == "ok"
            and len(bad) == len(hostile)
            and all(s["state"] == "failing" for s in bad)
        )

    wait_for(settled, timeout=15, what="the healthy sensor ok and every hostile one failing")
    for sensor_id, sensor in sensors_in(status_file).items():
        if sensor_id.startswith("bad-"):
            assert f"answer took longer than {TIMEOUT_S} s" in sensor["last_error"], (
                sensor_id,
                sensor,
            )
    # Cadence: three kinds, each due every second, for six seconds.
    window, gaps, seen, last = 6.0, [], healthy.requests_served, time.monotonic()
    ends = last + window
    start_count = seen
    while time.monotonic() < ends:
        time.sleep(0.05)
        if healthy.requests_served != seen:
            now = time.monotonic()
            gaps.append(now - last)
            seen, last = healthy.requests_served, now
    polls = healthy.requests_served - start_count
    print(
        f"healthy camera: {polls} requests in {window:g} s ({polls / window:.1f}/s for 3 kinds due every 1 s), "
        f"longest gap {max(gaps, default=window):.2f} s"
    )
    assert polls >= 0.7 * 3 * window, (
        f"the healthy camera got only {polls} requests in {window:g} s"
    )
    assert max(gaps) < 2.0, f"the healthy camera went {max(gaps):.1f} s without a poll"
