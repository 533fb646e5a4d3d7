"""mDNS/Bonjour: ask the LAN which devices offer a web page or a video stream.

One query for PTR ``_http._tcp.local`` and ``_rtsp._tcp.local`` goes to
224.0.0.251:5353 from each LAN interface (TTL 1), from an ephemeral port, so
responders answer straight back to us (RFC 6762 §6.7, "legacy unicast") and
no listener on port 5353 is needed beside avahi. It is sent ``REPEATS``
times; each answer's records (PTR -> instance, SRV -> host and port, TXT,
A) are read into one :class:`Service` per instance.

Hand-written rather than the ``zeroconf`` package: recent zeroconf ships only
compiled wheels, none for the Pi's armhf and none ``py3-none-any`` for the
pinned, hashed lock (docs/discovery.md has the measurements).
"""

from __future__ import annotations

import random
import selectors
import socket
import struct
import time
from dataclasses import dataclass, field

from .lan import Lan

GROUP, PORT = "224.0.0.251", 5353
SERVICES = ("_http._tcp.local", "_rtsp._tcp.local")
REPEATS = 2
MAX_SERVICES = 512
T_A, T_PTR, T_TXT, T_SRV = 1, 12, 16, 33


@dataclass
class Service:
    """One advertised service instance: who answered, its name, host, port and TXT keys."""

    address: str  # from its A record, else who answered
    instance: str
    service: str
    host: str = ""
    port: int = 0
    txt: dict[str, str] = field(default_factory=dict)
    sender: str = ""  # who answered


def query_message(query_id: int) -> bytes:
    """A standard query, one PTR question per service type, QU bit set."""
    header = struct.pack("!HHHHHH", query_id, 0, len(SERVICES), 0, 0, 0)
    questions = b"".join(_name(s) + struct.pack("!HH", T_PTR, 0x8001) for s in SERVICES)
    return header + questions


def _name(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p for p in (x.encode() for x in name.split("."))) + b"\0"


class _Reader:
    """Reads DNS names and records out of one message; raises ValueError on anything malformed."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def name(self, at: int) -> tuple[str, int]:
        labels, end, jumps = [], None, 0
        while True:
            if at >= len(self.data):
                raise ValueError("name runs past the message")
            n = self.data[at]
            if n & 0xC0 == 0xC0:
                if jumps > 20:
                    raise ValueError("compression loop")
                pointer = struct.unpack_from("!H", self.data, at)[0] & 0x3FFF
                end = at + 2 if end is None else end
                at, jumps = pointer, jumps + 1
            elif n == 0:
                return ".".join(labels), (at + 1 if end is None else end)
            else:
                labels.append(self.data[at + 1 : at + 1 + n].decode("utf-8", "replace"))
                at += 1 + n


def parse_answer(data: bytes, sender: str) -> list[Service]:
    """The service instances one mDNS answer describes; [] when it is malformed (never raises)."""
    try:
        return _parse(data, sender)
    except (ValueError, struct.error, IndexError):
        return []


def _parse(data: bytes, sender: str) -> list[Service]:
    reader = _Reader(data)
    _, flags, qd, an, ns, ar = struct.unpack_from("!HHHHHH", data, 0)
    if not flags & 0x8000:
        return []  # a query, not an answer
    at = 12
    for _ in range(qd):
        _, at = reader.name(at)
        at += 4
    services: dict[str, Service] = {}
    hosts: dict[str, str] = {}
    srv: dict[str, tuple[str, int]] = {}
    txt: dict[str, dict[str, str]] = {}
    for _ in range(an + ns + ar):
        owner, at = reader.name(at)
        rtype, _, _, length = struct.unpack_from("!HHIH", data, at)
        at += 10
        rdata_at, at = at, at + length
        if rtype == T_PTR and owner.lower() in SERVICES:
            instance, _ = reader.name(rdata_at)
            services[instance.lower()] = Service(sender, instance, owner.lower(), sender=sender)
        elif rtype == T_SRV:
            port = struct.unpack_from("!H", data, rdata_at + 4)[0]
            srv[owner.lower()] = (reader.name(rdata_at + 6)[0], port)
        elif rtype == T_TXT:
            txt[owner.lower()] = _txt(data[rdata_at:at])
        elif rtype == T_A and length == 4:
            hosts[owner.lower()] = socket.inet_ntoa(data[rdata_at:at])
    for key, service in services.items():
        service.host, service.port = srv.get(key, ("", 0))
        service.txt = txt.get(key, {})
        service.address = hosts.get(service.host.lower(), sender)
    return list(services.values())


def _txt(rdata: bytes) -> dict[str, str]:
    out, at = {}, 0
    while at < len(rdata):
        n = rdata[at]
        key, _, value = rdata[at + 1 : at + 1 + n].decode("utf-8", "replace").partition("=")
        if key:
            out[key.lower()[:40]] = value[:200]
        at += 1 + n
    return out


def browse(lans: list[Lan], seconds: float) -> list[Service]:
    """Every service instance heard on the LANs within ``seconds``."""
    query_id = random.randrange(1, 0xFFFF)
    message = query_message(query_id)
    sockets = []
    for lan in lans:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(lan.ip))
        sock.bind((lan.ip, 0))
        sock.setblocking(False)
        sockets.append(sock)
    selector = selectors.DefaultSelector()
    for sock in sockets:
        selector.register(sock, selectors.EVENT_READ)
    found: list[Service] = []
    deadline = time.monotonic() + seconds
    gap = min(0.5, seconds / (REPEATS + 2))
    next_send, sent = time.monotonic(), 0
    try:
        while (now := time.monotonic()) < deadline:
            if sent < REPEATS and now >= next_send:
                for sock in sockets:
                    try:
                        sock.sendto(message, (GROUP, PORT))
                    except OSError:
                        pass
                sent, next_send = sent + 1, now + gap
            wait = max(0.0, min(deadline, next_send if sent < REPEATS else deadline) - now)
            for key, _ in selector.select(wait):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data, sender = sock.recvfrom(9000)
                except OSError:
                    continue
                if len(found) < MAX_SERVICES:
                    found.extend(parse_answer(data, sender[0]))
    finally:
        selector.close()
        for sock in sockets:
            sock.close()
    return found
