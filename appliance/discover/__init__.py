"""``sensor-bridge discover``: what is on the store's network, and which of it are cameras.

An installer's question ("which IP is the entrance counter?") answered on
the bridge itself: WS-Discovery (wsd.py), mDNS (mdns.py) and the neighbour
table with a knock on port 80 (neighbours.py) find candidates on the LAN
interfaces (lan.py: never a tunnel, docker or loopback), each is asked who it
is without a password (fingerprint.py), and scan.py merges the answers into
one row per device. It prints a table, or with ``--json`` the document
docs/discovery.md describes. identity.py finds a configured camera again by
its serial or MAC when its address changed.
"""

from __future__ import annotations

import argparse
import json
import sys


def _run(args: argparse.Namespace) -> int:
    from .scan import parse_subnet, scan

    try:
        subnets = [parse_subnet(s) for s in args.subnet]
    except ValueError as exc:
        print(f"sensor-bridge discover: {exc}", file=sys.stderr)
        return 2
    if args.timeout <= 0 or args.timeout > 120:
        print(
            "sensor-bridge discover: --timeout must be between 0 and 120 seconds", file=sys.stderr
        )
        return 2
    result = scan(args.timeout, subnets, args.interface)
    if args.json:
        print(json.dumps(result.as_json(), indent=2))
        return 0
    print_table(result)
    return 0


def print_table(result: object) -> None:
    from .scan import ScanResult

    assert isinstance(result, ScanResult)
    where = ", ".join(result.interfaces) or "no LAN interface"
    if result.subnets:
        where += f"; addresses {', '.join(result.subnets)}"
    print(f"looked on {where} for {result.seconds:.0f} s")
    for name, why in sorted(result.skipped.items()):
        print(f"  skipped {name}: {why}")
    if not result.devices:
        print("\nno devices found")
        return
    rows = [("ADDRESS", "MAC", "IDENTITY", "MODEL", "FIRMWARE", "MILESIGHT", "FOUND BY", "NOTE")]
    for d in result.devices:
        rows.append(
            (
                ", ".join(d.addresses),
                d.mac or "-",
                d.identity or "-",
                d.model or "-",
                d.firmware or "-",
                "yes" if d.milesight else "no",
                ", ".join(d.found_by),
                d.note,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print()
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    print(
        '\nTo poll a camera: a [[sensors]] table with url = "http://ADDRESS" and, so a new '
        'address is found again, serial = "..." (or mac = "...").'
    )


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "discover",
        help="find the cameras on the store's network (WS-Discovery, mDNS, neighbour table)",
        description="List the devices on the store's LAN: address, MAC, identity, model, how "
        "each was found, whether it looks like a Milesight counter. No password is tried and no "
        "camera is activated; tunnels (wg*), docker and loopback interfaces are skipped.",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument(
        "--subnet",
        action="append",
        default=[],
        metavar="CIDR",
        help="also look at these addresses (e.g. a routed camera subnet; a /22 at most); repeatable",
    )
    p.add_argument("--interface", help="scan only this interface (default: every LAN interface)")
    p.add_argument(
        "--timeout", type=float, default=10.0, help="seconds the whole scan takes (default 10)"
    )
    p.set_defaults(func=_run)
