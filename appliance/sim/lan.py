"""A simulated camera's discovery side: it answers WS-Discovery and mDNS like the real firmware.

Beside a :class:`~appliance.sim.camera.SimCamera` (which serves the HTTP
API), :class:`DiscoveryResponder` listens on one IPv4 address for

- WS-Discovery Probes (239.255.255.250:3702, multicast or sent straight to
  it) and answers a ProbeMatch with its endpoint reference
  (``urn:uuid:...``, stable), Types, Scopes (hardware model, name) and XAddrs
  (``http://IP/onvif/device_service``); ``repeat`` sends each answer that many
  times, as a camera that answers twice does;
- mDNS queries for ``_http._tcp.local`` and answers PTR, SRV, TXT and A
  records: straight back to a querier on another port than 5353 (RFC 6762
  §6.7), else to the group.

Multicast answers keep TTL 1 and leave only through the responder's own
address. The tests run it inside network namespaces they create.
"""

from __future__ import annotations

import selectors
import socket
import struct
import threading
import uuid
import xml.etree.ElementTree as ET

WSD_GROUP, WSD_PORT = "239.255.255.250", 3702
MDNS_GROUP, MDNS_PORT = "224.0.0.251", 5353
NS_SOAP = "http://www.w3.org/2003/05/soap-envelope"
NS_ADDR = "http://schemas.xmlsoap.org/ws/2004/08/addressing"

MATCH = """<?xml version="1.0" encoding="UTF-8"?>
<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://www.w3.org/2003/05/soap-envelope"
 xmlns:wsa="http://schemas.xmlsoap.org/ws/2004/08/addressing"
 xmlns:wsdd="http://schemas.xmlsoap.org/ws/2005/04/discovery"
 xmlns:dn="http://www.onvif.org/ver10/network/wsdl"
 xmlns:tds="http://www.onvif.org/ver10/device/wsdl">
<SOAP-ENV:Header>
<wsa:MessageID>urn:uuid:{message_id}</wsa:MessageID>
<wsa:RelatesTo>{relates_to}</wsa:RelatesTo>
<wsa:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</wsa:To>
<wsa:Action>http://schemas.xmlsoap.org/ws/2005/04/discovery/ProbeMatches</wsa:Action>
</SOAP-ENV:Header>
<SOAP-ENV:Body><wsdd:ProbeMatches><wsdd:ProbeMatch>
<wsa:EndpointReference><wsa:Address>{endpoint}</wsa:Address></wsa:EndpointReference>
<wsdd:Types>dn:NetworkVideoTransmitter tds:Device</wsdd:Types>
<wsdd:Scopes>onvif://www.onvif.org/type/video_encoder onvif://www.onvif.org/Profile/Streaming onvif://www.onvif.org/hardware/{model} onvif://www.onvif.org/name/Milesight onvif://www.onvif.org/location/country/china</wsdd:Scopes>
<wsdd:XAddrs>http://{ip}:{port}/onvif/device_service</wsdd:XAddrs>
<wsdd:MetadataVersion>1</wsdd:MetadataVersion>
</wsdd:ProbeMatch></wsdd:ProbeMatches></SOAP-ENV:Body>
</SOAP-ENV:Envelope>"""


class DiscoveryResponder:
    """Answers WS-Discovery (``wsd``) and mDNS (``mdns``) for one camera at ``ip``; a context manager."""

    def __init__(
        self,
        ip: str,
        model: str = "MS-C2964-RFLPC",
        http_port: int = 80,
        name: str = "Milesight-Camera",
        endpoint: str | None = None,
        wsd: bool = True,
        mdns: bool = True,
        repeat: int = 1,
    ) -> None:
        self.ip, self.model, self.http_port, self.name = ip, model, http_port, name
        self.endpoint = endpoint or f"urn:uuid:{uuid.uuid4()}"
        self.repeat = repeat
        self.probes_answered = 0
        self._stop = threading.Event()
        self._selector = selectors.DefaultSelector()
        self._sockets: list[socket.socket] = []
        if wsd:
            self._listen(WSD_GROUP, WSD_PORT, self._on_probe)
        if mdns:
            self._listen(MDNS_GROUP, MDNS_PORT, self._on_query)
        self._thread = threading.Thread(target=self._serve, name="sim-discovery", daemon=True)

    def _listen(self, group: str, port: int, handler: object) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("", port))
        mreq = socket.inet_aton(group) + socket.inet_aton(self.ip)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(self.ip))
        sock.setblocking(False)
        self._selector.register(sock, selectors.EVENT_READ, handler)
        self._sockets.append(sock)

    def start(self) -> DiscoveryResponder:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for sock in self._sockets:
            sock.close()
        self._selector.close()

    def __enter__(self) -> DiscoveryResponder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(0.2):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data, sender = sock.recvfrom(65536)
                except OSError:
                    continue
                try:
                    key.data(sock, data, sender)
                except (ValueError, struct.error, ET.ParseError, OSError):
                    pass  # not a message for us

    # ------------------------------------------------------------ WS-Discovery

    def _on_probe(self, sock: socket.socket, data: bytes, sender: tuple[str, int]) -> None:
        root = ET.fromstring(data)
        if not root.tag.endswith("Envelope") or b"Probe" not in data or b"ProbeMatch" in data:
            return
        types = "".join(t.text or "" for t in root.iter() if t.tag.endswith("}Types"))
        if types and "NetworkVideoTransmitter" not in types and "Device" not in types:
            return
        message_id = root.findtext(f"{{{NS_SOAP}}}Header/{{{NS_ADDR}}}MessageID", "").strip()
        answer = MATCH.format(
            message_id=uuid.uuid4(),
            relates_to=message_id,
            endpoint=self.endpoint,
            model=self.model,
            ip=self.ip,
            port=self.http_port,
        ).encode()
        self.probes_answered += 1
        for _ in range(self.repeat):
            sock.sendto(answer, sender)

    # ------------------------------------------------------------ mDNS

    def _on_query(self, sock: socket.socket, data: bytes, sender: tuple[str, int]) -> None:
        query_id, flags, qd = struct.unpack_from("!HHH", data, 0)
        if flags & 0x8000 or sender[0] == self.ip:
            return
        at, asked = 12, []
        for _ in range(qd):
            name, at = _read_name(data, at)
            asked.append(name.lower())
            at += 4
        if "_http._tcp.local" not in asked:
            return
        legacy = sender[1] != MDNS_PORT
        answer = self._mdns_answer(query_id if legacy else 0)
        sock.sendto(answer, sender if legacy else (MDNS_GROUP, MDNS_PORT))

    def _mdns_answer(self, query_id: int) -> bytes:
        service = "_http._tcp.local"
        instance = f"{self.name}.{service}"
        host = f"{self.name}.local"
        txt = b"".join(
            bytes([len(t)]) + t for t in (b"vendor=Milesight", f"model={self.model}".encode())
        )
        records = [
            _rr(service, 12, 4500, _name(instance)),
            _rr(instance, 33, 120, struct.pack("!HHH", 0, 0, self.http_port) + _name(host)),
            _rr(instance, 16, 4500, txt),
            _rr(host, 1, 120, socket.inet_aton(self.ip)),
        ]
        header = struct.pack("!HHHHHH", query_id, 0x8400, 0, 1, 0, len(records) - 1)
        return header + b"".join(records)


def _name(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p for p in (x.encode() for x in name.split("."))) + b"\0"


def _rr(owner: str, rtype: int, ttl: int, rdata: bytes) -> bytes:
    return _name(owner) + struct.pack("!HHIH", rtype, 1, ttl, len(rdata)) + rdata


def _read_name(data: bytes, at: int) -> tuple[str, int]:
    labels = []
    while data[at]:
        if data[at] & 0xC0:
            return ".".join(labels), at + 2  # queries we send are never compressed
        labels.append(data[at + 1 : at + 1 + data[at]].decode("utf-8", "replace"))
        at += 1 + data[at]
    return ".".join(labels), at + 1
