"""The bridge's own dead-man's-switch ping ([alerts] ping_url), end to end on loopback.

A real `sensor-bridge run` pings a loopback receiver at ping_s = 1: plain GETs
while the bridge is alive, POST /fail with the reason while it is in error. A
ping URL that hangs holds up nothing, and the URL (a secret) never shows in
logs, `status --json`, /health or `config check`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import base_tables, closed_port_url, run_cli, wait_for, write_config
from test_collector import sensor_table, start_collector, stop

from appliance.config import ConfigError, parse_config
from appliance.sim.camera import SimCamera
from appliance.sim.receiver import SimReceiver

SECRET_PATH = "/ping/7c1f0d2e-secret-check-uuid"


class PingReceiver:
    """Records every ping (time, method, path, body); ``hang`` makes it never answer."""

    def __init__(self) -> None:
        self.pings: list[tuple[float, str, str, str]] = []
        self.hang = threading.Event()
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                receiver.pings.append((time.monotonic(), self.command, self.path, body))
                if receiver.hang.is_set():
                    receiver.release.wait(30)
                    return
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"OK")

            do_GET = do_POST = _record  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{SECRET_PATH}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def pings() -> Iterator[PingReceiver]:
    receiver = PingReceiver()
    yield receiver
    receiver.close()


@pytest.fixture
def camera() -> Iterator[SimCamera]:
    with SimCamera(
        timezone="Europe/Lisbon", username="admin", password="pw", lines=1, regions=1, seed=3
    ) as cam:
        yield cam


def config_with_ping(
    tmp_path: Path, uplink_url: str, sensor_url: str, ping_url: str
) -> tuple[Path, dict]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    tables = base_tables(tmp_path, uplink_url)
    tables["sensors"] = [sensor_table("entrance", sensor_url, backfill_h=2)]
    tables["alerts"] = {"ping_url": ping_url, "ping_s": 1}
    return write_config(tmp_path / "config.toml", tables), tables


def test_pings_every_ping_s_while_alive_and_fail_while_in_error(
    tmp_path: Path, pings: PingReceiver, camera: SimCamera
) -> None:
    config, _ = config_with_ping(tmp_path / "alive", closed_port_url(), camera.url, pings.url)
    proc = start_collector(config)
    try:
        wait_for(lambda: len(pings.pings) >= 4, timeout=15, what="four pings")
    finally:
        stop(proc)
    alive = list(pings.pings)
    assert all(method == "GET" and path == SECRET_PATH for _, method, path, _ in alive)
    gaps = [b[0] - a[0] for a, b in zip(alive, alive[1:], strict=False)]
    assert all(0.6 < gap < 2.5 for gap in gaps[:3]), gaps  # ping_s = 1, on a busy machine

    pings.pings.clear()
    # the only camera unreachable: the bridge is in error, so the ping says /fail, with the reason
    config, _ = config_with_ping(
        tmp_path / "error", closed_port_url(), closed_port_url(), pings.url
    )
    proc = start_collector(config)
    try:
        fail = wait_for(
            lambda: [p for p in pings.pings if p[2].endswith("/fail")],
            timeout=20,
            what="a /fail ping",
        )
    finally:
        stop(proc)
    _, method, path, body = fail[0]
    assert method == "POST" and path == SECRET_PATH + "/fail"
    assert body.startswith("error: ") and "no sensor reachable" in body


def test_a_hanging_ping_url_blocks_nothing_and_the_url_never_shows(
    tmp_path: Path, pings: PingReceiver, camera: SimCamera
) -> None:
    pings.hang.set()
    with SimReceiver(db_path=tmp_path / "cloud.db", api_key="test-key") as receiver:
        config, tables = config_with_ping(tmp_path, receiver.url, camera.url, pings.url)
        status_file = tmp_path / "run" / "collector.json"
        proc = start_collector(config)
        try:
            wait_for(lambda: pings.pings, timeout=15, what="the first (hanging) ping")
            wait_for(
                lambda: receiver.records(),
                timeout=30,
                what="readings delivered while the ping hangs",
            )
            first = wait_for(
                lambda: status_file.exists() and json.loads(status_file.read_text()), what="status"
            )
            wait_for(
                lambda: json.loads(status_file.read_text())["written_at"] > first["written_at"] + 2,
                timeout=10,
                what="the status file to keep being rewritten",
            )
            health = requests.get(f"http://{tables['health']['listen']}/health", timeout=5)
            status = run_cli("-c", str(config), "status", "--json")
            checked = run_cli("-c", str(config), "config", "check")
        finally:
            code, log = stop(proc, timeout=20)
    assert code == 0 and "stopped cleanly" in log
    assert "alerts: pinging http://127.0.0.1/***" in log
    for shown in (log, health.text, status.stdout + status.stderr, checked.stdout + checked.stderr):
        assert "secret-check" not in shown
    assert json.loads(checked.stdout)["alerts"]["ping_url"] == "***"


def test_alerts_test_sends_one_ping_and_says_whether_it_was_answered(
    tmp_path: Path, pings: PingReceiver
) -> None:
    config, _ = config_with_ping(tmp_path, closed_port_url(), closed_port_url(), pings.url)
    answered = run_cli("-c", str(config), "alerts", "test")
    assert answered.returncode == 0 and "answered: HTTP 200" in answered.stdout
    failed = run_cli("-c", str(config), "alerts", "test", "--fail")
    assert failed.returncode == 0 and "/fail ping" in failed.stdout
    assert [(m, p) for _, m, p, _ in pings.pings] == [
        ("GET", SECRET_PATH),
        ("POST", SECRET_PATH + "/fail"),
    ]
    assert all("secret-check" not in out for out in (answered.stdout, failed.stdout))

    config, _ = config_with_ping(
        tmp_path / "down", closed_port_url(), closed_port_url(), closed_port_url() + "/x"
    )
    down = run_cli("-c", str(config), "alerts", "test")
    assert down.returncode == 1 and "NOT answered" in down.stdout


def test_alerts_table_is_checked_without_repeating_the_url(tmp_path: Path) -> None:
    tables = base_tables(tmp_path, "http://127.0.0.1:9/ingest")
    tables["alerts"] = {
        "ping_url": "ftp://hc-ping.example/secret-check",
        "ping_s": 0,
        "pingurl": "x",
    }
    with pytest.raises(ConfigError) as err:
        parse_config(tables)
    problems = "\n".join(err.value.problems)
    assert "alerts.ping_url: expected a URL" in problems and "secret-check" not in problems
    assert (
        "alerts.ping_s: expected a number >= 1, got 0" in problems
        and "alerts.pingurl: unknown key" in problems
    )
    assert parse_config(base_tables(tmp_path, "http://127.0.0.1:9/ingest")).alerts.ping_url == ""
