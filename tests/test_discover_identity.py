"""A camera named by serial is found again when its address changes, and never mistaken for another.

The real collector runs in the bridge's namespace of a store LAN built in
network namespaces (tests/discover_helpers.py) and delivers to the reference
receiver running there too. The camera's DHCP lease "changes" (its namespace
gets a new address) and a different camera, same user and password, takes
the old address: the readings go on under the same sensor id, from the right
camera, and status and heartbeat say where it was found. Without the camera,
the device at its address is refused with a clear status.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import REPO, base_tables, wait_for, write_config
from discover_helpers import LAN, StoreLan

from appliance.records import now_utc, utc_text
from appliance.sim.camera import SimCamera
from appliance.sim.receiver import SimReceiver
from appliance.status import read_json, status_path

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("ip"),
    reason="needs root and iproute2 to build network namespaces (CI runs as root)",
)

SERIAL, OTHER = "MSC2000001", "MSC2000006"


@pytest.fixture
def store():
    lan = StoreLan()
    try:
        yield lan
    finally:
        lan.close()


def camera_in(lan: StoreLan, ns: str, serial: str, seed: int) -> SimCamera:
    mac = lan.mac(ns)
    return lan.worker(ns).call(
        lambda: SimCamera(
            host="0.0.0.0",
            port=80,
            password="pw",
            lines=2,
            regions=2,
            seed=seed,
            serial=serial,
            mac=mac,
        ).start()
    )


def stop_in(lan: StoreLan, ns: str, camera: SimCamera) -> None:
    lan.worker(ns).call(camera.stop)


def sensor(url: str, **extra: object) -> dict[str, object]:
    return {
        "id": "entrance",
        "url": url,
        "username": "admin",
        "password": "pw",
        "timezone": "Europe/Lisbon",
        "interval_s": 1,
        "backfill_h": 6,
        "collect": ["line_counts", "region_counts"],
        "timeout_s": 2,
        **extra,
    }


def start_collector(lan: StoreLan, tmp_path: Path, receiver: SimReceiver, table: dict) -> tuple:
    tables = base_tables(tmp_path, receiver.url)
    tables["uplink"]["heartbeat_url"] = receiver.heartbeat_url  # type: ignore[index]
    tables["sensors"] = [table]
    config = write_config(tmp_path / "config.toml", tables)
    proc = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            lan.pi,
            sys.executable,
            "-m",
            "appliance",
            "-c",
            str(config),
            "run",
        ],
        cwd=REPO,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    return proc, tmp_path / "run"


def stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out


def sensor_status(run_dir: Path) -> dict:
    status = read_json(status_path(run_dir, "collector")) or {}
    return next((s for s in status.get("sensors", []) if s["id"] == "entrance"), {})


def delivered(receiver: SimReceiver, kind: str) -> dict[str, dict]:
    return {
        r["period_start"]: r
        for r in receiver.records().values()
        if r["sensor_id"] == "entrance" and r["kind"] == kind
    }


def test_a_camera_that_moved_is_found_by_serial_and_its_readings_go_on(store, tmp_path):
    lan = store
    old, new = f"{LAN}.11", f"{LAN}.21"
    cam_ns = lan.add_host("c1", old)
    camera = camera_in(lan, cam_ns, SERIAL, seed=7)
    receiver = lan.worker(lan.pi).call(
        lambda: SimReceiver(db_path=tmp_path / "cloud.db", api_key="test-key").start()
    )
    proc, run_dir = start_collector(lan, tmp_path, receiver, sensor(f"http://{old}", serial=SERIAL))
    out = ""
    try:
        wait_for(lambda: delivered(receiver, "line_counts"), 60, "first readings")
        assert sensor_status(run_dir).get("note") is None

        stop_in(lan, cam_ns, camera)
        lan.move(cam_ns, old, new)
        camera = camera_in(lan, cam_ns, SERIAL, seed=7)
        other_ns = lan.add_host("c6", old)  # another camera takes the old lease
        other = camera_in(lan, other_ns, OTHER, seed=99)
        since = utc_text(now_utc())

        note = f"found at a new address {new} (was {old})"
        wait_for(lambda: sensor_status(run_dir).get("note") == note, 60, "the note in status")
        wait_for(
            lambda: (
                (receiver.last_heartbeat("store-test") or {}).get("sensors", [{}])[0].get("note")
                == note
            ),
            60,
            "the note in the heartbeat",
        )
        wait_for(lambda: camera.paths["/dataloader.cgi"] >= 2, 60, "polls at the new address")
        wait_for(
            lambda: any(
                r["observed_at"] >= since for r in delivered(receiver, "line_counts").values()
            ),
            60,
            "readings after the move",
        )
        assert sensor_status(run_dir)["state"] == "ok"
        assert other.paths["/dataloader.cgi"] == 0, "the other camera must never be polled"
        # Every final hour delivered is the moved camera's own truth (the other's counts differ).
        truth = camera.expected("line_counts", now_utc() - timedelta(hours=8), now_utc())
        got = {p: r for p, r in delivered(receiver, "line_counts").items() if r["final"]}
        assert got and all(got[p]["values"] == truth[p] for p in got if p in truth)
        assert set(got) <= set(truth)
        stop_in(lan, other_ns, other)
    finally:
        out = stop(proc)
        stop_in(lan, cam_ns, camera)
        lan.worker(lan.pi).call(receiver.stop)
    assert note in out  # the log says so too


def test_another_device_at_the_address_is_refused_with_a_clear_status(store, tmp_path):
    lan = store
    address = f"{LAN}.11"
    other_ns = lan.add_host("c6", address)
    other = camera_in(lan, other_ns, OTHER, seed=99)
    receiver = lan.worker(lan.pi).call(
        lambda: SimReceiver(db_path=tmp_path / "cloud.db", api_key="test-key").start()
    )
    proc, run_dir = start_collector(
        lan, tmp_path, receiver, sensor(f"http://{address}", serial=SERIAL)
    )
    try:
        wanted = f"the device at http://{address} is serial {OTHER}, expected {SERIAL}"
        wait_for(
            lambda: wanted in (sensor_status(run_dir).get("last_error") or ""),
            60,
            "the mismatch in status",
        )
        status = sensor_status(run_dir)
        assert status["state"] == "failing"
        assert "not found elsewhere on the LAN by serial" in status["last_error"]
        assert other.paths["/dataloader.cgi"] == 0
        assert not delivered(receiver, "line_counts")
    finally:
        stop(proc)
        stop_in(lan, other_ns, other)
        lan.worker(lan.pi).call(receiver.stop)
