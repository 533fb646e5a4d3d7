"""A scan asked from the fleet page, on the bridge's side: the fleet agent's scan job runs it
once, never two at once, at most one a minute, and reports it to a loopback receiver that
stands for the cloud (docs/ingest-contract.md, "A scan of the store's network"). One test
(root) runs the real scan on a store LAN in test-made network namespaces."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from appliance.adoption.agent import _scan_id
from appliance.adoption.scan_job import MAX_REPORT_BYTES, ScanJob, report_body
from appliance.fleet import note_wanted_version, wanted_scan

KEY = "sbk_" + "k" * 43


class Receiver:
    """``POST /api/bridge/v1/scan`` on 127.0.0.1, port 0; answers ``status`` and keeps each body."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.bodies: list[dict[str, Any]] = []
        self.auth: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length))
                receiver.auth.append(self.headers.get("Authorization", ""))
                if self.path == "/api/bridge/v1/scan":
                    receiver.bodies.append(body)
                answer = json.dumps({"ok": receiver.status == 200}).encode()
                self.send_response(receiver.status if self.path.endswith("/scan") else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    rx = Receiver()
    yield rx
    rx.close()


def until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def a_scan(devices: int = 2) -> dict[str, Any]:
    return {
        "schema": "sensor-bridge/discovery/v1",
        "interfaces": ["eth0"],
        "skipped_interfaces": {},
        "subnets": ["198.51.100.0/24"],  # documentation range, never contacted
        "seconds": 1.0,
        "devices": [
            {"address": f"198.51.100.{10 + i}", "identity": f"serial:MSC{i:07d}", "milesight": True}
            for i in range(devices)
        ],
    }


def test_a_scan_asked_for_is_run_once_and_its_devices_reported(receiver: Receiver) -> None:
    runs: list[float] = []
    job = ScanJob(lambda: runs.append(time.monotonic()) or a_scan(3))
    assert job.offer(7, receiver.url, KEY, "lisbon-chiado")
    assert job.wait(30)
    (body,) = receiver.bodies
    assert body["schema"] == "sensor-bridge/scan-report/v1"
    assert body["bridge_id"] == "lisbon-chiado" and body["scan_id"] == 7 and body["error"] is None
    assert [d["address"] for d in body["scan"]["devices"]] == [
        "198.51.100.10",
        "198.51.100.11",
        "198.51.100.12",
    ]
    assert receiver.auth == [f"Bearer {KEY}"]
    # The cloud may name the same scan again before it sees the report: it is never run twice.
    assert not job.offer(7, receiver.url, KEY, "lisbon-chiado")
    assert job.wait(5) and len(runs) == 1 and len(receiver.bodies) == 1


def test_never_two_scans_at_once_and_at_most_one_a_minute(receiver: Receiver) -> None:
    release = threading.Event()
    runs: list[int] = []

    def slow_scan() -> dict[str, Any]:
        runs.append(1)
        release.wait(30)
        return a_scan(1)

    job = ScanJob(slow_scan)
    assert job.offer(1, receiver.url, KEY, "b")
    assert not job.offer(2, receiver.url, KEY, "b")  # the first still runs
    release.set()
    assert job.wait(30)
    assert not job.offer(2, receiver.url, KEY, "b")  # less than a minute since the first began
    assert len(runs) == 1 and [b["scan_id"] for b in receiver.bodies] == [1]
    job.last_start = time.monotonic() - 61  # a minute later
    assert job.offer(2, receiver.url, KEY, "b")
    assert job.wait(30) and [b["scan_id"] for b in receiver.bodies] == [1, 2]


def test_a_failed_scan_reports_its_error(receiver: Receiver) -> None:
    def broken() -> dict[str, Any]:
        raise OSError("no LAN interface is up")

    job = ScanJob(broken)
    assert job.offer(3, receiver.url, KEY, "b") and job.wait(30)
    (body,) = receiver.bodies
    assert body["scan"] is None and "no LAN interface is up" in body["error"]


def test_a_report_nobody_answered_is_sent_again_without_scanning_again() -> None:
    rx = Receiver(status=503)
    try:
        runs: list[int] = []
        job = ScanJob(lambda: runs.append(1) or a_scan(1), resend_s=0.0)
        assert job.offer(4, rx.url, KEY, "b") and job.wait(30)
        assert "503" in job.last_error
        rx.status = 200
        job.offer(4, rx.url, KEY, "b")  # the next step: the report again, not a new scan
        assert job.wait(30)
        assert len(runs) == 1 and [b["scan_id"] for b in rx.bodies] == [4, 4]
        assert job.last_error == "" and 4 in job.done
    finally:
        rx.close()


def test_a_closed_cloud_port_keeps_the_report_for_later() -> None:
    rx = Receiver()
    url = rx.url
    rx.close()  # a closed loopback port: unreachable
    job = ScanJob(lambda: a_scan(1), resend_s=3600)
    assert job.offer(5, url, KEY, "b") and job.wait(30)
    assert job.unsent is not None and job.unsent[0] == 5 and 5 not in job.done
    assert "cannot reach" in job.last_error


def test_a_report_is_capped_at_256_devices_and_256_kb() -> None:
    body = report_body("b", 1, a_scan(300), None)
    assert len(body["scan"]["devices"]) == 256 and body["scan"]["devices_left_out"] == 44
    fat = a_scan(200)
    for d in fat["devices"]:
        d["note"] = "x" * 4000  # 800 KB of notes
    body = report_body("b", 1, fat, None)
    assert len(json.dumps(body).encode()) <= MAX_REPORT_BYTES
    kept = len(body["scan"]["devices"])
    assert 0 < kept < 200 and body["scan"]["devices_left_out"] == 200 - kept
    assert len(fat["devices"]) == 200  # the scan's own document is left as it was


def test_the_scan_id_reaches_the_agent_from_the_config_answer_and_the_heartbeat(
    tmp_path: Path,
) -> None:
    assert _scan_id({"X-Scan-Wanted": "12"}) == 12
    for bad in ({}, {"X-Scan-Wanted": ""}, {"X-Scan-Wanted": "-1"}, {"X-Scan-Wanted": "1e3"}):
        assert _scan_id(bad) is None
    state_dir = str(tmp_path)
    note_wanted_version(state_dir, {"ok": True, "config_version": 3, "scan_wanted": 9})
    assert wanted_scan(state_dir) == 9
    note_wanted_version(state_dir, {"ok": True, "config_version": 3, "scan_wanted": True})
    assert wanted_scan(state_dir) == 9  # not a scan id: nothing changes
    note_wanted_version(state_dir, {"ok": True, "config_version": 3, "scan_wanted": None})
    assert wanted_scan(state_dir) is None  # reported: a restarted agent does not scan again


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("ip"),
    reason="needs root and iproute2 to build network namespaces (CI runs as root)",
)
def test_the_real_scan_finds_the_simulated_cameras_and_the_report_carries_them() -> None:
    from discover_helpers import LAN, StoreLan
    from test_discover import start_camera

    lan = StoreLan()
    stops = []
    try:
        for short, last, serial in (("c1", 21, "MSC2000001"), ("c2", 22, "MSC2000002")):
            ns = lan.add_host(short, f"{LAN}.{last}")
            stops.append(
                start_camera(lan, ns, f"{LAN}.{last}", {}, serial=serial, activated=False)[2]
            )
        pi = lan.worker(lan.pi)
        # The receiver, the job and the scan all live in the bridge's namespace: its loopback.
        rx = pi.call(Receiver)
        job = ScanJob()  # the real scan, its default bounds (10 s)
        assert pi.call(lambda: job.offer(21, rx.url, KEY, "lisbon-chiado"))
        assert job.wait(90)
        pi.call(rx.close)
        (body,) = rx.bodies
        devices = {d["address"]: d for d in body["scan"]["devices"]}
        assert sorted(devices) == [f"{LAN}.21", f"{LAN}.22"], body
        assert devices[f"{LAN}.21"]["identity"] == "serial:MSC2000001"
        assert devices[f"{LAN}.22"]["milesight"] and devices[f"{LAN}.22"]["activated"] is False
        assert "wg0" in body["scan"]["skipped_interfaces"]
    finally:
        for stop in stops:
            try:
                stop()
            except Exception:  # noqa: BLE001 - the namespaces go anyway
                pass
        lan.close()


def test_the_fleet_agent_learns_of_a_scan_from_its_config_poll_and_reports_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bridge just claimed, with no config (no collector, no heartbeat): the reference receiver
    names the scan on the config poll's 404, the agent runs it and the receiver keeps the result;
    a scan named by the heartbeat's answer (the collector's note) is run the same way."""
    from appliance.adoption.agent import FleetAgent
    from appliance.sim.receiver import SimReceiver

    with SimReceiver(api_key="hand-key") as rx:
        token = tmp_path / "token"
        token.write_text(rx.new_enroll_token())
        config = tmp_path / "config.toml"
        config.write_text(
            f'[fleet]\nurl = "{rx.origin}"\nenroll_token_file = "{token}"\n'
            f'[paths]\nstate_dir = "{tmp_path / "s"}"\nrun_dir = "{tmp_path / "r"}"\n'
            '[health]\nlisten = ""\n[led]\nbackend = "none"\n'
        )
        monkeypatch.setenv("SENSOR_BRIDGE_CONFIG", str(config))
        agent = FleetAgent(config, None)
        agent.start()
        try:
            agent.step()  # enrolls: waiting to be claimed
            assert agent.identity is not None
            bridge_id = rx.claim(agent.identity.claim_code, "Porto Baixa", "Europe/Lisbon")
            agent.next_enroll = 0.0
            agent.step()  # claimed; asks for its config at once: 404, no scan named yet
            assert agent.state.bridge_id == bridge_id and agent.scan_named is None
            runs: list[int] = []
            agent.scans = ScanJob(lambda: runs.append(1) or a_scan(2))
            scan_id = rx.ask_scan(bridge_id)
            agent.next_check = 0.0
            agent.step()  # the config poll's 404 names the scan
            assert agent.scan_named == scan_id
            agent.step()  # ... and the next step runs it
            assert agent.scans.wait(30)
            got = rx.scans.result(bridge_id)
            assert got is not None and got["scan_id"] == scan_id and runs == [1]
            assert [d["address"] for d in got["scan"]["devices"]] == [
                "198.51.100.10",
                "198.51.100.11",
            ]
            agent.next_check = 0.0
            agent.step()  # reported: the receiver names no scan any more
            assert agent.scan_named is None and runs == [1]

            # A configured bridge hears of the next scan from its heartbeat's answer.
            agent.scans.last_start = time.monotonic() - 61
            second = rx.ask_scan(bridge_id)
            note_wanted_version(str(tmp_path / "s"), {"ok": True, "scan_wanted": second})
            agent.step()
            assert agent.scans.wait(30) and runs == [1, 1]
            assert rx.scans.result(bridge_id)["scan_id"] == second  # type: ignore[index]
        finally:
            agent.shutdown()


def test_the_reference_receiver_refuses_a_bad_report_naming_what_is_wrong() -> None:
    """The reference receiver keeps the cloud route's rules (docs/ingest-contract.md)."""
    import requests

    from appliance.adoption.identity import sha256_hex
    from appliance.sim.receiver import SimReceiver

    with SimReceiver(api_key="hand-key") as rx:
        token = rx.new_enroll_token()
        enroll = {
            "schema": "sensor-bridge/enroll/v1",
            "serial": "10000000abcdef01",
            "machine_id": "5c1f" * 8,
            "macs": [],
            "version": "0.1.0",
            "lan_address": "192.0.2.20",  # TEST-NET-1, config data: never contacted
            "hostname": "sensor-bridge-abcdef",
            "credential_sha256": sha256_hex(KEY),
            "claim_code_sha256": sha256_hex("K7QM3XPD"),
        }
        auth = {"Authorization": f"Bearer {token}"}
        assert requests.post(f"{rx.origin}/api/bridge/v1/enroll", json=enroll, headers=auth).ok
        bridge_id = rx.claim("K7QM-3XPD", "Faro")
        scan_id = rx.ask_scan(bridge_id)

        def post(body: dict[str, Any]) -> requests.Response:
            return requests.post(
                f"{rx.origin}/api/bridge/v1/scan",
                json=body,
                headers={"Authorization": f"Bearer {KEY}"},
                timeout=10,
            )

        good = report_body(bridge_id, scan_id, a_scan(2), None)
        many = report_body(bridge_id, scan_id, a_scan(2), None)
        many["scan"]["devices"] = [{"address": "198.51.100.1"}] * 257
        for bad, named in (
            ({**good, "schema": "x"}, "schema"),
            ({**good, "scan_id": scan_id + 5}, "scan_id: no scan"),
            ({**good, "scan": None}, "exactly one"),
            (many, "scan.devices: at most 256"),
            ({**good, "scan": {**good["scan"], "devices": [{"address": 7}]}}, "devices[0].address"),
        ):
            answer = post(bad)
            assert answer.status_code == 400 and named in answer.json()["error"], named
        assert rx.scans.wanted(bridge_id) == scan_id
        assert post(good).json() == {"ok": True, "scan_id": scan_id, "devices": 2}
        assert rx.scans.wanted(bridge_id) is None
