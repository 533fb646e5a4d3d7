"""A scan of the store's network asked from the fleet page: run once, report once.

The cloud names a waiting scan id in its config answers (``X-Scan-Wanted``)
and heartbeat answers (``scan_wanted``); the fleet agent hands each id it
sees to :class:`ScanJob`. The job runs one bounded ``sensor-bridge discover``
(appliance/discover/scan.py, its default bounds) in a thread of its own, never
two at once and at most one a minute, and posts the document, or the error
that stopped it, to ``POST /api/bridge/v1/scan`` (docs/ingest-contract.md,
"A scan of the store's network"). A report the cloud did not answer is sent
again later; one it answered (stored, or refused as malformed) is not.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ..device_text import printable
from .cloud import Cloud

log = logging.getLogger("sensor-bridge.fleet")

REPORT_SCHEMA = "sensor-bridge/scan-report/v1"
MAX_DEVICES = 256
MAX_REPORT_BYTES = 256 * 1024
MIN_GAP_S = 60.0  # between two scans' starts
RESEND_S = 30.0  # a report nobody answered is sent again after this


def default_scan() -> dict[str, Any]:
    """One scan with ``sensor-bridge discover``'s default bounds, as its JSON document."""
    from ..discover.scan import scan

    return scan().as_json()


def report_body(bridge_id: str, scan_id: int, document: Any, error: str | None) -> dict[str, Any]:
    """The report as the contract wants it: at most 256 devices and 256 KB (devices cut last first)."""
    if document is not None:
        document = dict(document)
        devices = list(document.get("devices") or [])
        left_out = max(0, len(devices) - MAX_DEVICES)
        devices = devices[:MAX_DEVICES]
        document["devices"] = devices
        body = _body(bridge_id, scan_id, document, None)
        while len(json.dumps(body).encode()) > MAX_REPORT_BYTES and devices:
            cut = max(1, len(devices) // 8)
            devices, left_out = devices[:-cut], left_out + cut
            document["devices"] = devices
        if left_out:
            document["devices_left_out"] = left_out
        return _body(bridge_id, scan_id, document, None)
    return _body(bridge_id, scan_id, None, printable(error or "the scan failed", 500))


def _body(bridge_id: str, scan_id: int, document: Any, error: str | None) -> dict[str, Any]:
    return {
        "schema": REPORT_SCHEMA,
        "bridge_id": bridge_id,
        "scan_id": scan_id,
        "scan": document,
        "error": error,
    }


class ScanJob:
    """Runs the scans the cloud asks for, one at a time, and reports each once."""

    def __init__(
        self,
        scan: Callable[[], dict[str, Any]] = default_scan,
        min_gap_s: float = MIN_GAP_S,
        resend_s: float = RESEND_S,
    ) -> None:
        self.scan = scan
        self.min_gap_s = min_gap_s
        self.resend_s = resend_s
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.last_start: float | None = None
        self.done: set[int] = set()  # scan ids reported (or refused): never run again
        self.unsent: tuple[int, dict[str, Any], float] | None = None  # id, body, when to resend
        self.last_error = ""

    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def offer(self, scan_id: int | None, url: str, credential: str, bridge_id: str) -> bool:
        """The cloud wants scan ``scan_id``: start it (or resend its report) unless too soon.

        Returns whether a scan was started. Never blocks: the scan runs in its own thread."""
        if not isinstance(scan_id, int) or isinstance(scan_id, bool) or scan_id < 1:
            return False
        with self.lock:
            if scan_id in self.done or self.running():
                return False
            now = time.monotonic()
            if self.unsent is not None and self.unsent[0] == scan_id:
                if now >= self.unsent[2]:
                    body = self.unsent[1]
                    self._start(lambda: self._send(url, credential, scan_id, body))
                return False
            if self.last_start is not None and now - self.last_start < self.min_gap_s:
                return False
            self.last_start = now
            self._start(lambda: self._run(url, credential, bridge_id, scan_id))
            return True

    def wait(self, timeout_s: float) -> bool:
        """Wait for the scan (and its report) under way; True when none is left running."""
        thread = self.thread
        if thread is not None:
            thread.join(timeout_s)
        return not self.running()

    def _start(self, work: Callable[[], None]) -> None:
        self.thread = threading.Thread(target=work, name="fleet-scan", daemon=True)
        self.thread.start()

    def _run(self, url: str, credential: str, bridge_id: str, scan_id: int) -> None:
        log.info("the fleet page asked for scan %d of the store's network: scanning", scan_id)
        try:
            document, error = self.scan(), None
        except Exception as exc:  # noqa: BLE001 - any failure is the report's error
            document, error = None, f"the scan failed: {type(exc).__name__}: {exc}"
            log.error("scan %d: %s", scan_id, error)
        self._send(url, credential, scan_id, report_body(bridge_id, scan_id, document, error))

    def _send(self, url: str, credential: str, scan_id: int, body: dict[str, Any]) -> None:
        cloud = Cloud(url)  # its own connection: the agent's client belongs to the agent's thread
        try:
            answer = cloud.scan_report(credential, body)
        finally:
            cloud.close()
        with self.lock:
            if answer.status is None or answer.status >= 500 or answer.status in (401, 429):
                self.unsent = (scan_id, body, time.monotonic() + self.resend_s)
                self.last_error = f"scan report: {answer.error}"
                log.warning("%s; sending it again later", self.last_error)
                return
            self.unsent = None
            self.done.add(scan_id)
            if answer.status == 200:
                self.last_error = ""
                found = len((body.get("scan") or {}).get("devices") or [])
                log.info("scan %d reported: %d devices", scan_id, found)
            else:
                self.last_error = f"scan report refused: {answer.error}"
                log.error("%s", self.last_error)
