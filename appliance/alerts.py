"""The bridge's own dead-man's switch: ``[alerts] ping_url``.

Every ``ping_s`` seconds the collector pings a monitoring service in the
healthchecks.io convention: ``GET ping_url`` while the bridge is alive
(ok, degraded, starting, maintenance), ``POST ping_url/fail`` with a short
plain-text status while it is in error. When the pings stop (the store's
internet, power or the Pi is down), the service alerts on its own; that is
the one alert a store's private network cannot prevent. UptimeRobot and
Better Stack heartbeat URLs work the same way.

Best effort and off the data path: its own daemon thread, a short time limit
per ping, and a failed ping is only logged (once per change). The URL is a
secret (it is all a stranger needs to silence the alarm), so logs show only
its scheme and host.
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from . import __version__
from .config import AlertsConfig, config_from_args

log = logging.getLogger("sensor-bridge.alerts")

MAX_TIMEOUT_S = 10.0
MAX_BODY_CHARS = 1000


def masked_url(url: str) -> str:
    """``https://hc-ping.com/***``: enough to tell which service, not enough to ping it."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}/***"


@dataclass
class PingResult:
    answered: bool
    detail: str  # "HTTP 200 in 0.12 s", or why there was no answer
    failing: bool  # whether this was the /fail ping


def send_ping(url: str, state: str, reason: str, timeout_s: float) -> PingResult:
    """One ping for ``state``: /fail with the reason while in error, a plain GET otherwise."""
    failing = state in ("error", "no-config")
    request = urllib.request.Request(url, headers={"User-Agent": f"sensor-bridge/{__version__}"})
    if failing:
        body = f"{state}: {reason}"[:MAX_BODY_CHARS].encode()
        request = urllib.request.Request(
            url.rstrip("/") + "/fail",
            data=body,
            method="POST",
            headers={
                "User-Agent": f"sensor-bridge/{__version__}",
                "Content-Type": "text/plain; charset=utf-8",
            },
        )
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:  # noqa: S310 - http(s) checked in config
            answer.read(4096)
            code = answer.status
    except urllib.error.HTTPError as exc:
        return PingResult(False, f"HTTP {exc.code}", failing)
    except (OSError, ValueError) as exc:
        # the exception's text may contain the URL: name its kind only
        reason_text = getattr(exc, "reason", None)
        kind = (
            type(reason_text).__name__
            if isinstance(reason_text, BaseException)
            else type(exc).__name__
        )
        return PingResult(False, f"no answer ({kind})", failing)
    return PingResult(True, f"HTTP {code} in {time.monotonic() - started:.2f} s", failing)


class AlertPinger:
    """Pings ``config.ping_url`` every ``config.ping_s`` seconds with the state ``state_of()`` reports."""

    def __init__(
        self,
        config: AlertsConfig,
        state_of: Callable[[], tuple[str, str]],
        stop_event: threading.Event,
    ) -> None:
        self.config = config
        self.state_of = state_of
        self.stop_event = stop_event
        self.timeout_s = min(MAX_TIMEOUT_S, max(1.0, config.ping_s))
        self._last_answered: bool | None = None

    def start(self) -> threading.Thread | None:
        if not self.config.ping_url:
            return None
        thread = threading.Thread(target=self.run, name="alerts-ping", daemon=True)
        thread.start()
        log.info(
            "alerts: pinging %s every %g s", masked_url(self.config.ping_url), self.config.ping_s
        )
        return thread

    def run(self) -> None:
        while not self.stop_event.is_set():
            started = time.monotonic()
            try:
                self.ping_once()
            except Exception:  # a bug must cost one ping, not the thread
                log.exception("alerts: ping crashed")
            self.stop_event.wait(max(0.0, self.config.ping_s - (time.monotonic() - started)))

    def ping_once(self) -> PingResult:
        state, reason = self.state_of()
        result = send_ping(self.config.ping_url, state, reason, self.timeout_s)
        if result.answered != self._last_answered:
            where = masked_url(self.config.ping_url)
            if result.answered:
                log.info("alerts: ping to %s answered (%s)", where, result.detail)
            else:
                log.warning("alerts: ping to %s not answered: %s", where, result.detail)
            self._last_answered = result.answered
        return result


def collector_state(snapshot: Callable[[], dict[str, Any]]) -> Callable[[], tuple[str, str]]:
    """``state_of`` for the pinger from the collector's latest status snapshot."""

    def state_of() -> tuple[str, str]:
        snap = snapshot()
        return str(snap.get("bridge_state") or "starting"), str(snap.get("bridge_reason") or "")

    return state_of


def start_pinger(
    config: AlertsConfig, snapshot: Callable[[], dict[str, Any]], stop_event: threading.Event
) -> threading.Thread | None:
    """Start the ping thread when ``ping_url`` is set (the collector calls this in run())."""
    return AlertPinger(config, collector_state(snapshot), stop_event).start()


def _alerts_test(args: argparse.Namespace) -> int:
    """Send one ping (``--fail``: the /fail one) and say whether the service answered."""
    config = config_from_args(args)
    if not config.alerts.ping_url:
        print("alerts: no [alerts] ping_url in the config; nothing to ping")
        return 2
    state, reason = (
        ("error", "sent by `sensor-bridge alerts test --fail`") if args.fail else ("ok", "")
    )
    result = send_ping(config.alerts.ping_url, state, reason, MAX_TIMEOUT_S)
    what = "/fail ping" if result.failing else "ping"
    verdict = "answered" if result.answered else "NOT answered"
    print(f"alerts: {what} to {masked_url(config.alerts.ping_url)} {verdict}: {result.detail}")
    return 0 if result.answered else 1


def register(commands: argparse._SubParsersAction) -> None:
    alerts = commands.add_parser(
        "alerts", help="the bridge's own dead-man's-switch ping ([alerts] ping_url)"
    )
    actions = alerts.add_subparsers(dest="alerts_command", metavar="ACTION")
    test = actions.add_parser("test", help="send one ping now and say whether it was answered")
    test.add_argument(
        "--fail", action="store_true", help="send the /fail ping, to see the alert arrive"
    )
    test.set_defaults(func=_alerts_test)
    alerts.set_defaults(func=lambda a: (alerts.print_help(), 2)[1])
