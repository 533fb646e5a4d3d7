"""The neighbour table and a bounded knock on port 80: devices that answer no multicast.

A camera with ONVIF and Bonjour switched off still talks to the bridge's LAN:
its MAC sits in the kernel's neighbour table (``ip neigh``, else
/proc/net/arp) once anything spoke to it. The scan first knocks on TCP port
80 of every address in the LAN's own subnet (one /24 at most, or the subnets
given by hand), all at once with non-blocking connects and one deadline:
the addresses that accept are web servers worth a look, and the knock itself
fills the neighbour table with the MACs of those that exist.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import selectors
import socket
import subprocess
import time
from pathlib import Path

from .lan import Lan

MAX_ADDRESSES = 1024  # a sweep never knocks on more than this many addresses in all


def neighbour_table(lans: list[Lan]) -> dict[str, str]:
    """``{ip: mac}`` for the LAN interfaces' reachable (or recently seen) IPv4 neighbours."""
    names = {lan.name for lan in lans}
    table: dict[str, str] = {}
    rows = None
    try:
        done = subprocess.run(
            ["ip", "-j", "-4", "neigh", "show"], capture_output=True, text=True, timeout=5
        )
        if done.returncode == 0:
            rows = json.loads(done.stdout or "[]")
    except (OSError, ValueError, subprocess.TimeoutExpired):
        pass
    if rows is not None:
        for row in rows:
            state = set(row.get("state", []))
            if (
                row.get("dev") in names
                and row.get("lladdr")
                and not state & {"FAILED", "INCOMPLETE"}
            ):
                table[row["dst"]] = row["lladdr"].lower()
        return table
    try:  # no iproute2: the kernel's ARP table
        lines = Path("/proc/net/arp").read_text().splitlines()[1:]
    except OSError:
        return table
    for line in lines:
        cols = line.split()
        if len(cols) >= 6 and cols[5] in names and cols[2] != "0x0":
            table[cols[0]] = cols[3].lower()
    return table


def knock(addresses: list[str], seconds: float, port: int = 80) -> list[str]:
    """The addresses that accept a TCP connection on ``port`` within ``seconds`` (closed at once)."""
    selector = selectors.DefaultSelector()
    pending: dict[socket.socket, str] = {}
    for ip in addresses[:MAX_ADDRESSES]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        code = sock.connect_ex((ip, port))
        if code in (0, errno.EINPROGRESS):
            pending[sock] = ip
            selector.register(sock, selectors.EVENT_WRITE)
        else:
            sock.close()
    open_ones: list[str] = []
    deadline = time.monotonic() + seconds
    try:
        while pending and (left := deadline - time.monotonic()) > 0:
            for key, _ in selector.select(left):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                    open_ones.append(pending[sock])
                selector.unregister(sock)
                sock.close()
                del pending[sock]
    finally:
        for sock in pending:
            sock.close()
        selector.close()
    return sorted(open_ones, key=ipaddress.IPv4Address)


def sweep_targets(ranges: list[ipaddress.IPv4Network], own: set[str]) -> list[str]:
    """Every host address of ``ranges`` but the bridge's own, at most MAX_ADDRESSES."""
    out: list[str] = []
    for net in ranges:
        for ip in net.hosts():
            text = str(ip)
            if text not in own and len(out) < MAX_ADDRESSES:
                out.append(text)
    return out
