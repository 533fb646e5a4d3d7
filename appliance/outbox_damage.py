"""What went wrong with the outbox file, noted beside it (``damage.json``) until a person says so.

Apart from the outbox package (appliance/outbox/, which loads sqlite3) because every service's status reads it (the LED and the
watchdog too), and reading a note must not load sqlite3.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .clock import utc_text
from .status import read_json, write_json_atomic

log = logging.getLogger("sensor-bridge.outbox")


def epoch_text(epoch: float) -> str:
    """``epoch`` (seconds) as the outbox writes times: RFC 3339 UTC, whole seconds."""
    return utc_text(datetime.fromtimestamp(epoch, UTC).replace(microsecond=0))


class OutboxDamage:
    """What went wrong with the outbox file, kept on disk until a person acknowledges it.

    Every service's status reads it, so the reset or damage shows in ``status``,
    /health, the heartbeat and the LED until ``sensor-bridge outbox ack-corrupt``.
    """

    def __init__(self, outbox_path: str | Path) -> None:
        self.path = Path(outbox_path).with_name("damage.json")

    def notes(self) -> list[dict[str, Any]]:
        body = read_json(self.path) or {}
        notes = body.get("notes")
        return [n for n in notes if isinstance(n, dict)] if isinstance(notes, list) else []

    def add(self, what: str, reason: str) -> None:
        notes = [*self.notes(), {"what": what, "reason": reason, "at": epoch_text(time.time())}]
        try:
            write_json_atomic(self.path, {"notes": notes[-20:]})
        except OSError as exc:  # a full disk: the log line is all there is
            log.error("cannot keep the outbox damage note in %s: %s", self.path, exc)

    def summary(self) -> str | None:
        notes = self.notes()
        if not notes:
            return None
        latest = notes[-1]
        more = f" (and {len(notes) - 1} earlier)" if len(notes) > 1 else ""
        return f"{latest['reason']} at {latest.get('at')}{more}; once looked at: sensor-bridge outbox ack-corrupt"

    def clear(self) -> int:
        count = len(self.notes())
        self.path.unlink(missing_ok=True)
        return count
