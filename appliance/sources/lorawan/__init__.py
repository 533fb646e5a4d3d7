"""Milesight LoRaWAN devices: their uplink frames decoded, and the readings they become.

One small module per model family holds its documented layout (``vs13x``,
``vs350``, ``vs121``, ``vs330``, ``am300``); :func:`decode` reads a frame with
the layout of the model named; :mod:`.envelope` reads what a UG6x gateway,
ChirpStack v4 or The Things Stack v3 wraps an uplink in; :mod:`.readings`
turns decoded values into records. docs/milesight.md has the mapping.
"""

from __future__ import annotations

from . import am300, vs13x, vs121, vs330, vs350
from .frame import Decoded, FrameError, Layout, Unread, Values, walk

MODELS: dict[str, Layout] = {
    "vs133": vs13x.LAYOUT,
    "vs135": vs13x.LAYOUT,
    "vs350": vs350.LAYOUT,
    "vs121": vs121.LAYOUT,
    "vs330": vs330.LAYOUT,
    "am307": am300.AM307,
    "am319": am300.AM319,
    "am319-o3": am300.AM319_O3,
}


def read_frame(model: str, payload: bytes, fport: int | None = None) -> Decoded:
    """One uplink of ``model``: its values up to the first byte its layout does not explain,
    and that byte with the reason (``unread``). Raises :class:`FrameError` when nothing in it
    is readable (or KeyError for an unknown model).

    Milesight devices send their data, and their replies to downlinks, on fPort 85."""
    layout = MODELS[model.lower()]
    if fport is not None and fport != 85:
        raise FrameError(f"fPort {fport}: {model} sends its readings on fPort 85")
    return walk(payload, layout, model.upper())


def decode(model: str, payload: bytes, fport: int | None = None) -> Values:
    """The values the vendor's decoder gives for one uplink: what precedes an unknown entry."""
    return read_frame(model, payload, fport).values


__all__ = ["MODELS", "Decoded", "FrameError", "Unread", "Values", "decode", "read_frame"]
