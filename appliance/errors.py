"""The bridge's one exception root: every error it raises on purpose is a :class:`BridgeError`.

A caller that must not let the bridge's own refusals escape catches
``BridgeError``; one that turns a bad message into a dead letter catches
:class:`MessageError` (a push, a LoRaWAN frame, envelope, decoded uplink or
route), whose text already says what is wrong. Each error keeps its
built-in base too (``ValueError``, ``RuntimeError``, sqlite3's), so every
``except`` written against those still catches it.
"""

from __future__ import annotations


class BridgeError(Exception):
    """Something the bridge refuses or cannot do; the text says what and, where it can, what to do."""


class MessageError(BridgeError, ValueError):
    """A message from a device that cannot become readings; the text says why."""
