"""The ``[alerts]`` table: the dead man's switch appliance/alerts.py calls."""

from __future__ import annotations

from dataclasses import dataclass

from .config_keys import check_url, number, secret


@dataclass
class AlertsConfig:
    ping_url: str = secret(
        "a dead man's switch URL (healthchecks.io, UptimeRobot or Better Stack heartbeat) "
        'called every `ping_s`; a secret: whoever holds it can silence the alarm; `""`: none',
        check=check_url(("https", "http"), "the token belongs in the path", hidden=True),
    )
    ping_s: float = number(60, "seconds between pings", minimum=1)
