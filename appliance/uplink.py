"""The uplink: deliver the outbox's readings to the cloud API, exactly per docs/ingest-contract.md.

Only a 2xx removes a reading from the outbox. Every other answer has one
prescribed reaction (the contract's table): back off with full jitter and
honour Retry-After on 408/429/5xx and network errors; halve the batch on 413;
bisect on 400/422 so only the bad records go to the dead-letter table; keep
everything and retry slowly on 401/403. A batch keeps its Idempotency-Key for
every retry, so a receiver that stored it before the connection dropped
recognises the replay; a batch that got its final answer never reuses it.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from . import __version__
from .clock import utc_text
from .config import Config, mask_urls
from .device_text import printable
from .http_client import HttpClient, Late, TooLarge
from .outbox import Outbox, OutboxFull, Pending

log = logging.getLogger("sensor-bridge.uplink")

SCHEMA = "sensor-bridge/ingest/v1"
BACKOFF_BASE_S = 2.0
BACKOFF_CAP_S = 300.0
AUTH_RETRY_S = 300.0  # a rejected key needs a person; asking often only fills the cloud's logs
MAX_RETRY_AFTER_S = 3600.0  # a broken Retry-After must not stall delivery for days
IDLE_WAIT_S = 5.0  # the relay writes to the outbox from another process, without a wake()
GROW_AFTER = 10  # full batches delivered in a row before a halved batch size doubles again
TOO_LARGE_MEMORY_S = 3600.0  # how long a size that got 413 stays the ceiling
# Readings in a row refused as malformed, none accepted in between, before the uplink asks
# whether the cloud takes anything at all: it sends one other reading (the newest, of another
# sensor if there is one) alone. Taken: these readings are bad, dead-letter on. Refused too: it
# is the bridge's config (bridge.id) or the cloud, not the readings: hold everything.
MALFORMED_STREAK = 10
STREAK_COUNTER = (
    "uplink_refused_streak"  # kept in the outbox: a restart must not dead-letter 10 more
)
GZIP_LEVEL = 5  # past 5, a Pi spends much more time for a few percent less
# Woken by new readings, the uplink waits this long for the rest of the poll round: one batch,
# one POST and one marking transaction (pages written to the SD card) for the lot.
WAKE_LINGER_S = 1.0
# The largest answer the contract allows: 2000 records (the most a batch may hold) all rejected,
# each with a 256-character id and an error, is about 1.2 MB. More is not the cloud API talking.
MAX_ANSWER_BYTES = 2_000_000


@dataclass(frozen=True)
class DeliveryResult:
    """What one attempt did: readings the cloud took or refused, and how long to wait now."""

    delivered: int = 0
    rejected: int = 0
    wait_s: float = 0.0
    error: str | None = None  # set when the attempt failed and the wait is a backoff

    def __add__(self, other: DeliveryResult) -> DeliveryResult:
        return DeliveryResult(
            self.delivered + other.delivered,
            self.rejected + other.rejected,
            max(self.wait_s, other.wait_s),
            other.error or self.error,
        )


@dataclass(frozen=True)
class _Answer:
    """One HTTP exchange, reduced to what the contract's table needs."""

    status: int | None  # None: no answer at all (timeout, refused, reset)
    body: Any = None
    retry_after: float | None = None
    error: str = ""


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds from ``now``: either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:  # RFC 9110 dates are GMT; the parser leaves "-0000" naive
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


def new_batch_id() -> str:
    """A random version-4 UUID as text, made without the uuid module (which loads platform and
    libuuid into the collector for this one call)."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40
    raw[8] = raw[8] & 0x3F | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class Uplink:
    """Drains the outbox to ``config.uplink.url``; the collector runs :meth:`run` in a thread.

    ``clock`` (epoch seconds) is injectable so tests can move time for Retry-After
    dates and the 413 memory without waiting.
    """

    def __init__(
        self, config: Config, outbox: Outbox, clock: Callable[[], float] = time.time
    ) -> None:
        self.config = config
        self.settings = config.uplink
        self.outbox = outbox
        self.clock = clock
        self._session = self._new_session()
        self._heartbeat_session: Any = None
        self._heartbeat_error: str | None = None
        self.heartbeat_answer: Any = None  # the last accepted heartbeat's answer (config_version)
        self._stop = threading.Event()  # run() swaps in the collector's
        self._wake = threading.Event()
        self._lock = threading.Lock()  # guards what snapshot() reads
        self._retry_key: tuple[tuple[str, int], ...] = ()
        self._retry_id = ""
        self._too_large_seen: tuple[int, float] | None = None  # (smallest size that got 413, when)
        self._full_batches = 0
        self._malformed_streak = outbox.counter(STREAK_COUNTER)
        self._refused_sensors: set[str] = set()
        self.batch_size = self.settings.batch_size
        self.state = "ok"
        self.last_success: str | None = None
        self.last_error: str | None = None
        self.failures = 0
        self.next_try_at = 0.0
        self.delivered_total = 0
        if not self.settings.verify_tls:
            log.warning(
                "TLS certificates of %s are NOT verified (uplink.verify_tls = false)",
                self.settings.url,
            )

    def _new_session(self) -> HttpClient:
        import urllib3

        if not self.settings.verify_tls:  # said once above, not once per request
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        return HttpClient(
            {
                "Authorization": f"Bearer {self.settings.api_key}",
                "User-Agent": f"sensor-bridge/{__version__}",
                "Content-Type": "application/json",
            }
        )

    # ------------------------------------------------------------ one request

    def _post(
        self,
        session: HttpClient,
        url: str,
        body: dict[str, Any],
        headers: dict[str, str],
        compress: bool,
    ) -> _Answer:
        """One POST, connect to the answer's last byte within ``timeout_s``, its answer under
        ``MAX_ANSWER_BYTES``; a cloud that trickles or floods is cut and tried again later."""
        import requests

        data = json.dumps(body, separators=(",", ":")).encode()
        if compress:
            data = gzip.compress(data, compresslevel=GZIP_LEVEL)
            headers = {**headers, "Content-Encoding": "gzip"}
        try:
            # No redirects: requests would turn a POST into a GET on 301/302, and a login
            # page's 200 would then look like "stored" to us.
            answer = session.request(
                "POST",
                url,
                data=data,
                headers=headers,
                deadline_s=self.settings.timeout_s,
                max_bytes=MAX_ANSWER_BYTES,
                verify=self.settings.verify_tls,
                allow_redirects=False,
            )
        except (Late, requests.Timeout):
            return _Answer(None, error=f"no answer within {self.settings.timeout_s:g} s")
        except TooLarge:
            return _Answer(
                None,
                error=f"answer larger than {MAX_ANSWER_BYTES // 1_000_000} MB; not the cloud API's",
            )
        except requests.exceptions.SSLError as exc:
            return _Answer(None, error=self._clean(f"TLS failed: {_root_cause(exc)}"))
        except requests.ConnectionError as exc:
            return _Answer(None, error=self._clean(f"cannot connect: {_root_cause(exc)}"))
        except requests.RequestException as exc:
            return _Answer(None, error=self._clean(f"request failed: {type(exc).__name__}: {exc}"))
        try:
            parsed = answer.json()
        except ValueError:
            parsed = None
        reason = parsed.get("error") if isinstance(parsed, dict) else None
        error = f"HTTP {answer.status_code}" + (
            f": {reason}" if isinstance(reason, str) and reason else ""
        )
        if answer.is_redirect:
            error += (
                f" (the cloud app redirected to {answer.headers.get('Location')}: likely its auth middleware;"
                " exclude /api/bridge/ from it, see cloud/README.md)"
            )
        return _Answer(
            answer.status_code,
            parsed,
            parse_retry_after(answer.headers.get("Retry-After"), self.clock()),
            self._clean(error),
        )

    def _clean(self, text: str) -> str:
        """One line, short, and never the key (a receiver may echo what it was sent)."""
        if self.settings.api_key:
            text = text.replace(self.settings.api_key, "***")
        return printable(mask_urls(text), 240)

    def _batch_id(self, items: list[Pending]) -> str:
        """The same records (and revisions) as the batch that last failed transiently keep its id."""
        key = tuple((p.id, p.revision) for p in items)
        if key != self._retry_key:
            self._retry_key, self._retry_id = key, new_batch_id()
        return self._retry_id

    def _send(self, items: list[Pending]) -> _Answer:
        batch_id = self._batch_id(items)
        body = {
            "schema": SCHEMA,
            "bridge_id": self.config.bridge.id,
            "batch_id": batch_id,
            "sent_at": utc_text_now(self.clock),
            "records": [p.body for p in items],
        }
        return self._post(
            self._session,
            self.settings.url,
            body,
            {"Idempotency-Key": batch_id},
            self.settings.gzip,
        )

    # ------------------------------------------------------------ the contract's table

    def deliver_once(self) -> DeliveryResult:
        """Send the oldest pending batch and act on the answer; nothing pending is an idle wait."""
        items = self.outbox.take(self.batch_size)
        if not items:
            return DeliveryResult(wait_s=IDLE_WAIT_S)
        return self._deliver(items)

    def _deliver(self, items: list[Pending]) -> DeliveryResult:
        answer = self._send(items)
        status = answer.status
        if status is not None and 200 <= status < 300:
            return self._stored(items, answer.body)
        if status in (400, 422):
            return self._bisect(items, answer)
        if status == 413:
            return self._too_large(items, answer)
        if status in (401, 403):
            return self._failed(
                "error", f"API key rejected ({status})", AUTH_RETRY_S * random.uniform(1, 1.1)
            )
        wait = self._backoff()
        if (
            answer.retry_after is not None
        ):  # the API knows best; a second of jitter spreads the bridges
            wait = min(answer.retry_after, MAX_RETRY_AFTER_S) + random.uniform(0, 1)
        if status is None or status in (408, 429) or status >= 500:
            return self._failed("degraded", answer.error, wait)
        # Not in the contract (404 after a URL typo, 405, 3xx to a login page): a person must look.
        return self._failed(
            "error", f"unexpected answer {answer.error} from {self.settings.url}", wait
        )

    def _stored(self, items: list[Pending], body: Any) -> DeliveryResult:
        """2xx: delete what was accepted, dead-letter what the body lists as rejected."""
        refused: dict[str, str] = {}
        listed = body.get("rejected") if isinstance(body, dict) else None
        for entry in listed if isinstance(listed, list) else ():
            if isinstance(entry, dict) and isinstance(entry.get("id"), str):
                refused[entry["id"]] = self._clean(
                    f"refused by the cloud API: {entry.get('error') or 'no reason'}"
                )
        done = self.outbox.delivered([p for p in items if p.id not in refused])
        if done:
            self._set_streak(0)
        rejected = self.outbox.reject([(p, refused[p.id]) for p in items if p.id in refused])
        if rejected:
            log.warning(
                "the cloud API refused %d reading(s), kept in the dead-letter table; first: %s",
                rejected,
                next(iter(refused.values())),
            )
        self._answered()
        with self._lock:
            self.last_success = utc_text_now(self.clock)
            self.delivered_total += done
            self._grow(len(items))
        # Nothing changed (every record got a newer revision in flight): take again, but not in a hot loop.
        return DeliveryResult(
            delivered=done, rejected=rejected, wait_s=0.0 if done or rejected else 1.0
        )

    def _bisect(self, items: list[Pending], answer: _Answer) -> DeliveryResult:
        """400/422: split the batch until each bad record stands alone, then dead-letter it.

        Every half is a new batch; k bad records among n cost about 2k*log2(n)
        requests, and a record is never sent again once the cloud called it malformed.
        After MALFORMED_STREAK refused readings in a row, one other reading is sent
        alone first (:meth:`_probe`): only when the cloud refuses that one too does
        the uplink hold everything, so a few bad readings never hold the good ones.
        """
        if self._malformed_streak >= MALFORMED_STREAK:
            held = self._probe(items, answer)
            if held is not None:
                return held
        self._answered()
        if len(items) == 1:
            reason = self._clean(f"refused as malformed: {answer.error}")
            self._set_streak(self._malformed_streak + 1)
            self._refused_sensors.add(str(items[0].body.get("sensor_id")))
            rejected = self.outbox.reject([(items[0], reason)])
            log.warning(
                "reading %s (%s) %s; kept in the dead-letter table",
                items[0].id[:12],
                items[0].body.get("sensor_id"),
                reason,
            )
            return DeliveryResult(rejected=rejected)
        half = len(items) // 2
        total = DeliveryResult()
        for part in (items[:half], items[half:]):
            if self._stop.is_set():  # whatever is not answered yet simply stays pending
                break
            total += self._deliver(part)
            if total.wait_s:  # the API went away mid-split: the rest waits for the next try
                break
        return total

    def _probe(self, items: list[Pending], answer: _Answer) -> DeliveryResult | None:
        """Does the cloud take any reading? None: yes (one was delivered), go on dead-lettering.

        Otherwise what to do now: hold everything (it refused the probe too, or there
        is nothing else to try), or the probe's own transient failure.
        """
        probe = self.outbox.newest_pending(self._refused_sensors, {p.id for p in items})
        if probe is not None:
            reply = self._send([probe])
            if reply.status is not None and 200 <= reply.status < 300:
                result = self._stored([probe], reply.body)
                if result.delivered:
                    log.info(
                        "uplink: the cloud API took reading %s alone; the refused ones are bad, not the config",
                        probe.id[:12],
                    )
                    return None
            elif reply.status not in (
                400,
                422,
            ):  # no verdict (5xx, no answer, ...): try again later
                return self._failed("degraded", reply.error, self._backoff())
        return self._failed(
            "error",
            f"the cloud API refuses every reading as malformed ({answer.error});"
            " holding them: check bridge.id and the cloud app",
            AUTH_RETRY_S,
        )

    def _set_streak(self, value: int) -> None:
        if value == self._malformed_streak:
            return
        self._malformed_streak = value
        if not value:
            self._refused_sensors.clear()
        self.outbox.set_counter(STREAK_COUNTER, value)

    def _too_large(self, items: list[Pending], answer: _Answer) -> DeliveryResult:
        """413: halve the batch size and send the first half now; a lone record that is too large is dead."""
        self._answered()
        if len(items) == 1:
            reason = self._clean(f"too large for the cloud API: {answer.error}")
            rejected = self.outbox.reject([(items[0], reason)])
            log.warning("reading %s %s; kept in the dead-letter table", items[0].id[:12], reason)
            with self._lock:
                self._too_large_seen = None  # that record was the trouble, not the batch size
            return DeliveryResult(rejected=rejected)
        with self._lock:
            smallest = (
                len(items)
                if self._too_large_seen is None
                else min(self._too_large_seen[0], len(items))
            )
            self._too_large_seen = (smallest, self.clock())
            self.batch_size = max(1, len(items) // 2)
            self._full_batches = 0
        log.info(
            "the cloud API says %d readings are too large a batch; sending %d at a time",
            len(items),
            self.batch_size,
        )
        if self._stop.is_set():
            return DeliveryResult()
        return self._deliver(items[: self.batch_size])

    def _grow(self, sent: int) -> None:
        """After a 413, double the batch size again once GROW_AFTER full batches went through,
        never up to a size that got 413 within the last TOO_LARGE_MEMORY_S."""
        if self.batch_size >= self.settings.batch_size or sent < self.batch_size:
            return
        self._full_batches += 1
        if self._full_batches < GROW_AFTER:
            return
        self._full_batches = 0
        ceiling = self.settings.batch_size
        if self._too_large_seen is not None:
            size, at = self._too_large_seen
            if self.clock() - at < TOO_LARGE_MEMORY_S:
                ceiling = min(ceiling, size - 1)
            else:
                self._too_large_seen = None
        self.batch_size = max(self.batch_size, min(ceiling, self.batch_size * 2))

    # ------------------------------------------------------------ state

    def _answered(self) -> None:
        """The API answered with a final verdict on a batch: reachable, key good, batch id done."""
        self._retry_key = ()
        with self._lock:
            recovered = self.failures
            self.failures = 0
            self.state = "ok"
            self.next_try_at = 0.0
        if recovered:
            log.info("uplink: the cloud API answers again after %d failed attempt(s)", recovered)

    def _backoff(self) -> float:
        """Exponential backoff with full jitter: a random wait up to base * 2^failures, capped."""
        with self._lock:
            ceiling = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** min(self.failures, 16))
        return random.uniform(0, ceiling)

    def _failed(self, state: str, error: str, wait_s: float) -> DeliveryResult:
        with self._lock:
            changed = error != self.last_error or state != self.state
            self.failures += 1
            self.state = state
            self.last_error = error
            self.next_try_at = self.clock() + wait_s
        if changed:  # once per change, not once per retry
            (log.error if state == "error" else log.warning)(
                "uplink: %s; readings wait in the outbox", error
            )
        return DeliveryResult(wait_s=wait_s, error=error)

    def snapshot(self) -> dict[str, Any]:
        """For status, /health and the heartbeat; never contains the key."""
        with self._lock:
            return {
                "state": self.state,
                "last_success": self.last_success,
                "last_error": self.last_error,
                "consecutive_failures": self.failures,
                "next_try_in_s": round(max(0.0, self.next_try_at - self.clock()), 1),
                "batch_size": self.batch_size,
                "delivered_total": self.delivered_total,
            }

    # ------------------------------------------------------------ the thread

    def wake(self) -> None:
        """New readings are in the outbox: stop idling now (a backoff still holds)."""
        self._wake.set()

    def run(self, stop: threading.Event) -> None:
        """Deliver until ``stop`` is set.

        A batch in flight when ``stop`` is set finishes and is marked (at most
        ``timeout_s`` later); a bisection or halving stops between requests, and
        whatever got no answer simply stays pending for the next start.
        """
        self._stop = stop
        while not stop.is_set():
            self._wake.clear()  # before take(): a wake during the attempt is not lost
            try:
                result = self.deliver_once()
            except Exception as exc:  # a disk error or a bug must not end delivery for good
                if isinstance(exc, OutboxFull):  # a state the outbox already reports, not a bug
                    log.warning("uplink: cannot mark what the cloud took: %s", exc)
                else:
                    log.exception("uplink attempt failed")
                result = self._failed(
                    "degraded",
                    self._clean(f"uplink fault: {type(exc).__name__}: {exc}"),
                    self._backoff(),
                )
            if result.wait_s > 0:
                self._pause(stop, result.wait_s, wakeable=result.error is None)

    def _pause(self, stop: threading.Event, seconds: float, wakeable: bool) -> None:
        deadline = time.monotonic() + seconds
        while not stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            # Short slices: stop is the collector's event, so it cannot interrupt our wait itself.
            if self._wake.wait(min(0.25, left)) and wakeable:
                stop.wait(WAKE_LINGER_S)
                return

    # ------------------------------------------------------------ heartbeat

    def send_heartbeat(self, body: dict[str, Any]) -> bool:
        """POST the collector's heartbeat to ``uplink.heartbeat_url``; False when it did not land."""
        if not self.settings.heartbeat_url:
            return False
        if self._heartbeat_session is None:  # its own connection: it runs in another thread
            self._heartbeat_session = self._new_session()
        answer = self._post(
            self._heartbeat_session, self.settings.heartbeat_url, body, {}, compress=False
        )
        ok = answer.status is not None and 200 <= answer.status < 300
        if ok:
            self.heartbeat_answer = answer.body
        error = None if ok else answer.error
        if error != self._heartbeat_error:
            if error:
                log.warning("heartbeat to %s not accepted: %s", self.settings.heartbeat_url, error)
            else:
                log.info("heartbeat accepted again")
            self._heartbeat_error = error
        return ok


def utc_text_now(clock: Callable[[], float]) -> str:
    return utc_text(datetime.fromtimestamp(clock(), UTC))


def _root_cause(exc: BaseException) -> str:
    """The innermost reason of a requests/urllib3 error, in words a person knows."""
    while exc.__cause__ or exc.__context__:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    text = str(exc)
    for needle, words in (
        ("Connection refused", "connection refused"),
        ("Name or service not known", "name not resolved"),
        ("Temporary failure in name resolution", "name not resolved"),
        ("Network is unreachable", "network unreachable"),
        ("No route to host", "no route to host"),
        ("CERTIFICATE_VERIFY_FAILED", "certificate not trusted"),
        ("Connection reset", "connection reset"),
    ):
        if needle in text:
            return words
    return text[:160]
