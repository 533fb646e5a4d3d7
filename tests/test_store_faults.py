"""No single bad input stops a store: a corrupt outbox and a full disk, with the real service.

`sensor-bridge run` runs as a process against a simulated camera and receiver on
loopback; what is checked is what a person sees (status, /health) and what
reaches the cloud.
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import CLI, REPO, base_tables, run_cli, wait_for, write_config
from receiver_helpers import KEY, drain, make_uplink, readings
from test_outbox import flip_body_byte, reading

from appliance.outbox import Outbox
from appliance.records import now_utc
from appliance.sim.camera import SimCamera
from appliance.sim.receiver import SimReceiver


def start_collector(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, "-c", str(config), "run"],
        cwd=REPO,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    return proc.returncode, out


def health(tables: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    try:
        answer = requests.get(f"http://{tables['health']['listen']}/health", timeout=2)
    except requests.ConnectionError:
        return 0, {}
    return answer.status_code, answer.json()


def status(config: Path) -> dict[str, Any]:
    done = run_cli("-c", str(config), "status", "--json")
    assert "Traceback" not in done.stderr, done.stderr
    return json.loads(done.stdout)


def test_a_corrupt_outbox_stays_visible_until_a_person_acknowledges_it(tmp_path: Path) -> None:
    tables = base_tables(
        tmp_path, "http://127.0.0.1:9/api/bridge/v1/ingest"
    )  # nothing pending: never used
    config = write_config(tmp_path / "config.toml", tables)
    state = tmp_path / "state"
    box = Outbox(state / "outbox.db")
    box.put([reading()])
    box.close()
    with open(state / "outbox.db", "r+b") as f:
        f.write(b"\xde\xad\xbe\xef" * 64)
    damaged = (state / "outbox.db").read_bytes()

    report = status(config)  # status first: it reports, and leaves the file alone
    assert report["state"] == "error" and "damaged" in report["outbox_damage"]
    assert (state / "outbox.db").read_bytes() == damaged and not list(state.glob("*.corrupt-*"))
    listed = run_cli("-c", str(config), "outbox", "list")
    assert listed.returncode == 0 and "DAMAGE" in listed.stdout and "Traceback" not in listed.stderr

    proc = start_collector(config)
    try:
        code, body = wait_for(lambda: (h := health(tables))[0] and h, timeout=20, what="/health")
        assert code == 503 and body["state"] == "error" and "corrupt" in body["reason"], body
        assert list(state.glob("outbox.db.corrupt-*")), "the service moved the damaged file aside"
        report = status(config)
        assert report["state"] == "error" and "moved to" in report["outbox_damage"]
        assert "corrupt" in report["services"]["collector"]["reason"]

        ack = run_cli("-c", str(config), "outbox", "ack-corrupt")
        assert ack.returncode == 0 and "1 outbox damage note(s) cleared" in ack.stdout
        code, body = wait_for(
            lambda: (h := health(tables))[0] == 200 and h, timeout=20, what="health back"
        )
        assert "corrupt" not in body["reason"] and body["state"] != "error"
        assert status(config)["outbox_damage"] is None
    finally:
        rc, out = stop(proc)
    assert rc == 0, out


def fill(directory: Path) -> Path:
    """Write a file until the disk has no room left."""
    filler = directory / "filler"
    try:
        with open(filler, "wb") as f:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
    except OSError:  # full; closing may fail too, with the part of a block that found no room
        pass
    return filler


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 2 MB tmpfs for the state directory (needs root; skipped elsewhere)."""
    mount_point = tmp_path / "state"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_a_full_disk_is_a_state_not_a_crash(tmp_path: Path, small_disk: Path) -> None:
    with (
        SimCamera(username="admin", password="pw", lines=2, regions=2, seed=3) as camera,
        SimReceiver(db_path=tmp_path / "cloud.db", api_key="test-key") as receiver,
    ):
        tables = base_tables(tmp_path, receiver.url)
        tables["outbox"] = {"min_free_disk_mb": 1}
        tables["sensors"] = [
            {
                "id": "entrance",
                "url": camera.url,
                "username": "admin",
                "password": "pw",
                "timezone": "Europe/Lisbon",
                "interval_s": 1,
                "live_interval_s": 1,
                "backfill_h": 6,
                "collect": ["line_counts", "live_counts"],
                "timeout_s": 2,
            }
        ]
        config = write_config(tmp_path / "config.toml", tables)
        since = now_utc().replace(minute=0, second=0, microsecond=0)
        proc = start_collector(config)
        try:
            wait_for(
                lambda: any(r["kind"] == "live_counts" for r in receiver.records().values()),
                timeout=30,
                what="the first readings to reach the cloud",
            )
            pid = (
                status(config)["services"]
                and json.loads((tmp_path / "run" / "collector.json").read_text())["pid"]
            )
            filler = fill(small_disk)

            code, body = wait_for(
                lambda: "disk full" in (h := health(tables))[1].get("reason", "") and h,
                timeout=30,
                what="/health to say disk full",
            )
            assert code == 503 and body["state"] == "error"
            wait_for(
                lambda: health(tables)[1]["outbox"]["dropped"] > 0,
                timeout=15,
                what="live counts that could not be stored to count as dropped",
            )
            report = status(config)
            assert (
                report["state"] == "error"
                and "disk full" in report["services"]["collector"]["reason"]
            )
            assert (
                proc.poll() is None
                and json.loads((tmp_path / "run" / "collector.json").read_text())["pid"] == pid
            )

            filler.unlink()
            wait_for(
                lambda: "disk full" not in health(tables)[1].get("reason", "disk full"),
                timeout=30,
                what="the service to notice the room",
            )
            expected = camera.expected("line_counts", since, now_utc())
            wait_for(
                lambda: (
                    {
                        r["period_start"]
                        for r in receiver.records().values()
                        if r["kind"] == "line_counts"
                    }
                    >= set(expected)
                ),
                timeout=30,
                what="every line-count period to reach the cloud",
            )
            assert status(config)["outbox"]["dropped"] > 0, (
                "the lost live counts were written to the counter"
            )
            assert proc.poll() is None
        finally:
            rc, out = stop(proc)
        assert rc == 0, out
        assert "Traceback" not in out, out


def test_a_damaged_byte_in_a_stored_reading_is_listed_and_delivery_goes_on(tmp_path: Path) -> None:
    with SimReceiver(db_path=tmp_path / "cloud.db", api_key=KEY) as receiver:
        uplink, box = make_uplink(
            tmp_path, receiver.url, outbox=Outbox(tmp_path / "state" / "outbox.db")
        )
        box.put(readings(30))
        victim = box.take(30)[12]
        box.close()
        flip_body_byte(tmp_path / "state" / "outbox.db", victim.id)
        config = write_config(
            tmp_path / "config.toml", base_tables(tmp_path, receiver.url, api_key=KEY)
        )

        listed = run_cli("-c", str(config), "outbox", "list")
        assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stderr
        assert f"UNREADABLE {victim.id[:16]}" in listed.stdout and "pending 30" in listed.stdout

        uplink.outbox = Outbox(tmp_path / "state" / "outbox.db")
        drain(uplink)
        assert len(receiver.records()) == 29 and victim.id not in receiver.records()
        dead = run_cli("-c", str(config), "outbox", "list", "--dead")
        assert "cannot be read" in dead.stdout and victim.id[:12] not in receiver.records()
