"""``sensor-bridge``: one command for every service and maintenance tool.

Each part of the appliance registers its own sub-commands (a module-level
``register(commands)`` function), so this file only knows the list of parts.
Those modules keep heavy imports (paho, gpiozero, requests) inside their
handlers: the LED service should not pay for the MQTT client's memory.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from typing import Any

from . import __version__
from .config import DEFAULT_PATH, Config, ConfigError, load_config, masked

# Parts that add sub-commands; a missing optional part is skipped.
PARTS = (
    "appliance.collector",
    "appliance.console",
    "appliance.relay",
    "appliance.broker",
    "appliance.watchdog",
    "appliance.led",
    "appliance.maintenance",
    "appliance.boot_config",
    "appliance.sim",
    "appliance.demo",
    "appliance.alerts",
)


def config_from(args: argparse.Namespace) -> Config:
    """The config named by ``-c`` (or the default path); exits with the errors if invalid."""
    try:
        return load_config(args.config)
    except ConfigError as exc:
        print(exc.report(), file=sys.stderr)
        raise SystemExit(2) from None


def _config_check(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc.report(), file=sys.stderr)
        return 2
    print(json.dumps(masked(config), indent=2))
    print(f"{args.config}: OK ({len(config.sensors)} sensor(s))", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sensor-bridge",
        description="Deliver Milesight sensor readings from the store to the cloud API.",
    )
    parser.add_argument(
        "-c", "--config", default=os.environ.get("SENSOR_BRIDGE_CONFIG", DEFAULT_PATH),
        help=f"config file (default {DEFAULT_PATH})",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    parser.add_argument("--version", action="version", version=f"sensor-bridge {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    config = commands.add_parser("config", help="check the config file")
    config_commands = config.add_subparsers(dest="config_command", metavar="ACTION")
    check = config_commands.add_parser("check", help="validate; print it with secrets masked")
    check.set_defaults(func=_config_check)
    config.set_defaults(func=lambda a: (config.print_help(), 2)[1], config_commands=config_commands)

    for name in PARTS:
        try:
            part = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        register: Any = getattr(part, "register", None)
        if register:
            register(commands, config_commands)
    return parser


def setup_logging(verbose: bool) -> None:
    # journald adds the time; a terminal user still wants to see which part spoke.
    fmt = "%(levelname)s %(name)s: %(message)s"
    if sys.stderr.isatty() or not os.environ.get("INVOCATION_ID"):
        fmt = "%(asctime)s " + fmt
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=fmt)
    for noisy in ("urllib3", "schedule"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    setup_logging(args.verbose)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
