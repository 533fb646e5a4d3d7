"""What a network server wraps a LoRaWAN uplink in, read into one :class:`Uplink`.

* A Milesight UG65/UG67's embedded network server, "data transmission" over
  MQTT or HTTP: ``devEUI``, ``fPort``, ``data`` (base64 of the frame), ``time``,
  ``deviceName``; with the gateway's payload codec on, the decoded values come
  as ``object`` or at the top level beside ``devEUI``; its Data Transmission
  adds ``metadata`` (``{"mqtt_topic": ...}``), which is the gateway's, not the device's.
* ChirpStack v4 ``.../event/up``: ``deviceInfo.devEui``, ``fPort``, ``data``,
  ``time``, ``object`` when a codec ran.
* The Things Stack v3 uplink: ``end_device_ids.dev_eui``,
  ``uplink_message.f_port`` / ``frm_payload`` / ``decoded_payload`` /
  ``received_at`` (else the top-level ``received_at``).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Any

from ...errors import MessageError

# Keys of the UG6x / ChirpStack v3 envelope itself, never device values.
UG6X_ENVELOPE = {
    "applicationid",
    "applicationname",
    "devicename",
    "deveui",
    "deviceprofileid",
    "deviceprofilename",
    "time",
    "fcnt",
    "fport",
    "data",
    "rxinfo",
    "txinfo",
    "adr",
    "dr",
    "confirmed",
    "devaddr",
    "object",
    "tags",
    "deduplicationid",
    "deviceinfo",
    "margin",
    "external_power_source",
    "battery_level",
    "metadata",
}
_MODEL_IN_NAME = re.compile(
    r"(vs13[35]|vs350|vs121|vs330|am307|am319[-_ ]?o3|am319)", re.IGNORECASE
)


class EnvelopeError(MessageError):
    """Looks like an uplink but a field is unreadable; the text names it."""


@dataclass
class Uplink:
    """One uplink as the network server described it."""

    network: str  # "ug6x", "chirpstack" or "tts"
    dev_eui: str  # 16 lowercase hex digits
    fport: int | None = None
    payload: bytes | None = None
    decoded: dict[str, Any] | None = None
    time: Any = None  # the network's receive time, as written (RFC 3339 text)
    model_hint: str = ""  # a model named by the network server's device profile, if any
    extra: dict[str, Any] = field(default_factory=dict)


def normal_eui(value: Any) -> str:
    text = re.sub(r"[\s:-]", "", str(value)).lower() if isinstance(value, str) else ""
    if not re.fullmatch(r"[0-9a-f]{16}", text):
        raise EnvelopeError(f"devEUI {value!r} is not 16 hex digits")
    return text


def _bytes(value: Any, where: str) -> bytes | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise EnvelopeError(f"{where}: expected base64 text, got {type(value).__name__}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise EnvelopeError(f"{where}: {value[:40]!r} is not base64") from None


def _port(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255:
        raise EnvelopeError(f"{where}: expected a port 0..255, got {value!r}")
    return value


def _hint(*names: Any) -> str:
    for name in names:
        found = _MODEL_IN_NAME.search(name) if isinstance(name, str) else None
        if found:
            return re.sub(r"[-_ ]?o3$", "-o3", found.group(1).lower())
    return ""


def _tts(top: dict[str, Any]) -> Uplink:
    ids, message = top.get("end_device_ids") or {}, top.get("uplink_message") or {}
    if not isinstance(ids, dict) or not isinstance(message, dict):
        raise EnvelopeError("end_device_ids and uplink_message must be objects")
    versions = message.get("version_ids") or {}
    decoded = message.get("decoded_payload")
    return Uplink(
        "tts",
        normal_eui(ids.get("dev_eui")),
        _port(message.get("f_port"), "uplink_message.f_port"),
        _bytes(message.get("frm_payload"), "uplink_message.frm_payload"),
        decoded if isinstance(decoded, dict) and decoded else None,
        message.get("received_at") or top.get("received_at"),
        _hint(
            versions.get("model_id") if isinstance(versions, dict) else None, ids.get("device_id")
        ),
    )


def _chirpstack(top: dict[str, Any]) -> Uplink:
    info = top["deviceInfo"]
    if not isinstance(info, dict):
        raise EnvelopeError("deviceInfo must be an object")
    decoded = top.get("object")
    return Uplink(
        "chirpstack",
        normal_eui(info.get("devEui")),
        _port(top.get("fPort"), "fPort"),
        _bytes(top.get("data"), "data"),
        decoded if isinstance(decoded, dict) and decoded else None,
        top.get("time"),
        _hint(info.get("deviceProfileName"), info.get("deviceName")),
    )


def _ug6x(top: dict[str, Any], eui_key: str) -> Uplink:
    decoded = top.get("object")
    if not isinstance(decoded, dict) or not decoded:
        # Payload codec on: the decoded values sit beside the envelope's own keys.
        decoded = {k: v for k, v in top.items() if k.lower() not in UG6X_ENVELOPE} or None
    data = top.get("data")
    payload = _bytes(data, "data") if isinstance(data, str) else None
    return Uplink(
        "ug6x",
        normal_eui(top[eui_key]),
        _port(top.get("fPort", top.get("fport")), "fPort"),
        payload,
        decoded,
        top.get("time"),
        _hint(top.get("deviceProfileName"), top.get("deviceName")),
    )


def read_envelope(top: dict[str, Any]) -> Uplink | None:
    """The uplink in ``top``, None when it is not a LoRaWAN uplink; raises :class:`EnvelopeError`."""
    if "end_device_ids" in top and "uplink_message" in top:
        return _tts(top)
    if (
        "deviceInfo" in top
        and isinstance(top["deviceInfo"], dict)
        and "devEui" in top["deviceInfo"]
    ):
        return _chirpstack(top)
    eui_key = next((k for k in top if k.lower() == "deveui"), None)
    if eui_key is not None:
        return _ug6x(top, eui_key)
    return None
