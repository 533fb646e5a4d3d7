"""The uplink: deliver the outbox's readings to the cloud API, exactly per ingest-contract.md.

Only a 2xx removes a reading from the outbox. Every other answer has one
prescribed reaction (the contract's table): back off with full jitter and
honour Retry-After on 408/429/5xx and network errors; halve the batch on 413;
bisect on 400/422 so only the bad records go to the dead-letter table; keep
everything and retry slowly on 401/403. A batch keeps its Idempotency-Key for
every retry, so a receiver that stored it before the connection dropped
recognises the replay.
"""

from __future__ import annotations

import gzip
import json
import logging
import random
import threading
import time
import uuid
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

from . import __version__
from .config import Config
from .outbox import Outbox, Pending
from .records import now_utc, utc_text

log = logging.getLogger("sensor-bridge.uplink")

SCHEMA = "sensor-bridge/ingest/v1"
BACKOFF_BASE_S = 2.0
BACKOFF_CAP_S = 300.0
AUTH_RETRY_S = 300.0
IDLE_WAIT_S = 5.0


@dataclass(frozen=True)
class DeliveryResult:
    """What one attempt did: how many readings the cloud took, and how long to wait now."""

    delivered: int = 0
    rejected: int = 0
    wait_s: float = 0.0
    error: str | None = None


class _Answer:
    """One HTTP exchange, reduced to what the contract's table needs."""

    def __init__(self, status: int | None, body: Any = None, retry_after: float | None = None,
                 error: str | None = None) -> None:
        self.status = status
        self.body = body
        self.retry_after = retry_after
        self.error = error


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds from now: either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


class Uplink:
    """Drains the outbox to ``config.uplink.url``; run it in a thread with :meth:`run`."""

    def __init__(self, config: Config, outbox: Outbox) -> None:
        import requests

        self.config = config
        self.settings = config.uplink
        self.outbox = outbox
        self.session = requests.Session()
        self.session.headers.update({
            "Authorization": f"Bearer {self.settings.api_key}",
            "User-Agent": f"sensor-bridge/{__version__}",
            "Content-Type": "application/json",
        })
        self.batch_size = self.settings.batch_size
        self._too_large_at: int | None = None  # the smallest batch the API called too large
        self._batch_key: tuple[tuple[str, int], ...] = ()
        self._batch_id = ""
        self._failures = 0
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self.state = "ok"
        self.last_success: str | None = None
        self.last_error: str | None = None
        self.next_try_at = 0.0
        self.delivered_total = 0

    # ------------------------------------------------------------ one request

    def _post(self, url: str, body: dict[str, Any], idempotency_key: str | None = None) -> _Answer:
        import requests

        data = json.dumps(body, separators=(",", ":")).encode()
        headers = {}
        if self.settings.gzip:
            data = gzip.compress(data, compresslevel=5)
            headers["Content-Encoding"] = "gzip"
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        try:
            answer = self.session.post(url, data=data, headers=headers, timeout=self.settings.timeout_s,
                                       verify=self.settings.verify_tls)
        except requests.Timeout:
            return _Answer(None, error=f"no answer within {self.settings.timeout_s:g}s")
        except requests.ConnectionError as exc:
            return _Answer(None, error=f"cannot connect: {_root_cause(exc)}")
        except requests.RequestException as exc:
            return _Answer(None, error=f"request failed: {type(exc).__name__}")
        try:
            parsed = answer.json()
        except ValueError:
            parsed = None
        return _Answer(answer.status_code, parsed, parse_retry_after(answer.headers.get("Retry-After")),
                       f"HTTP {answer.status_code}{_reason(parsed)}")

    def _batch(self, items: list[Pending]) -> dict[str, Any]:
        key = tuple((p.id, p.revision) for p in items)
        if key != self._batch_key:  # a new batch; a retry of the same one keeps its id
            self._batch_key, self._batch_id = key, str(uuid.uuid4())
        return {
            "schema": SCHEMA,
            "bridge_id": self.config.bridge.id,
            "batch_id": self._batch_id,
            "sent_at": utc_text(now_utc()),
            "records": [p.body for p in items],
        }

    # ------------------------------------------------------------ the contract's table

    def deliver_once(self) -> DeliveryResult:
        """Send the oldest pending batch and act on the answer."""
        items = self.outbox.take(self.batch_size)
        if not items:
            return DeliveryResult(wait_s=IDLE_WAIT_S)
        return self._deliver(items)

    def _deliver(self, items: list[Pending]) -> DeliveryResult:
        answer = self._post(self.settings.url, self._batch(items), self._batch_id)
        status = answer.status
        if status is not None and 200 <= status < 300:
            return self._stored(items, answer.body)
        if status in (400, 422):
            return self._bisect(items, answer)
        if status == 413:
            return self._too_large(items, answer)
        if status in (401, 403):
            return self._failed("error", f"API key rejected ({status})", AUTH_RETRY_S)
        wait = self._backoff()
        if answer.retry_after is not None:  # the API knows best; a little jitter spreads bridges
            wait = answer.retry_after + random.uniform(0, 1)
        return self._failed("degraded", answer.error or "no answer", wait)

    def _stored(self, items: list[Pending], body: Any) -> DeliveryResult:
        refused: dict[str, str] = {}
        if isinstance(body, dict) and isinstance(body.get("rejected"), list):
            for entry in body["rejected"]:
                if isinstance(entry, dict) and isinstance(entry.get("id"), str):
                    refused[entry["id"]] = str(entry.get("error") or "rejected by the cloud API")
        taken = [p for p in items if p.id not in refused]
        done = self.outbox.delivered(taken)
        rejected = self.outbox.reject([(p, refused[p.id]) for p in items if p.id in refused])
        if rejected:
            log.warning("the cloud API refused %d reading(s); kept in the dead-letter table", rejected)
        with self._lock:
            self._failures = 0
            self.state = "ok"
            self.last_success = utc_text(now_utc())
            self.delivered_total += done
            self.next_try_at = 0.0
            if self.batch_size < self.settings.batch_size:  # grow back after a 413, never to what failed
                ceiling = self.settings.batch_size if self._too_large_at is None else self._too_large_at - 1
                self.batch_size = max(1, min(ceiling, self.batch_size * 2))
        return DeliveryResult(delivered=done, rejected=rejected)

    def _bisect(self, items: list[Pending], answer: _Answer) -> DeliveryResult:
        """A malformed batch: split it until the bad records stand alone, then dead-letter them."""
        if len(items) == 1:
            rejected = self.outbox.reject([(items[0], answer.error or "rejected as malformed")])
            log.warning("reading %s refused as malformed: %s", items[0].id[:12], answer.error)
            return DeliveryResult(rejected=rejected)
        half = len(items) // 2
        total = DeliveryResult()
        for part in (items[:half], items[half:]):
            result = self._deliver(part)
            total = DeliveryResult(total.delivered + result.delivered, total.rejected + result.rejected,
                                   max(total.wait_s, result.wait_s), result.error or total.error)
            if result.wait_s:  # the API went away mid-bisection: try the rest later
                break
        return total

    def _too_large(self, items: list[Pending], answer: _Answer) -> DeliveryResult:
        if len(items) == 1:
            rejected = self.outbox.reject([(items[0], "too large for the cloud API (413)")])
            return DeliveryResult(rejected=rejected)
        with self._lock:
            self._too_large_at = len(items) if self._too_large_at is None else min(self._too_large_at, len(items))
            self.batch_size = max(1, len(items) // 2)
        log.info("cloud API says the batch is too large; sending %d at a time", self.batch_size)
        return self._deliver(items[: self.batch_size])

    def _backoff(self) -> float:
        """Exponential backoff with full jitter: a random wait up to base * 2^failures, capped."""
        with self._lock:
            self._failures += 1
            ceiling = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** min(self._failures - 1, 16))
        return random.uniform(0, ceiling)

    def _failed(self, state: str, error: str, wait_s: float) -> DeliveryResult:
        with self._lock:
            if error != self.last_error or state != self.state:
                (log.error if state == "error" else log.warning)("uplink: %s", error)
            self.state = state
            self.last_error = error
            self.next_try_at = time.time() + wait_s
        return DeliveryResult(wait_s=wait_s, error=error)

    # ------------------------------------------------------------ the thread

    def wake(self) -> None:
        """New readings are in the outbox: stop idling (a backoff still holds)."""
        self._wake.set()

    def run(self, stop: threading.Event) -> None:
        """Deliver until ``stop`` is set; an in-flight batch finishes or stays pending."""
        while not stop.is_set():
            try:
                result = self.deliver_once()
            except Exception:  # a bug must not end delivery for good
                log.exception("uplink attempt crashed")
                result = DeliveryResult(wait_s=self._backoff())
            if result.delivered or result.rejected:
                continue
            deadline = time.monotonic() + result.wait_s
            backing_off = result.error is not None
            while not stop.is_set() and time.monotonic() < deadline:
                if self._wake.wait(min(0.5, max(0.0, deadline - time.monotonic()))) and not backing_off:
                    break
            self._wake.clear()

    def snapshot(self) -> dict[str, Any]:
        """For status, /health and the heartbeat; never contains the key."""
        with self._lock:
            return {
                "state": self.state,
                "last_success": self.last_success,
                "last_error": self.last_error,
                "consecutive_failures": self._failures,
                "next_try_in_s": round(max(0.0, self.next_try_at - time.time()), 1),
                "batch_size": self.batch_size,
                "delivered_total": self.delivered_total,
            }

    def send_heartbeat(self, body: dict[str, Any]) -> bool:
        """POST the heartbeat to ``uplink.heartbeat_url``; False when it did not land."""
        if not self.settings.heartbeat_url:
            return False
        answer = self._post(self.settings.heartbeat_url, body)
        ok = answer.status is not None and 200 <= answer.status < 300
        if not ok:
            log.debug("heartbeat not accepted: %s", answer.error)
        return ok


def _reason(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return f": {body['error'][:200]}"
    return ""


def _root_cause(exc: BaseException) -> str:
    while exc.__cause__ or exc.__context__:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    text = str(exc)
    if "Connection refused" in text:
        return "connection refused"
    if "Name or service not known" in text or "NameResolutionError" in text:
        return "name not resolved"
    return text[:160]
