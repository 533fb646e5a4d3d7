"""A small HTTP server that a store's network cannot knock over: /health and the push door use it.

What a client sees:

* At most ``max_connections`` connections are served at once. One more is
  answered ``503`` (``Retry-After``) and closed straight away, so idle or
  slow sockets never cost the service more than that many threads and
  descriptors, however many a broken device or scanner opens.
* The whole request (request line, headers and body) must arrive within
  ``deadline_s`` of connecting, not per read: a client trickling a byte every
  few seconds is cut off at the deadline. A body that stops short gets
  ``400`` as soon as the connection ends or the deadline passes.
* ``Content-Length`` must be plain digits (``1_3``, ``+5`` or ``0x10`` get
  ``400``); HEAD and OPTIONS are answered, not ``501``.
* A client hanging up costs one debug line, never a traceback.

One request per connection (HTTP/1.0): nothing here needs keep-alive, and it
keeps the deadline simple. Binding to a port that is taken raises ``OSError``
for the caller to name its config key.
"""

from __future__ import annotations

import io
import json
import logging
import re
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger("sensor-bridge.http")

MAX_CONNECTIONS = 64
DEADLINE_S = 10.0
# Time to hand a finished answer to the kernel; answers are small, so only a peer
# that stopped reading while its window is full ever waits this long.
WRITE_TIMEOUT_S = 10.0
_DIGITS = re.compile(r"[0-9]{1,15}")
_BUSY_BODY = b'{"error": "too many connections right now; retry soon"}'
_BUSY = (
    b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 2\r\n"
    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
)


class _DeadlineReader(io.RawIOBase):
    """The socket's bytes, but every read only waits until one fixed moment."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self.sock, self.deadline = sock, deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("request deadline passed")
        self.sock.settimeout(left)
        return self.sock.recv_into(buffer)


class BoundedHandler(BaseHTTPRequestHandler):
    """A request handler for :class:`BoundedHTTPServer`: JSON answers, strict body reading."""

    server: BoundedHTTPServer
    methods: tuple[str, ...] = ("GET", "HEAD")  # what OPTIONS announces

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the plain file would wait per read; this one waits for the whole request
        deadline = (
            time.monotonic() + self.server.deadline_s
        )  # this thread starts as the connection is accepted
        self.rfile = io.BufferedReader(_DeadlineReader(self.connection, deadline))

    def flush_headers(self) -> None:
        self.connection.settimeout(WRITE_TIMEOUT_S)  # the read deadline may be all but spent
        super().flush_headers()

    def send_json(
        self, code: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        """Answer with ``body`` as JSON (headers only for HEAD)."""
        data = json.dumps(body, indent=1).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def content_length(self) -> int | None:
        """The declared body size; None after answering 411 (missing) or 400 (not plain digits)."""
        values = self.headers.get_all("Content-Length") or []
        if not values:
            self.send_json(411, {"error": "send the body with a Content-Length"})
            return None
        if len(set(values)) != 1 or not _DIGITS.fullmatch(values[0].strip(" \t")):
            shown = ", ".join(values)[:40]
            self.send_json(
                400, {"error": f"Content-Length must be one number of plain digits, not {shown!r}"}
            )
            return None
        return int(values[0])

    def read_body(self, length: int) -> bytes | None:
        """Exactly ``length`` bytes; None after answering 400 when the body stops short."""
        chunks: list[bytes] = []
        got = 0
        try:
            while got < length:
                chunk = self.rfile.read1(min(length - got, 65536))
                if not chunk:
                    break
                chunks.append(chunk)
                got += len(chunk)
        except TimeoutError:
            pass
        if got < length:
            self.close_connection = True
            self.send_json(
                400,
                {
                    "error": f"body ended after {got} of {length} bytes "
                    f"(the whole request must arrive within {self.server.deadline_s:.0f}s)"
                },
            )
            return None
        return b"".join(chunks)

    def do_OPTIONS(self) -> None:  # noqa: N802 - http.server's naming
        allow = ", ".join((*self.methods, "OPTIONS"))
        self.send_response(204)
        self.send_header("Allow", allow)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, fmt: str, *args: Any) -> None:
        log.debug("%s %s: " + fmt, self.server.name, self.client_address[0], *args)


class BoundedHTTPServer(ThreadingHTTPServer):
    """A threaded HTTP server on IPv4 or IPv6 (from the address) with a connection cap and deadline."""

    daemon_threads = True
    request_queue_size = 128  # a burst of connects waits in the kernel, not in threads

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BoundedHandler],
        name: str,
        max_connections: int = MAX_CONNECTIONS,
        deadline_s: float = DEADLINE_S,
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.name = name
        self.deadline_s = deadline_s
        self.max_connections = max_connections
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self._refuse(request, client_address)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread (out of memory or threads): the slot is free again
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def _refuse(self, request: socket.socket, client_address: Any) -> None:
        """Full: answer 503 without waiting for anything, then close."""
        log.debug(
            "%s: %s refused, %d connections already open",
            self.name,
            client_address[0],
            self.max_connections,
        )
        try:
            request.setblocking(False)
            try:  # what the client already sent, read so that closing does not reset the 503 away
                request.recv(65536)
            except BlockingIOError:
                pass
            request.send(_BUSY)
        except OSError:
            pass
        self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, OSError):  # hung up, reset, timed out: the client's business
            log.debug("%s: %s went away: %s", self.name, client_address[0], error)
            return
        log.exception("%s: answering %s failed", self.name, client_address[0])


def serve(
    address: tuple[str, int], handler: type[BoundedHandler], name: str, **limits: Any
) -> BoundedHTTPServer:
    """Bind ``address`` and serve from a daemon thread called ``name``; ``OSError`` if the port is taken."""
    server = BoundedHTTPServer(address, handler, name, **limits)
    threading.Thread(target=server.serve_forever, name=name, daemon=True).start()
    return server
