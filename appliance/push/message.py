"""One pushed message as a format sees it, and the error that refuses it.

:class:`Pushed` is what arrived (the JSON object, how and when);
:class:`BadMessage` is raised by anything that reads a message and finds it
cannot become records: its text is the reason the dead letter (and an HTTP
device's 400) carries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from ..errors import MessageError


class BadMessage(MessageError):
    """The message cannot be turned into records; the text says what is wrong with it."""


@dataclass(frozen=True)
class Pushed:
    """One message that arrived: its JSON object (snapshots removed) and where and when from."""

    payload: dict[str, Any]
    source: str  # "mqtt" or "http-push": the records' source
    topic: str  # the MQTT topic, or the URL path of an HTTP push
    received_at: datetime
    zone: ZoneInfo  # the bridge's: a naive time is taken in it when the device names no zone
