"""``sensor-bridge decode MODEL HEX [--fport N]``: one uplink frame decoded, as JSON.

For an installer checking a device (paste the hex the gateway's packet list
shows) and for scripts. Names are the vendor's, so the output can be set beside
the vendor's decoder (docs/milesight.md lists the few that differ). A frame that
breaks the layout at its first entry is an error naming the byte; one that
breaks it later prints what came before, as the vendor's decoder does, and
names the byte on stderr.
"""

from __future__ import annotations

import argparse
import json
import re
import sys

from . import MODELS, FrameError, read_frame


def _decode(args: argparse.Namespace) -> int:
    text = re.sub(r"[\s:]", "", args.hex)
    if text.lower().startswith("0x"):
        text = text[2:]
    try:
        frame = bytes.fromhex(text)
    except ValueError:
        print(
            f"error: {args.hex!r} is not hex (two digits per byte, e.g. 017564 03670C01)",
            file=sys.stderr,
        )
        return 2
    try:
        decoded = read_frame(args.model, frame, args.fport)
    except FrameError as exc:
        print(f"error: {args.model} frame {frame.hex()}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(decoded.values, indent=2, ensure_ascii=False))
    if decoded.unread is not None:
        print(
            f"note: {args.model} frame {frame.hex()} decoded up to {decoded.unread}; "
            f"the rest ({frame[decoded.unread.at :].hex()}) is not read",
            file=sys.stderr,
        )
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    command = commands.add_parser(
        "decode", help="decode one Milesight LoRaWAN uplink frame and print its values"
    )
    command.add_argument("model", type=str.lower, choices=list(MODELS), help="the device's model")
    command.add_argument("hex", help="the frame as hex, as the gateway shows it (blanks allowed)")
    command.add_argument(
        "--fport", type=int, default=None, help="the uplink's fPort (Milesight sends data on 85)"
    )
    command.set_defaults(func=_decode)
