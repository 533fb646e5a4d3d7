"""One LoRaWAN uplink (from a UG6x, ChirpStack or The Things Stack) -> records.

Which sensor: the ``[[mqtt.devices]]`` entry with this ``dev_eui``, else the
DevEUI itself (16 lowercase hex digits). Which layout: that entry's ``model``,
else a model named in the network server's device profile or model id. Values
the network server already decoded are used as they are; raw bytes are decoded
here, and a frame that breaks its model's layout is refused whole with the
reason (the relay dead-letters it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ...records import Record
from ...relay_tables import MqttDevice
from . import MODELS, decode
from .envelope import Uplink
from .readings import records_for

DEFAULT_PERIOD_S = 600.0


class RouteError(ValueError):
    """The uplink cannot become records; the text says why and what to do."""


@dataclass
class Routed:
    sensor_id: str
    records: list[Record]


def network_time(text: Any) -> datetime | None:
    """An RFC 3339 receive time (nanoseconds, ``Z`` or an offset) to the second, in UTC."""
    if not isinstance(text, str) or not text.strip():
        return None
    trimmed = (
        re.sub(r"(\.\d{1,6})\d*", r"\1", text.strip()).replace("Z", "+00:00").replace("z", "+00:00")
    )
    try:
        moment = datetime.fromisoformat(trimmed)
    except ValueError:
        raise RouteError(f"time {text!r} is not an RFC 3339 time") from None
    if moment.tzinfo is None:
        raise RouteError(f"time {text!r} has no UTC offset")
    return moment.astimezone(UTC).replace(microsecond=0)


def device_for(devices: list[MqttDevice], dev_eui: str) -> MqttDevice | None:
    for device in devices:
        if device.dev_eui and re.sub(r"[\s:-]", "", device.dev_eui).lower() == dev_eui:
            return device
    return None


def decoded_values(uplink: Uplink, device: MqttDevice | None) -> dict[str, Any]:
    """The uplink's values: decoded here from its bytes when a model is known, else as decoded upstream."""
    model = (device.model if device and device.model else uplink.model_hint).lower()
    if uplink.payload is not None and model:
        try:
            return decode(model, uplink.payload, uplink.fport)
        except ValueError as exc:
            raise RouteError(
                f"{model} frame {uplink.payload.hex()} from {uplink.dev_eui}: {exc}"
            ) from None
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
    about = {"dev_eui": uplink.dev_eui, "network": uplink.network, "fport": uplink.fport}
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
