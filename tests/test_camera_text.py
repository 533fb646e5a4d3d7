"""Text a camera chose never reaches status, /health or an alert as it was sent (issue 19, item 4).

A camera on loopback answers every request with a reason phrase written to
mislead a person reading a chat alert (a ``<!channel>`` mention, a disguised
login link), terminal escape sequences and a bell, and 10 KB more text. What
the bridge keeps as the sensor's ``last_error`` is one printable line of at
most ``ERROR_CHARS`` characters that still says what happened (HTTP 503).
Quoting ``<`` ``>`` ``&`` for Slack or Mattermost is the cloud's job.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from camera_helpers import sensor_for
from conftest import CLI, REPO, base_tables, wait_for, write_config

from appliance.device_text import ERROR_CHARS, printable
from appliance.outbox import Outbox
from appliance.sim.receiver import SimReceiver
from appliance.sources.milesight_http import CameraPoller

BAIT = "<!channel> <https://evil.example/login|log in again>"
REASON = BAIT + "\x1b[2J\x1b]0;pwned\x07\r\x08\u202e" + "A" * 10_000


class LyingCamera:
    """Answers every request ``503 <REASON>`` and closes."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._stop = threading.Event()

    def __enter__(self) -> LyingCamera:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with conn:
                try:
                    conn.settimeout(5)
                    data = b""
                    while b"\r\n\r\n" not in data:
                        data += conn.recv(65536)
                    conn.sendall(
                        b"HTTP/1.1 503 "
                        + REASON.encode()
                        + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    )
                except OSError:
                    pass


def shown_safely(text: str) -> None:
    assert len(text) <= ERROR_CHARS + len("line_counts: "), len(text)
    assert text.isprintable(), repr(text)
    assert "HTTP 503" in text, "what happened is still said"


def test_a_reason_phrase_becomes_printable_bounded_text(tmp_path: Path) -> None:
    with LyingCamera() as camera:
        outcome = CameraPoller(
            sensor_for(camera.url), Outbox(tmp_path / "outbox.db"), lambda: datetime.now(UTC)
        ).poll("line_counts")
    assert not outcome.ok and outcome.error
    shown_safely(outcome.error)
    assert "\x1b" not in outcome.error and "\u202e" not in outcome.error


@pytest.fixture
def receiver(tmp_path: Path):
    with SimReceiver(db_path=tmp_path / "cloud.db", api_key="test-key") as rx:
        yield rx


def test_the_collector_status_shows_the_camera_s_words_printable_and_short(
    tmp_path: Path, receiver: SimReceiver
) -> None:
    with LyingCamera() as camera:
        tables = base_tables(tmp_path, receiver.url)
        tables["sensors"] = [
            {
                "id": "liar",
                "url": camera.url,
                "username": "admin",
                "password": "pw",
                "interval_s": 1,
                "collect": ["line_counts"],
                "timeout_s": 2,
            }
        ]
        config = write_config(tmp_path / "config.toml", tables)
        status = tmp_path / "run" / "collector.json"
        proc = subprocess.Popen(
            [*CLI, "-c", str(config), "run"],
            cwd=REPO,
            env=dict(os.environ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:

            def failing() -> dict[str, Any] | None:
                try:
                    body = json.loads(status.read_text())
                except (OSError, ValueError):
                    return None
                sensors = {s["id"]: s for s in body.get("sensors", [])}
                liar = sensors.get("liar", {})
                return body if liar.get("last_error") else None

            body = wait_for(failing, timeout=30, what="the camera's error in the status file")
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    [liar] = body["sensors"]
    shown_safely(liar["last_error"])
    assert len(body["reason"]) < ERROR_CHARS + 100 and body["reason"].isprintable()


@pytest.mark.parametrize(
    ("sent", "shown"),
    [
        ("plain words", "plain words"),
        ("two\r\nlines\tand\x00nul", "two lines and?nul"),
        ("\x1b[31mred\x1b[0m", "?[31mred?[0m"),
        ("x" * 500, "x" * (ERROR_CHARS - 3) + "..."),
    ],
)
def test_printable(sent: str, shown: str) -> None:
    assert printable(sent) == shown
