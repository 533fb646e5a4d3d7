"""The LoRaWAN format: uplinks a Milesight UG6x gateway, ChirpStack or The Things Stack forwards.

The envelope (which network server, DevEUI, port, frame, decoded values,
receive time) is read by appliance/sources/lorawan/envelope.py and the uplink
decoded and mapped to records by appliance/sources/lorawan/route.py; this file
only wires them into the push path. An uplink the network server did not date
is dated by its first arrival, like any timeless message (sender.py). An
already decoded ``history`` longer than the per-message cap is read only up to
the cap (format.MAX_READINGS); the parser dead-letters the rest.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..sources.lorawan.envelope import EnvelopeError, Uplink, read_envelope
from ..sources.lorawan.route import device_for, route
from .format import MAX_READINGS, Parsed, PushFormat
from .message import BadMessage, Pushed
from .sender import Senders


class LoRaWAN(PushFormat):
    """A LoRaWAN uplink in any of the envelopes envelope.py reads."""

    name = "lorawan"

    def accepts(self, payload: dict[str, Any]) -> bool:
        try:
            return read_envelope(payload) is not None
        except EnvelopeError:
            return True  # an uplink with an unreadable field: parse() says which

    def parse(self, message: Pushed, senders: Senders) -> Parsed:
        try:
            uplink = read_envelope(message.payload)
        except EnvelopeError as exc:
            raise BadMessage(f"LoRaWAN uplink: {exc}") from None
        if uplink is None:
            raise BadMessage("not a LoRaWAN uplink")
        parsed = Parsed()
        uplink, parsed.left_off = _history_within_cap(uplink)
        when = message.received_at.replace(microsecond=0)
        if uplink.time is None:  # dated by its first arrival, like any timeless message
            device = device_for(senders.devices, uplink.dev_eui)
            sensor_id = device.sensor_id if device else uplink.dev_eui
            when, parsed.cursors = senders.first_stamp(sensor_id, message.payload, when)
        parsed.records = route(
            uplink, senders.devices, at=when, source=message.source, observed=when
        ).records
        observed = message.received_at.replace(microsecond=0)
        parsed.records = [replace(r, observed_at=observed) for r in parsed.records]
        return parsed


def _history_within_cap(uplink: Uplink) -> tuple[Uplink, int]:
    """The uplink with at most ``MAX_READINGS`` history entries (each makes at least one reading),
    and how many it had beyond: mapping 20,000 entries to drop all but 500 would cost seconds."""
    history = uplink.decoded.get("history") if uplink.decoded else None
    if not isinstance(history, list) or len(history) <= MAX_READINGS:
        return uplink, 0
    decoded = {**(uplink.decoded or {}), "history": history[:MAX_READINGS]}
    return replace(uplink, decoded=decoded), len(history) - MAX_READINGS
