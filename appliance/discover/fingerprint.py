"""Ask one device on the LAN who it is, without a password.

Two short requests, ``timeout`` each, bodies capped at ``MAX_BODY``:

- ``GET /``: a Milesight camera's web UI is titled "Milesight Network
  Camera" (the login page needs no password);
- Milesight's system information call
  (``/cgi-bin/admin/admin.cgi?action=get.system.information&format=json``:
  ``snCode``, ``model``, ``firmwareVersion``, ``macAddress``). An activated
  camera wants its password for it (401): the device is marked "needs
  credentials", and no password is ever tried. A camera that answers it
  with no password at all has none set: recent firmware ships "Inactive"
  until a person sets one, so it is flagged not activated. The bridge never
  activates a camera.
"""

from __future__ import annotations

import http.client
import json
import re
from dataclasses import dataclass

INFO_QUERY = "/cgi-bin/admin/admin.cgi?action=get.system.information&format=json"
MAX_BODY = 65536
_TITLE = re.compile(rb"<title>\s*([^<]{0,120})</title>", re.IGNORECASE)


@dataclass
class Fingerprint:
    """What a device told about itself without a password."""

    reachable: bool = False
    milesight: bool = False
    title: str | None = None
    serial: str | None = None
    model: str | None = None
    firmware: str | None = None
    mac: str | None = None
    needs_credentials: bool = False
    activated: bool | None = None  # False: answers with no password set; None: cannot tell


def _get(host: str, port: int, path: str, timeout: float) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"User-Agent": "sensor-bridge-discover"})
        answer = conn.getresponse()
        body = answer.read(MAX_BODY)
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, body
    finally:
        conn.close()


def parse_information(body: bytes) -> dict[str, str]:
    """``serial``, ``model``, ``firmware``, ``mac`` from the system information JSON ({} if not)."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}
    if not isinstance(data, dict):
        return {}
    names = {
        "serial": "snCode",
        "model": "model",
        "firmware": "firmwareVersion",
        "mac": "macAddress",
    }
    out = {}
    for ours, theirs in names.items():
        value = data.get(theirs)
        if isinstance(value, str | int) and str(value).strip():
            out[ours] = str(value).strip()[:80]
    if "mac" in out:
        out["mac"] = out["mac"].lower().replace("-", ":")
    return out


def fingerprint(host: str, port: int = 80, timeout: float = 2.0) -> Fingerprint:
    """What ``host:port`` says about itself without a password; never raises for network faults."""
    seen = Fingerprint()
    try:
        status, headers, body = _get(host, port, "/", timeout)
    except (OSError, http.client.HTTPException):
        return seen
    seen.reachable = True
    match = _TITLE.search(body)
    if match:
        seen.title = match.group(1).decode("utf-8", "replace").strip()
    server = headers.get("server", "")
    seen.milesight = "milesight" in f"{seen.title or ''} {server}".lower()
    try:
        status, headers, body = _get(host, port, INFO_QUERY, timeout)
    except (OSError, http.client.HTTPException):
        return seen
    if status == 401:
        seen.needs_credentials = True
        seen.milesight = (
            seen.milesight or "milesight" in headers.get("www-authenticate", "").lower()
        )
        seen.activated = True if seen.milesight else None
    elif status == 200:
        info = parse_information(body)
        if info.get("serial"):
            seen.milesight = True
            seen.activated = False
            seen.serial, seen.model = info.get("serial"), info.get("model")
            seen.firmware, seen.mac = info.get("firmware"), info.get("mac")
    return seen
