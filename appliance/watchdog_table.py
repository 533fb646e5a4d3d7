"""The ``[watchdog]`` table: when the watchdog (appliance/watchdog.py) restarts or reboots."""

from __future__ import annotations

from dataclasses import dataclass

from .config_keys import flag, number, text

_FIXED = "no longer configurable; restart and reboot are fixed actions (docs/config.md)"


@dataclass
class WatchdogConfig:
    stall_s: float = number(900, "a service whose status has not advanced this long is stalled")
    check_s: float = number(10, "how often the watchdog looks")
    max_rss_mb: float = number(200, "a service using more memory is restarted", minimum=1)
    network_down_s: float = number(1800, "link or gateway gone this long -> reboot")
    reboot: bool = flag(True, "may the watchdog reboot at all")
    max_reboots: int = number(3, "reboots allowed per `reboot_window_s`", integer=True)
    reboot_window_s: float = number(21600, "the window `max_reboots` counts in")
    # Kept only so an old card still loads; the watchdog never runs these (no command from config).
    restart_cmd: str = text(
        "systemctl restart {unit}",
        "no longer configurable: only this default is accepted; restart is a fixed action",
        check=lambda v: None if v == "systemctl restart {unit}" else _FIXED,
    )
    reboot_cmd: str = text(
        "systemctl reboot",
        "no longer configurable: only this default is accepted; reboot is a fixed action",
        check=lambda v: None if v == "systemctl reboot" else _FIXED,
    )
