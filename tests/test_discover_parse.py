"""What the discovery code makes of what devices send: real shapes, and hostile or broken ones.

No network: the parsers are fed bytes. (The scans themselves run in network
namespaces: tests/test_discover.py, tests/test_discover_identity.py.)
"""

from __future__ import annotations

import struct

import pytest
from conftest import base_tables

from appliance.config import parse_config
from appliance.config_keys import ConfigError
from appliance.discover import mdns, wsd
from appliance.discover.fingerprint import parse_information
from appliance.discover.scan import Device, _merge, parse_subnet
from appliance.sim.lan import MATCH, DiscoveryResponder
from appliance.sources.milesight_table import normal_mac

ENDPOINT = "urn:uuid:0b7c1f0e-1111-4222-8333-444455556666"


def probe_match(relates_to: str = "urn:uuid:abc") -> bytes:
    # The simulator's answer is the shape a Milesight camera sends (ONVIF ProbeMatches).
    return MATCH.format(
        message_id="m1", relates_to=relates_to, endpoint=ENDPOINT, model="MS-C2964-RFLPC",
        ip="198.51.100.11", port=80,
    ).encode()  # fmt: skip


def test_a_probe_match_gives_endpoint_types_scopes_and_service_address():
    [m] = wsd.parse_probe_match(probe_match(), "198.51.100.11")
    assert m.endpoint == ENDPOINT
    assert "dn:NetworkVideoTransmitter" in m.types
    assert m.scope("hardware") == "MS-C2964-RFLPC" and m.scope("name") == "Milesight"
    assert m.xaddrs == ["http://198.51.100.11:80/onvif/device_service"]
    assert m.relates_to == "urn:uuid:abc"


@pytest.mark.parametrize(
    "junk",
    [b"", b"not xml", b"<a><b></a>", b"<?xml version='1.0'?><x/>", probe_match().replace(b"Address>", b"Adress>")],
)  # fmt: skip
def test_anything_else_on_the_discovery_port_is_no_device(junk):
    assert wsd.parse_probe_match(junk, "198.51.100.11") == []


def test_the_probe_asks_for_video_transmitters_under_its_own_message_id():
    message = wsd.probe_message("1234").decode()
    assert "dn:NetworkVideoTransmitter" in message and "urn:uuid:1234" in message


def mdns_answer() -> bytes:
    responder = DiscoveryResponder.__new__(DiscoveryResponder)
    responder.name, responder.model, responder.ip, responder.http_port = (
        "Milesight-Camera", "MS-C2964-RFLPC", "198.51.100.11", 80,
    )  # fmt: skip
    return responder._mdns_answer(7)


def test_an_mdns_answer_gives_the_instance_host_port_and_txt():
    [s] = mdns.parse_answer(mdns_answer(), "198.51.100.99")
    assert s.instance == "Milesight-Camera._http._tcp.local"
    assert (s.host, s.port, s.address) == ("Milesight-Camera.local", 80, "198.51.100.11")
    assert s.txt == {"vendor": "Milesight", "model": "MS-C2964-RFLPC"}


def test_a_compression_loop_or_a_cut_mdns_answer_is_ignored():
    loop = struct.pack("!HHHHHH", 0, 0x8400, 0, 1, 0, 0) + b"\xc0\x0c"
    assert mdns.parse_answer(loop, "198.51.100.11") == []
    assert mdns.parse_answer(mdns_answer()[:40], "198.51.100.11") == []
    assert mdns.parse_answer(mdns.query_message(5), "198.51.100.11") == []  # a query


def test_system_information_json_gives_serial_model_firmware_mac():
    body = b'{"snCode": "6C0123456789", "model": "MS-C2964", "firmwareVersion": "45.8", "macAddress": "1C-C3-16-00-00-01"}'
    assert parse_information(body) == {
        "serial": "6C0123456789", "model": "MS-C2964", "firmware": "45.8", "mac": "1c:c3:16:00:00:01",
    }  # fmt: skip
    assert parse_information(b"<html>login</html>") == {}
    assert parse_information(b"[1, 2]") == {}


def test_one_device_answering_on_two_addresses_is_listed_once_by_its_mac():
    a = Device("198.51.100.20", ["198.51.100.20"], mac="02:00:00:00:00:01", found_by=["mdns"])
    b = Device("198.51.100.7", ["198.51.100.7"], mac="02:00:00:00:00:01", found_by=["neighbours"])
    c = Device("198.51.100.8", ["198.51.100.8"], onvif_endpoint=ENDPOINT, found_by=["ws-discovery"])
    merged = _merge([a, b, c])
    assert [d.addresses for d in merged] == [["198.51.100.7", "198.51.100.20"], ["198.51.100.8"]]
    assert merged[0].found_by == ["mdns", "neighbours"]
    assert merged[0].identity == "mac:02:00:00:00:00:01"
    assert merged[1].identity == f"onvif:{ENDPOINT}"


def test_a_subnet_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="not an IPv4 subnet"):
        parse_subnet("shop-lan")
    with pytest.raises(ValueError, match="at most a /22"):
        parse_subnet("203.0.0.0/16")
    assert str(parse_subnet("203.0.113.9/24")) == "203.0.113.0/24"


def test_mac_spellings_and_a_bad_mac_in_the_config(tmp_path):
    assert normal_mac("00-16-28-FA-8E-68") == normal_mac("0016.28fa.8e68") == "00:16:28:fa:8e:68"
    tables = base_tables(tmp_path, "http://127.0.0.1:9/ingest")
    tables["sensors"] = [{"id": "door", "url": "http://127.0.0.1:9", "mac": "00:16:28"}]
    with pytest.raises(ConfigError, match="expected a MAC address like"):
        parse_config(tables)
    tables["sensors"] = [{"id": "door", "url": "http://127.0.0.1:9", "serial": "6C0123456789"}]
    assert parse_config(tables).sensors[0].serial == "6C0123456789"
