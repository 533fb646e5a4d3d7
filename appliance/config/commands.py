"""``sensor-bridge config check|enabled|reference``, and how every other command finds its config.

``config import`` (the boot partition's file) is added by boot_config.py.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..config_keys import ConfigError
from ..status import UNITS
from .model import Config
from .reader import load_config, masked
from .reference import reference


def config_from_args(args: argparse.Namespace) -> Config:
    """The config named by ``-c`` (or the default path); exits with the errors if invalid."""
    try:
        return load_config(args.config)
    except ConfigError as exc:
        print(exc.report(), file=sys.stderr)
        raise SystemExit(2) from None


def _check(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc.report(), file=sys.stderr)
        return 2
    print(json.dumps(masked(config), indent=2))
    if config.waiting_for_the_cloud:
        assert config.fleet is not None
        print(
            f"{args.config}: OK, [fleet] alone: the bridge enrolls at {config.fleet.url} and waits "
            "to be claimed (its claim code: `sensor-bridge status`, or sensor-bridge-claim.txt on "
            "the boot partition); the cloud then sends its sensors",
            file=sys.stderr,
        )
        return 0
    print(f"{args.config}: OK ({len(config.sensors)} sensor(s))", file=sys.stderr)
    return 0


def _enabled(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        # Without a config nothing runs, except the LED, which shows that there is none.
        print(
            f"{exc.report()}\n{args.service}: {'runs to show no-config' if args.service == 'led' else 'off'}"
        )
        return 0 if args.service == "led" else 1
    enabled = args.service in config.enabled_services()
    print(f"{args.service}: {'on' if enabled else 'off'} in {args.config}")
    return 0 if enabled else 1


def _reference(args: argparse.Namespace) -> int:
    print(reference())
    return 0


def add_commands(commands: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """``sensor-bridge config ACTION``; returns the actions, to which boot_config adds ``import``."""
    parser = commands.add_parser("config", help="check, install or document the config file")
    actions = parser.add_subparsers(dest="config_command", metavar="ACTION")
    parser.set_defaults(func=lambda a: (parser.print_help(), 2)[1])
    actions.add_parser("check", help="validate; print it with secrets masked").set_defaults(
        func=_check
    )
    enabled = actions.add_parser(
        "enabled", help="exit 0 if the config turns SERVICE on (the units' ExecCondition)"
    )
    enabled.add_argument("service", choices=sorted(UNITS))
    enabled.set_defaults(func=_enabled)
    actions.add_parser("reference", help="print docs/config.md's key reference").set_defaults(
        func=_reference
    )
    return actions
