"""Pushed bytes -> records, through the first format in ``formats.FORMATS`` that accepts them.

One function of the bytes a device sent: :meth:`PushParser.parse` returns the
records to store, or a dead-letter entry saying why the message cannot be
read. It never raises for bad input, so one broken device cannot stop the
relay. Both doors (mqtt_door.py, http_door.py) call it.

* Not JSON, not text, not an object (json_text.py), or a message its format
  cannot read -> a dead-letter entry (origin, reason, preview).
* A message whose records the cloud would refuse (records.refusal: U+0000 or a
  lone surrogate anywhere, a sensor id over 256 characters, a time outside
  2000..2099, a final period in the future, counts beyond 64 bits, ...) -> one
  dead-letter entry naming the first problem; nothing of it is stored.
* A message that makes more than ``MAX_READINGS`` (500) readings -> the first
  500 are stored, and one dead-letter entry names the cap and how much was
  left (format.py says why 500 is ample).
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from ..config import MqttDevice
from ..device_text import printable
from ..errors import MessageError
from ..outbox import DeadEntry
from ..records import refusal
from . import formats as known
from .format import MAX_READINGS, Parsed, PushFormat
from .json_text import decode_payload, may_hold_snapshots, strip_snapshots
from .message import BadMessage, Pushed
from .sender import FirstSeen, Senders

REASON_CHARS = 500  # a dead letter's reason; its preview keeps 1000 characters of the message


class PushParser:
    """Pushed bytes -> records; one instance serves every MQTT message and HTTP post."""

    def __init__(
        self,
        devices: list[MqttDevice] | None = None,
        default_zone: str = "UTC",
        first_seen: FirstSeen | None = None,
        formats: list[PushFormat] | None = None,
    ) -> None:
        self.senders = Senders(list(devices or []), first_seen or FirstSeen())
        self.zone = ZoneInfo(default_zone)
        self.formats = known.FORMATS if formats is None else formats

    def parse(
        self, body: bytes, *, source: str, topic: str, origin: str, received_at: datetime
    ) -> Parsed:
        """Records for one message, or one dead-letter entry; never raises for bad input.

        The records pass the outbox's door here already (with the bridge's clock, like the outbox),
        so the dead letter carries the message's origin and the device hears why."""
        try:
            payload = decode_payload(body)
            if may_hold_snapshots(body):
                payload = strip_snapshots(payload)
            message = Pushed(payload, source, topic, received_at, self.zone)
            parsed = self.format_for(payload).parse(message, self.senders)
            over = _cap(parsed)
            problem = next(filter(None, (refusal(r) for r in parsed.records)), None)
            if problem is not None:
                raise BadMessage(problem)
            if over:
                parsed.body = body
                parsed.dead = [DeadEntry(origin, over, parsed.preview)]
        except Exception as exc:  # a bug must not turn a message into one redelivered forever
            reason = (
                str(exc)
                if isinstance(exc, MessageError)  # its text says what is wrong
                else f"cannot be read ({type(exc).__name__}: {exc})"
            )
            # It quotes what the device sent, and becomes the relay's reason and the device's 400.
            reason = printable(reason, REASON_CHARS)
            parsed = Parsed(body=body)
            parsed.dead = [DeadEntry(origin, reason, parsed.preview)]
        parsed.origin, parsed.body = origin, body
        return parsed

    def format_for(self, payload: dict) -> PushFormat:
        """The first format that accepts ``payload``."""
        for candidate in self.formats:
            if candidate.accepts(payload):
                return candidate
        raise BadMessage("no push format reads this message")


def _cap(parsed: Parsed) -> str | None:
    """Keep the first ``MAX_READINGS`` readings of ``parsed``; what was left, in words, or None."""
    over = len(parsed.records) - MAX_READINGS
    if over <= 0 and not parsed.left_off:
        return None
    del parsed.records[MAX_READINGS:]
    left = [f"{over} more reading(s)"] if over > 0 else []
    left += [f"{parsed.left_off} more history entries"] if parsed.left_off else []
    return (
        f"over the cap of {MAX_READINGS} readings per pushed message: the first "
        f"{len(parsed.records)} are stored, {' and '.join(left)} are not"
    )
