"""Text a device chose, made fit to keep as an error: printable, one line, bounded.

A camera's HTTP reason phrase, a body it answered with, a string a pushed
message carried, an MQTT topic: any of them can end up as a sensor's
``last_error``, the relay's reason, an incident's detail and so a chat alert.
Before such text is stored, control and other invisible characters (escape
sequences, bells, right-to-left overrides, zero-width spaces) are replaced,
whitespace runs become one space, and it is cut to ``ERROR_CHARS``. Quoting
for where it goes next (Slack's ``<!channel>``) is the receiver's job.
"""

from __future__ import annotations

ERROR_CHARS = 200
ELLIPSIS = "..."


def printable(text: str, limit: int = ERROR_CHARS) -> str:
    """``text`` as a person may safely see it: one line of printable characters, at most
    ``limit`` long (cut with "..." at the end)."""
    shown = " ".join(
        "".join(c if c.isprintable() else (" " if c.isspace() else "?") for c in text).split()
    )
    if len(shown) <= limit:
        return shown
    return shown[: limit - len(ELLIPSIS)] + ELLIPSIS
