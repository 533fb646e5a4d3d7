"""Simulators for integrators without hardware: a Milesight camera and an ingest receiver.

``sensor-bridge sim camera`` serves the camera HTTP API with the firmware's
quirks; ``sensor-bridge sim receiver`` implements the cloud side of the ingest
contract and stores into SQLite. The demo and the tests use the same programs.
"""

from __future__ import annotations

import argparse
import importlib


def register(commands: argparse._SubParsersAction) -> None:
    sim = commands.add_parser("sim", help="run a simulated camera or cloud receiver")
    sim_commands = sim.add_subparsers(dest="sim_command", metavar="WHAT")
    sim.set_defaults(func=lambda a: (sim.print_help(), 2)[1])
    for name in ("camera", "receiver"):
        try:
            module = importlib.import_module(f"appliance.sim.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"appliance.sim.{name}":
                raise
            continue
        module.add_command(sim_commands)
