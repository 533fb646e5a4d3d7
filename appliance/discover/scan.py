"""One scan of the store's LAN: every method at once, one list of devices, each once.

WS-Discovery, mDNS and the port-80 knock run side by side for the first part
of the time budget; then the neighbour table is read and every candidate is
fingerprinted (appliance/discover/fingerprint.py) in the rest. Answers are
merged into one :class:`Device` per device: first per address, then across
addresses that share a MAC, serial or ONVIF endpoint (a camera answering
twice, or on two addresses, is one device). A device's identity is its
serial, else its MAC, else its ONVIF endpoint reference: never its address.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from . import mdns, neighbours, wsd
from .fingerprint import Fingerprint, fingerprint
from .lan import store_lans, sweep_range

SCHEMA = "sensor-bridge/discovery/v1"
MAX_DEVICES = 256
MAX_SUBNET_PREFIX = 22  # --subnet: a /22 (1022 addresses) at most


@dataclass
class Device:
    """One device found on the LAN (the JSON shape docs/discovery.md describes)."""

    address: str
    addresses: list[str] = field(default_factory=list)
    mac: str | None = None
    identity: str | None = None
    serial: str | None = None
    model: str | None = None
    firmware: str | None = None
    found_by: list[str] = field(default_factory=list)
    milesight: bool = False
    activated: bool | None = None
    needs_credentials: bool = False
    onvif_endpoint: str | None = None
    onvif_xaddrs: list[str] = field(default_factory=list)
    mdns_name: str | None = None
    http: bool = False
    note: str = ""

    def settle(self) -> None:
        """Identity, de-duplicated lists, and the one-line note a person reads."""
        self.found_by = sorted(set(self.found_by))
        self.addresses = sorted(set(self.addresses), key=ipaddress.IPv4Address)
        self.onvif_xaddrs = sorted(set(self.onvif_xaddrs))
        if self.serial:
            self.identity = f"serial:{self.serial}"
        elif self.mac:
            self.identity = f"mac:{self.mac}"
        elif self.onvif_endpoint:
            self.identity = f"onvif:{self.onvif_endpoint}"
        if self.activated is False:
            self.note = "not activated: set its password in its web page first"
        elif self.needs_credentials:
            self.note = "needs credentials"
        elif not self.http:
            self.note = "no web page on port 80"


@dataclass
class ScanResult:
    """What ``sensor-bridge discover`` prints: the devices, and where it looked."""

    devices: list[Device]
    interfaces: list[str]
    skipped: dict[str, str]
    subnets: list[str]
    seconds: float

    def as_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "interfaces": self.interfaces,
            "skipped_interfaces": self.skipped,
            "subnets": self.subnets,
            "seconds": round(self.seconds, 1),
            "devices": [asdict(d) for d in self.devices],
        }


def parse_subnet(text: str) -> ipaddress.IPv4Network:
    """A ``--subnet`` value; ValueError naming what is wrong."""
    try:
        net = ipaddress.IPv4Network(text, strict=False)
    except ValueError:
        raise ValueError(f"--subnet {text!r} is not an IPv4 subnet like 203.0.113.0/24") from None
    if net.prefixlen < MAX_SUBNET_PREFIX:
        raise ValueError(
            f"--subnet {text} is {net.num_addresses} addresses; at most a /{MAX_SUBNET_PREFIX}"
        )
    return net


class _Found:
    """Answers gathered per address, from any thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_address: dict[str, Device] = {}

    def device(self, address: str) -> Device:
        with self.lock:
            if address not in self.by_address:
                self.by_address[address] = Device(address, [address])
            return self.by_address[address]


def scan(
    seconds: float = 10.0,
    subnets: list[ipaddress.IPv4Network] | None = None,
    interface: str | None = None,
    sweep: bool = True,
) -> ScanResult:
    """Look for devices on the store's LAN for about ``seconds`` in all; never activates or logs in."""
    started = time.monotonic()
    lans, skipped = store_lans(interface)
    subnets = subnets or []
    listen_s = max(1.0, seconds * 0.4)
    found = _Found()
    own = {lan.ip for lan in lans}
    ranges = [sweep_range(lan) for lan in lans] if sweep else []
    lan_targets = neighbours.sweep_targets(ranges, own)
    subnet_targets = neighbours.sweep_targets(subnets, own)
    knocked: dict[str, list[str]] = {}
    lan_nets = [lan.address.network for lan in lans]

    def run_wsd() -> None:
        for m in wsd.probe(lans, listen_s, subnets):
            d = found.device(m.address)
            d.found_by.append("ws-discovery")
            d.onvif_endpoint = d.onvif_endpoint or m.endpoint
            d.onvif_xaddrs += m.xaddrs
            d.model = d.model or m.scope("hardware")
            d.milesight = d.milesight or "milesight" in " ".join(m.scopes).lower()

    def run_mdns() -> None:
        for s in mdns.browse(lans, listen_s):
            # An A record elsewhere than where we look is not followed: only who answered.
            address = s.address if _inside(s.address, lan_nets + subnets) else s.sender
            d = found.device(address)
            d.found_by.append("mdns")
            d.mdns_name = d.mdns_name or s.instance
            d.milesight = d.milesight or "milesight" in f"{s.instance} {s.txt}".lower()

    def run_knock() -> None:
        knocked["lan"] = neighbours.knock(lan_targets, listen_s)
        knocked["subnet"] = neighbours.knock(subnet_targets, listen_s)

    threads = [threading.Thread(target=t, daemon=True) for t in (run_wsd, run_mdns, run_knock)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(listen_s + 2)

    table = neighbours.neighbour_table(lans)
    for ip in knocked.get("lan", []) + [ip for ip in table if _inside(ip, lan_nets)]:
        found.device(ip).found_by.append("neighbours")
    for ip in knocked.get("subnet", []):
        found.device(ip).found_by.append("subnet")
    for ip, mac in table.items():
        if ip in found.by_address:
            found.by_address[ip].mac = mac

    candidates = list(found.by_address.values())[:MAX_DEVICES]
    left = max(1.0, seconds - (time.monotonic() - started))
    with ThreadPoolExecutor(max_workers=16) as pool:
        looks = pool.map(lambda d: fingerprint(d.address, 80, min(2.0, left / 2)), candidates)
        prints = dict(zip([d.address for d in candidates], looks, strict=True))
    devices = []
    for d in candidates:
        _apply(d, prints[d.address])
        if d.found_by != ["neighbours"] or d.http:
            devices.append(d)  # a neighbour without a web page is a phone or the router
    merged = _merge(devices)
    return ScanResult(
        merged,
        [lan.name for lan in lans],
        skipped,
        [str(n) for n in ranges + subnets],
        time.monotonic() - started,
    )


def _inside(ip: str, nets: list[ipaddress.IPv4Network]) -> bool:
    return any(ipaddress.IPv4Address(ip) in n for n in nets)


def _apply(d: Device, seen: Fingerprint) -> None:
    d.http = seen.reachable
    d.milesight = d.milesight or seen.milesight
    d.needs_credentials = seen.needs_credentials
    d.activated = seen.activated
    d.serial = seen.serial
    d.model = seen.model or d.model
    d.firmware = seen.firmware
    d.mac = d.mac or seen.mac


def _merge(devices: list[Device]) -> list[Device]:
    """One Device per real device: those sharing a MAC, serial or ONVIF endpoint become one."""
    out: list[Device] = []
    keys: dict[str, Device] = {}
    for d in sorted(devices, key=lambda d: ipaddress.IPv4Address(d.address)):
        own_keys = [
            k
            for k in (f"mac:{d.mac}", f"serial:{d.serial}", f"onvif:{d.onvif_endpoint}")
            if not k.endswith(":None")
        ]
        same = next((keys[k] for k in own_keys if k in keys), None)
        if same is None:
            out.append(d)
            same = d
        else:
            same.addresses += d.addresses
            same.found_by += d.found_by
            same.onvif_xaddrs += d.onvif_xaddrs
            for name in ("mac", "serial", "model", "firmware", "onvif_endpoint", "mdns_name"):
                if getattr(same, name) is None:
                    setattr(same, name, getattr(d, name))
            same.milesight = same.milesight or d.milesight
            same.http = same.http or d.http
        for k in own_keys:
            keys.setdefault(k, same)
    for d in out:
        d.settle()
    return out
