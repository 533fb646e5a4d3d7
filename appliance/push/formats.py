"""The push formats the relay knows, asked in this order; the first that accepts a message parses it.

Adding a format is one file beside this one (a :class:`~appliance.push.format.PushFormat`)
and one row here, above ``MilesightJson``, which takes every JSON object (as an
``event`` when it is no report it knows) and so must stay last.
"""

from __future__ import annotations

from .format import PushFormat
from .lorawan import LoRaWAN
from .milesight import MilesightJson

FORMATS: list[PushFormat] = [
    LoRaWAN(),
    MilesightJson(),
]
