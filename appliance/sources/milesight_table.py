"""The ``[[sensors]]`` table of a Milesight camera polled over HTTP (``type = "milesight-camera"``).

Its poller is ``milesight_http.CameraPoller``; this table lives apart from it
so that reading the config never loads the poller (see ``sources/table.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config_keys import REQUIRED, check_url, check_zone, number, secret, text, texts
from .table import SensorConfig

KINDS = ("line_counts", "region_counts", "live_counts")


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
