"""WS-Discovery: ask the LAN's ONVIF cameras to say who they are.

A Probe for ``dn:NetworkVideoTransmitter`` goes to 239.255.255.250:3702 from
each LAN interface (multicast TTL 1: it never leaves the LAN), sent
``REPEATS`` times because UDP gets lost; every ProbeMatch that comes back
before the deadline is parsed for the endpoint reference (a stable
``urn:uuid:``), Types, Scopes (``onvif://www.onvif.org/hardware/MODEL``,
``.../name/NAME``, ``.../mac/...``) and XAddrs (the device service URL).
The same Probe can also be sent to each address of a subnet given by hand
(unicast, for cameras behind a router, where multicast does not reach).

Hand-written rather than the ``wsdiscovery`` package: a Probe and its
answer are two XML messages, and this keeps the choice of interfaces (never
a tunnel) and the TTL in our hands (docs/discovery.md has the measurements).
"""

from __future__ import annotations

import ipaddress
import selectors
import socket
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from .lan import Lan

GROUP, PORT = "239.255.255.250", 3702
REPEATS = 3
MAX_REPLY = 65536
MAX_MATCHES = 512  # replies kept per scan: a flood cannot grow the list without end

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "d": "http://schemas.xmlsoap.org/ws/2005/04/discovery",
}

PROBE = """<?xml version="1.0" encoding="UTF-8"?>
<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"
 xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing"
 xmlns:d="http://schemas.xmlsoap.org/ws/2005/04/discovery"
 xmlns:dn="http://www.onvif.org/ver10/network/wsdl">
<s:Header>
<a:Action>http://schemas.xmlsoap.org/ws/2005/04/discovery/Probe</a:Action>
<a:MessageID>urn:uuid:{message_id}</a:MessageID>
<a:To>urn:schemas-xmlsoap-org:ws:2005:04:discovery</a:To>
</s:Header>
<s:Body><d:Probe><d:Types>dn:NetworkVideoTransmitter</d:Types></d:Probe></s:Body>
</s:Envelope>"""


@dataclass
class ProbeMatch:
    """One ONVIF device's answer: who it is and where its device service lives."""

    address: str  # the IP the answer came from
    endpoint: str  # the endpoint reference, e.g. urn:uuid:...
    types: list[str] = field(default_factory=list)
    scopes: list[str] = field(default_factory=list)
    xaddrs: list[str] = field(default_factory=list)
    relates_to: str = ""

    def scope(self, kind: str) -> str | None:
        """The value of an ``onvif://www.onvif.org/KIND/VALUE`` scope, unquoted, or None."""
        prefix = f"onvif://www.onvif.org/{kind}/"
        for s in self.scopes:
            if s.lower().startswith(prefix):
                return unquote(s[len(prefix) :]) or None
        return None


def probe_message(message_id: str) -> bytes:
    return PROBE.format(message_id=message_id).encode()


def parse_probe_match(data: bytes, sender: str) -> list[ProbeMatch]:
    """The ProbeMatch entries of one UDP answer; [] for anything that is not one (never raises)."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError:
        return []
    relates = root.findtext("s:Header/a:RelatesTo", "", NS).strip()
    matches = []
    for m in root.iterfind("s:Body/d:ProbeMatches/d:ProbeMatch", NS):
        endpoint = m.findtext("a:EndpointReference/a:Address", "", NS).strip()
        if not endpoint:
            continue
        matches.append(
            ProbeMatch(
                address=sender,
                endpoint=endpoint[:200],
                types=m.findtext("d:Types", "", NS).split()[:20],
                scopes=m.findtext("d:Scopes", "", NS).split()[:40],
                xaddrs=[x for x in m.findtext("d:XAddrs", "", NS).split()[:10] if _is_http(x)],
                relates_to=relates,
            )
        )
    return matches


def _is_http(url: str) -> bool:
    try:
        return urlsplit(url).scheme in ("http", "https")
    except ValueError:
        return False


def _socket(lan: Lan | None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
    if lan is not None:
        # Out of this interface only, whatever the routing table says about 239/8.
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(lan.ip))
        sock.bind((lan.ip, 0))
    sock.setblocking(False)
    return sock


def probe(
    lans: list[Lan],
    seconds: float,
    subnets: list[ipaddress.IPv4Network] = (),  # type: ignore[assignment]
) -> list[ProbeMatch]:
    """Every ProbeMatch heard within ``seconds``: multicast on each LAN, unicast to ``subnets``."""
    message_id = str(uuid.uuid4())
    message = probe_message(message_id)
    sockets = [_socket(lan) for lan in lans]
    unicast = _socket(None) if subnets else None
    targets = [str(ip) for net in subnets for ip in net.hosts()]
    selector = selectors.DefaultSelector()
    for sock in [*sockets, *([unicast] if unicast else [])]:
        selector.register(sock, selectors.EVENT_READ)
    matches: list[ProbeMatch] = []
    deadline = time.monotonic() + seconds
    gap = min(0.3, seconds / (REPEATS + 2))
    next_send, sent = time.monotonic(), 0
    try:
        while (now := time.monotonic()) < deadline:
            if sent < REPEATS and now >= next_send:
                for sock in sockets:
                    _send(sock, message, (GROUP, PORT))
                if unicast:
                    for ip in targets:
                        _send(unicast, message, (ip, PORT))
                sent, next_send = sent + 1, now + gap
            wait = max(0.0, min(deadline, next_send if sent < REPEATS else deadline) - now)
            for key, _ in selector.select(wait):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data, sender = sock.recvfrom(MAX_REPLY)
                except OSError:
                    continue
                for m in parse_probe_match(data, sender[0]):
                    if (
                        m.relates_to in ("", f"urn:uuid:{message_id}")
                        and len(matches) < MAX_MATCHES
                    ):
                        matches.append(m)
    finally:
        selector.close()
        for sock in [*sockets, *([unicast] if unicast else [])]:
            sock.close()
    return matches


def _send(sock: socket.socket, message: bytes, to: tuple[str, int]) -> None:
    try:
        sock.sendto(message, to)
    except OSError:
        pass  # an unreachable address in a subnet given by hand: the others still go
