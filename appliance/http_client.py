"""One HTTP client for every request the bridge makes: the whole request within a deadline, the
answer under a size cap.

``requests``' timeout only bounds the gap between two reads, so a server
sending a byte every few seconds would hold a request (a camera's poll, the
uplink's delivery) forever, and one sending without end would fill the
memory. :class:`HttpClient` gives every request one deadline from connect to
the answer's last byte and a cap on the answer's size: past the deadline the
request's socket is shut (whatever phase it is in) and :class:`Late` is
raised; past the cap, :class:`TooLarge`. Other failures are ``requests``' own
exceptions, for the caller to put in words. :meth:`HttpClient.close` cuts a
request in flight at once (the bridge is stopping).

Used by the camera source (appliance/sources/milesight_http.py) and the
uplink (appliance/uplink.py); a new HTTP-polled sensor family uses it too.
"""

from __future__ import annotations

import functools
import heapq
import json
import logging
import socket
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import BridgeError

log = logging.getLogger("sensor-bridge.http")


class Late(BridgeError):
    """The request passed its deadline (or the client was closed) before the answer's last byte."""


class TooLarge(BridgeError):
    """The answer is larger than the cap the caller set."""

    def __init__(self, cap: int) -> None:
        super().__init__(f"answer larger than {cap} bytes")
        self.cap = cap


@dataclass(frozen=True)
class Fetched:
    """A whole answer, read within the deadline and the cap."""

    status_code: int
    reason: str
    headers: Any  # requests' case-insensitive header dict
    body: bytes
    is_redirect: bool = False

    def json(self) -> Any:
        """The body as JSON (UTF-8, as RFC 8259 says); ValueError when it is not."""
        return json.loads(self.body)


class _Cutter:
    """Shuts down one client's sockets on demand: a request past its deadline, or the bridge stopping.

    ``requests``' timeout only bounds the gap between two reads, so a camera
    sending a byte every few seconds would hold a poll forever; shutting the
    socket wakes the blocked read at once, whatever phase (connect, headers,
    body) it is in.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        self.closed = False  # the bridge is stopping: every socket is cut as soon as it exists
        self.expired = threading.Event()  # the current request's; set when it passes its deadline

    def start_request(self) -> threading.Event:
        """A fresh deadline flag, so a late timer of an earlier request cannot fail this one."""
        with self._lock:
            self.expired = threading.Event()
            return self.expired

    def track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)
            cut_now = self.closed or self.expired.is_set()
        if cut_now:  # connected after the deadline passed
            _shut(sock)

    def cut(self, expired: threading.Event | None = None, *, for_good: bool = False) -> None:
        with self._lock:
            if expired is not None and expired is not self.expired:
                return  # that request is over
            self.closed = self.closed or for_good
            self.expired.set()
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)


class _Deadlines:
    """One thread that cuts every request (cameras', the uplink's) when it passes its deadline.

    One for all cameras, not a ``threading.Timer`` per request: with every
    camera polled at once those were as many threads again as there are lanes.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._due: list[list[Any]] = []  # heap of [monotonic deadline, sequence, action or None]
        self._sequence = 0
        self._thread: threading.Thread | None = None

    def after(self, seconds: float, action: Callable[[], None]) -> Callable[[], None]:
        """Run ``action`` in ``seconds`` unless the returned cancel function is called first."""
        with self._changed:
            self._sequence += 1
            entry = [time.monotonic() + seconds, self._sequence, action]
            heapq.heappush(self._due, entry)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="deadlines", daemon=True)
                self._thread.start()
            self._changed.notify()

        def cancel() -> None:
            with self._changed:
                entry[2] = None  # dropped when it comes up; the heap stays as small as the polls

        return cancel

    def _run(self) -> None:
        while True:
            with self._changed:
                while self._due and self._due[0][2] is None:
                    heapq.heappop(self._due)
                wait = self._due[0][0] - time.monotonic() if self._due else None
                if wait is None or wait > 0:
                    self._changed.wait(wait)
                    continue
                action = heapq.heappop(self._due)[2]
            try:
                action()
            except Exception:  # one failed cut must not end every later deadline
                log.exception("cutting a late request failed")


_deadlines = _Deadlines()


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed


def _cuttable_adapter(cutter: _Cutter) -> Any:
    """A requests adapter whose new connections tell ``cutter`` their socket."""
    return _adapter_class()(cutter)


@functools.cache
def _adapter_class() -> Any:
    """The adapter class, made once (not per camera: six classes cost a camera ~19 KB) and only
    when a camera is polled (requests stays out of the services that never poll)."""
    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
    from urllib3.poolmanager import PoolManager

    class Tracked:
        cutter: _Cutter  # set by the pool that makes the connection

        def _new_conn(self) -> socket.socket:
            sock = super()._new_conn()  # type: ignore[misc]
            self.cutter.track(sock)
            return sock

    class Connection(Tracked, HTTPConnection):
        pass

    class TLSConnection(Tracked, HTTPSConnection):
        pass

    class Pooled:
        cutter: _Cutter  # set by the pool manager that makes the pool

        def _new_conn(self) -> Any:
            conn = super()._new_conn()  # type: ignore[misc]
            conn.cutter = self.cutter
            return conn

    class Pool(Pooled, HTTPConnectionPool):
        ConnectionCls = Connection

    class TLSPool(Pooled, HTTPSConnectionPool):
        ConnectionCls = TLSConnection

    class Pools(PoolManager):
        def __init__(self, cutter: _Cutter, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.cutter = cutter
            self.pool_classes_by_scheme = {"http": Pool, "https": TLSPool}

        def _new_pool(self, *args: Any, **kwargs: Any) -> Any:
            pool = super()._new_pool(*args, **kwargs)
            pool.cutter = self.cutter
            return pool

    class Adapter(HTTPAdapter):
        def __init__(self, cutter: _Cutter) -> None:
            self.cutter = cutter  # before HTTPAdapter.__init__, which makes the pool manager
            super().__init__()

        def init_poolmanager(
            self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
        ) -> None:
            # As HTTPAdapter.init_poolmanager does, with the pool manager that hands out the cutter.
            self._pool_connections, self._pool_maxsize, self._pool_block = (
                connections,
                maxsize,
                block,
            )
            self.poolmanager = Pools(
                self.cutter, num_pools=connections, maxsize=maxsize, block=block, **pool_kwargs
            )

    return Adapter


class Deadline:
    """One request's (or one exchange's, a 401 and its retry) time limit; a context manager that
    cancels the cut when the exchange ends in time."""

    def __init__(self, cutter: _Cutter, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self._expired = cutter.start_request()
        self._cancel = _deadlines.after(seconds, lambda: cutter.cut(self._expired))

    @property
    def expired(self) -> bool:
        """Cut by the deadline thread, or past its end (a read timeout may come first)."""
        return self._expired.is_set() or time.monotonic() >= self.end

    def __enter__(self) -> Deadline:
        return self

    def __exit__(self, *exc: object) -> None:
        self._cancel()


class HttpClient:
    """One ``requests`` session whose requests each end by a deadline and stay under a size cap.

    One client serves one thread at a time (a camera's polls take turns; the
    uplink and its heartbeat have one each). ``trust_env`` False keeps
    proxies and ~/.netrc out (cameras sit on the LAN).
    """

    def __init__(self, headers: dict[str, str] | None = None, *, trust_env: bool = True) -> None:
        import requests

        self.cutter = _Cutter()
        self.session = requests.Session()
        self.session.trust_env = trust_env
        self.session.headers.update(headers or {})
        adapter = _cuttable_adapter(self.cutter)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    @property
    def closed(self) -> bool:
        return self.cutter.closed

    def close(self) -> None:
        """Cut any request in flight (it fails at once) and refuse new ones: the bridge is stopping."""
        self.cutter.cut(for_good=True)
        self.session.close()

    def deadline(self, seconds: float) -> Deadline:
        """A deadline for the requests :meth:`send` makes until it ends; raises Late once closed."""
        if self.closed:
            raise Late("the client is closed")
        return Deadline(self.cutter, seconds)

    def send(self, deadline: Deadline, method: str, url: str, **kwargs: Any) -> Any:
        """The answer's status and headers (a streamed ``requests.Response``; read it with
        :meth:`read`). Raises Late past the deadline, else what ``requests`` raises."""
        import requests

        try:
            return self.session.request(
                method, url, stream=True, timeout=deadline.seconds, **kwargs
            )
        except requests.ConnectTimeout:
            raise  # no connection at all: the caller says so in its own words
        except Exception:
            if deadline.expired:
                raise Late(f"no answer within {deadline.seconds:g} s") from None
            raise

    def read(self, answer: Any, deadline: Deadline, max_bytes: int) -> bytes:
        """The whole body of ``answer``; raises TooLarge past ``max_bytes``, Late past the deadline."""
        chunks, size = [], 0
        try:
            for chunk in answer.iter_content(65536):
                size += len(chunk)
                if size > max_bytes:
                    raise TooLarge(max_bytes)
                if deadline.expired:
                    raise Late(f"answer took longer than {deadline.seconds:g} s")
                chunks.append(chunk)
        except (TooLarge, Late):
            raise
        except Exception:
            if deadline.expired:
                raise Late(f"answer took longer than {deadline.seconds:g} s") from None
            raise
        if deadline.expired:  # a body read until close ends quietly when cut
            raise Late(f"answer took longer than {deadline.seconds:g} s")
        return b"".join(chunks)

    def request(
        self, method: str, url: str, *, deadline_s: float, max_bytes: int, **kwargs: Any
    ) -> Fetched:
        """One request, connect to last byte within ``deadline_s``, its answer under ``max_bytes``."""
        with self.deadline(deadline_s) as deadline:
            answer = self.send(deadline, method, url, **kwargs)
            with answer:
                body = self.read(answer, deadline, max_bytes)
                return Fetched(
                    answer.status_code,
                    answer.reason or "",
                    answer.headers,
                    body,
                    answer.is_redirect,
                )
