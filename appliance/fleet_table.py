"""The ``[fleet]`` table: the cloud a bridge adopts itself into (appliance/adoption/).

A card (or an image built with ``image/build.sh --fleet-url``) holding only this
table is a valid config: the bridge enrolls, shows its claim code, and waits to
be claimed on the fleet page, which then sends its config. Kept apart from the
agent so that reading the config does not load it.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from .config_keys import REQUIRED, check_url, number, secret, text

_URL = check_url(("https", "http"), "the enroll token goes in enroll_token")


def _origin(url: str) -> str | None:
    """The cloud app's origin only: the bridge adds the contract's paths itself."""
    if problem := _URL(url):
        return problem
    parts = urlsplit(url)
    if parts.path.strip("/") or parts.query or parts.fragment:
        return f"expected the cloud app's origin alone, like https://fleet.example.net, got {url!r}"
    return None


def _enroll_token(token: str) -> str | None:
    if token and (len(token) < 8 or any(c.isspace() for c in token)):
        return "not an enroll token: `cloud/bin/bridges enroll-token new` prints one (sbe_ and 43 characters)"
    return None


@dataclass
class FleetConfig:
    url: str = text(
        REQUIRED,
        "the fleet's cloud app (its origin, `https://` or `http://`): the bridge enrolls there, "
        "and once claimed reads its config and delivers its readings there",
        check=_origin,
    )
    enroll_token: str = secret(
        "the fleet's enroll token (`cloud/bin/bridges enroll-token new`); it can only enroll",
        required=True,
        check=_enroll_token,
    )
    gate_s: float = number(
        180,
        "after a new config from the cloud: every sensor must complete a poll within this time, "
        "else the bridge goes back to its last good config",
    )
    check_s: float = number(60, "seconds between asking the cloud for a newer config")
