"""What a push format is: a class that says which messages are its own and turns them into records.

A format gets each JSON object the doors received that no format before it in
``formats.FORMATS`` accepted. :meth:`PushFormat.accepts` looks at the object
and answers quickly (it is asked about every message); :meth:`PushFormat.parse`
returns the records (and first-seen cursors) or raises
:class:`~appliance.push.message.BadMessage` naming what is wrong, which
dead-letters the message. The parser around it (parser.py) checks what comes
back against the cloud's rules and the per-message cap, so a format need not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..outbox import DeadEntry
from ..records import Record
from .json_text import decode_payload, preview, strip_snapshots
from .message import Pushed
from .sender import Senders

# At most this many readings come of one pushed message; the rest is dead-lettered with this cap
# named. The largest real message is a LoRaWAN history re-send: a frame holds at most 242 bytes,
# so a VS350 (15 bytes an entry) re-sends at most 16 entries, a VS13x fewer, each a few readings;
# a Milesight JSON report makes at most four. 500 is ten times the most a real device sends, and
# bounds what a message crafted with an already decoded history of thousands of entries costs.
MAX_READINGS = 500


@dataclass
class Parsed:
    """What one pushed message became."""

    records: list[Record] = field(default_factory=list)
    dead: list[DeadEntry] = field(default_factory=list)
    # Outbox cursors to commit with the records: first receive times of timeless messages.
    cursors: list[tuple[str, str, str]] = field(default_factory=list)
    # Where it came from and what it looked like, for a dead letter made later (at commit).
    origin: str = ""
    body: bytes = b""
    # Parts of the message a format left unread to bound its cost (LoRaWAN history entries).
    left_off: int = 0

    @property
    def preview(self) -> str:
        """What a person sees of the message in a dead letter: worked out only when one is made,
        from the body, without snapshot images."""
        try:
            payload = strip_snapshots(decode_payload(self.body))
        except Exception:  # unreadable: its text, or hex when it is binary
            return preview(self.body)
        return preview(json.dumps(payload, separators=(",", ":")).encode())


class PushFormat:
    """One family of pushed messages; subclasses set ``name`` and write both methods."""

    name = "format"

    def accepts(self, payload: dict[str, Any]) -> bool:
        """Whether ``payload`` is this format's (True also for one of its own that is broken:
        :meth:`parse` then says what is wrong)."""
        raise NotImplementedError

    def parse(self, message: Pushed, senders: Senders) -> Parsed:
        """The records of ``message``; raises BadMessage when it cannot become records."""
        raise NotImplementedError
