"""The collector's /health and the relay's push door against clients that never finish.

Real `sensor-bridge run` and `sensor-bridge relay` processes, started with the
1,024 descriptors systemd gives a unit by default, face a slowloris: ~1,100
loopback sockets that each send a request line and then one byte every two
seconds. What a store would notice if it went wrong: the service dies, its
status file stops, /health never answers again, the log fills with tracebacks.
"""

from __future__ import annotations

import base64
import json
import os
import resource
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
from conftest import CLI, REPO, base_tables, closed_port_url, free_port, wait_for, write_config

SERVICE_FDS = 1024  # systemd's default soft LimitNOFILE, the one the units used to leave
SLOW_CLIENTS = 1100
CAP = 64  # appliance.http_server.MAX_CONNECTIONS
AUTH = ("milesight", "push-test-password")


def _service_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (SERVICE_FDS, SERVICE_FDS))


@pytest.fixture(autouse=True)
def room_for_the_slow_clients() -> Iterator[None]:
    """The test process itself holds the ~1,100 client sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = SLOW_CLIENTS + 500
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            pytest.skip(f"needs {want} descriptors for the slow clients, hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


class Service:
    """``sensor-bridge -c CONFIG COMMAND`` under a 1,024 descriptor limit, its log in a file."""

    def __init__(self, config: Path, command: str, status_file: Path, log: Path) -> None:
        self.status_file, self.log_path = status_file, log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [*CLI, "-c", str(config), command],
                stdout=out,
                stderr=out,
                cwd=REPO,
                env={**os.environ, "NOTIFY_SOCKET": ""},
                preexec_fn=_service_fd_limit,
            )
        self.ps = psutil.Process(self.proc.pid)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def status(self) -> dict[str, Any]:
        try:
            body = json.loads(self.status_file.read_text())
        except (OSError, ValueError):
            return {}
        return body if body.get("pid") == self.proc.pid else {}

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_status_rewritten(self, timeout: float = 8) -> dict[str, Any]:
        assert self.alive(), self.log()[-3000:]
        before = self.status().get("written_at", "")
        return wait_for(
            lambda: (s := self.status()).get("written_at", "") > before and s,
            timeout,
            f"the status file to be rewritten (log: {self.log()[-1500:]})",
        )

    def stop(self) -> int:
        if self.alive():
            self.proc.terminate()
        try:
            return self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


class Slowloris:
    """Many sockets that start a request and then send one byte every few seconds, forever.

    They connect in small batches, each once the service has answered all but the ones it
    can hold: a flood faster than the service refuses would overflow its kernel accept
    queue, and then a connect waits a 1 s SYN retransmit, and a socket the client thinks
    connected may reach the service seconds later (after the slots it should find full
    have come free at their deadline).
    """

    BATCH = 32

    def __init__(
        self, address: tuple[str, int], first_line: bytes, count: int = SLOW_CLIENTS
    ) -> None:
        self.address, self.first_line = address, first_line
        self.sockets: list[socket.socket] = []
        self.refused = 0
        self.extend(count)

    def extend(self, count: int) -> None:
        """Open ``count`` more slow sockets."""
        for i in range(count):
            try:
                sock = socket.create_connection(self.address, timeout=3)
            except OSError:
                self.refused += 1
                continue
            sock.setblocking(False)
            try:
                sock.send(self.first_line)
            except OSError:
                pass
            self.sockets.append(sock)
            if (i + 1) % self.BATCH == 0:
                wait_for(lambda: self.held() <= CAP, 30, "the service to answer the batch")

    def unanswered(self) -> set[int]:
        """The local ports of the sockets that are open and have no answer yet."""
        ports = set()
        for sock in self.sockets:
            try:
                if sock.recv(1, socket.MSG_PEEK):
                    continue  # an answer (the 503 or a 400): not held
            except BlockingIOError:
                ports.add(sock.getsockname()[1])
            except OSError:
                pass
        return ports

    def held(self) -> int:
        """Sockets without an answer: the ones the service holds, and any it has yet to accept."""
        return len(self.unanswered())

    def trickle(self) -> None:
        for sock in self.sockets:
            try:
                sock.send(b"X")
            except OSError:
                pass

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


def peers(service: Service, port: int) -> set[int]:
    """The client ports of the connections the service has accepted on ``port`` and still has open."""
    try:
        connections = service.ps.net_connections(kind="tcp")
    except psutil.Error:
        return set()
    return {c.raddr.port for c in connections if c.raddr and c.laddr.port == port}


def held_by(service: Service, port: int, slow: Slowloris) -> int:
    """Slow sockets the service has accepted and keeps open without answering.

    Counted from both ends: the service's own descriptors (a socket still in the kernel's
    accept queue is not the service's), and the client seeing no answer half a second
    later (the one socket being refused at the moment of the first look has its 503 by then).
    """
    accepted = peers(service, port)
    time.sleep(0.5)
    return len(accepted & slow.unanswered())


class Watch:
    """The service's threads, memory and descriptors at their highest while it is under load."""

    def __init__(self, service: Service) -> None:
        self.ps, self.threads, self.rss, self.fds = service.ps, 0, 0, 0

    def sample(self) -> None:
        with self.ps.oneshot():
            self.threads = max(self.threads, self.ps.num_threads())
            self.rss = max(self.rss, self.ps.memory_info().rss)
            self.fds = max(self.fds, self.ps.num_fds())

    def report(self, what: str, held: int, opened: int) -> None:
        print(
            f"\n{what}: {opened} slow sockets opened, {held} held by the service; service peaked at "
            f"{self.threads} threads, {self.rss / 1e6:.0f} MB RSS, {self.fds} descriptors"
        )


def hold(service: Service, port: int, slow: Slowloris, seconds: float, watch: Watch) -> int:
    """Keep the slow clients trickling for ``seconds``; the most sockets the service held meanwhile."""
    most = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        slow.trickle()
        watch.sample()
        most = max(most, held_by(service, port, slow))
        assert service.alive(), service.log()[-3000:]
        time.sleep(min(1.5, max(0.0, end - time.monotonic())))
    return most


def fresh_answer(method: str, url: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, url, timeout=3, **kwargs)


# ---------------------------------------------------------------- the collector's /health


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[tuple[Service, str]]:
    tables = base_tables(tmp_path, closed_port_url())
    config = write_config(tmp_path / "config.toml", tables)
    service = Service(
        config, "run", tmp_path / "run" / "collector.json", tmp_path / "collector.log"
    )
    listen = str(tables["health"]["listen"])  # type: ignore[index]
    yield service, listen
    service.stop()


def test_health_outlives_a_slowloris_under_1024_descriptors(collector: tuple[Service, str]) -> None:
    service, listen = collector
    host, port = listen.rsplit(":", 1)
    url = f"http://{listen}/health"
    wait_for(lambda: service.status().get("written_at"), 20, "the collector's first status file")
    wait_for(lambda: fresh_answer("GET", url).status_code, 10, "/health")
    watch = Watch(service)
    watch.sample()
    threads_before = watch.threads
    slow = Slowloris((host, int(port)), b"GET /health HTTP/1.1\r\n")
    try:
        started = time.monotonic()
        held = hold(service, int(port), slow, 3, watch)
        pid = service.proc.pid
        service.wait_status_rewritten()
        busy = fresh_answer("GET", url)  # at the cap: a clean 503, or a slot came free
        assert busy.status_code in (200, 503), busy.text
        # each slow socket sent a byte every 2 s, never 5 s apart: only a whole-request deadline cuts them
        wait_for(
            lambda: slow.held() == 0, 8, "the collector to cut the slow sockets at its 5 s deadline"
        )
        cut_after = time.monotonic() - started
        slow.trickle()
        watch.sample()
        answer = wait_for(lambda: fresh_answer("GET", url), 5, "/health for a fresh client")
    finally:
        slow.close()
    watch.report("collector /health", held, len(slow.sockets))
    assert answer.status_code in (200, 503) and "status" in answer.json()
    assert service.alive() and service.proc.pid == pid
    assert held <= CAP, held
    assert cut_after < 9, cut_after
    assert watch.threads <= threads_before + CAP + 2, (threads_before, watch.threads)
    service.wait_status_rewritten()
    assert "Traceback" not in service.log(), service.log()[-3000:]


def test_health_answers_head_and_options(collector: tuple[Service, str]) -> None:
    service, listen = collector
    url = f"http://{listen}/health"
    wait_for(lambda: service.status().get("written_at"), 20, "the collector's first status file")
    get = wait_for(lambda: fresh_answer("GET", url), 10, "/health")
    head = fresh_answer("HEAD", url)
    assert head.status_code == get.status_code and head.content == b""
    assert head.headers["Content-Type"] == "application/json"
    options = fresh_answer("OPTIONS", url)
    assert options.status_code == 204 and "GET" in options.headers["Allow"]


def test_a_taken_health_port_leaves_readings_flowing_and_says_so(tmp_path: Path) -> None:
    tables = base_tables(tmp_path, closed_port_url())
    config = write_config(tmp_path / "config.toml", tables)
    listen = str(tables["health"]["listen"])  # type: ignore[index]
    host, port = listen.rsplit(":", 1)
    with socket.socket() as squatter:
        squatter.bind((host, int(port)))
        squatter.listen()
        service = Service(
            config, "run", tmp_path / "run" / "collector.json", tmp_path / "collector.log"
        )
        try:
            status = wait_for(
                lambda: (
                    service.status()
                    if service.status().get("health", {}).get("error")
                    else (None if service.alive() else {"exited": service.log()})
                ),
                20,
                "the collector to report /health off",
            )
            service.wait_status_rewritten()
        finally:
            code = service.stop()
    log = service.log()
    assert "exited" not in status, status
    assert f"cannot listen on {listen} ([health] listen): Address already in use" in log
    assert status["state"] in ("degraded", "error") and listen in json.dumps(status)
    assert "Traceback" not in log and code == 0, log


# ---------------------------------------------------------------- the relay's push door


def start_relay(tmp_path: Path) -> tuple[Service, int]:
    port = free_port()
    tables = base_tables(tmp_path, closed_port_url())
    tables["push"] = {
        "listen": f"127.0.0.1:{port}",
        "username": AUTH[0],
        "password": AUTH[1],
        "max_body_kb": 64,
    }
    config = write_config(tmp_path / "config.toml", tables)
    service = Service(config, "relay", tmp_path / "run" / "relay.json", tmp_path / "relay.log")
    wait_for(
        lambda: (service.status().get("push") or {}).get("listening") or not service.alive(),
        20,
        "the relay to listen for pushes",
    )
    return service, port


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[tuple[Service, int]]:
    service, port = start_relay(tmp_path)
    yield service, port
    service.stop()


@pytest.fixture(scope="module")
def shared_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, int]]:
    """One relay for the quick checks of single requests."""
    service, port = start_relay(tmp_path_factory.mktemp("relay"))
    yield service, port
    service.stop()


def push(
    port: int, head: bytes, body: bytes = b"", close_after: bool = False, timeout: float = 15
) -> tuple[int, str, float]:
    """Send raw bytes to the push door; the status code, answer and seconds it took."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head + body)
        if close_after:
            sock.shutdown(socket.SHUT_WR)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except TimeoutError:
            pass
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
    return status, answer.decode(errors="replace"), time.monotonic() - started


def post_head(length: str, path: str = "/milesight/push") -> bytes:
    auth = base64.b64encode(f"{AUTH[0]}:{AUTH[1]}".encode()).decode()
    return (
        f"POST {path} HTTP/1.1\r\nHost: bridge\r\nAuthorization: Basic {auth}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def test_push_door_outlives_a_slowloris_under_1024_descriptors(relay: tuple[Service, int]) -> None:
    service, port = relay
    url = f"http://127.0.0.1:{port}/milesight/push"
    watch = Watch(service)
    watch.sample()
    threads_before = watch.threads
    # The cap filled first: the slow sockets' 10 s deadline starts as they are accepted, and
    # the busy push must arrive while every slot is still taken, however long the flood takes.
    slow = Slowloris(("127.0.0.1", port), b"POST /milesight/push HTTP/1.1\r\n", count=CAP)
    try:
        wait_for(lambda: len(peers(service, port)) >= CAP, 10, f"the relay to hold {CAP} sockets")
        started = time.monotonic()
        busy = fresh_answer(
            "POST", url, data=b"{}", auth=AUTH
        )  # at the cap: refused cleanly and fast
        refused_in = time.monotonic() - started
        slow.extend(SLOW_CLIENTS - CAP)
        held = hold(service, port, slow, 2.5, watch)
        pid = service.proc.pid
        service.wait_status_rewritten()
        watch.sample()
    finally:
        slow.close()  # the slow devices give up: their slots come free
    answer = wait_for(lambda: fresh_answer("POST", url, data=b"{}", auth=AUTH), 5, "a fresh push")
    watch.report("relay push door", held, len(slow.sockets))
    assert busy.status_code == 503 and busy.headers.get("Retry-After") and refused_in < 2, busy.text
    assert answer.status_code == 200, answer.text  # heard and answered again
    assert service.alive() and service.proc.pid == pid
    assert held <= CAP, held
    assert watch.threads <= threads_before + CAP + 2, (threads_before, watch.threads)
    service.wait_status_rewritten()
    assert "Traceback" not in service.log(), service.log()[-3000:]


def test_push_body_that_stops_short_gets_400_at_the_deadline(
    shared_relay: tuple[Service, int],
) -> None:
    service, port = shared_relay
    results: dict[str, tuple[int, str, float]] = {}
    stalled = threading.Thread(
        target=lambda: results.update(stalled=push(port, post_head("100"), b'{"event"'))
    )
    stalled.start()
    ended = push(port, post_head("100"), b'{"event"', close_after=True)
    stalled.join(timeout=20)
    assert ended[0] == 400 and "after 8 of 100 bytes" in ended[1] and ended[2] < 2, ended
    status, answer, took = results["stalled"]
    assert status == 400 and "after 8 of 100 bytes" in answer, answer
    assert took < 12, (
        f"answered after {took:.1f}s"
    )  # the 10 s whole-request deadline, not 30 s per read
    assert "Traceback" not in service.log()


@pytest.mark.parametrize("length", ["1_3", "+13", "13 x", "0x0d", "13, 14"])
def test_push_content_length_must_be_plain_digits(
    shared_relay: tuple[Service, int], length: str
) -> None:
    service, port = shared_relay
    status, answer, took = push(port, post_head(length), b'{"a": "bcde"}', close_after=True)
    assert status == 400 and "Content-Length" in answer and took < 2, answer
    assert (service.status().get("dead_lettered") or 0) == 0


def test_push_door_answers_head_and_options(shared_relay: tuple[Service, int]) -> None:
    _, port = shared_relay
    url = f"http://127.0.0.1:{port}/milesight/push"
    head = fresh_answer("HEAD", url)
    assert head.status_code == 405 and head.headers["Allow"] == "POST" and head.content == b""
    options = fresh_answer("OPTIONS", url)
    assert options.status_code == 204 and "POST" in options.headers["Allow"]
