"""Shared plumbing for the camera tests: a hand-moved clock, sensor settings, odd firmware.

``OddFirmware`` stands in front of a SimCamera on its own loopback port and
answers with a fixed body while one is set (the answers no simulator fault
produces: a header without StartTime, a negative count, a row in the DST
gap); with none set it passes every request to the simulator, so a test can
watch the poller recover.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from appliance.sim.camera import SimCamera
from appliance.sources.milesight_http import CameraConfig


class Clock:
    """A hand-moved clock shared by the camera and the poller."""

    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment

    def advance(self, **delta: float) -> None:
        self.moment += timedelta(**delta)


def sensor_for(camera_url: str, **extra: object) -> CameraConfig:
    settings: dict[str, object] = {
        "id": "entrance",
        "url": camera_url,
        "username": "admin",
        "password": "pw",
        "timezone": "Europe/Lisbon",
        "backfill_h": 6,
        "timeout_s": 2,
    }
    settings.update(extra)
    return CameraConfig(**settings)  # type: ignore[arg-type]


class OddFirmware:
    """A camera whose answers a test writes by hand; ``body = None`` hands over to ``camera``."""

    def __init__(self, camera: SimCamera) -> None:
        self.camera = camera
        self.body: bytes | None = None
        self.paths: list[str] = []
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def date_time_string(self, timestamp: float | None = None) -> str:
                return (
                    front.camera.date_header()
                )  # the camera's clock, as the simulator's own answers

            def do_GET(self) -> None:  # noqa: N802
                front.paths.append(self.path)
                if front.body is None:
                    code, ctype, body, headers = front.camera.answer(
                        self.command, self.path, self.headers.get("Authorization")
                    )
                else:
                    code, ctype, body, headers = 200, "text/csv", front.body, {}
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> OddFirmware:
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
