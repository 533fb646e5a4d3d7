"""``sensor-bridge``: one command for every service and maintenance tool.

Each part of the appliance registers its own sub-commands (a module-level
``register(commands)`` function), so this file only knows the list of parts
and which commands each adds; ``config`` (appliance/config/commands.py) and its
``import`` (boot_config.py) come first. Only the part of the command being run
is imported (all of them for ``--help`` alone): a service's memory holds its
own code, not every other service's (on a Pi Zero 2 W every megabyte counts).
A word no part claims is refused by name, before any part is loaded: a part
that adds a command must list it in :data:`PARTS` (tests/test_imports.py checks
each part adds exactly its words). The parts keep heavy imports (paho,
gpiozero, requests) inside their handlers for the same reason.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import warnings
from typing import Any

from . import __version__
from .boot_config import add_import_command
from .config import DEFAULT_PATH, add_commands, mask_urls

# Parts that add sub-commands, and the commands each adds; a missing optional part is skipped.
PARTS = {
    "appliance.collector": ("run",),
    "appliance.console": ("status", "doctor", "sensors", "outbox"),
    "appliance.relay": ("relay",),
    "appliance.broker": ("mqtt",),
    "appliance.watchdog": ("watchdog",),
    "appliance.led": ("led",),
    "appliance.maintenance": ("maintenance",),
    "appliance.sim": ("sim",),
    "appliance.demo": ("demo",),
    "appliance.alerts": ("alerts",),
    "appliance.sources.lorawan.cli": ("decode",),
    "appliance.update": ("update",),
    "appliance.remote": ("remote",),
    "appliance.discover": ("discover",),
    "appliance.adoption": ("fleet",),
}

# Optional modules a service is kept from loading (a Pi Zero 2 W has 512 MB; bench/rss.py):
# - the relay never speaks TLS: plain MQTT to the bridge's own broker, plain HTTP from devices on
#   the LAN. paho and http.client import OpenSSL (ssl; _hashlib through hashlib and hmac) only when
#   they can, and without it hashlib's own SHA-256 gives the same digests (~4.5 MB less).
# - the collector decodes what it reads as UTF-8 (cameras' CSV; the cloud's JSON, which RFC 8259
#   says is UTF-8): requests imports a charset guesser for bodies that name no charset, and
#   without one takes them as UTF-8 too (~2.6 MB less).
KEPT_OUT = {
    "relay": ("ssl", "_hashlib"),
    "run": ("charset_normalizer", "chardet"),
}


def _command_word(argv: list[str] | None) -> str | None:
    """The sub-command ``argv`` names, read past the global options (None: none given)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("-c", "--config")
    pre.add_argument("-v", "--verbose", action="store_true")
    try:
        _, rest = pre.parse_known_args(sys.argv[1:] if argv is None else argv)
    except SystemExit:  # a malformed global option: the full parser says what is wrong
        return None
    return rest[0] if rest and not rest[0].startswith("-") else None


def build_parser(argv: list[str] | None = None, every_part: bool = True) -> argparse.ArgumentParser:
    """The ``sensor-bridge`` parser; ``every_part=False`` registers only the part ``argv`` names."""
    parser = argparse.ArgumentParser(
        prog="sensor-bridge",
        description="Deliver Milesight sensor readings from the store to the cloud API.",
    )
    parser.add_argument(
        "-c",
        "--config",
        default=os.environ.get("SENSOR_BRIDGE_CONFIG", DEFAULT_PATH),
        help=f"config file (default {DEFAULT_PATH})",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    parser.add_argument("--version", action="version", version=f"sensor-bridge {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    add_import_command(add_commands(commands))  # config check|enabled|reference, and import

    word = None if every_part else _command_word(argv)
    wanted = [name for name, words in PARTS.items() if word in words]
    if word is None:  # help, or no command: argparse lists them all
        wanted = list(PARTS)
    elif not wanted and word != "config":
        known = sorted({"config", *(w for words in PARTS.values() for w in words)})
        parser.error(f"unknown command {word!r} (choose from {', '.join(known)})")
    for name in wanted:
        try:
            part = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        register: Any = getattr(part, "register", None)
        if register:
            register(commands)
    return parser


class MaskUrls(logging.Filter):
    """Every log line shows URLs without their user:password@ or query-string values."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "://" in message:
            record.msg, record.args = mask_urls(message), None
        if record.exc_info and not record.exc_text:
            # An exception's text (requests puts the URL in it) is masked the same way.
            record.exc_text = mask_urls(logging.Formatter().formatException(record.exc_info))
        return True


def setup_logging(verbose: bool) -> None:
    # journald adds the time; a terminal user still wants to see which part spoke.
    fmt = "%(levelname)s %(name)s: %(message)s"
    if sys.stderr.isatty() or not os.environ.get("INVOCATION_ID"):
        fmt = "%(asctime)s " + fmt
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=fmt)
    for handler in logging.getLogger().handlers:
        handler.addFilter(MaskUrls())
    for noisy in ("urllib3", "schedule"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _keep_out(command: str | None) -> None:
    """Make the modules KEPT_OUT names for ``command`` unimportable (an ImportError, as if absent)."""
    for name in KEPT_OUT.get(command or "", ()):
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]
    if command == "run":  # requests says once, at import, that it has no guesser: it needs none
        warnings.filterwarnings("ignore", "Unable to find acceptable character detection")


def main(argv: list[str] | None = None) -> int:
    _keep_out(_command_word(argv))
    parser = build_parser(argv, every_part=False)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    setup_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
