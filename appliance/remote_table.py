"""The ``[remote]`` table: the WireGuard tunnel appliance/remote.py sets up for SSH from the admin network."""

from __future__ import annotations

import base64
import binascii
import ipaddress
from dataclasses import dataclass

from .config_keys import REQUIRED, number, text, texts


def _wg_key(key: str) -> str | None:
    try:
        if len(base64.b64decode(key, validate=True)) == 32 and len(key) == 44:
            return None
    except (binascii.Error, ValueError):
        pass
    return f"expected a WireGuard public key (44 characters of base64, `wg pubkey` prints one), got {key!r}"


def _interface_address(address: str) -> str | None:
    try:
        ipaddress.ip_interface(address)
    except ValueError:
        return f"expected the bridge's tunnel address like 10.66.0.42/32, got {address!r}"
    return None


def _endpoint(endpoint: str) -> str | None:
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host.strip("[]") or not port.isdigit() or not 0 < int(port) <= 65535:
        return f"expected the hub's host:port like hub.example.com:51820, got {endpoint!r}"
    return None


def _admin_networks(networks: list[str]) -> str | None:
    if not networks:
        return 'empty; list the admin network(s), e.g. ["10.66.0.1/32"]'
    for network in networks:
        try:
            net = ipaddress.ip_network(network, strict=False)
        except ValueError:
            return f"expected networks like 10.66.0.0/24, got {network!r}"
        if net.prefixlen == 0:
            # The uplink must never route through the tunnel: a dead hub would cut the data off.
            return f"{network} would send all traffic (the uplink too) through the tunnel; list the admin network only"
    return None


@dataclass
class RemoteConfig:
    address: str = text(
        REQUIRED, "the bridge's tunnel address, e.g. `10.66.0.42/32`", check=_interface_address
    )
    peer_public_key: str = text(REQUIRED, "the hub's WireGuard public key", check=_wg_key)
    endpoint: str = text(
        REQUIRED, "the hub's `host:port`, e.g. `hub.example.com:51820`", check=_endpoint
    )
    allowed_ips: list[str] = texts(
        [],
        "the admin network(s) that reach the bridge (SSH only); never "
        "`0.0.0.0/0`: the uplink does not use the tunnel",
        check=_admin_networks,
    )
    keepalive_s: int = number(
        25, "seconds between keepalives, so the store's NAT keeps the tunnel open", integer=True
    )
