"""One LoRaWAN uplink (from a UG6x, ChirpStack or The Things Stack) -> records.

Which sensor: the ``[[mqtt.devices]]`` entry with this ``dev_eui``, else the
DevEUI itself (16 lowercase hex digits). Which layout: that entry's ``model``,
else a model named in the network server's device profile or model id. Values
the network server already decoded are used as they are; raw bytes are decoded
here. A frame whose first entry breaks its model's layout is refused whole with
the reason (the relay dead-letters it); a frame that breaks it later keeps what
came before, and the frame itself (hex, the byte, the reason) goes with the
uplink's event under ``undecoded``, so it can be decoded again later.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ...clock import parse_rfc3339
from ...errors import MessageError
from ...records import Record
from ...relay_tables import MqttDevice
from . import MODELS, read_frame
from .envelope import Uplink
from .readings import records_for

DEFAULT_PERIOD_S = 600.0


class RouteError(MessageError):
    """The uplink cannot become records; the text says why and what to do."""


@dataclass
class Routed:
    sensor_id: str
    records: list[Record]


def network_time(text: Any) -> datetime | None:
    """An RFC 3339 receive time (nanoseconds, ``Z`` or an offset) to the second, in UTC."""
    if not isinstance(text, str) or not text.strip():
        return None
    try:
        return parse_rfc3339(text)
    except ValueError as exc:
        raise RouteError(str(exc)) from None


def device_for(devices: list[MqttDevice], dev_eui: str) -> MqttDevice | None:
    for device in devices:
        if device.dev_eui and re.sub(r"[\s:-]", "", device.dev_eui).lower() == dev_eui:
            return device
    return None


def decoded_values(uplink: Uplink, device: MqttDevice | None) -> dict[str, Any]:
    """The uplink's values: decoded here from its bytes when a model is known, else as decoded
    upstream. A frame read only in part carries the rest under ``undecoded``."""
    model = (device.model if device and device.model else uplink.model_hint).lower()
    if uplink.payload is not None and model:
        try:
            frame = read_frame(model, uplink.payload, uplink.fport)
        except ValueError as exc:
            raise RouteError(
                f"{model} frame {uplink.payload.hex()} from {uplink.dev_eui}: {exc}"
            ) from None
        if frame.unread is None:
            return frame.values
        return {
            **frame.values,
            "undecoded": {
                "model": model,
                "frame": uplink.payload.hex(),
                "byte": frame.unread.at,
                "rest": uplink.payload[frame.unread.at :].hex(),
                "reason": frame.unread.reason,
            },
        }
    if uplink.decoded:
        return uplink.decoded
    if uplink.payload is None:
        raise RouteError(f"uplink from {uplink.dev_eui} carries no data")
    raise RouteError(
        f"devEUI {uplink.dev_eui}: its model is not known, so its frame cannot be decoded; add "
        f'[[mqtt.devices]] dev_eui = "{uplink.dev_eui}" with model = one of {", ".join(MODELS)}'
    )


def route(
    uplink: Uplink, devices: list[MqttDevice], *, at: datetime, source: str, observed: datetime
) -> Routed:
    """The records of one uplink; ``at`` is its moment when neither device nor network dated it."""
    device = device_for(devices, uplink.dev_eui)
    sensor_id = device.sensor_id if device else uplink.dev_eui
    values = decoded_values(uplink, device)
    moment = network_time(uplink.time) or at
    about: dict[str, Any] = {
        "dev_eui": uplink.dev_eui,
        "network": uplink.network,
        "fport": uplink.fport,
    }
    if uplink.payload is not None and values is uplink.decoded:
        # Decoded upstream: the raw bytes go with whatever is left, never dropped.
        about["frame"] = uplink.payload.hex()
    period_s = device.period_s if device else DEFAULT_PERIOD_S
    try:
        records = records_for(
            values,
            sensor_id=sensor_id,
            at=moment,
            period_s=period_s,
            source=source,
            observed=observed,
            about=about,
        )
    except (ValueError, TypeError) as exc:
        raise RouteError(f"uplink from {uplink.dev_eui}: {exc}") from None
    return Routed(sensor_id, records)
