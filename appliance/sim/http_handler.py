"""The reference receiver's HTTP side: reading a request's body within limits, routing it, answering.

What each route does lives in the receiver (receiver.py) and its adoption routes
(adoption.py); this file only turns requests into their calls and replies into bytes.
"""

from __future__ import annotations

import gzip
import json
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..config.model import HEARTBEAT_PATH
from .contract_rules import CONFIG_PATH, ENROLL_PATH, INGEST_PATH, SCAN_PATH


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class HttpProblem(Exception):
    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


class Server(ThreadingHTTPServer):
    daemon_threads = True


class _Handler(BaseHTTPRequestHandler):
    receiver: Any  # the SimReceiver; set on the subclass handler_for() makes

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        seen: dict[str, Any] = {
            "method": "POST",
            "path": self.path,
            "headers": dict(self.headers),
            "batch": None,
            "ids": [],
            "status": None,
            "error": None,
            "at": time.monotonic(),
        }
        ingest = self.path == INGEST_PATH
        if ingest:
            with self.receiver.lock:
                self.receiver._seen.append(seen)
        raw, reply = self._read_body()
        try:
            if reply is not None:
                pass
            elif ingest:
                seen["ids"] = record_ids(self.headers, raw)
                reply = self.receiver.ingest(self.headers, raw, seen)
            elif self.path == HEARTBEAT_PATH:
                reply = self.receiver.heartbeat(self.headers, raw)
            elif self.path == ENROLL_PATH:
                reply = self.receiver.enroll(self.headers, raw, self.client_address[0])
            elif self.path == SCAN_PATH:
                reply = self.receiver.scan_report(self.headers, raw)
            else:
                reply = Reply(404, {"error": f"nothing at {self.path}; ingest is {INGEST_PATH}"})
        except Exception as exc:  # a receiver bug still answers, as a real API would (5xx)
            reply = Reply(500, {"error": f"receiver fault: {type(exc).__name__}: {exc}"})
        with self.receiver.lock:
            seen["status"] = reply.status
            seen["error"] = reply.body.get("error") if isinstance(reply.body, dict) else None
        if self.receiver.announce and reply.status >= 300:
            print(
                f"receiver: answered {reply.status} to {self.client_address[0]} {self.path}: "
                f"{seen['error']}",
                flush=True,
            )
        self._answer(reply)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        """GET /config, the one route a bridge reads (adoption.py); anything else is 404."""
        try:
            if self.path.split("?")[0] == CONFIG_PATH:
                reply = self.receiver.config_for(self.headers)
            else:
                reply = Reply(404, {"error": f"nothing to GET at {self.path}"})
        except Exception as exc:  # a receiver bug still answers, as a real API would (5xx)
            reply = Reply(500, {"error": f"receiver fault: {type(exc).__name__}: {exc}"})
        self._answer(reply)

    def _read_body(self) -> tuple[bytes, Reply | None]:
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        if not chunked and self.headers.get("Content-Length") is None:
            return b"", None  # no body at all: the checks below say what is missing
        try:
            raw = (
                self._read_chunked()
                if chunked
                else self._read_sized(int(self.headers["Content-Length"]))
            )
        except ValueError:
            self.close_connection = True
            return b"", Reply(400, {"error": "Content-Length or a chunk size is not a number"})
        if raw is None:
            self.close_connection = True
            return b"", Reply(
                413,
                {"error": f"body larger than {self.receiver.max_body} bytes; send smaller batches"},
            )
        return raw, None

    def _read_sized(self, length: int) -> bytes | None:
        """The body, or None when it is over the limit (read away all the same: closing on
        unread bytes makes the kernel reset the connection, and the sender could lose the 413)."""
        if length < 0:
            raise ValueError(length)
        if length <= self.receiver.max_body:
            return self.rfile.read(length)
        while length > 0 and (chunk := self.rfile.read(min(length, 1 << 16))):
            length -= len(chunk)
        return None

    def _read_chunked(self) -> bytes | None:
        """A chunked body (no Content-Length to refuse up front), or None when it grows over the limit."""
        parts, total = [], 0
        while True:
            size = int(self.rfile.readline(1024).split(b";")[0].strip(), 16)
            if size == 0:
                while self.rfile.readline(1024).strip():  # trailers, up to the blank line
                    pass
                return b"".join(parts) if total <= self.receiver.max_body else None
            total += size
            data = self._read_sized(size) if total <= self.receiver.max_body else None
            if data is None:  # over the limit: keep reading, keep nothing
                self._read_sized(size)
            else:
                parts.append(data)
            self.rfile.readline(1024)  # the CRLF after each chunk

    def _answer(self, reply: Reply) -> None:
        if reply.body is None:  # 304: no body at all
            self.send_response(reply.status)
            for k, v in reply.headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in reply.headers.items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)


def handler_for(receiver: Any) -> type[BaseHTTPRequestHandler]:
    return type("Handler", (_Handler,), {"receiver": receiver})


def record_ids(headers: Any, raw: bytes) -> list[Any]:
    """The record ids of a batch, for requests_seen(), whatever else is wrong with it."""
    try:
        if headers.get("Content-Encoding", "").lower() in ("gzip", "x-gzip"):
            raw = gzip.decompress(raw)
        records = json.loads(raw).get("records", [])
        return [r.get("id") for r in records if isinstance(r, dict)]
    except (ValueError, OSError, EOFError, AttributeError, TypeError):
        return []
