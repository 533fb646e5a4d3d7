"""The ``[watchdog]`` table: when the watchdog (appliance/watchdog.py) restarts or reboots."""

from __future__ import annotations

from dataclasses import dataclass

from .config_keys import flag, number, text


@dataclass
class WatchdogConfig:
    stall_s: float = number(900, "a service whose status has not advanced this long is stalled")
    check_s: float = number(10, "how often the watchdog looks")
    max_rss_mb: float = number(200, "a service using more memory is restarted", minimum=1)
    network_down_s: float = number(1800, "link or gateway gone this long -> reboot")
    reboot: bool = flag(True, "may the watchdog reboot at all")
    max_reboots: int = number(3, "reboots allowed per `reboot_window_s`", integer=True)
    reboot_window_s: float = number(21600, "the window `max_reboots` counts in")
    restart_cmd: str = text("systemctl restart {unit}", "`{unit}` is the stalled service's unit")
    reboot_cmd: str = text("systemctl reboot", "how to reboot")
