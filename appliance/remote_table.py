"""The ``[remote]`` table: the WireGuard tunnel appliance/remote.py sets up for SSH from the admin network.

Its values become lines of systemd-networkd's .netdev and .network files, so
each has a grammar here: a key is base64 of 32 bytes, the endpoint a host
(RFC 1123 name or IP literal) and a port, addresses carry no IPv6 scope id,
and the tunnel carries admin networks only.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from dataclasses import dataclass

from .config_keys import REQUIRED, number, text, texts

# The only networks the tunnel may carry: the admin side is private or shared address space.
# Anything wider would take routes from the uplink (0.0.0.0/1 + 128.0.0.0/1 is the whole
# internet), and a dead hub would then cut the readings off.
ADMIN_RANGES = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fd00::/8")
)
ADMIN_RANGES_SHOWN = "10/8, 172.16/12, 192.168/16, 100.64/10, fd00::/8"
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def _wg_key(key: str) -> str | None:
    try:
        if len(key) == 44 and len(base64.b64decode(key, validate=True)) == 32:
            return None
    except (binascii.Error, ValueError):
        pass
    return (
        "expected a WireGuard public key: base64 of exactly 32 bytes, 44 characters "
        f"(`wg pubkey` prints one), got {key!r}"
    )


def _no_scope(text: str) -> str | None:
    if "%" in text:
        return f"{text!r} has an IPv6 scope id (%...); a tunnel address has none"
    return None


def _interface_address(address: str) -> str | None:
    if problem := _no_scope(address):
        return problem
    try:
        ipaddress.ip_interface(address)
    except ValueError:
        return f"expected the bridge's tunnel address like 10.66.0.42/32, got {address!r}"
    return None


def _host(host: str) -> str | None:
    """Why ``host`` is neither an IP literal (IPv6 in brackets) nor an RFC 1123 DNS name, or None."""
    if host.startswith("["):
        inner = host[1:-1] if host.endswith("]") else ""
        if "%" in inner:
            return "an IPv6 scope id (%...) is not allowed"
        try:
            ipaddress.IPv6Address(inner)
        except ValueError:
            return f"[{inner}] is not an IPv6 address"
        return None
    labels = host.split(".")
    if all(label.isdigit() for label in labels):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return f"{host} is not an IPv4 address"
        return None
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        return (
            f"{host!r} is not a DNS name (RFC 1123: labels of letters, digits and '-', "
            "dot-separated) or an IP address (IPv6 in brackets)"
        )
    return None


def _endpoint(endpoint: str) -> str | None:
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host or not re.fullmatch(r"[0-9]{1,5}", port) or not 0 < int(port) <= 65535:
        return (
            "expected the hub's host:port like hub.example.com:51820 (port 1-65535, "
            f"IPv6 in brackets), got {endpoint!r}"
        )
    if problem := _host(host):
        return f"host: {problem}"
    return None


def _admin_network(network: str) -> str | None:
    """Why ``network`` may not go through the tunnel, or None: only the admin side does."""
    if problem := _no_scope(network):
        return problem
    try:
        net = ipaddress.ip_network(network, strict=False)
    except ValueError:
        return f"expected a network like 10.66.0.0/24, got {network!r}"
    if net.prefixlen == 0:
        return None  # all traffic: _admin_networks says so for the whole list
    if not any(net.version == r.version and net.subnet_of(r) for r in ADMIN_RANGES):
        return f"{network} is outside the private and admin ranges ({ADMIN_RANGES_SHOWN})"
    return None


def _admin_networks(networks: list[str]) -> str | None:
    if not networks:
        return 'empty; list the admin network(s), e.g. ["10.66.0.1/32"]'
    for network in networks:
        try:
            everything = ipaddress.ip_network(network, strict=False).prefixlen == 0
        except ValueError:
            continue  # _admin_network names it
        if everything:
            # The uplink must never route through the tunnel: a dead hub would cut the data off.
            return f"{network} would send all traffic (the uplink too) through the tunnel; list the admin network only"
    return None


@dataclass
class RemoteConfig:
    address: str = text(
        REQUIRED,
        "the bridge's tunnel address, e.g. `10.66.0.42/32`; no IPv6 scope id",
        check=_interface_address,
    )
    peer_public_key: str = text(
        REQUIRED, "the hub's WireGuard public key: base64 of 32 bytes", check=_wg_key
    )
    endpoint: str = text(
        REQUIRED,
        "the hub's `host:port`, e.g. `hub.example.com:51820`: a DNS name (RFC 1123) or an IP "
        "literal (IPv6 in brackets), port 1-65535",
        check=_endpoint,
    )
    allowed_ips: list[str] = texts(
        [],
        "the admin network(s) that reach the bridge (SSH only), each inside "
        f"{ADMIN_RANGES_SHOWN}: the uplink never uses the tunnel",
        check=_admin_networks,
        each=_admin_network,
    )
    keepalive_s: int = number(
        25, "seconds between keepalives, so the store's NAT keeps the tunnel open", integer=True
    )
