"""cloud/bin/bridges' helper: a store's config as TOML in, the cloud's JSON document out (and back, masked).

`check FILE.toml` prints the document as JSON or exits 2 naming what is wrong;
`show` reads a stored document (JSON on stdin) and prints it as TOML-like text
with passwords and the alert ping URL masked. The cloud checks what it can
(known tables, sensors with id, type and url); the bridge checks the rest with
`config check`'s rules and reports a document it refuses as `invalid`.
"""

from __future__ import annotations

import json
import sys
import tomllib
from typing import Any

TABLES = ("bridge", "sensors", "mqtt", "push", "alerts", "update", "outbox", "health")
LOCAL = ("uplink", "fleet", "remote", "watchdog", "paths", "led")
SECRET_KEYS = ("password", "ping_url")
SENSOR_TYPES = ("milesight-camera",)


class Refused(Exception):
    pass


def _plain(value: Any, where: str) -> Any:
    """JSON-able copy; TOML dates and times have no place in the document."""
    if isinstance(value, dict):
        return {k: _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (str, int, float, bool)):
        return value
    raise Refused(f"{where}: dates and times are not config values; quote it as text")


def check(doc: dict[str, Any]) -> dict[str, Any]:
    for name in doc:
        if name in LOCAL:
            raise Refused(f"[{name}]: is the bridge's own (it makes it itself); leave it out")
        if name not in TABLES:
            raise Refused(f"[{name}]: unknown table (known: {', '.join(TABLES)})")
    bridge = doc.get("bridge", {})
    if not isinstance(bridge, dict) or set(bridge) - {"timezone"}:
        raise Refused(
            "[bridge]: only timezone belongs here (the bridge fills its id from the claim)"
        )
    if "timezone" in bridge and not isinstance(bridge["timezone"], str):
        raise Refused("bridge.timezone: must be text such as Europe/Lisbon")
    sensors = doc.get("sensors", [])
    if not isinstance(sensors, list):
        raise Refused("sensors: must be [[sensors]] tables")
    seen: set[str] = set()
    for i, sensor in enumerate(sensors):
        where = f"sensors[{i}]"
        if not isinstance(sensor, dict):
            raise Refused(f"{where}: must be a table")
        sid = sensor.get("id")
        if not isinstance(sid, str) or not sid:
            raise Refused(f"{where}.id: required, a non-empty text")
        if sid in seen:
            raise Refused(f"{where}.id: {sid!r} is used twice")
        seen.add(sid)
        kind = sensor.setdefault("type", "milesight-camera")
        if kind not in SENSOR_TYPES:
            raise Refused(f"{where}.type: must be one of {', '.join(SENSOR_TYPES)}")
        url = sensor.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise Refused(f"{where}.url: required, http:// or https:// and the camera's address")
    for name in TABLES[2:]:
        if name in doc and not isinstance(doc[name], dict):
            raise Refused(f"[{name}]: must be a table")
    devices = doc.get("mqtt", {}).get("devices", [])
    if not isinstance(devices, list) or not all(
        isinstance(d, dict) and isinstance(d.get("sensor_id"), str) and d["sensor_id"]
        for d in devices
    ):
        raise Refused("mqtt.devices: each [[mqtt.devices]] needs a sensor_id")
    return doc


def masked(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: ("********" if k in SECRET_KEYS and v else masked(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v) for v in value]
    return value


def main(argv: list[str]) -> int:
    if argv[:1] == ["check"] and len(argv) == 2:
        try:
            with open(argv[1], "rb") as f:
                doc = tomllib.load(f)
            print(json.dumps(check(_plain(doc, "config"))))
        except (OSError, tomllib.TOMLDecodeError, Refused) as err:
            print(f"bridges: {argv[1]}: {err}", file=sys.stderr)
            return 2
        return 0
    if argv[:1] == ["show"]:
        print(json.dumps(masked(json.load(sys.stdin)), indent=2, ensure_ascii=False))
        return 0
    print("usage: config_doc.py check FILE.toml | show < document.json", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
