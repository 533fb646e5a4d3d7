"""Adoption: a bridge built with only ``[fleet]`` enrolls, is claimed on the fleet page, and runs
the config the cloud sends (``sensor-bridge fleet``, sensor-bridge-fleet.service).

identity.py makes the credential and claim code, cloud.py speaks the two routes,
apply.py turns a document into the config file (and back), state.py is the
agent's memory, agent.py the service. docs/architecture.md, "The fleet agent".
"""

from __future__ import annotations

import argparse
from pathlib import Path


def _run(args: argparse.Namespace) -> int:
    from ..service import run_service
    from .agent import FleetAgent
    from .identity import boot_dir

    boot = Path(args.boot_dir) if args.boot_dir else boot_dir()
    return run_service(lambda stop: FleetAgent(args.config, boot, stop))


def register(commands: argparse._SubParsersAction) -> None:
    fleet = commands.add_parser(
        "fleet",
        help="the fleet agent: enroll, wait to be claimed, apply the cloud's config ([fleet])",
    )
    fleet.add_argument(
        "--boot-dir",
        metavar="DIR",
        help="where the claim code file goes (default: the boot partition, /boot/firmware or /boot)",
    )
    fleet.set_defaults(func=_run)
