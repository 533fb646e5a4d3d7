"""Which network interfaces are the store's LAN: the only ones a scan speaks on.

A bridge may also have a WireGuard tunnel (``wg*``, the ``[remote]`` one
included), docker networks and loopback; probing them would ask the wrong
network (or the hub) about cameras, and some discovery code breaks on them.
Only interfaces that are up, have an IPv4 address and are not one of those
are scanned; the rest are listed as skipped, with why.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from dataclasses import dataclass

# Name prefixes that are never the store LAN: loopback, tunnels, container and VM networks.
NOT_LAN = ("lo", "wg", "docker", "br-", "veth", "virbr", "tun", "tap", "tailscale", "zt")


@dataclass(frozen=True)
class Lan:
    """One interface on the store's LAN: its name, index, MAC and IPv4 address with prefix."""

    name: str
    index: int
    mac: str
    address: ipaddress.IPv4Interface

    @property
    def ip(self) -> str:
        return str(self.address.ip)


def interfaces() -> list[dict]:
    """``ip -j addr`` as parsed JSON (an empty list when ``ip`` cannot run)."""
    try:
        out = subprocess.run(
            ["ip", "-j", "-4", "addr", "show"], capture_output=True, text=True, timeout=5
        ).stdout
        return json.loads(out or "[]")
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return []


def store_lans(only: str | None = None) -> tuple[list[Lan], dict[str, str]]:
    """The LAN interfaces to scan, and ``{name: why skipped}`` for the others.

    ``only`` names one interface to use (``--interface``): the rest are skipped.
    """
    lans: list[Lan] = []
    skipped: dict[str, str] = {}
    for link in interfaces():
        name = link.get("ifname", "")
        addresses = [a for a in link.get("addr_info", []) if a.get("family") == "inet"]
        if only and name != only:
            skipped[name] = "not the interface asked for"
        elif name.startswith(NOT_LAN) or "LOOPBACK" in link.get("flags", []):
            skipped[name] = "not the store LAN (loopback, tunnel or container network)"
        elif link.get("operstate") == "DOWN" or "UP" not in link.get("flags", []):
            skipped[name] = "down"
        elif link.get("link_type") not in ("ether", None):
            skipped[name] = f"not Ethernet or Wi-Fi ({link.get('link_type')})"
        elif not addresses:
            skipped[name] = "no IPv4 address"
        else:
            a = addresses[0]
            lans.append(
                Lan(
                    name,
                    int(link.get("ifindex", 0)),
                    link.get("address", ""),
                    ipaddress.IPv4Interface(f"{a['local']}/{a['prefixlen']}"),
                )
            )
    return lans, skipped


def sweep_range(lan: Lan) -> ipaddress.IPv4Network:
    """The addresses a LAN sweep may knock on: the LAN's own subnet, one /24 at most."""
    network = lan.address.network
    if network.prefixlen >= 24:
        return network
    return ipaddress.IPv4Interface(f"{lan.ip}/24").network
