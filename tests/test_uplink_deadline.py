"""The uplink's requests end by a deadline and read at most a capped answer (appliance/http_client.py).

A cloud API written here, on loopback, misbehaves on cue: it trickles its
answer a byte a second, or answers with more than any batch's answer can
hold. The uplink must cut the first at ``timeout_s`` (connect to last byte,
not per read) and the second at ``MAX_ANSWER_BYTES``, keep the readings
pending, and deliver them once the cloud answers properly again.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

from receiver_helpers import drain, make_uplink, readings

from appliance.uplink import MAX_ANSWER_BYTES, DeliveryResult, Uplink

TIMEOUT_S = 2


class MoodyCloud:
    """A loopback HTTP server taking batches: ``mode`` is "trickle", "flood" or "fine"."""

    def __init__(self) -> None:
        self.mode = "fine"
        self.stored: list[str] = []
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/api/bridge/v1/ingest"

    def __enter__(self) -> MoodyCloud:
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
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                batch = self._read_batch(conn)
                if self.mode == "trickle":  # a byte a second, for far longer than any deadline
                    for byte in b"HTTP/1.1 200 OK\r\n" + b" " * 120:
                        if self._stop.wait(1.0):
                            return
                        conn.sendall(bytes([byte]))
                elif self.mode == "flood":  # a 200 whose body never ends (close-delimited)
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n")
                    chunk = b"[" * 65536
                    for _ in range(4 * MAX_ANSWER_BYTES // len(chunk)):
                        conn.sendall(chunk)
                else:
                    ids = [r["id"] for r in batch["records"]]
                    self.stored += ids
                    body = json.dumps({"accepted": len(ids), "rejected": []}).encode()
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                        + f"Content-Length: {len(body)}\r\n\r\n".encode()
                        + body
                    )
            except OSError:
                pass  # the bridge cut the connection: what these tests want

    @staticmethod
    def _read_batch(conn: socket.socket) -> dict:
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        head, body = data.split(b"\r\n\r\n", 1)
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        while len(body) < length:
            body += conn.recv(65536)
        return json.loads(body)


def attempt(uplink: Uplink) -> tuple[DeliveryResult, float]:
    """One delivery attempt, in a thread so a hanging one fails the test instead of holding it."""
    outcome: list[DeliveryResult] = []
    started = time.monotonic()
    worker = threading.Thread(target=lambda: outcome.append(uplink.deliver_once()), daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "the uplink hung on the cloud's answer"
    return outcome[0], time.monotonic() - started


def test_a_cloud_trickling_its_answer_is_cut_at_the_deadline_and_delivery_goes_on(
    tmp_path: Path,
) -> None:
    with MoodyCloud() as cloud:
        uplink, outbox = make_uplink(tmp_path, cloud.url, timeout_s=TIMEOUT_S, gzip=False)
        outbox.put(readings(5))
        cloud.mode = "trickle"
        result, took = attempt(uplink)
        # Every byte arrives within a second, so a per-read timeout never fires; the whole
        # request's deadline does. Generous: a loaded machine may be slow to cut.
        assert took < 30, f"cut after {took:.0f} s, the deadline is {TIMEOUT_S} s"
        assert result.delivered == 0 and result.error == f"no answer within {TIMEOUT_S} s"
        assert result.wait_s > 0, "it backs off and tries again later"
        assert uplink.snapshot()["state"] == "degraded"
        assert outbox.stats().pending == 5, "nothing is forgotten while the cloud trickles"

        cloud.mode = "fine"
        drain(uplink)
        assert len(cloud.stored) == 5 and outbox.stats().pending == 0


def test_an_answer_larger_than_any_batch_answer_is_cut_at_the_cap(tmp_path: Path) -> None:
    with MoodyCloud() as cloud:
        uplink, outbox = make_uplink(tmp_path, cloud.url, timeout_s=30, gzip=False)
        outbox.put(readings(5))
        cloud.mode = "flood"
        result, _ = attempt(uplink)
        # A 200 it could not read whole is no answer: the readings stay to be sent again.
        assert result.delivered == 0
        assert (
            result.error
            == f"answer larger than {MAX_ANSWER_BYTES // 1_000_000} MB; not the cloud API's"
        )
        assert outbox.stats().pending == 5

        cloud.mode = "fine"
        drain(uplink)
        assert len(cloud.stored) == 5 and outbox.stats().pending == 0
