"""The relay's HTTP door (``[push]``): devices POST their reports; answered only after the commit.

Basic auth (401), a body with a Content-Length (411), ``max_body_kb`` (413, the
refused body read away so the device hears it), 400 naming what is wrong with
a body that cannot become readings, 503 with Retry-After while the bridge's
clock is not synchronised or the outbox cannot be written, 200 only after the
readings are committed. The whole POST must arrive within ``PUSH_DEADLINE_S``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ..committer import Committer, Incoming
from ..config import PushConfig, parse_listen
from ..http_server import BoundedHandler, BoundedHTTPServer, serve
from ..outbox import PutResult
from .parser import PushParser

log = logging.getLogger("sensor-bridge.relay")  # its lines are the relay's

HTTP_COMMIT_WAIT_S = 30.0
DISCARD_MAX = (
    8 * 1024 * 1024
)  # a bigger refused body is not read at all: the connection just closes
# The whole POST must arrive within this: 512 KB ([push] max_body_kb's default) in 10 s needs
# ~50 KB/s, a tenth of a poor Wi-Fi link; a device slower than that is stuck, not sending.
PUSH_DEADLINE_S = 10.0


class PushHandler(BoundedHandler):
    """One device POST: auth, size, parse, commit, answer."""

    server_version = "sensor-bridge-push"
    methods = ("POST",)
    door: HttpDoor  # set on the subclass :meth:`HttpDoor.start` makes

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        door = self.door
        push = door.push
        if not door.authorised(self.headers.get("Authorization", "")):
            self.send_json(
                401,
                {"error": "wrong or missing username/password ([push] username, password)"},
                {"WWW-Authenticate": 'Basic realm="sensor-bridge"'},
            )
            return
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.send_json(411, {"error": "send the body with a Content-Length"})
            return
        length = self.content_length()
        if length is None:
            return
        limit = push.max_body_kb * 1024
        if length > limit:
            self._discard(length)
            self.send_json(
                413,
                {
                    "error": f"body of {length} bytes is over the limit of {push.max_body_kb} KB "
                    "([push] max_body_kb)"
                },
            )
            return
        body = self.read_body(length)
        if body is None:
            return
        code, answer = door.receive(body, self.path, self.client_address[0])
        self.send_json(code, answer, {"Retry-After": "10"} if code == 503 else None)

    def _discard(self, length: int) -> None:
        """Read a refused body so the device hears the 413 instead of a reset connection."""
        left = length if length <= DISCARD_MAX else 0
        try:
            while left > 0:
                chunk = self.rfile.read1(min(left, 65536))
                if not chunk:
                    break
                left -= len(chunk)
        except TimeoutError:
            pass  # the deadline: answer what we know

    def do_GET(self) -> None:  # noqa: N802
        self.send_json(405, {"error": "devices POST their reports here"}, {"Allow": "POST"})

    do_HEAD = do_PUT = do_DELETE = do_PATCH = do_GET  # noqa: N815


class HttpDoor:
    """The listening socket for device POSTs, and what one POST becomes."""

    def __init__(
        self,
        push: PushConfig,
        parser: PushParser,
        committer: Committer,
        clock_ok: Callable[[], bool],
    ) -> None:
        self.push = push
        self.parser = parser
        self.committer = committer
        self.clock_ok = clock_ok  # the relay's: nothing is taken in before NTP has set the clock
        self.server: BoundedHTTPServer | None = None
        self.error: str | None = None  # why it is not listening

    def authorised(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = (
                base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
            )
        except (binascii.Error, UnicodeDecodeError):
            return False
        return hmac.compare_digest(
            user.encode(), self.push.username.encode()
        ) & hmac.compare_digest(password.encode(), self.push.password.encode())

    def receive(self, body: bytes, path: str, client: str) -> tuple[int, dict[str, Any]]:
        """Parse and commit one POST body; the status code and JSON answer for the device."""
        if not self.clock_ok():
            return 503, {"error": "the bridge's clock is not synchronised yet; retry shortly"}
        route = path.split("?", 1)[0].strip("/")
        parsed = self.parser.parse(
            body,
            source="http-push",
            topic=route,
            origin=f"http-push {client} /{route}",
            received_at=datetime.now(UTC),
        )
        finished = threading.Event()
        outcome: dict[str, Any] = {}

        def done(result: PutResult | None, error: str | None) -> None:
            outcome.update(result=result, error=error)
            finished.set()

        self.committer.add(Incoming(parsed, done))
        if not finished.wait(HTTP_COMMIT_WAIT_S) or outcome.get("error"):
            return 503, {"error": "the bridge cannot store readings right now; retry later"}
        if parsed.dead and not parsed.records:
            return 400, {"error": parsed.dead[0].reason}
        if parsed.dead:  # stored up to the per-message cap; sending it again changes nothing
            return 200, {"stored": len(parsed.records), "not_stored": parsed.dead[0].reason}
        return 200, {"stored": len(parsed.records)}

    def start(self) -> None:
        """Listen on ``[push] listen``; when that fails, :attr:`error` says why."""

        class Handler(PushHandler):
            door = self

        try:
            self.server = serve(
                parse_listen(self.push.listen), Handler, "push", deadline_s=PUSH_DEADLINE_S
            )
        except OSError as exc:
            self.error = f"cannot listen on {self.push.listen} ([push] listen): {exc.strerror}"
            log.error("%s", self.error)
            return
        log.info("receiving HTTP pushes on http://%s/", self.push.listen)

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
