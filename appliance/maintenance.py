"""Maintenance mode: a person working on the bridge over SSH tells the watchdog to keep still.

``sensor-bridge maintenance on [--for 2h]`` writes ``maintenance.json`` in the
state dir (so it survives a reboot during the work); while it lasts the
watchdog restarts and reboots nothing, the LED shows ``maintenance`` and the
collector reports it in its heartbeat. It ends with ``maintenance off`` or by
itself when the time is up, so a forgotten switch never turns healing off for
good. ``maintenance status`` says whether it is on and until when.
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .config import Config, config_from_args
from .status import read_json, write_json_atomic

FILE_NAME = "maintenance.json"
DEFAULT_FOR = "2h"
# Longer than a working week is not maintenance but a switched-off watchdog.
MAX_FOR_S = 7 * 24 * 3600

_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([dhms])")


def parse_duration(text: str) -> float:
    """``"2h"``, ``"90m"``, ``"1h30m"``, ``"45s"`` or plain seconds -> seconds."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        seconds = float(text)
    elif text and re.fullmatch(rf"(?:{_DURATION.pattern})+", text):
        seconds = sum(float(n) * _UNITS[unit] for n, unit in _DURATION.findall(text))
    else:
        raise ValueError(f"expected a duration like 2h, 90m, 1h30m or 45s, got {text!r}")
    if seconds <= 0:
        raise ValueError(f"expected a duration above zero, got {text!r}")
    if seconds > MAX_FOR_S:
        raise ValueError(f"at most 7d, so a forgotten switch still ends; got {text!r}")
    return seconds


def maintenance_file(config: Config) -> Path:
    return Path(config.paths.state_dir) / FILE_NAME


def maintenance_active(config: Config, now: float | None = None) -> dict[str, Any] | None:
    """The running maintenance window (since, until, remaining_s, by), or None when off or over."""
    body = read_json(maintenance_file(config))
    if not body or not isinstance(body.get("until"), int | float):
        return None
    now = time.time() if now is None else now
    remaining = float(body["until"]) - now
    if remaining <= 0:
        return None
    return {
        "since": _utc(body.get("since")),
        "until": _utc(body["until"]),
        "remaining_s": round(remaining),
        "by": body.get("by", "?"),
    }


def switch_on(config: Config, for_s: float, by: str, now: float | None = None) -> dict[str, Any]:
    """Start (or extend/shorten) maintenance for ``for_s`` seconds from now."""
    now = time.time() if now is None else now
    write_json_atomic(maintenance_file(config), {"since": now, "until": now + for_s, "by": by})
    return maintenance_active(config, now) or {}


def switch_off(config: Config) -> bool:
    """End maintenance; False when it was not on."""
    was_on = maintenance_active(config) is not None
    try:
        maintenance_file(config).unlink()
    except FileNotFoundError:
        pass
    return was_on


def _utc(epoch: Any) -> str | None:
    if not isinstance(epoch, int | float):
        return None
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _span(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 1:
        return f"{round(seconds)} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes} min"


def _who() -> str:
    return os.environ.get("SUDO_USER") or getpass.getuser()


def _duration_arg(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _on(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    try:
        active = switch_on(config, args.for_s, _who())
    except OSError as exc:
        print(f"cannot switch maintenance on: {exc} (run it with sudo)", file=sys.stderr)
        return 1
    print(
        f"maintenance on until {active['until']} ({_span(active['remaining_s'])}): the watchdog "
        "restarts and reboots nothing, the LED shows maintenance. "
        "End it early with `sensor-bridge maintenance off`."
    )
    return 0


def _off(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    try:
        was_on = switch_off(config)
    except OSError as exc:
        print(f"cannot switch maintenance off: {exc} (run it with sudo)", file=sys.stderr)
        return 1
    print("maintenance off: the watchdog heals again" if was_on else "maintenance was not on")
    return 0


def _status(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    active = maintenance_active(config)
    if active:
        print(
            f"maintenance on since {active['since']} by {active['by']}, "
            f"ends {active['until']} (in {_span(active['remaining_s'])})"
        )
        return 0
    body = read_json(maintenance_file(config))
    ended = _utc(body.get("until")) if body else None
    print(f"maintenance off (the last one ended {ended})" if ended else "maintenance off")
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "maintenance",
        help="stop the watchdog from acting while you work (on [--for 2h] | off | status)",
    )
    actions = parser.add_subparsers(dest="maintenance_action", metavar="ACTION")
    parser.set_defaults(func=lambda a: (parser.print_help(), 2)[1])
    on = actions.add_parser("on", help="switch maintenance on; it ends by itself")
    on.add_argument(
        "--for",
        dest="for_s",
        type=_duration_arg,
        default=parse_duration(DEFAULT_FOR),
        metavar="TIME",
        help=f"how long, e.g. 30m, 2h, 1h30m (default {DEFAULT_FOR}, at most 7d)",
    )
    on.set_defaults(func=_on)
    actions.add_parser("off", help="end maintenance now").set_defaults(func=_off)
    actions.add_parser("status", help="is maintenance on, and until when").set_defaults(
        func=_status
    )
