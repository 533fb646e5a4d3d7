"""The ``[update]`` table: where signed releases come from and when appliance/update.py installs them."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .config_keys import check_url, flag, number, text

_WINDOW = re.compile(
    r"^(?:(Mon|Tue|Wed|Thu|Fri|Sat|Sun|Daily) )?([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$"
)


def _window(window: str) -> str | None:
    if not window or _WINDOW.match(window):
        return None
    return f'expected a window like "Sun 03:00-05:00" or "03:00-05:00" (every day), got {window!r}'


@dataclass
class UpdateConfig:
    url: str = text(
        "",
        "a folder of signed releases (`image/release.py` makes them): GitHub Releases or "
        'any HTTPS host; `""`: no updates',
        check=check_url(("https", "http"), "a release folder is public"),
    )
    auto: bool = flag(
        True,
        "install a new release by itself (the daily timer), inside `window` and when the "
        "release's rollout covers this bridge",
    )
    window: str = text(
        "Sun 03:00-05:00",
        "when automatic updates and OS security reboots may happen, in "
        "`bridge.timezone`: `Sun 03:00-05:00`, or `03:00-05:00` for every day",
        check=_window,
    )
    gate_s: float = number(
        180,
        "after an update every enabled service must report ok or degraded and the "
        "collector must complete a poll within this long, else the old version comes back",
    )
