"""The ``[[sensors]]`` table of a Milesight camera polled over HTTP (``type = "milesight-camera"``).

Its poller is ``milesight_http.CameraPoller``; this table lives apart from it
so that reading the config never loads the poller (see ``sources/table.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config_keys import REQUIRED, check_url, check_zone, number, secret, text, texts
from .table import SensorConfig

KINDS = ("line_counts", "region_counts", "live_counts")


def normal_mac(text: str) -> str:
    """``00-16-28-FA-8E-68`` and ``0016.28fa.8e68`` -> ``00:16:28:fa:8e:68``."""
    digits = "".join(c for c in text.lower() if c in "0123456789abcdef")
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2)) if len(digits) == 12 else ""


def check_mac(text: str) -> str | None:
    """Config check for ``mac``: empty, or 12 hex digits in any usual spelling."""
    if text and not normal_mac(text):
        return f"expected a MAC address like 00:16:28:fa:8e:68, got {text!r}"
    return None


def _some_kind(kinds: list[str]) -> str | None:
    return None if kinds else f"empty; list at least one of {', '.join(KINDS)}"


@dataclass(kw_only=True)
class CameraConfig(SensorConfig):
    """A camera or counter polled over HTTP (`dataloader.cgi`)."""

    url: str = text(
        REQUIRED,
        "scheme, host and optional port, e.g. `http://192.168.1.100`",
        check=check_url(("http", "https"), "put the user and password in username/password"),
    )
    serial: str = text(
        "", "the camera's serial: checked before each poll, and found again if its address changes"
    )
    mac: str = text(
        "",
        "the camera's MAC, e.g. `00:16:28:fa:8e:68`: like `serial` (docs/discovery.md)",
        check=check_mac,
    )
    username: str = text("admin", "the camera's user")
    password: str = secret("the camera user's password")
    auth: str = text(
        "auto",
        "`auto` (follow the camera's 401 challenge), `basic` or `digest`",
        choices=("auto", "basic", "digest"),
    )
    timezone: str = text(
        "UTC", "the camera's own wall-clock zone", check=check_zone, inherit="bridge.timezone"
    )
    interval_s: float = number(300, "seconds between polls of the history reports")
    collect: list[str] = texts(
        ["line_counts", "region_counts"],
        "what to read: any of `line_counts`, `region_counts`, `live_counts`; not empty",
        choices=KINDS,
        check=_some_kind,
    )
    live_interval_s: float = number(60, "seconds between `live_counts` snapshots")
    backfill_h: float = number(
        168, "hours to read back on a first start (at most the camera's ~7 days)"
    )
    timeout_s: float = number(
        10,
        "one request's whole time limit, connect to last byte: a camera that trickles its answer is cut here",
    )
