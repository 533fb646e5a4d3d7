"""The reference receiver's scans of a store's network: asked, named, reported.

The same rules as the cloud's ``POST /api/bridge/v1/scan`` (docs/ingest-contract.md,
"A scan of the store's network"): a scan id per request, the newest one not yet
reported named in config and heartbeat answers, the newest result kept per bridge,
a bad report refused 400 naming the key.
"""

from __future__ import annotations

import threading
from typing import Any

from .contract_rules import SCAN_PATH  # noqa: F401 - the route this module answers
from .http_handler import Reply

REPORT_SCHEMA = "sensor-bridge/scan-report/v1"
DISCOVERY_SCHEMA = "sensor-bridge/discovery/v1"
MAX_DEVICES = 256
MAX_BYTES = 256 * 1024


def report_problem(body: Any) -> str | None:
    """What is wrong with a scan report, named by its key, or None."""
    if not isinstance(body, dict):
        return "body must be a JSON object"
    if body.get("schema") != REPORT_SCHEMA:
        return f'schema: must be "{REPORT_SCHEMA}"'
    scan_id = body.get("scan_id")
    if not isinstance(scan_id, int) or isinstance(scan_id, bool) or scan_id < 1:
        return "scan_id: must be a whole number >= 1"
    scan, error = body.get("scan"), body.get("error")
    if (scan is None) == (error is None):
        return (
            "scan, error: exactly one of them must be given (the document, or why the scan failed)"
        )
    if scan is None:
        return (
            None
            if isinstance(error, str) and 0 < len(error) <= 500
            else ("error: must be text of 1 to 500 characters")
        )
    if not isinstance(scan, dict):
        return "scan: must be sensor-bridge discover's JSON document (an object)"
    if scan.get("schema") != DISCOVERY_SCHEMA:
        return f'scan.schema: must be "{DISCOVERY_SCHEMA}"'
    devices = scan.get("devices")
    if not isinstance(devices, list):
        return "scan.devices: must be a list"
    if len(devices) > MAX_DEVICES:
        return f"scan.devices: at most {MAX_DEVICES} devices"
    for i, d in enumerate(devices):
        if not isinstance(d, dict):
            return f"scan.devices[{i}]: must be an object"
        address = d.get("address")
        if not isinstance(address, str) or not 0 < len(address) <= 64:
            return f"scan.devices[{i}].address: must be text of 1 to 64 characters"
    return None


class Scans:
    """Scan requests and results per bridge, in memory."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.asked: dict[str, list[int]] = {}
        self.results: dict[str, dict[str, Any]] = {}
        self._next = 0

    def ask(self, bridge_id: str) -> int:
        """The fleet page's "Scan the store's network": a new scan id for ``bridge_id``."""
        with self.lock:
            self._next += 1
            self.asked.setdefault(bridge_id, []).append(self._next)
            return self._next

    def wanted(self, bridge_id: str) -> int | None:
        """The newest scan asked of ``bridge_id`` and not reported yet, or None."""
        with self.lock:
            asked = self.asked.get(bridge_id) or []
            done = self.results.get(bridge_id, {}).get("scan_id", 0)
            return asked[-1] if asked and asked[-1] > done else None

    def result(self, bridge_id: str) -> dict[str, Any] | None:
        with self.lock:
            return self.results.get(bridge_id)

    def report(self, bridge_id: str, body: Any) -> Reply:
        """POST /scan from ``bridge_id`` (its key already checked)."""
        if problem := report_problem(body):
            return Reply(400, {"error": problem})
        if body.get("bridge_id") != bridge_id:
            return Reply(401, {"error": "bridge_id: not the bridge this key belongs to"})
        scan_id = body["scan_id"]
        with self.lock:
            if scan_id not in self.asked.get(bridge_id, []):
                return Reply(400, {"error": f"scan_id: no scan {scan_id} was asked of {bridge_id}"})
            if self.results.get(bridge_id, {}).get("scan_id", 0) <= scan_id:
                self.results[bridge_id] = body
        devices = (body.get("scan") or {}).get("devices") or []
        return Reply(200, {"ok": True, "scan_id": scan_id, "devices": len(devices)})
