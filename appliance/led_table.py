"""The ``[led]`` table: which pin(s) the status LED (appliance/led.py) is on.

Kept apart from led.py so that reading the config does not load the LED's
code; the LED service reads this table even from a broken file (``ConfigWatch.partial``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config_keys import Key, flag, key_field, number, show, text


def _bcm_pin(pin: int) -> str | None:
    return None if 0 <= pin <= 27 else f"expected a BCM pin number 0..27, got {pin}"


def _read_rgb(t: Any, name: str, default: Any) -> list[int] | None:
    rgb = t.table(name)
    if rgb is not None and (
        not isinstance(rgb, list)
        or len(rgb) != 3
        or not all(isinstance(p, int) and 0 <= p <= 27 for p in rgb)
    ):
        t.problems.append(
            f"{t.key(name)}: expected three BCM pin numbers like [17, 27, 22], got {show(rgb)}"
        )
        return None
    return rgb


@dataclass
class LedConfig:
    backend: str = text(
        "gpiozero", "`gpiozero` or `none` (no LED service)", choices=("gpiozero", "none")
    )
    pin: int = number(17, "BCM number 0..27 of a single LED", integer=True, check=_bcm_pin)
    rgb: list[int] | None = key_field(
        Key("three BCM pins `[17, 27, 22]` for an RGB LED instead", _read_rgb), None
    )
    active_high: bool = flag(True, "the LED lights when its pin is high")
